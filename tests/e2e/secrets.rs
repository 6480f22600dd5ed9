//! Secrets end to end: a secret set through the API reaches a real server's
//! environment (the fixture answers a SHA-256 of it, never the value), a
//! restart picks up a rotated value, and afterwards no API answer, log
//! line (at debug), state or configuration file (but the encrypted store),
//! process command line, other process environment or `podman inspect`
//! holds the value in any encoding. On the process runtime with the
//! built-in store and through the Vault KV plugin against a real OpenBao;
//! on Docker and Podman with their features.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::serve::{Berth, T, free_port};
use crate::support::eventually;

/// Every form a leaked value could take.
fn encodings(value: &str) -> Vec<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    vec![
        value.to_owned(),
        b64.encode(value),
        b64url.encode(value),
        hex::encode(value),
        hex::encode_upper(value),
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect(),
        serde_json::to_string(value).expect("json"),
    ]
}

fn find_in(haystack: &[u8], value: &str) -> Option<String> {
    let text = String::from_utf8_lossy(haystack);
    encodings(value)
        .into_iter()
        .find(|form| text.contains(form.trim_matches('"')))
}

fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// A fresh value with what JSON, URLs and shells could mangle.
fn fresh_value(tag: &str) -> String {
    let n: u64 = rand::random();
    format!("{tag}-{n:016x}-ünï/+= \"q\"")
}

/// berth with `toml`, logging at debug into `<root>/berth.log`.
async fn start(root: &Path, toml: &str, runtime: Option<&str>) -> Berth {
    let dir = root.join("config/berth");
    std::fs::create_dir_all(&dir).expect("config dir");
    std::fs::write(dir.join("berth.toml"), toml).expect("config");
    Berth::launch_args(
        root,
        free_port(),
        runtime,
        &[],
        &[("RUST_LOG", "debug,hyper=debug,h2=info")],
    )
    .await
}

/// Every API answer of a scenario, kept for the leak search.
struct Api<'a> {
    b: &'a Berth,
    answers: String,
}

impl Api<'_> {
    async fn call(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let (code, text) = self.b.req(method, path, body).await;
        self.answers.push_str(&text);
        self.answers.push('\n');
        (code, text)
    }

    async fn post(&mut self, path: &str, body: Value) -> (u16, String) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&mut self, path: &str) -> (u16, String) {
        self.call(reqwest::Method::GET, path, None).await
    }
}

/// The local test image of the container engines.
#[cfg(any(feature = "docker-tests", feature = "podman-tests"))]
const IMAGE: &str = "localhost/berth-test/echo:latest";

fn cli(engine: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(engine)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("`{engine}` CLI: {e}"));
    assert!(
        out.status.success(),
        "{engine} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn url_of(b: &Berth, name: &str) -> Option<String> {
    let (_, list) = b
        .req(reqwest::Method::GET, "/workloads?all=true", None)
        .await;
    let list: Value = serde_json::from_str(&list).ok()?;
    list["workloads"]
        .as_array()?
        .iter()
        .find(|w| w["name"] == name)
        .and_then(|w| w["url"].as_str().map(str::to_owned))
}

/// What the fixture's `env_sha256` tool answers for `var` in `workload`.
async fn env_hash(b: &Berth, workload: &str, var: &str) -> Result<String, String> {
    let url = url_of(b, workload).await.ok_or("not listed")?;
    let session = crate::support::mcp::Session::open(&url).await?;
    match session
        .tool_text(1, "env_sha256", json!({"name": var}))
        .await?
    {
        (false, text) => Ok(text),
        (true, text) => Err(text),
    }
}

/// Where a scenario runs its servers.
struct Target<'a> {
    /// `process`, `docker` or `podman`.
    runtime: &'a str,
    /// The workload's image (`exec://…` for processes).
    image: String,
    /// Extra configuration (plugins).
    toml: String,
    /// A provider to set up first (`plugin:vault`), or the built-in store.
    provider: Option<&'a str>,
}

