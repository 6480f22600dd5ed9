//! The management API against what a web page or a stranger could send:
//! cross-site requests, DNS rebinding, missing or wrong tokens. Each attack
//! is refused, and afterwards nothing was created or changed.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::serve::{Berth, T, free_port};
use crate::support::eventually;

/// One HTTP/1.1 request written byte for byte (duplicate headers, any
/// `Host`): the status code and the body.
async fn raw(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .expect("read");
    let out = String::from_utf8_lossy(&out).into_owned();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {out}"));
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (code, body)
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn browser_attacks_on_the_management_api_are_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let b = Berth::start(root.path(), port).await;
    let pwned = root.path().join("PWNED");
    let payload = json!({
        "name": "x",
        "image": "exec:///bin/sh",
        "cmd_arguments": ["-c", format!("id > {}; exec cat", pwned.display())],
    })
    .to_string();
    let edit = json!({"image": "exec:///bin/sh", "cmd_arguments": ["-c", "exec cat"]}).to_string();
    let group = json!({"name": "evil"}).to_string();
    let bulk = json!({"names": ["x"]}).to_string();
    let state_before = files_under(&b.state());

    // Every route kind, mutating and reading.
    let routes: Vec<(&str, &str, &str)> = vec![
        ("POST", "/api/v1beta/workloads", &payload),
        ("POST", "/api/v1beta/workloads/x/edit", &edit),
        ("POST", "/api/v1beta/groups", &group),
        ("POST", "/api/v1beta/workloads/stop", &bulk),
        ("POST", "/api/v1beta/workloads/restart", &bulk),
        ("POST", "/api/v1beta/workloads/delete", &bulk),
        ("POST", "/api/v1beta/workloads/x/restart", ""),
        ("DELETE", "/api/v1beta/workloads/x", ""),
        ("DELETE", "/api/v1beta/groups/default", ""),
        ("GET", "/api/v1beta/workloads?all=true", ""),
        ("GET", "/api/v1beta/workloads/x/export", ""),
        ("GET", "/api/v1beta/groups", ""),
        ("GET", "/api/v1beta/version", ""),
        ("GET", "/api/openapi.json", ""),
        ("GET", "/api/doc", ""),
        ("GET", "/health", ""),
        ("GET", "/no/such/route", ""),
    ];
    let own = format!("http://127.0.0.1:{port}");
    let attacks: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "CSRF, text/plain",
            vec![
                ("Origin", "http://evil.example"),
                ("Content-Type", "text/plain;charset=UTF-8"),
            ],
        ),
        (
            "CSRF, form",
            vec![
                ("Origin", "http://evil.example"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
        ),
        (
            "CSRF, JSON",
            vec![
                ("Origin", "https://evil.example"),
                ("Content-Type", "application/json"),
            ],
        ),
        (
            "foreign Host (DNS rebinding)",
            vec![("Host", "rebind.evil.example")],
        ),
        (
            "foreign Host with port",
            vec![("Host", "rebind.evil.example:8080")],
        ),
        ("Origin: null", vec![("Origin", "null")]),
        (
            "prefix lookalike",
            vec![("Origin", "http://localhost.evil.com")],
        ),
        (
            "prefix lookalike with port",
            vec![("Origin", "http://127.0.0.1.evil.com")],
        ),
        (
            "Sec-Fetch-Site: cross-site",
            vec![("Sec-Fetch-Site", "cross-site")],
        ),
        ("loopback origin", vec![("Origin", "http://localhost:3000")]),
        ("berth's own origin", vec![("Origin", &own)]),
        (
            "two Origin headers",
            vec![
                ("Origin", "http://evil.example"),
                ("Origin", "http://evil.example"),
            ],
        ),
    ];
    for (what, headers) in &attacks {
        for (method, path, body) in &routes {
            let (code, text) = raw(port, method, path, headers, body).await;
            assert_eq!(code, 403, "{what}: {method} {path} answered {code}: {text}");
        }
    }

    // Nothing was created or changed.
    assert!(!pwned.exists(), "the CSRF payload ran");
    let (code, list) = b
        .req(reqwest::Method::GET, "/workloads?all=true", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&list).expect("json")["workloads"],
        json!([])
    );
    let (_, groups) = b.req(reqwest::Method::GET, "/groups", None).await;
    let groups: Value = serde_json::from_str(&groups).expect("json");
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["default"]);
    assert_eq!(files_under(&b.state()), state_before, "the state changed");

    // The same requests without `Origin`, as curl sends them, still work
    // (curl's `-d` says form content; berth reads it as JSON).
    let harmless = json!({"name": "x", "image": "exec:///bin/cat"}).to_string();
    let (code, text) = raw(
        port,
        "POST",
        "/api/v1beta/workloads",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &harmless,
    )
    .await;
    assert_eq!(code, 201, "{text}");
    b.wait_status("x", "running").await;
    let (code, _) = raw(
        port,
        "GET",
        "/api/v1beta/workloads/x/export",
        &[("Host", "localhost:1")],
        "",
    )
    .await;
    assert_eq!(code, 200, "Host: localhost is fine");
    let (code, _) = raw(port, "GET", "/health", &[("Sec-Fetch-Site", "none")], "").await;
    assert_eq!(code, 204, "a typed-in address is fine");
}

