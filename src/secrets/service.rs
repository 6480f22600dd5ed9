//! The secrets service ([`crate::app::App::secrets`]): berth's default
//! provider, chosen by `[secrets] provider` or set up through the API, the
//! extra providers a reference can name, and the resolution of workload
//! references at each start.
//!
//! Unlike ToolHive (spec 2.1) the default `encrypted` provider is ready at
//! the first start: no setup call, no keyring, no prompt. A store that
//! cannot be opened (wrong password, damaged file) does not stop berth: the
//! secrets routes answer with the reason and every other route works.
//!
//! berth's own secrets (registry OAuth tokens) always live in the built-in
//! encrypted store at the configured path, whatever the user's default
//! provider is ([`Secrets::system_store`]): a user's Vault plugin or the
//! environment is not where berth keeps its tokens. When the default
//! provider is that store, both are one instance (one key derivation).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;
use zeroize::Zeroizing;

use super::encrypted::{EncryptedStore, PasswordSource, RESERVED_PREFIX, StoreOptions};
use super::environment::Environment;
use super::{SecretsError, SecretsProvider};
use crate::plugins::Plugins;

/// `[secrets]` of berth.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// The default provider: `encrypted`, `environment`, `none` (ToolHive's
    /// behaviour: no provider until `POST /api/v1beta/secrets`) or
    /// `plugin:<name>` (a `secrets-provider` entry of `[[plugins]]`). A
    /// provider set up through the API replaces it (kept in the state
    /// directory).
    pub provider: String,
    /// The encrypted store; `<state_dir>/secrets.berthsec` by default.
    pub store: Option<PathBuf>,
    /// The file holding the encrypted store's password when
    /// `BERTH_SECRETS_PASSWORD` is unset; `$XDG_CONFIG_HOME/berth/secrets.key`
    /// by default (`<state_dir>/secrets.key` without a configuration
    /// directory). Created (mode 0600, a random 256-bit password) when
    /// neither it nor the store exists.
    pub key_file: Option<PathBuf>,
    /// Whether a reference the default provider does not know is read from
    /// `BERTH_SECRET_<name>` / `TOOLHIVE_SECRET_<name>` (ToolHive's
    /// environment fallback).
    pub environment_fallback: bool,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            provider: "encrypted".into(),
            store: None,
            key_file: None,
            environment_fallback: true,
        }
    }
}

/// What `src/main.rs` reads from the environment for the secrets service.
#[derive(Default)]
pub struct SecretsEnv {
    /// `BERTH_SECRETS_PASSWORD`.
    pub password: Option<Zeroizing<String>>,
    /// The `BERTH_SECRET_*` and `TOOLHIVE_SECRET_*` variables (others are
    /// dropped).
    pub variables: Vec<(String, String)>,
    /// The default key file (`$XDG_CONFIG_HOME/berth/secrets.key`), when a
    /// configuration directory is known.
    pub key_file: Option<PathBuf>,
}

impl fmt::Debug for SecretsEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsEnv")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("variables", &self.variables.len())
            .field("key_file", &self.key_file)
            .finish()
    }
}

/// A provider type, as the API and the configuration spell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    /// berth's encrypted file.
    Encrypted,
    /// `BERTH_SECRET_*` variables, read-only.
    Environment,
    /// No provider: the secrets routes answer 404 until one is set up.
    None,
    /// A `secrets-provider` plugin.
    Plugin(String),
}

impl ProviderKind {
    /// Parses `encrypted`, `environment`, `none` or `plugin:<name>`.
    pub fn parse(s: &str) -> Result<Self, SecretsError> {
        let valid = "valid types: encrypted, environment, none, plugin:<name of a \
                     secrets-provider plugin>";
        match s {
            "" => Err(SecretsError::Invalid(
                "provider type cannot be empty".into(),
            )),
            "encrypted" => Ok(Self::Encrypted),
            "environment" => Ok(Self::Environment),
            "none" => Ok(Self::None),
            "1password" => Err(SecretsError::Invalid(format!(
                "the 1password provider is not built into berth (a secrets-provider plugin can \
                 reach 1Password); {valid}"
            ))),
            other => match other.strip_prefix("plugin:") {
                Some(name) if !name.is_empty() => Ok(Self::Plugin(name.to_owned())),
                _ => Err(SecretsError::Invalid(format!(
                    "invalid secrets provider type: {} ({valid})",
                    crate::logging::escape_controls(other)
                ))),
            },
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encrypted => f.write_str("encrypted"),
            Self::Environment => f.write_str("environment"),
            Self::None => f.write_str("none"),
            Self::Plugin(name) => write!(f, "plugin:{name}"),
        }
    }
}

