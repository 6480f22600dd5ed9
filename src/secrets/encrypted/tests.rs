use super::*;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

const FAST: StoreOptions = StoreOptions {
    kdf: KdfParams {
        m_cost: 64,
        t_cost: 1,
        p_cost: 1,
    },
};

fn pw(p: &str, dir: &Path) -> PasswordSource {
    PasswordSource {
        password: Some(Zeroizing::new(p.to_owned())),
        key_file: dir.join("unused.key"),
    }
}

fn open(dir: &Path, p: &str) -> Result<EncryptedStore, SecretsError> {
    EncryptedStore::open_with(dir.join("secrets"), pw(p, dir), FAST)
}

#[tokio::test]
async fn round_trip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), "pw").unwrap();
    assert_eq!(s.list().await.unwrap(), Vec::<String>::new());
    s.set("GITHUB_TOKEN", "ghp_abc").await.unwrap();
    s.set("other", "x y z").await.unwrap();
    s.set("other", "replaced").await.unwrap();
    assert_eq!(s.get("GITHUB_TOKEN").await.unwrap(), "ghp_abc");
    assert_eq!(s.get("other").await.unwrap(), "replaced");
    assert_eq!(s.list().await.unwrap(), vec!["GITHUB_TOKEN", "other"]);
    s.delete("other").await.unwrap();
    assert_eq!(
        s.get("other").await.unwrap_err(),
        SecretsError::NotFound("other".into())
    );
    assert_eq!(
        s.delete("other").await.unwrap_err(),
        SecretsError::NotFound("other".into())
    );
    let caps = s.capabilities().await.unwrap();
    assert!(caps.read && caps.write && caps.delete && caps.list);
    drop(s);
    let s = open(dir.path(), "pw").unwrap();
    assert_eq!(s.get("GITHUB_TOKEN").await.unwrap(), "ghp_abc");
    let mode = fs::metadata(dir.path().join("secrets")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn values_never_in_file_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), "pw").unwrap();
    let value = "s3cr3t-VALUE-that-must-not-leak";
    s.set("name", value).await.unwrap();
    let bytes = fs::read(dir.path().join("secrets")).unwrap();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(value.as_bytes()));
    assert!(!contains(hex::encode(value).as_bytes()));
    assert!(!contains(hex::encode_upper(value).as_bytes()));
    // base64 at each of the three alignments, middle part only.
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for skip in 0..3 {
        let chunk = &value.as_bytes()[skip..];
        let mut enc = Vec::new();
        for c in chunk.chunks_exact(3) {
            let n = (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32;
            for i in (0..4).rev() {
                enc.push(B64[((n >> (6 * i)) & 63) as usize]);
            }
        }
        assert!(!contains(&enc[..16]), "base64 form found");
    }
    assert!(!contains(b"secrets"), "plaintext JSON found");
    assert!(contains(MAGIC));
}

#[tokio::test]
async fn wrong_password_denied_file_untouched_then_right_works() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), "right").unwrap();
    s.set("a", "1").await.unwrap();
    drop(s);
    let file = dir.path().join("secrets");
    let before = fs::read(&file).unwrap();
    let err = open(dir.path(), "wrong").unwrap_err();
    assert_eq!(
        err,
        SecretsError::Denied(format!("wrong password for the secrets store {}", file.display()))
    );
    assert_eq!(fs::read(&file).unwrap(), before);
    let s = open(dir.path(), "right").unwrap();
    assert_eq!(s.get("a").await.unwrap(), "1");
}

