//! Behaviour of the process backend beyond the conformance suite: the
//! environment, logs, image checks, process groups and leftover clean-up.
//!
//! The tests run on a current-thread runtime, so that a program that exits at
//! once (`env`, `pwd`) is still attachable right after `deploy`: its reaper
//! cannot run before the test yields.

// The tests read `CI` to insist on the cgroup path there.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use berth_backend_process::{ProcessBackend, ProcessConfig};
use berth_runtime_api::{
    Backend, RuntimeError, SecretValue, StdioHandle, WorkloadName, WorkloadSpec,
};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const DEADLINE: Duration = Duration::from_secs(15);

fn base_env() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
        ("BASE_ONLY".to_owned(), "base".to_owned()),
        ("OVERRIDDEN".to_owned(), "base".to_owned()),
    ])
}

async fn backend(root: &Path, config: ProcessConfig) -> ProcessBackend {
    ProcessBackend::new(config, root.to_owned(), base_env())
        .await
        .expect("backend")
}

fn spec(name: &str, image: &str, args: &[&str]) -> WorkloadSpec {
    let name = WorkloadName::parse(name).expect("valid name");
    let mut spec = WorkloadSpec::new(name, image);
    spec.args = args.iter().map(|a| (*a).to_owned()).collect();
    spec
}

fn pgid_of(info: &berth_runtime_api::WorkloadInfo) -> i32 {
    i32::try_from(info.pid.expect("a process has a pid")).expect("pid fits")
}

/// Reads stdout until end of file.
async fn read_to_end(io: StdioHandle) -> String {
    let mut out = String::new();
    let mut stdout = io.stdout;
    tokio::time::timeout(DEADLINE, stdout.read_to_string(&mut out))
        .await
        .expect("stdout ends")
        .expect("read stdout");
    out
}

/// Reads one line of stdout: a sign that the script got that far.
async fn read_line(io: &mut StdioHandle) -> String {
    let mut line = String::new();
    tokio::time::timeout(
        DEADLINE,
        BufReader::new(&mut io.stdout).read_line(&mut line),
    )
    .await
    .expect("a line on stdout")
    .expect("read stdout");
    line
}

#[path = "../../../tests/support/wait.rs"]
mod wait;

/// Polls `cond` until it holds; panics after [`DEADLINE`].
async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait::eventually(DEADLINE, what, || {
        let fut = cond();
        async move { fut.await.then_some(()) }
    })
    .await;
}

/// Waits until no process of group `pgid` is left, zombies included.
async fn group_gone(pgid: i32) {
    until("the process group is gone", || async {
        killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH)
    })
    .await;
}

fn invalid_spec(result: Result<impl std::fmt::Debug, RuntimeError>) -> String {
    match result {
        Err(RuntimeError::InvalidSpec(msg)) => msg,
        other => panic!("expected an invalid spec, got {other:?}"),
    }
}

#[tokio::test]
async fn environment_is_base_env_plus_spec_env() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = backend(root.path(), ProcessConfig::default()).await;
    let mut s = spec("env", "exec:///usr/bin/env", &[]);
    s.env.insert("SPEC_ONLY".into(), "spec".into());
    s.env.insert("OVERRIDDEN".into(), "spec".into());
    b.deploy(s.clone()).await.expect("deploy");
    let io = b.attach(&s.name).await.expect("attach");

    let printed: BTreeMap<String, String> = read_to_end(io)
        .await
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let want = BTreeMap::from([
        ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
        ("BASE_ONLY".to_owned(), "base".to_owned()),
        ("OVERRIDDEN".to_owned(), "spec".to_owned()),
        ("SPEC_ONLY".to_owned(), "spec".to_owned()),
    ]);
    assert_eq!(printed, want);
    assert_eq!(b.wait(&s.name).await.expect("wait").code, Some(0));
    b.remove(&s.name).await.expect("remove");
}

