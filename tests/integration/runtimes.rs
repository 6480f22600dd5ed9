//! Several runtimes in one berth: each workload runs on the one it names
//! (else the default), an edit can move it, and a runtime that does not
//! answer holds up only its own workloads.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use berth_runtime_api::fake::FakeBackend;
use berth_runtime_api::{Backend, WorkloadName};
use serde_json::json;

use crate::api::{Harness, harness_on};

fn name(n: &str) -> WorkloadName {
    WorkloadName::parse(n).expect("name")
}

async fn two() -> (Harness, Arc<FakeBackend>, Arc<FakeBackend>) {
    let alpha = Arc::new(FakeBackend::named("alpha"));
    let beta = Arc::new(FakeBackend::named("beta"));
    let dir = tempfile::tempdir().expect("tempdir");
    let h = harness_on(dir, &[alpha.clone(), beta.clone()]).await;
    (h, alpha, beta)
}

async fn runs_on(fake: &FakeBackend, n: &str) -> bool {
    fake.inspect(&name(n))
        .await
        .is_ok_and(|i| i.state.is_running())
}

#[tokio::test]
async fn each_workload_runs_on_its_runtime() {
    let (h, alpha, beta) = two().await;
    let r = h.create(json!({"name": "a", "image": "fake://echo"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .create(json!({"name": "b", "image": "fake://echo", "runtime": "beta"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    h.wait_status("a", "running").await;
    h.wait_status("b", "running").await;
    assert!(runs_on(&alpha, "a").await && !runs_on(&beta, "a").await);
    assert!(runs_on(&beta, "b").await && !runs_on(&alpha, "b").await);
    let listed = h.listed("?all=true").await;
    let of = |n: &str| {
        listed
            .iter()
            .find(|w| w["name"] == n)
            .map(|w| w["runtime"].clone())
    };
    assert_eq!(of("a"), Some(json!("alpha")));
    assert_eq!(of("b"), Some(json!("beta")));
    // The configuration says where it runs, so an edit that echoes it
    // keeps it there.
    let got = h.get("/api/v1beta/workloads/b").await.json();
    assert_eq!(got["runtime"], "beta");
    assert_eq!(
        h.get("/api/v1beta/workloads/b/export").await.json()["runtime"],
        "beta"
    );
}

#[tokio::test]
async fn an_unknown_runtime_is_refused_naming_the_known_ones() {
    let (h, alpha, beta) = two().await;
    let r = h
        .create(json!({"name": "c", "image": "fake://echo", "runtime": "kubernetes"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(
        r.text.contains("kubernetes") && r.text.contains("alpha, beta"),
        "{}",
        r.text
    );
    let r = h
        .create(json!({"name": "c", "image": "fake://echo", "runtime": "beta\nx"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = h
        .create(json!({"name": "c", "url": "https://example.com/mcp", "runtime": "beta"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("remote"), "{}", r.text);
    assert!(h.listed("?all=true").await.is_empty());
    assert!(alpha.list().await.expect("list").is_empty());
    assert!(beta.list().await.expect("list").is_empty());
}

#[tokio::test]
async fn an_edit_moves_a_workload_and_leaves_nothing_behind() {
    let (h, alpha, beta) = two().await;
    h.create(json!({"name": "m", "image": "fake://echo"})).await;
    h.wait_status("m", "running").await;
    assert!(runs_on(&alpha, "m").await);
    let r = h
        .post(
            "/api/v1beta/workloads/m/edit",
            json!({"image": "fake://echo", "runtime": "beta"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    crate::support::eventually(
        std::time::Duration::from_secs(5),
        "m to run on beta only",
        || async {
            (runs_on(&beta, "m").await && alpha.inspect(&name("m")).await.is_err()).then_some(())
        },
    )
    .await;
    h.wait_status("m", "running").await;
}

#[tokio::test]
async fn a_runtime_that_does_not_answer_holds_up_only_its_own() {
    let (h, alpha, beta) = two().await;
    h.create(json!({"name": "a", "image": "fake://echo"})).await;
    h.create(json!({"name": "b", "image": "fake://echo", "runtime": "beta"}))
        .await;
    h.wait_status("a", "running").await;
    h.wait_status("b", "running").await;
    beta.set_reachable(false);
    let runtimes = h.get("/api/v1beta/x/berth/runtimes").await;
    assert_eq!(runtimes.status, StatusCode::OK);
    let list = runtimes.json()["runtimes"].clone();
    assert_eq!(list[0]["name"], "alpha");
    assert_eq!(list[0]["default"], true);
    assert_eq!(list[0]["healthy"], true);
    assert_eq!(list[1]["name"], "beta");
    assert_eq!(list[1]["healthy"], false);
    assert!(list[1]["error"].as_str().is_some_and(|e| !e.is_empty()));
    let version = h.get("/api/v1beta/version").await.json();
    assert_eq!(version["runtime"], "alpha");
    assert_eq!(version["runtimes"], list);
    // The default runtime answers: berth is healthy.
    assert_eq!(h.get("/health").await.status, StatusCode::NO_CONTENT);
    // b cannot start again while its runtime is away; a is not touched.
    let r = h
        .call(Method::POST, "/api/v1beta/workloads/b/restart", None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    crate::support::eventually(
        std::time::Duration::from_secs(5),
        "b to wait for its runtime",
        || async {
            let listed = h.listed("?all=true").await;
            listed
                .iter()
                .any(|w| {
                    w["name"] == "b"
                        && w["status"] == "starting"
                        && w["status_context"]
                            .as_str()
                            .is_some_and(|c| c.contains("unavailable"))
                })
                .then_some(())
        },
    )
    .await;
    assert_eq!(h.status_of("a").await.as_deref(), Some("running"));
    assert!(runs_on(&alpha, "a").await);
    assert_eq!(alpha.deploy_count(&name("a")), 1);
    // Back: b runs again.
    beta.set_reachable(true);
    h.wait_status("b", "running").await;
    assert!(runs_on(&beta, "b").await);
    alpha.set_reachable(false);
    assert_eq!(
        h.get("/health").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn a_stored_workload_whose_runtime_is_gone_is_an_error_and_the_others_run() {
    let alpha = Arc::new(FakeBackend::named("alpha"));
    let beta = Arc::new(FakeBackend::named("beta"));
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = {
        let h = harness_on(dir, &[alpha.clone(), beta.clone()]).await;
        h.create(json!({"name": "a", "image": "fake://echo"})).await;
        h.create(json!({"name": "b", "image": "fake://echo", "runtime": "beta"}))
            .await;
        h.wait_status("a", "running").await;
        h.wait_status("b", "running").await;
        h.berth.shutdown(std::time::Duration::from_secs(5)).await;
        h.dir
    };
    // The next berth has no beta.
    let h = harness_on(dir, std::slice::from_ref(&alpha)).await;
    h.wait_status("a", "running").await;
    h.wait_status("b", "error").await;
    let b = h.get("/api/v1beta/workloads/b/status").await.json();
    let listed = h.listed("?all=true").await;
    let ctx = listed
        .iter()
        .find(|w| w["name"] == "b")
        .map(|w| w["status_context"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    assert!(
        ctx.contains("beta"),
        "reason names the runtime: {ctx} / {b}"
    );
    // It can be moved to a runtime berth has.
    let r = h
        .post(
            "/api/v1beta/workloads/b/edit",
            json!({"image": "fake://echo", "runtime": "alpha"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    h.wait_status("b", "running").await;
    assert!(runs_on(&alpha, "b").await);
}
