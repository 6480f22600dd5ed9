//! Middleware on every workload's request path, whatever its upstream
//! (stdio, HTTP, remote): each client request after the handshake may be
//! allowed, denied or have its params rewritten, and each successful result
//! may be rewritten, by a chain of [`Middleware`]s in the order configured.
//! The chain runs in the stack's chain layer (`layers/chain.rs`), which
//! reads the messages of every upstream the same way, so a middleware sees
//! the same [`McpRequest`] whatever the upstream.

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::jsonrpc;

/// Headers a middleware never sees: credentials meant for berth or the
/// server, not for plugins.
const HIDDEN_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// JSON-RPC error code of a request a middleware (or berth's policy)
/// refused.
pub const DENIED: i64 = crate::auth::DENIED;

pub use crate::auth::Identity;

/// One client request as middleware sees it.
#[derive(Debug, Clone)]
pub struct McpRequest {
    /// The workload's name.
    pub workload: Arc<str>,
    /// JSON-RPC method.
    pub method: String,
    /// The params object, if any.
    pub params: Option<Value>,
    /// The client's session id.
    pub session: Option<String>,
    /// The authenticated caller, when known (see [`Identity`]); `None`
    /// while the proxy does not authenticate callers.
    pub identity: Option<Identity>,
    /// Request headers (lowercase names), credentials removed.
    pub headers: Vec<(String, String)>,
}

/// What a middleware decided about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Pass it on.
    Allow,
    /// Refuse it with this HTTP-style status and message.
    Deny {
        /// Why, as an HTTP status (403, 429...).
        status: u16,
        /// Shown to the client.
        message: String,
    },
    /// Pass it on with these params.
    Rewrite(Value),
}

/// A middleware failed (a plugin trapped, timed out or answered nonsense):
/// the request fails closed with this message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct MiddlewareFailure(pub String);

/// A step of a workload's middleware chain.
#[async_trait]
pub trait Middleware: Send + Sync {
    /// Its name, for errors and logs.
    fn name(&self) -> &str;
    /// Whether `on_request` should see requests for `method`.
    async fn wants_request(&self, method: &str) -> Result<bool, MiddlewareFailure>;
    /// Whether `on_response` should see results of `method`.
    async fn wants_response(&self, method: &str) -> Result<bool, MiddlewareFailure>;
    /// Decides about a request.
    async fn on_request(&self, req: &McpRequest) -> Result<Decision, MiddlewareFailure>;
    /// Returns a replacement for a successful result, or `None`.
    async fn on_response(
        &self,
        req: &McpRequest,
        result: &Value,
    ) -> Result<Option<Value>, MiddlewareFailure>;
}

/// A workload's middleware, in order.
pub type Chain = Arc<[Arc<dyn Middleware>]>;

/// The request as middleware sees it.
pub(crate) fn view(
    workload: &Arc<str>,
    msg: &Value,
    session: Option<&str>,
    headers: &HeaderMap,
    identity: Option<&Identity>,
) -> McpRequest {
    McpRequest {
        workload: workload.clone(),
        method: jsonrpc::method(msg).to_owned(),
        params: msg.get("params").cloned(),
        session: session.map(str::to_owned),
        identity: identity.cloned(),
        headers: headers
            .iter()
            .filter(|(k, _)| !HIDDEN_HEADERS.contains(&k.as_str()))
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
    }
}

fn denial(id: Value, mw: &str, status: u16, message: &str) -> Value {
    let mut err = jsonrpc::error(id, DENIED, message);
    err["error"]["data"] = json!({"status": status, "middleware": mw});
    err
}

/// Runs the request hooks on `msg`: `Ok` (with whether its params were
/// rewritten), or `Err` with the error answer for the client.
pub(crate) async fn before(
    chain: &Chain,
    req: &mut McpRequest,
    msg: &mut Value,
) -> Result<bool, Value> {
    let mut rewritten = false;
    for mw in chain.iter() {
        let wanted = mw.wants_request(&req.method).await;
        let decision = match wanted {
            Ok(false) => continue,
            Ok(true) => mw.on_request(req).await,
            Err(e) => Err(e),
        };
        match decision {
            Ok(Decision::Allow) => {}
            Ok(Decision::Deny { status, message }) => {
                return Err(denial(msg["id"].clone(), mw.name(), status, &message));
            }
            Ok(Decision::Rewrite(params)) => {
                msg["params"] = params.clone();
                req.params = Some(params);
                rewritten = true;
            }
            Err(MiddlewareFailure(why)) => {
                return Err(denial(
                    msg["id"].clone(),
                    mw.name(),
                    500,
                    &format!("middleware `{}` failed: {why}", mw.name()),
                ));
            }
        }
    }
    Ok(rewritten)
}

/// Whether a middleware of `chain` wants to see the results of `method`
/// (one that cannot say does: [`after`] then fails the result closed).
pub(crate) async fn wants_response(chain: &Chain, method: &str) -> bool {
    for mw in chain.iter() {
        if !matches!(mw.wants_response(method).await, Ok(false)) {
            return true;
        }
    }
    false
}

/// Runs the response hooks on a successful answer, last middleware first
/// (the one nearest the server sees the result first).
pub(crate) async fn after(chain: &Chain, req: &McpRequest, answer: &mut Value) {
    if answer.get("result").is_none() {
        return;
    }
    for mw in chain.iter().rev() {
        match mw.wants_response(&req.method).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(MiddlewareFailure(why)) => {
                *answer = denial(
                    answer["id"].clone(),
                    mw.name(),
                    500,
                    &format!("middleware `{}` failed: {why}", mw.name()),
                );
                return;
            }
        }
        match mw.on_response(req, &answer["result"]).await {
            Ok(None) => {}
            Ok(Some(result)) => answer["result"] = result,
            Err(MiddlewareFailure(why)) => {
                // Fail closed: a result a filter could not check is withheld.
                *answer = denial(
                    answer["id"].clone(),
                    mw.name(),
                    500,
                    &format!("middleware `{}` failed: {why}", mw.name()),
                );
                return;
            }
        }
    }
}
