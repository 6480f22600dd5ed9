//! The client-facing transports of a stdio workload over its [`Mux`]:
//! streamable HTTP (`POST/GET/DELETE /mcp`; the stateless 2026-07-28
//! revision is in `streamable/modern.rs`) and the legacy SSE transport
//! (`GET /sse` + `POST /messages`).
//!
//! These handlers sit innermost in the proxy's stack (`stack.rs`): the
//! parse layer has read each POST's message already ([`Message`]), the
//! middleware chain has seen it, and what goes wrong is reported as a
//! [`RequestError`], answered in `layers/rescue.rs`.

mod modern;

use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::jsonrpc::{self, Kind};
use super::layers::parse::Parsed;
use super::layers::rescue::RequestError;
use super::mux::{Mux, SessionId};
use super::sse;

/// How long an SSE stream may stay silent before a keep-alive comment.
const KEEPALIVE: Duration = Duration::from_secs(25);

/// The routes of a stdio workload's proxy, over `mux`.
pub(crate) fn routes(mux: &Mux) -> Router {
    let health = mux.clone();
    Router::new()
        .route("/mcp", post(post_mcp).get(get_mcp).delete(delete_mcp))
        .route("/sse", get(get_sse))
        .route("/messages", post(post_messages))
        .with_state(StdioState { mux: mux.clone() })
        .route(
            "/health",
            get(move || {
                let mux = health.clone();
                async move { super::health(mux).await }
            }),
        )
}

/// What the stdio endpoints share.
#[derive(Clone)]
pub(crate) struct StdioState {
    pub(crate) mux: Mux,
}

/// The one JSON-RPC message of a POST, as the parse layer read it.
pub(crate) struct Message {
    msg: Value,
    /// The message's id as the client wrote it, when a `Value` cannot hold
    /// it exactly.
    raw: Option<Box<RawValue>>,
}

impl<S: Send + Sync> FromRequestParts<S> for Message {
    type Rejection = RequestError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, RequestError> {
        // The stack reads every POST to these routes (`Reading::Stdio`),
        // batches refused; a request that bypassed it is not served.
        let Some(Parsed { body, messages, .. }) = parts.extensions.remove::<Parsed>() else {
            return Err(RequestError::Body(
                "the proxy did not read this request".into(),
            ));
        };
        let [msg]: [Value; 1] = messages.try_into().map_err(|_| RequestError::Batch)?;
        let raw = jsonrpc::raw_id_of(&body, &msg);
        Ok(Self { msg, raw })
    }
}

/// A JSON answer to a client message whose id was written as `raw`: the id
/// goes back exactly as the client wrote it.
fn reply(status: StatusCode, body: &Value, raw: Option<&RawValue>) -> Response {
    let bytes = jsonrpc::encode(body, raw);
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn accepts(headers: &HeaderMap, mime: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(mime) || v.contains("*/*"))
}

