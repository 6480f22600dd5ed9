//! Registries on a URL (ETag, offline copy after a restart), on an MCP
//! Registry API (paging, cache, authentication) and from the
//! `registry-http-json` plugin, each listed, searched and used to create a
//! workload; and sources that misbehave.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_runtime_api::fake::FakeBackend;
use serde_json::{Value, json};

use crate::api::{harness, harness_config, harness_on};
use crate::registry::document;
use crate::support::plugins::wasm;

async fn serve(app: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// An entry the fake runtime runs (`fake://echo`).
fn entry(name: &str, version: &str) -> Value {
    json!({"name": name, "description": format!("{name}, a test server"), "version": version,
        "packages": [{"registryType": "oci", "identifier": "fake://echo", "transport": {"type": "stdio"}}]})
}

/// A registry document server: `GET /registry.json` with an ETag;
/// counts full answers and 304s; answers 503 while `down`.
#[derive(Default)]
struct DocServer {
    full: AtomicUsize,
    not_modified: AtomicUsize,
    down: AtomicBool,
    version: std::sync::Mutex<String>,
}

async fn doc(State(s): State<Arc<DocServer>>, headers: HeaderMap) -> Response {
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let version = s.version.lock().expect("lock").clone();
    let etag = format!("\"v{version}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        s.not_modified.fetch_add(1, Ordering::SeqCst);
        return StatusCode::NOT_MODIFIED.into_response();
    }
    s.full.fetch_add(1, Ordering::SeqCst);
    let body = document(json!([
        entry("io.github.web/fetcher", &version),
        entry("io.github.web/clock", "1.0.0")
    ]));
    ([(header::ETAG, etag)], axum::Json(body)).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_registry_revalidates_with_its_etag_and_survives_going_offline() {
    let server = Arc::new(DocServer::default());
    *server.version.lock().expect("lock") = "1.0.0".into();
    let port = serve(
        axum::Router::new()
            .route("/registry.json", get(doc))
            .with_state(server.clone()),
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/registry.json");
    let h = harness().await;

    // Plain HTTP to a loopback address needs allow_private_ip.
    let r = h
        .post("/api/v1beta/registry", json!({"name": "web", "url": url}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = h
        .post(
            "/api/v1beta/registry",
            json!({"name": "web", "url": url, "allow_private_ip": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["type"], "url");
    assert_eq!(server.full.load(Ordering::SeqCst), 1);

    // Listed and searched from the cache; a refresh revalidates (304).
    let v = h.get("/registry/web/v0.1/servers?q=FETCH").await.json();
    assert_eq!(v["metadata"]["total"], 1, "{v}");
    let r = h.post("/api/v1beta/registry/web/refresh", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(server.not_modified.load(Ordering::SeqCst), 1);
    assert_eq!(server.full.load(Ordering::SeqCst), 1);

    // A new version is fetched whole on the next refresh.
    *server.version.lock().expect("lock") = "1.1.0".into();
    h.post("/api/v1beta/registry/web/refresh", json!({})).await;
    assert_eq!(server.full.load(Ordering::SeqCst), 2);
    let got = h
        .get("/registry/web/v0.1/servers/fetcher/versions/latest")
        .await
        .json();
    assert_eq!(got["version"], "1.1.0");

    // Used to create a workload.
    let r = h
        .create(json!({"name": "f", "registry": "web", "server": "fetcher"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // The source goes down: the copy is served, marked stale.
    server.down.store(true, Ordering::SeqCst);
    let r = h.post("/api/v1beta/registry/web/refresh", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json()["stale"].as_str().is_some(), "{}", r.text);

    // berth restarts while the source is down: the disk copy is served,
    // with its age.
    let crate::api::Harness { dir, .. } = h;
    let h = harness_on(dir, &[Arc::new(FakeBackend::new())]).await;
    let list = h.get("/api/v1beta/registry").await.json();
    let web = list["registries"]
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["name"] == "web")
        .expect("web is kept")
        .clone();
    assert_eq!(web["server_count"], 2, "{web}");
    assert!(web["stale"].as_str().is_some(), "{web}");
    assert!(web["age_seconds"].as_i64().expect("age") >= 0, "{web}");
    assert!(web["fetched_at"].as_str().is_some_and(|t| !t.is_empty()));
    let got = h
        .get("/registry/web/v0.1/servers/fetcher/versions/latest")
        .await
        .json();
    assert_eq!(got["version"], "1.1.0");

    // Back online: the next refresh is fresh again.
    server.down.store(false, Ordering::SeqCst);
    let r = h.post("/api/v1beta/registry/web/refresh", json!({})).await;
    assert!(r.json().get("stale").is_none(), "{}", r.text);
}

/// An MCP Registry API: `GET /v0.1/servers?limit&cursor` over `count`
/// servers; requires `Bearer good` when `auth` is set.
struct ApiServer {
    count: usize,
    pages: AtomicUsize,
    auth: bool,
}

#[derive(serde::Deserialize)]
struct PageQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn api_page(
    State(s): State<Arc<ApiServer>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    if s.auth
        && headers
            .get(header::AUTHORIZATION)
            .is_none_or(|v| v.as_bytes() != b"Bearer good")
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    s.pages.fetch_add(1, Ordering::SeqCst);
    let limit = q.limit.unwrap_or(30).min(100);
    let start: usize = q
        .cursor
        .as_deref()
        .map_or(0, |c| c.parse().expect("cursor"));
    let end = (start + limit).min(s.count);
    let servers: Vec<Value> = (start..end)
        .map(|i| {
            json!({"server": entry(&format!("io.example.api/server-{i:05}"), "1.0.0"),
            "_meta": {"io.modelcontextprotocol.registry/official": {"status": "active"}}})
        })
        .collect();
    let mut metadata = json!({"count": servers.len()});
    if end < s.count {
        metadata["nextCursor"] = json!(end.to_string());
    }
    axum::Json(json!({"servers": servers, "metadata": metadata})).into_response()
}

async fn api_server(count: usize, auth: bool) -> (Arc<ApiServer>, String) {
    let s = Arc::new(ApiServer {
        count,
        pages: AtomicUsize::new(0),
        auth,
    });
    let port = serve(
        axum::Router::new()
            .route("/v0.1/servers", get(api_page))
            .with_state(s.clone()),
    )
    .await;
    (s, format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_registry_is_walked_page_by_page_and_cached() {
    let (server, base) = api_server(250, false).await;
    let h = harness().await;
    // `url` without `.json`: detected as an API by its answer.
    let r = h
        .post(
            "/api/v1beta/registry",
            json!({"name": "api", "url": base, "allow_private_ip": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["type"], "api");
    let walked = server.pages.load(Ordering::SeqCst);
    assert!(walked >= 3, "250 servers in pages of 100: {walked}");

    let info = h.get("/api/v1beta/registry/api").await.json();
    assert_eq!(info["server_count"], 250);
    assert_eq!(info["type"], "api");
    assert_eq!(info["source"], base);
    let v = h
        .get("/registry/api/v0.1/servers?q=server-00249")
        .await
        .json();
    assert_eq!(v["metadata"]["total"], 1);
    assert_eq!(
        server.pages.load(Ordering::SeqCst),
        walked,
        "served from the cache"
    );
    let r = h
        .create(json!({"name": "a1", "registry": "api", "server": "server-00007"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let r = h.post("/api/v1beta/registry/api/refresh", json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        server.pages.load(Ordering::SeqCst) > walked,
        "a refresh walks again"
    );

    // Kept on disk: a restarted berth lists it without asking the API.
    let before = server.pages.load(Ordering::SeqCst);
    let crate::api::Harness { dir, .. } = h;
    let h = harness_on(dir, &[Arc::new(FakeBackend::new())]).await;
    let info = h.get("/api/v1beta/registry/api").await.json();
    assert_eq!(info["server_count"], 250, "{info}");
    assert_eq!(server.pages.load(Ordering::SeqCst), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_registry_that_needs_a_token_says_so_and_takes_one() {
    let (server, base) = api_server(3, true).await;
    let h = harness().await;
    let r = h
        .post(
            "/api/v1beta/registry",
            json!({"name": "priv", "api_url": base, "allow_private_ip": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.json()["code"], "registry_auth_required");
    assert!(
        r.text.contains("/api/v1beta/registry/auth/login"),
        "{}",
        r.text
    );

    // Added on a source that answers, then the source asks for a token.
    let h2 = harness().await;
    let (open, open_base) = api_server(3, false).await;
    drop(open);
    let r = h2
        .post(
            "/api/v1beta/registry",
            json!({"name": "priv", "api_url": open_base, "allow_private_ip": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h2
        .call(
            axum::http::Method::PUT,
            "/api/v1beta/registry/priv",
            Some(json!({"api_url": base, "allow_private_ip": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(
        h2.get("/api/v1beta/registry/priv").await.json()["source"],
        open_base,
        "the previous source stays"
    );

    // A pasted token: stored (never shown), sent, and the source answers.
    let r = h2
        .post(
            "/api/v1beta/registry/auth/login",
            json!({"registry": "priv", "token": "good"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h2
        .call(
            axum::http::Method::PUT,
            "/api/v1beta/registry/priv",
            Some(json!({"api_url": base, "allow_private_ip": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let info = h2.get("/api/v1beta/registry/priv").await.json();
    assert_eq!(info["auth_status"], "authenticated");
    assert_eq!(info["auth_type"], "bearer");
    assert!(!info.to_string().contains("good\""), "{info}");
    assert!(server.pages.load(Ordering::SeqCst) >= 1);
    // Kept in the encrypted secrets store, in no plaintext file.
    assert!(!h2.dir.path().join("registry-tokens.json").exists());
    crate::secrets::assert_no_file_has(h2.dir.path(), h2.berth.secrets.store_path(), "\"good\"");
    let config = std::fs::read_to_string(h2.dir.path().join("registries.json")).expect("stored");
    assert!(
        !config.contains("good"),
        "no token in the configuration: {config}"
    );

    // Logout forgets it; the source asks again.
    let r = h2
        .post(
            "/api/v1beta/registry/auth/logout",
            json!({"registry": "priv"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h2
        .post("/api/v1beta/registry/priv/refresh", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.json()["code"], "registry_auth_required");
    // Login on a registry without a network source or OAuth.
    let r = h2
        .post(
            "/api/v1beta/registry/auth/login",
            json!({"registry": "default"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = h2
        .post(
            "/api/v1beta/registry/auth/login",
            json!({"registry": "default", "token": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_source_never_holds_another_registry() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let h = Arc::new(harness().await);
    let slow = {
        let h = h.clone();
        tokio::spawn(async move {
            h.post(
                "/api/v1beta/registry",
                json!({"name": "slow", "url": format!("http://127.0.0.1:{port}/r.json"), "allow_private_ip": true}),
            )
            .await
        })
    };
    // While the slow source is being read, the others answer.
    for _ in 0..3 {
        let r = h.get("/registry/default/v0.1/servers").await;
        assert_eq!(r.status, StatusCode::OK);
        let r = h.get("/api/v1beta/registry/default").await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert!(!slow.is_finished(), "the slow source is still being read");
    slow.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_registry_is_listed_searched_and_run_from() {
    let doc = json!({
        "version": "1.0.0",
        "servers": {
            "web-fetch": {"image": "fake://echo", "description": "Fetches web pages", "transport": "stdio", "tags": ["web"]},
            "clock": {"image": "fake://echo", "description": "Tells the time", "transport": "stdio", "tags": ["time"]}
        },
        "remote_servers": {"notes": {"url": "https://notes.example/mcp", "transport": "streamable-http", "description": "Hosted notes"}}
    });
    let port = serve(axum::Router::new().route(
        "/registry.json",
        get(move || {
            let d = doc.clone();
            async move { axum::Json(d) }
        }),
    ))
    .await;
    let plugin: berth::plugins::PluginConfig = serde_json::from_value(json!({
        "name": "reg", "kind": "registry-source", "path": wasm("registry-http-json"),
        "config": {"url": format!("http://localhost:{port}/registry.json")},
        "permissions": {"allow_http": [format!("localhost:{port}")], "allow_private": true}
    }))
    .expect("plugin config");
    let h = harness_config(|c| {
        c.plugins = vec![plugin];
        c.registries = vec![berth::registry::RegistryConfig {
            name: "plugged".into(),
            plugin: Some("reg".into()),
            ..Default::default()
        }];
    })
    .await;
    let info = h.get("/api/v1beta/registry/plugged").await.json();
    assert_eq!(info["type"], "plugin", "{info}");
    assert_eq!(info["source"], "reg");
    assert_eq!(info["server_count"], 2);
    assert_eq!(info["remote_server_count"], 1);
    let servers = h.get("/api/v1beta/registry/plugged/servers").await.json();
    assert_eq!(servers["servers"][0]["name"], "io.github.stacklok/clock");
    assert_eq!(
        servers["remote_servers"][0]["url"],
        "https://notes.example/mcp"
    );
    let v = h.get("/registry/plugged/v0.1/servers?q=web").await.json();
    assert_eq!(v["metadata"]["total"], 1, "{v}");
    assert_eq!(v["servers"][0]["name"], "io.github.stacklok/web-fetch");
    let r = h
        .create(json!({"name": "wf", "registry": "plugged", "server": "web-fetch"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    h.wait_status("wf", "running").await;
    // Added through the API too (the same plugin under another name).
    let r = h
        .post(
            "/api/v1beta/registry",
            json!({"name": "again", "plugin": "reg"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["type"], "plugin");
}
