//! berth's Docker backend: runs MCP servers as Docker containers, through the
//! engine API (bollard).
//!
//! Workload `w` is the container `berth-w`, labelled with the spec's labels
//! plus `berth.managed=true` and `berth.workload=w`; the labels are how
//! [`list`](Backend::list) finds the containers of a berth that restarted.
//! Containers run with `docker-init` as PID 1, `no-new-privileges`, every
//! capability dropped, the configured memory and CPU limits and no restart
//! policy (berth decides about restarts).
//!
//! **stdio.** A stdio workload's container keeps its stdin open
//! (`OpenStdin`, not `StdinOnce`). The deploy attaches *before* it starts
//! the container, so nothing the server writes first is lost, and keeps the
//! streams until [`attach`](Backend::attach) hands them out. Once those are
//! taken, or after berth restarted, `attach` opens a new engine attach to
//! the running container: re-attaching never restarts the server. One
//! [`StdioHandle`] is out at a time; while either half of it lives, `attach`
//! is [`RuntimeError::AlreadyAttached`]. The server's stderr is not part of
//! the handle: the engine log keeps it, and [`logs`](Backend::logs) reads it.
//!
//! **HTTP.** For the `sse` and `streamable-http` transports the container's
//! target port is published on 127.0.0.1 only, on a port the engine picks;
//! [`WorkloadInfo::http_endpoint`] reports it.
//!
//! **Confinement.** [`Mount`](berth_runtime_api::Mount)s become bind mounts
//! (the engine refuses a source that does not exist). `NetworkAccess::None`
//! is network mode `none`; `NetworkAccess::Isolated` puts the container
//! alone on the internal bridge network `berth-egress-<name>`, which has no
//! route out, created by [`Backend::isolated_network`] and removed with the
//! workload. Restricted networks take stdio workloads only for now: a
//! published port is not reachable on them.
//!
//! The backend never reads the environment: berth hands in the socket
//! (`DOCKER_HOST`) through [`DockerConfig`].
//!
//! **Files** (the same set in the Podman backend): `config.rs` (the
//! settings), `engine.rs` (reaching the engine), `error.rs` (engine errors
//! → [`RuntimeError`]), `container.rs` (the create body, and reading what
//! the engine reports), `image.rs` (pulls and package images),
//! `network.rs` (isolated networks), `stdio.rs` (the engine's attach
//! streams and the one-holder token). What the container engines share —
//! names and labels, spec checks, the shared settings and limits, the
//! package-image build flow — is written once in `berth-container`.
//!
//! ```no_run
//! use berth_backend_docker::{DockerBackend, DockerConfig};
//! use berth_runtime_api::{Backend, WorkloadName, WorkloadSpec};
//! use tokio::io::AsyncWriteExt;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let config = DockerConfig {
//!     socket: Some("unix:///var/run/docker.sock".into()),
//!     ..DockerConfig::default()
//! };
//! let backend = DockerBackend::connect(config).await.unwrap();
//!
//! let name = WorkloadName::parse("echo").unwrap();
//! backend
//!     .deploy(WorkloadSpec::new(name.clone(), "localhost/berth-test/echo:latest"))
//!     .await
//!     .unwrap();
//! let mut io = backend.attach(&name).await.unwrap();
//! io.stdin.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n").await.unwrap();
//!
//! backend.stop(&name).await.unwrap();
//! assert!(backend.wait(&name).await.unwrap().stopped_by_request);
//! backend.remove(&name).await.unwrap();
//! # });
//! ```

#![deny(missing_docs)]

mod config;
mod container;
mod engine;
mod error;
mod image;
mod network;
mod stdio;

pub use config::{DEFAULT_SOCKET, DockerConfig, PullPolicy};
pub use error::ConnectError;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError, Weak};

use async_trait::async_trait;
use berth_container::labels::{
    LABEL_MANAGED, container_name, is_managed, is_ours, network_name, workload_of,
};
use berth_container::{Limits, PackageImages, check_spec};
use berth_runtime_api::{
    Backend, BackendHealth, ExitStatus, NetworkAccess, RuntimeError, StdioHandle, Transport,
    WorkloadInfo, WorkloadName, WorkloadSpec,
};
use bollard::Docker;
use bollard::container::AttachContainerResults;
use bollard::errors::Error as EngineError;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use time::OffsetDateTime;
use tracing::{debug, info, warn};

use crate::error::{Class, classify};
use crate::stdio::HolderToken;

/// The backend's kind, as [`Backend::kind`] reports it.
pub const KIND: &str = "docker";

