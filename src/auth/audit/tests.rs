//! Tests of the audit configuration, events and writer.

use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use serde_json::json;

use super::writer::{Failures, QUEUE};
use super::*;

// === Helpers ===

fn config(v: Value) -> AuditConfig {
    serde_json::from_value(v).expect("valid config")
}

fn refused(v: Value) -> String {
    serde_json::from_value::<AuditConfig>(v)
        .expect_err("refused")
        .to_string()
}

fn alice() -> Identity {
    let claims = json!({
        "sub": "u-123",
        "iss": "https://idp.example",
        "name": "Alice",
        "email": "alice@example.com",
        "act": {"iss": "https://idp.example", "sub": "agent-1", "act": {"sub": "agent-0"}},
    });
    let Value::Object(claims) = claims else {
        unreachable!()
    };
    Identity::with_claims("u-123", claims)
}

/// A `tools/call` answered successfully.
fn record<'a>(
    identity: Option<&'a Identity>,
    params: &'a Value,
    response: &'a Value,
) -> Record<'a> {
    Record {
        workload: "github",
        identity,
        source: Some("10.0.0.5".parse().expect("ip")),
        user_agent: Some("claude-code/1.0"),
        request_id: Some("req-7"),
        endpoint: "/mcp",
        transport: "http",
        method: "tools/call",
        params: Some(params),
        outcome: Outcome::of_answer(response),
        duration: Duration::from_millis(12),
        response: Some(response),
        response_size: 42,
    }
}

fn ok_answer() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "ok"}]}})
}

fn call_params() -> Value {
    json!({"name": "search", "arguments": {"q": "rust"}})
}

// === Events ===

#[test]
fn a_tool_call_event_has_toolhives_fields() {
    let id = alice();
    let (params, answer) = (call_params(), ok_answer());
    let ev = event(
        &AuditConfig::default(),
        &record(Some(&id), &params, &answer),
    )
    .expect("event");
    assert_eq!(ev["level"], "AUDIT");
    assert_eq!(ev["msg"], "audit_event");
    assert_eq!(ev["type"], "mcp_tool_call");
    assert_eq!(ev["outcome"], "success");
    assert_eq!(ev["component"], "github");
    assert_eq!(
        ev["source"],
        json!({"type": "network", "value": "10.0.0.5",
               "extra": {"user_agent": "claude-code/1.0", "request_id": "req-7"}})
    );
    assert_eq!(ev["subjects"], json!({"user": "Alice", "user_id": "u-123"}));
    assert_eq!(
        ev["target"],
        json!({"endpoint": "/mcp", "method": "tools/call", "name": "search", "type": "tool"})
    );
    assert_eq!(
        ev["metadata"]["extra"],
        json!({"duration_ms": 12, "transport": "http", "response_size_bytes": 42, "workload": "github"})
    );
    assert_eq!(
        ev["delegation"],
        json!({"chain": [{"iss": "https://idp.example", "sub": "agent-1"}, {"sub": "agent-0"}],
               "truncated": false, "omitted": 0, "malformed": false})
    );
    assert!(ev.get("data").is_none(), "no data unless asked: {ev}");
    for key in ["time", "logged_at"] {
        let t = ev[key].as_str().expect("timestamp");
        let parsed = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339");
        assert_eq!(parsed.offset(), time::UtcOffset::UTC, "{t}");
    }
    let id = ev["audit_id"].as_str().expect("audit_id");
    assert_uuid_v4(id);
    let other = event(&AuditConfig::default(), &record(None, &params, &answer)).expect("event");
    assert_ne!(other["audit_id"], ev["audit_id"]);
}

fn assert_uuid_v4(id: &str) {
    let groups: Vec<&str> = id.split('-').collect();
    assert_eq!(
        groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12],
        "{id}"
    );
    assert!(
        id.chars()
            .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert!(groups[2].starts_with('4'), "version 4: {id}");
    assert!(
        matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
        "variant: {id}"
    );
}

