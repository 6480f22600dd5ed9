//! The reverse proxy in front of HTTP workloads (`sse` and
//! `streamable-http` transports, local or remote), innermost in the stack:
//! requests and streamed responses pass through as the layers in front
//! leave them (unchanged, session ids included, when no layer looks into
//! them).

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::uri::Scheme;
use axum::http::{HeaderName, HeaderValue, Uri, header};
use axum::response::Response;
use futures::future::{BoxFuture, FutureExt};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::Service;

use super::layers::rescue::RequestError;

/// Where an HTTP workload's proxy forwards requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// `http` or `https`.
    scheme: Scheme,
    /// `host:port` (IPv6 hosts bracketed), also sent as `Host`.
    authority: String,
    /// The remote URL's query, put before the client's own query.
    query: Option<String>,
    /// Headers set on every forwarded request (remote workloads).
    headers: Vec<(HeaderName, HeaderValue)>,
    /// A server elsewhere, not one berth runs.
    remote: bool,
}

/// Why a remote URL or header cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetError {
    /// The URL does not parse or is not absolute.
    #[error("invalid url `{0}`: {1}")]
    Url(String, &'static str),
    /// A header name is not a valid HTTP header name, or berth sets it itself.
    #[error("header `{0}` cannot be set: {1}")]
    HeaderName(String, &'static str),
    /// A header value is not a valid HTTP header value.
    #[error("the value of header `{0}` is not a valid HTTP header value")]
    HeaderValue(String),
}

/// Headers a workload configuration may not set: berth or the HTTP
/// connection own them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "http2-settings",
    "transfer-encoding",
    "content-length",
    "forwarded",
    "x-real-ip",
];

/// Checks the name of a header a workload configuration wants to send
/// upstream: a valid HTTP header name that berth does not set itself.
pub fn check_header_name(name: &str) -> Result<HeaderName, TargetError> {
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str())
        || lower.starts_with("proxy-")
        || lower.starts_with("x-forwarded-")
    {
        return Err(TargetError::HeaderName(
            name.to_owned(),
            "hop-by-hop, forwarding and framing headers are set by berth",
        ));
    }
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| TargetError::HeaderName(name.to_owned(), "not a valid header name"))
}

/// Checks a header a workload configuration wants to send upstream.
pub fn check_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), TargetError> {
    let header_name = check_header_name(name)?;
    let header_value =
        HeaderValue::from_str(value).map_err(|_| TargetError::HeaderValue(name.to_owned()))?;
    Ok((header_name, header_value))
}

impl HttpTarget {
    /// A server berth runs, listening on `host:port`.
    pub fn local(host: &str, port: u16) -> Self {
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Self {
            scheme: Scheme::HTTP,
            authority,
            query: None,
            headers: Vec::new(),
            remote: false,
        }
    }

    /// A remote server at `url` (`http` or `https`), sent `headers` with
    /// every request.
    pub fn remote(url: &str, headers: &[(String, String)]) -> Result<Self, TargetError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| TargetError::Url(url.to_owned(), "not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            _ => return Err(TargetError::Url(url.to_owned(), "use http:// or https://")),
        };
        let authority = uri
            .authority()
            .ok_or(TargetError::Url(url.to_owned(), "no host"))?;
        if authority.as_str().contains('@') {
            return Err(TargetError::Url(
                url.to_owned(),
                "credentials in the URL are not supported; send them as a header",
            ));
        }
        if authority.host().is_empty() {
            return Err(TargetError::Url(url.to_owned(), "no host"));
        }
        let headers = headers
            .iter()
            .map(|(n, v)| check_header(n, v))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            scheme,
            authority: authority.as_str().to_owned(),
            query: uri.query().filter(|q| !q.is_empty()).map(str::to_owned),
            headers,
            remote: true,
        })
    }

    /// Also sends header `name` with `value`, a secret's value, on every
    /// request (replacing a configured header of that name). The value is
    /// marked sensitive: `Debug` shows no value and HTTP/2 never indexes
    /// it. An error names the header, never the value.
    pub fn with_secret_header(mut self, name: &str, value: &str) -> Result<Self, TargetError> {
        let (name, mut value) = check_header(name, value)?;
        value.set_sensitive(true);
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        Ok(self)
    }

    /// The path clients use on the proxy for `url`: the remote URL's path,
    /// or empty for `/`.
    pub fn path_of(url: &str) -> Option<String> {
        let uri: Uri = url.parse().ok()?;
        uri.authority()?;
        let path = uri.path();
        Some(if path == "/" {
            String::new()
        } else {
            path.to_owned()
        })
    }
}

/// Where an HTTP workload listens, and the client that reaches it: the
/// transport of an HTTP upstream.
#[derive(Clone)]
pub(crate) struct ReverseProxy {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    target: Arc<HttpTarget>,
    host: HeaderValue,
    /// Largest request body forwarded, in bytes.
    max_body: usize,
}

impl ReverseProxy {
    /// A proxy to `target` that forwards request bodies of up to
    /// `max_body` bytes.
    pub(crate) fn new(target: &HttpTarget, max_body: usize) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(if target.scheme == Scheme::HTTPS {
                (*crate::tls::client_config()).clone()
            } else {
                crate::tls::with_roots(rustls::RootCertStore::empty())
            })
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            host: HeaderValue::from_str(&target.authority).expect("authorities are valid headers"),
            target: Arc::new(target.clone()),
            max_body,
        }
    }
}