/// Requests wait at least this long for the engine's response headers.
const MIN_REQUEST_TIMEOUT_SECS: u64 = 120;

/// Runs workloads as Docker containers; see the crate docs.
pub struct DockerBackend {
    docker: Docker,
    config: DockerConfig,
    limits: Limits,
    instances: Mutex<BTreeMap<WorkloadName, Instance>>,
    packages: PackageImages,
}

/// What this berth process knows of one container beyond what the engine
/// reports. Records are keyed by workload name and valid for one container
/// id; a record for another id is stale and replaced.
struct Instance {
    container_id: String,
    /// When the container started, as the engine reported after the deploy;
    /// held streams are only good for that run.
    started_at: Option<OffsetDateTime>,
    /// The streams attached before the start, until `attach` takes them.
    stdio: Option<AttachContainerResults>,
    /// Whether berth's `stop` (or `remove`) was called for this container.
    stop_requested: bool,
    /// Alive while a handed-out [`StdioHandle`] (or an attach in progress)
    /// exists.
    holder: Weak<HolderToken>,
}

impl Instance {
    /// A record for a container this process did not deploy (found after a
    /// restart of berth).
    fn adopted(container_id: &str) -> Self {
        Self {
            container_id: container_id.to_owned(),
            started_at: None,
            stdio: None,
            stop_requested: false,
            holder: Weak::new(),
        }
    }
}

/// An inspected managed container with its id.
struct Found {
    id: String,
    inspect: ContainerInspectResponse,
}

impl DockerBackend {
    /// Connects to the engine at `config.socket` (default
    /// [`DEFAULT_SOCKET`]) and checks that it answers.
    ///
    /// Fails within a few seconds, never hangs: an engine that cannot be
    /// reached is [`RuntimeError::Unavailable`] whose source
    /// ([`ConnectError`]) names the socket tried. A configuration value out
    /// of range is a [`RuntimeError::Backend`] error.
    pub async fn connect(config: DockerConfig) -> Result<Self, RuntimeError> {
        let limits = config
            .container
            .check()
            .map_err(|why| RuntimeError::backend("invalid docker configuration", why))?;
        // A stop answers only once the container has stopped, after up to
        // the grace period.
        let timeout = config
            .container
            .stop_grace_secs
            .saturating_add(60)
            .max(MIN_REQUEST_TIMEOUT_SECS);
        let socket = config.socket().to_owned();
        let docker = engine::connect(&socket, timeout)
            .await
            .map_err(error::unavailable)?;
        info!(socket = %socket, "Connected to the docker engine.");
        Ok(Self {
            docker,
            config,
            limits,
            instances: Mutex::new(BTreeMap::new()),
            packages: PackageImages::new(),
        })
    }

    /// The configuration the backend runs with.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The engine client, connected and speaking the agreed API version;
    /// for diagnostics and tests that look at containers directly.
    pub fn engine(&self) -> &Docker {
        &self.docker
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<WorkloadName, Instance>> {
        self.instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Inspects the container named for `name`, whoever manages it.
    async fn inspect_by_name(
        &self,
        name: &WorkloadName,
    ) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        match self
            .docker
            .inspect_container(&container_name(name), None)
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(err) if classify(&err) == Class::NotFound => Ok(None),
            Err(err) => Err(error::map(
                self.config.socket(),
                err,
                name,
                format!("inspecting the container of `{name}`"),
            )),
        }
    }

    /// The managed container of `name`; a container of that name berth does
    /// not manage is not found.
    async fn find(&self, name: &WorkloadName) -> Result<Found, RuntimeError> {
        let not_found = || RuntimeError::NotFound(name.clone());
        let inspect = self.inspect_by_name(name).await?.ok_or_else(not_found)?;
        let labels = inspect.config.as_ref().and_then(|c| c.labels.as_ref());
        if !is_ours(&labels, self.config.instance.as_deref()) {
            debug!(workload = %name, "A container of the workload's name is not this berth's.");
            return Err(not_found());
        }
        let id = inspect.id.clone().ok_or_else(not_found)?;
        Ok(Found { id, inspect })
    }

    /// Whether berth's stop was called for container `id` of `name`.
    fn stop_requested(&self, name: &WorkloadName, id: &str) -> bool {
        self.lock()
            .get(name)
            .is_some_and(|i| i.container_id == id && i.stop_requested)
    }

    /// Runs `f` on the record of container `id`, replacing a stale one.
    fn with_record<T>(
        &self,
        name: &WorkloadName,
        id: &str,
        f: impl FnOnce(&mut Instance) -> T,
    ) -> T {
        let mut map = self.lock();
        let record = map
            .entry(name.clone())
            .or_insert_with(|| Instance::adopted(id));
        if record.container_id != id {
            *record = Instance::adopted(id);
        }
        f(record)
    }