/// The provider set up through the API, kept in the state directory.
#[derive(Debug, Serialize, Deserialize)]
struct Choice {
    provider_type: String,
}

/// File name of [`Choice`] in the state directory.
const CHOICE_FILE: &str = "secrets-provider.json";

/// How often a provider that failed to open is tried again on demand (each
/// try of the encrypted store costs one key derivation).
const RETRY_EVERY: Duration = Duration::from_secs(2);

type Provider = Arc<dyn SecretsProvider>;

struct Active {
    kind: ProviderKind,
    provider: Result<Provider, SecretsError>,
    tried: Instant,
    /// A password given through the setup route (kept in memory only).
    password: Option<Zeroizing<String>>,
}

/// The secrets service. See the module documentation.
pub struct Secrets {
    store: PathBuf,
    key_file: PathBuf,
    env_password: Option<Zeroizing<String>>,
    environment: Arc<Environment>,
    fallback: bool,
    plugins: Option<Arc<Plugins>>,
    choice_file: PathBuf,
    store_options: StoreOptions,
    active: RwLock<Active>,
    setup: tokio::sync::Mutex<()>,
    api_writes: tokio::sync::Mutex<()>,
    /// berth's own store, once opened. Never held while waiting for
    /// `active` (which may be held while waiting for it).
    system: tokio::sync::Mutex<SystemStore>,
}

/// The cache behind [`Secrets::system_store`].
#[derive(Default)]
struct SystemStore {
    store: Option<Arc<EncryptedStore>>,
    /// The last failure to open it, and when (tried again after
    /// [`RETRY_EVERY`]: each try costs one key derivation).
    failed: Option<(SecretsError, Instant)>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("store", &self.store)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// Whether `name` is one of berth's own (hidden and refused through the
/// API and workload references).
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

impl Secrets {
    /// Opens the configured (or set-up) provider. A provider that cannot be
    /// opened is not an error here: its routes answer why, and it is tried
    /// again on demand. Only a configuration that names no valid provider
    /// is.
    pub async fn open(
        config: &super::SecretsConfig,
        env: SecretsEnv,
        state_dir: &Path,
        plugins: Option<Arc<Plugins>>,
    ) -> Result<Arc<Self>, SecretsError> {
        Self::open_with(config, env, state_dir, plugins, StoreOptions::default()).await
    }

    /// [`Secrets::open`] with the encrypted store's options (tests use
    /// cheap key derivation).
    pub async fn open_with(
        config: &super::SecretsConfig,
        env: SecretsEnv,
        state_dir: &Path,
        plugins: Option<Arc<Plugins>>,
        store_options: StoreOptions,
    ) -> Result<Arc<Self>, SecretsError> {
        let configured = ProviderKind::parse(&config.provider)
            .map_err(|e| SecretsError::Invalid(format!("[secrets] provider: {e}")))?;
        let choice_file = state_dir.join(CHOICE_FILE);
        let kind = match read_choice(&choice_file) {
            Some(kind) => kind,
            None => configured,
        };
        let (store, key_file) = store_paths(config, env.key_file.as_deref(), state_dir);
        let this = Arc::new(Self {
            store,
            key_file,
            env_password: env.password,
            environment: Arc::new(Environment::new(env.variables)),
            fallback: config.environment_fallback,
            plugins,
            choice_file,
            store_options,
            active: RwLock::new(Active {
                kind: kind.clone(),
                provider: Err(SecretsError::NotSetUp),
                tried: Instant::now(),
                password: None,
            }),
            setup: tokio::sync::Mutex::new(()),
            api_writes: tokio::sync::Mutex::new(()),
            system: tokio::sync::Mutex::default(),
        });
        let provider = this.activate(&kind, None).await;
        if let Err(e) = &provider
            && *e != SecretsError::NotSetUp
        {
            tracing::error!(provider = %kind, error = %e, "The secrets provider cannot be used; the secrets routes say why, everything else works.");
        }
        this.active.write().await.provider = provider;
        Ok(this)
    }

    /// Held by an API write from its existence check to its write, so that
    /// two creates of one name cannot both succeed.
    pub async fn api_write(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.api_writes.lock().await
    }

    /// The encrypted store's file.
    pub fn store_path(&self) -> &Path {
        &self.store
    }

