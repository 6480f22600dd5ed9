//! The Podman backend's configuration (`[podman]` in berth's config file).

use serde::{Deserialize, Serialize};

/// The socket used when [`PodmanConfig::socket`] is not set: rootful
/// Podman's API socket.
pub const DEFAULT_SOCKET: &str = "unix:///run/podman/podman.sock";

/// Settings of the Podman backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PodmanConfig {
    /// Where Podman's API listens: `unix:///path/podman.sock`, a bare
    /// absolute socket path, or `tcp://host:port`; unset means
    /// [`DEFAULT_SOCKET`].
    ///
    /// The backend never reads the environment: berth chooses the socket
    /// (from `CONTAINER_HOST`, `$XDG_RUNTIME_DIR/podman/podman.sock` or
    /// `/run/podman/podman.sock`) and passes it here.
    pub socket: Option<String>,
    /// The berth instance that owns the containers this backend makes
    /// (label `berth.instance`). berth sets it from its state directory; it
    /// is not read from the config file. With it, the backend sees only
    /// this instance's containers (and those made before instance labels):
    /// two berths on one engine never list, adopt, stop or remove each
    /// other's. Without it, every berth-managed container.
    #[serde(skip)]
    pub instance: Option<String>,
    /// Seconds a stop waits after SIGTERM before Podman kills the container.
    /// Recorded in each container when it is created, so a change applies to
    /// containers deployed afterwards.
    pub stop_grace_secs: u64,
    /// The memory limit of each container, in bytes; `0` sets none.
    pub memory_limit_bytes: u64,
    /// The CPU limit of each container, in CPUs (`0.5` is half a CPU);
    /// `0` sets none.
    pub cpu_limit: f64,
    /// The image `npx://` packages are installed on (it needs `npm` and
    /// `npx`); pulled when absent.
    pub node_base_image: String,
    /// The image `uvx://` packages are installed on (it needs `pip`, which
    /// installs `uv`); pulled when absent.
    pub python_base_image: String,
    /// Seconds the build of a package image may take before the deploy
    /// fails.
    pub build_timeout_secs: u64,
    /// The init binary Podman runs as PID 1 of each container (libpod's
    /// `init_path`); it must be a static executable. Unset: Podman's own
    /// (`/usr/libexec/podman/catatonit`) when it is installed, else the
    /// first of `/usr/bin/catatonit`, `/usr/bin/tini-static`,
    /// `/usr/bin/docker-init` found on the host (Debian's `docker.io`
    /// brings `tini`, never `catatonit`); checked when berth connects.
    pub init_path: Option<std::path::PathBuf>,
    /// Where the backend installs the stdio relay and keeps the socket
    /// directory of each stdio container (see the crate docs). Not read
    /// from berth's config file: berth sets it to `podman/` in its state
    /// directory. Without it, stdio workloads are refused.
    #[serde(skip)]
    pub stdio_dir: Option<std::path::PathBuf>,
}

impl Default for PodmanConfig {
    fn default() -> Self {
        Self {
            socket: None,
            instance: None,
            stop_grace_secs: 10,
            memory_limit_bytes: 1024 * 1024 * 1024,
            cpu_limit: 1.0,
            node_base_image: berth_container::DEFAULT_NODE_BASE_IMAGE.to_owned(),
            python_base_image: berth_container::DEFAULT_PYTHON_BASE_IMAGE.to_owned(),
            build_timeout_secs: 600,
            init_path: None,
            stdio_dir: None,
        }
    }
}

impl PodmanConfig {
    /// The socket to connect to, as written or the default.
    pub fn socket(&self) -> &str {
        self.socket.as_deref().unwrap_or(DEFAULT_SOCKET)
    }

    /// Checks the configured base images of package images.
    pub(crate) fn check_base_images(&self) -> Result<(), String> {
        berth_container::check_base_images(&self.node_base_image, &self.python_base_image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_default() {
        let config: PodmanConfig = serde_json::from_str("{}").expect("parse");
        assert_eq!(config, PodmanConfig::default());
        assert_eq!(config.stop_grace_secs, 10);
        assert_eq!(config.memory_limit_bytes, 1 << 30);
        assert_eq!(config.cpu_limit, 1.0);
        assert_eq!(config.socket(), DEFAULT_SOCKET);
        assert_eq!(config.node_base_image, "docker.io/library/node:22-alpine");
        assert_eq!(
            config.python_base_image,
            "docker.io/library/python:3.12-slim"
        );
        assert_eq!(config.build_timeout_secs, 600);
        assert!(config.check_base_images().is_ok());
    }

    #[test]
    fn base_images_are_configurable_and_checked() {
        let config: PodmanConfig = serde_json::from_str(
            r#"{"python_base_image":"localhost/berth-test/fake-python:latest"}"#,
        )
        .expect("parse");
        assert_eq!(
            config.python_base_image,
            "localhost/berth-test/fake-python:latest"
        );
        assert!(config.check_base_images().is_ok());
        let bad: PodmanConfig =
            serde_json::from_str(r#"{"node_base_image":"node\nRUN id"}"#).expect("parse");
        let err = bad.check_base_images().unwrap_err();
        assert!(err.contains("node_base_image"), "{err}");
    }

    #[test]
    fn fields_are_read() {
        let config: PodmanConfig = serde_json::from_str(
            r#"{"socket":"/tmp/p.sock","stop_grace_secs":3,"memory_limit_bytes":0,"cpu_limit":0.5}"#,
        )
        .expect("parse");
        assert_eq!(config.socket(), "/tmp/p.sock");
        assert_eq!(config.stop_grace_secs, 3);
        assert_eq!(config.memory_limit_bytes, 0);
        assert_eq!(config.cpu_limit, 0.5);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<PodmanConfig>(r#"{"sock":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
