//! The egress proxy: how a workload with an outbound allowlist reaches the
//! hosts it may reach, and only those.
//!
//! Such a workload runs on its own isolated network, which has no route out
//! (see `NetworkAccess::Isolated`). The only address it can reach is the
//! host's on that network; berth listens there with one small HTTP proxy per
//! workload, and the workload gets `HTTP_PROXY`/`HTTPS_PROXY` pointing at it.
//! The proxy handles `CONNECT host:port` tunnels and absolute-URI `http://`
//! requests; it resolves names itself (hickory-resolver, plus the static
//! [`EgressConfig::hosts`]) and connects only when the destination matches
//! the workload's [`EgressPolicy`], answering 403 otherwise and writing the
//! refusal to the workload's log.
//!
//! What is enforced: the engine forwards nothing out of the isolated
//! network, so a program that ignores the proxy variables reaches no other
//! machine or container. What is not: the host is the network's gateway, so
//! services listening on any of the host's own addresses stay reachable
//! (unless a host firewall says otherwise), and so does the engine's DNS
//! server on that network.
//! Addresses that DNS answers with loopback, link-local, multicast or
//! unspecified addresses are refused, so that a public name cannot point the
//! proxy at the host itself; IP literals and static hosts are taken as given.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use hickory_resolver::TokioResolver;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HOST, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};
use tracing::{debug, info, warn};

/// Where a workload's egress refusals and errors are written: `(workload, line)`.
pub type LogSink = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Settings of the egress proxies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// The port each proxy listens on, at the host's address on the
    /// workload's isolated network (every such network has its own address,
    /// so one port serves them all). 0 picks a free port per proxy, which a
    /// workload running across a berth restart would no longer find: for
    /// tests only.
    pub port: u16,
    /// Names the proxies resolve without DNS, as `/etc/hosts` entries do:
    /// `{"api.example.com" = ["192.0.2.7"]}`. They are trusted as given.
    pub hosts: BTreeMap<String, Vec<IpAddr>>,
    /// How long connecting to a destination may take, in seconds.
    pub connect_timeout_secs: u64,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            port: 3128,
            hosts: BTreeMap::new(),
            connect_timeout_secs: 10,
        }
    }
}

/// The outbound allowlist of one workload, in ToolHive's terms: hosts only
/// allow those hosts on any port, ports only allow any host on those ports,
/// both must match when both are given. A host entry `example.com` matches
/// that name exactly; `.example.com` (or `*.example.com`) matches it and its
/// subdomains. Names compare case-insensitively, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    hosts: Vec<String>,
    ports: Vec<u16>,
}

impl EgressPolicy {
    /// Validates and normalizes the lists; at least one must be non-empty.
    pub fn new(hosts: &[String], ports: &[u16]) -> Result<Self, String> {
        if hosts.is_empty() && ports.is_empty() {
            return Err("an allowlist needs allow_host or allow_port entries".to_owned());
        }
        if ports.contains(&0) {
            return Err("allow_port: 0 is not a port".to_owned());
        }
        let hosts = hosts
            .iter()
            .map(|h| normalize_pattern(h).ok_or_else(|| format!("allow_host: invalid host `{h}`")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            hosts,
            ports: ports.to_vec(),
        })
    }

    /// Whether `host` (a name or an IP literal) may be reached on `port`.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = normalize_host(host);
        let host_ok = self.hosts.is_empty()
            || self.hosts.iter().any(|h| match h.strip_prefix('.') {
                Some(domain) => host == domain || host.ends_with(h.as_str()),
                None => host == *h,
            });
        let port_ok = self.ports.is_empty() || self.ports.contains(&port);
        host_ok && port_ok
    }
}