#[test]
fn an_initialize_names_the_client() {
    let params = json!({"protocolVersion": "2025-06-18",
                        "clientInfo": {"name": "cursor", "version": "1.2.3"}});
    let answer = ok_answer();
    let rec = Record {
        method: "initialize",
        ..record(None, &params, &answer)
    };
    let ev = event(&AuditConfig::default(), &rec).expect("event");
    assert_eq!(ev["type"], "mcp_initialize");
    assert_eq!(
        ev["subjects"],
        json!({"user": "anonymous", "client_name": "cursor", "client_version": "1.2.3"})
    );
    assert_eq!(ev["target"]["name"], "cursor");
    assert_eq!(ev["target"]["type"], "endpoint");
    assert!(ev.get("delegation").is_none());
}

#[test]
fn client_info_is_read_only_from_an_initialize() {
    let params = json!({"name": "x", "clientInfo": {"name": "spoofed"}});
    let answer = ok_answer();
    let ev = event(&AuditConfig::default(), &record(None, &params, &answer)).expect("event");
    assert_eq!(ev["subjects"], json!({"user": "anonymous"}));
}

#[test]
fn the_user_is_the_first_name_claim_else_anonymous() {
    fn user(claims: Value) -> Value {
        let Value::Object(claims) = claims else {
            unreachable!()
        };
        let id = Identity::with_claims("sub-1", claims);
        let (p, a) = (call_params(), ok_answer());
        event(&AuditConfig::default(), &record(Some(&id), &p, &a)).expect("event")["subjects"]
            .clone()
    }
    let check = |claims: Value, expect: Value| assert_eq!(user(claims.clone()), expect, "{claims}");
    check(
        json!({"name": "N", "preferred_username": "P", "email": "E"}),
        json!({"user": "N", "user_id": "sub-1"}),
    );
    check(
        json!({"name": "", "preferred_username": "P", "email": "E"}),
        json!({"user": "P", "user_id": "sub-1"}),
    );
    check(
        json!({"email": "E"}),
        json!({"user": "E", "user_id": "sub-1"}),
    );
    check(
        json!({"name": 7}),
        json!({"user": "anonymous", "user_id": "sub-1"}),
    );
}

#[test]
fn the_target_names_the_tool_prompt_or_resource() {
    let answer = ok_answer();
    let check = |method: &str, params: Value, kind: &str, name: Option<&str>, typ: &str| {
        let rec = Record {
            method,
            ..record(None, &params, &answer)
        };
        let ev = event(&AuditConfig::default(), &rec).expect("event");
        assert_eq!(ev["type"], kind, "{method}");
        assert_eq!(ev["target"]["type"], typ, "{method}");
        assert_eq!(
            ev["target"].get("name").and_then(Value::as_str),
            name,
            "{method}"
        );
    };
    check(
        "prompts/get",
        json!({"name": "p"}),
        "mcp_prompt_get",
        Some("p"),
        "prompt",
    );
    check(
        "resources/read",
        json!({"uri": "file:///a"}),
        "mcp_resource_read",
        Some("file:///a"),
        "resource",
    );
    check("tools/list", json!({}), "mcp_tools_list", None, "endpoint");
    check("ping", json!({}), "mcp_ping", None, "endpoint");
    check(
        "logging/setLevel",
        json!({}),
        "mcp_logging",
        None,
        "endpoint",
    );
    check(
        "sampling/whatever",
        json!({}),
        "mcp_request",
        None,
        "endpoint",
    );
    check("", json!({}), "http_request", None, "endpoint");
}

#[test]
fn an_ipv4_peer_behind_a_dual_stack_socket_shows_as_ipv4() {
    let (p, a) = (call_params(), ok_answer());
    let rec = Record {
        source: Some("::ffff:192.0.2.1".parse().expect("ip")),
        ..record(None, &p, &a)
    };
    let ev = event(&AuditConfig::default(), &rec).expect("event");
    assert_eq!(ev["source"]["value"], "192.0.2.1");
}

// === Outcomes ===

