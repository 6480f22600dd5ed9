//! The one place where the proxy's refusals and failures become answers
//! (linkerd's `ServerRescue`).
//!
//! Every layer of the stack, and every transport behind it, reports what
//! went wrong as a [`RequestError`]; [`Rescue`], outermost, turns it into
//! the answer, and so do the stdio transport's handlers (through
//! `IntoResponse`, which calls the same function). The answer is an HTTP
//! status with a JSON-RPC error body carrying the client's id as the client
//! wrote it, or plain text where MCP clients expect text (missing session
//! header, unreachable server).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde_json::Value;
use serde_json::value::RawValue;
use tower::{Layer, Service};

use crate::proxy::jsonrpc;
use crate::proxy::mux::RespondError;
use crate::telemetry::metrics::WorkloadMetrics;

/// Why the proxy answers a request itself instead of passing it on, or
/// could not pass it on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RequestError {
    /// A request a web page could have sent (see `auth::browser`).
    #[error("{0}")]
    CrossOrigin(String),
    /// The body is larger than `max_body_bytes`.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The body could not be read (the client went away mid-body).
    #[error("cannot read the request body: {0}")]
    Body(String),
    /// The body is not JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// A JSON-RPC batch, on a transport that takes single messages.
    #[error("batch requests are not supported")]
    Batch,
    /// A client message that is not valid JSON-RPC 2.0.
    #[error("{message}")]
    InvalidMessage {
        /// The message's id (null if it has none).
        id: Value,
        /// The id as the client wrote it, when a `Value` cannot hold it.
        raw: Option<Box<RawValue>>,
        /// What is wrong.
        message: &'static str,
    },
    /// The session the client names is unknown (or closed).
    #[error("session not found")]
    SessionNotFound {
        /// The request's id (null for non-requests).
        id: Value,
        /// The id as the client wrote it.
        raw: Option<Box<RawValue>>,
    },
    /// A route that needs the `Mcp-Session-Id` header got none.
    #[error("Mcp-Session-Id header required")]
    SessionRequired,
    /// `POST /messages` without its `session_id` query parameter.
    #[error("session_id query parameter required")]
    SessionIdRequired,
    /// A client's answer to a server request that berth does not pass on.
    #[error("{why}")]
    Answer {
        /// The answer's id.
        id: Value,
        /// Why it is refused.
        why: RespondError,
    },
    /// `GET /mcp` of the stateless revision, which has no stream.
    #[error("the 2026-07-28 revision has no GET stream")]
    NoStream,
    /// A stateless-revision request whose `_meta` envelope is wrong
    /// (boxed: the error stays small).
    #[error("{}", .0.message)]
    Envelope(Box<Envelope>),
    /// The stdio server has no handshake to answer a stateless request from.
    #[error("{why}")]
    NotReady {
        /// The request's id.
        id: Value,
        /// The id as the client wrote it.
        raw: Option<Box<RawValue>>,
        /// Why.
        why: String,
    },
    /// The request's path cannot be forwarded upstream.
    #[error("invalid request path")]
    Path,
    /// The HTTP server behind the proxy cannot be reached.
    #[error("the MCP server is not reachable: {0}")]
    Unreachable(String),
    /// Too many requests posted for one legacy SSE stream await their
    /// answers.
    #[error("more than {0} requests of this stream await their answers")]
    Backlog(usize),
    /// No acceptable bearer token: 401 with the RFC 9728 challenge.
    #[error("{description}")]
    Unauthenticated {
        /// The `WWW-Authenticate` header value.
        challenge: String,
        /// The OAuth error code (`invalid_request`, `invalid_token`).
        error: &'static str,
        /// What is wrong, safe to show (never the token).
        description: String,
    },
    /// The issuer's keys cannot be had: nobody is let in.
    #[error("the token cannot be checked now: the issuer's keys are unavailable")]
    AuthUnavailable,
    /// The session named belongs to another principal.
    #[error("the session belongs to another caller")]
    SessionOwner,
    /// An answer of the server too large for the middleware to check.
    #[error(
        "the MCP server's answer is larger than {0} bytes, more than berth's middleware can check"
    )]
    AnswerTooLarge(usize),
}

impl RequestError {
    /// The reason it is counted under (`telemetry::metrics::REFUSALS`).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            RequestError::CrossOrigin(_) => "cross_origin",
            RequestError::TooLarge(_) => "too_large",
            RequestError::InvalidJson(_)
            | RequestError::Batch
            | RequestError::InvalidMessage { .. }
            | RequestError::Envelope(_)
            | RequestError::NoStream
            | RequestError::Path => "invalid",
            RequestError::SessionNotFound { .. }
            | RequestError::SessionRequired
            | RequestError::SessionIdRequired => "session",
            RequestError::Unauthenticated { .. } => "unauthenticated",
            RequestError::SessionOwner => "forbidden",
            RequestError::Unreachable(_)
            | RequestError::AuthUnavailable
            | RequestError::NotReady { .. }
            | RequestError::Backlog(_) => "unavailable",
            RequestError::Body(_)
            | RequestError::Answer { .. }
            | RequestError::AnswerTooLarge(_) => "other",
        }
    }
}

