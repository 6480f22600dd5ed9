//! Tests of the `encrypted` provider. All but one use tiny Argon2
//! parameters ([`FAST`]) so that each unlock takes microseconds.

use super::format::*;
use super::*;
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::io::Write;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// Replaces `file` by rename, as another program saving it would.
fn replace(file: &Path, bytes: &[u8]) {
    let tmp = file.with_extension("tampered");
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, file).unwrap();
}

/// Recomputes the header checksum after a deliberate header change.
fn fix_checksum(b: &mut [u8]) {
    let sum = Sha256::digest(&b[..CHECKSUM_OFFSET]);
    b[CHECKSUM_OFFSET..HEADER_LEN].copy_from_slice(&sum[..CHECKSUM_LEN]);
}

#[tokio::test]
async fn round_trip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), "pw").unwrap();
    assert_eq!(s.list().await.unwrap(), Vec::<String>::new());
    s.set("other", "x y z").await.unwrap();
    s.set("GITHUB_TOKEN", "ghp_abc").await.unwrap();
    s.set("other", "replaced").await.unwrap();
    s.set("a b.c-d:é", "").await.unwrap();
    assert_eq!(s.get("GITHUB_TOKEN").await.unwrap(), "ghp_abc");
    assert_eq!(s.get("other").await.unwrap(), "replaced");
    assert_eq!(s.get("a b.c-d:é").await.unwrap(), "");
    // Sorted.
    assert_eq!(
        s.list().await.unwrap(),
        vec!["GITHUB_TOKEN", "a b.c-d:é", "other"]
    );
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
    let mode = fs::metadata(dir.path().join("secrets"))
        .unwrap()
        .permissions()
        .mode();
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
        SecretsError::Denied(format!(
            "wrong password for the secrets store {}",
            file.display()
        ))
    );
    assert_eq!(fs::read(&file).unwrap(), before);
    // A retry with the right password works.
    let s = open(dir.path(), "right").unwrap();
    assert_eq!(s.get("a").await.unwrap(), "1");
    assert_eq!(fs::read(&file).unwrap(), before, "opening rewrote the file");
}

#[tokio::test]
async fn empty_password_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = open(dir.path(), "").unwrap_err();
    assert!(matches!(err, SecretsError::Invalid(_)), "{err}");
    assert!(!dir.path().join("secrets").exists());
}

/// Damages a store with `mutate` and checks that opening it, and reading
/// and writing through an instance opened before, fail with an error of
/// `kind` containing `expect` and the path, and leave the file alone.
async fn corrupt_case(
    mutate: impl FnOnce(&mut Vec<u8>),
    kind: fn(&SecretsError) -> bool,
    expect: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets");
    let s = open(dir.path(), "pw").unwrap();
    s.set("a", "the-value").await.unwrap();
    let mut bytes = fs::read(&file).unwrap();
    mutate(&mut bytes);
    replace(&file, &bytes);
    let path = file.display().to_string();
    let check = |err: SecretsError| {
        assert!(kind(&err), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(expect), "{text}");
        assert!(text.contains(&path), "{text}");
        assert!(!text.contains("the-value"), "{text}");
    };
    // A fresh open fails clearly...
    check(open(dir.path(), "pw").unwrap_err());
    // ...and so do writes and reads through the already-open store.
    check(s.set("b", "2").await.unwrap_err());
    check(s.get("a").await.unwrap_err());
    check(s.list().await.unwrap_err());
    assert_eq!(fs::read(&file).unwrap(), bytes, "the file was overwritten");
}

fn unavailable(e: &SecretsError) -> bool {
    matches!(e, SecretsError::Unavailable(_))
}

fn denied(e: &SecretsError) -> bool {
    matches!(e, SecretsError::Denied(_))
}

#[tokio::test]
async fn truncated_file_is_a_clear_error() {
    corrupt_case(|b| b.truncate(70), unavailable, "truncated").await;
    corrupt_case(|b| b.truncate(MIN_FILE_LEN - 1), unavailable, "truncated").await;
    corrupt_case(
        |b| b.truncate(b.len() - 1),
        unavailable,
        "does not authenticate",
    )
    .await;
    corrupt_case(|b| b.truncate(9), unavailable, "truncated").await;
    corrupt_case(|b| b.truncate(5), unavailable, "not a berth secrets file").await;
}

