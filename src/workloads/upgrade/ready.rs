//! Whether a workload's server answers MCP through its proxy: one
//! `initialize`, sent as any client sends it — a POST to a streamable-HTTP
//! proxy, or over a legacy SSE stream (the `endpoint` event, a POST there,
//! the answer on the stream). It passes the proxy's whole stack, so it
//! proves what a client would see. The caller bounds it with a deadline.

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// The id of berth's `initialize`.
const ID: &str = "berth-upgrade-check";
/// The most bytes read from one answer.
const MAX_ANSWER: usize = 1 << 20;
/// The handshake version asked for: one every current server speaks (a
/// server answers with the one it chooses).
const PROTOCOL: &str = "2025-06-18";

type HttpClient<B> = Client<HttpConnector, B>;

fn initialize() -> Bytes {
    let msg = json!({"jsonrpc": "2.0", "id": ID, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {},
        "clientInfo": {"name": "berth-upgrade", "version": env!("CARGO_PKG_VERSION")}}});
    Bytes::from(msg.to_string())
}

/// Sends `initialize` to the proxy at `url` (`/mcp`, or `/sse` with
/// `sse`); `Ok` once the server answers it with a result.
pub(super) async fn probe(url: &str, sse: bool) -> Result<(), String> {
    if sse {
        probe_sse(url).await
    } else {
        probe_streamable(url).await
    }
}

async fn probe_streamable(url: &str) -> Result<(), String> {
    let client: HttpClient<Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req = Request::post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .body(Full::new(initialize()))
        .map_err(|e| e.to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("cannot reach the proxy: {e}"))?;
    let status = resp.status();
    let session = resp.headers().get("mcp-session-id").cloned();
    let stream = is_event_stream(resp.headers());
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let answer = if stream && status.is_success() {
        let mut events = Events::default();
        loop {
            match next_chunk(&mut body, &mut buf).await? {
                Some(chunk) => events.push(&chunk),
                None => break None,
            }
            if let Some(answer) = events.answer() {
                break Some(answer);
            }
        }
    } else {
        while next_chunk(&mut body, &mut buf).await?.is_some() {}
        serde_json::from_slice::<Value>(&buf).ok()
    };
    if let Some(id) = session {
        // Ends the probe's session; a failure only leaves it to expire.
        let client: HttpClient<Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        if let Ok(req) = Request::builder()
            .method(Method::DELETE)
            .uri(url)
            .header("mcp-session-id", id)
            .body(Empty::new())
        {
            let _ = client.request(req).await;
        }
    }
    if !status.is_success() {
        return Err(format!(
            "the proxy answered HTTP {status}: {}",
            excerpt(&buf)
        ));
    }
    judge(answer)
}

async fn probe_sse(url: &str) -> Result<(), String> {
    let client: HttpClient<Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req = Request::get(url)
        .header(header::ACCEPT, "text/event-stream")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("cannot reach the proxy: {e}"))?;
    let status = resp.status();
    let mut stream = resp.into_body();
    let mut buf = Vec::new();
    if status != StatusCode::OK {
        let _ = next_chunk(&mut stream, &mut buf).await;
        return Err(format!(
            "the proxy answered HTTP {status}: {}",
            excerpt(&buf)
        ));
    }
    let mut events = Events::default();
    let endpoint = loop {
        match next_chunk(&mut stream, &mut buf).await? {
            Some(chunk) => events.push(&chunk),
            None => return Err("the SSE stream ended before its `endpoint` event".into()),
        }
        if let Some(e) = events.endpoint() {
            break e;
        }
    };
    let target = join(url, &endpoint)?;
    let poster: HttpClient<Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req = Request::post(target.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(initialize()))
        .map_err(|e| e.to_string())?;
    let posted = poster
        .request(req)
        .await
        .map_err(|e| format!("cannot post to the SSE endpoint: {e}"))?;
    if !posted.status().is_success() {
        return Err(format!(
            "the SSE endpoint answered HTTP {}",
            posted.status()
        ));
    }
    loop {
        if let Some(answer) = events.answer() {
            return judge(Some(answer));
        }
        match next_chunk(&mut stream, &mut buf).await? {
            Some(chunk) => events.push(&chunk),
            None => return Err("the SSE stream ended before the answer".into()),
        }
    }
}

