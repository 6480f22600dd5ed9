//! Tests of request tracing against an OTLP receiver of their own: what is
//! exported, sampling, hostile trace-context headers, the bounded queue,
//! export failures, shutdown and settings validation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::body::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use opentelemetry::trace::SpanId;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue as ProtoKeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span as ProtoSpan, span, status};
use prost::Message;
use tokio::sync::mpsc;

use super::context::MAX_TRACESTATE;
use super::*;

const TID: &str = "0af7651916cd43dd8448eb211c80319c";
const SID: &str = "b7ad6b7169203331";
const SECRET: &str = "s3cret-Key%41";

/// One export request the receiver got.
struct Export {
    headers: HeaderMap,
    request: ExportTraceServiceRequest,
}

/// An OTLP/HTTP traces receiver on loopback answering `status`.
struct Receiver {
    url: url::Url,
    got: mpsc::UnboundedReceiver<Export>,
}

async fn receiver(status: StatusCode) -> Receiver {
    let (tx, got) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP body");
                let _ = tx.send(Export { headers, request });
                (
                    status,
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url: format!("http://{addr}/v1/traces").parse().unwrap(),
        got,
    }
}

impl Receiver {
    /// The next export request, within 10 s.
    async fn next(&mut self) -> Export {
        tokio::time::timeout(Duration::from_secs(10), self.got.recv())
            .await
            .expect("an export within 10 s")
            .expect("the receiver is running")
    }

    /// Export requests until they hold `n` spans.
    async fn spans(&mut self, n: usize) -> (Vec<Export>, Vec<ProtoSpan>) {
        let (mut exports, mut spans) = (Vec::new(), Vec::new());
        while spans.len() < n {
            let export = self.next().await;
            spans.extend(all_spans(&export.request));
            exports.push(export);
        }
        (exports, spans)
    }
}

fn all_spans(request: &ExportTraceServiceRequest) -> Vec<ProtoSpan> {
    let scopes = request.resource_spans.iter().flat_map(|r| &r.scope_spans);
    scopes.flat_map(|s| s.spans.clone()).collect()
}

/// An attribute's value, rendered as text.
fn attr(attrs: &[ProtoKeyValue], key: &str) -> Option<String> {
    let kv = attrs.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn settings(endpoint: url::Url) -> TraceSettings {
    TraceSettings {
        endpoint,
        service_name: "berth-test".to_owned(),
        interval: Duration::from_millis(20),
        ..TraceSettings::default()
    }
}

fn with_traceparent(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(TRACEPARENT, HeaderValue::from_str(value).unwrap());
    headers
}

/// A loopback endpoint that accepts connections and never answers.
fn silent_endpoint() -> (std::net::TcpListener, url::Url) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    (listener, url.parse().unwrap())
}

