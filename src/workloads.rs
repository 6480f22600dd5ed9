//! The workload service: validates requests, reserves names and ports,
//! keeps the durable state, and drives the backend.
//!
//! One table in memory mirrors the state directory. Table changes happen
//! under one short, synchronous lock (never held across `.await`), which is
//! what makes name and port reservation atomic. Lifecycle operations on a
//! workload (start, stop, restart, edit, delete) run one at a time under
//! that workload's own async lock, in tasks that outlive the request.

pub mod permissions;
pub mod ports;
pub mod types;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_runtime_api::{
    Backend, ExitStatus, InvalidName, Progress, RuntimeError, RuntimeState, Transport,
    WorkloadName, WorkloadSpec,
};
use time::OffsetDateTime;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::egress::{Egress, EgressConfig, proxy_env};
use crate::groups::{DEFAULT_GROUP, GroupError, Groups};
use crate::plugins::Plugins;
use crate::proxy::{Chain, HttpTarget, Proxies};
use crate::state::{Kind, StateError, Store};
use permissions::Network;
use types::{
    BulkOperationRequest, CreateRequest, CreateWorkloadResponse, Desired, HeaderForward,
    MiddlewareConfig, OidcOptions, PermissionProfile, REDACTED, RunConfig, SCHEMA_VERSION,
    StatusRecord, Workload, WorkloadStatus, redact_url, rfc3339, same_origin, unsupported_fields,
};

/// Lines of log served by the logs endpoints.
pub const LOG_TAIL_LINES: usize = 1000;
/// Size at which berth's own per-workload log is rotated.
const WORKLOAD_LOG_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Label keys berth puts on every instance.
pub const LABEL_WORKLOAD: &str = "berth.workload";
/// Label with the workload's group.
pub const LABEL_GROUP: &str = "berth.group";
/// How often image build output may replace a starting workload's status
/// context (each write is an fsync'ed status file).
const PROGRESS_CONTEXT_EVERY: Duration = Duration::from_millis(500);

/// What went wrong in a workload operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// The workload name breaks the naming rules.
    #[error("invalid workload name: {0}")]
    InvalidName(#[from] InvalidName),
    /// One of several names breaks the naming rules.
    #[error("invalid workload name '{name}': {source}")]
    InvalidNameIn {
        /// The offending name.
        name: String,
        /// Why.
        #[source]
        source: InvalidName,
    },
    /// No such workload.
    #[error("workload not found: {0}")]
    NotFound(String),
    /// A remote workload has no server of its own, hence no server logs.
    #[error("workload {0} is remote: it has no server logs (see its proxy logs)")]
    NoServerLogs(String),
    /// A workload with the name exists.
    #[error("workload with name {0} already exists")]
    AlreadyExists(String),
    /// The request is malformed or inconsistent.
    #[error("invalid run configuration provided: {0}")]
    Invalid(String),
    /// The request asks for settings berth cannot enforce yet.
    #[error("not supported by berth yet: {}", .0.join(", "))]
    Unsupported(Vec<&'static str>),
    /// A requested port is taken.
    #[error("invalid run configuration provided: requested port {0} is not available")]
    PortUnavailable(u16),
    /// No port is free in the configured range.
    #[error("no free port in the range {0}..{1}")]
    NoFreePort(u16, u16),
    /// A group problem.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// The backend failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Settings of the workload service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Automatic proxy ports come from `start..end`.
    pub port_range: (u16, u16),
    /// When a workload's server exits or stops answering, how it is restarted.
    pub restart: RestartPolicy,
    /// The plugin host, for `wasm` middleware.
    pub plugins: Option<Arc<Plugins>>,
    /// The egress proxies of workloads with an outbound allowlist.
    pub egress: EgressConfig,
}

/// How berth restarts a server that exited by itself or stopped answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartPolicy {
    /// Delay before the first restart, in milliseconds; doubles each time.
    pub base_delay_ms: u64,
    /// Longest delay between restarts, in milliseconds.
    pub max_delay_ms: u64,
    /// Restarts in a row (each run shorter than `stable_secs`) before berth
    /// gives up and reports `error`; 0 never restarts.
    pub max_attempts: u32,
    /// A run at least this long resets the count.
    pub stable_secs: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            base_delay_ms: 1000,
            max_delay_ms: 60_000,
            max_attempts: 10,
            stable_secs: 30,
        }
    }
}

/// The longest wait between start attempts while the runtime is
/// unreachable: trying costs nothing, and a workload should answer again
/// within seconds of its engine's return, however long the engine was away.
const UNREACHABLE_RETRY_MAX: Duration = Duration::from_secs(5);

impl RestartPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(20);
        Duration::from_millis(
            self.base_delay_ms
                .saturating_mul(factor)
                .min(self.max_delay_ms),
        )
    }

    /// The wait before start attempt `attempt`; shorter while the runtime
    /// is unreachable (see [`UNREACHABLE_RETRY_MAX`]).
    fn retry_delay(&self, attempt: u32, runtime_unreachable: bool) -> Duration {
        let delay = self.delay(attempt);
        if runtime_unreachable {
            delay.min(UNREACHABLE_RETRY_MAX)
        } else {
            delay
        }
    }
}

/// A lifecycle operation, run in the background under the workload's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkOp {
    /// Stop.
    Stop,
    /// Restart.
    Restart,
    /// Delete.
    Delete,
}

enum Op {
    Start,
    Stop,
    Restart,
    Delete,
    Edit { old: Box<RunConfig> },
    Recover { running: bool },
    Revive { generation: u64 },
}

struct Entry {
    config: RunConfig,
    status: StatusRecord,
    /// Serializes lifecycle operations on this workload.
    op: Arc<tokio::sync::Mutex<()>>,
    /// Bumped on every deploy; an exit watcher only reports for its own.
    generation: u64,
    /// Restarts in a row without a stable run.
    streak: u32,
    /// When the current instance started (monotonic).
    since: Option<std::time::Instant>,
    /// Why the stored run configuration cannot be used (unreadable, or it
    /// names another workload): such a workload is never started, only
    /// shown as `error`, edited or deleted.
    broken: Option<String>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    proxies: Arc<Proxies>,
    store: Store,
    groups: Arc<Groups>,
    settings: Settings,
    egress: Egress,
    table: Mutex<BTreeMap<WorkloadName, Entry>>,
    tasks: TaskTracker,
}

