//! The settings every container engine takes: `ContainerConfig`, flattened
//! into `[docker]` and `[podman]` of berth's config file.

use serde::{Deserialize, Serialize};

use crate::package::{DEFAULT_NODE_BASE_IMAGE, DEFAULT_PYTHON_BASE_IMAGE, check_base_images};

/// The settings the container engines share, flattened into each engine's
/// config (`DockerConfig`, `PodmanConfig`), so that `[docker]` and
/// `[podman]` take the same keys for them.
///
/// Not `deny_unknown_fields` itself: serde hands a flattened struct only
/// the keys it knows, so the engine's config, which does deny unknown
/// fields, sees every other key and refuses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerConfig {
    /// Seconds a stop waits after SIGTERM before the engine kills the
    /// container. Podman records it in each container when it is created,
    /// so a change applies to containers deployed afterwards.
    pub stop_grace_secs: u64,
    /// Memory limit of each workload container in bytes; `0` sets none.
    pub memory_limit_bytes: u64,
    /// CPU limit of each workload container in cores (`0.5` = half a core);
    /// `0` sets none.
    pub cpu_limit: f64,
    /// The image `npx://` packages are installed on (it needs `npm` and
    /// `npx`); pulled when absent (on Docker, as its `pull` policy says).
    pub node_base_image: String,
    /// The image `uvx://` packages are installed on (it needs `pip`, which
    /// installs `uv`); pulled when absent (on Docker, as its `pull` policy
    /// says).
    pub python_base_image: String,
    /// Seconds the build of a package image may take before the deploy
    /// fails.
    pub build_timeout_secs: u64,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        Self {
            stop_grace_secs: 10,
            memory_limit_bytes: 1024 * 1024 * 1024,
            cpu_limit: 1.0,
            node_base_image: DEFAULT_NODE_BASE_IMAGE.to_owned(),
            python_base_image: DEFAULT_PYTHON_BASE_IMAGE.to_owned(),
            build_timeout_secs: 600,
        }
    }
}

/// A container's resource limits, checked: what the engines turn into
/// their own units.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// Bytes of memory; `None` for no limit.
    pub memory_bytes: Option<i64>,
    /// CPU cores, more than zero; `None` for no limit.
    pub cpus: Option<f64>,
}

impl Limits {
    /// The CPU limit in billionths of a core (Docker's `NanoCpus`), `None`
    /// for no limit (or one that rounds to nothing).
    pub fn nano_cpus(&self) -> Option<i64> {
        // Checked to be at most a million cores, so the product fits.
        let nanos = (self.cpus? * 1e9).round() as i64;
        (nanos > 0).then_some(nanos)
    }

    /// The CPU limit as a CFS quota in microseconds per `period`
    /// microseconds (libpod's `cpu.quota`), at least 1 ms; `None` for no
    /// limit.
    pub fn cfs_quota(&self, period: u64) -> Option<i64> {
        // Saturating float-to-int conversion.
        Some(((self.cpus? * period as f64) as i64).max(1_000))
    }
}

impl ContainerConfig {
    /// Checks the settings and returns the limits; the error names the
    /// setting at fault.
    pub fn check(&self) -> Result<Limits, String> {
        let memory_bytes = match self.memory_limit_bytes {
            0 => None,
            n => {
                Some(i64::try_from(n).map_err(|_| format!("memory_limit_bytes {n} is too large"))?)
            }
        };
        let cores = self.cpu_limit;
        if !(0.0..=1_000_000.0).contains(&cores) {
            return Err(format!(
                "cpu_limit must be a number of cores between 0 and 1000000, not {cores}"
            ));
        }
        check_base_images(&self.node_base_image, &self.python_base_image)?;
        Ok(Limits {
            memory_bytes,
            cpus: (cores > 0.0).then_some(cores),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ContainerConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn empty_config_is_the_default() {
        let config = parse("{}").expect("parse");
        assert_eq!(config, ContainerConfig::default());
        assert_eq!(config.stop_grace_secs, 10);
        assert_eq!(config.memory_limit_bytes, 1 << 30);
        assert_eq!(config.cpu_limit, 1.0);
        assert_eq!(config.node_base_image, "docker.io/library/node:22-alpine");
        assert_eq!(
            config.python_base_image,
            "docker.io/library/python:3.12-slim"
        );
        assert_eq!(config.build_timeout_secs, 600);
        let limits = config.check().expect("the defaults are valid");
        assert_eq!(limits.memory_bytes, Some(1 << 30));
        assert_eq!(limits.nano_cpus(), Some(1_000_000_000));
        assert_eq!(limits.cfs_quota(100_000), Some(100_000));
    }

    #[test]
    fn base_images_are_configurable_and_checked() {
        let config =
            parse(r#"{"node_base_image":"localhost/berth-test/fake-node:latest"}"#).expect("parse");
        assert_eq!(
            config.node_base_image,
            "localhost/berth-test/fake-node:latest"
        );
        assert!(config.check().is_ok());
        let bad = parse(r#"{"python_base_image":"python AS x"}"#).expect("parse");
        let err = bad.check().unwrap_err();
        assert!(
            err.contains("python_base_image") && err.contains("invalid base image"),
            "{err}"
        );
        let bad = parse(r#"{"node_base_image":"node\nRUN id"}"#).expect("parse");
        let err = bad.check().unwrap_err();
        assert!(err.contains("node_base_image"), "{err}");
    }

    #[test]
    fn zero_limits_mean_none() {
        let config = parse(r#"{"memory_limit_bytes":0,"cpu_limit":0}"#).expect("parse");
        assert_eq!(config.check(), Ok(Limits::default()));
        let half = parse(r#"{"cpu_limit":0.5}"#).expect("parse");
        let limits = half.check().expect("valid");
        assert_eq!(limits.nano_cpus(), Some(500_000_000));
        assert_eq!(limits.cfs_quota(100_000), Some(50_000));
        let tiny = Limits {
            memory_bytes: None,
            cpus: Some(1e-12),
        };
        assert_eq!(tiny.nano_cpus(), None, "rounds to nothing");
        assert_eq!(tiny.cfs_quota(100_000), Some(1_000), "at least 1 ms");
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(r#"{"cpu_limit":"many"}"#).is_err());
        for json in [
            r#"{"cpu_limit":-1}"#,
            r#"{"cpu_limit":1000001}"#,
            r#"{"memory_limit_bytes":18446744073709551615}"#,
        ] {
            let config = parse(json).expect("parse");
            assert!(config.check().is_err(), "{json}");
        }
        let err = parse(r#"{"memory_limit_bytes":18446744073709551615}"#)
            .expect("parse")
            .check()
            .unwrap_err();
        assert!(err.contains("memory_limit_bytes"), "{err}");
    }
}
