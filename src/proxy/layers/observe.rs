//! Metrics and traces of the MCP requests through a proxy (the telemetry
//! layer of `stack.rs`).
//!
//! [`Observe`] sits below the parse layer: it sees each JSON-RPC request
//! as the client sent it, and its answer as the client gets it, whichever
//! way the answer comes — the POST's JSON body, the POST's SSE stream, or
//! (legacy SSE transport) the GET stream the POST's endpoint belongs to.
//! For each request it records the method, the outcome and the time from
//! the request reaching this layer to its answer leaving it, the tool of a
//! `tools/call` (named only if the server listed it: see
//! `telemetry::metrics`), and, when traces are exported, a server span
//! joined to the caller's `traceparent`, with child spans for the upstream
//! round trip and the middleware on each side of it ([`Mark`] times the
//! transport). Answers are read as they stream past, never held back: the
//! layer copies nothing and delays no frame.
//!
//! A request whose answer never comes is counted `failed` when its stream
//! ends, `cancelled` when the client goes away first.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tower::{Layer, Service};

use super::chain::{content_type, endpoint_key, endpoint_of};
use super::parse::Parsed;
use super::rescue::RequestError;
use super::take;
use crate::proxy::jsonrpc::{self, Kind};
use crate::proxy::sse::EventReader;
use crate::telemetry::Probe;
use crate::telemetry::metrics::{Outcome, ToolSlot, WorkloadMetrics, method_index};
use crate::telemetry::trace::{ChildKind, Span};

/// Largest SSE event this layer reads (a larger one passes unread).
const MAX_EVENT: usize = 16 * 1024 * 1024;
/// Largest JSON answer this layer reads for its outcome.
const MAX_JSON: usize = 16 * 1024 * 1024;
/// Requests of one legacy SSE stream awaiting their answers.
const MAX_PENDING: usize = 4096;
/// Legacy SSE streams followed at once.
const MAX_STREAMS: usize = 4096;
/// Longest id, tool name or session id copied into a span attribute.
const MAX_ATTR: usize = 128;

/// Puts [`Observe`] in front of a service.
#[derive(Clone)]
pub(crate) struct ObserveLayer {
    shared: Arc<Shared>,
}

impl ObserveLayer {
    /// Records the traffic of one workload into `probe`; `chained` says
    /// whether middleware runs below (its spans are then recorded),
    /// `sessions` whether this layer follows the upstream's sessions (an
    /// HTTP upstream's; a stdio multiplexer counts its own).
    pub(crate) fn new(probe: Probe, chained: bool, sessions: bool) -> Self {
        Self {
            shared: Arc::new(Shared {
                probe,
                chained,
                sessions,
                legacy: Mutex::new(HashMap::new()),
                streams: AtomicUsize::new(0),
            }),
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            shared: self.shared.clone(),
            inner,
        }
    }
}

/// See [`ObserveLayer`].
#[derive(Clone)]
pub(crate) struct Observe<S> {
    shared: Arc<Shared>,
    inner: S,
}

struct Shared {
    probe: Probe,
    chained: bool,
    sessions: bool,
    /// The requests posted to each legacy SSE endpoint that await their
    /// answer on its stream, by endpoint (path and query) and id key.
    legacy: Mutex<HashMap<String, HashMap<String, Pending>>>,
    /// How many entries `legacy` has (read without its lock: a proxy
    /// without legacy streams never takes it).
    streams: AtomicUsize,
}

/// A request awaiting its answer.
struct Pending {
    /// Its id, as the client wrote it.
    id: Value,
    method: usize,
    tools_list: bool,
    initialize: bool,
    tool_call: bool,
    tool: Option<ToolSlot>,
    started: Instant,
    span: Option<Span>,
    timeline: Option<Arc<Timeline>>,
}

/// When a request reached the transport and its answer left it ([`Mark`]).
#[derive(Default)]
pub(crate) struct Timeline {
    times: Mutex<(Option<Instant>, Option<Instant>)>,
    /// `traceparent` (and `tracestate`) naming the request's span.
    context: axum::http::HeaderMap,
}

/// The part of an answer this layer reads.
#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<ErrorHead>,
}

#[derive(Deserialize)]
struct ErrorHead {
    #[serde(default)]
    code: Option<i64>,
}

#[derive(Deserialize)]
struct ToolResult {
    #[serde(rename = "isError", default)]
    is_error: Option<bool>,
}

#[derive(Deserialize)]
struct ToolsList<'a> {
    #[serde(borrow, default)]
    tools: Vec<Named<'a>>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
}

