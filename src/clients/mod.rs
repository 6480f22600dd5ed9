//! Client configuration: berth writes its servers into the configuration
//! files of the MCP clients registered with their group, and keeps them in
//! step with the workloads.
//!
//! - `table.rs`: the 25 clients (where the file is, its layout, the entry
//!   shape), one table of data.
//! - `format/`: one writer per file format, each touching only the entries
//!   it is given.
//! - `file.rs`: safe edits (symlinks followed but never out of the home
//!   directory, `<file>.lock`, atomic replace keeping mode and owner).
//! - this file: the service. Registrations live in the groups
//!   (`registered_clients`, as ToolHive keeps them); what berth wrote into
//!   each file lives in `<state>/clients.json`.
//!
//! **Invariants.** A file is only ever brought to the *desired* state, one
//! function ([`Clients::sync`]) computing it from the workloads and the
//! registrations, whatever triggered it (a registration, a workload change,
//! berth's start). berth touches only the entries it owns (recorded in
//! `clients.json`): an entry of the same name it did not write is a
//! conflict, reported and left alone; an owned entry no longer wanted is
//! removed only while it still holds what berth wrote. A file that cannot be
//! parsed or written is left untouched and reported in the client's status.

mod file;
mod format;
mod table;

#[cfg(test)]
mod golden;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};
use utoipa::ToSchema;

use crate::groups::{DEFAULT_GROUP, GroupError, Groups};
use crate::workloads::Workloads;
use crate::workloads::types::WorkloadStatus;
use file::{EditError, Home};
use format::Change;
use table::{ClientDef, Mode, Os, Server};

/// `[clients]` of berth.toml.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientsConfig {
    /// The home directory whose client files berth edits (default: the
    /// `HOME` berth was started with).
    pub home: Option<PathBuf>,
}

/// What went wrong with a clients request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Not one of the supported clients.
    #[error("unsupported client type: {name:?}; valid client types: {}", table::ids().collect::<Vec<_>>().join(", "))]
    Unsupported {
        /// The name given.
        name: String,
    },
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A group problem (an unknown group is a 404).
    #[error(transparent)]
    Group(#[from] GroupError),
    /// The client's file cannot be used; nothing was registered.
    #[error("{client}: {source}")]
    File {
        /// The client.
        client: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// berth knows no home directory.
    #[error(
        "no home directory to find the clients' files in: start berth with HOME set or set [clients] home"
    )]
    NoHome,
}

/// A registered client as `GET /clients` serves it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = github_com_stacklok_toolhive_pkg_client::RegisteredClient)]
pub struct RegisteredClient {
    /// The client type.
    pub name: String,
    /// The groups it is registered with, by name.
    pub groups: Vec<String>,
    /// How its file stands (berth extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ClientStatus>,
}

/// The state of a client's configuration file after berth's last pass
/// (berth extension).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientStatus {
    /// `ok`, or `error` when the file could not be read or written.
    pub state: String,
    /// The file.
    pub path: String,
    /// What went wrong, for `error`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The servers berth has written into the file, by name.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Servers not written because the file holds an entry of that name
    /// berth did not write (left alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    /// Servers not written because the client cannot reach them, with the
    /// reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// One client in `GET /discovery/clients`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = github_com_stacklok_toolhive_pkg_client::ClientAppStatus)]
pub struct ClientAppStatus {
    /// The client type.
    pub client_type: String,
    /// Whether the client's configuration directory exists.
    pub installed: bool,
    /// Whether the client is registered with any group.
    pub registered: bool,
    /// Whether skills can be installed for it.
    pub supports_skills: bool,
    /// Whether plugins can be installed for it.
    pub supports_plugins: bool,
}

/// What berth wrote, per client: `<state>/clients.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    /// Client id → the file's owned entries.
    #[serde(default)]
    clients: BTreeMap<String, FileRecord>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct FileRecord {
    /// The file written to.
    path: PathBuf,
    /// Entry name → what berth wrote there.
    #[serde(default)]
    entries: BTreeMap<String, Value>,
}

