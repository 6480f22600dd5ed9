//! Registries of MCP servers: berth's embedded catalogue and the
//! registries a user adds (a file, a URL, an MCP Registry API, a
//! registry-source plugin), each named, cached and refreshed on its own.
//!
//! - [`model`]: an entry (`server.json`) and its ToolHive views;
//! - [`catalog`]: one registry's entries, sorted, searched, paged;
//! - [`source`]: how each kind of source is read and cached;
//! - [`fetch`]: the guarded HTTP client every network source uses;
//! - [`run`]: a create request filled from an entry (run by name);
//! - [`Registries`] (here): the named registries, their configuration and
//!   persistence.
//!
//! Plugins implement [`RegistrySource`] (`src/plugins/registry.rs`).

use async_trait::async_trait;
use serde_json::Value;

/// One server entry of a registry.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerEntry {
    /// Its unique name in the source.
    pub name: String,
    /// The entry in ToolHive's registry format.
    pub entry: Value,
}

/// A page request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Case-insensitive text to match; `None` lists everything.
    pub query: Option<String>,
    /// Continue after an earlier page.
    pub cursor: Option<String>,
    /// The most entries wanted.
    pub limit: u32,
}

/// A page of entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The entries.
    pub servers: Vec<ServerEntry>,
    /// Present when more follow.
    pub next_cursor: Option<String>,
}

/// A registry of MCP servers.
#[async_trait]
pub trait RegistrySource: Send + Sync {
    /// Lists entries, a page at a time.
    async fn list(&self, query: ListQuery) -> Result<Page, RegistryError>;
    /// One entry by name.
    async fn get(&self, name: &str) -> Result<ServerEntry, RegistryError>;
}

pub mod auth;
pub mod catalog;
pub mod fetch;
pub mod model;
pub mod run;
pub mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use catalog::Miss;
use fetch::{FetchOptions, Fetcher};
use model::Server;
use source::{Cached, Ctx, Freshness, Snapshot, Source};

/// The registry every berth has, and the one a name-only request uses.
pub const DEFAULT_REGISTRY: &str = "default";

/// Why a registry operation failed. The API maps each to a status in
/// `src/api/error.rs`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No registry by that name.
    #[error("registry `{0}` not found")]
    UnknownRegistry(String),
    /// No entry by that name.
    #[error("server `{0}` not found in the registry")]
    NotFound(String),
    /// A short name several entries end with.
    #[error("several servers match `{name}`: {}; use the full name", candidates.join(", "))]
    Ambiguous {
        /// The name asked for.
        name: String,
        /// The full names it matches.
        candidates: Vec<String>,
    },
    /// The request was refused.
    #[error("{0}")]
    Invalid(String),
    /// A registry by that name exists.
    #[error("registry `{0}` already exists")]
    Exists(String),
    /// Declared in berth.toml: not changeable through the API.
    #[error(
        "registry `{0}` is declared in berth's configuration file and is read-only through the API"
    )]
    ReadOnly(String),
    /// `DELETE default`.
    #[error("Cannot remove the default registry")]
    DeleteDefault,
    /// The source could not be reached.
    #[error("{0}")]
    Unreachable(String),
    /// The source answered something that is not a registry.
    #[error("{0}")]
    ValidationFailed(String),
    /// The source is in ToolHive's legacy format.
    #[error("{0}")]
    LegacyFormat(String),
    /// The source needs a login.
    #[error("registry authentication required: {0}")]
    AuthRequired(String),
    /// A login could not start: the identity provider failed or refused.
    #[error("registry login failed: {0}")]
    LoginFailed(String),
    /// The source's upstream failed or could not be reached.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// The source refused the operation.
    #[error("registry access denied: {0}")]
    Denied(String),
    /// The source is broken (a plugin trapped or timed out).
    #[error("registry source failed: {0}")]
    Failed(String),
    /// berth could not save the change.
    #[error("cannot save the registry configuration: {0}")]
    Save(String),
}

