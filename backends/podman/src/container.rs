//! Containers as berth creates them, and as Podman reports them.
//!
//! [`CreateBody`] is libpod's `SpecGenerator` cut down to what berth sets;
//! [`Container`] is the part of libpod's inspect answer berth reads.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use berth_container::Limits;
use berth_container::labels::{
    self, LABEL_INSTANCE, LABEL_MANAGED, PUBLISH_IP, container_name, network_name, own_labels,
};
use berth_runtime_api::{
    ExitStatus, NetworkAccess, RuntimeState, Transport, WorkloadInfo, WorkloadName, WorkloadSpec,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::PodmanConfig;
use crate::secrets::{EnvSecret, SecretMount};
use crate::stdio::{EXEC_FLAG, IO_DIR_IN_CONTAINER, RELAY_IN_CONTAINER, SOCKET_IN_CONTAINER};

/// The CFS period used to express the CPU limit, in microseconds.
const CPU_PERIOD: u64 = 100_000;

/// Label of containers whose stdio is served by berth's relay.
pub(crate) const LABEL_STDIO: &str = "berth.stdio";
/// [`LABEL_STDIO`]'s value.
pub(crate) const STDIO_RELAY: &str = "relay";

/// How a container runs the relay: the host path of the relay binary, the
/// host path of the workload's socket directory for a stdio server
/// (`None`: the relay only hands the server its secrets and becomes it),
/// and the server's command line.
#[derive(Debug)]
pub(crate) struct RelaySetup {
    pub(crate) binary: String,
    pub(crate) io_dir: Option<String>,
    pub(crate) command: Vec<String>,
}

/// What berth reads of `GET /libpod/images/{name}/json`: the image's
/// entrypoint and command.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ImageCommand {
    #[serde(rename = "Config", default)]
    config: Option<ImageConfig>,
}

#[derive(Debug, Default, Deserialize)]
struct ImageConfig {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
}

impl ImageCommand {
    /// The command line a container of the image runs with `args`: the
    /// entrypoint followed by `args`, or by the image's command when there
    /// are none (as `podman run IMAGE [ARGS]`).
    pub(crate) fn command_line(&self, args: &[String]) -> Vec<String> {
        let config = self.config.as_ref();
        let mut line: Vec<String> = config
            .and_then(|c| c.entrypoint.clone())
            .unwrap_or_default();
        if args.is_empty() {
            line.extend(config.and_then(|c| c.cmd.clone()).unwrap_or_default());
        } else {
            line.extend(args.iter().cloned());
        }
        line
    }
}

/// The body of `POST /libpod/containers/create`.
#[derive(Debug, Serialize)]
pub(crate) struct CreateBody<'a> {
    name: String,
    image: &'a str,
    /// Replaces the image's entrypoint (the stdio relay); left out to keep
    /// it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entrypoint: Vec<String>,
    /// Appended to the entrypoint; left out to keep the image's own
    /// command.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    command: Vec<String>,
    env: BTreeMap<String, String>,
    /// Secrets mounted as files, which the relay reads into the server's
    /// environment (see `secrets.rs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secrets: Vec<SecretMount>,
    labels: BTreeMap<String, String>,
    stdin: bool,
    terminal: bool,
    init: bool,
    /// The init binary on the host, when not Podman's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    init_path: Option<String>,
    stop_timeout: u64,
    no_new_privileges: bool,
    cap_drop: [&'static str; 1],
    #[serde(skip_serializing_if = "Resources::is_empty")]
    resource_limits: Resources,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    portmappings: Vec<PortMapping>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mounts: Vec<BindMount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<Namespace>,
    /// libpod spells this one in Go's case.
    #[serde(rename = "Networks", skip_serializing_if = "BTreeMap::is_empty")]
    networks: BTreeMap<String, PerNetwork>,
}

/// An OCI bind mount.
#[derive(Debug, Serialize)]
struct BindMount {
    destination: String,
    source: String,
    #[serde(rename = "type")]
    kind: &'static str,
    options: [&'static str; 2],
}

/// A namespace mode (`none`, `bridge`).
#[derive(Debug, Serialize)]
struct Namespace {
    nsmode: &'static str,
}

/// Per-network options; berth sets none.
#[derive(Debug, Serialize)]
struct PerNetwork {}

#[derive(Debug, Default, Serialize)]
struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<Memory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<Cpu>,
}

impl Resources {
    fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpu.is_none()
    }
}

#[derive(Debug, Serialize)]
struct Memory {
    limit: i64,
}

#[derive(Debug, Serialize)]
struct Cpu {
    quota: i64,
    period: u64,
}

#[derive(Debug, Serialize)]
struct PortMapping {
    host_ip: String,
    container_port: u16,
    /// `0`: Podman picks a free port.
    host_port: u16,
    protocol: &'static str,
}