impl Shared {
    fn metrics(&self) -> Option<&WorkloadMetrics> {
        self.probe.metrics.as_deref()
    }

    /// The metrics that follow sessions, when this layer does.
    fn session_metrics(&self) -> Option<&WorkloadMetrics> {
        self.metrics().filter(|_| self.sessions)
    }

    /// The requests of a POST, and counts its notifications.
    fn pending(&self, req: &Request, parsed: &Parsed) -> Vec<Pending> {
        let mut out = Vec::new();
        let now = Instant::now();
        for msg in &parsed.messages {
            match jsonrpc::kind(msg) {
                Kind::Request => {}
                Kind::Notification => {
                    if let Some(m) = self.metrics() {
                        m.notification();
                    }
                    continue;
                }
                _ => continue,
            }
            let method = jsonrpc::method(msg);
            let tool_name = (method == "tools/call")
                .then(|| msg.pointer("/params/name").and_then(Value::as_str))
                .flatten();
            let tool = tool_name.and_then(|t| Some(self.metrics()?.tool(t)));
            let span = self.probe.tracer.as_ref().and_then(|t| {
                let mut span = t.request(&self.probe.workload, req.headers(), method)?;
                if let Some(name) = tool_name {
                    let name: String = name.chars().take(MAX_ATTR).collect();
                    span.rename(format!("{method} {name}"));
                    span.set("gen_ai.tool.name", name);
                    span.set("gen_ai.operation.name", "execute_tool");
                }
                let id = jsonrpc::id_of(msg).to_string();
                span.set(
                    "jsonrpc.request.id",
                    id.chars().take(MAX_ATTR).collect::<String>(),
                );
                Some(span)
            });
            out.push(Pending {
                id: jsonrpc::id_of(msg),
                method: method_index(method),
                tools_list: method == "tools/list",
                initialize: method == "initialize",
                tool_call: tool_name.is_some(),
                tool,
                started: now,
                span,
                timeline: None,
            });
        }
        out
    }

    /// Records how `p` ended; `answer` is its answer, when one came.
    fn finish(&self, mut p: Pending, outcome: Outcome, answer: Option<&Answer<'_>>) {
        let outcome = match (outcome, answer) {
            (Outcome::Ok, Some(a)) => classify(a, p.tool_call),
            (o, _) => o,
        };
        if let (true, Outcome::Ok, Some(m), Some(result)) = (
            p.tools_list,
            outcome,
            self.metrics(),
            answer.and_then(|a| a.result),
        ) && let Ok(list) = serde_json::from_str::<ToolsList<'_>>(result.get())
        {
            m.listed(list.tools.iter().map(|t| t.name.as_ref()));
        }
        let took = p.started.elapsed();
        if let Some(m) = self.metrics() {
            m.record(p.method, p.tool.as_ref(), outcome, took);
        }
        if let Some(mut span) = p.span.take() {
            if let Some(t) = &p.timeline {
                let (sent, back) = *t.times.lock().expect("timeline lock");
                if let (Some(sent), Some(back)) = (sent, back) {
                    if self.chained {
                        span.child(
                            "middleware request",
                            ChildKind::Internal,
                            p.started,
                            sent,
                            vec![],
                        );
                    }
                    span.child("upstream", ChildKind::Client, sent, back, vec![]);
                    if self.chained {
                        span.child(
                            "middleware response",
                            ChildKind::Internal,
                            back,
                            Instant::now(),
                            vec![],
                        );
                    }
                }
            }
            span.set("berth.outcome", outcome.label());
            if let Some(code) = answer.and_then(|a| a.error.as_ref()?.code) {
                span.set("rpc.jsonrpc.error_code", code);
            }
            span.finish(match outcome {
                Outcome::Ok => Ok(()),
                other => Err(other.label().to_owned()),
            });
        }
    }

    /// The table of legacy requests for `endpoint`, if a stream announced it.
    fn is_legacy(&self, endpoint: &str) -> bool {
        self.legacy
            .lock()
            .expect("legacy lock")
            .contains_key(endpoint)
    }
}

/// The outcome an answer says.
fn classify(a: &Answer<'_>, tool_call: bool) -> Outcome {
    if let Some(err) = &a.error {
        return if err.code == Some(crate::proxy::middleware::DENIED) {
            Outcome::Denied
        } else {
            Outcome::Error
        };
    }
    if tool_call
        && let Some(r) = a.result
        && serde_json::from_str::<ToolResult>(r.get()).is_ok_and(|r| r.is_error == Some(true))
    {
        return Outcome::Error;
    }
    Outcome::Ok
}