/// The upstream URI of a client request for `path_and_query`.
fn upstream_uri(t: &HttpTarget, path_and_query: &str) -> Option<Uri> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let query = match (&t.query, query.filter(|q| !q.is_empty())) {
        (Some(a), Some(b)) => format!("?{a}&{b}"),
        (Some(a), None) => format!("?{a}"),
        (None, Some(b)) => format!("?{b}"),
        (None, None) => String::new(),
    };
    format!("{}://{}{path}{query}", t.scheme, t.authority)
        .parse()
        .ok()
}

impl Service<Request> for ReverseProxy {
    type Response = Response;
    type Error = RequestError;
    type Future = BoxFuture<'static, Result<Response, RequestError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), RequestError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        forward(self.clone(), req).boxed()
    }
}

/// Forwards any request to the workload.
async fn forward(s: ReverseProxy, mut req: Request) -> Result<Response, RequestError> {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let uri = upstream_uri(&s.target, &path).ok_or(RequestError::Path)?;
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    headers.insert(header::HOST, s.host.clone());
    for h in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "upgrade",
        "te",
    ] {
        headers.remove(h);
    }
    if s.target.remote {
        // The remote server has no business with the proxy's own address.
        headers.remove("x-forwarded-host");
        for (name, value) in &s.target.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
    // A body without a declared length (chunked) is cut at the limit; one
    // with a declared length over it never gets here (`check_length`).
    let req = req.map(|body| Body::new(http_body_util::Limited::new(body, s.max_body)));
    match s.client.request(req).await {
        Ok(resp) => Ok(resp.map(Body::new)),
        Err(err) if over_limit(&err) => Err(RequestError::TooLarge(s.max_body)),
        Err(err) => {
            let why = std::error::Error::source(&err)
                .map_or_else(|| err.to_string(), |src| format!("{err}: {src}"));
            Err(RequestError::Unreachable(why))
        }
    }
}

/// Whether a forwarding failed because the client's body was over the limit.
fn over_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls() {
        let t = HttpTarget::remote("https://mcp.example.com/v1/mcp?tenant=a", &[]).unwrap();
        assert_eq!(t.scheme, Scheme::HTTPS);
        assert_eq!(t.authority, "mcp.example.com");
        assert_eq!(
            upstream_uri(&t, "/v1/mcp?x=1").unwrap().to_string(),
            "https://mcp.example.com/v1/mcp?tenant=a&x=1"
        );
        assert_eq!(
            upstream_uri(&t, "/messages").unwrap().to_string(),
            "https://mcp.example.com/messages?tenant=a"
        );
        let local = HttpTarget::local("::1", 8080);
        assert_eq!(
            upstream_uri(&local, "/mcp").unwrap().to_string(),
            "http://[::1]:8080/mcp"
        );
        for bad in [
            "ftp://x/",
            "/relative",
            "http://user:pw@host/",
            "nonsense url",
        ] {
            assert!(HttpTarget::remote(bad, &[]).is_err(), "{bad}");
        }
        assert_eq!(
            HttpTarget::path_of("http://h:1/").as_deref(),
            Some(""),
            "a bare slash counts as no path"
        );
        assert_eq!(
            HttpTarget::path_of("http://h:1/sse?x=1").as_deref(),
            Some("/sse")
        );
    }

    #[test]
    fn headers_are_checked() {
        assert!(check_header("X-Tenant", "a").is_ok());
        assert!(check_header("Authorization", "Bearer x").is_ok());
        for bad in [
            "Host",
            "content-length",
            "X-Forwarded-For",
            "Proxy-Authorization",
        ] {
            assert!(
                matches!(check_header(bad, "v"), Err(TargetError::HeaderName(..))),
                "{bad}"
            );
        }
        assert!(matches!(
            check_header("X-A", "line\nbreak"),
            Err(TargetError::HeaderValue(_))
        ));
        assert!(check_header("bad name", "v").is_err());
        assert!(check_header_name("X-Api-Key").is_ok());
        assert!(check_header_name("Connection").is_err());
    }

    #[test]
    fn secret_headers_are_sensitive_and_replace_configured_ones() {
        let plain = [("X-Key".to_owned(), "plain".to_owned())];
        let t = HttpTarget::remote("https://mcp.example.com/mcp", &plain)
            .unwrap()
            .with_secret_header("x-key", "s3cret-value")
            .unwrap()
            .with_secret_header("Authorization", "Bearer s3cret-token")
            .unwrap();
        assert_eq!(t.headers.len(), 2, "{:?}", t.headers);
        assert!(t.headers.iter().all(|(_, v)| v.is_sensitive()));
        assert_eq!(t.headers[0].1, "s3cret-value");
        let shown = format!("{t:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let err = HttpTarget::remote("https://mcp.example.com/mcp", &[])
            .unwrap()
            .with_secret_header("X-Key", "line\nbreak s3cret")
            .unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(
            HttpTarget::remote("https://mcp.example.com/mcp", &[])
                .unwrap()
                .with_secret_header("Host", "v")
                .is_err()
        );
    }
}
