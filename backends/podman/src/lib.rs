//! berth's Podman backend: runs MCP servers as Podman containers.
//!
//! The backend talks to Podman's own (libpod) API through podman-api, not to
//! its Docker-compatible one. Workload `foo` runs in container `berth-foo`,
//! labelled with the spec's labels plus `berth.managed=true` and
//! `berth.workload=foo` (and `berth.instance`, see
//! [`PodmanConfig::instance`]); [`list`](Backend::list) reports every
//! container with `berth.managed=true` that is this berth's, in any state.
//!
//! Containers run with an init process, no new privileges, every capability
//! dropped and the configured memory and CPU limits. HTTP-transport servers
//! have their target port published on 127.0.0.1 only, at a port Podman
//! picks, reported as [`WorkloadInfo::http_endpoint`].
//!
//! **stdio servers run behind berth's relay** (`relay/main.rs`, see
//! [`stdio`]): conmon closes a container's stdin as soon as an attach
//! connection to it ends, so a server attached through Podman's API would
//! read end-of-file when berth restarts. Instead the container's entrypoint
//! is the relay, mounted read-only from [`PodmanConfig::stdio_dir`], which
//! runs the image's command line (its entrypoint, then the workload's
//! arguments or the image's command) with piped stdin and stdout and serves
//! them on a Unix socket in the workload's directory there, mounted at
//! `/.berth/io`. [`attach`](Backend::attach) connects to that socket, one
//! holder at a time ([`RuntimeError::AlreadyAttached`] meanwhile); a berth
//! that restarted (or a backend that reconnected) connects again and the
//! server never notices. The server's stderr is the container's log. The
//! relay needs no network, so it works with every network mode, and it does
//! not go through the Podman service: a stdio server keeps answering while
//! that service is down.
//!
//! Mounts are bind mounts; `NetworkAccess::None` is network namespace mode
//! `none`; `NetworkAccess::Isolated` puts the container alone on the
//! internal network `berth-egress-<name>` (no route out),
//! created by [`Backend::isolated_network`] and removed with the workload.
//! Podman configures the host's address on that network only while a
//! container runs on it. Restricted networks take stdio workloads only for
//! now: a published port is not reachable on them.
//!
//! **Secrets.** A spec's `secret_env` reaches the server through Podman's
//! own secrets, so that `podman inspect` shows no value: each value is a
//! Podman secret `berth-env-<hash of the workload>-<VARIABLE>`, mounted into the
//! container, and the relay, the entrypoint of every container with
//! secrets (`--exec` for an HTTP server: it sets the variables, then
//! becomes the server), reads the files into the server's environment,
//! where a secret wins over a plain variable of its name. A deploy
//! replaces the workload's secrets, a failed deploy and
//! [`remove`](Backend::remove) delete them. See `secrets.rs` (why not
//! Podman's `type=env`: Podman 4.3 shows those values in `inspect`).
//!
//! Containers outlive berth: [`shutdown`](Backend::shutdown) leaves them
//! running for the next berth to find.
//!
//! **Files** (the same set in the Docker backend, but for `secrets.rs`): `config.rs` (the
//! settings), `engine.rs` (reaching the engine, and the init it gives
//! containers), `error.rs` (engine errors → [`RuntimeError`]),
//! `container.rs` (the create body, and reading what the engine reports),
//! `image.rs` (pulls and package images), `network.rs` (isolated
//! networks), `secrets.rs` (secret variables as Podman secrets), `stdio.rs`
//! (berth's stdio relay). What the container engines
//! share — names and labels, spec checks, the shared settings and limits,
//! the package-image build flow — is written once in `berth-container`.
//!
//! ```no_run
//! use berth_backend_podman::{PodmanBackend, PodmanConfig};
//! use berth_runtime_api::{Backend, WorkloadName, WorkloadSpec};
//!
//! # async fn example() -> Result<(), berth_runtime_api::RuntimeError> {
//! let config = PodmanConfig {
//!     socket: Some("unix:///run/podman/podman.sock".into()),
//!     ..PodmanConfig::default()
//! };
//! let backend = PodmanBackend::connect(config).await?;
//! let name = WorkloadName::parse("fetch").unwrap();
//! backend.deploy(WorkloadSpec::new(name.clone(), "ghcr.io/example/fetch:1.0")).await?;
//! let mut pipes = backend.attach(&name).await?;
//! # let _ = &mut pipes;
//! backend.remove(&name).await?;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod config;
mod container;
mod engine;
mod error;
mod image;
mod network;
mod secrets;
mod stdio;

