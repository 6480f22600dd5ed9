//! The runtimes berth runs workloads on, and the one place that names
//! concrete backends: configuration and discovery → [`Runtimes`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use berth_backend_process::ProcessBackend;
use berth_runtime_api::{Backend, RuntimeError};
use tracing::{info, warn};

use crate::config::{Config, RuntimeKind};

/// Engine sockets found in berth's environment, in the order to try them
/// (main.rs reads the environment; backends never do).
#[derive(Debug, Clone, Default)]
pub struct EngineSockets {
    /// `DOCKER_HOST`, then the default Docker socket.
    pub docker: Vec<String>,
    /// `CONTAINER_HOST`, then the user's and the system's Podman sockets.
    pub podman: Vec<String>,
}

/// Whether a `unix://` socket path exists (other schemes are assumed to).
fn present(socket: &str) -> bool {
    socket
        .strip_prefix("unix://")
        .is_none_or(|p| Path::new(p).exists())
}

/// The instance id container backends label their containers with.
#[cfg(any(feature = "backend-docker", feature = "backend-podman"))]
fn instance(state_dir: &Path) -> Result<String, RuntimeError> {
    crate::state::instance_id(state_dir)
        .map_err(|e| RuntimeError::backend("reading berth's instance id", e))
}

#[cfg(feature = "backend-docker")]
async fn docker(
    config: &Config,
    state_dir: &Path,
    socket: Option<&str>,
) -> Result<Arc<dyn Backend>, RuntimeError> {
    let mut c = config.docker.clone();
    c.instance = Some(instance(state_dir)?);
    if c.socket.is_none() {
        c.socket = socket.map(str::to_owned);
    }
    Ok(Arc::new(
        berth_backend_docker::DockerBackend::connect(c).await?,
    ))
}

#[cfg(feature = "backend-podman")]
async fn podman(
    config: &Config,
    state_dir: &Path,
    socket: Option<&str>,
) -> Result<Arc<dyn Backend>, RuntimeError> {
    let mut c = config.podman.clone();
    c.stdio_dir = Some(state_dir.join("podman"));
    c.instance = Some(instance(state_dir)?);
    if c.socket.is_none() {
        c.socket = socket.map(str::to_owned);
    }
    Ok(Arc::new(
        berth_backend_podman::PodmanBackend::connect(c).await?,
    ))
}

/// Connects the runtimes of this berth. The configured `runtime` is the
/// default; an explicitly chosen engine that does not answer is an error
/// naming the socket tried. `auto` takes Docker, then Podman (only sockets
/// that exist, each failing fast), then native processes. With
/// `discover_runtimes`, every other engine that answers is added too, and
/// native processes always are (they need no daemon).
pub async fn connect(
    config: &Config,
    state_dir: &Path,
    base_env: BTreeMap<String, String>,
    sockets: &EngineSockets,
) -> Result<Runtimes, RuntimeError> {
    let process = || async {
        let backend = ProcessBackend::new(
            config.process.clone(),
            state_dir.join("process"),
            base_env.clone(),
        )
        .await?;
        Ok::<Arc<dyn Backend>, RuntimeError>(Arc::new(backend))
    };
    let mut all: Vec<Arc<dyn Backend>> = Vec::new();
    match config.runtime {
        RuntimeKind::Process => all.push(process().await?),
        #[cfg(feature = "backend-docker")]
        RuntimeKind::Docker => all.push(
            docker(
                config,
                state_dir,
                sockets.docker.first().map(String::as_str),
            )
            .await?,
        ),
        #[cfg(feature = "backend-podman")]
        RuntimeKind::Podman => all.push(
            podman(
                config,
                state_dir,
                sockets
                    .podman
                    .iter()
                    .find(|s| present(s))
                    .or(sockets.podman.first())
                    .map(String::as_str),
            )
            .await?,
        ),
        #[cfg(not(all(feature = "backend-docker", feature = "backend-podman")))]
        #[allow(unreachable_patterns)]
        RuntimeKind::Docker | RuntimeKind::Podman => {
            return Err(RuntimeError::InvalidSpec(format!(
                "this berth was built without the {:?} backend",
                config.runtime
            )));
        }
        RuntimeKind::Auto => {}
    }
    if config.runtime == RuntimeKind::Auto || config.discover_runtimes {
        let have = |all: &Vec<Arc<dyn Backend>>, kind: &str| all.iter().any(|b| b.kind() == kind);
        #[cfg(feature = "backend-docker")]
        if !have(&all, "docker") {
            for s in sockets.docker.iter().filter(|s| present(s)) {
                match docker(config, state_dir, Some(s)).await {
                    Ok(b) => {
                        all.push(b);
                        break;
                    }
                    Err(err) => {
                        warn!(socket = %s, error = %err, "Docker socket present but not answering.")
                    }
                }
            }
        }
        #[cfg(feature = "backend-podman")]
        if !have(&all, "podman") {
            for s in sockets.podman.iter().filter(|s| present(s)) {
                match podman(config, state_dir, Some(s)).await {
                    Ok(b) => {
                        all.push(b);
                        break;
                    }
                    Err(err) => {
                        warn!(socket = %s, error = %err, "Podman socket present but not answering.")
                    }
                }
            }
        }
        if all.is_empty() {
            info!("No container engine answers; running workloads as native processes.");
        }
        if !have(&all, PROCESS) {
            all.push(process().await?);
        }
    }
    let _ = sockets;
    Ok(Runtimes::new(all))
}