#[tokio::test]
async fn secret_env_comes_last_and_never_on_the_command_line() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = backend(root.path(), ProcessConfig::default()).await;
    // Prints its environment, then waits for stdin to close, so that its
    // command line can be read meanwhile.
    let mut s = spec(
        "secret-env",
        "exec:///bin/sh",
        &["-c", "env; echo END; cat >/dev/null"],
    );
    s.env.insert("OVERRIDDEN".into(), "spec".into());
    s.env.insert("SPEC_ONLY".into(), "spec".into());
    for (k, v) in [
        ("OVERRIDDEN", "secret-over-spec"),
        ("BASE_ONLY", "secret-over-base"),
        ("SECRET_ONLY", "secret-only"),
    ] {
        s.secret_env.insert(k.into(), SecretValue::new(v));
    }
    let info = b.deploy(s.clone()).await.expect("deploy");
    let mut io = b.attach(&s.name).await.expect("attach");
    let mut printed = BTreeMap::new();
    let mut lines = BufReader::new(&mut io.stdout).lines();
    loop {
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("a line in time")
            .expect("read stdout")
            .expect("the environment, then END");
        if line == "END" {
            break;
        }
        let (k, v) = line.split_once('=').expect("KEY=value");
        printed.insert(k.to_owned(), v.to_owned());
    }
    // What the shell itself sets.
    for own in ["PWD", "OLDPWD", "SHLVL", "_"] {
        printed.remove(own);
    }
    let want = BTreeMap::from([
        ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
        ("BASE_ONLY".to_owned(), "secret-over-base".to_owned()),
        ("OVERRIDDEN".to_owned(), "secret-over-spec".to_owned()),
        ("SPEC_ONLY".to_owned(), "spec".to_owned()),
        ("SECRET_ONLY".to_owned(), "secret-only".to_owned()),
    ]);
    assert_eq!(printed, want);

    let pid = info.pid.expect("a pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(!cmdline.contains("secret-"), "{cmdline}");
    for file in walk(root.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
        assert!(
            !text.contains("secret-o"),
            "{} holds a secret: {text}",
            file.display()
        );
    }
    drop(io);
    assert_eq!(b.wait(&s.name).await.expect("wait").code, Some(0));
    b.remove(&s.name).await.expect("remove");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn secret_env_an_environment_cannot_carry_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = backend(root.path(), ProcessConfig::default()).await;
    for (key, value, want) in [
        ("", "v", "is empty or holds"),
        ("A=B", "v", "is empty or holds"),
        ("A\0B", "v", "is empty or holds"),
        ("TOKEN", "nul\0inside", "`TOKEN` holds a NUL byte"),
    ] {
        let mut s = spec("bad-secret", "exec:///bin/true", &[]);
        s.secret_env.insert(key.into(), SecretValue::new(value));
        let why = invalid_spec(b.check(&s));
        assert!(why.contains(want), "{key:?}: {why}");
        assert!(!why.contains("nul\0inside"), "{why}");
        let why = invalid_spec(b.deploy(s).await);
        assert!(why.contains(want), "{key:?}: {why}");
    }
}

#[tokio::test]
async fn runs_in_its_own_working_directory() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = backend(root.path(), ProcessConfig::default()).await;
    let s = spec("cwd", "exec:///bin/pwd", &[]);
    b.deploy(s.clone()).await.expect("deploy");
    let io = b.attach(&s.name).await.expect("attach");
    let work = root
        .path()
        .join("work/cwd")
        .canonicalize()
        .expect("work dir exists");
    assert_eq!(
        read_to_end(io).await.trim_end(),
        work.to_str().expect("utf-8")
    );

    b.remove(&s.name).await.expect("remove");
    assert!(!work.exists(), "remove deletes the working directory");
}

#[tokio::test]
async fn stdio_is_handed_out_once() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = backend(root.path(), ProcessConfig::default()).await;
    let s = spec("once", "exec:///bin/cat", &[]);
    b.deploy(s.clone()).await.expect("deploy");
    let _io = b.attach(&s.name).await.expect("attach");
    assert!(matches!(
        b.attach(&s.name).await,
        Err(RuntimeError::AlreadyAttached(_))
    ));
    assert_eq!(
        b.logs(&s.name, 10).await.expect("logs"),
        "",
        "nothing logged yet"
    );
    b.remove(&s.name).await.expect("remove");
}

