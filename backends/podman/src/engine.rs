//! Talking to Podman: the socket address, the init Podman gives
//! containers ([`init_path`]), and a minimal client for the libpod calls
//! that podman-api 0.11 gets wrong.
//!
//! podman-api's create builder spells `no_new_privileges` as
//! `no_new_privilages`, which libpod ignores, and its inspect always asks for
//! `size=true`, which walks the container's whole file system. Those two
//! calls go through [`Libpod`]: one HTTP/1.1 exchange per connection, JSON in
//! and out, on the same socket as the podman-api client.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use podman_api::Podman;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use berth_runtime_api::RuntimeError;
use tracing::info;

use crate::PodmanConfig;
use crate::error::PodmanError;

/// The libpod API version berth speaks: the one podman-api 0.11 targets.
const API_PREFIX: &str = "/v4.3.1";

/// Where Podman's API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A Unix socket.
    Unix(PathBuf),
    /// A plain TCP address, `host:port`.
    Tcp(String),
}

impl Endpoint {
    /// Reads `unix:///path`, `/path` or `tcp://host:port` (`http://` too).
    pub(crate) fn parse(socket: &str) -> Result<Self, PodmanError> {
        let unsupported = || PodmanError::UnsupportedSocket(socket.to_owned());
        if let Some(path) = socket.strip_prefix("unix://") {
            return if path.starts_with('/') {
                Ok(Self::Unix(path.into()))
            } else {
                Err(unsupported())
            };
        }
        if socket.starts_with('/') {
            return Ok(Self::Unix(socket.into()));
        }
        let host = socket
            .strip_prefix("tcp://")
            .or_else(|| socket.strip_prefix("http://"))
            .ok_or_else(unsupported)?
            .trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(unsupported());
        }
        Ok(Self::Tcp(host.to_owned()))
    }

    /// A podman-api client for this endpoint.
    pub(crate) fn podman(&self) -> Result<Podman, PodmanError> {
        match self {
            Self::Unix(path) => Ok(Podman::unix(path)),
            Self::Tcp(host) => Podman::tcp(host).map_err(|e| PodmanError::Client(Box::new(e))),
        }
    }
}

/// Why a call through [`Libpod`] failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LibpodError {
    /// The socket could not be reached.
    #[error("cannot connect to the Podman API")]
    Connect(#[source] std::io::Error),
    /// The HTTP exchange broke off.
    #[error("HTTP exchange with the Podman API failed")]
    Http(#[source] hyper::Error),
    /// Podman answered with an error status.
    #[error("the Podman API answered {status}: {message}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// Podman's message.
        message: String,
    },
    /// Podman's answer was not the JSON expected.
    #[error("unexpected answer from the Podman API")]
    Decode(#[source] serde_json::Error),
}

/// Podman's error body.
#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

impl LibpodError {
    /// Whether a create failed because the name is taken: libpod 4 answers
    /// 500 "…is already in use" rather than 409.
    pub(crate) fn is_name_conflict(&self) -> bool {
        match self {
            Self::Status { status: 409, .. } => true,
            Self::Status { message, .. } => message.contains("is already in use"),
            _ => false,
        }
    }

    /// Whether the container asked about does not exist: 404, or the 500
    /// "…does not exist in database: no such container" libpod 4 answers
    /// when it is removed while the inspect runs.
    pub(crate) fn is_no_such_container(&self) -> bool {
        match self {
            Self::Status { status: 404, .. } => true,
            Self::Status { message, .. } => message.contains("no such container"),
            _ => false,
        }
    }
}

/// A client for single libpod calls; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Libpod {
    endpoint: Endpoint,
}