/// Whether a configured or discovered runtime answered, and its version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeStatus {
    /// The runtime's name (`docker`, `podman`, `process`).
    pub name: String,
    /// Whether workloads that name no runtime run here.
    pub default: bool,
    /// Whether the runtime answers now.
    pub healthy: bool,
    /// The runtime's version (engine version, kernel release) when it answers.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Why it does not answer.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// Every runtime this berth runs workloads on, and the default one.
/// Cheap to clone.
#[derive(Clone)]
pub struct Runtimes {
    all: Arc<Vec<Arc<dyn Backend>>>,
    default: usize,
}

impl std::fmt::Debug for Runtimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtimes")
            .field("all", &self.names())
            .field("default", &self.default().kind())
            .finish()
    }
}

/// The scheme of images only native processes run.
const NATIVE_ONLY: &str = "exec://";

impl Runtimes {
    /// The runtimes in `all` (one per kind: later duplicates are dropped),
    /// the first being the default.
    ///
    /// # Panics
    /// If `all` is empty: berth always has at least one runtime.
    pub fn new(all: Vec<Arc<dyn Backend>>) -> Self {
        assert!(!all.is_empty(), "at least one runtime");
        let mut unique: Vec<Arc<dyn Backend>> = Vec::new();
        for b in all {
            if !unique.iter().any(|u| u.kind() == b.kind()) {
                unique.push(b);
            }
        }
        Self {
            all: Arc::new(unique),
            default: 0,
        }
    }

    /// One runtime, the default.
    pub fn single(backend: Arc<dyn Backend>) -> Self {
        Self::new(vec![backend])
    }

    /// The runtime workloads run on when they name none.
    pub fn default(&self) -> &Arc<dyn Backend> {
        &self.all[self.default]
    }

    /// The runtime called `name`, if this berth has it.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Backend>> {
        self.all.iter().find(|b| b.kind() == name)
    }

    /// Every runtime, the default first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Backend>> {
        self.all.iter()
    }

    /// The runtimes' names, the default first.
    pub fn names(&self) -> Vec<&'static str> {
        self.all.iter().map(|b| b.kind()).collect()
    }

    /// The runtime a new workload runs on: the one it names, else the only
    /// one that can run its image (`exec://` runs natively), else the
    /// default. Whether that runtime accepts the image is its own check.
    pub fn choose(&self, requested: &str, image: &str) -> Result<&Arc<dyn Backend>, String> {
        if !requested.is_empty() {
            return self.get(requested).ok_or_else(|| {
                format!(
                    "runtime `{}` is not available here; this berth runs workloads on: {}",
                    crate::logging::escape_controls(requested),
                    self.names().join(", ")
                )
            });
        }
        if image.starts_with(NATIVE_ONLY) {
            return self.get(PROCESS).ok_or_else(|| {
                format!("an {NATIVE_ONLY} image runs as a native process, and this berth has no process runtime")
            });
        }
        Ok(self.default())
    }

    /// Asks every runtime whether it answers.
    pub async fn status(&self) -> Vec<RuntimeStatus> {
        let checks = self.all.iter().enumerate().map(|(i, b)| async move {
            let (healthy, version, error) = match b.health().await {
                Ok(h) => (true, h.version, String::new()),
                Err(e) => (false, String::new(), crate::logging::error_chain(&e)),
            };
            RuntimeStatus {
                name: b.kind().to_owned(),
                default: i == self.default,
                healthy,
                version,
                error,
            }
        });
        futures::future::join_all(checks).await
    }

    /// Lets every runtime shut down its instances.
    pub async fn shutdown(&self) {
        futures::future::join_all(self.all.iter().map(|b| b.shutdown())).await;
    }
}

/// The native process runtime's name.
pub const PROCESS: &str = "process";
