//! The profile → access mapping, data-driven.

use serde_json::{Value, json};

use super::*;

/// Resolves a profile given as JSON (`null`: none) and volumes.
fn access(profile: Value, volumes: &[&str]) -> Result<Access, String> {
    let profile: Option<PermissionProfile> = serde_json::from_value(profile).expect("profile");
    let volumes: Vec<String> = volumes.iter().map(|v| (*v).to_owned()).collect();
    resolve(profile.as_ref(), &volumes)
}

fn network(profile: Value) -> Network {
    access(profile, &[]).expect("accepted").network
}

fn refused(profile: Value, volumes: &[&str]) -> String {
    match access(profile.clone(), volumes) {
        Err(why) => why,
        Ok(a) => panic!("{profile} {volumes:?} accepted: {a:?}"),
    }
}

fn ro(source: &str, target: &str) -> Mount {
    Mount {
        source: source.into(),
        target: target.into(),
        read_only: true,
    }
}

fn rw(source: &str, target: &str) -> Mount {
    Mount {
        read_only: false,
        ..ro(source, target)
    }
}

fn allow(hosts: &[&str], ports: &[u16]) -> Network {
    let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    Network::Allowlist(EgressPolicy::new(&hosts, ports).expect("policy"))
}

#[test]
fn networks() {
    assert_eq!(network(Value::Null), Network::Full);
    let builtin = serde_json::to_value(PermissionProfile::network()).unwrap();
    assert_eq!(network(builtin), Network::Full);
    assert_eq!(network(json!({"name": "none"})), Network::None);
    assert_eq!(network(json!({"name": "stdio"})), Network::None);
    assert_eq!(
        network(json!({"name": "none", "read": ["/etc"]})),
        Network::None
    );
    // ToolHive: a profile without a network section has no network rules.
    assert_eq!(network(json!({"name": "custom"})), Network::Full);
    assert_eq!(network(json!({"network": {"mode": "none"}})), Network::None);
    assert_eq!(
        network(json!({"network": {"mode": "bridge"}})),
        Network::None
    );
    assert_eq!(
        network(json!({"network": {"outbound": {"insecure_allow_all": true}}})),
        Network::Full
    );
    assert_eq!(network(json!({"network": {"outbound": {}}})), Network::None);
    assert_eq!(
        network(
            json!({"network": {"outbound": {"allow_host": ["API.example.com", "*.github.com"]}}})
        ),
        allow(&["api.example.com", ".github.com"], &[])
    );
    assert_eq!(
        network(json!({"network": {"mode": "bridge", "outbound": {"allow_port": [443]}}})),
        allow(&[], &[443])
    );
    assert_eq!(
        network(json!({"network": {"mode": "none", "outbound": {"insecure_allow_all": true}}})),
        Network::None,
        "mode none wins"
    );
}

#[test]
fn refusals() {
    assert!(refused(json!({"privileged": true}), &[]).contains("never runs a workload privileged"));
    assert!(refused(json!({"network": {"mode": "host"}}), &[]).contains("host's network"));
    assert!(refused(json!({"network": {"mode": "my-net"}}), &[]).contains("custom networks"));
    assert!(
        refused(
            json!({"network": {"inbound": {"allow_host": ["x"]}, "outbound": {"insecure_allow_all": true}}}),
            &[]
        )
        .contains("inbound")
    );
    assert!(
        refused(
            json!({"network": {"outbound": {"allow_host": ["bad host"]}}}),
            &[]
        )
        .contains("invalid host")
    );
    assert!(refused(json!({"network": {"outbound": {"allow_port": [0]}}}), &[]).contains("port"));
    assert!(refused(json!({"read": ["data"]}), &[]).contains("absolute"));
    assert!(refused(json!({"read": ["/a/../etc"]}), &[]).contains("without `..`"));
    assert!(refused(json!({"read": ["/a:data"]}), &[]).contains("container path"));
    assert!(refused(json!({"write": ["/a:/"]}), &[]).contains("root"));
    assert!(refused(json!({"read": ["/a:/b:/c"]}), &[]).contains("host:container"));
    assert!(refused(json!({"read": ["vault://secret:/s"]}), &[]).contains("resource URIs"));
    assert!(refused(json!({"read": ["/a:/x", "/b:/x"]}), &[]).contains("mounted twice"));
    assert!(refused(Value::Null, &["/a"]).contains("host:container"));
    assert!(refused(Value::Null, &["/a:/b:rx"]).contains("host:container"));
    assert!(refused(Value::Null, &["/a:/b\n"]).contains("control"));
}

#[test]
fn mounts() {
    let a = access(
        json!({"read": ["/srv/in", "/etc/x:/config/"], "write": ["/srv/out:/out", "/srv/in"]}),
        &["/data:/data:ro", "/cache/./c:/cache", "/etc/x:/config:ro"],
    )
    .expect("accepted");
    assert_eq!(
        a.mounts,
        vec![
            rw("/srv/in", "/srv/in"),
            ro("/etc/x", "/config"),
            rw("/srv/out", "/out"),
            ro("/data", "/data"),
            rw("/cache/c", "/cache"),
        ],
        "write upgrades read, duplicates merge, paths are cleaned"
    );
    assert_eq!(
        a.network,
        Network::Full,
        "volumes alone leave the network open"
    );
}

#[test]
fn sources_must_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let here = dir.path().to_str().expect("utf-8").to_owned();
    let ok = access(Value::Null, &[&format!("{here}:/d")]).expect("accepted");
    assert_eq!(check_sources(&ok), Ok(()));
    let missing = access(Value::Null, &[&format!("{here}/nope:/d")]).expect("accepted");
    assert!(
        check_sources(&missing)
            .unwrap_err()
            .contains("does not exist")
    );
}
