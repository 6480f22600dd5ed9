//! The `vault-kv` secrets-provider guest (plugins/secrets-vault-kv) through
//! berth's plugin host against a real OpenBao dev server
//! (tests/support/openbao.rs): what berth writes is what Vault stores, and
//! Vault's answers (missing, deleted, denied, sealed, gone) become the
//! right [`SecretsError`]s without quoting a token or a value.

use std::sync::Arc;

use berth::plugins::{HostConfig, PluginConfig, Plugins};
use berth::secrets::{Capabilities, SecretsError, SecretsProvider};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::openbao::OpenBao;
use crate::support::plugins::wasm;

/// Where the tests' secrets live inside the `secret/` mount.
const PREFIX: &str = "berth/ci";

/// A value with what JSON and HTTP could mangle: quotes, backslashes,
/// newlines, non-ASCII.
const VALUE: &str = "ghp_first \"quoted\" \\ back\nslash, ünïcode ☃";
const VALUE2: &str = "ghp_second-value-0123456789";

/// The guest as berth loads it, configured for `bao` with `token` and
/// `prefix` (`""`: none).
fn provider(bao: &OpenBao, token: &str, prefix: &str) -> Arc<dyn SecretsProvider> {
    load(
        bao,
        json!({"address": bao.address(), "token": token, "prefix": prefix, "timeout_secs": 5}),
    )
}

/// The guest as berth loads it, with `config`, allowed to reach `bao`.
fn load(bao: &OpenBao, config: Value) -> Arc<dyn SecretsProvider> {
    let entry: PluginConfig = serde_json::from_value(json!({
        "name": "vault", "kind": "secrets-provider", "path": wasm("secrets-vault-kv"),
        "config": config,
        "permissions": {"allow_http": [bao.host_port()], "allow_private": true}
    }))
    .expect("plugin config");
    // Compilations are shared with the other plugin tests through a cache
    // in cargo's test scratch directory.
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
    let plugins =
        Arc::new(Plugins::load(HostConfig::default(), vec![entry], Some(cache)).expect("host"));
    plugins.secrets("vault").expect("a secrets provider")
}

/// One request straight to OpenBao's HTTP API with the root token:
/// the status and the JSON body (`null` when there is none).
async fn raw(
    bao: &OpenBao,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let mut request = client
        .request(method, format!("{}/v1/{path}", bao.address()))
        .header("X-Vault-Token", bao.token());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("OpenBao answers");
    let status = response.status();
    let text = response.text().await.expect("a body");
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    };
    (status, json)
}

/// Asserts that `err` is of the kind `matches` accepts and that neither
/// its Display nor its Debug text quotes any of `secrets`.
#[track_caller]
fn check_error(err: &SecretsError, matches: fn(&SecretsError) -> bool, secrets: &[&str]) {
    assert!(matches(err), "unexpected error kind: {err:?}");
    for text in [err.to_string(), format!("{err:?}")] {
        for secret in secrets {
            assert!(!text.contains(secret), "{text:?} quotes {secret:?}");
        }
    }
}