pub use config::{DEFAULT_SOCKET, PodmanConfig};

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use berth_container::labels::{LABEL_MANAGED, container_name, network_name, workload_of};
use berth_container::{Limits, PackageImages, check_spec};
use berth_runtime_api::{
    Backend, BackendHealth, ExitStatus, LogTail, NetworkAccess, RuntimeError, RuntimeState,
    StdioHandle, Transport, WorkloadInfo, WorkloadName, WorkloadSpec,
};
use futures::TryStreamExt;
use podman_api::Podman;
use podman_api::conn::TtyChunk;
use podman_api::opts::{
    ContainerDeleteOpts, ContainerListFilter, ContainerListOpts, ContainerLogsOpts,
    ContainerWaitOpts,
};
use tracing::{info, warn};

use crate::container::{Container, CreateBody, Created};
use crate::engine::{Endpoint, Libpod, init_path};
use crate::error::{ApiFailure, PodmanError, api_error, unavailable};
use crate::secrets::has_stored_secrets;
use crate::stdio::{Relays, no_relay_for_secrets, no_stdio_dir};

const KIND: &str = "podman";

/// How long [`PodmanBackend::connect`] and [`Backend::health`] wait for
/// Podman to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times [`Backend::wait`] waits again for an instance that Podman
/// reports as exited but that runs once more by the time berth looks.
const WAIT_ROUNDS: usize = 5;

/// How long [`Backend::attach`] waits for a started container's stdio relay
/// to listen.
const RELAY_LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs workloads as Podman containers; see the crate docs.
pub struct PodmanBackend {
    config: PodmanConfig,
    limits: Limits,
    /// The init binary passed to Podman, when its default is missing.
    init_path: Option<String>,
    podman: Podman,
    libpod: Libpod,
    state: Mutex<State>,
    /// The stdio relay of stdio containers; `None` without
    /// [`PodmanConfig::stdio_dir`].
    relays: Option<Relays>,
    packages: PackageImages,
}

/// What berth remembers of its containers between calls.
#[derive(Default)]
struct State {
    /// Ids of the containers berth asked to stop.
    stopped: HashSet<String>,
}

impl PodmanBackend {
    /// Connects to Podman's API at [`PodmanConfig::socket`] and checks that it
    /// answers.
    ///
    /// Fails within a few seconds with [`RuntimeError::Unavailable`], whose
    /// source names the socket, when nothing answers there.
    pub async fn connect(config: PodmanConfig) -> Result<Self, RuntimeError> {
        let socket = config.socket().to_owned();
        let limits = config
            .container
            .check()
            .map_err(|why| RuntimeError::backend("invalid podman configuration", why))?;
        let endpoint = Endpoint::parse(&socket).map_err(unavailable)?;
        let relays = match &config.stdio_dir {
            None => None,
            Some(dir) => Some(Relays::new(dir).map_err(|err| {
                RuntimeError::backend(
                    format!("installing the stdio relay in {}", dir.display()),
                    err,
                )
            })?),
        };
        let init_path = init_path(&config, &endpoint)?;
        let backend = Self {
            init_path,
            podman: endpoint.podman().map_err(unavailable)?,
            libpod: Libpod::new(endpoint),
            config,
            limits,
            state: Mutex::new(State::default()),
            relays,
            packages: PackageImages::new(),
        };
        let version = backend.version().await?;
        info!(socket = %socket, version = %version, "Connected to Podman.");
        Ok(backend)
    }

