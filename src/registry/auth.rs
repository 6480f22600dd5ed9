//! Registry credentials and the headless OAuth login.
//!
//! - [`TokenStore`]: the bearer tokens berth sends to a registry after a
//!   login, in one file of the state directory, `registry-tokens.json`,
//!   created with mode 0600 and replaced atomically, never in the
//!   configuration, a log line or an API answer. (They move to the secrets
//!   provider once berth has one, issue 12.)
//! - [`OAuth`]: a registry's OIDC issuer (discovery), the device
//!   authorization grant (RFC 8628: berth shows a code, the user approves
//!   it on any browser, berth polls the token endpoint in the background)
//!   and the refresh grant (RFC 6749 section 6), in `auth/oauth.rs`. The
//!   protocol is the `oauth2` crate's; every request goes through berth's
//!   guarded [`super::fetch::Fetcher`] (address policy, size cap,
//!   deadline, no redirect for a POST).
//!
//! Invariants: no token value is logged, put in an error or shown by a
//! `Debug`; one device flow per registry at a time; a flow that was
//! cancelled (logout, registry changed) never stores its token.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

mod oauth;

pub use oauth::{DEFAULT_SCOPES, DeviceLogin, EXPIRY_MARGIN, OAuth, Sleep, check_issuer};

/// A stored credential.
#[derive(Clone, Serialize, Deserialize)]
pub struct Token {
    /// The bearer token.
    pub access_token: String,
    /// A refresh token, when the login gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires, when known.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// `oauth` (a login flow) or `bearer` (a pasted token).
    pub kind: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("kind", &self.kind)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The token file.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    lock: Mutex<()>,
}

impl TokenStore {
    /// The store in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("registry-tokens.json"),
            lock: Mutex::new(()),
        }
    }

    fn read(&self) -> BTreeMap<String, Token> {
        let Ok(bytes) = std::fs::read(&self.path).map(Zeroizing::new) else {
            return BTreeMap::new();
        };
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            tracing::warn!(path = %self.path.display(), "The registry token file is not valid; it is ignored.");
            BTreeMap::new()
        })
    }

    fn write(&self, all: &BTreeMap<String, Token>) -> std::io::Result<()> {
        let bytes = Zeroizing::new(serde_json::to_vec(all).map_err(std::io::Error::other)?);
        crate::state::write_atomic(&self.path, &bytes)
    }

    /// The token of `registry`.
    pub fn get(&self, registry: &str) -> Option<Token> {
        let _g = self.lock.lock().expect("token lock");
        self.read().remove(registry)
    }

    /// Stores the token of `registry`.
    pub fn put(&self, registry: &str, token: Token) -> std::io::Result<()> {
        let _g = self.lock.lock().expect("token lock");
        let mut all = self.read();
        all.insert(registry.to_owned(), token);
        self.write(&all)
    }

    /// Forgets the token of `registry`; whether there was one.
    pub fn remove(&self, registry: &str) -> std::io::Result<bool> {
        let _g = self.lock.lock().expect("token lock");
        let mut all = self.read();
        let had = all.remove(registry).is_some();
        if had {
            self.write(&all)?;
        }
        Ok(had)
    }

    /// Replaces the token of `registry` with `new` only if the stored one
    /// is still `old` (a refresh racing a logout or a new login loses);
    /// whether it was replaced.
    pub fn replace(&self, registry: &str, old: &Token, new: Token) -> std::io::Result<bool> {
        let _g = self.lock.lock().expect("token lock");
        let mut all = self.read();
        if all
            .get(registry)
            .is_none_or(|t| t.access_token != old.access_token)
        {
            return Ok(false);
        }
        all.insert(registry.to_owned(), new);
        self.write(&all)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tokens_are_kept_in_a_private_file_and_never_printed() {
        let dir = tempfile::tempdir().expect("dir");
        let store = TokenStore::new(dir.path());
        assert!(store.get("corp").is_none());
        store
            .put(
                "corp",
                Token {
                    access_token: "s3cret-value".into(),
                    refresh_token: None,
                    expires_at: None,
                    kind: "bearer".into(),
                },
            )
            .expect("put");
        let mode = std::fs::metadata(dir.path().join("registry-tokens.json"))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let t = store.get("corp").expect("stored");
        assert_eq!(t.access_token, "s3cret-value");
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(store.remove("corp").expect("remove"));
        assert!(store.get("corp").is_none());
        assert!(!store.remove("corp").expect("remove"));
    }

    fn token(access: &str, refresh: Option<&str>) -> Token {
        Token {
            access_token: access.into(),
            refresh_token: refresh.map(str::to_owned),
            expires_at: None,
            kind: "oauth".into(),
        }
    }

    #[test]
    fn a_refresh_replaces_only_the_token_it_refreshed() {
        let dir = tempfile::tempdir().expect("dir");
        let store = TokenStore::new(dir.path());
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
    }
}
