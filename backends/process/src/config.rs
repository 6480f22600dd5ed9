//! The process backend's configuration (`[process]` in berth's config file).

use serde::{Deserialize, Serialize};

/// Settings of the native process backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessConfig {
    /// Commands workloads may run; empty allows every command.
    ///
    /// Entries are command names (`npx`, `uvx`), which allow the `npx://` and
    /// `uvx://` schemes, or absolute paths (`/bin/cat`), which allow that
    /// `exec://` program. Paths are compared as written, without resolving
    /// symbolic links or `..`.
    pub allowed_commands: Vec<String>,
    /// Seconds between the SIGTERM sent to a workload's process group on stop
    /// and the SIGKILL that follows if anything in the group still runs.
    pub stop_grace_secs: u64,
    /// Size in bytes at which a workload's log file `<name>.log` is rotated to
    /// `<name>.log.1`; `0` never rotates.
    pub log_max_bytes: u64,
    /// How many rotated log files (`<name>.log.1` … `<name>.log.N`) are kept
    /// next to the current one.
    pub log_keep: u32,
    /// The program that runs `npx://` packages, as a name looked up in the
    /// children's `PATH` or an absolute path.
    pub npx_command: String,
    /// The program that runs `uvx://` packages, as a name looked up in the
    /// children's `PATH` or an absolute path.
    pub uvx_command: String,
    /// Variables of berth's own environment that workloads inherit (berth
    /// reads them at start and hands them over; the backend never reads its
    /// environment). A trailing `*` matches a prefix. The default keeps
    /// what package runners need to find programs and reach their
    /// registries: search path, home, locale, proxies and CA bundles.
    pub inherit_env: Vec<String>,
    /// Track each workload's processes in a cgroup v2 group of its own
    /// where berth may create one, so that a stop also ends processes that
    /// left the workload's process group (`setsid`). Off, or where no
    /// cgroup can be created: the process group plus the descendants found
    /// when the stop begins.
    pub cgroups: bool,
}

/// The default [`ProcessConfig::inherit_env`].
pub const DEFAULT_INHERIT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "TZ",
    "LANG",
    "LC_*",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_*",
    "UV_*",
    "NPM_CONFIG_*",
    "npm_config_*",
    "PYENV_ROOT",
];

impl ProcessConfig {
    /// Whether berth's variable `name` is passed to workloads.
    pub fn inherits(&self, name: &str) -> bool {
        self.inherit_env.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == p,
        })
    }
}

impl Default for ProcessConfig {
    fn default() -> Self {
        Self {
            allowed_commands: Vec::new(),
            stop_grace_secs: 5,
            log_max_bytes: 10 * 1024 * 1024,
            log_keep: 3,
            npx_command: "npx".to_owned(),
            uvx_command: "uvx".to_owned(),
            inherit_env: DEFAULT_INHERIT_ENV
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            cgroups: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_default() {
        let config: ProcessConfig = serde_json::from_str("{}").expect("parse");
        assert_eq!(config, ProcessConfig::default());
        assert_eq!(config.stop_grace_secs, 5);
        assert_eq!(config.log_max_bytes, 10 * 1024 * 1024);
        assert_eq!(config.log_keep, 3);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<ProcessConfig>(r#"{"stop_grace":1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
