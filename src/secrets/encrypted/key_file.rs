//! Where the store's password comes from: a password handed down by
//! `main`, or a key file created on first use.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::format::random_bytes;
use super::io_err;
use crate::secrets::SecretsError;

/// Where the store's password comes from. The caller (the `App` wiring)
/// fills this from `BERTH_SECRETS_PASSWORD` and its configured paths.
#[derive(Clone)]
pub struct PasswordSource {
    /// An explicit password (e.g. `BERTH_SECRETS_PASSWORD`); wins when set.
    pub password: Option<Zeroizing<String>>,
    /// The key file read when there is no explicit password, created (32
    /// random bytes, hex, mode 0600, parent 0700) when missing and the store
    /// is new or empty.
    pub key_file: PathBuf,
}

impl PasswordSource {
    /// The default key file: `$XDG_CONFIG_HOME/berth/secrets.key`, else
    /// `$HOME/.config/berth/secrets.key`; `None` when neither is set (or
    /// both are empty or relative). `src/main.rs` passes the two variables:
    /// nothing else reads the environment.
    pub fn default_key_file(
        xdg_config_home: Option<&OsStr>,
        home: Option<&OsStr>,
    ) -> Option<PathBuf> {
        let absolute = |v: &&OsStr| Path::new(v).is_absolute();
        let base = xdg_config_home
            .filter(absolute)
            .map(PathBuf::from)
            .or_else(|| home.filter(absolute).map(|h| Path::new(h).join(".config")))?;
        Some(base.join("berth").join("secrets.key"))
    }
}

impl fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordSource")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("key_file", &self.key_file)
            .finish()
    }
}

/// The password from the key file, creating the key file when `may_create`
/// (the store is absent or empty) and it is missing.
pub(super) fn read_or_create_key_file(
    key_file: &Path,
    may_create: bool,
    store: &Path,
) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
    match fs::read(key_file) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            let trimmed = bytes.trim_ascii();
            if trimmed.is_empty() {
                return Err(SecretsError::Unavailable(format!(
                    "the secrets key file {} is empty",
                    key_file.display()
                )));
            }
            if let Ok(meta) = fs::metadata(key_file)
                && meta.mode() & 0o077 != 0
            {
                tracing::warn!(
                    key_file = %key_file.display(),
                    mode = format_args!("{:o}", meta.mode() & 0o777),
                    "The secrets key file is readable by other users; chmod 600 it."
                );
            }
            return Ok(Zeroizing::new(trimmed.to_vec()));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot read the secrets key file", key_file, e)),
    }
    if !may_create {
        return Err(SecretsError::Denied(format!(
            "the secrets store {} exists but there is no password: set BERTH_SECRETS_PASSWORD \
             or restore the key file {}",
            store.display(),
            key_file.display()
        )));
    }
    let dir = key_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err("cannot create the directory", dir, e))?;
    let secret: Zeroizing<[u8; 32]> = Zeroizing::new(random_bytes());
    let hexed = Zeroizing::new(hex::encode(&secret[..]));
    let password = Zeroizing::new(hexed.as_bytes().to_vec());
    let mut line = Zeroizing::new(Vec::with_capacity(hexed.len() + 1));
    line.extend_from_slice(hexed.as_bytes());
    line.push(b'\n');
    // Write a temporary file, then link it into place: the key file appears
    // whole or not at all, and if another process linked its own first,
    // theirs is used.
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        key_file.file_name().unwrap_or_default().to_string_lossy(),
        hex::encode(random_bytes::<8>())
    ));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&line)?;
            f.sync_all()
        })
        .and_then(|()| fs::hard_link(&tmp, key_file));
    let _ = fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
            tracing::info!(
                key_file = %key_file.display(),
                "Created a key file for the encrypted secrets store; keep it and back it up: \
                 without it the secrets cannot be decrypted."
            );
            Ok(password)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            read_or_create_key_file(key_file, false, store)
        }
        Err(e) => Err(io_err("cannot create the secrets key file", key_file, e)),
    }
}
