//! Connecting to the engine: the socket address, the API version both sides
//! speak, and a ping that fails fast.

use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, BollardRequest, ClientVersion, Docker};

use crate::error::ConnectError;

/// How long `connect` and `health` wait for the engine to answer.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `socket` and agrees on an API version: the engine's own,
/// capped at the newest the client knows (Debian's Docker 20.10 speaks 1.41
/// and refuses requests for newer versions).
///
/// `timeout_secs` bounds every later request until its response headers
/// arrive; the connection itself is checked within [`ANSWER_TIMEOUT`].
pub(crate) async fn connect(socket: &str, timeout_secs: u64) -> Result<Docker, ConnectError> {
    let engine_error = |source| ConnectError::Engine {
        socket: socket.to_owned(),
        source,
    };
    // `/version` without a version prefix is answered by every engine.
    let probe = client(socket, timeout_secs, API_DEFAULT_VERSION)?
        .with_request_modifier(without_version_prefix);
    let version = match tokio::time::timeout(ANSWER_TIMEOUT, probe.version()).await {
        Ok(Ok(version)) => version,
        Ok(Err(source)) => return Err(engine_error(source)),
        Err(_) => {
            return Err(ConnectError::Timeout {
                socket: socket.to_owned(),
                secs: ANSWER_TIMEOUT.as_secs(),
            });
        }
    };
    let api = version
        .api_version
        .as_deref()
        .and_then(parse_api_version)
        .ok_or_else(|| ConnectError::NoApiVersion {
            socket: socket.to_owned(),
            reported: version.api_version.clone(),
        })?;
    let chosen = if api < *API_DEFAULT_VERSION {
        api
    } else {
        *API_DEFAULT_VERSION
    };
    tracing::debug!(socket, api = %chosen, engine = ?version.version, "Docker API version chosen.");
    client(socket, timeout_secs, &chosen)
}

/// A client for `socket` that speaks API `version`; no request is sent yet.
fn client(
    socket: &str,
    timeout_secs: u64,
    version: &ClientVersion,
) -> Result<Docker, ConnectError> {
    let engine_error = |source| ConnectError::Engine {
        socket: socket.to_owned(),
        source,
    };
    if socket.starts_with("unix://") || socket.starts_with('/') {
        Docker::connect_with_unix(socket, timeout_secs, version).map_err(engine_error)
    } else if socket.starts_with("tcp://") || socket.starts_with("http://") {
        Docker::connect_with_http(socket, timeout_secs, version).map_err(engine_error)
    } else {
        Err(ConnectError::UnsupportedSocket(socket.to_owned()))
    }
}

/// Parses an API version such as `1.41`.
fn parse_api_version(s: &str) -> Option<ClientVersion> {
    let (major, minor) = s.trim().split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

/// Drops the leading `/v1.NN` of a request path.
fn without_version_prefix(mut req: BollardRequest) -> BollardRequest {
    let uri = req.uri().clone();
    let Some(rest) = uri.path().strip_prefix("/v") else {
        return req;
    };
    let (version, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return req;
    }
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let Ok(pq) = format!("{tail}{query}").parse() else {
        return req;
    };
    let mut parts = uri.into_parts();
    parts.path_and_query = Some(pq);
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        let v = parse_api_version("1.41").expect("version");
        assert_eq!((v.major_version, v.minor_version), (1, 41));
        assert!(v < *API_DEFAULT_VERSION);
        assert!(parse_api_version("one").is_none());
    }

    #[test]
    fn version_prefix_is_dropped() {
        for (from, to) in [
            ("http://h:2375/v1.53/version", "http://h:2375/version"),
            (
                "http://h/v1.53/containers/json?all=true",
                "http://h/containers/json?all=true",
            ),
            ("http://h/version", "http://h/version"),
            ("http://h/volumes", "http://h/volumes"),
        ] {
            let req = http::Request::builder()
                .uri(from)
                .body(bollard::body_full(bytes::Bytes::new()))
                .expect("request");
            assert_eq!(without_version_prefix(req).uri().to_string(), to, "{from}");
        }
    }

    #[test]
    fn unknown_schemes_are_refused() {
        match client("ssh://h", 1, API_DEFAULT_VERSION) {
            Err(ConnectError::UnsupportedSocket(s)) => assert_eq!(s, "ssh://h"),
            other => panic!("{other:?}"),
        }
    }
}