impl Libpod {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Self { endpoint }
    }

    /// `GET {path}`, decoded from JSON.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, LibpodError> {
        let body = self.request(Method::GET, path, None).await?;
        serde_json::from_slice(&body).map_err(LibpodError::Decode)
    }

    /// `POST {path}` with a JSON body, the answer decoded from JSON.
    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, LibpodError> {
        let body = serde_json::to_vec(body).map_err(LibpodError::Decode)?;
        let answer = self
            .request(Method::POST, path, Some((body, "application/json")))
            .await?;
        serde_json::from_slice(&answer).map_err(LibpodError::Decode)
    }

    /// `POST {path}` with `body` as it is (`application/octet-stream`), the
    /// answer decoded from JSON. For a secret's value: neither the body nor
    /// anything derived from it goes into an error.
    pub(crate) async fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, LibpodError> {
        let answer = self
            .request(Method::POST, path, Some((body, "application/octet-stream")))
            .await?;
        serde_json::from_slice(&answer).map_err(LibpodError::Decode)
    }

    /// `DELETE {path}`, the answer ignored.
    pub(crate) async fn delete(&self, path: &str) -> Result<(), LibpodError> {
        self.request(Method::DELETE, path, None).await.map(drop)
    }

    /// `POST {path}` with a tar archive as the body; the answer is a stream
    /// of JSON objects (a build's output), each handed to `each` as it
    /// arrives.
    pub(crate) async fn post_tar_streaming(
        &self,
        path: &str,
        tar: Vec<u8>,
        mut each: impl FnMut(serde_json::Value) + Send,
    ) -> Result<(), LibpodError> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("{API_PREFIX}{path}"))
            .header(HOST, "podman")
            .header(CONTENT_TYPE, "application/x-tar")
            .body(Full::new(Bytes::from(tar)))
            .expect("a request with a valid path and static headers");
        let (mut sender, conn) = match &self.endpoint {
            Endpoint::Unix(path) => {
                let stream = UnixStream::connect(path)
                    .await
                    .map_err(LibpodError::Connect)?;
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                    .await
                    .map(|(s, c)| (s, tokio::spawn(c)))
            }
            Endpoint::Tcp(host) => {
                let stream = TcpStream::connect(host)
                    .await
                    .map_err(LibpodError::Connect)?;
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                    .await
                    .map(|(s, c)| (s, tokio::spawn(c)))
            }
        }
        .map_err(LibpodError::Http)?;
        let result = async {
            let resp = sender.send_request(req).await.map_err(LibpodError::Http)?;
            let status = resp.status();
            let mut body = resp.into_body();
            if !status.is_success() {
                let body = body.collect().await.map_err(LibpodError::Http)?.to_bytes();
                return Err(status_error(status.as_u16(), &body));
            }
            let mut pending = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(LibpodError::Http)?;
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                pending.extend_from_slice(data);
                let mut objects =
                    serde_json::Deserializer::from_slice(&pending).into_iter::<serde_json::Value>();
                let mut used = 0;
                while let Some(Ok(value)) = objects.next() {
                    used = objects.byte_offset();
                    each(value);
                }
                pending.drain(..used);
            }
            Ok(())
        }
        .await;
        conn.abort();
        result
    }

    /// Sends a request, with a body of the given content type.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
    ) -> Result<Bytes, LibpodError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{API_PREFIX}{path}"))
            .header(HOST, "podman");
        let body = match body {
            Some((body, content_type)) => {
                req = req.header(CONTENT_TYPE, content_type);
                body
            }
            None => Vec::new(),
        };
        let req = req
            .body(Full::new(Bytes::from(body)))
            .expect("a request with a valid path and static headers");
        match &self.endpoint {
            Endpoint::Unix(path) => {
                let stream = UnixStream::connect(path)
                    .await
                    .map_err(LibpodError::Connect)?;
                exchange(stream, req).await
            }
            Endpoint::Tcp(host) => {
                let stream = TcpStream::connect(host)
                    .await
                    .map_err(LibpodError::Connect)?;
                exchange(stream, req).await
            }
        }
    }
}

/// The error of an answer with `status` and `body`.
fn status_error(status: u16, body: &[u8]) -> LibpodError {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
    LibpodError::Status { status, message }
}

/// `s` percent-encoded for a query value: everything but ASCII letters,
/// digits and `-._~`.
pub(crate) fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends `req` on a fresh connection and reads the whole answer.
async fn exchange<S>(stream: S, req: Request<Full<Bytes>>) -> Result<Bytes, LibpodError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(LibpodError::Http)?;
    let conn = tokio::spawn(conn);
    let result = async {
        let resp = sender.send_request(req).await.map_err(LibpodError::Http)?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(LibpodError::Http)?
            .to_bytes();
        if status.is_success() {
            Ok(body)
        } else {
            Err(status_error(status.as_u16(), &body))
        }
    }
    .await;
    conn.abort();
    result
}

/// Podman's default container init on Debian's Podman 4.
const PODMAN_DEFAULT_INIT: &str = "/usr/libexec/podman/catatonit";

/// Static init binaries that may stand in for Podman's own.
const INIT_CANDIDATES: &[&str] = &[
    "/usr/bin/catatonit",
    "/usr/bin/tini-static",
    "/usr/bin/docker-init",
];

