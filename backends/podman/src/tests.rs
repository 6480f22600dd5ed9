//! Unit tests of the backend's pure helpers.

use super::*;

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
