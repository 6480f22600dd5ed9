//! The backend contract as executable checks.
//!
//! Every backend's `tests/conformance.rs` calls [`run_all`] with a
//! [`Fixture`] naming the programs its runtime can run; container engines
//! also run [`containers::run_all`]. The checks use fresh workload names
//! with the fixture's prefix and remove what they create.

pub mod containers;

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::{
    Backend, RuntimeError, RuntimeState, SecretValue, StdioHandle, WorkloadName, WorkloadSpec,
};

/// Programs the backend under test can run.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Prefix of every workload name the suite creates.
    pub prefix: String,
    /// A program that runs until stopped and answers a JSON-RPC line on stdin
    /// with a line on stdout that contains the request's `"id":…` (an MCP
    /// server, or `cat`).
    pub stdio: (String, Vec<String>),
    /// A program that exits by itself at once with exit code 3.
    pub exits_with_3: (String, Vec<String>),
    /// berth's test MCP server (`tests/fixtures/mcp-echo`) as a stdio
    /// program, for the checks that ask the server what it was given
    /// (its `env_sha256` tool). Every backend that runs real programs sets
    /// it; `None` only for one that cannot (the in-memory fake).
    pub mcp_echo: Option<(String, Vec<String>)>,
    /// How long to wait for anything the backend does.
    pub timeout: Duration,
}

fn spec(fx: &Fixture, suffix: &str, program: &(String, Vec<String>)) -> WorkloadSpec {
    let name = WorkloadName::parse(&format!("{}-{suffix}", fx.prefix)).expect("valid test name");
    let mut spec = WorkloadSpec::new(name, program.0.clone());
    spec.args = program.1.clone();
    spec.labels.insert("berth.test".into(), suffix.into());
    spec
}

async fn eventually_running(
    b: &dyn Backend,
    name: &WorkloadName,
    timeout: Duration,
) -> crate::WorkloadInfo {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let info = b.inspect(name).await.expect("inspect a deployed workload");
        match &info.state {
            RuntimeState::Running => return info,
            RuntimeState::Starting if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("workload {name} did not come up: {other:?}"),
        }
    }
}