async fn scenario(t: Target<'_>) {
    let root = tempfile::tempdir().expect("tempdir");
    let toml = if t.runtime == "process" {
        t.toml.clone()
    } else {
        format!("runtime = \"{}\"\n{}", t.runtime, t.toml)
    };
    let runtime = (t.runtime == "process").then_some("process");
    let mut b = start(root.path(), &toml, runtime).await;
    let pid = std::process::id();
    let (sec, other) = (format!("sec-{pid}"), format!("other-{pid}"));
    let v1 = fresh_value("s3cr3t-one");
    let v2 = fresh_value("s3cr3t-two");
    let mut api = Api {
        b: &b,
        answers: String::new(),
    };
    if let Some(provider) = t.provider {
        let (code, body) = api
            .post("/secrets", json!({"provider_type": provider}))
            .await;
        assert_eq!(code, 201, "{body}");
    }
    let (code, body) = api
        .post("/secrets/default/keys", json!({"key": "tok", "value": v1}))
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = api.get("/secrets/default/keys").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"tok\""), "{body}");

    let (code, body) = api
        .post(
            "/workloads",
            json!({"name": sec, "image": t.image, "env_vars": {"PLAIN": "plain",
                "SECRET_TOKEN": "the plain value loses"},
                "secrets": [{"name": "tok", "target": "SECRET_TOKEN"}]}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = api
        .post("/workloads", json!({"name": other, "image": t.image}))
        .await;
    assert_eq!(code, 201, "{body}");
    b.wait_status(&sec, "running").await;
    b.wait_status(&other, "running").await;
    let got = eventually(T, "the server's answer", || async {
        env_hash(&b, &sec, "SECRET_TOKEN").await.ok()
    })
    .await;
    assert_eq!(got, sha256_hex(&v1), "the server sees the secret");
    assert_eq!(
        env_hash(&b, &sec, "PLAIN").await.as_deref(),
        Ok(sha256_hex("plain").as_str())
    );
    assert_eq!(
        env_hash(&b, &other, "SECRET_TOKEN").await.as_deref(),
        Ok("unset"),
        "another workload's environment"
    );

    // Rotation: a restart picks up the new value.
    let (code, body) = api
        .call(
            reqwest::Method::PUT,
            "/secrets/default/keys/tok",
            Some(json!({"value": v2})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = api
        .post(&format!("/workloads/{sec}/restart"), json!({}))
        .await;
    assert_eq!(code, 202, "{body}");
    let want = sha256_hex(&v2);
    eventually(Duration::from_secs(90), "the rotated secret", || async {
        (env_hash(&b, &sec, "SECRET_TOKEN").await.ok()? == want).then_some(())
    })
    .await;

    for path in [
        format!("/workloads/{sec}"),
        format!("/workloads/{sec}/export"),
        format!("/workloads/{sec}/status"),
        format!("/workloads/{sec}/logs"),
        format!("/workloads/{sec}/proxy-logs"),
        "/workloads?all=true".to_owned(),
        "/secrets/default".to_owned(),
        "/secrets/default/keys".to_owned(),
    ] {
        let (code, body) = api.get(&path).await;
        assert!(code == 200 || code == 404, "{path}: {code} {body}");
    }
    let (_, export) = api.get(&format!("/workloads/{sec}/export")).await;
    assert!(
        export.contains("tok,target=SECRET_TOKEN"),
        "the export keeps the reference: {export}"
    );

    // The leak search.
    let store = b.state().join("secrets.berthsec");
    for v in [&v1, &v2] {
        if let Some(form) = find_in(api.answers.as_bytes(), v) {
            panic!("an API answer holds the secret ({form})");
        }
        let log = std::fs::read(root.path().join("berth.log")).expect("log");
        assert!(
            String::from_utf8_lossy(&log).contains("DEBUG"),
            "the log is at debug level"
        );
        if let Some(form) = find_in(&log, v) {
            let form = form.trim_matches('"').to_owned();
            let line = String::from_utf8_lossy(&log)
                .lines()
                .find(|l| l.contains(&form))
                .map(|l| l.replace(&form, "<SECRET>"))
                .unwrap_or_default();
            panic!("berth's log holds the secret: {line}");
        }
        for dir in [root.path().join("state"), root.path().join("config")] {
            search_files(&dir, &store, v);
        }
        search_proc(v, &v2);
    }
    if t.runtime == "podman" {
        let inspect = cli("podman", &["inspect", &format!("berth-{sec}")]);
        for v in [&v1, &v2] {
            assert!(
                find_in(inspect.as_bytes(), v).is_none(),
                "podman inspect shows the secret"
            );
        }
    }

    // A secret deleted later: the next start is an error naming it.
    let (code, _) = api
        .call(reqwest::Method::DELETE, "/secrets/default/keys/tok", None)
        .await;
    assert_eq!(code, 204);
    let (code, _) = api
        .post(&format!("/workloads/{sec}/restart"), json!({}))
        .await;
    assert_eq!(code, 202);
    b.wait_status(&sec, "error").await;
    let (_, status) = api.get(&format!("/workloads/{sec}/status")).await;
    let (_, list) = api.get("/workloads?all=true").await;
    assert!(
        status.contains("tok") || list.contains("secret `tok`"),
        "the reason names the secret: {status} {list}"
    );
    for name in [&sec, &other] {
        let (code, body) = api
            .call(reqwest::Method::DELETE, &format!("/workloads/{name}"), None)
            .await;
        assert_eq!(code, 202, "{body}");
    }
    eventually(T, "the workloads to be gone", || async {
        let (_, list) = b
            .req(reqwest::Method::GET, "/workloads?all=true", None)
            .await;
        (!list.contains(&sec) && !list.contains(&other)).then_some(())
    })
    .await;
    b.signal("-TERM");
    let _ = b.child.wait();
}

/// No file under `dir` but `store` holds `value`.
fn search_files(dir: &Path, store: &Path, value: &str) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && path != store {
                let bytes = std::fs::read(&path).expect("read");
                if let Some(form) = find_in(&bytes, value) {
                    panic!("{} holds the secret ({form})", path.display());
                }
            }
        }
    }
}

