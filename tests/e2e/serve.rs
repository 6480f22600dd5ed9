//! `berth serve` as a user runs it: real processes, real signals, kill -9.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::eventually;

pub(crate) const T: Duration = Duration::from_secs(20);

pub(crate) struct Berth {
    pub(crate) child: Child,
    pub(crate) base: String,
    root: PathBuf,
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub(crate) fn berth_cmd(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.env("XDG_STATE_HOME", root.join("state"))
        .env("XDG_CONFIG_HOME", root.join("config"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(root.join("berth.log"))
                .expect("log file"),
        ));
    cmd
}

impl Berth {
    /// Starts berth with `toml` as its configuration file.
    pub(crate) async fn start_with(root: &Path, port: u16, toml: &str) -> Self {
        let dir = root.join("config/berth");
        std::fs::create_dir_all(&dir).expect("config dir");
        std::fs::write(dir.join("berth.toml"), toml).expect("config");
        let runtime = if toml.contains("runtime =") {
            None
        } else {
            Some("process")
        };
        Self::launch(root, port, runtime).await
    }

    /// Starts berth on the process runtime.
    pub(crate) async fn start(root: &Path, port: u16) -> Self {
        Self::launch(root, port, Some("process")).await
    }

    /// Starts berth on the process runtime with extra environment variables.
    pub(crate) async fn start_env(root: &Path, port: u16, env: &[(&str, &str)]) -> Self {
        Self::launch_env(root, port, Some("process"), env).await
    }

    async fn launch(root: &Path, port: u16, runtime: Option<&str>) -> Self {
        Self::launch_env(root, port, runtime, &[]).await
    }

    async fn launch_env(
        root: &Path,
        port: u16,
        runtime: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        Self::launch_args(root, port, runtime, &[], env).await
    }

    /// Starts berth with extra `serve` arguments and environment variables.
    pub(crate) async fn launch_args(
        root: &Path,
        port: u16,
        runtime: Option<&str>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut args = vec!["serve".to_owned(), "--port".to_owned(), port.to_string()];
        if let Some(r) = runtime {
            args.extend(["--runtime".to_owned(), r.to_owned()]);
        }
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let child = berth_cmd(root)
            .args(&args)
            .envs(env.iter().copied())
            .spawn()
            .expect("spawn berth");
        let b = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            root: root.to_owned(),
        };
        eventually(T, "berth to be healthy", || async {
            let r = reqwest::get(format!("{}/health", b.base)).await.ok()?;
            (r.status() == 204).then_some(())
        })
        .await;
        b
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.root.join("state/berth")
    }

    pub(crate) async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let c = reqwest::Client::new();
        let mut r = c.request(method, format!("{}/api/v1beta{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("request");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, String) {
        self.req(reqwest::Method::POST, path, Some(body)).await
    }

    async fn status(&self, name: &str) -> Option<String> {
        let (code, body) = self
            .req(
                reqwest::Method::GET,
                &format!("/workloads/{name}/status"),
                None,
            )
            .await;
        (code == 200).then(|| {
            serde_json::from_str::<Value>(&body).expect("json")["status"]
                .as_str()
                .expect("s")
                .to_owned()
        })
    }

    pub(crate) async fn wait_status(&self, name: &str, want: &str) {
        eventually(T, &format!("{name} to be {want}"), || async {
            (self.status(name).await.as_deref() == Some(want)).then_some(())
        })
        .await;
    }

    /// Processes whose working directory lies in this berth's state: its
    /// workloads.
    pub(crate) fn workload_pids(&self) -> Vec<u32> {
        let work = self.state().join("process/work");
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc") {
            let entry = entry.expect("entry");
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
                && cwd.starts_with(&work)
                && !is_zombie(pid)
            {
                pids.push(pid);
            }
        }
        pids
    }

    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

impl Drop for Berth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn cat_workload_lifecycle_and_no_orphans() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start(root.path(), free_port()).await;

