//! Reads the JSON-RPC messages of a request body once, for every layer
//! below and for the transport: the streamable HTTP and SSE endpoints of a
//! stdio workload take their message from here ([`Parsed`], a request
//! extension), and on an HTTP upstream the middleware sees the same
//! messages the server gets, so a layer sees the same `McpRequest` whatever
//! the upstream.
//!
//! A body without a declared length is cut at `max_body_bytes` here.

use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;
use tower::{Layer, Service};

use super::rescue::RequestError;
use super::take;
use crate::proxy::jsonrpc::{self, Kind};

/// The messages of a request body, as read by [`Parse`]. (`Clone` because
/// request extensions must be; the layers take it out, never copy it.)
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    /// The body as the client sent it (the ids in it as written).
    pub(crate) body: Bytes,
    /// Its messages: the one message, or the elements of a batch.
    pub(crate) messages: Vec<Value>,
    /// Whether the body is a batch (a JSON array).
    pub(crate) batch: bool,
}

/// Which requests a [`Parse`] reads, and what it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// berth's own endpoints in front of a stdio server: the body of every
    /// `POST /mcp` and `POST /messages` is one JSON-RPC 2.0 message;
    /// anything else is refused.
    Stdio,
    /// An HTTP server's endpoints, whatever their paths: every request body
    /// that is JSON (single messages and batches). A message with a
    /// `method` must be a valid request or notification, and a body that
    /// says it is JSON (or says nothing) must be JSON: what the server
    /// could read as a message, the layers below see first. Other bodies
    /// (a form) pass as they are.
    Http,
}

/// Puts [`Parse`] in front of a service.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParseLayer {
    reading: Reading,
    max: usize,
}

impl ParseLayer {
    /// Reads bodies of up to `max` bytes as `reading` says.
    pub(crate) fn new(reading: Reading, max: usize) -> Self {
        Self { reading, max }
    }
}

impl<S> Layer<S> for ParseLayer {
    type Service = Parse<S>;

    fn layer(&self, inner: S) -> Parse<S> {
        Parse {
            reading: self.reading,
            max: self.max,
            inner,
        }
    }
}

/// See [`ParseLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Parse<S> {
    reading: Reading,
    max: usize,
    inner: S,
}

impl<S> Parse<S> {
    /// Whether this layer reads the body of `req`.
    fn reads(&self, req: &Request) -> bool {
        match self.reading {
            Reading::Stdio => {
                req.method() == Method::POST && matches!(req.uri().path(), "/mcp" | "/messages")
            }
            Reading::Http => !matches!(*req.method(), Method::GET | Method::HEAD),
        }
    }
}

impl<S> Service<Request> for Parse<S>
where
    S: Service<Request, Response = Response, Error = RequestError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = RequestError;
    type Future = BoxFuture<'static, Result<Response, RequestError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RequestError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if !self.reads(&req) {
            return self.inner.call(req).boxed();
        }
        let (reading, max) = (self.reading, self.max);
        let mut inner = take(&mut self.inner);
        async move {
            let (mut parts, body) = req.into_parts();
            let body = read(body, max).await?;
            let parsed = match reading {
                Reading::Stdio => Some(one(body.clone())?),
                Reading::Http => any(body.clone(), &parts.headers)?,
            };
            if let Some(parsed) = parsed {
                parts.extensions.insert(parsed);
            }
            inner
                .call(Request::from_parts(parts, Body::from(body)))
                .await
        }
        .boxed()
    }
}

/// The whole body, cut at `max` bytes.
async fn read(body: Body, max: usize) -> Result<Bytes, RequestError> {
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(RequestError::TooLarge(max)),
        Err(e) => Err(RequestError::Body(e.to_string())),
    }
}

/// One JSON-RPC 2.0 message ([`Reading::Stdio`]).
fn one(body: Bytes) -> Result<Parsed, RequestError> {
    if body.trim_ascii_start().first() == Some(&b'[') {
        return Err(RequestError::Batch);
    }
    let msg: Value =
        serde_json::from_slice(&body).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
    if let Err(message) = jsonrpc::check_version(&msg) {
        return Err(RequestError::InvalidMessage {
            id: jsonrpc::id_of(&msg),
            raw: jsonrpc::raw_id_of(&body, &msg),
            message,
        });
    }
    Ok(Parsed {
        body,
        messages: vec![msg],
        batch: false,
    })
}

