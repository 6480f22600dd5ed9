//! Outbound HTTP of plugins (`wasi:http/outgoing-handler`), guarded: only
//! to hosts the plugin's permissions grant, with names resolved by berth
//! (hickory-resolver) and every resolved address checked, so a granted name
//! that resolves to a loopback, private or link-local address is refused
//! unless `allow_private` is set (SSRF and DNS-rebinding guard). berth then
//! connects to the address it checked, never resolving twice.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::net::is_private;

/// How long berth waits for a connection to a plugin's destination.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One granted destination: a host name (or `*.suffix` for any subdomain,
/// or an IP literal) and an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostRule {
    host: String,
    port: Option<u16>,
}

impl HostRule {
    /// Parses `host`, `host:port`, `*.suffix[:port]`, `[v6]:port`.
    pub(crate) fn parse(rule: &str) -> Result<Self, String> {
        let rule = rule.trim().to_ascii_lowercase();
        let (host, port) = if let Some(rest) = rule.strip_prefix('[') {
            let (h, tail) = rest
                .split_once(']')
                .ok_or_else(|| format!("invalid host rule `{rule}`"))?;
            let port = match tail.strip_prefix(':') {
                Some(p) => Some(p.parse().map_err(|_| format!("invalid port in `{rule}`"))?),
                None if tail.is_empty() => None,
                None => return Err(format!("invalid host rule `{rule}`")),
            };
            (h.to_owned(), port)
        } else if rule.matches(':').count() > 1 {
            (rule.clone(), None) // a bare IPv6 address
        } else {
            match rule.split_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    Some(p.parse().map_err(|_| format!("invalid port in `{rule}`"))?),
                ),
                None => (rule.clone(), None),
            }
        };
        let bare = host.strip_prefix("*.").unwrap_or(&host);
        if bare.is_empty()
            || !bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        {
            return Err(format!("invalid host rule `{rule}`"));
        }
        Ok(Self { host, port })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match self.host.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|head| head.ends_with('.') && head.len() > 1),
            None => self.host == host,
        }
    }
}

/// A plugin's outbound permissions and the means to use them.
#[derive(Clone)]
pub(crate) struct Outbound {
    plugin: Arc<str>,
    rules: Arc<[HostRule]>,
    allow_private: bool,
    resolver: Arc<hickory_resolver::TokioResolver>,
}

impl Outbound {
    pub(crate) fn new(
        plugin: Arc<str>,
        rules: Arc<[HostRule]>,
        allow_private: bool,
        resolver: Arc<hickory_resolver::TokioResolver>,
    ) -> Self {
        Self {
            plugin,
            rules,
            allow_private,
            resolver,
        }
    }

    fn deny(&self, why: &str) -> HttpError {
        tracing::warn!(plugin = %self.plugin, "Plugin outbound request refused: {why}.");
        HttpError::HttpRequestDenied
    }

    /// Checks the destination and returns the addresses to connect to.
    async fn destination(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, HttpError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let lower = host.to_ascii_lowercase();
        if !self.rules.iter().any(|r| r.matches(&lower, port)) {
            return Err(self.deny(&format!("{lower}:{port} is not granted")));
        }
        let ips: Vec<IpAddr> = match lower.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self
                .resolver
                .lookup_ip(lower.as_str())
                .await
                .map_err(|e| {
                    tracing::warn!(plugin = %self.plugin, host = %lower, error = %e, "Plugin destination does not resolve.");
                    HttpError::DnsError {
                        rcode: None,
                        info_code: None,
                    }
                })?
                .iter()
                .collect(),
        };
        if ips.is_empty() {
            return Err(HttpError::DestinationNotFound);
        }
        // Every answer must pass, or a rebinding name could alternate.
        if !self.allow_private
            && let Some(ip) = ips.iter().find(|ip| is_private(**ip))
        {
            return Err(self.deny(&format!(
                "{lower} resolves to the private address {ip} and allow_private is off"
            )));
        }
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }

    /// Connects to the first of the checked addresses that answers.
    async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, HttpError> {
        let mut last = HttpError::DestinationUnavailable;
        for addr in addrs {
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => return Ok(tcp),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = HttpError::ConnectionRefused;
                }
                Ok(Err(e)) => last = HttpError::Connect(e),
                Err(_) => last = HttpError::ConnectionTimeout,
            }
        }
        Err(last)
    }

    async fn send(
        self,
        mut req: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<(http::Response<WasiBody>, BoxedIo), HttpError> {
        let uri = req.uri().clone();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri
            .host()
            .ok_or(HttpError::HttpRequestUriInvalid)?
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addrs = self.destination(&host, port).await?;
        let connect_timeout = options
            .and_then(|o| o.connect_timeout)
            .unwrap_or(CONNECT_TIMEOUT)
            .min(CONNECT_TIMEOUT);
        let tcp = Self::connect(&addrs, connect_timeout).await?;
        let _ = tcp.set_nodelay(true);
        *req.uri_mut() = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        if https {
            let name = rustls::pki_types::ServerName::try_from(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            )
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
            let tls = tokio_rustls::TlsConnector::from(crate::tls::client_config())
                .connect(name, tcp)
                .await
                .map_err(HttpError::Tls)?;
            exchange(TokioIo::new(tls), req).await
        } else {
            exchange(TokioIo::new(tcp), req).await
        }
    }
}

type BoxedIo = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

/// One HTTP/1.1 request on a fresh connection.
async fn exchange<IO>(
    io: IO,
    req: http::Request<WasiBody>,
) -> Result<(http::Response<WasiBody>, BoxedIo), HttpError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(conn);
    let resp: http::Response<Incoming> = sender.send_request(req).await?;
    let resp = resp.map(|body| body.map_err(HttpError::from).boxed_unsync());
    let io: BoxedIo = Box::new(async move {
        match driver.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(HttpError::from(e)),
            Err(_) => Err(HttpError::ConnectionTerminated),
        }
    });
    Ok((resp, io))
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, BoxedIo), HttpError>> + Send>
    {
        drop(fut);
        let this = self.clone();
        Box::new(this.send(request, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let r = |s: &str| HostRule::parse(s).expect(s);
        assert!(r("vault.example:8200").matches("vault.example", 8200));
        assert!(!r("vault.example:8200").matches("vault.example", 80));
        assert!(r("vault.example").matches("vault.example", 443));
        assert!(!r("vault.example").matches("evil-vault.example", 443));
        assert!(r("*.example.com").matches("a.example.com", 443));
        assert!(r("*.example.com").matches("a.b.example.com", 443));
        assert!(!r("*.example.com").matches("example.com", 443));
        assert!(!r("*.example.com").matches("badexample.com", 443));
        assert!(r("[::1]:80").matches("::1", 80));
        assert!(r("127.0.0.1:9").matches("127.0.0.1", 9));
        assert!(HostRule::parse("a b").is_err());
        assert!(HostRule::parse("host:port").is_err());
        assert!(HostRule::parse("").is_err());
    }
}
