//! From a run configuration to the backend's spec: mounts, network,
//! environment, progress reporting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_runtime_api::{Progress, RuntimeError, WorkloadName, WorkloadSpec};

use super::model::Workload;
use super::permissions::{self};
use super::types::WorkloadStatus;
use super::*;
use crate::egress::proxy_env;

/// How often image build output may replace a starting workload's status
/// context (each write is an fsync'ed status file).
pub(super) const PROGRESS_CONTEXT_EVERY: Duration = Duration::from_millis(500);

/// What a workload may touch (its profile and volumes).
pub fn access_of(config: &Workload) -> Result<permissions::Access, WorkloadError> {
    permissions::resolve(config.permission_profile.as_ref(), &config.volumes)
        .map_err(WorkloadError::Invalid)
}

/// The backend spec of a workload: its environment plus the transport
/// variables MCP servers read (not persisted, so an edit that echoes a GET
/// never pins stale values), its mounts and network. The egress proxy
/// variables of an allowlisted workload are added when it starts, once the
/// proxy's address is known.
pub fn spec_for(config: &Workload) -> Result<WorkloadSpec, WorkloadError> {
    // One strict reading of npx:// and uvx:// specs for every runtime: no
    // URLs, paths, `git+…` or option-like specs reach a package manager.
    if let Some(Err(e)) = berth_container::Package::parse(&config.image) {
        return Err(WorkloadError::Invalid(e.to_string()));
    }
    let access = access_of(config)?;
    let mut spec = WorkloadSpec::new(config.name.clone(), config.image.clone());
    spec.mounts = access.mounts;
    spec.network = access.network.access();
    spec.args = config.args.clone();
    spec.transport = config.transport;
    spec.target_port = config.target_port();
    spec.labels = config.labels.clone();
    spec.env = config.env.clone();
    spec.env
        .entry("MCP_TRANSPORT".into())
        .or_insert_with(|| config.transport.as_str().to_owned());
    if let Some(port) = config.target_port() {
        spec.env
            .entry("MCP_PORT".into())
            .or_insert(port.to_string());
        spec.env
            .entry("FASTMCP_PORT".into())
            .or_insert(port.to_string());
    }
    Ok(spec)
}

impl Workloads {
    /// The spec to deploy `config` with; for an outbound allowlist, the
    /// workload's egress proxy is started first and the spec points at it.
    pub(super) async fn prepare(
        &self,
        name: &WorkloadName,
        config: &Workload,
    ) -> Result<WorkloadSpec, RuntimeError> {
        let mut spec = spec_for(config).map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
        self.resolve_secrets(config, &mut spec).await?;
        if let Some(addr) = self.start_egress(name, config).await? {
            spec.env.extend(proxy_env(addr));
        }
        spec.progress = self.progress_of(name);
        Ok(spec)
    }

    /// Reads the workload's secrets (now: a rotated value is picked up by a
    /// restart) into the spec. A secret that is gone is an invalid spec
    /// naming it; the value is in no error.
    async fn resolve_secrets(
        &self,
        config: &Workload,
        spec: &mut WorkloadSpec,
    ) -> Result<(), RuntimeError> {
        if config.secrets.is_empty() {
            return Ok(());
        }
        let Some(secrets) = self.inner.settings.secrets.as_ref() else {
            return Err(RuntimeError::InvalidSpec(
                "the workload has secrets but berth has no secrets service".into(),
            ));
        };
        for r in &config.secrets {
            let value = secrets.resolve(&r.name).await.map_err(|e| {
                RuntimeError::InvalidSpec(format!("secret `{}` (for {}): {e}", r.name, r.target))
            })?;
            spec.secret_env.insert(
                r.target.clone(),
                berth_runtime_api::SecretValue::new(value.as_str()),
            );
        }
        Ok(())
    }

    /// Where a deploy of `name` reports image pulls and builds: every line
    /// to berth's log of the workload, and (at most once per
    /// [`PROGRESS_CONTEXT_EVERY`], milestones always) to its status context
    /// while it is starting.
    pub(super) fn progress_of(&self, name: &WorkloadName) -> Progress {
        let weak = Arc::downgrade(&self.inner);
        let name = name.clone();
        let last = Mutex::new(None::<std::time::Instant>);
        Progress::new(move |line| {
            let Some(inner) = weak.upgrade() else { return };
            let this = Workloads { inner };
            this.wlog(&name, line);
            let milestone = [
                "pulling image",
                "pulled image",
                "building image",
                "built image",
                "using cached image",
            ]
            .iter()
            .any(|m| line.starts_with(m));
            let now = std::time::Instant::now();
            {
                let mut last = last
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if !milestone
                    && last.is_some_and(|t| now.duration_since(t) < PROGRESS_CONTEXT_EVERY)
                {
                    return;
                }
                *last = Some(now);
            }
            let starting = this
                .table()
                .get(&name)
                .is_some_and(|e| e.status.status == WorkloadStatus::Starting);
            if starting {
                this.set_context(&name, line.to_owned());
            }
        })
    }
}
