//! The API view of workloads: lists, one workload, its configuration,
//! its logs.

use std::net::IpAddr;

use berth_runtime_api::{RuntimeError, WorkloadName};

use super::model::{ProxyMode, Workload};
use super::types::{
    CreateRequest, OidcOptions, RunConfig, SecretParameter, WorkloadStatus, WorkloadView,
    redact_url, rfc3339,
};
use super::*;
use crate::proxy::HttpTarget;
use crate::state::StateError;

impl Workloads {
    /// Workloads by name: all of them with `all`, else only running ones;
    /// only those of `group` if given.
    pub fn list(&self, all: bool, group: Option<&str>) -> Result<Vec<WorkloadView>, WorkloadError> {
        if let Some(group) = group {
            self.inner.groups.get(group)?;
        }
        let table = self.table();
        Ok(table
            .iter()
            .filter(|(_, e)| all || e.status.status == WorkloadStatus::Running)
            .filter(|(_, e)| group.is_none_or(|g| e.config.group == g))
            .map(|(name, e)| self.with_drift(view(name, e)))
            .collect())
    }

    /// `v` with the workload's changed tools.
    fn with_drift(&self, mut v: WorkloadView) -> WorkloadView {
        if let Some(pins) = self.inner.settings.guarding.known_pins(&v.name) {
            v.tool_drift = pins.drift();
        }
        v
    }

    /// Approves the current definitions of a workload's changed `tools`
    /// (all of them when `None`); returns the tools approved.
    pub async fn approve_tools(
        &self,
        name: &str,
        tools: Option<&[String]>,
    ) -> Result<Vec<String>, WorkloadError> {
        let name = WorkloadName::parse(name)?;
        self.config(name.as_str())?;
        let Some(pins) = self.inner.settings.guarding.known_pins(name.as_str()) else {
            return match tools {
                Some([first, ..]) => Err(WorkloadError::Invalid(format!(
                    "tool `{}` has no change to approve",
                    crate::logging::escape_controls(first)
                ))),
                _ => Ok(Vec::new()),
            };
        };
        pins.approve(tools).await.map_err(WorkloadError::Invalid)
    }

    /// One workload as listed.
    pub fn workload(&self, name: &str) -> Result<WorkloadView, WorkloadError> {
        let name = WorkloadName::parse(name)?;
        let table = self.table();
        let e = table
            .get(&name)
            .ok_or_else(|| WorkloadError::NotFound(name.to_string()))?;
        let v = view(&name, e);
        drop(table);
        Ok(self.with_drift(v))
    }

    /// A workload's configuration, in the create request's shape.
    pub fn get(&self, name: &str) -> Result<CreateRequest, WorkloadError> {
        let c = self.export(name)?;
        Ok(CreateRequest {
            name: c.name,
            image: c.image,
            url: c.remote_url,
            header_forward: c.header_forward,
            middleware_configs: c.middleware_configs,
            runtime: c.runtime,
            registry: c.registry,
            server: c.registry_server_name,
            transport: c.transport,
            proxy_mode: c.proxy_mode,
            host: c.host,
            proxy_port: c.port,
            target_port: c.target_port.unwrap_or(0),
            cmd_arguments: c.cmd_args,
            env_vars: c.env_vars,
            secrets: c
                .secrets
                .iter()
                .filter_map(|s| super::model::SecretRef::parse(s).ok())
                .map(|r| SecretParameter {
                    name: r.name,
                    target: r.target,
                })
                .collect(),
            volumes: c.volumes,
            permission_profile: c.permission_profile,
            network_isolation: Some(c.isolate_network),
            trust_proxy_headers: c.trust_proxy_headers,
            oidc: Some(
                c.oidc_config
                    .map(|o| OidcOptions {
                        audience: o.audience,
                        client_id: o.client_id,
                        // Never shown (the field is not serialized either).
                        client_secret: String::new(),
                        introspection_url: o.introspection_url,
                        issuer: o.issuer,
                        jwks_url: o.jwks_url,
                        scopes: o.scopes,
                    })
                    .unwrap_or_default(),
            ),
            authz_config: match (c.authz_config, c.authz_config_path) {
                (Some(inline), _) => Some(inline),
                (None, path) if !path.is_empty() => Some(serde_json::Value::String(path)),
                _ => None,
            },
            tools: c.tools_filter,
            tools_override: (!c.tools_override.is_empty()).then_some(c.tools_override),
            audit_config: c.audit_config,
            tool_pinning: c.tool_pinning,
            group: c.group,
            ..CreateRequest::default()
        })
    }

    /// A workload's run configuration, credential-like header values
    /// redacted.
    pub fn export(&self, name: &str) -> Result<RunConfig, WorkloadError> {
        let mut config = RunConfig::from(&self.config(name)?);
        config.header_forward = config.header_forward.map(|h| h.redacted());
        if let Some(oidc) = &mut config.oidc_config
            && !oidc.client_secret.is_empty()
        {
            oidc.client_secret = super::types::REDACTED.to_owned();
        }
        config.remote_url = redact_url(&config.remote_url);
        Ok(config)
    }

