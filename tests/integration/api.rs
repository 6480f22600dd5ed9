//! The REST API through `berth::api::router`, called with `oneshot`, over the
//! in-memory fake backend.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use berth::api::{Access, router};
use berth::app::App;
use berth::config::{Config, PortRange};
use berth::proxy::ProxyConfig;
use berth::workloads::{RestartPolicy, Workloads};
use berth_runtime_api::WorkloadName;
use berth_runtime_api::fake::FakeBackend;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::eventually;

pub(crate) struct Harness {
    pub(crate) app: Router,
    pub(crate) berth: Arc<App>,
    pub(crate) fake: Arc<FakeBackend>,
    pub(crate) workloads: Workloads,
    pub(crate) dir: tempfile::TempDir,
}

/// As `berth serve` on TCP with the defaults.
fn default_access() -> Access {
    Access {
        guard: Some(Arc::new(
            berth::auth::BrowserGuard::new(&[], &[], false).expect("guard"),
        )),
        token: None,
        oidc: None,
    }
}

pub(crate) async fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    harness_in(dir, Arc::new(FakeBackend::new())).await
}

/// The harness with another API access policy.
pub(crate) async fn harness_with(access: Access) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir, vec![Arc::new(FakeBackend::new())], access).await
}

async fn harness_in(dir: tempfile::TempDir, fake: Arc<FakeBackend>) -> Harness {
    build(dir, vec![fake], default_access()).await
}

/// The harness over several runtimes, the first being the default.
pub(crate) async fn harness_on(dir: tempfile::TempDir, fakes: &[Arc<FakeBackend>]) -> Harness {
    build(dir, fakes.to_vec(), default_access()).await
}

/// The harness with a configuration changed by `tweak`.
pub(crate) async fn harness_config(tweak: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    build_with(
        dir,
        vec![Arc::new(FakeBackend::new())],
        default_access(),
        tweak,
    )
    .await
}

async fn build(dir: tempfile::TempDir, fakes: Vec<Arc<FakeBackend>>, access: Access) -> Harness {
    build_with(dir, fakes, access, |_| {}).await
}

async fn build_with(
    dir: tempfile::TempDir,
    fakes: Vec<Arc<FakeBackend>>,
    access: Access,
    tweak: impl FnOnce(&mut Config),
) -> Harness {
    build_secrets(
        dir,
        fakes,
        access,
        tweak,
        berth::secrets::SecretsEnv::default(),
    )
    .await
}

/// The harness over the state directory `dir` (prepared by the test),
/// with a configuration changed by `tweak`.
pub(crate) async fn harness_dir(
    dir: tempfile::TempDir,
    tweak: impl FnOnce(&mut Config),
) -> Harness {
    build_with(
        dir,
        vec![Arc::new(FakeBackend::new())],
        default_access(),
        tweak,
    )
    .await
}

/// The harness in `dir` with what `main` would read from the environment
/// for the secrets providers.
pub(crate) async fn harness_secrets(
    dir: tempfile::TempDir,
    env: berth::secrets::SecretsEnv,
    tweak: impl FnOnce(&mut Config),
) -> Harness {
    build_secrets(
        dir,
        vec![Arc::new(FakeBackend::new())],
        default_access(),
        tweak,
        env,
    )
    .await
}

/// Cheap key derivation for the encrypted stores tests create (berth's
/// own parameters cost a fraction of a second per unlock).
pub(crate) fn cheap_kdf() -> berth::secrets::encrypted::StoreOptions {
    berth::secrets::encrypted::StoreOptions {
        kdf: berth::secrets::encrypted::KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        },
    }
}

async fn build_secrets(
    dir: tempfile::TempDir,
    fakes: Vec<Arc<FakeBackend>>,
    access: Access,
    tweak: impl FnOnce(&mut Config),
    secrets_env: berth::secrets::SecretsEnv,
) -> Harness {
    let mut config = Config {
        ports: PortRange {
            start: 30000,
            end: 40000,
        },
        restart: RestartPolicy {
            base_delay_ms: 10,
            max_delay_ms: 20,
            max_attempts: 2,
            stable_secs: 30,
        },
        egress: berth::egress::EgressConfig {
            port: 0,
            ..Default::default()
        },
        proxy: ProxyConfig {
            health_interval_secs: 0,
            ..ProxyConfig::default()
        },
        ..Config::default()
    };
    tweak(&mut config);
    let mut builder = App::builder(config).state_dir(dir.path());
    for fake in &fakes {
        builder = builder.backend(fake.clone());
    }
    let app = builder
        .access(access)
        .secrets_env(secrets_env)
        .secrets_store_options(cheap_kdf())
        .nonce("0123")
        .build()
        .await
        .expect("app");
    Harness {
        workloads: app.workloads.clone(),
        berth: app.clone(),
        app: router(app),
        fake: fakes[0].clone(),
        dir,
    }
}

pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) text: String,
    pub(crate) content_type: String,
}

impl Resp {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

impl Harness {
    pub(crate) async fn raw(&self, method: Method, uri: &str, body: Body) -> Resp {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body)
            .expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().expect("ascii").to_owned())
            .unwrap_or_default();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        Resp {
            status,
            text: String::from_utf8(bytes.to_vec()).expect("utf-8"),
            content_type,
        }
    }

    pub(crate) async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Resp {
        let body = body.map_or(Body::empty(), |b| Body::from(b.to_string()));
        self.raw(method, uri, body).await
    }

    pub(crate) async fn get(&self, uri: &str) -> Resp {
        self.call(Method::GET, uri, None).await
    }

    pub(crate) async fn post(&self, uri: &str, body: Value) -> Resp {
        self.call(Method::POST, uri, Some(body)).await
    }

    pub(crate) async fn create(&self, body: Value) -> Resp {
        self.post("/api/v1beta/workloads", body).await
    }

    pub(crate) async fn status_of(&self, name: &str) -> Option<String> {
        let r = self
            .get(&format!("/api/v1beta/workloads/{name}/status"))
            .await;
        (r.status == StatusCode::OK)
            .then(|| r.json()["status"].as_str().expect("status").to_owned())
    }

    pub(crate) async fn wait_status(&self, name: &str, want: &str) {
        eventually(
            Duration::from_secs(5),
            &format!("{name} to be {want}"),
            || async { (self.status_of(name).await.as_deref() == Some(want)).then_some(()) },
        )
        .await;
    }

    pub(crate) async fn listed(&self, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/api/v1beta/workloads{query}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json()["workloads"].as_array().expect("array").clone()
    }
}

fn echo(name: &str) -> Value {
    json!({"name": name, "image": "fake://echo", "transport": "stdio"})
}

#[tokio::test]
async fn health_and_version() {
    let h = harness().await;
    let r = h.get("/health").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let v = h.get("/api/v1beta/version").await;
    assert_eq!(v.status, StatusCode::OK);
    assert!(v.content_type.starts_with("application/json"));
    let v = v.json();
    assert!(v["version"].as_str().expect("version").starts_with('v'));
    assert_eq!(v["runtime"], "fake");
    let doc = h.get("/api/doc").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.content_type.starts_with("text/html"));
    assert!(doc.text.contains("/api/v1beta/workloads/{name}/export"));
}