impl<'a> CreateBody<'a> {
    /// The container for `spec`: stdin open without a terminal, an init
    /// process, no new privileges, no capabilities, the configured limits,
    /// for HTTP transports the target port published on 127.0.0.1 at a
    /// port Podman picks, the spec's bind mounts, and its network: Podman's
    /// default, none, or the workload's isolated network.
    ///
    /// With `relay`, the container runs the relay in front of the server's
    /// command line: for a stdio server it holds the server's stdio (the
    /// container has no stdin of its own); either way it hands the server
    /// `secrets`, which are mounted into the container. The environment is
    /// the spec's `env` less the variables a secret overrides, plus the
    /// secret variables with an empty value (not stored as secrets).
    pub(crate) fn new(
        spec: &'a WorkloadSpec,
        config: &PodmanConfig,
        limits: &Limits,
        init_path: Option<&str>,
        relay: Option<RelaySetup>,
        secrets: &[EnvSecret],
    ) -> Self {
        let mut labels = spec.labels.clone();
        labels.extend(own_labels(&spec.name, config.instance.as_deref()));
        let memory = limits.memory_bytes.map(|limit| Memory { limit });
        let cpu = limits.cfs_quota(CPU_PERIOD).map(|quota| Cpu {
            quota,
            period: CPU_PERIOD,
        });
        let portmappings = match (spec.transport, spec.target_port) {
            (Transport::Stdio, _) | (_, None) => Vec::new(),
            (_, Some(port)) => vec![PortMapping {
                host_ip: PUBLISH_IP.to_string(),
                container_port: port,
                host_port: 0,
                protocol: "tcp",
            }],
        };
        let mut mounts: Vec<BindMount> = spec
            .mounts
            .iter()
            .map(|m| BindMount {
                destination: m.target.clone(),
                source: m.source.to_string_lossy().into_owned(),
                kind: "bind",
                options: [if m.read_only { "ro" } else { "rw" }, "rbind"],
            })
            .collect();
        let mut env = spec.env.clone();
        for (key, value) in &spec.secret_env {
            env.remove(key);
            if value.expose().is_empty() {
                env.insert(key.clone(), String::new());
            }
        }
        // The container's own stdin: not when the relay holds the server's.
        let mut stdin = true;
        let (entrypoint, command) = match relay {
            None => (Vec::new(), spec.args.clone()),
            Some(relay) => {
                mounts.push(BindMount {
                    destination: RELAY_IN_CONTAINER.to_owned(),
                    source: relay.binary,
                    kind: "bind",
                    options: ["ro", "rbind"],
                });
                let mut entrypoint = vec![RELAY_IN_CONTAINER.to_owned()];
                for secret in secrets {
                    entrypoint.push("--env".to_owned());
                    entrypoint.push(format!("{}={}", secret.target, secret.path()));
                }
                match relay.io_dir {
                    Some(io_dir) => {
                        labels.insert(LABEL_STDIO.to_owned(), STDIO_RELAY.to_owned());
                        mounts.push(BindMount {
                            destination: IO_DIR_IN_CONTAINER.to_owned(),
                            source: io_dir,
                            kind: "bind",
                            options: ["rw", "rbind"],
                        });
                        entrypoint.push(SOCKET_IN_CONTAINER.to_owned());
                        stdin = false;
                    }
                    None => entrypoint.push(EXEC_FLAG.to_owned()),
                }
                entrypoint.push("--".to_owned());
                (entrypoint, relay.command)
            }
        };
        let (netns, networks) = match spec.network {
            NetworkAccess::None => (Some(Namespace { nsmode: "none" }), BTreeMap::new()),
            NetworkAccess::Isolated => (
                Some(Namespace { nsmode: "bridge" }),
                BTreeMap::from([(network_name(&spec.name), PerNetwork {})]),
            ),
            _ => (None, BTreeMap::new()),
        };
        Self {
            name: container_name(&spec.name),
            image: &spec.image,
            entrypoint,
            command,
            env,
            secrets: secrets.iter().map(EnvSecret::mount).collect(),
            labels,
            stdin,
            terminal: false,
            init: true,
            init_path: init_path.map(str::to_owned),
            stop_timeout: config.container.stop_grace_secs,
            no_new_privileges: true,
            cap_drop: ["ALL"],
            resource_limits: Resources { memory, cpu },
            portmappings,
            mounts,
            netns,
            networks,
        }
    }
}

/// The answer to a create.
#[derive(Debug, Deserialize)]
pub(crate) struct Created {
    #[serde(rename = "Id")]
    pub(crate) id: String,
}

