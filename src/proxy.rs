//! The MCP proxy in front of every workload, inside the berth process.
//!
//! Each running workload gets one listener on its proxy port and a few
//! tasks. Every request passes one tower stack, the same for every
//! upstream (`stack.rs` lists its layers, outermost first, in
//! `layers/`), then reaches the upstream's transport: a stdio workload is
//! bridged by a [`mux::Mux`] to streamable HTTP (`/mcp`, both MCP eras)
//! and to the legacy SSE transport (`/sse`, `/messages`); an HTTP workload,
//! local or remote, is reached through a reverse proxy. The listener
//! outlives the workload's process, so a restarted server is re-attached
//! behind the same URL and client sessions continue.

mod jsonrpc;
mod layers;
pub mod middleware;
pub(crate) mod mux;
mod outbox;
pub mod pins;
pub mod policy;
mod reverse;
mod sse;
mod stack;
mod streamable;
pub mod tools;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use berth_runtime_api::StdioHandle;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use crate::auth::{BrowserGuard, GuardError};

pub use layers::authn::Authn;
pub use middleware::{Chain, Decision, Identity, McpRequest, Middleware, MiddlewareFailure};
pub use mux::{LogSink, Mux};
pub use pins::{PinMode, Pins};
pub use policy::{Auditor, Policy};
pub use reverse::{HttpTarget, TargetError, check_header, check_header_name};
pub use tools::{Override, ToolView};

/// Settings of the per-workload proxies (`[proxy]` in berth.toml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Seconds a request may wait for the server's answer before the client
    /// gets a JSON-RPC timeout error (and the server a cancellation).
    pub request_timeout_secs: u64,
    /// Largest request body accepted, in bytes; larger ones get 413 (a
    /// declared `Content-Length` above it before the body is read). Applies
    /// to every proxy, HTTP and remote workloads included.
    pub max_body_bytes: usize,
    /// Seconds a client may take to send a request's headers, counted from
    /// the request's first byte; the connection is closed after that.
    pub header_read_timeout_secs: u64,
    /// Seconds a keep-alive connection may stay open with no request in
    /// flight. A connection still receiving a response (an open SSE stream)
    /// is never idle.
    pub idle_timeout_secs: u64,
    /// Origins (e.g. `https://app.example.com`) and host names allowed to
    /// reach a proxy bound to loopback, besides `localhost` and loopback
    /// addresses. Others are refused, against DNS rebinding.
    pub allowed_origins: Vec<String>,
    /// Seconds an idle client session is kept.
    pub session_ttl_secs: u64,
    /// Seconds between health pings of a stdio server; 0 turns them off.
    pub health_interval_secs: u64,
    /// Consecutive failed health pings after which the server is restarted.
    pub health_failures: u32,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            request_timeout_secs: 60,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout_secs: 30,
            idle_timeout_secs: 120,
            allowed_origins: Vec::new(),
            session_ttl_secs: 2 * 60 * 60,
            health_interval_secs: 30,
            health_failures: 3,
        }
    }
}

impl ProxyConfig {
    /// The browser guard of every proxy: loopback origins and the
    /// configured ones (entries with `://`) are allowed, and the configured
    /// host names (the other entries).
    pub fn browser_guard(&self) -> Result<BrowserGuard, GuardError> {
        let (origins, hosts): (Vec<String>, Vec<String>) = self
            .allowed_origins
            .iter()
            .cloned()
            .partition(|o| o.contains("://"));
        BrowserGuard::new(&origins, &hosts, true)
    }

    /// The per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }

    fn limits(&self) -> crate::listener::Limits {
        crate::listener::Limits {
            header_read: Duration::from_secs(self.header_read_timeout_secs.max(1)),
            idle: Duration::from_secs(self.idle_timeout_secs.max(1)),
        }
    }
}

/// What a proxy forwards to.
#[derive(Clone)]
pub enum Upstream {
    /// A stdio server, multiplexed.
    Stdio(Mux),
    /// An HTTP server, local or remote.
    Http(HttpTarget),
}

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy port cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

struct Running {
    addr: SocketAddr,
    upstream: Upstream,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The running proxies, by workload name.
pub struct Proxies {
    config: ProxyConfig,
    running: Mutex<HashMap<String, Running>>,
    log: std::sync::OnceLock<LogSink>,
    telemetry: std::sync::OnceLock<Arc<crate::telemetry::Telemetry>>,
}

impl Proxies {
    /// No proxies yet.
    pub fn new(config: ProxyConfig) -> Self {
        Self {
            config,
            running: Mutex::new(HashMap::new()),
            log: std::sync::OnceLock::new(),
            telemetry: std::sync::OnceLock::new(),
        }
    }

    /// Sets what proxies record their traffic into (once).
    pub fn set_telemetry(&self, telemetry: Arc<crate::telemetry::Telemetry>) {
        let _ = self.telemetry.set(telemetry);
    }

    /// Sets where proxies write their workloads' notable events (once).
    pub fn set_log_sink(&self, sink: LogSink) {
        let _ = self.log.set(sink);
    }

    /// The settings.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().expect("proxy table lock")
    }

