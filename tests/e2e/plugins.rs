//! WebAssembly middleware on the proxy path, through the `berth` binary
//! and real MCP clients: on stdio, HTTP (process and container) and remote
//! workloads, over streamable HTTP and the legacy SSE transport.

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

use crate::proxy::mcp_echo;
use crate::serve::{Berth, T, free_port};
use crate::support::plugins::wasm;

pub(crate) fn toml_path(p: std::path::PathBuf) -> String {
    p.display().to_string().replace('\\', "\\\\")
}

pub(crate) async fn url_of(b: &Berth, name: &str) -> String {
    let (_, body) = b
        .req(reqwest::Method::GET, &format!("/workloads/{name}"), None)
        .await;
    let (_, list) = b.req(reqwest::Method::GET, "/workloads", None).await;
    let list: Value = serde_json::from_str(&list).expect("json");
    list["workloads"]
        .as_array()
        .expect("array")
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {body}"))["url"]
        .as_str()
        .expect("url")
        .to_owned()
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().expect("object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_guard_hides_and_refuses_a_tool_for_a_real_client() {
    let root = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "[[plugins]]\nname = \"guard\"\nkind = \"middleware\"\npath = \"{}\"\nconfig = {{ deny = [\"crash\"] }}\n",
        toml_path(wasm("middleware-tool-guard"))
    );
    let b = Berth::start_with(root.path(), free_port(), &toml).await;
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": "guarded", "image": mcp_echo(),
                "middleware_configs": [{"type": "wasm", "parameters": {"plugin": "guard", "config": {"deny": ["crash", "sleep"]}}}]}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status("guarded", "running").await;
    let (code, cfg) = b
        .req(reqwest::Method::GET, "/workloads/guarded", None)
        .await;
    assert_eq!(code, 200);
    assert!(cfg.contains("\"plugin\":\"guard\""), "{cfg}");

    let url = url_of(&b, "guarded").await;
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(url))
            .await
            .expect("rmcp connects");
    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(tools.contains(&"echo".to_owned()), "{tools:?}");
    assert!(
        !tools.contains(&"sleep".to_owned()),
        "sleep is hidden: {tools:?}"
    );
    assert!(
        !tools.contains(&"crash".to_owned()),
        "crash is hidden: {tools:?}"
    );
    let refused = client
        .call_tool(CallToolRequestParams::new("sleep").with_arguments(args(json!({"ms": 1}))))
        .await
        .expect_err("sleep is refused");
    let text = refused.to_string();
    assert!(text.contains("not allowed"), "{text}");
    let ok = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args(json!({"message": "guarded"}))),
        )
        .await
        .expect("echo works");
    assert!(
        serde_json::to_string(&ok.content)
            .expect("json")
            .contains("echo: guarded")
    );
    let _ = client.cancel().await;

    // The plugin's statistics are in the API.
    let (code, body) = b
        .req(reqwest::Method::GET, "/x/berth/plugins/guard", None)
        .await;
    assert_eq!(code, 200, "{body}");
    let info: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(info["state"], "loaded");
    assert_eq!(info["wit_version"], "0.1.0");
    assert!(info["calls"].as_u64().expect("calls") >= 3, "{info}");
    assert_eq!(info["traps"], 0);

    // Unknown plugins and other middleware types are refused at create.
    for (mw, want) in [
        (
            json!({"type": "wasm", "parameters": {"plugin": "nope"}}),
            "plugin `nope` not found",
        ),
        (json!({"type": "authz", "parameters": {}}), "not supported"),
    ] {
        let (code, body) = b
            .post(
                "/workloads",
                json!({"name": "bad", "image": mcp_echo(), "middleware_configs": [mw]}),
            )
            .await;
        assert_eq!(code, 400, "{body}");
        assert!(body.contains(want), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_middleware_fails_its_calls_while_berth_keeps_serving() {
    let root = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "[[plugins]]\nname = \"spin\"\nkind = \"middleware\"\npath = \"{}\"\ntimeout_ms = 200\n\n\
         [[plugins]]\nname = \"teapot\"\nkind = \"middleware\"\npath = \"{}\"\nglobal = true\n",
        toml_path(wasm("test-spin")),
        toml_path(wasm("test-echo-mw"))
    );
    let b = Berth::start_with(root.path(), free_port(), &toml).await;
    for (name, mw) in [
        (
            "hostile",
            json!([{"type": "wasm", "parameters": {"plugin": "spin"}}]),
        ),
        ("fine", json!([])),
    ] {
        let (code, body) = b
            .post(
                "/workloads",
                json!({"name": name, "image": mcp_echo(), "middleware_configs": mw}),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        b.wait_status(name, "running").await;
    }
    let hostile = url_of(&b, "hostile").await;
    let fine = url_of(&b, "fine").await;

    let http = reqwest::Client::new();
    let session = |url: String| {
        let http = http.clone();
        async move {
            let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
            let r = http
                .post(&url)
                .header("accept", "application/json, text/event-stream")
                .json(&init)
                .send()
                .await
                .expect("initialize");
            r.headers()["mcp-session-id"]
                .to_str()
                .expect("id")
                .to_owned()
        }
    };
    let call = |url: String, sid: String, id: u64, args: Value| {
        let http = http.clone();
        async move {
            let mut body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "echo", "arguments": args}});
            if body["params"]["arguments"]["__berth_test_deny"] == true {
                // The test middleware looks for the marker in the params.
                body["params"]["__berth_test_deny"] = json!(true);
            }
            let r = http
                .post(&url)
                .header("accept", "application/json")
                .header("mcp-session-id", sid)
                .json(&body)
                .send()
                .await
                .expect("call");
            r.json::<Value>().await.expect("json")
        }
    };
    let hs = session(hostile.clone()).await;
    let fs = session(fine.clone()).await;
    // Several hostile calls in flight; meanwhile the other workload and the
    // API answer.
    let mut stuck = Vec::new();
    for i in 0..4 {
        stuck.push(tokio::spawn(call(
            hostile.clone(),
            hs.clone(),
            10 + i,
            json!({"message": "x"}),
        )));
    }
    for i in 0..10 {
        let a = call(
            fine.clone(),
            fs.clone(),
            100 + i,
            json!({"message": format!("m{i}")}),
        )
        .await;
        assert_eq!(
            a["result"]["content"][0]["text"],
            format!("echo: m{i}"),
            "{a}"
        );
        let h = reqwest::get(format!("{}/health", b.base))
            .await
            .expect("health");
        assert_eq!(h.status(), 204);
    }
    for s in stuck {
        let a = s.await.expect("joined");
        assert_eq!(a["error"]["code"], -32003, "{a}");
        let msg = a["error"]["message"].as_str().expect("message");
        assert!(msg.contains("spin") && msg.contains("timed out"), "{msg}");
    }
    // The global middleware runs on every workload.
    let a = call(
        fine.clone(),
        fs.clone(),
        500,
        json!({"message": "m", "__berth_test_deny": true}),
    )
    .await;
    assert_eq!(a["error"]["code"], -32003, "{a}");
    assert_eq!(a["error"]["data"]["status"], 418, "{a}");

    let (_, body) = b.req(reqwest::Method::GET, "/x/berth/plugins", None).await;
    let list: Value = serde_json::from_str(&body).expect("json");
    let spin = list["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .find(|p| p["name"] == "spin")
        .expect("spin listed")
        .clone();
    assert!(spin["traps"].as_u64().expect("traps") >= 4, "{spin}");
    // Reload recompiles (from the cache) and the plugin stays usable.
    let (code, body) = b.post("/x/berth/plugins/spin/reload", json!({})).await;
    assert_eq!(code, 200, "{body}");
    let info: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(info["state"], "loaded");
    assert_eq!(info["cached"], true);
    let (code, _) = b.post("/x/berth/plugins/nope/reload", json!({})).await;
    assert_eq!(code, 404);
}

