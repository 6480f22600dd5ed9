//! Real AI clients read the files berth writes. The golden files of
//! `tests/golden/clients/<client>/` (which the golden harness,
//! `src/clients/golden.rs`, proves are berth's exact bytes) are put where
//! Claude Code, Codex and Gemini CLI read their configuration, in a
//! temporary HOME, and each client's own `mcp list` must list every server
//! berth wrote (with its URL and transport) and, in the user's file, the
//! user's own servers beside them.
//!
//! The clients are the npm packages, pinned below; `.ci/run` installs them
//! into [`DEFAULT_PREFIX`] (`BERTH_TEST_CLIENTS` names another npm prefix).
//! Without them the tests fail, they are never skipped. They run offline:
//! no login, no TTY, no stdin, `CI=true`, an empty environment apart from
//! what is set here (so no `CLAUDE_CONFIG_DIR`, `CODEX_HOME` or
//! `GEMINI_CLI_HOME` of the caller's redirects them), and a PATH holding
//! only `node` (a stdio server of the user's is then not started).
//!
//! Claude Code and Gemini CLI connect to every server they list: for them
//! the golden file is copied with the ports of berth's four URLs (and
//! nothing else) changed to a real MCP server on loopback
//! (`tests/fixtures/py_loopback_mcp.py`, streamable HTTP at `/mcp` and
//! `/v1/mcp`, SSE at `/sse`). Codex lists without connecting (it only
//! probes each URL for OAuth) and gets the golden bytes unchanged.

// Where the clients are, `node` and whether this is CI come from the
// environment.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::serve::{T, free_port};
use crate::support::eventually;

/// Where `.ci/run` installs the clients (`npm install --prefix`).
const DEFAULT_PREFIX: &str = "/opt/berth-test-clients";

/// How long one `mcp list` may take (a client waits at most a few seconds
/// for each server; the user's own remote server may not answer).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// One AI client from npm.
struct Client {
    /// berth's client id (the golden directory).
    id: &'static str,
    package: &'static str,
    /// The version `.ci/run` pins; the output formats below are its.
    version: &'static str,
    /// The command npm links into `node_modules/.bin`.
    bin: &'static str,
    /// Where it reads its MCP servers, relative to HOME.
    config: &'static str,
}

const CLAUDE_CODE: Client = Client {
    id: "claude-code",
    package: "@anthropic-ai/claude-code",
    version: "2.1.332",
    bin: "claude",
    config: ".claude.json",
};

const CODEX: Client = Client {
    id: "codex",
    package: "@openai/codex",
    version: "0.171.0",
    bin: "codex",
    config: ".codex/config.toml",
};

const GEMINI_CLI: Client = Client {
    id: "gemini-cli",
    package: "@google/gemini-cli",
    version: "0.61.0",
    bin: "gemini",
    config: ".gemini/settings.json",
};

const ALL: [&Client; 3] = [&CLAUDE_CODE, &CODEX, &GEMINI_CLI];

/// A server berth wrote into every golden file: `servers()` of
/// `src/clients/golden.rs`.
struct Written {
    name: &'static str,
    url: &'static str,
    /// Its proxy speaks the legacy SSE transport (else streamable HTTP).
    sse: bool,
}

const WRITTEN: [Written; 4] = [
    Written {
        name: "docs-remote",
        url: "http://127.0.0.1:23459/v1/mcp",
        sse: false,
    },
    Written {
        name: "events",
        url: "http://127.0.0.1:23457/sse#events",
        sse: true,
    },
    Written {
        name: "fetch",
        url: "http://127.0.0.1:23456/mcp",
        sse: false,
    },
    Written {
        name: "notes",
        url: "http://127.0.0.1:23458/mcp",
        sse: false,
    },
];

fn prefix() -> PathBuf {
    std::env::var_os("BERTH_TEST_CLIENTS")
        .map_or_else(|| PathBuf::from(DEFAULT_PREFIX), PathBuf::from)
}

