//! The typed workload: what the rest of berth works with. [`RunConfig`] is
//! the ToolHive wire and file shape (strings everywhere); a [`Workload`] is
//! built from it with `TryFrom` when a stored file is loaded and when a
//! request is validated, so a name, transport, proxy mode, host or
//! middleware entry that is wrong is refused once, at the edge, and never
//! compared as a string again.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use berth_runtime_api::{Transport, WorkloadName};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::protect::{AuthzSource, ProtectionSpec};
use super::types::{
    HeaderForward, MiddlewareConfig, PermissionProfile, RunConfig, SCHEMA_VERSION,
    TokenValidatorConfig, ToolOverride,
};
use crate::auth::oidc::OidcSettings;
use crate::proxy::{Override, PinMode};

/// How clients talk to a workload's proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// MCP's streamable HTTP transport, at `/mcp`.
    StreamableHttp,
    /// The legacy HTTP+SSE transport, at `/sse` and `/messages`.
    Sse,
}

impl ProxyMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StreamableHttp => "streamable-http",
            Self::Sse => "sse",
        }
    }

    /// The proxy mode of a server that speaks `transport` itself, if it
    /// speaks HTTP.
    pub fn of(transport: Transport) -> Option<Self> {
        match transport {
            Transport::Stdio => None,
            Transport::Sse => Some(Self::Sse),
            Transport::StreamableHttp => Some(Self::StreamableHttp),
        }
    }
}

impl fmt::Display for ProxyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a proxy's middleware chain, as the wire's
/// `{"type": …, "parameters": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "parameters", rename_all = "lowercase")]
pub enum MiddlewareSpec {
    /// A middleware plugin of berth.toml.
    Wasm(WasmMiddleware),
}

/// A `wasm` middleware entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WasmMiddleware {
    /// The plugin's name (a `[[plugins]]` entry).
    pub plugin: String,
    /// Configuration merged over the plugin's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
}

impl TryFrom<&MiddlewareConfig> for MiddlewareSpec {
    type Error = String;

    fn try_from(mc: &MiddlewareConfig) -> Result<Self, String> {
        if mc.kind != "wasm" {
            return Err(format!(
                "middleware type `{}` is not supported: berth runs `wasm` middleware plugins",
                crate::logging::escape_controls(&mc.kind)
            ));
        }
        if mc
            .parameters
            .get("plugin")
            .and_then(Value::as_str)
            .is_none()
        {
            return Err("a `wasm` middleware needs `parameters.plugin`, the plugin's name".into());
        }
        let wire = serde_json::to_value(mc).map_err(|e| e.to_string())?;
        serde_json::from_value(wire).map_err(|e| format!("invalid middleware entry: {e}"))
    }
}

impl From<&MiddlewareSpec> for MiddlewareConfig {
    fn from(spec: &MiddlewareSpec) -> Self {
        let MiddlewareSpec::Wasm(w) = spec;
        let mut parameters = serde_json::Map::new();
        parameters.insert("plugin".into(), Value::String(w.plugin.clone()));
        if let Some(config) = &w.config {
            parameters.insert("config".into(), config.clone());
        }
        Self {
            kind: "wasm".into(),
            parameters: Value::Object(parameters),
        }
    }
}

/// What a workload's proxy forwards to.
#[derive(Debug, Clone, PartialEq)]
pub enum Upstream {
    /// The server's standard input and output.
    Stdio,
    /// An HTTP server berth runs, listening on `host:port` (a container's
    /// published endpoint, when it has one, is used instead).
    Local {
        /// The host it listens on.
        host: String,
        /// Its port; 0 until one is assigned.
        port: u16,
    },
    /// A remote server berth does not run.
    Remote {
        /// Its URL.
        url: String,
        /// Headers sent with every request.
        headers: Option<HeaderForward>,
    },
}