#[test]
fn outcomes_of_answers_and_statuses() {
    let answer = |err: Value| json!({"jsonrpc": "2.0", "id": 1, "error": err});
    for (msg, expect) in [
        (ok_answer(), Outcome::Success),
        (
            answer(json!({"code": -32602, "message": "bad"})),
            Outcome::ApplicationError,
        ),
        (
            answer(json!({"code": -32003, "message": "denied"})),
            Outcome::Denied,
        ),
        (
            answer(json!({"code": 403, "message": "forbidden"})),
            Outcome::Denied,
        ),
        (answer(json!("not an object")), Outcome::ApplicationError),
    ] {
        assert_eq!(Outcome::of_answer(&msg), expect, "{msg}");
    }
    for (status, expect) in [
        (200, Outcome::Success),
        (202, Outcome::Success),
        (400, Outcome::Failure),
        (401, Outcome::Denied),
        (403, Outcome::Denied),
        (404, Outcome::Failure),
        (429, Outcome::Failure),
        (500, Outcome::Error),
        (503, Outcome::Error),
    ] {
        assert_eq!(Outcome::of_status(status), expect, "{status}");
    }
    assert_eq!(
        serde_json::to_value(Outcome::ApplicationError).expect("json"),
        json!("application_error")
    );
}

#[test]
fn a_json_rpc_error_in_a_success_is_an_application_error_when_detected() {
    let long = "m".repeat(1000);
    let answer = json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": long}});
    let params = call_params();
    // The proxy saw HTTP 200: success; the event looks inside.
    let rec = Record {
        outcome: Outcome::Success,
        ..record(None, &params, &answer)
    };
    let ev = event(&AuditConfig::default(), &rec).expect("event");
    assert_eq!(ev["outcome"], "application_error");
    let extra = &ev["metadata"]["extra"];
    assert_eq!(extra["jsonrpc_error_code"], -32602);
    assert_eq!(
        extra["jsonrpc_error_message"].as_str().map(str::len),
        Some(256)
    );

    let off = config(json!({"detectApplicationErrors": false}));
    for outcome in [Outcome::Success, Outcome::ApplicationError] {
        let ev = event(&off, &Record { outcome, ..rec }).expect("event");
        assert_eq!(ev["outcome"], "success", "{outcome:?}");
        assert!(ev["metadata"]["extra"].get("jsonrpc_error_code").is_none());
    }
    // A refusal stays a refusal, detection or not.
    let denied = Record {
        outcome: Outcome::Denied,
        ..rec
    };
    assert_eq!(event(&off, &denied).expect("event")["outcome"], "denied");
    let error = Record {
        outcome: Outcome::Error,
        ..rec
    };
    assert_eq!(
        event(&AuditConfig::default(), &error).expect("event")["outcome"],
        "error"
    );
}

// === Data ===

#[test]
fn bodies_are_left_out_unless_asked() {
    let (p, a) = (call_params(), ok_answer());
    let only_response = config(json!({"includeResponseData": true}));
    let ev = event(&only_response, &record(None, &p, &a)).expect("event");
    assert!(ev["data"].get("request").is_none(), "{ev}");
    assert_eq!(ev["data"]["response"], a);
    let ev = event(&AuditConfig::default(), &record(None, &p, &a)).expect("event");
    assert!(ev.get("data").is_none(), "{ev}");
}

