//! Unit tests of the workload service's pure helpers.

use super::model::{MiddlewareSpec, WasmMiddleware};
use super::supervise::UNREACHABLE_RETRY_MAX;
use super::types::MiddlewareConfig;
use super::types::{
    HeaderForward, PermissionProfile, REDACTED, SCHEMA_VERSION, redact_url, same_origin,
};
use super::view::{tail_lines, url};
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

fn typed(c: RunConfig) -> Workload {
    Workload::try_from(c).expect("a valid run configuration")
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
        remote_url: String::new(),
        header_forward: None,
        permission_profile: None,
        env_vars: BTreeMap::from([("MCP_PORT".into(), "1".into())]),
        volumes: vec![],
        container_labels: BTreeMap::new(),
        isolate_network: false,
        trust_proxy_headers: false,
        proxy_mode: proxy_mode.into(),
        group: "default".into(),
        middleware_configs: vec![],
        runtime: "process".into(),
        secrets: Vec::new(),
        registry: "default".into(),
        registry_server_name: "io.github.x/cat".into(),
        registry_server_version: "1.0.0".into(),
        oidc_config: None,
        authz_config: None,
        authz_config_path: String::new(),
        audit_config: None,
        tools_filter: None,
        tools_override: BTreeMap::new(),
        tool_pinning: String::new(),
    }
}

#[test]
fn urls() {
    let name = WorkloadName::parse("w").expect("name");
    let check = |c: RunConfig, expect: &str| assert_eq!(url(&typed(c), &name), expect);
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
    let remote = |transport: &str, url: &str| RunConfig {
        remote_url: url.into(),
        target_port: None,
        ..config(transport, transport, "127.0.0.1")
    };
    check(
        remote("streamable-http", "https://mcp.example.com/v1/mcp?k=1"),
        "http://127.0.0.1:20001/v1/mcp",
    );
    check(
        remote("streamable-http", "https://mcp.example.com/"),
        "http://127.0.0.1:20001",
    );
    check(
        remote("sse", "https://mcp.example.com"),
        "http://127.0.0.1:20001/sse#w",
    );
    check(
        remote("sse", "https://mcp.example.com/events"),
        "http://127.0.0.1:20001/events#w",
    );
}