#[tokio::test]
async fn exports_request_span_joined_to_caller_with_children() {
    let mut receiver = receiver(StatusCode::OK).await;
    // Ratio 0: only the caller's sampled flag gets this request traced.
    let tracer = Tracer::start(TraceSettings {
        sample_ratio: 0.0,
        ..settings(receiver.url.clone())
    })
    .unwrap();
    let mut headers = with_traceparent(&format!("00-{TID}-{SID}-01"));
    headers.insert(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));

    let mut span = tracer
        .request("echo-server", &headers, "tools/call")
        .unwrap();
    assert_eq!(span.trace_id(), TID);
    let traceparent = span.traceparent();
    let traceparent = traceparent.to_str().unwrap();
    let own_id = span.context.span_id().to_string();
    assert_eq!(traceparent, format!("00-{TID}-{own_id}-01"));
    assert_ne!(own_id, SID);
    let mut upstream = HeaderMap::new();
    upstream.insert(TRACEPARENT, HeaderValue::from_static("caller's"));
    span.inject(&mut upstream);
    assert_eq!(upstream[TRACEPARENT], traceparent);
    assert_eq!(upstream[TRACESTATE], "congo=t61rcWkgMzE");

    span.set("mcp.tool.name", "echo");
    span.set("mcp.tool.name", "echo2");
    span.set("jsonrpc.request.id", 7_i64);
    span.rename("tools/call echo".to_owned());
    let t0 = span.anchor - Duration::from_millis(2); // before the span: allowed
    let t1 = span.anchor + Duration::from_millis(1);
    let t2 = span.anchor + Duration::from_millis(3);
    let attrs = vec![KeyValue::new("berth.middleware", "authz")];
    span.child("middleware", ChildKind::Internal, t0, t1, attrs);
    span.child("upstream", ChildKind::Client, t1, t2, Vec::new());
    std::thread::sleep(Duration::from_millis(4));
    span.finish(Ok(()));

    let (exports, spans) = receiver.spans(3).await;
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let resource = exports[0].request.resource_spans[0]
        .resource
        .as_ref()
        .unwrap();
    assert_eq!(
        attr(&resource.attributes, "service.name").unwrap(),
        "berth-test"
    );
    assert_eq!(
        attr(&resource.attributes, "service.version").unwrap(),
        VERSION
    );
    let scope = exports[0].request.resource_spans[0].scope_spans[0]
        .scope
        .as_ref();
    assert_eq!(scope.unwrap().name, "berth");

    let server = spans
        .iter()
        .find(|s| s.kind == span::SpanKind::Server as i32)
        .unwrap();
    assert_eq!(hex::encode(&server.trace_id), TID);
    assert_eq!(hex::encode(&server.parent_span_id), SID);
    assert_eq!(hex::encode(&server.span_id), own_id);
    assert_eq!(server.name, "tools/call echo");
    assert_eq!(server.trace_state, "congo=t61rcWkgMzE");
    assert_eq!(
        attr(&server.attributes, "mcp.method.name").unwrap(),
        "tools/call"
    );
    assert_eq!(
        attr(&server.attributes, "mcp.server.name").unwrap(),
        "echo-server"
    );
    assert_eq!(attr(&server.attributes, "mcp.tool.name").unwrap(), "echo2");
    assert_eq!(attr(&server.attributes, "jsonrpc.request.id").unwrap(), "7");
    assert_eq!(
        server.attributes.len(),
        4,
        "a set key is replaced, not repeated"
    );
    assert_eq!(
        server.status.as_ref().unwrap().code,
        status::StatusCode::Ok as i32
    );
    assert!(server.end_time_unix_nano - server.start_time_unix_nano >= 4_000_000);
    let now = UNIX_EPOCH.elapsed().unwrap().as_nanos() as u64;
    assert!(
        now - server.start_time_unix_nano < 60_000_000_000,
        "wall-clock times"
    );

    for (name, kind, from, to) in [
        (
            "middleware",
            span::SpanKind::Internal,
            -2_000_000_i64,
            1_000_000,
        ),
        ("upstream", span::SpanKind::Client, 1_000_000, 3_000_000),
    ] {
        let child = spans.iter().find(|s| s.name == name).unwrap();
        assert_eq!(child.kind, kind as i32, "{name}");
        assert_eq!(hex::encode(&child.trace_id), TID, "{name}");
        assert_eq!(hex::encode(&child.parent_span_id), own_id, "{name}");
        assert_ne!(child.span_id, server.span_id);
        let start = server.start_time_unix_nano as i64;
        assert_eq!(child.start_time_unix_nano as i64 - start, from, "{name}");
        assert_eq!(child.end_time_unix_nano as i64 - start, to, "{name}");
    }
    let middleware = spans.iter().find(|s| s.name == "middleware").unwrap();
    assert_eq!(
        attr(&middleware.attributes, "berth.middleware").unwrap(),
        "authz"
    );
    assert!(exports[0].headers[http::header::CONTENT_TYPE] == "application/x-protobuf");

    tracer.shutdown(Duration::from_secs(5)).await;
    let stats = tracer.stats();
    assert_eq!(
        stats,
        TraceStats {
            exported: 3,
            dropped: 0,
            failed: 0
        }
    );
}

#[tokio::test]
async fn sampling_follows_ratio_then_callers_flag() {
    let (_silent, url) = silent_endpoint();
    let never = Tracer::start(TraceSettings {
        sample_ratio: 0.0,
        ..settings(url.clone())
    })
    .unwrap();
    let always = Tracer::start(TraceSettings {
        sample_ratio: 1.0,
        ..settings(url)
    })
    .unwrap();
    let none = HeaderMap::new();
    let sampled = with_traceparent(&format!("00-{TID}-{SID}-01"));
    let unsampled = with_traceparent(&format!("00-{TID}-{SID}-00"));

    assert!(never.request("w", &none, "tools/list").is_none());
    let joined = never
        .request("w", &sampled, "tools/list")
        .expect("the caller sampled it");
    assert_eq!(joined.trace_id(), TID);
    assert_eq!(joined.parent, SpanId::from_hex(SID).unwrap());
    assert!(always.request("w", &unsampled, "tools/list").is_none());
    let root = always.request("w", &none, "tools/list").expect("ratio 1");
    assert_eq!(root.parent, SpanId::INVALID);
    assert_eq!(root.trace_id().len(), 32);
    assert_ne!(root.trace_id(), "0".repeat(32));
    assert!(
        root.trace_id()
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    );
}