/// The workload service; cheap to clone.
#[derive(Clone)]
pub struct Workloads {
    inner: Arc<Inner>,
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

// === impl Workloads: construction and recovery ===

impl Workloads {
    /// Loads the persisted workloads and starts reconciling them with the
    /// backend in the background: workloads that should run are re-attached
    /// or started again, interrupted deletes are finished.
    pub async fn open(
        backend: Arc<dyn Backend>,
        proxies: Arc<Proxies>,
        store: Store,
        groups: Arc<Groups>,
        settings: Settings,
    ) -> Result<Self, WorkloadError> {
        let mut table = BTreeMap::new();
        for file in store.list(Kind::RunConfig)? {
            let Ok(name) = WorkloadName::parse(&file) else {
                warn!(file = %file, "Ignoring a run configuration with an invalid name.");
                continue;
            };
            // A stored configuration that cannot be used never stops berth
            // and never deploys under another name: its workload is shown
            // as `error`, with the reason, until it is edited or deleted.
            let (config, broken) = match store.read::<RunConfig>(Kind::RunConfig, &file) {
                Ok(Some(c)) if c.name == file => (c, None),
                Ok(Some(c)) => (
                    RunConfig::unusable(&name),
                    Some(format!(
                        "the stored run configuration names the workload {:?}, not `{name}`: \
                         edit or delete this workload",
                        crate::logging::escape_controls(&c.name)
                    )),
                ),
                Ok(None) => continue,
                Err(err) => (
                    RunConfig::unusable(&name),
                    Some(format!(
                        "the stored run configuration cannot be read ({}): edit or delete this workload",
                        error_chain(&err)
                    )),
                ),
            };
            let mut status = match store.read::<StatusRecord>(Kind::Status, &file) {
                Ok(Some(s)) => s,
                Ok(None) | Err(_) => StatusRecord::new_starting(now()),
            };
            if let Some(why) = &broken {
                tracing::error!(workload = %name, reason = %why, "A stored workload cannot be loaded.");
                status.status = WorkloadStatus::Error;
                status.status_context.clone_from(why);
                status.desired = Desired::Stopped;
            }
            table.insert(
                name,
                Entry {
                    config,
                    status,
                    op: Arc::default(),
                    generation: 0,
                    streak: 0,
                    since: None,
                    broken,
                },
            );
        }
        let this = Self {
            inner: Arc::new(Inner {
                backend,
                proxies,
                store,
                groups,
                egress: Egress::new(settings.egress.clone()),
                settings,
                table: Mutex::new(table),
                tasks: TaskTracker::new(),
            }),
        };
        let weak = Arc::downgrade(&this.inner);
        this.inner
            .proxies
            .set_log_sink(Arc::new(move |name: &str, line: &str| {
                if let (Some(inner), Ok(name)) = (weak.upgrade(), WorkloadName::parse(name)) {
                    Workloads { inner }.wlog(&name, line);
                }
            }));
        this.reconcile().await?;
        Ok(this)
    }

    async fn reconcile(&self) -> Result<(), WorkloadError> {
        let live = self.inner.backend.list().await?;
        let known: BTreeSet<WorkloadName> = self.table().keys().cloned().collect();
        let mut running = BTreeSet::new();
        for info in live {
            if known.contains(&info.name) {
                if info.state.is_running() {
                    running.insert(info.name.clone());
                }
            } else if info.labels.contains_key(LABEL_WORKLOAD) {
                warn!(workload = %info.name, "Removing an instance berth has no state for.");
                if let Err(err) = self.inner.backend.remove(&info.name).await {
                    warn!(workload = %info.name, error = %error_chain(&err), "Could not remove an orphaned instance.");
                }
            }
        }
        for name in known {
            let running = running.contains(&name);
            self.spawn_op(name, Op::Recover { running });
        }
        Ok(())
    }

    /// Lets running operations finish (up to `grace`), then lets the backend
    /// shut down its instances.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.tasks.close();
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                "Workload operations still running at shutdown; their workloads are reconciled on the next start."
            );
        }
        self.inner.backend.shutdown().await;
    }

    /// The backend in use.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// The group store.
    pub fn groups(&self) -> &Groups {
        &self.inner.groups
    }

    /// The plugin host, if plugins are configured.
    pub fn plugins(&self) -> Option<&Arc<Plugins>> {
        self.inner.settings.plugins.as_ref()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<WorkloadName, Entry>> {
        self.inner.table.lock().expect("workload table lock")
    }
}

// === impl Workloads: reads ===

impl Workloads {
    /// Workloads by name: all of them with `all`, else only running ones;
    /// only those of `group` if given.
    pub fn list(&self, all: bool, group: Option<&str>) -> Result<Vec<Workload>, WorkloadError> {
        if let Some(group) = group {
            self.inner.groups.get(group)?;
        }
        let table = self.table();
        Ok(table
            .iter()
            .filter(|(_, e)| all || e.status.status == WorkloadStatus::Running)
            .filter(|(_, e)| group.is_none_or(|g| e.config.group == g))
            .map(|(name, e)| view(name, e))
            .collect())
    }

    /// One workload as listed.
    pub fn workload(&self, name: &str) -> Result<Workload, WorkloadError> {
        let name = WorkloadName::parse(name)?;
        let table = self.table();
        let e = table
            .get(&name)
            .ok_or_else(|| WorkloadError::NotFound(name.to_string()))?;
        Ok(view(&name, e))
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
            transport: c.transport,
            proxy_mode: c.proxy_mode,
            host: c.host,
            proxy_port: c.port,
            target_port: c.target_port.unwrap_or(0),
            cmd_arguments: c.cmd_args,
            env_vars: c.env_vars,
            volumes: c.volumes,
            permission_profile: c.permission_profile,
            network_isolation: Some(c.isolate_network),
            trust_proxy_headers: c.trust_proxy_headers,
            oidc: Some(OidcOptions::default()),
            group: c.group,
            ..CreateRequest::default()
        })
    }

    /// A workload's run configuration, credential-like header values
    /// redacted.
    pub fn export(&self, name: &str) -> Result<RunConfig, WorkloadError> {
        let mut config = self.config(name)?;
        config.header_forward = config.header_forward.map(|h| h.redacted());
        config.remote_url = redact_url(&config.remote_url);
        Ok(config)
    }

    fn config(&self, name: &str) -> Result<RunConfig, WorkloadError> {
        let name = WorkloadName::parse(name)?;
        self.table()
            .get(&name)
            .map(|e| e.config.clone())
            .ok_or_else(|| WorkloadError::NotFound(name.to_string()))
    }

    /// The last lines the workload's server wrote to its log.
    pub async fn logs(&self, name: &str) -> Result<String, WorkloadError> {
        let name = WorkloadName::parse(name)?;
        if self.config(name.as_str())?.is_remote() {
            return Err(WorkloadError::NoServerLogs(name.to_string()));
        }
        match self.inner.backend.logs(&name, LOG_TAIL_LINES).await {
            Ok(text) => Ok(text),
            Err(RuntimeError::NotFound(_)) => Ok(String::new()),
            Err(err) => Err(err.into()),
        }
    }

    /// The last lines of berth's own log of the workload: lifecycle events
    /// and, with the proxy, its messages.
    pub fn proxy_logs(&self, name: &str) -> Result<String, WorkloadError> {
        let name = WorkloadName::parse(name)?;
        self.workload(name.as_str())?;
        let path = self.inner.store.workload_log(name.as_str());
        let mut text = String::new();
        for p in [path.with_extension("log.1"), path] {
            match fs::read_to_string(&p) {
                Ok(t) => text.push_str(&t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StateError::Io { path: p, source }.into()),
            }
        }
        Ok(tail_lines(&text, LOG_TAIL_LINES).to_owned())
    }
}

