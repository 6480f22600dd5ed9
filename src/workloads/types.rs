//! The workload documents berth reads and writes: API request and response
//! bodies (ToolHive's field names) and the persisted run configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// The `schema_version` of run configurations berth writes.
pub const SCHEMA_VERSION: &str = "v0.1.0";

/// The status of a workload, as ToolHive spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadStatus {
    /// Serving.
    Running,
    /// Stopped on request, or exited cleanly by itself.
    Stopped,
    /// Failed to start, or exited with an error.
    Error,
    /// Being started.
    Starting,
    /// Being stopped.
    Stopping,
    /// Running but not answering.
    Unhealthy,
    /// Being deleted.
    Removing,
    /// Not known.
    Unknown,
    /// A remote workload whose credentials were refused.
    Unauthenticated,
    /// A remote workload retrying its authentication.
    AuthRetrying,
    /// Refused by policy.
    PolicyStopped,
}

impl WorkloadStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Error => "error",
            Self::Starting => "starting",
            Self::Stopping => "stopping",
            Self::Unhealthy => "unhealthy",
            Self::Removing => "removing",
            Self::Unknown => "unknown",
            Self::Unauthenticated => "unauthenticated",
            Self::AuthRetrying => "auth_retrying",
            Self::PolicyStopped => "policy_stopped",
        }
    }
}

/// Whether berth should keep a workload running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    /// Run it, also after a berth restart.
    Running,
    /// Leave it stopped.
    Stopped,
}

/// The persisted status of one workload (`statuses/<name>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// Current status.
    pub status: WorkloadStatus,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status_context: String,
    /// When the workload was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When this record last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When the current instance started.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<OffsetDateTime>,
    /// Whether berth keeps it running.
    pub desired: Desired,
    /// How many times berth restarted it after it exited or hung.
    #[serde(default)]
    pub restart_count: u32,
}

impl StatusRecord {
    /// The record of a workload created at `at`, about to start.
    pub fn new_starting(at: OffsetDateTime) -> Self {
        Self {
            status: WorkloadStatus::Starting,
            status_context: String::new(),
            created_at: at,
            updated_at: at,
            started_at: None,
            desired: Desired::Running,
            restart_count: 0,
        }
    }
}