async fn corrupt_case(mutate: impl FnOnce(&mut Vec<u8>), expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets");
    let s = open(dir.path(), "pw").unwrap();
    s.set("a", "1").await.unwrap();
    let mut bytes = fs::read(&file).unwrap();
    mutate(&mut bytes);
    fs::write(&file, &bytes).unwrap();
    // A fresh open fails clearly...
    let err = open(dir.path(), "pw").unwrap_err().to_string();
    assert!(err.contains(expect), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    // ...and so do writes and reads through the already-open store.
    let err = s.set("b", "2").await.unwrap_err().to_string();
    assert!(err.contains(expect), "{err}");
    let err = s.get("a").await.unwrap_err().to_string();
    assert!(err.contains(expect), "{err}");
    assert_eq!(fs::read(&file).unwrap(), bytes, "the file was overwritten");
}

#[tokio::test]
async fn truncated_file_is_a_clear_error() {
    corrupt_case(|b| b.truncate(70), "truncated").await;
    corrupt_case(|b| b.truncate(b.len() - 1), "does not authenticate").await;
    corrupt_case(|b| b.truncate(5), "not a berth secrets file").await;
}

#[tokio::test]
async fn flipped_header_byte_is_a_clear_error() {
    // In the salt: the checksum catches it.
    corrupt_case(|b| b[30] ^= 1, "header checksum").await;
    // In the magic.
    corrupt_case(|b| b[0] ^= 1, "bad magic").await;
}

#[tokio::test]
async fn tampered_header_with_fixed_checksum_fails() {
    // Someone rewrites the KDF parameters (or the key check) and fixes the
    // checksum: the derived key no longer matches, the store refuses to
    // open, and the file is left alone. (The header is also the GCM
    // associated data, so no header change can yield a valid decryption.)
    let fix = |b: &mut Vec<u8>| {
        let sum = Sha256::digest(&b[..CHECKSUM_OFFSET]);
        b[CHECKSUM_OFFSET..HEADER_LEN].copy_from_slice(&sum[..CHECKSUM_LEN]);
    };
    corrupt_case(
        |b| {
            b[15] = 2;
            fix(b)
        },
        "wrong password",
    )
    .await;
    corrupt_case(
        |b| {
            b[KCV_OFFSET] ^= 1;
            fix(b)
        },
        "wrong password",
    )
    .await;
    // A flipped nonce byte fails authentication.
    corrupt_case(|b| b[HEADER_LEN] ^= 1, "does not authenticate").await;
}

#[tokio::test]
async fn flipped_ciphertext_byte_is_a_clear_error() {
    corrupt_case(|b| b[BODY_OFFSET + 3] ^= 0x40, "does not authenticate").await;
    corrupt_case(|b| *b.last_mut().unwrap() ^= 1, "does not authenticate").await;
}

#[tokio::test]
async fn newer_format_version_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets");
    let s = open(dir.path(), "pw").unwrap();
    s.set("a", "1").await.unwrap();
    drop(s);
    let mut bytes = fs::read(&file).unwrap();
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    fs::write(&file, &bytes).unwrap();
    let err = open(dir.path(), "pw").unwrap_err();
    assert!(matches!(err, SecretsError::Unavailable(_)));
    assert!(err.to_string().contains("format version 2"), "{err}");
    assert_eq!(fs::read(&file).unwrap(), bytes);
}

#[tokio::test]
async fn invalid_names_and_oversize_values_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), "pw").unwrap();
    let long = "n".repeat(MAX_NAME_LEN + 1);
    for bad in ["", "a/b", "a\0b", "a\nb", "__berth_internal", long.as_str()] {
        let err = s.set(bad, "v").await.unwrap_err();
        assert!(matches!(err, SecretsError::Invalid(_)), "{bad:?}: {err}");
        assert!(!err.to_string().contains("\n"));
    }
    s.set(&"n".repeat(MAX_NAME_LEN), "ok").await.unwrap();
    let big = "v".repeat(MAX_VALUE_LEN + 1);
    let err = s.set("big", &big).await.unwrap_err();
    assert!(matches!(err, SecretsError::Invalid(_)));
    assert!(err.to_string().contains("`big`"), "{err}");
    assert!(!err.to_string().contains("vvvv"));
    s.set("max", &"v".repeat(MAX_VALUE_LEN)).await.unwrap();
    assert!(s.get("__berth_x").await.is_err());
}

#[tokio::test]
async fn key_file_created_0600_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("cfg").join("berth").join("secrets.key");
    let src = PasswordSource {
        password: None,
        key_file: key_file.clone(),
    };
    let path = dir.path().join("data").join("secrets");
    let s = EncryptedStore::open_with(&path, src.clone(), FAST).unwrap();
    s.set("a", "1").await.unwrap();
    drop(s);
    let meta = fs::metadata(&key_file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let parent = fs::metadata(key_file.parent().unwrap()).unwrap();
    assert_eq!(parent.permissions().mode() & 0o777, 0o700);
    let key = fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.trim().len(), 64);
    let s = EncryptedStore::open_with(&path, src.clone(), FAST).unwrap();
    assert_eq!(s.get("a").await.unwrap(), "1");
    assert_eq!(fs::read_to_string(&key_file).unwrap(), key, "key file rewritten");
    drop(s);
    // Key file gone while the store exists: refused, no new key file.
    fs::remove_file(&key_file).unwrap();
    let err = EncryptedStore::open_with(&path, src, FAST).unwrap_err();
    assert!(matches!(err, SecretsError::Denied(_)), "{err}");
    assert!(!key_file.exists());
}

#[tokio::test]
async fn production_params_recorded_in_header() {
    let dir = tempfile::tempdir().unwrap();
    let s = EncryptedStore::open(dir.path().join("secrets"), pw("pw", dir.path())).unwrap();
    assert_eq!(s.kdf_params().unwrap(), KdfParams::PRODUCTION);
    let bytes = fs::read(dir.path().join("secrets")).unwrap();
    assert_eq!(&bytes[0..8], b"BERTHSEC");
    assert_eq!(&bytes[8..10], &1u16.to_le_bytes());
    assert_eq!(bytes[10], KDF_ARGON2ID);
    assert_eq!(&bytes[11..15], &(64 * 1024u32).to_le_bytes());
    assert_eq!(&bytes[15..19], &3u32.to_le_bytes());
    assert_eq!(&bytes[19..23], &1u32.to_le_bytes());
    // A store opened with other options keeps the header's parameters.
    drop(s);
    let s = open(dir.path(), "pw").unwrap();
    s.set("a", "1").await.unwrap();
    assert_eq!(s.kdf_params().unwrap(), KdfParams::PRODUCTION);
}

