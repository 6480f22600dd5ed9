//! Upgrades of workloads created from a registry entry: the check (is
//! the entry newer than what the workload runs?) and the apply (run the
//! new version, keep it only once it answers MCP).
//!
//! - **Check** (offline): the workload's image and the entry's version it
//!   recorded at creation (`RegistryRef`) against the entry's image for
//!   the same runtime today (`registry::run::image_for`) — see [`check`]
//!   and [`compare`]. Remote entries compare their URL. The result is
//!   ToolHive's `CheckResult`, with berth's `registry`,
//!   `current_version`, `candidate_version` (and `current_url`,
//!   `candidate_url` for remote workloads). Secret defaults are never
//!   shown.
//! - **Apply**: under the workload's lock, in a tracked task (a client
//!   that goes away does not cut it short): check again; anything but
//!   `upgrade-available` changes nothing. Otherwise the new configuration
//!   is the old one with the entry's image (or URL), the request's `env`
//!   over the old environment, the entry's defaults for variables not
//!   given (a required one without a default refuses the upgrade) and the
//!   entry's version recorded; it replaces the old one through the edit
//!   machinery (`stage_edit`, `apply_edit`), and the upgrade then waits
//!   until the new server answers an MCP `initialize` through its proxy
//!   ([`ready`]). A server that does not start, stops, or does not answer
//!   within the deadline is replaced by the previous configuration again.
//! - **Crash consistency**: before the new configuration is stored, the
//!   previous one is written to `upgrades/<name>.json` (atomically, like
//!   every state file); it is removed once the upgrade is decided. A berth
//!   that stops in between finds it at its next start and puts the
//!   previous configuration back ([`restore_interrupted`]): an upgrade
//!   that was never confirmed did not happen. The stored run
//!   configuration is always the old or the new one, never a mix.

mod check;
mod compare;
mod ready;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use berth_runtime_api::WorkloadName;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::types::{Desired, RunConfig, WorkloadStatus};
use super::*;
use crate::registry::Registries;
use crate::registry::model::Kind as EntryKind;
use crate::registry::run::RegistryRef;
use crate::state::Kind;
use check::check;
pub use check::{CheckResult, ConfigDrift, EnvVarDrift, EnvVarInfo, StringChange, UpgradeStatus};

/// The default time an upgrade waits for the new server to answer.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an upgrade was not applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The workload cannot be found or named, or the state store failed.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// The new configuration cannot be built or is refused; nothing
    /// changed.
    #[error("failed to apply upgrade for workload \"{name}\": {why}")]
    Unprocessable {
        /// The workload.
        name: String,
        /// Why.
        why: String,
    },
    /// The new version did not start or answer; the previous
    /// configuration was put back.
    #[error(
        "upgrade of workload \"{name}\" to version {version} failed ({why}); its previous configuration was restored"
    )]
    RolledBack {
        /// The workload.
        name: String,
        /// The version it was to run.
        version: String,
        /// Why.
        why: String,
    },
    /// The upgrade task ended abnormally.
    #[error("upgrade of workload \"{0}\" was interrupted")]
    Interrupted(String),
}

/// What `upgrades/<name>.json` holds while an upgrade is undecided.
#[derive(Debug, Serialize, Deserialize)]
struct Intent {
    /// The configuration to put back.
    previous: RunConfig,
    /// The version being installed.
    version: String,
}

impl Workloads {
    // === the apply ===

    /// Upgrades workload `name` to its registry entry's current version
    /// if the check finds one (otherwise answers the check and changes
    /// nothing); `env` is merged over the workload's environment and
    /// `secrets` over its secret references (by target). Waits
    /// up to `ready_within` for the new server to answer MCP, and puts
    /// the previous configuration back if it does not. Returns the check
    /// that drove it.
    pub async fn upgrade(
        &self,
        name: &str,
        env: BTreeMap<String, String>,
        secrets: Vec<super::types::SecretParameter>,
        registries: Arc<Registries>,
        ready_within: Duration,
    ) -> Result<CheckResult, UpgradeError> {
        let name = WorkloadName::parse(name).map_err(WorkloadError::from)?;
        let lock = self
            .table()
            .get(&name)
            .map(|e| e.op.clone())
            .ok_or_else(|| WorkloadError::NotFound(name.to_string()))?;
        let this = self.clone();
        let task_name = name.clone();
        // A tracked task: it runs to its end when the client goes away,
        // and shutdown waits for it.
        self.inner
            .tasks
            .spawn(async move {
                let _guard = lock.lock().await;
                this.upgrade_locked(&task_name, env, secrets, &registries, ready_within)
                    .await
            })
            .await
            .map_err(|err| {
                warn!(workload = %name, error = %err, "Upgrade task failed.");
                UpgradeError::Interrupted(name.to_string())
            })?
    }