/// A tool's replacement name and description.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::toolOverride)]
pub struct ToolOverride {
    /// New name of the tool.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// New description of the tool.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A secret exposed to the workload as an environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[schema(as = secrets::SecretParameter)]
pub struct SecretParameter {
    /// The secret's name in the secrets provider.
    #[serde(default)]
    pub name: String,
    /// The environment variable it becomes.
    #[serde(default)]
    pub target: String,
}

/// Outbound network permissions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[schema(as = permissions::OutboundNetworkPermissions)]
#[serde(deny_unknown_fields)]
pub struct OutboundNetworkPermissions {
    /// Allow every outbound connection.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_allow_all: bool,
    /// Hosts that may be reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_host: Vec<String>,
    /// Ports that may be reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_port: Vec<u16>,
}

/// Inbound network permissions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[schema(as = permissions::InboundNetworkPermissions)]
#[serde(deny_unknown_fields)]
pub struct InboundNetworkPermissions {
    /// Hosts that may connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_host: Vec<String>,
}

/// Network permissions of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[schema(as = permissions::NetworkPermissions)]
#[serde(deny_unknown_fields)]
pub struct NetworkPermissions {
    /// Network mode (`bridge`, `host`, `none`); empty for the default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// Outbound rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<OutboundNetworkPermissions>,
    /// Inbound rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<InboundNetworkPermissions>,
}

/// What a workload may touch: mounts, network, privileges.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[schema(as = permissions::Profile)]
#[serde(deny_unknown_fields)]
pub struct PermissionProfile {
    /// The profile's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Read-only mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
    /// Read-write mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<String>,
    /// Network rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkPermissions>,
    /// Run privileged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
}

impl PermissionProfile {
    /// The built-in `network` profile: outbound network allowed, no mounts.
    pub fn network() -> Self {
        Self {
            name: "network".into(),
            network: Some(NetworkPermissions {
                outbound: Some(OutboundNetworkPermissions {
                    insecure_allow_all: true,
                    ..Default::default()
                }),
                inbound: Some(InboundNetworkPermissions::default()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// OIDC options of the workload's proxy: callers need a bearer token from
/// `issuer` for `audience`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::oidcOptions)]
#[serde(deny_unknown_fields)]
pub struct OidcOptions {
    /// Expected audience.
    #[serde(default)]
    pub audience: String,
    /// OAuth2 client ID.
    #[serde(default)]
    pub client_id: String,
    /// OAuth2 client secret; never returned.
    #[serde(default, skip_serializing)]
    pub client_secret: String,
    /// Token introspection URL.
    #[serde(default)]
    pub introspection_url: String,
    /// Issuer URL.
    #[serde(default)]
    pub issuer: String,
    /// JWKS URL.
    #[serde(default)]
    pub jwks_url: String,
    /// Scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

impl OidcOptions {
    /// Whether nothing is set (the request asks for no authentication).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// ToolHive's token validator settings inside a stored run configuration
/// (`oidc_config`), with its Go-cased keys.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct TokenValidatorConfig {
    /// Issuer URL.
    #[serde(rename = "Issuer", default, skip_serializing_if = "String::is_empty")]
    pub issuer: String,
    /// Expected audience.
    #[serde(rename = "Audience", default, skip_serializing_if = "String::is_empty")]
    pub audience: String,
    /// JWKS URL.
    #[serde(rename = "JWKSURL", default, skip_serializing_if = "String::is_empty")]
    pub jwks_url: String,
    /// Client id (introspection).
    #[serde(rename = "ClientID", default, skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    /// Client secret (introspection); redacted in exports.
    #[serde(
        rename = "ClientSecret",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub client_secret: String,
    /// Introspection URL.
    #[serde(
        rename = "IntrospectionURL",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub introspection_url: String,
    /// Scopes advertised in the protected resource metadata.
    #[serde(rename = "Scopes", default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// Request body of `POST /workloads`; without `name`, `registry` and `server`
/// it is also the body of `POST /workloads/{name}/edit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::createRequest)]
pub struct CreateRequest {
    /// Name of the workload.
    #[serde(default)]
    pub name: String,
    /// What to run: `npx://<package>`, `uvx://<package>`, `exec://<absolute path>`
    /// (process runtime) or an OCI image reference (container runtimes).
    #[serde(default)]
    pub image: String,
    /// A remote MCP server URL (`http://` or `https://`): berth runs no
    /// server, only a proxy to it. Exclusive with `image`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// berth extension: the runtime to run on (`docker`, `podman`,
    /// `process`, as `GET /api/v1beta/x/berth/runtimes` lists them). When
    /// empty, `exec://` images run as native processes and others on the
    /// default runtime.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runtime: String,
    /// Registry to resolve `server` from; `default` when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registry: String,
    /// A server of the registry, by full name or by the last segment of
    /// its name: the entry fills the fields not given (image or package,
    /// transport, target port, arguments, environment defaults,
    /// permission profile, remote URL).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server: String,
    /// Set by berth once `server` is resolved (never read from the wire).
    #[serde(skip)]
    #[schema(ignore)]
    pub from_registry: Option<crate::registry::run::RegistryRef>,
    /// `stdio` (default), `sse` or `streamable-http`.
    #[serde(default)]
    pub transport: String,
    /// For stdio: `streamable-http` (default) or `sse`.
    #[serde(default)]
    pub proxy_mode: String,
    /// Address the proxy binds; `127.0.0.1` by default.
    #[serde(default)]
    pub host: String,
    /// Port of the proxy; 0 picks a free one.
    #[serde(default)]
    pub proxy_port: u16,
    /// Port the server listens on (HTTP transports); 0 picks a free one.
    #[serde(default)]
    pub target_port: u16,
    /// Arguments passed to the server.
    #[serde(default)]
    pub cmd_arguments: Vec<String>,
    /// Environment variables of the server.
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    /// Secrets exposed as environment variables: each `name` is read from
    /// the secrets provider at every start (a `<plugin>/<key>` name reads a
    /// secrets-provider plugin) and set as `target`, over a plain variable
    /// of the same name. Only the references are stored or shown.
    #[serde(default)]
    pub secrets: Vec<SecretParameter>,
    /// Host paths mounted into the workload, `host:container[:ro]` (container
    /// runtimes only; the host path must be absolute and exist).
    #[serde(default)]
    pub volumes: Vec<String>,
    /// What the workload may touch: mounts, outbound network (container
    /// runtimes enforce it; see the README). The built-in `network` profile
    /// when absent.
    #[serde(default)]
    pub permission_profile: Option<PermissionProfile>,
    /// Network isolation per the profile; berth enforces the profile either
    /// way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_isolation: Option<bool>,
    /// Allow the Docker gateway under isolation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_docker_gateway: bool,
    /// Trust `X-Forwarded-*` headers.
    #[serde(default)]
    pub trust_proxy_headers: bool,
    /// The Cedar authorization policy of the proxy: the *name* of a file
    /// in berth's policy directory (`<config dir>/policies/`, JSON or
    /// YAML), or (berth extension) the configuration itself as an object,
    /// ToolHive's `{"version": "1.0", "type": "cedarv1", "cedar": {...}}`.
    /// A path is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub authz_config: Option<serde_json::Value>,
    /// Token validation of the proxy's callers.
    #[serde(default)]
    pub oidc: Option<OidcOptions>,
    /// The tools clients see and may call (after overrides: the new
    /// names); all when absent.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// Tool renames and descriptions, by the server's tool name.
    #[serde(default)]
    pub tools_override: Option<BTreeMap<String, ToolOverride>>,
    /// berth extension: audit settings of the proxy, ToolHive's audit
    /// configuration (`includeRequestData`, `maxDataSize`, …; no
    /// `logFile`: lines go to the workload's audit log and berth's sink).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub audit_config: Option<serde_json::Value>,
    /// berth extension: tool-definition pinning, `record` (default: a
    /// changed definition shows in `tool_drift`), `block` (and the changed
    /// tool is hidden until approved) or `off`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tool_pinning: String,
    /// Group of the workload; `default` when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Build settings for package images (not supported by berth yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub runtime_config: Option<serde_json::Value>,
    /// Remote OAuth settings (not supported by berth yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub oauth_config: Option<serde_json::Value>,
    /// Headers a remote server expects: each one with a `default` is sent
    /// with that value; a `required` one needs a value, from `default`,
    /// `header_forward.add_plaintext_headers` or
    /// `header_forward.add_headers_from_secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<RemoteHeader>>,
    /// Headers berth sets on every request to a remote server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_forward: Option<HeaderForward>,
    /// berth extension: proxy middleware, in order. Each entry is
    /// `{"type": "wasm", "parameters": {"plugin": NAME, "config": {...}}}`
    /// naming a middleware plugin of berth.toml; `config` is merged over
    /// the plugin's own. Any transport, remote workloads included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub middleware_configs: Vec<MiddlewareConfig>,
}

/// A header a remote server expects (registry metadata).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[schema(as = registry::Header)]
pub struct RemoteHeader {
    /// The header name (e.g. `X-API-Key`).
    #[serde(default)]
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Whether the server needs it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// The value sent when no other is given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default: String,
    /// Whether the value is sensitive.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// Valid values, if limited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
}

/// Headers injected into requests to a remote server.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::headerForwardConfig)]
#[serde(deny_unknown_fields)]
pub struct HeaderForward {
    /// Literal header values, stored as given. In API answers and exports
    /// every value is shown as `[redacted]`; an edit that sends
    /// `[redacted]` back keeps the stored value while the remote URL's
    /// origin is unchanged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add_plaintext_headers: BTreeMap<String, String>,
    /// Headers whose values come from the secrets manager: header name →
    /// secret name (a reference, as in `secrets`). Only the references are
    /// stored and shown; each is read at every start of the workload's
    /// proxy (a rotated value is picked up by a restart) and its value is
    /// kept in memory only. A header is given here or in
    /// `add_plaintext_headers`, not in both.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add_headers_from_secret: BTreeMap<String, String>,
}

/// What berth shows instead of a credential-like header value.
pub const REDACTED: &str = "[redacted]";

/// Whether a URL query parameter's value looks like a credential, by its
/// name (`api_key`, `token`, `sig`, …).
fn credential_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "auth",
        "token",
        "key",
        "secret",
        "pass",
        "pwd",
        "sig",
        "session",
        "credential",
        "jwt",
        "code",
        "cookie",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// `url` fit for API answers, exports and logs: a password in it and the
/// values of credential-looking query parameters replaced by
/// [`REDACTED`]. Not a URL (or none of those): returned unchanged.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_owned();
    };
    let mut changed = false;
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(REDACTED));
        changed = true;
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                if credential_param(&k) && !v.is_empty() {
                    changed = true;
                    (k.into_owned(), REDACTED.to_owned())
                } else {
                    (k.into_owned(), v.into_owned())
                }
            })
            .collect();
        if changed {
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    if changed {
        parsed.into()
    } else {
        url.to_owned()
    }
}

/// Whether two URLs have the same web origin (scheme, host, port).
pub fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin() && a.origin().is_tuple(),
        _ => false,
    }
}

impl HeaderForward {
    /// A copy fit for API answers and exports: every configured value
    /// replaced by [`REDACTED`] (a header name says nothing reliable about
    /// whether its value is a credential).
    pub fn redacted(&self) -> Self {
        let mut out = self.clone();
        for value in out.add_plaintext_headers.values_mut() {
            *value = REDACTED.to_owned();
        }
        out
    }

    /// Puts back stored values where an edit sent [`REDACTED`] — only while
    /// the remote server stays the same: `same_server` is false when the
    /// edit changes the URL's origin, and a stored credential is then never
    /// sent to the new one (`Err` names the header).
    pub fn restore_from(
        &mut self,
        stored: Option<&HeaderForward>,
        same_server: bool,
    ) -> Result<(), String> {
        for (name, value) in &mut self.add_plaintext_headers {
            if value != REDACTED {
                continue;
            }
            let Some(old) = stored.and_then(|s| s.add_plaintext_headers.get(name)) else {
                continue;
            };
            if !same_server {
                return Err(format!(
                    "header `{name}`: its stored value is kept only while the URL's origin stays \
                     the same; the edit points to another server, so give the value again"
                ));
            }
            value.clone_from(old);
        }
        Ok(())
    }
}

/// Which fields of a request berth cannot honour yet, by wire name.
///
/// berth refuses such a request instead of storing settings it would not
/// enforce.
pub fn unsupported_fields(req: &CreateRequest) -> Vec<&'static str> {
    let nonempty_json = |v: &Option<serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Object(m)) => !m.is_empty(),
        Some(_) => true,
    };
    let mut out = Vec::new();
    let mut flag = |cond: bool, name| {
        if cond {
            out.push(name);
        }
    };
    flag(
        req.from_registry.is_none() && (!req.registry.is_empty() || !req.server.is_empty()),
        "registry/server",
    );
    flag(nonempty_json(&req.runtime_config), "runtime_config");
    flag(nonempty_json(&req.oauth_config), "oauth_config");
    out
}