    let resp = reqwest::get(format!("{}/api/v1beta/version", b.base))
        .await
        .expect("version");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["runtime"], "process");

    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": "t1", "image": "exec:///bin/cat", "transport": "stdio"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let created: Value = serde_json::from_str(&body).expect("json");
    let port = created["port"].as_u64().expect("port");
    b.wait_status("t1", "running").await;
    let (_, list) = b.req(reqwest::Method::GET, "/workloads", None).await;
    let list: Value = serde_json::from_str(&list).expect("json");
    assert_eq!(
        list["workloads"][0]["url"],
        format!("http://127.0.0.1:{port}/mcp")
    );
    assert_eq!(b.workload_pids().len(), 1, "one cat runs");

    assert_eq!(b.post("/workloads/t1/stop", json!({})).await.0, 202);
    b.wait_status("t1", "stopped").await;
    assert!(b.workload_pids().is_empty(), "stop leaves no process");
    assert_eq!(b.post("/workloads/t1/restart", json!({})).await.0, 202);
    b.wait_status("t1", "running").await;

    let (code, _) = b
        .req(reqwest::Method::GET, "/workloads/t1/logs", None)
        .await;
    assert_eq!(code, 200);
    let (code, export) = b
        .req(reqwest::Method::GET, "/workloads/t1/export", None)
        .await;
    assert_eq!(code, 200);
    let export: Value = serde_json::from_str(&export).expect("json");
    assert_eq!(export["image"], "exec:///bin/cat");

    let (code, _) = b.req(reqwest::Method::DELETE, "/workloads/t1", None).await;
    assert_eq!(code, 202);
    eventually(T, "t1 to be gone", || async {
        (b.req(reqwest::Method::GET, "/workloads/t1", None).await.0 == 404).then_some(())
    })
    .await;
    assert!(
        b.workload_pids().is_empty(),
        "delete leaves no orphan process"
    );

    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": "oci", "image": "ghcr.io/example/x:1"}),
        )
        .await;
    assert_eq!(code, 400);
    assert!(body.contains("npx://"), "{body}");
}

#[tokio::test]
async fn process_exit_is_reported() {
    let root = tempfile::tempdir().expect("tempdir");
    let policy = "[restart]\nbase_delay_ms = 20\nmax_attempts = 1\n";
    let b = Berth::start_with(root.path(), free_port(), policy).await;
    let (code, _) = b
        .post("/workloads", json!({"name": "x", "image": "exec:///bin/sh", "cmd_arguments": ["-c", "echo bye >&2; exit 7"]}))
        .await;
    assert_eq!(code, 201);
    b.wait_status("x", "error").await;
    let (_, list) = b
        .req(reqwest::Method::GET, "/workloads?all=true", None)
        .await;
    let list: Value = serde_json::from_str(&list).expect("json");
    assert_eq!(
        list["workloads"][0]["status_context"],
        "process exited with code 7; gave up after 1 restarts in a row"
    );
    assert_eq!(list["workloads"][0]["restart_count"], 1);
    let (_, logs) = b.req(reqwest::Method::GET, "/workloads/x/logs", None).await;
    assert!(logs.contains("bye"), "stderr is in the logs: {logs:?}");
}