/// The client's command, after checking that the pinned version is the one
/// installed. Panics with how to install it: the tests fail, never skip
/// (in CI and outside).
fn binary(client: &Client) -> PathBuf {
    let prefix = prefix();
    let bin = prefix.join("node_modules/.bin").join(client.bin);
    let manifest = prefix
        .join("node_modules")
        .join(client.package)
        .join("package.json");
    let installed = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    if is_executable(&bin) && installed.as_deref() == Some(client.version) {
        return bin;
    }
    let install = format!(
        "npm install --prefix {} {}",
        prefix.display(),
        ALL.map(|c| format!("{}@{}", c.package, c.version))
            .join(" ")
    );
    let found = match installed {
        Some(v) => format!("{}@{v} is installed", client.package),
        None => format!("{} is missing", bin.display()),
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but {found}, not {}@{}: .ci/run must install the AI clients \
             (`{install}`); the real-client tests fail rather than skip in CI",
            client.package, client.version
        );
    }
    panic!(
        "the real-client tests need {}@{} ({found}): install the clients with \
         `{install}` (about 1 GB), or set BERTH_TEST_CLIENTS to the npm prefix \
         that holds them",
        client.package, client.version
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `tests/golden/clients/<client>/<file>`.
fn golden(client: &Client, file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/clients")
        .join(client.id)
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A temporary HOME holding one client configuration file, a `bin`
/// directory with only `node` for PATH, and an empty working directory.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new(client: &Client, config: &str) -> Home {
        let dir = tempfile::Builder::new()
            .prefix("berth-real-client-")
            .tempdir()
            .expect("a temporary HOME");
        let file = dir.path().join(client.config);
        std::fs::create_dir_all(file.parent().expect("a parent")).expect("the config directory");
        std::fs::write(&file, config).expect("the config file");
        std::fs::create_dir(dir.path().join("bin")).expect("bin");
        std::fs::create_dir(dir.path().join("work")).expect("work");
        // Codex and Gemini CLI are started by `#!/usr/bin/env node`.
        let node = std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("node"))
                    .find(|p| is_executable(p))
            })
            .expect("`node` on PATH (the npm clients run on it)");
        std::os::unix::fs::symlink(node, dir.path().join("bin/node")).expect("link node");
        Home { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// What one run of a client printed.
struct Run {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn show(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `bin args` in `home` with nothing but `env` and the basics in its
/// environment, no stdin, and a deadline.
async fn run(bin: &Path, home: &Home, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(bin);
    command
        .args(args)
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", home.path().join("bin"))
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .env("TERM", "dumb")
        .env("LANG", "C.UTF-8")
        .envs(env.iter().copied())
        .current_dir(home.path().join("work"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} ran over {RUN_TIMEOUT:?}", bin.display()))
        .expect("the client's output");
    Run {
        success: out.status.success(),
        code: out.status.code(),
        stdout: plain(&out.stdout),
        stderr: plain(&out.stderr),
    }
}

/// The text without ANSI escape sequences (colours).
fn plain(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final byte (@ to ~).
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The golden file with the port of each of berth's URLs changed to
/// `port`, and berth's servers with those URLs. Each URL must be in the
/// file exactly once (as berth writes it: no escaped slashes).
fn at_loopback(text: &str, port: u16) -> (String, Vec<(&'static Written, String)>) {
    let mut text = text.to_owned();
    let mut urls = Vec::new();
    for w in &WRITTEN {
        assert_eq!(
            text.matches(w.url).count(),
            1,
            "{} should be written once in\n{text}",
            w.url
        );
        let old_port = w.url["http://127.0.0.1:".len()..]
            .split('/')
            .next()
            .expect("a port");
        let url = w.url.replacen(old_port, &port.to_string(), 1);
        text = text.replacen(w.url, &url, 1);
        urls.push((w, url));
    }
    (text, urls)
}

/// The real MCP server of `tests/fixtures/py_loopback_mcp.py` on a free
/// loopback port; killed on drop.
struct Loopback {
    child: tokio::process::Child,
    port: u16,
}

impl Loopback {
    async fn start() -> Loopback {
        let port = free_port();
        let child = tokio::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/py_loopback_mcp.py"
            ))
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs (pip install mcp)");
        let mut server = Loopback { child, port };
        eventually(T, "the loopback MCP server to listen", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(drop)
        })
        .await;
        assert!(
            server.child.try_wait().expect("its status").is_none(),
            "the loopback MCP server exited (is port {port} taken?)"
        );
        server
    }
}

/// A copy of `text` that no parser accepts (trailing `[` after a JSON
/// document; an unclosed TOML table header).
fn broken(text: &str) -> String {
    format!("{text}\n[")
}

/// The servers a listing names, `(name, the rest of its line)`, from the
/// lines `<marker><name>: <rest>`.
fn listed(text: &str, markers: &[&str]) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let rest = markers.iter().find_map(|m| line.strip_prefix(m))?;
            let (name, rest) = rest.split_once(": ")?;
            Some((name.to_owned(), rest.to_owned()))
        })
        .collect()
}