#[tokio::test]
async fn stderr_goes_to_the_log() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = backend(root.path(), ProcessConfig::default()).await;
    let s = spec(
        "err",
        "exec:///bin/sh",
        &["-c", "echo hello-err >&2; sleep 30"],
    );
    b.deploy(s.clone()).await.expect("deploy");

    until("the log has the line", || async {
        b.logs(&s.name, 10).await.expect("logs") == "hello-err\n"
    })
    .await;
    let log = root.path().join("logs/err.log");
    assert!(log.exists());

    b.remove(&s.name).await.expect("remove");
    assert!(!log.exists(), "remove deletes the log");
    assert!(matches!(
        b.logs(&s.name, 10).await,
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test]
async fn logs_rotate_past_max_bytes() {
    let root = tempfile::tempdir().expect("tempdir");
    let config = ProcessConfig {
        log_max_bytes: 64,
        log_keep: 2,
        ..ProcessConfig::default()
    };
    let b = backend(root.path(), config).await;
    let script = "i=0; while [ $i -lt 40 ]; do echo line-$i >&2; i=$((i+1)); done; sleep 30";
    let s = spec("rot", "exec:///bin/sh", &["-c", script]);
    b.deploy(s.clone()).await.expect("deploy");

    until("the last line is logged", || async {
        b.logs(&s.name, 1).await.expect("logs") == "line-39\n"
    })
    .await;
    let logs = root.path().join("logs");
    for f in ["rot.log", "rot.log.1", "rot.log.2"] {
        let len = std::fs::metadata(logs.join(f)).expect(f).len();
        assert!(len <= 64, "{f} has {len} bytes");
    }
    assert!(
        !logs.join("rot.log.3").exists(),
        "only log_keep rotated files"
    );
    assert_eq!(
        b.logs(&s.name, 3).await.expect("logs"),
        "line-37\nline-38\nline-39\n"
    );
    let all = b.logs(&s.name, 1000).await.expect("logs");
    assert!(
        !all.starts_with("line-0\n"),
        "the oldest lines rotated away: {all}"
    );
    assert!(all.lines().count() < 40);

    b.remove(&s.name).await.expect("remove");
    assert_eq!(std::fs::read_dir(&logs).expect("logs dir").count(), 0);
}

#[tokio::test]
async fn images_other_than_process_schemes_are_invalid() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = backend(root.path(), ProcessConfig::default()).await;
    let s = spec("oci", "ghcr.io/x/y:1", &[]);
    let want = "the process backend runs npx://, uvx:// and exec:// images, not `ghcr.io/x/y:1`";
    assert_eq!(invalid_spec(b.check(&s)), want);
    assert_eq!(invalid_spec(b.deploy(s.clone()).await), want);
    assert!(matches!(
        b.inspect(&s.name).await,
        Err(RuntimeError::NotFound(_))
    ));
    assert_eq!(
        invalid_spec(b.deploy(spec("rel", "exec://bin/cat", &[])).await),
        "exec:// needs an absolute path, not `bin/cat` (write `exec:///path/to/program`)"
    );
}

#[tokio::test]
async fn allowed_commands_refuse_others() {
    let root = tempfile::tempdir().expect("tempdir");
    let config = ProcessConfig {
        allowed_commands: vec!["/bin/cat".into(), "uvx".into()],
        ..ProcessConfig::default()
    };
    let b = backend(root.path(), config).await;
    assert_eq!(
        invalid_spec(
            b.deploy(spec("sh", "exec:///bin/sh", &["-c", "true"]))
                .await
        ),
        "command `/bin/sh` is not in process.allowed_commands"
    );
    assert_eq!(
        invalid_spec(b.deploy(spec("npx", "npx://some-server", &[])).await),
        "command `npx` is not in process.allowed_commands"
    );
    assert!(b.check(&spec("uvx", "uvx://some-server", &[])).is_ok());

    let cat = spec("cat", "exec:///bin/cat", &[]);
    b.deploy(cat.clone())
        .await
        .expect("an allowed command runs");
    b.remove(&cat.name).await.expect("remove");
}

