//! Supervision: the restart policy, exit watchers, revival with backoff,
//! and the health loop of stdio servers.

use std::time::Duration;

use berth_runtime_api::{ExitStatus, RuntimeError, WorkloadName};
use tracing::warn;

use super::types::{Desired, WorkloadStatus};
use super::*;

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
pub(super) const UNREACHABLE_RETRY_MAX: Duration = Duration::from_secs(5);

impl RestartPolicy {
    pub(super) fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(20);
        Duration::from_millis(
            self.base_delay_ms
                .saturating_mul(factor)
                .min(self.max_delay_ms),
        )
    }

    /// The wait before start attempt `attempt`; shorter while the runtime
    /// is unreachable (see [`UNREACHABLE_RETRY_MAX`]).
    pub(super) fn retry_delay(&self, attempt: u32, runtime_unreachable: bool) -> Duration {
        let delay = self.delay(attempt);
        if runtime_unreachable {
            delay.min(UNREACHABLE_RETRY_MAX)
        } else {
            delay
        }
    }
}

impl Workloads {
    pub(super) fn watch(&self, name: WorkloadName, generation: u64) {
        let this = self.clone();
        tokio::spawn(async move {
            let waited = match this.backend_of(&name) {
                Ok(backend) => backend.wait(&name).await,
                Err(err) => Err(err),
            };
            match waited {
                Ok(exit) => this.on_exit(&name, generation, &exit),
                Err(err) => this.on_lost(&name, generation, &err),
            }
        });
    }

    /// The runtime lost the instance (engine down, container removed behind
    /// berth's back): restart it like a crash.
    pub(super) fn on_lost(&self, name: &WorkloadName, generation: u64, err: &RuntimeError) {
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

    pub(super) fn on_exit(&self, name: &WorkloadName, generation: u64, exit: &ExitStatus) {
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
    pub(super) fn revive_after(&self, name: &WorkloadName, generation: u64, why: String) {
        self.revive(name, generation, why, true);
    }

    /// Schedules the next start of a workload that should run. The delay
    /// doubles with every attempt in a row; a run of at least `stable_secs`
    /// starts the count again. With `may_give_up`, too many attempts leave
    /// the workload in `error`; without (the runtime itself is unreachable,
    /// which is no fault of the workload) berth keeps trying, at most
    /// [`UNREACHABLE_RETRY_MAX`] apart.
    pub(super) fn revive(
        &self,
        name: &WorkloadName,
        generation: u64,
        why: String,
        may_give_up: bool,
    ) {
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

    /// Pings a stdio server through its proxy; a server that stops
    /// answering is marked unhealthy and restarted.
    pub(super) fn health_loop(&self, name: WorkloadName, generation: u64) {
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
                            if let Ok(backend) = this.backend_of(&name) {
                                let _ = backend.stop(&name).await;
                            }
                            this.revive_after(&name, generation, why);
                            return;
                        }
                    }
                }
            }
        });
    }
}