/// A registry declared in berth.toml (`[[registries]]`): exactly one of
/// `url`, `api_url`, `local_path`, `plugin`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Its name (`default` replaces the embedded catalogue).
    pub name: String,
    /// A registry document's URL.
    pub url: Option<String>,
    /// An MCP Registry API's base URL.
    pub api_url: Option<String>,
    /// A local registry file.
    pub local_path: Option<PathBuf>,
    /// A registry-source plugin of `[[plugins]]`.
    pub plugin: Option<String>,
    /// Allow private addresses and plain HTTP for `url` / `api_url`.
    pub allow_private_ip: bool,
}

impl RegistryConfig {
    fn source(&self) -> Result<Source, String> {
        let given = [
            self.url.is_some(),
            self.api_url.is_some(),
            self.local_path.is_some(),
            self.plugin.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(format!(
                "registry `{}`: give exactly one of url, api_url, local_path, plugin",
                self.name
            ));
        }
        let allow_private = self.allow_private_ip;
        Ok(if let Some(url) = &self.url {
            Source::Url {
                url: url.clone(),
                allow_private,
            }
        } else if let Some(url) = &self.api_url {
            Source::Api {
                url: url.trim_end_matches('/').to_owned(),
                allow_private,
            }
        } else if let Some(path) = &self.local_path {
            if !path.is_absolute() {
                return Err(format!(
                    "registry `{}`: local_path must be absolute",
                    self.name
                ));
            }
            Source::File { path: path.clone() }
        } else {
            Source::Plugin {
                plugin: self.plugin.clone().unwrap_or_default(),
            }
        })
    }
}

/// OAuth settings of a registry (no secret in them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    /// The OIDC issuer.
    pub issuer: String,
    /// The public client's id.
    pub client_id: String,
    /// The audience asked for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub audience: String,
    /// The scopes asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// Where a registry was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The embedded default.
    Builtin,
    /// berth.toml: read-only through the API.
    Config,
    /// Added or changed through the API (kept in the state directory).
    Api,
}

/// One named registry.
#[derive(Debug)]
pub struct Registry {
    /// Its name.
    pub name: String,
    /// Where it was declared.
    pub origin: Origin,
    /// Where its entries come from.
    pub source: Source,
    /// Its OAuth settings.
    pub auth: Option<AuthConfig>,
    cached: tokio::sync::Mutex<Cached>,
}

/// A registry as stored in `registries.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    name: String,
    source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<AuthConfig>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredFile {
    registries: Vec<Stored>,
}

/// A change of source asked through the API (`PUT`/`POST` body).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SourceRequest {
    /// A registry document URL (or an API base URL, detected).
    pub url: Option<String>,
    /// An MCP Registry API base URL (or a document URL ending `.json`).
    pub api_url: Option<String>,
    /// A local file (absolute, `.json`, or `file://…`).
    pub local_path: Option<String>,
    /// A registry-source plugin (berth extension).
    pub plugin: Option<String>,
    /// Allow private addresses and plain HTTP.
    pub allow_private_ip: Option<bool>,
    /// OAuth settings.
    pub auth: Option<AuthConfig>,
}

/// Every named registry.
pub struct Registries {
    map: RwLock<BTreeMap<String, Arc<Registry>>>,
    ctx: Arc<Ctx>,
    file: PathBuf,
    admin: tokio::sync::Mutex<()>,
    /// Credentials sent to registry sources after a login.
    pub tokens: Arc<auth::TokenStore>,
    /// OAuth: discovery, device logins, token refreshes.
    pub oauth: Arc<auth::OAuth>,
}

impl std::fmt::Debug for Registries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registries")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Whether `name` can name a registry: lowercase letters, digits, `-`,
/// `_`, at most 63, starting with a letter or digit; not `auth` (a route).
pub fn valid_registry_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_'))
        && name != "auth"
}

