//! An in-memory backend for tests of the layers above the runtime.
//!
//! Images it understands:
//! - `fake://echo`: runs until stopped; its stdio echoes every byte back;
//! - `fake://exit` with `args[0]` an exit code: exits at once with that code;
//! - `fake://fail`: deploy fails with a backend error.
//!
//! Anything else is an invalid spec, as an OCI image is on the process backend.
//!
//! [`FakeBackend::set_reachable`] simulates an engine that goes away: every
//! call fails with [`RuntimeError::Unavailable`], pending waits end with it,
//! and the instances that ran are gone (exited) when it comes back.
//!
//! Mounts and network restrictions are accepted and only recorded
//! ([`FakeBackend::spec_of`]); the isolated network of every workload is
//! `127.0.0.1`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{
    Backend, BackendHealth, ExitStatus, RuntimeError, RuntimeState, StdioHandle, WorkloadInfo,
    WorkloadName, WorkloadSpec,
};

struct Instance {
    spec: WorkloadSpec,
    state: RuntimeState,
    started_at: OffsetDateTime,
    exit: watch::Sender<Option<Ended>>,
    stdio: Option<StdioHandle>,
    echo: Option<JoinHandle<()>>,
    deploys: u32,
}

/// How an instance's run ended, as its waiters learn it.
#[derive(Clone)]
enum Ended {
    Exited(ExitStatus),
    /// The engine went away while the instance ran.
    Lost,
}

/// A backend that keeps its instances in memory; see the module docs.
pub struct FakeBackend {
    instances: Mutex<BTreeMap<WorkloadName, Instance>>,
    unreachable: AtomicBool,
    kind: &'static str,
}

impl Default for FakeBackend {
    fn default() -> Self {
        Self::named("fake")
    }
}

impl FakeBackend {
    /// An empty fake backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty fake backend that calls itself `kind` (to stand for one of
    /// several runtimes).
    pub fn named(kind: &'static str) -> Self {
        Self {
            instances: Mutex::default(),
            unreachable: AtomicBool::new(false),
            kind,
        }
    }

    /// Makes a running instance exit by itself with `code`, as a crash would.
    pub fn crash(&self, name: &WorkloadName, code: i32) -> Result<(), RuntimeError> {
        let mut map = self.instances.lock().expect("fake backend lock");
        let inst = map
            .get_mut(name)
            .ok_or_else(|| RuntimeError::NotFound(name.clone()))?;
        finish(inst, Some(code), None, false);
        Ok(())
    }

    /// Takes the simulated engine away (`false`) or brings it back. Going
    /// away ends every running instance, as an engine restart does (Docker
    /// without live-restore stops them, Podman's closed attach ends a stdio
    /// server), and their waiters get [`RuntimeError::Unavailable`].
    pub fn set_reachable(&self, reachable: bool) {
        let mut map = self.instances.lock().expect("fake backend lock");
        self.unreachable.store(!reachable, Ordering::SeqCst);
        if reachable {
            return;
        }
        for inst in map.values_mut().filter(|i| i.state.is_running()) {
            if let Some(task) = inst.echo.take() {
                task.abort();
            }
            inst.stdio = None;
            inst.state = RuntimeState::Exited(ExitStatus {
                code: None,
                signal: Some(9),
                stopped_by_request: false,
                at: OffsetDateTime::now_utc(),
            });
            inst.exit.send_replace(Some(Ended::Lost));
        }
    }

    fn reachable(&self) -> Result<(), RuntimeError> {
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(unavailable());
        }
        Ok(())
    }

    /// How many times `name` was deployed.
    pub fn deploy_count(&self, name: &WorkloadName) -> u32 {
        let map = self.instances.lock().expect("fake backend lock");
        map.get(name).map_or(0, |i| i.deploys)
    }

    /// The spec `name` was last deployed with.
    pub fn spec_of(&self, name: &WorkloadName) -> Option<WorkloadSpec> {
        let map = self.instances.lock().expect("fake backend lock");
        map.get(name).map(|i| i.spec.clone())
    }

    fn with<T>(
        &self,
        name: &WorkloadName,
        f: impl FnOnce(&mut Instance) -> Result<T, RuntimeError>,
    ) -> Result<T, RuntimeError> {
        self.reachable()?;
        let mut map = self.instances.lock().expect("fake backend lock");
        let inst = map
            .get_mut(name)
            .ok_or_else(|| RuntimeError::NotFound(name.clone()))?;
        f(inst)
    }
}

fn finish(inst: &mut Instance, code: Option<i32>, signal: Option<i32>, requested: bool) {
    if !inst.state.is_running() {
        return;
    }
    if let Some(task) = inst.echo.take() {
        task.abort();
    }
    inst.stdio = None;
    let status = ExitStatus {
        code,
        signal,
        stopped_by_request: requested,
        at: OffsetDateTime::now_utc(),
    };
    inst.state = RuntimeState::Exited(status.clone());
    inst.exit.send_replace(Some(Ended::Exited(status)));
}

