//! What a backend reports about its instances.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::WorkloadName;

/// The state of one instance as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuntimeState {
    /// Created, not yet running.
    Starting,
    /// Running.
    Running,
    /// Exited, by itself or because it was stopped.
    Exited(ExitStatus),
    /// A state the backend cannot map, in the runtime's words.
    Unknown(String),
}

impl RuntimeState {
    /// Whether the instance is running.
    pub fn is_running(&self) -> bool {
        matches!(self, Self::Running)
    }
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, when it exited normally.
    pub code: Option<i32>,
    /// The signal that ended it, when it was killed.
    pub signal: Option<i32>,
    /// Whether it ended because berth stopped it.
    pub stopped_by_request: bool,
    /// When it ended.
    pub at: OffsetDateTime,
}

impl ExitStatus {
    /// Whether it ended on its own with code 0, or because it was asked to.
    pub fn is_clean(&self) -> bool {
        self.stopped_by_request || self.code == Some(0)
    }

    /// A short human description, e.g. `exited with code 3`.
    pub fn describe(&self) -> String {
        let how = match (self.code, self.signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "exited".to_owned(),
        };
        if self.stopped_by_request {
            format!("stopped ({how})")
        } else {
            how
        }
    }
}

/// One instance as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkloadInfo {
    /// The workload's name.
    pub name: WorkloadName,
    /// The image or package the instance runs.
    pub image: String,
    /// Its state.
    pub state: RuntimeState,
    /// When the current instance started.
    pub started_at: Option<OffsetDateTime>,
    /// The labels given at deploy.
    pub labels: BTreeMap<String, String>,
    /// The host process id, for backends that run processes.
    pub pid: Option<u32>,
    /// Where the server of an HTTP-transport workload is reachable from the
    /// host (a container's published port); `None` when it listens directly
    /// on the host at the spec's `target_port`, or for stdio workloads.
    pub http_endpoint: Option<std::net::SocketAddr>,
}

impl WorkloadInfo {
    /// An instance in `state`, with no start time, labels or pid.
    pub fn new(name: WorkloadName, image: impl Into<String>, state: RuntimeState) -> Self {
        Self {
            name,
            image: image.into(),
            state,
            started_at: None,
            labels: BTreeMap::new(),
            pid: None,
            http_endpoint: None,
        }
    }
}

/// A healthy backend's self-description.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendHealth {
    /// The backend's kind, as [`Backend::kind`](crate::Backend::kind).
    pub kind: &'static str,
    /// The runtime's version, e.g. the engine version or the kernel release.
    pub version: String,
}

impl BackendHealth {
    /// A health report.
    pub fn new(kind: &'static str, version: impl Into<String>) -> Self {
        Self {
            kind,
            version: version.into(),
        }
    }
}
