//! Tests of the create body and of reading Podman's inspect answers.

use std::collections::BTreeMap;

use berth_runtime_api::{RuntimeState, SecretValue, Transport, WorkloadName, WorkloadSpec};
use serde_json::json;

use berth_container::ContainerConfig;

use super::*;
use crate::PodmanConfig;
use crate::secrets::EnvSecret;

/// The create body for `spec` as JSON, with the limits `config` sets.
fn create_body(
    spec: &WorkloadSpec,
    config: &PodmanConfig,
    init_path: Option<&str>,
    relay: Option<RelaySetup>,
) -> serde_json::Value {
    create_body_with_secrets(spec, config, init_path, relay, &[])
}

fn create_body_with_secrets(
    spec: &WorkloadSpec,
    config: &PodmanConfig,
    init_path: Option<&str>,
    relay: Option<RelaySetup>,
    secrets: &[EnvSecret],
) -> serde_json::Value {
    let limits = config.container.check().expect("valid settings");
    serde_json::to_value(CreateBody::new(
        spec, config, &limits, init_path, relay, secrets,
    ))
    .unwrap()
}

fn spec() -> WorkloadSpec {
    let mut spec = WorkloadSpec::new(WorkloadName::parse("fetch").unwrap(), "localhost/x:1");
    spec.args = vec!["--http".into(), "0.0.0.0:8080".into()];
    spec.env.insert("MCP_PORT".into(), "8080".into());
    spec.labels.insert("berth.group".into(), "default".into());
    spec
}

#[test]
fn stdio_body_runs_the_relay() {
    let mut spec = spec();
    spec.args.clear();
    let relay = RelaySetup {
        binary: "/var/lib/berth/podman/berth-stdio-relay".into(),
        io_dir: Some("/var/lib/berth/podman/fetch".into()),
        command: vec!["/mcp-echo".into(), "--quiet".into()],
    };
    let body = create_body(&spec, &PodmanConfig::default(), None, Some(relay));
    assert_eq!(
        body,
        json!({
            "name": "berth-fetch",
            "image": "localhost/x:1",
            "entrypoint": ["/.berth/relay", "/.berth/io/stdio.sock", "--"],
            "command": ["/mcp-echo", "--quiet"],
            "env": {"MCP_PORT": "8080"},
            "labels": {
                "berth.group": "default",
                "berth.managed": "true",
                "berth.stdio": "relay",
                "berth.workload": "fetch"
            },
            "stdin": false,
            "terminal": false,
            "init": true,
            "stop_timeout": 10,
            "no_new_privileges": true,
            "cap_drop": ["ALL"],
            "resource_limits": {
                "memory": {"limit": 1_073_741_824_i64},
                "cpu": {"quota": 100_000, "period": 100_000}
            },
            "mounts": [
                {
                    "destination": "/.berth/relay",
                    "source": "/var/lib/berth/podman/berth-stdio-relay",
                    "type": "bind",
                    "options": ["ro", "rbind"]
                },
                {
                    "destination": "/.berth/io",
                    "source": "/var/lib/berth/podman/fetch",
                    "type": "bind",
                    "options": ["rw", "rbind"]
                }
            ]
        })
    );
}

/// The secrets of [`spec`] with `TOKEN` (over a plain `TOKEN`), `API_KEY`
/// and an empty `EMPTY`, as deploy stores them.
fn spec_with_secrets() -> (WorkloadSpec, Vec<EnvSecret>) {
    let mut spec = spec();
    spec.env.insert("TOKEN".into(), "plain-loses".into());
    spec.env.insert("EMPTY".into(), "plain-loses".into());
    for (k, v) in [
        ("TOKEN", "s3cret-1"),
        ("API_KEY", "s3cret-2"),
        ("EMPTY", ""),
    ] {
        spec.secret_env.insert(k.into(), SecretValue::new(v));
    }
    let secrets = ["API_KEY", "TOKEN"]
        .map(|t| EnvSecret {
            target: t.into(),
            secret: format!("berth-env-0123456789ab-fetch-{t}"),
        })
        .to_vec();
    (spec, secrets)
}

