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

/// A TLS front for `backend` on a free port, with a certificate for
/// `localhost` issued by a CA of its own; returns the port and the CA's PEM.
async fn tls_front(backend: u16) -> (u16, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, ca.pem())
}

/// A remote workload over HTTPS: berth verifies the server's certificate
/// against the trusted roots (here a CA given through `SSL_CERT_FILE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_through_an_https_remote_workload() {
    let bin = crate::proxy::mcp_echo();
    let bin = bin
        .strip_prefix("exec://")
        .expect("exec:// path")
        .to_owned();
    let plain = free_port();
    let mut server = tokio::process::Command::new(&bin)
        .args(["--http", &format!("127.0.0.1:{plain}")])
        .kill_on_drop(true)
        .spawn()
        .expect("mcp-echo starts");
    eventually(Duration::from_secs(10), "mcp-echo to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", plain))
            .await
            .ok()
    })
    .await;
    let (tls_port, ca_pem) = tls_front(plain).await;
    let root = tempfile::tempdir().expect("tempdir");
    let ca_file = root.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("ca file");
    let b = Berth::start_env(
        root.path(),
        free_port(),
        &[("SSL_CERT_FILE", ca_file.to_str().expect("utf-8"))],
    )
    .await;
    for (name, url) in [
        ("secure", format!("https://localhost:{tls_port}/mcp")),
        // The same server by IP: the certificate does not name it.
        ("mismatch", format!("https://127.0.0.1:{tls_port}/mcp")),
    ] {
        let (code, body) = b
            .post("/workloads", json!({"name": name, "url": url}))
            .await;
        assert_eq!(code, 201, "{body}");
        b.wait_status(name, "running").await;
    }
    let (_, list) = b.req(reqwest::Method::GET, "/workloads", None).await;
    let list: Value = serde_json::from_str(&list).expect("json");
    let url_of = |name: &str| {
        list["workloads"]
            .as_array()
            .expect("array")
            .iter()
            .find(|w| w["name"] == name)
            .expect("listed")["url"]
            .as_str()
            .expect("url")
            .to_owned()
    };
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(url_of("secure")))
            .await
            .expect("rmcp connects through berth over TLS");
    let result = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(
                json!({"message": "tls"})
                    .as_object()
                    .cloned()
                    .expect("object"),
            ),
        )
        .await
        .expect("tools/call");
    assert!(
        serde_json::to_string(&result.content)
            .expect("json")
            .contains("echo: tls")
    );
    let _ = client.cancel().await;
    // A certificate that does not match is refused: 502 with the reason.
    let resp = reqwest::Client::new()
        .post(url_of("mismatch"))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .send()
        .await
        .expect("proxy answers");
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.expect("body");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    let _ = server.kill().await;
}

/// Run by name from the embedded registry on the process runtime:
/// `everything` (an npm package) and `time` (a PyPI package) start from
/// their pinned packages and answer `tools/list` to the official Rust SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_created_by_registry_name_answer() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start(root.path(), free_port()).await;
    for (server, tool) in [("everything", "echo"), ("time", "get_current_time")] {
        let name = format!("{server}-by-name");
        let (code, body) = b
            .post("/workloads", json!({"name": name, "server": server}))
            .await;
        assert_eq!(code, 201, "{body}");
        let (_, got) = b
            .req(reqwest::Method::GET, &format!("/workloads/{name}"), None)
            .await;
        let got: Value = serde_json::from_str(&got).expect("json");
        let image = got["image"].as_str().expect("image");
        assert!(
            image.starts_with("npx://") || image.starts_with("uvx://"),
            "a package on the process runtime: {got}"
        );
        assert!(image.contains('@'), "pinned: {image}");
        b.wait_status(&name, "running").await;
        let url = proxy_url(&b, &name).await;
        let tools = eventually(
            Duration::from_secs(180),
            &format!("{server} to list its tools"),
            || async {
                let transport = StreamableHttpClientTransport::from_uri(url.clone());
                let client = ().serve(transport).await.ok()?;
                let tools = client.list_all_tools().await.ok();
                let _ = client.cancel().await;
                tools
            },
        )
        .await;
        assert!(
            tools.iter().any(|t| t.name == tool),
            "{server} lists {tool}"
        );
    }
    // A server the process runtime cannot run (an OCI image only) is
    // refused there, naming the runtimes that can.
    let (code, body) = b
        .post(
            "/workloads",
            json!({"server": "github", "runtime": "process",
                "env_vars": {"GITHUB_PERSONAL_ACCESS_TOKEN": "x"}}),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("docker, podman"), "{body}");
}

/// The proxy URL of workload `name`, without its fragment.
async fn proxy_url(b: &Berth, name: &str) -> String {
    let (_, list) = b
        .req(reqwest::Method::GET, "/workloads?all=true", None)
        .await;
    let list: Value = serde_json::from_str(&list).expect("json");
    let url = list["workloads"]
        .as_array()
        .expect("array")
        .iter()
        .find(|w| w["name"] == name)
        .and_then(|w| w["url"].as_str())
        .expect("listed with a URL")
        .to_owned();
    url.split('#').next().expect("url").to_owned()
}