/// berth's configuration with the tool guard as plugin `guard`, after
/// `head` (top-level keys such as `runtime`).
pub(crate) fn guard_config(head: &str) -> String {
    format!(
        "{head}[[plugins]]\nname = \"guard\"\nkind = \"middleware\"\npath = \"{}\"\n",
        toml_path(wasm("middleware-tool-guard"))
    )
}

/// The guard as a workload's middleware: `crash` and `sleep` are denied.
pub(crate) fn guard_middleware() -> Value {
    json!([{"type": "wasm", "parameters": {"plugin": "guard", "config": {"deny": ["crash", "sleep"]}}}])
}

/// Through the official Rust SDK's client (rmcp) at `url`: the guard hides
/// `crash` and `sleep`, refuses a call of either before it reaches the
/// server (a `crash` that got there would end the session: the server
/// exits), and lets `echo` through.
pub(crate) async fn check_guarded(url: &str) {
    // An HTTP server may still be starting behind its proxy.
    let client = crate::support::eventually(T, "the server to answer through the proxy", || {
        let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
        async move { ().serve(transport).await.ok() }
    })
    .await;
    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(tools.contains(&"echo".to_owned()), "{tools:?}");
    for hidden in ["crash", "sleep"] {
        assert!(
            !tools.contains(&hidden.to_owned()),
            "{hidden} is hidden: {tools:?}"
        );
    }
    // A deadline, not a timing assertion: a call that reached the server
    // and crashed it would never be answered.
    let call = |tool: &'static str, arguments: Value| {
        let call =
            client.call_tool(CallToolRequestParams::new(tool).with_arguments(args(arguments)));
        async move {
            tokio::time::timeout(T, call)
                .await
                .unwrap_or_else(|_| panic!("no answer to {tool}"))
        }
    };
    for (tool, arguments) in [("crash", json!({})), ("sleep", json!({"ms": 1}))] {
        let refused = call(tool, arguments).await.expect_err("refused");
        let text = refused.to_string();
        assert!(text.contains("not allowed"), "{tool}: {text}");
    }
    let ok = call("echo", json!({"message": "guarded"}))
        .await
        .expect("echo works, in the same session: the server never crashed");
    assert!(
        serde_json::to_string(&ok.content)
            .expect("json")
            .contains("echo: guarded"),
        "{ok:?}"
    );
    let _ = client.cancel().await;
}