    fn socket(&self) -> &str {
        self.config.socket()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Podman's version, within [`ANSWER_TIMEOUT`].
    async fn version(&self) -> Result<String, RuntimeError> {
        let socket = self.socket().to_owned();
        match tokio::time::timeout(ANSWER_TIMEOUT, self.podman.version()).await {
            Ok(Ok(v)) => Ok(v.version.unwrap_or_else(|| "unknown".to_owned())),
            Ok(Err(err)) => Err(unavailable(PodmanError::Unreachable {
                socket,
                source: Box::new(err),
            })),
            Err(_) => Err(unavailable(PodmanError::Timeout {
                socket,
                secs: ANSWER_TIMEOUT.as_secs(),
            })),
        }
    }

    /// Maps a failed call about `name`; see [`api_error`].
    fn fail<E: ApiFailure>(&self, name: &WorkloadName, doing: &str, err: E) -> RuntimeError {
        api_error(self.socket(), name, format!("{doing} `{name}`"), err)
    }

    /// The container of `name`, if there is one and it is this berth's.
    async fn find(&self, name: &WorkloadName) -> Result<Option<Container>, RuntimeError> {
        Ok(self
            .find_id(name, &container_name(name))
            .await?
            .filter(|c| self.owns(c)))
    }

    /// Whether `c` belongs to this berth instance.
    fn owns(&self, c: &Container) -> bool {
        c.is_owned_by(self.config.instance.as_deref())
    }

    /// The container named or numbered `id`, reported as workload `name`;
    /// containers berth did not create count as absent.
    async fn find_id(
        &self,
        name: &WorkloadName,
        id: &str,
    ) -> Result<Option<Container>, RuntimeError> {
        match self
            .libpod
            .get::<Container>(&format!("/libpod/containers/{id}/json"))
            .await
        {
            Ok(c) => Ok(c.is_managed().then_some(c)),
            // Also when it was removed while the inspect ran (a `list`
            // racing a delete).
            Err(err) if err.is_no_such_container() => Ok(None),
            Err(err) => Err(self.fail(name, "inspecting the container of", err)),
        }
    }

    /// The container of `name`, or [`RuntimeError::NotFound`].
    async fn get(&self, name: &WorkloadName) -> Result<Container, RuntimeError> {
        self.find(name)
            .await?
            .ok_or_else(|| RuntimeError::NotFound(name.clone()))
    }

    fn stopped_by_request(&self, id: &str) -> bool {
        self.lock().stopped.contains(id)
    }

    fn info(&self, name: WorkloadName, c: &Container) -> WorkloadInfo {
        c.info(name, self.stopped_by_request(&c.id))
    }

    /// Drops everything berth remembers of container `id`.
    fn forget(&self, id: &str) {
        self.lock().stopped.remove(id);
    }

    /// Force-removes container `id` of `name`; `Ok(false)` when it was gone.
    async fn delete(&self, name: &WorkloadName, id: &str) -> Result<bool, RuntimeError> {
        let opts = ContainerDeleteOpts::builder()
            .force(true)
            .volumes(true)
            .build();
        let result = self.podman.containers().get(id).delete(&opts).await;
        self.forget(id);
        match result {
            Ok(()) => Ok(true),
            Err(err) if err.status() == Some(404) => Ok(false),
            Err(err) => Err(self.fail(name, "removing the container of", err)),
        }
    }

    /// Starts the created container `id` and reports it. Failures leave
    /// the container for the caller to remove.
    async fn start(&self, spec: &WorkloadSpec, id: &str) -> Result<WorkloadInfo, RuntimeError> {
        let name = &spec.name;
        self.podman
            .containers()
            .get(id)
            .start(None)
            .await
            .map_err(|err| self.fail(name, "starting the container of", err))?;
        let c = self
            .find_id(name, id)
            .await?
            .ok_or_else(|| RuntimeError::NotFound(name.clone()))?;
        Ok(self.info(name.clone(), &c))
    }
}

impl fmt::Debug for PodmanBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodmanBackend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Backend for PodmanBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn health(&self) -> Result<BackendHealth, RuntimeError> {
        Ok(BackendHealth::new(KIND, self.version().await?))
    }

    fn check(&self, spec: &WorkloadSpec) -> Result<(), RuntimeError> {
        check_spec(spec, KIND)?;
        if spec.transport == Transport::Stdio && self.relays.is_none() {
            return Err(no_stdio_dir());
        }
        if has_stored_secrets(spec) && self.relays.is_none() {
            return Err(no_relay_for_secrets());
        }
        Ok(())
    }

    async fn isolated_network(&self, name: &WorkloadName) -> Result<IpAddr, RuntimeError> {
        self.ensure_network(name).await?.gateway().ok_or_else(|| {
            RuntimeError::backend(
                format!("preparing the isolated network of `{name}`"),
                format!("network `{}` has no gateway address", network_name(name)),
            )
        })
    }

