//! Remote workloads (`url` in the create request): no server is run, the
//! proxy forwards to the URL with the configured headers.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::api::harness;

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) path_and_query: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

/// A stand-in remote server: records each request and answers with a
/// JSON-RPC result naming the path it was called on.
pub(crate) async fn upstream() -> (std::net::SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let app = axum::Router::new()
        .fallback(
            |State(seen): State<Arc<Mutex<Vec<Seen>>>>, req: Request| async move {
                let path_and_query = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                    .await
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                seen.lock().unwrap().push(Seen {
                    path_and_query: path_and_query.clone(),
                    headers,
                    body,
                });
                (
                    [
                        ("content-type", "application/json"),
                        ("mcp-session-id", "upstream-session"),
                    ],
                    json!({"jsonrpc": "2.0", "id": 1, "result": {"path": path_and_query}})
                        .to_string(),
                )
            },
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

pub(crate) fn header<'a>(s: &'a Seen, name: &str) -> Option<&'a str> {
    s.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn remote_workload_forwards_with_headers_and_hides_credentials() {
    let h = harness().await;
    let (addr, seen) = upstream().await;
    let url = format!("http://{addr}/v1/mcp?tenant=acme&api_key=k3yvalue");
    let r = h
        .create(json!({
            "name": "far",
            "url": url,
            "headers": [{"name": "X-Region", "default": "eu"}],
            "header_forward": {"add_plaintext_headers": {
                "Authorization": "Bearer s3cret-token",
                "X-Team": "blue"
            }}
        }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let port = r.json()["port"].as_u64().expect("port");
    h.wait_status("far", "running").await;

    let listed = h.listed("").await;
    let w = listed.iter().find(|w| w["name"] == "far").expect("listed");
    assert_eq!(w["package"], "remote");
    assert_eq!(w["remote"], true);
    assert_eq!(w["transport_type"], "streamable-http");
    assert_eq!(w["url"], format!("http://127.0.0.1:{port}/v1/mcp"));

    // An MCP request through the proxy reaches the remote path with the
    // remote's query first, the configured headers, and the session id
    // passed through both ways.
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("http://127.0.0.1:{port}/v1/mcp?x=1"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", "client-session")
        .header("x-team", "red")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
        .send()
        .await
        .expect("proxy answers");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["mcp-session-id"], "upstream-session");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body["result"]["path"],
        "/v1/mcp?tenant=acme&api_key=k3yvalue&x=1"
    );
    let s = seen
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("upstream saw it");
    assert_eq!(header(&s, "authorization"), Some("Bearer s3cret-token"));
    assert_eq!(header(&s, "x-team"), Some("blue"), "configured headers win");
    assert_eq!(header(&s, "x-region"), Some("eu"));
    assert_eq!(header(&s, "mcp-session-id"), Some("client-session"));
    assert_eq!(header(&s, "host"), Some(addr.to_string().as_str()));
    assert_eq!(s.path_and_query, "/v1/mcp?tenant=acme&api_key=k3yvalue&x=1");
    assert!(s.body.contains("tools/list"));

    // Credentials are never shown: not in the configuration, not in the
    // export, not in the proxy log. Every header value is redacted (a
    // header's name says nothing reliable about its value), and so are
    // credential-looking query values.
    for path in [
        "/api/v1beta/workloads/far",
        "/api/v1beta/workloads/far/export",
        "/api/v1beta/workloads/far/proxy-logs",
    ] {
        let r = h.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        for secret in ["s3cret", "blue", "k3yvalue"] {
            assert!(
                !r.text.contains(secret),
                "{path} leaks {secret}: {}",
                r.text
            );
        }
        assert!(r.text.contains("tenant=acme"), "{path}: {}", r.text);
    }
    // No server, no server logs; the proxy log says where it forwards.
    assert_eq!(
        h.get("/api/v1beta/workloads/far/logs").await.status,
        StatusCode::NOT_FOUND
    );
    let plog = h.get("/api/v1beta/workloads/far/proxy-logs").await;
    assert!(plog.text.contains("proxying to"), "{}", plog.text);
    let far = berth_runtime_api::WorkloadName::parse("far").expect("name");
    assert_eq!(
        h.fake.deploy_count(&far),
        0,
        "a remote workload deploys nothing"
    );

    // An edit that echoes the redacted value back keeps the credential.
    let mut cfg = h.get("/api/v1beta/workloads/far").await.json();
    cfg["header_forward"]["add_plaintext_headers"]["X-Team"] = json!("green");
    let r = h.post("/api/v1beta/workloads/far/edit", cfg).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    crate::support::eventually(
        std::time::Duration::from_secs(5),
        "the edited proxy to send the new header",
        || async {
            let _ = client
                .post(format!("http://127.0.0.1:{port}/v1/mcp"))
                .body("{}")
                .send()
                .await;
            let s = seen.lock().unwrap().last().cloned()?;
            (header(&s, "x-team") == Some("green")).then_some(s)
        },
    )
    .await;
    let s = seen.lock().unwrap().last().cloned().expect("seen");
    assert_eq!(header(&s, "authorization"), Some("Bearer s3cret-token"));
    assert!(
        s.path_and_query.contains("api_key=k3yvalue"),
        "the echoed redacted URL keeps the stored one: {}",
        s.path_and_query
    );

    // Credentials follow the URL: an edit to another server that echoes
    // the redacted values back is refused, and nothing is sent there.
    let (other, other_seen) = upstream().await;
    let mut cfg = h.get("/api/v1beta/workloads/far").await.json();
    cfg["url"] = json!(format!("http://{other}/v1/mcp"));
    let r = h.post("/api/v1beta/workloads/far/edit", cfg.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(
        r.text.contains("Authorization") || r.text.contains("X-"),
        "{}",
        r.text
    );
    assert!(!r.text.contains("s3cret"), "{}", r.text);
    // The redacted URL itself cannot be sent as a new URL either.
    let mut cfg2 = h.get("/api/v1beta/workloads/far").await.json();
    cfg2["url"] = json!(format!("http://{other}/v1/mcp?api_key=[redacted]"));
    cfg2["header_forward"] = json!({"add_plaintext_headers": {"Authorization": "Bearer new"}});
    let r = h.post("/api/v1beta/workloads/far/edit", cfg2).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(
        other_seen.lock().unwrap().is_empty(),
        "nothing reached the new server"
    );
    let s = seen.lock().unwrap().last().cloned().expect("seen");
    assert_eq!(header(&s, "authorization"), Some("Bearer s3cret-token"));

    // Stop frees the port; delete removes it.
    let r = h.post("/api/v1beta/workloads/far/stop", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    h.wait_status("far", "stopped").await;
    assert!(
        client
            .post(format!("http://127.0.0.1:{port}/v1/mcp"))
            .body("{}")
            .send()
            .await
            .is_err(),
        "a stopped remote workload's proxy is gone"
    );
    let r = h
        .call(
            axum::http::Method::DELETE,
            "/api/v1beta/workloads/far",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    crate::support::eventually(
        std::time::Duration::from_secs(5),
        "far to be deleted",
        || async { (h.status_of("far").await.is_none()).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn remote_workloads_are_validated() {
    let h = harness().await;
    let cases = [
        (
            json!({"name": "a", "url": "ftp://x/"}),
            "http:// or https://",
        ),
        (json!({"name": "b", "url": "not a url"}), "invalid url"),
        (
            json!({"name": "c", "url": "http://u:p@h/"}),
            "credentials in the URL",
        ),
        (
            json!({"name": "d", "url": "http://h/", "image": "fake://echo"}),
            "not both",
        ),
        (
            json!({"name": "e", "url": "http://h/", "transport": "stdio"}),
            "not `stdio`",
        ),
        (
            json!({"name": "f", "url": "http://h/", "header_forward": {"add_plaintext_headers": {"Host": "x"}}}),
            "cannot be set",
        ),
        (
            json!({"name": "g", "url": "http://h/", "headers": [{"name": "X-Key", "required": true}]}),
            "is required",
        ),
        (
            json!({"name": "i", "url": "http://h/", "header_forward": {"add_plaintext_headers": {"X-Key": "[redacted]"}}}),
            "placeholder",
        ),
        (
            json!({"name": "j", "url": "http://h/", "header_forward": {"add_headers_from_secret": {"X-Key": "k"}}}),
            "secret `k` (for header X-Key) does not exist",
        ),
    ];
    for (body, want) in cases {
        let r = h.create(body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert!(r.text.contains(want), "{body}: `{}` lacks `{want}`", r.text);
    }
    assert!(h.listed("?all=true").await.is_empty(), "nothing was stored");
}

/// The proxy of a remote workload: bodies over `max_body_bytes` are 413,
/// a declared length before any of the body is read, a chunked body once
/// it passes the limit; neither reaches the server whole.
#[tokio::test]
async fn remote_workload_bodies_are_limited() {
    use axum::body::Body;
    use berth::proxy::{HttpTarget, ProxyConfig, Upstream, router};
    use tower::ServiceExt;

    let (addr, seen) = upstream().await;
    let target = HttpTarget::remote(&format!("http://{addr}/mcp"), &[]).expect("target");
    let config = ProxyConfig {
        max_body_bytes: 1024,
        ..ProxyConfig::default()
    };
    let app = router(
        "far",
        &Upstream::Http(target),
        None,
        &berth::proxy::Protection::default(),
        None,
        &config,
    );
    let send = |req: axum::http::Request<Body>| {
        let app = app.clone();
        async move {
            // A deadline, not a timing assertion: without the length check
            // the proxy would wait for a body that never comes.
            tokio::time::timeout(std::time::Duration::from_secs(20), app.oneshot(req))
                .await
                .expect("an answer")
                .expect("infallible")
        }
    };
    let post = || {
        axum::http::Request::post("/mcp")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
    };

    // Within the limit: forwarded.
    let small = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let resp = send(post().body(Body::from(small.clone())).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(seen.lock().unwrap().last().expect("seen").body, small);

    // A declared length over the limit, with a body that never comes.
    let never = Body::from_stream(futures::stream::pending::<
        Result<bytes::Bytes, std::io::Error>,
    >());
    let resp = send(post().header("content-length", "4096").body(never).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // No declared length: the body is cut at the limit.
    let chunks = (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'a'; 512])));
    let resp = send(
        post()
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        seen.lock().unwrap().iter().all(|s| s.body.len() <= 1024),
        "no large body reached the server"
    );
}

#[tokio::test]
async fn credentials_in_a_remote_url_are_refused_without_being_echoed() {
    let h = harness().await;
    let (addr, _seen) = upstream().await;
    for url in [
        format!("http://alice:pw-SECRET@{addr}/v1/mcp"),
        format!("http://pw-SECRET@{addr}/v1/mcp"),
    ] {
        let r = h.create(json!({"name": "creds", "url": url})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert!(r.text.contains("credentials"), "{}", r.text);
        assert!(
            !r.text.contains("pw-SECRET"),
            "the answer echoes it: {}",
            r.text
        );
    }
    assert!(h.listed("?all=true").await.is_empty());
}