/// Every server listed for the user's file before berth's edits is listed
/// after them.
fn keeps_users_servers(client: &Client, before: &[(String, String)], after: &[(String, String)]) {
    assert!(
        !before.is_empty(),
        "{}: user.input should hold servers of the user's own",
        client.id
    );
    for (name, _) in before {
        assert!(
            after.iter().any(|(n, _)| n == name),
            "{}: the user's server {name} is not listed after berth's edits: {after:?}",
            client.id
        );
    }
}

// Claude Code: `claude mcp list` prints, on stdout,
//   Checking MCP server health…
//   <blank>
//   <name>: <url> (HTTP|SSE) - ✔ Connected
//   <name>: <command> <args> - ✘ Failed to connect — <why>
// and, for entries it skips, a section "MCP config diagnostics ⚠" with
// lines "[Warning] [<name>] mcpServers.<name>: Skipped — <why>". It exits
// 1 on a file that is not strict JSON (no comments, no trailing commas)
// and moves that file aside as corrupted.

/// Nothing but loopback: no update check, telemetry or error reports.
const CLAUDE_ENV: [(&str, &str); 5] = [
    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
    ("DISABLE_AUTOUPDATER", "1"),
    ("DISABLE_TELEMETRY", "1"),
    ("DISABLE_ERROR_REPORTING", "1"),
    // Milliseconds a server may take to connect.
    ("MCP_TIMEOUT", "10000"),
];

async fn claude_list(bin: &Path, config: &str) -> (Run, Vec<(String, String)>) {
    let home = Home::new(&CLAUDE_CODE, config);
    let out = run(bin, &home, &["mcp", "list"], &CLAUDE_ENV).await;
    assert!(
        out.success,
        "claude mcp list (Claude Code reads strict JSON only: no comments, no \
         trailing commas):\n{}",
        out.show()
    );
    let listing = out
        .stdout
        .split("MCP config diagnostics")
        .next()
        .unwrap_or_default();
    let servers = listed(listing, &[""]);
    (out, servers)
}

