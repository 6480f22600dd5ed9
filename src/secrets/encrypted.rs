//! The built-in `encrypted` secrets provider: one file holding every secret,
//! encrypted with AES-256-GCM under a key derived with Argon2id.
//!
//! What it improves over ToolHive's `encrypted` provider (spec 2.2.1): a
//! versioned header with a real KDF (salted Argon2id instead of one unsalted
//! SHA-256), the header authenticated as associated data, the key derived
//! once per unlock (never per request), a password handed down by `main`
//! (`BERTH_SECRETS_PASSWORD`) or a key file (no OS keyring, never a prompt),
//! clear errors for a wrong password, a corrupt file or a newer format, and
//! cross-process safe writes.
//!
//! Names starting with [`RESERVED_PREFIX`] (`__berth_`) are berth's own
//! (e.g. registry OAuth tokens): the [`SecretsProvider`] view refuses them
//! and never lists them; berth reaches them through
//! [`EncryptedStore::get_system`] and its siblings.
//!
//! # File format (version 1)
//!
//! ```text
//! offset  size  field
//!  0       8    magic "BERTHSEC"
//!  8       2    format version, u16 little endian (1)
//! 10       1    KDF id (1 = Argon2id, version 0x13)
//! 11       4    Argon2 m_cost (KiB), u32 LE
//! 15       4    Argon2 t_cost, u32 LE
//! 19       4    Argon2 p_cost, u32 LE
//! 23      16    salt (random, fixed for the life of the file)
//! 39      16    key check: SHA-256("berth-secrets key check v1" ‖ key)[..16]
//! 55       8    header checksum: SHA-256(bytes 0..55)[..8]
//! 63      12    nonce (random, fresh on every write)
//! 75       …    AES-256-GCM ciphertext ‖ 16-byte tag of the JSON
//!               {"secrets": {name: value}}, associated data = bytes 0..63
//! ```
//!
//! The checksum tells a damaged header from a wrong password; the key check
//! tells a wrong password from a damaged ciphertext (it reveals no more than
//! the GCM tag already does: both let one test a password offline). The
//! associated data makes any change to the header fail decryption.
//!
//! # Concurrency
//!
//! Writes take an in-process async mutex and an exclusive `flock` on
//! `<file>.lock` (the blocking system writes take the `flock` only, which
//! excludes every other write too: each opens its own file description),
//! re-read and decrypt the current file (another process may have
//! written), modify, re-encrypt with a fresh nonce and replace the file
//! atomically ([`crate::state::write_atomic`]: temp file, fsync, rename,
//! fsync of the directory, mode 0600). Reads use an in-memory copy, refreshed
//! when the file's stamp (inode, size, mtime, header and nonce) changes.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use nix::fcntl::{Flock, FlockArg};
use zeroize::Zeroizing;

use super::{Capabilities, SecretsError, SecretsProvider};

mod format;
mod key_file;

pub use format::{FORMAT_VERSION, KDF_ARGON2ID, KdfParams, MAGIC};
pub use key_file::PasswordSource;

use format::{
    BODY_OFFSET, DerivedKey, HEADER_LEN, Header, MAX_FILE_LEN, NONCE_LEN, SALT_LEN, SecretMap,
    TAG_LEN, parse_plaintext, random_bytes, read_toolhive, serialize_plaintext,
};
use key_file::read_or_create_key_file;

/// The longest secret name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// The largest secret value, in bytes.
pub const MAX_VALUE_LEN: usize = 1024 * 1024;
/// Names starting with this are berth's own: refused by the user-facing
/// [`SecretsProvider`] view, reached with [`EncryptedStore::get_system`] etc.
pub const RESERVED_PREFIX: &str = "__berth_";

/// Options of [`EncryptedStore::open_with`].
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// KDF parameters for a store created now (an existing store keeps the
    /// ones in its header).
    pub kdf: KdfParams,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            kdf: KdfParams::PRODUCTION,
        }
    }
}

/// Identity of the file's content: inode, size, mtime and the first bytes
/// (header and nonce). Every berth write draws a fresh random nonce, so a
/// file berth rewrote never has the stamp of the one it replaced, even when
/// the inode is reused and the mtime falls in the same kernel tick; the
/// inode and mtime catch edits by other programs.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    head: [u8; BODY_OFFSET],
}

/// A whole store file as read, with its stamp.
struct Content {
    bytes: Zeroizing<Vec<u8>>,
    stamp: Stamp,
}

