//! `/metrics`: one scrape's numbers, encoded by `prometheus-client` in the
//! Prometheus text format (or OpenMetrics, when the scraper asks for it).
//!
//! The numbers are gathered at scrape time into a [`Scrape`] (the API
//! handler reads the workloads, the runtimes and the plugins; the proxies'
//! counters come from [`super::Metrics`]) and encoded by a collector
//! registered for that one scrape, so every series reads the same moment.

use std::sync::Arc;

use berth_runtime_api::Usage;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::metrics::{HistogramSnapshot, Outcome, ProxyStats, WorkloadMetrics};
use super::trace::TraceStats;

/// The `Content-Type` of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The `Content-Type` of the OpenMetrics text format.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One workload, as a scrape sees it.
#[derive(Debug, Clone)]
pub struct WorkloadSample {
    /// Its name.
    pub name: String,
    /// Its status word (`running`, `stopped`, …).
    pub status: &'static str,
    /// Times berth restarted it.
    pub restarts: u64,
    /// Its proxy's open MCP sessions, when known.
    pub sessions: Option<usize>,
    /// What its processes use, when its runtime measures it.
    pub usage: Option<Usage>,
    /// Its proxy's counters.
    pub metrics: Option<Arc<WorkloadMetrics>>,
}

/// One plugin, as a scrape sees it.
#[derive(Debug, Clone)]
pub struct PluginSample {
    /// Its name.
    pub name: String,
    /// Its kind (`middleware`, `registry_source`, `secrets_provider`).
    pub kind: &'static str,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Calls that trapped or timed out.
    pub traps: u64,
    /// Their latency.
    pub latency: HistogramSnapshot,
}

/// berth's own process.
#[derive(Debug, Clone, Copy, Default)]
pub struct OwnProcess {
    /// CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Virtual memory, bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The file descriptor limit.
    pub max_fds: Option<u64>,
    /// Threads.
    pub threads: u64,
    /// When it started, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl OwnProcess {
    /// Reads `/proc/self`; `None` without `/proc`.
    pub fn read() -> Option<Self> {
        let s = berth_backend_process::usage::sample("self")?;
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| {
                l.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
            });
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
        });
        Some(Self {
            cpu_seconds: s.cpu_seconds,
            rss_bytes: s.rss_bytes,
            virtual_bytes: s.virtual_bytes,
            open_fds,
            max_fds,
            threads: s.threads,
            start_time_seconds: boot.map(|b| b + s.started_after_boot),
        })
    }
}

/// Everything one scrape shows.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Every workload.
    pub workloads: Vec<WorkloadSample>,
    /// Every plugin.
    pub plugins: Vec<PluginSample>,
    /// berth's own process.
    pub process: Option<OwnProcess>,
    /// The span exporter's counters, when traces are exported.
    pub traces: Option<TraceStats>,
}

/// Every status word a workload may have, so each status series exists
/// (0 or 1) for every workload.
pub const STATUSES: [&str; 11] = [
    "running",
    "stopped",
    "error",
    "starting",
    "stopping",
    "unhealthy",
    "removing",
    "unknown",
    "unauthenticated",
    "auth_retrying",
    "policy_stopped",
];

impl Scrape {
    /// The scrape in the Prometheus text format, or OpenMetrics.
    pub fn encode(self, openmetrics: bool) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Collect(Arc::new(self))));
        let mut out = String::with_capacity(16 * 1024);
        let result = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        };
        // Writing to a String cannot fail; an encoder error would be a bug
        // in a label (all of them are berth's own words or checked names).
        if let Err(e) = result {
            tracing::error!(error = %e, "Could not encode the metrics.");
        }
        out
    }
}

#[derive(Debug)]
struct Collect(Arc<Scrape>);

type Enc<'a> = DescriptorEncoder<'a>;

const NO_LABELS: [(&str, &str); 0] = [];

fn family<L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut Enc<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    values: impl IntoIterator<Item = (L, f64)>,
) -> Result<(), std::fmt::Error> {
    let values: Vec<(L, f64)> = values.into_iter().collect();
    if values.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in &values {
        let mut fam = m.encode_family(labels)?;
        match kind {
            MetricType::Counter => fam.encode_counter::<NoLabelSet, f64, f64>(value, None)?,
            _ => fam.encode_gauge(value)?,
        }
    }
    Ok(())
}

