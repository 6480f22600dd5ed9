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
use berth_runtime_api::conformance::{Fixture, run_all};
use berth_runtime_api::{
    Backend, RuntimeError, RuntimeState, StdioHandle, Transport, WorkloadInfo, WorkloadName,
    WorkloadSpec,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

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
