//! Validation of create and edit requests: the draft run configuration,
//! remote targets, middleware, names, hosts.

use std::collections::BTreeMap;
use std::net::IpAddr;

use berth_runtime_api::{Transport, WorkloadName};

use super::model::Workload;
use super::permissions::{self, Network};
use super::types::{
    CreateRequest, HeaderForward, MiddlewareConfig, PermissionProfile, REDACTED, RunConfig,
    SCHEMA_VERSION, unsupported_fields,
};
use super::*;
use crate::groups::{DEFAULT_GROUP, GroupError};
use crate::proxy::HttpTarget;

impl Workloads {
    /// Checks a request and builds its run configuration, without ports.
    pub(super) fn draft(
        &self,
        name: &WorkloadName,
        req: &CreateRequest,
    ) -> Result<Workload, WorkloadError> {
        check_no_controls(req)?;
        let unsupported = unsupported_fields(req);
        if !unsupported.is_empty() {
            return Err(WorkloadError::Unsupported(unsupported));
        }
        let remote = !req.url.is_empty();
        if remote && !req.image.is_empty() {
            return Err(WorkloadError::Invalid(
                "give either 'image' or 'url', not both".into(),
            ));
        }
        let access = permissions::resolve(req.permission_profile.as_ref(), &req.volumes)
            .and_then(|a| permissions::check_sources(&a).map(|()| a))
            .map_err(WorkloadError::Invalid)?;
        let transport: Transport = if req.transport.is_empty() {
            if remote {
                Transport::StreamableHttp
            } else {
                Transport::Stdio
            }
        } else {
            req.transport
                .parse()
                .map_err(|e: berth_runtime_api::UnknownTransport| {
                    WorkloadError::Invalid(e.to_string())
                })?
        };
        if remote && transport == Transport::Stdio {
            return Err(WorkloadError::Invalid(
                "a remote server is reached over `sse` or `streamable-http`, not `stdio`".into(),
            ));
        }
        let (header_forward, target_host) = if remote {
            let (forward, target) = remote_target(req)?;
            (forward, target)
        } else {
            if req
                .header_forward
                .as_ref()
                .is_some_and(|h| !h.add_headers_from_secret.is_empty())
            {
                return Err(WorkloadError::Invalid(
                    "header_forward.add_headers_from_secret is for a remote workload ('url'): \
                     berth sends those headers to the remote server"
                        .into(),
                ));
            }
            (None, String::new())
        };
        let proxy_mode = match (transport, req.proxy_mode.as_str()) {
            (Transport::Stdio, "" | "streamable-http") => "streamable-http",
            (Transport::Stdio, "sse") => "sse",
            (Transport::Stdio, other) => {
                return Err(WorkloadError::Invalid(format!(
                    "invalid proxy_mode `{other}`: use `sse` or `streamable-http`"
                )));
            }
            (t, _) => t.as_str(),
        };
        let oidc_config = super::protect::token_config(req.oidc.as_ref());
        let tool_overrides = req.tools_override.clone().unwrap_or_default();
        // Checked here for the error message; stored as given.
        let protection = super::protect::spec_of_request(req).map_err(WorkloadError::Invalid)?;
        self.inner
            .settings
            .guarding
            .check_audience(&protection)
            .map_err(WorkloadError::Invalid)?;
        if let Some(src) = &protection.authz {
            self.inner
                .settings
                .guarding
                .authorizer(src, name.as_str())
                .map_err(WorkloadError::Invalid)?;
        }
        let host = if req.host.is_empty() {
            "127.0.0.1".to_owned()
        } else {
            let ip = req.host.parse::<IpAddr>().map_err(|_| {
                WorkloadError::Invalid(format!("invalid host {:?}: not an IP address", req.host))
            })?;
            check_proxy_host(ip, protection.oidc.is_some())?;
            ip.to_string()
        };
        let group = if req.group.is_empty() {
            DEFAULT_GROUP
        } else {
            &req.group
        };
        match self.inner.groups.exists(group) {
            Ok(true) => {}
            Ok(false) => {
                return Err(WorkloadError::Invalid(format!(
                    "group `{group}` does not exist"
                )));
            }
            Err(GroupError::InvalidName(why)) => {
                return Err(WorkloadError::Invalid(format!("invalid group name: {why}")));
            }
            Err(e) => return Err(e.into()),
        }
        for key in req.env_vars.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(WorkloadError::Invalid(format!(
                    "invalid environment variable name {key:?}"
                )));
            }
        }
        if req.env_vars.values().any(|v| v.contains('\0'))
            || req.cmd_arguments.iter().any(|a| a.contains('\0'))
        {
            return Err(WorkloadError::Invalid(
                "environment values and arguments cannot contain null bytes".into(),
            ));
        }
        let secrets = check_secrets(req, remote)?;
        let middleware_configs = self.check_middleware(&req.middleware_configs)?;
        let runtime = if remote {
            if !req.runtime.is_empty() {
                return Err(WorkloadError::Invalid(
                    "a remote workload runs on no runtime: leave 'runtime' empty".into(),
                ));
            }
            String::new()
        } else {
            self.inner
                .runtimes
                .choose(&req.runtime, &req.image)
                .map_err(WorkloadError::Invalid)?
                .kind()
                .to_owned()
        };
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_WORKLOAD.to_owned(), name.to_string());
        labels.insert(LABEL_GROUP.to_owned(), group.to_owned());
        let config = RunConfig {
            schema_version: SCHEMA_VERSION.to_owned(),
            image: req.image.clone(),
            cmd_args: req.cmd_arguments.clone(),
            name: name.to_string(),
            container_name: name.to_string(),
            base_name: name.to_string(),
            transport: transport.as_str().to_owned(),
            host,
            port: 0,
            target_port: None,
            target_host: if remote {
                target_host
            } else if transport == Transport::Stdio {
                String::new()
            } else {
                "127.0.0.1".to_owned()
            },
            remote_url: req.url.clone(),
            header_forward,
            permission_profile: Some(
                req.permission_profile
                    .clone()
                    .unwrap_or_else(PermissionProfile::network),
            ),
            env_vars: req.env_vars.clone(),
            secrets: secrets.iter().map(ToString::to_string).collect(),
            volumes: req.volumes.clone(),
            container_labels: labels,
            isolate_network: access.network != Network::Full,
            trust_proxy_headers: req.trust_proxy_headers,
            proxy_mode: proxy_mode.to_owned(),
            group: group.to_owned(),
            middleware_configs,
            runtime,
            registry: req
                .from_registry
                .as_ref()
                .map(|r| r.registry.clone())
                .unwrap_or_default(),
            registry_server_name: req
                .from_registry
                .as_ref()
                .map(|r| r.server.clone())
                .unwrap_or_default(),
            registry_server_version: req
                .from_registry
                .as_ref()
                .map(|r| r.version.clone())
                .unwrap_or_default(),
            oidc_config,
            authz_config: match &req.authz_config {
                Some(v @ serde_json::Value::Object(_)) => Some(v.clone()),
                _ => None,
            },
            authz_config_path: match &req.authz_config {
                Some(serde_json::Value::String(name)) => name.clone(),
                _ => String::new(),
            },
            audit_config: req.audit_config.clone().filter(|v| !v.is_null()),
            tools_filter: req.tools.clone(),
            tools_override: tool_overrides,
            tool_pinning: req.tool_pinning.clone(),
        };
        Workload::try_from(config).map_err(|e| WorkloadError::Invalid(e.to_string()))
    }

    /// Checks a request's middleware: `wasm` entries naming a loaded
    /// middleware plugin (any transport: the proxy reads every workload's
    /// traffic).
    pub(super) fn check_middleware(
        &self,
        entries: &[MiddlewareConfig],
    ) -> Result<Vec<MiddlewareConfig>, WorkloadError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let Some(plugins) = self.plugins() else {
            return Err(WorkloadError::Invalid(
                "middleware_configs names plugins, but no [[plugins]] are configured".into(),
            ));
        };
        for mc in entries {
            if mc.kind != "wasm" {
                return Err(WorkloadError::Invalid(format!(
                    "middleware type `{}` is not supported: berth runs `wasm` middleware plugins",
                    mc.kind
                )));
            }
            let Some(plugin) = mc.parameters.get("plugin").and_then(|p| p.as_str()) else {
                return Err(WorkloadError::Invalid(
                    "a `wasm` middleware needs `parameters.plugin`, the plugin's name".into(),
                ));
            };
            plugins
                .check_attachment(plugin, mc.parameters.get("config"))
                .map_err(|e| WorkloadError::Invalid(e.to_string()))?;
        }
        Ok(entries.to_vec())
    }
}