/// What [`read_file`] found.
enum FileState {
    /// No file, or an empty one: no secrets yet.
    Empty,
    /// The file has the stamp the caller already knows.
    Unchanged,
    /// The file's whole content.
    Read(Content),
}

struct Cache {
    stamp: Option<Stamp>,
    map: SecretMap,
}

struct Inner {
    path: PathBuf,
    lock_path: PathBuf,
    password: Zeroizing<Vec<u8>>,
    new_kdf: KdfParams,
    key: Mutex<Option<Arc<DerivedKey>>>,
    cache: Mutex<Cache>,
}

/// The `encrypted` secrets provider. See the module documentation.
pub struct EncryptedStore {
    inner: Arc<Inner>,
    write: tokio::sync::Mutex<()>,
}

impl fmt::Debug for EncryptedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("path", &self.inner.path)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Checks a user's secret name: non-empty, at most [`MAX_NAME_LEN`]
/// bytes, no `/`, no NUL or other control character, and not berth's own
/// (starting with [`RESERVED_PREFIX`]).
pub fn validate_name(name: &str) -> Result<(), SecretsError> {
    check_name(name)?;
    if name.starts_with(RESERVED_PREFIX) {
        return Err(SecretsError::Invalid(format!(
            "secret name `{}` uses the prefix `{RESERVED_PREFIX}`, reserved for berth's own \
             secrets",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Checks the name of one of berth's own secrets: the rules of
/// [`validate_name`], but it must start with [`RESERVED_PREFIX`] (and have
/// more after it).
pub fn validate_system_name(name: &str) -> Result<(), SecretsError> {
    check_name(name)?;
    if name.len() <= RESERVED_PREFIX.len() || !name.starts_with(RESERVED_PREFIX) {
        return Err(SecretsError::Invalid(format!(
            "system secret name `{}` does not start with `{RESERVED_PREFIX}` followed by a name",
            name.escape_debug()
        )));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), SecretsError> {
    let invalid =
        |why: &str| SecretsError::Invalid(format!("secret name `{}` {why}", name.escape_debug()));
    if name.is_empty() {
        return Err(SecretsError::Invalid("the secret name is empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(SecretsError::Invalid(format!(
            "secret name `{}…` is longer than {MAX_NAME_LEN} bytes",
            name.chars().take(32).collect::<String>().escape_debug()
        )));
    }
    if name.contains('/') {
        return Err(invalid("contains `/`"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("contains a NUL or control character"));
    }
    Ok(())
}

fn validate_value(name: &str, value: &str) -> Result<(), SecretsError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(SecretsError::Invalid(format!(
            "the value of secret `{}` is larger than {MAX_VALUE_LEN} bytes",
            name.escape_debug()
        )));
    }
    Ok(())
}

fn io_err(what: &str, path: &Path, e: io::Error) -> SecretsError {
    SecretsError::Unavailable(format!("{what} {}: {e}", path.display()))
}

/// Reads the store file unless its stamp is `known`. An absent or empty
/// file means "no secrets yet", as with ToolHive. The file is only ever
/// replaced by rename, so what one open descriptor reads is one version.
fn read_file(path: &Path, known: Option<&Stamp>) -> Result<FileState, SecretsError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FileState::Empty),
        Err(e) => return Err(io_err("cannot open the secrets store", path, e)),
    };
    let meta = f
        .metadata()
        .map_err(|e| io_err("cannot stat the secrets store", path, e))?;
    if meta.len() == 0 {
        return Ok(FileState::Empty);
    }
    let read_err = |e| io_err("cannot read the secrets store", path, e);
    let cap = usize::try_from(meta.len())
        .unwrap_or(usize::MAX)
        .min(MAX_FILE_LEN);
    let mut bytes = Zeroizing::new(Vec::with_capacity(cap));
    let mut f = io::Read::take(f, BODY_OFFSET as u64);
    io::Read::read_to_end(&mut f, &mut bytes).map_err(read_err)?;
    let mut head = [0u8; BODY_OFFSET];
    head[..bytes.len()].copy_from_slice(&bytes);
    let stamp = Stamp {
        ino: meta.ino(),
        len: meta.len(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        head,
    };
    if known == Some(&stamp) {
        return Ok(FileState::Unchanged);
    }
    // Read the rest, refusing a file far larger than any store can be.
    let mut f = f.into_inner();
    let mut f = io::Read::take(&mut f, MAX_FILE_LEN as u64);
    io::Read::read_to_end(&mut f, &mut bytes).map_err(read_err)?;
    if bytes.len() >= MAX_FILE_LEN {
        return Err(SecretsError::Unavailable(format!(
            "the secrets store {} is larger than {} MiB; the file was left untouched",
            path.display(),
            MAX_FILE_LEN >> 20
        )));
    }
    Ok(FileState::Read(Content { bytes, stamp }))
}

impl Inner {
    /// The key for `header`, deriving it (once) when it is not the cached one.
    fn key_for(&self, header: &Header) -> Result<Arc<DerivedKey>, SecretsError> {
        let mut slot = self.key.lock().expect("key lock");
        if let Some(k) = slot.as_ref()
            && k.kdf == header.kdf
            && k.salt == header.salt
        {
            return self.check_kcv(k.clone(), header);
        }
        let derived = Arc::new(
            DerivedKey::derive(&self.password, header.kdf, header.salt).map_err(|e| {
                SecretsError::Unavailable(format!(
                    "the secrets store {}: {e}; the file was left untouched",
                    self.path.display()
                ))
            })?,
        );
        let checked = self.check_kcv(derived, header)?;
        *slot = Some(checked.clone());
        Ok(checked)
    }

    fn check_kcv(
        &self,
        key: Arc<DerivedKey>,
        header: &Header,
    ) -> Result<Arc<DerivedKey>, SecretsError> {
        if key.kcv() != header.kcv {
            return Err(SecretsError::Denied(format!(
                "wrong password for the secrets store {}",
                self.path.display()
            )));
        }
        Ok(key)
    }

    /// Decrypts a whole (non-empty) file.
    fn decrypt(&self, bytes: &[u8]) -> Result<(Header, Arc<DerivedKey>, SecretMap), SecretsError> {
        let header = Header::decode(bytes, &self.path)?;
        let key = self.key_for(&header)?;
        let cipher = Aes256Gcm::new_from_slice(&key.key[..]).expect("32-byte key");
        let nonce = Nonce::from_slice(&bytes[HEADER_LEN..BODY_OFFSET]);
        let mut buf = Zeroizing::new(Vec::with_capacity(bytes.len() - BODY_OFFSET));
        buf.extend_from_slice(&bytes[BODY_OFFSET..]);
        cipher
            .decrypt_in_place(nonce, &bytes[..HEADER_LEN], &mut *buf)
            .map_err(|_| {
                SecretsError::Unavailable(format!(
                    "the secrets store {} is corrupt: the ciphertext does not authenticate \
                     (the password is right; the file was damaged or tampered with); the file \
                     was left untouched",
                    self.path.display()
                ))
            })?;
        let map = parse_plaintext(&buf, &self.path)?;
        Ok((header, key, map))
    }

    fn encrypt(
        &self,
        header: &Header,
        key: &DerivedKey,
        map: &SecretMap,
    ) -> Result<Vec<u8>, SecretsError> {
        let plain = serialize_plaintext(map);
        if BODY_OFFSET + plain.len() + TAG_LEN >= MAX_FILE_LEN {
            return Err(SecretsError::Invalid(format!(
                "the secrets store {} would grow beyond {} MiB",
                self.path.display(),
                MAX_FILE_LEN >> 20
            )));
        }
        let head = header.encode();
        let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
        let mut out = Vec::with_capacity(BODY_OFFSET + plain.len() + TAG_LEN);
        out.extend_from_slice(&head);
        out.extend_from_slice(&nonce_bytes);
        let mut body = Vec::with_capacity(plain.len() + TAG_LEN);
        body.extend_from_slice(&plain);
        let cipher = Aes256Gcm::new_from_slice(&key.key[..]).expect("32-byte key");
        cipher
            .encrypt_in_place(Nonce::from_slice(&nonce_bytes), &head, &mut body)
            .expect("AES-GCM encryption of a bounded buffer cannot fail");
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// A fresh header (and its key) for a store created now.
    fn new_header(&self) -> Result<(Header, Arc<DerivedKey>), SecretsError> {
        let salt: [u8; SALT_LEN] = random_bytes();
        let key = DerivedKey::derive(&self.password, self.new_kdf, salt).map_err(|e| {
            SecretsError::Unavailable(format!("the secrets store {}: {e}", self.path.display()))
        })?;
        let header = Header {
            kdf: self.new_kdf,
            salt,
            kcv: key.kcv(),
        };
        let key = Arc::new(key);
        *self.key.lock().expect("key lock") = Some(key.clone());
        Ok((header, key))
    }

    fn lock_file(&self) -> Result<Flock<File>, SecretsError> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&self.lock_path)
            .map_err(|e| io_err("cannot open the lock file", &self.lock_path, e))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, errno)| {
            io_err(
                "cannot lock",
                &self.lock_path,
                io::Error::from_raw_os_error(errno as i32),
            )
        })
    }

    /// Brings the in-memory copy up to date with the file.
    fn refresh(&self) -> Result<(), SecretsError> {
        let known = self.cache.lock().expect("cache lock").stamp;
        let (map, stamp) = match read_file(&self.path, known.as_ref())? {
            FileState::Unchanged => return Ok(()),
            FileState::Empty => (SecretMap::new(), None),
            FileState::Read(c) => (self.decrypt(&c.bytes)?.2, Some(c.stamp)),
        };
        *self.cache.lock().expect("cache lock") = Cache { stamp, map };
        Ok(())
    }

    /// One read-modify-write under the cross-process lock. `change` returns
    /// whether to write; the file is replaced only when it says so.
    fn mutate<R>(
        &self,
        change: impl FnOnce(&mut SecretMap) -> Result<(bool, R), SecretsError>,
    ) -> Result<R, SecretsError> {
        let _lock = self.lock_file()?;
        let (header, key, mut map) = match read_file(&self.path, None)? {
            FileState::Read(c) => self.decrypt(&c.bytes)?,
            FileState::Empty | FileState::Unchanged => {
                let (h, k) = self.new_header()?;
                (h, k, SecretMap::new())
            }
        };
        let (write, result) = change(&mut map)?;
        if write {
            self.write_locked(&header, &key, map)?;
        }
        Ok(result)
    }

    /// Unlocks the store: under the cross-process lock, decrypts the file
    /// (deriving the key once), or creates an empty store so that its salt,
    /// and so the key, is fixed from now on. A wrong password or a damaged
    /// file is an error and the file is left untouched.
    fn unlock(&self) -> Result<(), SecretsError> {
        let _lock = self.lock_file()?;
        match read_file(&self.path, None)? {
            FileState::Read(c) => {
                let (_, _, map) = self.decrypt(&c.bytes)?;
                *self.cache.lock().expect("cache lock") = Cache {
                    stamp: Some(c.stamp),
                    map,
                };
                Ok(())
            }
            FileState::Empty | FileState::Unchanged => {
                let (header, key) = self.new_header()?;
                self.write_locked(&header, &key, SecretMap::new())
            }
        }
    }

    /// Encrypts `map`, replaces the file and caches `map`. The caller holds
    /// the cross-process lock.
    fn write_locked(
        &self,
        header: &Header,
        key: &DerivedKey,
        map: SecretMap,
    ) -> Result<(), SecretsError> {
        let bytes = self.encrypt(header, key, &map)?;
        crate::state::write_atomic(&self.path, &bytes)
            .map_err(|e| io_err("cannot write the secrets store", &self.path, e))?;
        // Still under the lock: the file is the one just written.
        let meta = fs::metadata(&self.path)
            .map_err(|e| io_err("cannot stat the secrets store", &self.path, e))?;
        let mut head = [0u8; BODY_OFFSET];
        head.copy_from_slice(&bytes[..BODY_OFFSET]);
        let stamp = Stamp {
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            head,
        };
        *self.cache.lock().expect("cache lock") = Cache {
            stamp: Some(stamp),
            map,
        };
        Ok(())
    }
}