/// The service; built by the App, shared by the API and its own task.
pub struct Clients {
    home: Option<Home>,
    groups: Arc<Groups>,
    workloads: Workloads,
    record_path: PathBuf,
    /// Serializes passes: one file edit at a time, the record with it.
    /// Passes run on blocking threads (`blocking`): they read group files
    /// and may wait for another program's lock on a client file.
    pass: Mutex<Record>,
    status: Mutex<BTreeMap<String, ClientStatus>>,
    /// The record as last saved, so that a pass that changed nothing does
    /// not write it.
    saved: Mutex<Vec<u8>>,
    /// Set at berth's shutdown: workloads stopping then are not taken out
    /// of the files (they run again at the next start).
    stopped: std::sync::atomic::AtomicBool,
    os: Os,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("home", &self.home.as_ref().map(Home::root))
            .finish_non_exhaustive()
    }
}

/// How long the files wait after a workload change for the next one, so
/// that a restart (stopping, starting, running) is one pass.
const SETTLE: Duration = Duration::from_millis(200);

/// Statuses in which a workload's server is listed in the clients' files:
/// it runs or is about to (its proxy listens throughout a restart).
fn listed(status: WorkloadStatus) -> bool {
    matches!(
        status,
        WorkloadStatus::Running | WorkloadStatus::Starting | WorkloadStatus::Unhealthy
    )
}

impl Clients {
    /// Opens the service: `home` is the directory whose client files it
    /// edits (`None`: every registration is refused), the record lives in
    /// `state_dir`. Call [`Clients::start`] to bring the files in step.
    pub fn open(
        home: Option<&Path>,
        state_dir: &Path,
        groups: Arc<Groups>,
        workloads: Workloads,
    ) -> Arc<Self> {
        let home = home.and_then(|dir| match Home::open(dir) {
            Ok(h) => Some(h),
            Err(err) => {
                warn!(home = %dir.display(), error = %err, "The home directory cannot be used; client configuration is off.");
                None
            }
        });
        let record_path = state_dir.join("clients.json");
        let record = match std::fs::read(&record_path) {
            Ok(bytes) => match serde_json::from_slice::<Record>(&bytes) {
                Ok(mut r) => {
                    // A hand-edited record may name anything: only the
                    // known clients are kept.
                    r.clients.retain(|id, _| table::find(id).is_some());
                    r
                }
                Err(err) => {
                    warn!(file = %record_path.display(), error = %err, "The record of client entries cannot be read; berth starts from an empty one (entries it wrote earlier are then treated as the user's).");
                    Record::default()
                }
            },
            Err(_) => Record::default(),
        };
        Arc::new(Self {
            home,
            groups,
            workloads,
            record_path,
            pass: Mutex::new(record),
            status: Mutex::default(),
            saved: Mutex::default(),
            stopped: Default::default(),
            os: Os::current(),
        })
    }