/// Response of create and edit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::createWorkloadResponse)]
pub struct CreateWorkloadResponse {
    /// Name of the workload.
    pub name: String,
    /// Port of its proxy.
    pub port: u16,
}

/// One workload in a listing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = core::Workload)]
pub struct WorkloadView {
    /// Name of the workload.
    pub name: String,
    /// The image or package it runs.
    pub package: String,
    /// The URL MCP clients connect to.
    pub url: String,
    /// Port of its proxy.
    pub port: u16,
    /// How the server itself talks.
    #[schema(value_type = String)]
    pub transport_type: String,
    /// How clients talk to the proxy.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_mode: String,
    /// Current status.
    pub status: WorkloadStatus,
    /// Why, in words.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status_context: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// User labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Its group.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Tool filter.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Whether it is a remote workload.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
    /// When the current instance started (RFC 3339); the zero time when it
    /// does not run.
    pub started_at: String,
    /// How many times berth restarted its server after it exited or hung
    /// (berth extension).
    pub restart_count: u32,
    /// The runtime it runs on; absent for a remote workload (berth
    /// extension).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runtime: String,
    /// Tools whose definition changed since it was first seen (berth
    /// extension; absent when none did). Approve them with
    /// `POST /api/v1beta/x/berth/workloads/{name}/tools/approve`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_drift: Vec<crate::proxy::pins::Drift>,
}