    async fn deploy(&self, spec: WorkloadSpec) -> Result<WorkloadInfo, RuntimeError> {
        self.check(&spec)?;
        let name = spec.name.clone();
        if let Some(other) = self.find_id(&name, &container_name(&name)).await?
            && !self.owns(&other)
        {
            return Err(RuntimeError::InvalidSpec(format!(
                "the container name `{}` is taken by another berth's workload on this engine; \
                 choose another workload name",
                container_name(&name)
            )));
        }
        if let Some(old) = self.find(&name).await? {
            if old.is_live() {
                return Err(RuntimeError::AlreadyExists(name));
            }
            info!(workload = %name, state = %old.state.status, "Replacing the stopped container.");
            self.delete(&name, &old.id).await?;
        }
        let image = self.prepare_image(&spec).await?;
        let mut spec = spec;
        spec.image = image;
        if spec.network == NetworkAccess::Isolated {
            self.ensure_network(&name).await?;
        } else if let Err(err) = self.remove_network(&name).await {
            // A network left from an earlier configuration; harmless.
            warn!(workload = %name, error = %err, "Could not remove the unused isolated network.");
        }

        let stdio = spec.transport == Transport::Stdio;
        let relay = if stdio || has_stored_secrets(&spec) {
            Some(self.relay_setup(&spec, stdio).await?)
        } else {
            None
        };
        // In place of the secrets of an earlier deploy (or a crashed berth),
        // also when this spec has none.
        let secrets = self.store_secrets(&spec).await?;
        let body = CreateBody::new(
            &spec,
            &self.config,
            &self.limits,
            self.init_path.as_deref(),
            relay,
            &secrets,
        );
        let id = match self
            .libpod
            .post::<_, Created>("/libpod/containers/create", &body)
            .await
        {
            Ok(created) => created.id,
            Err(err) => {
                self.discard_secrets(&name).await;
                if err.is_name_conflict() {
                    return Err(RuntimeError::AlreadyExists(name));
                }
                return Err(self.fail(&name, "creating the container of", err));
            }
        };
        match self.start(&spec, &id).await {
            Ok(info) => {
                info!(workload = %name, image = %spec.image, "Container started.");
                Ok(info)
            }
            Err(err) => {
                if let Err(cleanup) = self.delete(&name, &id).await {
                    warn!(workload = %name, error = %cleanup, "Could not remove the container that failed to start.");
                }
                self.discard_secrets(&name).await;
                Err(err)
            }
        }
    }

    async fn stop(&self, name: &WorkloadName) -> Result<(), RuntimeError> {
        let c = self.get(name).await?;
        if c.is_live() {
            self.lock().stopped.insert(c.id.clone());
            // The grace period is the container's own stop timeout, set at
            // create: podman-api's `timeout` option does not reach libpod.
            match self
                .podman
                .containers()
                .get(&c.id)
                .stop(&Default::default())
                .await
            {
                Ok(()) => {}
                // 304: it stopped meanwhile.
                Err(err) if err.status() == Some(304) => {}
                Err(err) => return Err(self.fail(name, "stopping the container of", err)),
            }
            info!(workload = %name, "Container stopped.");
        }
        Ok(())
    }

    async fn remove(&self, name: &WorkloadName) -> Result<(), RuntimeError> {
        let Some(c) = self.find(name).await? else {
            // No container, but maybe a network or secrets left behind.
            self.remove_network(name).await?;
            self.remove_secrets(name).await?;
            return Err(RuntimeError::NotFound(name.clone()));
        };
        if c.is_live() {
            self.lock().stopped.insert(c.id.clone());
        }
        if !self.delete(name, &c.id).await? {
            return Err(RuntimeError::NotFound(name.clone()));
        }
        self.remove_network(name).await?;
        self.remove_secrets(name).await?;
        if let Some(relays) = &self.relays
            && let Err(err) = relays.remove(name)
        {
            warn!(workload = %name, error = %err, "Could not remove the stdio relay's directory.");
        }
        info!(workload = %name, "Container removed.");
        Ok(())
    }

    async fn inspect(&self, name: &WorkloadName) -> Result<WorkloadInfo, RuntimeError> {
        let c = self.get(name).await?;
        Ok(self.info(name.clone(), &c))
    }