impl Registry {
    fn new(name: &str, origin: Origin, source: Source, auth: Option<AuthConfig>) -> Self {
        Self {
            name: name.to_owned(),
            origin,
            source,
            auth,
            cached: tokio::sync::Mutex::new(Cached::default()),
        }
    }
}

impl Registries {
    /// The registries of berth.toml and those stored in `state_dir`
    /// (`registries.json`), plus the embedded `default` unless either
    /// replaces it. A stored registry that is no longer valid is skipped
    /// with a warning. Login tokens are kept in berth's own store of
    /// `secrets` (opened now when it exists; a plaintext token file of an
    /// earlier version is moved into it, see [`auth`]).
    pub async fn open(
        configs: &[RegistryConfig],
        state_dir: &Path,
        plugins: Option<Arc<crate::plugins::Plugins>>,
        secrets: Arc<crate::secrets::Secrets>,
    ) -> Result<Self, String> {
        Self::open_with(configs, state_dir, plugins, secrets, None).await
    }

    /// As [`Registries::open`], with request options that replace the
    /// defaults (tests: short timeouts, loopback sources).
    pub async fn open_with(
        configs: &[RegistryConfig],
        state_dir: &Path,
        plugins: Option<Arc<crate::plugins::Plugins>>,
        secrets: Arc<crate::secrets::Secrets>,
        fetch_override: Option<FetchOptions>,
    ) -> Result<Self, String> {
        let fetcher = Fetcher::new().map_err(|e| format!("registry HTTP client: {e}"))?;
        let tokens = Arc::new(auth::TokenStore::new(state_dir, secrets));
        tokens.load().await;
        let oauth = Arc::new(auth::OAuth::new(fetcher.clone(), tokens.clone()));
        let ctx = Arc::new(Ctx {
            fetcher,
            cache_dir: state_dir.join("registry-cache"),
            plugins,
            fetch_override,
        });
        let mut map = BTreeMap::new();
        map.insert(
            DEFAULT_REGISTRY.to_owned(),
            Arc::new(Registry::new(
                DEFAULT_REGISTRY,
                Origin::Builtin,
                Source::Embedded,
                None,
            )),
        );
        let file = state_dir.join("registries.json");
        match std::fs::read(&file) {
            Ok(bytes) => match serde_json::from_slice::<StoredFile>(&bytes) {
                Ok(stored) => {
                    for s in stored.registries {
                        if !valid_registry_name(&s.name) {
                            tracing::warn!(file = %file.display(), "A stored registry with an invalid name was ignored.");
                            continue;
                        }
                        map.insert(
                            s.name.clone(),
                            Arc::new(Registry::new(&s.name, Origin::Api, s.source, s.auth)),
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "The stored registries could not be read; only the configured ones are used.");
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
        }
        for c in configs {
            if !valid_registry_name(&c.name) {
                return Err(format!(
                    "registry name `{}` is invalid: lowercase letters, digits, - and _ (at most 63)",
                    crate::logging::escape_controls(&c.name)
                ));
            }
            if configs.iter().filter(|o| o.name == c.name).count() > 1 {
                return Err(format!("registry `{}` is declared twice", c.name));
            }
            let source = c.source()?;
            map.insert(
                c.name.clone(),
                Arc::new(Registry::new(&c.name, Origin::Config, source, None)),
            );
        }
        Ok(Self {
            map: RwLock::new(map),
            ctx,
            file,
            admin: tokio::sync::Mutex::new(()),
            tokens,
            oauth,
        })
    }

    /// Every registry, by name.
    pub fn list(&self) -> Vec<Arc<Registry>> {
        self.map
            .read()
            .expect("registry map lock")
            .values()
            .cloned()
            .collect()
    }

    /// One registry.
    pub fn get(&self, name: &str) -> Result<Arc<Registry>, RegistryError> {
        self.map
            .read()
            .expect("registry map lock")
            .get(name)
            .cloned()
            .ok_or_else(|| {
                RegistryError::UnknownRegistry(crate::logging::escape_controls(name).into_owned())
            })
    }

    /// A registry's data (from its cache while fresh). Each registry has
    /// its own lock: a slow source never holds another.
    pub async fn snapshot(&self, registry: &Registry) -> Result<Arc<Snapshot>, RegistryError> {
        self.load(registry, Freshness::Cached).await
    }

    async fn load(
        &self,
        registry: &Registry,
        freshness: Freshness,
    ) -> Result<Arc<Snapshot>, RegistryError> {
        // Computed only when the source is asked (not for a fresh cache).
        let headers: source::Headers<'_> = Box::pin(self.request_headers(registry));
        let mut cached = registry.cached.lock().await;
        source::load(
            &self.ctx,
            &registry.name,
            &registry.source,
            headers,
            &mut cached,
            freshness,
        )
        .await
    }

    /// The `Authorization` of a url/api source read: the stored token,
    /// refreshed first when it is an OAuth token about to expire. A failed
    /// refresh is [`RegistryError::AuthRequired`].
    async fn request_headers(
        &self,
        registry: &Registry,
    ) -> Result<Vec<(String, String)>, RegistryError> {
        if !matches!(registry.source, Source::Url { .. } | Source::Api { .. }) {
            return Ok(Vec::new());
        }
        if self.tokens.get(&registry.name).is_none()
            && let Err(e) = self.tokens.readable().await
        {
            // The token of a registry that needs a login may be in the
            // store that cannot be opened: say so. Others go without.
            if registry.auth.is_some() {
                return Err(RegistryError::AuthRequired(e.to_string()));
            }
            tracing::debug!(registry = %registry.name, error = %e, "Registry read without a token.");
        }
        let Some(mut token) = self.tokens.get(&registry.name) else {
            return Ok(Vec::new());
        };
        if let Some(cfg) = &registry.auth
            && token.kind == "oauth"
        {
            token = self
                .oauth
                .fresh(&registry.name, cfg, token)
                .await
                .map_err(|why| {
                    tracing::warn!(registry = %registry.name, error = %why, "Registry token refresh failed.");
                    RegistryError::AuthRequired(why)
                })?;
        }
        Ok(vec![(
            "Authorization".to_owned(),
            format!("Bearer {}", token.access_token),
        )])
    }

    /// Asks the source again now.
    pub async fn refresh(&self, name: &str) -> Result<Arc<Snapshot>, RegistryError> {
        let r = self.get(name)?;
        self.load(&r, Freshness::Force).await
    }

    /// An entry of registry `registry` by full or short name.
    pub async fn server(
        &self,
        registry: &str,
        name: &str,
    ) -> Result<(Arc<Registry>, Arc<Server>), RegistryError> {
        let r = self.get(registry)?;
        let snap = self.snapshot(&r).await?;
        let found = snap.catalog.lookup(name).cloned();
        match found {
            Ok(s) => Ok((r, s)),
            Err(Miss::NotFound) => Err(RegistryError::NotFound(
                crate::logging::escape_controls(name).into_owned(),
            )),
            Err(Miss::Ambiguous(candidates)) => Err(RegistryError::Ambiguous {
                name: name.to_owned(),
                candidates,
            }),
        }
    }

    /// Adds registry `name` (`POST`).
    pub async fn add(
        &self,
        name: &str,
        req: SourceRequest,
    ) -> Result<Arc<Registry>, RegistryError> {
        if !valid_registry_name(name) {
            return Err(RegistryError::Invalid(format!(
                "registry name `{}` is invalid: lowercase letters, digits, - and _ (at most 63, not `auth`)",
                crate::logging::escape_controls(name)
            )));
        }
        let _admin = self.admin.lock().await;
        if self.get(name).is_ok() {
            return Err(RegistryError::Exists(name.to_owned()));
        }
        if req_sources(&req) == 0 {
            return Err(RegistryError::Invalid(
                "give the registry's source: one of url, api_url, local_path or plugin".into(),
            ));
        }
        let r = self.checked(name, req).await?;
        self.install(r)
    }

    /// Changes registry `name`'s source and auth (`PUT`); on any error
    /// the previous source stays.
    pub async fn update(
        &self,
        name: &str,
        req: SourceRequest,
    ) -> Result<Arc<Registry>, RegistryError> {
        let _admin = self.admin.lock().await;
        let old = self.get(name)?;
        if old.origin == Origin::Config {
            return Err(RegistryError::ReadOnly(name.to_owned()));
        }
        if req_sources(&req) == 0 && name != DEFAULT_REGISTRY {
            return Err(RegistryError::Invalid(
                "give the registry's source: one of url, api_url, local_path or plugin".into(),
            ));
        }
        let r = self.checked(name, req).await?;
        let r = self.install(r)?;
        // A login started with the previous settings stores nothing.
        self.oauth.cancel(name);
        Ok(r)
    }

    /// Removes registry `name` (`DELETE`).
    pub async fn remove(&self, name: &str) -> Result<(), RegistryError> {
        if name == DEFAULT_REGISTRY {
            return Err(RegistryError::DeleteDefault);
        }
        let _admin = self.admin.lock().await;
        let old = self.get(name)?;
        if old.origin == Origin::Config {
            return Err(RegistryError::ReadOnly(name.to_owned()));
        }
        let mut next = self.map.read().expect("registry map lock").clone();
        next.remove(name);
        self.save(&next)?;
        *self.map.write().expect("registry map lock") = next;
        self.oauth.cancel(name);
        Ok(())
    }

    fn install(&self, r: Registry) -> Result<Arc<Registry>, RegistryError> {
        let r = Arc::new(r);
        let mut next = self.map.read().expect("registry map lock").clone();
        if r.name == DEFAULT_REGISTRY && r.source == Source::Embedded && r.auth.is_none() {
            next.insert(
                r.name.clone(),
                Arc::new(Registry::new(
                    DEFAULT_REGISTRY,
                    Origin::Builtin,
                    Source::Embedded,
                    None,
                )),
            );
        } else {
            next.insert(r.name.clone(), r.clone());
        }
        self.save(&next)?;
        *self.map.write().expect("registry map lock") = next;
        Ok(r)
    }

    fn save(&self, map: &BTreeMap<String, Arc<Registry>>) -> Result<(), RegistryError> {
        let stored = StoredFile {
            registries: map
                .values()
                .filter(|r| r.origin == Origin::Api)
                .map(|r| Stored {
                    name: r.name.clone(),
                    source: r.source.clone(),
                    auth: r.auth.clone(),
                })
                .collect(),
        };
        let bytes =
            serde_json::to_vec_pretty(&stored).map_err(|e| RegistryError::Save(e.to_string()))?;
        crate::state::write_atomic(&self.file, &bytes)
            .map_err(|e| RegistryError::Save(format!("{}: {e}", self.file.display())))
    }

    /// A registry built from `req`, its source detected, checked and read
    /// once (which fills its cache).
    async fn checked(&self, name: &str, req: SourceRequest) -> Result<Registry, RegistryError> {
        if req_sources(&req) > 1 {
            return Err(RegistryError::Invalid(
                "cannot specify more than one registry type (url, api_url, local_path or plugin)"
                    .into(),
            ));
        }
        if let Some(a) = &req.auth
            && (a.issuer.is_empty() || a.client_id.is_empty())
        {
            return Err(RegistryError::Invalid(
                "auth.issuer and auth.client_id are required".into(),
            ));
        }
        let allow_private = req.allow_private_ip.unwrap_or(false);
        let source = if let Some(path) = &req.local_path {
            let path = path.strip_prefix("file://").unwrap_or(path);
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(RegistryError::Invalid(format!(
                    "local_path must be an absolute path: {}",
                    crate::logging::escape_controls(&path.display().to_string())
                )));
            }
            if !path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
            {
                return Err(RegistryError::ValidationFailed(format!(
                    "failed to set local registry file: {}: the file must end in .json",
                    path.display()
                )));
            }
            if !path.is_file() {
                return Err(RegistryError::Invalid(format!(
                    "local registry file not found or not accessible: {}",
                    path.display()
                )));
            }
            Source::File { path }
        } else if let Some(plugin) = &req.plugin {
            Source::Plugin {
                plugin: plugin.clone(),
            }
        } else if let Some(url) = req.url.as_ref().or(req.api_url.as_ref()) {
            let as_api = req.url.is_none();
            self.detect(url, as_api, allow_private).await?
        } else {
            Source::Embedded
        };
        let auth = match req.auth {
            Some(a) => Some(self.oauth.configure(a).await.map_err(|e| {
                RegistryError::Invalid(format!(
                    "failed to configure registry auth: configuring OAuth: {e}"
                ))
            })?),
            None => None,
        };
        let r = Registry::new(name, Origin::Api, source, auth);
        let snap = match self.load(&r, Freshness::Force).await {
            Ok(snap) => snap,
            // With OAuth configured, a source that wants a login is
            // accepted: the login follows (ToolHive skips its probe then).
            Err(RegistryError::AuthRequired(why)) if r.auth.is_some() => {
                tracing::info!(registry = name, reason = %why, "Registry saved before its login.");
                return Ok(r);
            }
            Err(e) => return Err(e),
        };
        if let Some(why) = &snap.stale {
            return Err(RegistryError::Unavailable(why.clone()));
        }
        if snap.catalog.is_empty() {
            return Err(RegistryError::ValidationFailed(format!(
                "registry error for {} ({}): the source has no usable server entry",
                r.source.kind(),
                r.source.location()
            )));
        }
        Ok(r)
    }

    /// ToolHive's detection (spec 1.3.1): a URL ending in `.json` is a
    /// document; otherwise `/v0.1/servers` is probed and an API answer (or
    /// 401/403) makes it an API. `api_url` skips the probe.
    async fn detect(
        &self,
        url: &str,
        as_api: bool,
        allow_private: bool,
    ) -> Result<Source, RegistryError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| RegistryError::Invalid(format!("invalid registry URL: {e}")))?;
        match parsed.scheme() {
            "https" => {}
            "http" if allow_private => {}
            _ => {
                return Err(RegistryError::Invalid(
                    "invalid registry URL: URL must start with https:// (http:// only with allow_private_ip)".into(),
                ));
            }
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(RegistryError::Invalid(
                "invalid registry URL: credentials in the URL are not accepted; use auth".into(),
            ));
        }
        let base = url.trim_end_matches('/').to_owned();
        if parsed.path().to_ascii_lowercase().ends_with(".json") {
            return Ok(Source::Url {
                url: url.to_owned(),
                allow_private,
            });
        }
        if as_api {
            return Ok(Source::Api {
                url: base,
                allow_private,
            });
        }
        let mut opts = self.ctx.fetch_override.clone().unwrap_or_default();
        opts.private = if allow_private {
            fetch::PrivatePolicy::Allow
        } else {
            fetch::PrivatePolicy::Deny
        };
        opts.timeout = opts.timeout.min(std::time::Duration::from_secs(5));
        opts.max_bytes = 1 << 20;
        let probe = format!("{base}/v0.1/servers?limit=1&version=latest");
        let is_api = match self.ctx.fetcher.get(&probe, &opts).await {
            Ok(f) if f.status == 401 || f.status == 403 => true,
            Ok(f) if f.status == 200 => serde_json::from_slice::<serde_json::Value>(&f.body)
                .is_ok_and(|v| v["servers"].is_array() && v["metadata"].is_object()),
            _ => false,
        };
        Ok(if is_api {
            Source::Api {
                url: base,
                allow_private,
            }
        } else {
            Source::Url {
                url: url.to_owned(),
                allow_private,
            }
        })
    }
}

