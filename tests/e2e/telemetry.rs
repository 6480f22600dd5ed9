//! Metrics and traces through the `berth` binary: `/metrics` read by the
//! official Prometheus parsers (Python `prometheus_client`, text format and
//! OpenMetrics), its series moving as a real MCP client calls tools, labels
//! a client cannot invent, the per-workload stats route, the API's
//! authentication in front of `/metrics`, and OTLP spans received by a
//! collector of the test's own.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

use crate::plugins::{guard_config, guard_middleware, url_of};
use crate::proxy::mcp_echo;
use crate::serve::{Berth, free_port};
use crate::support::mcp::Session;

/// One sample: its name, labels and value.
type Sample = (String, BTreeMap<String, String>, f64);

/// `text` read by the official Python parser of the Prometheus text format
/// (or of OpenMetrics); panics if it refuses the text.
fn parse(text: &str, openmetrics: bool) -> Vec<Sample> {
    let script = r#"
import json, sys
if sys.argv[1] == "om":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, if openmetrics { "om" } else { "prom" }])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser JSON")
}

/// The value of sample `name` with at least `labels`, if present.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (resp.status().as_u16(), ct, resp.text().await.expect("body"))
}

async fn scrape(b: &Berth, openmetrics: bool) -> Vec<Sample> {
    let accept = if openmetrics {
        "application/openmetrics-text; version=1.0.0"
    } else {
        "text/plain"
    };
    let (code, ct, text) = get(&format!("{}/metrics", b.base), &[("accept", accept)]).await;
    assert_eq!(code, 200, "{text}");
    if openmetrics {
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    } else {
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    }
    parse(&text, openmetrics)
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().expect("object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_as_a_real_client_calls_tools() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start_with(root.path(), free_port(), &guard_config("")).await;
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": "watched", "image": mcp_echo(), "middleware_configs": guard_middleware()}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status("watched", "running").await;
    let url = url_of(&b, "watched").await;
    let before = scrape(&b, false).await;
    let w = ("workload", "watched");
    assert_eq!(
        value(
            &before,
            "berth_workload_status",
            &[w, ("status", "running")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &before,
            "berth_workload_status",
            &[w, ("status", "stopped")]
        ),
        Some(0.0)
    );
    assert!(
        value(&before, "berth_workload_processes", &[w]).is_some_and(|n| n >= 1.0),
        "a native workload's process tree is measured"
    );
    assert!(value(&before, "berth_workload_resident_memory_bytes", &[w]).is_some_and(|n| n > 0.0));
    assert!(value(&before, "berth_process_resident_memory_bytes", &[]).is_some_and(|n| n > 0.0));
    assert!(value(&before, "berth_process_open_fds", &[]).is_some_and(|n| n > 0.0));
    let calls_before = value(
        &before,
        "berth_plugin_calls_total",
        &[("plugin", "guard"), ("kind", "middleware")],
    )
    .expect("the plugin's series");

    // A real MCP client: the tools, three calls, one refused by the guard.
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(url.clone()))
            .await
            .expect("rmcp connects");
    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "echo"));
    for i in 0..3 {
        client
            .call_tool(
                CallToolRequestParams::new("echo")
                    .with_arguments(args(json!({"message": format!("m{i}")}))),
            )
            .await
            .expect("echo");
    }
    // `sleep` is hidden and denied by the guard: never listed, so it has no
    // series of its own.
    let denied = client
        .call_tool(CallToolRequestParams::new("sleep").with_arguments(args(json!({"ms": 1}))))
        .await;
    assert!(denied.is_err(), "{denied:?}");
    // A hostile client: tool names and methods it makes up create no label.
    let mut s = Session::open(&url).await.expect("session");
    let evil = "evil\"} 1\nberth_fake{x=\"y";
    s.call(json!({"jsonrpc": "2.0", "id": 77, "method": "tools/call",
        "params": {"name": evil, "arguments": {}}}))
        .await;
    s.call(json!({"jsonrpc": "2.0", "id": 78, "method": "x/evil-method-{}"}))
        .await;

    let after = scrape(&b, false).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels).unwrap_or(0.0) - value(&before, name, labels).unwrap_or(0.0)
    };
    assert_eq!(
        delta(
            "berth_mcp_requests_total",
            &[w, ("method", "tools/call"), ("outcome", "ok")]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "berth_mcp_tool_calls_total",
            &[w, ("tool", "echo"), ("outcome", "ok")]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "berth_mcp_requests_total",
            &[w, ("method", "tools/call"), ("outcome", "denied")]
        ),
        1.0,
        "the guard's refusal counts as denied"
    );
    assert_eq!(
        delta(
            "berth_mcp_tool_calls_total",
            &[w, ("tool", "_unlisted"), ("outcome", "denied")]
        ),
        1.0
    );
    assert!(
        delta(
            "berth_mcp_tool_calls_total",
            &[w, ("tool", "_unlisted"), ("outcome", "error")]
        ) >= 1.0,
        "the made-up tool counts as _unlisted"
    );
    assert!(delta("berth_mcp_requests_total", &[w, ("method", "other")]) >= 0.0);
    assert!(
        value(
            &after,
            "berth_mcp_requests_total",
            &[w, ("method", "other")]
        )
        .is_some(),
        "a made-up method counts as other"
    );
    assert!(
        delta(
            "berth_mcp_request_duration_seconds_count",
            &[w, ("method", "tools/call")]
        ) >= 5.0
    );
    assert!(
        delta(
            "berth_mcp_request_duration_seconds_sum",
            &[w, ("method", "tools/call")]
        ) > 0.0
    );
    assert!(value(&after, "berth_mcp_active_sessions", &[w]).is_some_and(|n| n >= 2.0));
    assert!(
        value(&after, "berth_plugin_calls_total", &[("plugin", "guard")]).unwrap() > calls_before,
        "the guard's calls are counted"
    );
    for (name, labels, _) in &after {
        assert!(
            !name.contains("fake") && labels.values().all(|v| !v.contains("evil")),
            "a client's words became a series: {name} {labels:?}"
        );
    }

    // The same numbers in OpenMetrics, read by its own strict parser.
    let om = scrape(&b, true).await;
    assert_eq!(
        value(
            &om,
            "berth_mcp_tool_calls_total",
            &[w, ("tool", "echo"), ("outcome", "ok")]
        ),
        value(
            &after,
            "berth_mcp_tool_calls_total",
            &[w, ("tool", "echo"), ("outcome", "ok")]
        )
    );

    // And in the API, for a UI without Prometheus.
    let (code, stats) = b
        .req(
            reqwest::Method::GET,
            "/x/berth/workloads/watched/stats",
            None,
        )
        .await;
    assert_eq!(code, 200, "{stats}");
    let stats: Value = serde_json::from_str(&stats).expect("json");
    assert_eq!(stats["status"], "running");
    assert_eq!(
        stats["proxy"]["tools"]["echo"]["outcomes"]["ok"], 3,
        "{stats}"
    );
    assert_eq!(
        stats["proxy"]["methods"]["tools/call"]["outcomes"]["denied"],
        1
    );
    assert!(stats["proxy"]["methods"]["tools/call"]["latency"]["p50_seconds"].is_number());
    assert!(stats["usage"]["rss_bytes"].as_u64().is_some_and(|n| n > 0));
    assert!(stats["sessions"].as_u64().is_some_and(|n| n >= 2));
    let (code, _) = b
        .req(reqwest::Method::GET, "/x/berth/workloads/nope/stats", None)
        .await;
    assert_eq!(code, 404);
    let (code, _) = b
        .req(
            reqwest::Method::GET,
            "/x/berth/workloads/..%2Fx/stats",
            None,
        )
        .await;
    assert_eq!(code, 400);

    // A deleted workload's series go with it.
    drop(client);
    let (code, body) = b
        .req(reqwest::Method::DELETE, "/workloads/watched", None)
        .await;
    assert!(code < 300, "{body}");
    crate::support::eventually(crate::serve::T, "the workload to be gone", || async {
        let now = scrape(&b, false).await;
        (!now
            .iter()
            .any(|(_, l, _)| l.get("workload").map(String::as_str) == Some("watched")))
        .then_some(())
    })
    .await;
}

