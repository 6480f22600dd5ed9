//! Numbers an operator can watch: Prometheus metrics of every workload's
//! proxy, of the workloads themselves, of the plugins and of berth's own
//! process ([`metrics`], encoded by [`expose`] for `GET /metrics`), and
//! OpenTelemetry traces of the MCP requests through the proxies, exported
//! over OTLP ([`trace`]).
//!
//! Invariants: the request path only touches atomics and a read lock (a
//! span is queued with `try_send`, never awaited; a full queue drops and
//! counts); every label value is bounded by berth (method names from a
//! fixed list, tools only once the server listed them, fixed outcome and
//! reason words), so no client can create series; no argument, result or
//! token reaches a metric or a span.

pub mod expose;
pub mod metrics;
pub mod trace;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use expose::Scrape;
pub use metrics::{Metrics, ProxyStats, WorkloadMetrics};
pub use trace::{TraceError, TraceSettings, TraceStats, Tracer};

/// `[metrics]` in berth.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Whether the proxies count their traffic and `/metrics` is served
    /// (on the API listener, behind its authentication).
    pub enabled: bool,
    /// Also serve `/metrics` on this address (a listener of its own, for a
    /// scraper kept off the API's port). It asks for the API's token or
    /// access token like the API does, unless `public = true`.
    pub listen: Option<SocketAddr>,
    /// Serve the separate listener without authentication (bind it to an
    /// address only the scraper reaches).
    pub public: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            public: false,
        }
    }
}

/// `[traces]` in berth.toml: OpenTelemetry traces over OTLP/HTTP
/// (protobuf). Off unless `endpoint` is set.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracesSettings {
    /// The OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: Option<url::Url>,
    /// Headers sent with every export (an API key): never logged.
    pub headers: BTreeMap<String, String>,
    /// The share of requests traced when the caller's `traceparent` does
    /// not say (a caller's sampling decision is followed).
    pub sample_ratio: f64,
    /// The `service.name` of berth's spans.
    pub service_name: String,
    /// Spans queued for export at most; past it they are dropped and
    /// counted (`berth_trace_spans_dropped_total`).
    pub queue: usize,
    /// Spans per export request at most.
    pub batch: usize,
    /// Exports at least this often, in milliseconds.
    pub interval_ms: u64,
    /// How long one export may take, in seconds.
    pub timeout_secs: u64,
}

impl std::fmt::Debug for TracesSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracesSettings")
            .field("endpoint", &self.endpoint)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("sample_ratio", &self.sample_ratio)
            .finish_non_exhaustive()
    }
}

impl Default for TracesSettings {
    fn default() -> Self {
        let d = TraceSettings::default();
        Self {
            endpoint: None,
            headers: BTreeMap::new(),
            sample_ratio: 1.0,
            service_name: d.service_name,
            queue: d.queue,
            batch: d.batch,
            interval_ms: d.interval.as_millis() as u64,
            timeout_secs: d.timeout.as_secs(),
        }
    }
}

impl TracesSettings {
    /// The exporter's settings, when traces are on; checked.
    pub fn exporter(&self) -> Result<Option<TraceSettings>, TraceError> {
        let Some(endpoint) = &self.endpoint else {
            return Ok(None);
        };
        let settings = TraceSettings {
            endpoint: endpoint.clone(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            sample_ratio: self.sample_ratio,
            service_name: self.service_name.clone(),
            queue: self.queue,
            batch: self.batch,
            interval: Duration::from_millis(self.interval_ms.max(1)),
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
        };
        settings.validate()?;
        Ok(Some(settings))
    }
}

/// berth's metrics and trace exporter.
#[derive(Default)]
pub struct Telemetry {
    /// The proxies' counters; `None` with `[metrics] enabled = false`.
    pub metrics: Option<Arc<Metrics>>,
    /// The span exporter, with `[traces]` on.
    pub tracer: Option<Tracer>,
}

impl Telemetry {
    /// Starts what the settings turn on (the trace exporter's task runs on
    /// the current tokio runtime).
    pub fn start(metrics: &MetricsSettings, traces: &TracesSettings) -> Result<Self, TraceError> {
        let tracer = traces.exporter()?.map(Tracer::start).transpose()?;
        Ok(Self {
            metrics: metrics.enabled.then(Arc::default),
            tracer,
        })
    }

    /// What the proxy of workload `name` records into, if anything.
    pub fn probe(&self, name: &str) -> Option<Probe> {
        let metrics = self.metrics.as_ref().map(|m| m.workload(name));
        if metrics.is_none() && self.tracer.is_none() {
            return None;
        }
        Some(Probe {
            workload: Arc::from(name),
            metrics,
            tracer: self.tracer.clone(),
        })
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("metrics", &self.metrics.is_some())
            .field("traces", &self.tracer.is_some())
            .finish()
    }
}

/// What one proxy records its traffic into.
#[derive(Clone)]
pub struct Probe {
    /// The workload's name.
    pub workload: Arc<str>,
    /// Its counters, when metrics are on.
    pub metrics: Option<Arc<WorkloadMetrics>>,
    /// The span exporter, when traces are on.
    pub tracer: Option<Tracer>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("workload", &self.workload)
            .field("metrics", &self.metrics.is_some())
            .field("traces", &self.tracer.is_some())
            .finish()
    }
}

/// One workload's numbers, for a UI without Prometheus (`GET
/// /api/v1beta/x/berth/workloads/{name}/stats`, a berth extension): the
/// same values `/metrics` shows.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = berth::WorkloadStats)]
pub struct WorkloadStats {
    /// The workload.
    pub name: String,
    /// Its status.
    pub status: String,
    /// Times berth restarted its server.
    pub restart_count: u32,
    /// Its proxy's open MCP sessions, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<usize>,
    /// What its processes use (native workloads that run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageView>,
    /// Its proxy's traffic since berth started (absent with `[metrics]
    /// enabled = false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyStats>,
}

/// What a workload's processes use.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[schema(as = berth::WorkloadUsage)]
pub struct UsageView {
    /// Live processes.
    pub processes: u32,
    /// Their resident memory, bytes.
    pub rss_bytes: u64,
    /// Their CPU time, user and system, seconds.
    pub cpu_seconds: f64,
}

impl From<berth_runtime_api::Usage> for UsageView {
    fn from(u: berth_runtime_api::Usage) -> Self {
        Self {
            processes: u.processes,
            rss_bytes: u.rss_bytes,
            cpu_seconds: u.cpu_seconds,
        }
    }
}