/// A registry's authentication state: `(auth_status, auth_type)`.
impl Registries {
    /// `none`, `configured` (OAuth settings, no login yet) or
    /// `authenticated` (a token is stored); and `oauth`, `bearer` or empty.
    pub fn auth_status(&self, r: &Registry) -> (&'static str, &'static str) {
        match (self.tokens.get(&r.name), &r.auth) {
            (Some(t), _) if t.kind == "oauth" => ("authenticated", "oauth"),
            (Some(_), _) => ("authenticated", "bearer"),
            (None, Some(_)) => ("configured", "oauth"),
            (None, None) => ("none", ""),
        }
    }

    /// Stores a pasted bearer token for `registry` and reads the source
    /// again with it.
    pub async fn login_with_token(&self, registry: &str, token: &str) -> Result<(), RegistryError> {
        let r = self.get(registry)?;
        if !matches!(r.source, Source::Url { .. } | Source::Api { .. }) {
            return Err(RegistryError::Invalid(format!(
                "registry `{registry}` reads a {} source, which takes no login",
                r.source.kind()
            )));
        }
        if token.is_empty()
            || token.len() > 16 * 1024
            || token.bytes().any(|b| !(0x21..0x7f).contains(&b))
        {
            return Err(RegistryError::Invalid(
                "the token must be printable ASCII without spaces, at most 16 KiB".into(),
            ));
        }
        self.tokens.ensure().await.map_err(token_error)?;
        self.tokens
            .put(
                registry,
                auth::Token {
                    access_token: token.to_owned(),
                    refresh_token: None,
                    expires_at: None,
                    kind: if r.auth.is_some() { "oauth" } else { "bearer" }.to_owned(),
                },
            )
            .map_err(token_error)?;
        Ok(())
    }

