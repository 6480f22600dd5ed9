//! The runtime conformance suite, the container engines' suite and the
//! Podman-specific checks, against a real Podman (feature `podman-tests`).
//!
//! Needs Podman's API socket (`/run/podman/podman.sock`, or the one named by
//! `BERTH_TEST_PODMAN_SOCKET`) and the image built by
//! `tests/fixtures/build-test-image.sh podman`. Without them the tests fail
//! and say how to provide them; they never skip.

// Tests take the engine's socket from the environment, as CI sets it.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use berth_backend_podman::{PodmanBackend, PodmanConfig};
use berth_runtime_api::conformance::containers::{self, ContainerFixture};
use berth_runtime_api::conformance::{self, Fixture, SECRET_MARKER, run_all};
use berth_runtime_api::{
    Backend, RuntimeError, RuntimeState, StdioHandle, Transport, WorkloadInfo, WorkloadName,
    WorkloadSpec,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const IMAGE: &str = "localhost/berth-test/echo:latest";
const TIMEOUT: Duration = Duration::from_secs(30);
const START_PODMAN: &str = "start it as root with: apt-get install -y podman runc; \
    printf '[containers]\\ndefault_ulimits = []\\n\\n[engine]\\ncgroup_manager = \"cgroupfs\"\\nruntime = \"runc\"\\n' \
    > /etc/containers/containers.conf; mkdir -p /run/podman; \
    podman system service --time=0 unix:///run/podman/podman.sock &";

fn socket() -> String {
    std::env::var("BERTH_TEST_PODMAN_SOCKET")
        .unwrap_or_else(|_| "unix:///run/podman/podman.sock".to_owned())
}

fn config() -> PodmanConfig {
    PodmanConfig {
        socket: Some(socket()),
        // Shared by every test and backend here, as berth's state directory
        // is shared by one berth and the next.
        stdio_dir: Some(std::env::temp_dir().join("berth-podman-conformance")),
        ..PodmanConfig::default()
    }
}

/// The error and its sources, joined.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A connected backend; fails the test, saying what to do, when Podman or
/// the test image is missing.
async fn backend() -> PodmanBackend {
    let backend = match PodmanBackend::connect(config()).await {
        Ok(b) => b,
        Err(err) => panic!("Podman is unreachable ({}); {START_PODMAN}", chain(&err)),
    };
    let podman = podman_api::Podman::new(socket()).expect("podman client");
    let present = podman
        .images()
        .get(IMAGE)
        .exists()
        .await
        .expect("image lookup");
    assert!(
        present,
        "the test image {IMAGE} is missing; build it with: tests/fixtures/build-test-image.sh podman"
    );
    backend
}

/// The raw inspect of workload `name`'s container, through podman-api.
async fn raw_inspect(name: &str) -> podman_api::models::ContainerInspectResponseLibpod {
    let podman = podman_api::Podman::new(socket()).expect("podman client");
    podman
        .containers()
        .get(format!("berth-{name}"))
        .inspect()
        .await
        .expect("inspect through podman-api")
}

/// A workload name of this test process: runs of the suite on one engine
/// (another checkout, CI) never share a container name.
fn name(s: &str) -> WorkloadName {
    WorkloadName::parse(&format!("{s}-{}", std::process::id())).expect("valid test name")
}

async fn eventually_running(b: &PodmanBackend, name: &WorkloadName) -> WorkloadInfo {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let info = b.inspect(name).await.expect("inspect");
        match info.state {
            RuntimeState::Running => return info,
            RuntimeState::Starting if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("{name} did not come up: {other:?}"),
        }
    }
}