fn tail_lines(text: &str, n: usize) -> &str {
    let body = text.strip_suffix('\n').unwrap_or(text);
    match body.rmatch_indices('\n').nth(n.saturating_sub(1)) {
        Some((i, _)) if n > 0 => &text[i + 1..],
        _ if n == 0 => "",
        _ => text,
    }
}

fn url(config: &RunConfig, name: &WorkloadName) -> String {
    let host = match config.host.parse::<IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => config.host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    if config.is_remote() {
        let Some(path) = HttpTarget::path_of(&config.remote_url) else {
            return String::new();
        };
        return if config.proxy_mode == "sse" {
            let path = if path.is_empty() { "/sse" } else { &path };
            format!("http://{host}:{}{path}#{name}", config.port)
        } else {
            format!("http://{host}:{}{path}", config.port)
        };
    }
    if config.proxy_mode == "sse" {
        format!("http://{host}:{}/sse#{name}", config.port)
    } else {
        format!("http://{host}:{}/mcp", config.port)
    }
}

fn view(name: &WorkloadName, e: &Entry) -> Workload {
    let running = e.status.status == WorkloadStatus::Running;
    Workload {
        name: name.to_string(),
        package: if e.config.is_remote() {
            "remote".to_owned()
        } else {
            e.config.image.clone()
        },
        url: url(&e.config, name),
        port: e.config.port,
        transport_type: e.config.transport.clone(),
        proxy_mode: e.config.proxy_mode.clone(),
        status: e.status.status,
        status_context: e.status.status_context.clone(),
        created_at: rfc3339(Some(e.status.created_at)),
        labels: e
            .config
            .container_labels
            .iter()
            .filter(|(k, _)| !k.starts_with("berth."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        group: e.config.group.clone(),
        tools: Vec::new(),
        remote: e.config.is_remote(),
        started_at: rfc3339(e.status.started_at.filter(|_| running)),
        restart_count: e.status.restart_count,
    }
}

// === impl Workloads: changes ===

impl Workloads {
    /// Validates and stores a new workload, then starts it in the background.
    pub async fn create(
        &self,
        req: CreateRequest,
    ) -> Result<CreateWorkloadResponse, WorkloadError> {
        if req.image.is_empty() && req.url.is_empty() && req.registry.is_empty() {
            return Err(WorkloadError::Invalid(
                "either 'image', 'url', or 'registry'+'server' fields are required".into(),
            ));
        }
        let name = WorkloadName::parse(&req.name)?;
        if RESERVED_NAMES.contains(&name.as_str()) {
            return Err(WorkloadError::Invalid(format!(
                "workload name `{name}` is reserved: /api/v1beta/workloads/{name} is a route of its own"
            )));
        }
        let draft = self.draft(&name, &req)?;
        let config = {
            let mut table = self.table();
            if table.contains_key(&name) {
                return Err(WorkloadError::AlreadyExists(name.to_string()));
            }
            let config = self.assign_ports(&table, draft, &req, None)?;
            if !config.is_remote() {
                self.inner.backend.check(&spec_for(&config)?)?;
            }
            let status = StatusRecord::new_starting(now());
            self.inner
                .store
                .write(Kind::RunConfig, name.as_str(), &config)?;
            self.inner
                .store
                .write(Kind::Status, name.as_str(), &status)?;
            table.insert(
                name.clone(),
                Entry {
                    config: config.clone(),
                    status,
                    op: Arc::default(),
                    generation: 0,
                    streak: 0,
                    since: None,
                    broken: None,
                },
            );
            config
        };
        self.wlog(&name, &format!("created (image {})", config.image));
        info!(workload = %name, image = %config.image, port = config.port, "Workload created.");
        self.spawn_op(name.clone(), Op::Start);
        Ok(CreateWorkloadResponse {
            name: name.to_string(),
            port: config.port,
        })
    }

    /// Replaces a workload's configuration (full replacement: omitted fields
    /// take their defaults; a zero `proxy_port` keeps the current port).
    /// The new configuration is validated and stored first; the workload
    /// is then restarted with it in the background, and if it does not
    /// start, the previous configuration is restored and started again.
    pub async fn edit(
        &self,
        name: &str,
        mut req: CreateRequest,
    ) -> Result<CreateWorkloadResponse, WorkloadError> {
        let name = WorkloadName::parse(name)?;
        req.name = name.to_string();
        if req.image.is_empty() && req.url.is_empty() {
            return Err(WorkloadError::Invalid(
                "either 'image' or 'url' is required".into(),
            ));
        }
        let stored = self.config(name.as_str())?;
        // The URL as answered by a GET (credentials redacted) stands for
        // the stored one.
        if !req.url.is_empty() && req.url == redact_url(&stored.remote_url) {
            req.url.clone_from(&stored.remote_url);
        }
        if let Some(forward) = &mut req.header_forward {
            let same_server = same_origin(&req.url, &stored.remote_url);
            forward
                .restore_from(stored.header_forward.as_ref(), same_server)
                .map_err(WorkloadError::Invalid)?;
        }
        let draft = self.draft(&name, &req)?;
        let (old, config) = {
            let mut table = self.table();
            let entry = table
                .get(&name)
                .ok_or_else(|| WorkloadError::NotFound(name.to_string()))?;
            let old = entry.config.clone();
            // A workload whose stored configuration was unusable has no
            // ports of its own yet.
            let current = entry
                .broken
                .is_none()
                .then_some((old.port, old.target_port));
            let was_broken = entry.broken.is_some();
            let config = self.assign_ports(&table, draft, &req, current)?;
            if !config.is_remote() {
                self.inner.backend.check(&spec_for(&config)?)?;
            }
            self.inner
                .store
                .write(Kind::RunConfig, name.as_str(), &config)?;
            let entry = table.get_mut(&name).expect("checked above");
            entry.config = config.clone();
            if was_broken {
                // Repaired: it runs with the new configuration.
                entry.broken = None;
                entry.status.desired = Desired::Running;
            }
            (old, config)
        };
        self.wlog(&name, "configuration replaced; restarting with it");
        self.spawn_op(name.clone(), Op::Edit { old: Box::new(old) });
        Ok(CreateWorkloadResponse {
            name: name.to_string(),
            port: config.port,
        })
    }

    /// Stops a workload in the background.
    pub fn stop(&self, name: &str) -> Result<(), WorkloadError> {
        self.schedule(name, Op::Stop)
    }

    /// Restarts a workload in the background (stops it first if it runs).
    pub fn restart(&self, name: &str) -> Result<(), WorkloadError> {
        self.schedule(name, Op::Restart)
    }

    /// Deletes a workload in the background.
    pub fn delete(&self, name: &str) -> Result<(), WorkloadError> {
        self.schedule(name, Op::Delete)
    }

    fn schedule(&self, name: &str, op: Op) -> Result<(), WorkloadError> {
        let name = WorkloadName::parse(name)?;
        if !self.table().contains_key(&name) {
            return Err(WorkloadError::NotFound(name.to_string()));
        }
        self.persist_intent(&name, &op);
        self.spawn_op(name, op);
        Ok(())
    }

    /// Writes what an accepted stop, restart or delete will do before the
    /// API answers, so that a berth killed right after the answer finishes
    /// it on its next start (recovery reads `removing` and the desired
    /// state).
    fn persist_intent(&self, name: &WorkloadName, op: &Op) {
        match op {
            Op::Delete => self.set_status(name, WorkloadStatus::Removing, String::new(), None),
            Op::Stop => self.set_desired(name, Desired::Stopped),
            Op::Restart => self.set_desired(name, Desired::Running),
            _ => {}
        }
    }

    /// Applies `op` to the workloads named in `req` (all of them checked
    /// first: nothing starts if one is invalid or unknown).
    pub fn bulk(&self, op: BulkOp, req: BulkOperationRequest) -> Result<(), WorkloadError> {
        let names = self.bulk_targets(req)?;
        let to_op = |op: BulkOp| match op {
            BulkOp::Stop => Op::Stop,
            BulkOp::Restart => Op::Restart,
            BulkOp::Delete => Op::Delete,
        };
        // Every target's intent is on disk before any starts and before
        // the API answers.
        for name in &names {
            self.persist_intent(name, &to_op(op));
        }
        for name in names {
            self.spawn_op(name, to_op(op));
        }
        Ok(())
    }

    fn bulk_targets(&self, req: BulkOperationRequest) -> Result<Vec<WorkloadName>, WorkloadError> {
        match (req.names.is_empty(), req.group.is_empty()) {
            (false, false) => Err(WorkloadError::Invalid(
                "cannot specify both names and group".into(),
            )),
            (true, true) => Err(WorkloadError::Invalid(
                "must specify either names or group".into(),
            )),
            (true, false) => {
                self.inner.groups.get(&req.group)?;
                Ok(self
                    .table()
                    .iter()
                    .filter(|(_, e)| e.config.group == req.group)
                    .map(|(n, _)| n.clone())
                    .collect())
            }
            (false, true) => {
                let mut names = BTreeSet::new();
                for n in &req.names {
                    let name =
                        WorkloadName::parse(n).map_err(|source| WorkloadError::InvalidNameIn {
                            name: n.clone(),
                            source,
                        })?;
                    names.insert(name);
                }
                let table = self.table();
                let missing: Vec<_> = names
                    .iter()
                    .filter(|n| !table.contains_key(*n))
                    .map(WorkloadName::to_string)
                    .collect();
                if !missing.is_empty() {
                    return Err(WorkloadError::NotFound(missing.join(", ")));
                }
                Ok(names.into_iter().collect())
            }
        }
    }

    /// Deletes group `name`: its workloads are deleted with
    /// `with_workloads` (waiting for that), else moved to `default`.
    pub async fn delete_group(
        &self,
        name: &str,
        with_workloads: bool,
    ) -> Result<(), WorkloadError> {
        crate::groups::validate_name(name)?;
        if name == DEFAULT_GROUP {
            return Err(GroupError::DeleteDefault.into());
        }
        self.inner.groups.get(name)?;
        let members: Vec<WorkloadName> = self
            .table()
            .iter()
            .filter(|(_, e)| e.config.group == name)
            .map(|(n, _)| n.clone())
            .collect();
        if with_workloads {
            let deletes = members.into_iter().map(|n| self.run_op(n, Op::Delete));
            futures::future::join_all(deletes).await;
            let left: Vec<_> = self
                .table()
                .iter()
                .filter(|(_, e)| e.config.group == name)
                .map(|(n, _)| n.to_string())
                .collect();
            if !left.is_empty() {
                return Err(WorkloadError::Invalid(format!(
                    "could not delete workloads {} of group {name}; see their status",
                    left.join(", ")
                )));
            }
        } else {
            let mut table = self.table();
            for n in members {
                if let Some(e) = table.get_mut(&n) {
                    let mut config = e.config.clone();
                    config.group = DEFAULT_GROUP.to_owned();
                    config
                        .container_labels
                        .insert(LABEL_GROUP.into(), DEFAULT_GROUP.into());
                    self.inner
                        .store
                        .write(Kind::RunConfig, n.as_str(), &config)?;
                    e.config = config;
                }
            }
        }
        self.inner.groups.remove(name)?;
        Ok(())
    }
}

// === impl Workloads: validation ===

impl Workloads {
    /// Checks a request and builds its run configuration, without ports.
    fn draft(&self, name: &WorkloadName, req: &CreateRequest) -> Result<RunConfig, WorkloadError> {
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
        let host = if req.host.is_empty() {
            "127.0.0.1".to_owned()
        } else {
            let ip = req.host.parse::<IpAddr>().map_err(|_| {
                WorkloadError::Invalid(format!("invalid host {:?}: not an IP address", req.host))
            })?;
            check_proxy_host(ip)?;
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
        let middleware_configs = self.check_middleware(&req.middleware_configs)?;
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
            volumes: req.volumes.clone(),
            container_labels: labels,
            isolate_network: access.network != Network::Full,
            trust_proxy_headers: req.trust_proxy_headers,
            proxy_mode: proxy_mode.to_owned(),
            group: group.to_owned(),
            middleware_configs,
        };
        Ok(config)
    }

    /// Checks a request's middleware: `wasm` entries naming a loaded
    /// middleware plugin (any transport: the proxy reads every workload's
    /// traffic).
    fn check_middleware(
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

    /// The middleware chain of a workload (global plugins first).
    fn chain_for(&self, config: &RunConfig) -> Result<Option<Chain>, String> {
        let Some(plugins) = self.plugins() else {
            return Ok(None);
        };
        let attachments: Vec<(String, Option<serde_json::Value>)> = config
            .middleware_configs
            .iter()
            .filter(|mc| mc.kind == "wasm")
            .filter_map(|mc| {
                let plugin = mc.parameters.get("plugin")?.as_str()?.to_owned();
                Some((plugin, mc.parameters.get("config").cloned()))
            })
            .collect();
        plugins
            .chain(&attachments)
            .map_err(|e| format!("middleware cannot be set up: {e}"))
    }

    /// Chooses the proxy port (and the target port of HTTP transports);
    /// called under the table lock so that no two workloads get one port.
    fn assign_ports(
        &self,
        table: &BTreeMap<WorkloadName, Entry>,
        mut config: RunConfig,
        req: &CreateRequest,
        current: Option<(u16, Option<u16>)>,
    ) -> Result<RunConfig, WorkloadError> {
        let mut taken: BTreeSet<u16> = BTreeSet::new();
        for (n, e) in table {
            if n.as_str() != config.name {
                taken.insert(e.config.port);
                taken.extend(e.config.target_port);
            }
        }
        let host: IpAddr = config.host.parse().expect("validated in draft");
        let (start, end) = self.inner.settings.port_range;
        let choose = |requested: u16, current: Option<u16>, taken: &BTreeSet<u16>| match (
            requested, current,
        ) {
            (0, Some(cur)) => Ok(cur),
            (p, Some(cur)) if p == cur => Ok(cur),
            (0, None) => {
                ports::pick(host, start, end, taken).ok_or(WorkloadError::NoFreePort(start, end))
            }
            (p, _) if taken.contains(&p) || !ports::bindable(host, p) => {
                Err(WorkloadError::PortUnavailable(p))
            }
            (p, _) => Ok(p),
        };
        config.port = choose(req.proxy_port, current.map(|c| c.0), &taken)?;
        taken.insert(config.port);
        if config.transport != Transport::Stdio.as_str() && !config.is_remote() {
            let target = choose(req.target_port, current.and_then(|c| c.1), &taken)?;
            if target == config.port {
                return Err(WorkloadError::Invalid(
                    "target_port must differ from proxy_port".into(),
                ));
            }
            config.target_port = Some(target);
        }
        Ok(config)
    }
}

/// Checks a remote workload's URL and headers; returns the headers to
/// store and the URL's `host[:port]`.
fn remote_target(req: &CreateRequest) -> Result<(Option<HeaderForward>, String), WorkloadError> {
    let mut forward = req.header_forward.clone().unwrap_or_default();
    for h in req.headers.iter().flatten() {
        if h.name.is_empty() {
            return Err(WorkloadError::Invalid(
                "a header in 'headers' has no name".into(),
            ));
        }
        let given = forward
            .add_plaintext_headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case(&h.name));
        if !given && !h.default.is_empty() {
            forward
                .add_plaintext_headers
                .insert(h.name.clone(), h.default.clone());
        } else if !given && h.required {
            return Err(WorkloadError::Invalid(format!(
                "header `{}` is required: give its value in header_forward.add_plaintext_headers",
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
    HttpTarget::remote(&req.url, &headers).map_err(|e| WorkloadError::Invalid(e.to_string()))?;
    let uri: axum::http::Uri = req.url.parse().expect("checked by HttpTarget::remote");
    let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let forward = (!forward.add_plaintext_headers.is_empty()).then_some(forward);
    Ok((forward, host))
}

/// What a run configuration may touch (its profile and volumes).
pub fn access_of(config: &RunConfig) -> Result<permissions::Access, WorkloadError> {
    permissions::resolve(config.permission_profile.as_ref(), &config.volumes)
        .map_err(WorkloadError::Invalid)
}

/// The backend spec of a run configuration: its environment plus the
/// transport variables MCP servers read (not persisted, so an edit that
/// echoes a GET never pins stale values), its mounts and network. The
/// egress proxy variables of an allowlisted workload are added when it
/// starts, once the proxy's address is known.
pub fn spec_for(config: &RunConfig) -> Result<WorkloadSpec, WorkloadError> {
    let name = WorkloadName::parse(&config.name).expect("stored names are valid");
    // One strict reading of npx:// and uvx:// specs for every runtime: no
    // URLs, paths, `git+…` or option-like specs reach a package manager.
    if let Some(Err(e)) = berth_package_image::Package::parse(&config.image) {
        return Err(WorkloadError::Invalid(e.to_string()));
    }
    let access = access_of(config)?;
    let mut spec = WorkloadSpec::new(name, config.image.clone());
    spec.mounts = access.mounts;
    spec.network = access.network.access();
    spec.args = config.cmd_args.clone();
    spec.transport = config.transport.parse().unwrap_or_default();
    spec.target_port = config.target_port;
    spec.labels = config.container_labels.clone();
    spec.env = config.env_vars.clone();
    spec.env
        .entry("MCP_TRANSPORT".into())
        .or_insert_with(|| config.transport.clone());
    if let Some(port) = config.target_port {
        spec.env
            .entry("MCP_PORT".into())
            .or_insert(port.to_string());
        spec.env
            .entry("FASTMCP_PORT".into())
            .or_insert(port.to_string());
    }
    Ok(spec)
}

// === impl Workloads: background operations ===

impl Workloads {
    fn spawn_op(&self, name: WorkloadName, op: Op) {
        let this = self.clone();
        self.inner
            .tasks
            .spawn(async move { this.run_op(name, op).await });
    }

    async fn run_op(&self, name: WorkloadName, op: Op) {
        let Some(lock) = self.table().get(&name).map(|e| e.op.clone()) else {
            return;
        };
        let _guard = lock.lock().await;
        if !self.table().contains_key(&name) {
            return; // deleted while this operation waited
        }
        match op {
            Op::Start => self.start_instance(&name).await,
            Op::Stop => {
                self.set_desired(&name, Desired::Stopped);
                self.stop_instance(&name).await;
            }
            Op::Restart => {
                self.set_desired(&name, Desired::Running);
                self.stop_instance(&name).await;
                self.start_instance(&name).await;
            }
            Op::Delete => self.delete_now(&name).await,
            Op::Edit { old } => self.apply_edit(&name, *old).await,
            Op::Recover { running } => self.recover(&name, running).await,
            Op::Revive { generation } => {
                let due = self.table().get(&name).is_some_and(|e| {
                    e.generation == generation
                        && e.status.desired == Desired::Running
                        && matches!(
                            e.status.status,
                            WorkloadStatus::Starting | WorkloadStatus::Unhealthy
                        )
                });
                if due {
                    self.start_instance(&name).await;
                }
            }
        }
    }

    async fn recover(&self, name: &WorkloadName, running: bool) {
        let (status, desired) = match self.table().get(name) {
            Some(e) if e.broken.is_some() => return,
            Some(e) => (e.status.status, e.status.desired),
            None => return,
        };
        if status == WorkloadStatus::Removing {
            self.delete_now(name).await;
        } else if desired == Desired::Running {
            if running {
                self.adopt(name).await;
            } else {
                self.start_instance(name).await;
            }
        } else {
            if running {
                self.stop_instance(name).await;
            }
            if status != WorkloadStatus::Error {
                self.set_status(name, WorkloadStatus::Stopped, String::new(), None);
            }
        }
    }

    async fn adopt(&self, name: &WorkloadName) {
        if !self.try_adopt(name).await {
            self.start_instance(name).await;
        }
    }

    /// Takes over an instance the backend still runs (after a berth restart);
    /// false if there is none.
    async fn try_adopt(&self, name: &WorkloadName) -> bool {
        match self.inner.backend.inspect(name).await {
            Ok(info) if info.state.is_running() => {
                let Some(config) = self.table().get(name).map(|e| e.config.clone()) else {
                    return true;
                };
                if let Err(err) = self.start_egress(name, &config).await {
                    let why = format!("failed to restore its egress proxy: {}", error_chain(&err));
                    self.wlog(name, &why);
                    self.set_status(name, WorkloadStatus::Error, why, None);
                    return true;
                }
                if let Err(why) = self.connect_proxy(name, &config, info.http_endpoint).await {
                    self.wlog(name, &why);
                    self.set_status(name, WorkloadStatus::Error, why, None);
                    return true;
                }
                let generation = self.bump_generation(name);
                self.set_status(
                    name,
                    WorkloadStatus::Running,
                    String::new(),
                    info.started_at,
                );
                self.wlog(name, "re-attached to the running instance");
                self.watch(name.clone(), generation);
                self.health_loop(name.clone(), generation);
                true
            }
            _ => false,
        }
    }

    async fn start_instance(&self, name: &WorkloadName) {
        let (config, broken) = match self.table().get(name) {
            Some(e) => (e.config.clone(), e.broken.clone()),
            None => return,
        };
        if let Some(why) = broken {
            self.set_status(name, WorkloadStatus::Error, why, None);
            return;
        }
        let context = self
            .table()
            .get(name)
            .filter(|e| e.status.status == WorkloadStatus::Starting)
            .map(|e| e.status.status_context.clone())
            .unwrap_or_default();
        self.set_status(name, WorkloadStatus::Starting, context, None);
        if config.is_remote() {
            // Nothing to run: the proxy is the whole workload.
            match self.start_proxy(name, &config, None).await {
                Ok(()) => {
                    self.bump_generation(name);
                    self.set_status(name, WorkloadStatus::Running, String::new(), Some(now()));
                    self.wlog(
                        name,
                        &format!("proxying to {}", redact_url(&config.remote_url)),
                    );
                    info!(workload = %name, "Remote workload started.");
                }
                Err(why) => {
                    self.wlog(name, &why);
                    self.set_status(name, WorkloadStatus::Error, why, None);
                }
            }
            return;
        }
        // A stdio proxy binds its port before the server starts, so that a
        // taken port fails early; an HTTP one needs the server's endpoint.
        let stdio = config.transport == Transport::Stdio.as_str();
        if stdio && let Err(why) = self.start_proxy(name, &config, None).await {
            self.wlog(name, &why);
            self.set_status(name, WorkloadStatus::Error, why, None);
            return;
        }
        let deployed = match self.prepare(name, &config).await {
            Ok(spec) => self.inner.backend.deploy(spec).await,
            Err(err) => Err(err),
        };
        match deployed {
            Ok(info) => {
                if info.state.is_running()
                    && let Err(why) = self.connect_proxy(name, &config, info.http_endpoint).await
                {
                    warn!(workload = %name, error = %why, "Workload started but cannot be reached.");
                    let _ = self.inner.backend.stop(name).await;
                    self.wlog(name, &why);
                    self.set_status(name, WorkloadStatus::Error, why, None);
                    return;
                }
                let generation = self.bump_generation(name);
                let started = info.started_at.or(Some(now()));
                match info.state {
                    RuntimeState::Exited(exit) => self.on_exit(name, generation, &exit),
                    _ => {
                        self.set_status(name, WorkloadStatus::Running, String::new(), started);
                        self.wlog(name, &format!("started ({})", config.image));
                        info!(workload = %name, "Workload started.");
                        self.watch(name.clone(), generation);
                        self.health_loop(name.clone(), generation);
                    }
                }
            }
            Err(RuntimeError::AlreadyExists(_)) if self.try_adopt(name).await => {}
            Err(err) => {
                let why = format!("failed to start: {}", error_chain(&err));
                warn!(workload = %name, error = %why, "Workload did not start.");
                self.wlog(name, &why);
                // While recovering from a crash, or while the runtime is
                // unreachable, keep trying with backoff; a first start that
                // fails for another reason is an error to report.
                let (generation, retrying) = self
                    .table()
                    .get(name)
                    .map(|e| (e.generation, e.streak > 0))
                    .unwrap_or((0, false));
                if matches!(err, RuntimeError::Unavailable { .. }) {
                    self.revive(name, generation, why, false);
                } else if retrying {
                    self.revive_after(name, generation, why);
                } else {
                    self.set_status(name, WorkloadStatus::Error, why, None);
                }
            }
        }
    }

    /// The spec to deploy `config` with; for an outbound allowlist, the
    /// workload's egress proxy is started first and the spec points at it.
    async fn prepare(
        &self,
        name: &WorkloadName,
        config: &RunConfig,
    ) -> Result<WorkloadSpec, RuntimeError> {
        let mut spec = spec_for(config).map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
        if let Some(addr) = self.start_egress(name, config).await? {
            spec.env.extend(proxy_env(addr));
        }
        spec.progress = self.progress_of(name);
        Ok(spec)
    }

    /// Where a deploy of `name` reports image pulls and builds: every line
    /// to berth's log of the workload, and (at most once per
    /// [`PROGRESS_CONTEXT_EVERY`], milestones always) to its status context
    /// while it is starting.
    fn progress_of(&self, name: &WorkloadName) -> Progress {
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

    /// Runs the egress proxy of a workload with an outbound allowlist, on
    /// the host's address of its isolated network, and returns the proxy's
    /// address; stops a leftover proxy of a workload without one.
    async fn start_egress(
        &self,
        name: &WorkloadName,
        config: &RunConfig,
    ) -> Result<Option<std::net::SocketAddr>, RuntimeError> {
        let access = access_of(config).map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
        let Network::Allowlist(policy) = access.network else {
            self.inner.egress.stop(name.as_str());
            return Ok(None);
        };
        let ip = self.inner.backend.isolated_network(name).await?;
        let weak = Arc::downgrade(&self.inner);
        let log: crate::egress::LogSink = Arc::new(move |n: &str, line: &str| {
            if let (Some(inner), Ok(n)) = (weak.upgrade(), WorkloadName::parse(n)) {
                Workloads { inner }.wlog(&n, line);
            }
        });
        let addr = self
            .inner
            .egress
            .start(name.as_str(), ip, policy, log)
            .map_err(|e| RuntimeError::backend(format!("starting the egress proxy on {ip}"), e))?;
        Ok(Some(addr))
    }

    async fn stop_instance(&self, name: &WorkloadName) {
        let status = match self.table().get(name) {
            Some(e) => e.status.status,
            None => return,
        };
        if status == WorkloadStatus::Stopped {
            return;
        }
        self.set_status(name, WorkloadStatus::Stopping, String::new(), None);
        let remote = self.table().get(name).is_some_and(|e| e.config.is_remote());
        let stopped = if remote {
            Ok(())
        } else {
            self.inner.backend.stop(name).await
        };
        self.inner.proxies.stop(name.as_str()).await;
        self.inner.egress.stop(name.as_str());
        match stopped {
            Ok(()) | Err(RuntimeError::NotFound(_)) => {
                self.wlog(name, "stopped");
                info!(workload = %name, "Workload stopped.");
                self.set_status(name, WorkloadStatus::Stopped, String::new(), None);
            }
            Err(err) => {
                let why = format!("failed to stop: {}", error_chain(&err));
                self.wlog(name, &why);
                self.set_status(name, WorkloadStatus::Error, why, None);
            }
        }
    }

    async fn delete_now(&self, name: &WorkloadName) {
        self.set_status(name, WorkloadStatus::Removing, String::new(), None);
        self.inner.proxies.stop(name.as_str()).await;
        self.inner.egress.stop(name.as_str());
        let remote = self.table().get(name).is_some_and(|e| e.config.is_remote());
        let removed = if remote {
            Ok(())
        } else {
            self.inner.backend.remove(name).await
        };
        match removed {
            Ok(()) | Err(RuntimeError::NotFound(_)) => {}
            Err(err) => {
                let why = format!("failed to remove: {}", error_chain(&err));
                self.wlog(name, &why);
                self.set_status(name, WorkloadStatus::Error, why, None);
                return;
            }
        }
        let mut table = self.table();
        let store = &self.inner.store;
        let removed = store
            .remove(Kind::RunConfig, name.as_str())
            .and_then(|()| store.remove(Kind::Status, name.as_str()));
        if let Err(err) = removed {
            drop(table);
            let why = format!("failed to remove state: {}", error_chain(&err));
            self.set_status(name, WorkloadStatus::Error, why, None);
            return;
        }
        table.remove(name);
        let log = store.workload_log(name.as_str());
        let _ = fs::remove_file(log.with_extension("log.1"));
        let _ = fs::remove_file(log);
        info!(workload = %name, "Workload deleted.");
    }

    async fn apply_edit(&self, name: &WorkloadName, old: RunConfig) {
        let desired = match self.table().get(name) {
            Some(e) => e.status.desired,
            None => return,
        };
        if desired == Desired::Stopped {
            return; // a stopped workload keeps its new configuration for its next start
        }
        self.stop_instance(name).await;
        self.start_instance(name).await;
        let failed = self
            .table()
            .get(name)
            .filter(|e| e.status.status == WorkloadStatus::Error)
            .map(|e| e.status.status_context.clone());
        if let Some(why) = failed {
            warn!(workload = %name, error = %why, "Edited workload did not start; restoring its previous configuration.");
            {
                let mut table = self.table();
                if self
                    .inner
                    .store
                    .write(Kind::RunConfig, name.as_str(), &old)
                    .is_ok()
                    && let Some(e) = table.get_mut(name)
                {
                    e.config = old;
                }
            }
            self.start_instance(name).await;
            let restored = format!("edit failed ({why}); previous configuration restored");
            self.wlog(name, &restored);
            let status = self.table().get(name).map(|e| e.status.status);
            if status == Some(WorkloadStatus::Running) {
                self.set_context(name, restored);
            }
        }
    }

    fn watch(&self, name: WorkloadName, generation: u64) {
        let this = self.clone();
        tokio::spawn(async move {
            match this.inner.backend.wait(&name).await {
                Ok(exit) => this.on_exit(&name, generation, &exit),
                Err(err) => this.on_lost(&name, generation, &err),
            }
        });
    }

    /// The runtime lost the instance (engine down, container removed behind
    /// berth's back): restart it like a crash.
    fn on_lost(&self, name: &WorkloadName, generation: u64, err: &RuntimeError) {
        let current = self
            .table()
            .get(name)
            .map(|e| (e.generation, e.status.status));
        if current != Some((generation, WorkloadStatus::Running)) {
            return;
        }
        let why = format!("lost the running instance: {}", error_chain(err));
        warn!(workload = %name, error = %why, "Workload instance lost.");
        self.wlog(name, &why);
        // An engine that went away is no fault of the workload: never a
        // reason to give up on it.
        let unreachable = matches!(err, RuntimeError::Unavailable { .. });
        self.revive(name, generation, why, !unreachable);
    }

    fn on_exit(&self, name: &WorkloadName, generation: u64, exit: &ExitStatus) {
        if exit.stopped_by_request {
            return;
        }
        let current = self
            .table()
            .get(name)
            .map(|e| (e.generation, e.status.status));
        if current != Some((generation, WorkloadStatus::Running))
            && current != Some((generation, WorkloadStatus::Starting))
        {
            return;
        }
        let why = format!("process {}", exit.describe());
        warn!(workload = %name, exit = %why, "Workload exited.");
        self.wlog(name, &why);
        self.revive_after(name, generation, why);
    }

    /// Restarts a server that died or hung, with exponential backoff; after
    /// too many quick failures in a row the workload is left in `error`.
    fn revive_after(&self, name: &WorkloadName, generation: u64, why: String) {
        self.revive(name, generation, why, true);
    }

    /// Schedules the next start of a workload that should run. The delay
    /// doubles with every attempt in a row; a run of at least `stable_secs`
    /// starts the count again. With `may_give_up`, too many attempts leave
    /// the workload in `error`; without (the runtime itself is unreachable,
    /// which is no fault of the workload) berth keeps trying, at most
    /// [`UNREACHABLE_RETRY_MAX`] apart.
    fn revive(&self, name: &WorkloadName, generation: u64, why: String, may_give_up: bool) {
        let policy = self.inner.settings.restart;
        let attempt = {
            let mut table = self.table();
            let Some(e) = table.get_mut(name) else { return };
            if e.generation != generation || e.status.desired != Desired::Running {
                return;
            }
            // Only a run that actually lasted resets the count; `since` is
            // cleared so that failed starts keep counting.
            let stable = e
                .since
                .take()
                .is_some_and(|t| t.elapsed() >= Duration::from_secs(policy.stable_secs));
            e.streak = if stable { 1 } else { e.streak + 1 };
            if !may_give_up {
                e.streak = e.streak.min(policy.max_attempts.max(1));
            }
            e.streak
        };
        if may_give_up && attempt > policy.max_attempts {
            let msg = if policy.max_attempts == 0 {
                why
            } else {
                format!(
                    "{why}; gave up after {} restarts in a row",
                    policy.max_attempts
                )
            };
            self.wlog(name, &msg);
            self.set_status(name, WorkloadStatus::Error, msg, None);
            return;
        }
        let delay = policy.retry_delay(attempt, !may_give_up);
        let msg = format!("{why}; restarting in {delay:?} (attempt {attempt})");
        self.wlog(name, &msg);
        self.update(name, |s| {
            s.status = WorkloadStatus::Starting;
            s.status_context = msg;
            s.started_at = None;
            s.restart_count += 1;
        });
        let this = self.clone();
        let name = name.clone();
        self.inner.tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            this.spawn_op(name, Op::Revive { generation });
        });
    }

    /// Binds the workload's proxy port (a no-op if it is bound already).
    /// An HTTP workload is reached at `endpoint` (a container's published
    /// port) or else at its target port on the host.
    async fn start_proxy(
        &self,
        name: &WorkloadName,
        config: &RunConfig,
        endpoint: Option<std::net::SocketAddr>,
    ) -> Result<(), String> {
        // A stored host that is not loopback (a hand-edited or older state
        // file) never exposes the proxy: it is bound to 127.0.0.1 instead.
        let host: IpAddr = match config.host.parse::<IpAddr>() {
            Ok(ip) if ip.is_loopback() => ip,
            _ => IpAddr::from([127, 0, 0, 1]),
        };
        let addr = std::net::SocketAddr::new(host, config.port);
        let http = if config.is_remote() {
            let headers: Vec<(String, String)> = config
                .header_forward
                .iter()
                .flat_map(|h| h.add_plaintext_headers.clone())
                .collect();
            Some(
                HttpTarget::remote(&config.remote_url, &headers)
                    .map_err(|e| format!("invalid remote server: {e}"))?,
            )
        } else {
            match (config.transport.as_str(), endpoint, config.target_port) {
                ("stdio", ..) => None,
                (_, Some(ep), _) => Some(HttpTarget::local(&ep.ip().to_string(), ep.port())),
                (_, None, Some(port)) => Some(HttpTarget::local(
                    if config.target_host.is_empty() {
                        "127.0.0.1"
                    } else {
                        &config.target_host
                    },
                    port,
                )),
                (_, None, None) => None,
            }
        };
        let chain = self.chain_for(config)?;
        self.inner
            .proxies
            .start(name.as_str(), addr, http, chain)
            .await
            .map(drop)
            .map_err(|e| format!("proxy cannot start: {}", error_chain(&e)))
    }

    /// Starts the proxy of an instance that runs, and attaches its stdio
    /// (after a deploy, or to re-attach after a berth restart).
    async fn connect_proxy(
        &self,
        name: &WorkloadName,
        config: &RunConfig,
        endpoint: Option<std::net::SocketAddr>,
    ) -> Result<(), String> {
        self.start_proxy(name, config, endpoint).await?;
        if config.transport == Transport::Stdio.as_str() {
            // A proxy still connected to a server that ran on (its engine
            // was unreachable meanwhile) lets go first: one holder at a time.
            self.inner.proxies.release(name.as_str()).await;
            let io = self
                .inner
                .backend
                .attach(name)
                .await
                .map_err(|e| format!("cannot attach to the server: {}", error_chain(&e)))?;
            self.inner.proxies.attach(name.as_str(), io);
        }
        Ok(())
    }

    /// Pings a stdio server through its proxy; a server that stops
    /// answering is marked unhealthy and restarted.
    fn health_loop(&self, name: WorkloadName, generation: u64) {
        let interval = self.inner.proxies.config().health_interval_secs;
        let threshold = self.inner.proxies.config().health_failures.max(1);
        let Some(mux) = self.inner.proxies.mux(name.as_str()) else {
            return;
        };
        if interval == 0 {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut failures = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(interval)).await;
                let current = this
                    .table()
                    .get(&name)
                    .map(|e| (e.generation, e.status.status));
                if current != Some((generation, WorkloadStatus::Running)) {
                    return;
                }
                match mux.ping().await {
                    Ok(_) => failures = 0,
                    Err(why) => {
                        failures += 1;
                        warn!(workload = %name, error = %why, failures, "Health ping failed.");
                        if failures >= threshold {
                            let why = format!("not answering pings ({why})");
                            this.wlog(&name, &why);
                            this.set_status(&name, WorkloadStatus::Unhealthy, why.clone(), None);
                            let _ = this.inner.backend.stop(&name).await;
                            this.revive_after(&name, generation, why);
                            return;
                        }
                    }
                }
            }
        });
    }
}

// === impl Workloads: status bookkeeping ===

impl Workloads {
    fn bump_generation(&self, name: &WorkloadName) -> u64 {
        let mut table = self.table();
        match table.get_mut(name) {
            Some(e) => {
                e.generation += 1;
                e.since = Some(std::time::Instant::now());
                e.generation
            }
            None => 0,
        }
    }

    fn update(&self, name: &WorkloadName, f: impl FnOnce(&mut StatusRecord)) {
        let mut table = self.table();
        let Some(e) = table.get_mut(name) else { return };
        let mut next = e.status.clone();
        f(&mut next);
        next.updated_at = now();
        if let Err(err) = self.inner.store.write(Kind::Status, name.as_str(), &next) {
            tracing::error!(workload = %name, error = %error_chain(&err), "Cannot persist a workload status.");
        }
        e.status = next;
    }

    fn set_status(
        &self,
        name: &WorkloadName,
        status: WorkloadStatus,
        context: String,
        started_at: Option<OffsetDateTime>,
    ) {
        self.update(name, |s| {
            s.status = status;
            s.status_context = context;
            if started_at.is_some() || status != WorkloadStatus::Running {
                s.started_at = started_at;
            }
        });
    }

    fn set_context(&self, name: &WorkloadName, context: String) {
        self.update(name, |s| s.status_context = context);
    }

    fn set_desired(&self, name: &WorkloadName, desired: Desired) {
        self.update(name, |s| s.desired = desired);
    }

    /// Appends a line to berth's own log of the workload.
    fn wlog(&self, name: &WorkloadName, line: &str) {
        let path = self.inner.store.workload_log(name.as_str());
        if fs::metadata(&path).is_ok_and(|m| m.len() > WORKLOAD_LOG_MAX_BYTES) {
            let _ = fs::rename(&path, path.with_extension("log.1"));
        }
        let written = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                // One event, one line, whatever the event quotes.
                let line = crate::logging::escape_controls(line);
                writeln!(f, "{} {line}", rfc3339(Some(now())))
            });
        if let Err(err) = written {
            warn!(workload = %name, error = %err, "Cannot write the workload log.");
        }
    }
}

/// Refuses control characters (a newline, above all) in the fields that
/// name things: they are never legitimate there and would end up in log
/// lines and file names. Environment values and arguments may hold any
/// text.
fn check_no_controls(req: &CreateRequest) -> Result<(), WorkloadError> {
    let named = [
        ("image", &req.image),
        ("url", &req.url),
        ("group", &req.group),
        ("host", &req.host),
        ("transport", &req.transport),
        ("proxy_mode", &req.proxy_mode),
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

/// A workload's proxy address must be loopback: the proxy has no
/// authentication of its own yet, so beyond loopback anyone who can reach
/// the machine could use the server. An address the machine cannot bind
/// (e.g. `::1` without IPv6) is refused here, not later as "no free port".
fn check_proxy_host(ip: IpAddr) -> Result<(), WorkloadError> {
    if !ip.is_loopback() {
        return Err(WorkloadError::Invalid(format!(
            "host `{ip}` is not a loopback address: a workload's proxy has no authentication, \
             so it listens on 127.0.0.1 or ::1 only"
        )));
    }
    std::net::TcpListener::bind((ip, 0)).map_err(|e| {
        WorkloadError::Invalid(format!("host `{ip}` cannot be bound on this machine: {e}"))
    })?;
    Ok(())
}