#[tokio::test]
async fn corrupt_header_is_a_clear_error() {
    // In the salt: the checksum catches it.
    corrupt_case(|b| b[30] ^= 1, unavailable, "header checksum").await;
    // In the KDF parameters.
    corrupt_case(|b| b[12] ^= 1, unavailable, "header checksum").await;
    // In the magic.
    corrupt_case(|b| b[0] ^= 1, unavailable, "bad magic").await;
    // An unknown KDF.
    corrupt_case(
        |b| {
            b[10] = 9;
            fix_checksum(b)
        },
        unavailable,
        "unknown KDF id 9",
    )
    .await;
    // Not a berth file at all.
    corrupt_case(
        |b| *b = b"{\"secrets\":{}}".repeat(8),
        unavailable,
        "bad magic",
    )
    .await;
}

#[tokio::test]
async fn tampered_header_with_fixed_checksum_fails() {
    // Someone rewrites the KDF parameters (or the key check) and fixes the
    // checksum: the derived key no longer matches, the store refuses to
    // open, and the file is left alone. (The header is also the GCM
    // associated data, so no header change can yield a valid decryption.)
    corrupt_case(
        |b| {
            b[15] = 2;
            fix_checksum(b)
        },
        denied,
        "wrong password",
    )
    .await;
    corrupt_case(
        |b| {
            b[KCV_OFFSET] ^= 1;
            fix_checksum(b)
        },
        denied,
        "wrong password",
    )
    .await;
    // A flipped nonce byte fails authentication.
    corrupt_case(|b| b[HEADER_LEN] ^= 1, unavailable, "does not authenticate").await;
}

#[tokio::test]
async fn bad_ciphertext_is_a_clear_error() {
    corrupt_case(
        |b| b[BODY_OFFSET + 3] ^= 0x40,
        unavailable,
        "does not authenticate",
    )
    .await;
    corrupt_case(
        |b| *b.last_mut().unwrap() ^= 1,
        unavailable,
        "does not authenticate",
    )
    .await;
    corrupt_case(
        |b| b.extend_from_slice(b"trailing"),
        unavailable,
        "does not authenticate",
    )
    .await;
}

#[tokio::test]
async fn hostile_kdf_params_refused_without_deriving() {
    for (m, t, p) in [
        (u32::MAX, 1, 1),
        (MAX_M_COST + 1, 1, 1),
        (MAX_M_COST, MAX_T_COST, 1),
        (64, u32::MAX, 1),
        (64, 1, u32::MAX),
        (0, 1, 1),
    ] {
        let start = Instant::now();
        corrupt_case(
            |b| {
                b[11..15].copy_from_slice(&m.to_le_bytes());
                b[15..19].copy_from_slice(&t.to_le_bytes());
                b[19..23].copy_from_slice(&p.to_le_bytes());
                fix_checksum(b)
            },
            unavailable,
            "Argon2 parameters",
        )
        .await;
        // Refused before any derivation (which would take seconds, or
        // allocate gigabytes).
        assert!(start.elapsed() < Duration::from_secs(2), "{m} {t} {p}");
    }
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
    s.set("keep", "1").await.unwrap();
    let before = fs::read(dir.path().join("secrets")).unwrap();
    let long = "n".repeat(MAX_NAME_LEN + 1);
    for bad in [
        "",
        "a/b",
        "/",
        "a\0b",
        "a\nb",
        "tab\there",
        "del\u{7f}",
        "c1\u{85}",
        "__berth_internal",
        "__berth_",
        long.as_str(),
    ] {
        for err in [
            s.set(bad, "v").await.unwrap_err(),
            s.get(bad).await.unwrap_err(),
            s.delete(bad).await.unwrap_err(),
        ] {
            assert!(matches!(err, SecretsError::Invalid(_)), "{bad:?}: {err}");
            assert!(!err.to_string().contains('\n'), "{err}");
            assert!(!err.to_string().contains('\0'), "{err}");
        }
    }
    assert_eq!(fs::read(dir.path().join("secrets")).unwrap(), before);
    s.set(&"n".repeat(MAX_NAME_LEN), "ok").await.unwrap();
    let big = "v".repeat(MAX_VALUE_LEN + 1);
    let err = s.set("big", &big).await.unwrap_err();
    assert!(matches!(err, SecretsError::Invalid(_)));
    assert!(err.to_string().contains("`big`"), "{err}");
    assert!(!err.to_string().contains("vvvv"));
    s.set("max", &"v".repeat(MAX_VALUE_LEN)).await.unwrap();
    assert_eq!(s.get("max").await.unwrap().len(), MAX_VALUE_LEN);
}

