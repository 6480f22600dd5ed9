//! The MCP proxy end to end: berth runs a real stdio MCP server (the bench
//! echo server) and clients talk to it over HTTP.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::serve::{Berth, T, free_port};
use crate::support::eventually;
use crate::support::mcp::{Session, SseStream, sse_messages};

/// The stdlib-only echo MCP server of the shared benchmark kit, kept as a
/// fixture so that the tests need nothing outside the repository.
fn echo_server() -> (String, Vec<String>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/echo_server.py");
    assert!(std::path::Path::new(script).is_file(), "missing {script}");
    let out = std::process::Command::new("sh")
        .args(["-c", "command -v python3"])
        .output()
        .expect("sh");
    let python = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert!(python.starts_with('/'), "python3 must be on PATH");
    (format!("exec://{python}"), vec![script.to_owned()])
}

/// Calls the Python echo server's `echo` tool (it takes `text`).
async fn echo(c: &mut Session, id: u64, text: &str) -> Value {
    c.call(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text}}}))
        .await
}

fn echoed(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {answer}"))
}

async fn echo_workload(b: &Berth, name: &str) -> String {
    let (image, args) = echo_server();
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": name, "image": image, "cmd_arguments": args}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status(name, "running").await;
    let port = serde_json::from_str::<Value>(&body).expect("json")["port"]
        .as_u64()
        .expect("port");
    format!("http://127.0.0.1:{port}/mcp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_each_get_their_own_answers() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start(root.path(), free_port()).await;
    let url = echo_workload(&b, "echo").await;
    let mut tasks = Vec::new();
    for s in 0..32u64 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Session::connect(&url).await;
            let mut seen = BTreeSet::new();
            for i in 0..20u64 {
                let text = format!(
                    "session {s} call {i} {}",
                    "x".repeat((s * 7 + i) as usize % 50)
                );
                let answer = echo(&mut c, i + 1, &text).await;
                assert_eq!(answer["id"], i + 1, "own id back");
                assert_eq!(echoed(&answer), text, "own payload back");
                seen.insert(i);
            }
            seen.len()
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("session task");
    }
    assert_eq!(total, 32 * 20);
}