#[tokio::test]
async fn allowed_origins_and_public_hosts_are_configurable() {
    let root = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _b = Berth::start_with(
        root.path(),
        port,
        "[api]\nallowed_origins = [\"https://ui.example.com\"]\npublic_hosts = [\"berth.example.com\"]\n",
    )
    .await;
    let ok = [
        ("Origin", "https://ui.example.com"),
        ("Sec-Fetch-Site", "cross-site"),
    ];
    let (code, _) = raw(port, "GET", "/api/v1beta/workloads", &ok, "").await;
    assert_eq!(code, 200);
    let (code, _) = raw(
        port,
        "GET",
        "/api/v1beta/workloads",
        &[("Host", "berth.example.com:8080")],
        "",
    )
    .await;
    assert_eq!(code, 200);
    for origin in [
        "https://ui.example.com:8443",
        "http://ui.example.com",
        "https://ui.example.com.evil.com",
    ] {
        let (code, _) = raw(
            port,
            "GET",
            "/api/v1beta/workloads",
            &[("Origin", origin)],
            "",
        )
        .await;
        assert_eq!(code, 403, "{origin}");
    }
}

const TOKEN: &str = "tok-8f14e45fceea167a5a36dedd4bea2543-secret";

#[tokio::test]
async fn the_api_token_is_required_and_never_logged() {
    let root = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let marker = root.path().join("env.txt");
    let config = root.path().join("config/berth");
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::write(
        config.join("berth.toml"),
        "[process]\ninherit_env = [\"BERTH_*\", \"PATH\"]\n",
    )
    .expect("config");
    let b = Berth::launch_args(
        root.path(),
        port,
        Some("process"),
        &[],
        &[
            ("BERTH_API_TOKEN", TOKEN),
            (
                "BERTH_SECRETS_PASSWORD",
                "pw-5f4dcc3b5aa765d61d8327deb882cf99",
            ),
            ("BERTH_INHERITED_PROBE", "yes"),
            ("RUST_LOG", "trace"),
        ],
    )
    .await;
    let auth = format!("Bearer {TOKEN}");
    let wrong = "Bearer tok-wrong-wrong-wrong-wrong-wrong-wrong-wrong";
    let (code, _) = raw(port, "GET", "/api/v1beta/workloads", &[], "").await;
    assert_eq!(code, 401, "no token");
    let (code, _) = raw(
        port,
        "GET",
        "/api/v1beta/workloads",
        &[("Authorization", wrong)],
        "",
    )
    .await;
    assert_eq!(code, 401, "wrong token");
    let (code, _) = raw(
        port,
        "GET",
        "/api/v1beta/workloads",
        &[("Authorization", &format!("Basic {TOKEN}"))],
        "",
    )
    .await;
    assert_eq!(code, 401, "not a bearer token");
    let (code, _) = raw(
        port,
        "GET",
        "/api/v1beta/workloads",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(code, 200, "right token");
    let (code, _) = raw(port, "GET", "/health", &[], "").await;
    assert_eq!(code, 204, "/health needs no token");
    let (code, _) = raw(port, "GET", "/api/openapi.json", &[], "").await;
    assert_eq!(code, 401, "every other route does");

    // Workloads never inherit berth's secrets, even when told to.
    let create = json!({
        "name": "envdump",
        "image": "exec:///bin/sh",
        "cmd_arguments": ["-c", format!("env > {}; exec cat", marker.display())],
    })
    .to_string();
    let (code, text) = raw(
        port,
        "POST",
        "/api/v1beta/workloads",
        &[("Authorization", &auth)],
        &create,
    )
    .await;
    assert_eq!(code, 201, "{text}");
    let env = eventually(T, "the workload's environment", || async {
        std::fs::read_to_string(&marker)
            .ok()
            .filter(|s| s.contains("PATH="))
    })
    .await;
    assert!(
        env.contains("BERTH_INHERITED_PROBE=yes"),
        "inheritance works: {env}"
    );
    assert!(!env.contains("BERTH_API_TOKEN"), "{env}");
    assert!(!env.contains("BERTH_SECRETS_PASSWORD"), "{env}");

    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(b);
    let log = std::fs::read_to_string(root.path().join("berth.log")).expect("log");
    assert!(
        log.contains("BERTH_API_TOKEN"),
        "the log says where the token comes from"
    );
    assert!(log.lines().count() > 20, "trace logging was on");
    for secret in [
        TOKEN,
        "tok-wrong-wrong",
        "pw-5f4dcc3b5aa765d61d8327deb882cf99",
    ] {
        assert!(!log.contains(secret), "a secret is in the log: {secret}");
    }
}

#[tokio::test]
async fn a_token_file_is_created_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let b = Berth::start_with(root.path(), port, "[api]\nauth = \"token\"\n").await;
    let file = root.path().join("config/berth/api-token");
    let mode = std::fs::metadata(&file)
        .expect("token file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let token = std::fs::read_to_string(&file).expect("read");
    let token = token.trim();
    assert_eq!(token.len(), 64);
    let (code, _) = raw(port, "GET", "/api/v1beta/groups", &[], "").await;
    assert_eq!(code, 401);
    let (code, _) = raw(
        port,
        "GET",
        "/api/v1beta/groups",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    )
    .await;
    assert_eq!(code, 200);
    drop(b);
    let log = std::fs::read_to_string(root.path().join("berth.log")).expect("log");
    assert!(
        log.contains(&file.display().to_string()),
        "the log names the file: {log}"
    );
    assert!(!log.contains(token));
}

#[tokio::test]
async fn a_remote_bind_needs_a_token() {
    let root = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let b = Berth::launch_args(
        root.path(),
        port,
        Some("process"),
        &["--host", "0.0.0.0"],
        &[("BERTH_API_TOKEN", TOKEN)],
    )
    .await;
    let (code, _) = raw(
        port,
        "GET",
        "/api/v1beta/groups",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    )
    .await;
    assert_eq!(code, 200);
    drop(b);
    let out = crate::serve::berth_cmd(root.path())
        .args([
            "serve",
            "--runtime",
            "process",
            "--host",
            "0.0.0.0",
            "--port",
            &free_port().to_string(),
        ])
        .env_remove("BERTH_API_TOKEN")
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without authentication") && err.contains("auth = \"token\""),
        "{err}"
    );
}

