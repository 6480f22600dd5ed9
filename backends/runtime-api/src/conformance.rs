//! The backend contract as executable checks.
//!
//! Every backend's `tests/conformance.rs` calls [`run_all`] with a
//! [`Fixture`] naming two programs its runtime can run; container engines
//! also run [`containers::run_all`]. The checks use fresh workload names
//! with the fixture's prefix and remove what they create.

pub mod containers;

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::{Backend, RuntimeError, RuntimeState, WorkloadName, WorkloadSpec};

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
