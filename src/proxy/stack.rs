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
use super::layers::observe::{MarkLayer, ObserveLayer};
use super::layers::parse::{ParseLayer, Reading};
use super::layers::rescue::{RequestError, RescueLayer};
use super::reverse::ReverseProxy;
use super::{Chain, Mux, Protection, ProxyConfig, Upstream, streamable};
use crate::auth::BrowserGuard;
use crate::telemetry::Probe;

/// The HTTP surface of the proxy of workload `name`: every request passes
/// the same layers, then reaches the upstream's transport.
pub(crate) fn build(
    name: &str,
    upstream: &Upstream,
    chain: Option<Chain>,
    protection: &Protection,
    probe: Option<Probe>,
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
            probe,
            config,
        ),
        // An HTTP server's traffic is read only for a layer that needs it;
        // otherwise it streams through untouched (the transparent path).
        Upstream::Http(target) => {
            // Metrics and traces need the messages too.
            let reading = (chain.is_some() || protection.policy.is_some() || probe.is_some())
                .then_some(Reading::Http);
            let transport = ReverseProxy::new(target, config.max_body_bytes);
            layered(name, transport, reading, chain, protection, probe, config)
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
    probe: Option<Probe>,
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
    let chained = chain.is_some() || protection.policy.is_some();
    let traced = probe.as_ref().is_some_and(|p| p.tracer.is_some());
    let refusals = probe.as_ref().and_then(|p| p.metrics.clone());
    let sessions = reading == Some(Reading::Http);
    let stack = ServiceBuilder::new()
        // Outermost: every refusal of the layers below and every failure of
        // the transport becomes an answer here, in one place (status code,
        // JSON-RPC error), and is counted by reason (the refusals the
        // telemetry layer below cannot see: it sits under the parser).
        .layer(RescueLayer::new(refusals))
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
        // Metrics and traces: each request as the client sent it and its
        // answer as the client gets it (after the middleware and the
        // policy), the request's span opened before either runs; below the
        // parser, so it reads the messages it parsed, and above the chain,
        // so a refusal of the policy counts as `denied`.
        .option_layer(probe.map(|p| ObserveLayer::new(p, chained, sessions)))
        // One layer reads each message on every path (POST bodies, their
        // SSE answers, GET and legacy SSE streams) and runs, in order:
        // audit (the request as the client sent it, and its outcome,
        // refusals included); the user's middleware (wasm plugins: global
        // ones first, then the workload's in configured order); then
        // berth's policy — tool filter and overrides, pinning,
        // authorization — on the request exactly as it reaches the server
        // and on the answer exactly as it reaches the client, so no plugin
        // can rewrite a call past it (`proxy/policy.rs`).
        .option_layer(chained.then(|| {
            ChainLayer::new(
                name,
                chain.unwrap_or_else(|| std::sync::Arc::from(Vec::new())),
                protection.policy.clone(),
            )
        }))
        // Innermost, when traces are exported: when the request reached the
        // transport and its answer left it (the upstream span), and the
        // `traceparent` an HTTP upstream continues the trace with.
        .option_layer(traced.then_some(MarkLayer))
        .service(transport);
    Router::new().fallback_service(stack)
}
