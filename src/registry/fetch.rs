//! Guarded HTTP(S) GET, HEAD and form POST for registry sources and their
//! OAuth identity providers. Every registry URL is hostile input, so every
//! outbound request of a registry goes through [`Fetcher`], which
//! guarantees:
//!
//! - **Schemes**: `https` always; plain `http` only when private addresses
//!   are allowed (ToolHive's rule); URLs with `user:pass@` are refused.
//! - **Addresses** (SSRF, DNS rebinding): a name is resolved once, with
//!   berth's own resolver; every address of the answer must pass the
//!   [`PrivatePolicy`] (one private address refuses the whole name), and
//!   berth connects only to those checked addresses, in order, never
//!   resolving twice. IP-literal hosts are checked the same way.
//! - **Redirects** are followed by hand, at most
//!   [`FetchOptions::max_redirects`], each hop checked again (scheme,
//!   addresses); `Authorization`, `Proxy-Authorization` and `Cookie` are
//!   dropped once a redirect leaves the original origin. A POST follows
//!   no redirect (its body carries credentials): a 3xx is its answer.
//! - **Size**: a declared `Content-Length` over [`FetchOptions::max_bytes`]
//!   is refused before reading; a body growing past it is cut off. No
//!   compression is requested, so the limit is the size in memory.
//! - **Time**: [`FetchOptions::timeout`] bounds the whole fetch, redirects
//!   and body included, so a server dripping bytes fails with
//!   [`FetchError::Timeout`].
//! - **Secrets**: errors and logs name URLs without their query string and
//!   never carry header values nor request bodies.
//!
//! Each request is one HTTP/1.1 exchange on a fresh connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use url::{Host, Position, Url};

use crate::net::is_private;

/// Which private addresses (loopback, RFC 1918, link-local, unique-local,
/// CGNAT, …) a fetch may reach.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PrivatePolicy {
    /// None; only `https` URLs.
    #[default]
    Deny,
    /// Every address; plain `http` allowed.
    Allow,
    /// Only these private addresses (public ones are always allowed);
    /// plain `http` allowed. Meant for tests.
    AllowOnly(Vec<IpAddr>),
}

impl PrivatePolicy {
    /// Whether `ip` may be reached.
    fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if !is_private(ip) {
            return true;
        }
        match self {
            Self::Deny => false,
            Self::Allow => true,
            Self::AllowOnly(allowed) => allowed.iter().any(|a| a.to_canonical() == ip),
        }
    }

    /// Whether plain `http` is allowed.
    fn allows_http(&self) -> bool {
        !matches!(self, Self::Deny)
    }
}

/// How one fetch may behave. Its `Debug` shows header names, not values.
#[derive(Clone)]
pub struct FetchOptions {
    /// Which private addresses may be reached (and so whether plain `http`
    /// is allowed).
    pub private: PrivatePolicy,
    /// The largest body accepted, in bytes.
    pub max_bytes: usize,
    /// Bounds the whole fetch: resolution, connections, redirects and body.
    pub timeout: Duration,
    /// Bounds each connection attempt.
    pub connect_timeout: Duration,
    /// The most redirects followed.
    pub max_redirects: u8,
    /// Extra request headers (e.g. `Authorization`, `Accept`). Their values
    /// are never logged nor put in errors. `Host`, `Accept-Encoding` and the
    /// connection and framing headers are berth's own and ignored here.
    pub headers: Vec<(String, String)>,
    /// The `ETag` of a cached copy, sent as `If-None-Match`.
    pub if_none_match: Option<String>,
    /// The `Last-Modified` of a cached copy, verbatim, sent as
    /// `If-Modified-Since`.
    pub if_modified_since: Option<String>,
}

impl std::fmt::Debug for FetchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("FetchOptions")
            .field("private", &self.private)
            .field("max_bytes", &self.max_bytes)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_redirects", &self.max_redirects)
            .field("headers", &names)
            .field("if_none_match", &self.if_none_match)
            .field("if_modified_since", &self.if_modified_since)
            .finish()
    }
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            private: PrivatePolicy::Deny,
            max_bytes: 32 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_redirects: 5,
            headers: Vec::new(),
            if_none_match: None,
            if_modified_since: None,
        }
    }
}

/// The answer to a GET or a POST.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The final status (304 when not modified); any status is returned,
    /// judging it is the caller's.
    pub status: u16,
    /// The URL that answered, after redirects.
    pub final_url: String,
    /// The `ETag` header.
    pub etag: Option<String>,
    /// The `Last-Modified` header, verbatim.
    pub last_modified: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The body; empty for 304.
    pub body: Bytes,
}

