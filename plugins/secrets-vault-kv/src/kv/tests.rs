//! Tests of the Vault KV v2 logic.

use serde_json::json;

use super::{
    Config, Read, Status, classify, list_recursive, parse_list, parse_read, validate_name,
};

fn config(extra: serde_json::Value) -> Config {
    let mut c = json!({"address": "http://127.0.0.1:8200", "token": "s.secret-token"});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    Config::from_json(&c.to_string()).expect("valid config")
}

#[test]
fn config_defaults_and_debug_hides_token() {
    let c = config(json!({}));
    assert_eq!(
        (c.mount.as_str(), c.prefix.as_str(), c.field.as_str()),
        ("secret", "", "value")
    );
    assert_eq!(c.namespace, None);
    assert_eq!(c.headers(), [("x-vault-token", "s.secret-token")]);
    assert!(!format!("{c:?}").contains("s.secret-token"));
    let c = config(json!({"namespace": "team-a", "mount": "/kv/", "prefix": "/berth/prod/"}));
    assert_eq!(c.headers()[1], ("x-vault-namespace", "team-a"));
    assert_eq!((c.mount.as_str(), c.prefix.as_str()), ("kv", "berth/prod"));
}

#[test]
fn config_errors_never_quote_the_token() {
    let check = |json: serde_json::Value, expect: &str| {
        let err = Config::from_json(&json.to_string()).unwrap_err();
        assert!(err.contains(expect), "{json}: {err}");
        assert!(!err.contains("12345"), "{err}");
    };
    check(json!({"address": "http://v:8200"}), "missing field `token`");
    check(
        json!({"address": "http://v:8200", "token": 12345}),
        "wrong type",
    );
    check(
        json!({"address": "http://v:8200", "token": ""}),
        "`token` is empty",
    );
    check(json!({"address": "v:8200", "token": "12345"}), "address:");
    check(
        json!({"address": "http://v", "token": "12345", "mount": "a/../b"}),
        "mount: has a `..`",
    );
    check(
        json!({"address": "http://v", "token": "12345", "prefix": "a//b"}),
        "prefix: has an empty",
    );
    check(
        json!({"address": "http://v", "token": "12345", "field": ""}),
        "`field` is empty",
    );
    check(
        json!({"address": "http://v", "token": "12345", "path": "x"}),
        "unknown field `path`",
    );
}

#[test]
fn urls() {
    let c = config(json!({}));
    assert_eq!(
        c.data_url("db/password").to_string(),
        "http://127.0.0.1:8200/v1/secret/data/db/password"
    );
    assert_eq!(
        c.metadata_url("a b").to_string(),
        "http://127.0.0.1:8200/v1/secret/metadata/a%20b"
    );
    assert_eq!(
        c.list_url("").to_string(),
        "http://127.0.0.1:8200/v1/secret/metadata/?list=true"
    );
    assert_eq!(
        c.list_url("team/").to_string(),
        "http://127.0.0.1:8200/v1/secret/metadata/team/?list=true"
    );
    let c = Config::from_json(
        r#"{"address": "https://vault.example/", "token": "t", "mount": "kv", "prefix": "berth"}"#,
    )
    .unwrap();
    assert_eq!(
        c.data_url("x?y").to_string(),
        "https://vault.example/v1/kv/data/berth/x%3Fy"
    );
    assert_eq!(
        c.list_url("").to_string(),
        "https://vault.example/v1/kv/metadata/berth/?list=true"
    );
    assert_eq!(
        c.list_url("t/").to_string(),
        "https://vault.example/v1/kv/metadata/berth/t/?list=true"
    );
}

#[test]
fn write_body() {
    let c = config(json!({"field": "password"}));
    assert_eq!(c.write_body("p\"w"), r#"{"data":{"password":"p\"w"}}"#);
}

#[test]
fn names() {
    let check = |name: &str, ok: bool| {
        assert_eq!(
            validate_name(name).is_ok(),
            ok,
            "{name:?}: {:?}",
            validate_name(name)
        )
    };
    check("db-password", true);
    check("team/db/password", true);
    check("a..b", true);
    check("with space", true);
    check("", false);
    check("/abs", false);
    check("folder/", false);
    check("a//b", false);
    check("../x", false);
    check("a/../b", false);
    check("a/./b", false);
    check("..", false);
    check("a\nb", false);
    check(&"x".repeat(1025), false);
}

#[test]
fn statuses() {
    let check = |status: u16, expect: Status| assert_eq!(classify(status), expect, "{status}");
    check(200, Status::Ok);
    check(204, Status::Ok);
    check(404, Status::NotFound);
    check(403, Status::Denied);
    check(401, Status::Denied);
    check(500, Status::Unavailable);
    check(503, Status::Unavailable);
    check(429, Status::Unavailable);
    check(400, Status::Unavailable);
}

#[test]
fn reads() {
    let body = json!({
        "request_id": "r",
        "data": {"data": {"value": "s3cr3t", "n": 5, "o": {"a": 1}}, "metadata": {"version": 3}}
    })
    .to_string();
    let check = |field: &str, expect: Read| {
        assert_eq!(
            parse_read(body.as_bytes(), field).unwrap(),
            expect,
            "{field}"
        )
    };
    check("value", Read::Value("s3cr3t".to_owned()));
    check("n", Read::Value("5".to_owned()));
    check("o", Read::Value(r#"{"a":1}"#.to_owned()));
    check("missing", Read::NoField);
    let deleted =
        json!({"data": {"data": null, "metadata": {"deletion_time": "2026-01-01T00:00:00Z"}}});
    assert_eq!(
        parse_read(deleted.to_string().as_bytes(), "value").unwrap(),
        Read::Deleted
    );
    let err = parse_read(br#"{"data": "s3cr3t-in-a-weird-shape"}"#, "value").unwrap_err();
    assert!(!err.contains("s3cr3t"), "{err}");
}

#[test]
fn lists() {
    let body = json!({"data": {"keys": ["a", "team/", "z"]}}).to_string();
    assert_eq!(parse_list(body.as_bytes()).unwrap(), ["a", "team/", "z"]);
    assert!(parse_list(b"{}").is_err());
}

#[test]
fn recursive_listing() {
    let tree = |folder: &str| -> Result<Option<Vec<String>>, String> {
        let keys: &[&str] = match folder {
            "" => &["b", "team/", "a", "empty/"],
            "team/" => &["db", "ops/"],
            "team/ops/" => &["key"],
            "empty/" => return Ok(None),
            other => return Err(format!("unexpected folder {other}")),
        };
        Ok(Some(keys.iter().map(|k| k.to_string()).collect()))
    };
    let names = list_recursive(tree, |e| e).unwrap();
    assert_eq!(names, ["a", "b", "team/db", "team/ops/key"]);

    // Endless nesting stops at the depth limit.
    let mut calls = 0;
    let deep = |folder: &str| -> Result<Option<Vec<String>>, String> {
        calls += 1;
        let _ = folder;
        Ok(Some(vec!["x".to_owned(), "d/".to_owned()]))
    };
    let names = list_recursive(deep, |e| e).unwrap();
    assert_eq!(names.len(), super::MAX_LIST_DEPTH);
    assert_eq!(calls, super::MAX_LIST_DEPTH);

    let many = |_: &str| -> Result<Option<Vec<String>>, String> {
        Ok(Some(
            (0..=super::MAX_LIST_NAMES).map(|i| i.to_string()).collect(),
        ))
    };
    assert!(
        list_recursive(many, |e| e)
            .unwrap_err()
            .contains("more than")
    );
}