impl EncryptedStore {
    /// Opens (or creates) the store at `path` with the production KDF
    /// parameters. Blocking: it derives the key once (Argon2id, ~0.1–0.5 s);
    /// from async code call it inside `spawn_blocking`, or use
    /// [`EncryptedStore::open_async`].
    pub fn open(path: impl Into<PathBuf>, source: PasswordSource) -> Result<Self, SecretsError> {
        Self::open_with(path, source, StoreOptions::default())
    }

    /// [`EncryptedStore::open`] on the blocking thread pool.
    pub async fn open_async(
        path: impl Into<PathBuf>,
        source: PasswordSource,
        options: StoreOptions,
    ) -> Result<Self, SecretsError> {
        let path = path.into();
        tokio::task::spawn_blocking(move || Self::open_with(path, source, options))
            .await
            .map_err(|e| SecretsError::Failed(format!("opening the secrets store panicked: {e}")))?
    }

    /// Opens (or creates) the store at `path`. A wrong password on an
    /// existing store is `Denied` and leaves the file untouched.
    pub fn open_with(
        path: impl Into<PathBuf>,
        source: PasswordSource,
        options: StoreOptions,
    ) -> Result<Self, SecretsError> {
        let path: PathBuf = path.into();
        let mut lock_name = path.file_name().unwrap_or_default().to_os_string();
        lock_name.push(".lock");
        let lock_path = path.with_file_name(lock_name);
        let password = match source.password {
            Some(p) if !p.is_empty() => Zeroizing::new(p.as_bytes().to_vec()),
            Some(_) => {
                return Err(SecretsError::Invalid(
                    "the secrets store password is empty".into(),
                ));
            }
            None => {
                let store_is_new = match fs::metadata(&path) {
                    Ok(m) => m.len() == 0,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => true,
                    Err(e) => return Err(io_err("cannot stat the secrets store", &path, e)),
                };
                read_or_create_key_file(&source.key_file, store_is_new, &path)?
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_err("cannot create the directory", dir, e))?;
        }
        let inner = Inner {
            path,
            lock_path,
            password,
            new_kdf: options.kdf,
            key: Mutex::new(None),
            cache: Mutex::new(Cache {
                stamp: None,
                map: SecretMap::new(),
            }),
        };
        inner.unlock()?;
        Ok(EncryptedStore {
            inner: Arc::new(inner),
            write: tokio::sync::Mutex::new(()),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The KDF parameters recorded in the store's header.
    pub fn kdf_params(&self) -> Result<KdfParams, SecretsError> {
        let bytes = fs::read(&self.inner.path)
            .map_err(|e| io_err("cannot read the secrets store", &self.inner.path, e))?;
        Ok(Header::decode(&bytes, &self.inner.path)?.kdf)
    }

    /// Imports every secret of a ToolHive `encrypted` store (`nonce(12) ‖
    /// ciphertext ‖ tag`, key = SHA-256(password), plaintext `{"secrets":
    /// {…}}`) in one write, replacing same-named secrets. ToolHive's system
    /// secrets (`__thv_…`) are skipped. Returns how many were imported.
    pub async fn import_toolhive(
        &self,
        file: &Path,
        password: &str,
    ) -> Result<usize, SecretsError> {
        let file = file.to_owned();
        let password = Zeroizing::new(password.to_owned());
        let imported = tokio::task::spawn_blocking(move || read_toolhive(&file, &password))
            .await
            .map_err(|e| {
                SecretsError::Failed(format!("reading the ToolHive store panicked: {e}"))
            })??;
        let mut incoming = Vec::new();
        for (name, value) in imported {
            if name.starts_with("__thv_") {
                continue;
            }
            validate_name(&name)?;
            validate_value(&name, &value)?;
            incoming.push((name, value));
        }
        let n = incoming.len();
        if n == 0 {
            return Ok(0);
        }
        self.mutate(move |map| {
            map.extend(incoming);
            Ok((true, n))
        })
        .await
    }

    async fn mutate<R: Send + 'static>(
        &self,
        change: impl FnOnce(&mut SecretMap) -> Result<(bool, R), SecretsError> + Send + 'static,
    ) -> Result<R, SecretsError> {
        let _guard = self.write.lock().await;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.mutate(change))
            .await
            .map_err(|e| SecretsError::Failed(format!("a secrets store write panicked: {e}")))?
    }

    async fn refreshed<R: Send + 'static>(
        &self,
        read: impl FnOnce(&SecretMap) -> R + Send + 'static,
    ) -> Result<R, SecretsError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner.refresh()?;
            let cache = inner.cache.lock().expect("cache lock");
            Ok(read(&cache.map))
        })
        .await
        .map_err(|e| SecretsError::Failed(format!("a secrets store read panicked: {e}")))?
    }
}

