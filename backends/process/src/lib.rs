//! berth's native process backend: each workload is a local process.
//!
//! Images are `npx://<package>`, `uvx://<package>` or `exec://<absolute
//! path>`; arguments are argv, never a shell. A child gets a cleared
//! environment plus the base environment berth hands over and the spec's
//! variables, its own process group, a working directory under the
//! backend's root, stdin/stdout as pipes (for the stdio transport) and
//! stderr into a size-rotated log file.
//!
//! ```no_run
//! # async fn demo() -> Result<(), berth_runtime_api::RuntimeError> {
//! use berth_backend_process::{ProcessBackend, ProcessConfig};
//! use berth_runtime_api::{Backend, WorkloadName, WorkloadSpec};
//!
//! let env = [("PATH".to_owned(), "/usr/bin:/bin".to_owned())].into();
//! let backend = ProcessBackend::new(ProcessConfig::default(), "/tmp/berth-process".into(), env).await?;
//! let spec = WorkloadSpec::new(WorkloadName::parse("cat").unwrap(), "exec:///bin/cat");
//! backend.deploy(spec).await?;
//! let _io = backend.attach(&WorkloadName::parse("cat").unwrap()).await?;
//! # Ok(()) }
//! ```

mod command;
mod config;
mod logs;
mod pids;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_runtime_api::{
    Backend, BackendHealth, ExitStatus, RuntimeError, RuntimeState, StdioHandle, WorkloadInfo,
    WorkloadName, WorkloadSpec,
};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use time::OffsetDateTime;
use tokio::io::AsyncReadExt;
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::watch;
use tracing::{info, warn};

pub use config::ProcessConfig;

struct Instance {
    spec: WorkloadSpec,
    pid: u32,
    started_at: OffsetDateTime,
    state: RuntimeState,
    stdio: Option<(ChildStdin, ChildStdout)>,
    exit: watch::Sender<Option<ExitStatus>>,
    stop_requested: Arc<AtomicBool>,
}

type Table = Arc<Mutex<BTreeMap<WorkloadName, Instance>>>;

/// Runs workloads as native processes; see the crate docs.
pub struct ProcessBackend {
    config: ProcessConfig,
    root: PathBuf,
    base_env: BTreeMap<String, String>,
    table: Table,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let context = context.into();
    move |e| RuntimeError::backend(context, e)
}

fn pgid_of(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).expect("pids fit in i32"))
}

/// Whether any process of group `pgid` still exists.
fn group_alive(pgid: Pid) -> bool {
    !matches!(killpg(pgid, None), Err(Errno::ESRCH))
}

impl ProcessBackend {
    /// A backend that keeps its files under `root` (`logs/`, `work/`,
    /// `pids/`) and gives children `base_env`. Processes left by a previous
    /// berth that was killed are found through their pid records and ended.
    pub async fn new(
        config: ProcessConfig,
        root: PathBuf,
        base_env: BTreeMap<String, String>,
    ) -> Result<Self, RuntimeError> {
        for dir in ["logs", "work", "pids"] {
            tokio::fs::create_dir_all(root.join(dir))
                .await
                .map_err(io_err(format!("creating {}", root.join(dir).display())))?;
        }
        for name in pids::reap_leftovers(&root.join("pids")) {
            warn!(workload = %name, "Killed a process left by a previous berth.");
        }
        Ok(Self {
            config,
            root,
            base_env,
            table: Arc::default(),
        })
    }

