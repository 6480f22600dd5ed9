//! Headless OAuth login of a registry: the device authorization grant
//! (RFC 8628) against a fake identity provider of this test's own, an MCP
//! Registry API that requires the access token, the refresh grant, a
//! refused refresh, a denied login and logout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth::secrets::SecretsEnv;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::api::{Harness, harness, harness_secrets};
use crate::secrets::assert_no_file_has;
use crate::support::eventually;

const CLIENT_ID: &str = "berth-cli";

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://127.0.0.1:{port}")
}

/// One device code's state at the identity provider.
#[derive(Default)]
struct Code {
    polls: usize,
    approved: bool,
    denied: bool,
    denial_sent: bool,
}

/// A fake OIDC identity provider: discovery (also a `/nodevice` issuer
/// without a device endpoint), device authorization, and a token endpoint
/// that answers each device code `authorization_pending` twice, then
/// `slow_down` once, then a token once approved (`access_denied` once
/// denied); refresh grants while `refresh_ok`, rotating the refresh token.
/// It also holds the access token the registry API accepts.
#[derive(Default)]
struct Idp {
    base: Mutex<String>,
    device_forms: Mutex<Vec<HashMap<String, String>>>,
    codes: Mutex<HashMap<String, Code>>,
    refresh_ok: AtomicBool,
    refreshes: Mutex<Vec<String>>,
    issued: AtomicUsize,
    access: Mutex<String>,
    refresh: Mutex<String>,
}

impl Idp {
    fn base(&self) -> String {
        self.base.lock().expect("lock").clone()
    }

    fn code(&self, code: &str, f: impl FnOnce(&mut Code)) {
        f(self
            .codes
            .lock()
            .expect("lock")
            .entry(code.into())
            .or_default());
    }

    fn issue(&self) -> Response {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let (access, refresh) = (format!("at-{n}"), format!("rt-{n}"));
        *self.access.lock().expect("lock") = access.clone();
        *self.refresh.lock().expect("lock") = refresh.clone();
        axum::Json(json!({"access_token": access, "token_type": "Bearer",
            "expires_in": 3600, "refresh_token": refresh}))
        .into_response()
    }
}

/// An `application/x-www-form-urlencoded` body.
fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error}))).into_response()
}

async fn discovery(State(idp): State<Arc<Idp>>) -> Response {
    let base = idp.base();
    axum::Json(
        json!({"issuer": base, "token_endpoint": format!("{base}/token"),
        "device_authorization_endpoint": format!("{base}/device")}),
    )
    .into_response()
}

async fn discovery_without_device(State(idp): State<Arc<Idp>>) -> Response {
    let base = idp.base();
    axum::Json(
        json!({"issuer": format!("{base}/nodevice"), "token_endpoint": format!("{base}/token")}),
    )
    .into_response()
}

async fn device(State(idp): State<Arc<Idp>>, body: bytes::Bytes) -> Response {
    let form = form(&body);
    let n = {
        let mut forms = idp.device_forms.lock().expect("lock");
        forms.push(form);
        forms.len()
    };
    let base = idp.base();
    axum::Json(
        json!({"device_code": format!("dc-{n}"), "user_code": format!("USER-{n}"),
        "verification_uri": format!("{base}/activate"),
        "verification_uri_complete": format!("{base}/activate?user_code=USER-{n}"),
        "expires_in": 600, "interval": 1}),
    )
    .into_response()
}

async fn token(State(idp): State<Arc<Idp>>, body: bytes::Bytes) -> Response {
    let form = form(&body);
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return oauth_error("invalid_client");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("urn:ietf:params:oauth:grant-type:device_code") => {
            let code = form.get("device_code").cloned().unwrap_or_default();
            let mut answer = "authorization_pending";
            idp.code(&code, |c| {
                c.polls += 1;
                answer = if c.denied {
                    c.denial_sent = true;
                    "access_denied"
                } else {
                    match (c.polls, c.approved) {
                        (1 | 2, _) => "authorization_pending",
                        (3, _) => "slow_down",
                        (_, true) => "",
                        (_, false) => "authorization_pending",
                    }
                };
            });
            if answer.is_empty() {
                idp.issue()
            } else {
                oauth_error(answer)
            }
        }
        Some("refresh_token") => {
            let given = form.get("refresh_token").cloned().unwrap_or_default();
            idp.refreshes.lock().expect("lock").push(given.clone());
            let current = idp.refresh.lock().expect("lock").clone();
            if idp.refresh_ok.load(Ordering::SeqCst) && given == current {
                idp.issue()
            } else {
                oauth_error("invalid_grant")
            }
        }
        _ => oauth_error("unsupported_grant_type"),
    }
}