/// No process command line holds `value`; a process environment holds it
/// only as the server's own `SECRET_TOKEN` (and only the current value).
fn search_proc(value: &str, current: &str) {
    let allowed = format!("SECRET_TOKEN={current}");
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let path = entry.expect("entry").path();
        let is_pid = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(path.join("cmdline"))
            && let Some(form) = find_in(&cmdline, value)
        {
            panic!("{}/cmdline holds the secret ({form})", path.display());
        }
        let Ok(environ) = std::fs::read(path.join("environ")) else {
            continue;
        };
        for var in environ.split(|b| *b == 0) {
            if var == allowed.as_bytes() {
                continue;
            }
            if let Some(form) = find_in(var, value) {
                let name =
                    String::from_utf8_lossy(var.split(|b| *b == b'=').next().unwrap_or_default())
                        .into_owned();
                panic!(
                    "{}/environ holds the secret in {name} ({form})",
                    path.display()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_workloads_get_secrets_from_the_encrypted_store_and_leak_none() {
    scenario(Target {
        runtime: "process",
        image: crate::proxy::mcp_echo(),
        toml: String::new(),
        provider: None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_through_the_vault_kv_plugin_against_a_real_openbao() {
    let bao = crate::support::openbao::OpenBao::start().await;
    let toml = format!(
        "[[plugins]]\nname = \"vault\"\nkind = \"secrets-provider\"\npath = \"{}\"\n\
         config = {{ address = \"{}\", token = \"{}\", prefix = \"berth-e2e\" }}\n\n\
         [plugins.permissions]\nallow_http = [\"{}\"]\nallow_private = true\n",
        crate::plugins::toml_path(crate::support::plugins::wasm("secrets-vault-kv")),
        bao.address(),
        bao.token(),
        bao.host_port(),
    );
    scenario(Target {
        runtime: "process",
        image: crate::proxy::mcp_echo(),
        toml,
        provider: Some("plugin:vault"),
    })
    .await;
}

#[cfg(feature = "docker-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_workloads_get_secrets() {
    cli("docker", &["image", "inspect", IMAGE]);
    scenario(Target {
        runtime: "docker",
        image: IMAGE.to_owned(),
        toml: String::new(),
        provider: None,
    })
    .await;
}

#[cfg(feature = "podman-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_workloads_get_secrets_that_podman_inspect_never_shows() {
    cli("podman", &["image", "inspect", IMAGE]);
    scenario(Target {
        runtime: "podman",
        image: IMAGE.to_owned(),
        toml: String::new(),
        provider: None,
    })
    .await;
}

/// How many lines of berth's log say it created the key file.
fn key_file_notices(root: &Path) -> usize {
    let log = std::fs::read_to_string(root.join("berth.log")).expect("log");
    log.lines()
        .filter(|l| l.contains("INFO") && l.contains("Created a key file"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_100_concurrent_writes_keeps_every_acknowledged_secret() {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Mutex};

    let root = tempfile::tempdir().expect("tempdir");
    let mut b = start(root.path(), "", Some("process")).await;
    // No password source on a headless machine: berth made a key file and
    // said where, once, at INFO.
    let key_file = root.path().join("config/berth/secrets.key");
    let mode = std::fs::metadata(&key_file)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(key_file_notices(root.path()), 1);
    let log = std::fs::read_to_string(root.path().join("berth.log")).expect("log");
    assert!(log.contains(&key_file.display().to_string()), "says where");

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (client, acked) = (client.clone(), acked.clone());
        let url = format!("{}/api/v1beta/secrets/default/keys", b.base);
        tasks.push(tokio::spawn(async move {
            let key = format!("k{i:03}");
            let r = client
                .post(url)
                .json(&json!({"key": key, "value": format!("value-{i}")}))
                .send()
                .await;
            if r.is_ok_and(|r| r.status() == 201) {
                acked.lock().expect("lock").push(key);
            }
        }));
    }
    eventually(T, "some writes to be acknowledged", || async {
        (acked.lock().expect("lock").len() >= 20).then_some(())
    })
    .await;
    b.signal("-KILL");
    let _ = b.child.wait();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() < 100, "the kill came during the writes");

    let b = Berth::launch_args(root.path(), free_port(), Some("process"), &[], &[]).await;
    let (code, body) = b
        .req(reqwest::Method::GET, "/secrets/default/keys", None)
        .await;
    assert_eq!(code, 200, "the store opens: {body}");
    let keys: Value = serde_json::from_str(&body).expect("json");
    let listed: Vec<&str> = keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["key"].as_str().expect("key"))
        .collect();
    for key in &acked {
        assert!(
            listed.contains(&key.as_str()),
            "{key} was acknowledged but is gone"
        );
    }
    // The same key file, and no second notice.
    assert_eq!(key_file_notices(root.path()), 1);
}

/// A store in ToolHive's format: nonce ‖ AES-256-GCM(key = SHA-256 of the
/// password, no associated data) of `{"secrets": …}` ‖ tag.
fn toolhive_store(password: &str, secrets: &Value) -> Vec<u8> {
    use aes_gcm::aead::{Aead, KeyInit};
    let key = Sha256::digest(password.as_bytes());
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&key).expect("key");
    let nonce: [u8; 12] = rand::random();
    let plain = serde_json::to_vec(&json!({ "secrets": secrets })).expect("json");
    let mut out = nonce.to_vec();
    out.extend(
        cipher
            .encrypt(aes_gcm::Nonce::from_slice(&nonce), plain.as_slice())
            .expect("encrypt"),
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toolhive_store_is_imported_with_its_password() {
    use std::io::Write as _;
    use std::process::Stdio;

    let root = tempfile::tempdir().expect("tempdir");
    let file = root.path().join("secrets_encrypted");
    std::fs::write(
        &file,
        toolhive_store(
            "thv password",
            &json!({"github": "gh-imported-s3cr3t", "__thv_registry_x": "internal"}),
        ),
    )
    .expect("write");
    let import = |password: &str| {
        let mut child = crate::serve::berth_cmd(root.path())
            .args(["import-toolhive-secrets", file.to_str().expect("utf-8")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write");
        child.wait_with_output().expect("wait")
    };
    let out = import("a wrong password");
    assert!(!out.status.success(), "a wrong password is refused");
    let out = import("thv password");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("Imported 1 secret"), "{said}");

    let b = Berth::launch_args(root.path(), free_port(), Some("process"), &[], &[]).await;
    let (code, body) = b
        .req(reqwest::Method::GET, "/secrets/default/keys", None)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        json!({"keys": [{"key": "github"}]}),
        "ToolHive's own secrets stay behind"
    );
}
