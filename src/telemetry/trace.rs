//! OpenTelemetry traces of MCP requests, exported over OTLP (HTTP/protobuf)
//! off the request path.
//!
//! The proxy asks [`Tracer::request`] for one SERVER [`Span`] per MCP request,
//! joined to the caller's W3C `traceparent` when it sent a valid one; the span
//! buffers its finished children (middleware, the upstream round trip) and
//! [`Span::finish`] hands them all to a bounded queue. One export task
//! (`export.rs`) drains the queue in batches to the OTLP endpoint;
//! `context.rs` reads and writes the W3C trace-context headers.
//!
//! Invariants:
//! - Nothing on the request path awaits, blocks or takes a contended lock:
//!   `finish` is a `try_send` per span, a full (or closed) queue drops the span
//!   and counts it in [`TraceStats::dropped`].
//! - An unsampled request costs the header look-up and, when a `traceparent`
//!   is present, its parsing; no span is built.
//! - Sampling is the SDK's `ParentBased(TraceIdRatioBased)`, and
//!   `traceparent`/`tracestate` are parsed and produced only by the SDK's
//!   `TraceContextPropagator`; berth only bounds their length.
//! - Configured headers (API keys) go on the wire only: they are never
//!   logged, never in an error, and hidden from `Debug`.
//! - Spans carry what the proxy sets (MCP method, tool, workload, outcome);
//!   this module never sees request arguments or results.

mod context;
mod export;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample, SpanData, SpanEvents,
    SpanLinks,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use context::{TRACEPARENT, TRACESTATE, fields_of, remote_parent};

/// The instrumentation scope of every span berth emits.
const SCOPE: &str = "berth";
/// berth's version, reported as the resource's `service.version`.
const VERSION: &str = env!("CARGO_PKG_VERSION");

// === impl TraceSettings ===

/// Where and how traces are exported: built by `config.rs` from berth.toml's
/// `[tracing]` section. Tracing is off unless such settings are given to
/// [`Tracer::start`].
#[derive(Clone)]
pub struct TraceSettings {
    /// OTLP/HTTP traces URL, used as is (no `/v1/traces` is appended), e.g.
    /// `http://127.0.0.1:4318/v1/traces`. `http` or `https`, without
    /// credentials (pass them as [`headers`](Self::headers)).
    pub endpoint: url::Url,
    /// Extra headers sent with every export (e.g. an API key), exactly as
    /// given. Never logged and never part of an error.
    pub headers: Vec<(String, String)>,
    /// Share of requests traced when the caller sent no `traceparent`, in
    /// `0..=1`. A caller's sampled flag is honoured either way (parent-based
    /// sampling): `-01` is traced, `-00` is not.
    pub sample_ratio: f64,
    /// The resource's `service.name`; default `berth`.
    pub service_name: String,
    /// Spans waiting for export at most; beyond that they are dropped and
    /// counted. Default 2048.
    pub queue: usize,
    /// Spans sent in one export request at most. Default 512.
    pub batch: usize,
    /// Queued spans are exported at least this often. Default 1 s.
    pub interval: Duration,
    /// Time allowed to one export request, response included. Default 10 s.
    pub timeout: Duration,
}