    /// Force-removes container `id`, for cleanup after a failed deploy.
    async fn discard(&self, name: &WorkloadName, id: &str) {
        let opts = RemoveContainerOptionsBuilder::new().force(true).build();
        if let Err(err) = self.docker.remove_container(id, Some(opts)).await {
            warn!(workload = %name, error = %err, "Could not remove the container of a failed deploy.");
        }
    }

    /// Resolves when container `id` no longer runs, with the exit code the
    /// engine's wait reported (`None` when the stream ended without one).
    async fn wait_not_running(
        &self,
        name: &WorkloadName,
        id: &str,
    ) -> Result<Option<i64>, RuntimeError> {
        loop {
            let opts = WaitContainerOptionsBuilder::new()
                .condition("not-running")
                .build();
            let mut waiting = self.docker.wait_container(id, Some(opts));
            match waiting.next().await {
                Some(Ok(answer)) => return Ok(Some(answer.status_code)),
                // bollard reports a non-zero exit as an error.
                Some(Err(EngineError::DockerContainerWaitError { code, .. })) => {
                    return Ok(Some(code));
                }
                // The engine answers only when the container stops; a client
                // timeout just means "not yet".
                Some(Err(EngineError::RequestTimeoutError)) => {}
                Some(Err(err)) => {
                    return Err(error::map(
                        self.config.socket(),
                        err,
                        name,
                        format!("waiting for the container of `{name}`"),
                    ));
                }
                None => return Ok(None),
            }
        }
    }
}