fn histograms<L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut Enc<'_>,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, HistogramSnapshot)>,
) -> Result<(), std::fmt::Error> {
    let values: Vec<(L, HistogramSnapshot)> = values.into_iter().collect();
    if values.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in &values {
        m.encode_family(labels)?.encode_histogram::<NoLabelSet>(
            h.sum_seconds,
            h.count,
            &h.buckets,
            None,
        )?;
    }
    Ok(())
}

impl Collector for Collect {
    fn encode(&self, mut enc: Enc<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let e = &mut enc;
        family(
            e,
            "berth_build_info",
            "berth's version (always 1).",
            MetricType::Gauge,
            [([("version", env!("CARGO_PKG_VERSION"))], 1.0)],
        )?;
        // Per workload: status, restarts, sessions, resource use.
        family(
            e,
            "berth_workload_status",
            "1 for the workload's current status, 0 for the others.",
            MetricType::Gauge,
            s.workloads.iter().flat_map(|w| {
                STATUSES.iter().map(move |st| {
                    (
                        [("workload", w.name.as_str()), ("status", *st)],
                        f64::from(u8::from(w.status == *st)),
                    )
                })
            }),
        )?;
        family(
            e,
            "berth_workload_restarts",
            "Times berth restarted the workload's server after it exited or hung.",
            MetricType::Counter,
            s.workloads
                .iter()
                .map(|w| ([("workload", w.name.as_str())], w.restarts as f64)),
        )?;
        family(
            e,
            "berth_mcp_active_sessions",
            "Open MCP sessions of the workload's proxy.",
            MetricType::Gauge,
            s.workloads
                .iter()
                .filter_map(|w| Some(([("workload", w.name.as_str())], w.sessions? as f64))),
        )?;
        let usage = |f: fn(&Usage) -> f64| {
            s.workloads
                .iter()
                .filter_map(move |w| Some(([("workload", w.name.as_str())], f(w.usage.as_ref()?))))
        };
        family(
            e,
            "berth_workload_resident_memory_bytes",
            "Resident memory of every process of a native workload.",
            MetricType::Gauge,
            usage(|u| u.rss_bytes as f64),
        )?;
        family(
            e,
            "berth_workload_cpu_seconds",
            "CPU time (user and system) of every process of a native workload.",
            MetricType::Counter,
            usage(|u| u.cpu_seconds),
        )?;
        family(
            e,
            "berth_workload_processes",
            "Live processes of a native workload.",
            MetricType::Gauge,
            usage(|u| f64::from(u.processes)),
        )?;
        // The proxies' traffic.
        let stats: Vec<(&str, ProxyStats)> = s
            .workloads
            .iter()
            .filter_map(|w| Some((w.name.as_str(), w.metrics.as_ref()?.snapshot())))
            .collect();
        family(
            e,
            "berth_mcp_requests",
            "MCP requests through the workload's proxy, by method and outcome.",
            MetricType::Counter,
            stats.iter().flat_map(|(w, st)| {
                st.methods.iter().flat_map(move |(m, ms)| {
                    Outcome::ALL.iter().map(move |o| {
                        (
                            [
                                ("workload", *w),
                                ("method", m.as_str()),
                                ("outcome", o.label()),
                            ],
                            ms.outcomes.get(o.label()).copied().unwrap_or(0) as f64,
                        )
                    })
                })
            }),
        )?;
        family(
            e,
            "berth_mcp_request_errors",
            "MCP requests that did not end with a result (outcome other than ok).",
            MetricType::Counter,
            stats.iter().flat_map(|(w, st)| {
                st.methods.iter().map(move |(m, ms)| {
                    let ok = ms.outcomes.get("ok").copied().unwrap_or(0);
                    (
                        [("workload", *w), ("method", m.as_str())],
                        (ms.requests - ok) as f64,
                    )
                })
            }),
        )?;
        histograms(
            e,
            "berth_mcp_request_duration_seconds",
            "Time from an MCP request reaching the proxy to its answer leaving it, by method.",
            stats.iter().flat_map(|(w, st)| {
                st.methods.iter().map(move |(m, ms)| {
                    (
                        [("workload", *w), ("method", m.as_str())],
                        ms.latency.clone(),
                    )
                })
            }),
        )?;
        family(
            e,
            "berth_mcp_tool_calls",
            "tools/call requests by tool (tools the server listed; others are `_unlisted`) and outcome.",
            MetricType::Counter,
            stats.iter().flat_map(|(w, st)| {
                st.tools.iter().flat_map(move |(t, ts)| {
                    Outcome::ALL.iter().map(move |o| {
                        (
                            [
                                ("workload", *w),
                                ("tool", t.as_str()),
                                ("outcome", o.label()),
                            ],
                            ts.outcomes.get(o.label()).copied().unwrap_or(0) as f64,
                        )
                    })
                })
            }),
        )?;
        histograms(
            e,
            "berth_mcp_tool_call_duration_seconds",
            "Time of tools/call requests, by tool.",
            stats.iter().flat_map(|(w, st)| {
                st.tools.iter().map(move |(t, ts)| {
                    ([("workload", *w), ("tool", t.as_str())], ts.latency.clone())
                })
            }),
        )?;
        family(
            e,
            "berth_mcp_notifications",
            "Notifications clients sent through the workload's proxy.",
            MetricType::Counter,
            stats
                .iter()
                .map(|(w, st)| ([("workload", *w)], st.notifications as f64)),
        )?;
        family(
            e,
            "berth_proxy_refusals",
            "Requests the proxy answered itself before the server or middleware saw them, by reason.",
            MetricType::Counter,
            stats.iter().flat_map(|(w, st)| {
                st.refusals
                    .iter()
                    .map(move |(r, n)| ([("workload", *w), ("reason", *r)], *n as f64))
            }),
        )?;
        // Plugins.
        family(
            e,
            "berth_plugin_calls",
            "Calls into a WebAssembly plugin.",
            MetricType::Counter,
            s.plugins.iter().map(|p| {
                (
                    [("plugin", p.name.as_str()), ("kind", p.kind)],
                    p.calls as f64,
                )
            }),
        )?;
        family(
            e,
            "berth_plugin_errors",
            "Plugin calls that failed (traps, timeouts, errors the plugin returned).",
            MetricType::Counter,
            s.plugins.iter().map(|p| {
                (
                    [("plugin", p.name.as_str()), ("kind", p.kind)],
                    p.errors as f64,
                )
            }),
        )?;
        family(
            e,
            "berth_plugin_traps",
            "Plugin calls that trapped or timed out (the instance was replaced).",
            MetricType::Counter,
            s.plugins.iter().map(|p| {
                (
                    [("plugin", p.name.as_str()), ("kind", p.kind)],
                    p.traps as f64,
                )
            }),
        )?;
        histograms(
            e,
            "berth_plugin_call_duration_seconds",
            "Time of plugin calls.",
            s.plugins.iter().map(|p| {
                (
                    [("plugin", p.name.as_str()), ("kind", p.kind)],
                    p.latency.clone(),
                )
            }),
        )?;
        // berth itself.
        if let Some(p) = &s.process {
            let one = |v: f64| [(NO_LABELS, v)];
            family(
                e,
                "berth_process_cpu_seconds",
                "berth's CPU time, user and system.",
                MetricType::Counter,
                one(p.cpu_seconds),
            )?;
            family(
                e,
                "berth_process_resident_memory_bytes",
                "berth's resident memory.",
                MetricType::Gauge,
                one(p.rss_bytes as f64),
            )?;
            family(
                e,
                "berth_process_virtual_memory_bytes",
                "berth's virtual memory.",
                MetricType::Gauge,
                one(p.virtual_bytes as f64),
            )?;
            family(
                e,
                "berth_process_open_fds",
                "berth's open file descriptors.",
                MetricType::Gauge,
                one(p.open_fds as f64),
            )?;
            family(
                e,
                "berth_process_threads",
                "berth's threads.",
                MetricType::Gauge,
                one(p.threads as f64),
            )?;
            if let Some(max) = p.max_fds {
                family(
                    e,
                    "berth_process_max_fds",
                    "berth's limit of open file descriptors.",
                    MetricType::Gauge,
                    one(max as f64),
                )?;
            }
            if let Some(start) = p.start_time_seconds {
                family(
                    e,
                    "berth_process_start_time_seconds",
                    "When berth started, seconds since the Unix epoch.",
                    MetricType::Gauge,
                    one(start),
                )?;
            }
        }
        if let Some(t) = &s.traces {
            let one = |v: u64| [(NO_LABELS, v as f64)];
            family(
                e,
                "berth_trace_spans_exported",
                "Spans the OTLP exporter delivered.",
                MetricType::Counter,
                one(t.exported),
            )?;
            family(
                e,
                "berth_trace_spans_dropped",
                "Spans dropped because the export queue was full.",
                MetricType::Counter,
                one(t.dropped),
            )?;
            family(
                e,
                "berth_trace_spans_failed",
                "Spans whose export failed.",
                MetricType::Counter,
                one(t.failed),
            )?;
        }
        Ok(())
    }
}
