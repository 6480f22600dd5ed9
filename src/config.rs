//! berth's configuration: built-in defaults < TOML file < `BERTH_*` environment < flags.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use berth_backend_process::ProcessConfig;

use crate::auth::{ApiAuth, BrowserGuard};
use crate::egress::EgressConfig;
use crate::plugins::{HostConfig, PluginConfig};
use crate::proxy::ProxyConfig;
use crate::workloads::RestartPolicy;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything berth reads from its configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The REST API's listener.
    pub api: ApiConfig,
    /// The default runtime: where workloads that name none run.
    pub runtime: RuntimeKind,
    /// Whether the other container engines that answer at start are used
    /// too (a workload chooses with its `runtime` field). Native processes
    /// are always available; `auto` always discovers.
    pub discover_runtimes: bool,
    /// Where berth keeps its state; `$XDG_STATE_HOME/berth` when unset.
    pub state_dir: Option<PathBuf>,
    /// The range automatic proxy ports are taken from.
    pub ports: PortRange,
    /// Settings of the native process backend.
    pub process: ProcessConfig,
    /// Settings of the Docker backend.
    #[cfg(feature = "backend-docker")]
    pub docker: berth_backend_docker::DockerConfig,
    /// Settings of the Podman backend.
    #[cfg(feature = "backend-podman")]
    pub podman: berth_backend_podman::PodmanConfig,
    /// Settings of the per-workload MCP proxies.
    pub proxy: ProxyConfig,
    /// Settings of the egress proxies of workloads with an outbound allowlist.
    pub egress: EgressConfig,
    /// How servers that exit or hang are restarted.
    pub restart: RestartPolicy,
    /// Log output format.
    pub log_format: LogFormat,
    /// Limits shared by all WebAssembly plugins.
    pub plugin_host: HostConfig,
    /// The WebAssembly plugins (`[[plugins]]` entries).
    pub plugins: Vec<PluginConfig>,
    /// Registries besides the embedded `default` (`[[registries]]`);
    /// read-only through the API. One named `default` replaces the
    /// embedded catalogue.
    pub registries: Vec<crate::registry::RegistryConfig>,
    /// The secrets providers (`[secrets]`).
    pub secrets: crate::secrets::SecretsConfig,
    /// The MCP clients' configuration files (`[clients]`).
    pub clients: crate::clients::ClientsConfig,
    /// Threads of berth's async runtime (API, proxies, egress); `0` means
    /// half the machine's cores, at least one. The proxies share the
    /// machine with the MCP servers and their clients: on the 2-core
    /// benchmark machine one thread did as well as two or better in every
    /// measured cell (bench/README.md, "Runtime threads").
    pub worker_threads: usize,
    /// How long an upgrade (`POST /workloads/{name}/upgrade`) waits for the
    /// new version's server to answer an MCP `initialize` through its
    /// proxy, in seconds; past it the previous configuration is put back.
    pub upgrade_ready_timeout_secs: u64,
    /// Audit of the proxies' MCP requests (`[audit]`).
    pub audit: AuditSettings,
    /// The directory of authorization policy files that workloads name in
    /// `authz_config`; `$XDG_CONFIG_HOME/berth/policies` when unset.
    pub policies_dir: Option<PathBuf>,
    /// Prometheus metrics (`[metrics]`): on by default, at `/metrics`.
    pub metrics: crate::telemetry::MetricsSettings,
    /// OpenTelemetry traces over OTLP (`[traces]`): off unless an endpoint
    /// is set.
    pub traces: crate::telemetry::TracesSettings,
}

/// Audit of the proxies' MCP requests. Each audited workload's lines go to
/// its own audit log (`<state>/audit/<name>.audit.jsonl`, served by
/// `GET /workloads/{name}/proxy-logs?audit=true`) and to `sink` if set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// A JSON-lines file every audit line is also appended to (created
    /// mode 0600), e.g. for a log shipper.
    pub sink: Option<PathBuf>,
    /// Audit every workload (with default settings unless its own
    /// `audit_config` says otherwise); otherwise only workloads with an
    /// `audit_config`.
    pub all_workloads: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api: ApiConfig::default(),
            runtime: RuntimeKind::Auto,
            discover_runtimes: true,
            state_dir: None,
            ports: PortRange::default(),
            process: ProcessConfig::default(),
            #[cfg(feature = "backend-docker")]
            docker: Default::default(),
            #[cfg(feature = "backend-podman")]
            podman: Default::default(),
            proxy: ProxyConfig::default(),
            egress: EgressConfig::default(),
            restart: RestartPolicy::default(),
            log_format: LogFormat::Text,
            plugin_host: HostConfig::default(),
            plugins: Vec::new(),
            registries: Vec::new(),
            secrets: Default::default(),
            clients: Default::default(),
            worker_threads: 0,
            upgrade_ready_timeout_secs: crate::workloads::upgrade::DEFAULT_READY_TIMEOUT.as_secs(),
            audit: AuditSettings::default(),
            policies_dir: None,
            metrics: crate::telemetry::MetricsSettings::default(),
            traces: crate::telemetry::TracesSettings::default(),
        }
    }
}