/// The README's claim: a server that stops answering is seen `unhealthy`,
/// restarted, and the old session's next call works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_is_unhealthy_then_restarted_and_the_session_goes_on() {
    let root = tempfile::tempdir().expect("tempdir");
    let policy = "[restart]\nbase_delay_ms = 100\n\
                  [proxy]\nhealth_interval_secs = 1\nhealth_failures = 2\nrequest_timeout_secs = 1\n\
                  [process]\nstop_grace_secs = 1\n";
    let b = Berth::start_with(root.path(), free_port(), policy).await;
    let url = echo_workload(&b, "hang").await;
    let mut c = Session::connect(&url).await;
    assert_eq!(echoed(&echo(&mut c, 1, "before").await), "before");

    // The server freezes: it neither answers nor exits.
    let pids = b.workload_pids();
    assert!(!pids.is_empty());
    for pid in &pids {
        let ok = std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }
    let listed = async || -> Option<Value> {
        let (_, list) = b
            .req(reqwest::Method::GET, "/workloads?all=true", None)
            .await;
        let list: Value = serde_json::from_str(&list).ok()?;
        Some(list["workloads"][0].clone())
    };
    let seen = eventually(T, "the hung server to be seen unhealthy", || async {
        let w = listed().await?;
        (w["status"] == "unhealthy").then_some(w)
    })
    .await;
    assert!(
        seen["status_context"]
            .as_str()
            .is_some_and(|c| c.contains("not answering pings")),
        "{seen}"
    );
    // Restarted: a new process runs, and the frozen one is gone.
    eventually(T, "the server to be restarted", || async {
        let w = listed().await?;
        (w["status"] == "running" && w["restart_count"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    let now = b.workload_pids();
    assert!(
        !now.is_empty() && now.iter().all(|p| !pids.contains(p)),
        "{pids:?} -> {now:?}"
    );
    // The session opened before the hang answers again.
    let answer = echo(&mut c, 2, "after").await;
    assert_eq!(echoed(&answer), "after", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_server_crash_and_a_berth_restart() {
    let root = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let policy = "[restart]\nbase_delay_ms = 100\n";
    let mut b = Berth::start_with(root.path(), port, policy).await;
    let url = echo_workload(&b, "echo").await;
    let mut c = Session::connect(&url).await;
    assert_eq!(echoed(&echo(&mut c, 1, "before").await), "before");

    // The server dies under the session: berth restarts it and replays the
    // handshake; the same session's next call succeeds.
    let pids = b.workload_pids();
    assert!(!pids.is_empty());
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    // Once berth has seen the crash (a call racing the kill itself may have
    // been read by the dying process, so it fails rather than runs twice),
    // the session's next call waits for the restarted server and succeeds.
    eventually(T, "berth to notice the crash", || async {
        let (_, list) = b
            .req(reqwest::Method::GET, "/workloads?all=true", None)
            .await;
        let list: Value = serde_json::from_str(&list).ok()?;
        (list["workloads"][0]["restart_count"] == 1).then_some(())
    })
    .await;
    let answer = echo(&mut c, 2, "after crash").await;
    assert_eq!(echoed(&answer), "after crash", "{answer}");

    // berth itself is killed and started again: the same URL answers, and
    // the client's session is adopted rather than refused.
    b.signal("-KILL");
    let _ = b.child.wait();
    drop(b);
    let b = Berth::start_with(root.path(), port, policy).await;
    b.wait_status("echo", "running").await;
    let answer = eventually(T, "the URL to answer again", || async {
        let resp = c
            .send(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "after restart"}}}))
            .await;
        if !resp.status().is_success() {
            return None;
        }
        resp.json::<Value>().await.ok()
    })
    .await;
    assert_eq!(echoed(&answer), "after restart", "{answer}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_transport() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start(root.path(), free_port()).await;
    let (image, args) = echo_server();
    let (code, body) = b
        .post(
            "/workloads",
            json!({"name": "s", "image": image, "cmd_arguments": args, "proxy_mode": "sse"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status("s", "running").await;
    let (_, list) = b.req(reqwest::Method::GET, "/workloads", None).await;
    let list: Value = serde_json::from_str(&list).expect("json");
    let url = list["workloads"][0]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert!(url.ends_with("/sse#s"), "{url}");
    let base = url.trim_end_matches("/sse#s").to_owned();

    let http = reqwest::Client::new();
    let resp = http.get(format!("{base}/sse")).send().await.expect("sse");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut events = SseStream::new(resp);
    let mut next_event = async || events.next_event(Duration::from_secs(20)).await;
    let (name, endpoint) = next_event().await;
    assert_eq!(name, "endpoint");
    assert!(endpoint.starts_with("/messages?session_id="), "{endpoint}");
    let post = |body: Value| {
        let http = http.clone();
        let url = format!("{base}{endpoint}");
        async move {
            http.post(url)
                .json(&body)
                .send()
                .await
                .expect("post")
                .status()
        }
    };
    assert_eq!(
        post(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "sse", "version": "1"}}}))
        .await,
        202
    );
    let (_, init) = next_event().await;
    let init: Value = serde_json::from_str(&init).expect("json");
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05");
    post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    post(json!({"jsonrpc": "2.0", "id": "e", "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "over sse"}}}))
    .await;
    let (_, answer) = next_event().await;
    let answer: Value = serde_json::from_str(&answer).expect("json");
    assert_eq!(answer["id"], "e");
    assert_eq!(echoed(&answer), "over sse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_edges() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start(root.path(), free_port()).await;
    let url = echo_workload(&b, "edge").await;
    let http = reqwest::Client::new();
    let post = |body: String, headers: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let mut r = http
                .post(url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(body);
            for (k, v) in headers {
                r = r.header(k, v);
            }
            let resp = r.send().await.expect("post");
            (resp.status().as_u16(), resp.text().await.expect("body"))
        }
    };
    // Stateless 2026-07-28 requests: discovery answered by berth, calls
    // forwarded, results tagged.
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}});
    let (code, body) = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}})
            .to_string(),
        vec![("mcp-protocol-version", "2026-07-28".into())],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let d: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(d["result"]["supportedVersions"], json!(["2026-07-28"]));
    assert_eq!(d["result"]["serverInfo"]["name"], "bench-echo");
    let (code, body) = post(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"_meta": meta,
            "name": "echo", "arguments": {"text": "modern"}}})
        .to_string(),
        vec![("mcp-protocol-version", "2026-07-28".into())],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let r: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(echoed(&r), "modern");
    assert_eq!(r["result"]["resultType"], "complete");

    // A deleted session stays deleted; an id berth never minted is unknown.
    let mut c = Session::connect(&url).await;
    let sid = c.sid.clone().expect("session");
    let gone = c
        .http
        .delete(&url)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .expect("delete");
    assert_eq!(gone.status(), 204);
    let again = c
        .send(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}))
        .await;
    assert_eq!(again.status(), 404, "a terminated session answers 404");
    c.sid = Some("not-a-session".into());
    let made_up = c
        .send(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}))
        .await;
    assert_eq!(made_up.status(), 404);

    // A stateless request whose header contradicts its _meta is refused.
    let (code, body) = post(
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"_meta": meta}})
            .to_string(),
        vec![("mcp-protocol-version", "2025-06-18".into())],
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("-32020"), "{body}");

    // Batches, bad JSON, oversize bodies, foreign origins.
    let (code, _) = post("[{}]".into(), vec![]).await;
    assert_eq!(code, 400);
    let (code, body) = post("{nope".into(), vec![]).await;
    assert_eq!(code, 400, "{body}");
    // An oversize body is refused from its declared length, before it is
    // sent (a client still writing it would see the connection close).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .expect("authority")
            .to_owned();
        let mut s = tokio::net::TcpStream::connect(&authority)
            .await
            .expect("connect");
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n",
            11 << 20
        );
        s.write_all(head.as_bytes()).await.expect("write");
        s.write_all(&[b'a'; 4096]).await.expect("write");
        let mut buf = vec![0u8; 256];
        let n = tokio::time::timeout(T, s.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    }
    let (code, body) = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string(),
        vec![("origin", "https://evil.example".into())],
    )
    .await;
    assert_eq!(code, 403, "{body}");
    let (code, _) = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string(),
        vec![("origin", "http://localhost:5173".into())],
    )
    .await;
    assert_eq!(code, 200);
}

