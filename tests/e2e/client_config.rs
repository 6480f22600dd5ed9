//! Client configuration end to end: the `berth` binary edits the files of
//! the MCP clients registered with a group, in a temporary home, as the
//! group's workloads start, restart and go, and repairs a hand edit made
//! while it was stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::serve::{Berth, T, free_port};
use crate::support::eventually;

/// Name → URL of every server in VS Code's file (`servers`, JSONC).
fn vscode_servers(home: &Path) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(home.join(".config/Code/User/mcp.json")).ok()?;
    let value = jsonc_parser::cst::CstRootNode::parse(&text, &Default::default())
        .expect("VS Code's file stays valid JSONC")
        .to_serde_value()?;
    Some(
        value["servers"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v["url"].as_str().unwrap_or("").to_owned()))
            .collect(),
    )
}

/// Name → URL of every server in Codex's file (`[mcp_servers.<name>]`).
fn codex_servers(home: &Path) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(home.join(".codex/config.toml")).ok()?;
    let doc: toml_edit::DocumentMut = text.parse().expect("Codex's file stays valid TOML");
    Some(
        doc.get("mcp_servers")?
            .as_table_like()?
            .iter()
            .map(|(k, v)| {
                let url = v
                    .as_table_like()
                    .and_then(|t| t.get("url"))
                    .and_then(|u| u.as_str())
                    .unwrap_or("");
                (k.to_owned(), url.to_owned())
            })
            .collect(),
    )
}

/// Name → URL of the running workloads of group `team`, as the API lists
/// them.
async fn running_in_team(b: &Berth) -> BTreeMap<String, String> {
    let (_, list) = b.req(reqwest::Method::GET, "/workloads", None).await;
    let list: Value = serde_json::from_str(&list).expect("json");
    list["workloads"]
        .as_array()
        .expect("workloads")
        .iter()
        .filter(|w| w["group"] == "team" && w["status"] == "running")
        .map(|w| {
            (
                w["name"].as_str().expect("name").to_owned(),
                w["url"].as_str().expect("url").to_owned(),
            )
        })
        .collect()
}

