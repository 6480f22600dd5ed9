//! The workload service: validates requests, reserves names and ports,
//! keeps the durable state, and drives the backend.
//!
//! One table in memory mirrors the state directory. Table changes happen
//! under one short, synchronous lock (never held across `.await`), which is
//! what makes name and port reservation atomic. Lifecycle operations on a
//! workload (start, stop, restart, edit, delete) run one at a time under
//! that workload's own async lock, in tasks that outlive the request.

mod journal;
mod lifecycle;
pub mod model;
mod ops;
pub mod permissions;
pub mod ports;
pub mod protect;
mod spec;
mod supervise;
pub mod types;
pub mod upgrade;
mod validate;
mod view;
mod wiring;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_runtime_api::{Backend, InvalidName, RuntimeError, WorkloadName};
use time::OffsetDateTime;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::egress::{Egress, EgressConfig};
use crate::groups::{GroupError, Groups};
use crate::plugins::Plugins;
use crate::proxy::Proxies;
use crate::runtimes::Runtimes;
use crate::state::{Kind, StateError, Store};
use model::Workload;
use types::{Desired, RunConfig, StatusRecord, WorkloadStatus};

/// Lines of log served by the logs endpoints.
pub const LOG_TAIL_LINES: usize = 1000;
/// The label with the workload's name, on every instance.
pub use berth_container::labels::LABEL_WORKLOAD;
/// Label with the workload's group.
pub const LABEL_GROUP: &str = "berth.group";

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
    /// Where workload secret references are resolved at each start.
    pub secrets: Option<Arc<crate::secrets::Secrets>>,
    /// What the proxies' protections need (policy directory, audit log,
    /// tool pins).
    pub guarding: protect::Guarding,
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
    Edit { old: Box<Workload> },
    Recover { running: bool },
    Revive { generation: u64 },
}

struct Entry {
    config: Workload,
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
    runtimes: Runtimes,
    proxies: Arc<Proxies>,
    store: Store,
    groups: Arc<Groups>,
    settings: Settings,
    egress: Egress,
    journal: journal::Journal,
    table: Mutex<BTreeMap<WorkloadName, Entry>>,
    tasks: TaskTracker,
    /// Bumped after every change of a workload's status, configuration or
    /// existence; see [`Workloads::changes`].
    changes: tokio::sync::watch::Sender<u64>,
}

/// The workload service; cheap to clone.
#[derive(Clone)]
pub struct Workloads {
    inner: Arc<Inner>,
}

use crate::logging::error_chain;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

// === construction and recovery ===