impl Config {
    /// The runtime's thread count: [`Config::worker_threads`], or for `0`
    /// half of `cores` (at least one).
    pub fn runtime_threads(&self, cores: usize) -> usize {
        match self.worker_threads {
            0 => (cores / 2).max(1),
            n => n,
        }
    }
}

/// The REST API's listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address to bind; loopback by default.
    pub host: IpAddr,
    /// TCP port to bind.
    pub port: u16,
    /// A Unix socket to listen on instead of TCP (created with mode 0600).
    pub socket: Option<PathBuf>,
    /// Allow binding a non-loopback address without authentication.
    pub insecure_allow_remote: bool,
    /// How callers authenticate: `none`, `token` (a bearer token on every
    /// route but `/health`) or `oidc` (an access token of `[api.oidc]`'s
    /// issuer for its audience). Unset: `token` when `BERTH_API_TOKEN` is
    /// set, else `none`.
    pub auth: Option<ApiAuth>,
    /// The issuer and audience of `auth = "oidc"`. The audience is the
    /// API's own: a workload whose proxy takes tokens for it is refused, so
    /// a token issued for a proxy can never drive the API.
    pub oidc: Option<ApiOidcConfig>,
    /// The token file of `auth = "token"` when `BERTH_API_TOKEN` is unset;
    /// `$XDG_CONFIG_HOME/berth/api-token` by default, created with mode
    /// 0600 holding a random 256-bit token when absent.
    pub token_file: Option<PathBuf>,
    /// Web origins (`https://app.example.com`) whose pages may call the
    /// API; compared exactly (scheme, host, port). None by default, loopback
    /// ones included: any other web page would otherwise drive berth.
    pub allowed_origins: Vec<String>,
    /// Host names besides `localhost` under which the API may be reached
    /// (`Host` header), e.g. the name of a server berth is bound to; IP
    /// addresses are always allowed. Others are refused, against DNS
    /// rebinding.
    pub public_hosts: Vec<String>,
    /// Seconds a client may take to send a request's headers, counted from
    /// the request's first byte; the connection is closed after that.
    pub header_read_timeout_secs: u64,
    /// Seconds a keep-alive connection may stay open with no request in
    /// flight.
    pub idle_timeout_secs: u64,
}

impl ApiConfig {
    /// The listener's connection limits.
    pub fn limits(&self) -> crate::listener::Limits {
        crate::listener::Limits {
            header_read: std::time::Duration::from_secs(self.header_read_timeout_secs.max(1)),
            idle: std::time::Duration::from_secs(self.idle_timeout_secs.max(1)),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            socket: None,
            insecure_allow_remote: false,
            auth: None,
            oidc: None,
            token_file: None,
            allowed_origins: Vec::new(),
            public_hosts: Vec::new(),
            header_read_timeout_secs: 30,
            idle_timeout_secs: 120,
        }
    }
}

/// `[api.oidc]`: token validation of the management API's callers.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiOidcConfig {
    /// Issuer URL (`iss`).
    pub issuer: String,
    /// The API's audience (`aud`).
    pub audience: String,
    /// JWKS URL; discovered from the issuer when empty.
    pub jwks_url: String,
    /// RFC 7662 introspection endpoint for opaque tokens.
    pub introspection_url: String,
    /// Client id for introspection.
    pub client_id: String,
    /// Client secret for introspection (`BERTH_API__OIDC__CLIENT_SECRET`).
    pub client_secret: String,
}

