//! The client-facing MCP endpoints of a stdio workload: streamable HTTP
//! (`POST/GET/DELETE /mcp`, both MCP eras) and the legacy SSE transport
//! (`GET /sse` + `POST /messages`).

mod modern;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::jsonrpc::{self, Kind};
use super::middleware::{self, Chain};
use super::mux::{Mux, RespondError, SessionId};
use super::outbox::Outbox;
use super::sse;

/// How long an SSE stream may stay silent before a keep-alive comment.
const KEEPALIVE: Duration = Duration::from_secs(25);

/// What the stdio endpoints share.
#[derive(Clone)]
pub(crate) struct StdioState {
    pub(crate) mux: Mux,
    /// The workload's name, for middleware.
    pub(crate) workload: Arc<str>,
    /// The workload's middleware, if any.
    pub(crate) chain: Option<Chain>,
}

impl StdioState {
    /// Sends a client request through the middleware chain to the server.
    async fn request(
        &self,
        session: Option<&SessionId>,
        mut msg: Value,
        events: Option<Outbox>,
        headers: &HeaderMap,
    ) -> Value {
        let Some(chain) = &self.chain else {
            return self.mux.request(session, msg, events).await;
        };
        let mut req = middleware::view(&self.workload, &msg, session.map(|s| &**s), headers);
        if let Err(refusal) = middleware::before(chain, &mut req, &mut msg).await {
            return refusal;
        }
        let mut answer = self.mux.request(session, msg, events).await;
        middleware::after(chain, &req, &mut answer).await;
        answer
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    reply(status, body, None)
}

/// A JSON answer to a client message whose id was written as `raw`: the id
/// goes back exactly as the client wrote it.
fn reply(status: StatusCode, body: &Value, raw: Option<&RawValue>) -> Response {
    let bytes = jsonrpc::encode(body, raw);
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn rpc_error(status: StatusCode, id: Value, code: i64, message: &str) -> Response {
    json_response(status, &jsonrpc::error(id, code, message))
}

/// A JSON-RPC error answering a client message whose id was written as `raw`.
fn rpc_error_to(
    status: StatusCode,
    id: Value,
    raw: Option<&RawValue>,
    code: i64,
    message: &str,
) -> Response {
    reply(status, &jsonrpc::error(id, code, message), raw)
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

fn parse(body: &Bytes) -> Result<Value, Box<Response>> {
    if body.trim_ascii_start().first() == Some(&b'[') {
        return Err(Box::new(rpc_error(
            StatusCode::BAD_REQUEST,
            Value::Null,
            jsonrpc::INVALID_REQUEST,
            "batch requests are not supported",
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(rpc_error(
            StatusCode::BAD_REQUEST,
            Value::Null,
            jsonrpc::PARSE_ERROR,
            &format!("invalid JSON: {e}"),
        ))
    })
}

/// `POST /mcp`.
pub(crate) async fn post_mcp(
    State(s): State<StdioState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let msg = match parse(&body) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    let raw = jsonrpc::raw_id_of(&body, &msg);
    let raw = raw.as_deref();
    let session_header = header_str(&headers, "mcp-session-id");
    let version = header_str(&headers, "mcp-protocol-version");
    if let Err(why) = jsonrpc::check_version(&msg) {
        return rpc_error_to(
            StatusCode::BAD_REQUEST,
            jsonrpc::id_of(&msg),
            raw,
            jsonrpc::INVALID_REQUEST,
            why,
        );
    }
    match jsonrpc::kind(&msg) {
        Kind::Invalid => rpc_error_to(
            StatusCode::BAD_REQUEST,
            jsonrpc::id_of(&msg),
            raw,
            jsonrpc::INVALID_REQUEST,
            "not a JSON-RPC 2.0 request, notification or response",
        ),
        Kind::Notification | Kind::Response => {
            let session = match session_header {
                Some(id) => match lookup(&s.mux, id) {
                    Some(sess) => Some(sess),
                    None => return session_not_found(Value::Null),
                },
                None => None,
            };
            if jsonrpc::kind(&msg) == Kind::Notification {
                s.mux.notify(session.as_ref(), msg);
                return StatusCode::ACCEPTED.into_response();
            }
            let id = msg["id"].clone();
            match s.mux.respond(session.as_ref(), msg) {
                Ok(()) => StatusCode::ACCEPTED.into_response(),
                Err(why) => refused_answer(id, why),
            }
        }
        Kind::Request if jsonrpc::is_modern(&msg, version) => modern(&s, &headers, msg, raw).await,
        Kind::Request if jsonrpc::method(&msg) == "initialize" => {
            let session = match session_header {
                Some(id) if is_uuid(id) && !s.mux.was_closed(id) => s.mux.adopt_session(id),
                _ => s.mux.open_session(),
            };
            let answer = s.mux.initialize(msg).await;
            if answer.get("error").is_some() {
                s.mux.close_session(&session);
                return reply(StatusCode::OK, &answer, raw);
            }
            let mut resp = reply(StatusCode::OK, &answer, raw);
            if let Ok(v) = HeaderValue::from_str(&session) {
                resp.headers_mut().insert("mcp-session-id", v);
            }
            resp
        }
        Kind::Request => {
            let session = match session_header {
                Some(id) => match lookup(&s.mux, id) {
                    Some(sess) => Some(sess),
                    None => {
                        return rpc_error_to(
                            StatusCode::NOT_FOUND,
                            msg["id"].clone(),
                            raw,
                            jsonrpc::SESSION_NOT_FOUND,
                            "session not found",
                        );
                    }
                },
                None => None,
            };
            forward(&s, session, msg, raw, &headers, None).await
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

/// A client's answer to a server request that berth does not pass on.
fn refused_answer(id: Value, why: RespondError) -> Response {
    rpc_error(
        StatusCode::BAD_REQUEST,
        id,
        jsonrpc::INVALID_REQUEST,
        &why.to_string(),
    )
}

fn session_not_found(id: Value) -> Response {
    rpc_error(
        StatusCode::NOT_FOUND,
        id,
        jsonrpc::SESSION_NOT_FOUND,
        "session not found",
    )
}

/// Forwards a request; answers with JSON, or with an SSE stream when the
/// request asks for progress and the client accepts streams.
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
        let mut answer = s.request(session.as_ref(), msg, None, headers).await;
        let mut status = StatusCode::OK;
        if server_info.is_some() {
            modern::modernize(&mut answer, &method, server_info.as_ref());
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
    let headers = headers.clone();
    let events = tx.clone();
    let task = tokio::spawn(async move {
        let mut answer = state
            .request(session.as_ref(), msg, Some(events), &headers)
            .await;
        if server_info.is_some() {
            modern::modernize(&mut answer, &method, server_info.as_ref());
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

/// A stateless-revision request: no session; `server/discover` is answered
/// by berth from the server's handshake.
async fn modern(
    s: &StdioState,
    headers: &HeaderMap,
    msg: Value,
    raw: Option<&RawValue>,
) -> Response {
    let id = msg["id"].clone();
    let meta = jsonrpc::meta(&msg);
    let version = meta
        .and_then(|m| m.get(jsonrpc::META_PROTOCOL_VERSION))
        .and_then(Value::as_str);
    let header = header_str(headers, "mcp-protocol-version");
    if let (Some(h), Some(v)) = (header, version)
        && h != v
    {
        return rpc_error_to(
            StatusCode::BAD_REQUEST,
            id,
            raw,
            jsonrpc::HEADER_MISMATCH,
            &format!(
                "MCP-Protocol-Version header {h} does not match the request's _meta version {v}"
            ),
        );
    }
    let Some(version) = version else {
        return rpc_error_to(
            StatusCode::BAD_REQUEST,
            id,
            raw,
            jsonrpc::INVALID_PARAMS,
            "a 2026-07-28 request needs `io.modelcontextprotocol/protocolVersion` in params._meta",
        );
    };
    if version != jsonrpc::MODERN_VERSION {
        let mut err = jsonrpc::error(
            id,
            jsonrpc::UNSUPPORTED_PROTOCOL_VERSION,
            format!("unsupported protocol version {version}"),
        );
        err["error"]["data"] =
            json!({"supported": [jsonrpc::MODERN_VERSION], "requested": version});
        return reply(StatusCode::BAD_REQUEST, &err, raw);
    }
    if meta.is_none_or(|m| !m.contains_key(jsonrpc::META_CLIENT_CAPABILITIES)) {
        return rpc_error_to(
            StatusCode::BAD_REQUEST,
            id,
            raw,
            jsonrpc::MISSING_CAPABILITIES,
            "a 2026-07-28 request needs `io.modelcontextprotocol/clientCapabilities` in params._meta",
        );
    }
    let init = match s.mux.init_result().await {
        Ok(r) => r,
        Err(why) => {
            return reply(
                StatusCode::OK,
                &jsonrpc::error(id, jsonrpc::INTERNAL_ERROR, why),
                raw,
            );
        }
    };
    let server_info = init.get("serverInfo").cloned();
    if jsonrpc::method(&msg) == "server/discover" {
        let mut result = json!({
            "resultType": "complete",
            "ttlMs": 0,
            "cacheScope": "private",
            "supportedVersions": [jsonrpc::MODERN_VERSION],
            "capabilities": init.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        });
        if let Some(instructions) = init.get("instructions") {
            result["instructions"] = instructions.clone();
        }
        if let Some(info) = &server_info {
            result["serverInfo"] = info.clone();
            result["_meta"] = json!({jsonrpc::META_SERVER_INFO: info});
        }
        return reply(StatusCode::OK, &jsonrpc::result(id, result), raw);
    }
    let mut msg = msg;
    jsonrpc::strip_modern_meta(&mut msg);
    forward(
        s,
        None,
        msg,
        raw,
        headers,
        Some(server_info.unwrap_or(Value::Null)),
    )
    .await
}

/// `GET /mcp`: the session's stream of server-initiated messages.
pub(crate) async fn get_mcp(State(s): State<StdioState>, headers: HeaderMap) -> Response {
    if header_str(&headers, "mcp-protocol-version") == Some(jsonrpc::MODERN_VERSION) {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            "the 2026-07-28 revision has no GET stream",
        )
            .into_response();
    }
    let Some(id) = header_str(&headers, "mcp-session-id") else {
        return (StatusCode::BAD_REQUEST, "Mcp-Session-Id header required").into_response();
    };
    let Some(session) = lookup(&s.mux, id) else {
        return session_not_found(Value::Null);
    };
    let Some(inbox) = s.mux.open_stream(&session) else {
        return session_not_found(Value::Null);
    };
    sse::response(inbox.into_stream(None, Some(KEEPALIVE), ()))
}

/// `DELETE /mcp`: ends a session.
pub(crate) async fn delete_mcp(State(s): State<StdioState>, headers: HeaderMap) -> Response {
    let Some(id) = header_str(&headers, "mcp-session-id") else {
        return (StatusCode::BAD_REQUEST, "Mcp-Session-Id header required").into_response();
    };
    if s.mux.close_session(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        session_not_found(Value::Null)
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
pub(crate) async fn get_sse(State(s): State<StdioState>) -> Response {
    let session = s.mux.open_session();
    let Some(inbox) = s.mux.open_stream(&session) else {
        return session_not_found(Value::Null);
    };
    let endpoint = sse::event("endpoint", &format!("/messages?session_id={session}"));
    let guard = CloseOnDrop(s.mux.clone(), session);
    sse::response(inbox.into_stream(Some(endpoint), Some(KEEPALIVE), guard))
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
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(id) = q.session_id else {
        return (
            StatusCode::BAD_REQUEST,
            "session_id query parameter required",
        )
            .into_response();
    };
    let Some(session) = s.mux.session(&id) else {
        return session_not_found(Value::Null);
    };
    let Some(stream) = s.mux.stream_of(&session) else {
        return session_not_found(Value::Null);
    };
    let msg = match parse(&body) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    let raw = jsonrpc::raw_id_of(&body, &msg);
    if let Err(why) = jsonrpc::check_version(&msg) {
        return rpc_error_to(
            StatusCode::BAD_REQUEST,
            jsonrpc::id_of(&msg),
            raw.as_deref(),
            jsonrpc::INVALID_REQUEST,
            why,
        );
    }
    match jsonrpc::kind(&msg) {
        Kind::Invalid => {
            return rpc_error_to(
                StatusCode::BAD_REQUEST,
                jsonrpc::id_of(&msg),
                raw.as_deref(),
                jsonrpc::INVALID_REQUEST,
                "not a JSON-RPC 2.0 message",
            );
        }
        Kind::Notification => s.mux.notify(Some(&session), msg),
        Kind::Response => {
            let id = msg["id"].clone();
            if let Err(why) = s.mux.respond(Some(&session), msg) {
                return refused_answer(id, why);
            }
        }
        Kind::Request => {
            tokio::spawn(async move {
                let answer = if jsonrpc::method(&msg) == "initialize" {
                    s.mux.initialize(msg).await
                } else {
                    s.request(Some(&session), msg, Some(stream.clone()), &headers)
                        .await
                };
                let answer = sse::frame_json(&jsonrpc::encode(&answer, raw.as_deref()));
                if let Err(why) = stream.send_frame(answer, false) {
                    s.mux.undelivered(Some(&session), why);
                }
            });
        }
    }
    (StatusCode::ACCEPTED, "Accepted").into_response()
}