fn claude_checks(file: &str, text: &str, port: u16, out: &Run, servers: &[(String, String)]) {
    let (_, urls) = at_loopback(text, port);
    for (w, url) in urls {
        let kind = if w.sse { "SSE" } else { "HTTP" };
        let want = format!("{url} ({kind}) - ✔ Connected");
        assert!(
            servers.iter().any(|(n, rest)| n == w.name && *rest == want),
            "claude-code {file}: want `{}: {want}`\n{}",
            w.name,
            out.show()
        );
        assert!(
            !out.stdout.contains(&format!("[{}]", w.name)),
            "claude-code {file}: a diagnostic about {}\n{}",
            w.name,
            out.show()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_lists_and_connects_to_what_berth_wrote() {
    let bin = binary(&CLAUDE_CODE);
    let server = Loopback::start().await;
    let port = server.port;

    let empty = golden(&CLAUDE_CODE, "empty.expected");
    let (out, servers) = claude_list(&bin, &at_loopback(&empty, port).0).await;
    claude_checks("empty.expected", &empty, port, &out, &servers);
    assert!(
        !out.stdout.contains("MCP config diagnostics"),
        "claude-code empty.expected: diagnostics\n{}",
        out.show()
    );

    let input = golden(&CLAUDE_CODE, "user.input");
    let expected = golden(&CLAUDE_CODE, "user.expected");
    let (_, before) = claude_list(&bin, &input).await;
    let (out, after) = claude_list(&bin, &at_loopback(&expected, port).0).await;
    claude_checks("user.expected", &expected, port, &out, &after);
    keeps_users_servers(&CLAUDE_CODE, &before, &after);

    // It reads that very file: a broken copy is refused.
    let home = Home::new(&CLAUDE_CODE, &broken(&empty));
    let out = run(&bin, &home, &["mcp", "list"], &CLAUDE_ENV).await;
    assert!(
        !out.success,
        "claude accepted a broken file:\n{}",
        out.show()
    );
}

// Codex: `codex mcp list --json` prints on stdout a JSON array of
// `{"name", "enabled", "transport": {"type": "streamable_http", "url", …},
// "auth_status", …}` (without `--json`, a table: Name, Url, Bearer Token
// Env Var, Status, Auth). Its stderr warns that it will not create helper
// binaries under /tmp. A file that is not TOML, or a server with neither
// `url` nor `command`, makes it exit 1 ("failed to load bootstrap
// configuration"). Codex has no legacy SSE client: the SSE entry is
// listed as streamable HTTP at the `/sse` URL.

async fn codex_list(bin: &Path, file: &str, config: &str) -> (Run, Vec<Value>) {
    let home = Home::new(&CODEX, config);
    let out = run(bin, &home, &["mcp", "list", "--json"], &[]).await;
    assert!(out.success, "codex mcp list ({file}):\n{}", out.show());
    let servers: Vec<Value> = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("codex {file}: not a JSON array ({e}):\n{}", out.show()));
    (out, servers)
}

/// Name → URL of every server the real Codex lists from `config` (the text
/// of a `~/.codex/config.toml` berth wrote through its API).
pub(crate) async fn codex_reads(config: &str) -> std::collections::BTreeMap<String, String> {
    let bin = binary(&CODEX);
    let (_, servers) = codex_list(&bin, "berth's file", config).await;
    servers
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["transport"]["url"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

/// The servers berth writes for Codex: it has no SSE client, so the SSE
/// server is not written (`ClientDef::speaks_sse`).
fn codex_written() -> impl Iterator<Item = &'static Written> {
    WRITTEN.iter().filter(|w| !w.sse)
}

fn codex_checks(file: &str, out: &Run, servers: &[Value]) {
    assert!(
        !servers.iter().any(|s| s["name"] == "events"),
        "codex {file}: no SSE server is written for Codex\n{}",
        out.show()
    );
    for w in codex_written() {
        let found = servers.iter().find(|s| s["name"] == w.name);
        let ok = found.is_some_and(|s| {
            s["enabled"] == true
                && s["transport"]["type"] == "streamable_http"
                && s["transport"]["url"] == w.url
        });
        assert!(
            ok,
            "codex {file}: want {} enabled, streamable_http at {}, got {found:?}\n{}",
            w.name,
            w.url,
            out.show()
        );
    }
}

fn names(servers: &[Value]) -> Vec<(String, String)> {
    servers
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s.to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_lists_what_berth_wrote() {
    let bin = binary(&CODEX);

    let empty = golden(&CODEX, "empty.expected");
    let (out, servers) = codex_list(&bin, "empty.expected", &empty).await;
    codex_checks("empty.expected", &out, &servers);
    assert_eq!(
        servers.len(),
        codex_written().count(),
        "codex: {}",
        out.show()
    );

    let (_, before) = codex_list(&bin, "user.input", &golden(&CODEX, "user.input")).await;
    let expected = golden(&CODEX, "user.expected");
    let (out, after) = codex_list(&bin, "user.expected", &expected).await;
    codex_checks("user.expected", &out, &after);
    keeps_users_servers(&CODEX, &names(&before), &names(&after));

    let home = Home::new(&CODEX, &broken(&empty));
    let out = run(&bin, &home, &["mcp", "list", "--json"], &[]).await;
    assert!(
        !out.success,
        "codex accepted a broken file:\n{}",
        out.show()
    );
}

// Gemini CLI: `gemini mcp list` prints, on stderr,
//   Configured MCP servers:
//   <blank>
//   ✓ <name>: <url> (http) - Connected
//   ✗ <name>: <url> (http) - Disconnected
//   ✗ <name>: <command> <args> (stdio) - Disconnected
// An untrusted working directory shows every server "○ … - Disabled"
// without connecting; GEMINI_CLI_TRUST_WORKSPACE=true trusts it. Entries
// its schema rejects are reported ("Invalid configuration in …: Error in:
// mcpServers.<name>") and still listed, exit 0; a file that is not JSON
// with comments (a trailing comma) exits 52.
//
// For a `url` without `type` (berth's SSE entry) the list shows "(http)"
// and its check tries streamable HTTP only, so it cannot connect to an
// SSE endpoint; a session falls back to SSE after the streamable-HTTP
// attempt fails. The SSE entry is therefore checked for being listed with
// its URL, not for its state.

fn gemini_env(home: &Home) -> Vec<(&'static str, String)> {
    let none = home.path().join("none");
    vec![
        ("GEMINI_CLI_TRUST_WORKSPACE", "true".into()),
        // No second node process with a larger heap.
        ("GEMINI_CLI_NO_RELAUNCH", "true".into()),
        ("GEMINI_TELEMETRY_ENABLED", "false".into()),
        // Nothing from /etc/gemini-cli.
        (
            "GEMINI_CLI_SYSTEM_SETTINGS_PATH",
            none.join("settings.json").display().to_string(),
        ),
        (
            "GEMINI_CLI_SYSTEM_DEFAULTS_PATH",
            none.join("defaults.json").display().to_string(),
        ),
    ]
}

async fn gemini_run(bin: &Path, config: &str) -> Run {
    let home = Home::new(&GEMINI_CLI, config);
    let env = gemini_env(&home);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run(bin, &home, &["mcp", "list"], &env).await
}

async fn gemini_list(bin: &Path, file: &str, config: &str) -> (Run, Vec<(String, String)>) {
    let out = gemini_run(bin, config).await;
    assert!(
        out.success,
        "gemini mcp list ({file}; Gemini CLI reads JSON with comments, but no \
         trailing commas):\n{}",
        out.show()
    );
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let servers = listed(&text, &["✓ ", "✗ ", "○ ", "⛔ ", "… "]);
    (out, servers)
}

fn gemini_checks(file: &str, text: &str, port: u16, out: &Run, servers: &[(String, String)]) {
    let (_, urls) = at_loopback(text, port);
    for (w, url) in urls {
        let found = servers.iter().find(|(n, _)| n == w.name);
        let ok = found.is_some_and(|(_, rest)| {
            if w.sse {
                rest.starts_with(&format!("{url} (http) - "))
            } else {
                *rest == format!("{url} (http) - Connected")
            }
        });
        assert!(
            ok,
            "gemini-cli {file}: {} at {url} (connected unless SSE), got {found:?}\n{}",
            w.name,
            out.show()
        );
        assert!(
            !out.stderr.contains(&format!("mcpServers.{}", w.name)),
            "gemini-cli {file}: its schema refuses {}\n{}",
            w.name,
            out.show()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_cli_lists_and_connects_to_what_berth_wrote() {
    let bin = binary(&GEMINI_CLI);
    let server = Loopback::start().await;
    let port = server.port;

    let empty = golden(&GEMINI_CLI, "empty.expected");
    let (out, servers) = gemini_list(&bin, "empty.expected", &at_loopback(&empty, port).0).await;
    gemini_checks("empty.expected", &empty, port, &out, &servers);
    assert!(
        !out.stderr.contains("Invalid configuration"),
        "gemini-cli empty.expected:\n{}",
        out.show()
    );

    let input = golden(&GEMINI_CLI, "user.input");
    let expected = golden(&GEMINI_CLI, "user.expected");
    let (_, before) = gemini_list(&bin, "user.input", &input).await;
    let (out, after) = gemini_list(&bin, "user.expected", &at_loopback(&expected, port).0).await;
    gemini_checks("user.expected", &expected, port, &out, &after);
    keeps_users_servers(&GEMINI_CLI, &before, &after);

    let out = gemini_run(&bin, &broken(&empty)).await;
    assert!(
        !out.success,
        "gemini accepted a broken file:\n{}",
        out.show()
    );
}