/// What berth reads of `GET /libpod/containers/{name}/json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Container {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    image_name: String,
    pub(crate) state: State,
    #[serde(default)]
    config: Config,
    #[serde(default)]
    network_settings: NetworkSettings,
    #[serde(default)]
    host_config: HostConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct State {
    pub(crate) status: String,
    #[serde(default)]
    exit_code: i32,
    #[serde(default)]
    started_at: Option<String>,
    #[serde(default)]
    finished_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Config {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

type Ports = Option<BTreeMap<String, Option<Vec<HostPort>>>>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkSettings {
    #[serde(default)]
    ports: Ports,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HostConfig {
    #[serde(default)]
    port_bindings: Ports,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HostPort {
    #[serde(default)]
    host_ip: String,
    #[serde(default)]
    host_port: String,
}

impl Container {
    /// Whether the container is running or about to run again, so that a
    /// deploy must not replace it.
    pub(crate) fn is_live(&self) -> bool {
        matches!(
            self.state.status.as_str(),
            "running" | "paused" | "stopping" | "restarting"
        )
    }

    /// Whether berth's stdio relay serves the container's stdio.
    pub(crate) fn has_relay(&self) -> bool {
        self.labels().get(LABEL_STDIO).map(String::as_str) == Some(STDIO_RELAY)
    }

    /// Whether berth created this container.
    pub(crate) fn is_managed(&self) -> bool {
        labels::is_managed(self.labels())
    }

    /// Whether the container is owned by `instance` (a container from
    /// before instance labels, or a backend without an instance, counts as
    /// its own).
    pub(crate) fn is_owned_by(&self, instance: Option<&str>) -> bool {
        labels::is_owned_by(self.labels(), instance)
    }

    /// The labels the container was created with.
    pub(crate) fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.config.labels.as_ref().unwrap_or(&EMPTY)
    }

    /// The workload this container runs: its `berth.workload` label, or its
    /// name without the `berth-` prefix.
    pub(crate) fn workload(&self) -> Option<WorkloadName> {
        labels::workload_of(self.labels(), Some(&self.name))
    }

    /// The runtime state; `stopped_by_request` says whether berth stopped
    /// this instance.
    pub(crate) fn runtime_state(&self, stopped_by_request: bool) -> RuntimeState {
        match self.state.status.as_str() {
            "created" | "configured" | "initialized" => RuntimeState::Starting,
            "running" => RuntimeState::Running,
            "exited" | "stopped" => RuntimeState::Exited(self.exit_status(stopped_by_request)),
            other => RuntimeState::Unknown(other.to_owned()),
        }
    }

    /// How the container ended (meaningful once it has).
    pub(crate) fn exit_status(&self, stopped_by_request: bool) -> ExitStatus {
        ExitStatus {
            code: Some(self.state.exit_code),
            signal: None,
            stopped_by_request,
            at: parse_time(self.state.finished_at.as_deref())
                .unwrap_or_else(OffsetDateTime::now_utc),
        }
    }

    /// The published address of the container's server: the first port
    /// binding Podman reports.
    pub(crate) fn http_endpoint(&self) -> Option<SocketAddr> {
        [
            &self.network_settings.ports,
            &self.host_config.port_bindings,
        ]
        .into_iter()
        .flatten()
        .flat_map(BTreeMap::values)
        .flatten()
        .flatten()
        .find_map(|b| {
            let port = b.host_port.parse::<u16>().ok().filter(|p| *p != 0)?;
            let ip = b
                .host_ip
                .parse::<IpAddr>()
                .ok()
                .filter(|ip| !ip.is_unspecified())
                .unwrap_or(IpAddr::V4(PUBLISH_IP));
            Some(SocketAddr::new(ip, port))
        })
    }

    /// The contract's view of this container, as workload `name`.
    pub(crate) fn info(&self, name: WorkloadName, stopped_by_request: bool) -> WorkloadInfo {
        let mut info = WorkloadInfo::new(
            name,
            self.image_name.clone(),
            self.runtime_state(stopped_by_request),
        );
        info.started_at = parse_time(self.state.started_at.as_deref());
        // Every label but berth's managed and instance marks, so
        // `berth.workload`, `berth.stdio` and the image's labels are
        // reported too (the Docker backend records the keys of the spec's
        // labels and reports only those).
        info.labels = self.labels().clone();
        info.labels.remove(LABEL_MANAGED);
        info.labels.remove(LABEL_INSTANCE);
        info.http_endpoint = self.http_endpoint();
        info
    }
}

/// Reads one of Podman's RFC 3339 times; Go's zero time means "never".
fn parse_time(s: Option<&str>) -> Option<OffsetDateTime> {
    let t = OffsetDateTime::parse(s?, &Rfc3339).ok()?;
    (t.year() > 1).then_some(t)
}

#[cfg(test)]
mod tests;