#[tokio::test]
async fn browser_attacks_on_the_proxies_are_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let b = Berth::start(root.path(), port).await;
    let echo = crate::proxy::mcp_echo();
    let (code, body) = b
        .post("/workloads", json!({"name": "s", "image": echo}))
        .await;
    assert_eq!(code, 201, "{body}");
    let stdio_port: u16 = serde_json::from_str::<Value>(&body).expect("json")["port"]
        .as_u64()
        .expect("port")
        .try_into()
        .expect("u16");
    b.wait_status("s", "running").await;
    // A remote workload in front of the first proxy: the HTTP upstream path.
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": "r", "url": format!("http://127.0.0.1:{stdio_port}/mcp")}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let remote_port: u16 = serde_json::from_str::<Value>(&body).expect("json")["port"]
        .as_u64()
        .expect("port")
        .try_into()
        .expect("u16");
    b.wait_status("r", "running").await;

    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}})
    .to_string();
    let routes: Vec<(u16, &str, &str, &str)> = vec![
        (stdio_port, "POST", "/mcp", &init),
        (stdio_port, "GET", "/mcp", ""),
        (stdio_port, "DELETE", "/mcp", ""),
        (stdio_port, "GET", "/sse", ""),
        (stdio_port, "POST", "/messages?sessionId=x", &init),
        (stdio_port, "GET", "/health", ""),
        (remote_port, "POST", "/mcp", &init),
        (remote_port, "GET", "/anything", ""),
    ];
    let attacks: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("foreign origin", vec![("Origin", "https://evil.example")]),
        ("Origin: null", vec![("Origin", "null")]),
        (
            "prefix lookalike",
            vec![("Origin", "http://localhost.evil.com")],
        ),
        ("DNS rebinding", vec![("Host", "rebind.evil.example")]),
        (
            "Sec-Fetch-Site: cross-site",
            vec![("Sec-Fetch-Site", "cross-site")],
        ),
        (
            "two Origin headers",
            vec![
                ("Origin", "http://localhost:6274"),
                ("Origin", "https://evil.example"),
            ],
        ),
    ];
    for (what, headers) in &attacks {
        for (p, method, path, body) in &routes {
            let mut headers = headers.clone();
            headers.push(("Content-Type", "application/json"));
            headers.push(("Accept", "application/json, text/event-stream"));
            let (code, text) = raw(*p, method, path, &headers, body).await;
            assert_eq!(
                code, 403,
                "{what}: {method} :{p}{path} answered {code}: {text}"
            );
        }
    }
    // A browser MCP client on localhost (the MCP Inspector) is served, on
    // both kinds of proxy.
    for p in [stdio_port, remote_port] {
        let (code, text) = raw(
            p,
            "POST",
            "/mcp",
            &[
                ("Origin", "http://localhost:6274"),
                ("Sec-Fetch-Site", "cross-site"),
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
            ],
            &init,
        )
        .await;
        assert_eq!(code, 200, ":{p} {text}");
    }
    let (code, _) = raw(stdio_port, "GET", "/health", &[("Host", "localhost")], "").await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn a_declared_oversize_body_is_refused_before_it_is_sent() {
    let root = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _b = Berth::start(root.path(), port).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // Headers only: the 5 MB body never comes.
    s.write_all(
        format!(
            "POST /api/v1beta/workloads HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(T, s.read(&mut buf))
        .await
        .expect("an answer without the body")
        .expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
}

#[tokio::test]
async fn the_api_listener_drops_slow_and_idle_connections() {
    let root = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _b = Berth::start_with(
        root.path(),
        port,
        "[api]\nheader_read_timeout_secs = 1\nidle_timeout_secs = 2\n",
    )
    .await;
    /// Reads until the server closes the connection; what it sent.
    async fn until_closed(s: &mut tokio::net::TcpStream) -> String {
        let mut out = Vec::new();
        tokio::time::timeout(T, s.read_to_end(&mut out))
            .await
            .expect("the server closes the connection")
            .expect("read");
        String::from_utf8_lossy(&out).into_owned()
    }
    // Half a request's headers, then nothing: closed.
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let answer = until_closed(&mut slow).await;
    assert!(
        !answer.contains("204"),
        "no answer to half a request: {answer}"
    );
    // A keep-alive connection that served a request and then idles: closed.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    idle.write_all(format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let answer = until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
}

#[tokio::test]
async fn package_specs_are_strict_on_the_process_runtime() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start(root.path(), free_port()).await;
    // The process runtime used to pass these to npx/uvx as they were.
    for image in [
        "npx://https://evil.example/pkg.tgz",
        "npx://git+https://github.com/x/y",
        "npx://github:x/y",
        "npx://../../tmp/pkg",
        "uvx://git+https://github.com/x/y",
        "uvx://./local",
        "uvx://pkg[extra]",
        "uvx://https://evil.example/x.whl",
    ] {
        let (code, body) = b
            .post("/workloads", json!({"name": "p", "image": image}))
            .await;
        assert_eq!(code, 400, "{image}: {body}");
    }
    let (_, list) = b
        .req(reqwest::Method::GET, "/workloads?all=true", None)
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&list).expect("json")["workloads"],
        json!([])
    );
}