#[test]
fn bodies_are_embedded_masked_and_whole_or_not_at_all() {
    let cfg = config(
        json!({"includeRequestData": true, "includeResponseData": true, "maxDataSize": 400}),
    );
    let params = json!({
        "name": "deploy",
        "arguments": {
            "user": "bob",
            "Password": "hunter2",
            "nested": {"deep": [{"GitHub_Token": "ghp_abc", "keep": 1}], "x-api-key": "k1"},
            "headers": {"Authorization": "Bearer xyz", "Cookie": "sid=1"},
            "db": {"private_key": {"pem": "-----BEGIN"}, "clientSecret": "s", "passwd": "p",
                   "ApiKey": "a", "api_key": "b", "credentials": ["c"]},
        },
    });
    let answer = ok_answer();
    let ev = event(&cfg, &record(None, &params, &answer)).expect("event");
    let req = &ev["data"]["request"];
    assert_eq!(req["name"], "deploy");
    assert_eq!(req["arguments"]["user"], "bob");
    assert_eq!(req["arguments"]["nested"]["deep"][0]["keep"], 1);
    let text = req.to_string();
    for secret in [
        "hunter2", "ghp_abc", "k1", "xyz", "sid=1", "BEGIN", "\"s\"", "\"p\"", "\"a\"", "\"b\"",
        "\"c\"",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert_eq!(req["arguments"]["Password"], "[redacted]");
    assert_eq!(
        req["arguments"]["nested"]["deep"][0]["GitHub_Token"],
        "[redacted]"
    );
    assert_eq!(req["arguments"]["db"]["private_key"], "[redacted]");
    assert_eq!(ev["data"]["response"], answer);

    // One byte over the limit: a marker with the size, not a prefix.
    let big = json!({"name": "x", "arguments": {"blob": "b".repeat(400)}});
    let size = serde_json::to_string(&big).expect("json").len();
    let ev = event(&cfg, &record(None, &big, &answer)).expect("event");
    assert_eq!(
        ev["data"]["request"],
        json!({"truncated": true, "size": size})
    );

    // The size counted is the masked one.
    let secret = json!({"name": "x", "arguments": {"token": "t".repeat(1000)}});
    let ev = event(&cfg, &record(None, &secret, &answer)).expect("event");
    assert_eq!(ev["data"]["request"]["arguments"]["token"], "[redacted]");
}

#[test]
fn max_data_size_is_capped_at_one_mebibyte() {
    let cfg = config(json!({"includeRequestData": true, "maxDataSize": 100_000_000}));
    let big = json!({"name": "x", "arguments": {"blob": "b".repeat(MAX_DATA_SIZE_CAP)}});
    let answer = ok_answer();
    let ev = event(&cfg, &record(None, &big, &answer)).expect("event");
    assert_eq!(ev["data"]["request"]["truncated"], true);
    let small = call_params();
    let ev = event(&cfg, &record(None, &small, &answer)).expect("event");
    assert_eq!(ev["data"]["request"], small);
}

#[test]
fn masking_replaces_what_lies_too_deep() {
    let mut v = json!({"token": "t"});
    for _ in 0..(MAX_MASK_DEPTH + 5) {
        v = json!({"a": v});
    }
    let masked = mask(&v, 0);
    assert!(!masked.to_string().contains("\"t\""), "{masked}");
    assert!(masked.to_string().contains(REDACTED));
}

// === Delegation ===

#[test]
fn the_delegation_chain_is_capped_and_checked() {
    fn chain(act: Value, depth: usize) -> Value {
        let mut claims = Map::new();
        claims.insert("act".into(), act);
        delegation(&claims, depth).expect("delegation")
    }
    let mut act = json!({"sub": "a4"});
    for i in (0..4).rev() {
        act = json!({"sub": format!("a{i}"), "act": act});
    }
    assert_eq!(
        chain(act.clone(), 2),
        json!({"chain": [{"sub": "a0"}, {"sub": "a1"}], "truncated": true, "omitted": 3, "malformed": false})
    );
    assert_eq!(chain(act, 10)["chain"].as_array().map(Vec::len), Some(5));
    assert_eq!(
        chain(json!({"sub": "a", "act": "nonsense"}), 10),
        json!({"chain": [{"sub": "a"}], "truncated": false, "omitted": 0, "malformed": true})
    );
    assert_eq!(chain(json!({"iss": "i"}), 10)["malformed"], true);
    assert!(delegation(&Map::new(), 10).is_none());
}

// === Filters and configuration ===

#[test]
fn event_types_are_filtered() {
    let (p, a) = (call_params(), ok_answer());
    let only_calls = config(json!({"eventTypes": ["mcp_tool_call"]}));
    assert!(event(&only_calls, &record(None, &p, &a)).is_some());
    let ping = Record {
        method: "ping",
        ..record(None, &p, &a)
    };
    assert!(event(&only_calls, &ping).is_none());
    let but_not =
        config(json!({"eventTypes": ["mcp_tool_call"], "excludeEventTypes": ["mcp_tool_call"]}));
    assert!(
        event(&but_not, &record(None, &p, &a)).is_none(),
        "exclusion wins"
    );
    let no_pings = config(json!({"excludeEventTypes": ["mcp_ping"]}));
    assert!(event(&no_pings, &ping).is_none());
    assert!(event(&no_pings, &record(None, &p, &a)).is_some());
    let disabled = config(json!({"enabled": false}));
    assert!(event(&disabled, &record(None, &p, &a)).is_none());
    assert!(!disabled.wants(TOOL_DRIFT));
    assert!(AuditConfig::default().wants(TOOL_DRIFT));
}

#[test]
fn an_empty_object_is_the_default_configuration() {
    let cfg = config(json!({}));
    assert_eq!(cfg, AuditConfig::default());
    assert!(cfg.enabled);
    assert!(!cfg.include_request_data && !cfg.include_response_data);
    assert_eq!(cfg.max_data_size, 1024);
    assert!(cfg.detect_application_errors);
    assert_eq!(cfg.max_delegation_depth, 10);
}

#[test]
fn a_configuration_round_trips_in_camel_case() {
    let cfg = config(json!({
        "enabled": true, "component": "gh", "eventTypes": ["mcp_tool_call"],
        "excludeEventTypes": ["mcp_ping"], "includeRequestData": true, "includeResponseData": true,
        "maxDataSize": 2048, "detectApplicationErrors": false, "maxDelegationDepth": 3,
    }));
    let v = serde_json::to_value(&cfg).expect("json");
    assert_eq!(v["eventTypes"], json!(["mcp_tool_call"]));
    assert_eq!(v["maxDelegationDepth"], 3);
    assert_eq!(config(v), cfg);
    // Older ToolHive releases wrote snake_case.
    let old = config(json!({"event_types": ["mcp_ping"], "max_data_size": 10}));
    assert_eq!(old.event_types, ["mcp_ping"]);
    assert_eq!(old.max_data_size, 10);
}

#[test]
fn a_log_file_is_refused() {
    for v in [
        json!({"logFile": "/etc/cron.d/x"}),
        json!({"log_file": "/tmp/a"}),
        json!({"logFile": ""}),
    ] {
        let err = refused(v.clone());
        assert!(err.contains("logFile"), "{v}: {err}");
    }
    // `null` says nothing.
    assert_eq!(config(json!({"logFile": null})), AuditConfig::default());
}

#[test]
fn unknown_fields_and_event_types_are_refused() {
    let err = refused(json!({"includeRequestBody": true}));
    assert!(err.contains("unknown field"), "{err}");
    let err = refused(json!({"eventTypes": ["mcp_tool_call", "tool_call"]}));
    assert!(
        err.contains("`tool_call`") && err.contains("eventTypes"),
        "{err}"
    );
    let err = refused(json!({"excludeEventTypes": ["everything"]}));
    assert!(err.contains("excludeEventTypes"), "{err}");
    let err = refused(json!({"maxDataSize": -1}));
    assert!(!err.is_empty());
    refused(json!({"component": ""}));

    let built = AuditConfig {
        exclude_event_types: vec!["nope".into()],
        ..AuditConfig::default()
    };
    assert_eq!(
        built.validate(),
        Err(AuditConfigError::UnknownEventType {
            field: "excludeEventTypes",
            name: "nope".into()
        })
    );
    for name in EVENT_TYPES {
        let ok = AuditConfig {
            event_types: vec![(*name).to_owned()],
            ..AuditConfig::default()
        };
        assert_eq!(ok.validate(), Ok(()), "{name}");
    }
}

#[test]
fn a_drift_event_names_the_tool_and_the_change() {
    let change = json!({"field": "description", "before": "a", "after": "b"});
    let ev = drift_event("github", "search", &change);
    assert_eq!(ev["type"], TOOL_DRIFT);
    assert_eq!(ev["level"], "AUDIT");
    assert_eq!(ev["component"], "github");
    assert_eq!(
        ev["target"],
        json!({"method": "tools/list", "name": "search", "type": "tool"})
    );
    assert_eq!(ev["metadata"]["extra"]["change"], change);
    assert_uuid_v4(ev["audit_id"].as_str().expect("id"));
}

// === Writer ===

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn read(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON value per line"))
        .collect()
}

#[tokio::test]
async fn lines_land_in_the_workloads_file_and_the_sink_with_mode_0600() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let sink = tmp.path().join("all.jsonl");
    let log = AuditLog::new(dir.clone(), Some(sink.clone())).expect("log");
    assert_eq!(mode(&dir), 0o700);
    log.write("a", &json!({"n": 1, "text": "line\nbreak"}));
    log.write("b", &json!({"n": 2}));
    log.write("a", &json!({"n": 3}));
    log.flush().await;
    let a = dir.join("a.audit.jsonl");
    assert_eq!(
        read(&a),
        [json!({"n": 1, "text": "line\nbreak"}), json!({"n": 3})]
    );
    assert_eq!(read(&dir.join("b.audit.jsonl")), [json!({"n": 2})]);
    assert_eq!(read(&sink).len(), 3);
    for f in [&a, &dir.join("b.audit.jsonl"), &sink] {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert_eq!(log.failures(), 0);
}

#[tokio::test]
async fn a_symlink_in_place_of_the_file_is_refused_and_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let log = AuditLog::new(dir.clone(), None).expect("log");
    let target = tmp.path().join("victim");
    std::fs::write(&target, "precious\n").expect("write");
    std::os::unix::fs::symlink(&target, dir.join("w.audit.jsonl")).expect("symlink");
    log.write("w", &json!({"n": 1}));
    log.write("ok", &json!({"n": 2}));
    log.flush().await;
    assert_eq!(log.failures(), 1);
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "precious\n"
    );
    assert_eq!(read(&dir.join("ok.audit.jsonl")).len(), 1);
}

