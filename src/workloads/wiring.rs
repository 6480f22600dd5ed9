//! What surrounds a running server: its proxy (with the middleware chain),
//! its stdio attachment, its egress proxy.

use std::net::IpAddr;
use std::sync::Arc;

use berth_runtime_api::{RuntimeError, WorkloadName};

use super::model::{MiddlewareSpec, Upstream, Workload};
use super::permissions::Network;
use super::types::HeaderForward;
use super::*;
use crate::proxy::{Chain, HttpTarget, TargetError};

impl Workloads {
    /// The middleware chain of a workload (global plugins first).
    pub(super) fn chain_for(&self, config: &Workload) -> Result<Option<Chain>, String> {
        let Some(plugins) = self.plugins() else {
            return Ok(None);
        };
        let attachments: Vec<(String, Option<serde_json::Value>)> = config
            .middleware
            .iter()
            .map(|m| match m {
                MiddlewareSpec::Wasm(w) => (w.plugin.clone(), w.config.clone()),
            })
            .collect();
        plugins
            .chain(&attachments)
            .map_err(|e| format!("middleware cannot be set up: {e}"))
    }

    /// Runs the egress proxy of a workload with an outbound allowlist, on
    /// the host's address of its isolated network, and returns the proxy's
    /// address; stops a leftover proxy of a workload without one.
    pub(super) async fn start_egress(
        &self,
        name: &WorkloadName,
        config: &Workload,
    ) -> Result<Option<std::net::SocketAddr>, RuntimeError> {
        let access = access_of(config).map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
        let Network::Allowlist(policy) = access.network else {
            self.inner.egress.stop(name.as_str());
            return Ok(None);
        };
        let ip = self.backend_for(config)?.isolated_network(name).await?;
        let weak = Arc::downgrade(&self.inner);
        let log: crate::egress::LogSink = Arc::new(move |n: &str, line: &str| {
            if let (Some(inner), Ok(n)) = (weak.upgrade(), WorkloadName::parse(n)) {
                Workloads { inner }.wlog(&n, line);
            }
        });
        let addr = self
            .inner
            .egress
            .start(name.as_str(), ip, policy, log)
            .map_err(|e| RuntimeError::backend(format!("starting the egress proxy on {ip}"), e))?;
        Ok(Some(addr))
    }

    /// Binds the workload's proxy port (a no-op if it is bound already).
    /// An HTTP workload is reached at `endpoint` (a container's published
    /// port) or else at its target port on the host.
    pub(super) async fn start_proxy(
        &self,
        name: &WorkloadName,
        config: &Workload,
        endpoint: Option<std::net::SocketAddr>,
    ) -> Result<(), String> {
        // A stored host that is not loopback (a hand-edited or older state
        // file) never exposes a proxy without authentication: it is bound
        // to 127.0.0.1 instead.
        let host = if config.host.is_loopback() || config.protection.oidc.is_some() {
            config.host
        } else {
            IpAddr::from([127, 0, 0, 1])
        };
        let addr = std::net::SocketAddr::new(host, config.port);
        let http = match &config.upstream {
            Upstream::Remote { url, headers } => {
                Some(self.remote_target(url, headers.as_ref()).await?)
            }
            Upstream::Stdio => None,
            Upstream::Local { host, port } => Some(match endpoint {
                Some(ep) => HttpTarget::local(&ep.ip().to_string(), ep.port()),
                None => HttpTarget::local(host, *port),
            }),
        };
        let chain = self.chain_for(config)?;
        // Built whenever the proxy starts: a policy file may have changed.
        // (A proxy that runs keeps its own: see `Proxies::start`.) A proxy
        // whose protections cannot be built does not start.
        let protection = self
            .inner
            .settings
            .guarding
            .protection(name.as_str(), &config.protection)
            .map_err(|e| format!("proxy cannot start: {e}"))?;
        self.inner
            .proxies
            .start(name.as_str(), addr, http, chain, protection)
            .await
            .map(drop)
            .map_err(|e| format!("proxy cannot start: {}", error_chain(&e)))
    }

    /// Where a remote workload's proxy forwards: its URL, with its
    /// plaintext headers and the current values of its header secrets
    /// (read now, so a rotated value is picked up by a restart; held in
    /// memory only). A secret that cannot be read fails the start with a
    /// reason naming it, never its value.
    async fn remote_target(
        &self,
        url: &str,
        headers: Option<&HeaderForward>,
    ) -> Result<HttpTarget, String> {
        let plain: Vec<(String, String)> = headers
            .iter()
            .flat_map(|h| h.add_plaintext_headers.clone())
            .collect();
        let mut target =
            HttpTarget::remote(url, &plain).map_err(|e| format!("invalid remote server: {e}"))?;
        let refs = headers.map(|h| &h.add_headers_from_secret);
        let Some(refs) = refs.filter(|r| !r.is_empty()) else {
            return Ok(target);
        };
        let Some(secrets) = self.inner.settings.secrets.as_ref() else {
            return Err(
                "failed to start: the workload takes header values from secrets, \
                 but berth has no secrets service"
                    .into(),
            );
        };
        for (header, secret) in refs {
            let secret_shown = crate::logging::escape_controls(secret);
            let header_shown = crate::logging::escape_controls(header);
            let value = secrets.resolve(secret).await.map_err(|e| {
                format!("failed to start: secret `{secret_shown}` (for header {header_shown}): {e}")
            })?;
            target = target
                .with_secret_header(header, value.as_str())
                .map_err(|e| match e {
                    TargetError::HeaderValue(_) => format!(
                        "failed to start: secret `{secret_shown}` (for header {header_shown}): \
                         its value is not a valid HTTP header value"
                    ),
                    other => format!("failed to start: {other}"),
                })?;
        }
        Ok(target)
    }

    /// Starts the proxy of an instance that runs, and attaches its stdio
    /// (after a deploy, or to re-attach after a berth restart).
    pub(super) async fn connect_proxy(
        &self,
        name: &WorkloadName,
        config: &Workload,
        endpoint: Option<std::net::SocketAddr>,
    ) -> Result<(), String> {
        self.start_proxy(name, config, endpoint).await?;
        if config.is_stdio() {
            // A proxy still connected to a server that ran on (its engine
            // was unreachable meanwhile) lets go first: one holder at a time.
            self.inner.proxies.release(name.as_str()).await;
            let io = self
                .backend_for(config)
                .map_err(|e| error_chain(&e))?
                .attach(name)
                .await
                .map_err(|e| format!("cannot attach to the server: {}", error_chain(&e)))?;
            self.inner.proxies.attach(name.as_str(), io);
        }
        Ok(())
    }
}
