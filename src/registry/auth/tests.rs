//! Tests of the registry token store: system secrets of the encrypted
//! store, never plaintext, and the move of the plaintext file.

use super::*;
use crate::secrets::encrypted::{KdfParams, StoreOptions};
use crate::secrets::{SecretsConfig, SecretsEnv, SecretsProvider};

/// The secrets service of a berth in `dir` with default provider
/// `provider`, its store unlocked by `password` (cheap key derivation).
pub(super) async fn secrets(dir: &Path, provider: &str, password: &str) -> Arc<Secrets> {
    let config = SecretsConfig {
        provider: provider.into(),
        ..SecretsConfig::default()
    };
    let env = SecretsEnv {
        password: Some(Zeroizing::new(password.into())),
        ..SecretsEnv::default()
    };
    let options = StoreOptions {
        kdf: KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        },
    };
    Secrets::open_with(&config, env, dir, None, options)
        .await
        .expect("secrets")
}

/// An opened token store of a berth in `dir`.
pub(super) async fn opened(dir: &Path, provider: &str) -> TokenStore {
    let store = TokenStore::new(dir, secrets(dir, provider, "pw").await);
    store.ensure().await.expect("opened");
    store
}

fn token(access: &str, refresh: Option<&str>) -> Token {
    Token {
        access_token: access.into(),
        refresh_token: refresh.map(str::to_owned),
        expires_at: None,
        kind: "oauth".into(),
    }
}

/// The files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if std::fs::read(&path)
                .expect("read")
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn tokens_are_system_secrets_of_the_encrypted_store_and_never_printed() {
    let dir = tempfile::tempdir().expect("dir");
    let store = opened(dir.path(), "encrypted").await;
    assert!(store.get("corp").is_none());
    store
        .put(
            "corp",
            Token {
                access_token: "s3cret-access".into(),
                refresh_token: Some("s3cret-refresh".into()),
                expires_at: None,
                kind: "bearer".into(),
            },
        )
        .expect("put");
    let t = store.get("corp").expect("stored");
    assert_eq!(t.access_token, "s3cret-access");
    assert!(!format!("{t:?} {store:?}").contains("s3cret"));
    for needle in ["s3cret-access", "s3cret-refresh"] {
        assert_eq!(files_containing(dir.path(), needle), Vec::<PathBuf>::new());
    }
    assert!(!dir.path().join(LEGACY_FILE).exists());
    let system = store.secrets.system_store().await.expect("system store");
    assert_eq!(
        system.list_system().await.expect("list"),
        ["__berth_registry_corp"]
    );
    assert_eq!(
        system.list().await.expect("user list"),
        Vec::<String>::new()
    );

    // Another berth on the same directory reads it back.
    let again = opened(dir.path(), "encrypted").await;
    assert_eq!(
        again.get("corp").expect("stored").refresh_token.as_deref(),
        Some("s3cret-refresh")
    );

    assert!(store.remove("corp").expect("remove"));
    assert!(store.get("corp").is_none());
    assert!(!store.remove("corp").expect("remove"));
    assert!(system.list_system().await.expect("list").is_empty());
    // A name no registry can have is refused, not stored.
    let err = store.put("a/b", token("x", None)).expect_err("invalid");
    assert!(err.to_string().contains("not a registry name"), "{err}");
}

#[tokio::test]
async fn the_store_is_the_encrypted_one_whatever_the_default_provider() {
    let dir = tempfile::tempdir().expect("dir");
    let secrets = secrets(dir.path(), "environment", "pw").await;
    // Nothing exists yet: startup opens (and creates) nothing.
    let store = TokenStore::new(dir.path(), secrets.clone());
    store.load().await;
    assert!(!secrets.store_path().exists());
    assert!(store.get("corp").is_none());
    assert!(!store.remove("corp").expect("nothing to remove"));
    assert!(store.put("corp", token("at", None)).is_err(), "not open");
    store.ensure().await.expect("opened");
    store.put("corp", token("at-env", None)).expect("put");
    assert!(secrets.store_path().exists());
    let (kind, provider) = secrets.default_provider().await.expect("default");
    assert_eq!(kind.to_string(), "environment");
    assert!(provider.get("__berth_registry_corp").await.is_err());
    let system = secrets.system_store().await.expect("system");
    assert_eq!(system.path(), secrets.store_path());
    assert!(
        system
            .get_system("__berth_registry_corp")
            .await
            .expect("stored")
            .contains("at-env")
    );
}