impl std::fmt::Debug for ApiOidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiOidcConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks_url", &self.jwks_url)
            .field("introspection_url", &self.introspection_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ApiOidcConfig {
    /// The validator settings.
    pub fn settings(&self) -> crate::auth::oidc::OidcSettings {
        crate::auth::oidc::OidcSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            jwks_url: self.jwks_url.clone(),
            introspection_url: self.introspection_url.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            scopes: Vec::new(),
        }
    }
}

/// Which runtime runs workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// Docker if its socket answers, else Podman, else native processes.
    Auto,
    /// Docker (its engine API).
    Docker,
    /// Podman (its libpod API).
    Podman,
    /// Native processes.
    Process,
}

/// A half-open range of TCP ports, `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    /// First port of the range.
    pub start: u16,
    /// One past the last port of the range.
    pub end: u16,
}

impl Default for PortRange {
    fn default() -> Self {
        Self {
            start: 20000,
            end: 30000,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `--config` names a file that does not exist.
    #[error("configuration file `{0}` does not exist")]
    Missing(PathBuf),
    /// A value is malformed or unknown.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    /// The values are well-formed but do not fit together.
    #[error("invalid configuration: {0}")]
    Inconsistent(String),
}

/// The top-level keys of [`Config`]: the `BERTH_*` variables that are
/// configuration.
const TOP_LEVEL_KEYS: &[&str] = &[
    "api",
    "runtime",
    "discover_runtimes",
    "state_dir",
    "ports",
    "process",
    "docker",
    "podman",
    "proxy",
    "restart",
    "log_format",
    "plugin_host",
    "egress",
    "worker_threads",
    "upgrade_ready_timeout_secs",
    "secrets",
    "clients",
    "audit",
    "policies_dir",
];

/// Loads the configuration: defaults < `file` (if given, it must exist;
/// else `default_file` if it exists) < `BERTH_*` environment variables
/// (`__` separates levels: `BERTH_API__PORT=9000`) < `overrides`.
pub fn load(
    file: Option<&Path>,
    default_file: Option<&Path>,
    overrides: Figment,
) -> Result<Config, ConfigError> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    match (file, default_file) {
        (Some(file), _) if !file.is_file() => return Err(ConfigError::Missing(file.to_owned())),
        (Some(file), _) => fig = fig.merge(Toml::file(file)),
        (None, Some(file)) if file.is_file() => fig = fig.merge(Toml::file(file)),
        (None, _) => {}
    }
    let config: Config = fig
        .merge(
            Env::prefixed("BERTH_")
                .split("__")
                // Other BERTH_* variables (e.g. BERTH_SECRETS_PASSWORD) are
                // not configuration keys.
                .filter(|key| {
                    let key = key.as_str().to_ascii_lowercase();
                    // BERTH_API_TOKEN would read as `api` + `_token`.
                    !NEVER_INHERITED.iter().any(|n| {
                        n.strip_prefix("BERTH_")
                            .is_some_and(|n| n.eq_ignore_ascii_case(&key))
                    }) && TOP_LEVEL_KEYS.iter().any(|k| {
                        key.strip_prefix(k)
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '_']))
                    })
                }),
        )
        .merge(overrides)
        .extract()
        .map_err(Box::new)?;
    if config.ports.start == 0 || config.ports.start >= config.ports.end {
        return Err(ConfigError::Inconsistent(format!(
            "ports.start ({}) must be non-zero and below ports.end ({})",
            config.ports.start, config.ports.end
        )));
    }
    if config.upgrade_ready_timeout_secs == 0 {
        return Err(ConfigError::Inconsistent(
            "upgrade_ready_timeout_secs must be at least 1: an upgrade waits that long for the new server".into(),
        ));
    }
    if let Err(e) = BrowserGuard::new(&config.api.allowed_origins, &config.api.public_hosts, false)
    {
        return Err(ConfigError::Inconsistent(format!("[api]: {e}")));
    }
    if let Err(e) = config.proxy.browser_guard() {
        return Err(ConfigError::Inconsistent(format!(
            "[proxy] allowed_origins: {e}"
        )));
    }
    Ok(config)
}

/// berth's own secrets among its environment variables: no workload ever
/// inherits them, whatever `process.inherit_env` says; nor any variable of
/// the environment secrets provider (`BERTH_SECRET_*`, `TOOLHIVE_SECRET_*`).
pub const NEVER_INHERITED: &[&str] = &["BERTH_API_TOKEN", "BERTH_SECRETS_PASSWORD"];

