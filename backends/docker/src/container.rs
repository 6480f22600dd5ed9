//! Containers as berth creates them ([`create_body`]) and as the engine
//! reports them ([`info`]): labels, states, times and published ports.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use berth_container::Limits;
use berth_container::labels::{
    LABEL_INSTANCE, LABEL_MANAGED, LABEL_WORKLOAD, PUBLISH_IP, network_name, own_labels,
};
use berth_runtime_api::{
    ExitStatus, NetworkAccess, RuntimeState, Transport, WorkloadInfo, WorkloadName, WorkloadSpec,
};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerState, ContainerStateStatusEnum,
    HostConfig, Mount, MountType, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Label holding the keys of the spec's labels (a JSON array), so that
/// labels the image brings along are not reported as the workload's.
pub(crate) const LABEL_KEYS: &str = "berth.label-keys";

/// The engine's description of the container for `spec`, running `image`:
/// docker-init as PID 1, no new privileges, no capabilities, `limits`, no
/// restart policy, stdin kept open (attach and re-attach), for HTTP
/// transports the target port published on 127.0.0.1 at a port the engine
/// picks, the spec's bind mounts, and its network: the default, none, or
/// the workload's isolated network.
pub(crate) fn create_body(
    spec: &WorkloadSpec,
    image: &str,
    limits: &Limits,
    instance: Option<&str>,
) -> ContainerCreateBody {
    let mut host = HostConfig {
        init: Some(true),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        cap_drop: Some(vec!["ALL".to_owned()]),
        memory: limits.memory_bytes,
        nano_cpus: limits.nano_cpus(),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        mounts: (!spec.mounts.is_empty()).then(|| {
            spec.mounts
                .iter()
                .map(|m| Mount {
                    target: Some(m.target.clone()),
                    source: Some(m.source.to_string_lossy().into_owned()),
                    typ: Some(MountType::BIND),
                    read_only: Some(m.read_only),
                    ..Mount::default()
                })
                .collect()
        }),
        network_mode: match spec.network {
            NetworkAccess::None => Some("none".to_owned()),
            NetworkAccess::Isolated => Some(network_name(&spec.name)),
            _ => None,
        },
        ..HostConfig::default()
    };
    let mut exposed = None;
    if let (true, Some(port)) = (spec.transport != Transport::Stdio, spec.target_port) {
        let key = format!("{port}/tcp");
        host.port_bindings = Some(HashMap::from([(
            key.clone(),
            Some(vec![PortBinding {
                host_ip: Some(PUBLISH_IP.to_string()),
                // Empty: the engine picks a free port.
                host_port: Some(String::new()),
            }]),
        )]));
        exposed = Some(vec![key]);
    }
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: Some(environment(spec)),
        labels: Some(container_labels(&spec.name, &spec.labels, instance)),
        open_stdin: Some(true),
        stdin_once: Some(false),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        exposed_ports: exposed,
        host_config: Some(host),
        ..ContainerCreateBody::default()
    }
}

/// The container's environment: the spec's `env`, then its `secret_env`,
/// a secret winning over a plain variable of its name.
///
/// Docker has no place for a secret outside swarm but the environment, so
/// secrets are plain `Env` entries: whoever may inspect the container
/// (root, the `docker` group) reads them, as any environment variable.
/// They never go into labels or the command.
fn environment(spec: &WorkloadSpec) -> Vec<String> {
    let mut merged: BTreeMap<&str, &str> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    merged.extend(
        spec.secret_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose())),
    );
    merged
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// The container's labels for a spec's labels: all of them, the list of
/// their keys, and berth's own.
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
    all.extend(own_labels(name, instance));
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
mod tests;
