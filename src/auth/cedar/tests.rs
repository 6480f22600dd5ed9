//! Tests of the Cedar authorizer: ToolHive's config shape, its entity model,
//! and hostile names, claims and arguments.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

fn authorizer(policies: &[&str]) -> Authorizer {
    with_config(CedarConfig::new(policies.iter().copied()))
}

fn with_config(cedar: CedarConfig) -> Authorizer {
    Authorizer::new(&AuthzConfig::cedar(cedar), "github").expect("valid config")
}

fn error(cedar: CedarConfig) -> String {
    Authorizer::new(&AuthzConfig::cedar(cedar), "github")
        .expect_err("config refused")
        .to_string()
}

fn user(subject: &str, claims: Value) -> Identity {
    let Value::Object(claims) = claims else {
        panic!("claims must be an object")
    };
    Identity::with_claims(subject, claims)
}

/// Whether `who` may call `tool` with `args`.
fn call(authz: &Authorizer, who: Option<&Identity>, tool: &str, args: Option<Value>) -> bool {
    authz.allows(who, Operation::CallTool, tool, args.as_ref(), None)
}

#[test]
fn a_permit_names_one_principal_and_one_tool() {
    let authz = authorizer(&[
        r#"permit(principal == Client::"alice", action == Action::"call_tool", resource == Tool::"echo");"#,
    ]);
    let alice = user("alice", json!({}));
    let bob = user("bob", json!({}));
    assert!(call(&authz, Some(&alice), "echo", None));
    assert!(!call(&authz, Some(&alice), "other", None));
    assert!(!call(&authz, Some(&bob), "echo", None));
    assert!(!call(&authz, None, "echo", None));
    // The permit is for calling tools, not for a prompt of the same name.
    assert!(!authz.allows(Some(&alice), Operation::GetPrompt, "echo", None, None));
}

#[test]
fn forbid_wins_over_permit() {
    let permit = r#"permit(principal, action == Action::"call_tool", resource);"#;
    let authz = authorizer(&[
        permit,
        r#"forbid(principal, action, resource == Tool::"rm");"#,
    ]);
    let alice = user("alice", json!({}));
    assert!(call(&authz, Some(&alice), "ls", None));
    assert!(!call(&authz, Some(&alice), "rm", None));
}

#[test]
fn groups_become_parents_of_the_principal() {
    let admins = r#"permit(principal in THVGroup::"admins", action, resource);"#;
    let authz = authorizer(&[admins]);
    let admin = user("alice", json!({"groups": ["users", "admins"]}));
    let plain = user("bob", json!({"groups": ["users"]}));
    let role = user("carol", json!({"roles": ["admins"]}));
    let cognito = user("dave", json!({"cognito:groups": ["admins"]}));
    // A string is not a group list.
    let string = user("erin", json!({"groups": "admins"}));
    assert!(call(&authz, Some(&admin), "x", None));
    assert!(!call(&authz, Some(&plain), "x", None));
    assert!(call(&authz, Some(&role), "x", None));
    assert!(call(&authz, Some(&cognito), "x", None));
    assert!(!call(&authz, Some(&string), "x", None));
    // The first default claim present decides: `groups` hides `roles`.
    let both = user("frank", json!({"groups": [], "roles": ["admins"]}));
    assert!(!call(&authz, Some(&both), "x", None));
}

