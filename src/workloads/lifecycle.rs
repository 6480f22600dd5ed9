//! The background operations on one workload, each under its lock: start,
//! stop, delete, edit, recovery after a berth restart, adoption.

use berth_runtime_api::{RuntimeError, RuntimeState, WorkloadName};
use tracing::{info, warn};

use super::types::{Desired, RunConfig, WorkloadStatus, redact_url};
use super::*;
use crate::state::Kind;

impl Workloads {
    pub(super) fn spawn_op(&self, name: WorkloadName, op: Op) {
        let this = self.clone();
        self.inner
            .tasks
            .spawn(async move { this.run_op(name, op).await });
    }

    pub(super) async fn run_op(&self, name: WorkloadName, op: Op) {
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
            Op::Edit { old } => {
                // Failures are in the workload's status and log.
                let _ = self.apply_edit(&name, *old).await;
            }
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

    pub(super) async fn recover(&self, name: &WorkloadName, running: bool) {
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

    pub(super) async fn adopt(&self, name: &WorkloadName) {
        if !self.try_adopt(name).await {
            self.start_instance(name).await;
        }
    }

    /// Takes over an instance the backend still runs (after a berth restart);
    /// false if there is none.
    pub(super) async fn try_adopt(&self, name: &WorkloadName) -> bool {
        let inspected = match self.backend_of(name) {
            Ok(backend) => backend.inspect(name).await,
            Err(err) => Err(err),
        };
        match inspected {
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

    pub(super) async fn start_instance(&self, name: &WorkloadName) {
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
                        &format!("proxying to {}", redact_url(config.remote_url())),
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
        let stdio = config.is_stdio();
        if stdio && let Err(why) = self.start_proxy(name, &config, None).await {
            self.wlog(name, &why);
            self.set_status(name, WorkloadStatus::Error, why, None);
            return;
        }
        let deployed = match self.prepare(name, &config).await {
            Ok(spec) => match self.backend_for(&config) {
                Ok(backend) => backend.deploy(spec).await,
                Err(err) => Err(err),
            },
            Err(err) => Err(err),
        };
        match deployed {
            Ok(info) => {
                if info.state.is_running()
                    && let Err(why) = self.connect_proxy(name, &config, info.http_endpoint).await
                {
                    warn!(workload = %name, error = %why, "Workload started but cannot be reached.");
                    if let Ok(backend) = self.backend_for(&config) {
                        let _ = backend.stop(name).await;
                    }
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

    pub(super) async fn stop_instance(&self, name: &WorkloadName) {
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
            match self.backend_of(name) {
                Ok(backend) => backend.stop(name).await,
                Err(err) => Err(err),
            }
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

    pub(super) async fn delete_now(&self, name: &WorkloadName) {
        self.set_status(name, WorkloadStatus::Removing, String::new(), None);
        self.inner.proxies.stop(name.as_str()).await;
        self.inner.egress.stop(name.as_str());
        let remote = self.table().get(name).is_some_and(|e| e.config.is_remote());
        let removed = if remote {
            Ok(())
        } else {
            match self.backend_of(name) {
                Ok(backend) => backend.remove(name).await,
                // A runtime this berth does not have holds nothing to remove.
                Err(RuntimeError::InvalidSpec(_)) => Ok(()),
                Err(err) => Err(err),
            }
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
        // Its log goes first: once the name leaves the table, a new
        // workload may take it and start a log of its own.
        self.inner.journal.remove(name).await;
        self.inner.settings.guarding.forget_pins(name.as_str());
        if let Some(audit) = &self.inner.settings.guarding.audit {
            audit.remove(name.as_str()).await;
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
        drop(table);
        self.changed();
        info!(workload = %name, "Workload deleted.");
    }

    /// Restarts an edited workload with its new configuration; if that
    /// does not start, the previous one is put back and started, and the
    /// reason is returned.
    pub(super) async fn apply_edit(
        &self,
        name: &WorkloadName,
        old: Workload,
    ) -> Result<(), String> {
        let desired = match self.table().get(name) {
            Some(e) => e.status.desired,
            None => return Ok(()),
        };
        self.leave_old_runtime(name, &old).await;
        if desired == Desired::Stopped {
            return Ok(()); // a stopped workload keeps its new configuration for its next start
        }
        self.stop_instance(name).await;
        self.start_instance(name).await;
        let failed = self
            .table()
            .get(name)
            .filter(|e| e.status.status == WorkloadStatus::Error)
            .map(|e| e.status.status_context.clone());
        match failed {
            Some(why) => {
                warn!(workload = %name, error = %why, "Edited workload did not start; restoring its previous configuration.");
                self.restore_previous(name, old, "edit", &why).await;
                Err(why)
            }
            None => Ok(()),
        }
    }

    /// Puts `old` back as workload `name`'s configuration (file and table)
    /// and starts it; `what` (`edit`, `upgrade`) failed because of `why`.
    /// The instance of the configuration being replaced must not run.
    pub(super) async fn restore_previous(
        &self,
        name: &WorkloadName,
        old: Workload,
        what: &str,
        why: &str,
    ) {
        let edited = self.table().get(name).map(|e| e.config.clone());
        {
            let mut table = self.table();
            if self
                .inner
                .store
                .write(Kind::RunConfig, name.as_str(), &RunConfig::from(&old))
                .is_ok()
                && let Some(e) = table.get_mut(name)
            {
                e.config = old;
                drop(table);
                self.changed();
            }
        }
        if let Some(edited) = edited {
            self.leave_old_runtime(name, &edited).await;
        }
        self.start_instance(name).await;
        let restored = format!("{what} failed ({why}); previous configuration restored");
        self.wlog(name, &restored);
        let status = self.table().get(name).map(|e| e.status.status);
        if status == Some(WorkloadStatus::Running) {
            self.set_context(name, restored);
        }
    }

    /// An edit that moves a workload to another runtime removes its
    /// instance from the old one first: no runtime keeps a copy running.
    pub(super) async fn leave_old_runtime(&self, name: &WorkloadName, old: &Workload) {
        let moved = self
            .table()
            .get(name)
            .is_some_and(|e| e.config.runtime != old.runtime);
        if !moved || old.is_remote() {
            return;
        }
        let Ok(backend) = self.backend_for(old) else {
            return;
        };
        self.inner.proxies.stop(name.as_str()).await;
        self.inner.egress.stop(name.as_str());
        match backend.remove(name).await {
            Ok(()) | Err(RuntimeError::NotFound(_)) => {
                self.wlog(name, &format!("removed from the {} runtime", old.runtime));
            }
            Err(err) => {
                let why = format!(
                    "could not remove the instance on the {} runtime: {}",
                    old.runtime,
                    error_chain(&err)
                );
                warn!(workload = %name, error = %why, "Instance left on the old runtime.");
                self.wlog(name, &why);
            }
        }
    }
}