/// berth on the process runtime with API token `token` and `/metrics`
/// also served on a listener of its own (`[metrics]` gets `extra` lines);
/// the berth and that listener's port.
async fn with_metrics_listener(root: &std::path::Path, token: &str, extra: &str) -> (Berth, u16) {
    let (port, mport) = (free_port(), free_port());
    let config = root.join("config/berth");
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::write(
        config.join("berth.toml"),
        format!("[metrics]\nlisten = \"127.0.0.1:{mport}\"\n{extra}"),
    )
    .expect("config");
    let b = Berth::launch_args(
        root,
        port,
        Some("process"),
        &[],
        &[("BERTH_API_TOKEN", token)],
    )
    .await;
    (b, mport)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_ask_for_the_api_token_on_both_listeners() {
    const TOKEN: &str = "tok-metrics-0123456789abcdef0123456789";
    let root = tempfile::tempdir().expect("tempdir");
    let (b, mport) = with_metrics_listener(root.path(), TOKEN, "").await;
    let auth = format!("Bearer {TOKEN}");
    for url in [
        format!("{}/metrics", b.base),
        format!("http://127.0.0.1:{mport}/metrics"),
    ] {
        let (code, _, _) = get(&url, &[]).await;
        assert_eq!(code, 401, "{url} without a token");
        let (code, _, _) = get(&url, &[("authorization", "Bearer wrong-wrong-wrong")]).await;
        assert_eq!(code, 401, "{url} with a wrong token");
        // A web page cannot read it either (DNS rebinding: a foreign Host).
        let (code, _, _) = get(&url, &[("authorization", &auth), ("host", "evil.example")]).await;
        assert_eq!(code, 403, "{url} from a foreign host");
        let (code, _, text) = get(&url, &[("authorization", &auth)]).await;
        assert_eq!(code, 200, "{url}");
        assert!(
            value(&parse(&text, false), "berth_build_info", &[]).is_some(),
            "{text}"
        );
    }
    // The separate listener serves /metrics only.
    let (code, _, _) = get(
        &format!("http://127.0.0.1:{mport}/api/v1beta/workloads"),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_turned_off() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start_with(root.path(), free_port(), "[metrics]\nenabled = false\n").await;
    let (code, _, text) = get(&format!("{}/metrics", b.base), &[]).await;
    assert_eq!(code, 404);
    assert!(text.contains("enabled = false"), "{text}");
    let (code, body) = b
        .post("/workloads", json!({"name": "quiet", "image": mcp_echo()}))
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status("quiet", "running").await;
    let (code, stats) = b
        .req(reqwest::Method::GET, "/x/berth/workloads/quiet/stats", None)
        .await;
    assert_eq!(code, 200, "{stats}");
    let stats: Value = serde_json::from_str(&stats).expect("json");
    assert!(stats.get("proxy").is_none(), "{stats}");
    assert!(stats["usage"]["processes"].as_u64().is_some_and(|n| n >= 1));
}

/// The spans an OTLP/HTTP collector of the test's own received.
#[derive(Clone, Default)]
struct Collector(
    std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
);

impl Collector {
    /// Listens on loopback; the URL to export to.
    async fn start(&self) -> String {
        use prost::Message;
        let spans = self.0.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let spans = spans.clone();
                async move {
                    let req = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body)
                        .expect("an OTLP protobuf export");
                    let mut all = spans.lock().expect("spans");
                    for rs in req.resource_spans {
                        for ss in rs.scope_spans {
                            all.extend(ss.spans);
                        }
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/v1/traces")
    }

    fn spans(&self) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
        self.0.lock().expect("spans").clone()
    }
}

fn attr(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            V::StringValue(s) => Some(s.clone()),
            V::IntValue(i) => Some(i.to_string()),
            other => Some(format!("{other:?}")),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_s_spans_reach_an_otlp_collector_under_the_caller_s_trace() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start_with(
        root.path(),
        free_port(),
        &format!("[traces]\nendpoint = \"{endpoint}\"\nsample_ratio = 0.0\ninterval_ms = 100\n"),
    )
    .await;
    let (code, body) = b
        .post("/workloads", json!({"name": "traced", "image": mcp_echo()}))
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status("traced", "running").await;
    let url = url_of(&b, "traced").await;
    // The caller's trace, sampled: berth follows the caller's decision even
    // with a sample ratio of 0.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{parent}-01");
    let s = Session::open_with(&url, &[("traceparent", &traceparent)])
        .await
        .expect("session");
    let answer = s
        .clone()
        .call(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "secret-argument-value"}}}))
        .await;
    assert!(answer["result"].is_object(), "{answer}");
    // A request without a sampled parent, at ratio 0: no span.
    let untraced = Session::open(&url).await.expect("session");
    untraced
        .clone()
        .call(json!({"jsonrpc": "2.0", "id": 6, "method": "ping"}))
        .await;

    let spans = crate::support::eventually(crate::serve::T, "the call's spans", || async {
        let spans = collector.spans();
        spans
            .iter()
            .any(|s| s.name == "tools/call echo")
            .then_some(spans)
    })
    .await;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let call = spans
        .iter()
        .find(|s| s.name == "tools/call echo")
        .expect("the call's span");
    assert_eq!(
        hex(&call.trace_id),
        trace_id,
        "joined to the caller's trace"
    );
    assert_eq!(
        hex(&call.parent_span_id),
        parent,
        "a child of the caller's span"
    );
    assert_eq!(attr(call, "mcp.method.name").as_deref(), Some("tools/call"));
    assert_eq!(attr(call, "gen_ai.tool.name").as_deref(), Some("echo"));
    assert_eq!(attr(call, "mcp.server.name").as_deref(), Some("traced"));
    assert_eq!(attr(call, "berth.outcome").as_deref(), Some("ok"));
    let upstream = spans
        .iter()
        .find(|s| s.name == "upstream" && s.parent_span_id == call.span_id)
        .expect("the upstream round trip, a child of the call's span");
    assert_eq!(upstream.trace_id, call.trace_id);
    assert!(upstream.start_time_unix_nano >= call.start_time_unix_nano);
    assert!(upstream.end_time_unix_nano <= call.end_time_unix_nano);
    // Every span is of the caller's trace (the initialize and ping of the
    // other session were not sampled), and no argument is in any of them.
    for span in &spans {
        assert_eq!(hex(&span.trace_id), trace_id, "{}", span.name);
        let text = format!("{span:?}");
        assert!(!text.contains("secret-argument-value"), "{text}");
    }
    assert!(!spans.iter().any(|s| s.name == "ping"));
    // The exporter's own counters.
    let samples = scrape(&b, false).await;
    assert!(value(&samples, "berth_trace_spans_exported_total", &[]).is_some_and(|n| n >= 2.0));
    assert_eq!(
        value(&samples, "berth_trace_spans_dropped_total", &[]),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_and_http_upstreams_are_counted_too() {
    use crate::support::mcp::SseStream;
    use std::time::Duration;
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start(root.path(), free_port()).await;
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": "legacy", "image": mcp_echo(), "proxy_mode": "sse"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status("legacy", "running").await;
    let url = url_of(&b, "legacy").await;
    let base = url.split("/sse").next().expect("base").to_owned();

    // Legacy SSE: answers come on the GET stream, not on the POSTs.
    let http = reqwest::Client::new();
    let resp = http.get(format!("{base}/sse")).send().await.expect("sse");
    let mut events = SseStream::new(resp);
    let (name, endpoint) = events.next_event(Duration::from_secs(20)).await;
    assert_eq!(name, "endpoint");
    let post = |body: Value| {
        let (http, url) = (http.clone(), format!("{base}{endpoint}"));
        async move {
            http.post(url)
                .json(&body)
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        post(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "sse", "version": "1"}}}))
        .await,
        202
    );
    events.next_message(Duration::from_secs(20)).await;
    post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await;
    events.next_message(Duration::from_secs(20)).await;
    for i in 0..2 {
        post(
            json!({"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "over sse"}}}),
        )
        .await;
        let answer = events.next_message(Duration::from_secs(20)).await;
        assert_eq!(answer["id"], 10 + i, "{answer}");
    }
    // A call whose client goes away before its answer.
    post(json!({"jsonrpc": "2.0", "id": 20, "method": "tools/call",
        "params": {"name": "sleep", "arguments": {"ms": 30000}}}))
    .await;
    drop(events);

    // A remote workload in front of the first one's streamable endpoint:
    // an HTTP upstream, whose messages are read only for the metrics.
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": "far", "url": format!("{base}/mcp")}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status("far", "running").await;
    let far = url_of(&b, "far").await;
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(far))
            .await
            .expect("rmcp connects");
    client.list_all_tools().await.expect("tools/list");
    client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args(json!({"message": "far"}))),
        )
        .await
        .expect("echo");

    crate::support::eventually(
        crate::serve::T,
        "the legacy call counted as cancelled",
        || async {
            let s = scrape(&b, false).await;
            let w = ("workload", "legacy");
            (value(
                &s,
                "berth_mcp_tool_calls_total",
                &[w, ("tool", "sleep"), ("outcome", "cancelled")],
            ) == Some(1.0))
            .then_some(s)
        },
    )
    .await;
    let s = scrape(&b, false).await;
    let legacy = ("workload", "legacy");
    // Two calls over legacy SSE, one more through `far`, which forwards to
    // this workload's streamable endpoint.
    assert_eq!(
        value(
            &s,
            "berth_mcp_tool_calls_total",
            &[legacy, ("tool", "echo"), ("outcome", "ok")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &s,
            "berth_mcp_requests_total",
            &[legacy, ("method", "tools/list"), ("outcome", "ok")]
        ),
        Some(2.0)
    );
    let far = ("workload", "far");
    assert_eq!(
        value(
            &s,
            "berth_mcp_tool_calls_total",
            &[far, ("tool", "echo"), ("outcome", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&s, "berth_mcp_active_sessions", &[far]), Some(1.0));
    assert!(
        value(&s, "berth_workload_processes", &[far]).is_none(),
        "a remote workload has no processes"
    );
}

#[test]
fn an_invalid_trace_endpoint_stops_berth_with_a_clear_error() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("config/berth");
    std::fs::create_dir_all(&dir).expect("config dir");
    std::fs::write(
        dir.join("berth.toml"),
        "[traces]\nendpoint = \"file:///etc/passwd\"\nheaders = { \"x-api-key\" = \"hush-hush-key\" }\n",
    )
    .expect("config");
    let status = crate::serve::berth_cmd(root.path())
        .args([
            "serve",
            "--port",
            &free_port().to_string(),
            "--runtime",
            "process",
        ])
        .status()
        .expect("berth runs");
    assert!(!status.success());
    let log = std::fs::read_to_string(root.path().join("berth.log")).expect("log");
    assert!(log.contains("traces"), "{log}");
    assert!(!log.contains("hush-hush-key"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_metrics_listener_needs_no_token_but_the_api_still_does() {
    const TOKEN: &str = "tok-metrics-public-0123456789abcdef01234";
    let root = tempfile::tempdir().expect("tempdir");
    let (b, mport) = with_metrics_listener(root.path(), TOKEN, "public = true\n").await;
    let (code, _, text) = get(&format!("http://127.0.0.1:{mport}/metrics"), &[]).await;
    assert_eq!(code, 200, "{text}");
    assert!(value(&parse(&text, false), "berth_build_info", &[]).is_some());
    let (code, _, _) = get(&format!("{}/metrics", b.base), &[]).await;
    assert_eq!(code, 401, "the API's own /metrics keeps its token");
}
