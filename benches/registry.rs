//! Registry micro-benchmark: the API's listings of the embedded catalogue
//! (p50/p95 of one request through berth's router, against `/health` in the
//! same run), and a 10,000-server MCP Registry API registry: the time and
//! memory of its first walk and of listing it. Run with
//! `cargo bench --bench registry` (release).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Query;
use axum::http::Request;
use axum::routing::get;
use berth::app::App;
use berth::config::Config;
use berth_runtime_api::fake::FakeBackend;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field")
}

async fn call(app: &axum::Router, method: &str, uri: &str, body: Option<Value>) -> (u16, usize) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, bytes.len())
}

async fn timed(app: &axum::Router, uri: &str, n: usize) -> (Duration, Duration, usize) {
    for _ in 0..20 {
        call(app, "GET", uri, None).await;
    }
    let mut samples = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let t = Instant::now();
        let (status, len) = call(app, "GET", uri, None).await;
        samples.push(t.elapsed());
        assert!((200..300).contains(&status), "{uri}: {status}");
        size = len;
    }
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.95), size)
}

#[derive(serde::Deserialize)]
struct PageQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// An MCP Registry API of `count` servers, its pages made before the
/// measurement (so the server's own allocations are not counted).
async fn api_server(count: usize) -> String {
    let mut pages = std::collections::HashMap::new();
    for start in (0..count).step_by(100) {
        let end = (start + 100).min(count);
        let servers: Vec<Value> = (start..end)
            .map(|i| {
                json!({"server": {"name": format!("io.example.bench/server-{i:05}"),
                    "description": format!("Benchmark server number {i}, which does nothing in particular"),
                    "version": "1.2.3",
                    "repository": {"url": format!("https://github.com/example/server-{i}"), "source": "github"},
                    "packages": [{"registryType": "npm", "identifier": format!("@example/server-{i}"), "version": "1.2.3",
                        "transport": {"type": "stdio"},
                        "environmentVariables": [{"name": "API_KEY", "description": "the key", "isRequired": true, "isSecret": true}]}]}})
            })
            .collect();
        let mut metadata = json!({"count": servers.len()});
        if end < count {
            metadata["nextCursor"] = json!(end.to_string());
        }
        let body =
            serde_json::to_vec(&json!({"servers": servers, "metadata": metadata})).expect("json");
        pages.insert(start, bytes::Bytes::from(body));
    }
    let pages = Arc::new(pages);
    let page = move |Query(q): Query<PageQuery>| {
        let pages = pages.clone();
        async move {
            assert_eq!(q.limit, Some(100));
            let start: usize = q
                .cursor
                .as_deref()
                .map_or(0, |c| c.parse().expect("cursor"));
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                pages[&start].clone(),
            )
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        axum::serve(
            listener,
            axum::Router::new().route("/v0.1/servers", get(page)),
        )
        .await
    });
    format!("http://127.0.0.1:{port}")
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        let app = App::builder(Config::default())
            .state_dir(dir.path())
            .backend(Arc::new(FakeBackend::new()))
            .build()
            .await
            .expect("app");
        let router = berth::api::router(app);
        let n = 500;
        println!("# registry benchmark ({n} requests each, p50 / p95, response size)");
        let (h50, h95, _) = timed(&router, "/health", n).await;
        println!("GET /health (baseline): {h50:?} / {h95:?}");
        for uri in [
            "/api/v1beta/registry",
            "/api/v1beta/registry/default",
            "/api/v1beta/registry/default/servers",
            "/registry/default/v0.1/servers",
            "/registry/default/v0.1/servers?q=git",
        ] {
            let (p50, p95, size) = timed(&router, uri, n).await;
            println!(
                "GET {uri}: {p50:?} / {p95:?}, {size} bytes, p50 {:.1}x /health",
                p50.as_secs_f64() / h50.as_secs_f64()
            );
        }

        let base = api_server(10_000).await;
        let rss0 = status_kib("VmRSS:");
        let t = Instant::now();
        let (status, _) = call(
            &router,
            "POST",
            "/api/v1beta/registry",
            Some(json!({"name": "big", "api_url": base, "allow_private_ip": true})),
        )
        .await;
        assert_eq!(status, 201);
        let walk = t.elapsed();
        let rss1 = status_kib("VmRSS:");
        println!(
            "10,000-server API registry: first walk (100 pages) {walk:?}; RSS {} -> {} MiB (+{} MiB), peak {} MiB",
            rss0 / 1024,
            rss1 / 1024,
            rss1.saturating_sub(rss0) / 1024,
            status_kib("VmHWM:") / 1024
        );
        for uri in [
            "/registry/big/v0.1/servers?limit=50",
            "/registry/big/v0.1/servers?q=server-09999",
            "/api/v1beta/x/berth/registries/big/v0.1/servers?limit=100",
            "/api/v1beta/registry/big/servers",
        ] {
            let (p50, p95, size) = timed(&router, uri, 50).await;
            println!("GET {uri}: {p50:?} / {p95:?}, {size} bytes");
        }
        println!(
            "after listing: RSS {} MiB, peak {} MiB",
            status_kib("VmRSS:") / 1024,
            status_kib("VmHWM:") / 1024
        );
        for i in 1..=3 {
            let (status, _) = call(&router, "POST", "/api/v1beta/registry/big/refresh", Some(json!({}))).await;
            assert_eq!(status, 200);
            println!(
                "after refresh {i}: RSS {} MiB, peak {} MiB",
                status_kib("VmRSS:") / 1024,
                status_kib("VmHWM:") / 1024
            );
        }
    });
}
