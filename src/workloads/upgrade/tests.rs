//! The comparison of references and versions, and the drift report.

use super::check::{drift, remote_verdict};
use super::compare::{Reference, Verdict, compare, compare_versions, reference};
use super::*;
use crate::registry::model::{Server, ServerJson};
use crate::workloads::model::Workload;
use crate::workloads::types::PermissionProfile;
use serde_json::json;

/// `compare(current, recorded, candidate, entry)` gives `want`: `newer`,
/// `same`, or `unknown: <part of the reason>`.
fn check(current: &str, recorded: &str, candidate: &str, entry: &str, want: &str) {
    let got = compare(current, recorded, candidate, entry);
    let ok = match (&got, want.split_once(": ")) {
        (Verdict::Newer { .. }, _) => want == "newer",
        (Verdict::Same, _) => want == "same",
        (Verdict::Unknown(why), Some(("unknown", part))) => why.contains(part),
        (Verdict::Unknown(_), _) => false,
    };
    assert!(
        ok,
        "{current} ({recorded}) vs {candidate} ({entry}): want {want}, got {got:?}"
    );
}

#[test]
fn references_are_compared_by_version() {
    for (current, recorded, candidate, entry, want) in [
        // Package versions (npx `@`, uvx `@` or `==`).
        (
            "uvx://mcp-server-time@2025.9.25",
            "2025.9.25",
            "uvx://mcp-server-time@2026.10.19",
            "2026.10.19",
            "newer",
        ),
        (
            "uvx://mcp-server-time==2026.10.19",
            "x",
            "uvx://mcp-server-time@2026.10.19",
            "y",
            "same",
        ),
        (
            "npx://@scope/pkg@1.2.3",
            "",
            "npx://@scope/pkg@1.10.0",
            "",
            "newer",
        ),
        (
            "npx://@scope/pkg@2.0.0",
            "",
            "npx://@scope/pkg@1.10.0",
            "",
            "same",
        ),
        ("npx://pkg@1.0.0-rc.1", "", "npx://pkg@1.0.0", "", "newer"),
        (
            "npx://pkg@next",
            "",
            "npx://pkg@beta",
            "",
            "unknown: tags are not comparable: next vs beta",
        ),
        (
            "npx://pkg@1.0.0",
            "",
            "npx://other@2.0.0",
            "",
            "unknown: repository differs: npx://pkg vs npx://other",
        ),
        (
            "npx://pkg",
            "1.0.0",
            "npx://pkg@2.0.0",
            "2.0.0",
            "unknown: uses the \"latest\" version",
        ),
        // OCI tags: `v` prefixes, short versions, default registries.
        (
            "ghcr.io/org/srv:v0.9.0",
            "",
            "ghcr.io/org/srv:v0.10.0",
            "",
            "newer",
        ),
        (
            "ghcr.io/org/srv:1.2",
            "",
            "ghcr.io/org/srv:1.2.1",
            "",
            "newer",
        ),
        ("redis:7", "", "docker.io/library/redis:8", "", "newer"),
        (
            "me/srv:1.0.0",
            "",
            "index.docker.io/me/srv:1.0.0",
            "",
            "same",
        ),
        (
            "localhost:5000/srv:1.0.0",
            "",
            "localhost:5000/srv:0.9.0",
            "",
            "same",
        ),
        (
            "ghcr.io/org/srv:1.0.0",
            "",
            "ghcr.io/other/srv:2.0.0",
            "",
            "unknown: repository differs",
        ),
        (
            "ghcr.io/org/srv@sha256:abc",
            "",
            "ghcr.io/org/srv:2.0.0",
            "",
            "unknown: pinned by digest",
        ),
        (
            "ghcr.io/org/srv:latest",
            "",
            "ghcr.io/org/srv:2.0.0",
            "",
            "unknown: \"latest\"",
        ),
        // A reference that names no version: the entry's versions decide.
        (
            "ghcr.io/org/srv:latest",
            "1.0.0",
            "ghcr.io/org/srv",
            "1.1.0",
            "newer",
        ),
        ("fake://echo", "1.0.0", "fake://echo", "1.1.0", "newer"),
        ("fake://echo", "1.1.0", "fake://echo", "1.1.0", "same"),
        ("fake://echo", "2.0.0", "fake://echo", "1.1.0", "same"),
        (
            "fake://echo",
            "2024-01",
            "fake://echo",
            "2024-02",
            "unknown: versions are not comparable",
        ),
        ("fake://echo", "", "fake://echo", "", "same"),
        (
            "exec:///bin/a",
            "1",
            "exec:///bin/b",
            "2",
            "unknown: repository differs",
        ),
        (
            "npx://bad;name@1",
            "",
            "npx://pkg@1",
            "",
            "unknown: cannot read",
        ),
    ] {
        check(current, recorded, candidate, entry, want);
    }
}