fn normalize_host(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// A host pattern as stored: lower case, `*.x` as `.x`, IP literals
/// without brackets.
fn normalize_pattern(pattern: &str) -> Option<String> {
    let p = pattern.trim();
    let p = p.strip_prefix('*').unwrap_or(p);
    let (dot, name) = match p.strip_prefix('.') {
        Some(rest) => (".", rest),
        None => ("", p),
    };
    let name = normalize_host(name);
    if name.is_empty() {
        return None;
    }
    if name.parse::<IpAddr>().is_ok() {
        return (dot.is_empty()).then_some(name);
    }
    let valid = name.split('.').all(|l| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    valid.then(|| format!("{dot}{name}"))
}

/// The environment that points a workload at its egress proxy at `addr`.
pub fn proxy_env(addr: SocketAddr) -> BTreeMap<String, String> {
    let url = format!("http://{addr}");
    let mut env = BTreeMap::new();
    for key in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        env.insert(key.to_owned(), url.clone());
    }
    // Nothing bypasses the proxy: there is no other way out.
    env.insert("NO_PROXY".to_owned(), String::new());
    env.insert("no_proxy".to_owned(), String::new());
    env
}

/// The egress proxies of all workloads; see the module docs.
pub struct Egress {
    shared: Arc<Shared>,
    running: Mutex<BTreeMap<String, Running>>,
}

struct Shared {
    config: EgressConfig,
    resolver: OnceLock<Result<TokioResolver, String>>,
}

struct Running {
    addr: SocketAddr,
    policy: Arc<RwLock<Arc<EgressPolicy>>>,
    task: AbortHandle,
}

impl Egress {
    /// No proxies yet.
    pub fn new(config: EgressConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                resolver: OnceLock::new(),
            }),
            running: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs workload `name`'s proxy on `ip` with `policy` and returns its
    /// address. A proxy already running for `name` on `ip` keeps its
    /// listener and takes the new policy.
    pub fn start(
        &self,
        name: &str,
        ip: IpAddr,
        policy: EgressPolicy,
        log: LogSink,
    ) -> std::io::Result<SocketAddr> {
        let mut running = self.lock();
        if let Some(r) = running.get(name) {
            if r.addr.ip() == ip && !r.task.is_finished() {
                *r.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
                return Ok(r.addr);
            }
            r.task.abort();
            running.remove(name);
        }
        let listener = bind(SocketAddr::new(ip, self.shared.config.port))?;
        let addr = listener.local_addr()?;
        let policy = Arc::new(RwLock::new(Arc::new(policy)));
        let ctx = Arc::new(Ctx {
            name: name.to_owned(),
            policy: policy.clone(),
            shared: self.shared.clone(),
            log,
        });
        let task = tokio::spawn(serve(listener, ctx)).abort_handle();
        info!(workload = %name, addr = %addr, "Egress proxy listening.");
        running.insert(name.to_owned(), Running { addr, policy, task });
        Ok(addr)
    }

    /// Stops workload `name`'s proxy and its connections, if it runs.
    pub fn stop(&self, name: &str) {
        if let Some(r) = self.lock().remove(name) {
            r.task.abort();
            debug!(workload = %name, "Egress proxy stopped.");
        }
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        for r in self.lock().values() {
            r.task.abort();
        }
    }
}

/// A listener on `addr` that may bind before the address exists on the
/// host (`IP_FREEBIND`): some engines configure the host side of a network
/// only while a container runs on it.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv4() {
        socket.set_freebind_v4(true)?;
    } else {
        socket.set_freebind_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    TcpListener::from_std(socket.into())
}

/// What one proxy's connections share.
struct Ctx {
    name: String,
    policy: Arc<RwLock<Arc<EgressPolicy>>>,
    shared: Arc<Shared>,
    log: LogSink,
}

impl Ctx {
    fn policy(&self) -> Arc<EgressPolicy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn refuse(&self, what: &str, why: &str) -> Response<Body> {
        info!(workload = %self.name, destination = %what, reason = %why, "Egress refused.");
        (self.log)(&self.name, &format!("egress refused: {what} ({why})"));
        let mut resp = reply(
            StatusCode::FORBIDDEN,
            &format!("berth egress: {what} is not allowed ({why})\n"),
        );
        // A refused client gets no second try on this connection.
        resp.headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }

    /// Resolves `host` and connects to it on `port`.
    async fn dial(&self, host: &str, port: u16) -> Result<TcpStream, String> {
        let host = normalize_host(host);
        let ips = self.resolve(&host).await?;
        let limit = Duration::from_secs(self.shared.config.connect_timeout_secs.max(1));
        let mut last = format!("no usable address for `{host}`");
        for ip in ips {
            let addr = SocketAddr::new(ip, port);
            match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(err)) => last = format!("connecting to {addr}: {err}"),
                Err(_) => last = format!("connecting to {addr}: timed out"),
            }
        }
        Err(last)
    }

    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        if let Some(ips) = self.shared.config.hosts.get(host) {
            return Ok(ips.clone());
        }
        let resolver = self
            .shared
            .resolver
            .get_or_init(|| {
                TokioResolver::builder_tokio()
                    .map(|b| b.build())
                    .map_err(|e| format!("no DNS configuration: {e}"))
                    .and_then(|r| r.map_err(|e| format!("no DNS resolver: {e}")))
            })
            .as_ref()
            .map_err(Clone::clone)?;
        let answer = resolver
            .lookup_ip(host)
            .await
            .map_err(|e| format!("resolving `{host}`: {e}"))?;
        let ips: Vec<IpAddr> = answer
            .iter()
            .filter(|ip| {
                !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || is_link_local(ip))
            })
            .collect();
        if ips.is_empty() {
            return Err(format!("`{host}` resolves to no public address"));
        }
        Ok(ips)
    }
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