#[tokio::test]
async fn a_refresh_replaces_only_the_token_it_refreshed() {
    let dir = tempfile::tempdir().expect("dir");
    let store = opened(dir.path(), "encrypted").await;
    let old = token("at-1", Some("rt-1"));
    assert!(
        !store
            .replace("corp", &old, token("at-2", None))
            .expect("replace")
    );
    store.put("corp", old.clone()).expect("put");
    assert!(
        store
            .replace("corp", &old, token("at-2", Some("rt-2")))
            .expect("replace")
    );
    // A second refresh from the same old token (a race) loses.
    assert!(
        !store
            .replace("corp", &old, token("at-3", None))
            .expect("replace")
    );
    assert_eq!(store.get("corp").expect("stored").access_token, "at-2");
    let again = opened(dir.path(), "encrypted").await;
    assert_eq!(again.get("corp").expect("stored").access_token, "at-2");
}

fn write_legacy(dir: &Path, tokens: &[(&str, Token)]) {
    let all: BTreeMap<&str, &Token> = tokens.iter().map(|(n, t)| (*n, t)).collect();
    crate::state::write_atomic(
        &dir.join(LEGACY_FILE),
        &serde_json::to_vec(&all).expect("json"),
    )
    .expect("legacy file");
}

#[tokio::test]
async fn the_plaintext_token_file_is_moved_into_the_store_then_deleted() {
    let dir = tempfile::tempdir().expect("dir");
    let mut bearer = token("legacy-bearer", None);
    bearer.kind = "bearer".into();
    write_legacy(
        dir.path(),
        &[
            ("corp", token("legacy-at", Some("legacy-rt"))),
            ("default", bearer),
            ("Not/A name", token("legacy-stray", None)),
        ],
    );
    let store = TokenStore::new(dir.path(), secrets(dir.path(), "none", "pw").await);
    store.load().await;
    assert!(!dir.path().join(LEGACY_FILE).exists());
    let corp = store.get("corp").expect("moved");
    assert_eq!(
        (corp.access_token.as_str(), corp.refresh_token.as_deref()),
        ("legacy-at", Some("legacy-rt"))
    );
    assert_eq!(store.get("default").expect("moved").kind, "bearer");
    for needle in ["legacy-at", "legacy-rt", "legacy-bearer", "legacy-stray"] {
        assert_eq!(files_containing(dir.path(), needle), Vec::<PathBuf>::new());
    }

    // Idempotent: a file that comes back (an earlier move that could
    // not delete it) is deleted again, and never replaces a token the
    // store has (a newer login).
    store.put("corp", token("newer-at", None)).expect("put");
    write_legacy(
        dir.path(),
        &[
            ("corp", token("legacy-at", Some("legacy-rt"))),
            ("other", token("other-at", None)),
        ],
    );
    let restarted = TokenStore::new(dir.path(), secrets(dir.path(), "none", "pw").await);
    restarted.load().await;
    assert!(!dir.path().join(LEGACY_FILE).exists());
    assert_eq!(
        restarted.get("corp").expect("kept").access_token,
        "newer-at"
    );
    assert_eq!(
        restarted.get("other").expect("moved").access_token,
        "other-at"
    );
    assert_eq!(restarted.get("default").expect("kept").kind, "bearer");
}

#[tokio::test]
async fn a_store_that_cannot_be_opened_leaves_the_file_and_says_why() {
    let dir = tempfile::tempdir().expect("dir");
    // The store exists with another password.
    opened(dir.path(), "encrypted").await;
    write_legacy(dir.path(), &[("corp", token("legacy-at", None))]);
    let store = TokenStore::new(
        dir.path(),
        secrets(dir.path(), "environment", "wrong").await,
    );
    store.load().await;
    assert!(dir.path().join(LEGACY_FILE).exists(), "the file stays");
    assert!(store.get("corp").is_none());
    let err = store.ensure().await.expect_err("wrong password");
    assert!(err.to_string().contains("wrong password"), "{err}");
    assert!(err.to_string().contains("registry tokens"), "{err}");
    let err = store.put("corp", token("x", None)).expect_err("not open");
    assert!(err.to_string().contains("wrong password"), "{err}");
    let err = store.remove("corp").expect_err("unknown");
    assert!(err.to_string().contains("wrong password"), "{err}");
    assert!(store.readable().await.is_err());

    // With the right password the next start moves it.
    let store = TokenStore::new(dir.path(), secrets(dir.path(), "environment", "pw").await);
    store.load().await;
    assert!(!dir.path().join(LEGACY_FILE).exists());
    assert_eq!(store.get("corp").expect("moved").access_token, "legacy-at");
}