#[tokio::test]
async fn a_hard_link_in_place_of_the_file_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let log = AuditLog::new(dir.clone(), None).expect("log");
    let target = tmp.path().join("victim");
    std::fs::write(&target, "precious\n").expect("write");
    std::fs::hard_link(&target, dir.join("w.audit.jsonl")).expect("link");
    log.write("w", &json!({"n": 1}));
    log.flush().await;
    assert_eq!(log.failures(), 1);
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "precious\n"
    );
}

#[tokio::test]
async fn a_symlink_as_the_sink_is_refused_at_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let target = tmp.path().join("victim");
    std::fs::write(&target, "precious\n").expect("write");
    let sink = tmp.path().join("sink.jsonl");
    std::os::unix::fs::symlink(&target, &sink).expect("symlink");
    AuditLog::new(tmp.path().join("audit"), Some(sink)).expect_err("refused");
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "precious\n"
    );
}

#[test]
fn starting_outside_a_runtime_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    AuditLog::new(tmp.path().join("audit"), None).expect_err("no runtime");
}

// Root ignores permission bits: the directory is made unusable by putting
// a file in its place.
#[tokio::test]
async fn writes_into_an_unusable_directory_are_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let sink = tmp.path().join("all.jsonl");
    let log = AuditLog::new(dir.clone(), Some(sink.clone())).expect("log");
    std::fs::remove_dir(&dir).expect("rmdir");
    std::fs::write(&dir, "").expect("a file instead");
    log.write("w", &json!({"n": 1}));
    log.write("w", &json!({"n": 2}));
    log.flush().await;
    assert_eq!(log.failures(), 2);
    assert_eq!(read(&sink).len(), 2, "the sink still gets them");
}

