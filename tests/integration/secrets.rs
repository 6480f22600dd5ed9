//! The secrets API (spec 2.3) over the built-in providers, and workloads
//! that reference secrets: shapes, codes, bad input, and no value in any
//! answer or file but the encrypted store.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use berth::secrets::SecretsEnv;
use berth_runtime_api::WorkloadName;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::api::{Harness, harness, harness_config, harness_secrets};

pub(crate) const KEYS: &str = "/api/v1beta/secrets/default/keys";

/// Every form a leaked value could take.
pub(crate) fn encodings(value: &str) -> Vec<String> {
    use base64::Engine as _;
    vec![
        value.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(value),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value),
        hex::encode(value),
        hex::encode_upper(value),
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect(),
    ]
}

/// Fails if any file under `dir` (but `except`) holds `value` in any
/// encoding.
pub(crate) fn assert_no_file_has(dir: &Path, except: &Path, value: &str) {
    let forms = encodings(value);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path == except {
                continue;
            }
            // A temporary file of a write in flight (berth's background
            // tasks keep writing) may be renamed away meanwhile; its
            // content is in the file it became, which the walk reads.
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("read {}: {e}", path.display()),
            };
            let text = String::from_utf8_lossy(&bytes);
            for form in &forms {
                assert!(
                    !text.contains(form.as_str()),
                    "{} holds the secret ({form})",
                    path.display()
                );
            }
        }
    }
}

pub(crate) fn assert_no_value(text: &str, value: &str) {
    for form in encodings(value) {
        assert!(!text.contains(&form), "an answer shows the secret: {text}");
    }
}

pub(crate) async fn put(h: &Harness, key: &str, value: Value) -> crate::api::Resp {
    h.call(Method::PUT, &format!("{KEYS}/{key}"), Some(value))
        .await
}

pub(crate) async fn delete(h: &Harness, key: &str) -> crate::api::Resp {
    h.call(Method::DELETE, &format!("{KEYS}/{key}"), None).await
}

#[tokio::test]
async fn the_encrypted_provider_is_ready_at_first_start() {
    let h = harness().await;
    let r = h.get("/api/v1beta/secrets/default").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"name": "default", "provider_type": "encrypted", "capabilities": {
            "can_read": true, "can_write": true, "can_delete": true, "can_list": true,
            "can_cleanup": true}})
    );
    let store = h.berth.secrets.store_path().to_path_buf();
    let mode = std::fs::metadata(&store)
        .expect("store")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "store mode");
    let key = h.dir.path().join("secrets.key");
    let mode = std::fs::metadata(&key)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode");
    let r = h.get(KEYS).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"keys": []}));
}