/// berth's own MCP test server (`tests/fixtures/mcp-echo`), built once per
/// test run next to the berth binary.
pub(crate) fn mcp_echo() -> String {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "berth-test-echo"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building mcp-echo failed");
    });
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_berth")).with_file_name("mcp-echo");
    assert!(bin.is_file(), "{} is missing", bin.display());
    format!("exec://{}", bin.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_cancellation_timeouts_and_crashes() {
    let root = tempfile::tempdir().expect("tempdir");
    let policy = "[restart]\nbase_delay_ms = 50\n[proxy]\nrequest_timeout_secs = 2\n";
    let b = Berth::start_with(root.path(), free_port(), policy).await;
    let (code, body) = b
        .post("/workloads", json!({"name": "fx", "image": mcp_echo()}))
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status("fx", "running").await;
    let port = serde_json::from_str::<Value>(&body).expect("json")["port"]
        .as_u64()
        .expect("port");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut c = Session::connect(&url).await;
    let call = |id: u64, tool: &str, args: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": args}})
    };

    // Progress flows on the request's own stream, with the client's token.
    let mut req = call(1, "progress", json!({"steps": 3}));
    req["params"]["_meta"] = json!({"progressToken": "mine"});
    let resp = c.send(&req).await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let msgs = sse_messages(&resp.text().await.expect("body"));
    let progress: Vec<_> = msgs
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{msgs:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "mine")
    );
    let last = msgs.last().expect("an answer");
    assert_eq!(last["id"], 1);
    assert_eq!(last["result"]["content"][0]["text"], "done 3");

    // A cancelled request releases its caller at once; the session goes on.
    let slow = {
        let http = c.http.clone();
        let url = c.url.clone();
        let session = c.sid.clone().expect("session");
        let body = call(2, "sleep", json!({"ms": 30000}));
        tokio::spawn(async move {
            let r = http
                .post(url)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", session)
                .json(&body)
                .send()
                .await
                .expect("post");
            r.json::<Value>().await.expect("json")
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.notify(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 2, "reason": "changed my mind"}}),
    )
    .await;
    // Released by the cancellation: neither the sleep's result nor the
    // request timeout's error.
    let answer = slow.await.expect("task");
    assert_eq!(answer["error"]["code"], -32800, "{answer}");
    assert_eq!(
        echoed(&c.call(call(3, "echo", json!({"message": "on"}))).await),
        "echo: on"
    );

    // A request the server does not answer in time gets a JSON-RPC timeout.
    let answer = c.call(call(4, "sleep", json!({"ms": 10000}))).await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    assert_eq!(
        echoed(&c.call(call(5, "echo", json!({"message": "still"}))).await),
        "echo: still"
    );

    // The server crashes while answering: that call fails honestly, berth
    // restarts the server, and the session's next call works.
    let answer = c.call(call(6, "crash", json!({}))).await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .expect("error")
            .contains("exited"),
        "{answer}"
    );
    let answer = c.call(call(7, "echo", json!({"message": "again"}))).await;
    assert_eq!(echoed(&answer), "echo: again", "{answer}");
    let (_, list) = b.req(reqwest::Method::GET, "/workloads", None).await;
    let list: Value = serde_json::from_str(&list).expect("json");
    assert_eq!(list["workloads"][0]["restart_count"], 1);

    // The proxy's own account of all this is in proxy-logs.
    let (code, log) = b
        .req(reqwest::Method::GET, "/workloads/fx/proxy-logs", None)
        .await;
    assert_eq!(code, 200);
    for needle in [
        "got no answer within",
        "server output closed; 1 unanswered request(s) failed",
        "replayed the MCP handshake",
    ] {
        assert!(log.contains(needle), "proxy-logs lacks {needle:?}:\n{log}");
    }
}