#[tokio::test]
async fn system_secrets_are_apart_from_the_users() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), "pw").unwrap();
    s.set("user", "u").await.unwrap();
    s.set_system("__berth_registry_b", "tok-b").await.unwrap();
    s.set_system("__berth_registry_a", "tok-a").await.unwrap();
    assert_eq!(s.get_system("__berth_registry_a").await.unwrap(), "tok-a");
    // The user's view neither lists nor reaches them.
    assert_eq!(s.list().await.unwrap(), vec!["user"]);
    assert_eq!(
        s.list_system().await.unwrap(),
        vec!["__berth_registry_a", "__berth_registry_b"]
    );
    for err in [
        s.get("__berth_registry_a").await.unwrap_err(),
        s.set("__berth_registry_a", "x").await.unwrap_err(),
        s.delete("__berth_registry_a").await.unwrap_err(),
    ] {
        assert!(matches!(err, SecretsError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("reserved"), "{err}");
    }
    // The system view takes only reserved names, with the same rules.
    let long = format!("__berth_{}", "x".repeat(MAX_NAME_LEN));
    for bad in [
        "user",
        "",
        "__berth_",
        "__berth_a/b",
        "__berth_a\0",
        long.as_str(),
    ] {
        for err in [
            s.get_system(bad).await.unwrap_err(),
            s.set_system(bad, "v").await.unwrap_err(),
            s.delete_system(bad).await.unwrap_err(),
        ] {
            assert!(matches!(err, SecretsError::Invalid(_)), "{bad:?}: {err}");
        }
    }
    let err = s
        .set_system("__berth_big", &"v".repeat(MAX_VALUE_LEN + 1))
        .await
        .unwrap_err();
    assert!(matches!(err, SecretsError::Invalid(_)), "{err}");
    s.delete_system("__berth_registry_b").await.unwrap();
    assert_eq!(
        s.delete_system("__berth_registry_b").await.unwrap_err(),
        SecretsError::NotFound("__berth_registry_b".into())
    );
    assert_eq!(
        s.get_system("__berth_registry_b").await.unwrap_err(),
        SecretsError::NotFound("__berth_registry_b".into())
    );
    // Both kinds survive a reopen.
    drop(s);
    let s = open(dir.path(), "pw").unwrap();
    assert_eq!(s.get("user").await.unwrap(), "u");
    assert_eq!(s.get_system("__berth_registry_a").await.unwrap(), "tok-a");
    assert_eq!(s.list().await.unwrap(), vec!["user"]);
}