impl Workloads {
    /// Loads the persisted workloads and starts reconciling them with the
    /// backend in the background: workloads that should run are re-attached
    /// or started again, interrupted deletes are finished.
    pub async fn open(
        runtimes: Runtimes,
        proxies: Arc<Proxies>,
        store: Store,
        groups: Arc<Groups>,
        settings: Settings,
    ) -> Result<Self, WorkloadError> {
        // Upgrades a stopped berth left undecided are undone first.
        let interrupted = upgrade::restore_interrupted(&store);
        let mut table = BTreeMap::new();
        for file in store.list(Kind::RunConfig)? {
            let Ok(name) = WorkloadName::parse(&file) else {
                warn!(file = %file, "Ignoring a run configuration with an invalid name.");
                continue;
            };
            // A stored configuration that cannot be used never stops berth
            // and never deploys under another name: its workload is shown
            // as `error`, with the reason, until it is edited or deleted.
            let unusable = |why: String| {
                (
                    Workload::unusable(&name),
                    Some(format!("{why}: edit or delete this workload")),
                )
            };
            let (config, broken) = match store.read::<RunConfig>(Kind::RunConfig, &file) {
                Ok(Some(c)) if c.name != file => unusable(format!(
                    "the stored run configuration names the workload {:?}, not `{name}`",
                    crate::logging::escape_controls(&c.name)
                )),
                Ok(Some(c)) => match Workload::try_from(c) {
                    Ok(w) if !w.has_ports() => {
                        unusable("the stored run configuration has no port assigned".to_owned())
                    }
                    Ok(mut w) => {
                        // Stored before berth had several runtimes: it ran
                        // on the one berth had, the default.
                        if w.runtime.is_empty() && !w.is_remote() {
                            w.runtime = runtimes
                                .choose("", &w.image)
                                .map_or_else(|_| runtimes.default().kind(), |b| b.kind())
                                .to_owned();
                        }
                        (w, None)
                    }
                    Err(why) => unusable(format!("the stored run configuration is invalid: {why}")),
                },
                Ok(None) => continue,
                Err(err) => unusable(format!(
                    "the stored run configuration cannot be read ({})",
                    error_chain(&err)
                )),
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
        let journal = journal::Journal::start(store.clone());
        let this = Self {
            inner: Arc::new(Inner {
                runtimes,
                proxies,
                store,
                groups,
                egress: Egress::new(settings.egress.clone()),
                journal,
                settings,
                table: Mutex::new(table),
                tasks: TaskTracker::new(),
                changes: tokio::sync::watch::Sender::new(0),
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
        this.reconcile(&interrupted).await?;
        Ok(this)
    }

    /// Compares the table with what each runtime runs. A runtime that
    /// does not answer holds up only its own workloads (they are started
    /// again, and retried while it is unreachable). An instance of a
    /// workload whose upgrade was `interrupted` runs the unconfirmed
    /// version: it is restarted with the restored configuration, not
    /// adopted.
    async fn reconcile(&self, interrupted: &BTreeSet<String>) -> Result<(), WorkloadError> {
        let home: BTreeMap<WorkloadName, String> = self
            .table()
            .iter()
            .map(|(n, e)| (n.clone(), e.config.runtime.clone()))
            .collect();
        let mut running = BTreeSet::new();
        for backend in self.inner.runtimes.iter() {
            let live = match backend.list().await {
                Ok(live) => live,
                Err(err) => {
                    warn!(runtime = backend.kind(), error = %error_chain(&err), "A runtime does not answer; its workloads are retried.");
                    continue;
                }
            };
            for info in live {
                let here = home.get(&info.name).map(String::as_str);
                if here == Some("") {
                    // A workload whose stored configuration is unusable:
                    // its instance is left as it is until it is edited.
                } else if here == Some(backend.kind()) {
                    if info.state.is_running() {
                        running.insert(info.name.clone());
                    }
                } else if info.labels.contains_key(LABEL_WORKLOAD) {
                    // No state for it, or its workload now runs elsewhere.
                    warn!(workload = %info.name, runtime = backend.kind(), "Removing an instance berth has no state for.");
                    if let Err(err) = backend.remove(&info.name).await {
                        warn!(workload = %info.name, error = %error_chain(&err), "Could not remove an orphaned instance.");
                    }
                }
            }
        }
        let known = home.into_keys();
        for name in known {
            let running = running.contains(&name);
            let op = if interrupted.contains(name.as_str()) {
                self.wlog(
                    &name,
                    "an upgrade was interrupted by berth's stop; previous configuration restored",
                );
                let should_run = self
                    .table()
                    .get(&name)
                    .is_some_and(|e| e.broken.is_none() && e.status.desired == Desired::Running);
                if running && should_run {
                    Op::Restart
                } else {
                    Op::Recover { running }
                }
            } else {
                Op::Recover { running }
            };
            self.spawn_op(name, op);
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
        self.inner.runtimes.shutdown().await;
    }

    /// The plugin host, if plugins are configured.
    fn plugins(&self) -> Option<&Arc<Plugins>> {
        self.inner.settings.plugins.as_ref()
    }

    /// The runtime `config` runs on.
    fn backend_for(&self, config: &Workload) -> Result<Arc<dyn Backend>, RuntimeError> {
        self.inner
            .runtimes
            .get(&config.runtime)
            .cloned()
            .ok_or_else(|| {
                RuntimeError::InvalidSpec(format!(
                    "it runs on the `{}` runtime, which this berth does not have now \
                     (it has: {}); edit the workload to run it elsewhere",
                    crate::logging::escape_controls(&config.runtime),
                    self.inner.runtimes.names().join(", ")
                ))
            })
    }

    /// The runtime workload `name` runs on.
    fn backend_of(&self, name: &WorkloadName) -> Result<Arc<dyn Backend>, RuntimeError> {
        let config = self
            .table()
            .get(name)
            .map(|e| e.config.clone())
            .ok_or_else(|| RuntimeError::NotFound(name.clone()))?;
        self.backend_for(&config)
    }

    /// A counter bumped after every change of a workload's status,
    /// configuration or existence: the one way other services (client
    /// configuration) learn that the list of workloads changed. Receivers
    /// read the list again; they never see the change itself.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    fn changed(&self) {
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<WorkloadName, Entry>> {
        self.inner.table.lock().expect("workload table lock")
    }
}

pub use spec::{access_of, spec_for};
pub use supervise::RestartPolicy;
pub use validate::{RESERVED_NAMES, check_secret_headers};