/// Why a fetch failed. Messages name URLs without their query string and
/// never contain header values.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not `http(s)`, with `user:pass@`, without a host, …
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// Plain `http` while private addresses are denied.
    #[error("{0}: URL must start with https://")]
    InsecureScheme(String),
    /// The host is, or resolves to, an address the policy refuses (also
    /// when reached through a redirect).
    #[error("`{host}` resolves to the private address {addr}, which is not allowed")]
    PrivateAddress {
        /// The host of the URL.
        host: String,
        /// The refused address.
        addr: IpAddr,
    },
    /// The name does not resolve, or no address accepts a connection.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The fetch or a connection attempt took too long.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The body is larger than the limit.
    #[error("the response is larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// More redirects than allowed.
    #[error("too many redirects")]
    TooManyRedirects,
    /// A malformed response, a TLS failure, an unusable request header, …
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl FetchError {
    /// Whether the source could not be reached (as opposed to answering
    /// badly or being refused as a URL).
    pub fn is_connectivity(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::Timeout(_) | Self::PrivateAddress { .. }
        )
    }
}

/// Request headers berth sets itself (or never sends).
const OWN_HEADERS: [HeaderName; 8] = [
    header::HOST,
    header::ACCEPT_ENCODING,
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::UPGRADE,
    header::USER_AGENT,
];

/// Request headers dropped once a redirect leaves the original origin.
const CREDENTIALS: [HeaderName; 3] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
];

const USER_AGENT: &str = concat!("berth/", env!("CARGO_PKG_VERSION"));

