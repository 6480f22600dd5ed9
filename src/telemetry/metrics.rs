//! The numbers berth keeps about each workload's proxy, kept in atomics on
//! the request path and read at scrape time (by `/metrics` and by the
//! per-workload stats route), so both show the same values.
//!
//! Every label value is bounded by berth, never taken from a client: the
//! method is one of [`METHODS`] (else `other`), a tool is named only once
//! the server listed it (at most [`MAX_TOOLS`] per workload; else
//! `_unlisted`), outcomes and refusal reasons are fixed words.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

/// The MCP methods counted under their own name; any other is `other`.
pub const METHODS: [&str; 16] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "tasks/get",
    "other",
];
const OTHER: usize = METHODS.len() - 1;

/// Tools one workload's series may name; tools listed past it are
/// counted as `_unlisted`.
pub const MAX_TOOLS: usize = 512;
/// The longest tool name used as a label value.
const MAX_TOOL_NAME: usize = 128;
/// The label of calls to a tool the server did not list.
pub const UNLISTED: &str = "_unlisted";

/// The index of `method` in [`METHODS`].
pub fn method_index(method: &str) -> usize {
    METHODS[..OTHER]
        .iter()
        .position(|m| *m == method)
        .unwrap_or(OTHER)
}

/// How a request ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A result.
    Ok,
    /// A JSON-RPC error (from the server, or berth's timeout).
    Error,
    /// Refused by berth's policy or a middleware (`-32003`).
    Denied,
    /// No answer: the transport failed, or the stream ended first.
    Failed,
    /// The client went away before its answer.
    Cancelled,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Denied,
        Outcome::Failed,
        Outcome::Cancelled,
    ];

    /// Its label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// A latency histogram: one atomic per bucket (not cumulative), a count
/// and a sum in nanoseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[schema(as = berth::LatencySnapshot)]
pub struct HistogramSnapshot {
    /// Observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_seconds: f64,
    /// `(upper bound in seconds, observations in this bucket)`, the last
    /// bound `+Inf`; not cumulative.
    #[serde(skip)]
    pub buckets: Vec<(f64, u64)>,
    /// The bucket bound under which half the observations fall, in
    /// seconds (an upper estimate); absent without observations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_seconds: Option<f64>,
    /// The same for 99 %.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_seconds: Option<f64>,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// What it holds now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' sum, so the two always agree.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let quantile = |q: f64| {
            if count == 0 {
                return None;
            }
            let rank = (q * count as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            buckets.iter().find_map(|(le, n)| {
                seen += n;
                (seen >= rank).then_some(*le)
            })
        };
        HistogramSnapshot {
            count,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            p50_seconds: quantile(0.5).filter(|v| v.is_finite()),
            p99_seconds: quantile(0.99).filter(|v| v.is_finite()),
            buckets,
        }
    }
}

/// The calls of one tool.
#[derive(Debug, Default)]
pub struct ToolMetrics {
    calls: [AtomicU64; Outcome::ALL.len()],
    latency: Histogram,
}

/// Why the proxy answered a request itself before it reached the
/// workload's middleware (counted by the stack's rescue layer).
pub const REFUSALS: [&str; 8] = [
    "cross_origin",
    "too_large",
    "invalid",
    "session",
    "unauthenticated",
    "forbidden",
    "unavailable",
    "other",
];

/// The metrics of one workload's proxy.
#[derive(Debug)]
pub struct WorkloadMetrics {
    requests: [[AtomicU64; Outcome::ALL.len()]; METHODS.len()],
    latency: [Histogram; METHODS.len()],
    notifications: AtomicU64,
    refusals: [AtomicU64; REFUSALS.len()],
    tools: RwLock<HashMap<Arc<str>, Arc<ToolMetrics>>>,
    unlisted: Arc<ToolMetrics>,
    /// Sessions of an HTTP upstream seen opened and not yet closed (a
    /// stdio proxy's multiplexer counts its own).
    sessions: Mutex<std::collections::HashSet<String>>,
}

/// Most sessions of an HTTP upstream tracked at once.
const MAX_SESSIONS: usize = 10_000;

impl Default for WorkloadMetrics {
    fn default() -> Self {
        Self {
            requests: Default::default(),
            latency: Default::default(),
            notifications: AtomicU64::new(0),
            refusals: Default::default(),
            tools: RwLock::new(HashMap::new()),
            unlisted: Arc::default(),
            sessions: Mutex::new(std::collections::HashSet::new()),
        }
    }
}

/// A tool's counters, resolved when its call is made.
pub type ToolSlot = Arc<ToolMetrics>;

