//! Unit tests of the workload service's pure helpers.

use super::*;

fn check_tail(text: &str, n: usize, expect: &str) {
    assert_eq!(tail_lines(text, n), expect, "tail {n} of {text:?}");
}

#[test]
fn tails() {
    check_tail("", 3, "");
    check_tail("a\nb\nc\n", 2, "b\nc\n");
    check_tail("a\nb\nc\n", 3, "a\nb\nc\n");
    check_tail("a\nb\nc\n", 10, "a\nb\nc\n");
    check_tail("a\nb\nc", 1, "c");
    check_tail("a\nb\n", 0, "");
}

fn config(transport: &str, proxy_mode: &str, host: &str) -> RunConfig {
    RunConfig {
        schema_version: SCHEMA_VERSION.into(),
        image: "exec:///bin/cat".into(),
        cmd_args: vec![],
        name: "w".into(),
        container_name: "w".into(),
        base_name: "w".into(),
        transport: transport.into(),
        host: host.into(),
        port: 20001,
        target_port: (transport != "stdio").then_some(20002),
        target_host: String::new(),
        permission_profile: None,
        env_vars: BTreeMap::from([("MCP_PORT".into(), "1".into())]),
        container_labels: BTreeMap::new(),
        isolate_network: false,
        trust_proxy_headers: false,
        proxy_mode: proxy_mode.into(),
        group: "default".into(),
        middleware_configs: vec![],
    }
}

#[test]
fn urls() {
    let name = WorkloadName::parse("w").expect("name");
    let check = |c: RunConfig, expect: &str| assert_eq!(url(&c, &name), expect);
    check(
        config("stdio", "streamable-http", "127.0.0.1"),
        "http://127.0.0.1:20001/mcp",
    );
    check(
        config("stdio", "sse", "127.0.0.1"),
        "http://127.0.0.1:20001/sse#w",
    );
    check(
        config("sse", "sse", "0.0.0.0"),
        "http://127.0.0.1:20001/sse#w",
    );
    check(
        config("streamable-http", "streamable-http", "::1"),
        "http://[::1]:20001/mcp",
    );
}

#[test]
fn spec_injects_transport_variables_without_overriding_the_user() {
    let spec = spec_for(&config("streamable-http", "streamable-http", "127.0.0.1"));
    assert_eq!(spec.env["MCP_TRANSPORT"], "streamable-http");
    assert_eq!(spec.env["MCP_PORT"], "1", "the user's value wins");
    assert_eq!(spec.env["FASTMCP_PORT"], "20002");
    let stdio = spec_for(&config("stdio", "streamable-http", "127.0.0.1"));
    assert!(!stdio.env.contains_key("FASTMCP_PORT"));
}