    pub(super) fn config(&self, name: &str) -> Result<Workload, WorkloadError> {
        let name = WorkloadName::parse(name)?;
        self.table()
            .get(&name)
            .map(|e| e.config.clone())
            .ok_or_else(|| WorkloadError::NotFound(name.to_string()))
    }

    /// What the workload's processes use now, when its runtime measures it
    /// (native processes); `None` for a remote workload, one that does not
    /// run, or a runtime that does not measure.
    pub async fn usage(
        &self,
        name: &str,
    ) -> Result<Option<berth_runtime_api::Usage>, WorkloadError> {
        let name = WorkloadName::parse(name)?;
        if self.config(name.as_str())?.is_remote() {
            return Ok(None);
        }
        match self.backend_of(&name)?.usage(&name).await {
            Ok(usage) => Ok(usage),
            Err(RuntimeError::NotFound(_)) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// The last lines the workload's server wrote to its log.
    pub async fn logs(&self, name: &str) -> Result<String, WorkloadError> {
        let name = WorkloadName::parse(name)?;
        if self.config(name.as_str())?.is_remote() {
            return Err(WorkloadError::NoServerLogs(name.to_string()));
        }
        match self.backend_of(&name)?.logs(&name, LOG_TAIL_LINES).await {
            Ok(text) => Ok(text),
            Err(RuntimeError::NotFound(_)) => Ok(String::new()),
            Err(err) => Err(err.into()),
        }
    }

    /// The last lines of berth's own log of the workload: lifecycle events
    /// and, with the proxy, its messages.
    pub async fn proxy_logs(&self, name: &str) -> Result<String, WorkloadError> {
        let name = WorkloadName::parse(name)?;
        self.workload(name.as_str())?;
        self.inner.journal.flush().await;
        let path = self.inner.store.workload_log(name.as_str());
        let mut text = String::new();
        for p in [path.with_extension("log.1"), path] {
            match tokio::fs::read_to_string(&p).await {
                Ok(t) => text.push_str(&t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StateError::Io { path: p, source }.into()),
            }
        }
        Ok(tail_lines(&text, LOG_TAIL_LINES).to_owned())
    }
}

impl Workloads {
    /// The last lines of a workload's audit log.
    pub async fn audit_logs(&self, name: &str) -> Result<String, WorkloadError> {
        let name = WorkloadName::parse(name)?;
        self.workload(name.as_str())?;
        let Some(audit) = &self.inner.settings.guarding.audit else {
            return Ok(String::new());
        };
        audit.flush().await;
        audit
            .tail(name.as_str(), LOG_TAIL_LINES)
            .await
            .map_err(|source| {
                StateError::Io {
                    path: std::path::PathBuf::from("audit"),
                    source,
                }
                .into()
            })
    }
}

pub(super) fn tail_lines(text: &str, n: usize) -> &str {
    // Cut at a line end, so still UTF-8.
    std::str::from_utf8(berth_runtime_api::last_lines(text.as_bytes(), n)).unwrap_or(text)
}

pub(super) fn url(config: &Workload, name: &WorkloadName) -> String {
    if config.port == 0 {
        return String::new(); // a stored configuration that cannot be used
    }
    let host = match config.host {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    if config.is_remote() {
        let Some(path) = HttpTarget::path_of(config.remote_url()) else {
            return String::new();
        };
        return if config.proxy_mode == ProxyMode::Sse {
            let path = if path.is_empty() { "/sse" } else { &path };
            format!("http://{host}:{}{path}#{name}", config.port)
        } else {
            format!("http://{host}:{}{path}", config.port)
        };
    }
    if config.proxy_mode == ProxyMode::Sse {
        format!("http://{host}:{}/sse#{name}", config.port)
    } else {
        format!("http://{host}:{}/mcp", config.port)
    }
}

pub(super) fn view(name: &WorkloadName, e: &Entry) -> WorkloadView {
    let running = e.status.status == WorkloadStatus::Running;
    WorkloadView {
        name: name.to_string(),
        package: if e.config.is_remote() {
            "remote".to_owned()
        } else {
            e.config.image.clone()
        },
        url: url(&e.config, name),
        port: e.config.port,
        transport_type: e.config.transport.as_str().to_owned(),
        proxy_mode: e.config.proxy_mode.as_str().to_owned(),
        status: e.status.status,
        status_context: e.status.status_context.clone(),
        created_at: rfc3339(Some(e.status.created_at)),
        labels: e
            .config
            .labels
            .iter()
            .filter(|(k, _)| !k.starts_with("berth."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        group: e.config.group.clone(),
        tools: e.config.protection.tools.clone().unwrap_or_default(),
        remote: e.config.is_remote(),
        started_at: rfc3339(e.status.started_at.filter(|_| running)),
        restart_count: e.status.restart_count,
        runtime: e.config.runtime.clone(),
        tool_drift: Vec::new(),
    }
}