/// What is wrong with a stateless-revision request's envelope.
#[derive(Debug)]
pub(crate) struct Envelope {
    /// The request's id.
    pub(crate) id: Value,
    /// The id as the client wrote it.
    pub(crate) raw: Option<Box<RawValue>>,
    /// The JSON-RPC error code (-32020, -32021, -32022, -32602).
    pub(crate) code: i64,
    /// What is wrong.
    pub(crate) message: String,
    /// `error.data`, if any.
    pub(crate) data: Option<Value>,
}

impl RequestError {
    /// The answer: every status code and JSON-RPC error code of the proxy's
    /// own refusals is chosen here.
    fn answer(self) -> Response {
        let text = |status: StatusCode, this: &Self| (status, this.to_string()).into_response();
        let rpc =
            |status: StatusCode, id: Value, raw: Option<&RawValue>, code: i64, msg: String| {
                let body = jsonrpc::encode(&jsonrpc::error(id, code, msg), raw);
                (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
            };
        let message = self.to_string();
        match self {
            Self::CrossOrigin(_) => rpc(
                StatusCode::FORBIDDEN,
                Value::Null,
                None,
                jsonrpc::INVALID_REQUEST,
                message,
            ),
            Self::TooLarge(_) => rpc(
                StatusCode::PAYLOAD_TOO_LARGE,
                Value::Null,
                None,
                jsonrpc::INVALID_REQUEST,
                message,
            ),
            Self::Body(_) | Self::SessionRequired | Self::SessionIdRequired | Self::Path => {
                text(StatusCode::BAD_REQUEST, &self)
            }
            Self::InvalidJson(_) => rpc(
                StatusCode::BAD_REQUEST,
                Value::Null,
                None,
                jsonrpc::PARSE_ERROR,
                message,
            ),
            Self::Batch => rpc(
                StatusCode::BAD_REQUEST,
                Value::Null,
                None,
                jsonrpc::INVALID_REQUEST,
                message,
            ),
            Self::InvalidMessage { id, raw, .. } => rpc(
                StatusCode::BAD_REQUEST,
                id,
                raw.as_deref(),
                jsonrpc::INVALID_REQUEST,
                message,
            ),
            Self::SessionNotFound { id, raw } => rpc(
                StatusCode::NOT_FOUND,
                id,
                raw.as_deref(),
                jsonrpc::SESSION_NOT_FOUND,
                message,
            ),
            Self::Answer { id, .. } => rpc(
                StatusCode::BAD_REQUEST,
                id,
                None,
                jsonrpc::INVALID_REQUEST,
                message,
            ),
            Self::NoStream => (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, "POST")],
                message,
            )
                .into_response(),
            Self::Envelope(e) => {
                let mut err = jsonrpc::error(e.id, e.code, message);
                if let Some(data) = e.data {
                    err["error"]["data"] = data;
                }
                let body = jsonrpc::encode(&err, e.raw.as_deref());
                (
                    StatusCode::BAD_REQUEST,
                    [(header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response()
            }
            // An answer, not a refusal of the request: HTTP 200.
            Self::NotReady { id, raw, .. } => rpc(
                StatusCode::OK,
                id,
                raw.as_deref(),
                jsonrpc::INTERNAL_ERROR,
                message,
            ),
            Self::Unreachable(_) => text(StatusCode::BAD_GATEWAY, &self),
            Self::Backlog(_) => rpc(
                StatusCode::SERVICE_UNAVAILABLE,
                Value::Null,
                None,
                jsonrpc::INTERNAL_ERROR,
                message,
            ),
            Self::Unauthenticated {
                challenge,
                error,
                description,
            } => (
                StatusCode::UNAUTHORIZED,
                [
                    (header::CONTENT_TYPE, "application/json".to_owned()),
                    (header::WWW_AUTHENTICATE, challenge),
                ],
                serde_json::json!({"error": error, "error_description": description}).to_string(),
            )
                .into_response(),
            Self::AuthUnavailable => rpc(
                StatusCode::SERVICE_UNAVAILABLE,
                Value::Null,
                None,
                jsonrpc::INTERNAL_ERROR,
                message,
            ),
            Self::SessionOwner => rpc(
                StatusCode::FORBIDDEN,
                Value::Null,
                None,
                jsonrpc::INVALID_REQUEST,
                message,
            ),
            Self::AnswerTooLarge(_) => rpc(
                StatusCode::BAD_GATEWAY,
                Value::Null,
                None,
                jsonrpc::INTERNAL_ERROR,
                message,
            ),
        }
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        self.answer()
    }
}

/// Wraps the stack: turns every [`RequestError`] from the layers below
/// into its answer.
#[derive(Debug, Clone, Default)]
pub(crate) struct RescueLayer {
    /// Where refusals are counted, by reason, when metrics are on.
    metrics: Option<Arc<WorkloadMetrics>>,
}

impl RescueLayer {
    /// Answers every error, counting it into `metrics`.
    pub(crate) fn new(metrics: Option<Arc<WorkloadMetrics>>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Rescue<S> {
        Rescue {
            inner,
            unready: None,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`RescueLayer`].
#[derive(Debug)]
pub(crate) struct Rescue<S> {
    inner: S,
    /// Why the layers below could not take a request: the next call is
    /// answered with it.
    unready: Option<RequestError>,
    metrics: Option<Arc<WorkloadMetrics>>,
}

impl<S: Clone> Clone for Rescue<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            unready: None,
            metrics: self.metrics.clone(),
        }
    }
}

impl<S> Service<Request> for Rescue<S>
where
    S: Service<Request, Response = Response, Error = RequestError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx).map(|ready| {
            self.unready = ready.err();
            Ok(())
        })
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let metrics = self.metrics.clone();
        let count = move |err: RequestError| {
            if let Some(m) = &metrics {
                m.refused(err.reason());
            }
            err.answer()
        };
        if let Some(err) = self.unready.take() {
            return Box::pin(async move { Ok(count(err)) });
        }
        let answer = self.inner.call(req);
        Box::pin(async move { Ok(answer.await.unwrap_or_else(count)) })
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use serde_json::json;