/// A validated workload configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Its name.
    pub name: WorkloadName,
    /// What runs (empty for a remote workload).
    pub image: String,
    /// Arguments passed to the server.
    pub args: Vec<String>,
    /// How the server talks.
    pub transport: Transport,
    /// How clients talk to the proxy.
    pub proxy_mode: ProxyMode,
    /// The proxy's bind address.
    pub host: IpAddr,
    /// The proxy's port; 0 until one is assigned.
    pub port: u16,
    /// What the proxy forwards to.
    pub upstream: Upstream,
    /// Environment variables of the server, as given.
    pub env: BTreeMap<String, String>,
    /// Volume mounts as given (`host:container[:ro]`).
    pub volumes: Vec<String>,
    /// Permission profile.
    pub permission_profile: Option<PermissionProfile>,
    /// Labels berth puts on the instance.
    pub labels: BTreeMap<String, String>,
    /// Whether the workload's network is restricted.
    pub isolate_network: bool,
    /// Trust `X-Forwarded-*`.
    pub trust_proxy_headers: bool,
    /// Its group.
    pub group: String,
    /// The proxy's middleware chain, in order.
    pub middleware: Vec<MiddlewareSpec>,
    /// The runtime it runs on; empty for a remote workload.
    pub runtime: String,
    /// The registry entry it was created from.
    pub registry: Option<crate::registry::run::RegistryRef>,
    /// Secrets set as environment variables at each start.
    pub secrets: Vec<SecretRef>,
    /// Authentication, authorization, tool view, audit and pinning of its
    /// proxy.
    pub protection: ProtectionSpec,
}

/// A secret the server gets as an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The secret's name in the secrets provider (or `<plugin>/<key>`).
    pub name: String,
    /// The environment variable it becomes.
    pub target: String,
}

