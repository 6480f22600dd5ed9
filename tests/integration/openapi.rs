//! berth's OpenAPI document: valid OpenAPI 3.1, and a superset of ToolHive's
//! for every path berth serves.

use std::collections::BTreeSet;
use std::process::Command;

use axum::http::StatusCode;
use serde_json::Value;

use crate::api::harness;

/// The wire-contract facts of ToolHive's OpenAPI reference (paths,
/// methods, status codes, schema field names), extracted into the
/// repository by `tests/data/extract-contract.py`.
fn reference() -> Value {
    let text = include_str!("../data/toolhive-contract.json");
    serde_json::from_str(text).expect("the contract file parses")
}

async fn ours() -> Value {
    let h = harness().await;
    let r = h.get("/api/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()
}

#[tokio::test]
async fn is_valid_openapi_3_1() {
    let doc = ours().await;
    assert!(
        doc["openapi"]
            .as_str()
            .expect("openapi")
            .starts_with("3.1.")
    );
    let file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(file.path(), doc.to_string()).expect("write");
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(file.path())
        .output()
        .expect("python3 runs (install: pip install openapi-spec-validator)");
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document (install it with `pip install openapi-spec-validator`):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            out.insert((method.clone(), path.clone()));
        }
    }
    out
}

#[tokio::test]
async fn covers_the_reference_for_the_paths_it_serves() {
    let (doc, reference) = (ours().await, reference());
    let ours = operations(&doc);
    let theirs = operations(&reference);
    let in_scope = |p: &str| {
        p == "/health"
            || p == "/api/v1beta/version"
            || p == "/api/openapi.json"
            || p.starts_with("/api/v1beta/groups")
            || p.starts_with("/api/v1beta/workloads")
            || p.starts_with("/api/v1beta/registry")
            || p.starts_with("/registry/")
            || p.starts_with("/api/v1beta/clients")
            || p == "/api/v1beta/discovery/clients"
    };
    for (method, path) in theirs.iter().filter(|(_, p)| in_scope(p)) {
        assert!(
            ours.contains(&(method.clone(), path.clone())),
            "berth lacks {method} {path}"
        );
    }
    assert!(ours.contains(&("get".into(), "/api/doc".into())));

    // Every field of the reference's bodies is in berth's.
    let ours_schema = |name: &str| -> BTreeSet<String> {
        doc["components"]["schemas"][name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {name}"))
            .keys()
            .cloned()
            .collect()
    };
    let their_schema = |name: &str| -> BTreeSet<String> {
        reference["schemas"][name]
            .as_array()
            .unwrap_or_else(|| panic!("reference schema {name}"))
            .iter()
            .map(|f| f.as_str().expect("field name").to_owned())
            .collect()
    };
    for name in [
        "core.Workload",
        "pkg_api_v1.createRequest",
        "pkg_api_v1.createWorkloadResponse",
        "pkg_api_v1.bulkOperationRequest",
        "pkg_api_v1.workloadListResponse",
        "pkg_api_v1.workloadStatusResponse",
        "pkg_api_v1.versionResponse",
        "pkg_api_v1.groupListResponse",
        "pkg_api_v1.createGroupRequest",
        "pkg_api_v1.createGroupResponse",
        "permissions.Profile",
        "pkg_api_v1.registryInfo",
        "pkg_api_v1.registryListResponse",
        "pkg_api_v1.getRegistryResponse",
        "pkg_api_v1.UpdateRegistryRequest",
        "pkg_api_v1.UpdateRegistryAuthRequest",
        "pkg_api_v1.UpdateRegistryResponse",
        "pkg_api_v1.listServersResponse",
        "pkg_api_v1.getServerResponse",
        "pkg_api_v1.serversV01Response",
        "pkg_api_v1.paginationV01Metadata",
        "pkg_api_v1.registryErrorResponse",
        "github_com_stacklok_toolhive_pkg_registry.OAuthPublicConfig",
        "pkg_api_v1.upgradeCheckBulkResponse",
        "pkg_api_v1.upgradeCheckResponse",
        "pkg_api_v1.upgradeRequest",
        "github_com_stacklok_toolhive_pkg_workloads_upgrade.CheckResult",
        "github_com_stacklok_toolhive_pkg_workloads_upgrade.ConfigDrift",
        "github_com_stacklok_toolhive_pkg_workloads_upgrade.EnvVarDrift",
        "github_com_stacklok_toolhive_pkg_workloads_upgrade.EnvVarInfo",
        "github_com_stacklok_toolhive_pkg_workloads_upgrade.StringChange",
        "github_com_stacklok_toolhive_pkg_client.RegisteredClient",
        "github_com_stacklok_toolhive_pkg_client.ClientAppStatus",
        "pkg_api_v1.bulkClientRequest",
        "pkg_api_v1.clientStatusResponse",
        "pkg_api_v1.createClientRequest",
        "pkg_api_v1.createClientResponse",
    ] {
        let missing: Vec<_> = their_schema(name)
            .difference(&ours_schema(name))
            .cloned()
            .collect();
        assert!(missing.is_empty(), "{name} lacks {missing:?}");
    }
    let group = ours_schema("groups.Group");
    let theirs = their_schema("github_com_stacklok_toolhive_pkg_groups.Group");
    assert!(
        theirs.is_subset(&group),
        "Group lacks {:?}",
        theirs.difference(&group)
    );
}
