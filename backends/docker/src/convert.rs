//! Translations between berth's types and the engine's: names, labels,
//! image references, states, times and published ports.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use berth_runtime_api::{ExitStatus, RuntimeState, WorkloadInfo, WorkloadName};
use bollard::models::{
    ContainerInspectResponse, ContainerState, ContainerStateStatusEnum, PortBinding,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Prefix of every container name berth creates.
pub(crate) const NAME_PREFIX: &str = "berth-";
/// Label on every container berth creates; `list` filters on it.
pub(crate) const LABEL_MANAGED: &str = "berth.managed";
/// Label holding the workload name of a container.
pub(crate) const LABEL_WORKLOAD: &str = "berth.workload";
/// Label holding the berth instance that owns the container (see
/// `DockerConfig::instance`).
pub(crate) const LABEL_INSTANCE: &str = "berth.instance";
/// Label holding the keys of the spec's labels (a JSON array), so that
/// labels the image brings along are not reported as the workload's.
pub(crate) const LABEL_KEYS: &str = "berth.label-keys";
/// Where published ports listen on the host: loopback only.
pub(crate) const PUBLISH_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The container name of workload `name`.
pub(crate) fn container_name(name: &WorkloadName) -> String {
    format!("{NAME_PREFIX}{name}")
}

/// The isolated network of workload `name` (`NetworkAccess::Isolated`).
pub(crate) fn network_name(name: &WorkloadName) -> String {
    format!("{NAME_PREFIX}egress-{name}")
}

/// The container's labels for a spec's labels: all of them plus berth's own.
pub(crate) fn container_labels(
    name: &WorkloadName,
    labels: &BTreeMap<String, String>,
    instance: Option<&str>,
) -> HashMap<String, String> {
    let mut all: HashMap<String, String> = labels.clone().into_iter().collect();
    let keys: Vec<&String> = labels.keys().collect();
    all.insert(
        LABEL_KEYS.to_owned(),
        serde_json::to_string(&keys).expect("a list of strings serializes"),
    );
    all.insert(LABEL_MANAGED.to_owned(), "true".to_owned());
    all.insert(LABEL_WORKLOAD.to_owned(), name.as_str().to_owned());
    if let Some(instance) = instance {
        all.insert(LABEL_INSTANCE.to_owned(), instance.to_owned());
    }
    all
}

/// The labels given at deploy, out of a container's labels (which also hold
/// the image's labels and berth's own).
pub(crate) fn spec_labels(labels: &HashMap<String, String>) -> BTreeMap<String, String> {
    let own = |k: &str| {
        matches!(
            k,
            LABEL_MANAGED | LABEL_WORKLOAD | LABEL_KEYS | LABEL_INSTANCE
        )
    };
    match labels
        .get(LABEL_KEYS)
        .and_then(|keys| serde_json::from_str::<Vec<String>>(keys).ok())
    {
        Some(keys) => keys
            .into_iter()
            .filter(|k| !own(k))
            .filter_map(|k| labels.get(&k).map(|v| (k, v.clone())))
            .collect(),
        // Not created by this version of berth: everything but berth's own.
        None => labels
            .iter()
            .filter(|(k, _)| !own(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Whether the container is this berth's: managed, and owned by
/// `instance` (a container from before instance labels, or a backend
/// without an instance, counts as its own).
pub(crate) fn is_ours(labels: Option<&HashMap<String, String>>, instance: Option<&str>) -> bool {
    is_managed(labels)
        && match (instance, labels.and_then(|l| l.get(LABEL_INSTANCE))) {
            (Some(me), Some(owner)) => me == owner,
            _ => true,
        }
}

/// Whether the container carries berth's management label.
pub(crate) fn is_managed(labels: Option<&HashMap<String, String>>) -> bool {
    labels
        .and_then(|l| l.get(LABEL_MANAGED))
        .is_some_and(|v| v == "true")
}

/// The workload a managed container belongs to: its `berth.workload` label,
/// else its name without the `berth-` prefix.
pub(crate) fn workload_of(
    labels: Option<&HashMap<String, String>>,
    container_name: Option<&str>,
) -> Option<WorkloadName> {
    let by_label = labels
        .and_then(|l| l.get(LABEL_WORKLOAD))
        .and_then(|n| WorkloadName::parse(n).ok());
    by_label.or_else(|| {
        container_name
            .map(|n| n.trim_start_matches('/'))
            .and_then(|n| n.strip_prefix(NAME_PREFIX))
            .and_then(|n| WorkloadName::parse(n).ok())
    })
}

/// The image schemes of the process backend, which a container engine cannot
/// run without building an image first.
pub(crate) const PACKAGE_SCHEMES: [&str; 4] = ["npx://", "uvx://", "exec://", "go://"];

/// The package scheme `image` uses, if any.
pub(crate) fn package_scheme(image: &str) -> Option<&'static str> {
    let lower = image.to_ascii_lowercase();
    PACKAGE_SCHEMES.into_iter().find(|s| lower.starts_with(s))
}

/// The reference to pull for `image`: with `:latest` when it names neither a
/// tag nor a digest, since the engine pulls *every* tag of a bare name.
pub(crate) fn pull_reference(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

/// Parses an engine timestamp; the engine's zero time means "never".
pub(crate) fn parse_time(s: Option<&str>) -> Option<OffsetDateTime> {
    let t = OffsetDateTime::parse(s?, &Rfc3339).ok()?;
    (t.year() > 1).then_some(t)
}

/// Whether the engine counts the container as up (so a deploy of its name is
/// refused and a stop has something to do).
pub(crate) fn is_up(state: Option<&ContainerState>) -> bool {
    use ContainerStateStatusEnum as S;
    matches!(
        state.and_then(|s| s.status),
        Some(S::RUNNING | S::PAUSED | S::RESTARTING)
    ) || state.and_then(|s| s.running) == Some(true)
}

/// How an exited container ended, per the engine.
pub(crate) fn exit_status(state: Option<&ContainerState>, stopped_by_request: bool) -> ExitStatus {
    let code = state
        .and_then(|s| s.exit_code)
        .and_then(|c| i32::try_from(c).ok());
    ExitStatus {
        code,
        signal: None,
        stopped_by_request,
        at: parse_time(state.and_then(|s| s.finished_at.as_deref()))
            .unwrap_or_else(OffsetDateTime::now_utc),
    }
}

/// Maps the engine's state: created → starting, running → running,
/// exited/dead → exited, anything else → unknown in the engine's words.
pub(crate) fn runtime_state(
    state: Option<&ContainerState>,
    stopped_by_request: bool,
) -> RuntimeState {
    use ContainerStateStatusEnum as S;
    match state.and_then(|s| s.status) {
        Some(S::CREATED) => RuntimeState::Starting,
        Some(S::RUNNING) => RuntimeState::Running,
        Some(S::EXITED | S::DEAD) => RuntimeState::Exited(exit_status(state, stopped_by_request)),
        Some(other) => RuntimeState::Unknown(other.to_string()),
        None => RuntimeState::Unknown("no state reported".to_owned()),
    }
}

/// The host address of the container's published port: the binding on
/// 127.0.0.1 of the port berth asked to publish.
pub(crate) fn http_endpoint(c: &ContainerInspectResponse) -> Option<SocketAddr> {
    let wanted = c.host_config.as_ref()?.port_bindings.as_ref()?;
    let actual = c.network_settings.as_ref()?.ports.as_ref()?;
    let mut keys: Vec<&String> = wanted.keys().collect();
    keys.sort();
    keys.into_iter()
        .filter_map(|key| actual.get(key)?.as_deref())
        .flat_map(|bindings| bindings.iter())
        .find_map(loopback_port)
}

/// The port of a binding on 127.0.0.1.
fn loopback_port(b: &PortBinding) -> Option<SocketAddr> {
    let ip: IpAddr = b.host_ip.as_deref()?.parse().ok()?;
    let port: u16 = b.host_port.as_deref()?.parse().ok()?;
    (ip == IpAddr::V4(PUBLISH_IP) && port != 0).then_some(SocketAddr::new(ip, port))
}

/// A `WorkloadInfo` for an inspected container of workload `name`.
pub(crate) fn info(
    name: WorkloadName,
    c: &ContainerInspectResponse,
    stopped_by_request: bool,
) -> WorkloadInfo {
    let config = c.config.as_ref();
    let image = config
        .and_then(|cfg| cfg.image.clone())
        .or_else(|| c.image.clone())
        .unwrap_or_default();
    let state = c.state.as_ref();
    let mut info = WorkloadInfo::new(name, image, runtime_state(state, stopped_by_request));
    info.started_at = parse_time(state.and_then(|s| s.started_at.as_deref()));
    info.labels = config
        .and_then(|cfg| cfg.labels.as_ref())
        .map(spec_labels)
        .unwrap_or_default();
    info.pid = state
        .and_then(|s| s.pid)
        .filter(|pid| *pid > 0)
        .and_then(|pid| u32::try_from(pid).ok());
    info.http_endpoint = http_endpoint(c);
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    use bollard::models::{ContainerConfig, HostConfig, NetworkSettings};

    fn name(s: &str) -> WorkloadName {
        WorkloadName::parse(s).expect("name")
    }

    #[test]
    fn pull_references() {
        for (image, want) in [
            ("alpine", "alpine:latest"),
            ("alpine:3", "alpine:3"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost:5000/x:v1", "localhost:5000/x:v1"),
            ("ghcr.io/a/b@sha256:00", "ghcr.io/a/b@sha256:00"),
        ] {
            assert_eq!(pull_reference(image), want, "{image}");
        }
    }

    #[test]
    fn package_schemes() {
        assert_eq!(package_scheme("npx://@x/y"), Some("npx://"));
        assert_eq!(package_scheme("UVX://x"), Some("uvx://"));
        assert_eq!(package_scheme("exec:///bin/cat"), Some("exec://"));
        assert_eq!(package_scheme("ghcr.io/x/y:1"), None);
    }

    #[test]
    fn labels_round_trip_without_image_labels() {
        let spec = BTreeMap::from([
            ("berth.test".to_owned(), "life".to_owned()),
            ("toolhive-group".to_owned(), "default".to_owned()),
        ]);
        let mut labels = container_labels(&name("w"), &spec, Some("i1"));
        assert!(is_ours(Some(&labels), Some("i1")));
        assert!(is_ours(Some(&labels), None));
        assert!(!is_ours(Some(&labels), Some("i2")), "another berth's");
        assert_eq!(labels.get(LABEL_MANAGED).map(String::as_str), Some("true"));
        assert_eq!(labels.get(LABEL_WORKLOAD).map(String::as_str), Some("w"));
        labels.insert("org.opencontainers.image.title".into(), "from image".into());
        assert_eq!(spec_labels(&labels), spec);
        assert!(is_managed(Some(&labels)));
        assert_eq!(workload_of(Some(&labels), Some("/other")), Some(name("w")));

        labels.remove(LABEL_KEYS);
        let legacy = spec_labels(&labels);
        assert!(legacy.contains_key("org.opencontainers.image.title"));
        assert!(!legacy.contains_key(LABEL_MANAGED));
    }

    #[test]
    fn workload_falls_back_to_the_container_name() {
        assert_eq!(workload_of(None, Some("/berth-fetch")), Some(name("fetch")));
        assert_eq!(workload_of(None, Some("/stranger")), None);
        assert!(!is_managed(None));
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
}
