//! The runtime contract of berth.
//!
//! A *backend* runs workloads (MCP servers) on one kind of runtime: native
//! processes, Docker or Podman. Everything above the runtime layer talks to a
//! backend only through the [`Backend`] trait and the plain data types of this
//! crate, so adding a runtime means adding one crate that implements it and
//! passes [`conformance::run_all`](crate#conformance).
//!
//! This crate depends on no HTTP stack, container SDK or wasm runtime.
//!
//! ```
//! use berth_runtime_api::{Transport, WorkloadName, WorkloadSpec};
//!
//! let name = WorkloadName::parse("fetch").unwrap();
//! let mut spec = WorkloadSpec::new(name, "exec:///bin/cat");
//! spec.transport = Transport::Stdio;
//! spec.env.insert("LOG_LEVEL".into(), "debug".into());
//! assert_eq!(spec.name.as_str(), "fetch");
//! assert!(WorkloadName::parse("../etc").is_err());
//! ```

mod error;
mod logs;
mod name;
mod spec;
mod status;
mod stdio;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "fake")]
pub mod fake;

pub use error::{BoxError, RuntimeError};
pub use logs::{LogTail, last_lines};
pub use name::{InvalidName, MAX_NAME_LEN, WorkloadName};
pub use spec::{
    Mount, NetworkAccess, Progress, SecretValue, Transport, UnknownTransport, WorkloadSpec,
};
pub use status::{BackendHealth, ExitStatus, RuntimeState, WorkloadInfo};
pub use stdio::StdioHandle;

use std::net::IpAddr;

use async_trait::async_trait;

/// A runtime that runs workloads: the contract every backend implements.
///
/// Names are the identity of a workload inside a backend: at most one
/// *instance* exists per name. An instance is created and started by
/// [`deploy`](Backend::deploy); it runs until it exits by itself or is stopped,
/// and it is forgotten by [`remove`](Backend::remove).
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short lower-case name for the runtime, e.g. `process` or `docker`.
    fn kind(&self) -> &'static str;

    /// Checks that the runtime answers, and reports its version.
    async fn health(&self) -> Result<BackendHealth, RuntimeError>;

    /// Checks, without running anything, that this backend can run `spec`;
    /// an unsupported image scheme or a refused command is
    /// [`RuntimeError::InvalidSpec`]. Called before a workload is accepted.
    fn check(&self, spec: &WorkloadSpec) -> Result<(), RuntimeError> {
        let _ = spec;
        Ok(())
    }

    /// Called once when berth shuts down. Backends whose instances cannot
    /// outlive berth (native processes) stop them here; the others keep them
    /// running so that berth re-attaches after its restart.
    async fn shutdown(&self) {}

    /// Makes sure the isolated network of workload `name` exists (see
    /// [`NetworkAccess::Isolated`]) and returns the host's address on it,
    /// the only address an instance on that network can reach.
    ///
    /// Idempotent: the same network and address until [`remove`](Backend::remove)
    /// deletes the network with the instance. The address may not be
    /// configured on the host until an instance runs on the network, so a
    /// listener for it must bind without that (`IP_FREEBIND`). Backends
    /// that cannot isolate a network refuse with
    /// [`RuntimeError::InvalidSpec`], as the default does.
    async fn isolated_network(&self, name: &WorkloadName) -> Result<IpAddr, RuntimeError> {
        let _ = name;
        Err(RuntimeError::InvalidSpec(format!(
            "the {} runtime cannot restrict a workload's network to an allowlist",
            self.kind()
        )))
    }

    /// Creates and starts an instance of `spec`.
    ///
    /// An existing instance of the same name that is no longer running is
    /// replaced; a running one is [`RuntimeError::AlreadyExists`].
    async fn deploy(&self, spec: WorkloadSpec) -> Result<WorkloadInfo, RuntimeError>;

    /// Stops the instance gracefully (then forcibly after the backend's grace
    /// period) and waits until it has stopped. Stopping an instance that is
    /// not running succeeds and changes nothing.
    async fn stop(&self, name: &WorkloadName) -> Result<(), RuntimeError>;

    /// Stops the instance if it runs and forgets it, with its logs.
    async fn remove(&self, name: &WorkloadName) -> Result<(), RuntimeError>;

    /// Reports the instance's current state.
    async fn inspect(&self, name: &WorkloadName) -> Result<WorkloadInfo, RuntimeError>;

    /// Reports every instance this backend manages, in name order.
    async fn list(&self) -> Result<Vec<WorkloadInfo>, RuntimeError>;

    /// Returns at most the last `tail` lines the instance wrote to its log,
    /// counted as [`last_lines`] counts them.
    async fn logs(&self, name: &WorkloadName, tail: usize) -> Result<String, RuntimeError>;

    /// Takes the stdin/stdout pipes of a running instance (stdio transport).
    ///
    /// Each running instance hands out its pipes to one holder at a time.
    async fn attach(&self, name: &WorkloadName) -> Result<StdioHandle, RuntimeError>;

    /// Resolves when the current instance has exited (at once if it already
    /// has), with how it exited.
    async fn wait(&self, name: &WorkloadName) -> Result<ExitStatus, RuntimeError>;

    /// What the running workload's processes use now (every process it
    /// started, not only its first), for metrics. `Ok(None)` when it does
    /// not run, or when this runtime does not measure it (the container
    /// engines, for now: `docker stats` and the like are theirs to show).
    async fn usage(&self, name: &WorkloadName) -> Result<Option<Usage>, RuntimeError> {
        let _ = name;
        Ok(None)
    }
}

/// What a workload's processes use at one moment ([`Backend::usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Usage {
    /// Its live processes.
    pub processes: u32,
    /// Their resident memory, in bytes.
    pub rss_bytes: u64,
    /// The CPU time they used, user and system, including that of their
    /// children already reaped, in seconds. It may fall when a process
    /// leaves without its parent reaping it.
    pub cpu_seconds: f64,
}

impl Usage {
    /// A measurement.
    pub fn new(processes: u32, rss_bytes: u64, cpu_seconds: f64) -> Self {
        Self {
            processes,
            rss_bytes,
            cpu_seconds,
        }
    }
}