/// A process of the test's own, ended when dropped.
struct Spawned(std::process::Child);

impl Spawned {
    fn new(cmd: &mut std::process::Command) -> Self {
        Self(cmd.spawn().expect("spawn"))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something listens on `port` of loopback.
async fn listening(port: u16) {
    crate::support::eventually(T, "the server to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(drop)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_guard_refuses_a_tool_on_an_http_workload() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start_with(root.path(), free_port(), &guard_config("")).await;
    let target = free_port();
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": "guarded-http", "image": mcp_echo(), "transport": "streamable-http",
                "target_port": target, "cmd_arguments": ["--http", format!("127.0.0.1:{target}")],
                "middleware_configs": guard_middleware()}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status("guarded-http", "running").await;
    check_guarded(&url_of(&b, "guarded-http").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_guard_refuses_a_tool_on_a_remote_workload() {
    let port = free_port();
    let echo = mcp_echo();
    let _server = Spawned::new(
        std::process::Command::new(echo.strip_prefix("exec://").expect("exec:// path"))
            .args(["--http", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null()),
    );
    listening(port).await;
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start_with(root.path(), free_port(), &guard_config("")).await;
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": "guarded-remote", "url": format!("http://127.0.0.1:{port}/mcp"),
                "middleware_configs": guard_middleware()}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status("guarded-remote", "running").await;
    check_guarded(&url_of(&b, "guarded-remote").await).await;
}

/// The official Python SDK's client over the legacy SSE transport at
/// `url`: `crash` is hidden and refused, `echo` answers.
fn check_guarded_sse(url: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/py_client.py");
    let out = std::process::Command::new("python3")
        .args([script, url, "--transport", "sse", "--mode", "legacy"])
        .args(["--hidden", "crash", "--refused", "crash"])
        .args(["echo", r#"{"message": "legacy"}"#, "echo: legacy"])
        .output()
        .expect("python3 runs (pip install mcp)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("ok:"),
        "{url}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_guard_refuses_a_tool_over_legacy_sse_remote_and_stdio() {
    // A remote server of the old transport (Python SDK).
    let port = free_port();
    let _server = Spawned::new(
        std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/py_sse_server.py"
            ))
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    listening(port).await;
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start_with(root.path(), free_port(), &guard_config("")).await;
    for (name, workload) in [
        (
            "guarded-sse",
            json!({"url": format!("http://127.0.0.1:{port}/sse"), "transport": "sse"}),
        ),
        (
            "guarded-stdio-sse",
            json!({"image": mcp_echo(), "proxy_mode": "sse"}),
        ),
    ] {
        let mut workload = workload;
        workload["name"] = json!(name);
        workload["middleware_configs"] = guard_middleware();
        let (code, body) = b.post("/workloads", workload).await;
        assert_eq!(code, 201, "{body}");
        b.wait_status(name, "running").await;
        let url = url_of(&b, name).await;
        let url = url.split('#').next().expect("url").to_owned();
        tokio::task::spawn_blocking(move || check_guarded_sse(&url))
            .await
            .expect("the client ran");
    }
}
