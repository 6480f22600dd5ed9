//! berth's native process backend: runs MCP servers as local processes.
//!
//! Images name what to run:
//! - `npx://<package>` runs `npx -y <package> <args…>`;
//! - `uvx://<package>` runs `uvx <package> <args…>`;
//! - `exec:///abs/path` runs that executable with the arguments.
//!
//! Arguments are passed as argv, never through a shell. Each child runs in a
//! process group of its own with a cleared environment (the backend's base
//! environment, then the spec's `env`, then its `secret_env`, each winning
//! over the one before), so that a stop reaches every process it started.
//! Secret values go to the child's environment only: never on its command
//! line, in a pid record or in a log. Its stderr goes to a log file rotated
//! by size.
//!
//! The backend's root directory holds `logs/<name>.log*`, `work/<name>/` (each
//! workload's working directory) and `pids/<name>.json` (a record of each
//! running child, used to kill the children of a berth that died without
//! stopping them).
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! use berth_backend_process::{ProcessBackend, ProcessConfig};
//! use berth_runtime_api::{Backend, WorkloadName, WorkloadSpec};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let root = tempfile::tempdir().unwrap();
//! let base_env = BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]);
//! let backend = ProcessBackend::new(ProcessConfig::default(), root.path().join("process"), base_env)
//!     .await
//!     .unwrap();
//!
//! let name = WorkloadName::parse("hello").unwrap();
//! let mut spec = WorkloadSpec::new(name.clone(), "exec:///bin/sh");
//! spec.args = vec!["-c".into(), "echo hello >&2; exit 3".into()];
//! backend.deploy(spec).await.unwrap();
//!
//! let exit = backend.wait(&name).await.unwrap();
//! assert_eq!(exit.code, Some(3));
//! backend.remove(&name).await.unwrap();
//! # });
//! ```

#![deny(missing_docs)]

mod cgroup;
mod command;
mod config;
mod logs;
mod pids;
pub mod usage;

pub use config::{DEFAULT_INHERIT_ENV, ProcessConfig};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use berth_runtime_api::{
    Backend, BackendHealth, ExitStatus, RuntimeError, RuntimeState, StdioHandle, Usage,
    WorkloadInfo, WorkloadName, WorkloadSpec,
};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use time::OffsetDateTime;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::cgroup::{CgroupRoot, WorkloadCgroup};
use crate::logs::RotatingLog;
use crate::pids::PidRecord;

const KIND: &str = "process";

/// How often a stop looks whether the rest of a process group is gone.
const GROUP_POLL: Duration = Duration::from_millis(50);

/// How long `remove` lets the log writer drain what the workload wrote last.
const LOG_DRAIN: Duration = Duration::from_secs(1);

/// Runs workloads as native processes; see the crate docs.
pub struct ProcessBackend {
    config: ProcessConfig,
    base_env: BTreeMap<String, String>,
    root: PathBuf,
    logs_dir: PathBuf,
    work_dir: PathBuf,
    pids_dir: PathBuf,
    /// Where workload cgroups are made, if berth may make them.
    cgroups: Option<CgroupRoot>,
    instances: Mutex<BTreeMap<WorkloadName, Instance>>,
}

/// One spawned process and what berth knows of it.
struct Instance {
    spec: WorkloadSpec,
    pid: u32,
    pgid: i32,
    /// The workload's cgroup, when processes are tracked by one.
    cgroup: Option<WorkloadCgroup>,
    started_at: OffsetDateTime,
    /// The child's stdin and stdout until [`Backend::attach`] takes them.
    stdio: Option<(ChildStdin, ChildStdout)>,
    /// `None` while the process runs; set once by its reaper task.
    exit: watch::Sender<Option<ExitStatus>>,
    /// Set by a stop before it signals, read by the reaper.
    stop_requested: Arc<AtomicBool>,
    /// The task copying stderr into the log.
    log_pump: Option<JoinHandle<()>>,
}

impl Instance {
    fn is_running(&self) -> bool {
        self.exit.borrow().is_none()
    }

    fn state(&self) -> RuntimeState {
        match &*self.exit.borrow() {
            Some(exit) => RuntimeState::Exited(exit.clone()),
            None => RuntimeState::Running,
        }
    }

