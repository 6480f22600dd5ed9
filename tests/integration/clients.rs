//! `/api/v1beta/clients*` and `/discovery/clients` over the fake runtime,
//! with a temporary home: shapes, codes, files kept in step with the
//! workloads, and every kind of bad input refused without changing a file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::{Harness, harness_config};
use crate::support::eventually;

async fn with_home() -> (Harness, PathBuf) {
    let home = tempfile::tempdir().expect("home").keep();
    let h = harness_config(|c| c.clients.home = Some(home.clone())).await;
    (h, home)
}

fn vscode_file(home: &Path) -> PathBuf {
    home.join(".config/Code/User/mcp.json")
}

fn cursor_file(home: &Path) -> PathBuf {
    home.join(".cursor/mcp.json")
}

fn parse_jsonc(text: &str) -> Value {
    jsonc_parser::cst::CstRootNode::parse(text, &Default::default())
        .expect("valid JSONC")
        .to_serde_value()
        .expect("a value")
}

/// The servers of a JSON client file under `key`, or Null.
fn servers(path: &Path, key: &str) -> Value {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_jsonc(&text)[key].clone(),
        Err(_) => Value::Null,
    }
}

async fn delete(h: &Harness, uri: &str) -> crate::api::Resp {
    h.call(Method::DELETE, uri, None).await
}

fn registered(h: &Harness) -> Vec<(String, Vec<String>)> {
    h.berth
        .groups
        .list()
        .expect("groups")
        .into_iter()
        .flat_map(|g| {
            g.registered_clients
                .into_iter()
                .map(move |c| (c, vec![g.name.clone()]))
        })
        .collect()
}