    /// Opens a provider of `kind`.
    async fn activate(
        &self,
        kind: &ProviderKind,
        password: Option<&Zeroizing<String>>,
    ) -> Result<Provider, SecretsError> {
        match kind {
            ProviderKind::None => Err(SecretsError::NotSetUp),
            ProviderKind::Environment => Ok(self.environment.clone()),
            ProviderKind::Plugin(name) => self.plugin(name),
            ProviderKind::Encrypted => {
                let store = self.open_store(password).await?;
                // berth's own secrets share this instance when none is open.
                let mut system = self.system.lock().await;
                if system.store.is_none() {
                    system.store = Some(store.clone());
                    system.failed = None;
                }
                Ok(store)
            }
        }
    }

    /// Opens the encrypted store at the configured path (one key
    /// derivation, off the async threads).
    async fn open_store(
        &self,
        password: Option<&Zeroizing<String>>,
    ) -> Result<Arc<EncryptedStore>, SecretsError> {
        let source = PasswordSource {
            // A password given at setup is the caller's explicit choice: it
            // is tried before BERTH_SECRETS_PASSWORD.
            password: password.cloned().or_else(|| self.env_password.clone()),
            key_file: self.key_file.clone(),
        };
        let store =
            EncryptedStore::open_async(self.store.clone(), source, self.store_options).await?;
        Ok(Arc::new(store))
    }

    /// berth's own store: the built-in encrypted store at
    /// [`Secrets::store_path`], unlocked as the `encrypted` provider is
    /// (`BERTH_SECRETS_PASSWORD`, the key file, or the password given at
    /// setup), whichever provider is the default. Its names start with
    /// `__berth_` and are reached with [`EncryptedStore::get_system`] and
    /// its siblings; the user's view never lists them.
    ///
    /// Opened once (creating it, and its key file, when neither exists)
    /// and kept; the instance of the default provider when that is the
    /// encrypted store. A store that cannot be opened (wrong password,
    /// damaged file) is the reason, tried again at most every two seconds.
    pub async fn system_store(&self) -> Result<Arc<EncryptedStore>, SecretsError> {
        if let Some(store) = &self.system.lock().await.store {
            return Ok(store.clone());
        }
        // Read before taking `system`: `active` is held by callers that
        // wait for `system` (activate).
        let password = {
            let active = self.active.read().await;
            match active.kind {
                ProviderKind::Encrypted => active.password.clone(),
                _ => None,
            }
        };
        let mut system = self.system.lock().await;
        if let Some(store) = &system.store {
            return Ok(store.clone());
        }
        if let Some((e, at)) = &system.failed
            && at.elapsed() < RETRY_EVERY
        {
            return Err(e.clone());
        }
        match self.open_store(password.as_ref()).await {
            Ok(store) => {
                system.store = Some(store.clone());
                system.failed = None;
                Ok(store)
            }
            Err(e) => {
                system.failed = Some((e.clone(), Instant::now()));
                Err(e)
            }
        }
    }

    fn plugin(&self, name: &str) -> Result<Provider, SecretsError> {
        let plugins = self.plugins.as_ref().ok_or_else(|| {
            SecretsError::Invalid(format!(
                "no secrets-provider plugin `{}`: berth.toml has no [[plugins]]",
                crate::logging::escape_controls(name)
            ))
        })?;
        plugins
            .secrets(name)
            .map_err(|e| SecretsError::Invalid(e.to_string()))
    }

    /// The default provider and its type. `NotSetUp` for `none`; the
    /// reason it cannot be opened otherwise (tried again at most every
    /// two seconds).
    pub async fn default_provider(&self) -> Result<(ProviderKind, Provider), SecretsError> {
        {
            let active = self.active.read().await;
            match &active.provider {
                Ok(p) => return Ok((active.kind.clone(), p.clone())),
                Err(SecretsError::NotSetUp) => return Err(SecretsError::NotSetUp),
                Err(e) if active.tried.elapsed() < RETRY_EVERY => return Err(e.clone()),
                Err(_) => {}
            }
        }
        let mut active = self.active.write().await;
        if active.provider.is_err() && active.tried.elapsed() >= RETRY_EVERY {
            let kind = active.kind.clone();
            let password = active.password.clone();
            active.provider = self.activate(&kind, password.as_ref()).await;
            active.tried = Instant::now();
        }
        match &active.provider {
            Ok(p) => Ok((active.kind.clone(), p.clone())),
            Err(e) => Err(e.clone()),
        }
    }