#[test]
fn default_key_file_from_the_variables_main_passes() {
    let os = |s: &'static str| Some(OsStr::new(s));
    assert_eq!(
        PasswordSource::default_key_file(os("/x/cfg"), os("/home/u")),
        Some(PathBuf::from("/x/cfg/berth/secrets.key"))
    );
    assert_eq!(
        PasswordSource::default_key_file(None, os("/home/u")),
        Some(PathBuf::from("/home/u/.config/berth/secrets.key"))
    );
    // Empty or relative values are ignored, as the XDG spec says.
    assert_eq!(
        PasswordSource::default_key_file(os(""), os("/home/u")),
        Some(PathBuf::from("/home/u/.config/berth/secrets.key"))
    );
    assert_eq!(
        PasswordSource::default_key_file(os("rel"), os("/home/u")),
        Some(PathBuf::from("/home/u/.config/berth/secrets.key"))
    );
    assert_eq!(PasswordSource::default_key_file(None, os("")), None);
    assert_eq!(PasswordSource::default_key_file(None, None), None);
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
    assert_eq!(
        fs::read_to_string(&key_file).unwrap(),
        key,
        "key file rewritten"
    );
    drop(s);
    // A password, when given, wins over the key file: here it is wrong.
    let with_pw = PasswordSource {
        password: Some(Zeroizing::new("other".into())),
        key_file: key_file.clone(),
    };
    let err = EncryptedStore::open_with(&path, with_pw, FAST).unwrap_err();
    assert!(matches!(err, SecretsError::Denied(_)), "{err}");
    // Key file gone while the store exists: refused, naming both, and no
    // new key file (it would not decrypt the store).
    let before = fs::read(&path).unwrap();
    fs::remove_file(&key_file).unwrap();
    let err = EncryptedStore::open_with(&path, src, FAST).unwrap_err();
    assert!(matches!(err, SecretsError::Denied(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains(&key_file.display().to_string()), "{text}");
    assert!(text.contains("BERTH_SECRETS_PASSWORD"), "{text}");
    assert!(!key_file.exists());
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn key_file_in_existing_directory_and_empty_store() {
    // An empty store file counts as new: a key file is created for it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets");
    fs::write(&path, b"").unwrap();
    let key_file = dir.path().join("k");
    let src = PasswordSource {
        password: None,
        key_file: key_file.clone(),
    };
    let s = EncryptedStore::open_with(&path, src, FAST).unwrap();
    assert!(key_file.exists());
    assert_eq!(s.list().await.unwrap(), Vec::<String>::new());
    assert!(
        fs::metadata(&path).unwrap().len() > 0,
        "the salt is fixed on open"
    );
    // No stray temporary files.
    let mut names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["k", "secrets", "secrets.lock"]);
}

#[tokio::test]
async fn production_params_recorded_in_header() {
    let dir = tempfile::tempdir().unwrap();
    let s = EncryptedStore::open(dir.path().join("secrets"), pw("pw", dir.path())).unwrap();
    assert_eq!(s.kdf_params().unwrap(), KdfParams::PRODUCTION);
    let p = KdfParams::PRODUCTION;
    assert!(p.argon2().is_ok(), "PRODUCTION within the accepted range");
    let bytes = fs::read(dir.path().join("secrets")).unwrap();
    assert_eq!(&bytes[0..8], b"BERTHSEC");
    assert_eq!(&bytes[8..10], &1u16.to_le_bytes());
    assert_eq!(bytes[10], KDF_ARGON2ID);
    assert_eq!(&bytes[11..15], &p.m_cost.to_le_bytes());
    assert_eq!(&bytes[15..19], &p.t_cost.to_le_bytes());
    assert_eq!(&bytes[19..23], &p.p_cost.to_le_bytes());
    s.set("a", "0").await.unwrap();
    // The wrong password is refused with the production parameters too.
    drop(s);
    let err = EncryptedStore::open(dir.path().join("secrets"), pw("nope", dir.path())).unwrap_err();
    assert!(matches!(err, SecretsError::Denied(_)), "{err}");
    // A store opened with other options keeps the header's parameters.
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
const CRASH_TASKS: usize = 100;
const CRASH_KILL_AFTER: usize = 50;

/// The child of `crash_mid_write_keeps_acknowledged`: 100 concurrent `set`s,
/// printing each name once its `set` has returned. Run by the test above
/// (which names it with `--exact` and sets [`CRASH_ENV`]); on its own it
/// does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    // Test-only: the parent test passes the store's directory to this
    // re-executed test binary through the environment (libtest has no other
    // way to hand it arguments).
    #[allow(
        clippy::disallowed_methods,
        reason = "a child test process receives its directory from the parent test"
    )]
    let dir = std::env::var_os(CRASH_ENV);
    let Some(dir) = dir else {
        return;
    };
    let s = Arc::new(open(Path::new(&dir), "pw").unwrap());
    let tasks: Vec<_> = (0..CRASH_TASKS)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let name = format!("k{i}");
                s.set(&name, &format!("{i}-{}", "x".repeat(2048)))
                    .await
                    .unwrap();
                let mut out = io::stdout().lock();
                writeln!(out, "ACK {name}").unwrap();
                out.flush().unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Crash safety: a process killed (SIGKILL) in the middle of a stream of
/// writes loses none that it acknowledged, and leaves a store that opens.
#[test]
fn crash_mid_write_keeps_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // Create the store first so the child only writes.
    drop(open(dir.path(), "pw").unwrap());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "secrets::encrypted::tests::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_ENV, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(name) = line.strip_prefix("ACK ") {
                let _ = tx.send(name.to_owned());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acked = Vec::new();
    while acked.len() < CRASH_KILL_AFTER {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(name) => acked.push(name),
            Err(e) => {
                let _ = child.kill();
                panic!("the child stopped after {} acks: {e}", acked.len());
            }
        }
    }
    child.kill().unwrap(); // SIGKILL, most likely in the middle of a write
    let status = child.wait().unwrap();
    reader.join().unwrap();
    // Acks printed before the kill landed count too.
    acked.extend(rx.try_iter());
    assert!(
        acked.len() < CRASH_TASKS,
        "the child finished before it was killed ({status})"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = open(dir.path(), "pw").unwrap();
    let names = rt.block_on(s.list()).unwrap();
    for name in &acked {
        assert!(names.contains(name), "acknowledged {name} lost");
        let i: usize = name[1..].parse().unwrap();
        let v = rt.block_on(s.get(name)).unwrap();
        assert!(v.starts_with(&format!("{i}-")), "{name}");
    }
    // And the store still takes writes.
    rt.block_on(s.set("after", "1")).unwrap();
    drop(s);
    let s = open(dir.path(), "pw").unwrap();
    assert_eq!(rt.block_on(s.get("after")).unwrap(), "1");
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
        r#"{"secrets":{"GITHUB_TOKEN":"ghp_1","db":"pg://x","with space":"v w",
            "__thv_registry_REGISTRY_OAUTH_0a1b2c3d":"t","__thv_workloads_BEARER":"b"}}"#,
    );
    let s = open(dir.path(), "pw").unwrap();
    s.set("db", "old").await.unwrap();
    let store_file = dir.path().join("secrets");
    let before = fs::read(&store_file).unwrap();
    let err = s.import_toolhive(&th, "nope").await.unwrap_err();
    assert!(matches!(err, SecretsError::Denied(_)), "{err}");
    assert!(err.to_string().contains(&th.display().to_string()), "{err}");
    assert_eq!(fs::read(&store_file).unwrap(), before);
    assert_eq!(s.list().await.unwrap(), vec!["db"]);
    // ToolHive's own `__thv_` secrets are skipped; same names are replaced.
    assert_eq!(s.import_toolhive(&th, "thv-pass").await.unwrap(), 3);
    assert_eq!(s.get("GITHUB_TOKEN").await.unwrap(), "ghp_1");
    assert_eq!(s.get("db").await.unwrap(), "pg://x");
    assert_eq!(
        s.list().await.unwrap(),
        vec!["GITHUB_TOKEN", "db", "with space"]
    );
    assert_eq!(s.list_system().await.unwrap(), Vec::<String>::new());
    // A name berth refuses: nothing is imported.
    toolhive_file(&th, "thv-pass", r#"{"secrets":{"ok":"1","a/b":"2"}}"#);
    let err = s.import_toolhive(&th, "thv-pass").await.unwrap_err();
    assert!(matches!(err, SecretsError::Invalid(_)), "{err}");
    assert!(s.get("ok").await.is_err());
    // Truncated, and missing.
    fs::write(&th, b"short").unwrap();
    assert!(s.import_toolhive(&th, "thv-pass").await.is_err());
    assert!(
        s.import_toolhive(&dir.path().join("absent"), "thv-pass")
            .await
            .is_err()
    );
    // An empty ToolHive file means no secrets.
    fs::write(&th, b"").unwrap();
    assert_eq!(s.import_toolhive(&th, "thv-pass").await.unwrap(), 0);
}