    /// Runs `f` on a blocking thread.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Self) -> T + Send + 'static,
    ) -> T {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || f(&this)).await {
            Ok(out) => out,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }

    /// Brings every file in step in the background, first at once
    /// (repairing drift from while berth was stopped), then after each
    /// change of the workloads, for as long as the service lives. The
    /// first pass is not awaited: `App::build` returns while it runs, as
    /// the workloads' own recovery does.
    pub fn start(self: &Arc<Self>) {
        let mut changes = self.workloads.changes();
        changes.mark_unchanged();
        let weak: Weak<Self> = Arc::downgrade(self);
        let first = self.clone();
        tokio::spawn(async move {
            first.sync_all().await;
            drop(first);
            while changes.changed().await.is_ok() {
                tokio::time::sleep(SETTLE).await;
                changes.mark_unchanged();
                let Some(this) = weak.upgrade() else { break };
                this.sync_all().await;
            }
        });
    }

    /// Stops following the workloads (berth is shutting down).
    pub fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether `name` is a supported client.
    fn def(name: &str) -> Result<&'static ClientDef, ClientError> {
        table::find(name).ok_or_else(|| ClientError::Unsupported {
            name: name.to_owned(),
        })
    }

    /// The clients `names` names: at least one, every one supported.
    fn defs(names: &[String]) -> Result<Vec<&'static ClientDef>, ClientError> {
        if names.is_empty() {
            return Err(ClientError::Invalid(
                "at least one client name is required".into(),
            ));
        }
        names.iter().map(|n| Self::def(n)).collect()
    }

    fn home(&self) -> Result<&Home, ClientError> {
        self.home.as_ref().ok_or(ClientError::NoHome)
    }

    /// Clients registered with any group, with their groups.
    fn registrations(&self) -> Result<BTreeMap<String, Vec<String>>, ClientError> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for group in self.groups.list()? {
            for client in group.registered_clients {
                out.entry(client).or_default().push(group.name.clone());
            }
        }
        Ok(out)
    }

    /// `GET /clients`: every registered client, by name, with its groups
    /// and the state of its file.
    pub fn list(&self) -> Result<Vec<RegisteredClient>, ClientError> {
        let status = self.status.lock().expect("client status").clone();
        Ok(self
            .registrations()?
            .into_iter()
            .map(|(name, groups)| RegisteredClient {
                status: status.get(&name).cloned(),
                name,
                groups,
            })
            .collect())
    }

    /// `GET /discovery/clients`: every client, in the table's order.
    pub fn discover(&self) -> Result<Vec<ClientAppStatus>, ClientError> {
        let registered = self.registrations()?;
        Ok(table::CLIENTS
            .iter()
            .map(|c| ClientAppStatus {
                client_type: c.id.to_owned(),
                installed: self
                    .home
                    .as_ref()
                    .is_some_and(|h| h.exists(&c.installed_marker(h.root(), self.os))),
                registered: registered.contains_key(c.id),
                supports_skills: c.supports_skills,
                supports_plugins: c.supports_plugins,
            })
            .collect())
    }

    /// The groups a registration names: `default` when none, each one
    /// checked to exist.
    fn groups_of(&self, groups: &[String]) -> Result<Vec<String>, ClientError> {
        let groups = if groups.is_empty() {
            vec![DEFAULT_GROUP.to_owned()]
        } else {
            let mut g = groups.to_vec();
            g.sort();
            g.dedup();
            g
        };
        for g in &groups {
            // 404 for a group that does not exist, before anything changes.
            self.groups.get(g)?;
        }
        Ok(groups)
    }

    /// Registers `names` with `groups` (`default` when empty) and writes
    /// their files. Every name, every group and every file is checked
    /// before anything is recorded. Returns the groups used.
    pub async fn register(
        self: &Arc<Self>,
        names: Vec<String>,
        groups: Vec<String>,
    ) -> Result<Vec<String>, ClientError> {
        self.blocking(move |this| this.register_now(&names, &groups))
            .await
    }

    fn register_now(
        &self,
        names: &[String],
        groups: &[String],
    ) -> Result<Vec<String>, ClientError> {
        let defs = Self::defs(names)?;
        let groups = self.groups_of(groups)?;
        let home = self.home()?;
        for def in &defs {
            self.check_file(home, def)?;
        }
        for def in &defs {
            for g in &groups {
                if self.groups.register_client(g, def.id)? {
                    info!(client = def.id, group = %g, "Client registered.");
                }
            }
        }
        self.sync_clients(&defs)?;
        Ok(groups)
    }

    /// Unregisters `names` from `groups` (from every group when `None`) and
    /// removes berth's entries from their files where no group of theirs
    /// needs them any more.
    pub async fn unregister(
        self: &Arc<Self>,
        names: Vec<String>,
        groups: Option<Vec<String>>,
    ) -> Result<(), ClientError> {
        self.blocking(move |this| this.unregister_now(&names, groups.as_deref()))
            .await
    }

    fn unregister_now(
        &self,
        names: &[String],
        groups: Option<&[String]>,
    ) -> Result<(), ClientError> {
        let defs = Self::defs(names)?;
        let groups = match groups {
            Some(g) => {
                for name in g {
                    self.groups.get(name)?;
                }
                g.to_vec()
            }
            None => self.groups.list()?.into_iter().map(|g| g.name).collect(),
        };
        for def in &defs {
            for g in &groups {
                if self.groups.unregister_client(g, def.id)? {
                    info!(client = def.id, group = %g, "Client unregistered.");
                }
            }
        }
        self.sync_clients(&defs)
    }

    /// One pass over the files of `defs` (a registration's answer reflects
    /// its files).
    fn sync_clients(&self, defs: &[&'static ClientDef]) -> Result<(), ClientError> {
        let mut record = self.pass.lock().expect("client pass");
        let snapshot = self.snapshot()?;
        for def in defs {
            self.sync(&mut record, &snapshot, def);
        }
        self.save(&record);
        Ok(())
    }

    /// Refuses a registration whose file berth could not edit: one that
    /// does not parse, is read-only, or leads out of the home directory.
    fn check_file(&self, home: &Home, def: &ClientDef) -> Result<(), ClientError> {
        let path = def.path(home.root(), self.os);
        let fail = |source: EditError| ClientError::File {
            client: def.id.to_owned(),
            source: Box::new(source),
        };
        // An existing file is checked as an edit would use it (symlinks,
        // read-only, parse); a missing one is created at the first write,
        // and a failure then is reported in the client's status.
        if file::read(home, &path).map_err(fail)?.is_some() {
            file::edit(home, &path, |text| {
                def.layout.entries(text, def.servers_key)?;
                Ok(None)
            })
            .map_err(fail)?;
        }
        Ok(())
    }

    /// Brings every registered client's file, and every file that still
    /// holds entries of berth's, in step.
    pub async fn sync_all(self: &Arc<Self>) {
        self.blocking(Self::sync_all_now).await;
    }

    fn sync_all_now(&self) {
        let mut record = self.pass.lock().expect("client pass");
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let snapshot = match self.snapshot() {
            Ok(s) => s,
            Err(err) => {
                warn!(error = %err, "Cannot read the client registrations; the client files are left as they are.");
                return;
            }
        };
        let mut ids: BTreeSet<String> = record.clients.keys().cloned().collect();
        ids.extend(snapshot.registrations.keys().cloned());
        for id in ids {
            if let Some(def) = table::find(&id) {
                self.sync(&mut record, &snapshot, def);
            }
        }
        self.save(&record);
    }

    fn save(&self, record: &Record) {
        let bytes = serde_json::to_vec_pretty(record).expect("a record serializes");
        let mut saved = self.saved.lock().expect("saved record");
        if *saved == bytes {
            return;
        }
        *saved = bytes.clone();
        if let Err(err) = crate::state::write_atomic(&self.record_path, &bytes) {
            warn!(file = %self.record_path.display(), error = %err, "Cannot save the record of client entries.");
        }
    }

    /// The registrations and the workloads, read once per pass.
    fn snapshot(&self) -> Result<Snapshot, ClientError> {
        let registrations = self.registrations()?;
        let servers = self
            .workloads
            .list(true, None)
            .map_err(|e| ClientError::Invalid(e.to_string()))?
            .into_iter()
            .filter(|w| listed(w.status) && !w.url.is_empty())
            .map(|w| {
                (
                    w.group,
                    Server {
                        mode: if w.proxy_mode == "sse" {
                            Mode::Sse
                        } else {
                            Mode::Streamable
                        },
                        name: w.name,
                        url: w.url,
                    },
                )
            })
            .collect();
        Ok(Snapshot {
            registrations,
            servers,
        })
    }

    /// Brings one client's file to its desired state and records the
    /// outcome in its status.
    fn sync(&self, record: &mut Record, snapshot: &Snapshot, def: &ClientDef) {
        let Some(home) = &self.home else { return };
        let path = def.path(home.root(), self.os);
        let status = match self.sync_file(record, snapshot, def, home, &path) {
            Ok(status) => status,
            Err(message) => {
                warn!(client = def.id, file = %path.display(), error = %message, "A client file cannot be brought in step; it is left as it is.");
                ClientStatus {
                    state: "error".into(),
                    path: path.display().to_string(),
                    message,
                    servers: record
                        .clients
                        .get(def.id)
                        .map(|r| r.entries.keys().cloned().collect())
                        .unwrap_or_default(),
                    ..Default::default()
                }
            }
        };
        let mut all = self.status.lock().expect("client status");
        all.insert(def.id.to_owned(), status);
    }

    fn sync_file(
        &self,
        record: &mut Record,
        snapshot: &Snapshot,
        def: &ClientDef,
        home: &Home,
        path: &Path,
    ) -> Result<ClientStatus, String> {
        let groups = snapshot
            .registrations
            .get(def.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut skipped = Vec::new();
        let mut want: BTreeMap<String, Value> = BTreeMap::new();
        for (_, s) in snapshot.servers.iter().filter(|(g, _)| groups.contains(g)) {
            match def.entry(s) {
                Ok(e) => {
                    want.insert(s.name.clone(), Value::Object(e));
                }
                Err(why) => skipped.push(why),
            }
        }
        let owned = record
            .clients
            .get(def.id)
            .filter(|r| r.path == path)
            .map(|r| r.entries.clone())
            .unwrap_or_default();
        let mut status = ClientStatus {
            state: "ok".into(),
            path: path.display().to_string(),
            skipped,
            ..Default::default()
        };
        if want.is_empty() && owned.is_empty() {
            record.clients.remove(def.id);
            return Ok(status);
        }
        if want.is_empty() && file::read(home, path).map_err(|e| e.to_string())?.is_none() {
            // Nothing to write and no file to clean.
            record.clients.remove(def.id);
            return Ok(status);
        }
        let mut now_owned = BTreeMap::new();
        let mut conflicts = Vec::new();
        let mut notes = Vec::new();
        file::edit(home, path, |text| {
            let found = def.layout.entries(text, def.servers_key)?;
            let mut changes: Vec<Change> = Vec::new();
            for (name, entry) in &want {
                let mine = owned.get(name);
                match (found.get(name), mine) {
                    (Some(f), _) if f == entry => {}
                    (Some(_), None) => {
                        conflicts.push(name.clone());
                        continue;
                    }
                    (Some(f), Some(m)) => {
                        notes.push(if f == m {
                            format!("updated `{name}`")
                        } else {
                            format!("repaired `{name}`, changed by hand since berth wrote it")
                        });
                        changes.push((name.clone(), Some(as_entry(entry))));
                    }
                    (None, Some(_)) => {
                        notes.push(format!("restored `{name}`, removed by hand"));
                        changes.push((name.clone(), Some(as_entry(entry))));
                    }
                    (None, None) => {
                        notes.push(format!("added `{name}`"));
                        changes.push((name.clone(), Some(as_entry(entry))));
                    }
                }
                now_owned.insert(name.clone(), entry.clone());
            }
            for (name, wrote) in &owned {
                if want.contains_key(name) {
                    continue;
                }
                match found.get(name) {
                    Some(f) if f == wrote => {
                        notes.push(format!("removed `{name}`"));
                        changes.push((name.clone(), None));
                    }
                    Some(_) => notes.push(format!(
                        "left `{name}` alone: changed by hand since berth wrote it"
                    )),
                    None => {}
                }
            }
            if changes.is_empty() {
                return Ok(None);
            }
            def.layout.apply(text, def.servers_key, &changes).map(Some)
        })
        .map_err(|e| e.to_string())?;
        for note in notes {
            info!(client = def.id, file = %path.display(), "Client file: {note}.");
        }
        for name in &conflicts {
            warn!(client = def.id, file = %path.display(), server = %name, "The client file has an entry of this name that berth did not write; it is left alone and the server is not listed.");
        }
        status.servers = now_owned.keys().cloned().collect();
        status.conflicts = conflicts;
        if now_owned.is_empty() {
            record.clients.remove(def.id);
        } else {
            record.clients.insert(
                def.id.to_owned(),
                FileRecord {
                    path: path.to_owned(),
                    entries: now_owned,
                },
            );
        }
        Ok(status)
    }
}

/// What one pass works from.
struct Snapshot {
    /// Client → the groups it is registered with.
    registrations: BTreeMap<String, Vec<String>>,
    /// The listed workloads, with their group.
    servers: Vec<(String, Server)>,
}

fn as_entry(v: &Value) -> format::Entry {
    v.as_object().cloned().unwrap_or_default()
}
