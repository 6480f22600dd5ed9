//! Server-sent-event bodies: framing of MCP messages and keep-alives on
//! the way to clients, and reading an upstream's events (see
//! [`EventReader`]) where a layer must look into a stream.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::Stream;
use serde_json::Value;

/// One `event: message` frame.
pub(crate) fn frame(msg: &Value) -> Bytes {
    frame_json(&super::jsonrpc::encode(msg, None))
}

/// One `event: message` frame around a message already encoded as JSON.
pub(crate) fn frame_json(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 24);
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A frame with a raw event name and data.
pub(crate) fn event(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// An SSE response whose body is `stream`; an error item aborts the
/// response (the client sees the connection end mid-stream).
pub(crate) fn response<E>(stream: impl Stream<Item = Result<Bytes, E>> + Send + 'static) -> Response
where
    E: Into<axum::BoxError> + 'static,
{
    let body = Body::from_stream(stream);
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

/// One event of an SSE body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// The event as received, its closing blank line included: an event
    /// passed on unchanged is passed on byte for byte.
    pub(crate) raw: Bytes,
    /// The `event:` field, if any (none means `message`).
    pub(crate) name: Option<String>,
    /// The `data:` lines joined with newlines, if there are any.
    pub(crate) data: Option<String>,
    /// The `id:` field, if any.
    pub(crate) id: Option<String>,
}

impl Event {
    /// Whether the event carries a message (named `message`, or unnamed).
    pub(crate) fn is_message(&self) -> bool {
        self.name.as_deref().is_none_or(|n| n == "message")
    }

    /// The event again with `data` in place of its data; its name and id
    /// are kept.
    pub(crate) fn with_data(&self, data: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(data.len() + 64);
        if let Some(name) = &self.name {
            out.extend_from_slice(format!("event: {name}\n").as_bytes());
        }
        if let Some(id) = &self.id {
            out.extend_from_slice(format!("id: {id}\n").as_bytes());
        }
        // Compact JSON has no line breaks; anything else is split into
        // `data:` lines, as SSE requires.
        for line in data.split(|b| *b == b'\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.push(b'\n');
        Bytes::from(out)
    }

    fn parse(raw: Bytes) -> Self {
        let (mut name, mut data, mut id) = (None, None::<String>, None);
        let text = String::from_utf8_lossy(&raw);
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() || line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => name = Some(value.to_owned()),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_owned()),
                },
                "id" => id = Some(value.to_owned()),
                _ => {}
            }
        }
        Self {
            raw,
            name,
            data,
            id,
        }
    }
}

/// An event longer than the reader's limit.
#[derive(Debug, thiserror::Error)]
#[error("an event of the server's stream is longer than {0} bytes")]
pub(crate) struct EventTooLong(pub(crate) usize);

/// Splits an SSE body, fed in chunks of any size, into its events. Lines
/// end with `\n` or `\r\n`; an event ends with a blank line.
pub(crate) struct EventReader {
    buf: BytesMut,
    /// Where the first line not yet looked at starts.
    line: usize,
    limit: usize,
}

impl EventReader {
    /// A reader that refuses events longer than `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            line: 0,
            limit,
        }
    }

    /// Adds bytes of the body.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, or `None` until more bytes come.
    pub(crate) fn next_event(&mut self) -> Result<Option<Event>, EventTooLong> {
        while let Some(nl) = self.buf[self.line..].iter().position(|b| *b == b'\n') {
            let end = self.line + nl;
            let blank = end == self.line || (end == self.line + 1 && self.buf[self.line] == b'\r');
            self.line = end + 1;
            if blank {
                let raw = self.buf.split_to(self.line).freeze();
                self.line = 0;
                return Ok(Some(Event::parse(raw)));
            }
        }
        if self.buf.len() > self.limit {
            return Err(EventTooLong(self.limit));
        }
        Ok(None)
    }

    /// What is left when the body ends: an event without its closing
    /// blank line, as received.
    pub(crate) fn rest(&mut self) -> Bytes {
        self.line = 0;
        self.buf.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&str]) -> Vec<Event> {
        let mut r = EventReader::new(1024);
        let mut out = Vec::new();
        for c in chunks {
            r.push(c.as_bytes());
            while let Some(e) = r.next_event().expect("within the limit") {
                out.push(e);
            }
        }
        out
    }

    #[test]
    fn events_are_split_whatever_the_chunks() {
        let body = "event: endpoint\ndata: /messages?x=1\n\n: keep-alive\n\nid: 7\ndata: {\"a\":\ndata: 1}\r\n\r\n";
        let whole = events(&[body]);
        let bytewise: Vec<String> = body.chars().map(String::from).collect();
        let bytewise: Vec<&str> = bytewise.iter().map(String::as_str).collect();
        assert_eq!(whole, events(&bytewise));
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].name.as_deref(), Some("endpoint"));
        assert_eq!(whole[0].data.as_deref(), Some("/messages?x=1"));
        assert!(!whole[0].is_message());
        assert_eq!(whole[1].data, None, "a comment carries no data");
        assert_eq!(whole[2].id.as_deref(), Some("7"));
        assert_eq!(whole[2].data.as_deref(), Some("{\"a\":\n1}"));
        let raw: Vec<u8> = whole.iter().flat_map(|e| e.raw.to_vec()).collect();
        assert_eq!(raw, body.as_bytes(), "the raw events are the body");
        assert_eq!(
            &whole[2].with_data(b"{}")[..],
            b"id: 7\ndata: {}\n\n",
            "a rewritten event keeps its id"
        );
    }

    #[test]
    fn an_endless_event_is_refused_and_a_cut_one_is_kept() {
        let mut r = EventReader::new(16);
        r.push(b"data: 0123456789abcdef");
        assert!(r.next_event().is_err());
        let mut r = EventReader::new(16);
        r.push(b"data: x\n");
        assert_eq!(r.next_event().expect("ok"), None);
        assert_eq!(&r.rest()[..], b"data: x\n");
    }
}