/// Checks a remote workload's URL and headers; returns the headers to
/// store (values from secrets as references only) and the URL's
/// `host[:port]`.
pub(super) fn remote_target(
    req: &CreateRequest,
) -> Result<(Option<HeaderForward>, String), WorkloadError> {
    let mut forward = req.header_forward.clone().unwrap_or_default();
    check_secret_headers(&forward)?;
    for h in req.headers.iter().flatten() {
        if h.name.is_empty() {
            return Err(WorkloadError::Invalid(
                "a header in 'headers' has no name".into(),
            ));
        }
        let given = forward
            .add_plaintext_headers
            .keys()
            .chain(forward.add_headers_from_secret.keys())
            .any(|k| k.eq_ignore_ascii_case(&h.name));
        if !given && !h.default.is_empty() {
            forward
                .add_plaintext_headers
                .insert(h.name.clone(), h.default.clone());
        } else if !given && h.required {
            return Err(WorkloadError::Invalid(format!(
                "header `{}` is required: give its value in header_forward.add_plaintext_headers \
                 or name a secret for it in header_forward.add_headers_from_secret",
                h.name
            )));
        }
    }
    for (name, value) in &forward.add_plaintext_headers {
        if value == REDACTED {
            return Err(WorkloadError::Invalid(format!(
                "header `{name}` has the placeholder value `{REDACTED}`: give its real value"
            )));
        }
    }
    let headers: Vec<(String, String)> = forward
        .add_plaintext_headers
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let lower = req.url.to_ascii_lowercase();
    if lower.contains(REDACTED) || lower.contains("%5bredacted%5d") {
        return Err(WorkloadError::Invalid(format!(
            "url has the placeholder value `{REDACTED}`: give its real value"
        )));
    }
    // Refused without quoting the URL: its credentials stay out of the
    // answer and the logs.
    if url::Url::parse(&req.url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some()) {
        return Err(WorkloadError::Invalid(
            "credentials in the URL are not supported; send them as a header \
             (header_forward.add_headers_from_secret)"
                .into(),
        ));
    }
    HttpTarget::remote(&req.url, &headers).map_err(|e| WorkloadError::Invalid(e.to_string()))?;
    let host = super::model::host_port(&req.url);
    let forward = (!forward.add_plaintext_headers.is_empty()
        || !forward.add_headers_from_secret.is_empty())
    .then_some(forward);
    Ok((forward, host))
}