/// Sends a ping with `id` on `io` and expects its answer.
async fn ping(io: StdioHandle, id: u32) -> StdioHandle {
    let StdioHandle { mut stdin, stdout } = io;
    let line = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}\n");
    stdin.write_all(line.as_bytes()).await.expect("write");
    stdin.flush().await.expect("flush");
    let mut lines = BufReader::new(stdout);
    let mut answer = String::new();
    tokio::time::timeout(TIMEOUT, lines.read_line(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read stdout");
    assert!(
        answer.contains(&format!("\"id\":{id}")),
        "answer to ping {id}: {answer:?}"
    );
    StdioHandle::new(stdin, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_backend_conforms() {
    let backend = backend().await;
    let fx = Fixture {
        prefix: format!("pdm{}", std::process::id()),
        stdio: (IMAGE.into(), vec![]),
        exits_with_3: (IMAGE.into(), vec!["--exit-code".into(), "3".into()]),
        mcp_echo: Some((IMAGE.into(), vec![])),
        timeout: TIMEOUT,
    };
    run_all(&backend, &fx).await;
}

fn container_fixture(prefix: &str) -> ContainerFixture {
    ContainerFixture {
        prefix: format!("{prefix}{}", std::process::id()),
        image: IMAGE.into(),
        timeout: TIMEOUT,
    }
}

/// The container engines' suite: published ports, logs, refused specs,
/// absent images, re-attach after a restart of berth, containers that
/// outlive the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_backend_conforms_as_a_container_engine() {
    containers::run_all(backend, &container_fixture("pdm")).await;
}

/// Podman's own record of an HTTP workload's container: every port binding
/// is on 127.0.0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_transport_is_published_on_loopback_only() {
    let b = backend().await;
    let name = name("pdm-http-engine");
    let _ = b.remove(&name).await;
    let mut spec = WorkloadSpec::new(name.clone(), IMAGE);
    spec.transport = Transport::StreamableHttp;
    spec.target_port = Some(8080);
    spec.args = vec!["--http".into(), "0.0.0.0:8080".into()];

    let deployed = b.deploy(spec).await.expect("deploy");
    let endpoint = deployed
        .http_endpoint
        .expect("an HTTP endpoint from deploy");
    assert!(endpoint.ip().is_loopback(), "{endpoint}");
    eventually_running(&b, &name).await;

    let raw = raw_inspect(name.as_str()).await;
    let bindings = raw
        .host_config
        .and_then(|h| h.port_bindings)
        .expect("port bindings");
    let ips: Vec<_> = bindings
        .values()
        .flatten()
        .flatten()
        .map(|b| b.host_ip.clone().unwrap_or_default())
        .collect();
    assert!(!ips.is_empty(), "{bindings:?}");
    assert!(
        ips.iter().all(|ip| ip == "127.0.0.1"),
        "published beyond loopback: {bindings:?}"
    );

    b.remove(&name).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_confined() {
    let b = backend().await;
    let name = name("pdm-confined");
    let _ = b.remove(&name).await;
    b.deploy(WorkloadSpec::new(name.clone(), IMAGE))
        .await
        .expect("deploy");
    eventually_running(&b, &name).await;

    let raw = raw_inspect(name.as_str()).await;
    let host = raw.host_config.clone().expect("host config");
    let security = host.security_opt.clone().unwrap_or_default();
    assert!(
        security.iter().any(|o| o == "no-new-privileges"),
        "security options: {security:?}"
    );
    assert_eq!(
        raw.effective_caps.clone().unwrap_or_default(),
        Vec::<String>::new(),
        "no capability is left"
    );
    assert_eq!(host.init, Some(true), "an init process runs");
    assert_eq!(host.memory, Some(1 << 30), "memory limit");
    assert_eq!(host.cpu_quota, Some(100_000), "CPU limit");

    // What the kernel says of the container's first process.
    let pid = raw.state.and_then(|s| s.pid).expect("a pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the container's process runs on this host");
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("CapBnd:"), "0000000000000000");

    b.remove(&name).await.expect("remove");
}

/// An image Podman does not have and cannot pull is a backend error on
/// Podman (the container suite checks the message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_image_is_a_clear_error() {
    let b = backend().await;
    let err = containers::an_absent_image_is_named(&b, &container_fixture("pdm-kind")).await;
    assert!(
        matches!(err, RuntimeError::Backend { .. }),
        "{}",
        chain(&err)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_backend_attaches_to_a_running_stdio_server() {
    // berth dies (kill -9) while a client is attached, in the middle of
    // writing a message: the next berth attaches to the same server, which
    // never read end-of-file nor the torn message.
    let b = backend().await;
    let name = name("pdm-adopt");
    let _ = b.remove(&name).await;
    b.deploy(WorkloadSpec::new(name.clone(), IMAGE))
        .await
        .expect("deploy");
    let started = eventually_running(&b, &name).await.started_at;
    let StdioHandle { mut stdin, stdout } = ping(b.attach(&name).await.expect("attach"), 1).await;
    stdin
        .write_all(br#"{"jsonrpc":"2.0","id":99,"meth"#)
        .await
        .expect("write half a message");
    stdin.flush().await.expect("flush");
    drop((stdin, stdout));
    drop(b);

    let b = backend().await;
    let info = b.inspect(&name).await.expect("inspect after reconnect");
    assert!(info.state.is_running(), "{:?}", info.state);
    let io = ping(b.attach(&name).await.expect("attach after reconnect"), 2).await;
    drop(io);
    let io = ping(b.attach(&name).await.expect("attach again"), 3).await;
    let after = b.inspect(&name).await.expect("inspect");
    assert!(after.state.is_running(), "{:?}", after.state);
    assert_eq!(after.started_at, started, "the container was not restarted");
    drop(io);

    b.remove(&name).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_container_has_no_stdio_to_attach() {
    let b = backend().await;
    let name = name("pdm-http-attach");
    let _ = b.remove(&name).await;
    let mut spec = WorkloadSpec::new(name.clone(), IMAGE);
    spec.transport = Transport::StreamableHttp;
    spec.target_port = Some(8080);
    spec.args = vec!["--http".into(), "0.0.0.0:8080".into()];
    b.deploy(spec).await.expect("deploy");
    eventually_running(&b, &name).await;
    let err = b.attach(&name).await.expect_err("no stdio relay");
    assert!(chain(&err).contains("stdio relay"), "{}", chain(&err));
    b.remove(&name).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_containers_are_left_alone() {
    let b = backend().await;
    let name = name("pdm-foreign");
    let podman = podman_api::Podman::new(socket()).expect("podman client");
    let container = format!("berth-{name}");
    let _ = podman.containers().get(&container).remove().await;
    let opts = podman_api::opts::ContainerCreateOpts::builder()
        .name(&container)
        .image(IMAGE)
        .build();
    podman
        .containers()
        .create(&opts)
        .await
        .expect("create a foreign container");

    assert!(matches!(
        b.inspect(&name).await,
        Err(RuntimeError::NotFound(_))
    ));
    assert!(matches!(
        b.remove(&name).await,
        Err(RuntimeError::NotFound(_))
    ));
    assert!(!b.list().await.expect("list").iter().any(|i| i.name == name));
    assert!(matches!(
        b.deploy(WorkloadSpec::new(name.clone(), IMAGE)).await,
        Err(RuntimeError::AlreadyExists(_))
    ));
    let foreign = podman.containers().get(format!("berth-{name}").as_str());
    assert!(foreign.exists().await.expect("exists"), "still there");
    foreign.remove().await.expect("clean up");
}

/// A socket nobody listens on fails `connect` at once, and one that never
/// answers within a few seconds; the error names the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_fast_naming_the_socket() {
    containers::connect_fails_fast_naming_the_socket("podman", async |socket| {
        PodmanBackend::connect(PodmanConfig {
            socket: Some(socket),
            ..PodmanConfig::default()
        })
        .await
    })
    .await;
}

/// `method` `path` on the Podman API (`/v4.3.1` + path), raw: the status
/// and the body as Podman sent them. `body` goes as it is
/// (`application/octet-stream`).
async fn raw_request(method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let socket = socket();
    let request = format!(
        "{method} /v4.3.1{path} HTTP/1.0\r\nHost: podman\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut answer = Vec::new();
    if let Some(addr) = socket.strip_prefix("tcp://") {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        stream.write_all(body).await.expect("write");
        stream.read_to_end(&mut answer).await.expect("read");
    } else {
        let path = socket.strip_prefix("unix://").unwrap_or(&socket);
        let mut stream = tokio::net::UnixStream::connect(path)
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        stream.write_all(body).await.expect("write");
        stream.read_to_end(&mut answer).await.expect("read");
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, body.to_owned())
}

/// The Podman secrets labelled as workload `name`'s: (id, name), by name.
/// (Podman 4.3 lists secrets without their labels: each is inspected.)
async fn secrets_of(name: &WorkloadName) -> Vec<(String, String)> {
    let (status, body) = raw_request("GET", "/libpod/secrets/json", b"").await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&body).expect("a list");
    let mut found = Vec::new();
    for s in &listed {
        let id = s["ID"].as_str().unwrap_or_default();
        let (status, body) = raw_request("GET", &format!("/libpod/secrets/{id}/json"), b"").await;
        if status == 404 {
            continue;
        }
        let inspected: serde_json::Value = serde_json::from_str(&body).expect("json");
        if inspected["Spec"]["Labels"]["berth.workload"] == name.as_str() {
            let secret = inspected["Spec"]["Name"].as_str().unwrap_or_default();
            found.push((id.to_owned(), secret.to_owned()));
        }
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    found
}

/// The workload's secret values are Podman secrets mounted into the
/// container: Podman's inspect of the container (`GET
/// /libpod/containers/{name}/json`, what `podman inspect` shows; and the
/// Docker-compatible one), its labels and command included, holds no value,
/// for a stdio and an HTTP server, running and stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_stay_out_of_podman_inspect() {
    let b = backend().await;
    for (suffix, http) in [("pdm-secret-stdio", false), ("pdm-secret-http", true)] {
        let name = name(suffix);
        let _ = b.remove(&name).await;
        let mut spec = WorkloadSpec::new(name.clone(), IMAGE);
        if http {
            spec.transport = Transport::StreamableHttp;
            spec.target_port = Some(8080);
            spec.args = vec!["--http".into(), "0.0.0.0:8080".into()];
        }
        b.deploy(conformance::with_secret_env(spec))
            .await
            .expect("deploy");
        eventually_running(&b, &name).await;
        for state in ["running", "stopped"] {
            for path in [
                format!("/libpod/containers/berth-{name}/json"),
                format!("/containers/berth-{name}/json"),
            ] {
                let (status, raw) = raw_request("GET", &path, b"").await;
                assert_eq!(status, 200, "{path}: {raw}");
                assert!(
                    raw.contains("BERTH_CONF_SECRET"),
                    "{path}: the variable is named (for the relay): {raw}"
                );
                assert!(
                    !raw.contains(SECRET_MARKER),
                    "{suffix}, {state}: {path} shows a secret value: {raw}"
                );
            }
            b.stop(&name).await.expect("stop");
        }
        b.remove(&name).await.expect("remove");
    }
}

/// One Podman secret per non-empty secret value, named for the workload
/// and the variable and labelled with them; a deploy replaces them (and
/// drops those of variables the spec no longer has), a failed deploy and
/// `remove` delete them, also a set left behind by a crashed berth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_secrets_are_replaced_and_removed_with_the_workload() {
    use berth_runtime_api::SecretValue;
    let b = backend().await;
    let name = name("pdm-secrets");
    let _ = b.remove(&name).await;
    let mut spec = WorkloadSpec::new(name.clone(), IMAGE);
    spec.secret_env.insert(
        "TOKEN".into(),
        SecretValue::new("berth-conformance-secret-1"),
    );
    spec.secret_env.insert(
        "DROPPED".into(),
        SecretValue::new("berth-conformance-secret-2"),
    );
    spec.secret_env.insert("EMPTY".into(), SecretValue::new(""));
    b.deploy(spec.clone()).await.expect("deploy");
    let first = secrets_of(&name).await;
    let names: Vec<&str> = first.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names.len(), 2, "no secret for an empty value: {names:?}");
    assert!(names[0].starts_with("berth-env-"), "{names:?}");
    assert!(names[0].ends_with("-DROPPED"), "{names:?}");
    assert!(names[1].ends_with("-TOKEN"), "{names:?}");
    let (status, inspected) =
        raw_request("GET", &format!("/libpod/secrets/{}/json", first[1].0), b"").await;
    assert_eq!(status, 200, "{inspected}");
    let labels =
        &serde_json::from_str::<serde_json::Value>(&inspected).expect("json")["Spec"]["Labels"];
    assert_eq!(labels["berth.managed"], "true", "{inspected}");
    assert_eq!(labels["berth.workload"], name.as_str(), "{inspected}");
    assert_eq!(labels["berth.secret-env"], "TOKEN", "{inspected}");
    assert!(!inspected.contains(SECRET_MARKER), "{inspected}");

    // Redeployed after a stop with another value and without DROPPED.
    b.stop(&name).await.expect("stop");
    spec.secret_env.remove("DROPPED");
    spec.secret_env.insert(
        "TOKEN".into(),
        SecretValue::new("berth-conformance-secret-3"),
    );
    b.deploy(spec.clone()).await.expect("deploy again");
    let second = secrets_of(&name).await;
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(second[0].1, first[1].1, "the same name");
    assert_ne!(second[0].0, first[1].0, "a new secret");

    // A set left behind (a crashed berth) goes with `remove`, also when the
    // container is gone already.
    let prefix = second[0].1.trim_end_matches("TOKEN");
    let leftover = format!(
        "/libpod/secrets/create?name={prefix}LEFTOVER&labels=%7B%22berth.workload%22%3A%22{name}%22%7D"
    );
    let (status, body) = raw_request("POST", &leftover, b"left-behind").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(secrets_of(&name).await.len(), 2);
    b.remove(&name).await.expect("remove");
    assert_eq!(secrets_of(&name).await, vec![], "removed with the workload");
    let (status, body) = raw_request("POST", &leftover, b"left-behind").await;
    assert_eq!(status, 200, "{body}");
    assert!(matches!(
        b.remove(&name).await,
        Err(RuntimeError::NotFound(_))
    ));
    assert_eq!(
        secrets_of(&name).await,
        vec![],
        "removed without a container"
    );

    // A deploy that fails after the secrets were stored (Podman refuses to
    // create the container: its mount source does not exist) leaves none.
    spec.mounts = vec![berth_runtime_api::Mount {
        source: "/nonexistent/berth-test".into(),
        target: "/in".into(),
        read_only: true,
    }];
    assert!(b.deploy(spec).await.is_err(), "a mount of nothing");
    assert_eq!(
        secrets_of(&name).await,
        vec![],
        "none after a failed deploy"
    );
    let _ = b.remove(&name).await;
}