#[test]
fn versions_and_references_are_read_leniently() {
    use std::cmp::Ordering::*;
    for (a, b, want) in [
        ("v1.2.3", "1.2.3", Some(Equal)),
        ("V2", "1.9.9", Some(Greater)),
        ("2025.9.25", "2026.10.19", Some(Less)),
        ("1.0.0+build", "1.0.0", Some(Equal)),
        ("1.0.0-alpha", "1.0.0-beta", Some(Less)),
        ("abc", "abc", Some(Equal)),
        ("abc", "abd", None),
        ("1.2.3.4", "1.2.3.5", None),
    ] {
        assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
    }
    assert_eq!(
        reference("localhost:5000/team/srv:1.0").expect("reads"),
        Reference {
            repository: "localhost:5000/team/srv".into(),
            version: Some("1.0".into()),
            digest: false
        }
    );
    assert_eq!(
        reference("uvx://mcp-server-time").expect("reads").version,
        None
    );
    assert!(reference("").is_err());
}

fn server(v: serde_json::Value) -> Server {
    Server::new(serde_json::from_value::<ServerJson>(v).expect("json")).expect("valid")
}

fn workload(image: &str, env: &[(&str, &str)]) -> Workload {
    let mut w = Workload::unusable(&WorkloadName::parse("w").expect("name"));
    w.image = image.to_owned();
    w.env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    w.permission_profile = Some(PermissionProfile::network());
    w
}

#[test]
fn drift_names_new_variables_and_hides_secret_defaults() {
    let entry = server(
        json!({"name": "a.b/srv", "description": "d", "version": "2.0.0",
        "packages": [{"registryType": "npm", "identifier": "srv", "version": "2.0.0",
            "transport": {"type": "streamable-http", "url": "http://localhost:8080/mcp"},
            "environmentVariables": [
                {"name": "KEPT", "isRequired": true},
                {"name": "TOKEN", "description": "api token", "isRequired": true, "isSecret": true, "default": "s3cret"},
                {"name": "MODE", "default": "fast"}]}],
        "_meta": {"io.modelcontextprotocol.registry/publisher-provided": {"io.github.stacklok": {
            "srv": {"permissions": {"name": "none"}}}}}}),
    );
    let (env, config) = drift(&workload("npx://srv@1.0.0", &[("KEPT", "1")]), &entry);
    let env = env.expect("env drift");
    assert_eq!(
        serde_json::to_value(&env).expect("json"),
        json!({"added": [
            {"name": "TOKEN", "description": "api token", "required": true, "secret": true},
            {"name": "MODE", "required": false, "default": "fast"}]})
    );
    let config = config.expect("config drift");
    assert_eq!(
        config.transport,
        Some(StringChange {
            from: "stdio".into(),
            to: "streamable-http".into()
        })
    );
    assert_eq!(
        config.permission_profile,
        Some(StringChange {
            from: "network".into(),
            to: "none".into()
        })
    );

    // Nothing new, same posture: no drift at all.
    let plain = server(
        json!({"name": "a.b/srv", "description": "d", "version": "2.0.0",
        "packages": [{"registryType": "npm", "identifier": "srv", "version": "2.0.0",
            "transport": {"type": "stdio"}}]}),
    );
    assert_eq!(
        drift(&workload("npx://srv@1.0.0", &[]), &plain),
        (None, None)
    );
}

#[test]
fn remote_workloads_compare_their_url() {
    assert_eq!(remote_verdict(true, "1.0.0", "2.0.0"), Verdict::Same);
    assert!(matches!(
        remote_verdict(false, "1.0.0", "2.0.0"),
        Verdict::Newer { note: Some(_) }
    ));
    assert_eq!(remote_verdict(false, "1.0.0", "1.0.0"), Verdict::Same);
    assert!(matches!(
        remote_verdict(false, "a", "b"),
        Verdict::Unknown(_)
    ));
}