#[test]
fn group_and_role_claim_names_and_group_entity_type_are_configurable() {
    let mut cedar = CedarConfig::new([r#"permit(principal in Team::"ops", action, resource);"#]);
    cedar.group_claim_name = Some("https://example.com/groups".to_owned());
    cedar.role_claim_name = Some("realm_access.roles".to_owned());
    cedar.group_entity_type = "Team".to_owned();
    let authz = with_config(cedar);
    let url_claim = user("a", json!({"https://example.com/groups": ["ops"]}));
    let nested_role = user("b", json!({"realm_access": {"roles": ["ops"]}}));
    let default_claim = user("c", json!({"groups": ["ops"]}));
    let neither = user("d", json!({"realm_access": {"roles": ["dev"]}}));
    assert!(call(&authz, Some(&url_claim), "x", None));
    assert!(call(&authz, Some(&nested_role), "x", None));
    // The configured claim is absent: the defaults are tried.
    assert!(call(&authz, Some(&default_claim), "x", None));
    assert!(!call(&authz, Some(&neither), "x", None));
    // THVGroup is no longer the type of the parents.
    let thv = with_config(CedarConfig {
        group_entity_type: "Team".to_owned(),
        ..CedarConfig::new([r#"permit(principal in THVGroup::"ops", action, resource);"#])
    });
    assert!(!call(&thv, Some(&default_claim), "x", None));
}

#[test]
fn group_entity_type_must_be_a_plain_identifier() {
    for bad in ["Platform::Group", "1abc", "a b", "if"] {
        let err = error(CedarConfig {
            group_entity_type: bad.to_owned(),
            ..CedarConfig::new(["permit(principal, action, resource);"])
        });
        assert!(err.contains("group_entity_type"), "{bad}: {err}");
    }
}

#[test]
fn static_entities_give_groups_their_parents() {
    let authz = with_config(CedarConfig {
        entities_json: json!([
            {"uid": {"type": "THVGroup", "id": "admins"}, "attrs": {}, "parents": [{"type": "THVGroup", "id": "staff"}]},
            {"uid": {"type": "THVGroup", "id": "staff"}, "attrs": {}, "parents": []}
        ])
        .to_string(),
        ..CedarConfig::new([r#"permit(principal in THVGroup::"staff", action, resource);"#])
    });
    let admin = user("alice", json!({"groups": ["admins"]}));
    let guest = user("bob", json!({"groups": ["guests"]}));
    assert!(call(&authz, Some(&admin), "x", None));
    assert!(!call(&authz, Some(&guest), "x", None));
}

#[test]
fn the_per_request_principal_replaces_a_static_one() {
    // entities_json gives alice a group; the principal built from her token
    // replaces that entity, so the group does not apply (ToolHive's merge).
    let authz = with_config(CedarConfig {
        entities_json: json!([
            {"uid": {"type": "Client", "id": "alice"}, "attrs": {"claim_level": 9}, "parents": [{"type": "THVGroup", "id": "admins"}]}
        ])
        .to_string(),
        ..CedarConfig::new([
            r#"permit(principal in THVGroup::"admins", action, resource);"#,
            r#"permit(principal, action, resource) when { principal has claim_level };"#,
        ])
    });
    let alice = user("alice", json!({}));
    assert!(!call(&authz, Some(&alice), "x", None));
}

#[test]
fn resources_are_children_of_their_server() {
    let authz = authorizer(&[r#"permit(principal, action, resource in MCP::"github");"#]);
    assert!(call(&authz, None, "x", None));
    let other = Authorizer::new(
        &AuthzConfig::cedar(CedarConfig::new([
            r#"permit(principal, action, resource in MCP::"github");"#,
        ])),
        "gitlab",
    )
    .expect("valid");
    assert!(!call(&other, None, "x", None));
}

#[test]
fn arguments_are_resource_and_context_attributes() {
    let authz = authorizer(&[
        r#"permit(principal, action == Action::"call_tool", resource == Tool::"weather") when { resource.arg_city == "Paris" };"#,
        r#"permit(principal, action, resource == Tool::"order") when { context.arg_qty.lessThan(decimal("10.0")) && context.arg_note_present };"#,
        r#"permit(principal, action, resource == Tool::"price") when { resource.arg_p == decimal("9.99") };"#,
        r#"permit(principal, action, resource == Tool::"big") when { resource.arg_n == 9000000000000000000 };"#,
        r#"permit(principal, action, resource == Tool::"exact") when { !(resource has arg_x) && resource.arg_y == decimal("-0.5") };"#,
    ]);
    assert!(call(
        &authz,
        None,
        "weather",
        Some(json!({"city": "Paris"}))
    ));
    assert!(!call(
        &authz,
        None,
        "weather",
        Some(json!({"city": "London"}))
    ));
    // No argument: the attribute is missing, evaluation fails, deny.
    assert!(!call(&authz, None, "weather", None));
    assert!(!call(
        &authz,
        None,
        "weather",
        Some(json!({"city": ["Paris"]}))
    ));
    assert!(call(
        &authz,
        None,
        "order",
        Some(json!({"qty": 3, "note": {"a": 1}}))
    ));
    assert!(call(
        &authz,
        None,
        "order",
        Some(json!({"qty": 3, "note": null}))
    ));
    assert!(!call(
        &authz,
        None,
        "order",
        Some(json!({"qty": 30, "note": []}))
    ));
    assert!(call(&authz, None, "price", Some(json!({"p": 9.99}))));
    // Too large for a decimal: a Long.
    assert!(call(
        &authz,
        None,
        "big",
        Some(json!({"n": 9_000_000_000_000_000_000_i64}))
    ));
    // More than 4 fractional digits: left out.
    assert!(call(
        &authz,
        None,
        "exact",
        Some(json!({"x": 0.12345, "y": -0.5}))
    ));
    assert!(!call(
        &authz,
        None,
        "exact",
        Some(json!({"x": 0.1234, "y": -0.5}))
    ));
}

#[test]
fn a_presence_marker_wins_over_a_scalar_of_the_same_name() {
    let authz = authorizer(&[
        "permit(principal, action, resource);",
        "forbid(principal, action, resource) when { context has arg_cmd_present && context.arg_cmd_present == true };",
    ]);
    assert!(call(&authz, None, "run", Some(json!({"cmd": "ls"}))));
    for args in [
        json!({"cmd": {"argv": ["rm"]}, "cmd_present": false}),
        json!({"cmd_present": false, "cmd": {"argv": ["rm"]}}),
    ] {
        assert!(!call(&authz, None, "run", Some(args.clone())), "{args}");
    }
}

#[test]
fn claims_are_principal_and_context_attributes() {
    let authz = authorizer(&[
        r#"permit(principal, action, resource) when { context.claim_email like "*@example.com" };"#,
        r#"permit(principal, action, resource == Tool::"level") when { principal.claim_level.greaterThanOrEqual(decimal("3.0")) && principal.claim_mfa };"#,
        r#"permit(principal, action, resource == Tool::"org") when { principal.claim_org.name == "acme" && principal.claim_teams.contains("red") };"#,
    ]);
    let alice = user("alice", json!({"email": "alice@example.com"}));
    let mallory = user("mallory", json!({"email": "mallory@example.com.evil"}));
    assert!(call(&authz, Some(&alice), "x", None));
    assert!(!call(&authz, Some(&mallory), "x", None));
    // Addresses elsewhere, so that only the policies on `level` and `org` can allow.
    let senior = user(
        "s",
        json!({"email": "s@corp.test", "level": 3, "mfa": true}),
    );
    assert!(call(&authz, Some(&senior), "level", None));
    let junior = user(
        "j",
        json!({"email": "j@corp.test", "level": 2.5, "mfa": true}),
    );
    assert!(!call(&authz, Some(&junior), "level", None));
    let org = user(
        "o",
        json!({"email": "o@corp.test", "org": {"name": "acme"}, "teams": ["red", "blue"]}),
    );
    assert!(call(&authz, Some(&org), "org", None));
}

#[test]
fn multi_valued_claims_are_a_joined_string_and_a_set() {
    let authz = with_config(CedarConfig {
        multi_valued_claims: vec!["scp".to_owned()],
        ..CedarConfig::new([
            r#"permit(principal, action, resource == Tool::"read") when { principal.claimset_scp.contains("Mail.Read") };"#,
            r#"permit(principal, action, resource == Tool::"str") when { context.claim_scp like "*Mail.Send*" };"#,
        ])
    });
    let string = user("a", json!({"scp": "Mail.Read  Mail.Send"}));
    let array = user("b", json!({"scp": ["Mail.Read", "Mail.Send", 7]}));
    let wider = user("c", json!({"scp": "Mail.ReadWrite"}));
    for who in [&string, &array] {
        assert!(call(&authz, Some(who), "read", None));
        assert!(call(&authz, Some(who), "str", None));
    }
    assert!(!call(&authz, Some(&wider), "read", None));
    // Exact joined form: an array is joined by single spaces, a string kept verbatim.
    let joined = with_config(CedarConfig {
        multi_valued_claims: vec!["scp".to_owned()],
        ..CedarConfig::new([
            r#"permit(principal, action, resource) when { principal.claim_scp == "Mail.Read Mail.Send" };"#,
        ])
    });
    assert!(call(&joined, Some(&array), "x", None));
    assert!(!call(&joined, Some(&string), "x", None));
}

#[test]
fn tool_annotations_are_resource_attributes() {
    let authz = authorizer(&[
        r#"permit(principal, action == Action::"call_tool", resource) when { resource has readOnlyHint && resource.readOnlyHint == true };"#,
    ]);
    let allows =
        |annotations: Value| authz.allows(None, Operation::CallTool, "t", None, Some(&annotations));
    assert!(allows(json!({"readOnlyHint": true, "title": "T"})));
    assert!(!allows(json!({"readOnlyHint": false})));
    // Booleans only.
    assert!(!allows(json!({"readOnlyHint": "true"})));
    assert!(!allows(json!({"destructiveHint": false})));
    assert!(!authz.allows(None, Operation::CallTool, "t", None, None));
}

#[test]
fn resources_are_named_as_toolhive_names_them() {
    let authz = authorizer(&[
        r#"permit(principal, action == Action::"read_resource", resource == Resource::"file____data_report_txt");"#,
        r#"permit(principal, action == Action::"read_resource", resource) when { resource.uri == "s3://b/k?v=1#f" && resource.name == resource.uri && resource.feature == "resource" && resource.operation == "read" };"#,
    ]);
    let read = |uri: &str| authz.allows(None, Operation::ReadResource, uri, None, None);
    assert!(read("file:///data/report.txt"));
    assert!(read("s3://b/k?v=1#f"));
    assert!(!read("file:///data/other.txt"));
}

#[test]
fn actions_and_resources_carry_their_operation() {
    let authz = authorizer(&[
        r#"permit(principal, action, resource) when { action.operation == "get_prompt" && resource.operation == "get" && resource.feature == "prompt" && resource.name == "greet" };"#,
    ]);
    assert!(authz.allows(None, Operation::GetPrompt, "greet", None, None));
    assert!(!authz.allows(None, Operation::CallTool, "greet", None, None));
}

#[test]
fn names_cannot_escape_their_id() {
    let authz = authorizer(&[
        r#"permit(principal == Client::"alice", action, resource == Tool::"safe");"#,
        r#"permit(principal, action, resource == Tool::"x\" || true || \"");"#,
    ]);
    let alice = user("alice", json!({}));
    let quoted = user(r#"alice", action, resource); permit(principal"#, json!({}));
    assert!(call(&authz, Some(&alice), "safe", None));
    for name in [
        r#"safe" || true || ""#,
        r#"safe")"#,
        "Tool::\"safe\"",
        "safe::x",
        "safe\n",
        "",
    ] {
        assert!(!call(&authz, Some(&alice), name, None), "{name:?}");
    }
    assert!(!call(&authz, Some(&quoted), "safe", None));
    // The hostile name is one opaque id, matched only by a policy naming it.
    assert!(call(&authz, None, r#"x" || true || ""#, None));
    // A group, prompt or resource name is just as opaque.
    let groups = authorizer(&[r#"permit(principal in THVGroup::"admins", action, resource);"#]);
    let sneaky = user(
        "m",
        json!({"groups": [r#"x"), THVGroup::"admins"#, "admins::"]}),
    );
    assert!(!call(&groups, Some(&sneaky), "t", None));
    let server = Authorizer::new(
        &AuthzConfig::cedar(CedarConfig::new([
            r#"permit(principal, action, resource in MCP::"a");"#,
        ])),
        r#"b" || MCP::"a"#,
    )
    .expect("valid");
    assert!(!call(&server, None, "t", None));
}

#[test]
fn anonymous_callers_are_one_client() {
    let authz = authorizer(&[r#"permit(principal == Client::"anonymous", action, resource);"#]);
    assert!(call(&authz, None, "t", None));
    assert!(!call(&authz, Some(&user("alice", json!({}))), "t", None));
    let claims =
        authorizer(&["permit(principal, action, resource) when { principal has claim_sub };"]);
    assert!(!call(&claims, None, "t", None));
    assert!(call(
        &claims,
        Some(&user("a", json!({"sub": "a"}))),
        "t",
        None
    ));
}

#[test]
fn an_evaluation_error_denies() {
    let authz = authorizer(&[
        "permit(principal, action, resource);",
        // Missing attribute, wrong type: errors, not panics.
        "forbid(principal, action, resource) when { principal.claim_missing == 1 };",
    ]);
    assert!(!call(&authz, Some(&user("a", json!({}))), "t", None));
    let types =
        authorizer(&["permit(principal, action, resource) when { principal.claim_n + 1 > 0 };"]);
    assert!(!call(
        &types,
        Some(&user("a", json!({"n": "one"}))),
        "t",
        None
    ));
    let overflow =
        authorizer(&["permit(principal, action, resource) when { resource.arg_n * 2 > 0 };"]);
    assert!(!call(&overflow, None, "t", Some(json!({"n": i64::MAX}))));
}

#[test]
fn huge_and_deep_claims_are_cut_not_fatal() {
    let mut deep = json!("bottom");
    for _ in 0..50 {
        deep = json!({ "a": deep });
    }
    let big: Vec<Value> = (0..10_000).map(|i| json!(format!("g{i}"))).collect();
    let claims = json!({"deep": deep, "big": big, "email": "a@example.com"});
    let authz = authorizer(&[
        r#"permit(principal, action, resource == Tool::"email") when { principal.claim_email == "a@example.com" };"#,
        r#"permit(principal, action, resource == Tool::"big") when { principal has claim_big };"#,
        // Records down to depth 10 are kept (the claim itself is depth 0); depth 11 is left out.
        r#"permit(principal, action, resource == Tool::"deep") when { principal.claim_deep.a.a.a.a.a.a.a.a.a has a && !(principal.claim_deep.a.a.a.a.a.a.a.a.a.a has a) };"#,
    ]);
    let who = user("a", claims);
    let start = Instant::now();
    let caller = authz.caller(Some(&who));
    assert!(authz.allows_caller(&caller, Operation::CallTool, "email", None, None));
    assert!(!authz.allows_caller(&caller, Operation::CallTool, "big", None, None));
    assert!(authz.allows_caller(&caller, Operation::CallTool, "deep", None, None));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn the_claim_budget_is_shared() {
    // 8 claims of 4000 values: the first four fit the total of 16384.
    let mut claims = serde_json::Map::new();
    for i in 0..8 {
        claims.insert(format!("c{i}"), json!(vec![i; 3999]));
    }
    let authz = authorizer(&[
        "permit(principal, action, resource == Tool::\"first\") when { principal has claim_c0 && principal has claim_c3 };",
        "permit(principal, action, resource == Tool::\"last\") when { principal has claim_c4 };",
    ]);
    let who = Identity::with_claims("a", claims);
    assert!(call(&authz, Some(&who), "first", None));
    assert!(!call(&authz, Some(&who), "last", None));
}

#[test]
fn too_many_groups_or_arguments_deny() {
    let authz = authorizer(&[
        "permit(principal, action, resource);",
        r#"forbid(principal in THVGroup::"banned", action, resource);"#,
    ]);
    let mut groups: Vec<String> = (0..MAX_GROUPS).map(|i| format!("g{i}")).collect();
    assert!(call(
        &authz,
        Some(&user("a", json!({"groups": groups}))),
        "t",
        None
    ));
    groups.push("banned".to_owned());
    assert!(!call(
        &authz,
        Some(&user("a", json!({"groups": groups}))),
        "t",
        None
    ));

    let args: serde_json::Map<String, Value> = (0..=MAX_ARGUMENTS)
        .map(|i| (format!("a{i}"), json!(i)))
        .collect();
    assert!(!call(&authz, None, "t", Some(Value::Object(args))));
}

#[test]
fn numbers_map_to_decimal_then_long_then_nothing() {
    let render = |n: Value| {
        let Value::Number(n) = n else { unreachable!() };
        number(&n).map(|e| format!("{e:?}"))
    };
    assert!(render(json!(1.5)).is_some_and(|e| e.contains("1.5")));
    assert!(render(json!(0.0001)).is_some());
    assert!(render(json!(0.00001)).is_none());
    assert!(render(json!(-922_337_203_685_477.0)).is_some());
    assert!(render(json!(u64::MAX)).is_none());
    assert!(render(json!(1e300)).is_none());
    assert!(fits_decimal("922337203685477.5807"));
    assert!(!fits_decimal("922337203685477.5808"));
    assert!(fits_decimal("-922337203685477.5808"));
    assert!(!fits_decimal("-922337203685477.5809"));
    assert!(!fits_decimal("1.23456"));
    assert!(!fits_decimal("1"));
}

#[test]
fn the_config_is_toolhives() {
    let value = json!({
        "version": "1.0",
        "type": "cedarv1",
        "cedar": {
            "policies": [r#"permit(principal, action == Action::"call_tool", resource == Tool::"weather");"#],
            "entities_json": "[]",
            "group_claim_name": "groups",
            "role_claim_name": "roles",
            "group_entity_type": "THVGroup",
            "multi_valued_claims": ["scope"],
            "primary_upstream_provider": ""
        }
    });
    let config = AuthzConfig::from_value(value.clone()).expect("ToolHive's example");
    assert_eq!(config.cedar.multi_valued_claims, ["scope"]);
    let back = serde_json::to_value(&config).expect("serializes");
    assert_eq!(back, value);
    Authorizer::new(&config, "weather").expect("builds");

    let minimal = AuthzConfig::from_value(json!({
        "version": "1.0", "type": "cedarv1", "cedar": {"policies": ["permit(principal, action, resource);"]}
    }))
    .expect("defaults");
    assert_eq!(minimal.cedar.entities_json, "[]");
    assert_eq!(minimal.cedar.group_entity_type, "THVGroup");
    assert_eq!(
        minimal,
        AuthzConfig::cedar(CedarConfig::new(["permit(principal, action, resource);"]))
    );
}

#[test]
fn other_types_and_unknown_fields_are_refused() {
    let http = json!({"version": "1.0", "pdp": {"http": {"url": "http://pdp"}}, "type": "httpv1"});
    let err = AuthzConfig::from_value(http)
        .expect_err("httpv1")
        .to_string();
    assert!(err.contains("only cedarv1 is supported"), "{err}");
    let err = serde_json::from_value::<AuthzConfig>(json!({
        "version": "1.0", "type": "opa", "cedar": {"policies": []}
    }))
    .expect_err("opa")
    .to_string();
    assert!(err.contains("only cedarv1 is supported"), "{err}");
    for bad in [
        json!({"version": "1.0", "type": "cedarv1", "cedar": {"policies": [], "polices": []}}),
        json!({"version": "1.0", "type": "cedarv1", "cedar": {}, "extra": 1}),
        json!({"version": "1.0", "type": "cedarv1"}),
    ] {
        let err = AuthzConfig::from_value(bad.clone()).expect_err("refused");
        assert!(matches!(err, AuthzError::Config(_)), "{bad}: {err}");
    }
    let empty_version = AuthzConfig {
        version: String::new(),
        ..AuthzConfig::cedar(CedarConfig::new(["permit(principal, action, resource);"]))
    };
    assert!(matches!(
        Authorizer::new(&empty_version, "s"),
        Err(AuthzError::MissingVersion)
    ));
}

#[test]
fn bad_policies_and_entities_are_refused_with_cedars_message() {
    let err = error(CedarConfig::new([
        "permit(principal, action, resource);",
        "permit(principal, action, resource) when { principal.x == };",
    ]));
    assert!(err.starts_with("policy 1"), "{err}");
    assert!(err.contains("unexpected token"), "{err}");
    let err = error(CedarConfig::new([
        "permit(principal == ?principal, action, resource);",
    ]));
    assert!(err.starts_with("policy 0"), "{err}");
    let err = error(CedarConfig::new(Vec::<String>::new()));
    assert_eq!(err, "no policies: every request would be denied");
    for entities in [
        "{",
        r#"[{"uid": "nope"}]"#,
        r#"{"uid": {"type": "A", "id": "b"}}"#,
    ] {
        let err = error(CedarConfig {
            entities_json: entities.to_owned(),
            ..CedarConfig::new(["permit(principal, action, resource);"])
        });
        assert!(err.starts_with("entities_json: "), "{entities}: {err}");
    }
    // An empty entities_json is no entities (ToolHive accepts it).
    with_config(CedarConfig {
        entities_json: String::new(),
        ..CedarConfig::new(["permit(principal, action, resource);"])
    });
}

#[test]
fn operations_of_methods() {
    for (method, op) in [
        ("tools/call", Some(Operation::CallTool)),
        ("prompts/get", Some(Operation::GetPrompt)),
        ("resources/read", Some(Operation::ReadResource)),
        ("resources/subscribe", Some(Operation::ReadResource)),
        ("resources/unsubscribe", Some(Operation::ReadResource)),
        ("tools/list", None),
        ("resources/templates/list", None),
        ("sampling/createMessage", None),
        ("", None),
    ] {
        assert_eq!(Operation::of_method(method), op, "{method}");
    }
}

#[test]
fn the_authorizer_is_shareable() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Authorizer>();
    shareable::<Caller>();
}
