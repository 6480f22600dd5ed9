//! The Podman backend's configuration (`[podman]` in berth's config file).

use berth_container::ContainerConfig;
use serde::{Deserialize, Serialize};

/// The socket used when [`PodmanConfig::socket`] is not set: rootful
/// Podman's API socket.
pub const DEFAULT_SOCKET: &str = "unix:///run/podman/podman.sock";

/// Settings of the Podman backend.
///
/// The settings every container engine takes are
/// [`container`](Self::container)'s, flattened: `[podman]` has
/// `stop_grace_secs`, `memory_limit_bytes`, … as keys of its own. A key
/// neither takes is refused (serde supports `deny_unknown_fields` with
/// `flatten` when, as here, the flattened value is a struct).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Grace period, limits, base images and build timeout.
    #[serde(flatten)]
    pub container: ContainerConfig,
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

impl PodmanConfig {
    /// The socket to connect to, as written or the default.
    pub fn socket(&self) -> &str {
        self.socket.as_deref().unwrap_or(DEFAULT_SOCKET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<PodmanConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn empty_config_is_the_default() {
        let config = parse("{}").expect("parse");
        assert_eq!(config, PodmanConfig::default());
        assert_eq!(config.socket(), DEFAULT_SOCKET);
        assert_eq!(config.container, ContainerConfig::default());
        assert_eq!(config.init_path, None);
    }

    #[test]
    fn fields_are_read() {
        let config = parse(
            r#"{"socket":"/tmp/p.sock","stop_grace_secs":3,"memory_limit_bytes":0,"cpu_limit":0.5,
                "python_base_image":"localhost/berth-test/fake-python:latest",
                "init_path":"/usr/bin/tini-static"}"#,
        )
        .expect("parse");
        assert_eq!(config.socket(), "/tmp/p.sock");
        assert_eq!(
            config.init_path.as_deref(),
            Some(std::path::Path::new("/usr/bin/tini-static"))
        );
        assert_eq!(
            config.container,
            ContainerConfig {
                stop_grace_secs: 3,
                memory_limit_bytes: 0,
                cpu_limit: 0.5,
                python_base_image: "localhost/berth-test/fake-python:latest".into(),
                ..ContainerConfig::default()
            }
        );
    }

    /// `deny_unknown_fields` holds with the flattened settings: a key no
    /// field takes is refused, next to shared keys or alone; so are
    /// Docker-only keys and keys berth sets itself.
    #[test]
    fn unknown_fields_are_refused() {
        for json in [
            r#"{"sock":"x"}"#,
            r#"{"cpu_limit":1,"memory_limit":5}"#,
            r#"{"pull":"never"}"#,
            r#"{"pull_timeout_secs":5}"#,
            r#"{"stdio_dir":"/tmp"}"#,
            r#"{"instance":"someone-else"}"#,
            r#"{"container":{"cpu_limit":1}}"#,
        ] {
            let err = parse(json).unwrap_err();
            assert!(err.to_string().contains("unknown field"), "{json}: {err}");
        }
    }
}
