//! Tests of the create body and of reading the engine's inspect answers.

use berth_container::labels::{is_managed, is_ours, workload_of};
use berth_runtime_api::{Mount as SpecMount, SecretValue};
use bollard::models::{ContainerConfig, NetworkSettings};

use super::*;

fn name(s: &str) -> WorkloadName {
    WorkloadName::parse(s).expect("name")
}

#[test]
fn labels_round_trip_without_image_labels() {
    let spec = BTreeMap::from([
        ("berth.test".to_owned(), "life".to_owned()),
        ("toolhive-group".to_owned(), "default".to_owned()),
    ]);
    let mut labels = container_labels(&name("w"), &spec, Some("i1"));
    assert!(is_ours(&labels, Some("i1")));
    assert!(is_ours(&labels, None));
    assert!(!is_ours(&labels, Some("i2")), "another berth's");
    assert_eq!(labels.get(LABEL_MANAGED).map(String::as_str), Some("true"));
    assert_eq!(labels.get(LABEL_WORKLOAD).map(String::as_str), Some("w"));
    labels.insert("org.opencontainers.image.title".into(), "from image".into());
    assert_eq!(spec_labels(&labels), spec);
    assert!(is_managed(&labels));
    assert_eq!(workload_of(&labels, Some("/other")), Some(name("w")));

    labels.remove(LABEL_KEYS);
    let legacy = spec_labels(&labels);
    assert!(legacy.contains_key("org.opencontainers.image.title"));
    assert!(!legacy.contains_key(LABEL_MANAGED));
}

#[test]
fn times() {
    assert_eq!(parse_time(Some("0001-01-01T00:00:00Z")), None);
    assert_eq!(parse_time(None), None);
    let t = parse_time(Some("2026-05-07T21:09:36.123456789Z")).expect("time");
    assert_eq!(t.nanosecond(), 123_456_789);
}

fn state(status: ContainerStateStatusEnum, code: i64) -> ContainerState {
    ContainerState {
        status: Some(status),
        exit_code: Some(code),
        finished_at: Some("2026-05-07T21:09:36Z".into()),
        ..Default::default()
    }
}