#[tokio::test]
async fn shapes_and_codes() {
    let (h, home) = with_home().await;
    let r = h.get("/api/v1beta/clients").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!([]));

    // Discovery: every client, in ToolHive's order; installed follows the
    // configuration directory.
    std::fs::create_dir_all(home.join(".cursor")).expect("cursor dir");
    std::fs::write(home.join(".claude.json"), "{}").expect("claude file");
    let r = h.get("/api/v1beta/discovery/clients").await;
    assert_eq!(r.status, StatusCode::OK);
    let clients = r.json()["clients"].as_array().expect("clients").clone();
    assert_eq!(clients.len(), 25);
    assert_eq!(clients[0]["client_type"], "roo-code");
    assert_eq!(clients[24]["client_type"], "qoder");
    let find = |id: &str| {
        clients
            .iter()
            .find(|c| c["client_type"] == id)
            .unwrap_or_else(|| panic!("{id}"))
            .clone()
    };
    assert_eq!(
        find("cursor"),
        json!({"client_type": "cursor", "installed": true, "registered": false,
            "supports_skills": true, "supports_plugins": false})
    );
    assert_eq!(find("claude-code")["installed"], true);
    assert_eq!(find("claude-code")["supports_plugins"], true);
    assert_eq!(find("vscode")["installed"], false);
    assert_eq!(find("zed")["supports_skills"], false);

    // Unsupported names are 400 naming the valid ones, before anything is
    // recorded, whatever the route.
    for name in [
        "nope",
        "xcode",
        "claude-desktop",
        "../../etc/passwd",
        "VSCODE",
    ] {
        let r = h.post("/api/v1beta/clients", json!({"name": name})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}: {}", r.text);
        assert!(r.text.contains("unsupported client type"), "{}", r.text);
        assert!(r.text.contains("claude-code, windsurf"), "{}", r.text);
    }
    let r = h
        .post(
            "/api/v1beta/clients/register",
            json!({"names": ["cursor", "bogus"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("\"bogus\""), "{}", r.text);
    assert!(registered(&h).is_empty(), "nothing recorded");
    let r = h.post("/api/v1beta/clients", json!({"name": ""})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .post("/api/v1beta/clients/register", json!({"names": []}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text.contains("at least one client name is required"));
    let r = h
        .raw(Method::POST, "/api/v1beta/clients", "{not json".into())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // An unknown group is 404 and records nothing; a bad group name 400.
    let r = h
        .post(
            "/api/v1beta/clients",
            json!({"name": "vscode", "groups": ["missing"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = h
        .post(
            "/api/v1beta/clients",
            json!({"name": "vscode", "groups": ["../x"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(registered(&h).is_empty(), "nothing recorded");

    // Register one: the default group when none is named; 200 echoing it.
    let r = h
        .post("/api/v1beta/clients", json!({"name": "vscode"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json(), json!({"name": "vscode", "groups": ["default"]}));
    // No workload yet: no file is created.
    assert!(!vscode_file(&home).exists());
    // Register several: the response lists names in request order.
    let r = h
        .post(
            "/api/v1beta/clients/register",
            json!({"names": ["cursor", "codex"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json(), json!([{"name": "cursor"}, {"name": "codex"}]));
    let r = h.get("/api/v1beta/clients").await;
    let list = r.json();
    let names: Vec<_> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(names, ["codex", "cursor", "vscode"], "sorted by name");
    assert_eq!(list[2]["groups"], json!(["default"]));
    assert_eq!(list[2]["status"]["state"], "ok");
    let r = h.get("/api/v1beta/discovery/clients").await;
    let vscode = r.json()["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .find(|c| c["client_type"] == "vscode")
        .cloned()
        .expect("vscode");
    assert_eq!(vscode["registered"], true);

    // Unregistering.
    assert_eq!(
        delete(&h, "/api/v1beta/clients/bogus").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        delete(&h, "/api/v1beta/clients/bogus/groups/default")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        delete(&h, "/api/v1beta/clients/vscode/groups/missing")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        delete(&h, "/api/v1beta/clients/cursor").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete(&h, "/api/v1beta/clients/cursor").await.status,
        StatusCode::NO_CONTENT,
        "idempotent"
    );
    assert_eq!(
        delete(&h, "/api/v1beta/clients/vscode/groups/default")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = h
        .post("/api/v1beta/clients/unregister", json!({"names": []}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .post(
            "/api/v1beta/clients/unregister",
            json!({"names": ["codex"], "groups": ["default"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(h.get("/api/v1beta/clients").await.json(), json!([]));
}

/// Waits until the VS Code and Cursor files list exactly `want` (name →
/// URL) under their keys.
async fn wait_files(home: &Path, want: Value, step: &str) {
    eventually(Duration::from_secs(5), step, || async {
        let v = servers(&vscode_file(home), "servers");
        let c = servers(&cursor_file(home), "mcpServers");
        let urls = |v: &Value| -> Value {
            v.as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, e)| (k.clone(), e["url"].clone()))
                        .collect::<serde_json::Map<_, _>>()
                        .into()
                })
                .unwrap_or(json!({}))
        };
        (urls(&v) == want && urls(&c) == want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn files_follow_the_workloads_of_the_registered_groups() {
    let (h, home) = with_home().await;
    let (upstream, _) = crate::remote::upstream().await;
    assert_eq!(
        h.post("/api/v1beta/groups", json!({"name": "team"}))
            .await
            .status,
        StatusCode::CREATED
    );
    let r = h
        .post(
            "/api/v1beta/clients/register",
            json!({"names": ["vscode", "cursor"], "groups": ["team"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for body in [
        json!({"name": "a", "image": "fake://echo", "transport": "stdio", "group": "team"}),
        json!({"name": "s", "image": "fake://echo", "transport": "stdio", "group": "team",
            "proxy_mode": "sse"}),
        json!({"name": "far", "url": format!("http://{upstream}/v1/mcp"), "group": "team"}),
        json!({"name": "elsewhere", "image": "fake://echo", "transport": "stdio"}),
    ] {
        let r = h.create(body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    for n in ["a", "s", "far", "elsewhere"] {
        h.wait_status(n, "running").await;
    }
    let listed = h.listed("").await;
    let url_of = |n: &str| {
        listed
            .iter()
            .find(|w| w["name"] == n)
            .map(|w| w["url"].clone())
            .expect(n)
    };
    let (a, s, far) = (url_of("a"), url_of("s"), url_of("far"));
    assert!(a.as_str().expect("a").starts_with("http://127.0.0.1:"));
    assert!(s.as_str().expect("s").ends_with("/sse#s"));
    assert!(far.as_str().expect("far").ends_with("/v1/mcp"));
    wait_files(
        &home,
        json!({"a": a, "s": s, "far": far}),
        "the group's three servers",
    )
    .await;
    // The entry type follows the proxy mode, not the transport.
    let v = servers(&vscode_file(&home), "servers");
    assert_eq!(v["a"]["type"], "http");
    assert_eq!(v["s"]["type"], "sse");
    assert_eq!(v["far"]["type"], "http");
    // New files are private to the home's owner.
    let mode = std::fs::metadata(vscode_file(&home))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Stopped: removed; started again: back.
    assert_eq!(
        h.post("/api/v1beta/workloads/s/stop", json!({}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    h.wait_status("s", "stopped").await;
    wait_files(&home, json!({"a": a, "far": far}), "s stopped").await;
    // Moved to another group by an edit: removed.
    let r = h
        .post(
            "/api/v1beta/workloads/far/edit",
            json!({"url": format!("http://{upstream}/v1/mcp"), "group": "default"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_files(&home, json!({"a": a}), "far moved out").await;
    // Deleted: removed.
    assert_eq!(
        delete(&h, "/api/v1beta/workloads/a").await.status,
        StatusCode::ACCEPTED
    );
    wait_files(&home, json!({}), "a deleted").await;

    // Unregistering takes berth's entries out and leaves the file.
    let r = h.post("/api/v1beta/workloads/s/restart", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    h.wait_status("s", "running").await;
    wait_files(&home, json!({"s": s}), "s again").await;
    assert_eq!(
        delete(&h, "/api/v1beta/clients/cursor").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(servers(&cursor_file(&home), "mcpServers"), json!({}));
    assert_eq!(servers(&vscode_file(&home), "servers")["s"]["url"], s);
}

#[tokio::test]
async fn bad_files_are_refused_or_reported_and_never_changed() {
    let (h, home) = with_home().await;
    let r = h
        .create(json!({"name": "w", "image": "fake://echo", "transport": "stdio"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    h.wait_status("w", "running").await;

    // Not JSON: 400 naming the file, nothing registered, file unchanged.
    let cursor = cursor_file(&home);
    std::fs::create_dir_all(cursor.parent().expect("dir")).expect("dir");
    std::fs::write(&cursor, "{ \"mcpServers\": { oops").expect("write");
    let r = h
        .post("/api/v1beta/clients", json!({"name": "cursor"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("mcp.json"), "{}", r.text);
    assert!(r.text.contains("JSON"), "{}", r.text);
    assert!(registered(&h).is_empty());
    assert_eq!(
        std::fs::read_to_string(&cursor).expect("read"),
        "{ \"mcpServers\": { oops"
    );

    // The servers key of the wrong shape: refused too.
    std::fs::write(&cursor, "{\"mcpServers\": [1, 2]}").expect("write");
    let r = h
        .post("/api/v1beta/clients", json!({"name": "cursor"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    // Read-only file: refused, unchanged.
    let before = "{\"mcpServers\": {}}";
    std::fs::write(&cursor, before).expect("write");
    std::fs::set_permissions(&cursor, std::fs::Permissions::from_mode(0o444)).expect("chmod");
    let r = h
        .post("/api/v1beta/clients", json!({"name": "cursor"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(std::fs::read_to_string(&cursor).expect("read"), before);

    // A symlink out of the home directory: refused, target unchanged.
    let outside = tempfile::tempdir().expect("outside");
    let target = outside.path().join("victim.json");
    std::fs::write(&target, "{}").expect("write");
    let claude = home.join(".claude.json");
    std::os::unix::fs::symlink(&target, &claude).expect("symlink");
    let r = h
        .post("/api/v1beta/clients", json!({"name": "claude-code"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("home"), "{}", r.text);
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "{}");
    assert!(registered(&h).is_empty());

    // A symlink inside home is followed: the target is edited, the link
    // stays.
    std::fs::remove_file(&claude).expect("rm");
    let real = home.join("dotfiles/claude.json");
    std::fs::create_dir_all(real.parent().expect("dir")).expect("dir");
    std::fs::write(&real, "{\"theme\": \"dark\"}\n").expect("write");
    std::os::unix::fs::symlink(&real, &claude).expect("symlink");
    let r = h
        .post("/api/v1beta/clients", json!({"name": "claude-code"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        std::fs::symlink_metadata(&claude)
            .expect("meta")
            .file_type()
            .is_symlink()
    );
    let v = parse_jsonc(&std::fs::read_to_string(&real).expect("read"));
    assert_eq!(v["theme"], "dark");
    assert!(v["mcpServers"]["w"]["url"].is_string(), "{v}");

    // An entry of the same name that berth did not write: a conflict,
    // reported, left alone.
    let vscode = vscode_file(&home);
    std::fs::create_dir_all(vscode.parent().expect("dir")).expect("dir");
    let mine = "{\n  // mine\n  \"servers\": {\n    \"w\": {\"url\": \"https://mine.example/mcp\"}\n  }\n}\n";
    std::fs::write(&vscode, mine).expect("write");
    let r = h
        .post("/api/v1beta/clients", json!({"name": "vscode"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(std::fs::read_to_string(&vscode).expect("read"), mine);
    let list = h.get("/api/v1beta/clients").await.json();
    let status = list
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["name"] == "vscode")
        .expect("vscode")["status"]
        .clone();
    assert_eq!(status["conflicts"], json!(["w"]), "{status}");

    // A file broken after registration: reported in the status, untouched.
    std::fs::write(&real, "{ broken").expect("write");
    let r = h.post("/api/v1beta/workloads/w/restart", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    eventually(
        Duration::from_secs(5),
        "the error in the status",
        || async {
            let list = h.get("/api/v1beta/clients").await.json();
            let claude = list
                .as_array()?
                .iter()
                .find(|c| c["name"] == "claude-code")?
                .clone();
            (claude["status"]["state"] == "error").then_some(claude)
        },
    )
    .await;
    assert_eq!(std::fs::read_to_string(&real).expect("read"), "{ broken");
}

#[tokio::test]
async fn drift_is_repaired_and_a_changed_entry_of_a_gone_server_is_left() {
    let (h, home) = with_home().await;
    for n in ["keep", "gone"] {
        let r = h
            .create(json!({"name": n, "image": "fake://echo", "transport": "stdio"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        h.wait_status(n, "running").await;
    }
    let r = h
        .post("/api/v1beta/clients", json!({"name": "cursor"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let path = cursor_file(&home);
    let v = servers(&path, "mcpServers");
    let keep = v["keep"]["url"].clone();
    assert!(v["gone"].is_object(), "{v}");

    // By hand: `keep` pointed elsewhere, `gone` given a header of the
    // user's, then `gone` stops. berth repairs `keep` (its entry is
    // berth's); `gone`'s entry, changed since berth wrote it, is left.
    let text = std::fs::read_to_string(&path).expect("read");
    let mut value = parse_jsonc(&text);
    value["mcpServers"]["keep"]["url"] = json!("http://127.0.0.1:1/mcp");
    value["mcpServers"]["gone"]["headers"] = json!({"X-Mine": "1"});
    std::fs::write(&path, serde_json::to_string_pretty(&value).expect("json")).expect("write");
    assert_eq!(
        h.post("/api/v1beta/workloads/gone/stop", json!({}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    h.wait_status("gone", "stopped").await;
    h.berth.clients.sync_all().await;
    let v = servers(&path, "mcpServers");
    assert_eq!(v["keep"]["url"], keep, "repaired");
    assert_eq!(v["gone"]["headers"]["X-Mine"], "1", "left alone");
    // Started again: the entry is the user's now, a conflict.
    assert_eq!(
        h.post("/api/v1beta/workloads/gone/restart", json!({}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    h.wait_status("gone", "running").await;
    h.berth.clients.sync_all().await;
    assert_eq!(
        servers(&path, "mcpServers")["gone"]["headers"]["X-Mine"],
        "1"
    );
    // Removed by hand: restored.
    let mut value = parse_jsonc(&std::fs::read_to_string(&path).expect("read"));
    value["mcpServers"]
        .as_object_mut()
        .expect("servers")
        .remove("keep");
    std::fs::write(&path, serde_json::to_string_pretty(&value).expect("json")).expect("write");
    h.berth.clients.sync_all().await;
    assert_eq!(
        servers(&path, "mcpServers")["keep"]["url"],
        keep,
        "restored"
    );
}

/// A hand-edited record of berth's entries (`<state>/clients.json`) can
/// neither stop berth nor send its edits elsewhere: unknown clients are
/// dropped, a recorded path is only compared with the client's own path,
/// and a record that does not parse is replaced.
#[tokio::test]
async fn a_hostile_record_changes_nothing_outside_the_clients_files() {
    let outside = tempfile::tempdir().expect("outside");
    let victim = outside.path().join("victim.json");
    let victim_text = "{\"mcpServers\": {\"w\": {\"url\": \"http://127.0.0.1:9/mcp\"}}}";
    std::fs::write(&victim, victim_text).expect("write");
    let home = tempfile::tempdir().expect("home").keep();
    let cursor = cursor_file(&home);
    std::fs::create_dir_all(cursor.parent().expect("dir")).expect("dir");
    let mine = "{\"mcpServers\": {\"mine\": {\"url\": \"https://mine.example/mcp\"}}}\n";
    std::fs::write(&cursor, mine).expect("write");
    for record in [
        "{ not json".to_owned(),
        json!({"clients": {
            "../../etc": {"path": "/etc/passwd", "entries": {"root": {}}},
            // Claims the user's entry, but for another file: the record's
            // path is not the client's, so nothing is owned.
            "cursor": {"path": victim, "entries": {
                "w": {"url": "http://127.0.0.1:9/mcp"},
                "mine": {"url": "https://mine.example/mcp"}}},
        }})
        .to_string(),
    ] {
        std::fs::write(&cursor, mine).expect("write");
        let dir = tempfile::tempdir().expect("state");
        std::fs::write(dir.path().join("clients.json"), &record).expect("record");
        let home = home.clone();
        let h = crate::api::harness_dir(dir, move |c| c.clients.home = Some(home)).await;
        let r = h
            .post("/api/v1beta/clients", json!({"name": "cursor"}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = h
            .create(json!({"name": "w", "image": "fake://echo", "transport": "stdio"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        h.wait_status("w", "running").await;
        h.berth.clients.sync_all().await;
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), victim_text);
        let v = servers(&cursor, "mcpServers");
        assert_eq!(v["mine"]["url"], "https://mine.example/mcp", "{v}");
        assert!(
            v["w"]["url"]
                .as_str()
                .expect("w")
                .starts_with("http://127.0.0.1:")
        );
        // Unregistered: berth's entry leaves, the user's stays.
        assert_eq!(
            delete(&h, "/api/v1beta/clients/cursor").await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            servers(&cursor, "mcpServers"),
            json!({"mine": {"url": "https://mine.example/mcp"}})
        );
        assert!(!Path::new("/etc/passwd.lock").exists());
    }
}

/// A `[clients] home` that is not a usable directory turns client
/// configuration off, with a 503 that says why; discovery still answers.
#[tokio::test]
async fn an_unusable_home_refuses_registration_and_writes_nothing() {
    let file = tempfile::NamedTempFile::new().expect("file");
    for home in [
        PathBuf::from("/nonexistent/berth-home"),
        file.path().to_owned(),
    ] {
        let h = harness_config(|c| c.clients.home = Some(home.clone())).await;
        let r = h
            .post("/api/v1beta/clients", json!({"name": "cursor"}))
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
        assert!(r.text.contains("[clients] home"), "{}", r.text);
        assert!(registered(&h).is_empty());
        let r = h.get("/api/v1beta/discovery/clients").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.json()["clients"]
                .as_array()
                .expect("clients")
                .iter()
                .all(|c| c["installed"] == false)
        );
    }
}
