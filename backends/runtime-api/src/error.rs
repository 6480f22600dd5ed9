//! The errors a backend reports.

use crate::WorkloadName;

/// A boxed error kept as the source of a [`RuntimeError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a backend operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No instance with this name exists.
    #[error("workload `{0}` not found")]
    NotFound(WorkloadName),
    /// A running instance with this name exists already.
    #[error("workload `{0}` already exists")]
    AlreadyExists(WorkloadName),
    /// The operation needs a running instance.
    #[error("workload `{0}` is not running")]
    NotRunning(WorkloadName),
    /// The instance's stdio pipes are held by someone else.
    #[error("workload `{0}` is already attached")]
    AlreadyAttached(WorkloadName),
    /// The spec cannot run on this backend.
    #[error("invalid workload spec: {0}")]
    InvalidSpec(String),
    /// The runtime cannot be reached.
    #[error("backend `{backend}` is unavailable")]
    Unavailable {
        /// The backend's kind.
        backend: &'static str,
        /// Why it could not be reached.
        #[source]
        source: BoxError,
    },
    /// The runtime failed the operation.
    #[error("{context}")]
    Backend {
        /// What berth was doing, as a lower-case phrase.
        context: String,
        /// The runtime's error.
        #[source]
        source: BoxError,
    },
}

impl RuntimeError {
    /// Wraps a runtime failure with what berth was doing.
    pub fn backend(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            context: context.into(),
            source: source.into(),
        }
    }
}
