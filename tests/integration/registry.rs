//! The registry routes over the embedded catalogue and local files, and
//! workloads created by server name (fake runtime).

use std::path::Path;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::{harness, harness_config};

/// A registry document (upstream format) with these entries.
pub(crate) fn document(servers: Value) -> Value {
    json!({"version": "1.0.0", "meta": {"last_updated": "2026-11-01T00:00:00Z"},
        "data": {"servers": servers}})
}

/// A package entry: `namespace/name` running `uvx://pkg@version`.
pub(crate) fn pypi(name: &str, package: &str, version: &str) -> Value {
    json!({"name": name, "description": format!("{name} for tests"), "version": version,
        "packages": [{"registryType": "pypi", "identifier": package, "version": version,
            "transport": {"type": "stdio"}}]})
}

/// An entry the fake runtime runs: an OCI package `fake://echo` (and a
/// PyPI package for native runtimes).
pub(crate) fn fake(name: &str, version: &str) -> Value {
    let mut e = pypi(name, "mcp-server-time", version);
    e["packages"].as_array_mut().expect("packages").push(
        json!({"registryType": "oci", "identifier": "fake://echo", "transport": {"type": "stdio"}}),
    );
    e
}

pub(crate) fn write(path: &Path, doc: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(doc).expect("json")).expect("write");
}