/// `GET /workloads` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::workloadListResponse)]
pub struct WorkloadListResponse {
    /// The workloads, by name.
    pub workloads: Vec<WorkloadView>,
}

/// `GET /workloads/{name}/status` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::workloadStatusResponse)]
pub struct WorkloadStatusResponse {
    /// Current status.
    pub status: WorkloadStatus,
}

/// Body of the bulk stop, restart and delete calls.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[schema(as = pkg_api_v1::bulkOperationRequest)]
pub struct BulkOperationRequest {
    /// Workloads to act on (exclusive with `group`).
    #[serde(default)]
    pub names: Vec<String>,
    /// Group whose workloads to act on (exclusive with `names`).
    #[serde(default)]
    pub group: String,
}

/// A middleware entry of the proxy chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = types::MiddlewareConfig)]
pub struct MiddlewareConfig {
    /// Middleware type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its parameters.
    #[schema(value_type = Object)]
    pub parameters: serde_json::Value,
}

/// A workload's configuration, persisted and exported in ToolHive's
/// RunConfig shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = runner::RunConfig)]
pub struct RunConfig {
    /// Version of this document's schema.
    #[serde(default = "schema_version")]
    pub schema_version: String,
    /// What runs.
    pub image: String,
    /// Arguments passed to the server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd_args: Vec<String>,
    /// Workload name.
    pub name: String,
    /// Same as `name`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_name: String,
    /// Same as `name`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_name: String,
    /// How the server talks.
    pub transport: String,
    /// Proxy bind address.
    pub host: String,
    /// Proxy port.
    pub port: u16,
    /// Port the server listens on (HTTP transports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u16>,
    /// The remote server's URL (remote workloads).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_url: String,
    /// Headers sent to the remote server (remote workloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_forward: Option<HeaderForward>,
    /// Host the server listens on (HTTP transports).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_host: String,
    /// Permission profile.
    #[serde(default)]
    pub permission_profile: Option<PermissionProfile>,
    /// Environment variables of the server, as given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    /// Volume mounts as given (`host:container[:ro]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Labels berth puts on the instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub container_labels: BTreeMap<String, String>,
    /// Whether the workload's network is restricted (no network, or an
    /// outbound allowlist).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub isolate_network: bool,
    /// Trust `X-Forwarded-*`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trust_proxy_headers: bool,
    /// Effective proxy mode.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proxy_mode: String,
    /// Group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Proxy middleware chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub middleware_configs: Vec<MiddlewareConfig>,
    /// berth extension: the runtime it runs on; empty for a remote
    /// workload (and in files written before berth had several runtimes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runtime: String,
    /// Secret references, `<name>,target=<ENV>` (ToolHive's form). Values
    /// are read at each start and never stored here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// The registry the workload's entry came from (berth extension).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registry: String,
    /// The registry entry's full name (ToolHive's field).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registry_server_name: String,
    /// The entry's version when created or last upgraded (berth extension).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registry_server_version: String,
    /// Token validation of the proxy's callers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_config: Option<TokenValidatorConfig>,
    /// The Cedar policy, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz_config: Option<serde_json::Value>,
    /// The Cedar policy, as the name of a file of berth's policy directory
    /// (never a path).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub authz_config_path: String,
    /// Audit settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_config: Option<serde_json::Value>,
    /// Visible tools; absent shows all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools_filter: Option<Vec<String>>,
    /// Tool overrides, by the server's tool name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools_override: BTreeMap<String, ToolOverride>,
    /// Tool-definition pinning (berth extension): `record`, `block`, `off`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tool_pinning: String,
}

impl RunConfig {
    /// Whether this is a remote workload: a proxy to `remote_url`, with no
    /// server run by berth.
    pub fn is_remote(&self) -> bool {
        !self.remote_url.is_empty()
    }
}

fn schema_version() -> String {
    SCHEMA_VERSION.to_owned()
}

/// Formats a time as RFC 3339, the zero time for `None`.
pub fn rfc3339(t: Option<OffsetDateTime>) -> String {
    match t {
        Some(t) => t
            .format(&time::format_description::well_known::Rfc3339)
            .expect("times format"),
        None => "0001-01-01T00:00:00Z".to_owned(),
    }
}