    /// Starts the proxy of workload `name` on `addr`, unless it runs there
    /// already with the same upstream. `http` names the workload's HTTP
    /// endpoint; without it the workload is a stdio server. Its requests,
    /// whatever the upstream, pass through `chain`.
    pub async fn start(
        &self,
        name: &str,
        addr: SocketAddr,
        http: Option<HttpTarget>,
        chain: Option<Chain>,
        protection: Protection,
    ) -> Result<Upstream, ProxyError> {
        if let Some(r) = self.map().get(name)
            && r.addr == addr
            && !r.task.is_finished()
            && match (&r.upstream, &http) {
                (Upstream::Stdio(_), None) => true,
                (Upstream::Http(a), Some(b)) => a == b,
                _ => false,
            }
        {
            // A running proxy keeps its middleware chain: a change of
            // middleware comes with an edit, which stops the proxy first.
            return Ok(r.upstream.clone());
        }
        self.stop(name).await;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ProxyError::Bind { addr, source })?;
        let upstream = match http {
            Some(target) => Upstream::Http(target),
            None => Upstream::Stdio(Mux::new(
                name,
                self.config.request_timeout(),
                self.log.get().cloned(),
            )),
        };
        let stop = CancellationToken::new();
        let probe = self.telemetry.get().and_then(|t| t.probe(name));
        let app = router(name, &upstream, chain, &protection, probe, &self.config);
        let (token, limits) = (stop.clone(), self.config.limits());
        let mut tasks = vec![];
        if let Upstream::Stdio(mux) = &upstream {
            let (mux, token, ttl) = (
                mux.clone(),
                stop.clone(),
                Duration::from_secs(self.config.session_ttl_secs.max(1)),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = token.cancelled() => return,
                        () = tokio::time::sleep(ttl / 2) => { mux.reap_idle(ttl); }
                    }
                }
            }));
        }
        let span = info_span!("proxy", workload = %name, %addr);
        let task = tokio::spawn(
            async move {
                // Small JSON-RPC replies must not wait for Nagle's algorithm.
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                crate::listener::serve(listener, app, limits, token).await;
                for t in tasks {
                    t.abort();
                }
            }
            .instrument(span),
        );
        self.map().insert(
            name.to_owned(),
            Running {
                addr,
                upstream: upstream.clone(),
                stop,
                task,
            },
        );
        Ok(upstream)
    }

    /// Hands a (new) server process to the stdio proxy of `name`.
    pub fn attach(&self, name: &str, io: StdioHandle) -> bool {
        match self.map().get(name).map(|r| r.upstream.clone()) {
            Some(Upstream::Stdio(mux)) => {
                mux.attach(io);
                true
            }
            _ => false,
        }
    }

    /// Makes a stdio workload's proxy let go of its server connection (see
    /// [`Mux::release`]).
    pub async fn release(&self, name: &str) {
        let mux = match self.map().get(name).map(|r| r.upstream.clone()) {
            Some(Upstream::Stdio(mux)) => mux,
            _ => return,
        };
        mux.release().await;
    }

    /// The multiplexer of a stdio workload's proxy.
    pub fn mux(&self, name: &str) -> Option<Mux> {
        match self.map().get(name).map(|r| r.upstream.clone()) {
            Some(Upstream::Stdio(mux)) => Some(mux),
            _ => None,
        }
    }

    /// Stops the proxy of `name` (its port is free when this returns).
    pub async fn stop(&self, name: &str) {
        let Some(r) = self.map().remove(name) else {
            return;
        };
        r.stop.cancel();
        if let Upstream::Stdio(mux) = &r.upstream {
            // Ends the sessions' SSE streams, which graceful shutdown waits for.
            mux.close_all_sessions();
        }
        // In-flight requests get a moment; long-lived streams are cut.
        if tokio::time::timeout(Duration::from_secs(2), r.task)
            .await
            .is_err()
        {
            warn!(workload = %name, "Proxy did not stop in time; abandoned.");
        }
    }

    /// Stops every proxy.
    pub async fn stop_all(&self) {
        let names: Vec<String> = self.map().keys().cloned().collect();
        for n in names {
            self.stop(&n).await;
        }
    }
}

/// The HTTP surface of one proxy: the stack of `stack.rs` in front of the
/// upstream's transport, `chain` included.
pub fn router(
    name: &str,
    upstream: &Upstream,
    chain: Option<Chain>,
    protection: &Protection,
    probe: Option<crate::telemetry::Probe>,
    config: &ProxyConfig,
) -> Router {
    stack::build(name, upstream, chain, protection, probe, config)
}

/// berth's own protections of one proxy, built from the workload's
/// settings: who may call (authentication), and what they may do and see
/// (authorization, tool filter and overrides, pinning, audit).
#[derive(Debug, Clone, Default)]
pub struct Protection {
    /// Authentication of callers; `None` lets anyone who reaches the port in.
    pub authn: Option<Arc<Authn>>,
    /// The policy on messages; `None` when it would do nothing.
    pub policy: Option<Arc<Policy>>,
}

async fn health(mux: Mux) -> Response {
    match mux.ping().await {
        Ok(rtt) => (
            StatusCode::OK,
            axum::Json(json!({"status": "healthy", "sessions": mux.session_count(),
                "mcp": {"available": true, "response_time_ms": rtt.as_millis()}})),
        )
            .into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unhealthy", "mcp": {"available": false, "error": why}})),
        )
            .into_response(),
    }
}