#[tokio::test]
async fn hostile_traceparent_starts_a_new_root() {
    let (_silent, url) = silent_endpoint();
    let tracer = Tracer::start(settings(url)).unwrap();
    let oversized = format!("01-{TID}-{SID}-01-{}", "a".repeat(10_000));
    let cases: Vec<(&str, HeaderMap)> = vec![
        ("garbage", with_traceparent("garbage")),
        (
            "zero trace id",
            with_traceparent(&format!("00-{}-{SID}-01", "0".repeat(32))),
        ),
        (
            "zero span id",
            with_traceparent(&format!("00-{TID}-{}-01", "0".repeat(16))),
        ),
        ("oversized", with_traceparent(&oversized)),
        ("dashes", with_traceparent(&"00-".repeat(30_000))),
        (
            "upper case",
            with_traceparent(&format!("00-{}-{SID}-01", TID.to_uppercase())),
        ),
        ("not utf-8", {
            let mut h = HeaderMap::new();
            let raw = format!("00-{TID}-{SID}-01\u{e9}");
            h.insert(
                TRACEPARENT,
                HeaderValue::from_bytes(raw.as_bytes()).unwrap(),
            );
            h
        }),
        ("repeated", {
            let mut h = with_traceparent(&format!("00-{TID}-{SID}-01"));
            let other = format!("00-{}-{SID}-01", "1".repeat(32));
            h.append(TRACEPARENT, HeaderValue::from_str(&other).unwrap());
            h
        }),
    ];
    for (case, headers) in cases {
        let span = tracer.request("w", &headers, "ping").expect(case);
        assert_eq!(span.parent, SpanId::INVALID, "{case}");
        assert_ne!(span.trace_id(), TID, "{case}");
        assert_ne!(span.trace_id(), "0".repeat(32), "{case}");
    }

    // A valid traceparent with an oversized tracestate keeps the parent and
    // drops the state.
    let mut headers = with_traceparent(&format!("00-{TID}-{SID}-01"));
    let state = format!("congo={}", "t".repeat(MAX_TRACESTATE));
    headers.insert(TRACESTATE, HeaderValue::from_str(&state).unwrap());
    let span = tracer.request("w", &headers, "ping").unwrap();
    assert_eq!(span.trace_id(), TID);
    let mut upstream = HeaderMap::new();
    upstream.insert(TRACESTATE, HeaderValue::from_static("caller=1"));
    span.inject(&mut upstream);
    assert!(upstream.get(TRACESTATE).is_none(), "{upstream:?}");
}

#[tokio::test]
async fn full_queue_drops_and_counts_without_waiting() {
    let (_silent, url) = silent_endpoint();
    let tracer = Tracer::start(TraceSettings {
        queue: 2,
        batch: 1,
        timeout: Duration::from_secs(30),
        ..settings(url)
    })
    .unwrap();
    let started = Instant::now();
    for _ in 0..10 {
        let span = tracer.request("w", &HeaderMap::new(), "ping").unwrap();
        span.finish(Ok(()));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The export task has not run yet (this runtime has one thread).
    assert_eq!(
        tracer.stats(),
        TraceStats {
            exported: 0,
            dropped: 8,
            failed: 0
        }
    );

    // The endpoint never answers: the shutdown deadline bounds the wait and
    // the two queued spans are lost (dropped at the deadline, or failed when
    // their request timed out first).
    let started = Instant::now();
    tracer.shutdown(Duration::from_millis(300)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let stats = tracer.stats();
    assert_eq!(stats.exported, 0, "{stats:?}");
    assert_eq!(stats.dropped + stats.failed, 10, "{stats:?}");
}

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn export_failure_is_counted_and_never_shows_headers() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut receiver = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    let tracer = Tracer::start(TraceSettings {
        headers: vec![("X-Api-Key".to_owned(), SECRET.to_owned())],
        ..settings(receiver.url.clone())
    })
    .unwrap();
    for _ in 0..3 {
        tracer
            .request("w", &HeaderMap::new(), "ping")
            .unwrap()
            .finish(Err("boom".into()));
    }
    let export = receiver.next().await;
    // Sent byte for byte (the OTLP exporter would have percent-decoded it).
    assert_eq!(export.headers["x-api-key"], SECRET);
    tracer.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        tracer.stats(),
        TraceStats {
            exported: 0,
            dropped: 0,
            failed: 3
        }
    );

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("Trace export failed"), "{logs}");
    assert!(logs.contains("500"), "{logs}");
    assert!(!logs.contains("s3cret"), "{logs}");
    assert_eq!(
        logs.matches("Trace export failed").count(),
        1,
        "once a minute: {logs}"
    );

    let bad = TraceSettings {
        headers: vec![("x-api-key".to_owned(), format!("{SECRET}\n"))],
        ..TraceSettings::default()
    };
    let err = bad.validate().unwrap_err();
    assert!(matches!(err, TraceError::HeaderValue(_)), "{err:?}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
    assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
    assert!(!format!("{bad:?}").contains("s3cret"), "{bad:?}");
}