    fn info(&self) -> WorkloadInfo {
        let mut info = WorkloadInfo::new(
            self.spec.name.clone(),
            self.spec.image.clone(),
            self.state(),
        );
        info.started_at = Some(self.started_at);
        info.labels = self.spec.labels.clone();
        info.pid = Some(self.pid);
        info
    }
}

/// A stop in progress: the stop flag is set, the group not yet signalled.
struct Stopping {
    name: WorkloadName,
    pgid: i32,
    /// Every process of the workload, whatever its process group.
    others: Others,
    exit: watch::Receiver<Option<ExitStatus>>,
}

/// How a stop finds the workload's processes outside its process group.
enum Others {
    /// All of them are in this cgroup.
    Cgroup(WorkloadCgroup),
    /// No cgroup: the descendants of the leader when the stop began (pid
    /// and start time, so a reused pid is never signalled).
    Snapshot(Vec<(i32, Option<u64>)>),
}

impl Others {
    fn signal(&self, signal: Signal) {
        match self {
            Self::Cgroup(group) => {
                if signal == Signal::SIGKILL {
                    group.kill_all();
                } else {
                    group.signal(signal);
                }
            }
            Self::Snapshot(pids) => {
                for (pid, start) in pids {
                    if pids::start_time(*pid) == *start {
                        let _ = nix::sys::signal::kill(Pid::from_raw(*pid), signal);
                    }
                }
            }
        }
    }

    fn alive(&self) -> bool {
        match self {
            Self::Cgroup(group) => !group.is_empty(),
            Self::Snapshot(pids) => pids
                .iter()
                .any(|(pid, start)| pids::running_since(*pid, *start)),
        }
    }
}

impl Stopping {
    /// Marks `inst` as stopped by request; `None` when it is not running.
    fn begin(name: &WorkloadName, inst: &Instance) -> Option<Self> {
        if !inst.is_running() {
            return None;
        }
        inst.stop_requested.store(true, Ordering::SeqCst);
        let others = match &inst.cgroup {
            Some(group) => Others::Cgroup(group.clone()),
            None => Others::Snapshot(
                pids::descendants(inst.pgid)
                    .into_iter()
                    .map(|pid| (pid, pids::start_time(pid)))
                    .collect(),
            ),
        };
        Some(Self {
            name: name.clone(),
            pgid: inst.pgid,
            others,
            exit: inst.exit.subscribe(),
        })
    }
}