// === impl SecretsProvider ===

/// The user's view: berth's own secrets ([`RESERVED_PREFIX`]) are refused
/// and never listed.
#[async_trait]
impl SecretsProvider for EncryptedStore {
    async fn capabilities(&self) -> Result<Capabilities, SecretsError> {
        Ok(Capabilities {
            read: true,
            write: true,
            delete: true,
            list: true,
        })
    }

    async fn get(&self, name: &str) -> Result<String, SecretsError> {
        validate_name(name)?;
        self.get_checked(name).await
    }

    async fn set(&self, name: &str, value: &str) -> Result<(), SecretsError> {
        validate_name(name)?;
        self.set_checked(name, value).await
    }

    async fn delete(&self, name: &str) -> Result<(), SecretsError> {
        validate_name(name)?;
        self.delete_checked(name).await
    }

    /// The user's secret names, sorted.
    async fn list(&self) -> Result<Vec<String>, SecretsError> {
        self.list_where(|name| !name.starts_with(RESERVED_PREFIX))
            .await
    }
}

// === impl EncryptedStore: berth's own secrets ===

impl EncryptedStore {
    /// One of berth's own secrets (e.g. a registry's OAuth refresh token).
    /// `name` must start with [`RESERVED_PREFIX`] ([`validate_system_name`]).
    pub async fn get_system(&self, name: &str) -> Result<String, SecretsError> {
        validate_system_name(name)?;
        self.get_checked(name).await
    }