fn not_found(e: &SecretsError) -> bool {
    matches!(e, SecretsError::NotFound(_))
}
fn invalid(e: &SecretsError) -> bool {
    matches!(e, SecretsError::Invalid(_))
}
fn denied(e: &SecretsError) -> bool {
    matches!(e, SecretsError::Denied(_))
}
fn unavailable(e: &SecretsError) -> bool {
    matches!(e, SecretsError::Unavailable(_))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_server_mounts_kv_version_2_at_secret() {
    let bao = OpenBao::start().await;
    let (status, mounts) = raw(&bao, Method::GET, "sys/mounts", None).await;
    assert_eq!(status, StatusCode::OK, "{mounts}");
    let secret = &mounts["data"]["secret/"];
    assert_eq!(secret["type"], "kv", "{secret}");
    assert_eq!(secret["options"]["version"], "2", "{secret}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_set_through_berth_is_stored_in_the_kv_mount() {
    let bao = OpenBao::start().await;
    let s = provider(&bao, bao.token(), PREFIX);
    assert_eq!(
        s.capabilities().await.expect("capabilities"),
        Capabilities {
            read: true,
            write: true,
            delete: true,
            list: true
        }
    );
    let err = s.get("github").await.expect_err("nothing written yet");
    check_error(&err, not_found, &[bao.token()]);

    s.set("github", VALUE).await.expect("set");
    assert_eq!(s.get("github").await.expect("get"), VALUE);
    // Vault holds it at secret/data/<prefix>/<name>, under `value` only.
    let (status, read) = raw(&bao, Method::GET, "secret/data/berth/ci/github", None).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["data"]["data"], json!({"value": VALUE}));
    assert_eq!(read["data"]["metadata"]["version"], 1);

    // An overwrite is a new version holding the new value.
    s.set("github", VALUE2).await.expect("overwrite");
    assert_eq!(s.get("github").await.expect("get"), VALUE2);
    let (_, read) = raw(&bao, Method::GET, "secret/data/berth/ci/github", None).await;
    assert_eq!(read["data"]["data"], json!({"value": VALUE2}));
    assert_eq!(read["data"]["metadata"]["version"], 2);

    // Names are percent-encoded in URLs and stored as written: `%2F` is
    // not a folder, `?` and `#` are not a query or fragment.
    let odd = "team/db password?#%+ü %2F";
    s.set(odd, VALUE).await.expect("set an odd name");
    assert_eq!(s.get(odd).await.expect("get an odd name"), VALUE);
    let (status, read) = raw(
        &bao,
        Method::GET,
        "secret/data/berth/ci/team/db%20password%3F%23%25+%C3%BC%20%252F",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["data"]["data"], json!({"value": VALUE}));
    assert_eq!(s.list().await.expect("list"), ["github", odd]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_policy_is_enough_and_a_namespace_is_honoured() {
    let bao = OpenBao::start().await;
    // The policy plugins/secrets-vault-kv/README.md gives for prefix
    // `berth`, on a token of its own.
    let policy = r#"
path "secret/data/berth/*"     { capabilities = ["create", "read", "update"] }
path "secret/metadata/berth/*" { capabilities = ["read", "list", "delete"] }
path "secret/metadata/berth"   { capabilities = ["list"] }
"#;
    let (status, body) = raw(
        &bao,
        Method::PUT,
        "sys/policies/acl/berth",
        Some(json!({"policy": policy})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = raw(
        &bao,
        Method::POST,
        "auth/token/create",
        Some(json!({"policies": ["berth"], "no_default_policy": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let limited = body["auth"]["client_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let s = provider(&bao, &limited, "berth");
    let secrets = [bao.token(), limited.as_str(), VALUE];
    assert_eq!(s.list().await.expect("list nothing"), Vec::<String>::new());
    s.set("github", VALUE).await.expect("set");
    s.set("team/slack", VALUE).await.expect("set");
    assert_eq!(s.get("team/slack").await.expect("get"), VALUE);
    assert_eq!(s.list().await.expect("list"), ["github", "team/slack"]);
    s.delete("github").await.expect("delete");
    let err = s.delete("github").await.expect_err("deleted");
    check_error(&err, not_found, &secrets);
    // Outside the prefix the token is denied.
    let outside = provider(&bao, &limited, "other");
    let err = outside.set("github", VALUE).await.expect_err("denied");
    check_error(&err, denied, &secrets);

    // A token that may delete but not read metadata: the delete is sent
    // without the look-up telling a missing secret apart.
    let policy = r#"
path "secret/data/berth/*"     { capabilities = ["create", "read", "update"] }
path "secret/metadata/berth/*" { capabilities = ["list", "delete"] }
"#;
    raw(
        &bao,
        Method::PUT,
        "sys/policies/acl/blind",
        Some(json!({"policy": policy})),
    )
    .await;
    let (_, body) = raw(
        &bao,
        Method::POST,
        "auth/token/create",
        Some(json!({"policies": ["blind"], "no_default_policy": true})),
    )
    .await;
    let blind = body["auth"]["client_token"].as_str().expect("a token");
    let s = provider(&bao, blind, "berth");
    s.set("blind", VALUE).await.expect("set");
    s.delete("blind").await.expect("delete unseen");
    let err = s.get("blind").await.expect_err("deleted");
    check_error(&err, not_found, &[blind, VALUE]);

    // A namespace with its own KV v2 mount: X-Vault-Namespace is sent.
    let (status, body) = raw(&bao, Method::POST, "sys/namespaces/team", Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let mount = client
        .post(format!("{}/v1/sys/mounts/kv", bao.address()))
        .header("X-Vault-Token", bao.token())
        .header("X-Vault-Namespace", "team")
        .json(&json!({"type": "kv", "options": {"version": "2"}}))
        .send()
        .await
        .expect("OpenBao answers");
    assert!(mount.status().is_success(), "{}", mount.status());
    let team = load(
        &bao,
        json!({"address": bao.address(), "token": bao.token(), "mount": "kv", "namespace": "team"}),
    );
    team.set("github", VALUE2)
        .await
        .expect("set in the namespace");
    assert_eq!(team.get("github").await.expect("get"), VALUE2);
    assert_eq!(team.list().await.expect("list"), ["github"]);
    let read = client
        .get(format!("{}/v1/kv/data/github", bao.address()))
        .header("X-Vault-Token", bao.token())
        .header("X-Vault-Namespace", "team")
        .send()
        .await
        .expect("OpenBao answers")
        .json::<Value>()
        .await
        .expect("JSON");
    assert_eq!(read["data"]["data"], json!({"value": VALUE2}));
    // The root namespace has no `kv` mount.
    let (status, _) = raw(&bao, Method::GET, "kv/data/github", None).await;
    assert_ne!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_descends_into_folders_and_stays_below_the_prefix() {
    let bao = OpenBao::start().await;
    let s = provider(&bao, bao.token(), PREFIX);
    assert_eq!(
        s.list().await.expect("an empty listing"),
        Vec::<String>::new()
    );
    for name in ["z", "a/b", "a/c/d", "b", "with space"] {
        s.set(name, VALUE).await.expect("set");
    }
    // Beside the prefix, written straight to Vault: never listed.
    for path in ["outside", "berth/cix", "berth/other/x"] {
        let (status, body) = raw(
            &bao,
            Method::POST,
            &format!("secret/data/{path}"),
            Some(json!({"data": {"value": "elsewhere"}})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(
        s.list().await.expect("list"),
        ["a/b", "a/c/d", "b", "with space", "z"]
    );
    // Every listed name reads back.
    for name in s.list().await.expect("list") {
        assert_eq!(s.get(&name).await.expect("get a listed name"), VALUE);
    }
    // Without a prefix the whole mount is listed, folders included.
    let all = provider(&bao, bao.token(), "");
    assert_eq!(
        all.list().await.expect("list the mount"),
        [
            "berth/ci/a/b",
            "berth/ci/a/c/d",
            "berth/ci/b",
            "berth/ci/with space",
            "berth/ci/z",
            "berth/cix",
            "berth/other/x",
            "outside",
        ]
    );
    assert_eq!(all.get("berth/ci/a/c/d").await.expect("get"), VALUE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_removes_every_version_and_missing_secrets_are_not_found() {
    let bao = OpenBao::start().await;
    let s = provider(&bao, bao.token(), PREFIX);
    s.set("github", VALUE).await.expect("set");
    s.set("github", VALUE2).await.expect("overwrite");
    s.set("slack", VALUE).await.expect("set");
    s.delete("github").await.expect("delete");
    let err = s.get("github").await.expect_err("deleted");
    check_error(&err, not_found, &[bao.token(), VALUE, VALUE2]);
    // All versions and the metadata are gone, not just the latest version.
    let (status, body) = raw(&bao, Method::GET, "secret/metadata/berth/ci/github", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(s.list().await.expect("list"), ["slack"]);
    // Deleting again, or deleting what never was, is NotFound.
    let err = s.delete("github").await.expect_err("already deleted");
    check_error(&err, not_found, &[bao.token()]);
    let err = s.delete("never/was").await.expect_err("never written");
    check_error(&err, not_found, &[bao.token()]);
    assert_eq!(s.get("slack").await.expect("untouched"), VALUE);

    // A latest version deleted by someone else (soft delete) reads as
    // NotFound, although Vault still lists the secret.
    let (status, body) = raw(&bao, Method::DELETE, "secret/data/berth/ci/slack", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let err = s.get("slack").await.expect_err("soft-deleted");
    check_error(&err, not_found, &[bao.token(), VALUE]);
    // A secret written without the `value` field is NotFound; a value that
    // is not a string comes back as its JSON text.
    raw(
        &bao,
        Method::POST,
        "secret/data/berth/ci/other-field",
        Some(json!({"data": {"password": "hunter2"}})),
    )
    .await;
    let err = s.get("other-field").await.expect_err("no `value` field");
    check_error(&err, not_found, &[bao.token(), "hunter2"]);
    raw(
        &bao,
        Method::POST,
        "secret/data/berth/ci/number",
        Some(json!({"data": {"value": 42}})),
    )
    .await;
    assert_eq!(s.get("number").await.expect("a number"), "42");
}

/// Names the guest refuses before sending anything.
fn bad_names() -> Vec<String> {
    [
        "",
        "/etc/passwd",
        "trailing/",
        "a//b",
        "..",
        "../escape",
        "a/../../sys",
        "./a",
        "a/.",
        "bell\u{7}",
        "new\nline",
        "nul\0",
        "del\u{7f}",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([format!("long{}", "x".repeat(1024))])
    .collect()
}

async fn check_bad_names_invalid(s: &dyn SecretsProvider, token: &str) {
    for name in bad_names() {
        let shown = name.escape_debug().to_string();
        let err = s.get(&name).await.expect_err(&shown);
        check_error(&err, invalid, &[token]);
        let err = s.set(&name, VALUE).await.expect_err(&shown);
        check_error(&err, invalid, &[token, VALUE]);
        let err = s.delete(&name).await.expect_err(&shown);
        check_error(&err, invalid, &[token]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_are_invalid_before_any_request() {
    let mut bao = OpenBao::start().await;
    let s = provider(&bao, bao.token(), PREFIX);
    check_bad_names_invalid(&*s, bao.token()).await;
    // Nothing reached the mount.
    let (status, body) = raw(&bao, Method::GET, "secret/metadata/?list=true", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // With the server gone they are still Invalid, not Unavailable: the
    // names were refused before any request.
    let token = bao.token().to_owned();
    bao.stop();
    check_bad_names_invalid(&*s, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_denied_and_never_quoted() {
    let bao = OpenBao::start().await;
    let good = provider(&bao, bao.token(), PREFIX);
    good.set("github", VALUE).await.expect("set");
    let wrong = format!("{}-wrong", bao.token());
    let s = provider(&bao, &wrong, PREFIX);
    let secrets = [bao.token(), wrong.as_str(), VALUE, VALUE2];
    let err = s.get("github").await.expect_err("denied");
    check_error(&err, denied, &secrets);
    let err = s.set("github", VALUE2).await.expect_err("denied");
    check_error(&err, denied, &secrets);
    let err = s.set("new", VALUE2).await.expect_err("denied");
    check_error(&err, denied, &secrets);
    let err = s.delete("github").await.expect_err("denied");
    check_error(&err, denied, &secrets);
    let err = s.list().await.expect_err("denied");
    check_error(&err, denied, &secrets);
    // Nothing changed.
    assert_eq!(good.get("github").await.expect("get"), VALUE);
    assert_eq!(good.list().await.expect("list"), ["github"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_unavailable() {
    let mut bao = OpenBao::start().await;
    let s = provider(&bao, bao.token(), PREFIX);
    s.set("github", VALUE).await.expect("set");
    let token = bao.token().to_owned();
    bao.stop();
    let secrets = [token.as_str(), VALUE, VALUE2];
    let err = s.get("github").await.expect_err("no server");
    check_error(&err, unavailable, &secrets);
    let err = s.set("github", VALUE2).await.expect_err("no server");
    check_error(&err, unavailable, &secrets);
    let err = s.delete("github").await.expect_err("no server");
    check_error(&err, unavailable, &secrets);
    let err = s.list().await.expect_err("no server");
    check_error(&err, unavailable, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_server_is_unavailable() {
    let bao = OpenBao::start().await;
    let s = provider(&bao, bao.token(), PREFIX);
    s.set("github", VALUE).await.expect("set");
    let (status, body) = raw(&bao, Method::PUT, "sys/seal", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let secrets = [bao.token(), VALUE, VALUE2];
    let err = s.get("github").await.expect_err("sealed");
    check_error(&err, unavailable, &secrets);
    assert!(err.to_string().contains("status 503"), "{err}");
    let err = s.set("github", VALUE2).await.expect_err("sealed");
    check_error(&err, unavailable, &secrets);
    let err = s.list().await.expect_err("sealed");
    check_error(&err, unavailable, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_reference_names_the_vault_plugin_while_encrypted_stays_the_default() {
    use axum::http::StatusCode as Http;
    use berth_runtime_api::WorkloadName;

    let bao = OpenBao::start().await;
    let entry: PluginConfig = serde_json::from_value(json!({
        "name": "vault", "kind": "secrets-provider", "path": wasm("secrets-vault-kv"),
        "config": {"address": bao.address(), "token": bao.token(), "prefix": "berth/ref"},
        "permissions": {"allow_http": [bao.host_port()], "allow_private": true}
    }))
    .expect("plugin config");
    let h = crate::api::harness_config(|c| c.plugins = vec![entry]).await;
    provider(&bao, bao.token(), "berth/ref")
        .set("gh", VALUE2)
        .await
        .expect("set in OpenBao");
    let r = h.get("/api/v1beta/secrets/default").await;
    assert_eq!(r.json()["provider_type"], "encrypted", "{}", r.text);

    let r = h
        .create(
            json!({"name": "wv", "image": "fake://echo", "transport": "stdio",
            "secrets": [{"name": "vault/gh", "target": "GH_TOKEN"}]}),
        )
        .await;
    assert_eq!(r.status, Http::CREATED, "{}", r.text);
    h.wait_status("wv", "running").await;
    let spec = h
        .fake
        .spec_of(&WorkloadName::parse("wv").expect("name"))
        .expect("spec");
    assert_eq!(spec.secret_env["GH_TOKEN"].expose(), VALUE2);
    let got = h.get("/api/v1beta/workloads/wv").await;
    assert!(!got.text.contains(VALUE2), "{}", got.text);

    let r = h
        .create(
            json!({"name": "wv2", "image": "fake://echo", "transport": "stdio",
            "secrets": [{"name": "vault/missing", "target": "T"}]}),
        )
        .await;
    assert_eq!(r.status, Http::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("vault/missing"), "{}", r.text);
}