#[tokio::test]
async fn a_missing_program_fails_with_its_name() {
    let root = tempfile::tempdir().expect("tempdir");
    let config = ProcessConfig {
        npx_command: "/nonexistent/berth-test/npx".into(),
        ..ProcessConfig::default()
    };
    let b = backend(root.path(), config).await;
    let s = spec("nonpx", "npx://some-server", &[]);
    match b.deploy(s.clone()).await {
        Err(err @ RuntimeError::Backend { .. }) => {
            assert_eq!(err.to_string(), "starting `/nonexistent/berth-test/npx`");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert!(matches!(
        b.inspect(&s.name).await,
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test]
async fn stop_kills_the_whole_process_group() {
    let root = tempfile::tempdir().expect("tempdir");
    let config = ProcessConfig {
        stop_grace_secs: 10,
        ..ProcessConfig::default()
    };
    let b = backend(root.path(), config).await;
    let s = spec(
        "group",
        "exec:///bin/sh",
        &["-c", "sleep 300 & echo ready; sleep 300"],
    );
    let info = b.deploy(s.clone()).await.expect("deploy");
    let pgid = pgid_of(&info);
    let mut io = b.attach(&s.name).await.expect("attach");
    assert_eq!(read_line(&mut io).await, "ready\n");

    b.stop(&s.name).await.expect("stop");
    let exit = b.wait(&s.name).await.expect("wait");
    assert!(exit.stopped_by_request);
    // SIGTERM was enough: no SIGKILL after the 10 s grace.
    assert_eq!(exit.signal, Some(Signal::SIGTERM as i32), "{exit:?}");
    assert_eq!(exit.signal, Some(Signal::SIGTERM as i32));
    group_gone(pgid).await;
    assert!(
        !root.path().join("pids/group.json").exists(),
        "pid record removed"
    );
    b.remove(&s.name).await.expect("remove");
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_after_the_grace() {
    let root = tempfile::tempdir().expect("tempdir");
    let config = ProcessConfig {
        stop_grace_secs: 1,
        ..ProcessConfig::default()
    };
    let b = std::sync::Arc::new(backend(root.path(), config).await);
    let s = spec(
        "stubborn",
        "exec:///bin/sh",
        &[
            "-c",
            "trap 'echo got TERM' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    );
    let info = b.deploy(s.clone()).await.expect("deploy");
    let mut io = b.attach(&s.name).await.expect("attach");
    assert_eq!(read_line(&mut io).await, "ready\n");

    let stop = {
        let b = b.clone();
        let name = s.name.clone();
        tokio::spawn(async move { b.stop(&name).await })
    };
    // SIGTERM first (the server saw it and went on)...
    assert_eq!(read_line(&mut io).await, "got TERM\n");
    stop.await.expect("join").expect("stop");
    // ...then SIGKILL, once the grace was over.
    let exit = b.wait(&s.name).await.expect("wait");
    assert_eq!(exit.signal, Some(Signal::SIGKILL as i32), "{exit:?}");
    assert!(exit.stopped_by_request);
    group_gone(pgid_of(&info)).await;
    b.remove(&s.name).await.expect("remove");
}

#[tokio::test]
async fn processes_left_by_an_exited_workload_are_killed() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = backend(root.path(), ProcessConfig::default()).await;
    let s = spec("orphans", "exec:///bin/sh", &["-c", "sleep 300 & exit 0"]);
    let info = b.deploy(s.clone()).await.expect("deploy");
    let exit = tokio::time::timeout(DEADLINE, b.wait(&s.name))
        .await
        .expect("exits")
        .expect("wait");
    assert_eq!(exit.code, Some(0));
    assert!(!exit.stopped_by_request);
    group_gone(pgid_of(&info)).await;
    b.remove(&s.name).await.expect("remove");
}

#[tokio::test]
async fn shutdown_stops_every_workload() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = backend(root.path(), ProcessConfig::default()).await;
    let names = ["all-a", "all-b", "all-c"];
    for n in names {
        b.deploy(spec(n, "exec:///bin/sleep", &["300"]))
            .await
            .expect("deploy");
    }
    b.shutdown().await;
    for info in b.list().await.expect("list") {
        match info.state {
            berth_runtime_api::RuntimeState::Exited(exit) => assert!(exit.stopped_by_request),
            other => panic!("{} is {other:?} after shutdown", info.name),
        }
    }
    b.stop_all().await;
    for n in names {
        b.remove(&WorkloadName::parse(n).expect("name"))
            .await
            .expect("remove");
    }
}

#[tokio::test]
async fn leftovers_of_a_killed_berth_are_reaped_on_start() {
    let root = tempfile::tempdir().expect("tempdir");
    let first = backend(root.path(), ProcessConfig::default()).await;
    let info = first
        .deploy(spec("left", "exec:///bin/sleep", &["300"]))
        .await
        .expect("deploy");
    let pgid = pgid_of(&info);
    assert!(
        root.path().join("pids/left.json").exists(),
        "pid record written"
    );
    // The first backend goes away without stopping anything, as a berth killed
    // with SIGKILL would.
    drop(first);
    assert_eq!(killpg(Pid::from_raw(pgid), None), Ok(()), "still running");

    let second = backend(root.path(), ProcessConfig::default()).await;
    group_gone(pgid).await;
    assert!(
        !root.path().join("pids/left.json").exists(),
        "record deleted"
    );
    assert!(second.list().await.expect("list").is_empty());
}

/// The pid a grandchild wrote to `file`, once it has.
async fn pid_in(file: &Path) -> i32 {
    wait::eventually(DEADLINE, "the grandchild wrote its pid", || async {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|pid: &i32| *pid != 0)
    })
    .await
}

/// Whether process `pid` runs (a zombie has ended).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s
            .rsplit(')')
            .next()
            .and_then(|r| r.trim_start().chars().next());
        !matches!(state, Some('Z' | 'X') | None)
    })
}

/// A workload that starts a grandchild in a session of its own (`setsid`):
/// outside the workload's process group, so a group signal misses it.
async fn deploy_escapee(b: &ProcessBackend, dir: &Path, name: &str) -> (WorkloadName, i32) {
    let file = dir.join(format!("{name}.pid"));
    let script = format!(
        "setsid sh -c 'echo $$ > {}; exec sleep 1000' & echo started; exec cat",
        file.display()
    );
    let s = spec(name, "exec:///bin/sh", &["-c", &script]);
    let info = b.deploy(s).await.expect("deploy");
    let mut io = b.attach(&info.name).await.expect("attach");
    assert_eq!(read_line(&mut io).await.trim(), "started");
    let gc = pid_in(&file).await;
    let pgrp = std::fs::read_to_string(format!("/proc/{gc}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()?
                .split_whitespace()
                .nth(2)?
                .parse::<i32>()
                .ok()
        })
        .expect("grandchild's group");
    assert_ne!(
        pgrp,
        pgid_of(&info),
        "the grandchild left the workload's group"
    );
    std::mem::forget(io);
    (info.name, gc)
}

async fn check_setsid_grandchild_is_stopped(cgroups: bool) {
    let root = tempfile::tempdir().expect("tempdir");
    let config = ProcessConfig {
        cgroups,
        stop_grace_secs: 2,
        ..ProcessConfig::default()
    };
    let b = backend(root.path(), config).await;
    if !cgroups {
        assert!(!b.tracks_with_cgroups());
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        // CI runs as root with a writable cgroup v2 hierarchy: the cgroup
        // path is the one exercised there.
        assert!(b.tracks_with_cgroups(), "CI must exercise cgroup tracking");
    }
    let (name, gc) = deploy_escapee(&b, root.path(), "escapee").await;
    assert!(running(gc));
    b.stop(&name).await.expect("stop");
    until("the grandchild is gone", || async { !running(gc) }).await;
    b.remove(&name).await.expect("remove");
}

#[tokio::test]
async fn a_stop_ends_grandchildren_that_called_setsid() {
    check_setsid_grandchild_is_stopped(true).await;
}

#[tokio::test]
async fn without_cgroups_a_stop_still_ends_setsid_grandchildren() {
    check_setsid_grandchild_is_stopped(false).await;
}

#[tokio::test]
async fn a_new_backend_kills_setsid_grandchildren_a_dead_one_left() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = backend(root.path(), ProcessConfig::default()).await;
    if !b.tracks_with_cgroups() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI must exercise cgroup tracking"
        );
        return;
    }
    let (_, gc) = deploy_escapee(&b, root.path(), "left").await;
    // berth dies without stopping anything (kill -9): the backend is
    // forgotten, its processes run on.
    std::mem::forget(b);
    assert!(running(gc));
    let _b = backend(root.path(), ProcessConfig::default()).await;
    until("the leftover grandchild is gone", || async { !running(gc) }).await;
}