#[tokio::test]
async fn names_that_could_leave_the_directory_are_counted_not_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let log = AuditLog::new(dir.clone(), None).expect("log");
    for name in ["../escape", ".hidden", "a/b", ""] {
        log.write(name, &json!({"n": 1}));
    }
    log.flush().await;
    assert_eq!(log.failures(), 4);
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
    assert!(!tmp.path().join("escape.audit.jsonl").exists());
    assert!(log.tail("../escape", 1).await.is_err());
}

// One thread: the writer runs only when the test awaits, so the queue
// fills deterministically.
#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_is_counted_not_blocked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::new(tmp.path().join("audit"), None).expect("log");
    for i in 0..QUEUE + 3 {
        log.write("w", &json!({"n": i}));
    }
    assert_eq!(log.failures(), 3);
    log.flush().await;
    assert_eq!(
        log.tail("w", usize::MAX)
            .await
            .expect("tail")
            .lines()
            .count(),
        QUEUE
    );
    assert_eq!(log.failures(), 3);
}

#[tokio::test]
async fn tail_reads_across_the_rotation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let log = AuditLog::start(dir.clone(), None, 100).expect("log");
    assert_eq!(log.tail("w", 5).await.expect("tail"), "");
    for i in 0..10 {
        log.write("w", &json!({"n": i, "pad": "xxxxxxxxxx"}));
        log.flush().await;
    }
    let current = dir.join("w.audit.jsonl");
    let old = dir.join("w.audit.jsonl.1");
    assert!(old.exists(), "rotated");
    assert!(std::fs::metadata(&current).expect("meta").len() <= 100 + 40);
    let n = |text: &str| -> Vec<u64> {
        text.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).expect("json")["n"]
                    .as_u64()
                    .expect("n")
            })
            .collect()
    };
    assert_eq!(n(&log.tail("w", 3).await.expect("tail")), [7, 8, 9]);
    let all = n(&log.tail("w", 100).await.expect("tail"));
    let in_current = read(&current).len();
    assert!(all.len() > in_current, "both files: {all:?}");
    assert_eq!(all.last(), Some(&9));
    assert!(
        all.windows(2).all(|w| w[1] == w[0] + 1),
        "oldest first: {all:?}"
    );
    assert_eq!(log.tail("w", 0).await.expect("tail"), "");
    assert_eq!(mode(&old), 0o600);
}

