//! The contract of container engines, beyond [`run_all`](super::run_all):
//! what a backend that runs workloads as containers of images must also do
//! (Docker and Podman today; a Kubernetes backend would run the same).
//!
//! Each engine's `tests/conformance.rs` calls [`run_all`] with a way to
//! connect a new backend (a restart of berth is a new backend on the same
//! engine) and a [`ContainerFixture`], and
//! [`connect_fails_fast_naming_the_socket`] with a way to connect to a
//! given socket. Checks that need the engine's own view of a container
//! (its create options as the engine recorded them) stay in the engine's
//! tests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{check_env_answers, env_calls, eventually_running, with_secret_env};
use crate::{
    Backend, RuntimeError, RuntimeState, StdioHandle, Transport, WorkloadName, WorkloadSpec,
};

/// The engine under test.
#[derive(Debug, Clone)]
pub struct ContainerFixture {
    /// Prefix of every workload name the checks create.
    pub prefix: String,
    /// berth's test MCP server (`tests/fixtures/mcp-echo`, packed by
    /// `tests/fixtures/build-test-image.sh`): a stdio server by default;
    /// with `--http ADDR` it serves streamable HTTP at `/mcp` and writes
    /// `listening on ADDR` to stderr; an unknown argument makes it write
    /// its usage to stderr and exit with code 2.
    pub image: String,
    /// How long to wait for anything the engine does.
    pub timeout: Duration,
}

impl ContainerFixture {
    fn name(&self, suffix: &str) -> WorkloadName {
        WorkloadName::parse(&format!("{}-{suffix}", self.prefix)).expect("valid test name")
    }

    /// A stdio spec of the test server, labelled `berth.test=<name>`.
    fn stdio(&self, name: &WorkloadName) -> WorkloadSpec {
        let mut spec = WorkloadSpec::new(name.clone(), self.image.clone());
        spec.labels.insert("berth.test".into(), name.to_string());
        spec
    }

    /// A streamable-HTTP spec of the test server, listening on port 8080
    /// in its container.
    fn http(&self, name: &WorkloadName) -> WorkloadSpec {
        let mut spec = self.stdio(name);
        spec.transport = Transport::StreamableHttp;
        spec.target_port = Some(8080);
        spec.args = vec!["--http".into(), "0.0.0.0:8080".into()];
        spec.env.insert("MCP_PORT".into(), "8080".into());
        spec
    }
}

/// Runs every check against backends made by `connect`; panics on the
/// first broken rule.
pub async fn run_all<B: Backend>(connect: impl AsyncFn() -> B, fx: &ContainerFixture) {
    let b = connect().await;
    http_is_published_on_loopback_only(&b, fx).await;
    an_absent_image_is_named(&b, fx).await;
    logs_hold_stderr_and_honour_tail(&b, fx).await;
    invalid_packages_and_other_schemes_are_refused(&b, fx).await;
    secret_env_reaches_an_http_server(&b, fx).await;
    drop(b);
    reattach_after_a_restart_of_berth(&connect, fx).await;
    containers_outlive_the_backend(&connect, fx).await;
}

/// An HTTP server's target port is published on a loopback address, at a
/// port the engine picks; deploy, inspect and list report the same
/// endpoint, MCP answers there, and the server's stderr is its log.
pub async fn http_is_published_on_loopback_only(b: &dyn Backend, fx: &ContainerFixture) {
    let name = fx.name("http");
    let _ = b.remove(&name).await;
    let deployed = b.deploy(fx.http(&name)).await.expect("deploy");
    let endpoint = deployed
        .http_endpoint
        .expect("an HTTP workload has an endpoint");
    assert!(endpoint.ip().is_loopback(), "{endpoint}");
    assert_ne!(endpoint.port(), 0);
    assert_ne!(
        endpoint.port(),
        8080,
        "the host port is picked by the engine"
    );
    let info = eventually_running(b, &name, fx.timeout).await;
    assert_eq!(
        info.http_endpoint,
        Some(endpoint),
        "inspect agrees with deploy"
    );
    let listed = b.list().await.expect("list");
    let listed = listed.iter().find(|i| i.name == name).expect("listed");
    assert_eq!(
        listed.http_endpoint,
        Some(endpoint),
        "list agrees with deploy"
    );

    let answer = initialize(endpoint, fx.timeout).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("mcp-echo"), "{answer}");

    // The server's stderr reaches the log; `tail` keeps the last lines.
    let logs = b.logs(&name, 100).await.expect("logs");
    assert!(logs.contains("listening on 0.0.0.0:8080"), "{logs:?}");
    let last = b.logs(&name, 1).await.expect("logs");
    assert_eq!(last.lines().count(), 1, "{last:?}");

    b.remove(&name).await.expect("remove");
}