/// Makes guarded HTTP(S) requests; cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    resolver: Arc<hickory_resolver::TokioResolver>,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A fetcher using the system's resolver configuration and the
    /// system's trusted roots. When the resolver configuration is unusable
    /// names do not resolve (IP-literal URLs still work): berth never sends
    /// the names a user's registries use to a resolver nobody chose.
    pub fn new() -> Result<Self, FetchError> {
        use hickory_resolver::config::ResolverConfig;
        use hickory_resolver::net::runtime::TokioRuntimeProvider;
        let resolver = match hickory_resolver::TokioResolver::builder_tokio() {
            Ok(builder) => builder.build(),
            Err(e) => {
                tracing::warn!(error = %e, "The system's DNS configuration is unusable; registry sources named by host name cannot be reached.");
                hickory_resolver::TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(Vec::new()),
                    TokioRuntimeProvider::default(),
                )
                .build()
            }
        }
        .map_err(|e| FetchError::Unreachable(format!("cannot set up the DNS resolver: {e}")))?;
        Ok(Self {
            resolver: Arc::new(resolver),
            tls: crate::tls::client_config(),
        })
    }

    /// The same fetcher trusting the roots of `tls` instead.
    #[cfg(test)]
    fn with_tls(mut self, tls: rustls::ClientConfig) -> Self {
        self.tls = Arc::new(tls);
        self
    }

    /// GETs `url`, following redirects; any final status is returned with
    /// its body.
    pub async fn get(&self, url: &str, opts: &FetchOptions) -> Result<Fetched, FetchError> {
        self.fetch(Method::GET, url, None, opts).await
    }

    /// POSTs `body` (of type `content_type`, e.g. a form) to `url` and
    /// returns any final status with its body. The same guards as
    /// [`Fetcher::get`], except that no redirect is followed: the body
    /// carries credentials (OAuth token requests), so a 3xx is the answer.
    /// The body never appears in an error or a log.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        opts: &FetchOptions,
    ) -> Result<Fetched, FetchError> {
        let payload = Payload {
            content_type: HeaderValue::from_str(content_type).map_err(|_| {
                FetchError::Protocol("the request's content type is invalid".into())
            })?,
            bytes: Bytes::from(body),
        };
        self.fetch(Method::POST, url, Some(payload), opts).await
    }

    /// Sends `method` (with `payload`) and reads the final answer.
    async fn fetch(
        &self,
        method: Method,
        url: &str,
        payload: Option<Payload>,
        opts: &FetchOptions,
    ) -> Result<Fetched, FetchError> {
        let url = checked_url(url, &opts.private)?;
        let shown = shown(&url);
        within(opts.timeout, &shown, async {
            let answer = self.follow(method, url, payload.as_ref(), opts).await?;
            let status = answer.response.status().as_u16();
            let headers = answer.response.headers();
            let text = |name| {
                headers
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .map(str::to_owned)
            };
            let etag = text(header::ETAG);
            let last_modified = text(header::LAST_MODIFIED);
            let content_type = text(header::CONTENT_TYPE);
            let final_url = answer.url.to_string();
            let body = if matches!(status, 204 | 304) {
                Bytes::new()
            } else {
                read_body(answer.response, opts.max_bytes, &shown).await?
            };
            tracing::debug!(url = %shown, status, bytes = body.len(), "Registry fetch answered.");
            Ok(Fetched {
                status,
                final_url,
                etag,
                last_modified,
                content_type,
                body,
            })
        })
        .await
    }

    /// HEADs `url`, following redirects, and returns the final status;
    /// the same guards as [`Fetcher::get`].
    pub async fn head(&self, url: &str, opts: &FetchOptions) -> Result<u16, FetchError> {
        let url = checked_url(url, &opts.private)?;
        let shown = shown(&url);
        within(opts.timeout, &shown, async {
            let answer = self.follow(Method::HEAD, url, None, opts).await?;
            Ok(answer.response.status().as_u16())
        })
        .await
    }

    /// Sends `method` to `url` and follows redirects (none for a POST).
    async fn follow(
        &self,
        method: Method,
        mut url: Url,
        payload: Option<&Payload>,
        opts: &FetchOptions,
    ) -> Result<Answer, FetchError> {
        let mut headers = request_headers(opts)?;
        let mut redirects = 0u8;
        loop {
            let answer = self.exchange(&method, url, &headers, payload, opts).await?;
            let status = answer.response.status().as_u16();
            if !matches!(status, 301 | 302 | 303 | 307 | 308) || method == Method::POST {
                return Ok(answer);
            }
            let Some(location) = answer.response.headers().get(header::LOCATION) else {
                return Ok(answer); // a 3xx without a target is the answer
            };
            if redirects >= opts.max_redirects {
                return Err(FetchError::TooManyRedirects);
            }
            redirects += 1;
            let from = shown(&answer.url);
            let location = location.to_str().map_err(|_| {
                FetchError::Protocol(format!("{from} redirects to an unreadable Location"))
            })?;
            let next = answer.url.join(location).map_err(|e| {
                FetchError::InvalidUrl(format!("{from} redirects to an invalid URL: {e}"))
            })?;
            check_url(&next, &opts.private)?;
            if next.origin() != answer.url.origin() {
                headers.retain(|(name, _)| !CREDENTIALS.contains(name));
            }
            tracing::debug!(from = %from, to = %shown(&next), status, "Registry fetch redirected.");
            url = next;
        }
    }

    /// One request on a fresh connection to a checked address of `url`.
    async fn exchange(
        &self,
        method: &Method,
        url: Url,
        headers: &[(HeaderName, HeaderValue)],
        payload: Option<&Payload>,
        opts: &FetchOptions,
    ) -> Result<Answer, FetchError> {
        let shown = shown(&url);
        let host = url
            .host()
            .ok_or_else(|| FetchError::InvalidUrl(format!("{shown} has no host")))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| FetchError::InvalidUrl(format!("{shown} has no port")))?;
        let addrs = self.destination(&host, port, &opts.private, &shown).await?;
        let tcp = connect(&addrs, opts.connect_timeout, &shown).await?;
        let _ = tcp.set_nodelay(true);

        let mut authority = url.host_str().unwrap_or_default().to_owned();
        if let Some(port) = url.port() {
            authority = format!("{authority}:{port}");
        }
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(&url[Position::BeforePath..Position::AfterQuery])
            .header(header::HOST, authority)
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::CONNECTION, "close");
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let body = match payload {
            Some(p) => {
                builder = builder
                    .header(header::CONTENT_TYPE, p.content_type.clone())
                    .header(header::CONTENT_LENGTH, p.bytes.len());
                Full::new(p.bytes.clone())
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder
            .body(body)
            .map_err(|_| FetchError::InvalidUrl(format!("{shown} cannot be requested")))?;

        let (response, conn) = if url.scheme() == "https" {
            let name = match host {
                Host::Domain(d) => rustls::pki_types::ServerName::try_from(d.to_owned())
                    .map_err(|_| FetchError::InvalidUrl(format!("{shown} has an invalid host")))?,
                Host::Ipv4(ip) => rustls::pki_types::ServerName::IpAddress(IpAddr::V4(ip).into()),
                Host::Ipv6(ip) => rustls::pki_types::ServerName::IpAddress(IpAddr::V6(ip).into()),
            };
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| FetchError::Protocol(format!("TLS with {shown} failed: {e}")))?;
            send(TokioIo::new(tls), request, &shown).await?
        } else {
            send(TokioIo::new(tcp), request, &shown).await?
        };
        Ok(Answer {
            response,
            url,
            _conn: conn,
        })
    }

    /// The addresses of `host`, every one permitted by `policy`.
    async fn destination(
        &self,
        host: &Host<&str>,
        port: u16,
        policy: &PrivatePolicy,
        shown: &str,
    ) -> Result<Vec<SocketAddr>, FetchError> {
        let (name, ips): (String, Vec<IpAddr>) = match host {
            Host::Ipv4(ip) => (ip.to_string(), vec![IpAddr::V4(*ip)]),
            Host::Ipv6(ip) => (ip.to_string(), vec![IpAddr::V6(*ip)]),
            Host::Domain(d) => {
                let lookup = self.resolver.lookup_ip(*d).await.map_err(|e| {
                    FetchError::Unreachable(format!("{shown}: cannot resolve `{d}`: {e}"))
                })?;
                ((*d).to_owned(), lookup.iter().collect())
            }
        };
        if ips.is_empty() {
            return Err(FetchError::Unreachable(format!(
                "{shown}: `{name}` has no address"
            )));
        }
        // Every answer must pass, or a rebinding name could alternate.
        if let Some(addr) = ips.iter().find(|ip| !policy.permits(**ip)) {
            tracing::warn!(url = %shown, %addr, "Registry fetch refused: private address.");
            return Err(FetchError::PrivateAddress {
                host: name,
                addr: *addr,
            });
        }
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }
}