    /// Sets up (or switches) the default provider, as `POST
    /// /api/v1beta/secrets` does: opens it, checks that it answers, then
    /// keeps the choice in the state directory. Returns whether a provider
    /// was set up before. Nothing changes when it fails. For `encrypted`,
    /// `password` (when given) unlocks or creates the store in place of
    /// `BERTH_SECRETS_PASSWORD` or the key file; with no
    /// `BERTH_SECRETS_PASSWORD` it is written to the key file when that
    /// does not exist yet, so that the next start unlocks too.
    pub async fn setup(
        &self,
        provider_type: &str,
        password: Option<Zeroizing<String>>,
    ) -> Result<(ProviderKind, bool), SecretsError> {
        let kind = ProviderKind::parse(provider_type)?;
        let _one = self.setup.lock().await;
        let password = password.filter(|p| !p.is_empty());
        let provider = self.activate(&kind, password.as_ref()).await?;
        if kind != ProviderKind::None {
            check(provider.as_ref()).await?;
        }
        if kind == ProviderKind::Encrypted
            && self.env_password.is_none()
            && let Some(p) = &password
        {
            self.keep_password(p)?;
        }
        let choice = serde_json::to_vec_pretty(&Choice {
            provider_type: kind.to_string(),
        })
        .expect("a choice serializes");
        crate::state::write_atomic(&self.choice_file, &choice).map_err(|e| {
            SecretsError::Unavailable(format!("cannot write {}: {e}", self.choice_file.display()))
        })?;
        let mut active = self.active.write().await;
        let reconfigured = active.kind != ProviderKind::None;
        *active = Active {
            kind: kind.clone(),
            provider: Ok(provider),
            tried: Instant::now(),
            password,
        };
        tracing::info!(provider = %kind, "Secrets provider set up.");
        Ok((kind, reconfigured))
    }

    /// Writes a password given at setup to the key file, unless one exists.
    fn keep_password(&self, password: &Zeroizing<String>) -> Result<(), SecretsError> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if self.key_file.exists() {
            tracing::info!(key_file = %self.key_file.display(), "The secrets store was unlocked with the password given at setup; the key file is left as it is, so the next start needs BERTH_SECRETS_PASSWORD or a key file holding that password.");
            return Ok(());
        }
        if let Some(dir) = self.key_file.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    SecretsError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                })?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.key_file)
            .map_err(|e| {
                SecretsError::Unavailable(format!(
                    "cannot create the key file {}: {e}",
                    self.key_file.display()
                ))
            })?;
        let mut line = Zeroizing::new(password.as_bytes().to_vec());
        line.push(b'\n');
        f.write_all(&line)
            .and_then(|()| f.sync_all())
            .map_err(|e| {
                SecretsError::Unavailable(format!(
                    "cannot write the key file {}: {e}",
                    self.key_file.display()
                ))
            })?;
        tracing::info!(key_file = %self.key_file.display(), "The password given at setup was written to this key file (mode 0600); the next start unlocks the store with it.");
        Ok(())
    }

    /// The value of a workload reference: `<plugin>/<key>` (a
    /// `secrets-provider` plugin) or `environment/<name>` names a provider;
    /// any other name is read from the default provider, then (for
    /// `encrypted` and plugins, unless disabled) from the environment.
    pub async fn resolve(&self, reference: &str) -> Result<Zeroizing<String>, SecretsError> {
        check_reference(reference)?;
        if let Some((provider, key)) = reference.split_once('/') {
            if provider == "environment" {
                return self.environment.get(key).await.map(Zeroizing::new);
            }
            if let Some(plugins) = &self.plugins
                && let Ok(p) = plugins.secrets(provider)
            {
                return p.get(key).await.map(Zeroizing::new);
            }
        }
        let (kind, provider) = self.default_provider().await?;
        match provider.get(reference).await {
            Err(SecretsError::NotFound(n))
                if self.fallback
                    && matches!(kind, ProviderKind::Encrypted | ProviderKind::Plugin(_)) =>
            {
                match self.environment.get(reference).await {
                    Ok(v) => Ok(Zeroizing::new(v)),
                    Err(_) => Err(SecretsError::NotFound(n)),
                }
            }
            other => other.map(Zeroizing::new),
        }
    }
}