impl WorkloadMetrics {
    /// The counters of calls to `tool`: its own once the server listed it,
    /// else the shared `_unlisted` ones.
    pub fn tool(&self, tool: &str) -> ToolSlot {
        self.tools
            .read()
            .expect("tool metrics lock")
            .get(tool)
            .cloned()
            .unwrap_or_else(|| self.unlisted.clone())
    }

    /// Records the tools a `tools/list` answer named (each once; names too
    /// long or with control characters, and any past [`MAX_TOOLS`], stay
    /// unlisted).
    pub fn listed<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let fresh: Vec<&str> = {
            let tools = self.tools.read().expect("tool metrics lock");
            names
                .into_iter()
                .filter(|n| !tools.contains_key(*n))
                .collect()
        };
        if fresh.is_empty() {
            return;
        }
        let mut tools = self.tools.write().expect("tool metrics lock");
        for name in fresh {
            if tools.len() >= MAX_TOOLS {
                break;
            }
            let fits = !name.is_empty()
                && name.len() <= MAX_TOOL_NAME
                && !name.chars().any(char::is_control)
                && name != UNLISTED;
            if fits {
                tools.entry(Arc::from(name)).or_default();
            }
        }
    }

    /// Records one answered (or unanswered) request.
    pub fn record(&self, method: usize, tool: Option<&ToolSlot>, outcome: Outcome, took: Duration) {
        let o = outcome as usize;
        self.requests[method][o].fetch_add(1, Ordering::Relaxed);
        self.latency[method].observe(took);
        if let Some(tool) = tool {
            tool.calls[o].fetch_add(1, Ordering::Relaxed);
            tool.latency.observe(took);
        }
    }

    /// Counts a notification from the client.
    pub fn notification(&self) {
        self.notifications.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refusal by reason (one of [`REFUSALS`]; anything else is
    /// `other`).
    pub fn refused(&self, reason: &str) {
        let i = REFUSALS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(REFUSALS.len() - 1);
        self.refusals[i].fetch_add(1, Ordering::Relaxed);
    }

    /// An HTTP upstream's session was opened (its `initialize` answered
    /// with this id).
    pub fn session_opened(&self, id: &str) {
        let mut s = self.sessions.lock().expect("session metrics lock");
        if s.len() < MAX_SESSIONS && id.len() <= 256 {
            s.insert(id.to_owned());
        }
    }

    /// An HTTP upstream's session ended (deleted, or unknown to it).
    pub fn session_closed(&self, id: &str) {
        self.sessions
            .lock()
            .expect("session metrics lock")
            .remove(id);
    }

    /// The HTTP upstream's sessions seen open.
    pub fn http_sessions(&self) -> usize {
        self.sessions.lock().expect("session metrics lock").len()
    }

    /// What it holds now.
    pub fn snapshot(&self) -> ProxyStats {
        let mut methods = BTreeMap::new();
        for (i, name) in METHODS.iter().enumerate() {
            let outcomes: BTreeMap<&'static str, u64> = Outcome::ALL
                .iter()
                .map(|o| {
                    (
                        o.label(),
                        self.requests[i][*o as usize].load(Ordering::Relaxed),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            if outcomes.is_empty() {
                continue;
            }
            methods.insert(
                (*name).to_owned(),
                MethodStats {
                    requests: outcomes.values().sum(),
                    outcomes,
                    latency: self.latency[i].snapshot(),
                },
            );
        }
        let tool_stats = |t: &ToolMetrics| {
            let outcomes: BTreeMap<&'static str, u64> = Outcome::ALL
                .iter()
                .map(|o| (o.label(), t.calls[*o as usize].load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect();
            MethodStats {
                requests: outcomes.values().sum(),
                outcomes,
                latency: t.latency.snapshot(),
            }
        };
        let mut tools: BTreeMap<String, MethodStats> = self
            .tools
            .read()
            .expect("tool metrics lock")
            .iter()
            .map(|(name, t)| (name.to_string(), tool_stats(t)))
            .filter(|(_, t)| t.requests > 0)
            .collect();
        let unlisted = tool_stats(&self.unlisted);
        if unlisted.requests > 0 {
            tools.insert(UNLISTED.to_owned(), unlisted);
        }
        let refusals = REFUSALS
            .iter()
            .zip(&self.refusals)
            .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        ProxyStats {
            requests: methods.values().map(|m| m.requests).sum(),
            methods,
            tools,
            notifications: self.notifications.load(Ordering::Relaxed),
            refusals,
        }
    }
}

/// The traffic of one workload's proxy since berth started it (berth
/// extension).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = berth::ProxyStats)]
pub struct ProxyStats {
    /// Requests answered (or given up), every method.
    pub requests: u64,
    /// By MCP method (methods berth does not name are `other`); only
    /// methods that were called.
    pub methods: BTreeMap<String, MethodStats>,
    /// `tools/call` by tool (tools called at least once), for tools the
    /// server listed; calls of any other name are `_unlisted`.
    pub tools: BTreeMap<String, MethodStats>,
    /// Notifications from clients.
    pub notifications: u64,
    /// Requests the proxy refused before they reached the server or the
    /// middleware, by reason.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub refusals: BTreeMap<&'static str, u64>,
}

/// The requests of one method (or calls of one tool).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = berth::MethodStats)]
pub struct MethodStats {
    /// All of them.
    pub requests: u64,
    /// By outcome: `ok`, `error`, `denied`, `failed`, `cancelled`.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Their latency, request to answer.
    pub latency: HistogramSnapshot,
}

/// The metrics of every workload's proxy, by workload name.
#[derive(Debug, Default)]
pub struct Metrics {
    workloads: RwLock<BTreeMap<String, Arc<WorkloadMetrics>>>,
}

impl Metrics {
    /// The metrics of workload `name`, made on first use.
    pub fn workload(&self, name: &str) -> Arc<WorkloadMetrics> {
        if let Some(m) = self.workloads.read().expect("metrics lock").get(name) {
            return m.clone();
        }
        self.workloads
            .write()
            .expect("metrics lock")
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// The metrics of workload `name`, if it has any.
    pub fn get(&self, name: &str) -> Option<Arc<WorkloadMetrics>> {
        self.workloads
            .read()
            .expect("metrics lock")
            .get(name)
            .cloned()
    }

    /// Forgets every workload `keep` refuses (a deleted one: a workload
    /// made again under its name starts from zero).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.workloads
            .write()
            .expect("metrics lock")
            .retain(|name, _| keep(name));
    }

    /// Every workload's metrics, by name.
    pub fn all(&self) -> Vec<(String, Arc<WorkloadMetrics>)> {
        self.workloads
            .read()
            .expect("metrics lock")
            .iter()
            .map(|(n, m)| (n.clone(), m.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_quantiles() {
        let h = Histogram::default();
        assert_eq!(h.snapshot().p50_seconds, None);
        for _ in 0..98 {
            h.observe(Duration::from_micros(300));
        }
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(120));
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        assert_eq!(s.buckets[0], (0.0005, 98));
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(s.p50_seconds, Some(0.0005));
        assert_eq!(s.p99_seconds, Some(0.05));
        assert!((s.sum_seconds - (0.0294 + 0.03 + 120.0)).abs() < 1e-6);
    }

    #[test]
    fn labels_are_bounded_by_berth() {
        assert_eq!(METHODS[method_index("tools/call")], "tools/call");
        assert_eq!(METHODS[method_index("x/made-up\nmethod")], "other");
        let m = WorkloadMetrics::default();
        // A tool is named only once listed; a hostile list cannot add
        // control characters, huge names or more than MAX_TOOLS names.
        let before = m.tool("echo");
        assert!(Arc::ptr_eq(&before, &m.unlisted));
        let long = "x".repeat(MAX_TOOL_NAME + 1);
        m.listed(["echo", "bad\nname", long.as_str(), UNLISTED, ""]);
        assert!(!Arc::ptr_eq(&m.tool("echo"), &m.unlisted));
        assert!(Arc::ptr_eq(&m.tool("bad\nname"), &m.unlisted));
        assert!(Arc::ptr_eq(&m.tool(&long), &m.unlisted));
        let many: Vec<String> = (0..MAX_TOOLS * 2).map(|i| format!("t{i}")).collect();
        m.listed(many.iter().map(String::as_str));
        assert_eq!(m.tools.read().unwrap().len(), MAX_TOOLS);
        m.refused("made up");
        assert_eq!(m.snapshot().refusals.get("other"), Some(&1));
    }

    #[test]
    fn snapshot_counts_by_method_outcome_and_tool() {
        let m = WorkloadMetrics::default();
        m.listed(["echo"]);
        let echo = m.tool("echo");
        let call = method_index("tools/call");
        m.record(call, Some(&echo), Outcome::Ok, Duration::from_millis(2));
        m.record(call, Some(&echo), Outcome::Denied, Duration::from_millis(1));
        m.record(call, Some(&m.tool("nope")), Outcome::Error, Duration::ZERO);
        m.record(method_index("ping"), None, Outcome::Ok, Duration::ZERO);
        let s = m.snapshot();
        assert_eq!(s.requests, 4);
        assert_eq!(s.methods["tools/call"].requests, 3);
        assert_eq!(s.methods["tools/call"].outcomes["denied"], 1);
        assert_eq!(s.tools["echo"].requests, 2);
        assert_eq!(s.tools[UNLISTED].outcomes["error"], 1);
        assert!(!s.methods.contains_key("tools/list"));
    }
}