impl ProcessBackend {
    /// A backend that owns the directory `root` (berth passes
    /// `<state dir>/process`).
    ///
    /// `root` holds `logs/<name>.log*` (each workload's stderr, rotated by
    /// size), `work/<name>/` (each workload's working directory, created on
    /// deploy) and `pids/<name>.json` (pid, start time and process group of
    /// each running child, removed when the child is reaped).
    ///
    /// `base_env` is the whole environment children inherit before their
    /// spec's variables; the backend never reads berth's own environment.
    ///
    /// Processes recorded in `pids/` that still run are what a berth killed
    /// without a chance to stop them left behind: their process groups are
    /// killed here.
    pub async fn new(
        config: ProcessConfig,
        root: PathBuf,
        base_env: BTreeMap<String, String>,
    ) -> Result<Self, RuntimeError> {
        let cgroups = if config.cgroups {
            CgroupRoot::discover(&root)
        } else {
            None
        };
        match &cgroups {
            Some(c) => {
                info!(cgroup = %c.dir().display(), "Workload processes are tracked with cgroups.")
            }
            None => info!(
                "Workload processes are tracked by process group (no writable cgroup v2 hierarchy)."
            ),
        }
        let backend = Self {
            config,
            cgroups,
            base_env,
            logs_dir: root.join("logs"),
            work_dir: root.join("work"),
            pids_dir: root.join("pids"),
            root,
            instances: Mutex::new(BTreeMap::new()),
        };
        for dir in [&backend.logs_dir, &backend.work_dir, &backend.pids_dir] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| RuntimeError::backend(format!("creating `{}`", dir.display()), e))?;
        }
        pids::reap_leftovers(&backend.pids_dir)
            .map_err(|e| RuntimeError::backend("killing leftover workload processes", e))?;
        if let Some(cgroups) = &backend.cgroups {
            cgroups.reap_leftovers();
        }
        Ok(backend)
    }

    /// Whether workload processes are tracked with cgroups (else by process
    /// group and descendants; see [`ProcessConfig::cgroups`]).
    pub fn tracks_with_cgroups(&self) -> bool {
        self.cgroups.is_some()
    }

    /// Stops every running instance at once, with one shared grace period,
    /// and returns when all of them have exited. Used when berth shuts down.
    pub async fn stop_all(&self) {
        let targets: Vec<Stopping> = self
            .lock()
            .iter()
            .filter_map(|(name, inst)| Stopping::begin(name, inst))
            .collect();
        if !targets.is_empty() {
            info!(count = targets.len(), "Stopping every workload process.");
        }
        self.finish_stops(targets).await;
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<WorkloadName, Instance>> {
        self.instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// SIGTERMs the groups of `targets`, SIGKILLs what still runs after the
    /// grace period, and returns once every group leader has been reaped.
    async fn finish_stops(&self, mut targets: Vec<Stopping>) {
        if targets.is_empty() {
            return;
        }
        let grace = Duration::from_secs(self.config.stop_grace_secs);
        for t in &targets {
            signal_group(t.pgid, Signal::SIGTERM);
            t.others.signal(Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        for t in &mut targets {
            if tokio::time::timeout_at(deadline, exited(&mut t.exit))
                .await
                .is_err()
            {
                warn!(
                    workload = %t.name,
                    grace_secs = grace.as_secs(),
                    "Workload process outlived SIGTERM; sending SIGKILL."
                );
                signal_group(t.pgid, Signal::SIGKILL);
                t.others.signal(Signal::SIGKILL);
            }
        }
        for t in &mut targets {
            exited(&mut t.exit).await;
        }
        // The leaders are gone; children they started (npx's node) may not be.
        for t in &targets {
            let mut killed = false;
            let settle = deadline.max(Instant::now()) + Duration::from_secs(2);
            while pids::group_alive(t.pgid) || t.others.alive() {
                if !killed && Instant::now() >= deadline {
                    warn!(
                        workload = %t.name,
                        pgid = t.pgid,
                        "Processes of the stopped workload outlived SIGTERM; sending SIGKILL."
                    );
                    signal_group(t.pgid, Signal::SIGKILL);
                    t.others.signal(Signal::SIGKILL);
                    killed = true;
                }
                if Instant::now() >= settle {
                    break;
                }
                tokio::time::sleep(GROUP_POLL).await;
            }
        }
    }

    /// Forgets `name` once it has stopped; `None` when it was deployed again
    /// meanwhile and must be stopped first.
    fn forget_stopped(&self, name: &WorkloadName) -> Result<Option<Instance>, RuntimeError> {
        let mut map = self.lock();
        match map.get(name) {
            None => Err(RuntimeError::NotFound(name.clone())),
            Some(inst) if inst.is_running() => Ok(None),
            Some(_) => Ok(map.remove(name)),
        }
    }

    /// Builds the command for `spec`, without spawning it.
    fn command(
        &self,
        spec: &WorkloadSpec,
        invocation: &command::Invocation,
        work: &std::path::Path,
        cgroup: Option<&WorkloadCgroup>,
    ) -> Result<tokio::process::Command, RuntimeError> {
        let mut cmd = tokio::process::Command::new(&invocation.program);
        cmd.args(&invocation.args)
            .env_clear()
            .envs(&self.base_env)
            .envs(&spec.env)
            // After `env`: a secret wins over a plain variable of its name.
            .envs(spec.secret_env.iter().map(|(k, v)| (k, v.expose())))
            .current_dir(work)
            .process_group(0)
            .kill_on_drop(false)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(group) = cgroup {
            let procs = group
                .join_path()
                .map_err(|e| RuntimeError::backend("naming the workload's cgroup", e))?;
            #[allow(unsafe_code)]
            // SAFETY: the closure runs in the child between fork and exec and
            // only calls `cgroup::join_self`, which is async-signal-safe and
            // allocates nothing (`procs` was allocated before the fork).
            unsafe {
                cmd.pre_exec(move || cgroup::join_self(&procs));
            }
        }
        Ok(cmd)
    }
}

impl fmt::Debug for ProcessBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessBackend")
            .field("root", &self.root)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Refuses what a native process cannot be held to: it shares berth's
/// file system and network, so mounts and network restrictions could only be
/// ignored, and a permission profile that is not enforced must not look as
/// if it were.
fn check_confinement(spec: &WorkloadSpec) -> Result<(), RuntimeError> {
    if !spec.mounts.is_empty() {
        return Err(RuntimeError::InvalidSpec(
            "the process runtime cannot give a workload mounts (volumes or profile read/write paths): \
             a native process sees the host's whole file system; use a container runtime"
                .to_owned(),
        ));
    }
    if spec.network != berth_runtime_api::NetworkAccess::Full {
        return Err(RuntimeError::InvalidSpec(
            "the process runtime cannot restrict a workload's network: a native process shares \
             the host's network; use a container runtime, or the `network` permission profile"
                .to_owned(),
        ));
    }
    Ok(())
}

#[async_trait]
impl Backend for ProcessBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn health(&self) -> Result<BackendHealth, RuntimeError> {
        let release = tokio::fs::read_to_string("/proc/sys/kernel/osrelease")
            .await
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Ok(BackendHealth::new(KIND, release))
    }

    fn check(&self, spec: &WorkloadSpec) -> Result<(), RuntimeError> {
        check_confinement(spec)?;
        spec.check_secret_env()?;
        command::resolve(&self.config, &spec.image, &spec.args).map(drop)
    }

    async fn shutdown(&self) {
        self.stop_all().await;
        if let Some(cgroups) = &self.cgroups {
            cgroups.remove_empty();
        }
    }

    async fn deploy(&self, spec: WorkloadSpec) -> Result<WorkloadInfo, RuntimeError> {
        check_confinement(&spec)?;
        spec.check_secret_env()?;
        let invocation = command::resolve(&self.config, &spec.image, &spec.args)?;
        let name = spec.name.clone();
        if self.lock().get(&name).is_some_and(Instance::is_running) {
            return Err(RuntimeError::AlreadyExists(name));
        }
        let work = self.work_dir.join(name.as_str());
        tokio::fs::create_dir_all(&work).await.map_err(|e| {
            RuntimeError::backend(format!("creating the working directory of `{name}`"), e)
        })?;
        // Every process the workload starts stays in its cgroup, even one
        // that leaves the process group (`setsid`).
        let cgroup = self
            .cgroups
            .as_ref()
            .and_then(|root| match root.prepare(name.as_str()) {
                Ok(group) => Some(group),
                Err(err) => {
                    warn!(workload = %name, error = %err, "Cannot create the workload's cgroup; tracking it by process group.");
                    None
                }
            });
        let mut cmd = self.command(&spec, &invocation, &work, cgroup.as_ref())?;

        // Checking, spawning and recording happen under one lock, so that two
        // deploys of one name cannot both start a process.
        let mut map = self.lock();
        if map.get(&name).is_some_and(Instance::is_running) {
            return Err(RuntimeError::AlreadyExists(name));
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| RuntimeError::backend(format!("starting `{}`", invocation.program), e))?;
        let (Some(pid), Some(stdin), Some(stdout), Some(stderr)) = (
            child.id(),
            child.stdin.take(),
            child.stdout.take(),
            child.stderr.take(),
        ) else {
            unreachable!("a freshly spawned child has a pid and the pipes asked for");
        };
        let pgid = i32::try_from(pid).expect("pids fit in pid_t");
        let record = PidRecord {
            pid: pgid,
            start_time: pids::start_time(pgid),
            pgid,
        };
        if let Err(err) = pids::write(&self.pids_dir, name.as_str(), &record) {
            warn!(
                workload = %name,
                error = %err,
                "Could not write the pid record; a crash of berth would leave this process running."
            );
        }

        let log = RotatingLog::new(
            self.logs_dir.clone(),
            name.as_str().to_owned(),
            self.config.log_max_bytes,
            self.config.log_keep,
        );
        let log_pump = tokio::spawn(logs::pump(stderr, log));
        let (exit, _) = watch::channel(None);
        let stop_requested = Arc::new(AtomicBool::new(false));
        tokio::spawn(reap(
            child,
            Reaper {
                name: name.clone(),
                pgid,
                cgroup: cgroup.clone(),
                pids_dir: self.pids_dir.clone(),
                stop_requested: stop_requested.clone(),
                exit: exit.clone(),
            },
        ));

        let inst = Instance {
            spec,
            pid,
            pgid,
            cgroup,
            started_at: OffsetDateTime::now_utc(),
            stdio: Some((stdin, stdout)),
            exit,
            stop_requested,
            log_pump: Some(log_pump),
        };
        let info = inst.info();
        // A replaced instance has exited; its log writer ends on its own.
        map.insert(name.clone(), inst);
        drop(map);
        info!(workload = %name, pid, image = %info.image, "Workload process started.");
        Ok(info)
    }

    async fn stop(&self, name: &WorkloadName) -> Result<(), RuntimeError> {
        let target = {
            let map = self.lock();
            let inst = map
                .get(name)
                .ok_or_else(|| RuntimeError::NotFound(name.clone()))?;
            Stopping::begin(name, inst)
        };
        if let Some(target) = target {
            info!(workload = %name, "Stopping workload process.");
            self.finish_stops(vec![target]).await;
        }
        Ok(())
    }

    async fn remove(&self, name: &WorkloadName) -> Result<(), RuntimeError> {
        let mut inst = loop {
            self.stop(name).await?;
            if let Some(inst) = self.forget_stopped(name)? {
                break inst;
            }
        };
        if let Some(mut pump) = inst.log_pump.take()
            && tokio::time::timeout(LOG_DRAIN, &mut pump).await.is_err()
        {
            pump.abort();
        }
        if let Some(group) = inst.cgroup.take() {
            group.remove();
        }
        drop(inst);
        logs::remove_all(&self.logs_dir, name.as_str())
            .await
            .map_err(|e| RuntimeError::backend(format!("deleting the logs of `{name}`"), e))?;
        match tokio::fs::remove_dir_all(self.work_dir.join(name.as_str())).await {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::backend(
                    format!("deleting the working directory of `{name}`"),
                    err,
                ));
            }
            _ => {}
        }
        info!(workload = %name, "Workload removed.");
        Ok(())
    }

    async fn inspect(&self, name: &WorkloadName) -> Result<WorkloadInfo, RuntimeError> {
        self.lock()
            .get(name)
            .map(Instance::info)
            .ok_or_else(|| RuntimeError::NotFound(name.clone()))
    }

    async fn list(&self) -> Result<Vec<WorkloadInfo>, RuntimeError> {
        Ok(self.lock().values().map(Instance::info).collect())
    }

    async fn logs(&self, name: &WorkloadName, tail: usize) -> Result<String, RuntimeError> {
        if !self.lock().contains_key(name) {
            return Err(RuntimeError::NotFound(name.clone()));
        }
        let dir = self.logs_dir.clone();
        let file = name.as_str().to_owned();
        let keep = self.config.log_keep;
        tokio::task::spawn_blocking(move || logs::tail(&dir, &file, keep, tail))
            .await
            .map_err(|e| RuntimeError::backend(format!("reading the logs of `{name}`"), e))?
            .map_err(|e| RuntimeError::backend(format!("reading the logs of `{name}`"), e))
    }

    async fn attach(&self, name: &WorkloadName) -> Result<StdioHandle, RuntimeError> {
        let mut map = self.lock();
        let inst = map
            .get_mut(name)
            .ok_or_else(|| RuntimeError::NotFound(name.clone()))?;
        if !inst.is_running() {
            return Err(RuntimeError::NotRunning(name.clone()));
        }
        let (stdin, stdout) = inst
            .stdio
            .take()
            .ok_or_else(|| RuntimeError::AlreadyAttached(name.clone()))?;
        Ok(StdioHandle::new(stdin, stdout))
    }

    async fn wait(&self, name: &WorkloadName) -> Result<ExitStatus, RuntimeError> {
        let mut rx = self
            .lock()
            .get(name)
            .map(|inst| inst.exit.subscribe())
            .ok_or_else(|| RuntimeError::NotFound(name.clone()))?;
        match rx.wait_for(Option::is_some).await {
            Ok(exit) => Ok(exit.clone().expect("waited for an exit")),
            // The instance was forgotten before its process was reaped.
            Err(_) => Err(RuntimeError::NotFound(name.clone())),
        }
    }

    /// Every process of the workload: its cgroup's members, or without one
    /// the leader, its process group and its descendants.
    async fn usage(&self, name: &WorkloadName) -> Result<Option<Usage>, RuntimeError> {
        let (pgid, cgroup) = {
            let map = self.lock();
            let inst = map
                .get(name)
                .ok_or_else(|| RuntimeError::NotFound(name.clone()))?;
            if !inst.is_running() {
                return Ok(None);
            }
            (inst.pgid, inst.cgroup.clone())
        };
        let measure = move || {
            let pids: BTreeSet<i32> = match &cgroup {
                Some(group) => group.pids().into_iter().collect(),
                None => std::iter::once(pgid)
                    .chain(pids::group_members(pgid))
                    .chain(pids::descendants(pgid))
                    .collect(),
            };
            usage::total(pids)
        };
        tokio::task::spawn_blocking(measure)
            .await
            .map(Some)
            .map_err(|e| RuntimeError::backend(format!("measuring `{name}`"), e))
    }
}