/// Checks `add_headers_from_secret`: each header name by the rules of a
/// plaintext header, each secret name by those of a secret reference, and
/// each header given once (a header also in `add_plaintext_headers`, or
/// twice in another case, is refused). The secrets' existence is checked
/// by the API (after this, so that a bad header is named as such) and
/// again at each start.
pub fn check_secret_headers(forward: &HeaderForward) -> Result<(), WorkloadError> {
    let mut seen = std::collections::BTreeSet::new();
    for (header, secret) in &forward.add_headers_from_secret {
        let shown = crate::logging::escape_controls(header);
        crate::proxy::check_header_name(header).map_err(|e| {
            WorkloadError::Invalid(format!("header_forward.add_headers_from_secret: {e}"))
        })?;
        crate::secrets::check_reference(secret).map_err(|e| {
            WorkloadError::Invalid(format!(
                "header_forward.add_headers_from_secret: header `{shown}`: {e}"
            ))
        })?;
        if forward
            .add_plaintext_headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case(header))
        {
            return Err(WorkloadError::Invalid(format!(
                "header `{shown}` is given both in header_forward.add_plaintext_headers and \
                 in header_forward.add_headers_from_secret: give it once"
            )));
        }
        if !seen.insert(header.to_ascii_lowercase()) {
            return Err(WorkloadError::Invalid(format!(
                "header `{shown}` is given twice in header_forward.add_headers_from_secret \
                 (header names are case-insensitive)"
            )));
        }
    }
    Ok(())
}