    async fn upgrade_locked(
        &self,
        name: &WorkloadName,
        env: BTreeMap<String, String>,
        secrets: Vec<super::types::SecretParameter>,
        registries: &Registries,
        ready_within: Duration,
    ) -> Result<CheckResult, UpgradeError> {
        let current = self.config(name.as_str())?;
        let (result, server) = check(&current, registries).await;
        let Some(server) = server.filter(|_| result.status == UpgradeStatus::UpgradeAvailable)
        else {
            return Ok(result);
        };
        let refuse = |why: String| UpgradeError::Unprocessable {
            name: name.to_string(),
            why,
        };
        let version = server.version().to_owned();
        let mut req = self.get(name.as_str())?;
        req.env_vars.extend(env);
        for s in secrets {
            req.secrets.retain(|old| old.target != s.target);
            req.secrets.push(s);
        }
        if server.kind == EntryKind::Local {
            let missing: Vec<String> = crate::registry::run::fill_env(&server, &mut req)
                .into_iter()
                .map(|var| var.name)
                .collect();
            if !missing.is_empty() {
                return Err(refuse(format!(
                    "version {version} needs the environment variable{} {}: give {} in `env`",
                    if missing.len() > 1 { "s" } else { "" },
                    missing.join(", "),
                    if missing.len() > 1 { "them" } else { "it" }
                )));
            }
            req.image.clone_from(&result.candidate_image);
        } else {
            req.url.clone_from(&server.json.remotes[0].url);
        }
        let from = current.registry.clone().unwrap_or_default();
        req.from_registry = Some(RegistryRef {
            version: version.clone(),
            ..from
        });
        // The previous configuration is on disk before the new one: a
        // berth that stops from here on puts it back at its next start.
        let intent = Intent {
            previous: RunConfig::from(&current),
            version: version.clone(),
        };
        self.inner
            .store
            .write(Kind::Upgrade, name.as_str(), &intent)
            .map_err(WorkloadError::from)?;
        let old = match self.stage_edit(name.as_str(), req) {
            Ok((_, old, _)) => old,
            Err(err) => {
                self.forget_intent(name)?;
                return Err(refuse(err.to_string()));
            }
        };
        // A new version may change its tools on purpose: what it lists
        // first becomes the new baseline of the tool pins.
        if let Some(pins) = self.inner.settings.guarding.known_pins(name.as_str()) {
            pins.reset().await;
        }
        let from_version = &result.current_version;
        self.wlog(
            name,
            &format!("upgrading from version {from_version} to {version}"),
        );
        info!(workload = %name, from = %from_version, to = %version, "Upgrading workload.");
        let rolled_back = |why: String| UpgradeError::RolledBack {
            name: name.to_string(),
            version: version.clone(),
            why,
        };
        if let Err(why) = self.apply_edit(name, old.clone()).await {
            self.forget_intent(name)?;
            return Err(rolled_back(why));
        }
        let desired = self.table().get(name).map(|e| e.status.desired);
        if desired == Some(Desired::Running) {
            if let Err(why) = self.await_ready(name, ready_within).await {
                warn!(workload = %name, error = %why, "Upgraded workload is not ready; restoring its previous configuration.");
                self.stop_instance(name).await;
                self.restore_previous(name, old, "upgrade", &why).await;
                self.forget_intent(name)?;
                return Err(rolled_back(why));
            }
            self.wlog(
                name,
                &format!("upgraded to version {version}; the new server answers"),
            );
        } else {
            self.wlog(
                name,
                &format!("upgraded to version {version}; it runs at the next start"),
            );
        }
        self.forget_intent(name)?;
        info!(workload = %name, version = %version, "Workload upgraded.");
        Ok(result)
    }

    /// Removes the undecided-upgrade record of `name`.
    fn forget_intent(&self, name: &WorkloadName) -> Result<(), WorkloadError> {
        Ok(self.inner.store.remove(Kind::Upgrade, name.as_str())?)
    }