#[tokio::test]
async fn fresh_nonce_on_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), "pw").unwrap();
    s.set("a", "1").await.unwrap();
    let n1 = fs::read(dir.path().join("secrets")).unwrap()[HEADER_LEN..BODY_OFFSET].to_vec();
    s.set("a", "1").await.unwrap();
    let n2 = fs::read(dir.path().join("secrets")).unwrap()[HEADER_LEN..BODY_OFFSET].to_vec();
    assert_ne!(n1, n2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_concurrent_writes_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(open(dir.path(), "pw").unwrap());
    let b = Arc::new(open(dir.path(), "pw").unwrap());
    let mut tasks = Vec::new();
    for (tag, store) in [("a", a.clone()), ("b", b.clone())] {
        for i in 0..50 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.set(&format!("{tag}{i}"), &format!("v{i}")).await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // Each instance sees the other's writes (cache refreshed on change).
    assert_eq!(a.list().await.unwrap().len(), 100);
    assert_eq!(b.get("a7").await.unwrap(), "v7");
    drop((a, b));
    let s = open(dir.path(), "pw").unwrap();
    let names = s.list().await.unwrap();
    assert_eq!(names.len(), 100);
    for tag in ["a", "b"] {
        for i in 0..50 {
            assert_eq!(s.get(&format!("{tag}{i}")).await.unwrap(), format!("v{i}"));
        }
    }
}

const CRASH_ENV: &str = "BERTH_SECRETS_CRASH_TEST_DIR";

/// Helper for `crash_mid_write_keeps_acknowledged`: writes in a loop and
/// prints each acknowledged name. Does nothing unless run by that test.
#[tokio::test]
#[ignore]
async fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let s = open(&dir, "pw").unwrap();
    let mut out = io::stdout().lock();
    for i in 0.. {
        let name = format!("k{i}");
        s.set(&name, &"x".repeat(4096)).await.unwrap();
        writeln!(out, "ACK {name}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn crash_mid_write_keeps_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // Create the store first so the child only writes.
    drop(open(dir.path(), "pw").unwrap());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "secrets::encrypted::tests::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 40 {
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(name) = line.strip_prefix("ACK ") {
            acked.push(name.to_owned());
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-write most likely
    child.wait().unwrap();
    for line in lines {
        if let Some(name) = line.unwrap().strip_prefix("ACK ") {
            acked.push(name.to_owned());
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = open(dir.path(), "pw").unwrap();
    let names = rt.block_on(s.list()).unwrap();
    for name in &acked {
        assert!(names.contains(name), "acknowledged {name} lost");
    }
    // And the store still takes writes.
    rt.block_on(s.set("after", "1")).unwrap();
}

fn toolhive_file(path: &Path, password: &str, json: &str) {
    let key = Sha256::digest(password.as_bytes());
    let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
    let nonce: [u8; 12] = random_bytes();
    let mut body = json.as_bytes().to_vec();
    cipher
        .encrypt_in_place(Nonce::from_slice(&nonce), b"", &mut body)
        .unwrap();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&body);
    fs::write(path, out).unwrap();
}

#[tokio::test]
async fn toolhive_import() {
    let dir = tempfile::tempdir().unwrap();
    let th = dir.path().join("secrets_encrypted");
    toolhive_file(
        &th,
        "thv-pass",
        r#"{"secrets":{"GITHUB_TOKEN":"ghp_1","db":"pg://x","__thv_registry_token":"t"}}"#,
    );
    let s = open(dir.path(), "pw").unwrap();
    s.set("db", "old").await.unwrap();
    let err = s.import_toolhive(&th, "nope").await.unwrap_err();
    assert!(matches!(err, SecretsError::Denied(_)), "{err}");
    assert_eq!(s.list().await.unwrap(), vec!["db"]);
    assert_eq!(s.import_toolhive(&th, "thv-pass").await.unwrap(), 2);
    assert_eq!(s.get("GITHUB_TOKEN").await.unwrap(), "ghp_1");
    assert_eq!(s.get("db").await.unwrap(), "pg://x");
    assert_eq!(s.list().await.unwrap().len(), 2);
    // An empty ToolHive file means no secrets.
    fs::write(&th, b"").unwrap();
    assert_eq!(s.import_toolhive(&th, "thv-pass").await.unwrap(), 0);
}

#[tokio::test]
async fn debug_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), "hunter2-password").unwrap();
    s.set("name", "the-value-xyz").await.unwrap();
    let d = format!("{s:?} {:?}", pw("hunter2-password", dir.path()));
    assert!(!d.contains("hunter2"), "{d}");
    assert!(!d.contains("the-value-xyz"), "{d}");
    assert!(d.contains("redacted"), "{d}");
}
