//! The plugin host with real components (built from `plugins/`): world
//! checks, limits (deadline, memory), the outbound HTTP guard, and the
//! first-party plugins through berth's traits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::routing::{any, get};
use berth::plugins::{HostConfig, PluginConfig, PluginState, Plugins};
use berth::proxy::{Decision, McpRequest};
use berth::registry::{ListQuery, RegistryError};
use berth::secrets::SecretsError;
use serde_json::{Value, json};

use crate::support::plugins::wasm;

fn entry(v: Value) -> PluginConfig {
    serde_json::from_value(v).expect("plugin config")
}

/// A host with `entries`; compilations are shared by the tests through a
/// cache in cargo's test scratch directory (written atomically).
fn host(entries: Vec<Value>) -> Arc<Plugins> {
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
    let host = HostConfig {
        memory_limit_bytes: 32 * 1024 * 1024,
        ..HostConfig::default()
    };
    let plugins = Plugins::load(host, entries.into_iter().map(entry).collect(), Some(cache))
        .expect("plugin host");
    Arc::new(plugins)
}

fn request(method: &str, params: Value) -> McpRequest {
    McpRequest {
        workload: Arc::from("w"),
        method: method.to_owned(),
        params: Some(params),
        session: Some("s1".into()),
        identity: None,
        headers: vec![("user-agent".into(), "test".into())],
    }
}

/// A ticker proving the runtime keeps serving while a plugin misbehaves.
fn heartbeat() -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let beats = Arc::new(AtomicU64::new(0));
    let b = beats.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            b.fetch_add(1, Ordering::Relaxed);
        }
    });
    (beats, task)
}