    /// Waits until the workload's server answers an MCP `initialize`
    /// through its proxy. Fails at once when the instance just started
    /// stops running (it exited, failed, or is being restarted), and at
    /// the deadline.
    async fn await_ready(&self, name: &WorkloadName, within: Duration) -> Result<(), String> {
        let (generation, url, sse) = {
            let table = self.table();
            let e = table.get(name).ok_or("the workload was deleted")?;
            let url = view::url(&e.config, name);
            let url = url.split('#').next().unwrap_or_default().to_owned();
            (
                e.generation,
                url,
                e.config.proxy_mode == super::model::ProxyMode::Sse,
            )
        };
        let deadline = tokio::time::Instant::now() + within;
        let stopped = async {
            loop {
                if let Some(why) = self.not_running(name, generation) {
                    return why;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let answered = async {
            let mut last = String::new();
            loop {
                match tokio::time::timeout_at(deadline, ready::probe(&url, sse)).await {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(why)) => last = why,
                    Err(_) => {}
                }
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    let mut why = format!(
                        "the new server did not answer an MCP initialize within {}s",
                        within.as_secs_f32()
                    );
                    if !last.is_empty() {
                        why = format!("{why}: {last}");
                    }
                    return Err(why);
                }
                tokio::time::sleep_until(deadline.min(now + Duration::from_millis(250))).await;
            }
        };
        let why = tokio::select! {
            done = answered => return done,
            why = stopped => why,
        };
        Err(match self.log_tail(name).await {
            Some(tail) => format!("{why}; its log ends: {tail}"),
            None => why,
        })
    }

    /// The last lines the workload's server wrote, on one line.
    async fn log_tail(&self, name: &WorkloadName) -> Option<String> {
        let text = self.backend_of(name).ok()?.logs(name, 3).await.ok()?;
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let tail = lines[lines.len().saturating_sub(2)..].join(" / ");
        let tail: String = tail.chars().take(300).collect();
        (!tail.is_empty()).then(|| crate::logging::escape_controls(&tail).into_owned())
    }

    /// Why the instance of `generation` is no longer running, if it is not.
    fn not_running(&self, name: &WorkloadName, generation: u64) -> Option<String> {
        let table = self.table();
        let Some(e) = table.get(name) else {
            return Some("the workload was deleted".into());
        };
        if e.generation == generation && e.status.status == WorkloadStatus::Running {
            return None;
        }
        // A revival's context says when it restarts: not what happens here.
        let context = e.status.status_context.split("; restarting in ").next();
        Some(match context.filter(|c| !c.is_empty()) {
            Some(context) => format!("the new server stopped: {context}"),
            None => format!("the new server is {}", e.status.status.as_str()),
        })
    }
}

// === recovery ===

/// Puts back the previous configuration of every upgrade a berth that
/// stopped left undecided (see the module documentation), before the
/// stored workloads are loaded. Returns their names: an instance still
/// running for one of them runs the unconfirmed version, and is
/// restarted rather than adopted.
pub(super) fn restore_interrupted(store: &Store) -> BTreeSet<String> {
    let mut restored = BTreeSet::new();
    let names = match store.list(Kind::Upgrade) {
        Ok(names) => names,
        Err(err) => {
            warn!(error = %error_chain(&err), "Cannot list interrupted upgrades.");
            return restored;
        }
    };
    for file in names {
        if WorkloadName::parse(&file).is_err() {
            continue;
        }
        let intent = match store.read::<Intent>(Kind::Upgrade, &file) {
            Ok(Some(intent)) if intent.previous.name == file => intent,
            Ok(None) => continue,
            Ok(Some(_)) | Err(_) => {
                warn!(workload = %file, "An unreadable record of an interrupted upgrade was removed.");
                let _ = store.remove(Kind::Upgrade, &file);
                continue;
            }
        };
        // A workload deleted since is not brought back.
        let exists = !matches!(store.read::<RunConfig>(Kind::RunConfig, &file), Ok(None));
        if exists && let Err(err) = store.write(Kind::RunConfig, &file, &intent.previous) {
            tracing::error!(workload = %file, error = %error_chain(&err), "Cannot restore the configuration of an interrupted upgrade; retried at the next start.");
            continue;
        }
        if let Err(err) = store.remove(Kind::Upgrade, &file) {
            warn!(workload = %file, error = %error_chain(&err), "Cannot remove the record of an interrupted upgrade.");
        }
        if exists {
            warn!(workload = %file, version = %intent.version, "An upgrade was interrupted; the previous configuration is restored.");
            restored.insert(file);
        }
    }
    restored
}