/// What the reaper task of one child needs.
struct Reaper {
    name: WorkloadName,
    pgid: i32,
    cgroup: Option<WorkloadCgroup>,
    pids_dir: PathBuf,
    stop_requested: Arc<AtomicBool>,
    exit: watch::Sender<Option<ExitStatus>>,
}

/// Waits for `child` to exit, then records how it ended.
async fn reap(mut child: Child, r: Reaper) {
    let (code, signal) = match child.wait().await {
        Ok(status) => (status.code(), status.signal()),
        Err(err) => {
            error!(workload = %r.name, error = %err, "Waiting for the workload process failed.");
            (None, None)
        }
    };
    // The record goes before the exit is published: a deploy that follows
    // writes a new one.
    if let Err(err) = pids::remove(&r.pids_dir, r.name.as_str()) {
        warn!(workload = %r.name, error = %err, "Could not delete the pid record.");
    }
    let stopped_by_request = r.stop_requested.load(Ordering::SeqCst);
    // A stop deals with the rest of the group itself, with a grace period.
    if !stopped_by_request && pids::group_alive(r.pgid) {
        warn!(
            workload = %r.name,
            pgid = r.pgid,
            "Workload process exited and left processes behind; killing them."
        );
        signal_group(r.pgid, Signal::SIGKILL);
    }
    if let Some(group) = &r.cgroup
        && !stopped_by_request
        && !group.is_empty()
    {
        warn!(workload = %r.name, "Workload process exited and left processes in its cgroup; killing them.");
        group.kill_all();
    }
    info!(workload = %r.name, code, signal, stopped_by_request, "Workload process exited.");
    r.exit.send_replace(Some(ExitStatus {
        code,
        signal,
        stopped_by_request,
        at: OffsetDateTime::now_utc(),
    }));
}

