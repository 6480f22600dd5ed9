//! Restart of the container engine under a running workload (issue 4):
//! while the engine is down berth says so (the workload is not `running`,
//! its context and `/health` name the unreachable engine), and within 30 s
//! of the engine's return the same proxy URL answers again. A native
//! workload of the same berth runs and answers throughout (issue 10).
//!
//! Each test brings up its own engine instance, so that killing it disturbs
//! nothing else on the machine: a second `dockerd` (own data root, exec root,
//! pid file, socket and containerd, in a network namespace of its own; no
//! bridge, no iptables changes) or a
//! second `podman system service` on its own socket (shared storage, a
//! workload name unique to the test). Features `docker-tests` /
//! `podman-tests`; they fail, never skip, when an engine binary or the test
//! image is missing. The Docker test needs root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::containers::{IMAGE, cli};
use crate::serve::{Berth, T, free_port};
use crate::support::eventually;
use crate::support::mcp::Session;

/// How soon after the engine is back the workload must answer again.
const RECOVERY: Duration = Duration::from_secs(30);

/// How long the test keeps the engine down once berth has noticed, checking
/// that the status stays honest all along.
const OUTAGE: Duration = Duration::from_secs(3);

/// An engine instance of this test; killed, its containers removed and its
/// directory cleaned up on drop, also after a panic.
struct Engine {
    kind: &'static str,
    /// Short (Unix socket paths are limited to 108 bytes) and under `/tmp`.
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The workload's container, for the Podman cleanup.
    container: String,
}