/// Waits until both files list exactly `want` (the user's own VS Code
/// server included).
async fn files_list(home: &Path, want: &BTreeMap<String, String>, step: &str) {
    let mut vscode_want = want.clone();
    vscode_want.insert("mine".into(), "https://mine.example/mcp".into());
    // Codex has no SSE client: SSE-mode servers are not written there.
    let codex_want: BTreeMap<String, String> = want
        .iter()
        .filter(|(_, url)| !url.contains("/sse"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    eventually(Duration::from_secs(15), step, || async {
        let v = vscode_servers(home).unwrap_or_default();
        let c = codex_servers(home).unwrap_or_default();
        (v == vscode_want && c == codex_want).then_some(())
    })
    .await;
}

fn user_vscode_file(home: &Path) -> PathBuf {
    let dir = home.join(".config/Code/User");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("mcp.json");
    std::fs::write(
        &path,
        "// my servers\r\n{\r\n    \"servers\": {\r\n        \"mine\": { \"url\": \"https://mine.example/mcp\" }, // keep\r\n    },\r\n}\r\n",
    )
    .expect("write");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_files_follow_the_workloads_and_a_hand_edit_is_repaired() {
    let echo = crate::proxy::mcp_echo();
    let bin = echo
        .strip_prefix("exec://")
        .expect("exec:// path")
        .to_owned();
    let upstream = free_port();
    let _server = tokio::process::Command::new(&bin)
        .args(["--http", &format!("127.0.0.1:{upstream}")])
        .kill_on_drop(true)
        .spawn()
        .expect("mcp-echo starts");

    let root = tempfile::tempdir().expect("tempdir");
    let home = root.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let vscode_file = user_vscode_file(&home);
    let config = format!(
        "[clients]\nhome = \"{}\"\n[restart]\nbase_delay_ms = 50\n",
        home.display()
    );
    let port = free_port();
    let mut b = Berth::start_with(root.path(), port, &config).await;

    let (code, body) = b.post("/groups", json!({"name": "team"})).await;
    assert_eq!(code, 201, "{body}");
    // Registered before the group has any workload: the files get entries
    // as the servers start.
    let (code, body) = b
        .post("/clients", json!({"name": "vscode", "groups": ["team"]}))
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = b
        .post(
            "/clients/register",
            json!({"names": ["codex"], "groups": ["team"]}),
        )
        .await;
    assert_eq!(code, 200, "{body}");

    for body in [
        json!({"name": "alpha", "image": echo, "group": "team"}),
        json!({"name": "beta", "image": echo, "group": "team", "proxy_mode": "sse"}),
        json!({"name": "far", "url": format!("http://127.0.0.1:{upstream}/mcp"), "group": "team"}),
        json!({"name": "outsider", "image": echo}),
    ] {
        let (code, text) = b.post("/workloads", body).await;
        assert_eq!(code, 201, "{text}");
    }
    for n in ["alpha", "beta", "far", "outsider"] {
        b.wait_status(n, "running").await;
    }
    let running = running_in_team(&b).await;
    assert_eq!(running.len(), 3, "{running:?}");
    assert!(running["beta"].contains("/sse#beta"), "{running:?}");
    files_list(&home, &running, "the three servers of the group").await;
    // The real Codex reads the file berth wrote.
    let codex_text = std::fs::read_to_string(home.join(".codex/config.toml")).expect("codex file");
    let read = crate::real_clients::codex_reads(&codex_text).await;
    let want: BTreeMap<String, String> = running
        .iter()
        .filter(|(_, url)| !url.contains("/sse"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(read, want, "what Codex lists from berth's file");
    // The user's comments and line ends are kept.
    let text = std::fs::read_to_string(&vscode_file).expect("read");
    assert!(text.starts_with("// my servers\r\n"), "{text}");
    assert!(text.contains("// keep"), "{text}");

    // Restarted: listed again with its URL.
    let (code, body) = b.post("/workloads/alpha/restart", json!({})).await;
    assert!(code == 200 || code == 202, "{code} {body}");
    b.wait_status("alpha", "running").await;
    let running = running_in_team(&b).await;
    files_list(&home, &running, "the servers after a restart").await;

    // Deleted: gone from both files.
    let (code, body) = b
        .req(reqwest::Method::DELETE, "/workloads/beta", None)
        .await;
    assert!(code == 202 || code == 204, "{code} {body}");
    eventually(Duration::from_secs(15), "beta deleted", || async {
        (!running_in_team(&b).await.contains_key("beta")).then_some(())
    })
    .await;
    let running = running_in_team(&b).await;
    assert_eq!(running.len(), 2, "{running:?}");
    files_list(&home, &running, "the servers after a delete").await;

    // Stopped: gone too.
    let (code, body) = b.post("/workloads/far/stop", json!({})).await;
    assert!(code == 200 || code == 202, "{code} {body}");
    b.wait_status("far", "stopped").await;
    let running = running_in_team(&b).await;
    assert_eq!(running.len(), 1, "{running:?}");
    files_list(&home, &running, "the servers after a stop").await;

    // berth stops; the user edits berth's entry by hand; berth starts and
    // repairs it, saying so in its log.
    b.signal("-TERM");
    let _ = b.child.wait();
    drop(b);
    let text = std::fs::read_to_string(&vscode_file).expect("read");
    let good = running["alpha"].clone();
    assert!(text.contains(&good), "{text}");
    std::fs::write(&vscode_file, text.replace(&good, "http://127.0.0.1:1/mcp")).expect("edit");
    b = Berth::start_with(root.path(), port, &config).await;
    files_list(&home, &running, "the hand edit repaired").await;
    // The note is logged once the file is written: it may come a moment
    // after the file shows the repair.
    crate::support::eventually(T, "the repair to be logged", || async {
        let log = std::fs::read_to_string(root.path().join("berth.log")).expect("log");
        log.contains("repaired `alpha`").then_some(())
    })
    .await;
    drop(b);
}
