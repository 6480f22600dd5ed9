//! Unit tests of the backend's pure helpers.

use super::*;

#[test]
fn tails() {
    fn check(text: &str, n: usize, expect: &str) {
        let mut tail = Tail::new(n);
        tail.push(text.as_bytes());
        assert_eq!(tail.into_string(), expect, "{text:?} tail {n}");
    }
    check("a\nb\nc\n", 2, "b\nc\n");
    check("a\nb\nc", 2, "b\nc");
    check("a\nb\nc\n", 3, "a\nb\nc\n");
    check("a\nb\nc\n", 10, "a\nb\nc\n");
    check("a\nb\nc\n", 1, "c\n");
    check("a\nb\nc\n", 0, "");
    check("", 5, "");
}

#[test]
fn long_logs_are_cut_on_the_way() {
    let mut tail = Tail::new(3);
    for i in 0..100_000 {
        tail.push(format!("line {i}").as_bytes());
        tail.push(b"\n");
        assert!(
            tail.buf.len() <= 2 * Tail::MIN_CUT + 16,
            "{}",
            tail.buf.len()
        );
    }
    tail.push(b"partial");
    assert_eq!(tail.into_string(), "line 99998\nline 99999\npartial");
}

#[test]
fn images() {
    fn check(image: &str, expect: Result<(), &str>) {
        let got = check_image(image).map_err(|e| e.to_string());
        match (got, expect) {
            (Ok(()), Ok(())) => {}
            (Err(got), Err(want)) => assert!(got.contains(want), "{image}: {got}"),
            (got, want) => panic!("{image}: got {got:?}, want {want:?}"),
        }
    }
    check("localhost/berth-test/echo:latest", Ok(()));
    check("ghcr.io/example/fetch@sha256:0123", Ok(()));
    check("", Err("an image is required"));
    check("  ", Err("an image is required"));
    check("npx://@modelcontextprotocol/server-everything", Ok(()));
    check("uvx://mcp-server-time==2025.1.0", Ok(()));
    check("npx://pkg@>=1", Err("invalid version"));
    check("uvx://pkg[cli]", Err("invalid Python package"));
    check("npx://", Err("names no package"));
    check("go://example.com/x", Err("`go://`"));
    check("exec:///bin/cat", Err("process backend"));
    check("fake://echo", Err("not an image reference"));
}
