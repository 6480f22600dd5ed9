//! Tests of the tool guard's rules.

use serde_json::{Value, json};

use super::{Guard, Verdict};

fn guard(config: Value) -> Guard {
    Guard::from_json(&config.to_string()).expect("valid config")
}

fn deny(status: u16, message: &str) -> Verdict {
    Verdict::Deny {
        status,
        message: message.to_owned(),
    }
}

#[test]
fn config_errors_name_the_key() {
    let check = |config: &str, expect: &str| {
        let err = Guard::from_json(config).unwrap_err();
        assert!(err.contains(expect), "{config}: {err}");
    };
    check(r#"{"deny": "x"}"#, "invalid type");
    check(r#"{"denny": ["x"]}"#, "unknown field `denny`");
    check(
        r#"{"redact": ["(unclosed"]}"#,
        "redact[0] is not a valid regex",
    );
    check(r#"{"redact": ["ok", ""]}"#, "redact[1] is empty");
    check("[1]", "invalid configuration");
    check("not json", "invalid configuration");
}

#[test]
fn empty_config_allows_everything() {
    for config in ["", "{}", r#"{"allow": null}"#] {
        let g = Guard::from_json(config).unwrap();
        assert!(g.is_allowed("anything"));
        assert!(!g.redacts());
    }
}

#[test]
fn deny_and_allow() {
    let g = guard(json!({"deny": ["delete_*", "drop?"], "allow": ["delete_*", "read_*", "drop*"]}));
    let check = |name: &str, expect: bool| assert_eq!(g.is_allowed(name), expect, "{name}");
    check("read_file", true);
    check("delete_file", false); // deny wins over allow
    check("drop1", false);
    check("drop", true);
    check("write_file", false); // not in allow
    let g = guard(json!({"allow": []}));
    assert!(!g.is_allowed("x"));
}

#[test]
fn check_call() {
    let g = guard(json!({"deny": ["rm_*"]}));
    let check = |params: Option<&str>, expect: Verdict| {
        assert_eq!(g.check_call(params), expect, "{params:?}")
    };
    check(
        Some(r#"{"name":"ls","arguments":{"path":"/"}}"#),
        Verdict::Allow,
    );
    check(
        Some(r#"{"arguments":{"name":"ls"},"name":"rm_rf"}"#),
        deny(403, "tool `rm_rf` is not allowed on this workload"),
    );
    // An escaped name is compared decoded.
    check(
        Some(r#"{"name":"rm_\u0072f"}"#),
        deny(403, "tool `rm_rf` is not allowed on this workload"),
    );
    check(None, deny(400, "tools/call params have no tool `name`"));
    check(
        Some(r#"{"name": 3}"#),
        deny(400, "tools/call params have no tool `name`"),
    );
    check(
        Some("{}"),
        deny(400, "tools/call params have no tool `name`"),
    );
}

#[test]
fn tools_list_filtering() {
    let g = guard(json!({"deny": ["secret_*"]}));
    let list = json!({
        "tools": [
            {"name": "echo", "inputSchema": {"type": "object"}},
            {"name": "secret_dump", "description": "x"},
            {"description": "nameless"},
            {"name": "time"}
        ],
        "nextCursor": "c2"
    });
    let out = g.filter_tools_list(&list.to_string()).expect("changed");
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        out,
        json!({
            "tools": [
                {"name": "echo", "inputSchema": {"type": "object"}},
                {"description": "nameless"},
                {"name": "time"}
            ],
            "nextCursor": "c2"
        })
    );
    // Key order is kept.
    let text = g.filter_tools_list(&list.to_string()).unwrap();
    assert!(text.find("\"tools\"").unwrap() < text.find("\"nextCursor\"").unwrap());

    let unchanged = json!({"tools": [{"name": "echo"}]});
    assert_eq!(g.filter_tools_list(&unchanged.to_string()), None);
    assert_eq!(g.filter_tools_list("{}"), None);
    assert_eq!(g.filter_tools_list("not json"), None);
}

#[test]
fn redaction() {
    let g = guard(json!({"redact": ["sk-[a-z0-9]{4}", "hunter2"], "redact_with": "***"}));
    let result = json!({
        "content": [
            {"type": "text", "text": "key sk-ab12 and sk-cd34, password hunter2"},
            {"type": "image", "data": "sk-ab12"},
            {"type": "resource", "resource": {"uri": "file:///x", "text": "hunter2"}}
        ],
        "structuredContent": {"k": "sk-zz99", "n": 1, "list": ["hunter2", {"deep": "a hunter2 b"}], "sk-ab12": true},
        "isError": false
    });
    let out: Value =
        serde_json::from_str(&g.redact_call_result(&result.to_string()).unwrap()).unwrap();
    assert_eq!(
        out,
        json!({
            "content": [
                {"type": "text", "text": "key *** and ***, password ***"},
                {"type": "image", "data": "sk-ab12"},
                {"type": "resource", "resource": {"uri": "file:///x", "text": "***"}}
            ],
            "structuredContent": {"k": "***", "n": 1, "list": ["***", {"deep": "a *** b"}], "sk-ab12": true},
            "isError": false
        })
    );
    let clean = json!({"content": [{"type": "text", "text": "nothing here"}]});
    assert_eq!(g.redact_call_result(&clean.to_string()), None);
}

#[test]
fn redaction_defaults_and_edge_cases() {
    // Default replacement; `$` in the replacement is literal; escaped JSON
    // is matched decoded.
    let g = guard(json!({"redact": ["pa\\$\\$"]}));
    let out = g
        .redact_call_result(r#"{"content":[{"type":"text","text":"x pa$$ y"}]}"#)
        .unwrap();
    assert_eq!(
        out,
        r#"{"content":[{"type":"text","text":"x [REDACTED] y"}]}"#
    );
    let g = guard(json!({"redact": ["secret"], "redact_with": "$0 ${1}"}));
    let out = g
        .redact_call_result(r#"{"content":[{"type":"text","text":"a\nsecret"}]}"#)
        .unwrap();
    assert_eq!(out, r#"{"content":[{"type":"text","text":"a\n$0 ${1}"}]}"#);
    // A pattern that can match the empty string only redacts real matches.
    let g = guard(json!({"redact": ["x*"]}));
    let out = g
        .redact_call_result(r#"{"content":[{"type":"text","text":"abxxc"}]}"#)
        .unwrap();
    assert_eq!(
        out,
        r#"{"content":[{"type":"text","text":"ab[REDACTED]c"}]}"#
    );
    assert_eq!(
        g.redact_call_result(r#"{"content":[{"type":"text","text":"abc"}]}"#),
        None
    );
    // No patterns: never parses.
    let g = guard(json!({}));
    assert_eq!(g.redact_call_result("{}"), None);
}