#[tokio::test]
async fn shutdown_flushes_queued_spans_then_drops_later_ones() {
    let mut receiver = receiver(StatusCode::OK).await;
    let tracer = Tracer::start(TraceSettings {
        interval: Duration::from_secs(3600),
        ..settings(receiver.url.clone())
    })
    .unwrap();
    for i in 0..4 {
        let mut span = tracer.request("w", &HeaderMap::new(), "ping").unwrap();
        span.set("i", i64::from(i));
        span.finish(Ok(()));
    }
    // A client that went away: the span is dropped unfinished.
    drop(tracer.request("w", &HeaderMap::new(), "tools/call"));
    tokio::task::yield_now().await;
    assert_eq!(tracer.stats().exported, 0, "the interval has not passed");

    tracer.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        tracer.stats(),
        TraceStats {
            exported: 5,
            dropped: 0,
            failed: 0
        }
    );
    let (_, spans) = receiver.spans(5).await;
    let abandoned = spans.iter().find(|s| s.name == "tools/call").unwrap();
    let status = abandoned.status.as_ref().unwrap();
    assert_eq!(status.code, status::StatusCode::Error as i32);
    assert_eq!(status.message, "abandoned");

    tracer
        .request("w", &HeaderMap::new(), "ping")
        .unwrap()
        .finish(Ok(()));
    assert_eq!(
        tracer.stats().dropped,
        1,
        "after shutdown spans are dropped"
    );
    tracer.shutdown(Duration::from_secs(1)).await; // a second call returns
}

#[test]
fn validate_refuses_bad_settings() {
    TraceSettings::default().validate().unwrap();
    let url = |s: &str| url::Url::parse(s).unwrap();
    let cases = [
        TraceSettings {
            endpoint: url("file:///tmp/traces"),
            ..TraceSettings::default()
        },
        TraceSettings {
            endpoint: url("http://user:pw@collector/v1/traces"),
            ..Default::default()
        },
        TraceSettings {
            sample_ratio: 1.5,
            ..TraceSettings::default()
        },
        TraceSettings {
            sample_ratio: f64::NAN,
            ..TraceSettings::default()
        },
        TraceSettings {
            headers: vec![("x-key\nx-other".to_owned(), "v".to_owned())],
            ..TraceSettings::default()
        },
        TraceSettings {
            queue: 0,
            ..TraceSettings::default()
        },
        TraceSettings {
            batch: 0,
            ..TraceSettings::default()
        },
        TraceSettings {
            timeout: Duration::ZERO,
            ..TraceSettings::default()
        },
    ];
    let mut messages = Vec::new();
    for settings in cases {
        let err = settings.validate().expect_err(&format!("{settings:?}"));
        messages.push(err.to_string());
    }
    assert!(messages[0].contains("scheme"), "{messages:?}");
    assert!(messages[1].contains("credentials") && !messages[1].contains("pw"));
    assert!(messages[4].contains(r#""x-key\nx-other""#), "{messages:?}");
    assert!(
        messages.iter().all(|m| m.starts_with(char::is_lowercase)),
        "{messages:?}"
    );
}

#[test]
fn start_needs_a_runtime() {
    let err = Tracer::start(TraceSettings::default()).unwrap_err();
    assert!(matches!(err, TraceError::NoRuntime), "{err:?}");
}

#[test]
fn tracer_and_span_cross_tasks() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Tracer>();
    send_sync::<Span>();
}
