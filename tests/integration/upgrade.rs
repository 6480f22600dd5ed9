//! Upgrade checks and upgrades of workloads created from a file registry,
//! on the fake runtime. Fake servers answer no MCP, so an upgrade here
//! always ends rolled back: the successful path is in `tests/e2e/upgrade.rs`.

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use berth_runtime_api::WorkloadName;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api::{Harness, harness_config, harness_on};
use crate::registry::{document, fake, write};
use crate::support::eventually;

const CHECK: &str = "/api/v1beta/workloads/upgrade-check";

/// A harness with registry `team` (a file in its state directory holding
/// `entries`); upgrades wait `ready_secs` for the new server.
async fn with_registry(entries: Value, ready_secs: u64) -> Harness {
    let h = harness_config(|c| c.upgrade_ready_timeout_secs = ready_secs).await;
    write(&team_file(&h), &document(entries));
    let r = h
        .post(
            "/api/v1beta/registry",
            json!({"name": "team", "local_path": team_file(&h)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    h
}

fn team_file(h: &Harness) -> std::path::PathBuf {
    h.dir.path().join("team.json")
}

/// Entry `io.github.team/clock` at `version`, declaring `env` on the
/// package the fake runtime runs.
fn clock(version: &str, env: Value) -> Value {
    let mut e = fake("io.github.team/clock", version);
    e["packages"][1]["environmentVariables"] = env;
    e
}

async fn check(h: &Harness, name: &str) -> Value {
    let r = h
        .get(&format!("/api/v1beta/workloads/{name}/upgrade-check"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["result"].clone()
}

async fn upgrade(h: &Harness, name: &str, body: Value) -> crate::api::Resp {
    h.post(&format!("/api/v1beta/workloads/{name}/upgrade"), body)
        .await
}

async fn export(h: &Harness, name: &str) -> Value {
    let r = h.get(&format!("/api/v1beta/workloads/{name}/export")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

fn intent(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join("upgrades").join(format!("{name}.json"))
}

#[tokio::test]
async fn checks_report_each_status_with_drift() {
    let h = with_registry(json!([clock("1.0.0", json!([]))]), 60).await;
    for group in ["g", "empty"] {
        let r = h.post("/api/v1beta/groups", json!({"name": group})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    for body in [
        json!({"name": "plain", "image": "fake://echo"}),
        json!({"name": "clock", "registry": "team", "server": "clock"}),
        json!({"name": "clock2", "registry": "team", "server": "clock", "group": "g"}),
    ] {
        let r = h.create(body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    for name in ["plain", "clock", "clock2"] {
        h.wait_status(name, "running").await;
    }

    assert_eq!(
        check(&h, "plain").await,
        json!({"workload_name": "plain", "status": "not-registry-sourced"})
    );
    assert_eq!(
        check(&h, "clock").await,
        json!({"workload_name": "clock", "registry_server": "io.github.team/clock",
            "status": "up-to-date", "current_image": "fake://echo", "candidate_image": "fake://echo",
            "registry": "team", "current_version": "1.0.0", "candidate_version": "1.0.0"})
    );

    // The file moves on: new variables (one secret, with a default that
    // must never be shown), another transport and permission profile.
    let mut next = clock(
        "1.1.0",
        json!([
            {"name": "API_KEY", "description": "the key", "isRequired": true, "isSecret": true,
                "default": "hunter2"},
            {"name": "MODE", "default": "fast"}
        ]),
    );
    next["packages"][1]["transport"] =
        json!({"type": "streamable-http", "url": "http://localhost:8080/mcp"});
    next["_meta"] = json!({"io.modelcontextprotocol.registry/publisher-provided": {
        "io.github.stacklok": {"fake://echo": {"permissions": {"name": "none"}}}}});
    write(&team_file(&h), &document(json!([next])));
    let r = h.get("/api/v1beta/workloads/clock/upgrade-check").await;
    assert!(!r.text.contains("hunter2"), "{}", r.text);
    let got = r.json()["result"].clone();
    assert_eq!(got["status"], "upgrade-available", "{got}");
    assert_eq!(got["current_version"], "1.0.0");
    assert_eq!(got["candidate_version"], "1.1.0");
    assert!(
        got["reason"]
            .as_str()
            .expect("reason")
            .contains("names no version"),
        "{got}"
    );
    assert_eq!(
        got["env_var_drift"],
        json!({"added": [
            {"name": "API_KEY", "description": "the key", "required": true, "secret": true},
            {"name": "MODE", "required": false, "default": "fast"}]})
    );
    assert_eq!(
        got["config_drift"],
        json!({"transport": {"from": "stdio", "to": "streamable-http"},
            "permission_profile": {"from": "network", "to": "none"}})
    );

    // Bulk: running workloads by name, or a group's; `[]` when none.
    let r = h.get(CHECK).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let names: Vec<Value> = r.json()["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|c| c["workload_name"].clone())
        .collect();
    assert_eq!(names, [json!("clock"), json!("clock2"), json!("plain")]);
    let r = h.get(&format!("{CHECK}?all=true&group=g")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let results = r.json()["results"].clone();
    assert_eq!(results.as_array().expect("results").len(), 1, "{results}");
    assert_eq!(results[0]["workload_name"], "clock2");
    assert_eq!(results[0]["status"], "upgrade-available");
    let r = h.get(&format!("{CHECK}?group=empty")).await;
    assert_eq!(r.json(), json!({"results": []}));
    assert_eq!(
        h.get(&format!("{CHECK}?group=nope")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get(&format!("{CHECK}?group=Not%20valid")).await.status,
        StatusCode::BAD_REQUEST
    );

    // The entry goes away, then its registry.
    write(
        &team_file(&h),
        &document(json!([fake("io.github.team/other", "1.0.0")])),
    );
    let got = check(&h, "clock").await;
    assert_eq!(got["status"], "server-not-found", "{got}");
    assert!(
        got["reason"]
            .as_str()
            .expect("reason")
            .contains("no entry `io.github.team/clock`"),
        "{got}"
    );
    let r = h
        .call(Method::DELETE, "/api/v1beta/registry/team", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let got = check(&h, "clock").await;
    assert_eq!(got["status"], "server-not-found", "{got}");
    assert!(
        got["reason"]
            .as_str()
            .expect("reason")
            .contains("registry `team` no longer exists"),
        "{got}"
    );

    let r = h.get("/api/v1beta/workloads/ghost/upgrade-check").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = h
        .post("/api/v1beta/workloads/ghost/upgrade", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = h
        .get("/api/v1beta/workloads/Bad%20Name/upgrade-check")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
}

#[tokio::test]
async fn an_upgrade_is_refused_or_rolled_back_and_changes_nothing() {
    let h = with_registry(json!([clock("1.0.0", json!([]))]), 1).await;
    let r = h
        .create(json!({"name": "clock", "registry": "team", "server": "clock"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    h.wait_status("clock", "running").await;
    let before = export(&h, "clock").await;

    // Nothing to do: the check, unchanged.
    let r = upgrade(&h, "clock", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["result"]["status"], "up-to-date");
    // Secrets are not built yet; a body that is not JSON is refused.
    let r = upgrade(&h, "clock", json!({"secrets": ["tok,target=API_KEY"]})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("secrets"), "{}", r.text);
    let r = h
        .raw(
            Method::POST,
            "/api/v1beta/workloads/clock/upgrade",
            Body::from("{nope"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    write(
        &team_file(&h),
        &document(json!([clock(
            "1.1.0",
            json!([{"name": "API_KEY", "isRequired": true, "isSecret": true},
                {"name": "MODE", "default": "fast"}])
        )])),
    );
    // A required variable without a value: 422 naming it, with a body or
    // without one.
    for body in [Body::from("{}"), Body::empty()] {
        let r = h
            .raw(Method::POST, "/api/v1beta/workloads/clock/upgrade", body)
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.text.contains("API_KEY"), "{}", r.text);
    }
    assert_eq!(export(&h, "clock").await, before);
    assert!(!intent(h.dir.path(), "clock").exists());

    // Given the variable, the new version starts but answers no MCP (a fake
    // server echoes): after the deadline the old configuration is back.
    let r = upgrade(&h, "clock", json!({"env": {"API_KEY": "k"}})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(
        r.text
            .contains("did not answer an MCP initialize within 1s"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("previous configuration was restored"),
        "{}",
        r.text
    );
    assert_eq!(export(&h, "clock").await, before, "not API_KEY, not MODE");
    assert!(!intent(h.dir.path(), "clock").exists());
    h.wait_status("clock", "running").await;
    let logs = h.get("/api/v1beta/workloads/clock/proxy-logs").await.text;
    assert!(
        logs.contains("upgrading from version 1.0.0 to 1.1.0"),
        "{logs}"
    );
    assert!(logs.contains("upgrade failed ("), "{logs}");
    assert_eq!(
        check(&h, "clock").await["status"],
        "upgrade-available",
        "still to do"
    );
}

/// Copies directory `from` into `to`, as a `kill -9` would leave it.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            // A file written meanwhile may be gone (a temporary one).
            let _ = std::fs::copy(entry.path(), &target);
        }
    }
}

#[tokio::test]
async fn a_berth_stopped_mid_upgrade_comes_back_with_the_previous_configuration() {
    let h = with_registry(json!([clock("1.0.0", json!([]))]), 30).await;
    let r = h
        .create(json!({"name": "clock", "registry": "team", "server": "clock"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    h.wait_status("clock", "running").await;
    let before = export(&h, "clock").await;
    write(
        &team_file(&h),
        &document(json!([clock(
            "1.1.0",
            json!([{"name": "MODE", "default": "fast"}])
        )])),
    );
    let name = WorkloadName::parse("clock").expect("name");
    let deploys = h.fake.deploy_count(&name);

    // The upgrade waits for an answer that never comes; meanwhile the state
    // directory holds the new configuration and the record of the old one.
    let req = Request::post("/api/v1beta/workloads/clock/upgrade")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .expect("request");
    let pending = tokio::spawn(h.app.clone().oneshot(req));
    let runconfig = h.dir.path().join("runconfigs/clock.json");
    eventually(
        Duration::from_secs(10),
        "the new configuration stored and the upgrade waiting",
        || async {
            let stored = std::fs::read_to_string(&runconfig).ok()?;
            (intent(h.dir.path(), "clock").exists()
                && stored.contains("\"registry_server_version\": \"1.1.0\"")
                && h.fake.deploy_count(&name) > deploys)
                .then_some(())
        },
    )
    .await;
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(h.dir.path(), copy.path());
    assert!(intent(copy.path(), "clock").exists(), "copied mid-upgrade");
    // The first berth's listeners go, as with its process.
    h.berth.proxies.stop_all().await;

    // A berth started on that state (the same runtime, whose instance runs
    // the unconfirmed version) puts the old configuration back and
    // restarts the instance with it instead of adopting it.
    let second = harness_on(copy, std::slice::from_ref(&h.fake)).await;
    assert_eq!(export(&second, "clock").await, before);
    assert!(!intent(second.dir.path(), "clock").exists());
    eventually(
        Duration::from_secs(5),
        "the instance restarted with the previous configuration",
        || async {
            let spec = h.fake.spec_of(&name)?;
            (h.fake.deploy_count(&name) > deploys + 1 && !spec.env.contains_key("MODE"))
                .then_some(())
        },
    )
    .await;
    second.wait_status("clock", "running").await;
    let logs = second
        .get("/api/v1beta/workloads/clock/proxy-logs")
        .await
        .text;
    assert!(logs.contains("an upgrade was interrupted"), "{logs}");
    pending.abort();
}

#[tokio::test]
async fn a_remote_workload_compares_its_url() {
    let far = |version: &str, url: &str| {
        json!({"name": "io.github.team/far", "description": "remote", "version": version,
            "remotes": [{"type": "streamable-http", "url": url}]})
    };
    let h = with_registry(json!([far("1.0.0", "https://far.example/mcp")]), 60).await;
    let r = h
        .create(json!({"name": "far", "registry": "team", "server": "far"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let got = check(&h, "far").await;
    assert_eq!(got["status"], "up-to-date", "{got}");
    assert_eq!(got["current_url"], "https://far.example/mcp");
    assert_eq!(got["candidate_url"], "https://far.example/mcp");
    assert!(got.get("current_image").is_none(), "{got}");

    write(
        &team_file(&h),
        &document(json!([far("1.1.0", "https://user:pw@far2.example/mcp")])),
    );
    let got = check(&h, "far").await;
    assert_eq!(got["status"], "upgrade-available", "{got}");
    assert_eq!(got["candidate_version"], "1.1.0");
    let url = got["candidate_url"].as_str().expect("url");
    assert!(
        url.starts_with("https://") && url.ends_with("far2.example/mcp"),
        "{url}"
    );
    assert!(!url.contains("pw"), "credentials redacted: {url}");
}
