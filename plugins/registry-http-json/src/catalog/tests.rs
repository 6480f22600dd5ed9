//! Tests of registry parsing, search and paging.

use serde_json::{Value, json};

use super::{Catalog, MAX_LIMIT};

fn catalog(doc: Value) -> Catalog {
    let (catalog, warnings) = Catalog::parse(doc.to_string().as_bytes()).expect("parses");
    assert!(warnings.is_empty(), "{warnings:?}");
    catalog
}

fn names<'a>(page: &super::Page<'a>) -> Vec<&'a str> {
    page.entries.iter().map(|e| e.name.as_str()).collect()
}

fn toolhive() -> Value {
    json!({
        "$schema": "https://example.invalid/schema.json",
        "version": "1.0.0",
        "last_updated": "2026-11-01T00:00:00Z",
        "servers": {
            "fetch": {"image": "ghcr.io/x/fetch:1", "description": "Fetches WEB pages", "transport": "stdio", "tags": ["http"]},
            "github": {"image": "ghcr.io/x/github:2", "description": "GitHub API", "tags": ["git", "Code"]},
            "time": {"image": "x/time", "description": "Current time"}
        },
        "remote_servers": {
            "notion": {"url": "https://mcp.notion.example/mcp", "transport": "streamable-http", "description": "Notes"}
        }
    })
}

#[test]
fn parses_toolhive_format() {
    let c = catalog(toolhive());
    assert_eq!(c.len(), 4);
    let fetch: Value = serde_json::from_str(&c.get("fetch").unwrap().json).unwrap();
    assert_eq!(
        fetch,
        json!({"name": "fetch", "image": "ghcr.io/x/fetch:1", "description": "Fetches WEB pages", "transport": "stdio", "tags": ["http"]})
    );
    // `name` comes first.
    assert!(
        c.get("fetch")
            .unwrap()
            .json
            .starts_with(r#"{"name":"fetch""#)
    );
    let notion: Value = serde_json::from_str(&c.get("notion").unwrap().json).unwrap();
    assert_eq!(notion["url"], "https://mcp.notion.example/mcp");
    assert!(c.get("nope").is_none());
}

#[test]
fn parses_lists() {
    let c = catalog(json!([{"name": "b", "image": "b"}, {"name": "a", "image": "a"}]));
    assert_eq!(names(&c.list(None, None, 0)), ["a", "b"]);
    let c = catalog(json!({"servers": [{"name": "x", "image": "x"}], "remote_servers": null}));
    assert_eq!(c.get("x").unwrap().json, r#"{"name":"x","image":"x"}"#);
    let c = catalog(json!({"servers": {}}));
    assert!(c.is_empty());
}

#[test]
fn skips_bad_entries_with_warnings() {
    let doc = json!({
        "servers": {"ok": {"image": "i"}, "bad": "string", "dup": {"image": "first"}},
        "remote_servers": [{"url": "u"}, 3, {"name": "dup", "url": "second"}]
    });
    let (c, warnings) = Catalog::parse(doc.to_string().as_bytes()).unwrap();
    assert_eq!(names(&c.list(None, None, 0)), ["dup", "ok"]);
    assert!(c.get("dup").unwrap().json.contains("first"));
    assert_eq!(
        warnings,
        [
            "servers.bad is not an object; skipped",
            "entry 0 of remote_servers has no `name`; skipped",
            "entry 1 of remote_servers is not an object; skipped",
            "duplicate server name `dup`; the first one is used",
        ]
    );
}

#[test]
fn refuses_bad_documents() {
    let check = |doc: &str, expect: &str| {
        let err = Catalog::parse(doc.as_bytes()).unwrap_err();
        assert!(err.contains(expect), "{doc}: {err}");
    };
    check("<html>", "not valid JSON");
    check("\"x\"", "neither an object nor an array");
    check(
        r#"{"version": "1"}"#,
        "neither `servers` nor `remote_servers`",
    );
    check(
        r#"{"servers": 3}"#,
        "`servers` in the registry document is neither",
    );
}

#[test]
fn query_matches_name_description_and_tags() {
    let c = catalog(toolhive());
    let check = |query: Option<&str>, expect: &[&str]| {
        assert_eq!(names(&c.list(query, None, 0)), expect, "{query:?}");
    };
    check(None, &["fetch", "github", "notion", "time"]);
    check(Some(""), &["fetch", "github", "notion", "time"]);
    check(Some("GIT"), &["github"]);
    check(Some("web"), &["fetch"]); // description, case-insensitive
    check(Some("code"), &["github"]); // tag
    check(Some("HTTP"), &["fetch"]);
    check(Some("ti"), &["notion", "time"]);
    check(Some("zzz"), &[]);
}

#[test]
fn pages_with_cursor_and_limit() {
    let doc: Vec<Value> = (0..12).map(|i| json!({"name": format!("s{i:02}"), "tags": [if i % 2 == 0 { "even" } else { "odd" }]})).collect();
    let c = catalog(Value::Array(doc));

    let p1 = c.list(None, None, 5);
    assert_eq!(names(&p1), ["s00", "s01", "s02", "s03", "s04"]);
    assert_eq!(p1.next_cursor.as_deref(), Some("s04"));
    let p2 = c.list(None, p1.next_cursor.as_deref(), 5);
    assert_eq!(names(&p2), ["s05", "s06", "s07", "s08", "s09"]);
    let p3 = c.list(None, p2.next_cursor.as_deref(), 5);
    assert_eq!(names(&p3), ["s10", "s11"]);
    assert_eq!(p3.next_cursor, None);

    // Exactly a full last page: no cursor.
    let p = c.list(None, Some("s06"), 5);
    assert_eq!(names(&p), ["s07", "s08", "s09", "s10", "s11"]);
    assert_eq!(p.next_cursor, None);

    // With a query, the cursor follows the matching entries.
    let p = c.list(Some("even"), None, 2);
    assert_eq!(names(&p), ["s00", "s02"]);
    let p = c.list(Some("even"), p.next_cursor.as_deref(), 10);
    assert_eq!(names(&p), ["s04", "s06", "s08", "s10"]);
    assert_eq!(p.next_cursor, None);

    // A cursor past the end, or between names.
    assert!(c.list(None, Some("zzz"), 5).entries.is_empty());
    assert_eq!(names(&c.list(None, Some("s05a"), 1)), ["s06"]);
}

#[test]
fn limits() {
    let doc: Vec<Value> = (0..600)
        .map(|i| json!({"name": format!("s{i:03}")}))
        .collect();
    let c = catalog(Value::Array(doc));
    assert_eq!(c.list(None, None, 0).entries.len(), 50);
    assert_eq!(c.list(None, None, 1).entries.len(), 1);
    assert_eq!(c.list(None, None, 10_000).entries.len(), MAX_LIMIT);
    assert_eq!(c.list(None, None, u32::MAX).entries.len(), MAX_LIMIT);
}