async fn check_usage_covers_the_whole_tree(cgroups: bool) {
    let root = tempfile::tempdir().expect("tempdir");
    let config = ProcessConfig {
        cgroups,
        stop_grace_secs: 2,
        ..ProcessConfig::default()
    };
    let b = backend(root.path(), config).await;
    // A leader (`cat`), a busy child and a grandchild that left the group.
    let script = "(while :; do :; done) & setsid sleep 1000 & echo started; exec cat";
    let info = b
        .deploy(spec("usage", "exec:///bin/sh", &["-c", script]))
        .await
        .expect("deploy");
    let mut io = b.attach(&info.name).await.expect("attach");
    assert_eq!(read_line(&mut io).await.trim(), "started");
    let tree = if cgroups && b.tracks_with_cgroups() {
        3
    } else {
        2
    };
    let mut last = None;
    for _ in 0..100 {
        let u = b.usage(&info.name).await.expect("usage").expect("running");
        last = Some(u);
        if u.processes >= tree && u.cpu_seconds >= 0.2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let u = last.expect("measured");
    assert!(u.processes >= tree, "{u:?}");
    assert!(
        u.cpu_seconds >= 0.2,
        "the busy child's CPU is counted: {u:?}"
    );
    assert!(u.rss_bytes > 100 * 1024, "{u:?}");
    b.stop(&info.name).await.expect("stop");
    assert_eq!(b.usage(&info.name).await.expect("usage"), None, "stopped");
    b.remove(&info.name).await.expect("remove");
    assert!(matches!(
        b.usage(&info.name).await,
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test]
async fn usage_of_a_workload_covers_its_process_tree() {
    check_usage_covers_the_whole_tree(true).await;
}

#[tokio::test]
async fn usage_without_cgroups_covers_the_group_and_descendants() {
    check_usage_covers_the_whole_tree(false).await;
}