impl Config {
    /// Whether workloads inherit berth's environment variable `name`.
    pub fn inherits_env(&self, name: &str) -> bool {
        !NEVER_INHERITED.contains(&name)
            && !crate::secrets::environment::is_secret_variable(name)
            && self.process.inherits(name)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn layers_in_order() {
        Jail::expect_with(|jail| {
            jail.create_file("berth.toml", "[api]\nport = 9001\nhost = \"127.0.0.2\"\n")?;
            jail.set_env("BERTH_API__PORT", "9002");
            jail.set_env("BERTH_SECRETS_PASSWORD", "not configuration");
            jail.set_env("BERTH_API_TOKEN", "not configuration either");
            jail.set_env("BERTH_LOG_FORMAT", "json");
            let overrides = Figment::new().merge(Serialized::default("api.host", "127.0.0.3"));
            let c = load(Some(Path::new("berth.toml")), None, overrides).expect("load");
            assert_eq!(c.api.port, 9002, "env beats the file");
            assert_eq!(c.log_format, LogFormat::Json, "underscored keys work");
            assert_eq!(c.api.host.to_string(), "127.0.0.3", "flags beat the file");
            Ok(())
        });
    }

    #[test]
    fn secret_variables_are_not_configuration_and_never_inherited() {
        Jail::expect_with(|jail| {
            jail.set_env("BERTH_SECRET_GITHUB", "ghp-not-config");
            jail.set_env("BERTH_SECRET_S__PROVIDER", "none");
            jail.set_env("TOOLHIVE_SECRET_SLACK", "xoxb");
            jail.set_env("BERTH_SECRETS__STORE", "/srv/berth/store");
            let c = load(None, None, Figment::new()).expect("load");
            assert_eq!(c.secrets.provider, "encrypted", "a secret is no key");
            assert_eq!(
                c.secrets.store.as_deref(),
                Some(Path::new("/srv/berth/store"))
            );
            for name in [
                "BERTH_SECRET_GITHUB",
                "TOOLHIVE_SECRET_SLACK",
                "BERTH_SECRETS_PASSWORD",
                "BERTH_API_TOKEN",
            ] {
                assert!(!c.inherits_env(name), "{name}");
            }
            assert!(c.inherits_env("PATH"));
            Ok(())
        });
    }

    #[test]
    fn defaults_and_errors() {
        Jail::expect_with(|jail| {
            let c = load(None, Some(Path::new("absent.toml")), Figment::new()).expect("defaults");
            assert_eq!(c.api.port, 8080);
            assert_eq!(c.runtime, RuntimeKind::Auto);
            let err = load(Some(Path::new("absent.toml")), None, Figment::new()).unwrap_err();
            assert!(err.to_string().contains("does not exist"), "{err}");
            jail.create_file("bad.toml", "[api]\nprot = 1\n")?;
            let err = load(Some(Path::new("bad.toml")), None, Figment::new()).unwrap_err();
            assert!(err.to_string().contains("prot"), "{err}");
            jail.create_file("range.toml", "[ports]\nstart = 5000\nend = 4000\n")?;
            let err = load(Some(Path::new("range.toml")), None, Figment::new()).unwrap_err();
            assert!(err.to_string().contains("ports.start"), "{err}");
            assert_eq!(c.upgrade_ready_timeout_secs, 60);
            jail.set_env("BERTH_UPGRADE_READY_TIMEOUT_SECS", "0");
            let err = load(None, None, Figment::new()).unwrap_err();
            assert!(
                err.to_string().contains("upgrade_ready_timeout_secs"),
                "{err}"
            );
            jail.set_env("BERTH_UPGRADE_READY_TIMEOUT_SECS", "5");
            let c = load(None, None, Figment::new()).expect("from the environment");
            assert_eq!(c.upgrade_ready_timeout_secs, 5);
            Ok(())
        });
    }

    #[test]
    fn runtime_threads_default_to_half_the_cores() {
        Jail::expect_with(|jail| {
            let c = load(None, None, Figment::new()).expect("defaults");
            assert_eq!(c.worker_threads, 0);
            assert_eq!(c.runtime_threads(1), 1);
            assert_eq!(c.runtime_threads(2), 1);
            assert_eq!(c.runtime_threads(16), 8);
            jail.set_env("BERTH_WORKER_THREADS", "3");
            let c = load(None, None, Figment::new()).expect("env");
            assert_eq!(c.runtime_threads(2), 3, "a set count wins");
            Ok(())
        });
    }
}