#[tokio::test]
async fn the_embedded_registry_is_listed_in_toolhive_shapes() {
    let h = harness().await;
    let r = h.get("/api/v1beta/registry").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let list = r.json();
    let default = &list["registries"][0];
    assert_eq!(default["name"], "default");
    assert_eq!(default["type"], "default");
    assert_eq!(default["source"], "");
    assert_eq!(default["auth_status"], "none");
    assert_eq!(default["auth_type"], "");
    assert!(default.get("auth_config").is_none());
    assert!(default["server_count"].as_u64().expect("count") >= 2);

    let r = h.get("/api/v1beta/registry/default").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let reg = r.json();
    let servers = reg["registry"]["servers"].as_object().expect("servers");
    let everything = &servers["io.github.modelcontextprotocol/everything"];
    assert!(
        everything["package"]
            .as_str()
            .expect("package")
            .starts_with("npx://@modelcontextprotocol/server-everything@"),
        "{everything}"
    );
    assert!(
        everything["runs_on"]
            .as_array()
            .expect("runs_on")
            .contains(&json!("process"))
    );

    let r = h.get("/api/v1beta/registry/default/servers").await;
    assert_eq!(r.status, StatusCode::OK);
    let names: Vec<String> = r.json()["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "stable, name-ordered listing");

    for path in [
        "/api/v1beta/registry/default/servers/time",
        "/api/v1beta/registry/default/servers/io.github.modelcontextprotocol%2Ftime",
    ] {
        let r = h.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        let v = r.json();
        assert_eq!(v["is_remote"], false);
        assert_eq!(v["server"]["name"], "io.github.modelcontextprotocol/time");
    }
    let r = h
        .get("/api/v1beta/registry/default/servers/no-such-server")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text.contains("no-such-server"), "{}", r.text);
    let r = h.get("/api/v1beta/registry/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text.contains("nope"), "{}", r.text);
    let r = h.get("/api/v1beta/registry/nope/servers").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .post("/api/v1beta/registry/default/refresh", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "refreshed");
}

#[tokio::test]
async fn v01_routes_page_search_and_honour_the_registry_name() {
    let h = harness().await;
    let r = h.get("/registry/default/v0.1/servers?limit=1&page=2").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["metadata"]["page"], 2);
    assert_eq!(v["metadata"]["limit"], 1);
    let total = v["metadata"]["total"].as_u64().expect("total");
    assert!(total >= 2);
    assert_eq!(v["servers"].as_array().expect("servers").len(), 1);
    let item = &v["servers"][0];
    assert!(
        item["name"].is_string() && (item["packages"].is_array() || item["remotes"].is_array()),
        "bare server.json items: {item}"
    );

    // Bad values fall back to the defaults; 1000 is clamped to 200.
    let v = h
        .get("/registry/default/v0.1/servers?limit=1000&page=-3")
        .await
        .json();
    assert_eq!(v["metadata"]["limit"], 200);
    assert_eq!(v["metadata"]["page"], 1);
    let v = h
        .get("/registry/default/v0.1/servers?page=9999")
        .await
        .json();
    assert_eq!(v["servers"], json!([]));
    assert_eq!(v["metadata"]["total"], total);

    let v = h
        .get("/registry/default/v0.1/servers?q=EVERYTHING")
        .await
        .json();
    assert!(
        v["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .any(|s| s["name"] == "io.github.modelcontextprotocol/everything")
    );

    let r = h
        .get("/registry/default/v0.1/servers/everything/versions/latest")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json()["name"],
        "io.github.modelcontextprotocol/everything"
    );
    let r = h
        .get("/registry/default/v0.1/servers/nothing-here/versions/latest")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["code"], "not_found");

    // Unlike ToolHive, the name selects the registry.
    let r = h.get("/registry/elsewhere/v0.1/servers").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.content_type.starts_with("application/json"));
    assert_eq!(r.json()["code"], "not_found");

    let v = h
        .get("/registry/default/v0.1/x/dev.toolhive/skills")
        .await
        .json();
    assert_eq!(v["skills"], json!([]));
    let v = h
        .get("/registry/default/v0.1/x/dev.toolhive/plugins")
        .await
        .json();
    assert_eq!(v["plugins"], json!([]));
    let r = h
        .get("/registry/default/v0.1/x/dev.toolhive/skills/io.github.x/one")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_official_registry_api_view_pages_with_a_cursor() {
    let h = harness().await;
    let base = "/api/v1beta/x/berth/registries/default/v0.1/servers";
    let mut cursor = String::new();
    let mut seen = Vec::new();
    loop {
        let r = h.get(&format!("{base}?limit=1&cursor={cursor}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let v = r.json();
        assert_eq!(v["metadata"]["count"], 1);
        let item = &v["servers"][0];
        assert!(item["server"]["name"].is_string());
        assert!(item["_meta"]["io.modelcontextprotocol.registry/official"].is_object());
        seen.push(item["server"]["name"].as_str().expect("name").to_owned());
        match v["metadata"]["nextCursor"].as_str() {
            Some(next) => cursor = next.replace('/', "%2F"),
            None => break,
        }
    }
    let all = h
        .get("/registry/default/v0.1/servers?limit=200")
        .await
        .json();
    assert_eq!(
        seen.len() as u64,
        all["metadata"]["total"].as_u64().expect("total")
    );
    let r = h
        .get("/api/v1beta/x/berth/registries/default/v0.1/servers/io.github.modelcontextprotocol%2Ftime/versions/latest")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json()["server"]["name"],
        "io.github.modelcontextprotocol/time"
    );
}

#[tokio::test]
async fn a_file_registry_is_added_read_when_it_changes_and_removed() {
    let h = harness().await;
    let file = h.dir.path().join("team.json");
    write(
        &file,
        &document(json!([pypi(
            "io.github.team/clock",
            "mcp-server-time",
            "1.0.0"
        )])),
    );
    let add = |body: Value| h.post("/api/v1beta/registry", body);
    let r = add(json!({"name": "team", "local_path": file})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["type"], "file");
    let r = add(json!({"name": "team", "local_path": file})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);

    let list = h.get("/api/v1beta/registry").await.json();
    let names: Vec<&str> = list["registries"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["default", "team"]);
    let team = &list["registries"][1];
    assert_eq!(team["source"], file.display().to_string());
    assert_eq!(team["server_count"], 1);

    // Edits are seen without a refresh.
    write(
        &file,
        &document(json!([
            pypi("io.github.team/clock", "mcp-server-time", "1.0.1"),
            pypi("io.github.team/other", "mcp-server-fetch", "1.0.0")
        ])),
    );
    let v = h.get("/registry/team/v0.1/servers").await.json();
    assert_eq!(v["metadata"]["total"], 2, "{v}");
    assert_eq!(v["servers"][0]["version"], "1.0.1");

    // It survives a restart of berth (kept in the state directory).
    let stored = std::fs::read_to_string(h.dir.path().join("registries.json")).expect("stored");
    assert!(stored.contains("team.json"), "{stored}");

    let r = h
        .call(Method::DELETE, "/api/v1beta/registry/team", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = h.get("/api/v1beta/registry/team").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_registry_changes_are_refused_and_the_previous_source_stays() {
    let h = harness().await;
    let dir = h.dir.path();
    let legacy = dir.join("legacy.json");
    write(&legacy, &json!({"servers": {"osv": {"image": "x"}}}));
    let empty = dir.join("empty.json");
    write(&empty, &document(json!([])));
    let not_json = dir.join("broken.json");
    std::fs::write(&not_json, b"{ nope").expect("write");
    let wrong_ext = dir.join("registry.txt");
    write(&wrong_ext, &document(json!([pypi("a.b/c", "x", "1")])));
    let deep = dir.join("deep.json");
    std::fs::write(
        &deep,
        format!("{}{}", "[".repeat(200_000), "]".repeat(200_000)),
    )
    .expect("write");

    let h = &h;
    let put = |body: Value| async move {
        h.call(Method::PUT, "/api/v1beta/registry/default", Some(body))
            .await
    };
    for (body, status) in [
        (json!({"local_path": legacy}), StatusCode::BAD_GATEWAY),
        (json!({"local_path": empty}), StatusCode::BAD_GATEWAY),
        (json!({"local_path": not_json}), StatusCode::BAD_GATEWAY),
        (json!({"local_path": deep}), StatusCode::BAD_GATEWAY),
        (json!({"local_path": wrong_ext}), StatusCode::BAD_GATEWAY),
        (
            json!({"local_path": dir.join("missing.json")}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"local_path": "relative/x.json"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"local_path": legacy, "url": "https://x.example/r.json"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"url": "ftp://x.example/r.json"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"url": "http://x.example/r.json"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"url": "https://user:pw@x.example/r.json"}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"plugin": "none-such"}), StatusCode::BAD_REQUEST),
        // Nothing listens there / a private address without allow_private_ip.
        (
            json!({"url": "http://127.0.0.1:1/r.json", "allow_private_ip": true}),
            StatusCode::GATEWAY_TIMEOUT,
        ),
        (
            json!({"url": "https://127.0.0.1/r.json"}),
            StatusCode::GATEWAY_TIMEOUT,
        ),
        (
            json!({"url": "https://169.254.169.254/latest/meta-data.json"}),
            StatusCode::GATEWAY_TIMEOUT,
        ),
        (
            json!({"auth": {"issuer": "https://idp.example"}}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = put(body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert!(!r.text.is_empty());
    }
    let default = h.get("/api/v1beta/registry/default").await.json();
    assert_eq!(default["type"], "default", "the embedded catalogue stays");

    // Unknown names, the default's deletion, invalid names.
    let r = h
        .call(
            Method::PUT,
            "/api/v1beta/registry/ghost",
            Some(json!({"local_path": legacy})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .call(Method::DELETE, "/api/v1beta/registry/default", None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.text, "Cannot remove the default registry\n");
    let r = h
        .call(Method::DELETE, "/api/v1beta/registry/ghost", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for name in ["Team", "auth", "a/b", "x\ny", ""] {
        let r = h
            .post(
                "/api/v1beta/registry",
                json!({"name": name, "local_path": legacy}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name:?}: {}", r.text);
    }
    let r = h
        .post("/api/v1beta/registry", json!({"name": "nosource"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // A valid file replaces the default; an empty body resets it.
    let good = dir.join("good.json");
    write(
        &good,
        &document(json!([pypi("a.b/c", "mcp-server-time", "1")])),
    );
    let r = put(json!({"local_path": good})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["type"], "file");
    assert_eq!(
        h.get("/api/v1beta/registry/default").await.json()["server_count"],
        1
    );
    let r = put(json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["type"], "default");
}

#[tokio::test]
async fn registries_of_the_configuration_are_read_only() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("corp.json");
    write(
        &file,
        &document(json!([pypi("com.corp/tool", "mcp-server-time", "2.0.0")])),
    );
    let h = harness_config(|c| {
        c.registries = vec![berth::registry::RegistryConfig {
            name: "corp".into(),
            local_path: Some(file.clone()),
            ..Default::default()
        }];
    })
    .await;
    let list = h.get("/api/v1beta/registry").await.json();
    assert_eq!(list["registries"][0]["name"], "corp", "by name");
    assert_eq!(list["registries"][0]["read_only"], true);
    assert_eq!(list["registries"][1]["read_only"], false);
    let r = h
        .call(
            Method::PUT,
            "/api/v1beta/registry/corp",
            Some(json!({"local_path": file})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let r = h
        .call(Method::DELETE, "/api/v1beta/registry/corp", None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = h.get("/api/v1beta/registry/corp/servers/tool").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn a_workload_is_created_by_server_name() {
    let h = harness().await;
    let file = h.dir.path().join("team.json");
    let mut secretive = fake("io.github.team/secretive", "3.1.0");
    secretive["packages"][1]["environmentVariables"] = json!([
        {"name": "API_TOKEN", "description": "the service token", "isRequired": true, "isSecret": true},
        {"name": "MODE", "default": "fast"}
    ]);
    write(
        &file,
        &document(json!([
            fake("io.github.team/clock", "1.0.0"),
            fake("io.github.other/clock", "1.0.0"),
            secretive
        ])),
    );
    let r = h
        .post(
            "/api/v1beta/registry",
            json!({"name": "team", "local_path": file}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // From the embedded registry, by short name (the fake runtime runs
    // only fake images: the given image wins over the entry's package).
    let r = h
        .create(json!({"server": "time", "image": "fake://echo"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["name"], "time");
    let got = h.get("/api/v1beta/workloads/time").await.json();
    assert_eq!(got["image"], "fake://echo");
    assert_eq!(got["server"], "io.github.modelcontextprotocol/time");
    assert_eq!(got["registry"], "default");
    let export = h.get("/api/v1beta/workloads/time/export").await.json();
    assert_eq!(
        export["registry_server_name"],
        "io.github.modelcontextprotocol/time"
    );
    assert!(
        !export["registry_server_version"]
            .as_str()
            .expect("version")
            .is_empty()
    );

    // A short name two entries share.
    let r = h
        .create(json!({"name": "c", "registry": "team", "server": "clock"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(
        r.text.contains("io.github.other/clock") && r.text.contains("io.github.team/clock"),
        "{}",
        r.text
    );
    // A missing required variable is named, before anything is created.
    let r = h
        .create(json!({"name": "s", "registry": "team", "server": "secretive"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(
        r.text.contains("API_TOKEN (the service token)"),
        "{}",
        r.text
    );
    assert_eq!(
        h.get("/api/v1beta/workloads/s").await.status,
        StatusCode::NOT_FOUND
    );
    let r = h
        .create(
            json!({"name": "s", "registry": "team", "server": "io.github.team/secretive",
            "env_vars": {"API_TOKEN": "t0k"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let got = h.get("/api/v1beta/workloads/s").await.json();
    assert_eq!(got["env_vars"]["MODE"], "fast");
    assert_eq!(
        got["image"], "fake://echo",
        "the OCI image on a container runtime"
    );

    for (body, status, needle) in [
        (
            json!({"server": "no-such"}),
            StatusCode::NOT_FOUND,
            "no-such",
        ),
        (
            json!({"registry": "ghost", "server": "time"}),
            StatusCode::NOT_FOUND,
            "ghost",
        ),
        (
            json!({"name": "x", "registry": "team"}),
            StatusCode::BAD_REQUEST,
            "server",
        ),
    ] {
        let r = h.create(body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert!(r.text.contains(needle), "{body}: {}", r.text);
    }
}

#[tokio::test]
async fn a_hand_edited_registries_file_never_stops_berth() {
    for garbage in [
        "{ not json".to_owned(),
        json!({"registries": [{"name": "../../etc", "source": {"type": "embedded"}},
            {"name": "ok-one", "source": {"type": "file", "path": "/nonexistent/r.json"}}]})
        .to_string(),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("registries.json"), &garbage).expect("write");
        let h = crate::api::harness_on(
            dir,
            &[std::sync::Arc::new(
                berth_runtime_api::fake::FakeBackend::new(),
            )],
        )
        .await;
        let list = h.get("/api/v1beta/registry").await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.text);
        let list = list.json();
        let names: Vec<&str> = list["registries"]
            .as_array()
            .expect("list")
            .iter()
            .map(|r| r["name"].as_str().expect("name"))
            .collect();
        assert!(names.contains(&"default"), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("..")), "{names:?}");
        if let Some(bad) = list["registries"]
            .as_array()
            .expect("list")
            .iter()
            .find(|r| r["name"] == "ok-one")
        {
            // Listed with the reason it cannot be read; the others work.
            assert!(bad["error"].as_str().is_some(), "{bad}");
            assert_eq!(
                h.get("/registry/default/v0.1/servers").await.status,
                StatusCode::OK
            );
        }
    }
}

#[tokio::test]
async fn hostile_registry_entries_never_reach_a_runtime() {
    let h = harness().await;
    let file = h.dir.path().join("evil.json");
    let mut npm_option = pypi("io.evil/npm-option", "x", "1.0.0");
    npm_option["packages"][0]["registryType"] = json!("npm");
    npm_option["packages"][0]["identifier"] = json!("--registry=http://evil.example");
    let mut range = pypi("io.evil/range", "mcp-server-time", ">=1");
    range["packages"][0]["version"] = json!(">=1");
    let mut injected_env = pypi("io.evil/env", "mcp-server-time", "1.0.0");
    injected_env["packages"][0]["environmentVariables"] = json!([{"name": "LD_PRELOAD=/tmp/x.so"}]);
    let mut control = pypi("io.evil/control", "mcp-server-time", "1.0.0");
    control["description"] = json!("line\u{1b}[2Jclear");
    let mut far = pypi("io.evil/far", "mcp-server-time", "1.0.0");
    far["remotes"] = json!([{"type": "sse", "url": "file:///etc/passwd"}]);
    write(
        &file,
        &document(json!([
            npm_option,
            range,
            injected_env,
            control,
            far,
            pypi("io.good/fine", "mcp-server-time", "1.0.0")
        ])),
    );
    let r = h
        .post(
            "/api/v1beta/registry",
            json!({"name": "evil", "local_path": file}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let info = h.get("/api/v1beta/registry/evil").await.json();
    assert_eq!(info["skipped_entries"], 3, "{info}");
    for server in ["env", "control", "far"] {
        let r = h
            .get(&format!("/api/v1beta/registry/evil/servers/{server}"))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{server} was skipped");
    }
    // Listed, but its package reference is refused when it would run.
    for (server, why) in [
        ("npm-option", "invalid npm package"),
        ("range", "invalid version"),
    ] {
        let r = h
            .create(json!({"name": server, "registry": "evil", "server": server}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{server}: {}", r.text);
        assert!(r.text.contains(why), "{server}: {}", r.text);
    }
}