/// The id of an answer, if it is one.
fn answer_id(a: &Answer<'_>) -> Option<Value> {
    if a.result.is_none() && a.error.is_none() {
        return None;
    }
    serde_json::from_str(a.id?.get()).ok()
}

fn session_of(req: &Request) -> Option<String> {
    req.headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl<S> Service<Request> for Observe<S>
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

    fn call(&mut self, mut req: Request) -> Self::Future {
        let shared = self.shared.clone();
        let mut inner = take(&mut self.inner);
        let pending = match req.extensions().get::<Parsed>() {
            Some(parsed) => shared.pending(&req, parsed),
            None if req.method() == Method::GET => {
                let path = req.uri().path().to_owned();
                return async move {
                    let resp = inner.call(req).await?;
                    if !content_type(&resp).starts_with("text/event-stream") {
                        return Ok(resp);
                    }
                    let (parts, body) = resp.into_parts();
                    let watch = Watch::new(
                        body,
                        shared,
                        Vec::new(),
                        Mode::Stream {
                            path,
                            endpoint: None,
                        },
                    );
                    Ok(Response::from_parts(parts, Body::new(watch)))
                }
                .boxed();
            }
            None if req.method() == Method::DELETE => {
                let session = session_of(&req);
                return async move {
                    let resp = inner.call(req).await?;
                    if let (Some(m), Some(id)) = (shared.session_metrics(), session)
                        && (resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND)
                    {
                        m.session_closed(&id);
                    }
                    Ok(resp)
                }
                .boxed();
            }
            None => Vec::new(),
        };
        if pending.is_empty() {
            return inner.call(req).boxed();
        }
        let mut pending = pending;
        if pending.iter().any(|p| p.span.is_some()) {
            let mut context = axum::http::HeaderMap::new();
            if let Some(span) = pending.iter().find_map(|p| p.span.as_ref()) {
                span.inject(&mut context);
            }
            let timeline = Arc::new(Timeline {
                times: Mutex::default(),
                context,
            });
            for p in &mut pending {
                p.timeline = Some(timeline.clone());
            }
            req.extensions_mut().insert(timeline);
        }
        let session = shared.sessions.then(|| session_of(&req)).flatten();
        // A POST to the endpoint of a legacy SSE stream: its answer may come
        // on the stream before the POST returns, so it is awaited there
        // from now on.
        let endpoint = if shared.streams.load(Ordering::Relaxed) > 0 {
            endpoint_of(req.uri()).to_owned()
        } else {
            String::new()
        };
        let legacy = (!endpoint.is_empty() && shared.is_legacy(&endpoint)).then(|| {
            let keys: Vec<String> = pending.iter().map(|p| jsonrpc::id_key(&p.id)).collect();
            let mut overflow = Vec::new();
            if let Some(waiting) = shared
                .legacy
                .lock()
                .expect("legacy lock")
                .get_mut(&endpoint)
            {
                for (k, p) in keys.iter().zip(pending.drain(..)) {
                    if waiting.len() < MAX_PENDING {
                        waiting.insert(k.clone(), p);
                    } else {
                        overflow.push(p);
                    }
                }
            }
            for p in overflow {
                shared.finish(p, Outcome::Failed, None);
            }
            keys
        });
        let fut = inner.call(req);
        async move {
            let result = fut.await;
            // A legacy POST answered on the POST itself after all (an
            // error, a refusal): take its requests back.
            if let Some(keys) = &legacy {
                let answered_here = result
                    .as_ref()
                    .map_or(true, |r| r.status() != StatusCode::ACCEPTED);
                if answered_here {
                    let mut table = shared.legacy.lock().expect("legacy lock");
                    if let Some(waiting) = table.get_mut(&endpoint) {
                        pending.extend(keys.iter().filter_map(|k| waiting.remove(k)));
                    }
                }
            }
            let resp = match result {
                Ok(resp) => resp,
                Err(e) => {
                    for p in pending {
                        shared.finish(p, Outcome::Failed, None);
                    }
                    return Err(e);
                }
            };
            if pending.is_empty() {
                return Ok(resp);
            }
            if let Some(m) = shared.session_metrics() {
                if pending.iter().any(|p| p.initialize)
                    && let Some(id) = resp
                        .headers()
                        .get("mcp-session-id")
                        .and_then(|v| v.to_str().ok())
                {
                    m.session_opened(id);
                }
                if resp.status() == StatusCode::NOT_FOUND
                    && let Some(id) = &session
                {
                    m.session_closed(id);
                }
            }
            let ct = content_type(&resp);
            let mode = if ct.starts_with("text/event-stream") {
                Mode::Sse
            } else if ct.starts_with("application/json") && resp.status().is_success() {
                Mode::Json
            } else if ct.starts_with("application/json") {
                // An error status with a JSON-RPC error body (berth's own
                // refusals): read like any answer.
                Mode::Json
            } else {
                for p in pending {
                    shared.finish(p, Outcome::Failed, None);
                }
                return Ok(resp);
            };
            let (parts, body) = resp.into_parts();
            let watch = Watch::new(body, shared, pending, mode);
            Ok(Response::from_parts(parts, Body::new(watch)))
        }
        .boxed()
    }
}