/// The identity provider and an MCP Registry API (three servers) that
/// requires `Bearer <the latest access token>`.
async fn start() -> (Arc<Idp>, String, Arc<Mutex<Vec<String>>>) {
    let idp = Arc::new(Idp {
        refresh_ok: AtomicBool::new(true),
        ..Idp::default()
    });
    let base = serve(
        axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route(
                "/nodevice/.well-known/openid-configuration",
                get(discovery_without_device),
            )
            .route("/device", post(device))
            .route("/token", post(token))
            .with_state(idp.clone()),
    )
    .await;
    *idp.base.lock().expect("lock") = base;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let (state, log) = (idp.clone(), seen.clone());
    let api = serve(axum::Router::new().route(
        "/v0.1/servers",
        get(move |headers: HeaderMap| {
            let (idp, log) = (state.clone(), log.clone());
            async move {
                let given = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                log.lock().expect("lock").push(given.clone());
                let access = idp.access.lock().expect("lock").clone();
                if access.is_empty() || given != format!("Bearer {access}") {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                let servers: Vec<Value> = (0..3)
                    .map(|i| {
                        json!({"server": {"name": format!("io.example.corp/tool-{i}"),
                            "description": "A corporate tool", "version": "1.0.0",
                            "packages": [{"registryType": "oci", "identifier": "fake://echo",
                                "transport": {"type": "stdio"}}]}})
                    })
                    .collect();
                axum::Json(json!({"servers": servers, "metadata": {"count": 3}})).into_response()
            }
        }),
    ))
    .await;
    (idp, api, seen)
}

/// `default` as the registry list shows it (the list answers even while
/// the source wants a login; `GET /registry/default` is 503 then).
async fn info(h: &Harness) -> Value {
    let r = h.get("/api/v1beta/registry").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["registries"]
        .as_array()
        .expect("registries")
        .iter()
        .find(|r| r["name"] == "default")
        .expect("default is listed")
        .clone()
}

async fn put_default(h: &Harness, body: Value) -> crate::api::Resp {
    h.call(Method::PUT, "/api/v1beta/registry/default", Some(body))
        .await
}

async fn login(h: &Harness) -> Value {
    let r = h
        .post(
            "/api/v1beta/registry/auth/login",
            json!({"registry": "default"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    r.json()
}

/// The names of berth's own secrets in the encrypted store.
async fn system_tokens(h: &Harness) -> Vec<String> {
    let store = h.berth.secrets.system_store().await.expect("system store");
    store.list_system().await.expect("list")
}

/// Fails if a file of the state directory but the encrypted store holds
/// one of `values`, or the user's secret listing shows berth's own.
async fn assert_tokens_hidden(h: &Harness, values: &[&str]) {
    assert!(!h.dir.path().join("registry-tokens.json").exists());
    for v in values {
        assert_no_file_has(h.dir.path(), h.berth.secrets.store_path(), v);
    }
    let r = h.get("/api/v1beta/secrets/default/keys").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!r.text.contains("__berth"), "{}", r.text);
    for v in values {
        assert!(!r.text.contains(v), "{}", r.text);
    }
}

/// Expires the stored access token (as time would), keeping its refresh
/// token.
fn expire(h: &Harness) {
    let tokens = &h.berth.registries.tokens;
    let mut t = tokens.get("default").expect("a stored token");
    t.expires_at = Some(time::OffsetDateTime::now_utc() + time::Duration::seconds(10));
    tokens.put("default", t).expect("put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_logs_in_with_the_device_flow_and_refreshes_its_token() {
    let (idp, api, api_seen) = start().await;
    let issuer = idp.base();
    let h = harness().await;
    // Waits are recorded in the identity provider's seconds and last 10 ms.
    let waits = Arc::new(Mutex::new(Vec::new()));
    let recorded = waits.clone();
    h.berth
        .registries
        .oauth
        .set_sleep(Arc::new(move |d: Duration| {
            recorded.lock().expect("lock").push(d);
            Box::pin(tokio::time::sleep(Duration::from_millis(10)))
        }));

    // Bad auth settings: 400, and the registry is left as it was.
    for (auth, why) in [
        (
            json!({"issuer": "http://idp.example.com", "client_id": CLIENT_ID}),
            "https",
        ),
        (
            json!({"issuer": format!("{issuer}/nodevice"), "client_id": CLIENT_ID}),
            "device_authorization_endpoint",
        ),
        (
            json!({"issuer": "http://127.0.0.1:1", "client_id": CLIENT_ID}),
            "discovery",
        ),
        (
            json!({"issuer": format!("{issuer}/"), "client_id": ""}),
            "auth.issuer and auth.client_id are required",
        ),
    ] {
        let r = put_default(
            &h,
            json!({"api_url": api, "allow_private_ip": true, "auth": auth}),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{auth}: {}", r.text);
        assert!(r.text.contains(why), "{auth}: {}", r.text);
        if why != "auth.issuer and auth.client_id are required" {
            assert!(
                r.text.contains("failed to configure registry auth"),
                "{}",
                r.text
            );
        }
    }
    let v = info(&h).await;
    assert_eq!(
        (&v["type"], &v["auth_status"]),
        (&json!("default"), &json!("none"))
    );

    // Good settings: saved before any login (the API answers 401 so far).
    let r = put_default(
        &h,
        json!({"api_url": api, "allow_private_ip": true,
            "auth": {"issuer": issuer, "client_id": CLIENT_ID, "audience": "corp-registry"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["type"], "api");
    let v = info(&h).await;
    assert_eq!(v["auth_status"], "configured", "{v}");
    assert_eq!(v["auth_type"], "oauth");
    assert_eq!(
        v["auth_config"],
        json!({"issuer": issuer, "client_id": CLIENT_ID, "audience": "corp-registry",
            "scopes": ["openid", "offline_access"]})
    );
    let r = h
        .post("/api/v1beta/registry/default/refresh", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.json()["code"], "registry_auth_required");

    // Login: 202 at once with the code to approve; a second login while
    // it is pending answers the same code (one flow).
    let started = login(&h).await;
    assert_eq!(started["status"], "pending");
    assert_eq!(started["user_code"], "USER-1");
    assert_eq!(started["verification_uri"], format!("{issuer}/activate"));
    assert_eq!(
        started["verification_uri_complete"],
        format!("{issuer}/activate?user_code=USER-1")
    );
    assert_eq!(started["interval"], 1);
    assert!((1..=600).contains(&started["expires_in"].as_u64().expect("expires_in")));
    let again = login(&h).await;
    assert_eq!(again["user_code"], "USER-1");
    {
        let forms = idp.device_forms.lock().expect("lock");
        assert_eq!(forms.len(), 1, "one device authorization request");
        assert_eq!(forms[0]["client_id"], CLIENT_ID);
        assert_eq!(forms[0]["scope"], "openid offline_access");
        assert_eq!(forms[0]["audience"], "corp-registry");
    }
    assert_eq!(info(&h).await["auth_status"], "configured");

    // The user approves; berth's background poll gets the token.
    idp.code("dc-1", |c| c.approved = true);
    eventually(Duration::from_secs(10), "the login to complete", || async {
        (info(&h).await["auth_status"] == "authenticated").then_some(())
    })
    .await;
    let r = h.get("/api/v1beta/registry/default").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["auth_status"], "authenticated", "{v}");
    assert_eq!(v["auth_type"], "oauth");
    assert_eq!(v["auth_config"]["issuer"], issuer);
    // The poll honoured the interval, then slow_down (+5 s) for good.
    let waits = waits.lock().expect("lock").clone();
    let second = Duration::from_secs(1);
    assert_eq!(waits[..3], [second; 3], "{waits:?}");
    assert!(
        waits.len() > 3 && waits[3..].iter().all(|w| *w == Duration::from_secs(6)),
        "{waits:?}"
    );
    let stored = h.berth.registries.tokens.get("default").expect("stored");
    assert_eq!(
        (stored.kind.as_str(), stored.access_token.as_str()),
        ("oauth", "at-1")
    );
    assert_eq!(stored.refresh_token.as_deref(), Some("rt-1"));
    assert!(stored.expires_at.is_some());
    assert!(!format!("{stored:?}").contains("at-1"));
    let config = std::fs::read_to_string(h.dir.path().join("registries.json")).expect("stored");
    assert!(
        !config.contains("at-1") && !config.contains("rt-1"),
        "{config}"
    );
    // Kept as berth's own secrets: in no plaintext file, in no listing.
    assert_tokens_hidden(&h, &["\"at-1\"", "\"rt-1\""]).await;
    assert_eq!(system_tokens(&h).await, ["__berth_registry_default"]);

    // The API registry lists through the token.
    let r = h
        .post("/api/v1beta/registry/default/refresh", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = h.get("/registry/default/v0.1/servers").await.json();
    assert_eq!(v["metadata"]["total"], 3, "{v}");
    assert_eq!(
        api_seen.lock().expect("lock").last().map(String::as_str),
        Some("Bearer at-1")
    );
    assert!(!info(&h).await.to_string().contains("at-1"));

    // The access token expires: the next read refreshes it first, and the
    // rotated refresh token is kept.
    expire(&h);
    let r = h
        .post("/api/v1beta/registry/default/refresh", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(*idp.refreshes.lock().expect("lock"), ["rt-1"]);
    assert_eq!(
        api_seen.lock().expect("lock").last().map(String::as_str),
        Some("Bearer at-2")
    );
    let stored = h.berth.registries.tokens.get("default").expect("stored");
    assert_eq!(stored.access_token, "at-2");
    assert_eq!(stored.refresh_token.as_deref(), Some("rt-2"));

    // The identity provider refuses the next refresh. A read served from
    // the fresh cache needs no token; one that asks the source is 503
    // registry_auth_required, never the cached copy.
    idp.refresh_ok.store(false, Ordering::SeqCst);
    expire(&h);
    let v = h.get("/registry/default/v0.1/servers").await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    assert_eq!(idp.refreshes.lock().expect("lock").len(), 1);
    let r = h
        .post("/api/v1beta/registry/default/refresh", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.json()["code"], "registry_auth_required");
    assert!(r.text.contains("invalid_grant"), "{}", r.text);
    assert!(
        !r.text.contains("rt-2") && !r.text.contains("at-2"),
        "{}",
        r.text
    );
    assert_eq!(*idp.refreshes.lock().expect("lock"), ["rt-1", "rt-2"]);

    // Logout forgets the token.
    let r = h
        .post(
            "/api/v1beta/registry/auth/logout",
            json!({"registry": "default"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(h.berth.registries.tokens.get("default").is_none());
    assert_eq!(info(&h).await["auth_status"], "configured");
    assert_eq!(system_tokens(&h).await, Vec::<String>::new());
    assert_tokens_hidden(&h, &["\"at-2\"", "\"rt-2\""]).await;

    // A denied login ends its flow and leaves the registry configured: the
    // next login starts a new flow with a new code.
    let denied = login(&h).await;
    assert_eq!(denied["user_code"], "USER-2");
    idp.code("dc-2", |c| c.denied = true);
    let next = eventually(
        Duration::from_secs(10),
        "the denied login to end",
        || async {
            let started = login(&h).await;
            (started["user_code"] != "USER-2").then_some(started)
        },
    )
    .await;
    assert_eq!(next["user_code"], "USER-3");
    assert!(idp.codes.lock().expect("lock")["dc-2"].denial_sent);
    assert_eq!(info(&h).await["auth_status"], "configured");
    assert!(h.berth.registries.tokens.get("default").is_none());

    // Logout cancels the pending flow: the next login is a new one.
    assert!(h.berth.registries.oauth.pending("default"));
    let r = h.post("/api/v1beta/registry/auth/logout", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!h.berth.registries.oauth.pending("default"));
    idp.code("dc-3", |c| c.approved = true);
    let fresh = login(&h).await;
    assert_eq!(fresh["user_code"], "USER-4");
    assert!(h.berth.registries.tokens.get("default").is_none());

    // A pasted token still works on an OAuth registry.
    let r = h.post("/api/v1beta/registry/auth/logout", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let current = idp.access.lock().expect("lock").clone();
    let r = h
        .post("/api/v1beta/registry/auth/login", json!({"token": current}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["status"], "authenticated");
    let r = h
        .post("/api/v1beta/registry/default/refresh", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_without_oauth_or_with_a_failing_identity_provider_is_refused() {
    let h = harness().await;
    // The OpenAPI document describes the pending answer.
    let doc = h.get("/api/openapi.json").await.json();
    let answer = &doc["paths"]["/api/v1beta/registry/auth/login"]["post"]["responses"]["202"];
    let schema = answer["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .expect("a schema")
        .rsplit('/')
        .next()
        .expect("a name")
        .to_owned();
    let props = &doc["components"]["schemas"][&schema]["properties"];
    for field in [
        "status",
        "verification_uri",
        "user_code",
        "expires_in",
        "interval",
    ] {
        assert!(props.get(field).is_some(), "{schema}: {props}");
    }
    let r = h.post("/api/v1beta/registry/auth/login", json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(
        r.text.contains("Registry OAuth not configured"),
        "{}",
        r.text
    );
    let r = h
        .post(
            "/api/v1beta/registry/auth/login",
            json!({"registry": "nope"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

    // Configured against a provider whose device endpoint then fails.
    let (idp, api, _) = start().await;
    let issuer = idp.base();
    let r = put_default(
        &h,
        json!({"api_url": api, "allow_private_ip": true,
            "auth": {"issuer": issuer, "client_id": "someone-else"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The device endpoint answers, the token endpoint refuses the client:
    // the flow fails in the background and the status stays configured.
    h.berth.registries.oauth.set_sleep(Arc::new(|_| {
        Box::pin(tokio::time::sleep(Duration::from_millis(10)))
    }));
    let started = login(&h).await;
    assert_eq!(started["user_code"], "USER-1");
    eventually(
        Duration::from_secs(20),
        "the failed flow to end",
        || async { (!h.berth.registries.oauth.pending("default")).then_some(()) },
    )
    .await;
    assert_eq!(info(&h).await["auth_status"], "configured");
}

fn password(p: &str) -> SecretsEnv {
    SecretsEnv {
        password: Some(Zeroizing::new(p.into())),
        ..SecretsEnv::default()
    }
}

fn write_token_file(path: &std::path::Path) {
    let legacy = json!({"default": {"access_token": "legacy-canary-access",
        "refresh_token": "legacy-canary-refresh", "kind": "oauth"}});
    std::fs::write(path, legacy.to_string()).expect("token file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plaintext_token_file_of_an_earlier_berth_moves_into_the_secrets_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let legacy = dir.path().join("registry-tokens.json");
    write_token_file(&legacy);
    let h = harness_secrets(dir, SecretsEnv::default(), |_| {}).await;
    assert!(!legacy.exists(), "deleted once moved");
    let t = h.berth.registries.tokens.get("default").expect("moved");
    assert_eq!(t.access_token, "legacy-canary-access");
    assert_eq!(t.refresh_token.as_deref(), Some("legacy-canary-refresh"));
    assert_eq!(system_tokens(&h).await, ["__berth_registry_default"]);
    assert_tokens_hidden(&h, &["legacy-canary-access", "legacy-canary-refresh"]).await;
    assert_eq!(info(&h).await["auth_status"], "authenticated");

    let r = h.post("/api/v1beta/registry/auth/logout", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(system_tokens(&h).await, Vec::<String>::new());
    assert_eq!(info(&h).await["auth_status"], "none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_stays_while_the_secrets_store_cannot_be_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    {
        let h = harness_secrets(dir, password("the right password"), |_| {}).await;
        // Keep the directory (and its store) for the next berths.
        let _ = h.dir.keep();
    }
    let store = path.join("secrets.berthsec");
    let state = tempfile::TempDir::new_in(&path).expect("dir");
    let legacy = state.path().join("registry-tokens.json");
    write_token_file(&legacy);
    let h = harness_secrets(state, password("a wrong password"), |c| {
        c.secrets.store = Some(store.clone());
    })
    .await;
    assert!(legacy.exists(), "the file stays until its tokens are moved");
    assert!(h.berth.registries.tokens.get("default").is_none());

    // A registry that needs a login says why it cannot have one.
    let (idp, api, _) = start().await;
    let r = put_default(
        &h,
        json!({"api_url": api, "allow_private_ip": true,
            "auth": {"issuer": idp.base(), "client_id": CLIENT_ID}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h
        .post(
            "/api/v1beta/registry/auth/login",
            json!({"registry": "default"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(r.text.contains("wrong password"), "{}", r.text);
    assert!(r.text.contains("registry tokens"), "{}", r.text);
    assert!(idp.device_forms.lock().expect("lock").is_empty(), "no flow");
    let r = h
        .post("/api/v1beta/registry/default/refresh", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.json()["code"], "registry_auth_required");
    assert!(r.text.contains("wrong password"), "{}", r.text);
    let r = h.post("/api/v1beta/registry/auth/logout", json!({})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(r.text.contains("wrong password"), "{}", r.text);
    assert!(legacy.exists());
    let Harness {
        app,
        berth,
        fake,
        workloads,
        dir,
    } = h;
    drop((app, berth, fake, workloads));
    let moved = dir.keep();

    // The next start with the right password moves it.
    let state = tempfile::TempDir::new_in(&path).expect("dir");
    std::fs::rename(
        moved.join("registry-tokens.json"),
        state.path().join("registry-tokens.json"),
    )
    .expect("token file");
    let h = harness_secrets(state, password("the right password"), |c| {
        c.secrets.store = Some(store.clone());
    })
    .await;
    assert!(!h.dir.path().join("registry-tokens.json").exists());
    assert_eq!(
        h.berth
            .registries
            .tokens
            .get("default")
            .expect("moved")
            .access_token,
        "legacy-canary-access"
    );
    // The harnesses' background tasks (the clients pass) may still write
    // into their state for a moment.
    let mut tries = 0;
    while let Err(e) = std::fs::remove_dir_all(&path) {
        tries += 1;
        assert!(tries < 50, "cleanup: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