/// Checks that a provider answers: its capabilities, then a list (or a
/// read of a name that should not exist).
async fn check(provider: &dyn SecretsProvider) -> Result<(), SecretsError> {
    let caps = provider.capabilities().await?;
    if caps.list {
        provider.list().await?;
    } else if caps.read {
        match provider.get("berth_setup_check").await {
            Ok(_) | Err(SecretsError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The rules of a workload's secret reference name: not empty, no `,` (the
/// stored form is `<name>,target=<env>`), no control characters, not
/// reserved, at most 1024 bytes.
pub fn check_reference(name: &str) -> Result<(), SecretsError> {
    let shown = || crate::logging::escape_controls(name).into_owned();
    if name.is_empty() {
        return Err(SecretsError::Invalid("a secret name is empty".into()));
    }
    if name.len() > 1024 {
        return Err(SecretsError::Invalid(
            "a secret name is longer than 1024 bytes".into(),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(SecretsError::Invalid(format!(
            "secret name `{}` contains a control character",
            shown()
        )));
    }
    if name.contains(',') {
        return Err(SecretsError::Invalid(format!(
            "secret name `{}` contains `,`",
            shown()
        )));
    }
    if is_reserved(name) || name.split('/').any(is_reserved) {
        return Err(SecretsError::Invalid(format!(
            "secret name `{}` uses the reserved prefix `{RESERVED_PREFIX}`",
            shown()
        )));
    }
    Ok(())
}

/// The provider chosen through the API, if one was and the file is sound.
fn read_choice(path: &Path) -> Option<ProviderKind> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "Cannot read the secrets provider choice; using berth.toml's.");
            return None;
        }
    };
    match serde_json::from_slice::<Choice>(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|c| ProviderKind::parse(&c.provider_type).map_err(|e| e.to_string()))
    {
        Ok(kind) => Some(kind),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "The secrets provider choice is not valid; using berth.toml's.");
            None
        }
    }
}

/// Where the encrypted store and its key file are, as [`Secrets::open`]
/// finds them: `[secrets] store` or `<state_dir>/secrets.berthsec`;
/// `[secrets] key_file`, the default key file `main` found, or
/// `<state_dir>/secrets.key`.
pub fn store_paths(
    config: &SecretsConfig,
    default_key_file: Option<&Path>,
    state_dir: &Path,
) -> (PathBuf, PathBuf) {
    (
        config
            .store
            .clone()
            .unwrap_or_else(|| state_dir.join("secrets.berthsec")),
        config
            .key_file
            .clone()
            .or_else(|| default_key_file.map(Path::to_path_buf))
            .unwrap_or_else(|| state_dir.join("secrets.key")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_types_parse_and_print_back() {
        for s in ["encrypted", "environment", "none", "plugin:vault"] {
            assert_eq!(ProviderKind::parse(s).expect(s).to_string(), s);
        }
        for bad in ["", "1password", "plugin:", "Encrypted", "vault", "plugin"] {
            assert!(
                matches!(ProviderKind::parse(bad), Err(SecretsError::Invalid(_))),
                "{bad:?}"
            );
        }
        let e = ProviderKind::parse("1password").unwrap_err().to_string();
        assert!(e.contains("valid types"), "{e}");
        let e = ProviderKind::parse("x\ny").unwrap_err().to_string();
        assert!(!e.contains('\n'), "one line: {e:?}");
    }

    #[test]
    fn references_refuse_commas_controls_and_berths_own_names() {
        for ok in ["github-token", "vault/team/token", "GITHUB", "a b"] {
            check_reference(ok).expect(ok);
        }
        let long = "x".repeat(1025);
        for bad in [
            "",
            "a,target=B",
            "nul\0",
            "line\nbreak",
            "__berth_registry",
            "vault/__berth_x",
            long.as_str(),
        ] {
            assert!(
                matches!(check_reference(bad), Err(SecretsError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_hand_edited_choice_file_is_ignored_not_obeyed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CHOICE_FILE);
        assert_eq!(read_choice(&path), None, "absent");
        for garbage in [
            &b"not json"[..],
            br#"{"provider_type": "1password"}"#,
            br#"{"provider_type": "plugin:"}"#,
            br#"{"provider_type": 7}"#,
            b"",
        ] {
            std::fs::write(&path, garbage).expect("write");
            assert_eq!(
                read_choice(&path),
                None,
                "{}",
                String::from_utf8_lossy(garbage)
            );
        }
        std::fs::write(&path, br#"{"provider_type": "plugin:vault"}"#).expect("write");
        assert_eq!(
            read_choice(&path),
            Some(ProviderKind::Plugin("vault".into()))
        );
    }

    #[test]
    fn store_paths_prefer_the_configuration_then_main_then_the_state_dir() {
        let state = Path::new("/s");
        let mut config = SecretsConfig::default();
        assert_eq!(
            store_paths(&config, None, state),
            (state.join("secrets.berthsec"), state.join("secrets.key"))
        );
        assert_eq!(
            store_paths(&config, Some(Path::new("/c/berth/secrets.key")), state).1,
            Path::new("/c/berth/secrets.key")
        );
        config.store = Some("/x/store".into());
        config.key_file = Some("/x/key".into());
        assert_eq!(
            store_paths(&config, Some(Path::new("/c/k")), state),
            (PathBuf::from("/x/store"), PathBuf::from("/x/key"))
        );
    }
}