    use super::*;

    /// The answer to `err`: its status, and its body as JSON (or text).
    async fn answer(err: RequestError) -> (StatusCode, Value) {
        let resp = err.answer();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body)
    }

    #[tokio::test]
    async fn every_refusal_has_its_status_and_code() {
        let raw = serde_json::value::RawValue::from_string("12345678901234567890123".into()).ok();
        let cases: Vec<(RequestError, u16, Value)> = vec![
            (
                RequestError::CrossOrigin("foreign origin".into()),
                403,
                json!(-32600),
            ),
            (RequestError::TooLarge(10), 413, json!(-32600)),
            (RequestError::InvalidJson("eof".into()), 400, json!(-32700)),
            (RequestError::Batch, 400, json!(-32600)),
            (
                RequestError::SessionNotFound {
                    id: json!(7),
                    raw: None,
                },
                404,
                json!(-32001),
            ),
            (
                RequestError::Answer {
                    id: json!("berth-1"),
                    why: RespondError::Unknown,
                },
                400,
                json!(-32600),
            ),
            (
                RequestError::Envelope(Box::new(Envelope {
                    id: json!(1),
                    raw: None,
                    code: jsonrpc::UNSUPPORTED_PROTOCOL_VERSION,
                    message: "unsupported protocol version 1999-01-01".into(),
                    data: Some(json!({"supported": ["2026-07-28"]})),
                })),
                400,
                json!(-32022),
            ),
            (
                RequestError::NotReady {
                    id: json!(1),
                    raw: None,
                    why: "not ready".into(),
                },
                200,
                json!(-32603),
            ),
            (RequestError::Backlog(4096), 503, json!(-32603)),
            (RequestError::AnswerTooLarge(16), 502, json!(-32603)),
            // Plain text where clients expect text.
            (RequestError::SessionRequired, 400, Value::Null),
            (RequestError::SessionIdRequired, 400, Value::Null),
            (RequestError::Path, 400, Value::Null),
            (RequestError::Body("reset".into()), 400, Value::Null),
            (
                RequestError::Unreachable("refused".into()),
                502,
                Value::Null,
            ),
            (RequestError::NoStream, 405, Value::Null),
        ];
        for (err, status, code) in cases {
            let what = format!("{err:?}");
            let message = err.to_string();
            let (got_status, body) = answer(err).await;
            assert_eq!(got_status.as_u16(), status, "{what}");
            if code.is_null() {
                assert_eq!(body, Value::String(message), "{what}");
            } else {
                assert_eq!(body["jsonrpc"], "2.0", "{what}");
                assert_eq!(body["error"]["code"], code, "{what}");
                assert_eq!(body["error"]["message"], message, "{what}");
            }
        }
        // The id goes back as the client wrote it; `error.data` is kept.
        let resp = RequestError::InvalidMessage {
            id: json!(1.2345678901234567e22),
            raw,
            message: "`jsonrpc` must be \"2.0\"",
        }
        .answer();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(
            String::from_utf8_lossy(&bytes).contains(r#""id":12345678901234567890123"#),
            "{bytes:?}"
        );
        let (_, body) = answer(RequestError::Envelope(Box::new(Envelope {
            id: json!(1),
            raw: None,
            code: jsonrpc::UNSUPPORTED_PROTOCOL_VERSION,
            message: "x".into(),
            data: Some(json!({"supported": ["2026-07-28"]})),
        })))
        .await;
        assert_eq!(body["error"]["data"]["supported"][0], "2026-07-28");
        let resp = RequestError::NoStream.answer();
        assert_eq!(resp.headers()[header::ALLOW], "POST");
    }
}
