//! Registry credentials and the headless OAuth login.
//!
//! - [`TokenStore`]: the bearer tokens berth sends to a registry after a
//!   login, kept as berth's own secrets in the encrypted secrets store
//!   ([`Secrets::system_store`]), one JSON value per registry named
//!   `__berth_registry_<registry name>`, never in the configuration, a
//!   log line, an API answer or any plaintext file. The store is that
//!   encrypted store whatever the user's default provider is, and its user
//!   view (`/api/v1beta/secrets/default/keys`) never lists them. A
//!   `registry-tokens.json` left by an earlier berth (plaintext) is moved
//!   into it when the store is opened: every token is written, then the
//!   file is deleted; anything failing leaves the file for the next start.
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
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::{Zeroize, Zeroizing};

use crate::secrets::encrypted::EncryptedStore;
use crate::secrets::{Secrets, SecretsError};

mod oauth;

pub use oauth::{DEFAULT_SCOPES, DeviceLogin, EXPIRY_MARGIN, OAuth, Sleep, check_issuer};

/// The prefix of a registry token's name in the secrets store; the
/// registry's name follows.
pub const SECRET_PREFIX: &str = "__berth_registry_";

/// The plaintext token file of earlier versions, in the state directory.
pub const LEGACY_FILE: &str = "registry-tokens.json";

/// A stored credential. Its values are wiped from memory when dropped.
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

impl Drop for Token {
    fn drop(&mut self) {
        self.access_token.zeroize();
        self.refresh_token.zeroize();
    }
}

/// The name of `registry`'s token in the secrets store; `None` for a name
/// no registry can have (the store refuses some of those, e.g. with `/`).
pub fn secret_name(registry: &str) -> Option<String> {
    super::valid_registry_name(registry).then(|| format!("{SECRET_PREFIX}{registry}"))
}

/// Why a registry token could not be read or kept. Never carries a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("registry tokens are kept in berth's encrypted secrets store, which failed: {0}")]
pub struct TokenError(pub SecretsError);

/// Where the tokens are.
enum State {
    /// No store was opened: none existed when berth started (nothing is
    /// stored). The first login opens, and so creates, it.
    Closed,
    /// The store is open; `tokens` mirrors its registry tokens (every
    /// write goes through here, under the lock, store first).
    Open {
        store: Arc<EncryptedStore>,
        tokens: BTreeMap<String, Token>,
    },
    /// The store could not be opened: why. Tried again on demand.
    Failed(SecretsError),
}

/// The registry tokens. See the module documentation.
///
/// Reads answer from memory; writes block on the store's file under the
/// lock (as the token file did), so that a logout, a login's completion
/// and a refresh are applied one at a time, in order. Opening the store
/// (and moving the plaintext file) is async: [`TokenStore::load`] at
/// startup, [`TokenStore::ensure`] before a login.
pub struct TokenStore {
    secrets: Arc<Secrets>,
    legacy: PathBuf,
    state: Mutex<State>,
    opening: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &*self.state.lock().expect("token lock") {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::Failed(_) => "failed",
        };
        f.debug_struct("TokenStore")
            .field("store", &self.secrets.store_path())
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl TokenStore {
    /// The tokens of a berth whose state directory is `state_dir` (where an
    /// earlier version's `registry-tokens.json` may be), kept in the
    /// system store of `secrets`. Nothing is opened yet: see
    /// [`TokenStore::load`].
    pub fn new(state_dir: &Path, secrets: Arc<Secrets>) -> Self {
        Self {
            secrets,
            legacy: state_dir.join(LEGACY_FILE),
            state: Mutex::new(State::Closed),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    /// At startup: opens the store when it exists or a token file waits
    /// to be moved into it, moving that file. A store that cannot be
    /// opened is logged (and tried again on demand); berth starts anyway.
    pub async fn load(&self) {
        if !self.secrets.store_path().exists() && !self.legacy.exists() {
            return;
        }
        if let Err(e) = self.ensure().await {
            tracing::error!(error = %e, "Registry tokens cannot be read; registries that need a login answer why until the secrets store opens.");
        }
    }

    /// Opens the store unless it is open: moves the plaintext token file
    /// into it, then reads the tokens.
    pub async fn ensure(&self) -> Result<(), TokenError> {
        if matches!(*self.state.lock().expect("token lock"), State::Open { .. }) {
            return Ok(());
        }
        let _one = self.opening.lock().await;
        if matches!(*self.state.lock().expect("token lock"), State::Open { .. }) {
            return Ok(());
        }
        let opened = match self.secrets.system_store().await {
            Ok(store) => {
                self.migrate(&store).await;
                read_tokens(&store).await.map(|tokens| (store, tokens))
            }
            Err(e) => Err(e),
        };
        let mut state = self.state.lock().expect("token lock");
        match opened {
            Ok((store, tokens)) => {
                *state = State::Open { store, tokens };
                Ok(())
            }
            Err(e) => {
                *state = State::Failed(e.clone());
                Err(TokenError(e))
            }
        }
    }

    /// Whether the tokens can be read: the store is open, or none was ever
    /// stored. A store that failed is tried again.
    pub async fn readable(&self) -> Result<(), TokenError> {
        if matches!(*self.state.lock().expect("token lock"), State::Failed(_)) {
            return self.ensure().await;
        }
        Ok(())
    }

    /// Moves the tokens of the plaintext file into `store`, then deletes
    /// the file. A token the store has already (an earlier move that could
    /// not delete the file, or a newer login) is kept. Any failure leaves
    /// the file, to be moved at the next start.
    async fn migrate(&self, store: &EncryptedStore) {
        let file = self.legacy.display();
        let bytes = match std::fs::read(&self.legacy).map(Zeroizing::new) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::error!(file = %file, error = %e, "Cannot read the registry token file; it is left in place.");
                return;
            }
        };
        let all: BTreeMap<String, Token> = match serde_json::from_slice(&bytes) {
            Ok(all) => all,
            Err(_) => {
                tracing::error!(file = %file, "The registry token file is not valid; it is left in place and its tokens are not used.");
                return;
            }
        };
        let present = match store.list_system().await {
            Ok(names) => names,
            Err(e) => {
                tracing::error!(file = %file, error = %e, "Cannot move the registry tokens into the secrets store; the file is left in place.");
                return;
            }
        };
        let mut moved = 0;
        for (registry, token) in &all {
            let Some(name) = secret_name(registry) else {
                tracing::warn!(file = %file, "A token of the registry token file names no valid registry; it is dropped.");
                continue;
            };
            if present.contains(&name) {
                continue;
            }
            let value = Zeroizing::new(serde_json::to_string(token).expect("a token serializes"));
            if let Err(e) = store.set_system(&name, &value).await {
                tracing::error!(file = %file, error = %e, "Cannot move the registry tokens into the secrets store; the file is left in place.");
                return;
            }
            moved += 1;
        }
        if let Err(e) = std::fs::remove_file(&self.legacy) {
            tracing::warn!(file = %file, error = %e, "The registry tokens were moved into the secrets store but their plaintext file could not be deleted; delete it.");
            return;
        }
        if let Some(dir) = self.legacy.parent()
            && let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all())
        {
            tracing::warn!(dir = %dir.display(), error = %e, "Cannot sync the state directory after deleting the registry token file.");
        }
        tracing::info!(file = %file, moved, "Registry tokens moved into the encrypted secrets store; their plaintext file was deleted.");
    }