/// Resolves once the exit of the watched instance is known.
async fn exited(rx: &mut watch::Receiver<Option<ExitStatus>>) {
    // An error means the reaper is gone, which it only is after publishing.
    let _ = rx.wait_for(Option::is_some).await;
}

/// Sends `signal` to process group `pgid`; a group that is gone already is
/// fine.
fn signal_group(pgid: i32, signal: Signal) {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(err) => {
            error!(pgid, signal = signal.as_str(), error = %err, "Could not signal a workload process group.");
        }
    }
}

#[cfg(test)]
mod confinement_tests {
    use berth_runtime_api::{Mount, NetworkAccess, WorkloadName, WorkloadSpec};

    use super::check_confinement;

    #[test]
    fn restrictive_specs_are_refused() {
        let spec = WorkloadSpec::new(WorkloadName::parse("w").unwrap(), "exec:///bin/cat");
        assert!(check_confinement(&spec).is_ok());
        let mut none = spec.clone();
        none.network = NetworkAccess::None;
        let why = check_confinement(&none).unwrap_err().to_string();
        assert!(why.contains("cannot restrict"), "{why}");
        let mut mounted = spec;
        mounted.mounts.push(Mount {
            source: "/tmp".into(),
            target: "/data".into(),
            read_only: true,
        });
        let why = check_confinement(&mounted).unwrap_err().to_string();
        assert!(why.contains("mounts"), "{why}");
    }
}