#[tokio::test]
async fn keys_are_created_listed_in_order_updated_and_deleted() {
    let h = harness().await;
    let mut answers = String::new();
    for (key, value) in [("zeta", "v-zeta-s3cr3t"), ("alpha", "v-alpha-s3cr3t")] {
        let r = h.post(KEYS, json!({"key": key, "value": value})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(
            r.json(),
            json!({"key": key, "message": "Secret created successfully"})
        );
        answers.push_str(&r.text);
    }
    let r = h
        .post(KEYS, json!({"key": "alpha", "value": "other"}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let r = h.get(KEYS).await;
    assert_eq!(
        r.json(),
        json!({"keys": [{"key": "alpha"}, {"key": "zeta"}]})
    );
    answers.push_str(&r.text);
    let r = put(&h, "alpha", json!({"value": "v-alpha-2-s3cr3t"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"key": "alpha", "message": "Secret updated successfully"})
    );
    answers.push_str(&r.text);
    assert_eq!(
        &*h.berth.secrets.resolve("alpha").await.expect("alpha"),
        "v-alpha-2-s3cr3t"
    );
    let r = put(&h, "missing", json!({"value": "x"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = delete(&h, "zeta").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(r.text.is_empty());
    // Better than ToolHive (500): a missing key is 404.
    let r = delete(&h, "zeta").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = h.get(KEYS).await;
    assert_eq!(r.json(), json!({"keys": [{"key": "alpha"}]}));
    for v in ["v-zeta-s3cr3t", "v-alpha-s3cr3t", "v-alpha-2-s3cr3t"] {
        assert_no_value(&answers, v);
        assert_no_file_has(h.dir.path(), h.berth.secrets.store_path(), v);
    }
}

#[tokio::test]
async fn bad_names_and_values_are_refused() {
    let h = harness().await;
    for body in [
        json!({"key": "", "value": "v"}),
        json!({"key": "k", "value": ""}),
        json!({"key": "k"}),
        json!({"value": "v"}),
    ] {
        let r = h.post(KEYS, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_eq!(r.text, "both 'key' and 'value' are required\n");
    }
    let long = "n".repeat(300);
    for key in [
        "a/b",
        "nul\u{0}name",
        "line\nbreak",
        "tab\there",
        "__berth_registry_token",
        long.as_str(),
    ] {
        let r = h.post(KEYS, json!({"key": key, "value": "v"})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{key:?}: {}", r.text);
        assert!(
            !r.text.contains('\n') || r.text.ends_with('\n') && r.text.lines().count() == 1,
            "one line: {:?}",
            r.text
        );
    }
    // Reserved names cannot be reached through the path either.
    for key in ["__berth_x", "a%2Fb", "%00"] {
        let r = put(&h, key, json!({"value": "v"})).await;
        assert!(
            r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::NOT_FOUND,
            "PUT {key}: {} {}",
            r.status,
            r.text
        );
        let r = delete(&h, key).await;
        assert!(
            r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::NOT_FOUND,
            "DELETE {key}: {} {}",
            r.status,
            r.text
        );
    }
    let r = put(&h, "k", json!({"value": ""})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.text, "value is required\n");
    let r = h.raw(Method::POST, KEYS, Body::from("{not json")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // A value past the API's body limit never reaches the store.
    let big = "x".repeat(berth::api::MAX_BODY_BYTES + 1);
    let r = h.post(KEYS, json!({"key": "big", "value": big})).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(h.get(KEYS).await.json(), json!({"keys": []}));
}

#[tokio::test]
async fn provider_none_answers_404_until_set_up() {
    let h = harness_config(|c| c.secrets.provider = "none".into()).await;
    for (method, uri) in [
        (Method::GET, "/api/v1beta/secrets/default".to_owned()),
        (Method::GET, KEYS.to_owned()),
        (Method::DELETE, format!("{KEYS}/k")),
    ] {
        let r = h.call(method.clone(), &uri, None).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {uri}: {}",
            r.text
        );
        assert!(r.text.contains("not configured"), "{}", r.text);
    }
    let r = h.post(KEYS, json!({"key": "k", "value": "v"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    for (ty, want) in [
        ("", "provider type cannot be empty"),
        ("1password", "valid types"),
        ("vault", "invalid secrets provider type"),
        ("plugin:nothere", "nothere"),
    ] {
        let r = h
            .post("/api/v1beta/secrets", json!({"provider_type": ty}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{ty}: {}", r.text);
        assert!(r.text.contains(want), "{ty}: {}", r.text);
    }
    // Still not set up after the refused attempts.
    let r = h.get("/api/v1beta/secrets/default").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .post("/api/v1beta/secrets", json!({"provider_type": "encrypted"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"provider_type": "encrypted", "message": "Secrets provider setup successfully"})
    );
    let r = h.get("/api/v1beta/secrets/default").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h
        .post(
            "/api/v1beta/secrets",
            json!({"provider_type": "environment"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.json()["message"],
        "Secrets provider reconfigured successfully"
    );
    // The choice is kept for the next start.
    let choice =
        std::fs::read_to_string(h.dir.path().join("secrets-provider.json")).expect("choice file");
    assert!(choice.contains("environment"), "{choice}");
}

#[tokio::test]
async fn the_environment_provider_is_read_only_and_never_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = SecretsEnv {
        variables: vec![
            ("BERTH_SECRET_TOKEN".into(), "env-s3cr3t-value".into()),
            ("HOME".into(), "/root".into()),
        ],
        ..SecretsEnv::default()
    };
    let h = harness_secrets(dir, env, |c| c.secrets.provider = "environment".into()).await;
    let r = h.get("/api/v1beta/secrets/default").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"name": "default", "provider_type": "environment", "capabilities": {
            "can_read": true, "can_write": false, "can_delete": false, "can_list": false,
            "can_cleanup": false}})
    );
    let r = h.get(KEYS).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);
    assert_eq!(r.text, "secrets provider does not support listing keys\n");
    let r = h.post(KEYS, json!({"key": "k", "value": "v"})).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);
    let r = put(&h, "TOKEN", json!({"value": "v"})).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);
    let r = delete(&h, "TOKEN").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);
    assert_eq!(
        &*h.berth.secrets.resolve("TOKEN").await.expect("token"),
        "env-s3cr3t-value"
    );
    assert!(h.berth.secrets.resolve("HOME").await.is_err());
}

#[tokio::test]
async fn a_wrong_password_is_403_and_a_retry_with_the_right_one_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let right = SecretsEnv {
        password: Some(Zeroizing::new("the right password".into())),
        ..SecretsEnv::default()
    };
    {
        let h = harness_secrets(dir, right, |_| {}).await;
        let r = h
            .post(KEYS, json!({"key": "gh", "value": "gh-s3cr3t-value"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        // Keep the directory for the next berth.
        let _ = h.dir.keep();
    }
    let store = path.join("secrets.berthsec");
    let before = std::fs::read(&store).expect("store");
    let wrong = SecretsEnv {
        password: Some(Zeroizing::new("a wrong password".into())),
        ..SecretsEnv::default()
    };
    let h = harness_secrets(tempfile::TempDir::new_in(&path).expect("dir"), wrong, |c| {
        c.secrets.store = Some(store.clone());
    })
    .await;
    // berth serves everything else.
    assert_eq!(h.get("/health").await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.get("/api/v1beta/workloads").await.status, StatusCode::OK);
    for uri in ["/api/v1beta/secrets/default", KEYS] {
        let r = h.get(uri).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}: {}", r.text);
        assert!(r.text.contains("wrong password"), "{}", r.text);
        assert!(
            r.text.contains("secrets.berthsec"),
            "names the file: {}",
            r.text
        );
    }
    let r = h
        .post(
            "/api/v1beta/secrets",
            json!({"provider_type": "encrypted", "password": "still wrong"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(std::fs::read(&store).expect("store"), before, "untouched");
    let r = h
        .post(
            "/api/v1beta/secrets",
            json!({"provider_type": "encrypted", "password": "the right password"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h.get(KEYS).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json(), json!({"keys": [{"key": "gh"}]}));
    std::fs::remove_dir_all(&path).expect("cleanup");
}

#[tokio::test]
async fn a_damaged_store_is_named_and_berth_serves_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("damaged.berthsec");
    std::fs::write(
        &store,
        b"BERTHSEC\x01\x00 this is not a store at all, just bytes long enough to pass",
    )
    .expect("write");
    let before = std::fs::read(&store).expect("read");
    let env = SecretsEnv {
        password: Some(Zeroizing::new("pw".into())),
        ..SecretsEnv::default()
    };
    let h = harness_secrets(dir, env, |c| {
        c.secrets.store = Some(store.clone());
    })
    .await;
    let r = h.get(KEYS).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(r.text.contains("damaged.berthsec"), "{}", r.text);
    assert_eq!(h.get("/api/v1beta/workloads").await.status, StatusCode::OK);
    assert_eq!(std::fs::read(&store).expect("read"), before, "untouched");
    // A newer format version is refused, untouched.
    let mut newer = before.clone();
    newer[8] = 2;
    std::fs::write(&store, &newer).expect("write");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = h.post(KEYS, json!({"key": "k", "value": "v"})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(r.text.contains("version 2"), "{}", r.text);
    assert_eq!(std::fs::read(&store).expect("read"), newer, "untouched");
}

fn echo_with_secret(name: &str, secret: &str, target: &str) -> Value {
    json!({"name": name, "image": "fake://echo", "transport": "stdio", "env_vars": {"PLAIN": "p", target: "plain loses"},
        "secrets": [{"name": secret, "target": target}]})
}

#[tokio::test]
async fn workloads_get_their_secrets_at_each_start_and_show_only_references() {
    let h = harness().await;
    let value = "wl-s3cr3t-v1 with spaces/and+symbols";
    let r = h
        .post(KEYS, json!({"key": "gh-token", "value": value}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // A reference to a missing secret is refused, naming it.
    let r = h.create(echo_with_secret("w0", "nope", "TOKEN")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("nope"), "{}", r.text);
    for (secret, target) in [
        ("a,b", "T"),
        ("gh-token", "A=B"),
        ("gh-token", ""),
        ("", "T"),
        ("__berth_x", "T"),
        ("gh-token", "T\n"),
    ] {
        let r = h.create(echo_with_secret("w0", secret, target)).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{secret:?} {target:?}: {}",
            r.text
        );
    }
    let r = h
        .create(
            json!({"name": "w0", "image": "fake://echo", "transport": "stdio", "secrets": [
            {"name": "gh-token", "target": "T"}, {"name": "gh-token", "target": "T"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    let r = h
        .create(echo_with_secret("w1", "gh-token", "GITHUB_TOKEN"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    h.wait_status("w1", "running").await;
    let name = WorkloadName::parse("w1").expect("name");
    let spec = h.fake.spec_of(&name).expect("spec");
    assert_eq!(spec.secret_env["GITHUB_TOKEN"].expose(), value);
    assert_eq!(spec.env["PLAIN"], "p");
    assert!(!format!("{spec:?}").contains("s3cr3t"), "Debug of the spec");

    let mut answers = String::new();
    for uri in [
        "/api/v1beta/workloads/w1",
        "/api/v1beta/workloads/w1/export",
        "/api/v1beta/workloads/w1/status",
        "/api/v1beta/workloads?all=true",
        "/api/v1beta/workloads/w1/logs",
    ] {
        let r = h.get(uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text);
        answers.push_str(&r.text);
    }
    let got = h.get("/api/v1beta/workloads/w1").await.json();
    assert_eq!(
        got["secrets"],
        json!([{"name": "gh-token", "target": "GITHUB_TOKEN"}])
    );
    let export = h.get("/api/v1beta/workloads/w1/export").await.json();
    assert_eq!(export["secrets"], json!(["gh-token,target=GITHUB_TOKEN"]));
    assert_no_value(&answers, value);

    // A rotated value is picked up by a restart.
    let rotated = "wl-s3cr3t-v2";
    let r = put(&h, "gh-token", json!({"value": rotated})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let deploys = h.fake.deploy_count(&name);
    let r = h.post("/api/v1beta/workloads/w1/restart", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    crate::support::eventually(Duration::from_secs(5), "a new deploy", || async {
        (h.fake.deploy_count(&name) > deploys).then_some(())
    })
    .await;
    h.wait_status("w1", "running").await;
    let spec = h.fake.spec_of(&name).expect("spec");
    assert_eq!(spec.secret_env["GITHUB_TOKEN"].expose(), rotated);

    // An edit that echoes the GET keeps the reference.
    let r = h.post("/api/v1beta/workloads/w1/edit", got.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    h.wait_status("w1", "running").await;

    // A secret deleted later: the next start is an error naming it.
    assert_eq!(delete(&h, "gh-token").await.status, StatusCode::NO_CONTENT);
    let r = h.post("/api/v1beta/workloads/w1/restart", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    h.wait_status("w1", "error").await;
    let status = h.get("/api/v1beta/workloads/w1/status").await.json();
    let context = serde_json::to_string(&status).expect("json");
    let list = h.get("/api/v1beta/workloads?all=true").await.text;
    assert!(
        context.contains("gh-token") || list.contains("gh-token"),
        "the reason names the secret: {context} {list}"
    );
    for v in [value, rotated] {
        assert_no_file_has(h.dir.path(), h.berth.secrets.store_path(), v);
    }
}

#[tokio::test]
async fn a_remote_workload_cannot_take_secrets_as_environment() {
    let h = harness().await;
    h.post(KEYS, json!({"key": "k", "value": "v"})).await;
    let r = h
        .create(json!({"name": "r1", "url": "https://example.com/mcp",
            "secrets": [{"name": "k", "target": "T"}]}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("remote"), "{}", r.text);
}