impl Default for TraceSettings {
    fn default() -> Self {
        Self {
            endpoint: url::Url::parse("http://127.0.0.1:4318/v1/traces")
                .expect("the default endpoint is a valid url"),
            headers: Vec::new(),
            sample_ratio: 1.0,
            service_name: "berth".to_owned(),
            queue: 2048,
            batch: 512,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for TraceSettings {
    /// Shows header names only: their values may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("TraceSettings")
            .field("endpoint", &self.endpoint.as_str())
            .field("headers", &names)
            .field("sample_ratio", &self.sample_ratio)
            .field("service_name", &self.service_name)
            .field("queue", &self.queue)
            .field("batch", &self.batch)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl TraceSettings {
    /// Checks the settings: an `http`/`https` endpoint with a host and no
    /// credentials or fragment, a ratio within `0..=1`, valid header names and
    /// values, and non-zero sizes and durations.
    pub fn validate(&self) -> Result<(), TraceError> {
        let url = &self.endpoint;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TraceError::Endpoint("the scheme is not http or https"));
        }
        if !url.has_host() {
            return Err(TraceError::Endpoint("it has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TraceError::Endpoint(
                "credentials in the url are not supported; send them as headers",
            ));
        }
        if url.fragment().is_some() {
            return Err(TraceError::Endpoint("it has a fragment"));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(TraceError::SampleRatio(self.sample_ratio));
        }
        self.header_map()?;
        for (name, value) in [("queue", self.queue), ("batch", self.batch)] {
            if value == 0 {
                return Err(TraceError::Zero(name));
            }
        }
        for (name, value) in [("interval", self.interval), ("timeout", self.timeout)] {
            if value.is_zero() {
                return Err(TraceError::Zero(name));
            }
        }
        Ok(())
    }

    /// The configured headers, validated, their values marked sensitive.
    fn header_map(&self) -> Result<HeaderMap, TraceError> {
        let mut map = HeaderMap::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let key = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| TraceError::HeaderName(name.clone()))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| TraceError::HeaderValue(key.to_string()))?;
            value.set_sensitive(true);
            map.append(key, value);
        }
        Ok(map)
    }
}

/// Why tracing could not start. Messages never contain header values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// The endpoint URL is not usable.
    #[error("invalid tracing endpoint: {0}")]
    Endpoint(&'static str),
    /// The sample ratio is outside `0..=1` (or not a number).
    #[error("tracing sample_ratio must be within 0 and 1, got {0}")]
    SampleRatio(f64),
    /// A configured header name is not a valid HTTP header name.
    #[error("tracing header name {0:?} is invalid")]
    HeaderName(String),
    /// A configured header value is not a valid HTTP header value (the value
    /// itself is not shown).
    #[error("tracing header `{0}` has an invalid value")]
    HeaderValue(String),
    /// A size or duration that must be positive is zero.
    #[error("tracing `{0}` must be greater than zero")]
    Zero(&'static str),
    /// [`Tracer::start`] was called outside a tokio runtime.
    #[error("tracing must be started inside a tokio runtime")]
    NoRuntime,
    /// The OTLP exporter refused its configuration.
    #[error("cannot build the otlp span exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
}

// === impl Tracer ===

/// Export counters, in spans, since [`Tracer::start`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceStats {
    /// Spans the endpoint accepted.
    pub exported: u64,
    /// Spans dropped before export: the queue was full, tracing was shut
    /// down, or the shutdown deadline passed first.
    pub dropped: u64,
    /// Spans in export requests that failed (error status, network error,
    /// timeout).
    pub failed: u64,
}

/// The counters behind [`TraceStats`], shared with the export task.
#[derive(Debug, Default)]
struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// Starts request spans and exports them; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Tracer(Arc<Shared>);