    fn log_path(&self, name: &WorkloadName) -> PathBuf {
        self.root.join("logs").join(format!("{name}.log"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<WorkloadName, Instance>> {
        self.table.lock().expect("process table lock")
    }

    /// Stops every running workload, concurrently.
    pub async fn stop_all(&self) {
        let names: Vec<WorkloadName> = self
            .lock()
            .iter()
            .filter(|(_, i)| i.state.is_running())
            .map(|(n, _)| n.clone())
            .collect();
        let mut set = tokio::task::JoinSet::new();
        for name in names {
            let this = self.handle();
            set.spawn(async move { this.stop_one(&name).await });
        }
        while set.join_next().await.is_some() {}
    }

    fn handle(&self) -> StopHandle {
        StopHandle {
            table: self.table.clone(),
            grace: Duration::from_secs(self.config.stop_grace_secs),
        }
    }

    fn info(inst: &Instance) -> WorkloadInfo {
        let mut info = WorkloadInfo::new(
            inst.spec.name.clone(),
            inst.spec.image.clone(),
            inst.state.clone(),
        );
        info.started_at = Some(inst.started_at);
        info.labels = inst.spec.labels.clone();
        info.pid = Some(inst.pid);
        info
    }
}

/// What stopping needs, detached from the backend so it can run in tasks.
struct StopHandle {
    table: Table,
    grace: Duration,
}

impl StopHandle {
    async fn stop_one(&self, name: &WorkloadName) -> Result<(), RuntimeError> {
        let (pid, mut exit) = {
            let table = self.table.lock().expect("process table lock");
            let inst = table
                .get(name)
                .ok_or_else(|| RuntimeError::NotFound(name.clone()))?;
            if !inst.state.is_running() {
                return Ok(());
            }
            inst.stop_requested.store(true, Ordering::SeqCst);
            (inst.pid, inst.exit.subscribe())
        };
        let pgid = pgid_of(pid);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + self.grace;
        while group_alive(pgid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if group_alive(pgid) {
            warn!(workload = %name, "Workload ignored SIGTERM; sending SIGKILL.");
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        exit.wait_for(Option::is_some)
            .await
            .map_err(|e| RuntimeError::backend("waiting for the process to exit", e))?;
        Ok(())
    }
}

async fn pump_stderr(mut stderr: tokio::process::ChildStderr, mut log: logs::RotatingLog) {
    let mut buf = vec![0u8; 8192];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Err(err) = log.write(&buf[..n]) {
                    warn!(error = %err, "Cannot write a workload log.");
                }
            }
        }
    }
}

#[async_trait]
impl Backend for ProcessBackend {
    fn kind(&self) -> &'static str {
        "process"
    }

    async fn health(&self) -> Result<BackendHealth, RuntimeError> {
        let release = tokio::fs::read_to_string("/proc/sys/kernel/osrelease")
            .await
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Ok(BackendHealth::new("process", release))
    }

    fn check(&self, spec: &WorkloadSpec) -> Result<(), RuntimeError> {
        command::resolve(&self.config, &spec.image, &spec.args).map(drop)
    }

    async fn deploy(&self, spec: WorkloadSpec) -> Result<WorkloadInfo, RuntimeError> {
        if self
            .lock()
            .get(&spec.name)
            .is_some_and(|i| i.state.is_running())
        {
            return Err(RuntimeError::AlreadyExists(spec.name.clone()));
        }
        let argv = command::resolve(&self.config, &spec.image, &spec.args)?;
        let name = spec.name.clone();
        let workdir = self.root.join("work").join(name.as_str());
        tokio::fs::create_dir_all(&workdir)
            .await
            .map_err(io_err(format!("creating {}", workdir.display())))?;
        let log = logs::RotatingLog::open(
            self.log_path(&name),
            self.config.log_max_bytes,
            self.config.log_keep,
        )
        .map_err(io_err("opening the workload log"))?;

        let mut cmd = tokio::process::Command::new(&argv.program);
        cmd.args(&argv.args)
            .env_clear()
            .envs(&self.base_env)
            .envs(&spec.env)
            .current_dir(&workdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(io_err(format!("starting `{}`", argv.program)))?;
        let pid = child.id().expect("a just-spawned child has a pid");
        let record = pids::PidRecord {
            pid,
            pgid: pid,
            start_time: pids::start_time(pid).unwrap_or(0),
        };
        let pid_dir = self.root.join("pids");
        if let Err(err) = pids::write(&pid_dir, name.as_str(), &record) {
            warn!(workload = %name, error = %err, "Cannot write the pid record.");
        }
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        tokio::spawn(pump_stderr(stderr, log));

        let (exit, _) = watch::channel(None);
        let stop_requested = Arc::new(AtomicBool::new(false));
        let inst = Instance {
            spec,
            pid,
            started_at: OffsetDateTime::now_utc(),
            state: RuntimeState::Running,
            stdio: Some((stdin, stdout)),
            exit,
            stop_requested: stop_requested.clone(),
        };
        let info = Self::info(&inst);
        self.lock().insert(name.clone(), inst);

        // The reaper: records how the process ended and clears its group.
        let table = self.table.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let requested = stop_requested.load(Ordering::SeqCst);
            let (code, signal) = match &status {
                Ok(s) => (s.code(), s.signal()),
                Err(_) => (None, None),
            };
            // Children the leader left behind (npx → node) end with it.
            let _ = killpg(pgid_of(pid), Signal::SIGKILL);
            pids::remove(&pid_dir, name.as_str());
            let exit = ExitStatus {
                code,
                signal,
                stopped_by_request: requested,
                at: OffsetDateTime::now_utc(),
            };
            info!(workload = %name, pid, code = ?code, signal = ?signal, requested, "Workload process exited.");
            let mut table = table.lock().expect("process table lock");
            if let Some(inst) = table.get_mut(&name).filter(|i| i.pid == pid) {
                inst.state = RuntimeState::Exited(exit.clone());
                inst.stdio = None;
                inst.exit.send_replace(Some(exit));
            }
        });
        Ok(info)
    }