/// A spec's `env` and `secret_env` reach an HTTP server too (the
/// runtime suite asks a stdio one), a secret winning over a plain variable
/// of the same name.
pub async fn secret_env_reaches_an_http_server(b: &dyn Backend, fx: &ContainerFixture) {
    let name = fx.name("http-secret-env");
    let _ = b.remove(&name).await;
    let deployed = b
        .deploy(with_secret_env(fx.http(&name)))
        .await
        .expect("deploy with secret_env");
    let endpoint = deployed.http_endpoint.expect("an endpoint");
    eventually_running(b, &name, fx.timeout).await;

    let answer = initialize(endpoint, fx.timeout).await;
    let session = answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.eq_ignore_ascii_case("mcp-session-id")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no session id in {answer}"));
    post_mcp(
        endpoint,
        &session,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        "",
        fx.timeout,
    )
    .await;
    let calls = env_calls();
    let mut answers = std::collections::BTreeMap::new();
    for call in &calls {
        let until = format!("\"id\":{},", call.id);
        let answer = post_mcp(endpoint, &session, &call.request, &until, fx.timeout).await;
        answers.insert(call.id, answer);
    }
    check_env_answers(&calls, &answers, &format!("{} over HTTP", b.kind()));
    b.remove(&name).await.expect("remove");
}

/// An image the engine does not have and cannot pull fails the deploy with
/// an error naming it, and leaves nothing behind. The error is returned for
/// the engine's own checks of its kind.
pub async fn an_absent_image_is_named(b: &dyn Backend, fx: &ContainerFixture) -> RuntimeError {
    let name = fx.name("absent");
    let _ = b.remove(&name).await;
    let image = "localhost/berth-test/absent:never";
    let result = tokio::time::timeout(fx.timeout, b.deploy(WorkloadSpec::new(name.clone(), image)))
        .await
        .expect("a failing pull ends");
    let err = result.expect_err("an absent image cannot run");
    let text = chain(&err);
    assert!(
        text.contains(&format!(
            "image `{image}` is not present locally and could not be pulled"
        )),
        "{text}"
    );
    assert!(
        matches!(b.inspect(&name).await, Err(RuntimeError::NotFound(_))),
        "nothing is left behind"
    );
    err
}