    async fn list(&self) -> Result<Vec<WorkloadInfo>, RuntimeError> {
        let opts = ContainerListOpts::builder()
            .all(true)
            .filter([ContainerListFilter::LabelKeyVal(
                LABEL_MANAGED.to_owned(),
                "true".to_owned(),
            )])
            .build();
        let listed = self.podman.containers().list(&opts).await.map_err(|err| {
            if err.is_unreachable() {
                unavailable(PodmanError::Unreachable {
                    socket: self.socket().to_owned(),
                    source: Box::new(err),
                })
            } else {
                RuntimeError::backend("listing berth's containers", err)
            }
        })?;
        // The list answer has start times in whole seconds only; inspect
        // each container so that `list` and `inspect` agree.
        let inspected = futures::future::join_all(listed.iter().filter_map(|l| {
            let id = l.id.clone()?;
            let listed_as = l.names.as_ref().and_then(|n| n.first());
            let name = workload_of(&l.labels.as_ref(), listed_as.map(String::as_str))?;
            Some(async move { (self.find_id(&name, &id).await, name) })
        }))
        .await;
        let mut infos = Vec::with_capacity(inspected.len());
        for (found, name) in inspected {
            // Gone since it was listed, or another berth's: not reported.
            if let Some(c) = found?.filter(|c| self.owns(c)) {
                infos.push(self.info(c.workload().unwrap_or(name), &c));
            }
        }
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(infos)
    }

    async fn logs(&self, name: &WorkloadName, tail: usize) -> Result<String, RuntimeError> {
        let c = self.get(name).await?;
        if tail == 0 {
            return Ok(String::new());
        }
        // No `tail` for Podman: libpod 4.3 counts the partial-line records of
        // its k8s-file log as lines and then drops them, losing every line a
        // server wrote in pieces. The whole log is read and cut here.
        let opts = ContainerLogsOpts::builder()
            .stdout(true)
            .stderr(true)
            .build();
        let container = self.podman.containers().get(&c.id);
        let mut kept = LogTail::new(tail);
        let mut chunks = container.logs(&opts);
        while let Some(chunk) = chunks
            .try_next()
            .await
            .map_err(|err| self.fail(name, "reading the logs of", err))?
        {
            if let TtyChunk::StdOut(data) | TtyChunk::StdErr(data) = chunk {
                kept.push(&data);
            }
        }
        Ok(kept.into_string())
    }

    async fn attach(&self, name: &WorkloadName) -> Result<StdioHandle, RuntimeError> {
        let mut c = self.get(name).await?;
        let relays = self.relays.as_ref().ok_or_else(no_stdio_dir)?;
        if !c.has_relay() {
            return Err(RuntimeError::backend(
                format!("attaching to the container of `{name}`"),
                "the container was not started with berth's stdio relay (an HTTP workload, or deployed by an older berth); deploy it again",
            ));
        }
        // The relay listens a moment after the container starts.
        let deadline = tokio::time::Instant::now() + RELAY_LISTEN_TIMEOUT;
        loop {
            if !c.runtime_state(false).is_running() {
                return Err(RuntimeError::NotRunning(name.clone()));
            }
            match relays.connect(name, &c.id).await {
                Ok(Some(pipes)) => return Ok(pipes),
                Ok(None) if tokio::time::Instant::now() < deadline => {}
                Ok(None) => {
                    return Err(RuntimeError::backend(
                        format!("attaching to the container of `{name}`"),
                        format!(
                            "its stdio relay did not listen within {} s",
                            RELAY_LISTEN_TIMEOUT.as_secs()
                        ),
                    ));
                }
                Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
                    return Err(RuntimeError::AlreadyAttached(name.clone()));
                }
                Err(err) => {
                    return Err(RuntimeError::backend(
                        format!("connecting to the stdio relay of `{name}`"),
                        err,
                    ));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            c = self.get(name).await?;
        }
    }

    async fn wait(&self, name: &WorkloadName) -> Result<ExitStatus, RuntimeError> {
        let mut current = self.get(name).await?;
        for _ in 0..WAIT_ROUNDS {
            if let RuntimeState::Exited(exit) =
                current.runtime_state(self.stopped_by_request(&current.id))
            {
                return Ok(exit);
            }
            // No condition: libpod waits until the container has stopped.
            let opts = ContainerWaitOpts::builder().interval("250ms").build();
            let waited = self.podman.containers().get(&current.id).wait(&opts).await;
            // Removed meanwhile: NotFound rather than Podman's error.
            let Some(now) = self.find_id(name, &current.id).await? else {
                return Err(RuntimeError::NotFound(name.clone()));
            };
            waited.map_err(|err| self.fail(name, "waiting for the container of", err))?;
            current = now;
        }
        Err(RuntimeError::backend(
            format!("waiting for the container of `{name}`"),
            format!(
                "Podman reported it exited, but it is `{}`",
                current.state.status
            ),
        ))
    }
}