    /// Creates or replaces one of berth's own secrets.
    pub async fn set_system(&self, name: &str, value: &str) -> Result<(), SecretsError> {
        validate_system_name(name)?;
        self.set_checked(name, value).await
    }

    /// Deletes one of berth's own secrets; `NotFound` when absent.
    pub async fn delete_system(&self, name: &str) -> Result<(), SecretsError> {
        validate_system_name(name)?;
        self.delete_checked(name).await
    }

    /// The names of berth's own secrets (all starting with
    /// [`RESERVED_PREFIX`]), sorted.
    pub async fn list_system(&self) -> Result<Vec<String>, SecretsError> {
        self.list_where(|name| name.starts_with(RESERVED_PREFIX))
            .await
    }

    /// [`EncryptedStore::set_system`] for a caller that cannot await (the
    /// registry keeps a token under its own lock, so that a logout never
    /// races a login's write). It blocks the calling thread on the
    /// cross-process lock and the file (the key is already derived): keep
    /// it to small, rare writes.
    pub fn set_system_blocking(&self, name: &str, value: &str) -> Result<(), SecretsError> {
        validate_system_name(name)?;
        validate_value(name, value)?;
        let name = name.to_owned();
        let value = Zeroizing::new(value.to_owned());
        self.inner.mutate(move |map| {
            map.insert(name, value);
            Ok((true, ()))
        })
    }

