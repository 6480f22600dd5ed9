//! The runtime conformance suite and the Docker-specific rules, run against
//! a real Docker engine (feature `docker-tests`).
//!
//! The tests fail, never skip, when the engine cannot be reached or the test
//! image is missing; build the image with
//! `tests/fixtures/build-test-image.sh docker`. The engine is the one at
//! `DOCKER_HOST`, else `/var/run/docker.sock`.

// Tests take the engine's socket from the environment, as CI sets it.
#![allow(clippy::disallowed_methods)]

use std::error::Error as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth_backend_docker::{DockerBackend, DockerConfig};
use berth_runtime_api::conformance::{Fixture, run_all};
use berth_runtime_api::{
    Backend, RuntimeError, RuntimeState, StdioHandle, Transport, WorkloadName, WorkloadSpec,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const IMAGE: &str = "localhost/berth-test/echo:latest";
const TIMEOUT: Duration = Duration::from_secs(30);

fn config() -> DockerConfig {
    DockerConfig {
        socket: std::env::var("DOCKER_HOST").ok(),
        ..DockerConfig::default()
    }
}

/// A connected backend whose engine has the test image; panics with what
/// to do otherwise.
async fn backend() -> DockerBackend {
    let config = config();
    let socket = config.socket().to_owned();
    let backend = match DockerBackend::connect(config).await {
        Ok(backend) => backend,
        Err(err) => panic!(
            "the docker engine at `{socket}` is unreachable ({}); start it (`dockerd &`) before running these tests",
            chain(&err)
        ),
    };
    if let Err(err) = backend.engine().inspect_image(IMAGE).await {
        panic!(
            "the test image `{IMAGE}` is missing ({err}); build it with `tests/fixtures/build-test-image.sh docker`"
        );
    }
    backend
}

/// An error and its sources, joined.
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

fn name(s: &str) -> WorkloadName {
    WorkloadName::parse(s).expect("valid test name")
}

/// A stdio spec of the echo server.
fn echo(name: &WorkloadName) -> WorkloadSpec {
    let mut spec = WorkloadSpec::new(name.clone(), IMAGE);
    spec.labels.insert("berth.test".into(), name.to_string());
    spec
}

/// Sends a ping with `id` and reads stdout until its answer.
async fn ping(io: &mut StdioHandle, id: u32) {
    let line = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}\n");
    io.stdin
        .write_all(line.as_bytes())
        .await
        .expect("write stdin");
    io.stdin.flush().await.expect("flush stdin");
    let mut lines = BufReader::new(&mut io.stdout).lines();
    let want = format!("\"id\":{id}");
    let answered = tokio::time::timeout(TIMEOUT, async {
        while let Some(l) = lines.next_line().await.expect("read stdout") {
            if l.replace(' ', "").contains(&want) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(answered, Ok(true), "no answer to ping {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_backend_conforms() {
    let backend = backend().await;
    let fx = Fixture {
        prefix: "dkr".into(),
        stdio: (IMAGE.into(), vec![]),
        exits_with_3: (IMAGE.into(), vec!["--exit-code".into(), "3".into()]),
        timeout: TIMEOUT,
    };
    run_all(&backend, &fx).await;
}

/// The server's port is published on 127.0.0.1 only, on a port the engine
/// picks, and MCP answers there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_transport_is_published_on_loopback_only() {
    let b = backend().await;
    let name = name("dkr-http");
    let _ = b.remove(&name).await;
    let mut spec = echo(&name);
    spec.transport = Transport::StreamableHttp;
    spec.target_port = Some(8080);
    spec.args = vec!["--http".into(), "0.0.0.0:8080".into()];
    spec.env.insert("MCP_PORT".into(), "8080".into());

    let info = b.deploy(spec).await.expect("deploy");
    let endpoint = info
        .http_endpoint
        .expect("an HTTP workload has an endpoint");
    assert!(endpoint.ip().is_loopback(), "{endpoint}");
    assert_ne!(
        endpoint.port(),
        8080,
        "the host port is picked by the engine"
    );
    assert_eq!(
        b.inspect(&name).await.expect("inspect").http_endpoint,
        Some(endpoint)
    );
    let listed = b.list().await.expect("list");
    let mine = listed.iter().find(|i| i.name == name).expect("listed");
    assert_eq!(mine.http_endpoint, Some(endpoint));

    let c = b
        .engine()
        .inspect_container("berth-dkr-http", None)
        .await
        .expect("inspect the container");
    let wanted = c
        .host_config
        .and_then(|h| h.port_bindings)
        .expect("port bindings");
    let actual = c
        .network_settings
        .and_then(|n| n.ports)
        .expect("published ports");
    for (what, map) in [
        ("HostConfig.PortBindings", wanted),
        ("NetworkSettings.Ports", actual),
    ] {
        let bindings: Vec<_> = map.into_values().flatten().flatten().collect();
        assert!(!bindings.is_empty(), "{what} is empty");
        for binding in bindings {
            assert_eq!(
                binding.host_ip.as_deref(),
                Some("127.0.0.1"),
                "{what} publishes beyond loopback: {binding:?}"
            );
        }
    }

    let answer = initialize(endpoint).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("mcp-echo"), "{answer}");

    b.remove(&name).await.expect("remove");
}

/// POSTs an MCP `initialize` to `/mcp`, retrying while the server is not
/// yet listening; returns the raw response up to the server's answer.
async fn initialize(addr: SocketAddr) -> String {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"berth-test","version":"0"}}}"#;
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let attempt = async {
            let mut stream = TcpStream::connect(addr).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&chunk[..n]);
                if String::from_utf8_lossy(&seen).contains("serverInfo") {
                    break;
                }
            }
            std::io::Result::Ok(String::from_utf8_lossy(&seen).into_owned())
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(answer)) if !answer.is_empty() => return answer,
            // Docker's proxy accepts before the server listens, then hangs up.
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no MCP answer at {addr}/mcp: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The container runs with no-new-privileges, no capabilities, docker-init,
/// the default limits, no restart policy and berth's labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_locked_down() {
    let b = backend().await;
    let name = name("dkr-locked");
    let _ = b.remove(&name).await;
    b.deploy(echo(&name)).await.expect("deploy");

    let c = b
        .engine()
        .inspect_container("berth-dkr-locked", None)
        .await
        .expect("inspect the container");
    let host = c.host_config.expect("host config");
    assert_eq!(
        host.security_opt,
        Some(vec!["no-new-privileges".to_owned()])
    );
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    assert!(host.cap_add.unwrap_or_default().is_empty());
    assert_eq!(host.privileged, Some(false));
    assert_eq!(host.init, Some(true));
    assert_eq!(host.memory, Some(1 << 30));
    assert_eq!(host.nano_cpus, Some(1_000_000_000));
    assert_eq!(
        host.restart_policy
            .and_then(|r| r.name)
            .map(|n| n.to_string()),
        Some("no".to_owned())
    );
    let config = c.config.expect("config");
    assert_eq!(config.open_stdin, Some(true));
    assert_eq!(config.stdin_once, Some(false));
    assert_eq!(config.tty, Some(false));
    let labels = config.labels.expect("labels");
    assert_eq!(
        labels.get("berth.managed").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        labels.get("berth.workload").map(String::as_str),
        Some("dkr-locked")
    );

    // The image's own label is not reported as one of the workload's.
    let info = b.inspect(&name).await.expect("inspect");
    assert_eq!(
        info.labels.keys().collect::<Vec<_>>(),
        vec!["berth.test"],
        "{:?}",
        info.labels
    );
    b.remove(&name).await.expect("remove");
}