fn unavailable() -> RuntimeError {
    RuntimeError::Unavailable {
        backend: "fake",
        source: "the fake engine is down".into(),
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
    info
}

#[async_trait]
impl Backend for FakeBackend {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn health(&self) -> Result<BackendHealth, RuntimeError> {
        self.reachable()?;
        Ok(BackendHealth::new(self.kind, "0"))
    }

    fn check(&self, spec: &WorkloadSpec) -> Result<(), RuntimeError> {
        match spec.image.as_str() {
            "fake://echo" | "fake://exit" | "fake://fail" => Ok(()),
            other => Err(RuntimeError::InvalidSpec(format!(
                "the fake backend runs fake:// images, not `{other}`"
            ))),
        }
    }

    async fn isolated_network(
        &self,
        _name: &WorkloadName,
    ) -> Result<std::net::IpAddr, RuntimeError> {
        self.reachable()?;
        Ok(std::net::Ipv4Addr::LOCALHOST.into())
    }

    async fn deploy(&self, spec: WorkloadSpec) -> Result<WorkloadInfo, RuntimeError> {
        self.reachable()?;
        let mut map = self.instances.lock().expect("fake backend lock");
        let deploys = match map.get(&spec.name) {
            Some(old) if old.state.is_running() => {
                return Err(RuntimeError::AlreadyExists(spec.name.clone()));
            }
            Some(old) => old.deploys + 1,
            None => 1,
        };
        let (exit, _) = watch::channel(None);
        let mut inst = Instance {
            spec,
            state: RuntimeState::Running,
            started_at: OffsetDateTime::now_utc(),
            exit,
            stdio: None,
            echo: None,
            deploys,
        };
        match inst.spec.image.as_str() {
            "fake://echo" => {
                let (ours, theirs) = tokio::io::duplex(64 * 1024);
                let (mut r, mut w) = tokio::io::split(theirs);
                inst.echo = Some(tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }));
                let (r, w) = tokio::io::split(ours);
                inst.stdio = Some(StdioHandle::new(w, r));
            }
            "fake://exit" => {
                let code = inst.spec.args.first().and_then(|a| a.parse().ok());
                finish(&mut inst, code.or(Some(0)), None, false);
            }
            "fake://fail" => {
                return Err(RuntimeError::backend(
                    "starting fake workload",
                    "the fake runtime refused",
                ));
            }
            _ => self.check(&inst.spec)?,
        }
        let out = info(&inst);
        map.insert(out.name.clone(), inst);
        Ok(out)
    }

    async fn stop(&self, name: &WorkloadName) -> Result<(), RuntimeError> {
        self.with(name, |inst| {
            finish(inst, None, Some(15), true);
            Ok(())
        })
    }

    async fn remove(&self, name: &WorkloadName) -> Result<(), RuntimeError> {
        self.reachable()?;
        let mut map = self.instances.lock().expect("fake backend lock");
        let mut inst = map
            .remove(name)
            .ok_or_else(|| RuntimeError::NotFound(name.clone()))?;
        finish(&mut inst, None, Some(15), true);
        Ok(())
    }

    async fn inspect(&self, name: &WorkloadName) -> Result<WorkloadInfo, RuntimeError> {
        self.with(name, |inst| Ok(info(inst)))
    }

    async fn list(&self) -> Result<Vec<WorkloadInfo>, RuntimeError> {
        self.reachable()?;
        let map = self.instances.lock().expect("fake backend lock");
        Ok(map.values().map(info).collect())
    }

    async fn logs(&self, name: &WorkloadName, _tail: usize) -> Result<String, RuntimeError> {
        self.with(name, |inst| Ok(format!("fake log of {}\n", inst.spec.name)))
    }

    async fn attach(&self, name: &WorkloadName) -> Result<StdioHandle, RuntimeError> {
        self.with(name, |inst| {
            if !inst.state.is_running() {
                return Err(RuntimeError::NotRunning(name.clone()));
            }
            inst.stdio
                .take()
                .ok_or_else(|| RuntimeError::AlreadyAttached(name.clone()))
        })
    }

    async fn wait(&self, name: &WorkloadName) -> Result<ExitStatus, RuntimeError> {
        let mut rx = self.with(name, |inst| Ok(inst.exit.subscribe()))?;
        let ended = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|e| RuntimeError::backend("waiting for fake workload", e))?
            .clone();
        match ended.expect("waited for Some") {
            Ended::Exited(status) => Ok(status),
            Ended::Lost => Err(unavailable()),
        }
    }
}