    /// [`EncryptedStore::delete_system`] for a caller that cannot await;
    /// blocks as [`EncryptedStore::set_system_blocking`] does. `NotFound`
    /// when absent.
    pub fn delete_system_blocking(&self, name: &str) -> Result<(), SecretsError> {
        validate_system_name(name)?;
        let key = name.to_owned();
        self.inner.mutate(move |map| match map.remove(&key) {
            Some(_) => Ok((true, ())),
            None => Err(SecretsError::NotFound(key)),
        })
    }

    async fn get_checked(&self, name: &str) -> Result<String, SecretsError> {
        let key = name.to_owned();
        self.refreshed(move |map| map.get(&key).map(|v| String::from(v.as_str())))
            .await?
            .ok_or_else(|| SecretsError::NotFound(name.to_owned()))
    }

    async fn set_checked(&self, name: &str, value: &str) -> Result<(), SecretsError> {
        validate_value(name, value)?;
        let name = name.to_owned();
        let value = Zeroizing::new(value.to_owned());
        self.mutate(move |map| {
            map.insert(name, value);
            Ok((true, ()))
        })
        .await
    }

    async fn delete_checked(&self, name: &str) -> Result<(), SecretsError> {
        let key = name.to_owned();
        self.mutate(move |map| match map.remove(&key) {
            Some(_) => Ok((true, ())),
            None => Err(SecretsError::NotFound(key)),
        })
        .await
    }

    async fn list_where(
        &self,
        keep: impl Fn(&str) -> bool + Send + 'static,
    ) -> Result<Vec<String>, SecretsError> {
        // A BTreeMap iterates in order: the names come out sorted.
        self.refreshed(move |map| map.keys().filter(|k| keep(k)).cloned().collect())
            .await
    }
}

#[cfg(test)]
mod tests;