/// What every clone of a [`Tracer`] and every open [`Span`] shares.
struct Shared {
    queue: mpsc::Sender<SpanData>,
    sampler: Sampler,
    ids: RandomIdGenerator,
    scope: InstrumentationScope,
    counters: Arc<Counters>,
    /// `Some(deadline)` asks the export task to flush and stop.
    stop: watch::Sender<Option<tokio::time::Instant>>,
    /// The export task, until [`Tracer::shutdown`] takes it.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Tracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracer")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Tracer {
    /// Validates `settings`, builds the OTLP exporter and spawns the export
    /// task on the current tokio runtime (so call it inside one).
    pub fn start(settings: TraceSettings) -> Result<Tracer, TraceError> {
        settings.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| TraceError::NoRuntime)?;
        let counters = Arc::new(Counters::default());
        let (queue, spans) = mpsc::channel(settings.queue);
        let (stop, stopped) = watch::channel(None);
        let pump = export::Pump::new(&settings, spans, counters.clone())?;
        let task = runtime.spawn(pump.run(stopped));
        Ok(Tracer(Arc::new(Shared {
            queue,
            sampler: Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))),
            ids: RandomIdGenerator::default(),
            scope: InstrumentationScope::builder(SCOPE)
                .with_version(VERSION)
                .build(),
            counters,
            stop,
            task: Mutex::new(Some(task)),
        })))
    }

    /// A SERVER span for one MCP request named after `method` (e.g.
    /// `tools/call`), a child of the caller's `traceparent` (and
    /// `tracestate`) in `headers` when present and valid, else a new root.
    /// `None` when the request is not sampled. Sets `mcp.method.name` =
    /// `method` and `mcp.server.name` = `workload`.
    pub fn request(&self, workload: &str, headers: &HeaderMap, method: &str) -> Option<Span> {
        let shared = &self.0;
        let parent = remote_parent(headers);
        let (trace_id, parent_id) = match &parent {
            Some(cx) => {
                let span = cx.span();
                let sc = span.span_context();
                (sc.trace_id(), sc.span_id())
            }
            None => (shared.trace_id(), SpanId::INVALID),
        };
        let sampled = shared.sampler.should_sample(
            parent.as_ref(),
            trace_id,
            method,
            &SpanKind::Server,
            &[],
            &[],
        );
        if sampled.decision != SamplingDecision::RecordAndSample {
            return None;
        }
        let context = SpanContext::new(
            trace_id,
            shared.span_id(),
            TraceFlags::SAMPLED,
            false,
            sampled.trace_state,
        );
        Some(Span {
            shared: shared.clone(),
            context,
            parent: parent_id,
            name: Cow::Owned(method.to_owned()),
            start: SystemTime::now(),
            anchor: Instant::now(),
            attributes: vec![
                KeyValue::new("mcp.method.name", method.to_owned()),
                KeyValue::new("mcp.server.name", workload.to_owned()),
            ],
            children: Vec::new(),
            ended: false,
        })
    }

    /// The export counters so far.
    pub fn stats(&self) -> TraceStats {
        let c = &self.0.counters;
        TraceStats {
            exported: c.exported.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting spans and exports what is queued, waiting at most
    /// `deadline`; spans finished afterwards, and those still queued at the
    /// deadline, are dropped and counted. A second call returns at once.
    pub async fn shutdown(&self, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        self.0.stop.send_replace(Some(until));
        let task = self
            .0
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut task) = task else { return };
        if tokio::time::timeout_at(until, &mut task).await.is_err() {
            // The export in flight outlived the deadline: its spans and the
            // queued ones are counted as dropped when the task is dropped.
            task.abort();
            let _ = task.await;
        }
    }
}

impl Shared {
    fn trace_id(&self) -> TraceId {
        loop {
            let id = self.ids.new_trace_id();
            if id != TraceId::INVALID {
                return id;
            }
        }
    }

    fn span_id(&self) -> SpanId {
        loop {
            let id = self.ids.new_span_id();
            if id != SpanId::INVALID {
                return id;
            }
        }
    }

    /// Queues a finished span without waiting; counts it dropped when the
    /// queue is full or closed.
    fn send(&self, span: SpanData) {
        if self.queue.try_send(span).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// === impl Span ===

/// The kind of a child span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildKind {
    /// Work inside berth (a middleware, a policy check).
    Internal,
    /// A call out of berth (the upstream round trip).
    Client,
}

/// One sampled MCP request being traced. End it with [`Span::finish`]; a
/// span dropped unfinished ends with `Error("abandoned")` (a client that
/// went away) and is exported too.
pub struct Span {
    shared: Arc<Shared>,
    context: SpanContext,
    /// The caller's span, or `SpanId::INVALID` for a root.
    parent: SpanId,
    name: Cow<'static, str>,
    /// Wall-clock start, and the monotonic instant taken with it: every
    /// other time is `start` plus a monotonic duration from `anchor`.
    start: SystemTime,
    anchor: Instant,
    attributes: Vec<KeyValue>,
    children: Vec<SpanData>,
    ended: bool,
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Span")
            .field("trace_id", &self.context.trace_id())
            .field("span_id", &self.context.span_id())
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Span {
    /// Sets attribute `key` (replacing an earlier value of the same key).
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        let value = value.into();
        match self.attributes.iter_mut().find(|kv| kv.key.as_str() == key) {
            Some(kv) => kv.value = value,
            None => self.attributes.push(KeyValue::new(key, value)),
        }
    }

