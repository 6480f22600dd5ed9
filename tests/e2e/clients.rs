//! Real MCP clients through berth's proxy to real MCP servers: the official
//! Python SDK (`mcp` on PyPI; handshake era and 2026-07-28 negotiation,
//! streamable HTTP and SSE) and the official Rust SDK (rmcp) against
//! `@modelcontextprotocol/server-everything` (npx://) and `mcp-server-time`
//! (uvx://).

use std::process::Command;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

use crate::serve::{Berth, free_port};
use crate::support::eventually;

struct Server {
    name: &'static str,
    image: &'static str,
    tool: &'static str,
    expect: &'static str,
}

const EVERYTHING: Server = Server {
    name: "everything",
    image: "npx://@modelcontextprotocol/server-everything",
    tool: "echo",
    expect: "Echo: berth",
};

const TIME: Server = Server {
    name: "time",
    image: "uvx://mcp-server-time",
    tool: "get_current_time",
    expect: "\"timezone\": \"UTC\"",
};

/// The arguments of each server's tool.
fn args(s: &Server) -> Value {
    match s.name {
        "everything" => json!({"message": "berth"}),
        _ => json!({"timezone": "UTC"}),
    }
}

/// Creates the workload and waits until its server answers through the
/// proxy (npx and uvx may first fetch the package).
async fn start(b: &Berth, s: &Server, suffix: &str, proxy_mode: &str) -> String {
    let name = format!("{}{suffix}", s.name);
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": name, "image": s.image, "proxy_mode": proxy_mode}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status(&name, "running").await;
    let (_, list) = b.req(reqwest::Method::GET, "/workloads", None).await;
    let list: Value = serde_json::from_str(&list).expect("json");
    let w = list["workloads"]
        .as_array()
        .expect("array")
        .iter()
        .find(|w| w["name"] == name.as_str())
        .expect("listed")
        .clone();
    let url = w["url"].as_str().expect("url").to_owned();
    let health = format!("http://127.0.0.1:{}/health", w["port"]);
    eventually(
        Duration::from_secs(180),
        "the server to answer pings",
        || async {
            let r = reqwest::get(&health).await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    url.split('#').next().expect("url").to_owned()
}

fn python(url: &str, transport: &str, mode: &str, s: &Server) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/py_client.py");
    let out = Command::new("python3")
        .args([
            script,
            url,
            "--transport",
            transport,
            "--mode",
            mode,
            s.tool,
        ])
        .arg(args(s).to_string())
        .arg(s.expect)
        .output()
        .expect("python3 runs (pip install mcp)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python {transport}/{mode} against {}: {stdout}\n{}",
        s.name,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok:"), "{stdout}");
    if mode == "auto" && transport == "streamable" {
        assert!(
            stdout.contains("protocol 2026-07-28"),
            "auto mode negotiates the stateless revision: {stdout}"
        );
    }
}

async fn rust(url: &str, s: &Server, lifecycle: ClientLifecycleMode) {
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    let client = ().serve_with_lifecycle(transport, lifecycle).await.expect("rmcp connects");
    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(
        tools.iter().any(|t| t.name == s.tool),
        "{} lists {}",
        s.name,
        s.tool
    );
    let Value::Object(arguments) = args(s) else {
        unreachable!()
    };
    let result = client
        .call_tool(CallToolRequestParams::new(s.tool).with_arguments(arguments))
        .await
        .expect("tools/call");
    let text = serde_json::to_string(&result.content).expect("json");
    assert!(
        text.contains(&s.expect.replace('"', "\\\"")) || text.contains(s.expect),
        "{text}"
    );
    let _ = client.cancel().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_through_berth() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start(root.path(), free_port()).await;
    for s in [&EVERYTHING, &TIME] {
        let url = start(&b, s, "", "streamable-http").await;
        python(&url, "streamable", "legacy", s);
        python(&url, "streamable", "auto", s);
        rust(&url, s, ClientLifecycleMode::Initialize).await;
        rust(
            &url,
            s,
            ClientLifecycleMode::Auto {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                legacy_version: None,
            },
        )
        .await;
        let sse = start(&b, s, "-sse", "sse").await;
        python(&sse, "sse", "legacy", s);
    }

    // A server-initiated request (sampling) reaches the session whose tool
    // call caused it, and its answer gets back to the server. The sampling
    // client must be the first, since the server offers its sampling tool
    // only to a client that declared sampling in the handshake.
    let url = start(&b, &EVERYTHING, "-sampling", "streamable-http").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/py_sampling.py");
    let out = Command::new("python3")
        .args([script, &url])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "sampling through berth: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A remote workload (`url`): the rmcp client reaches a streamable-HTTP
/// server that berth does not run, through berth's proxy, with the
/// configured header sent along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_through_a_remote_workload() {
    let bin = crate::proxy::mcp_echo();
    let bin = bin
        .strip_prefix("exec://")
        .expect("exec:// path")
        .to_owned();
    let port = free_port();
    let mut server = tokio::process::Command::new(&bin)
        .args(["--http", &format!("127.0.0.1:{port}")])
        .kill_on_drop(true)
        .spawn()
        .expect("mcp-echo starts");
    eventually(Duration::from_secs(10), "mcp-echo to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;

    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start(root.path(), free_port()).await;
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": "far", "url": format!("http://127.0.0.1:{port}/mcp"),
                "header_forward": {"add_plaintext_headers": {"X-Tenant": "acme"}}}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status("far", "running").await;
    let (_, list) = b.req(reqwest::Method::GET, "/workloads", None).await;
    let list: Value = serde_json::from_str(&list).expect("json");
    let url = list["workloads"][0]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert!(url.ends_with("/mcp"), "{url}");

    let transport = StreamableHttpClientTransport::from_uri(url);
    let client = ().serve(transport).await.expect("rmcp connects through berth");
    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "echo"), "{tools:?}");
    let result = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(
                json!({"message": "far away"})
                    .as_object()
                    .cloned()
                    .expect("object"),
            ),
        )
        .await
        .expect("tools/call");
    let text = serde_json::to_string(&result.content).expect("json");
    assert!(text.contains("echo: far away"), "{text}");
    let _ = client.cancel().await;
    let _ = server.kill().await;
}