fn reply(status: StatusCode, text: &str) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(text.to_owned()))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

async fn serve(listener: TcpListener, ctx: Arc<Ctx>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let ctx = ctx.clone();
                    conns.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let ctx = ctx.clone();
                            async move { Ok::<_, Infallible>(handle(req, ctx).await) }
                        });
                        let served = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await;
                        if let Err(err) = served {
                            debug!(peer = %peer, error = %err, "Egress connection ended with an error.");
                        }
                    });
                }
                Err(err) => {
                    warn!(workload = %ctx.name, error = %err, "Egress proxy cannot accept.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn handle(req: Request<Incoming>, ctx: Arc<Ctx>) -> Response<Body> {
    if req.method() == Method::CONNECT {
        return tunnel(req, ctx).await;
    }
    forward(req, ctx).await
}

/// `CONNECT host:port`: a byte tunnel to an allowed destination.
async fn tunnel(req: Request<Incoming>, ctx: Arc<Ctx>) -> Response<Body> {
    let Some((host, port)) = req
        .uri()
        .authority()
        .and_then(|a| Some((a.host().to_owned(), a.port_u16()?)))
    else {
        return reply(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n");
    };
    let what = format!("CONNECT {host}:{port}");
    if !ctx.policy().allows(&host, port) {
        return ctx.refuse(&what, "not in the allowlist");
    }
    let mut upstream = match ctx.dial(&host, port).await {
        Ok(s) => s,
        Err(why) => {
            (ctx.log)(&ctx.name, &format!("egress failed: {what}: {why}"));
            return reply(StatusCode::BAD_GATEWAY, &format!("berth egress: {why}\n"));
        }
    };
    debug!(workload = %ctx.name, destination = %what, "Egress tunnel opened.");
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            Err(err) => debug!(error = %err, "The egress tunnel was not upgraded."),
        }
    });
    Response::new(Full::new(Bytes::new()).map_err(|n| match n {}).boxed())
}

/// Headers that belong to one hop and are not forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// An absolute-URI `http://` request, forwarded to an allowed origin.
async fn forward(req: Request<Incoming>, ctx: Arc<Ctx>) -> Response<Body> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("http") {
        return reply(
            StatusCode::BAD_REQUEST,
            "berth egress forwards absolute http:// requests and CONNECT tunnels only\n",
        );
    }
    let Some(host) = uri.host().map(str::to_owned) else {
        return reply(StatusCode::BAD_REQUEST, "the request URL has no host\n");
    };
    let port = uri.port_u16().unwrap_or(80);
    let what = format!("{} http://{host}:{port}", req.method());
    if !ctx.policy().allows(&host, port) {
        return ctx.refuse(&what, "not in the allowlist");
    }
    let stream = match ctx.dial(&host, port).await {
        Ok(s) => s,
        Err(why) => {
            (ctx.log)(&ctx.name, &format!("egress failed: {what}: {why}"));
            return reply(StatusCode::BAD_GATEWAY, &format!("berth egress: {why}\n"));
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(err) => return reply(StatusCode::BAD_GATEWAY, &format!("berth egress: {err}\n")),
    };
    tokio::spawn(conn);
    let (mut parts, body) = req.into_parts();
    let named: Vec<String> = parts
        .headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    for h in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        parts.headers.remove(h);
    }
    if !parts.headers.contains_key(HOST)
        && let Some(authority) = uri.authority()
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(HOST, value);
    }
    parts.uri = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .expect("a path taken from a valid URI");
    debug!(workload = %ctx.name, destination = %what, "Egress request forwarded.");
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(resp) => resp.map(BodyExt::boxed),
        Err(err) => reply(StatusCode::BAD_GATEWAY, &format!("berth egress: {err}\n")),
    }
}

#[cfg(test)]
mod tests;
