//! berth on real container engines, through its REST API: stdio and
//! streamable-HTTP workloads from the local test image, lifecycle, loopback-
//! only ports, re-attach after `kill -9` of berth, and wasm middleware on an
//! HTTP container workload. Features
//! `docker-tests` / `podman-tests`; they fail, never skip, when the engine or
//! the image (`tests/fixtures/build-test-image.sh <engine>`) is missing.

use std::process::Command;

use serde_json::{Value, json};

use crate::plugins::{check_guarded, guard_config, guard_middleware};
use crate::serve::{Berth, T, free_port};
use crate::support::eventually;
use crate::support::mcp::Session;

/// A workload name of this test process: runs of the suite on one engine
/// (another checkout, CI) never share a container name.
fn n(base: &str) -> String {
    format!("{base}-{}", std::process::id())
}

pub(crate) const IMAGE: &str = "localhost/berth-test/echo:latest";

pub(crate) fn cli(engine: &str, args: &[&str]) -> String {
    let out = Command::new(engine)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("`{engine}` CLI: {e}"));
    assert!(
        out.status.success(),
        "{engine} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn started_at(engine: &str, container: &str) -> String {
    cli(
        engine,
        &["inspect", "-f", "{{.State.StartedAt}}", container],
    )
}

/// Calls the `echo` tool through the proxy at `url` with a fresh session.
async fn echo_through(url: &str, text: &str) -> Result<String, String> {
    match call_tool(url, "echo", json!({"message": text})).await? {
        (false, text) => Ok(text),
        (true, text) => Err(format!("tool error: {text}")),
    }
}

/// Calls tool `name` with `arguments` through the proxy at `url` with a
/// fresh session: whether the result is an error, and its first text.
pub(crate) async fn call_tool(
    url: &str,
    name: &str,
    arguments: Value,
) -> Result<(bool, String), String> {
    Session::open(url)
        .await?
        .tool_text(1, name, arguments)
        .await
}

pub(crate) async fn url_of(b: &Berth, name: &str) -> String {
    let (_, list) = b
        .req(reqwest::Method::GET, "/workloads?all=true", None)
        .await;
    let list: Value = serde_json::from_str(&list).expect("json");
    list["workloads"]
        .as_array()
        .expect("array")
        .iter()
        .find(|w| w["name"] == name)
        .map(|w| w["url"].as_str().expect("url").to_owned())
        .expect("listed")
}

