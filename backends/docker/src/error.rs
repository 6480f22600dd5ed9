//! The one place where engine errors become [`RuntimeError`]s.

use berth_runtime_api::{RuntimeError, WorkloadName};
use bollard::errors::Error as EngineError;

use crate::KIND;

/// What an engine error means to a backend operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// 404: the container (or image) does not exist.
    NotFound,
    /// 409: a name conflict, or a container in the wrong state.
    Conflict,
    /// The engine could not be reached or did not answer in time.
    Unreachable,
    /// Anything else the engine refused or failed.
    Other,
}

/// Sorts an engine error into a [`Class`].
pub(crate) fn classify(err: &EngineError) -> Class {
    match err {
        EngineError::DockerResponseServerError {
            status_code: 404, ..
        } => Class::NotFound,
        EngineError::DockerResponseServerError {
            status_code: 409, ..
        } => Class::Conflict,
        EngineError::HyperLegacyError { .. }
        | EngineError::HyperResponseError { .. }
        | EngineError::IOError { .. }
        | EngineError::SocketNotFoundError(_)
        | EngineError::RequestTimeoutError => Class::Unreachable,
        _ => Class::Other,
    }
}

/// Maps an engine error of an operation on workload `name`: 404 is
/// `NotFound`, an unreachable engine `Unavailable`, the rest a `Backend`
/// error with `context` (a lower-case phrase saying what berth was doing).
/// A 409 means different things to different operations (a name taken on
/// create, a stopped container on attach); callers that care map it first.
pub(crate) fn map(
    socket: &str,
    err: EngineError,
    name: &WorkloadName,
    context: impl Into<String>,
) -> RuntimeError {
    match classify(&err) {
        Class::NotFound => RuntimeError::NotFound(name.clone()),
        Class::Unreachable => unreachable(socket, err),
        Class::Conflict | Class::Other => RuntimeError::backend(context, err),
    }
}

/// Maps an engine error where no status code has a special meaning.
pub(crate) fn other(socket: &str, err: EngineError, context: impl Into<String>) -> RuntimeError {
    match classify(&err) {
        Class::Unreachable => unreachable(socket, err),
        _ => RuntimeError::backend(context, err),
    }
}

/// The engine at `socket` cannot be reached: `Unavailable`, naming the
/// socket.
pub(crate) fn unreachable(socket: &str, err: EngineError) -> RuntimeError {
    unavailable(ConnectError::Engine {
        socket: socket.to_owned(),
        source: err,
    })
}

/// The engine cannot be reached.
pub(crate) fn unavailable(err: impl Into<berth_runtime_api::BoxError>) -> RuntimeError {
    RuntimeError::Unavailable {
        backend: KIND,
        source: err.into(),
    }
}

/// Why [`DockerBackend::connect`](crate::DockerBackend::connect) failed; the
/// source of its `Unavailable` error, naming the socket tried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The socket address has a scheme the backend does not speak.
    #[error(
        "unsupported docker socket `{0}`: expected a path, unix://PATH, tcp://HOST:PORT or http://HOST:PORT"
    )]
    UnsupportedSocket(String),
    /// The engine refused the connection or answered with an error.
    #[error("cannot reach the docker engine at `{socket}`")]
    Engine {
        /// The socket tried.
        socket: String,
        /// The client's error.
        #[source]
        source: EngineError,
    },
    /// The engine answered without an API version berth can read.
    #[error("the docker engine at `{socket}` reported no usable API version ({reported:?})")]
    NoApiVersion {
        /// The socket tried.
        socket: String,
        /// What the engine reported.
        reported: Option<String>,
    },
    /// The engine did not answer in time.
    #[error("the docker engine at `{socket}` did not answer within {secs} s")]
    Timeout {
        /// The socket tried.
        socket: String,
        /// How long berth waited.
        secs: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> EngineError {
        EngineError::DockerResponseServerError {
            status_code: code,
            message: "m".into(),
        }
    }

    #[test]
    fn classes() {
        for (err, want) in [
            (status(404), Class::NotFound),
            (status(409), Class::Conflict),
            (status(500), Class::Other),
            (EngineError::RequestTimeoutError, Class::Unreachable),
            (
                EngineError::SocketNotFoundError("/x".into()),
                Class::Unreachable,
            ),
        ] {
            assert_eq!(classify(&err), want, "{err}");
        }
    }

    #[test]
    fn mapping() {
        const SOCKET: &str = "unix:///var/run/docker.sock";
        let name = WorkloadName::parse("w").expect("name");
        assert!(
            matches!(map(SOCKET, status(404), &name, "c"), RuntimeError::NotFound(n) if n == name)
        );
        assert!(matches!(
            map(SOCKET, status(409), &name, "c"),
            RuntimeError::Backend { .. }
        ));
        let down = map(SOCKET, EngineError::RequestTimeoutError, &name, "c");
        assert!(
            matches!(
                down,
                RuntimeError::Unavailable {
                    backend: "docker",
                    ..
                }
            ),
            "{down:?}"
        );
        // The socket tried is named in the error's chain.
        let mut text = down.to_string();
        let mut source = std::error::Error::source(&down);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        assert!(text.contains(SOCKET), "{text}");
        match map(SOCKET, status(500), &name, "starting `w`") {
            RuntimeError::Backend { context, .. } => assert_eq!(context, "starting `w`"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            other(SOCKET, status(404), "c"),
            RuntimeError::Backend { .. }
        ));
        assert!(matches!(
            other(SOCKET, EngineError::RequestTimeoutError, "c"),
            RuntimeError::Unavailable { .. }
        ));
    }
}