/// Whether a body labelled with these headers is meant as JSON: labelled
/// `application/json` (or `…+json`), or not labelled at all.
fn meant_as_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(ct) = ct.to_str() else {
        return false;
    };
    let mime = ct.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json") || mime.to_ascii_lowercase().ends_with("+json")
}

/// The messages of a body for an HTTP server ([`Reading::Http`]), or
/// `None` for a body that holds none.
fn any(body: Bytes, headers: &HeaderMap) -> Result<Option<Parsed>, RequestError> {
    if body.trim_ascii().is_empty() {
        return Ok(None);
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) if meant_as_json(headers) => return Err(RequestError::InvalidJson(e.to_string())),
        Err(_) => return Ok(None),
    };
    let (messages, batch) = match value {
        Value::Array(items) => (items, true),
        one @ Value::Object(_) => (vec![one], false),
        _ => return Ok(None),
    };
    for msg in &messages {
        if msg.get("method").is_none() {
            continue; // an answer, or JSON that is no message at all
        }
        let valid = jsonrpc::check_version(msg).is_ok()
            && matches!(jsonrpc::kind(msg), Kind::Request | Kind::Notification);
        if !valid {
            return Err(RequestError::InvalidMessage {
                id: jsonrpc::id_of(msg),
                raw: if batch {
                    None
                } else {
                    jsonrpc::raw_id_of(&body, msg)
                },
                message: "not a JSON-RPC 2.0 request or notification",
            });
        }
    }
    Ok(Some(Parsed {
        body,
        messages,
        batch,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        }
        h
    }

    fn http(body: &str, ct: Option<&str>) -> Result<Option<Parsed>, RequestError> {
        any(Bytes::from(body.to_owned()), &headers(ct))
    }

    #[test]
    fn http_bodies() {
        let single = http(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, None)
            .unwrap()
            .expect("a message");
        assert!(!single.batch);
        assert_eq!(single.messages.len(), 1);
        let batch = http(
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":9,"result":{}}]"#,
            Some("application/json"),
        )
        .unwrap()
        .expect("messages");
        assert!(batch.batch);
        assert_eq!(batch.messages.len(), 3);
        // Nothing to read: passed on as is.
        assert!(http("", None).unwrap().is_none());
        assert!(
            http("grant_type=x", Some("application/x-www-form-urlencoded"))
                .unwrap()
                .is_none()
        );
        assert!(http("42", None).unwrap().is_none());
        // What a server could take for a message must be one.
        for (body, ct) in [
            ("{not json", None),
            ("{not json", Some("application/json; charset=utf-8")),
            ("{not json", Some("application/vnd.api+json")),
        ] {
            assert!(
                matches!(http(body, ct), Err(RequestError::InvalidJson(_))),
                "{body} {ct:?}"
            );
        }
        for body in [
            r#"{"id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call"}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"1.0","id":2,"method":"b"}]"#,
        ] {
            assert!(
                matches!(
                    http(body, Some("application/json")),
                    Err(RequestError::InvalidMessage { .. })
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn stdio_bodies() {
        assert!(matches!(
            one(Bytes::from_static(b" [1]")),
            Err(RequestError::Batch)
        ));
        assert!(matches!(
            one(Bytes::from_static(b"nope")),
            Err(RequestError::InvalidJson(_))
        ));
        match one(Bytes::from_static(
            br#"{"jsonrpc":"1.0","id":12345678901234567890123,"method":"x"}"#,
        )) {
            Err(RequestError::InvalidMessage { raw, .. }) => {
                assert_eq!(raw.expect("an inexact id").get(), "12345678901234567890123");
            }
            other => panic!("{other:?}"),
        }
        let p = one(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"x"}"#,
        ))
        .unwrap();
        assert_eq!(p.messages[0]["method"], "x");
    }
}
