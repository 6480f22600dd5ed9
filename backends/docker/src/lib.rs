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

mod build;
mod config;
mod convert;
mod engine;
mod error;
mod stdio;

pub use config::{DEFAULT_SOCKET, DockerConfig, PullPolicy};
pub use error::ConnectError;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use berth_container::{Package, Scheme};
use berth_runtime_api::{
    Backend, BackendHealth, ExitStatus, NetworkAccess, Progress, RuntimeError, StdioHandle,
    Transport, WorkloadInfo, WorkloadName, WorkloadSpec,
};
use bollard::Docker;
use bollard::container::AttachContainerResults;
use bollard::errors::Error as EngineError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, Mount, MountType,
    NetworkCreateRequest, NetworkInspect, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use time::OffsetDateTime;
use tracing::{debug, info, warn};

use crate::convert::{container_name, network_name};
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
    memory: Option<i64>,
    nano_cpus: Option<i64>,
    instances: Mutex<BTreeMap<WorkloadName, Instance>>,
    /// Serializes package image builds, so that two workloads of one
    /// package build it once.
    building: tokio::sync::Mutex<()>,
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
        let invalid = |why: String| RuntimeError::backend("invalid docker configuration", why);
        let memory = config.memory().map_err(invalid)?;
        let nano_cpus = config.nano_cpus().map_err(invalid)?;
        config.check_base_images().map_err(invalid)?;
        // A stop answers only once the container has stopped, after up to
        // the grace period.
        let timeout = config
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
            memory,
            nano_cpus,
            instances: Mutex::new(BTreeMap::new()),
            building: tokio::sync::Mutex::new(()),
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
        if !convert::is_ours(labels, self.config.instance.as_deref()) {
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

    /// The image to run for `spec`: its own, pulled as the pull policy
    /// says, or for a package scheme the package's image, built unless a
    /// build of the same inputs exists.
    async fn prepare_image(&self, spec: &WorkloadSpec) -> Result<String, RuntimeError> {
        match Package::parse(&spec.image) {
            None => {
                self.ensure_image(&spec.image, None, &spec.progress).await?;
                Ok(spec.image.clone())
            }
            Some(Err(why)) => Err(RuntimeError::InvalidSpec(why.to_string())),
            Some(Ok(package)) => self.package_image(&package, &spec.progress).await,
        }
    }

    /// Makes sure the engine has `image`, pulling it as the pull policy
    /// says; `base_of` names the package scheme when it is a base image.
    async fn ensure_image(
        &self,
        image: &str,
        base_of: Option<Scheme>,
        progress: &Progress,
    ) -> Result<(), RuntimeError> {
        let present = match self.docker.inspect_image(image).await {
            Ok(_) => true,
            Err(err) if classify(&err) == Class::NotFound => false,
            Err(err) => {
                return Err(error::other(
                    self.config.socket(),
                    err,
                    format!("looking up image `{image}`"),
                ));
            }
        };
        match (self.config.pull, present) {
            (PullPolicy::IfNotPresent | PullPolicy::Never, true) => return Ok(()),
            (PullPolicy::Never, false) => {
                return Err(RuntimeError::InvalidSpec(match base_of {
                    None => format!(
                        "image `{image}` is not present locally and pulling is disabled (docker pull policy `never`)"
                    ),
                    Some(scheme) => format!(
                        "base image {image} for {scheme} is not available locally and cannot be pulled: pulling is disabled (docker pull policy `never`)"
                    ),
                }));
            }
            (PullPolicy::Always | PullPolicy::IfNotPresent, _) => {}
        }
        match self.pull(image, progress).await {
            Ok(()) => Ok(()),
            Err(PullError::Engine(err)) if classify(&err) == Class::Unreachable => {
                Err(error::unreachable(self.config.socket(), err))
            }
            Err(err) if present => {
                warn!(image, error = %err, "Pulling the image failed; using the local copy.");
                Ok(())
            }
            Err(err) => Err(RuntimeError::InvalidSpec(match base_of {
                None => {
                    format!("image `{image}` is not present locally and could not be pulled: {err}")
                }
                Some(scheme) => format!(
                    "base image {image} for {scheme} is not available locally and cannot be pulled: {err}"
                ),
            })),
        }
    }

    /// Pulls `image`, reporting the engine's progress.
    async fn pull(&self, image: &str, progress: &Progress) -> Result<(), PullError> {
        let reference = convert::pull_reference(image);
        info!(image = %reference, "Pulling image.");
        progress.report(&format!("pulling image {reference}"));
        let opts = CreateImageOptionsBuilder::new()
            .from_image(&reference)
            .build();
        let mut items = self.docker.create_image(Some(opts), None, None);
        let limit = Duration::from_secs(self.config.pull_timeout_secs);
        let pulled = tokio::time::timeout(limit, async {
            let mut last: Option<(Option<String>, Option<String>)> = None;
            while let Some(item) = items.next().await {
                let item = item.map_err(PullError::Engine)?;
                if let Some(message) = item.error_detail.and_then(|d| d.message) {
                    return Err(PullError::Refused(message));
                }
                let step = (item.id, item.status);
                if last.as_ref() != Some(&step) {
                    if let (Some(layer), Some(status)) = &step {
                        progress.report(&format!("{layer}: {status}"));
                    } else if let (None, Some(status)) = &step {
                        progress.report(status);
                    }
                    debug!(
                        image = %reference,
                        layer = step.0.as_deref().unwrap_or(""),
                        status = step.1.as_deref().unwrap_or(""),
                        "Pull progress."
                    );
                    last = Some(step);
                }
            }
            Ok(())
        })
        .await;
        match pulled {
            Ok(Ok(())) => {
                info!(image = %reference, "Image pulled.");
                progress.report(&format!("pulled image {reference}"));
                Ok(())
            }
            Ok(Err(err)) => Err(err),
            Err(_) => Err(PullError::Timeout(limit.as_secs())),
        }
    }

    /// The engine's description of the container for `spec`, running
    /// `image`.
    fn container_body(&self, spec: &WorkloadSpec, image: &str) -> ContainerCreateBody {
        let mut host = HostConfig {
            init: Some(true),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            cap_drop: Some(vec!["ALL".to_owned()]),
            memory: self.memory,
            nano_cpus: self.nano_cpus,
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            mounts: (!spec.mounts.is_empty()).then(|| {
                spec.mounts
                    .iter()
                    .map(|m| Mount {
                        target: Some(m.target.clone()),
                        source: Some(m.source.to_string_lossy().into_owned()),
                        typ: Some(MountType::BIND),
                        read_only: Some(m.read_only),
                        ..Mount::default()
                    })
                    .collect()
            }),
            network_mode: match spec.network {
                NetworkAccess::None => Some("none".to_owned()),
                NetworkAccess::Isolated => Some(network_name(&spec.name)),
                _ => None,
            },
            ..HostConfig::default()
        };
        let mut exposed = None;
        if let (true, Some(port)) = (spec.transport != Transport::Stdio, spec.target_port) {
            let key = format!("{port}/tcp");
            host.port_bindings = Some(HashMap::from([(
                key.clone(),
                Some(vec![PortBinding {
                    host_ip: Some(convert::PUBLISH_IP.to_string()),
                    // Empty: the engine picks a free port.
                    host_port: Some(String::new()),
                }]),
            )]));
            exposed = Some(vec![key]);
        }
        ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(convert::container_labels(
                &spec.name,
                &spec.labels,
                self.config.instance.as_deref(),
            )),
            open_stdin: Some(true),
            stdin_once: Some(false),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            exposed_ports: exposed,
            host_config: Some(host),
            ..ContainerCreateBody::default()
        }
    }

    /// The isolated network of `name`, created if it does not exist.
    async fn ensure_network(&self, name: &WorkloadName) -> Result<NetworkInspect, RuntimeError> {
        let net = network_name(name);
        match self.docker.inspect_network(&net, None).await {
            Ok(found) => return Ok(found),
            Err(err) if classify(&err) == Class::NotFound => {}
            Err(err) => {
                return Err(error::map(
                    self.config.socket(),
                    err,
                    name,
                    format!("inspecting network `{net}`"),
                ));
            }
        }
        let labels = HashMap::from([
            (convert::LABEL_MANAGED.to_owned(), "true".to_owned()),
            (convert::LABEL_WORKLOAD.to_owned(), name.to_string()),
        ]);
        let request = NetworkCreateRequest {
            name: net.clone(),
            driver: Some("bridge".to_owned()),
            internal: Some(true),
            labels: Some(labels),
            ..NetworkCreateRequest::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => info!(workload = %name, network = %net, "Isolated network created."),
            // Created meanwhile.
            Err(err) if classify(&err) == Class::Conflict => {}
            Err(err) => {
                return Err(error::map(
                    self.config.socket(),
                    err,
                    name,
                    format!("creating network `{net}`"),
                ));
            }
        }
        self.docker
            .inspect_network(&net, None)
            .await
            .map_err(|err| {
                error::map(
                    self.config.socket(),
                    err,
                    name,
                    format!("inspecting network `{net}`"),
                )
            })
    }

    /// Removes the isolated network of `name`, if there is one.
    async fn remove_network(&self, name: &WorkloadName) -> Result<(), RuntimeError> {
        let net = network_name(name);
        match self.docker.remove_network(&net).await {
            Ok(()) => {
                info!(workload = %name, network = %net, "Isolated network removed.");
                Ok(())
            }
            Err(err) if classify(&err) == Class::NotFound => Ok(()),
            Err(err) => Err(error::map(
                self.config.socket(),
                err,
                name,
                format!("removing network `{net}`"),
            )),
        }
    }

    /// Opens an attach to container `id`: stdin and stdout, streaming from
    /// now on. stderr is left to the engine log, so that a server logging
    /// while nobody reads the attach is never blocked by it.
    async fn open_attach(&self, id: &str) -> Result<AttachContainerResults, EngineError> {
        let opts = AttachContainerOptionsBuilder::new()
            .stream(true)
            .logs(false)
            .stdin(true)
            .stdout(true)
            .stderr(false)
            .build();
        self.docker.attach_container(id, Some(opts)).await
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

/// What [`Backend::check`] refuses: no image, an invalid `npx://` or
/// `uvx://` spec, other schemes (`exec://`, `go://`), an HTTP transport
/// without a target port.
fn check_spec(spec: &WorkloadSpec) -> Result<(), RuntimeError> {
    let image = spec.image.trim();
    if image.is_empty() {
        return Err(RuntimeError::InvalidSpec(
            "the docker backend needs a container image".to_owned(),
        ));
    }
    match Package::parse(image) {
        Some(Ok(_)) => {}
        Some(Err(why)) => return Err(RuntimeError::InvalidSpec(why.to_string())),
        None => {
            if let Some(scheme) = convert::package_scheme(image) {
                return Err(RuntimeError::InvalidSpec(format!(
                    "`{scheme}` images cannot run in containers; give a container image, an npx:// or uvx:// package, or run the workload on the process backend"
                )));
            }
        }
    }
    if spec.transport != Transport::Stdio && spec.target_port.is_none() {
        return Err(RuntimeError::InvalidSpec(format!(
            "the {} transport needs a target port on the docker backend",
            spec.transport
        )));
    }
    match spec.network {
        NetworkAccess::Full => {}
        NetworkAccess::None | NetworkAccess::Isolated if spec.transport != Transport::Stdio => {
            return Err(RuntimeError::InvalidSpec(format!(
                "a {} workload with a restricted network cannot be reached by berth's proxy on the docker backend yet; use the stdio transport or the `network` profile",
                spec.transport
            )));
        }
        NetworkAccess::None | NetworkAccess::Isolated => {}
        other => {
            return Err(RuntimeError::InvalidSpec(format!(
                "the docker backend does not know network access {other:?}"
            )));
        }
    }
    if let Some(m) = spec.mounts.iter().find(|m| m.source.to_str().is_none()) {
        return Err(RuntimeError::InvalidSpec(format!(
            "mount source {:?} is not UTF-8, which the engine API cannot carry",
            m.source
        )));
    }
    Ok(())
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
enum PullError {
    #[error(transparent)]
    Engine(EngineError),
    #[error("{0}")]
    Refused(String),
    #[error("the pull took longer than {0} s")]
    Timeout(u64),
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
        check_spec(spec)
    }

    async fn isolated_network(&self, name: &WorkloadName) -> Result<IpAddr, RuntimeError> {
        let net = self.ensure_network(name).await?;
        net.ipam
            .and_then(|ipam| ipam.config)
            .into_iter()
            .flatten()
            .filter_map(|c| c.gateway?.parse::<IpAddr>().ok())
            .min_by_key(IpAddr::is_ipv6)
            .ok_or_else(|| {
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
            if !convert::is_managed(labels) {
                return Err(RuntimeError::backend(
                    format!("deploying `{name}`"),
                    format!(
                        "the container name `{cname}` is taken by a container berth does not manage"
                    ),
                ));
            }
            if !convert::is_ours(labels, self.config.instance.as_deref()) {
                return Err(RuntimeError::InvalidSpec(format!(
                    "the container name `{cname}` is taken by another berth's workload on this engine; \
                     choose another workload name"
                )));
            }
            if convert::is_up(existing.state.as_ref()) {
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
            .create_container(Some(opts), self.container_body(&spec, &image))
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
        let info = convert::info(name.clone(), &inspect, false);
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
        if !convert::is_up(found.inspect.state.as_ref()) {
            return Ok(());
        }
        self.with_record(name, &found.id, |r| r.stop_requested = true);
        info!(workload = %name, "Stopping workload container.");
        let grace = i32::try_from(self.config.stop_grace_secs).unwrap_or(i32::MAX);
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
        Ok(convert::info(name.clone(), &found.inspect, requested))
    }

    async fn list(&self) -> Result<Vec<WorkloadInfo>, RuntimeError> {
        let filters = HashMap::from([("label", vec![format!("{}=true", convert::LABEL_MANAGED)])]);
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
            if !convert::is_ours(summary.labels.as_ref(), self.config.instance.as_deref()) {
                continue; // another berth's
            }
            let container = summary.names.as_ref().and_then(|n| n.first());
            let Some(name) =
                convert::workload_of(summary.labels.as_ref(), container.map(String::as_str))
            else {
                warn!(container = ?container, "A berth container names no valid workload; skipped.");
                continue;
            };
            let Some(id) = summary.id else { continue };
            match self.docker.inspect_container(&id, None).await {
                Ok(inspect) => {
                    let requested = self.stop_requested(&name, &id);
                    infos.push(convert::info(name, &inspect, requested));
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
        if !convert::runtime_state(state, false).is_running() {
            return Err(RuntimeError::NotRunning(name.clone()));
        }
        let started_at = convert::parse_time(state.and_then(|s| s.started_at.as_deref()));
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
        let code = if convert::is_up(found.inspect.state.as_ref()) {
            self.wait_not_running(name, &found.id).await?
        } else {
            None
        };
        let requested = self.stop_requested(name, &found.id);
        match self.docker.inspect_container(&found.id, None).await {
            Ok(inspect) => Ok(convert::exit_status(inspect.state.as_ref(), requested)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_refuses_what_a_container_cannot_run() {
        let name = WorkloadName::parse("w").expect("name");
        let refuse = |spec: WorkloadSpec| -> String {
            match check_spec(&spec) {
                Err(RuntimeError::InvalidSpec(why)) => why,
                other => panic!("{spec:?} accepted: {other:?}"),
            }
        };
        assert!(refuse(WorkloadSpec::new(name.clone(), " ")).contains("needs a container image"));
        for image in [
            "npx://@modelcontextprotocol/server-everything@2.0.0",
            "uvx://mcp-server-time==2025.1.0",
        ] {
            assert!(
                check_spec(&WorkloadSpec::new(name.clone(), image)).is_ok(),
                "{image}"
            );
        }
        let why = refuse(WorkloadSpec::new(name.clone(), "npx://pkg@^1.0"));
        assert!(why.contains("invalid version"), "{why}");
        let why = refuse(WorkloadSpec::new(name.clone(), "uvx://pkg;id"));
        assert!(why.contains("invalid Python package"), "{why}");
        let why = refuse(WorkloadSpec::new(name.clone(), "exec:///bin/cat"));
        assert!(
            why.contains("`exec://`") && why.contains("process backend"),
            "{why}"
        );
        assert!(refuse(WorkloadSpec::new(name.clone(), "go://x.y/z")).contains("`go://`"));
        let mut http = WorkloadSpec::new(name.clone(), "ghcr.io/x/y:1");
        http.transport = Transport::StreamableHttp;
        assert!(refuse(http.clone()).contains("target port"));
        http.target_port = Some(8080);
        assert!(check_spec(&http).is_ok());
        assert!(check_spec(&WorkloadSpec::new(name, "alpine")).is_ok());
    }
}