/// Starts the fixture server `name` under `b` and returns its `/mcp` URL.
async fn fixture_workload(b: &Berth, name: &str) -> String {
    let (code, body) = b
        .post("/workloads", json!({"name": name, "image": mcp_echo()}))
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status(name, "running").await;
    let port = serde_json::from_str::<Value>(&body).expect("json")["port"]
        .as_u64()
        .expect("port");
    format!("http://127.0.0.1:{port}/mcp")
}

/// The README's claim: with many sessions at once, progress messages and
/// server→client requests each reach only their own session, even when
/// every session uses the same request id and progress token. A server
/// request made while several sessions wait on the server carries no link
/// to any of them (stdio has none): it is refused, never guessed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_get_only_their_own_progress_and_server_requests() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start(root.path(), free_port()).await;
    let url = fixture_workload(&b, "many").await;
    let mut sessions = Vec::new();
    for _ in 0..16 {
        sessions.push(Session::connect(&url).await);
    }

    // Progress, all sessions at once: the same id and token everywhere, a
    // step count of each session's own.
    let mut tasks = Vec::new();
    for (s, c) in sessions.iter().cloned().enumerate() {
        tasks.push(tokio::spawn(async move {
            let steps = 2 + s % 5;
            let resp = c
                .post_sse(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": "progress", "arguments": {"steps": steps},
                    "_meta": {"progressToken": "same"}}}))
                .await;
            let msgs = sse_messages(&resp.text().await.expect("body"));
            let progress: Vec<_> = msgs
                .iter()
                .filter(|m| m["method"] == "notifications/progress")
                .collect();
            assert_eq!(progress.len(), steps, "session {s}: {msgs:?}");
            assert!(
                progress
                    .iter()
                    .all(|p| p["params"]["progressToken"] == "same")
            );
            let last = msgs.last().expect("an answer");
            assert_eq!(last["id"], 1, "session {s}");
            assert_eq!(echoed(last), format!("done {steps}"), "session {s}");
        }));
    }
    for t in tasks {
        t.await.expect("session task");
    }

    // Server→client requests with every session open, all at once: each
    // one reaches the session whose call caused it, or (when several
    // sessions wait on the server) is refused; never another session.
    let mut tasks = Vec::new();
    for (s, c) in sessions.iter().cloned().enumerate() {
        tasks.push(tokio::spawn(async move {
            let resp = c
                .post_sse(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": "sample", "arguments": {"prompt": format!("from {s}.")}}}))
                .await;
            let mut body = SseStream::new(resp);
            let first = body.next_message(T).await;
            if first["method"] == "sampling/createMessage" {
                assert!(
                    first.to_string().contains(&format!("from {s}.")),
                    "session {s} was asked for another: {first}"
                );
                c.notify(
                    json!({"jsonrpc": "2.0", "id": first["id"], "result": {"role": "assistant",
                    "content": {"type": "text", "text": format!("answer {s}")}, "model": "m"}}),
                )
                .await;
                let done = body.next_message(T).await;
                assert_eq!(done["id"], 2, "{done}");
                assert_eq!(echoed(&done), format!("sampled: answer {s}"), "{done}");
                true
            } else {
                assert_eq!(first["id"], 2, "{first}");
                assert!(
                    first.to_string().contains("cannot route"),
                    "session {s}: {first}"
                );
                false
            }
        }));
    }
    for t in tasks {
        t.await.expect("session task");
    }
    // One at a time, every session is asked and answers for itself.
    for (s, c) in sessions.iter().enumerate() {
        let resp = c
            .post_sse(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "sample", "arguments": {"prompt": format!("from {s}.")}}}))
            .await;
        let mut body = SseStream::new(resp);
        let asked = body.next_message(T).await;
        assert!(asked.to_string().contains(&format!("from {s}.")), "{asked}");
        c.notify(
            json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"role": "assistant",
            "content": {"type": "text", "text": format!("answer {s}")}, "model": "m"}}),
        )
        .await;
        assert_eq!(
            echoed(&body.next_message(T).await),
            format!("sampled: answer {s}")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_asked_session_answers_a_server_request() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start(root.path(), free_port()).await;
    let url = fixture_workload(&b, "ask").await;
    let a = Session::connect(&url).await;
    let mut other = Session::connect(&url).await;

    // A calls a tool that asks A's client for a completion; the request
    // reaches A on the stream of A's call.
    let resp = a
        .post_sse(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "sample", "arguments": {"prompt": "hello"}}}))
        .await;
    let mut body = SseStream::new(resp);
    let asked = body.next_message(T).await;
    assert_eq!(asked["method"], "sampling/createMessage", "{asked}");
    let id = asked["id"].as_str().expect("a string id").to_owned();

    // The other session knows the id (as an eavesdropper would) and
    // answers first: refused, and the request stays A's.
    let answer = |text: &str| {
        json!({"jsonrpc": "2.0", "id": id, "result": {"role": "assistant",
            "content": {"type": "text", "text": text}, "model": "m"}})
    };
    let forged = other.send(&answer("forged")).await;
    let status = forged.status();
    let text = forged.text().await.expect("body");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("-32600"), "{text}");
    // Without a session, nobody may answer either.
    let anonymous = reqwest::Client::new()
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .json(&answer("anonymous"))
        .send()
        .await
        .expect("post");
    assert_eq!(anonymous.status(), 400);

    // The id cannot be guessed from the ones before it.
    let random = id.strip_prefix("berth-").expect("berth's prefix");
    assert!(
        random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit()),
        "the id carries 128 random bits: {id}"
    );

    // A's own answer completes A's call.
    a.notify(answer("genuine")).await;
    let done = body.next_message(T).await;
    assert_eq!(done["id"], 1, "{done}");
    assert_eq!(echoed(&done), "sampled: genuine", "{done}");
    // The request is answered; a second answer is refused.
    assert_eq!(a.send(&answer("again")).await.status(), 400);
    assert_eq!(
        echoed(
            &other
                .call(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "fine"}}}))
                .await
        ),
        "echo: fine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_session_and_the_others_go_on() {
    let root = tempfile::tempdir().expect("tempdir");
    let b = Berth::start(root.path(), free_port()).await;
    let url = fixture_workload(&b, "slow").await;
    let slow = Session::connect(&url).await;
    let mut other = Session::connect(&url).await;

    // The slow client asks for 64 MiB of progress notifications and never
    // reads its stream: far more than the socket buffers and the session's
    // 16 MiB can hold.
    let unread = slow
        .post_sse(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "flood", "arguments": {"count": 64, "size": 1 << 20},
                "_meta": {"progressToken": "t"}}}))
        .await;
    eventually(T, "berth to close the slow session", || async {
        let (_, log) = b
            .req(reqwest::Method::GET, "/workloads/slow/proxy-logs", None)
            .await;
        log.contains("closed a client session: it left more than 16777216 bytes unread")
            .then_some(())
    })
    .await;

    // The other session goes on.
    let answer = other
        .call(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "unaffected"}}}))
        .await;
    assert_eq!(echoed(&answer), "echo: unaffected", "{answer}");
    // The slow client's stream ends with an error, never with an answer,
    // and its session is gone.
    assert!(unread.bytes().await.is_err(), "the stream was cut");
    let again = slow
        .send(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}))
        .await;
    assert_eq!(again.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonrpc_version_and_ids_of_any_size() {
    let root = tempfile::tempdir().expect("tempdir");
    // Without the version check, a request would wait for this timeout.
    let b = Berth::start_with(
        root.path(),
        free_port(),
        "[proxy]\nrequest_timeout_secs = 10\n",
    )
    .await;
    let url = fixture_workload(&b, "ids").await;
    let c = Session::connect(&url).await;
    let session = c.sid.clone().expect("session");
    let post = |body: String, accept: &'static str| {
        let http = c.http.clone();
        let (url, session) = (url.clone(), session.clone());
        async move {
            let resp = http
                .post(url)
                .header("content-type", "application/json")
                .header("accept", accept)
                .header("mcp-session-id", session)
                .body(body)
                .send()
                .await
                .expect("post");
            (resp.status().as_u16(), resp.text().await.expect("body"))
        }
    };
    let both = "application/json, text/event-stream";

    // No `"jsonrpc": "2.0"`: refused at once.
    for body in [
        r#"{"id":7,"method":"tools/list"}"#,
        r#"{"jsonrpc":"1.0","id":7,"method":"tools/list"}"#,
    ] {
        let (code, text) = post(body.to_owned(), both).await;
        assert_eq!(code, 400, "{text}");
        let err: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(err["error"]["code"], -32600, "{text}");
        assert_eq!(err["id"], 7, "{text}");
    }

    // Integer ids of any size come back byte for byte, as JSON and as SSE.
    let call = |id: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"big"}}}}}}"#
        )
    };
    for id in [
        "12345678901234567890123",
        "9007199254740993",
        "-12345678901234567890123",
    ] {
        for accept in ["application/json", "text/event-stream"] {
            let (code, text) = post(call(id), accept).await;
            assert_eq!(code, 200, "{text}");
            assert!(text.contains(&format!(r#""id":{id},"#)), "{accept}: {text}");
            assert!(text.contains("echo: big"), "{text}");
        }
    }
    let (code, text) = post(
        r#"{"id":12345678901234567890123,"method":"tools/list"}"#.into(),
        both,
    )
    .await;
    assert_eq!(code, 400);
    assert!(text.contains(r#""id":12345678901234567890123"#), "{text}");

    // The legacy SSE transport too.
    let base = url.trim_end_matches("/mcp").to_owned();
    let resp = c.http.get(format!("{base}/sse")).send().await.expect("sse");
    let mut events = SseStream::new(resp);
    let (_, endpoint) = events.next_event(T).await;
    let send = |body: String| {
        let http = c.http.clone();
        let url = format!("{base}{endpoint}");
        async move {
            let resp = http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("post");
            (resp.status().as_u16(), resp.text().await.expect("body"))
        }
    };
    let (code, text) = send(r#"{"id":8,"method":"tools/list"}"#.into()).await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("-32600"), "{text}");
    let (code, _) = send(call("12345678901234567890123")).await;
    assert_eq!(code, 202);
    let (_, answer) = events.next_event(T).await;
    assert!(
        answer.contains(r#""id":12345678901234567890123,"#),
        "{answer}"
    );
    assert!(answer.contains("echo: big"), "{answer}");
}

/// Reads from `sock` until the peer closes the connection (or resets it);
/// returns what arrived.
async fn read_to_close(sock: &mut tokio::net::TcpStream, what: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(T, sock.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("timed out after {T:?} waiting for {what}"),
        }
    }
}

/// Reads one HTTP response with a `Content-Length` body, leaving the
/// connection open.
async fn read_response(sock: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 1];
    loop {
        let n = tokio::time::timeout(T, sock.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed before a whole response: {got:?}");
        got.push(buf[0]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text.into_owned();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_limits_spare_open_streams() {
    use tokio::io::AsyncWriteExt;

    let root = tempfile::tempdir().expect("tempdir");
    let toml =
        "[proxy]\nheader_read_timeout_secs = 1\nidle_timeout_secs = 2\nmax_body_bytes = 4096\n";
    let b = Berth::start_with(root.path(), free_port(), toml).await;
    let url = fixture_workload(&b, "lim").await;
    let base = url.trim_end_matches("/mcp").to_owned();
    let addr = base.trim_start_matches("http://").to_owned();

    // A legacy SSE session: its stream stays open and silent throughout.
    let http = reqwest::Client::new();
    let resp = http.get(format!("{base}/sse")).send().await.expect("sse");
    let mut events = SseStream::new(resp);
    let (_, endpoint) = events.next_event(T).await;

    // A client that sends half its headers is disconnected.
    let mut half = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    half.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("write");
    let got = read_to_close(&mut half, "the half-sent request to be cut").await;
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got:?}");

    // A declared body over the limit is 413 before any of it is sent.
    let mut big = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    big.write_all(
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
    )
    .await
    .expect("write");
    let got = read_to_close(&mut big, "the 413").await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got:?}");

    // A keep-alive connection with nothing in flight is closed once idle,
    // after the idle limit (not the shorter header limit).
    let mut idle = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    idle.write_all(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    // It is kept alive after its answer (the header limit does not apply
    // between requests): a second request on it is answered too...
    let first = read_response(&mut idle).await;
    assert!(first.starts_with("HTTP/1.1 400"), "{first:?}");
    idle.write_all(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    // ...and then, with nothing in flight, it is closed.
    let got = read_to_close(&mut idle, "the idle connection to be closed").await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got:?}");

    // The SSE stream, silent for longer than both limits, still works.
    let status = http
        .post(format!("{base}{endpoint}"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .expect("post")
        .status();
    assert_eq!(status, 202);
    let (_, answer) = events.next_event(T).await;
    let answer: Value = serde_json::from_str(&answer).expect("json");
    assert_eq!(answer["id"], 1, "{answer}");
    assert!(answer["result"].is_object(), "{answer}");
}