impl fmt::Debug for DockerBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerBackend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Backend for DockerBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn health(&self) -> Result<BackendHealth, RuntimeError> {
        let socket = self.config.socket();
        let answer = tokio::time::timeout(engine::ANSWER_TIMEOUT, async {
            self.docker.ping().await?;
            self.docker.version().await
        })
        .await;
        match answer {
            Ok(Ok(version)) => Ok(BackendHealth::new(
                KIND,
                version.version.unwrap_or_else(|| "unknown".to_owned()),
            )),
            Ok(Err(source)) => Err(error::unavailable(ConnectError::Engine {
                socket: socket.to_owned(),
                source,
            })),
            Err(_) => Err(error::unavailable(ConnectError::Timeout {
                socket: socket.to_owned(),
                secs: engine::ANSWER_TIMEOUT.as_secs(),
            })),
        }
    }

    fn check(&self, spec: &WorkloadSpec) -> Result<(), RuntimeError> {
        check_spec(spec, KIND)
    }

    async fn isolated_network(&self, name: &WorkloadName) -> Result<IpAddr, RuntimeError> {
        let net = self.ensure_network(name).await?;
        network::gateway(net).ok_or_else(|| {
            RuntimeError::backend(
                format!("preparing the isolated network of `{name}`"),
                format!("network `{}` has no gateway address", network_name(name)),
            )
        })
    }

    #[tracing::instrument(name = "backend.deploy", skip_all, fields(workload = %spec.name, backend = KIND))]
    async fn deploy(&self, spec: WorkloadSpec) -> Result<WorkloadInfo, RuntimeError> {
        self.check(&spec)?;
        let name = spec.name.clone();
        let cname = container_name(&name);

        if let Some(existing) = self.inspect_by_name(&name).await? {
            let labels = existing.config.as_ref().and_then(|c| c.labels.as_ref());
            if !is_managed(&labels) {
                return Err(RuntimeError::backend(
                    format!("deploying `{name}`"),
                    format!(
                        "the container name `{cname}` is taken by a container berth does not manage"
                    ),
                ));
            }
            if !is_ours(&labels, self.config.instance.as_deref()) {
                return Err(RuntimeError::InvalidSpec(format!(
                    "the container name `{cname}` is taken by another berth's workload on this engine; \
                     choose another workload name"
                )));
            }
            if container::is_up(existing.state.as_ref()) {
                return Err(RuntimeError::AlreadyExists(name));
            }
            // Stopped: its configuration may be outdated, so start afresh.
            info!(workload = %name, "Replacing the stopped container.");
            let opts = RemoveContainerOptionsBuilder::new().force(true).build();
            match self
                .docker
                .remove_container(existing.id.as_deref().unwrap_or(&cname), Some(opts))
                .await
            {
                Err(err) if classify(&err) != Class::NotFound => {
                    return Err(error::other(
                        self.config.socket(),
                        err,
                        format!("removing the stopped container of `{name}`"),
                    ));
                }
                _ => {}
            }
            self.lock().remove(&name);
        }

        let image = self.prepare_image(&spec).await?;
        if spec.network == NetworkAccess::Isolated {
            self.ensure_network(&name).await?;
        } else if let Err(err) = self.remove_network(&name).await {
            // A network left from an earlier configuration; harmless.
            warn!(workload = %name, error = %err, "Could not remove the unused isolated network.");
        }

        let opts = CreateContainerOptionsBuilder::new().name(&cname).build();
        let created = self
            .docker
            .create_container(
                Some(opts),
                container::create_body(
                    &spec,
                    &image,
                    &self.limits,
                    self.config.instance.as_deref(),
                ),
            )
            .await
            .map_err(|err| match classify(&err) {
                Class::NotFound => RuntimeError::InvalidSpec(format!(
                    "image `{image}` is not present locally: {err}"
                )),
                // Another deploy of the name won the race.
                Class::Conflict => RuntimeError::AlreadyExists(name.clone()),
                _ => error::map(
                    self.config.socket(),
                    err,
                    &name,
                    format!("creating the container of `{name}`"),
                ),
            })?;
        for warning in &created.warnings {
            warn!(workload = %name, warning = %warning, "The engine warned about the container.");
        }
        let id = created.id;

        // Attach before the start, so that nothing the server writes first
        // is lost.
        let stdio = if spec.transport == Transport::Stdio {
            match self.open_attach(&id).await {
                Ok(streams) => Some(streams),
                Err(err) => {
                    self.discard(&name, &id).await;
                    return Err(error::other(
                        self.config.socket(),
                        err,
                        format!("attaching to the container of `{name}`"),
                    ));
                }
            }
        } else {
            None
        };
        if let Err(err) = self.docker.start_container(&id, None).await {
            self.discard(&name, &id).await;
            return Err(error::other(
                self.config.socket(),
                err,
                format!("starting the container of `{name}`"),
            ));
        }

        let inspect = self
            .docker
            .inspect_container(&id, None)
            .await
            .map_err(|err| {
                error::map(
                    self.config.socket(),
                    err,
                    &name,
                    format!("inspecting the container of `{name}`"),
                )
            })?;
        let info = container::info(name.clone(), &inspect, false);
        self.lock().insert(
            name.clone(),
            Instance {
                container_id: id.clone(),
                started_at: info.started_at,
                stdio,
                stop_requested: false,
                holder: Weak::new(),
            },
        );
        info!(
            workload = %name,
            container = %&id[..id.len().min(12)],
            image = %image,
            endpoint = ?info.http_endpoint,
            "Workload container started."
        );
        Ok(info)
    }

    #[tracing::instrument(name = "backend.stop", skip_all, fields(workload = %name, backend = KIND))]
    async fn stop(&self, name: &WorkloadName) -> Result<(), RuntimeError> {
        let found = self.find(name).await?;
        if !container::is_up(found.inspect.state.as_ref()) {
            return Ok(());
        }
        self.with_record(name, &found.id, |r| r.stop_requested = true);
        info!(workload = %name, "Stopping workload container.");
        let grace = i32::try_from(self.config.container.stop_grace_secs).unwrap_or(i32::MAX);
        let opts = StopContainerOptionsBuilder::new().t(grace).build();
        self.docker
            .stop_container(&found.id, Some(opts))
            .await
            .map_err(|err| {
                error::map(
                    self.config.socket(),
                    err,
                    name,
                    format!("stopping the container of `{name}`"),
                )
            })
    }

    #[tracing::instrument(name = "backend.remove", skip_all, fields(workload = %name, backend = KIND))]
    async fn remove(&self, name: &WorkloadName) -> Result<(), RuntimeError> {
        // A graceful stop first; the forced removal covers what is left.
        if let Err(err) = self.stop(name).await {
            if matches!(err, RuntimeError::NotFound(_)) {
                // No container, but maybe a network left behind.
                self.remove_network(name).await?;
            }
            return Err(err);
        }
        let found = self.find(name).await?;
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        self.docker
            .remove_container(&found.id, Some(opts))
            .await
            .map_err(|err| {
                error::map(
                    self.config.socket(),
                    err,
                    name,
                    format!("removing the container of `{name}`"),
                )
            })?;
        {
            let mut map = self.lock();
            if map.get(name).is_some_and(|r| r.container_id == found.id) {
                map.remove(name);
            }
        }
        self.remove_network(name).await?;
        info!(workload = %name, "Workload removed.");
        Ok(())
    }

    async fn inspect(&self, name: &WorkloadName) -> Result<WorkloadInfo, RuntimeError> {
        let found = self.find(name).await?;
        let requested = self.stop_requested(name, &found.id);
        Ok(container::info(name.clone(), &found.inspect, requested))
    }

    async fn list(&self) -> Result<Vec<WorkloadInfo>, RuntimeError> {
        let filters = HashMap::from([("label", vec![format!("{LABEL_MANAGED}=true")])]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|err| error::other(self.config.socket(), err, "listing containers"))?;
        let mut infos = Vec::with_capacity(containers.len());
        for summary in containers {
            if !is_ours(&summary.labels.as_ref(), self.config.instance.as_deref()) {
                continue; // another berth's
            }
            let cname = summary.names.as_ref().and_then(|n| n.first());
            let Some(name) = workload_of(&summary.labels.as_ref(), cname.map(String::as_str))
            else {
                warn!(container = ?cname, "A berth container names no valid workload; skipped.");
                continue;
            };
            let Some(id) = summary.id else { continue };
            match self.docker.inspect_container(&id, None).await {
                Ok(inspect) => {
                    let requested = self.stop_requested(&name, &id);
                    infos.push(container::info(name, &inspect, requested));
                }
                // Removed since it was listed.
                Err(err) if classify(&err) == Class::NotFound => {}
                Err(err) => {
                    return Err(error::other(
                        self.config.socket(),
                        err,
                        format!("inspecting container `{id}`"),
                    ));
                }
            }
        }
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(infos)
    }

    async fn logs(&self, name: &WorkloadName, tail: usize) -> Result<String, RuntimeError> {
        let found = self.find(name).await?;
        if tail == 0 {
            return Ok(String::new());
        }
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(false)
            .tail(&tail.to_string())
            .build();
        let mut chunks = self.docker.logs(&found.id, Some(opts));
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|err| {
                error::map(
                    self.config.socket(),
                    err,
                    name,
                    format!("reading the logs of `{name}`"),
                )
            })?;
            out.extend_from_slice(chunk.as_ref());
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    #[tracing::instrument(name = "backend.attach", skip_all, fields(workload = %name, backend = KIND))]
    async fn attach(&self, name: &WorkloadName) -> Result<StdioHandle, RuntimeError> {
        let found = self.find(name).await?;
        let state = found.inspect.state.as_ref();
        if !container::runtime_state(state, false).is_running() {
            return Err(RuntimeError::NotRunning(name.clone()));
        }
        let started_at = container::parse_time(state.and_then(|s| s.started_at.as_deref()));
        let (token, weak) = stdio::token();
        let held = self.with_record(name, &found.id, |r| {
            if r.holder.upgrade().is_some() {
                return Err(RuntimeError::AlreadyAttached(name.clone()));
            }
            r.holder = weak;
            // Streams of an earlier run of the container (restarted behind
            // berth's back) have ended.
            Ok(r.stdio.take().filter(|_| r.started_at == started_at))
        })?;
        let streams = match held {
            Some(streams) => streams,
            None => {
                debug!(workload = %name, "Opening a new attach to the running container.");
                self.open_attach(&found.id)
                    .await
                    .map_err(|err| match classify(&err) {
                        // It stopped since it was inspected.
                        Class::Conflict => RuntimeError::NotRunning(name.clone()),
                        _ => error::map(
                            self.config.socket(),
                            err,
                            name,
                            format!("attaching to the container of `{name}`"),
                        ),
                    })?
            }
        };
        Ok(stdio::handle(streams, token))
    }

    async fn wait(&self, name: &WorkloadName) -> Result<ExitStatus, RuntimeError> {
        let found = self.find(name).await?;
        let code = if container::is_up(found.inspect.state.as_ref()) {
            self.wait_not_running(name, &found.id).await?
        } else {
            None
        };
        let requested = self.stop_requested(name, &found.id);
        match self.docker.inspect_container(&found.id, None).await {
            Ok(inspect) => Ok(container::exit_status(inspect.state.as_ref(), requested)),
            // Removed right after it stopped: the wait's code is all there is.
            Err(err) if classify(&err) == Class::NotFound && code.is_some() => Ok(ExitStatus {
                code: code.and_then(|c| i32::try_from(c).ok()),
                signal: None,
                stopped_by_request: requested,
                at: OffsetDateTime::now_utc(),
            }),
            Err(err) => Err(error::map(
                self.config.socket(),
                err,
                name,
                format!("inspecting the container of `{name}`"),
            )),
        }
    }
}