/// A request body (a POST's).
struct Payload {
    content_type: HeaderValue,
    bytes: Bytes,
}

/// A response whose connection lives as long as it.
struct Answer {
    response: Response<Incoming>,
    url: Url,
    _conn: Conn,
}

/// The task driving a connection, ended when dropped.
struct Conn(tokio::task::JoinHandle<()>);

impl Drop for Conn {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `fut` within `timeout`.
async fn within<T>(
    timeout: Duration,
    shown: &str,
    fut: impl Future<Output = Result<T, FetchError>>,
) -> Result<T, FetchError> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| {
            Err(FetchError::Timeout(format!(
                "{shown} did not answer completely within {timeout:?}"
            )))
        })
}

/// Parses and checks a URL given by a user.
fn checked_url(raw: &str, policy: &PrivatePolicy) -> Result<Url, FetchError> {
    let url = Url::parse(raw.trim())
        .map_err(|e| FetchError::InvalidUrl(format!("cannot parse the URL: {e}")))?;
    check_url(&url, policy)?;
    Ok(url)
}

/// Checks the scheme, credentials and host of a URL (the first or a
/// redirect's).
fn check_url(url: &Url, policy: &PrivatePolicy) -> Result<(), FetchError> {
    let shown = shown(url);
    match url.scheme() {
        "https" => {}
        "http" if policy.allows_http() => {}
        "http" => return Err(FetchError::InsecureScheme(shown)),
        other => {
            return Err(FetchError::InvalidUrl(format!(
                "{shown}: the scheme `{other}` is not http(s)"
            )));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::InvalidUrl(format!(
            "{shown}: credentials in the URL are not allowed"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(FetchError::InvalidUrl(format!("{shown} has no host")));
    }
    Ok(())
}

/// A URL fit for errors and logs: no credentials, query nor fragment.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// The caller's headers and the conditional ones, validated.
fn request_headers(opts: &FetchOptions) -> Result<Vec<(HeaderName, HeaderValue)>, FetchError> {
    let value = |name: &HeaderName, value: &str| {
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            FetchError::Protocol(format!("the request header `{name}` has an invalid value"))
        })?;
        value.set_sensitive(true);
        Ok::<_, FetchError>(value)
    };
    let mut out = Vec::with_capacity(opts.headers.len() + 2);
    for (name, v) in &opts.headers {
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            FetchError::Protocol(format!(
                "invalid request header name `{}`",
                name.escape_debug()
            ))
        })?;
        if OWN_HEADERS.contains(&name) {
            continue;
        }
        let v = value(&name, v)?;
        out.push((name, v));
    }
    if let Some(etag) = &opts.if_none_match {
        out.push((header::IF_NONE_MATCH, value(&header::IF_NONE_MATCH, etag)?));
    }
    if let Some(date) = &opts.if_modified_since {
        let v = value(&header::IF_MODIFIED_SINCE, date)?;
        out.push((header::IF_MODIFIED_SINCE, v));
    }
    Ok(out)
}

/// Connects to the first of the checked addresses that answers.
async fn connect(
    addrs: &[SocketAddr],
    timeout: Duration,
    shown: &str,
) -> Result<TcpStream, FetchError> {
    let mut last = FetchError::Unreachable(format!("{shown}: no address"));
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = FetchError::Unreachable(format!("{shown}: {addr} refused the connection"));
            }
            Ok(Err(e)) => {
                last = FetchError::Unreachable(format!("{shown}: cannot connect to {addr}: {e}"));
            }
            Err(_) => {
                last = FetchError::Timeout(format!(
                    "{shown}: connecting to {addr} took longer than {timeout:?}"
                ));
            }
        }
    }
    Err(last)
}