#[test]
fn states() {
    use ContainerStateStatusEnum as S;
    let check = |s: ContainerStateStatusEnum, want: RuntimeState| {
        let got = runtime_state(Some(&state(s, 3)), false);
        assert_eq!(got, want, "{s}");
    };
    check(S::CREATED, RuntimeState::Starting);
    check(S::RUNNING, RuntimeState::Running);
    check(S::PAUSED, RuntimeState::Unknown("paused".into()));
    check(S::RESTARTING, RuntimeState::Unknown("restarting".into()));
    for s in [S::EXITED, S::DEAD] {
        match runtime_state(Some(&state(s, 3)), true) {
            RuntimeState::Exited(e) => {
                assert_eq!(e.code, Some(3));
                assert!(e.stopped_by_request);
                assert_eq!(e.at.year(), 2026);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(is_up(Some(&state(S::PAUSED, 0))));
    assert!(!is_up(Some(&state(S::EXITED, 0))));
}

#[test]
fn endpoint_is_the_loopback_binding_of_the_requested_port() {
    let binding = |ip: &str, port: &str| PortBinding {
        host_ip: Some(ip.into()),
        host_port: Some(port.into()),
    };
    let c = ContainerInspectResponse {
        config: Some(ContainerConfig {
            image: Some("img".into()),
            ..Default::default()
        }),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                "8080/tcp".to_owned(),
                Some(vec![binding("127.0.0.1", "0")]),
            )])),
            ..Default::default()
        }),
        network_settings: Some(NetworkSettings {
            ports: Some(HashMap::from([
                ("9000/tcp".to_owned(), Some(vec![binding("0.0.0.0", "1")])),
                (
                    "8080/tcp".to_owned(),
                    Some(vec![binding("127.0.0.1", "49153")]),
                ),
            ])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let info = info(name("w"), &c, false);
    assert_eq!(info.image, "img");
    assert_eq!(
        info.http_endpoint,
        Some("127.0.0.1:49153".parse().expect("addr"))
    );
}

fn spec() -> WorkloadSpec {
    let mut spec = WorkloadSpec::new(name("fetch"), "localhost/x:1");
    spec.args = vec!["--http".into(), "0.0.0.0:8080".into()];
    spec.env.insert("MCP_PORT".into(), "8080".into());
    spec.labels.insert("berth.group".into(), "default".into());
    spec
}

const LIMITS: Limits = Limits {
    memory_bytes: Some(1 << 30),
    cpus: Some(1.0),
};

#[test]
fn stdio_body_is_locked_down_and_keeps_stdin_open() {
    let body = create_body(&spec(), "localhost/x:1", &LIMITS, Some("i1"));
    assert_eq!(body.image.as_deref(), Some("localhost/x:1"));
    assert_eq!(
        body.cmd,
        Some(vec!["--http".to_owned(), "0.0.0.0:8080".to_owned()])
    );
    assert_eq!(body.env, Some(vec!["MCP_PORT=8080".to_owned()]));
    assert_eq!(
        (body.open_stdin, body.stdin_once, body.tty),
        (Some(true), Some(false), Some(false))
    );
    assert_eq!(body.exposed_ports, None, "stdio publishes nothing");
    let labels = body.labels.expect("labels");
    assert_eq!(
        labels.get("berth.managed").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        labels.get("berth.workload").map(String::as_str),
        Some("fetch")
    );
    assert_eq!(labels.get("berth.instance").map(String::as_str), Some("i1"));
    assert_eq!(
        labels.get("berth.group").map(String::as_str),
        Some("default")
    );
    let host = body.host_config.expect("host config");
    assert_eq!(host.init, Some(true));
    assert_eq!(
        host.security_opt,
        Some(vec!["no-new-privileges".to_owned()])
    );
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(host.memory, Some(1 << 30));
    assert_eq!(host.nano_cpus, Some(1_000_000_000));
    assert_eq!(
        host.restart_policy.and_then(|r| r.name),
        Some(RestartPolicyNameEnum::NO)
    );
    assert_eq!(host.port_bindings, None);
    assert_eq!(host.mounts, None);
    assert_eq!(host.network_mode, None);
}

#[test]
fn http_body_publishes_on_loopback_without_limits() {
    let mut spec = spec();
    spec.transport = Transport::StreamableHttp;
    spec.target_port = Some(8080);
    let body = create_body(&spec, "localhost/x:1", &Limits::default(), None);
    assert_eq!(body.exposed_ports, Some(vec!["8080/tcp".to_owned()]));
    let host = body.host_config.expect("host config");
    assert_eq!((host.memory, host.nano_cpus), (None, None));
    assert_eq!(
        host.port_bindings,
        Some(HashMap::from([(
            "8080/tcp".to_owned(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }])
        )]))
    );
    assert!(!body.labels.expect("labels").contains_key("berth.instance"));
}

#[test]
fn secret_env_is_in_the_environment_after_env_and_nowhere_else() {
    let mut spec = spec();
    spec.env.insert("TOKEN".into(), "plain".into());
    spec.secret_env
        .insert("TOKEN".into(), SecretValue::new("s3cret-wins"));
    spec.secret_env
        .insert("API_KEY".into(), SecretValue::new("s3cret = \"two\""));
    let body = create_body(&spec, "localhost/x:1", &LIMITS, None);
    assert_eq!(
        body.env,
        Some(vec![
            "API_KEY=s3cret = \"two\"".to_owned(),
            "MCP_PORT=8080".to_owned(),
            "TOKEN=s3cret-wins".to_owned(),
        ])
    );
    let elsewhere = format!(
        "{:?} {:?} {:?} {:?}",
        body.cmd, body.entrypoint, body.labels, body.host_config
    );
    assert!(!elsewhere.contains("s3cret"), "{elsewhere}");
}

#[test]
fn confinement_in_the_body() {
    let mut spec = spec();
    spec.mounts = vec![SpecMount {
        source: "/srv/in".into(),
        target: "/in".into(),
        read_only: true,
    }];
    spec.network = NetworkAccess::None;
    let host = create_body(&spec, "img", &LIMITS, None)
        .host_config
        .expect("host config");
    let mounts = host.mounts.expect("mounts");
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].source.as_deref(), Some("/srv/in"));
    assert_eq!(mounts[0].target.as_deref(), Some("/in"));
    assert_eq!(mounts[0].typ, Some(MountType::BIND));
    assert_eq!(mounts[0].read_only, Some(true));
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    spec.network = NetworkAccess::Isolated;
    let host = create_body(&spec, "img", &LIMITS, None)
        .host_config
        .expect("host config");
    assert_eq!(host.network_mode.as_deref(), Some("berth-egress-fetch"));
}
