//! The one small MCP client and SSE reader of the test suites: streamable
//! HTTP, JSON or SSE answers. Tests that need a full client use the
//! official SDKs (`rmcp`, Python's `mcp`); this one is for speaking the
//! wire by hand.

use std::time::Duration;

use serde_json::{Value, json};

/// The `data:` payloads of an SSE body, one per event (multi-line data
/// joined with newlines), parsed as JSON; events whose data is not JSON
/// (an endpoint URL, a keep-alive) are skipped.
pub fn sse_messages(body: &str) -> Vec<Value> {
    sse_data(body)
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

/// The `data:` payloads of an SSE body, one per event, as text.
pub fn sse_data(body: &str) -> Vec<String> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|frame| {
            let data: Vec<&str> = frame
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|l| l.strip_prefix(' ').unwrap_or(l))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// The JSON-RPC messages of an HTTP answer: an SSE body's events, or the
/// body itself.
pub fn messages(body: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Array(batch)) => batch,
        Ok(v) => vec![v],
        Err(_) => sse_messages(body),
    }
}

/// An open SSE response read event by event.
pub struct SseStream {
    inner: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl SseStream {
    /// Reads `resp`'s body as SSE.
    pub fn new(resp: reqwest::Response) -> Self {
        Self {
            inner: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event, as its name (`message` when unnamed) and data;
    /// comments are skipped. Panics after `timeout` or if the stream ends.
    pub async fn next_event(&mut self, timeout: Duration) -> (String, String) {
        use futures::StreamExt;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data: Vec<&str> = Vec::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim_start().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if !data.is_empty() {
                    if name.is_empty() {
                        name = "message".into();
                    }
                    return (name, data.join("\n"));
                }
            }
            let chunk = tokio::time::timeout(timeout, self.inner.next())
                .await
                .unwrap_or_else(|_| panic!("no SSE event within {timeout:?}"))
                .expect("the SSE stream is open")
                .expect("a chunk");
            self.buf.push_str(
                &std::str::from_utf8(&chunk)
                    .expect("utf-8")
                    .replace("\r\n", "\n"),
            );
        }
    }

    /// The next event whose data is a JSON message.
    pub async fn next_message(&mut self, timeout: Duration) -> Value {
        loop {
            let (_, data) = self.next_event(timeout).await;
            if let Ok(msg) = serde_json::from_str(&data) {
                return msg;
            }
        }
    }
}

/// One MCP session over streamable HTTP, opened with `initialize` and
/// `notifications/initialized`. Cheap to clone (the clones share it).
#[derive(Clone, Debug)]
pub struct Session {
    /// The HTTP client it posts with.
    pub http: reqwest::Client,
    /// The endpoint.
    pub url: String,
    /// The session id the server gave, if any.
    pub sid: Option<String>,
    /// What `initialize` answered.
    pub init: Value,
}

impl Session {
    /// Opens a session at `url` (a proxy's `/mcp`).
    pub async fn open(url: &str) -> Result<Self, String> {
        Self::open_with(url, &[]).await
    }

