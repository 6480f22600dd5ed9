//! The management API's bearer token (`[api] auth = "token"`).
//!
//! The token comes from `BERTH_API_TOKEN` or from a file under berth's
//! configuration directory, created with mode 0600 on first start (no
//! window between create and chmod: the file is created with its mode).
//! It is compared in constant time and never logged, shown or exported.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How callers of the management API authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiAuth {
    /// Nobody authenticates: fit for loopback and Unix socket listeners.
    #[default]
    None,
    /// Every route but `/health` needs `Authorization: Bearer <token>`.
    Token,
    /// Every route but `/health` needs an access token of `[api.oidc]`'s
    /// issuer for the API's audience.
    Oidc,
}

/// Where the token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The `BERTH_API_TOKEN` environment variable.
    Environment,
    /// A token file that existed.
    File(PathBuf),
    /// A token file berth created just now.
    Created(PathBuf),
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The given token is too short to be a secret.
    #[error("the API token must be at least {MIN_LEN} characters long")]
    TooShort,
    /// The token holds characters an HTTP header cannot carry.
    #[error("the API token must be printable ASCII without spaces")]
    NotPrintable,
    /// The token file can be read by other users.
    #[error("the API token file {} can be read by other users (mode {mode:o}); run `chmod 600` on it", path.display())]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or creating the file failed.
    #[error("cannot read or create the API token file {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Shortest token accepted from the environment or a file.
pub const MIN_LEN: usize = 32;

/// A bearer token. Its `Debug` shows no secret.
#[derive(Clone)]
pub struct ApiToken {
    digest: Arc<[u8; 32]>,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken([redacted])")
    }
}

impl ApiToken {
    /// A token with this value (checked like one from the environment).
    pub fn new(value: &str) -> Result<Self, TokenError> {
        let value = value.trim();
        if value.len() < MIN_LEN {
            return Err(TokenError::TooShort);
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotPrintable);
        }
        Ok(Self {
            digest: Arc::new(Sha256::digest(value.as_bytes()).into()),
        })
    }

    /// The token from `from_env` if set, else from `file`, which is created
    /// with a new random 256-bit token if absent.
    pub fn resolve(from_env: Option<&str>, file: &Path) -> Result<(Self, TokenSource), TokenError> {
        if let Some(value) = from_env {
            return Ok((Self::new(value)?, TokenSource::Environment));
        }
        let io = |source| TokenError::Io {
            path: file.to_owned(),
            source,
        };
        match std::fs::metadata(file) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(TokenError::Exposed {
                        path: file.to_owned(),
                        mode,
                    });
                }
                let value = std::fs::read_to_string(file).map_err(io)?;
                Ok((Self::new(&value)?, TokenSource::File(file.to_owned())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let value = generate();
                if let Some(dir) = file.parent() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .map_err(io)?;
                }
                // Created with mode 0600 in one call: never readable by
                // others, not even for a moment. `create_new` refuses a file
                // (or symlink) another process put there meanwhile.
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(file)
                    .map_err(io)?;
                f.write_all(value.as_bytes())
                    .and_then(|()| f.write_all(b"\n"))
                    .and_then(|()| f.sync_all())
                    .map_err(io)?;
                Ok((Self::new(&value)?, TokenSource::Created(file.to_owned())))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Whether an `Authorization` header value carries this token, compared
    /// in constant time (the digests are compared, so neither the token's
    /// length nor its content leaks through timing).
    pub fn verify(&self, authorization: &[u8]) -> bool {
        let Some(presented) = strip_bearer(authorization) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest.ct_eq(&*self.digest).into()
    }
}

fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(rest.trim_ascii())
}

/// A random 256-bit token, hex encoded, from the thread's CSPRNG (seeded
/// from the operating system).
fn generate() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("berth/api-token");
        let (token, source) = ApiToken::resolve(None, &file).expect("create");
        assert_eq!(source, TokenSource::Created(file.clone()));
        let mode = std::fs::metadata(&file).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let value = std::fs::read_to_string(&file).expect("read");
        assert_eq!(value.trim().len(), 64, "256 bits, hex");
        assert!(token.verify(format!("Bearer {}", value.trim()).as_bytes()));
        let (again, source) = ApiToken::resolve(None, &file).expect("reuse");
        assert_eq!(source, TokenSource::File(file.clone()));
        assert!(again.verify(format!("bearer {}", value.trim()).as_bytes()));
        let other = tempfile::tempdir().expect("tempdir");
        let (fresh, _) = ApiToken::resolve(None, &other.path().join("t")).expect("other");
        assert!(
            !fresh.verify(format!("Bearer {}", value.trim()).as_bytes()),
            "two files, two tokens"
        );
    }

    #[test]
    fn an_exposed_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("api-token");
        std::fs::write(&file, "a".repeat(40)).expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = ApiToken::resolve(None, &file).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(!err.to_string().contains(&"a".repeat(40)), "{err}");
    }

    #[test]
    fn environment_wins_and_must_be_long() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("api-token");
        let value = "s3cret-s3cret-s3cret-s3cret-s3cret";
        let (token, source) = ApiToken::resolve(Some(value), &file).expect("env");
        assert_eq!(source, TokenSource::Environment);
        assert!(
            !file.exists(),
            "no file when the environment gives the token"
        );
        assert!(token.verify(format!("Bearer {value}").as_bytes()));
        for wrong in [
            "Bearer s3cret".to_owned(),
            format!("Basic {value}"),
            value.to_owned(),
            format!("Bearer {value}x"),
            "Bearer ".to_owned(),
            String::new(),
        ] {
            assert!(!token.verify(wrong.as_bytes()), "{wrong}");
        }
        assert!(matches!(
            ApiToken::resolve(Some("short"), &file),
            Err(TokenError::TooShort)
        ));
        assert!(format!("{token:?}").contains("redacted"));
    }
}
