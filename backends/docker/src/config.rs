//! The Docker backend's configuration (`[docker]` in berth's config file).

use berth_container::ContainerConfig;
use serde::{Deserialize, Serialize};

/// The engine socket used when berth hands in none.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// Settings of the Docker backend.
///
/// The backend never reads the environment: berth resolves `DOCKER_HOST`
/// itself and passes it in as [`socket`](Self::socket).
///
/// The settings every container engine takes are
/// [`container`](Self::container)'s, flattened: `[docker]` has
/// `stop_grace_secs`, `memory_limit_bytes`, … as keys of its own. A key
/// neither takes is refused (serde supports `deny_unknown_fields` with
/// `flatten` when, as here, the flattened value is a struct).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// Where the Docker engine API listens: a socket path
    /// (`/var/run/docker.sock`), `unix:///path`, or `tcp://host:port` /
    /// `http://host:port` (plain HTTP, no TLS). `None` means
    /// [`DEFAULT_SOCKET`]; berth passes `DOCKER_HOST` here when it is set.
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
    /// When a deploy pulls the workload's image (and a package's base
    /// image) from its registry.
    pub pull: PullPolicy,
    /// Seconds a pull may take before the deploy fails.
    pub pull_timeout_secs: u64,
}

/// When a deploy pulls the workload's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Pull only when the engine does not have the image.
    #[default]
    IfNotPresent,
    /// Pull on every deploy; use the local copy if the pull fails.
    Always,
    /// Never pull: an image the engine does not have fails the deploy.
    Never,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            socket: None,
            instance: None,
            container: ContainerConfig::default(),
            pull: PullPolicy::IfNotPresent,
            pull_timeout_secs: 300,
        }
    }
}

impl DockerConfig {
    /// The socket to connect to, as configured or the default.
    pub fn socket(&self) -> &str {
        self.socket.as_deref().unwrap_or(DEFAULT_SOCKET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<DockerConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn empty_config_is_the_default() {
        let config = parse("{}").expect("parse");
        assert_eq!(config, DockerConfig::default());
        assert_eq!(config.socket(), DEFAULT_SOCKET);
        assert_eq!(config.container, ContainerConfig::default());
        assert_eq!(config.pull, PullPolicy::IfNotPresent);
        assert_eq!(config.pull_timeout_secs, 300);
    }

    /// The shared keys sit at the top level of `[docker]`, next to the
    /// Docker-only ones.
    #[test]
    fn shared_keys_are_flattened() {
        let config = parse(
            r#"{"cpu_limit":0.5,"pull":"never","socket":"/s","stop_grace_secs":3,
                "memory_limit_bytes":0,"node_base_image":"localhost/berth-test/fake-node:latest",
                "build_timeout_secs":60,"pull_timeout_secs":5}"#,
        )
        .expect("parse");
        assert_eq!(config.pull, PullPolicy::Never);
        assert_eq!(config.socket(), "/s");
        assert_eq!(config.pull_timeout_secs, 5);
        assert_eq!(
            config.container,
            ContainerConfig {
                stop_grace_secs: 3,
                memory_limit_bytes: 0,
                cpu_limit: 0.5,
                node_base_image: "localhost/berth-test/fake-node:latest".into(),
                build_timeout_secs: 60,
                ..ContainerConfig::default()
            }
        );
        let limits = config.container.check().expect("valid");
        assert_eq!(limits.memory_bytes, None);
        assert_eq!(limits.nano_cpus(), Some(500_000_000));
    }

    /// berth layers its config file over `Serialized::defaults`; `None`
    /// and every default must survive that.
    #[test]
    fn defaults_survive_figment_and_toml_overrides_them() {
        use figment::Figment;
        use figment::providers::{Format, Serialized, Toml};

        let config: DockerConfig = Figment::from(Serialized::defaults(DockerConfig::default()))
            .extract()
            .expect("extract defaults");
        assert_eq!(config, DockerConfig::default());
        let config: DockerConfig = Figment::from(Serialized::defaults(DockerConfig::default()))
            .merge(Toml::string(
                "socket = \"unix:///run/user/1000/docker.sock\"\npull = \"always\"\ncpu_limit = 2",
            ))
            .extract()
            .expect("extract");
        assert_eq!(config.socket(), "unix:///run/user/1000/docker.sock");
        assert_eq!(config.pull, PullPolicy::Always);
        assert_eq!(
            config.container.check().expect("valid").nano_cpus(),
            Some(2_000_000_000)
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let err = parse(r#"{"stop_grace":1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert!(parse(r#"{"pull":"sometimes"}"#).is_err());
        let negative = parse(r#"{"cpu_limit":-1}"#).expect("parse");
        assert!(negative.container.check().is_err());
        let huge = parse(r#"{"memory_limit_bytes":18446744073709551615}"#).expect("parse");
        assert!(huge.container.check().is_err());
    }

    /// `deny_unknown_fields` holds with the flattened settings: a key no
    /// field takes is refused, next to shared keys or alone, from JSON and
    /// through figment as berth reads its file; so are Podman-only keys and
    /// keys berth sets itself.
    #[test]
    fn unknown_keys_are_refused() {
        use figment::Figment;
        use figment::providers::{Format, Serialized, Toml};

        for json in [
            r#"{"stop_grace":1}"#,
            r#"{"cpu_limit":1,"memory_limit":5}"#,
            r#"{"init_path":"/usr/bin/tini-static"}"#,
            r#"{"instance":"someone-else"}"#,
            r#"{"container":{"cpu_limit":1}}"#,
        ] {
            let err = parse(json).unwrap_err();
            assert!(err.to_string().contains("unknown field"), "{json}: {err}");
        }
        let err = Figment::from(Serialized::defaults(DockerConfig::default()))
            .merge(Toml::string("cpu_limit = 2\nnode_base = \"x\""))
            .extract::<DockerConfig>()
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `node_base`"),
            "{err}"
        );
    }
}
