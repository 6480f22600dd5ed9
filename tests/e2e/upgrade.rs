//! Upgrades on the process runtime with a real MCP server: a file registry
//! whose entry runs `uvx://mcp-server-time@<version>` (PyPI), moved to a
//! newer published version, then to one that does not exist.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::serve::{Berth, free_port};
use crate::support::eventually;
use crate::support::mcp::Session;

/// Two published versions of `mcp-server-time` that run with today's
/// `mcp` SDK and report their own version as `serverInfo.version`.
const OLD: &str = "2026.10.10";
const NEW: &str = "2026.10.19";
/// A version PyPI does not have: uvx fails to resolve it and exits.
const MISSING: &str = "9999.1.1";

fn write_registry(path: &Path, version: &str) {
    let doc = json!({"version": "1.0.0", "meta": {"last_updated": "2026-11-01T00:00:00Z"},
        "data": {"servers": [{"name": "io.github.e2e/time", "description": "time for tests",
            "version": version,
            "packages": [{"registryType": "pypi", "identifier": "mcp-server-time",
                "version": version, "transport": {"type": "stdio"}}]}]}});
    std::fs::write(path, serde_json::to_vec_pretty(&doc).expect("json")).expect("write");
}

async fn json_of(b: &Berth, path: &str) -> Value {
    let (code, body) = b.req(reqwest::Method::GET, path, None).await;
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// A session with the workload's server through its proxy, once it
/// answers (uvx may first fetch the package); checks `tools/list`.
async fn session(url: &str) -> Session {
    let s = eventually(
        Duration::from_secs(180),
        "the server to answer through the proxy",
        || async { Session::open(url).await.ok() },
    )
    .await;
    let tools = s
        .request(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await
        .expect("tools/list");
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("tools: {tools}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"get_current_time"), "{tools}");
    s
}

fn server_version(s: &Session) -> &str {
    s.init["result"]["serverInfo"]["version"]
        .as_str()
        .expect("serverInfo.version")
}

async fn check(b: &Berth) -> Value {
    json_of(b, "/workloads/clock/upgrade-check").await["result"].clone()
}

#[tokio::test]
async fn an_upgrade_runs_the_new_version_and_a_broken_one_is_rolled_back() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start(root.path(), free_port()).await;
    let file = root.path().join("registry.json");
    write_registry(&file, OLD);
    let (code, body) = b
        .post("/registry", json!({"name": "e2e", "local_path": file}))
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": "clock", "registry": "e2e", "server": "time"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status("clock", "running").await;
    let list = json_of(&b, "/workloads").await;
    let url = list["workloads"][0]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let s = session(&url).await;
    assert_eq!(server_version(&s), OLD);
    assert_eq!(check(&b).await["status"], "up-to-date");

    // The registry moves on: the check sees it, the upgrade applies it and
    // answers once the new server answers.
    write_registry(&file, NEW);
    let found = check(&b).await;
    assert_eq!(found["status"], "upgrade-available", "{found}");
    assert_eq!(
        found["current_image"],
        format!("uvx://mcp-server-time@{OLD}")
    );
    assert_eq!(
        found["candidate_image"],
        format!("uvx://mcp-server-time@{NEW}")
    );
    let (code, body) = b.post("/workloads/clock/upgrade", json!({})).await;
    assert_eq!(code, 200, "{body}");
    let applied: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(applied["result"], found, "the check that drove it");
    let s = session(&url).await;
    assert_eq!(server_version(&s), NEW, "the new version answers");
    let time = s
        .call_tool(2, "get_current_time", json!({"timezone": "UTC"}))
        .await
        .expect("tools/call");
    assert!(time["result"].is_object(), "{time}");
    let export = json_of(&b, "/workloads/clock/export").await;
    assert_eq!(export["image"], format!("uvx://mcp-server-time@{NEW}"));
    assert_eq!(export["registry_server_version"], NEW);
    assert_eq!(check(&b).await["status"], "up-to-date");

    // A version that cannot run: 409, and the previous one runs again.
    write_registry(&file, MISSING);
    assert_eq!(check(&b).await["status"], "upgrade-available");
    let (code, body) = b.post("/workloads/clock/upgrade", json!({})).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains(MISSING)
            && body.contains("the new server stopped: process exited with code 1")
            && body.contains("previous configuration was restored"),
        "{body}"
    );
    let export = json_of(&b, "/workloads/clock/export").await;
    assert_eq!(export["image"], format!("uvx://mcp-server-time@{NEW}"));
    assert_eq!(export["registry_server_version"], NEW);
    b.wait_status("clock", "running").await;
    let s = session(&url).await;
    assert_eq!(
        server_version(&s),
        NEW,
        "the previous version answers again"
    );
    assert!(
        !b.state().join("upgrades/clock.json").exists(),
        "the upgrade is decided"
    );
    let (_, logs) = b
        .req(reqwest::Method::GET, "/workloads/clock/proxy-logs", None)
        .await;
    assert!(logs.contains("upgrade failed ("), "{logs}");
}