async fn scenario(engine: &'static str) {
    cli(engine, &["image", "inspect", IMAGE]);
    let root = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = format!("runtime = \"{engine}\"\n");
    let mut b = Berth::start_with(root.path(), port, &config).await;
    let resp = reqwest::get(format!("{}/api/v1beta/version", b.base))
        .await
        .expect("version");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["runtime"], engine, "the active runtime is reported");

    // A stdio workload: the proxy talks to the container's attached stdio.
    let (code, body) = b
        .post("/workloads", json!({"name": n("ct"), "image": IMAGE}))
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status(&n("ct"), "running").await;
    let url = url_of(&b, &n("ct")).await;
    assert_eq!(
        echo_through(&url, "in a box").await.as_deref(),
        Ok("echo: in a box")
    );

    // A streamable-HTTP workload: the target port is published on loopback only.
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": n("ch"), "image": IMAGE, "transport": "streamable-http", "target_port": 8080,
                "cmd_arguments": ["--http", "0.0.0.0:8080"]}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status(&n("ch"), "running").await;
    let http_url = url_of(&b, &n("ch")).await;
    let answer = eventually(T, "the HTTP workload to answer", || async {
        echo_through(&http_url, "over http").await.ok()
    })
    .await;
    assert_eq!(answer, "echo: over http");
    let bindings = cli(
        engine,
        &[
            "inspect",
            "-f",
            "{{json .HostConfig.PortBindings}}",
            &format!("berth-{}", n("ch")),
        ],
    );
    let bindings: Value = serde_json::from_str(&bindings).expect("json");
    for (_, list) in bindings.as_object().expect("bindings") {
        for b in list.as_array().expect("list") {
            assert_eq!(
                b["HostIp"], "127.0.0.1",
                "published on loopback only: {bindings}"
            );
        }
    }

    // Stop, restart, logs, export.
    assert_eq!(
        b.post(&format!("/workloads/{}/stop", n("ct")), json!({}))
            .await
            .0,
        202
    );
    b.wait_status(&n("ct"), "stopped").await;
    assert_eq!(
        b.post(&format!("/workloads/{}/restart", n("ct")), json!({}))
            .await
            .0,
        202
    );
    b.wait_status(&n("ct"), "running").await;
    let url = url_of(&b, &n("ct")).await;
    assert_eq!(
        echo_through(&url, "again").await.as_deref(),
        Ok("echo: again")
    );
    assert_eq!(
        b.req(
            reqwest::Method::GET,
            &format!("/workloads/{}/logs", n("ct")),
            None
        )
        .await
        .0,
        200
    );
    let (code, export) = b
        .req(
            reqwest::Method::GET,
            &format!("/workloads/{}/export", n("ct")),
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert!(export.contains(IMAGE));

    // kill -9 berth: the containers keep running; the new berth re-attaches
    // to both (stdio on Docker through the engine's attach, on Podman
    // through berth's relay in the container) and the same URLs answer.
    let before = started_at(engine, &format!("berth-{}", n("ch")));
    let before_stdio = started_at(engine, &format!("berth-{}", n("ct")));
    b.signal("-KILL");
    let _ = b.child.wait();
    drop(b);
    let b = Berth::start_with(root.path(), port, &config).await;
    b.wait_status(&n("ch"), "running").await;
    b.wait_status(&n("ct"), "running").await;
    assert_eq!(
        started_at(engine, &format!("berth-{}", n("ch"))),
        before,
        "the container was not restarted"
    );
    assert_eq!(
        started_at(engine, &format!("berth-{}", n("ct"))),
        before_stdio,
        "the stdio container was not restarted"
    );
    let answer = eventually(T, "the HTTP workload after the restart", || async {
        echo_through(&http_url, "after restart").await.ok()
    })
    .await;
    assert_eq!(answer, "echo: after restart");
    let answer = eventually(T, "the stdio workload after the restart", || async {
        echo_through(&url, "stdio after restart").await.ok()
    })
    .await;
    assert_eq!(answer, "echo: stdio after restart");

    // Delete leaves no container behind.
    for name in [&n("ct"), &n("ch")] {
        let (code, _) = b
            .req(reqwest::Method::DELETE, &format!("/workloads/{name}"), None)
            .await;
        assert_eq!(code, 202);
    }
    eventually(T, "the containers to be gone", || async {
        let left = cli(
            engine,
            &[
                "ps",
                "-a",
                "--filter",
                "label=berth.managed=true",
                "--format",
                "{{.Names}}",
            ],
        );
        let ours = [format!("berth-{}", n("ct")), format!("berth-{}", n("ch"))];
        (!left.lines().any(|name| ours.iter().any(|o| o == name))).then_some(())
    })
    .await;
}

#[cfg(feature = "docker-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_workloads_through_the_api() {
    scenario("docker").await;
}

#[cfg(feature = "podman-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_workloads_through_the_api() {
    scenario("podman").await;
}