#[test]
fn last_lines_reads_from_the_end() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("f");
    // Lines longer than a read chunk, and a last line without newline.
    let long = "y".repeat(100_000);
    std::fs::write(&path, format!("a\n{long}\nb\nc")).expect("write");
    let lines = |n| {
        writer::last_lines(&path, n)
            .expect("lines")
            .into_iter()
            .map(|l| String::from_utf8(l).expect("utf8"))
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(2), ["b", "c"]);
    assert_eq!(lines(3), [long.clone(), "b".into(), "c".into()]);
    assert_eq!(lines(10), ["a".to_owned(), long, "b".into(), "c".into()]);
    assert!(
        writer::last_lines(&tmp.path().join("missing"), 3)
            .expect("none")
            .is_empty()
    );
}

#[tokio::test]
async fn remove_deletes_both_files_after_the_queued_lines() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let log = AuditLog::start(dir.clone(), None, 10).expect("log");
    log.write("w", &json!({"n": 1}));
    log.flush().await;
    log.write("w", &json!({"n": 2}));
    log.write("other", &json!({"n": 3}));
    log.remove("w").await;
    assert!(!dir.join("w.audit.jsonl").exists());
    assert!(!dir.join("w.audit.jsonl.1").exists());
    assert_eq!(log.tail("w", 10).await.expect("tail"), "");
    assert_eq!(read(&dir.join("other.audit.jsonl")).len(), 1);
    assert_eq!(log.failures(), 0);
}

#[test]
fn lost_events_are_reported_at_most_every_ten_seconds() {
    let f = Failures::default();
    let t0 = Instant::now();
    assert_eq!(f.due(t0), None, "nothing lost");
    f.record_quietly(2, "the audit queue is full");
    assert_eq!(f.due(t0), Some((2, "the audit queue is full".into())));
    f.record_quietly(5, "w: disk full");
    assert_eq!(f.due(t0 + Duration::from_secs(9)), None, "too soon");
    assert_eq!(
        f.due(t0 + Duration::from_secs(10)),
        Some((5, "w: disk full".into()))
    );
    assert_eq!(f.due(t0 + Duration::from_secs(30)), None, "all reported");
}

#[test]
fn the_log_is_shared_across_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<AuditLog>();
}