/// Refuses control characters (a newline, above all) in the fields that
/// name things: they are never legitimate there and would end up in log
/// lines and file names. Environment values and arguments may hold any
/// text.
/// Checks a request's secret references: names and targets valid, each
/// target once, none on a remote workload (which has no environment).
pub(super) fn check_secrets(
    req: &CreateRequest,
    remote: bool,
) -> Result<Vec<super::model::SecretRef>, WorkloadError> {
    if remote && !req.secrets.is_empty() {
        return Err(WorkloadError::Invalid(
            "a remote workload has no environment for 'secrets': berth runs no server for it"
                .into(),
        ));
    }
    let mut targets = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(req.secrets.len());
    for p in &req.secrets {
        let r = super::model::SecretRef {
            name: p.name.clone(),
            target: p.target.clone(),
        };
        r.check().map_err(WorkloadError::Invalid)?;
        if !targets.insert(r.target.clone()) {
            return Err(WorkloadError::Invalid(format!(
                "secrets: target `{}` is given twice",
                r.target
            )));
        }
        out.push(r);
    }
    Ok(out)
}

pub(super) fn check_no_controls(req: &CreateRequest) -> Result<(), WorkloadError> {
    let named = [
        ("image", &req.image),
        ("url", &req.url),
        ("group", &req.group),
        ("host", &req.host),
        ("transport", &req.transport),
        ("proxy_mode", &req.proxy_mode),
        ("runtime", &req.runtime),
    ];
    let keys = req
        .env_vars
        .keys()
        .map(|k| ("env_vars", k))
        .chain(req.volumes.iter().map(|v| ("volumes", v)));
    for (field, value) in named.into_iter().chain(keys) {
        if value.chars().any(char::is_control) {
            return Err(WorkloadError::Invalid(format!(
                "{field} contains a control character"
            )));
        }
    }
    Ok(())
}

/// Names that are literal path segments under `/api/v1beta/workloads/`
/// (bulk routes and ToolHive's upgrade routes): a workload so named could
/// not be addressed by `/workloads/{name}`. `api::workloads` tests that
/// every literal route is listed.
pub const RESERVED_NAMES: &[&str] = &["delete", "restart", "stop", "upgrade", "upgrade-check"];

/// A workload's proxy address must be loopback unless the workload
/// requires authentication (`oidc`): beyond loopback anyone who can reach
/// the machine could otherwise use the server. An address the machine
/// cannot bind (e.g. `::1` without IPv6) is refused here, not later as "no
/// free port".
pub(super) fn check_proxy_host(ip: IpAddr, authenticated: bool) -> Result<(), WorkloadError> {
    if !ip.is_loopback() && !authenticated {
        return Err(WorkloadError::Invalid(format!(
            "host `{ip}` is not a loopback address: a workload's proxy without authentication \
             listens on 127.0.0.1 or ::1 only (set `oidc` to require a token and bind beyond loopback)"
        )));
    }
    std::net::TcpListener::bind((ip, 0)).map_err(|e| {
        WorkloadError::Invalid(format!("host `{ip}` cannot be bound on this machine: {e}"))
    })?;
    Ok(())
}
