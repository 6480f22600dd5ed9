//! Remote workloads whose header values come from the secrets manager
//! (`header_forward.add_headers_from_secret`): the remote server gets the
//! current value at each start, answers and files show only the reference.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::api::{Harness, harness};
use crate::remote::{header, upstream};
use crate::secrets::{KEYS, assert_no_file_has, assert_no_value, delete, put};

/// Sends one MCP request through the proxy on `port`, as a client that
/// tries to set `Authorization` itself; errors (a proxy restarting) are
/// ignored.
async fn send(client: &reqwest::Client, port: u64) {
    let _ = client
        .post(format!("http://127.0.0.1:{port}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", "Bearer from-the-client")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
        .send()
        .await;
}

/// Every answer about workload `name` that could show a value.
async fn answers(h: &Harness, name: &str) -> String {
    let mut out = String::new();
    for uri in [
        format!("/api/v1beta/workloads/{name}"),
        format!("/api/v1beta/workloads/{name}/export"),
        format!("/api/v1beta/workloads/{name}/status"),
        format!("/api/v1beta/workloads/{name}/proxy-logs"),
        "/api/v1beta/workloads?all=true".to_owned(),
    ] {
        let r = h.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text);
        out.push_str(&r.text);
    }
    out
}

#[tokio::test]
async fn remote_headers_come_from_secrets_at_each_start_and_show_only_references() {
    let h = harness().await;
    let (addr, seen) = upstream().await;
    let url = format!("http://{addr}/mcp");
    let (value, key_value) = ("Bearer hdr-s3cr3t-v1", "k3y-s3cr3t");
    for (key, v) in [("api-token", value), ("api-key", key_value)] {
        let r = h.post(KEYS, json!({"key": key, "value": v})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }

    // A reference to a missing secret is refused, naming it and the header.
    let r = h
        .create(json!({"name": "rs", "url": url,
            "header_forward": {"add_headers_from_secret": {"Authorization": "nope"}}}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("`nope`"), "{}", r.text);
    assert!(r.text.contains("Authorization"), "{}", r.text);
    assert!(h.listed("?all=true").await.is_empty(), "nothing was stored");

    // A registry header marked required is satisfied by a secret.
    let r = h
        .create(json!({"name": "rs", "url": url,
            "headers": [{"name": "X-Api-Key", "required": true, "secret": true}],
            "header_forward": {
                "add_plaintext_headers": {"X-Team": "blue"},
                "add_headers_from_secret": {"Authorization": "api-token", "X-Api-Key": "api-key"}}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let port = r.json()["port"].as_u64().expect("port");
    h.wait_status("rs", "running").await;

    // The remote server gets the secrets' values, over the client's own.
    let client = reqwest::Client::new();
    send(&client, port).await;
    let s = seen
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("upstream saw it");
    assert_eq!(header(&s, "authorization"), Some(value));
    assert_eq!(header(&s, "x-api-key"), Some(key_value));
    assert_eq!(header(&s, "x-team"), Some("blue"));
    assert!(s.body.contains("tools/list"));

    // Answers show the references, never the values.
    let got = h.get("/api/v1beta/workloads/rs").await.json();
    let refs = json!({"Authorization": "api-token", "X-Api-Key": "api-key"});
    assert_eq!(got["header_forward"]["add_headers_from_secret"], refs);
    assert_eq!(
        got["header_forward"]["add_plaintext_headers"],
        json!({"X-Team": "[redacted]"})
    );
    let export = h.get("/api/v1beta/workloads/rs/export").await.json();
    assert_eq!(export["header_forward"]["add_headers_from_secret"], refs);
    let shown = answers(&h, "rs").await;
    assert_no_value(&shown, "hdr-s3cr3t");
    assert_no_value(&shown, key_value);

    // A rotated value is sent after a restart.
    let rotated = "Bearer hdr-s3cr3t-v2";
    let r = put(&h, "api-token", json!({"value": rotated})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h.post("/api/v1beta/workloads/rs/restart", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    crate::support::eventually(
        Duration::from_secs(5),
        "the restarted proxy to send the rotated value",
        || async {
            send(&client, port).await;
            let s = seen.lock().unwrap().last().cloned()?;
            (header(&s, "authorization") == Some(rotated)).then_some(())
        },
    )
    .await;
    h.wait_status("rs", "running").await;

    // An edit that echoes the GET keeps the references (and the redacted
    // plaintext value).
    let r = h.post("/api/v1beta/workloads/rs/edit", got.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let before = seen.lock().unwrap().len();
    crate::support::eventually(
        Duration::from_secs(5),
        "the edited proxy to answer",
        || async {
            send(&client, port).await;
            let all = seen.lock().unwrap();
            all.get(before..)
                .and_then(|new| new.last().cloned())
                .filter(|s| header(s, "authorization") == Some(rotated))
        },
    )
    .await;
    let s = seen.lock().unwrap().last().cloned().expect("seen");
    assert_eq!(header(&s, "x-team"), Some("blue"));
    assert_eq!(header(&s, "x-api-key"), Some(key_value));

    // A secret deleted later: the next start is an error naming it, not
    // its value; nothing is forwarded.
    assert_eq!(delete(&h, "api-token").await.status, StatusCode::NO_CONTENT);
    let r = h.post("/api/v1beta/workloads/rs/restart", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    h.wait_status("rs", "error").await;
    let listed = h.listed("?all=true").await;
    let w = listed.iter().find(|w| w["name"] == "rs").expect("listed");
    let context = w["status_context"].as_str().expect("context");
    assert!(context.contains("`api-token`"), "{context}");
    assert!(context.contains("Authorization"), "{context}");
    let before = seen.lock().unwrap().len();
    send(&client, port).await;
    assert_eq!(seen.lock().unwrap().len(), before, "nothing forwarded");

    let shown = answers(&h, "rs").await;
    for v in ["hdr-s3cr3t", key_value] {
        assert_no_value(&shown, v);
    }
    for v in [value, rotated, key_value] {
        assert_no_file_has(h.dir.path(), h.berth.secrets.store_path(), v);
    }
}

#[tokio::test]
async fn header_secret_references_are_validated() {
    let h = harness().await;
    let r = h.post(KEYS, json!({"key": "k", "value": "v"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let remote = |forward: serde_json::Value| json!({"name": "bad", "url": "http://127.0.0.1:9/mcp", "header_forward": forward});
    let cases = [
        (
            remote(json!({"add_headers_from_secret": {"Host": "k"}})),
            "cannot be set",
        ),
        (
            remote(json!({"add_headers_from_secret": {"X-Forwarded-For": "k"}})),
            "cannot be set",
        ),
        (
            remote(json!({"add_headers_from_secret": {"Proxy-Authorization": "k"}})),
            "cannot be set",
        ),
        (
            remote(json!({"add_headers_from_secret": {"bad name": "k"}})),
            "not a valid header name",
        ),
        (
            remote(json!({"add_headers_from_secret": {"X-Key\n": "k"}})),
            "not a valid header name",
        ),
        (
            remote(json!({"add_headers_from_secret": {"X-Key": ""}})),
            "empty",
        ),
        (
            remote(json!({"add_headers_from_secret": {"X-Key": "a,b"}})),
            "`,`",
        ),
        (
            remote(json!({"add_headers_from_secret": {"X-Key": "k\n"}})),
            "control character",
        ),
        (
            remote(json!({"add_headers_from_secret": {"X-Key": "__berth_x"}})),
            "reserved",
        ),
        (
            remote(json!({"add_plaintext_headers": {"x-key": "p"},
                "add_headers_from_secret": {"X-Key": "k"}})),
            "both",
        ),
        (
            remote(json!({"add_headers_from_secret": {"X-Key": "k", "x-key": "k"}})),
            "twice",
        ),
        (
            json!({"name": "bad", "image": "fake://echo", "transport": "stdio",
                "header_forward": {"add_headers_from_secret": {"X-Key": "k"}}}),
            "remote workload",
        ),
    ];
    for (body, want) in cases {
        let r = h.create(body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert!(r.text.contains(want), "{body}: `{}` lacks `{want}`", r.text);
        assert!(!r.text.contains("\"v\""), "{}", r.text);
    }
    assert!(h.listed("?all=true").await.is_empty(), "nothing was stored");

    // The same checks on an edit.
    let r = h
        .create(remote(json!({"add_headers_from_secret": {"X-Key": "k"}})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    for (forward, want) in [
        (
            json!({"add_headers_from_secret": {"X-Key": "gone"}}),
            "`gone`",
        ),
        (
            json!({"add_headers_from_secret": {"Connection": "k"}}),
            "cannot be set",
        ),
    ] {
        let mut cfg = h.get("/api/v1beta/workloads/bad").await.json();
        cfg["header_forward"] = forward;
        let r = h.post("/api/v1beta/workloads/bad/edit", cfg).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert!(r.text.contains(want), "`{}` lacks `{want}`", r.text);
    }
    let got = h.get("/api/v1beta/workloads/bad").await.json();
    assert_eq!(
        got["header_forward"]["add_headers_from_secret"],
        json!({"X-Key": "k"}),
        "a refused edit changes nothing"
    );
}