    /// Renames the span, e.g. to `tools/call echo` once the tool is known.
    pub fn rename(&mut self, name: String) {
        self.name = Cow::Owned(name);
    }

    /// The W3C `traceparent` naming this span as the parent, for the
    /// upstream request.
    pub fn traceparent(&self) -> HeaderValue {
        fields_of(&self.context)
            .traceparent
            .and_then(|v| HeaderValue::from_str(&v).ok())
            // Unreachable: a sampled span's context is valid and renders as
            // hex. An all-zero traceparent is ignored by receivers.
            .unwrap_or(HeaderValue::from_static(
                "00-00000000000000000000000000000000-0000000000000000-00",
            ))
    }

    /// Sets `traceparent` (this span as the parent) and `tracestate` (the
    /// caller's, or removes it when there is none) on an upstream request's
    /// headers, replacing the caller's.
    pub fn inject(&self, headers: &mut HeaderMap) {
        let fields = fields_of(&self.context);
        for (name, value) in [
            (TRACEPARENT, fields.traceparent),
            (TRACESTATE, fields.tracestate),
        ] {
            match value
                .filter(|v| !v.is_empty())
                .map(|v| HeaderValue::from_str(&v))
            {
                Some(Ok(value)) => {
                    headers.insert(name, value);
                }
                _ => {
                    headers.remove(name);
                }
            }
        }
    }

    /// The trace id, 32 lowercase hex digits (for logs and tests).
    pub fn trace_id(&self) -> String {
        self.context.trace_id().to_string()
    }

    /// Records a finished child span (a middleware, the upstream call)
    /// between two instants measured by the caller, converted to wall-clock
    /// time through this span's start.
    pub fn child(
        &mut self,
        name: &'static str,
        kind: ChildKind,
        from: Instant,
        to: Instant,
        attrs: Vec<KeyValue>,
    ) {
        let context = SpanContext::new(
            self.context.trace_id(),
            self.shared.span_id(),
            TraceFlags::SAMPLED,
            false,
            self.context.trace_state().clone(),
        );
        let start = self.wall(from);
        let child = SpanData {
            span_context: context,
            parent_span_id: self.context.span_id(),
            parent_span_is_remote: false,
            span_kind: match kind {
                ChildKind::Internal => SpanKind::Internal,
                ChildKind::Client => SpanKind::Client,
            },
            name: Cow::Borrowed(name),
            start_time: start,
            end_time: self.wall(to).max(start),
            attributes: attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: self.shared.scope.clone(),
        };
        self.children.push(child);
    }

    /// Ends the span now, with status `Ok` or `Error(description)`, and
    /// queues it and its children without waiting (a full queue drops them,
    /// counted).
    pub fn finish(mut self, outcome: Result<(), String>) {
        self.end(match outcome {
            Ok(()) => Status::Ok,
            Err(description) => Status::error(description),
        });
    }

    /// `at` on the wall clock.
    fn wall(&self, at: Instant) -> SystemTime {
        match at.checked_duration_since(self.anchor) {
            Some(after) => self.start.checked_add(after),
            None => self.start.checked_sub(self.anchor.duration_since(at)),
        }
        .unwrap_or(self.start)
    }

    fn end(&mut self, status: Status) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let span = SpanData {
            span_context: self.context.clone(),
            parent_span_id: self.parent,
            parent_span_is_remote: self.parent != SpanId::INVALID,
            span_kind: SpanKind::Server,
            name: std::mem::take(&mut self.name),
            start_time: self.start,
            end_time: self.wall(Instant::now()),
            attributes: std::mem::take(&mut self.attributes),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.shared.scope.clone(),
        };
        self.shared.send(span);
        for child in self.children.drain(..) {
            self.shared.send(child);
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.end(Status::error("abandoned"));
    }
}
