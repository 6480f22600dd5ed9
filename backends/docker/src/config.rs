//! The Docker backend's configuration (`[docker]` in berth's config file).

use serde::{Deserialize, Serialize};

/// The engine socket used when berth hands in none.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// Settings of the Docker backend.
///
/// The backend never reads the environment: berth resolves `DOCKER_HOST`
/// itself and passes it in as [`socket`](Self::socket).
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
    /// Seconds a stop waits after SIGTERM before the engine kills the
    /// container.
    pub stop_grace_secs: u64,
    /// Memory limit of each workload container in bytes; `0` sets none.
    pub memory_limit_bytes: u64,
    /// CPU limit of each workload container in cores (`0.5` = half a core);
    /// `0` sets none.
    pub cpu_limit: f64,
    /// When a deploy pulls the workload's image from its registry.
    pub pull: PullPolicy,
    /// Seconds a pull may take before the deploy fails.
    pub pull_timeout_secs: u64,
    /// The image `npx://` packages are installed on (it needs `npm` and
    /// `npx`); pulled as [`pull`](Self::pull) says when absent.
    pub node_base_image: String,
    /// The image `uvx://` packages are installed on (it needs `pip`, which
    /// installs `uv`); pulled as [`pull`](Self::pull) says when absent.
    pub python_base_image: String,
    /// Seconds the build of a package image may take before the deploy
    /// fails.
    pub build_timeout_secs: u64,
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
            stop_grace_secs: 10,
            memory_limit_bytes: 1024 * 1024 * 1024,
            cpu_limit: 1.0,
            pull: PullPolicy::IfNotPresent,
            pull_timeout_secs: 300,
            node_base_image: berth_container::DEFAULT_NODE_BASE_IMAGE.to_owned(),
            python_base_image: berth_container::DEFAULT_PYTHON_BASE_IMAGE.to_owned(),
            build_timeout_secs: 600,
        }
    }
}

impl DockerConfig {
    /// The socket to connect to, as configured or the default.
    pub fn socket(&self) -> &str {
        self.socket.as_deref().unwrap_or(DEFAULT_SOCKET)
    }

    /// The memory limit for the engine, `None` for no limit.
    pub(crate) fn memory(&self) -> Result<Option<i64>, String> {
        match self.memory_limit_bytes {
            0 => Ok(None),
            n => i64::try_from(n)
                .map(Some)
                .map_err(|_| format!("memory_limit_bytes {n} is too large")),
        }
    }

    /// Checks the configured base images of package images.
    pub(crate) fn check_base_images(&self) -> Result<(), String> {
        berth_container::check_base_images(&self.node_base_image, &self.python_base_image)
    }

    /// The CPU limit for the engine in billionths of a core, `None` for no
    /// limit.
    pub(crate) fn nano_cpus(&self) -> Result<Option<i64>, String> {
        let cores = self.cpu_limit;
        if !(0.0..=1_000_000.0).contains(&cores) {
            return Err(format!(
                "cpu_limit must be a number of cores between 0 and 1000000, not {cores}"
            ));
        }
        // In range (NaN is not), so the product fits in an i64.
        let nanos = (cores * 1e9).round() as i64;
        Ok((nanos > 0).then_some(nanos))
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
        assert_eq!(config.stop_grace_secs, 10);
        assert_eq!(config.memory(), Ok(Some(1 << 30)));
        assert_eq!(config.nano_cpus(), Ok(Some(1_000_000_000)));
        assert_eq!(config.pull, PullPolicy::IfNotPresent);
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
        let config =
            parse(r#"{"node_base_image":"localhost/berth-test/fake-node:latest"}"#).expect("parse");
        assert_eq!(
            config.node_base_image,
            "localhost/berth-test/fake-node:latest"
        );
        assert!(config.check_base_images().is_ok());
        let bad = parse(r#"{"python_base_image":"python AS x"}"#).expect("parse");
        let err = bad.check_base_images().unwrap_err();
        assert!(
            err.contains("python_base_image") && err.contains("invalid base image"),
            "{err}"
        );
    }

    #[test]
    fn zero_limits_mean_none() {
        let config = parse(r#"{"memory_limit_bytes":0,"cpu_limit":0}"#).expect("parse");
        assert_eq!(config.memory(), Ok(None));
        assert_eq!(config.nano_cpus(), Ok(None));
        let half = parse(r#"{"cpu_limit":0.5,"pull":"never","socket":"/s"}"#).expect("parse");
        assert_eq!(half.nano_cpus(), Ok(Some(500_000_000)));
        assert_eq!(half.pull, PullPolicy::Never);
        assert_eq!(half.socket(), "/s");
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
        assert_eq!(config.nano_cpus(), Ok(Some(2_000_000_000)));
    }

    #[test]
    fn bad_values_are_refused() {
        let err = parse(r#"{"stop_grace":1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert!(parse(r#"{"pull":"sometimes"}"#).is_err());
        let negative = parse(r#"{"cpu_limit":-1}"#).expect("parse");
        assert!(negative.nano_cpus().is_err());
        let huge = parse(r#"{"memory_limit_bytes":18446744073709551615}"#).expect("parse");
        assert!(huge.memory().is_err());
    }
}