#[test]
fn stdio_body_hands_secrets_to_the_relay_as_files() {
    let (mut spec, secrets) = spec_with_secrets();
    spec.args.clear();
    let relay = RelaySetup {
        binary: "/var/lib/berth/podman/berth-stdio-relay".into(),
        io_dir: Some("/var/lib/berth/podman/fetch".into()),
        command: vec!["/mcp-echo".into()],
    };
    let body =
        create_body_with_secrets(&spec, &PodmanConfig::default(), None, Some(relay), &secrets);
    assert_eq!(
        body["entrypoint"],
        json!([
            "/.berth/relay",
            "--env",
            "API_KEY=/run/secrets/berth-env-0123456789ab-fetch-API_KEY",
            "--env",
            "TOKEN=/run/secrets/berth-env-0123456789ab-fetch-TOKEN",
            "/.berth/io/stdio.sock",
            "--"
        ])
    );
    assert_eq!(body["command"], json!(["/mcp-echo"]));
    assert_eq!(
        body["secrets"],
        json!([
            {"Source": "berth-env-0123456789ab-fetch-API_KEY", "Target": "berth-env-0123456789ab-fetch-API_KEY", "Mode": 0o444},
            {"Source": "berth-env-0123456789ab-fetch-TOKEN", "Target": "berth-env-0123456789ab-fetch-TOKEN", "Mode": 0o444}
        ])
    );
    // A secret's plain namesake is left out; an empty secret is a plain,
    // empty variable.
    assert_eq!(body["env"], json!({"EMPTY": "", "MCP_PORT": "8080"}));
    assert_eq!(body["stdin"], json!(false));
    assert_eq!(body["labels"]["berth.stdio"], json!("relay"));
    assert!(!body.to_string().contains("s3cret"), "{body}");
}

#[test]
fn http_body_with_secrets_runs_the_relay_in_exec_mode() {
    let (mut spec, secrets) = spec_with_secrets();
    spec.transport = Transport::StreamableHttp;
    spec.target_port = Some(8080);
    let relay = RelaySetup {
        binary: "/var/lib/berth/podman/berth-stdio-relay".into(),
        io_dir: None,
        command: vec!["/mcp-echo".into(), "--http".into(), "0.0.0.0:8080".into()],
    };
    let body =
        create_body_with_secrets(&spec, &PodmanConfig::default(), None, Some(relay), &secrets);
    assert_eq!(
        body["entrypoint"],
        json!([
            "/.berth/relay",
            "--env",
            "API_KEY=/run/secrets/berth-env-0123456789ab-fetch-API_KEY",
            "--env",
            "TOKEN=/run/secrets/berth-env-0123456789ab-fetch-TOKEN",
            "--exec",
            "--"
        ])
    );
    assert_eq!(
        body["command"],
        json!(["/mcp-echo", "--http", "0.0.0.0:8080"])
    );
    assert_eq!(
        body["mounts"],
        json!([{"destination": "/.berth/relay", "source": "/var/lib/berth/podman/berth-stdio-relay",
            "type": "bind", "options": ["ro", "rbind"]}]),
        "no socket directory"
    );
    assert_eq!(body["stdin"], json!(true), "as any HTTP container");
    assert_eq!(
        body["labels"].get("berth.stdio"),
        None,
        "no stdio to attach"
    );
    assert_eq!(body["portmappings"][0]["container_port"], json!(8080));
    assert!(!body.to_string().contains("s3cret"), "{body}");
}

#[test]
fn image_command_lines() {
    let image: ImageCommand = serde_json::from_value(json!({
        "Config": {"Entrypoint": ["/mcp-echo"], "Cmd": ["--quiet"]}
    }))
    .unwrap();
    assert_eq!(image.command_line(&[]), ["/mcp-echo", "--quiet"]);
    assert_eq!(
        image.command_line(&["--http".into(), ":80".into()]),
        ["/mcp-echo", "--http", ":80"]
    );
    let cmd_only: ImageCommand =
        serde_json::from_value(json!({"Config": {"Cmd": ["python", "-m", "srv"]}})).unwrap();
    assert_eq!(cmd_only.command_line(&[]), ["python", "-m", "srv"]);
    assert_eq!(cmd_only.command_line(&["x".into()]), ["x"]);
    let empty: ImageCommand = serde_json::from_value(json!({"Config": null})).unwrap();
    assert!(empty.command_line(&[]).is_empty());
}

#[test]
fn http_body_publishes_on_loopback_without_limits() {
    let mut spec = spec();
    spec.transport = Transport::StreamableHttp;
    spec.target_port = Some(8080);
    let config = PodmanConfig {
        container: ContainerConfig {
            memory_limit_bytes: 0,
            cpu_limit: 0.0,
            stop_grace_secs: 3,
            ..ContainerConfig::default()
        },
        ..PodmanConfig::default()
    };
    let body = create_body(&spec, &config, None, None);
    assert_eq!(body["command"], json!(["--http", "0.0.0.0:8080"]));
    assert_eq!(body.get("init_path"), None, "Podman's default init");
    let with_tini = create_body(&spec, &config, Some("/usr/bin/tini-static"), None);
    assert_eq!(with_tini["init"], json!(true));
    assert_eq!(with_tini["init_path"], json!("/usr/bin/tini-static"));
    assert_eq!(body["stop_timeout"], json!(3));
    assert_eq!(body.get("resource_limits"), None);
    assert_eq!(
        body["portmappings"],
        json!([{"host_ip": "127.0.0.1", "container_port": 8080, "host_port": 0, "protocol": "tcp"}])
    );
}