#[test]
fn every_header_value_is_redacted_and_restored_only_for_the_same_server() {
    let stored = HeaderForward {
        add_plaintext_headers: BTreeMap::from([
            ("Authorization".into(), "Bearer s3cret".into()),
            ("X-Pass".into(), "p4ss".into()),
            ("Pwd".into(), "pwd".into()),
            ("X-Credential".into(), "cr3d".into()),
            ("X-Jwt".into(), "eyJ".into()),
            ("X-Tenant".into(), "acme".into()),
        ]),
        ..HeaderForward::default()
    };
    let shown = stored.redacted();
    for (name, value) in &shown.add_plaintext_headers {
        assert_eq!(value, REDACTED, "{name}");
    }
    let mut edited = shown.clone();
    edited
        .add_plaintext_headers
        .insert("X-Tenant".into(), "other".into());
    let mut moved = edited.clone();
    edited
        .restore_from(Some(&stored), true)
        .expect("same server");
    assert_eq!(
        edited.add_plaintext_headers["Authorization"],
        "Bearer s3cret"
    );
    assert_eq!(edited.add_plaintext_headers["X-Jwt"], "eyJ");
    assert_eq!(edited.add_plaintext_headers["X-Tenant"], "other");
    let err = moved
        .restore_from(Some(&stored), false)
        .expect_err("another server");
    assert!(err.contains("origin"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn credentials_in_urls_are_redacted() {
    for (url, want) in [
        (
            "https://h.example/mcp?api_key=abc&team=x",
            "https://h.example/mcp?api_key=%5Bredacted%5D&team=x",
        ),
        (
            "https://u:pw@h.example/mcp",
            "https://u:%5Bredacted%5D@h.example/mcp",
        ),
        (
            "https://h.example/mcp?sig=1&token=2",
            "https://h.example/mcp?sig=%5Bredacted%5D&token=%5Bredacted%5D",
        ),
        (
            "https://h.example/mcp?team=x",
            "https://h.example/mcp?team=x",
        ),
        ("https://h.example/mcp", "https://h.example/mcp"),
    ] {
        assert_eq!(redact_url(url), want, "{url}");
    }
    assert!(same_origin(
        "https://a.example/x",
        "https://a.example:443/y?z=1"
    ));
    assert!(!same_origin("https://a.example/x", "https://b.example/x"));
    assert!(!same_origin("https://a.example/x", "http://a.example/x"));
    assert!(!same_origin(
        "https://a.example/x",
        "https://a.example:8443/x"
    ));
    assert!(!same_origin("", ""));
}

#[test]
fn spec_injects_transport_variables_without_overriding_the_user() {
    let spec = spec_for(&typed(config(
        "streamable-http",
        "streamable-http",
        "127.0.0.1",
    )))
    .expect("spec");
    assert_eq!(spec.env["MCP_TRANSPORT"], "streamable-http");
    assert_eq!(spec.env["MCP_PORT"], "1", "the user's value wins");
    assert_eq!(spec.env["FASTMCP_PORT"], "20002");
    let stdio = spec_for(&typed(config("stdio", "streamable-http", "127.0.0.1"))).expect("spec");
    assert!(!stdio.env.contains_key("FASTMCP_PORT"));
}

#[test]
fn spec_carries_the_profile() {
    use berth_runtime_api::{Mount, NetworkAccess};
    let mut c = config("stdio", "streamable-http", "127.0.0.1");
    assert_eq!(
        spec_for(&typed(c.clone())).expect("spec").network,
        NetworkAccess::Full
    );
    c.permission_profile = Some(PermissionProfile {
        name: "custom".into(),
        read: vec!["/etc".into()],
        network: Some(types::NetworkPermissions {
            outbound: Some(types::OutboundNetworkPermissions {
                allow_host: vec![".example.com".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    c.volumes = vec!["/tmp:/scratch".into()];
    let spec = spec_for(&typed(c.clone())).expect("spec");
    assert_eq!(spec.network, NetworkAccess::Isolated);
    assert_eq!(
        spec.mounts,
        vec![
            Mount {
                source: "/etc".into(),
                target: "/etc".into(),
                read_only: true
            },
            Mount {
                source: "/tmp".into(),
                target: "/scratch".into(),
                read_only: false
            },
        ]
    );
    assert!(
        !spec.env.contains_key("HTTP_PROXY"),
        "the proxy address is added at start"
    );
}

#[test]
fn an_unreachable_runtime_is_retried_every_few_seconds() {
    let policy = RestartPolicy::default();
    // A crashing server backs off up to the policy's longest delay...
    assert_eq!(policy.retry_delay(1, false), Duration::from_secs(1));
    assert_eq!(policy.retry_delay(10, false), Duration::from_secs(60));
    // ...while an engine that is away is asked again every few seconds, so
    // the workload answers soon after the engine is back.
    assert_eq!(policy.retry_delay(1, true), Duration::from_secs(1));
    assert_eq!(policy.retry_delay(10, true), UNREACHABLE_RETRY_MAX);
    let short = RestartPolicy {
        max_delay_ms: 200,
        ..policy
    };
    assert_eq!(short.retry_delay(10, true), Duration::from_millis(200));
}

#[test]
fn run_configurations_round_trip_through_the_typed_model() {
    for (transport, mode) in [
        ("stdio", "streamable-http"),
        ("stdio", "sse"),
        ("sse", "sse"),
        ("streamable-http", "streamable-http"),
    ] {
        let mut c = config(transport, mode, "127.0.0.1");
        if transport != "stdio" {
            c.target_host = "127.0.0.1".into();
        }
        c.middleware_configs = vec![MiddlewareConfig {
            kind: "wasm".into(),
            parameters: serde_json::json!({"plugin": "guard", "config": {"deny": ["x"]}}),
        }];
        let w = typed(c.clone());
        assert_eq!(w.transport.as_str(), transport);
        assert_eq!(w.proxy_mode.as_str(), mode);
        assert_eq!(
            w.middleware,
            vec![MiddlewareSpec::Wasm(WasmMiddleware {
                plugin: "guard".into(),
                config: Some(serde_json::json!({"deny": ["x"]})),
            })]
        );
        assert_eq!(RunConfig::from(&w), c, "{transport}/{mode}");
    }
}

#[test]
fn garbage_run_configurations_are_refused_with_the_field() {
    type Breaker = Box<dyn Fn(&mut RunConfig)>;
    let cases: Vec<(&str, Breaker)> = vec![
        ("name", Box::new(|c| c.name = "../etc".into())),
        (
            "transport",
            Box::new(|c| c.transport = "carrier-pigeon".into()),
        ),
        (
            "proxy_mode",
            Box::new(|c| c.proxy_mode = "websocket".into()),
        ),
        ("host", Box::new(|c| c.host = "localhost".into())),
        (
            "middleware",
            Box::new(|c| {
                c.middleware_configs = vec![MiddlewareConfig {
                    kind: "lua".into(),
                    parameters: serde_json::json!({}),
                }];
            }),
        ),
        (
            "plugin",
            Box::new(|c| {
                c.middleware_configs = vec![MiddlewareConfig {
                    kind: "wasm".into(),
                    parameters: serde_json::json!({"plugin": 7}),
                }];
            }),
        ),
        (
            "remote",
            Box::new(|c| c.remote_url = "https://example.com/mcp".into()),
        ),
    ];
    for (field, break_it) in cases {
        let mut c = config("stdio", "streamable-http", "127.0.0.1");
        break_it(&mut c);
        let err = Workload::try_from(c).expect_err(field).to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
    // An HTTP server proxied in another mode than its own is refused.
    let mut c = config("sse", "streamable-http", "127.0.0.1");
    c.target_host = "127.0.0.1".into();
    assert!(Workload::try_from(c).is_err());
}

#[test]
fn a_remote_target_host_never_carries_credentials() {
    assert_eq!(
        super::model::host_port("https://user:s3cret@mcp.example.com:8443/v1/mcp?k=v"),
        "mcp.example.com:8443"
    );
    assert_eq!(super::model::host_port("http://[::1]/mcp"), "[::1]");
    assert_eq!(super::model::host_port("not a url"), "");
}