/// The init binary to pass to Podman: the configured one, none when
/// Podman's default is installed (or the engine is not on this machine, so
/// its files cannot be checked), else a static init found here. Checked
/// once, when berth connects, so a missing init is one clear error instead
/// of a failure at every start.
pub(crate) fn init_path(
    config: &PodmanConfig,
    endpoint: &Endpoint,
) -> Result<Option<String>, RuntimeError> {
    let local = matches!(endpoint, Endpoint::Unix(_));
    if let Some(path) = &config.init_path {
        if local && !path.is_file() {
            return Err(RuntimeError::backend(
                "invalid podman configuration",
                format!("init_path {} is not a file", path.display()),
            ));
        }
        return Ok(Some(path.display().to_string()));
    }
    if !local || std::path::Path::new(PODMAN_DEFAULT_INIT).is_file() {
        return Ok(None);
    }
    match INIT_CANDIDATES
        .iter()
        .find(|c| std::path::Path::new(c).is_file())
    {
        Some(found) => {
            info!(
                init = found,
                "Podman's catatonit is missing; containers use this init."
            );
            Ok(Some((*found).to_owned()))
        }
        None => Err(RuntimeError::backend(
            "podman cannot give containers an init process",
            format!(
                "{PODMAN_DEFAULT_INIT} is missing and no static init was found ({}): \
                 install catatonit (`apt-get install catatonit`) or tini (`apt-get install tini`), \
                 or set [podman] init_path",
                INIT_CANDIDATES.join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(socket: &str, expect: Option<Endpoint>) {
        assert_eq!(Endpoint::parse(socket).ok(), expect, "socket {socket:?}");
    }

    #[test]
    fn sockets() {
        check(
            "unix:///run/podman/podman.sock",
            Some(Endpoint::Unix("/run/podman/podman.sock".into())),
        );
        check(
            "/run/user/1000/podman/podman.sock",
            Some(Endpoint::Unix("/run/user/1000/podman/podman.sock".into())),
        );
        check(
            "tcp://127.0.0.1:8888",
            Some(Endpoint::Tcp("127.0.0.1:8888".into())),
        );
        check(
            "http://localhost:8888/",
            Some(Endpoint::Tcp("localhost:8888".into())),
        );
        check("unix://relative.sock", None);
        check("ssh://core@host/run/podman/podman.sock", None);
        check("podman.sock", None);
        check("tcp://", None);
    }

    /// A service that goes away mid-exchange (killed while berth waits for
    /// an answer) is an unreachable runtime, not a failed operation.
    #[tokio::test]
    async fn a_connection_that_breaks_off_is_unavailable() {
        use berth_runtime_api::{RuntimeError, WorkloadName};
        use tokio::io::AsyncReadExt;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                // Read the request, then hang up without answering.
                let _ = conn.read(&mut [0; 4096]).await;
            }
        });
        let libpod = Libpod::new(Endpoint::Tcp(addr.to_string()));
        let err = libpod
            .get::<serde_json::Value>("/libpod/containers/x/json")
            .await
            .expect_err("no answer");
        assert!(matches!(err, LibpodError::Http(_)), "{err:?}");
        let name = WorkloadName::parse("x").expect("name");
        let socket = format!("tcp://{addr}");
        match crate::error::api_error(&socket, &name, "inspecting", err) {
            RuntimeError::Unavailable { source, .. } => {
                assert!(source.to_string().contains(&socket), "{source}");
            }
            other => panic!("not unavailable: {other:?}"),
        }
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(query_value("a-b.c_d~e"), "a-b.c_d~e");
        assert_eq!(
            query_value("localhost/x:1 {\"a\":\"b\"}&"),
            "localhost%2Fx%3A1%20%7B%22a%22%3A%22b%22%7D%26"
        );
    }

    #[test]
    fn name_conflicts() {
        let status = |status, message: &str| LibpodError::Status {
            status,
            message: message.to_owned(),
        };
        assert!(status(409, "conflict").is_name_conflict());
        assert!(
            status(
                500,
                "creating container storage: the container name \"berth-x\" is already in use by 0123"
            )
            .is_name_conflict()
        );
        assert!(!status(500, "no such image").is_name_conflict());
        assert!(!status(404, "no such container").is_name_conflict());
    }

    #[test]
    fn containers_removed_meanwhile_are_absent() {
        let status = |status, message: &str| LibpodError::Status {
            status,
            message: message.to_owned(),
        };
        assert!(status(404, "no such container").is_no_such_container());
        assert!(
            status(
                500,
                "container 70c9781bf602 does not exist in database: no such container"
            )
            .is_no_such_container()
        );
        assert!(!status(500, "no such image").is_no_such_container());
        assert!(!status(500, "internal error").is_no_such_container());
    }
}