#[test]
fn half_a_cpu() {
    let config = PodmanConfig {
        container: ContainerConfig {
            cpu_limit: 0.5,
            ..ContainerConfig::default()
        },
        ..PodmanConfig::default()
    };
    let body = create_body(&spec(), &config, None, None);
    assert_eq!(
        body["resource_limits"]["cpu"],
        json!({"quota": 50_000, "period": 100_000})
    );
}

fn inspected(state: serde_json::Value) -> Container {
    serde_json::from_value(json!({
        "Id": "abc",
        "Name": "berth-fetch",
        "ImageName": "localhost/x:1",
        "State": state,
        "Config": {"Labels": {"berth.managed": "true", "berth.workload": "fetch", "k": "v"}},
        "NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41234"}]}},
        "HostConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}}
    }))
    .unwrap()
}

#[test]
fn running_container() {
    let c = inspected(json!({
        "Status": "running",
        "ExitCode": 0,
        "StartedAt": "2025-11-22T08:50:01.312398484Z",
        "FinishedAt": "0001-01-01T00:00:00Z"
    }));
    let info = c.info(c.workload().unwrap(), false);
    assert_eq!(info.name.as_str(), "fetch");
    assert_eq!(info.image, "localhost/x:1");
    assert_eq!(info.state, RuntimeState::Running);
    assert_eq!(
        info.started_at.map(|t| t.unix_timestamp_nanos()),
        Some(1_763_801_401_312_398_484)
    );
    assert_eq!(
        info.labels,
        BTreeMap::from([
            ("berth.workload".to_owned(), "fetch".to_owned()),
            ("k".to_owned(), "v".to_owned())
        ])
    );
    assert_eq!(info.http_endpoint, Some("127.0.0.1:41234".parse().unwrap()));
    assert!(c.is_live());
    assert!(c.is_managed());
}

#[test]
fn states() {
    fn check(status: &str, expect: &str) {
        let c = inspected(json!({
            "Status": status,
            "ExitCode": 3,
            "StartedAt": "2025-11-22T08:50:01+01:00",
            "FinishedAt": "2025-11-22T08:50:02+01:00"
        }));
        let got = match c.runtime_state(true) {
            RuntimeState::Starting => "starting".to_owned(),
            RuntimeState::Running => "running".to_owned(),
            RuntimeState::Exited(e) => {
                assert!(e.stopped_by_request);
                assert_eq!(e.at.unix_timestamp(), 1_763_797_802);
                format!("exited {:?}", e.code)
            }
            RuntimeState::Unknown(s) => format!("unknown {s}"),
            other => format!("{other:?}"),
        };
        assert_eq!(got, expect, "status {status}");
    }
    check("created", "starting");
    check("configured", "starting");
    check("running", "running");
    check("exited", "exited Some(3)");
    check("stopped", "exited Some(3)");
    check("paused", "unknown paused");
    check("removing", "unknown removing");
}

#[test]
fn stopped_container_has_no_endpoint_without_a_port() {
    let c: Container = serde_json::from_value(json!({
        "Id": "abc",
        "Name": "berth-other.name",
        "State": {"Status": "exited", "ExitCode": 0},
        "NetworkSettings": {"Ports": {}},
        "HostConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "0"}]}}
    }))
    .unwrap();
    assert_eq!(c.http_endpoint(), None);
    assert!(!c.is_managed(), "no berth.managed label");
    assert_eq!(c.workload().unwrap().as_str(), "other.name");
    assert_eq!(c.info(c.workload().unwrap(), false).started_at, None);
}

#[test]
fn confinement_in_the_body() {
    use berth_runtime_api::{Mount, NetworkAccess};
    let mut spec = spec();
    spec.mounts = vec![
        Mount {
            source: "/srv/in".into(),
            target: "/in".into(),
            read_only: true,
        },
        Mount {
            source: "/srv/out".into(),
            target: "/out".into(),
            read_only: false,
        },
    ];
    spec.network = NetworkAccess::None;
    let body = create_body(&spec, &PodmanConfig::default(), None, None);
    assert_eq!(
        body["mounts"],
        json!([
            {"destination": "/in", "source": "/srv/in", "type": "bind", "options": ["ro", "rbind"]},
            {"destination": "/out", "source": "/srv/out", "type": "bind", "options": ["rw", "rbind"]}
        ])
    );
    assert_eq!(body["netns"], json!({"nsmode": "none"}));
    assert_eq!(body.get("Networks"), None);

    spec.network = NetworkAccess::Isolated;
    let body = create_body(&spec, &PodmanConfig::default(), None, None);
    assert_eq!(body["netns"], json!({"nsmode": "bridge"}));
    assert_eq!(body["Networks"], json!({"berth-egress-fetch": {}}));

    spec.network = NetworkAccess::Full;
    spec.mounts.clear();
    let body = create_body(&spec, &PodmanConfig::default(), None, None);
    assert_eq!(body.get("netns"), None);
    assert_eq!(body.get("mounts"), None);
}