/// Two berths with their own state directories on one engine: neither
/// lists, adopts, replaces, stops or removes the other's containers.
async fn two_berths_keep_to_their_own(engine: &'static str) {
    cli(engine, &["image", "inspect", IMAGE]);
    let config = format!("runtime = \"{engine}\"\n");
    let (root_a, root_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (port_a, port_b) = (free_port(), free_port());
    // Names of this run only: a leftover of an earlier, failed run belongs
    // to a berth that is gone, and no berth may replace it.
    let run = std::process::id();
    let (a_name, b_name) = (format!("own-a-{run}"), format!("own-b-{run}"));
    let (a_container, b_container) = (format!("berth-{a_name}"), format!("berth-{b_name}"));

    let mut a = Berth::start_with(root_a.path(), port_a, &config).await;
    let (code, body) = a
        .post("/workloads", json!({"name": a_name, "image": IMAGE}))
        .await;
    assert_eq!(code, 201, "{body}");
    a.wait_status(&a_name, "running").await;
    let a_started = started_at(engine, &a_container);

    // B starts on the same engine: A's container is not an orphan to it.
    let b = Berth::start_with(root_b.path(), port_b, &config).await;
    let (_, list) = b
        .req(reqwest::Method::GET, "/workloads?all=true", None)
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&list).expect("json")["workloads"],
        json!([]),
        "B sees none of A's containers"
    );
    // B cannot take A's container name, and deleting its own failed
    // workload of that name leaves A's container alone.
    let (code, body) = b
        .post("/workloads", json!({"name": a_name, "image": IMAGE}))
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status(&a_name, "error").await;
    let (_, status) = b
        .req(reqwest::Method::GET, "/workloads?all=true", None)
        .await;
    assert!(status.contains("another berth"), "{status}");
    let (code, _) = b
        .req(
            reqwest::Method::DELETE,
            &format!("/workloads/{a_name}"),
            None,
        )
        .await;
    assert_eq!(code, 202);
    eventually(T, "B's failed workload to be deleted", || async {
        let (code, _) = b
            .req(reqwest::Method::GET, &format!("/workloads/{a_name}"), None)
            .await;
        (code == 404).then_some(())
    })
    .await;
    assert_eq!(
        started_at(engine, &a_container),
        a_started,
        "A's container untouched"
    );
    let url = url_of(&a, &a_name).await;
    assert_eq!(
        echo_through(&url, "still mine").await.as_deref(),
        Ok("echo: still mine")
    );

    // B's own workload survives A's restart (A's start-up clean-up).
    let (code, body) = b
        .post("/workloads", json!({"name": b_name, "image": IMAGE}))
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status(&b_name, "running").await;
    let b_started = started_at(engine, &b_container);
    a.signal("-KILL");
    let _ = a.child.wait();
    drop(a);
    let a = Berth::start_with(root_a.path(), port_a, &config).await;
    a.wait_status(&a_name, "running").await;
    assert_eq!(started_at(engine, &a_container), a_started, "A re-attached");
    assert_eq!(
        started_at(engine, &b_container),
        b_started,
        "B's container untouched"
    );
    let (_, list) = a
        .req(reqwest::Method::GET, "/workloads?all=true", None)
        .await;
    assert!(
        !list.contains(&b_name),
        "A does not list B's workload: {list}"
    );

    for (berth, name) in [(&a, &a_name), (&b, &b_name)] {
        let (code, _) = berth
            .req(reqwest::Method::DELETE, &format!("/workloads/{name}"), None)
            .await;
        assert_eq!(code, 202);
    }
    eventually(T, "both containers to be removed", || async {
        let out = Command::new(engine)
            .args(["ps", "-a", "--format", "{{.Names}}"])
            .output()
            .ok()?;
        let names = String::from_utf8_lossy(&out.stdout).into_owned();
        (!names.contains(&a_container) && !names.contains(&b_container)).then_some(())
    })
    .await;
}

#[cfg(feature = "docker-tests")]
#[tokio::test]
async fn docker_two_berths_keep_to_their_own() {
    two_berths_keep_to_their_own("docker").await;
}

#[cfg(feature = "podman-tests")]
#[tokio::test]
async fn podman_two_berths_keep_to_their_own() {
    two_berths_keep_to_their_own("podman").await;
}

/// The tool guard (a wasm middleware) on a streamable-HTTP container
/// workload from the test image, through a real MCP client (rmcp).
async fn tool_guard_on_a_container(engine: &str) {
    cli(engine, &["image", "inspect", IMAGE]);
    let root = tempfile::tempdir().expect("tempdir");
    let config = guard_config(&format!("runtime = \"{engine}\"\n"));
    let b = Berth::start_with(root.path(), free_port(), &config).await;
    let name = "guard-ct";
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": name, "image": IMAGE, "transport": "streamable-http",
                "target_port": 8080, "cmd_arguments": ["--http", "0.0.0.0:8080"],
                "middleware_configs": guard_middleware()}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status(name, "running").await;
    check_guarded(&url_of(&b, name).await).await;
    let (code, _) = b
        .req(reqwest::Method::DELETE, &format!("/workloads/{name}"), None)
        .await;
    assert_eq!(code, 202);
    eventually(T, "the container to be gone", || async {
        let left = cli(engine, &["ps", "-a", "--format", "{{.Names}}"]);
        (!left.lines().any(|n| n == format!("berth-{name}"))).then_some(())
    })
    .await;
}

#[cfg(feature = "docker-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_http_workload_with_the_tool_guard() {
    tool_guard_on_a_container("docker").await;
}

#[cfg(feature = "podman-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_http_workload_with_the_tool_guard() {
    tool_guard_on_a_container("podman").await;
}