    async fn stop(&self, name: &WorkloadName) -> Result<(), RuntimeError> {
        self.handle().stop_one(name).await
    }

    async fn remove(&self, name: &WorkloadName) -> Result<(), RuntimeError> {
        self.stop(name).await?;
        self.lock().remove(name);
        logs::remove(&self.log_path(name), self.config.log_keep);
        let workdir = self.root.join("work").join(name.as_str());
        match tokio::fs::remove_dir_all(&workdir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("removing {}", workdir.display()))(e)),
        }
    }

    async fn inspect(&self, name: &WorkloadName) -> Result<WorkloadInfo, RuntimeError> {
        self.lock()
            .get(name)
            .map(Self::info)
            .ok_or_else(|| RuntimeError::NotFound(name.clone()))
    }

    async fn list(&self) -> Result<Vec<WorkloadInfo>, RuntimeError> {
        Ok(self.lock().values().map(Self::info).collect())
    }

    async fn logs(&self, name: &WorkloadName, tail: usize) -> Result<String, RuntimeError> {
        if !self.lock().contains_key(name) {
            return Err(RuntimeError::NotFound(name.clone()));
        }
        let path = self.log_path(name);
        let keep = self.config.log_keep;
        tokio::task::spawn_blocking(move || logs::tail(&path, keep, tail))
            .await
            .map_err(|e| RuntimeError::backend("reading the workload log", e))?
            .map_err(io_err("reading the workload log"))
    }

    async fn attach(&self, name: &WorkloadName) -> Result<StdioHandle, RuntimeError> {
        let mut table = self.lock();
        let inst = table
            .get_mut(name)
            .ok_or_else(|| RuntimeError::NotFound(name.clone()))?;
        if !inst.state.is_running() {
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
            .map(|i| i.exit.subscribe())
            .ok_or_else(|| RuntimeError::NotFound(name.clone()))?;
        let exit = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|e| RuntimeError::backend("waiting for the process to exit", e))?;
        Ok(exit.clone().expect("waited for Some"))
    }

    async fn shutdown(&self) {
        self.stop_all().await;
    }
}