/// A local HTTP server; returns its port.
async fn serve(app: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_of_the_wrong_world_is_refused_by_name() {
    let plugins = host(vec![json!({
        "name": "ww", "kind": "middleware", "path": wasm("test-wrong-world")
    })]);
    let info = plugins.info("ww").expect("listed");
    assert_eq!(info.state, PluginState::Failed);
    let error = info.error.expect("an error");
    assert!(
        error.contains("berth:plugin/middleware@0.1.0") && error.contains("middleware-plugin"),
        "{error}"
    );
    // Using it fails clearly, it does not panic.
    let mw = plugins.middleware("ww", None).expect("attachable");
    let err = mw
        .wants_request("tools/call")
        .await
        .expect_err("not loaded");
    assert!(err.0.contains("not loaded"), "{}", err.0);
    // A registry plugin is not a middleware.
    let plugins = host(vec![json!({
        "name": "reg", "kind": "registry-source", "path": wasm("test-wrong-world")
    })]);
    assert_eq!(
        plugins.info("reg").expect("listed").state,
        PluginState::Loaded
    );
    assert!(plugins.middleware("reg", None).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_fails_within_its_deadline_and_the_host_keeps_serving() {
    let plugins = host(vec![json!({
        "name": "spin", "kind": "middleware", "path": wasm("test-spin"), "timeout_ms": 100
    })]);
    let mw = plugins.middleware("spin", None).expect("middleware");
    let (beats, ticker) = heartbeat();
    for round in 1..=2 {
        let before = beats.load(Ordering::Relaxed);
        let err = mw
            .on_request(&request("tools/call", json!({"name": "x"})))
            .await
            .expect_err("the loop cannot finish");
        assert!(
            err.0.contains("timed out after 100 ms"),
            "round {round}: {}",
            err.0
        );
        assert!(
            beats.load(Ordering::Relaxed) > before,
            "the runtime kept running other tasks during the loop"
        );
    }
    ticker.abort();
    let info = plugins.info("spin").expect("info");
    assert_eq!(info.traps, 2, "each timeout replaced its instance");
    assert!(info.calls >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_fails_at_the_limit() {
    let plugins = host(vec![json!({
        "name": "bomb", "kind": "middleware", "path": wasm("test-membomb"),
        "memory_limit_bytes": 16 * 1024 * 1024, "timeout_ms": 5000
    })]);
    let mw = plugins.middleware("bomb", None).expect("middleware");
    let err = mw
        .on_request(&request("tools/call", json!({})))
        .await
        .expect_err("the bomb cannot fit");
    assert!(
        err.0
            .contains("exceeded its memory limit of 16777216 bytes"),
        "{}",
        err.0
    );
    assert_eq!(plugins.info("bomb").expect("info").traps, 1);
}

/// The probe plugin's answer for a URL: `Ok(entry)` or the error text.
async fn probe(plugins: &Arc<Plugins>, name: &str, url: &str) -> Result<Value, String> {
    let reg = plugins.registry(name).expect("registry plugin");
    match reg.get(url).await {
        Ok(e) => Ok(e.entry),
        Err(RegistryError::Unavailable(m)) => Err(m),
        Err(other) => panic!("unexpected: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_only_to_granted_public_destinations() {
    let port = serve(axum::Router::new().route("/", get(|| async { "hello from the test" }))).await;
    let other = serve(axum::Router::new().route("/", get(|| async { "other" }))).await;
    let probe_wasm = wasm("test-http-probe");
    let plugins = host(vec![
        json!({"name": "strict", "kind": "registry-source", "path": probe_wasm,
            "permissions": {"allow_http": [format!("localhost:{port}")]}}),
        json!({"name": "private", "kind": "registry-source", "path": probe_wasm,
            "permissions": {"allow_http": [format!("localhost:{port}")], "allow_private": true}}),
    ]);
    // Not granted at all.
    let denied = probe(&plugins, "private", &format!("http://127.0.0.1:{other}/"))
        .await
        .expect_err("not granted");
    assert!(denied.to_lowercase().contains("denied"), "{denied}");
    // Granted, but the name resolves to 127.0.0.1.
    let denied = probe(&plugins, "strict", &format!("http://localhost:{port}/"))
        .await
        .expect_err("private address");
    assert!(denied.to_lowercase().contains("denied"), "{denied}");
    // Granted, private addresses allowed.
    let ok = probe(&plugins, "private", &format!("http://localhost:{port}/"))
        .await
        .expect("reachable");
    assert_eq!(ok["status"], 200, "{ok}");
    assert!(ok.to_string().contains("hello from the test"), "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_guard_denies_hides_and_redacts() {
    let plugins = host(vec![json!({
        "name": "guard", "kind": "middleware", "path": wasm("middleware-tool-guard"),
        "config": {"deny": ["delete_*"], "redact": ["s3cr3t"]}
    })]);
    let mw = plugins
        .middleware("guard", Some(&json!({"deny": ["delete_*", "drop"]})))
        .expect("middleware");
    assert!(mw.wants_request("tools/call").await.expect("interests"));
    assert!(!mw.wants_request("resources/list").await.expect("interests"));
    match mw
        .on_request(&request(
            "tools/call",
            json!({"name": "delete_all", "arguments": {}}),
        ))
        .await
        .expect("decision")
    {
        Decision::Deny { status, message } => {
            assert_eq!(status, 403);
            assert!(message.contains("delete_all"), "{message}");
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    assert_eq!(
        mw.on_request(&request("tools/call", json!({"name": "echo"})))
            .await
            .expect("decision"),
        Decision::Allow
    );
    let list = json!({"tools": [{"name": "echo"}, {"name": "delete_all"}, {"name": "drop"}]});
    let filtered = mw
        .on_response(&request("tools/list", json!({})), &list)
        .await
        .expect("filtered")
        .expect("changed");
    let names: Vec<&str> = filtered["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["echo"]);
    let result = json!({"content": [{"type": "text", "text": "the key is s3cr3t"}]});
    let redacted = mw
        .on_response(&request("tools/call", json!({"name": "echo"})), &result)
        .await
        .expect("redacted")
        .expect("changed");
    assert!(!redacted.to_string().contains("s3cr3t"), "{redacted}");
    let info = plugins.info("guard").expect("info");
    assert_eq!(info.errors, 0);
    assert!(info.p50_call_us.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_http_json_lists_searches_and_gets() {
    let doc = json!({
        "version": "1.0.0",
        "last_updated": "2026-11-01T00:00:00Z",
        "servers": {
            "fetch": {"image": "ghcr.io/x/fetch:1", "description": "Fetches web pages", "transport": "stdio", "tags": ["web"]},
            "time": {"image": "ghcr.io/x/time:1", "description": "Tells the time", "transport": "stdio", "tags": ["clock"]},
            "git": {"image": "ghcr.io/x/git:1", "description": "Git repositories", "transport": "stdio", "tags": ["vcs"]}
        }
    });
    let served = doc.clone();
    let port = serve(axum::Router::new().route(
        "/registry.json",
        get(move || {
            let d = served.clone();
            async move { axum::Json(d) }
        }),
    ))
    .await;
    let plugins = host(vec![json!({
        "name": "reg", "kind": "registry-source", "path": wasm("registry-http-json"),
        "config": {"url": format!("http://localhost:{port}/registry.json")},
        "permissions": {"allow_http": [format!("localhost:{port}")], "allow_private": true}
    })]);
    let reg = plugins.registry("reg").expect("registry");
    let all = reg
        .list(ListQuery {
            limit: 2,
            ..ListQuery::default()
        })
        .await
        .expect("list");
    let names: Vec<&str> = all.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["fetch", "git"], "sorted by name, limited");
    let rest = reg
        .list(ListQuery {
            limit: 2,
            cursor: all.next_cursor.clone(),
            ..ListQuery::default()
        })
        .await
        .expect("page 2");
    assert_eq!(rest.servers.len(), 1);
    assert_eq!(rest.servers[0].name, "time");
    assert!(rest.next_cursor.is_none());
    let found = reg
        .list(ListQuery {
            query: Some("CLOCK".into()),
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .expect("search");
    assert_eq!(found.servers.len(), 1);
    assert_eq!(found.servers[0].name, "time");
    let fetch = reg.get("fetch").await.expect("get");
    assert_eq!(fetch.entry["image"], "ghcr.io/x/fetch:1");
    assert!(matches!(
        reg.get("nope").await,
        Err(RegistryError::NotFound(_))
    ));
}

/// A stand-in for Vault's KV v2 engine at mount `secret`, token `t0k3n`.
fn fake_vault() -> axum::Router {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    let kv: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
    axum::Router::new().route(
        "/v1/secret/{*rest}",
        any(
            move |method: axum::http::Method,
                  headers: axum::http::HeaderMap,
                  uri: axum::http::Uri,
                  body: axum::body::Bytes| {
                let kv = kv.clone();
                async move {
                    use axum::http::StatusCode;
                    if headers.get("x-vault-token").and_then(|v| v.to_str().ok()) != Some("t0k3n") {
                        return (
                            StatusCode::FORBIDDEN,
                            r#"{"errors":["permission denied"]}"#.to_owned(),
                        );
                    }
                    let path = uri.path().trim_start_matches("/v1/secret/");
                    let list = method.as_str() == "LIST"
                        || uri.query().is_some_and(|q| q.contains("list=true"));
                    let mut kv = kv.lock().unwrap();
                    if let Some(key) = path.strip_prefix("data/") {
                        match method.as_str() {
                            "GET" => match kv.get(key) {
                                Some(data) => (
                                    StatusCode::OK,
                                    json!({"data": {"data": data, "metadata": {"version": 1}}})
                                        .to_string(),
                                ),
                                None => (StatusCode::NOT_FOUND, r#"{"errors":[]}"#.to_owned()),
                            },
                            "POST" | "PUT" => {
                                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                                kv.insert(key.to_owned(), v["data"].clone());
                                (StatusCode::OK, json!({"data": {"version": 1}}).to_string())
                            }
                            _ => (StatusCode::METHOD_NOT_ALLOWED, String::new()),
                        }
                    } else if let Some(key) = path.strip_prefix("metadata") {
                        let key = key.trim_start_matches('/');
                        if list {
                            let keys: Vec<&String> =
                                kv.keys().filter(|k| k.starts_with(key)).collect();
                            if keys.is_empty() {
                                return (StatusCode::NOT_FOUND, r#"{"errors":[]}"#.to_owned());
                            }
                            (StatusCode::OK, json!({"data": {"keys": keys}}).to_string())
                        } else if method == axum::http::Method::DELETE {
                            // Vault answers 204 whether or not the path existed.
                            kv.remove(key);
                            (StatusCode::NO_CONTENT, String::new())
                        } else if method == axum::http::Method::GET {
                            match kv.get(key) {
                                Some(_) => (
                                    StatusCode::OK,
                                    json!({"data": {"current_version": 1, "versions": {"1": {}}}})
                                        .to_string(),
                                ),
                                None => (StatusCode::NOT_FOUND, r#"{"errors":[]}"#.to_owned()),
                            }
                        } else {
                            (StatusCode::METHOD_NOT_ALLOWED, String::new())
                        }
                    } else {
                        (StatusCode::NOT_FOUND, String::new())
                    }
                }
            },
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_vault_kv_round_trip() {
    let port = serve(fake_vault()).await;
    let vault = |token: &str| {
        json!({
            "name": format!("vault-{token}"), "kind": "secrets-provider", "path": wasm("secrets-vault-kv"),
            "config": {"address": format!("http://localhost:{port}"), "token": token},
            "permissions": {"allow_http": [format!("localhost:{port}")], "allow_private": true}
        })
    };
    let plugins = host(vec![vault("t0k3n"), vault("wrong")]);
    let s = plugins.secrets("vault-t0k3n").expect("secrets");
    let caps = s.capabilities().await.expect("capabilities");
    assert!(caps.read && caps.write && caps.delete && caps.list);
    assert!(matches!(
        s.get("github").await,
        Err(SecretsError::NotFound(_))
    ));
    s.set("github", "ghp_value1").await.expect("set");
    s.set("slack", "xoxb_value2").await.expect("set");
    assert_eq!(s.get("github").await.expect("get"), "ghp_value1");
    let mut names = s.list().await.expect("list");
    names.sort();
    assert_eq!(names, ["github", "slack"]);
    s.delete("github").await.expect("delete");
    assert!(matches!(
        s.get("github").await,
        Err(SecretsError::NotFound(_))
    ));
    assert!(matches!(
        s.get("../etc").await,
        Err(SecretsError::Invalid(_))
    ));
    // A wrong token is denied, and no secret or token leaks into the error.
    let bad = plugins.secrets("vault-wrong").expect("secrets");
    let err = bad.get("slack").await.expect_err("denied");
    assert!(matches!(err, SecretsError::Denied(_)), "{err}");
    assert!(
        !err.to_string().contains("wrong") && !err.to_string().contains("xoxb"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compilations_are_cached_on_disk() {
    let path = wasm("test-echo-mw");
    let cache = tempfile::tempdir().expect("tempdir");
    let load = || {
        Plugins::load(
            HostConfig::default(),
            vec![entry(
                json!({"name": "e", "kind": "middleware", "path": path}),
            )],
            Some(cache.path().to_owned()),
        )
        .expect("host")
    };
    assert!(
        !load().info("e").expect("info").cached,
        "first load compiles"
    );
    assert!(
        load().info("e").expect("info").cached,
        "second load reuses the cache"
    );
    let files = std::fs::read_dir(cache.path()).expect("cache dir").count();
    assert_eq!(files, 1);
}