#[tokio::test]
async fn kill_9_then_restart_brings_everything_back() {
    let root = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut b = Berth::start(root.path(), port).await;
    for n in ["k1", "k2", "k3"] {
        let (code, body) = b
            .post(
                "/workloads",
                json!({"name": n, "image": "exec:///bin/cat", "env_vars": {"WHO": n}}),
            )
            .await;
        assert_eq!(code, 201, "{body}");
    }
    for n in ["k1", "k2", "k3"] {
        b.wait_status(n, "running").await;
    }
    let (_, before) = b.req(reqwest::Method::GET, "/workloads", None).await;
    b.signal("-KILL");
    let _ = b.child.wait();
    drop(b);

    let b = Berth::start(root.path(), port).await;
    for n in ["k1", "k2", "k3"] {
        b.wait_status(n, "running").await;
    }
    let (_, after) = b.req(reqwest::Method::GET, "/workloads", None).await;
    let strip = |s: &str| -> Vec<(Value, Value, Value)> {
        let v: Value = serde_json::from_str(s).expect("json");
        v["workloads"]
            .as_array()
            .expect("a")
            .iter()
            .map(|w| (w["name"].clone(), w["port"].clone(), w["url"].clone()))
            .collect()
    };
    assert_eq!(
        strip(&before),
        strip(&after),
        "same workloads, ports and URLs"
    );
    let (_, export) = b
        .req(reqwest::Method::GET, "/workloads/k2/export", None)
        .await;
    assert!(
        export.contains("\"WHO\":\"k2\""),
        "configuration kept: {export}"
    );
    eventually(T, "exactly three workload processes", || async {
        (b.workload_pids().len() == 3).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_children_and_exits_cleanly() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut b = Berth::start(root.path(), free_port()).await;
    b.post("/workloads", json!({"name": "g1", "image": "exec:///bin/sh", "cmd_arguments": ["-c", "trap '' TERM; sleep 300 & cat"]}))
        .await;
    b.post(
        "/workloads",
        json!({"name": "g2", "image": "exec:///bin/cat"}),
    )
    .await;
    b.wait_status("g1", "running").await;
    b.wait_status("g2", "running").await;
    eventually(T, "children up", || async {
        (b.workload_pids().len() >= 3).then_some(())
    })
    .await;
    b.signal("-TERM");
    let status = tokio::task::block_in_place(|| b.child.wait()).expect("wait");
    let log = || std::fs::read_to_string(b.root.join("berth.log")).unwrap_or_default();
    assert!(
        status.success(),
        "berth exits 0 on SIGTERM: {status:?}\n{}",
        log()
    );
    // Killed processes may take a moment to leave /proc.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !b.workload_pids().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        b.workload_pids().is_empty(),
        "no child left: {:?}\n{}",
        b.workload_pids(),
        log()
    );
}

#[tokio::test]
async fn unix_socket_and_remote_bind_refusal() {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let root = tempfile::tempdir().expect("tempdir");
    let sock = root.path().join("berth.sock");
    let mut child = berth_cmd(root.path())
        .args(["serve", "--runtime", "process", "--socket"])
        .arg(&sock)
        .spawn()
        .expect("spawn");
    let resp = eventually(T, "socket answers", || async {
        let mut s = tokio::net::UnixStream::connect(&sock).await.ok()?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    })
    .await;
    assert!(resp.starts_with("HTTP/1.1 204"), "{resp}");
    let mode = std::fs::metadata(&sock)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let _ = child.kill();
    let _ = child.wait();

    let out = berth_cmd(root.path())
        .args([
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            &free_port().to_string(),
        ])
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-allow-remote"));
}

#[tokio::test]
async fn npx_server_everything_runs() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start(root.path(), free_port()).await;
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": "everything", "image": "npx://@modelcontextprotocol/server-everything"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status("everything", "running").await;
    // The server announces itself on stderr once node has loaded it; npx may
    // first have to fetch the package.
    let logs = eventually(
        Duration::from_secs(120),
        "server-everything to log its start",
        || async {
            let (_, logs) = b
                .req(reqwest::Method::GET, "/workloads/everything/logs", None)
                .await;
            (!logs.trim().is_empty()).then_some(logs)
        },
    )
    .await;
    assert_eq!(
        b.status("everything").await.as_deref(),
        Some("running"),
        "logs: {logs}"
    );
    assert!(!b.workload_pids().is_empty());
}