/// `POST /mcp`.
pub(crate) async fn post_mcp(
    State(s): State<StdioState>,
    headers: HeaderMap,
    Message { msg, raw }: Message,
) -> Result<Response, RequestError> {
    let raw = raw.as_deref();
    let session_header = header_str(&headers, "mcp-session-id");
    let version = header_str(&headers, "mcp-protocol-version");
    match jsonrpc::kind(&msg) {
        Kind::Invalid => Err(RequestError::InvalidMessage {
            id: jsonrpc::id_of(&msg),
            raw: raw.map(ToOwned::to_owned),
            message: "not a JSON-RPC 2.0 request, notification or response",
        }),
        kind @ (Kind::Notification | Kind::Response) => {
            let session = match session_header {
                Some(id) => Some(lookup(&s.mux, id).ok_or(RequestError::SessionNotFound {
                    id: Value::Null,
                    raw: None,
                })?),
                None => None,
            };
            if kind == Kind::Notification {
                s.mux.notify(session.as_ref(), msg);
                return Ok(StatusCode::ACCEPTED.into_response());
            }
            let id = msg["id"].clone();
            s.mux
                .respond(session.as_ref(), msg)
                .map_err(|why| RequestError::Answer { id, why })?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Kind::Request if jsonrpc::is_modern(&msg, version) => {
            modern::serve(&s, &headers, msg, raw).await
        }
        Kind::Request if jsonrpc::method(&msg) == "initialize" => {
            let session = match session_header {
                Some(id) if is_uuid(id) && !s.mux.was_closed(id) => s.mux.adopt_session(id),
                _ => s.mux.open_session(),
            };
            let answer = s.mux.initialize(msg).await;
            if answer.get("error").is_some() {
                s.mux.close_session(&session);
                return Ok(reply(StatusCode::OK, &answer, raw));
            }
            let mut resp = reply(StatusCode::OK, &answer, raw);
            if let Ok(v) = HeaderValue::from_str(&session) {
                resp.headers_mut().insert("mcp-session-id", v);
            }
            Ok(resp)
        }
        Kind::Request => {
            let session = match session_header {
                Some(id) => {
                    Some(
                        lookup(&s.mux, id).ok_or_else(|| RequestError::SessionNotFound {
                            id: msg["id"].clone(),
                            raw: raw.map(ToOwned::to_owned),
                        })?,
                    )
                }
                None => None,
            };
            Ok(forward(&s, session, msg, raw, &headers, None).await)
        }
    }
}

/// A session a client names: known, or adopted after a berth restart (an
/// id of the form berth mints that this process never closed).
fn lookup(mux: &Mux, id: &str) -> Option<SessionId> {
    mux.session(id)
        .or_else(|| (is_uuid(id) && !mux.was_closed(id)).then(|| mux.adopt_session(id)))
}

/// Whether `id` has the shape of a UUID (`8-4-4-4-12` hex digits).
fn is_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn session_not_found() -> RequestError {
    RequestError::SessionNotFound {
        id: Value::Null,
        raw: None,
    }
}

/// Forwards a request; answers with JSON, or with an SSE stream when the
/// request asks for progress and the client accepts streams. A request of
/// the stateless revision comes with the server's identity (`server_info`)
/// and its answer is translated for that revision.
async fn forward(
    s: &StdioState,
    session: Option<SessionId>,
    msg: Value,
    raw: Option<&RawValue>,
    headers: &HeaderMap,
    server_info: Option<Value>,
) -> Response {
    let wants_progress = msg
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get("progressToken"))
        .is_some();
    let stream = accepts(headers, "text/event-stream")
        && (wants_progress || !accepts(headers, "application/json"));
    let method = jsonrpc::method(&msg).to_owned();
    if !stream {
        let mut answer = s.mux.request(session.as_ref(), msg, None).await;
        let mut status = StatusCode::OK;
        if let Some(info) = &server_info {
            modern::modernize(&mut answer, &method, Some(info));
            // The stateless revision reports an unknown method as HTTP 404.
            if answer["error"]["code"] == jsonrpc::METHOD_NOT_FOUND {
                status = StatusCode::NOT_FOUND;
            }
        }
        return reply(status, &answer, raw);
    }
    let raw = raw.map(ToOwned::to_owned);
    let (tx, inbox) = s.mux.request_stream(session.as_ref());
    let state = s.clone();
    let events = tx.clone();
    let task = tokio::spawn(async move {
        let mut answer = state.mux.request(session.as_ref(), msg, Some(events)).await;
        if let Some(info) = &server_info {
            modern::modernize(&mut answer, &method, Some(info));
        }
        let answer = sse::frame_json(&jsonrpc::encode(&answer, raw.as_deref()));
        if let Err(why) = tx.send_frame(answer, true) {
            state.mux.undelivered(session.as_ref(), why);
        }
    });
    // The request is abandoned (and cancelled upstream) if the client goes away.
    let guard = AbortOnDrop(task);
    sse::response(inbox.into_stream(None, None, guard))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `GET /mcp`: the session's stream of server-initiated messages.
pub(crate) async fn get_mcp(
    State(s): State<StdioState>,
    headers: HeaderMap,
) -> Result<Response, RequestError> {
    if header_str(&headers, "mcp-protocol-version") == Some(jsonrpc::MODERN_VERSION) {
        return Err(RequestError::NoStream);
    }
    let id = header_str(&headers, "mcp-session-id").ok_or(RequestError::SessionRequired)?;
    let session = lookup(&s.mux, id).ok_or_else(session_not_found)?;
    let inbox = s.mux.open_stream(&session).ok_or_else(session_not_found)?;
    Ok(sse::response(inbox.into_stream(None, Some(KEEPALIVE), ())))
}

/// `DELETE /mcp`: ends a session.
pub(crate) async fn delete_mcp(
    State(s): State<StdioState>,
    headers: HeaderMap,
) -> Result<Response, RequestError> {
    let id = header_str(&headers, "mcp-session-id").ok_or(RequestError::SessionRequired)?;
    if s.mux.close_session(id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(session_not_found())
    }
}

/// Closes the legacy SSE session when its stream ends.
struct CloseOnDrop(Mux, SessionId);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close_session(&self.1);
    }
}

/// `GET /sse`: opens a legacy SSE session.
pub(crate) async fn get_sse(State(s): State<StdioState>) -> Result<Response, RequestError> {
    let session = s.mux.open_session();
    let inbox = s.mux.open_stream(&session).ok_or_else(session_not_found)?;
    let endpoint = sse::event("endpoint", &format!("/messages?session_id={session}"));
    let guard = CloseOnDrop(s.mux.clone(), session);
    Ok(sse::response(inbox.into_stream(
        Some(endpoint),
        Some(KEEPALIVE),
        guard,
    )))
}

/// Query of `POST /messages`.
#[derive(Deserialize)]
pub(crate) struct MessagesQuery {
    session_id: Option<String>,
}

/// `POST /messages?session_id=…`: a message of a legacy SSE session; its
/// answer goes to that session's stream.
pub(crate) async fn post_messages(
    State(s): State<StdioState>,
    Query(q): Query<MessagesQuery>,
    Message { msg, raw }: Message,
) -> Result<Response, RequestError> {
    let id = q.session_id.ok_or(RequestError::SessionIdRequired)?;
    let session = s.mux.session(&id).ok_or_else(session_not_found)?;
    let stream = s.mux.stream_of(&session).ok_or_else(session_not_found)?;
    match jsonrpc::kind(&msg) {
        Kind::Invalid => {
            return Err(RequestError::InvalidMessage {
                id: jsonrpc::id_of(&msg),
                raw,
                message: "not a JSON-RPC 2.0 message",
            });
        }
        Kind::Notification => s.mux.notify(Some(&session), msg),
        Kind::Response => {
            let id = msg["id"].clone();
            s.mux
                .respond(Some(&session), msg)
                .map_err(|why| RequestError::Answer { id, why })?;
        }
        Kind::Request => {
            tokio::spawn(async move {
                let answer = if jsonrpc::method(&msg) == "initialize" {
                    s.mux.initialize(msg).await
                } else {
                    s.mux
                        .request(Some(&session), msg, Some(stream.clone()))
                        .await
                };
                let answer = sse::frame_json(&jsonrpc::encode(&answer, raw.as_deref()));
                if let Err(why) = stream.send_frame(answer, false) {
                    s.mux.undelivered(Some(&session), why);
                }
            });
        }
    }
    Ok((StatusCode::ACCEPTED, "Accepted").into_response())
}
