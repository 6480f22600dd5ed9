//! Server-sent-event bodies: framing of MCP messages and keep-alives.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures::Stream;
use serde_json::Value;
use tokio::sync::mpsc;

/// One `event: message` frame.
pub(crate) fn frame(msg: &Value) -> Bytes {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"event: message\ndata: ");
    serde_json::to_writer(&mut out, msg).expect("JSON values encode");
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A frame with a raw event name and data.
pub(crate) fn event(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// An SSE response whose body is `stream`.
pub(crate) fn response(stream: impl Stream<Item = Bytes> + Send + 'static) -> Response {
    use futures::StreamExt;
    let body = Body::from_stream(stream.map(Ok::<_, Infallible>));
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// A stream of frames from `rx`, with a keep-alive comment whenever it is
/// quiet for `keepalive`; `guard` lives as long as the stream (it runs
/// clean-up when the client goes away).
pub(crate) fn channel_stream<G: Send + 'static>(
    first: Option<Bytes>,
    rx: mpsc::Receiver<Value>,
    keepalive: Duration,
    guard: G,
) -> impl Stream<Item = Bytes> + Send + 'static {
    futures::stream::unfold(
        (first, rx, guard),
        move |(mut first, mut rx, guard)| async move {
            if let Some(f) = first.take() {
                return Some((f, (None, rx, guard)));
            }
            match tokio::time::timeout(keepalive, rx.recv()).await {
                Ok(Some(msg)) => Some((frame(&msg), (None, rx, guard))),
                Ok(None) => None,
                Err(_) => Some((Bytes::from_static(b": keep-alive\n\n"), (None, rx, guard))),
            }
        },
    )
}