/// An image the engine does not have and cannot pull fails the deploy with
/// a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_image_is_named() {
    let b = backend().await;
    let name = name("dkr-absent");
    let _ = b.remove(&name).await;
    let image = "localhost/berth-test/absent:latest";
    let spec = WorkloadSpec::new(name.clone(), image);
    let result = tokio::time::timeout(TIMEOUT, b.deploy(spec))
        .await
        .expect("a failing pull ends");
    match result {
        Err(RuntimeError::InvalidSpec(why)) => {
            assert!(why.contains(image), "{why}");
            assert!(why.contains("not present locally"), "{why}");
            assert!(why.contains("could not be pulled"), "{why}");
        }
        other => panic!("deploy of an absent image: {other:?}"),
    }
    assert!(matches!(
        b.inspect(&name).await,
        Err(RuntimeError::NotFound(_))
    ));
}

/// The engine log holds the server's stderr; `logs` returns its last lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_stderr_and_honour_tail() {
    let b = backend().await;
    let name = name("dkr-logs");
    let _ = b.remove(&name).await;
    let mut spec = echo(&name);
    // An unknown argument: the usage goes to stderr, the exit code is 2.
    spec.args = vec!["--no-such-flag".into()];
    b.deploy(spec).await.expect("deploy");
    let exit = tokio::time::timeout(TIMEOUT, b.wait(&name))
        .await
        .expect("wait ends")
        .expect("wait");
    assert_eq!(exit.code, Some(2), "{exit:?}");
    let all = b.logs(&name, 100).await.expect("logs");
    assert!(all.contains("unknown argument `--no-such-flag`"), "{all}");
    assert!(all.contains("usage: mcp-echo"), "{all}");
    let last = b.logs(&name, 1).await.expect("logs");
    assert_eq!(last.lines().count(), 1, "{last:?}");
    assert!(all.ends_with(&last), "{last:?} is not the end of {all:?}");
    assert_eq!(b.logs(&name, 0).await.expect("logs"), "");
    b.remove(&name).await.expect("remove");
}