#[tokio::test]
async fn debug_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), "hunter2-password").unwrap();
    s.set("name", "the-value-xyz").await.unwrap();
    s.set_system("__berth_tok", "system-value-xyz")
        .await
        .unwrap();
    let d = format!("{s:?} {:?}", pw("hunter2-password", dir.path()));
    assert!(!d.contains("hunter2"), "{d}");
    assert!(!d.contains("the-value-xyz"), "{d}");
    assert!(!d.contains("system-value-xyz"), "{d}");
    assert!(d.contains("redacted"), "{d}");
}

#[tokio::test]
async fn values_never_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), "pw").unwrap();
    let value = "VALUE-never-shown";
    s.set("a", value).await.unwrap();
    let mut errors = vec![
        s.set("bad/name", value).await.unwrap_err(),
        s.set_system("not_reserved", value).await.unwrap_err(),
        s.set("big", &format!("{value}{}", "v".repeat(MAX_VALUE_LEN)))
            .await
            .unwrap_err(),
        open(dir.path(), value).unwrap_err(),
    ];
    // A damaged ciphertext and a damaged plaintext (valid encryption of
    // something that is not the expected JSON).
    let file = dir.path().join("secrets");
    let good = fs::read(&file).unwrap();
    let mut bad = good.clone();
    bad[BODY_OFFSET + 1] ^= 1;
    replace(&file, &bad);
    errors.push(open(dir.path(), "pw").unwrap_err());
    replace(&file, &good);
    {
        let inner = &s.inner;
        let key = inner.key.lock().unwrap().clone().unwrap();
        let header = Header::decode(&good, &file).unwrap();
        let head = header.encode();
        let nonce: [u8; NONCE_LEN] = random_bytes();
        let mut body = format!("{{\"secrets\":{{\"a\":\"{value}\"").into_bytes();
        Aes256Gcm::new_from_slice(&key.key[..])
            .unwrap()
            .encrypt_in_place(Nonce::from_slice(&nonce), &head, &mut body)
            .unwrap();
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&body);
        replace(&file, &bytes);
    }
    let err = open(dir.path(), "pw").unwrap_err();
    assert!(err.to_string().contains("not valid"), "{err}");
    errors.push(err);
    for err in errors {
        assert!(!err.to_string().contains(value), "{err}");
        assert!(!format!("{err:?}").contains(value), "{err:?}");
    }
}