/// The engine log holds the server's stderr; `logs` returns its last
/// lines, and nothing for a tail of 0.
pub async fn logs_hold_stderr_and_honour_tail(b: &dyn Backend, fx: &ContainerFixture) {
    let name = fx.name("logs");
    let _ = b.remove(&name).await;
    let mut spec = fx.stdio(&name);
    // An unknown argument: the usage goes to stderr, the exit code is 2.
    spec.args = vec!["--no-such-flag".into()];
    b.deploy(spec).await.expect("deploy");
    let exit = tokio::time::timeout(fx.timeout, b.wait(&name))
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

/// Invalid package specs and schemes no container runs are refused by
/// `check` and by `deploy`, before anything runs.
pub async fn invalid_packages_and_other_schemes_are_refused(
    b: &dyn Backend,
    fx: &ContainerFixture,
) {
    for image in [
        "npx://@modelcontextprotocol/server-everything@^1.0",
        "npx://server-everything@^1.0",
        "npx://--registry=http://evil",
        "uvx://mcp-server-time;id",
        "exec:///bin/cat",
        "go://example.com/x",
        "fake://echo",
        "",
    ] {
        let spec = WorkloadSpec::new(fx.name("scheme"), image);
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

/// The stdio of a running container is lent to one holder at a time and
/// comes back when the holder lets go; a restarted berth (a new backend)
/// finds the container, re-attaches and talks to the same server, never
/// restarting it; a stop after that is reported as requested.
pub async fn reattach_after_a_restart_of_berth<B: Backend>(
    connect: &impl AsyncFn() -> B,
    fx: &ContainerFixture,
) {
    let name = fx.name("reattach");
    let started = {
        let first = connect().await;
        let _ = first.remove(&name).await;
        first.deploy(fx.stdio(&name)).await.expect("deploy");
        let started = eventually_running(&first, &name, fx.timeout)
            .await
            .started_at
            .expect("a start time");
        let mut io = first.attach(&name).await.expect("attach");
        ping(&mut io, 1, fx.timeout).await;
        assert!(
            matches!(
                first.attach(&name).await,
                Err(RuntimeError::AlreadyAttached(_))
            ),
            "one holder at a time"
        );
        drop(io);
        // The pipes came back; the server's stdin is still open.
        let mut io = first.attach(&name).await.expect("attach again");
        ping(&mut io, 2, fx.timeout).await;
        let info = first.inspect(&name).await.expect("inspect");
        assert!(info.state.is_running(), "{:?}", info.state);
        assert_eq!(info.started_at, Some(started), "not restarted");
        started
        // The first backend and its handle are dropped here, as when berth
        // exits.
    };

    let second = connect().await;
    let listed = second.list().await.expect("list");
    let found = listed
        .iter()
        .find(|i| i.name == name)
        .expect("the restarted berth lists the container");
    assert!(found.state.is_running(), "{found:?}");
    assert_eq!(found.started_at, Some(started));
    assert_eq!(
        found.labels.get("berth.test").map(String::as_str),
        Some(name.as_str())
    );

    let mut io = second.attach(&name).await.expect("re-attach");
    assert!(
        matches!(
            second.attach(&name).await,
            Err(RuntimeError::AlreadyAttached(_))
        ),
        "a second holder is refused while the first holds the pipes"
    );
    ping(&mut io, 3, fx.timeout).await;
    drop(io);
    let mut io = second
        .attach(&name)
        .await
        .expect("attach after the holder let go");
    ping(&mut io, 4, fx.timeout).await;

    let info = second.inspect(&name).await.expect("inspect");
    assert_eq!(
        info.started_at,
        Some(started),
        "the container was not restarted"
    );
    assert_eq!(info.state, RuntimeState::Running);

    second.stop(&name).await.expect("stop");
    let exit = tokio::time::timeout(fx.timeout, second.wait(&name))
        .await
        .expect("wait ends")
        .expect("wait");
    assert!(exit.stopped_by_request, "{exit:?}");
    drop(io);
    second.remove(&name).await.expect("remove");
}

/// Containers outlive the backend that made them: after it is gone, a new
/// backend finds an HTTP and a stdio server running, unchanged and
/// reachable.
pub async fn containers_outlive_the_backend<B: Backend>(
    connect: &impl AsyncFn() -> B,
    fx: &ContainerFixture,
) {
    let http = fx.name("keep-http");
    let stdio = fx.name("keep-stdio");
    let b = connect().await;
    let _ = b.remove(&http).await;
    let _ = b.remove(&stdio).await;
    b.deploy(fx.http(&http)).await.expect("deploy http");
    b.deploy(fx.stdio(&stdio)).await.expect("deploy stdio");
    let before = eventually_running(&b, &http, fx.timeout).await;
    let before_stdio = eventually_running(&b, &stdio, fx.timeout).await;
    let mut io = b.attach(&stdio).await.expect("attach");
    ping(&mut io, 1, fx.timeout).await;
    drop(io);
    drop(b);

    let b = connect().await;
    // The HTTP server runs on, unchanged and reachable.
    let after = b.inspect(&http).await.expect("inspect http");
    assert!(after.state.is_running(), "{:?}", after.state);
    assert_eq!(after.started_at, before.started_at, "not restarted");
    assert_eq!(after.http_endpoint, before.http_endpoint, "same endpoint");
    let answer = initialize(after.http_endpoint.expect("an endpoint"), fx.timeout).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // So does the stdio server, and the new backend attaches to it.
    let after_stdio = b.inspect(&stdio).await.expect("inspect stdio");
    assert!(after_stdio.state.is_running(), "{:?}", after_stdio.state);
    assert_eq!(
        after_stdio.started_at, before_stdio.started_at,
        "not restarted"
    );
    let mut io = b.attach(&stdio).await.expect("attach");
    ping(&mut io, 2, fx.timeout).await;
    drop(io);

    b.remove(&http).await.expect("remove http");
    b.remove(&stdio).await.expect("remove stdio");
}

/// A socket nobody listens on fails `connect` at once, and one that never
/// answers within a few seconds; the error is `Unavailable` for the
/// backend `kind` and names the socket.
pub async fn connect_fails_fast_naming_the_socket<B: Backend>(
    kind: &str,
    connect: impl AsyncFn(String) -> Result<B, RuntimeError>,
) {
    // An engine that accepts connections and never answers.
    let silent =
        std::env::temp_dir().join(format!("berth-silent-{kind}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&silent);
    let listener = tokio::net::UnixListener::bind(&silent).expect("bind a unix socket");
    let silent_engine = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let silent_socket = format!("unix://{}", silent.display());

    for socket in [
        format!("unix:///nonexistent/berth-test/{kind}.sock"),
        "tcp://127.0.0.1:1".to_owned(),
        silent_socket,
    ] {
        let began = Instant::now();
        let result = connect(socket.clone()).await;
        assert!(
            began.elapsed() < Duration::from_secs(6),
            "connect to `{socket}` took {:?}",
            began.elapsed()
        );
        match result {
            Err(err @ RuntimeError::Unavailable { backend, .. }) if backend == kind => {
                let path = socket.trim_start_matches("unix://");
                let text = chain(&err);
                assert!(text.contains(path), "{text}");
                assert!(std::error::Error::source(&err).is_some());
            }
            Err(other) => panic!("connect to `{socket}`: {other:?}"),
            Ok(_) => panic!("connect to `{socket}` succeeded"),
        }
    }
    silent_engine.abort();
    let _ = std::fs::remove_file(&silent);
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

/// Sends a ping with `id` and reads stdout until its answer.
async fn ping(io: &mut StdioHandle, id: u32, timeout: Duration) {
    let line = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}\n");
    io.stdin
        .write_all(line.as_bytes())
        .await
        .expect("write stdin");
    io.stdin.flush().await.expect("flush stdin");
    let mut lines = BufReader::new(&mut io.stdout).lines();
    let want = format!("\"id\":{id}");
    let answered = tokio::time::timeout(timeout, async {
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

/// POSTs an MCP `initialize` to `/mcp`, retrying while the server is not
/// yet listening; returns the raw response up to the server's answer.
async fn initialize(addr: SocketAddr, timeout: Duration) -> String {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"berth-test","version":"0"}}}"#;
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let deadline = Instant::now() + timeout;
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
            // An engine's port proxy may accept before the server listens,
            // then hang up.
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

/// POSTs one MCP message in session `session` to `/mcp` and returns the raw
/// response, read until it contains `until` (to its end when `until` is
/// empty).
async fn post_mcp(
    addr: SocketAddr,
    session: &str,
    body: &str,
    until: &str,
    timeout: Duration,
) -> String {
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: {session}\r\nMcp-Protocol-Version: 2025-06-18\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
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
            let text = String::from_utf8_lossy(&seen).replace(' ', "");
            if !until.is_empty() && text.contains(until) {
                break;
            }
        }
        std::io::Result::Ok(String::from_utf8_lossy(&seen).into_owned())
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer at {addr}/mcp to {body}"))
        .unwrap_or_else(|err| panic!("POST {addr}/mcp: {err}"));
    assert!(answer.starts_with("HTTP/1.1 20"), "{body}: {answer}");
    answer
}