impl Engine {
    fn new(kind: &'static str, container: String) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-er-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        std::fs::write(dir.path().join("daemon.json"), "{}").expect("daemon.json");
        let mut engine = Self {
            kind,
            dir,
            child: None,
            container,
        };
        engine.start();
        engine
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn socket_path(&self) -> PathBuf {
        self.path().join(format!("{}.sock", self.kind))
    }

    /// The socket as berth's configuration and the CLI take it.
    fn socket(&self) -> String {
        format!("unix://{}", self.socket_path().display())
    }

    /// The CLI pointed at this instance.
    fn cli(&self) -> Command {
        let mut cmd = Command::new(self.kind);
        match self.kind {
            "docker" => cmd.args(["-H", &self.socket()]),
            _ => cmd.args(["--url", &self.socket()]),
        };
        cmd
    }

    fn answers(&self) -> bool {
        self.cli()
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts the engine and waits until it answers.
    fn start(&mut self) {
        assert!(self.child.is_none(), "the engine runs already");
        let _ = std::fs::remove_file(self.socket_path());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("engine.log"))
            .expect("engine log");
        let dir = self.path().display().to_string();
        let mut cmd = match self.kind {
            "docker" => {
                // In a network namespace of its own: a dockerd with
                // `--bridge=none` deletes the host's `docker0`, which the
                // machine's own dockerd (and every other test) needs.
                let mut c = Command::new("unshare");
                c.args([
                    "--net",
                    "--",
                    "dockerd",
                    "--config-file",
                    &format!("{dir}/daemon.json"),
                    "--data-root",
                    &format!("{dir}/data"),
                    "--exec-root",
                    &format!("{dir}/exec"),
                    "--pidfile",
                    &format!("{dir}/docker.pid"),
                    "-H",
                    &self.socket(),
                    "--bridge=none",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--ip-masq=false",
                ]);
                c
            }
            _ => {
                let mut c = Command::new("podman");
                c.args(["system", "service", "--time=0", &self.socket()]);
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting the test's own {} engine: {e}", self.kind));
        self.child = Some(child);
        let deadline = Instant::now() + T;
        while !self.answers() {
            if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "the test's {} engine exited ({status}):\n{}",
                    self.kind,
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the test's {} engine does not answer at {} after {T:?}:\n{}",
                self.kind,
                self.socket(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the engine process with SIGKILL, like a crash.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("the engine runs");
        child.kill().expect("kill the engine");
        child.wait().expect("reap the engine");
    }

    /// Copies the test image from the machine's engine into this one.
    fn load_image(&self) {
        let mut save = Command::new("docker")
            .args(["save", IMAGE])
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker save");
        let out = self
            .cli()
            .arg("load")
            .stdin(save.stdout.take().expect("pipe"))
            .output()
            .expect("docker load");
        assert!(
            save.wait().expect("docker save").success(),
            "docker save {IMAGE}"
        );
        assert!(
            out.status.success(),
            "docker load: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.path().join("engine.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn cleanup_docker(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Every container of this engine is the test's.
            if let Ok(out) = self.cli().args(["ps", "-aq"]).output() {
                for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = self.cli().args(["rm", "-f", id]).output();
                }
            }
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Shims (and their containers) left by a killed engine name its
        // directory on their command line.
        let dir = self.path().display().to_string();
        for pid in pids_mentioning(&dir) {
            for child in children_of(&pid) {
                let _ = Command::new("kill").args(["-KILL", &child]).status();
            }
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        // dockerd mounts its data root (and network namespaces under its
        // exec root); unmount everything below the directory, deepest first.
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|m| m.starts_with(&dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
    }

    fn cleanup_podman(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The storage is the machine's: remove the test's container with the
        // local CLI (the service is gone).
        let _ = Command::new("podman")
            .args(["rm", "-f", "--ignore", &self.container])
            .output();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {} engine log (tail) ---\n{}",
                self.kind,
                self.log_tail()
            );
        }
        match self.kind {
            "docker" => self.cleanup_docker(),
            _ => self.cleanup_podman(),
        }
    }
}

/// Processes whose command line contains `needle`.
fn pids_mentioning(needle: &str) -> Vec<String> {
    let mut pids = Vec::new();
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(needle)
        {
            pids.push(pid);
        }
    }
    pids
}

/// The direct children of process `pid`.
fn children_of(pid: &str) -> Vec<String> {
    let mut kids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may contain spaces.
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1));
        if ppid == Some(pid) {
            kids.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    kids
}

/// The workload's status and status context, from the list.
async fn status_of(b: &Berth, name: &str) -> (String, String) {
    let (code, list) = b
        .req(reqwest::Method::GET, "/workloads?all=true", None)
        .await;
    assert_eq!(code, 200, "{list}");
    let list: Value = serde_json::from_str(&list).expect("json");
    let w = list["workloads"]
        .as_array()
        .expect("array")
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("{name} listed: {list}"))
        .clone();
    (
        w["status"].as_str().expect("status").to_owned(),
        w["status_context"].as_str().unwrap_or("").to_owned(),
    )
}

async fn health(b: &Berth) -> (u16, String) {
    let resp = reqwest::get(format!("{}/health", b.base))
        .await
        .expect("health");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

async fn scenario(kind: &'static str) {
    cli(kind, &["image", "inspect", IMAGE]);
    let started = Instant::now();
    // The Podman instance shares the machine's storage: a name of its own.
    let name = format!("er-{kind}-{}", std::process::id());
    let mut engine = Engine::new(kind, format!("berth-{name}"));
    if kind == "docker" {
        engine.load_image();
    }
    let root = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "runtime = \"{kind}\"\n[{kind}]\nsocket = \"{}\"\n",
        engine.socket()
    );
    let b = Berth::start_with(root.path(), free_port(), &config).await;
    let _log = BerthLog(root.path().join("berth.log"));

    let (code, body) = b
        .post("/workloads", json!({"name": name, "image": IMAGE}))
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status(&name, "running").await;
    let url = crate::containers::url_of(&b, &name).await;
    let session = Session::open(&url).await.expect("a session");
    assert_eq!(
        session.echo(1, "before").await.as_deref(),
        Ok("echo: before")
    );
    assert_eq!(health(&b).await.0, 204);
    // Beside it, on the same berth, a native workload: `exec://` runs as a
    // process whatever the default runtime is.
    let native = format!("{name}-native");
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": native, "image": crate::proxy::mcp_echo()}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status(&native, "running").await;
    let (code, listed) = b
        .req(reqwest::Method::GET, &format!("/workloads/{native}"), None)
        .await;
    assert_eq!(code, 200, "{listed}");
    assert!(listed.contains("\"runtime\":\"process\""), "{listed}");
    let native_url = crate::containers::url_of(&b, &native).await;
    let native_session = Session::open(&native_url).await.expect("a native session");
    assert_eq!(
        native_session.echo(1, "native").await.as_deref(),
        Ok("echo: native")
    );

    // The engine crashes.
    engine.kill();
    let down = Instant::now();
    let (status, context) = eventually(T, "berth to notice the engine is gone", || async {
        let (s, c) = status_of(&b, &name).await;
        (s != "running").then_some((s, c))
    })
    .await;
    let noticed = down.elapsed();
    let honest = |s: &str, c: &str| {
        ["starting", "unhealthy"].contains(&s) && c.contains(&format!("`{kind}` is unavailable"))
    };
    assert!(
        honest(&status, &context),
        "status while the engine is down: {status}: {context}"
    );
    eprintln!("{kind}: noticed after {noticed:?}: {status}: {context}");
    let (code, why) = health(&b).await;
    assert_eq!(code, 503, "/health while the engine is down: {why}");
    assert!(why.contains(kind), "{why}");

    // A call on the open session while the engine is down waits for the
    // server's return instead of failing (Docker); on Podman, which has no
    // daemon, the container and berth's stdio relay in it run on without
    // the API service, and the call is answered meanwhile.
    let held = {
        let session = session.clone();
        tokio::spawn(async move { session.echo(2, "held").await })
    };

    // The status stays honest for as long as the engine is down.
    let until = Instant::now() + OUTAGE;
    while Instant::now() < until {
        let (s, c) = status_of(&b, &name).await;
        assert!(honest(&s, &c), "{s} ({c}) while the engine is down");
        assert_eq!(health(&b).await.0, 503);
        // The native workload does not depend on the engine.
        assert_eq!(status_of(&b, &native).await.0, "running");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        native_session.echo(2, "still here").await.as_deref(),
        Ok("echo: still here"),
        "the native workload answers while the engine is down"
    );
    let held = if kind == "podman" {
        let answer = tokio::time::timeout(T, held).await.expect("answered");
        assert_eq!(
            answer.expect("join").as_deref(),
            Ok("echo: held"),
            "the call made during the outage"
        );
        None
    } else {
        assert!(!held.is_finished(), "the held call was answered: {held:?}");
        Some(held)
    };

    // The clock runs from the restart command: Docker 20.10 without
    // live-restore first stops the containers that outlived it (up to their
    // 10 s stop timeout) and only then serves its API.
    let restart = Instant::now();
    engine.start();
    let up = restart.elapsed();
    // The session opened before the crash answers again: sessions belong to
    // berth's proxy, not to the server process, and the proxy replays the
    // cached handshake to the new server (a new container: the old one did
    // not survive the engine's restart).
    let answer = eventually(RECOVERY, "the same session to answer again", || async {
        session.echo(3, "after").await.ok()
    })
    .await;
    let recovered = restart.elapsed();
    assert_eq!(answer, "echo: after");
    if let Some(held) = held {
        assert_eq!(
            held.await.expect("join").as_deref(),
            Ok("echo: held"),
            "the call made during the outage"
        );
    }
    let fresh = Session::open(&url).await.expect("a new session");
    assert_eq!(fresh.echo(1, "new").await.as_deref(), Ok("echo: new"));
    // berth retries an unreachable engine at most 5 s apart.
    eventually(RECOVERY, "the workload to be `running` again", || async {
        (status_of(&b, &name).await.0 == "running").then_some(())
    })
    .await;
    assert_eq!(health(&b).await.0, 204);
    eprintln!(
        "{kind}: engine down {:?} (its start took {up:?}); the workload answered {recovered:?} after the restart command",
        restart - down
    );

    for w in [&name, &native] {
        let (code, _) = b
            .req(reqwest::Method::DELETE, &format!("/workloads/{w}"), None)
            .await;
        assert_eq!(code, 202);
    }
    eventually(T, "the workloads to be deleted", || async {
        let (_, list) = b
            .req(reqwest::Method::GET, "/workloads?all=true", None)
            .await;
        // Both names start with `name`.
        (!list.contains(&format!("\"{name}"))).then_some(())
    })
    .await;
    drop(b);
    drop(engine);
    eprintln!("{kind}: whole test {:?}", started.elapsed());
}

/// Prints berth's log when the test fails.
struct BerthLog(PathBuf);

impl Drop for BerthLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- berth log (tail) ---\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

#[cfg(feature = "docker-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_engine_restart() {
    scenario("docker").await;
}

#[cfg(feature = "podman-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_engine_restart() {
    scenario("podman").await;
}