/// Invalid package specs and schemes no container runs are refused
/// before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_packages_and_other_schemes_are_refused() {
    let b = backend().await;
    for image in [
        "npx://@modelcontextprotocol/server-everything@^1.0",
        "npx://--registry=http://evil",
        "uvx://mcp-server-time;id",
        "exec:///bin/cat",
        "go://example.com/x",
        "",
    ] {
        let spec = WorkloadSpec::new(name("dkr-scheme"), image);
        assert!(
            matches!(b.check(&spec), Err(RuntimeError::InvalidSpec(_))),
            "check accepts `{image}`"
        );
        assert!(
            matches!(b.deploy(spec).await, Err(RuntimeError::InvalidSpec(_))),
            "deploy accepts `{image}`"
        );
    }
}

/// A restarted berth (a new backend) finds the running container and
/// re-attaches to it without restarting it; one holder at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reattach_after_berth_restart() {
    let name = name("dkr-reattach");
    let started = {
        let first = backend().await;
        let _ = first.remove(&name).await;
        first.deploy(echo(&name)).await.expect("deploy");
        let mut io = first.attach(&name).await.expect("attach");
        ping(&mut io, 1).await;
        let info = first.inspect(&name).await.expect("inspect");
        assert!(info.state.is_running());
        info.started_at.expect("a start time")
        // The first backend and its handle are dropped here, as when berth
        // exits.
    };

    let second = backend().await;
    let listed = second.list().await.expect("list");
    let found = listed
        .iter()
        .find(|i| i.name == name)
        .expect("the restarted berth lists the container");
    assert!(found.state.is_running(), "{found:?}");
    assert_eq!(found.started_at, Some(started));
    assert_eq!(
        found.labels.get("berth.test").map(String::as_str),
        Some("dkr-reattach")
    );

    let mut io = second.attach(&name).await.expect("re-attach");
    assert!(
        matches!(
            second.attach(&name).await,
            Err(RuntimeError::AlreadyAttached(_))
        ),
        "a second holder is refused while the first holds the pipes"
    );
    ping(&mut io, 2).await;
    drop(io);
    let mut io = second
        .attach(&name)
        .await
        .expect("attach after the holder let go");
    ping(&mut io, 3).await;

    let info = second.inspect(&name).await.expect("inspect");
    assert_eq!(
        info.started_at,
        Some(started),
        "the container was not restarted"
    );
    assert_eq!(info.state, RuntimeState::Running);

    second.stop(&name).await.expect("stop");
    let exit = tokio::time::timeout(TIMEOUT, second.wait(&name))
        .await
        .expect("wait ends")
        .expect("wait");
    assert!(exit.stopped_by_request, "{exit:?}");
    drop(io);
    second.remove(&name).await.expect("remove");
}

/// An exit berth did not ask for is reported as such, also to a restarted
/// berth, and `wait` on a running container resolves when it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrequested_exit_is_not_a_stop() {
    let b = backend().await;
    let name = name("dkr-crash");
    let _ = b.remove(&name).await;
    b.deploy(echo(&name)).await.expect("deploy");
    let waiter = {
        let name = name.clone();
        let b2 = backend().await;
        tokio::spawn(async move { b2.wait(&name).await })
    };
    // Stopped behind berth's back (as `docker stop` would).
    b.engine()
        .stop_container("berth-dkr-crash", None)
        .await
        .expect("docker stop");
    let exit = tokio::time::timeout(TIMEOUT, waiter)
        .await
        .expect("wait ends")
        .expect("join")
        .expect("wait");
    assert!(!exit.stopped_by_request, "{exit:?}");
    match b.inspect(&name).await.expect("inspect").state {
        RuntimeState::Exited(e) => assert!(!e.stopped_by_request, "{e:?}"),
        other => panic!("{other:?}"),
    }
    b.remove(&name).await.expect("remove");
}

/// A socket nobody listens on fails `connect` at once, and one that never
/// answers within a few seconds; the error names the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_fast_naming_the_socket() {
    // An engine that accepts connections and never answers.
    let silent = std::env::temp_dir().join(format!("berth-silent-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&silent);
    let listener = tokio::net::UnixListener::bind(&silent).expect("bind a unix socket");
    let _silent_engine = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let silent_socket = format!("unix://{}", silent.display());

    for socket in [
        "unix:///nonexistent/berth-test/docker.sock",
        "tcp://127.0.0.1:1",
        silent_socket.as_str(),
    ] {
        let config = DockerConfig {
            socket: Some(socket.into()),
            ..DockerConfig::default()
        };
        let began = Instant::now();
        let result = DockerBackend::connect(config).await;
        assert!(
            began.elapsed() < Duration::from_secs(6),
            "connect to `{socket}` took {:?}",
            began.elapsed()
        );
        match result {
            Err(
                err @ RuntimeError::Unavailable {
                    backend: "docker", ..
                },
            ) => {
                let path = socket.trim_start_matches("unix://");
                let text = chain(&err);
                assert!(text.contains(path), "{text}");
                assert!(err.source().is_some());
            }
            other => panic!("connect to `{socket}`: {other:?}"),
        }
    }
    let _ = std::fs::remove_file(&silent);
}