    /// Starts the device login of `registry` (OAuth configured), or
    /// returns the one pending; the token is stored in the background.
    pub async fn login(&self, registry: &str) -> Result<auth::DeviceLogin, RegistryError> {
        let r = self.get(registry)?;
        let Some(cfg) = &r.auth else {
            return Err(RegistryError::Invalid(format!(
                "Registry OAuth not configured; call PUT /api/v1beta/registry/{registry} with a client ID and issuer URL first, or log in with {{\"token\": …}}"
            )));
        };
        // Where the token will be kept must work before the user approves.
        self.tokens.ensure().await.map_err(token_error)?;
        self.oauth
            .start_login(&r.name, cfg)
            .await
            .map_err(RegistryError::LoginFailed)
    }

    /// Forgets `registry`'s token and cancels its pending login.
    pub fn logout(&self, registry: &str) -> Result<bool, RegistryError> {
        let r = self.get(registry)?;
        let cancelled = self.oauth.cancel(&r.name);
        let had = self.tokens.remove(&r.name).map_err(token_error)? || cancelled;
        if !had && r.auth.is_none() {
            return Err(RegistryError::Invalid(format!(
                "Registry OAuth not configured and no token stored for `{registry}`; call PUT /api/v1beta/registry/{registry} with auth, or log in with a token, first"
            )));
        }
        Ok(had)
    }
}

/// A token that could not be read or kept: berth's secrets store cannot
/// be used (503, with the reason).
fn token_error(e: auth::TokenError) -> RegistryError {
    RegistryError::Unavailable(e.to_string())
}

fn req_sources(req: &SourceRequest) -> usize {
    [
        req.url.is_some(),
        req.api_url.is_some(),
        req.local_path.is_some(),
        req.plugin.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count()
}