#[tokio::test]
async fn a_bulk_delete_answered_202_survives_kill_9() {
    let root = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // Servers that ignore SIGTERM: each stop takes the whole grace period,
    // so berth is killed while the deletes are still in progress.
    let toml = "[process]\nstop_grace_secs = 60\n";
    let mut b = Berth::start_with(root.path(), port, toml).await;
    let names = ["d1", "d2", "d3"];
    for n in names {
        let (code, body) = b
            .post(
                "/workloads",
                json!({"name": n, "image": "exec:///bin/sh",
                       "cmd_arguments": ["-c", "trap '' TERM; exec cat"]}),
            )
            .await;
        assert_eq!(code, 201, "{body}");
    }
    for n in names {
        b.wait_status(n, "running").await;
    }
    let (code, body) = b.post("/workloads/delete", json!({"names": names})).await;
    assert_eq!(code, 202, "{body}");
    b.signal("-KILL");
    let _ = b.child.wait();
    drop(b);

    let b = Berth::start_with(root.path(), port, toml).await;
    eventually(T, "the accepted deletes to finish", || async {
        let (code, list) = b
            .req(reqwest::Method::GET, "/workloads?all=true", None)
            .await;
        let list: Value = serde_json::from_str(&list).expect("json");
        (code == 200 && list["workloads"] == json!([])).then_some(())
    })
    .await;
    eventually(T, "no workload process left", || async {
        b.workload_pids().is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn unusable_stored_configurations_are_errors_and_the_others_run() {
    let root = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let b = Berth::start(root.path(), port).await;
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": "good", "image": "exec:///bin/cat"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status("good", "running").await;
    let state = b.state();
    drop(b);

    // Hand-edited state: garbage, and a configuration that names another
    // workload (it must never deploy as `good`).
    let dir = state.join("runconfigs");
    let good = std::fs::read_to_string(dir.join("good.json")).expect("good");
    std::fs::write(
        dir.join("garbage.json"),
        "{\"name\": \"garbage\", \"image\": [",
    )
    .expect("write");
    std::fs::write(dir.join("liar.json"), &good).expect("write");
    // Well-formed JSON with a value no workload can have.
    let mut odd: Value = serde_json::from_str(&good).expect("json");
    odd["name"] = json!("odd");
    odd["transport"] = json!("carrier-pigeon");
    std::fs::write(dir.join("odd.json"), odd.to_string()).expect("write");

    let b = Berth::start(root.path(), port).await;
    b.wait_status("good", "running").await;
    b.wait_status("garbage", "error").await;
    b.wait_status("liar", "error").await;
    b.wait_status("odd", "error").await;
    let (_, list) = b
        .req(reqwest::Method::GET, "/workloads?all=true", None)
        .await;
    let list: Value = serde_json::from_str(&list).expect("json");
    let context = |n: &str| {
        list["workloads"]
            .as_array()
            .expect("workloads")
            .iter()
            .find(|w| w["name"] == n)
            .map(|w| w["status_context"].as_str().unwrap_or("").to_owned())
            .expect("listed")
    };
    assert!(context("garbage").contains("cannot be read"), "{list}");
    assert!(context("liar").contains("\"good\""), "{list}");
    assert!(
        context("odd").contains("transport") && context("odd").contains("carrier-pigeon"),
        "{list}"
    );
    assert_eq!(b.workload_pids().len(), 1, "only `good` runs");
    // A restart request does not run it either.
    let (code, _) = b.post("/workloads/liar/restart", json!({})).await;
    assert_eq!(code, 202);
    b.wait_status("liar", "error").await;
    assert_eq!(b.workload_pids().len(), 1, "only `good` runs");
    // An edit repairs it; a delete removes the other.
    let (code, body) = b
        .post("/workloads/liar/edit", json!({"image": "exec:///bin/cat"}))
        .await;
    assert_eq!(code, 200, "{body}");
    b.wait_status("liar", "running").await;
    let (code, _) = b
        .req(reqwest::Method::DELETE, "/workloads/garbage", None)
        .await;
    assert_eq!(code, 202);
    eventually(T, "garbage to be deleted", || async {
        (!dir.join("garbage.json").exists()).then_some(())
    })
    .await;
}