impl SecretRef {
    /// Parses ToolHive's `<name>,target=<TARGET>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, target) = s
            .split_once(',')
            .and_then(|(n, rest)| Some((n, rest.strip_prefix("target=")?)))
            .filter(|(n, t)| !n.is_empty() && !t.is_empty())
            .ok_or_else(|| {
                format!(
                    "`{}` is not `<name>,target=<ENV>`",
                    crate::logging::escape_controls(s)
                )
            })?;
        let r = Self {
            name: name.to_owned(),
            target: target.to_owned(),
        };
        r.check()?;
        Ok(r)
    }

    /// Checks the name (see [`crate::secrets::check_reference`]) and the
    /// target (an environment variable name: not empty, no `=`, no control
    /// characters, at most 256 bytes).
    pub fn check(&self) -> Result<(), String> {
        crate::secrets::check_reference(&self.name).map_err(|e| e.to_string())?;
        let t = &self.target;
        if t.is_empty() || t.len() > 256 || t.contains('=') || t.chars().any(char::is_control) {
            return Err(format!(
                "secret `{}`: target `{}` is not an environment variable name",
                self.name,
                crate::logging::escape_controls(t)
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},target={}", self.name, self.target)
    }
}

impl Workload {
    /// Whether berth runs no server for it, only a proxy to a remote one.
    pub fn is_remote(&self) -> bool {
        matches!(self.upstream, Upstream::Remote { .. })
    }

    /// Whether the proxy talks to the server over its stdio.
    pub fn is_stdio(&self) -> bool {
        matches!(self.upstream, Upstream::Stdio)
    }

    /// The port the server itself listens on (HTTP servers berth runs).
    pub fn target_port(&self) -> Option<u16> {
        match self.upstream {
            Upstream::Local { port, .. } => Some(port),
            _ => None,
        }
    }

    /// The remote server's URL, or "".
    pub fn remote_url(&self) -> &str {
        match &self.upstream {
            Upstream::Remote { url, .. } => url,
            _ => "",
        }
    }

    /// The headers sent to a remote server.
    pub fn headers(&self) -> Option<&HeaderForward> {
        match &self.upstream {
            Upstream::Remote { headers, .. } => headers.as_ref(),
            _ => None,
        }
    }

    /// Whether every port it needs is assigned (a stored workload's are).
    pub fn has_ports(&self) -> bool {
        self.port != 0 && self.target_port() != Some(0)
    }
}

/// Why a run configuration cannot be a [`Workload`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

impl TryFrom<RunConfig> for Workload {
    type Error = InvalidConfig;

    fn try_from(c: RunConfig) -> Result<Self, InvalidConfig> {
        let bad = |field: &str, value: &str, why: String| {
            InvalidConfig(format!(
                "{field} {:?}: {why}",
                crate::logging::escape_controls(value)
            ))
        };
        let name = WorkloadName::parse(&c.name).map_err(|e| bad("name", &c.name, e.to_string()))?;
        let transport: Transport =
            c.transport
                .parse()
                .map_err(|e: berth_runtime_api::UnknownTransport| {
                    bad("transport", &c.transport, e.to_string())
                })?;
        let proxy_mode = match (ProxyMode::of(transport), c.proxy_mode.as_str()) {
            (Some(mode), "") => mode,
            (Some(mode), given) if given == mode.as_str() => mode,
            (Some(mode), given) => {
                return Err(bad(
                    "proxy_mode",
                    given,
                    format!("a {transport} server is proxied as `{mode}`"),
                ));
            }
            (None, "" | "streamable-http") => ProxyMode::StreamableHttp,
            (None, "sse") => ProxyMode::Sse,
            (None, other) => {
                return Err(bad(
                    "proxy_mode",
                    other,
                    "use `sse` or `streamable-http`".into(),
                ));
            }
        };
        let host: IpAddr = c
            .host
            .parse()
            .map_err(|_| bad("host", &c.host, "not an IP address".into()))?;
        let upstream = if !c.remote_url.is_empty() {
            if transport == Transport::Stdio {
                return Err(bad(
                    "transport",
                    "stdio",
                    "a remote server is reached over `sse` or `streamable-http`".into(),
                ));
            }
            Upstream::Remote {
                url: c.remote_url,
                headers: c.header_forward,
            }
        } else if transport == Transport::Stdio {
            Upstream::Stdio
        } else {
            Upstream::Local {
                host: if c.target_host.is_empty() {
                    "127.0.0.1".to_owned()
                } else {
                    c.target_host
                },
                port: c.target_port.unwrap_or(0),
            }
        };
        let middleware = c
            .middleware_configs
            .iter()
            .map(MiddlewareSpec::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(InvalidConfig)?;
        let protection = protection_of(
            c.oidc_config.as_ref(),
            c.authz_config.as_ref(),
            &c.authz_config_path,
            c.audit_config.as_ref(),
            c.tools_filter.clone(),
            &c.tools_override,
            &c.tool_pinning,
        )
        .map_err(InvalidConfig)?;
        Ok(Self {
            name,
            image: c.image,
            args: c.cmd_args,
            transport,
            proxy_mode,
            host,
            port: c.port,
            upstream,
            env: c.env_vars,
            secrets: c
                .secrets
                .iter()
                .map(|s| SecretRef::parse(s).map_err(|e| bad("secrets", s, e)))
                .collect::<Result<Vec<_>, _>>()?,
            volumes: c.volumes,
            permission_profile: c.permission_profile,
            labels: c.container_labels,
            isolate_network: c.isolate_network,
            trust_proxy_headers: c.trust_proxy_headers,
            group: c.group,
            middleware,
            runtime: c.runtime,
            registry: (!c.registry_server_name.is_empty()).then(|| {
                crate::registry::run::RegistryRef {
                    registry: if c.registry.is_empty() {
                        crate::registry::DEFAULT_REGISTRY.to_owned()
                    } else {
                        c.registry
                    },
                    server: c.registry_server_name,
                    version: c.registry_server_version,
                }
            }),
            protection,
        })
    }
}

/// The typed protections of the stored (or requested) fields.
pub(super) fn protection_of(
    oidc: Option<&TokenValidatorConfig>,
    authz: Option<&Value>,
    authz_path: &str,
    audit: Option<&Value>,
    tools: Option<Vec<String>>,
    overrides: &std::collections::BTreeMap<String, ToolOverride>,
    pinning: &str,
) -> Result<ProtectionSpec, String> {
    let oidc = oidc
        .filter(|o| **o != TokenValidatorConfig::default())
        .map(|o| OidcSettings {
            issuer: o.issuer.clone(),
            audience: o.audience.clone(),
            jwks_url: o.jwks_url.clone(),
            introspection_url: o.introspection_url.clone(),
            client_id: o.client_id.clone(),
            client_secret: o.client_secret.clone(),
            scopes: o.scopes.clone(),
        });
    let authz = match (authz, authz_path) {
        (None | Some(Value::Null), "") => None,
        (None | Some(Value::Null), name) => Some(AuthzSource::File(name.to_owned())),
        (Some(Value::String(name)), "") => Some(AuthzSource::File(name.clone())),
        (Some(v @ Value::Object(_)), "") => Some(AuthzSource::Inline(
            serde_json::from_value(v.clone()).map_err(|e| format!("invalid authz_config: {e}"))?,
        )),
        (Some(Value::Object(_) | Value::String(_)), _) => {
            return Err("give authz_config or authz_config_path, not both".into());
        }
        (Some(_), _) => {
            return Err("authz_config is the name of a policy file or a policy object".into());
        }
    };
    let audit = match audit {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value(v.clone()).map_err(|e| format!("invalid audit_config: {e}"))?,
        ),
    };
    let spec = ProtectionSpec {
        oidc,
        authz,
        audit,
        tools,
        tools_override: overrides
            .iter()
            .map(|(k, o)| {
                (
                    k.clone(),
                    Override {
                        name: (!o.name.is_empty()).then(|| o.name.clone()),
                        description: (!o.description.is_empty()).then(|| o.description.clone()),
                    },
                )
            })
            .collect(),
        pinning: PinMode::parse(pinning)?,
    };
    spec.check()?;
    Ok(spec)
}

impl From<&Workload> for RunConfig {
    fn from(w: &Workload) -> Self {
        let (target_port, target_host, remote_url, header_forward) = match &w.upstream {
            Upstream::Stdio => (None, String::new(), String::new(), None),
            Upstream::Local { host, port } => (Some(*port), host.clone(), String::new(), None),
            Upstream::Remote { url, headers } => {
                (None, host_port(url), url.clone(), headers.clone())
            }
        };
        Self {
            schema_version: SCHEMA_VERSION.to_owned(),
            image: w.image.clone(),
            cmd_args: w.args.clone(),
            name: w.name.to_string(),
            container_name: w.name.to_string(),
            base_name: w.name.to_string(),
            transport: w.transport.as_str().to_owned(),
            host: w.host.to_string(),
            port: w.port,
            target_port,
            remote_url,
            header_forward,
            target_host,
            permission_profile: w.permission_profile.clone(),
            env_vars: w.env.clone(),
            secrets: w.secrets.iter().map(SecretRef::to_string).collect(),
            volumes: w.volumes.clone(),
            container_labels: w.labels.clone(),
            isolate_network: w.isolate_network,
            trust_proxy_headers: w.trust_proxy_headers,
            proxy_mode: w.proxy_mode.as_str().to_owned(),
            group: w.group.clone(),
            middleware_configs: w.middleware.iter().map(MiddlewareConfig::from).collect(),
            runtime: w.runtime.clone(),
            registry: w
                .registry
                .as_ref()
                .map(|r| r.registry.clone())
                .unwrap_or_default(),
            registry_server_name: w
                .registry
                .as_ref()
                .map(|r| r.server.clone())
                .unwrap_or_default(),
            registry_server_version: w
                .registry
                .as_ref()
                .map(|r| r.version.clone())
                .unwrap_or_default(),
            oidc_config: w.protection.oidc.as_ref().map(|o| TokenValidatorConfig {
                issuer: o.issuer.clone(),
                audience: o.audience.clone(),
                jwks_url: o.jwks_url.clone(),
                client_id: o.client_id.clone(),
                client_secret: o.client_secret.clone(),
                introspection_url: o.introspection_url.clone(),
                scopes: o.scopes.clone(),
            }),
            authz_config: match &w.protection.authz {
                Some(AuthzSource::Inline(c)) => serde_json::to_value(c).ok(),
                _ => None,
            },
            authz_config_path: match &w.protection.authz {
                Some(AuthzSource::File(name)) => name.clone(),
                _ => String::new(),
            },
            audit_config: w
                .protection
                .audit
                .as_ref()
                .and_then(|a| serde_json::to_value(a).ok()),
            tools_filter: w.protection.tools.clone(),
            tools_override: w
                .protection
                .tools_override
                .iter()
                .map(|(k, o)| {
                    (
                        k.clone(),
                        ToolOverride {
                            name: o.name.clone().unwrap_or_default(),
                            description: o.description.clone().unwrap_or_default(),
                        },
                    )
                })
                .collect(),
            tool_pinning: match w.protection.pinning {
                PinMode::Record => String::new(),
                other => other.as_str().to_owned(),
            },
        }
    }
}

/// A URL's `host[:port]`, without any credentials it carries (ToolHive's
/// `target_host` of a remote workload).
pub fn host_port(url: &str) -> String {
    let Ok(u) = url::Url::parse(url) else {
        return String::new();
    };
    match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    }
}

impl Workload {
    /// The stand-in for a stored configuration that cannot be used: it runs
    /// nothing (no image, no port), so that the workload can be listed with
    /// its error, edited or deleted.
    pub fn unusable(name: &WorkloadName) -> Self {
        Self {
            name: name.clone(),
            image: String::new(),
            args: Vec::new(),
            transport: Transport::Stdio,
            proxy_mode: ProxyMode::StreamableHttp,
            host: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            upstream: Upstream::Stdio,
            env: BTreeMap::new(),
            volumes: Vec::new(),
            permission_profile: None,
            labels: BTreeMap::new(),
            isolate_network: false,
            trust_proxy_headers: false,
            group: crate::groups::DEFAULT_GROUP.to_owned(),
            middleware: Vec::new(),
            runtime: String::new(),
            registry: None,
            secrets: Vec::new(),
            protection: ProtectionSpec::default(),
        }
    }
}
