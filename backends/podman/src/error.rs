//! Podman failures, and the one place they become [`RuntimeError`]s.

use berth_runtime_api::{BoxError, RuntimeError, WorkloadName};

use crate::KIND;
use crate::engine::LibpodError;

/// What went wrong talking to Podman, kept as the source of a
/// [`RuntimeError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PodmanError {
    /// The socket did not answer.
    #[error("cannot reach the Podman API at `{socket}`")]
    Unreachable {
        /// The socket tried.
        socket: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The socket did not answer in time.
    #[error("the Podman API at `{socket}` did not answer within {secs} s")]
    Timeout {
        /// The socket tried.
        socket: String,
        /// How long berth waited.
        secs: u64,
    },
    /// The socket is not written in a form the backend understands.
    #[error(
        "unsupported Podman socket `{0}`: use unix:///path, an absolute path or tcp://host:port"
    )]
    UnsupportedSocket(String),
    /// podman-api refused to build a client.
    #[error("cannot create a Podman API client")]
    Client(#[source] BoxError),
    /// A pull answered with an error report.
    #[error("{0}")]
    Pull(String),
}

/// A failed API call, from either client, as the mapping needs to see it.
pub(crate) trait ApiFailure: std::error::Error + Send + Sync + Sized + 'static {
    /// The HTTP status Podman answered with, if it answered.
    fn status(&self) -> Option<u16>;
    /// Whether Podman could not be reached: the socket refused, or the
    /// connection broke off before an answer (the service went away).
    fn is_unreachable(&self) -> bool;
}

impl ApiFailure for podman_api::Error {
    fn status(&self) -> Option<u16> {
        match self {
            Self::Fault { code, .. } | Self::Error(podman_api::conn::Error::Fault { code, .. }) => {
                Some(code.as_u16())
            }
            _ => None,
        }
    }

    fn is_unreachable(&self) -> bool {
        match self {
            Self::Error(podman_api::conn::Error::Hyper(e)) => {
                e.is_connect() || e.is_closed() || e.is_incomplete_message() || e.is_canceled()
            }
            Self::Error(podman_api::conn::Error::IO(_)) => true,
            _ => false,
        }
    }
}

impl ApiFailure for LibpodError {
    fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn is_unreachable(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::Http(_))
    }
}

/// Maps a failed call about workload `name` to the runtime contract's error:
/// 404 is [`RuntimeError::NotFound`], an unreachable socket
/// [`RuntimeError::Unavailable`] (naming the socket), anything else a
/// [`RuntimeError::Backend`] saying what berth was `doing`.
pub(crate) fn api_error<E: ApiFailure>(
    socket: &str,
    name: &WorkloadName,
    doing: impl Into<String>,
    err: E,
) -> RuntimeError {
    if err.status() == Some(404) {
        return RuntimeError::NotFound(name.clone());
    }
    if err.is_unreachable() {
        return unavailable(PodmanError::Unreachable {
            socket: socket.to_owned(),
            source: Box::new(err),
        });
    }
    RuntimeError::backend(doing, err)
}

/// The backend cannot be used, because of `why`.
pub(crate) fn unavailable(why: PodmanError) -> RuntimeError {
    RuntimeError::Unavailable {
        backend: KIND,
        source: Box::new(why),
    }
}