/// What a [`Watch`]ed body is.
enum Mode {
    /// One JSON answer (or a batch of them).
    Json,
    /// The SSE stream answering a POST.
    Sse,
    /// A GET stream: its `endpoint` event names where its requests are
    /// posted; their answers come on it.
    Stream {
        path: String,
        endpoint: Option<String>,
    },
}

/// A response body that reads the answers passing through it.
struct Watch {
    inner: Body,
    shared: Arc<Shared>,
    pending: Vec<Pending>,
    mode: Mode,
    /// The JSON answer's first frame, and any further ones.
    json: (Option<Bytes>, Vec<Bytes>),
    json_len: usize,
    events: Option<EventReader>,
    done: bool,
}

impl Watch {
    fn new(inner: Body, shared: Arc<Shared>, pending: Vec<Pending>, mode: Mode) -> Self {
        let events =
            matches!(mode, Mode::Sse | Mode::Stream { .. }).then(|| EventReader::new(MAX_EVENT));
        Self {
            inner,
            shared,
            pending,
            mode,
            json: (None, Vec::new()),
            json_len: 0,
            events,
            done: false,
        }
    }

    fn on_data(&mut self, data: &Bytes) {
        match self.mode {
            Mode::Json => {
                self.json_len += data.len();
                if self.json_len <= MAX_JSON {
                    match &self.json.0 {
                        None => self.json.0 = Some(data.clone()),
                        Some(_) => self.json.1.push(data.clone()),
                    }
                }
            }
            Mode::Sse | Mode::Stream { .. } => {
                if matches!(self.mode, Mode::Sse) && self.pending.is_empty() {
                    // Every answer came: the rest passes unread.
                    self.events = None;
                }
                let Some(reader) = self.events.as_mut() else {
                    return;
                };
                reader.push(data);
                self.drain();
            }
        }
    }

    /// Reads the complete events received so far.
    fn drain(&mut self) {
        loop {
            let next = match self.events.as_mut() {
                Some(reader) => reader.next_event(),
                None => return,
            };
            match next {
                Ok(Some(event)) => {
                    let Some(data) = event.data.as_deref() else {
                        continue;
                    };
                    if event.name.as_deref() == Some("endpoint") {
                        self.announce(data);
                    } else if event.is_message() {
                        self.answered(data.as_bytes());
                    }
                }
                Ok(None) => return,
                Err(_) => {
                    // An event too long to read: the stream passes unread
                    // from here.
                    self.events = None;
                    return;
                }
            }
        }
    }

    /// A GET stream named the endpoint its client posts to.
    fn announce(&mut self, data: &str) {
        let Mode::Stream { path, endpoint } = &mut self.mode else {
            return;
        };
        let key = endpoint_key(data, path);
        let mut table = self.shared.legacy.lock().expect("legacy lock");
        if table.len() < MAX_STREAMS && !table.contains_key(&key) {
            table.insert(key.clone(), HashMap::new());
            self.shared.streams.store(table.len(), Ordering::Relaxed);
            *endpoint = Some(key);
        }
    }