#[tokio::test]
async fn workload_lifecycle() {
    let h = harness().await;
    let r = h.create(echo("t1")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let created = r.json();
    assert_eq!(created["name"], "t1");
    let port = created["port"].as_u64().expect("port");
    assert!(
        (30000..40000).contains(&port),
        "port from the configured range"
    );

    h.wait_status("t1", "running").await;
    let listed = h.listed("").await;
    assert_eq!(listed.len(), 1);
    let w = &listed[0];
    assert_eq!(w["name"], "t1");
    assert_eq!(w["url"], format!("http://127.0.0.1:{port}/mcp"));
    assert_eq!(w["transport_type"], "stdio");
    assert_eq!(w["proxy_mode"], "streamable-http");
    assert_eq!(w["group"], "default");
    assert_eq!(w["package"], "fake://echo");
    assert_ne!(w["started_at"], "0001-01-01T00:00:00Z");

    let r = h.post("/api/v1beta/workloads/t1/stop", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    h.wait_status("t1", "stopped").await;
    assert!(
        h.listed("").await.is_empty(),
        "stopped workloads are hidden by default"
    );
    assert_eq!(h.listed("?all=true").await.len(), 1);
    assert!(
        h.listed("?all=1").await.is_empty(),
        "only the exact string true counts"
    );

    let r = h.post("/api/v1beta/workloads/t1/restart", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    h.wait_status("t1", "running").await;
    let name = WorkloadName::parse("t1").expect("name");
    assert_eq!(h.fake.deploy_count(&name), 2);

    let logs = h.get("/api/v1beta/workloads/t1/logs").await;
    assert_eq!(logs.status, StatusCode::OK);
    assert!(logs.content_type.starts_with("text/plain"));
    let plogs = h.get("/api/v1beta/workloads/t1/proxy-logs").await;
    assert_eq!(plogs.status, StatusCode::OK);
    assert!(plogs.text.contains("created"), "{}", plogs.text);
    assert!(plogs.text.contains("stopped"), "{}", plogs.text);

    let export = h.get("/api/v1beta/workloads/t1/export").await;
    assert_eq!(export.status, StatusCode::OK);
    let rc = export.json();
    assert_eq!(rc["schema_version"], "v0.1.0");
    assert_eq!(rc["image"], "fake://echo");
    assert_eq!(rc["name"], "t1");
    assert_eq!(rc["port"], port);
    assert_eq!(rc["transport"], "stdio");
    assert_eq!(rc["group"], "default");
    assert!(
        rc.get("env_vars").is_none(),
        "injected MCP_* variables are not persisted"
    );

    let get = h.get("/api/v1beta/workloads/t1").await;
    assert_eq!(get.status, StatusCode::OK);
    let cfg = get.json();
    assert_eq!(cfg["proxy_port"], port);
    assert_eq!(cfg["cmd_arguments"], json!([]));

    let r = h
        .call(Method::DELETE, "/api/v1beta/workloads/t1", None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    eventually(Duration::from_secs(5), "t1 to be gone", || async {
        (h.get("/api/v1beta/workloads/t1").await.status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    assert!(h.listed("?all=true").await.is_empty());
    assert!(!h.dir.path().join("runconfigs/t1.json").exists());
    assert!(!h.dir.path().join("statuses/t1.json").exists());
}

#[tokio::test]
async fn validation_errors_say_what_is_wrong() {
    let h = harness().await;
    assert_eq!(h.create(echo("dup")).await.status, StatusCode::CREATED);

    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            echo("../x"),
            StatusCode::BAD_REQUEST,
            "invalid workload name",
        ),
        (echo(&"x".repeat(101)), StatusCode::BAD_REQUEST, "too long"),
        (echo(""), StatusCode::BAD_REQUEST, "cannot be empty"),
        (echo("dup"), StatusCode::CONFLICT, "already exists"),
        (
            json!({"name": "g", "image": "fake://echo", "group": "nope"}),
            StatusCode::BAD_REQUEST,
            "group `nope` does not exist",
        ),
        (json!({"name": "n"}), StatusCode::BAD_REQUEST, "'image'"),
        (
            json!({"name": "o", "image": "ghcr.io/x/y:1"}),
            StatusCode::BAD_REQUEST,
            "fake:// images",
        ),
        (
            json!({"name": "t", "image": "fake://echo", "transport": "carrier-pigeon"}),
            StatusCode::BAD_REQUEST,
            "invalid transport mode",
        ),
        (
            json!({"name": "p", "image": "fake://echo", "proxy_mode": "ws"}),
            StatusCode::BAD_REQUEST,
            "proxy_mode",
        ),
        (
            json!({"name": "s", "image": "fake://echo", "secrets": [{"name": "a", "target": "B"}]}),
            StatusCode::BAD_REQUEST,
            "secrets",
        ),
        (
            json!({"name": "v", "image": "fake://echo", "tools": [""]}),
            StatusCode::BAD_REQUEST,
            "tools has an empty tool name",
        ),
        (
            json!({"name": "h", "image": "fake://echo", "host": "example"}),
            StatusCode::BAD_REQUEST,
            "invalid host",
        ),
        (
            json!({"name": "e", "image": "fake://echo", "env_vars": {"A=B": "1"}}),
            StatusCode::BAD_REQUEST,
            "environment variable",
        ),
        (
            json!({"name": "q", "image": "fake://echo", "proxy_port": "80"}),
            StatusCode::BAD_REQUEST,
            "failed to decode request",
        ),
    ];
    for (body, status, needle) in cases {
        let r = h.create(body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert!(
            r.text.contains(needle),
            "{body}: {:?} lacks {needle:?}",
            r.text
        );
        assert!(r.content_type.starts_with("text/plain"));
    }
    assert_eq!(
        h.listed("?all=true").await.len(),
        1,
        "failed creates change nothing"
    );

    let bad = h
        .raw(Method::POST, "/api/v1beta/workloads", "{\"name\": ".into())
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.text.contains("failed to decode request"),
        "{}",
        bad.text
    );
    let empty = h
        .raw(Method::POST, "/api/v1beta/workloads", Body::empty())
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);

    let huge = format!("{{\"name\":\"big\",\"image\":\"{}\"}}", "x".repeat(2 << 20));
    let r = h
        .raw(Method::POST, "/api/v1beta/workloads", huge.into())
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);

    for uri in [
        "/api/v1beta/workloads/ghost",
        "/api/v1beta/workloads/ghost/status",
        "/api/v1beta/workloads/ghost/logs",
        "/api/v1beta/workloads/ghost/proxy-logs",
        "/api/v1beta/workloads/ghost/export",
    ] {
        let r = h.get(uri).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(r.text.contains("ghost"), "{uri}: {}", r.text);
    }
    for op in ["stop", "restart"] {
        let r = h
            .post(&format!("/api/v1beta/workloads/ghost/{op}"), json!({}))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{op}");
    }
    let r = h
        .call(Method::DELETE, "/api/v1beta/workloads/ghost", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h.get("/api/v1beta/workloads/..bad/status").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = h
        .post(
            "/api/v1beta/workloads/stop",
            json!({"names": ["dup"], "group": "default"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text.contains("cannot specify both names and group"));
    let r = h.post("/api/v1beta/workloads/stop", json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .post(
            "/api/v1beta/workloads/stop",
            json!({"names": ["dup", "../x"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .post(
            "/api/v1beta/workloads/stop",
            json!({"names": ["dup", "ghost"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text.contains("ghost"));
    let r = h
        .post("/api/v1beta/workloads/restart", json!({"group": "nope"}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    h.wait_status("dup", "running").await;
    let r = h.get("/api/v1beta/workloads?group=nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h.get("/api/v1beta/workloads?group=Bad").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn ports_are_reserved() {
    let h = harness().await;
    let r = h.create(echo("a")).await.json();
    let port = r["port"].as_u64().expect("port");
    let r = h
        .create(json!({"name": "b", "image": "fake://echo", "proxy_port": port}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.text.contains(&format!("port {port} is not available")),
        "{}",
        r.text
    );

    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_port = busy.local_addr().expect("addr").port();
    let r = h
        .create(json!({"name": "c", "image": "fake://echo", "proxy_port": busy_port}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "a port in use elsewhere is refused"
    );

    let r = h
        .create(json!({"name": "d", "image": "fake://echo", "transport": "streamable-http"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let rc = h.get("/api/v1beta/workloads/d/export").await.json();
    assert!(
        rc["target_port"].as_u64().is_some(),
        "HTTP transports get a target port"
    );
    assert_ne!(rc["target_port"], rc["port"]);
}

#[tokio::test]
async fn concurrent_creates_of_one_name_have_one_winner() {
    let h = Arc::new(harness().await);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let h = h.clone();
        tasks.push(tokio::spawn(
            async move { h.create(echo("race")).await.status },
        ));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.expect("task") {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 1);

    let mut tasks = Vec::new();
    for i in 0..16 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.create(echo(&format!("w{i}"))).await.json()["port"]
                .as_u64()
                .expect("port")
        }));
    }
    let mut ports = std::collections::BTreeSet::new();
    for t in tasks {
        assert!(ports.insert(t.await.expect("task")), "ports are distinct");
    }
}

#[tokio::test]
async fn crashes_are_restarted_and_reported_honestly() {
    let h = harness().await;
    h.create(echo("c1")).await;
    h.wait_status("c1", "running").await;
    let name = WorkloadName::parse("c1").expect("name");
    h.fake.crash(&name, 3).expect("crash");
    eventually(Duration::from_secs(5), "c1 restarted", || async {
        (h.fake.deploy_count(&name) == 2).then_some(())
    })
    .await;
    h.wait_status("c1", "running").await;
    let w = &h.listed("").await[0];
    assert_eq!(w["restart_count"], 1);
    let log = h.get("/api/v1beta/workloads/c1/proxy-logs").await.text;
    assert!(
        log.contains("process exited with code 3; restarting"),
        "{log}"
    );

    let r = h.create(json!({"name": "f", "image": "fake://fail"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    h.wait_status("f", "error").await;
    let all = h.listed("?all=true").await;
    let f = all.iter().find(|w| w["name"] == "f").expect("listed");
    assert!(
        f["status_context"]
            .as_str()
            .expect("ctx")
            .contains("failed to start"),
        "{f}"
    );

    // A server that keeps exiting is given up on, and says why.
    let r = h
        .create(json!({"name": "x0", "image": "fake://exit", "cmd_arguments": ["5"]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    h.wait_status("x0", "error").await;
    let all = h.listed("?all=true").await;
    let x = all.iter().find(|w| w["name"] == "x0").expect("listed");
    assert_eq!(
        x["status_context"],
        "process exited with code 5; gave up after 2 restarts in a row"
    );
    assert_eq!(x["restart_count"], 2);
}

/// Regression: an engine that goes away while a workload runs is waited
/// for, never a reason to give up, however often it happens (the harness's
/// policy gives up after 2 quick restarts in a row).
#[tokio::test]
async fn an_engine_that_goes_away_is_waited_for() {
    let h = harness().await;
    h.create(echo("e1")).await;
    h.wait_status("e1", "running").await;
    let name = WorkloadName::parse("e1").expect("name");
    for round in 1..=3 {
        h.fake.set_reachable(false);
        let restarts = |w: &Value| w["restart_count"].as_u64().expect("count");
        let before = restarts(&h.listed("?all=true").await[0]);
        // Several failed attempts while it is away, more than the policy
        // allows for a crashing server; the status says why all along.
        let w = eventually(Duration::from_secs(5), "attempts while away", || async {
            let w = h.listed("?all=true").await[0].clone();
            let context = w["status_context"].as_str().unwrap_or("");
            assert_ne!(w["status"], "error", "round {round}: {w}");
            (w["status"] == "starting"
                && context.contains("backend `fake` is unavailable")
                && restarts(&w) >= before + 3)
                .then_some(w)
        })
        .await;
        assert_eq!(
            h.get("/health").await.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{w}"
        );
        h.fake.set_reachable(true);
        h.wait_status("e1", "running").await;
        assert_eq!(h.fake.deploy_count(&name), round + 1);
        assert_eq!(h.get("/health").await.status, StatusCode::NO_CONTENT);
    }
}

#[tokio::test]
async fn edit_replaces_and_rolls_back() {
    let h = harness().await;
    let port = h.create(echo("e1")).await.json()["port"].clone();
    h.wait_status("e1", "running").await;
    let r = h
        .post(
            "/api/v1beta/workloads/e1/edit",
            json!({"image": "fake://echo", "env_vars": {"MODE": "fast"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["port"], port, "proxy_port 0 keeps the port");
    let name = WorkloadName::parse("e1").expect("name");
    eventually(Duration::from_secs(5), "redeploy", || async {
        (h.fake.deploy_count(&name) == 2).then_some(())
    })
    .await;
    h.wait_status("e1", "running").await;
    assert_eq!(
        h.get("/api/v1beta/workloads/e1/export").await.json()["env_vars"]["MODE"],
        "fast"
    );

    let r = h
        .post(
            "/api/v1beta/workloads/e1/edit",
            json!({"image": "fake://fail"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    eventually(Duration::from_secs(5), "rollback", || async {
        (h.fake.deploy_count(&name) == 3).then_some(())
    })
    .await;
    h.wait_status("e1", "running").await;
    let rc = h.get("/api/v1beta/workloads/e1/export").await.json();
    assert_eq!(
        rc["image"], "fake://echo",
        "the previous configuration is restored"
    );
    let w = h.listed("").await;
    assert!(
        w[0]["status_context"]
            .as_str()
            .expect("ctx")
            .contains("edit failed")
    );

    let r = h
        .post(
            "/api/v1beta/workloads/e1/edit",
            json!({"image": "ghcr.io/a/b"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "an invalid edit changes nothing"
    );
    let r = h
        .post(
            "/api/v1beta/workloads/nope/edit",
            json!({"image": "fake://echo"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn groups_api() {
    let h = harness().await;
    let r = h.post("/api/v1beta/groups", json!({"name": "team"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json(), json!({"name": "team"}));
    assert_eq!(
        h.post("/api/v1beta/groups", json!({"name": "team"}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    let r = h.post("/api/v1beta/groups", json!({"name": "Team"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text.contains("invalid group name"));
    h.post("/api/v1beta/groups", json!({"name": "alpha"})).await;

    let list = h.get("/api/v1beta/groups").await.json();
    let names: Vec<_> = list["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["name"].clone())
        .collect();
    assert_eq!(names, [json!("alpha"), json!("default"), json!("team")]);
    let g = h.get("/api/v1beta/groups/team").await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json()["registered_clients"], json!([]));
    assert_eq!(
        h.get("/api/v1beta/groups/nope").await.status,
        StatusCode::NOT_FOUND
    );

    let r = h
        .call(Method::DELETE, "/api/v1beta/groups/default", None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text.contains("default"));

    for (n, g) in [("m1", "team"), ("m2", "team"), ("k1", "alpha")] {
        let r = h
            .create(json!({"name": n, "image": "fake://echo", "group": g}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    assert_eq!(h.listed("?all=true&group=team").await.len(), 2);

    let r = h
        .call(Method::DELETE, "/api/v1beta/groups/team", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get("/api/v1beta/groups/team").await.status,
        StatusCode::NOT_FOUND
    );
    let moved = h.listed("?all=true&group=default").await;
    assert_eq!(
        moved.len(),
        2,
        "workloads of a deleted group move to default"
    );

    let r = h
        .call(
            Method::DELETE,
            "/api/v1beta/groups/alpha?with-workloads=true",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get("/api/v1beta/workloads/k1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.listed("?all=true").await.len(), 2);
    assert_eq!(
        h.call(Method::DELETE, "/api/v1beta/groups/nope", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bulk_operations() {
    let h = harness().await;
    for n in ["b1", "b2", "b3"] {
        h.create(echo(n)).await;
        h.wait_status(n, "running").await;
    }
    let r = h
        .post("/api/v1beta/workloads/stop", json!({"names": ["b1", "b2"]}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    h.wait_status("b1", "stopped").await;
    h.wait_status("b2", "stopped").await;
    assert_eq!(h.status_of("b3").await.as_deref(), Some("running"));
    let r = h
        .post("/api/v1beta/workloads/restart", json!({"group": "default"}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    h.wait_status("b1", "running").await;
    let r = h
        .post("/api/v1beta/workloads/delete", json!({"group": "default"}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    eventually(Duration::from_secs(5), "all deleted", || async {
        h.listed("?all=true").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn state_survives_a_restart_of_berth() {
    let h = harness().await;
    for n in ["r1", "r2", "r3"] {
        h.create(echo(n)).await;
    }
    h.wait_status("r1", "running").await;
    h.post("/api/v1beta/workloads/r3/stop", json!({})).await;
    h.wait_status("r3", "stopped").await;
    let before = h.listed("?all=true").await;
    // The old berth is gone: its proxies closed, its tasks ended.
    h.berth.shutdown(Duration::from_secs(5)).await;
    let Harness { dir, .. } = h;

    // A new berth on the same state directory, with a runtime that lost
    // everything (as native processes are after berth dies): recovery must
    // deploy what should run, and only that.
    let fresh = Arc::new(FakeBackend::new());
    let h = harness_in(dir, fresh.clone()).await;
    let name = |n: &str| WorkloadName::parse(n).expect("name");
    eventually(Duration::from_secs(5), "r1 and r2 redeployed", || async {
        (fresh.deploy_count(&name("r1")) == 1 && fresh.deploy_count(&name("r2")) == 1).then_some(())
    })
    .await;
    h.wait_status("r1", "running").await;
    h.wait_status("r2", "running").await;
    h.wait_status("r3", "stopped").await;
    assert_eq!(
        fresh.deploy_count(&name("r3")),
        0,
        "a stopped workload stays stopped"
    );
    // The new berth serves r1's proxy on its old port.
    let port = before[0]["port"].as_u64().expect("port") as u16;
    assert_eq!(before[0]["name"], "r1");
    eventually(Duration::from_secs(5), "r1's proxy port", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(drop)
    })
    .await;
    let after = h.listed("?all=true").await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b["name"], a["name"]);
        assert_eq!(b["port"], a["port"], "ports survive restarts");
        assert_eq!(b["created_at"], a["created_at"]);
    }
    let r = h.create(echo("r4")).await.json();
    let used: Vec<_> = after.iter().map(|w| w["port"].clone()).collect();
    assert!(
        !used.contains(&r["port"]),
        "automatic ports never collide with persisted ones"
    );
}

#[tokio::test]
async fn permission_profiles_reach_the_spec_and_survive_export() {
    use berth_runtime_api::{Mount, NetworkAccess};
    let h = harness().await;
    let data = tempfile::tempdir().expect("tempdir");
    let src = data.path().to_str().expect("utf-8").to_owned();

    // `none` with a read-only profile path and a read-write volume.
    let profile = json!({"name": "none", "read": [format!("{src}:/in")]});
    let r = h
        .create(
            json!({"name": "pn", "image": "fake://echo", "permission_profile": profile,
            "volumes": [format!("{src}:/out")]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    h.wait_status("pn", "running").await;
    let name = WorkloadName::parse("pn").unwrap();
    let spec = h.fake.spec_of(&name).expect("deployed");
    assert_eq!(spec.network, NetworkAccess::None);
    assert_eq!(
        spec.mounts,
        vec![
            Mount {
                source: src.clone().into(),
                target: "/in".into(),
                read_only: true
            },
            Mount {
                source: src.clone().into(),
                target: "/out".into(),
                read_only: false
            },
        ]
    );
    let rc = h.get("/api/v1beta/workloads/pn/export").await.json();
    assert_eq!(rc["permission_profile"], profile, "exported as given");
    assert_eq!(rc["volumes"], json!([format!("{src}:/out")]));
    assert_eq!(rc["isolate_network"], true);
    let got = h.get("/api/v1beta/workloads/pn").await.json();
    assert_eq!(got["permission_profile"], profile);
    assert_eq!(got["volumes"], json!([format!("{src}:/out")]));

    // An allowlist: an isolated network and berth's egress proxy in the
    // environment, listening where the backend said.
    let r = h
        .create(json!({"name": "pa", "image": "fake://echo", "permission_profile": {
            "name": "custom", "network": {"outbound": {"allow_host": ["allowed.test"], "allow_port": [80]}}}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    h.wait_status("pa", "running").await;
    let spec = h
        .fake
        .spec_of(&WorkloadName::parse("pa").unwrap())
        .expect("deployed");
    assert_eq!(spec.network, NetworkAccess::Isolated);
    let proxy = spec.env["HTTP_PROXY"].clone();
    assert!(proxy.starts_with("http://127.0.0.1:"), "{proxy}");
    assert_eq!(spec.env["https_proxy"], proxy);
    assert_eq!(spec.env["NO_PROXY"], "");
    let denied = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(&proxy).expect("proxy url"))
        .build()
        .expect("client")
        .get("http://denied.test/")
        .send()
        .await
        .expect("the egress proxy answers");
    assert_eq!(denied.status(), reqwest::StatusCode::FORBIDDEN);
    let log = h.get("/api/v1beta/workloads/pa/proxy-logs").await;
    assert!(
        log.text
            .contains("egress refused: GET http://denied.test:80"),
        "{}",
        log.text
    );

    // The default stays the unrestricted `network` profile.
    assert_eq!(h.create(echo("pd")).await.status, StatusCode::CREATED);
    h.wait_status("pd", "running").await;
    let spec = h
        .fake
        .spec_of(&WorkloadName::parse("pd").unwrap())
        .expect("deployed");
    assert_eq!(spec.network, NetworkAccess::Full);
    assert!(spec.mounts.is_empty() && !spec.env.contains_key("HTTP_PROXY"));
}

#[tokio::test]
async fn unenforceable_profiles_are_refused() {
    let h = harness().await;
    let cases = [
        (
            json!({"privileged": true}),
            json!([]),
            "never runs a workload privileged",
        ),
        (
            json!({"read": ["relative/path"]}),
            json!([]),
            "must be absolute",
        ),
        (
            json!({"write": ["/no/such/berth/dir:/d"]}),
            json!([]),
            "does not exist",
        ),
        (
            json!({"network": {"mode": "host"}}),
            json!([]),
            "host's network",
        ),
        (json!(null), json!(["/tmp"]), "host:container"),
    ];
    for (i, (profile, volumes, expect)) in cases.into_iter().enumerate() {
        let r = h
            .create(json!({"name": format!("x{i}"), "image": "fake://echo",
                "permission_profile": profile, "volumes": volumes}))
            .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{profile} {volumes}: {}",
            r.text
        );
        assert!(r.text.contains(expect), "{profile}: {}", r.text);
    }
    assert!(
        h.listed("?all=true").await.is_empty(),
        "a refused request changes nothing"
    );
}