/// Attaches, sends a ping, expects its answer. The pipes are returned so
/// that the caller decides when the server's stdin closes (most stdio
/// servers exit when it does).
async fn round_trip(b: &dyn Backend, name: &WorkloadName, fx: &Fixture, id: u32) -> impl Drop {
    let mut io = b.attach(name).await.expect("attach to a running workload");
    let line = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}\n");
    io.stdin
        .write_all(line.as_bytes())
        .await
        .expect("write stdin");
    io.stdin.flush().await.expect("flush stdin");
    let mut lines = BufReader::new(io.stdout).lines();
    let want = format!("\"id\":{id}");
    let found = tokio::time::timeout(fx.timeout, async {
        while let Some(l) = lines.next_line().await.expect("read stdout") {
            if l.replace(' ', "").contains(&want) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "no answer to id {id} from {name}");
    Held(io.stdin, lines)
}

struct Held<A, B>(A, B);

impl<A, B> Drop for Held<A, B> {
    fn drop(&mut self) {}
}

/// Runs every check against `backend`; panics on the first broken rule.
pub async fn run_all(backend: &dyn Backend, fx: &Fixture) {
    assert!(!backend.kind().is_empty(), "kind must be named");
    let health = backend.health().await.expect("a healthy backend");
    assert_eq!(health.kind, backend.kind());

    lifecycle(backend, fx).await;
    exit_code_is_reported(backend, fx).await;
    unknown_names_are_not_found(backend, fx).await;
    if let Some(server) = &fx.mcp_echo {
        secret_env_reaches_the_server(backend, fx, server).await;
    }
}

/// deploy → running → attach → stop → deploy again → logs → remove.
pub async fn lifecycle(b: &dyn Backend, fx: &Fixture) {
    let spec = spec(fx, "life", &fx.stdio);
    let name = spec.name.clone();
    let _ = b.remove(&name).await;

    let info = b.deploy(spec.clone()).await.expect("deploy");
    assert_eq!(info.name, name);
    let info = eventually_running(b, &name, fx.timeout).await;
    assert!(
        info.started_at.is_some(),
        "a running instance has a start time"
    );
    assert_eq!(
        info.labels.get("berth.test").map(String::as_str),
        Some("life")
    );

    let listed = b.list().await.expect("list");
    assert!(
        listed.iter().any(|i| i.name == name),
        "deployed workload is listed"
    );
    let names: Vec<_> = listed.iter().map(|i| i.name.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "list is in name order");

    match b.deploy(spec.clone()).await {
        Err(RuntimeError::AlreadyExists(n)) => assert_eq!(n, name),
        other => panic!("second deploy of a running workload: {other:?}"),
    }

    let held = round_trip(b, &name, fx, 1).await;

    b.stop(&name).await.expect("stop");
    drop(held);
    let exit = tokio::time::timeout(fx.timeout, b.wait(&name))
        .await
        .expect("wait returns after stop")
        .expect("wait");
    assert!(
        exit.stopped_by_request,
        "a stop is reported as requested: {exit:?}"
    );
    match b.inspect(&name).await.expect("inspect stopped").state {
        RuntimeState::Exited(e) => assert!(e.stopped_by_request),
        other => panic!("stopped workload reported as {other:?}"),
    }
    b.stop(&name)
        .await
        .expect("stopping a stopped workload succeeds");
    assert!(
        matches!(b.attach(&name).await, Err(RuntimeError::NotRunning(_))),
        "attach to a stopped workload is NotRunning"
    );

    b.deploy(spec).await.expect("deploy again after stop");
    eventually_running(b, &name, fx.timeout).await;
    round_trip(b, &name, fx, 2).await;
    b.logs(&name, 100)
        .await
        .expect("logs of a running workload");

    b.remove(&name).await.expect("remove");
    assert!(matches!(
        b.inspect(&name).await,
        Err(RuntimeError::NotFound(_))
    ));
    assert!(!b.list().await.expect("list").iter().any(|i| i.name == name));
    assert!(matches!(
        b.remove(&name).await,
        Err(RuntimeError::NotFound(_))
    ));
}

/// A program that exits by itself is reported with its code, not as running.
pub async fn exit_code_is_reported(b: &dyn Backend, fx: &Fixture) {
    let spec = spec(fx, "exit3", &fx.exits_with_3);
    let name = spec.name.clone();
    let _ = b.remove(&name).await;
    b.deploy(spec).await.expect("deploy");
    let exit = tokio::time::timeout(fx.timeout, b.wait(&name))
        .await
        .expect("an exiting program ends")
        .expect("wait");
    assert_eq!(exit.code, Some(3), "{exit:?}");
    assert!(!exit.stopped_by_request);
    assert!(!exit.is_clean());
    match b.inspect(&name).await.expect("inspect").state {
        RuntimeState::Exited(e) => assert_eq!(e.code, Some(3)),
        other => panic!("exited workload reported as {other:?}"),
    }
    b.remove(&name).await.expect("remove");
}

/// Every operation on a name the backend never saw is NotFound.
pub async fn unknown_names_are_not_found(b: &dyn Backend, fx: &Fixture) {
    let name = WorkloadName::parse(&format!("{}-never-deployed", fx.prefix)).expect("valid");
    let nf = |r: Result<(), RuntimeError>| matches!(r, Err(RuntimeError::NotFound(_)));
    assert!(nf(b.stop(&name).await), "stop");
    assert!(nf(b.remove(&name).await), "remove");
    assert!(nf(b.inspect(&name).await.map(drop)), "inspect");
    assert!(nf(b.logs(&name, 10).await.map(drop)), "logs");
    assert!(nf(b.attach(&name).await.map(drop)), "attach");
    assert!(nf(b.wait(&name).await.map(drop)), "wait");
}

// === secret_env ===

/// Text in every secret value [`with_secret_env`] sets, and in nothing
/// else of the spec: a check that it does not appear somewhere (an
/// engine's inspect, a command line, labels, logs) is a check that no
/// secret value does.
pub const SECRET_MARKER: &str = "berth-conformance-secret-";

/// The environment [`with_secret_env`] gives a spec: (name, plain value,
/// secret value, the lowercase hex SHA-256 of what the server must see or
/// `unset`). The digests are of the values' UTF-8 bytes (`printf %s VALUE |
/// sha256sum`).
const ENV_CASES: &[(&str, Option<&str>, Option<&str>, &str)] = &[
    // A plain variable reaches the server as it is.
    (
        "BERTH_CONF_PLAIN",
        Some("plain-only-value"),
        None,
        "bbde0feafba135cd26ebea186809ee7c0e4ff03bc8e03ff1dda2490b436288b3",
    ),
    // A secret, with characters a shell, a `KEY=VALUE` list or JSON would
    // trip over.
    (
        "BERTH_CONF_SECRET",
        None,
        Some("berth-conformance-secret-3f9c1e7a = \"$HOME\" 'x'\nline 2"),
        "0be0bd7946ac5e80ee53574a2a01ca5142a2e425b0c7c1a89b85639ff5e7507f",
    ),
    // A secret wins over a plain variable of the same name.
    (
        "BERTH_CONF_BOTH",
        Some("plain-loses"),
        Some("berth-conformance-secret-wins-8b2d"),
        "d030bef44703f39056db2f957dfee5584228f9fc2f382fa9278e75abf223488d",
    ),
    // An empty secret is set, and empty.
    (
        "BERTH_CONF_EMPTY_SECRET",
        None,
        Some(""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ),
    // Nothing else is invented.
    ("BERTH_CONF_NEVER_SET", None, None, "unset"),
];

/// `spec` with the plain and secret environment variables whose digests
/// [`secret_env_reaches_the_server`] expects; every non-empty secret value
/// contains [`SECRET_MARKER`].
pub fn with_secret_env(mut spec: WorkloadSpec) -> WorkloadSpec {
    for (name, plain, secret, _) in ENV_CASES {
        if let Some(v) = plain {
            spec.env.insert((*name).to_owned(), (*v).to_owned());
        }
        if let Some(v) = secret {
            spec.secret_env
                .insert((*name).to_owned(), SecretValue::new(*v));
        }
    }
    spec
}

/// The value [`secret_env_reaches_the_server`] gives `BERTH_CONF_SECRET`
/// on its second deploy, and its digest.
const ROTATED: (&str, &str) = (
    "berth-conformance-secret-rotated-51c0",
    "5110e802e42054dc0e31917abee79852dd8a7fbed826c776262011c662039fea",
);

/// A question to the test server: the `tools/call` of `env_sha256` with
/// `id` for variable `name`, and the digest its answer must hold.
struct EnvCall {
    id: u32,
    name: &'static str,
    request: String,
    want: &'static str,
}

impl EnvCall {
    fn new(id: u32, name: &'static str, want: &'static str) -> Self {
        let request = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\"env_sha256\",\"arguments\":{{\"name\":\"{name}\"}}}}}}"
        );
        Self {
            id,
            name,
            request,
            want,
        }
    }
}

/// The calls that check every variable of [`with_secret_env`], with ids
/// from 100 on.
fn env_calls() -> Vec<EnvCall> {
    (100..)
        .zip(ENV_CASES)
        .map(|(id, (name, _, _, want))| EnvCall::new(id, name, want))
        .collect()
}

/// Checks the answers to `calls`: `answers` holds each id's answer line.
fn check_env_answers(
    calls: &[EnvCall],
    answers: &std::collections::BTreeMap<u32, String>,
    on: &str,
) {
    for call in calls {
        let name = call.name;
        let answer = answers
            .get(&call.id)
            .unwrap_or_else(|| panic!("{on}: no answer about {name}"));
        assert!(
            answer.contains(&format!("\"text\":\"{}\"", call.want)),
            "{on}: the server's {name} is not what the spec set (want digest {}): {answer}",
            call.want
        );
        assert!(
            !answer.contains(SECRET_MARKER),
            "{on}: a secret value came back: {answer}"
        );
    }
}

/// A spec's `env` and `secret_env` reach the server as its environment,
/// a secret winning over a plain variable of the same name; no secret
/// value shows in what the backend reports (labels, logs) nor on the
/// command line of the process it reports. A changed secret value reaches
/// the server at its next deploy (after a stop, as a restart does).
///
/// `server` is berth's test MCP server (`tests/fixtures/mcp-echo`), asked
/// over stdio with its `env_sha256` tool, which answers digests, never
/// values.
pub async fn secret_env_reaches_the_server(
    b: &dyn Backend,
    fx: &Fixture,
    server: &(String, Vec<String>),
) {
    let mut spec = with_secret_env(spec(fx, "secret-env", server));
    let name = spec.name.clone();
    let _ = b.remove(&name).await;
    b.deploy(spec.clone())
        .await
        .expect("deploy with secret_env");
    let info = eventually_running(b, &name, fx.timeout).await;

    let mut io = b.attach(&name).await.expect("attach");
    let calls = env_calls();
    let answers = mcp_over_stdio(&mut io, &calls, fx.timeout).await;
    check_env_answers(&calls, &answers, b.kind());

    let shown = format!("{info:?} {:?}", b.list().await.expect("list"));
    assert!(!shown.contains(SECRET_MARKER), "reported: {shown}");
    let logs = b.logs(&name, 1000).await.expect("logs");
    assert!(!logs.contains(SECRET_MARKER), "logged: {logs}");
    // The process the backend reports, when this host can see it.
    if let Some(pid) = info.pid
        && let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline"))
    {
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(
            !cmdline.contains(SECRET_MARKER),
            "on the command line: {cmdline}"
        );
    }

    // A rotated secret: stop, deploy again with the new value. (The
    // server's stdin closes first: stdio servers exit then.)
    drop(io);
    b.stop(&name).await.expect("stop");
    spec.secret_env
        .insert("BERTH_CONF_SECRET".to_owned(), SecretValue::new(ROTATED.0));
    b.deploy(spec).await.expect("deploy with a rotated secret");
    eventually_running(b, &name, fx.timeout).await;
    let mut io = b.attach(&name).await.expect("attach after the redeploy");
    let calls = [EnvCall::new(200, "BERTH_CONF_SECRET", ROTATED.1)];
    let answers = mcp_over_stdio(&mut io, &calls, fx.timeout).await;
    check_env_answers(&calls, &answers, &format!("{} after a rotation", b.kind()));
    drop(io);
    b.remove(&name).await.expect("remove");
}

/// Initializes an MCP session on `io` and sends `calls`; the answers by
/// id.
async fn mcp_over_stdio(
    io: &mut StdioHandle,
    calls: &[EnvCall],
    timeout: Duration,
) -> std::collections::BTreeMap<u32, String> {
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"berth-conformance","version":"0"}}}"#;
    let mut session = vec![r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#];
    session.extend(calls.iter().map(|c| c.request.as_str()));
    let mut answers = std::collections::BTreeMap::new();
    let exchange = async {
        let mut lines = BufReader::new(&mut io.stdout).lines();
        io.stdin.write_all(initialize.as_bytes()).await?;
        io.stdin.write_all(b"\n").await?;
        io.stdin.flush().await?;
        // The initialize answer first, then the rest of the session.
        while let Some(l) = lines.next_line().await? {
            if l.replace(' ', "").contains("\"id\":1,") {
                break;
            }
        }
        for line in &session {
            io.stdin.write_all(line.as_bytes()).await?;
            io.stdin.write_all(b"\n").await?;
        }
        io.stdin.flush().await?;
        while answers.len() < calls.len() {
            let Some(l) = lines.next_line().await? else {
                break;
            };
            let compact = l.replace(' ', "");
            if let Some(call) = calls
                .iter()
                .find(|c| compact.contains(&format!("\"id\":{},", c.id)))
            {
                answers.insert(call.id, l);
            }
        }
        std::io::Result::Ok(())
    };
    let exchanged = tokio::time::timeout(timeout, exchange).await;
    match exchanged {
        Ok(Ok(())) => {}
        Ok(Err(err)) => panic!("MCP session over stdio failed: {err}"),
        Err(_) => panic!("MCP session over stdio: no answers in time ({answers:?})"),
    }
    answers
}
