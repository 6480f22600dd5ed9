//! The one place that names concrete backends: configuration → `Arc<dyn Backend>`.

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

/// Builds the backend `config.runtime` selects. `auto` tries Docker, then
/// Podman (only sockets that exist, each failing fast), then falls back to
/// native processes. An explicitly chosen engine that does not answer is an
/// error naming the socket tried.
pub async fn build(
    config: &Config,
    state_dir: &Path,
    base_env: BTreeMap<String, String>,
    sockets: &EngineSockets,
) -> Result<Arc<dyn Backend>, RuntimeError> {
    let process = || async {
        let backend = ProcessBackend::new(
            config.process.clone(),
            state_dir.join("process"),
            base_env.clone(),
        )
        .await?;
        Ok::<Arc<dyn Backend>, RuntimeError>(Arc::new(backend))
    };
    match config.runtime {
        RuntimeKind::Process => process().await,
        #[cfg(feature = "backend-docker")]
        RuntimeKind::Docker => {
            docker(
                config,
                state_dir,
                sockets.docker.first().map(String::as_str),
            )
            .await
        }
        #[cfg(feature = "backend-podman")]
        RuntimeKind::Podman => {
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
            .await
        }
        #[cfg(not(all(feature = "backend-docker", feature = "backend-podman")))]
        #[allow(unreachable_patterns)]
        RuntimeKind::Docker | RuntimeKind::Podman => Err(RuntimeError::InvalidSpec(format!(
            "this berth was built without the {:?} backend",
            config.runtime
        ))),
        RuntimeKind::Auto => {
            #[cfg(feature = "backend-docker")]
            for s in sockets.docker.iter().filter(|s| present(s)) {
                match docker(config, state_dir, Some(s)).await {
                    Ok(b) => return Ok(b),
                    Err(err) => {
                        warn!(socket = %s, error = %err, "Docker socket present but not answering.")
                    }
                }
            }
            #[cfg(feature = "backend-podman")]
            for s in sockets.podman.iter().filter(|s| present(s)) {
                match podman(config, state_dir, Some(s)).await {
                    Ok(b) => return Ok(b),
                    Err(err) => {
                        warn!(socket = %s, error = %err, "Podman socket present but not answering.")
                    }
                }
            }
            info!("No container engine answers; running workloads as native processes.");
            let _ = sockets;
            process().await
        }
    }
}