/// Whether `answer` is a successful `initialize` result.
fn judge(answer: Option<Value>) -> Result<(), String> {
    let Some(answer) = answer else {
        return Err("no answer to `initialize`".into());
    };
    if answer["result"].is_object() {
        return Ok(());
    }
    let why = answer["error"]["message"]
        .as_str()
        .map_or_else(|| answer.to_string(), str::to_owned);
    Err(format!(
        "`initialize` failed: {}",
        crate::logging::escape_controls(&why)
    ))
}

fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// The next data chunk of `body` (also appended to `seen`, bounded).
async fn next_chunk(body: &mut Incoming, seen: &mut Vec<u8>) -> Result<Option<Bytes>, String> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(format!("reading the answer: {e}")),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers
                };
                if seen.len() + data.len() > MAX_ANSWER {
                    return Err(format!("the answer is larger than {MAX_ANSWER} bytes"));
                }
                seen.extend_from_slice(&data);
                return Ok(Some(data));
            }
        }
    }
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    crate::logging::escape_controls(text.trim()).into_owned()
}

/// `endpoint` (absolute, or a path) resolved against the stream's `url`.
fn join(url: &str, endpoint: &str) -> Result<url::Url, String> {
    let base = url::Url::parse(url).map_err(|e| format!("proxy URL {url}: {e}"))?;
    let joined = base
        .join(endpoint)
        .map_err(|e| format!("SSE endpoint {endpoint:?}: {e}"))?;
    if joined.origin() != base.origin() {
        return Err(format!(
            "the SSE endpoint {endpoint:?} is not on the proxy's origin"
        ));
    }
    Ok(joined)
}

/// Server-sent events read so far.
#[derive(Default)]
struct Events {
    pending: String,
    /// Complete events: (name, data).
    done: Vec<(String, String)>,
}

impl Events {
    fn push(&mut self, chunk: &[u8]) {
        self.pending
            .push_str(&String::from_utf8_lossy(chunk).replace("\r\n", "\n"));
        while let Some(end) = self.pending.find("\n\n") {
            let block: String = self.pending.drain(..end + 2).collect();
            let (mut name, mut data) = (String::from("message"), Vec::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    v.trim().clone_into(&mut name);
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                }
            }
            if !data.is_empty() {
                self.done.push((name, data.join("\n")));
            }
        }
    }

    /// The `endpoint` event's data.
    fn endpoint(&self) -> Option<String> {
        self.done
            .iter()
            .find(|(name, _)| name == "endpoint")
            .map(|(_, data)| data.trim().to_owned())
    }

    /// The answer to berth's `initialize` among the messages.
    fn answer(&self) -> Option<Value> {
        self.done
            .iter()
            .filter(|(name, _)| name == "message")
            .filter_map(|(_, data)| serde_json::from_str::<Value>(data).ok())
            .find(|m| m["id"] == ID)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_across_chunks() {
        let mut e = Events::default();
        e.push(b"event: endpoint\r\ndata: /messages?session_id=1\r\n");
        assert_eq!(e.endpoint(), None);
        e.push(b"\r\n: keep-alive\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",");
        assert_eq!(e.endpoint().as_deref(), Some("/messages?session_id=1"));
        assert_eq!(e.answer(), None);
        e.push(b"\ndata: \"id\":\"berth-upgrade-check\",\"result\":{}}\n\n");
        assert!(judge(e.answer()).is_ok());
    }

    #[test]
    fn errors_and_foreign_endpoints_are_refused() {
        let failed =
            json!({"jsonrpc": "2.0", "id": ID, "error": {"code": -32603, "message": "boom\nx"}});
        let why = judge(Some(failed)).unwrap_err();
        assert!(why.contains("boom\\nx"), "{why}");
        assert!(judge(None).is_err());
        assert!(join("http://127.0.0.1:5/sse", "http://evil.example/m").is_err());
        assert_eq!(
            join("http://127.0.0.1:5/sse", "/messages?s=1")
                .expect("joins")
                .as_str(),
            "http://127.0.0.1:5/messages?s=1"
        );
    }
}