    /// Opens a session, sending `headers` with every request.
    pub async fn open_with(url: &str, headers: &[(&str, &str)]) -> Result<Self, String> {
        let mut defaults = reqwest::header::HeaderMap::new();
        for (k, v) in headers {
            defaults.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
                reqwest::header::HeaderValue::from_str(v).map_err(|e| e.to_string())?,
            );
        }
        let mut s = Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .default_headers(defaults)
                .build()
                .map_err(|e| e.to_string())?,
            url: url.to_owned(),
            sid: None,
            init: Value::Null,
        };
        let (status, sid, answers) = s
            .post(
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "berth-tests", "version": "1"}}}),
            )
            .await?;
        let init = answers
            .into_iter()
            .find(|m| m["id"] == 0)
            .ok_or_else(|| format!("initialize: no answer ({status})"))?;
        if init["result"]["serverInfo"].is_null() {
            return Err(format!("initialize: {init}"));
        }
        s.sid = sid;
        s.init = init;
        s.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(s)
    }

    /// Posts `body` in this session: the status, the session id the answer
    /// carries, and the JSON-RPC messages in it.
    pub async fn post(&self, body: Value) -> Result<(u16, Option<String>, Vec<Value>), String> {
        let mut r = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = &self.sid {
            r = r.header("mcp-session-id", s);
        }
        let resp = r.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let sid = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok((status, sid, messages(&text)))
    }

    /// Opens a session at `url`, panicking if it cannot.
    pub async fn connect(url: &str) -> Self {
        Self::open(url)
            .await
            .unwrap_or_else(|e| panic!("a session at {url}: {e}"))
    }

    /// Posts `body` in this session and returns the open response.
    pub async fn send(&self, body: &Value) -> reqwest::Response {
        let mut r = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .json(body);
        if let Some(s) = &self.sid {
            r = r.header("mcp-session-id", s);
        }
        r.send().await.expect("post")
    }

    /// Posts `body` asking for an SSE answer; the open response, checked to
    /// be an event stream.
    pub async fn post_sse(&self, body: Value) -> reqwest::Response {
        let resp = self
            .http
            .post(&self.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", self.sid.clone().expect("session"))
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        resp
    }

    /// Sends a request that must succeed with a plain JSON answer (no
    /// stream) and returns it; takes a session id the answer gives.
    pub async fn call(&mut self, body: Value) -> Value {
        let resp = self.send(&body).await;
        if let Some(s) = resp.headers().get("mcp-session-id") {
            self.sid = Some(s.to_str().expect("ascii").to_owned());
        }
        let status = resp.status();
        let text = resp.text().await.expect("body");
        assert!(status.is_success(), "{status}: {text}");
        serde_json::from_str(&text).expect("json answer")
    }

    /// Sends a notification, which must be accepted (202).
    pub async fn notify(&self, body: Value) {
        assert_eq!(self.send(&body).await.status(), 202);
    }

    /// Sends a request and returns the answer with its id.
    pub async fn request(&self, body: Value) -> Result<Value, String> {
        let id = body["id"].clone();
        let (status, _, answers) = self.post(body).await?;
        answers
            .into_iter()
            .find(|m| m["id"] == id)
            .ok_or_else(|| format!("no answer to request {id} ({status})"))
    }

    /// Calls tool `name`; the JSON-RPC answer.
    pub async fn call_tool(&self, id: u64, name: &str, arguments: Value) -> Result<Value, String> {
        self.request(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}}))
            .await
    }

    /// The text of a tool result and whether it is an error.
    pub async fn tool_text(
        &self,
        id: u64,
        name: &str,
        arguments: Value,
    ) -> Result<(bool, String), String> {
        let answer = self.call_tool(id, name, arguments).await?;
        let text = answer["result"]["content"][0]["text"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no text in {answer}"))?;
        Ok((answer["result"]["isError"] == true, text))
    }

    /// Calls the fixture servers' `echo` tool; the text it answered.
    pub async fn echo(&self, id: u64, text: &str) -> Result<String, String> {
        match self.tool_text(id, "echo", json!({"message": text})).await? {
            (false, t) => Ok(t),
            (true, t) => Err(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_bodies_are_read_event_by_event() {
        let body = "event: endpoint\ndata: /messages?x=1\n\n: keep-alive\n\n\
                    event: message\r\ndata: {\"id\":1,\r\ndata: \"ok\":true}\r\n\r\n\
                    data:{\"id\":2}\n\n";
        assert_eq!(
            sse_data(body),
            vec!["/messages?x=1", "{\"id\":1,\n\"ok\":true}", "{\"id\":2}"]
        );
        assert_eq!(
            sse_messages(body),
            vec![json!({"id": 1, "ok": true}), json!({"id": 2})]
        );
        assert_eq!(messages("{\"id\":3}"), vec![json!({"id": 3})]);
        assert_eq!(messages("[{\"id\":3},{\"id\":4}]").len(), 2);
    }
}