    /// One message of a stream: the answer to a request awaited here?
    fn answered(&mut self, data: &[u8]) {
        let Ok(answer) = serde_json::from_slice::<Answer<'_>>(data) else {
            return;
        };
        let Some(id) = answer_id(&answer) else {
            return;
        };
        let found = match &self.mode {
            Mode::Stream {
                endpoint: Some(e), ..
            } => self
                .shared
                .legacy
                .lock()
                .expect("legacy lock")
                .get_mut(e)
                .and_then(|w| w.remove(&jsonrpc::id_key(&id))),
            Mode::Stream { .. } => None,
            _ => self
                .pending
                .iter()
                .position(|p| p.id == id)
                .map(|i| self.pending.swap_remove(i)),
        };
        if let Some(p) = found {
            self.shared.finish(p, Outcome::Ok, Some(&answer));
        }
    }

    /// The body ended (`complete`) or was dropped: what is still awaited
    /// ends without an answer.
    fn end(&mut self, complete: bool) {
        if self.done {
            return;
        }
        self.done = true;
        if let (Mode::Json, true) = (&self.mode, complete) {
            if self.json_len <= MAX_JSON {
                let (first, more) = std::mem::take(&mut self.json);
                let body: Bytes = match first {
                    Some(first) if more.is_empty() => first,
                    Some(first) => {
                        let mut all = first.to_vec();
                        more.iter().for_each(|b| all.extend_from_slice(b));
                        all.into()
                    }
                    None => Bytes::new(),
                };
                self.answered_json(&body);
            } else {
                // Too large to read: answered, outcome unread.
                for p in std::mem::take(&mut self.pending) {
                    self.shared.finish(p, Outcome::Ok, None);
                }
            }
        }
        let outcome = if complete {
            Outcome::Failed
        } else {
            Outcome::Cancelled
        };
        for p in std::mem::take(&mut self.pending) {
            self.shared.finish(p, outcome, None);
        }
        if let Mode::Stream {
            endpoint: Some(e), ..
        } = &self.mode
        {
            let left = {
                let mut table = self.shared.legacy.lock().expect("legacy lock");
                let left = table.remove(e);
                self.shared.streams.store(table.len(), Ordering::Relaxed);
                left
            };
            for p in left.into_iter().flat_map(HashMap::into_values) {
                self.shared.finish(p, outcome, None);
            }
        }
    }

    /// A JSON body: one answer, or a batch of them.
    fn answered_json(&mut self, body: &[u8]) {
        let trimmed = body.trim_ascii_start();
        if trimmed.first() == Some(&b'[') {
            if let Ok(all) = serde_json::from_slice::<Vec<&RawValue>>(body) {
                for one in all {
                    self.answered(one.get().as_bytes());
                }
            }
        } else {
            self.answered(body);
        }
    }
}

impl HttpBody for Watch {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    this.on_data(data);
                }
                if this.inner.is_end_stream() {
                    this.end(true);
                }
            }
            Some(Err(_)) => this.end(false),
            None => this.end(true),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.end(false);
    }
}

/// Puts [`Mark`] in front of the transport (only when traces are
/// exported).
#[derive(Clone, Copy)]
pub(crate) struct MarkLayer;

impl<S> Layer<S> for MarkLayer {
    type Service = Mark<S>;

    fn layer(&self, inner: S) -> Mark<S> {
        Mark { inner }
    }
}

/// Notes when a traced request reaches the transport and when its answer
/// has left it (the upstream round trip), and names the request's span as
/// the parent of the upstream's (`traceparent`).
#[derive(Clone)]
pub(crate) struct Mark<S> {
    inner: S,
}

impl<S> Service<Request> for Mark<S>
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

    fn call(&mut self, mut req: Request) -> Self::Future {
        let Some(timeline) = req.extensions_mut().remove::<Arc<Timeline>>() else {
            return self.inner.call(req).boxed();
        };
        if !timeline.context.is_empty() {
            // The caller's context is replaced by the span's (same trace).
            req.headers_mut().remove("tracestate");
            for (name, value) in &timeline.context {
                req.headers_mut().insert(name.clone(), value.clone());
            }
        }
        timeline.times.lock().expect("timeline lock").0 = Some(Instant::now());
        let fut = self.inner.call(req);
        async move {
            let resp = fut.await?;
            let (parts, body) = resp.into_parts();
            Ok(Response::from_parts(
                parts,
                Body::new(Ends {
                    inner: body,
                    timeline: Some(timeline),
                }),
            ))
        }
        .boxed()
    }
}

/// A transport's answer body, noting when it ends.
struct Ends {
    inner: Body,
    timeline: Option<Arc<Timeline>>,
}

impl Ends {
    fn ended(&mut self) {
        if let Some(t) = self.timeline.take() {
            t.times.lock().expect("timeline lock").1 = Some(Instant::now());
        }
    }
}

impl HttpBody for Ends {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if frame.is_none() || this.inner.is_end_stream() {
            this.ended();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Ends {
    fn drop(&mut self) {
        self.ended();
    }
}