/// Sends one request over `io` and returns the response head.
async fn send<IO>(
    io: IO,
    request: Request<Full<Bytes>>,
    shown: &str,
) -> Result<(Response<Incoming>, Conn), FetchError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let broken = |e: hyper::Error| FetchError::Protocol(format!("{shown}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(broken)?;
    let conn = Conn(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let response = sender.send_request(request).await.map_err(broken)?;
    Ok((response, conn))
}

/// Reads a body of at most `limit` bytes.
async fn read_body(
    response: Response<Incoming>,
    limit: usize,
    shown: &str,
) -> Result<Bytes, FetchError> {
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(FetchError::TooLarge { limit });
    }
    let initial = declared.map_or(0, |n| n as usize).min(1024 * 1024);
    let mut buf = BytesMut::with_capacity(initial);
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| FetchError::Protocol(format!("reading {shown} failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(FetchError::TooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::Ipv4Addr;
    use std::sync::Mutex;

    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const LOOPBACK_2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

    /// Plain http to 127.0.0.1 only.
    fn local() -> FetchOptions {
        FetchOptions {
            private: PrivatePolicy::AllowOnly(vec![LOOPBACK]),
            ..FetchOptions::default()
        }
    }

    /// A request a test server saw.
    #[derive(Clone, Debug)]
    struct Seen {
        method: Method,
        path: String,
        headers: http::HeaderMap,
    }

    type Log = Arc<Mutex<Vec<Seen>>>;

    /// A hyper server on `ip` answering with `handler`; returns its address
    /// and the requests it saw.
    async fn serve<F>(ip: IpAddr, handler: F) -> (SocketAddr, Log)
    where
        F: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Log::default();
        let handler = Arc::new(handler);
        let seen = log.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (handler, seen) = (handler.clone(), seen.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        seen.lock().expect("log").push(Seen {
                            method: req.method().clone(),
                            path: req.uri().to_string(),
                            headers: req.headers().clone(),
                        });
                        let response = handler(&req);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        (addr, log)
    }

    fn respond(status: u16, headers: &[(&str, &str)], body: &str) -> Response<Full<Bytes>> {
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("response")
    }

    /// A raw TCP server on 127.0.0.1: reads each request head, then hands
    /// the connection to `script`.
    async fn raw<F, Fut>(script: F) -> SocketAddr
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match tcp.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                tokio::spawn(script(tcp));
            }
        });
        addr
    }

    /// Asserts nobody connected to `listener` yet: a probe connection made
    /// now must be the first one accepted.
    async fn assert_no_connection(listener: &TcpListener) {
        let mut probe = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("probe");
        probe.write_all(b"PROBE").await.expect("probe write");
        let (mut first, _) = listener.accept().await.expect("accept");
        let mut got = [0u8; 5];
        let read = first.read_exact(&mut got).await;
        assert!(
            read.is_ok() && &got == b"PROBE",
            "the fetcher connected to the refused server"
        );
    }

    #[tokio::test]
    async fn etag_then_not_modified() {
        let (addr, log) = serve(LOOPBACK, |req| {
            if req
                .headers()
                .get(header::IF_NONE_MATCH)
                .is_some_and(|v| v == "\"v1\"")
            {
                return respond(304, &[("etag", "\"v1\"")], "");
            }
            respond(
                200,
                &[
                    ("etag", "\"v1\""),
                    ("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
                    ("content-type", "application/json"),
                ],
                r#"{"servers":{}}"#,
            )
        })
        .await;
        let fetcher = Fetcher::new().expect("fetcher");
        let url = format!("http://{addr}/registry.json");
        let first = fetcher.get(&url, &local()).await.expect("first fetch");
        assert_eq!(first.status, 200);
        assert_eq!(&first.body[..], br#"{"servers":{}}"#);
        assert_eq!(first.etag.as_deref(), Some("\"v1\""));
        assert_eq!(
            first.last_modified.as_deref(),
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        );
        assert_eq!(first.content_type.as_deref(), Some("application/json"));
        assert_eq!(first.final_url, url);

        let opts = FetchOptions {
            if_none_match: first.etag.clone(),
            if_modified_since: first.last_modified.clone(),
            ..local()
        };
        let second = fetcher.get(&url, &opts).await.expect("second fetch");
        assert_eq!(second.status, 304);
        assert!(second.body.is_empty());

        let log = log.lock().expect("log");
        assert_eq!(log.len(), 2);
        let sent = &log[1].headers;
        assert_eq!(sent["if-modified-since"], "Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(sent["host"], addr.to_string().as_str());
        assert_eq!(
            sent["user-agent"],
            concat!("berth/", env!("CARGO_PKG_VERSION"))
        );
        assert!(!sent.contains_key("accept-encoding"));
        assert!(!log[0].headers.contains_key("if-none-match"));
    }

    #[tokio::test]
    async fn loopback_refused_when_private_denied() {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let fetcher = Fetcher::new().expect("fetcher");
        let url = format!("https://127.0.0.1:{port}/r.json?token=hunter2");
        let err = fetcher
            .get(&url, &FetchOptions::default())
            .await
            .expect_err("refused");
        assert!(
            matches!(err, FetchError::PrivateAddress { addr, .. } if addr == LOOPBACK),
            "{err:?}"
        );
        assert!(err.is_connectivity());
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_no_connection(&listener).await;
    }

    #[tokio::test]
    async fn resolved_names_are_checked() {
        let fetcher = Fetcher::new().expect("fetcher");
        let err = fetcher
            .get("https://localhost:1/", &FetchOptions::default())
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, FetchError::PrivateAddress { host, addr } if host == "localhost" && addr.is_loopback()),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn private_literals_refused() {
        let fetcher = Fetcher::new().expect("fetcher");
        for url in [
            "https://10.0.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://0x7f.1/",
            "https://0.0.0.0/",
        ] {
            let err = fetcher
                .get(url, &FetchOptions::default())
                .await
                .expect_err(url);
            assert!(
                matches!(err, FetchError::PrivateAddress { .. }),
                "{url}: {err:?}"
            );
        }
        // Allowing one private address allows no other.
        let err = fetcher
            .head("http://127.0.0.2:1/", &local())
            .await
            .expect_err("refused");
        assert!(
            matches!(err, FetchError::PrivateAddress { addr, .. } if addr == LOOPBACK_2),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn plain_http_refused_when_private_denied() {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let fetcher = Fetcher::new().expect("fetcher");
        for url in [
            format!("http://127.0.0.1:{port}/"),
            "http://registry.example.com/r.json".to_owned(),
        ] {
            let err = fetcher
                .get(&url, &FetchOptions::default())
                .await
                .expect_err(&url);
            assert!(
                matches!(err, FetchError::InsecureScheme(_)),
                "{url}: {err:?}"
            );
            assert!(err.to_string().contains("https://"), "{err}");
        }
        assert_no_connection(&listener).await;
    }

    #[tokio::test]
    async fn redirect_to_other_private_address_refused() {
        let (second, second_log) = serve(LOOPBACK_2, |_| respond(200, &[], "from 127.0.0.2")).await;
        let fetcher = Fetcher::new().expect("fetcher");
        // The second server answers when its address is allowed…
        let direct = FetchOptions {
            private: PrivatePolicy::AllowOnly(vec![LOOPBACK_2]),
            ..FetchOptions::default()
        };
        let answer = fetcher
            .get(&format!("http://{second}/"), &direct)
            .await
            .expect("direct fetch");
        assert_eq!(&answer.body[..], b"from 127.0.0.2");
        // …but not through a redirect from an allowed one.
        let target = format!("http://{second}/secret");
        let (first, _) = serve(LOOPBACK, move |_| {
            respond(302, &[("location", target.as_str())], "")
        })
        .await;
        let err = fetcher
            .get(&format!("http://{first}/"), &local())
            .await
            .expect_err("refused");
        assert!(
            matches!(err, FetchError::PrivateAddress { addr, .. } if addr == LOOPBACK_2),
            "{err:?}"
        );
        assert_eq!(second_log.lock().expect("log").len(), 1);
    }

    #[tokio::test]
    async fn redirect_chains_are_bounded() {
        // /r/N redirects to /r/N-1; /r/0 answers.
        let (addr, log) = serve(LOOPBACK, |req| {
            let n: u32 = req
                .uri()
                .path()
                .trim_start_matches("/r/")
                .parse()
                .unwrap_or(0);
            if n == 0 {
                respond(200, &[], "done")
            } else {
                respond(302, &[("location", &format!("/r/{}", n - 1))], "")
            }
        })
        .await;
        let fetcher = Fetcher::new().expect("fetcher");
        let opts = FetchOptions {
            max_redirects: 3,
            ..local()
        };
        let ok = fetcher
            .get(&format!("http://{addr}/r/3"), &opts)
            .await
            .expect("three redirects");
        assert_eq!(&ok.body[..], b"done");
        assert_eq!(ok.final_url, format!("http://{addr}/r/0"));
        let err = fetcher
            .get(&format!("http://{addr}/r/4"), &opts)
            .await
            .expect_err("four redirects");
        assert!(matches!(err, FetchError::TooManyRedirects), "{err:?}");
        // HEAD follows them too.
        let status = fetcher
            .head(&format!("http://{addr}/r/2"), &opts)
            .await
            .expect("head");
        assert_eq!(status, 200);
        let log = log.lock().expect("log");
        let last = log.last().expect("requests");
        assert_eq!((&last.method, last.path.as_str()), (&Method::HEAD, "/r/0"));
    }

    #[tokio::test]
    async fn declared_length_over_limit_refused() {
        // Declares a large body and never sends it.
        let addr = raw(|mut tcp| async move {
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
                .await;
            std::future::pending::<()>().await;
        })
        .await;
        let opts = FetchOptions {
            max_bytes: 1000,
            ..local()
        };
        let err = Fetcher::new()
            .expect("fetcher")
            .get(&format!("http://{addr}/"), &opts)
            .await
            .expect_err("too large");
        assert!(
            matches!(err, FetchError::TooLarge { limit: 1000 }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn growing_chunked_body_stopped() {
        // Sends 1 KiB chunks forever.
        let addr = raw(|mut tcp| async move {
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            let mut chunk = b"400\r\n".to_vec();
            chunk.extend_from_slice(&[b'x'; 1024]);
            chunk.extend_from_slice(b"\r\n");
            while tcp.write_all(&chunk).await.is_ok() {}
        })
        .await;
        let opts = FetchOptions {
            max_bytes: 10_000,
            ..local()
        };
        let err = Fetcher::new()
            .expect("fetcher")
            .get(&format!("http://{addr}/"), &opts)
            .await
            .expect_err("too large");
        assert!(
            matches!(err, FetchError::TooLarge { limit: 10_000 }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn slow_drip_times_out() {
        // One byte of a 100-byte body every 200 ms.
        let addr = raw(|mut tcp| async move {
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                .await;
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if tcp.write_all(b"x").await.is_err() {
                    return;
                }
            }
        })
        .await;
        let opts = FetchOptions {
            timeout: Duration::from_secs(1),
            headers: vec![("Authorization".into(), "Bearer hunter2".into())],
            ..local()
        };
        let err = Fetcher::new()
            .expect("fetcher")
            .get(&format!("http://{addr}/r.json?key=hunter3"), &opts)
            .await
            .expect_err("timeout");
        assert!(matches!(err, FetchError::Timeout(_)), "{err:?}");
        let text = err.to_string();
        assert!(!text.contains("hunter"), "{text}");
    }

    #[tokio::test]
    async fn bad_urls_refused() {
        let fetcher = Fetcher::new().expect("fetcher");
        let allow = FetchOptions {
            private: PrivatePolicy::Allow,
            ..FetchOptions::default()
        };
        for url in [
            "https://user:secret@registry.example.com/r.json",
            "http://user@127.0.0.1:1/",
            "https://:secret@registry.example.com/",
            "ftp://registry.example.com/r.json",
            "file:///etc/passwd",
            "not a url",
        ] {
            let err = fetcher.get(url, &allow).await.expect_err(url);
            assert!(matches!(err, FetchError::InvalidUrl(_)), "{url}: {err:?}");
            assert!(!err.is_connectivity());
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[tokio::test]
    async fn credentials_stay_with_their_origin() {
        let (other, other_log) = serve(LOOPBACK, |_| respond(200, &[], "other")).await;
        let away = format!("http://{other}/final");
        let (home, home_log) = serve(LOOPBACK, move |req| match req.uri().path() {
            "/same" => respond(302, &[("location", "/final")], ""),
            "/away" => respond(307, &[("location", away.as_str())], ""),
            _ => respond(200, &[], "home"),
        })
        .await;
        let fetcher = Fetcher::new().expect("fetcher");
        let opts = FetchOptions {
            headers: vec![
                ("Authorization".into(), "Bearer t0ken".into()),
                ("X-Trace".into(), "1".into()),
            ],
            ..local()
        };
        let same = fetcher
            .get(&format!("http://{home}/same"), &opts)
            .await
            .expect("same origin");
        assert_eq!(&same.body[..], b"home");
        let away = fetcher
            .get(&format!("http://{home}/away"), &opts)
            .await
            .expect("other origin");
        assert_eq!(&away.body[..], b"other");

        let home_log = home_log.lock().expect("log");
        assert_eq!(home_log.len(), 3);
        for seen in home_log.iter() {
            assert_eq!(
                seen.headers["authorization"], "Bearer t0ken",
                "{}",
                seen.path
            );
        }
        let other_log = other_log.lock().expect("log");
        assert_eq!(other_log.len(), 1);
        assert!(!other_log[0].headers.contains_key("authorization"));
        assert_eq!(other_log[0].headers["x-trace"], "1");
        assert_eq!(other_log[0].headers["host"], other.to_string().as_str());
    }

    #[tokio::test]
    async fn https_verifies_the_server() {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("ca");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("leaf params")
            .signed_by(&leaf_key, &ca)
            .expect("leaf");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, Infallible>(respond(200, &[], "secure"))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        let url = format!("https://{addr}/r.json");

        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).expect("root");
        let trusting = Fetcher::new()
            .expect("fetcher")
            .with_tls(crate::tls::with_roots(roots));
        let answer = trusting.get(&url, &local()).await.expect("https fetch");
        assert_eq!(&answer.body[..], b"secure");

        let untrusting = Fetcher::new()
            .expect("fetcher")
            .with_tls(crate::tls::with_roots(rustls::RootCertStore::empty()));
        let err = untrusting.get(&url, &local()).await.expect_err("untrusted");
        assert!(matches!(err, FetchError::Protocol(_)), "{err:?}");
    }

    #[tokio::test]
    async fn post_sends_its_form_and_follows_no_redirect() {
        type Posted = Arc<Mutex<Vec<(String, String, String, Bytes)>>>;
        let posted = Posted::default();
        let seen = posted.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: http::Uri, headers: http::HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move {
                    let ct = headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock().expect("log").push((
                        method.to_string(),
                        uri.path().to_owned(),
                        ct,
                        body,
                    ));
                    if uri.path() == "/moved" {
                        return respond(307, &[("location", "/token")], "");
                    }
                    respond(
                        200,
                        &[("content-type", "application/json")],
                        r#"{"ok":true}"#,
                    )
                }
            },
        );
        let listener = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let fetcher = Fetcher::new().expect("fetcher");
        let form = b"grant_type=refresh_token&refresh_token=hunter2".to_vec();
        let ct = "application/x-www-form-urlencoded";

        let ok = fetcher
            .post(&format!("http://{addr}/token"), ct, form.clone(), &local())
            .await
            .expect("post");
        assert_eq!(ok.status, 200);
        assert_eq!(&ok.body[..], br#"{"ok":true}"#);
        assert_eq!(ok.content_type.as_deref(), Some("application/json"));
        // A redirect is the answer: the form is not sent anywhere else.
        let moved = fetcher
            .post(&format!("http://{addr}/moved"), ct, form.clone(), &local())
            .await
            .expect("post");
        assert_eq!(moved.status, 307);
        {
            let posted = posted.lock().expect("log");
            assert_eq!(posted.len(), 2, "{posted:?}");
            for (method, _, content_type, body) in posted.iter() {
                assert_eq!(method, "POST");
                assert_eq!(content_type, ct);
                assert_eq!(&body[..], &form[..]);
            }
            assert_eq!(posted[1].1, "/moved");
        }
        // The address policy holds for a POST too, and errors carry no body.
        let err = fetcher
            .post(
                &format!("http://{addr}/token"),
                ct,
                form.clone(),
                &FetchOptions::default(),
            )
            .await
            .expect_err("plain http refused");
        assert!(matches!(err, FetchError::InsecureScheme(_)), "{err:?}");
        let err = fetcher
            .post(
                &format!("https://{addr}/token"),
                ct,
                form,
                &FetchOptions::default(),
            )
            .await
            .expect_err("loopback refused");
        assert!(matches!(err, FetchError::PrivateAddress { .. }), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("hunter2"));
        assert_eq!(posted.lock().expect("log").len(), 2);
    }

    #[test]
    fn options_debug_hides_header_values() {
        let opts = FetchOptions {
            headers: vec![("Authorization".into(), "Bearer hunter2".into())],
            ..FetchOptions::default()
        };
        let text = format!("{opts:?}");
        assert!(text.contains("Authorization"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn policy() {
        let only = PrivatePolicy::AllowOnly(vec![LOOPBACK]);
        let public: IpAddr = "93.184.216.34".parse().expect("ip");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        for policy in [PrivatePolicy::Deny, PrivatePolicy::Allow, only.clone()] {
            assert!(policy.permits(public), "{policy:?}");
        }
        assert!(!PrivatePolicy::Deny.permits(LOOPBACK));
        assert!(PrivatePolicy::Allow.permits(LOOPBACK_2));
        assert!(only.permits(LOOPBACK));
        assert!(only.permits(mapped));
        assert!(!only.permits(LOOPBACK_2));
        assert!(!PrivatePolicy::Deny.allows_http());
        assert!(only.allows_http());
    }
}
