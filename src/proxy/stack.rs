//! The proxy of a workload as one tower stack, the same for every upstream:
//! a stdio server (behind its [`Mux`]), an HTTP server berth runs, a
//! remote one. [`build`] lists the layers from the outermost to the
//! innermost, each with why it sits there (linkerd's
//! `inbound/src/http/server.rs`). A new layer goes here, at its place, in
//! `layers/<name>.rs`; the slots the next subsystems fill are marked.

use std::convert::Infallible;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use tower::{Service, ServiceBuilder};

use super::layers::authn::AuthnLayer;
use super::layers::chain::ChainLayer;
use super::layers::guard::GuardLayer;
use super::layers::limit::LimitLayer;
use super::layers::parse::{ParseLayer, Reading};
use super::layers::rescue::{RequestError, RescueLayer};
use super::reverse::ReverseProxy;
use super::{Chain, Mux, Protection, ProxyConfig, Upstream, streamable};
use crate::auth::BrowserGuard;

/// The HTTP surface of the proxy of workload `name`: every request passes
/// the same layers, then reaches the upstream's transport.
pub(crate) fn build(
    name: &str,
    upstream: &Upstream,
    chain: Option<Chain>,
    protection: &Protection,
    config: &ProxyConfig,
) -> Router {
    match upstream {
        // berth's own endpoints read every message: the stdio transports
        // work on parsed messages.
        Upstream::Stdio(mux) => layered(
            name,
            stdio(mux),
            Some(Reading::Stdio),
            chain,
            protection,
            config,
        ),
        // An HTTP server's traffic is read only for a layer that needs it;
        // otherwise it streams through untouched (the transparent path).
        Upstream::Http(target) => {
            let reading = (chain.is_some() || protection.policy.is_some()).then_some(Reading::Http);
            let transport = ReverseProxy::new(target, config.max_body_bytes);
            layered(name, transport, reading, chain, protection, config)
        }
    }
}

/// The stdio transports (streamable HTTP, legacy SSE, health) over `mux`.
fn stdio(
    mux: &Mux,
) -> impl Service<Request, Response = Response, Error = RequestError, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    tower::ServiceExt::<Request>::map_err(
        streamable::routes(mux),
        |never: Infallible| match never {},
    )
}

/// The layers, outermost first, in front of `transport`.
fn layered<S>(
    name: &str,
    transport: S,
    reading: Option<Reading>,
    chain: Option<Chain>,
    protection: &Protection,
    config: &ProxyConfig,
) -> Router
where
    S: Service<Request, Response = Response, Error = RequestError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    // Checked when the configuration was loaded; an invalid list allows
    // only loopback origins.
    let guard = config
        .browser_guard()
        .unwrap_or_else(|_| BrowserGuard::new(&[], &[], true).expect("empty lists are valid"));
    let max = config.max_body_bytes;
    let stack = ServiceBuilder::new()
        // Outermost: every refusal of the layers below and every failure of
        // the transport becomes an answer here, in one place (status code,
        // JSON-RPC error). Metrics and the request span go outside it, so
        // that they count and see refusals too (telemetry issue).
        .layer(RescueLayer)
        // Before anything is read or decided: a request a web page could
        // have sent (DNS rebinding, cross-site) is refused, on every route.
        .layer(GuardLayer::new(guard))
        // A body declared larger than the limit is refused before a byte of
        // it is read; one without a declared length is cut where it is read.
        .layer(LimitLayer::new(max))
        // Authentication, when the workload requires it: who calls. It
        // puts their `middleware::Identity` into the request's extensions,
        // which every layer below reads (`McpRequest::identity`), removes
        // their token, and binds each session to its principal. Before any
        // body is read: an unauthenticated caller costs no parsing.
        .option_layer(protection.authn.clone().map(AuthnLayer::new))
        //
        // The JSON-RPC messages are read once, here, for every layer below
        // and for the stdio transports: all of them see the same messages
        // whatever the upstream.
        .option_layer(reading.map(|r| ParseLayer::new(r, max)))
        // One layer reads each message on every path (POST bodies, their
        // SSE answers, GET and legacy SSE streams) and runs, in order:
        // audit (the request as the client sent it, and its outcome,
        // refusals included); the user's middleware (wasm plugins: global
        // ones first, then the workload's in configured order); then
        // berth's policy — tool filter and overrides, pinning,
        // authorization — on the request exactly as it reaches the server
        // and on the answer exactly as it reaches the client, so no plugin
        // can rewrite a call past it (`proxy/policy.rs`).
        .option_layer((chain.is_some() || protection.policy.is_some()).then(|| {
            ChainLayer::new(
                name,
                chain.unwrap_or_else(|| std::sync::Arc::from(Vec::new())),
                protection.policy.clone(),
            )
        }))
        .service(transport);
    Router::new().fallback_service(stack)
}