    /// The token of `registry`.
    pub fn get(&self, registry: &str) -> Option<Token> {
        match &*self.state.lock().expect("token lock") {
            State::Open { tokens, .. } => tokens.get(registry).cloned(),
            State::Closed | State::Failed(_) => None,
        }
    }

    /// Stores the token of `registry` (the store must be open:
    /// [`TokenStore::ensure`]).
    pub fn put(&self, registry: &str, token: Token) -> Result<(), TokenError> {
        let mut state = self.state.lock().expect("token lock");
        let State::Open { store, tokens } = &mut *state else {
            return Err(not_open(&state));
        };
        write(store, registry, &token)?;
        tokens.insert(registry.to_owned(), token);
        Ok(())
    }

    /// Forgets the token of `registry`; whether there was one.
    pub fn remove(&self, registry: &str) -> Result<bool, TokenError> {
        let mut state = self.state.lock().expect("token lock");
        let (store, tokens) = match &mut *state {
            State::Open { store, tokens } => (store, tokens),
            State::Closed => return Ok(false),
            State::Failed(e) => return Err(TokenError(e.clone())),
        };
        if !tokens.contains_key(registry) {
            return Ok(false);
        }
        let name = secret_name(registry).ok_or_else(|| invalid(registry))?;
        match store.delete_system_blocking(&name) {
            Ok(()) | Err(SecretsError::NotFound(_)) => {}
            Err(e) => return Err(TokenError(e)),
        }
        tokens.remove(registry);
        Ok(true)
    }

    /// Replaces the token of `registry` with `new` only if the stored one
    /// is still `old` (a refresh racing a logout or a new login loses);
    /// whether it was replaced.
    pub fn replace(&self, registry: &str, old: &Token, new: Token) -> Result<bool, TokenError> {
        let mut state = self.state.lock().expect("token lock");
        let State::Open { store, tokens } = &mut *state else {
            return Ok(false);
        };
        if tokens
            .get(registry)
            .is_none_or(|t| t.access_token != old.access_token)
        {
            return Ok(false);
        }
        write(store, registry, &new)?;
        tokens.insert(registry.to_owned(), new);
        Ok(true)
    }
}

fn invalid(registry: &str) -> TokenError {
    TokenError(SecretsError::Invalid(format!(
        "`{}` is not a registry name",
        crate::logging::escape_controls(registry)
    )))
}

fn not_open(state: &State) -> TokenError {
    match state {
        State::Failed(e) => TokenError(e.clone()),
        _ => TokenError(SecretsError::Unavailable(
            "the store is not open yet".into(),
        )),
    }
}

/// Writes `registry`'s token to the store (blocking).
fn write(store: &EncryptedStore, registry: &str, token: &Token) -> Result<(), TokenError> {
    let name = secret_name(registry).ok_or_else(|| invalid(registry))?;
    let value = Zeroizing::new(serde_json::to_string(token).expect("a token serializes"));
    store.set_system_blocking(&name, &value).map_err(TokenError)
}

/// Every registry token in `store`. A value that does not parse is
/// skipped with a warning.
async fn read_tokens(store: &EncryptedStore) -> Result<BTreeMap<String, Token>, SecretsError> {
    let mut tokens = BTreeMap::new();
    for name in store.list_system().await? {
        let Some(registry) = name.strip_prefix(SECRET_PREFIX) else {
            continue;
        };
        let value = match store.get_system(&name).await {
            Ok(v) => Zeroizing::new(v),
            // Deleted since the list.
            Err(SecretsError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        match serde_json::from_str::<Token>(&value) {
            Ok(token) => {
                tokens.insert(registry.to_owned(), token);
            }
            Err(_) => {
                tracing::warn!(
                    registry,
                    "A stored registry token is not valid; it is ignored."
                );
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests;
