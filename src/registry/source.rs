//! Where a registry's entries come from, and how each source is read,
//! cached and refreshed (spec 1.3, with its fixes):
//!
//! - `embedded`: the catalogue compiled into berth, parsed once.
//! - `file`: re-read when its modification time or size changes.
//! - `url`: a registry document over HTTP(S), revalidated with ETag /
//!   If-Modified-Since after `cache_secs`, kept in memory and on disk, so
//!   an offline berth (restarted or not) serves the last good copy with
//!   its age.
//! - `api`: an MCP Registry API, walked page by page (`cursor`), cached an
//!   hour in memory and on disk, stale copy served on errors except
//!   authentication errors.
//! - `plugin`: a registry-source wasm plugin, walked page by page.
//!
//! Every network read goes through [`super::fetch`] (address policy,
//! 32 MiB cap, 30 s bound). A failure is never remembered: the next read
//! tries again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::RegistryError;
use super::catalog::{Catalog, CatalogError, MAX_SERVERS};
use super::fetch::{FetchError, FetchOptions, Fetched, Fetcher, PrivatePolicy};
use super::model::ServerJson;
use crate::registry::{ListQuery, RegistrySource};

/// The largest registry document or API page read.
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024 * 1024;
/// How long an API listing is used before it is fetched again.
pub const API_TTL: Duration = Duration::from_secs(3600);
/// How long a URL document is used before it is revalidated.
pub const URL_TTL: Duration = Duration::from_secs(300);
/// How long a plugin listing is used before it is asked again.
pub const PLUGIN_TTL: Duration = Duration::from_secs(60);
/// The bound of a whole API walk.
const API_WALK_TIMEOUT: Duration = Duration::from_secs(60);

/// The catalogue compiled into berth.
pub static EMBEDDED: &[u8] = include_bytes!("data/catalog.json");

/// A registry's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Source {
    /// The embedded catalogue.
    Embedded,
    /// A local JSON file (absolute path).
    File {
        /// Its path.
        path: PathBuf,
    },
    /// A registry document on a URL.
    Url {
        /// Its URL.
        url: String,
        /// Private addresses and plain HTTP allowed.
        #[serde(default)]
        allow_private: bool,
    },
    /// An MCP Registry API.
    Api {
        /// Its base URL (without `/v0.1`).
        url: String,
        /// Private addresses and plain HTTP allowed.
        #[serde(default)]
        allow_private: bool,
    },
    /// A registry-source plugin.
    Plugin {
        /// The plugin's name in `[[plugins]]`.
        plugin: String,
    },
}

impl Source {
    /// ToolHive's `type`: `default`, `file`, `url`, `api`; `plugin` is
    /// berth's.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Embedded => "default",
            Self::File { .. } => "file",
            Self::Url { .. } => "url",
            Self::Api { .. } => "api",
            Self::Plugin { .. } => "plugin",
        }
    }

    /// ToolHive's `source`: the URL, path or plugin name; empty for the
    /// embedded catalogue.
    pub fn location(&self) -> String {
        match self {
            Self::Embedded => String::new(),
            Self::File { path } => path.display().to_string(),
            Self::Url { url, .. } | Self::Api { url, .. } => url.clone(),
            Self::Plugin { plugin } => plugin.clone(),
        }
    }

    fn policy(allow_private: bool) -> PrivatePolicy {
        if allow_private {
            PrivatePolicy::Allow
        } else {
            PrivatePolicy::Deny
        }
    }
}

/// A registry's data at one moment.
#[derive(Debug)]
pub struct Snapshot {
    /// The entries.
    pub catalog: Arc<Catalog>,
    /// When the data was fetched from the source.
    pub fetched_at: OffsetDateTime,
    /// Why the last refresh failed, when the data served is older than it
    /// should be.
    pub stale: Option<String>,
}

/// What a registry keeps between reads (behind its own lock).
#[derive(Debug, Default)]
pub(super) struct Cached {
    pub(super) snapshot: Option<Arc<Snapshot>>,
    /// `file`: the modification time and size the snapshot was read at.
    stamp: Option<(SystemTime, u64)>,
    /// `url`: validators of the cached copy.
    etag: Option<String>,
    last_modified: Option<String>,
    /// When the source was last asked (success or not).
    checked: Option<Instant>,
    /// Whether the on-disk copy was looked at.
    disk_tried: bool,
}

/// What loading needs besides the source.
pub(super) struct Ctx {
    pub(super) fetcher: Fetcher,
    pub(super) cache_dir: PathBuf,
    pub(super) plugins: Option<Arc<crate::plugins::Plugins>>,
    /// Extra request options (tests shorten timeouts and pick the private
    /// policy); `None` in production.
    pub(super) fetch_override: Option<FetchOptions>,
}

impl Ctx {
    fn options(&self, allow_private: bool, headers: Vec<(String, String)>) -> FetchOptions {
        let mut o = self.fetch_override.clone().unwrap_or_default();
        if self.fetch_override.is_none() || allow_private {
            o.private = Source::policy(allow_private);
        }
        if self.fetch_override.is_none() {
            o.max_bytes = MAX_DOCUMENT_BYTES;
        }
        o.headers.extend(headers);
        o
    }
}

/// The request headers of a network read (`Authorization`), computed only
/// when the source is actually asked: an OAuth token is refreshed then, and
/// a failure is returned as is, never masked by a stale copy.
pub(super) type Headers<'a> =
    futures::future::BoxFuture<'a, Result<Vec<(String, String)>, RegistryError>>;

/// How a read should treat the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Freshness {
    /// The cache within its time to live.
    Cached,
    /// Ask the source now (refresh, or validation of a new source).
    Force,
}

/// The embedded catalogue, parsed once.
pub(super) fn embedded() -> Arc<Snapshot> {
    static SNAPSHOT: std::sync::LazyLock<Arc<Snapshot>> = std::sync::LazyLock::new(|| {
        let catalog =
            Catalog::parse(EMBEDDED, true).expect("the embedded catalogue is valid (tested)");
        let fetched_at = OffsetDateTime::parse(
            &catalog.last_updated,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Arc::new(Snapshot {
            catalog: Arc::new(catalog),
            fetched_at,
            stale: None,
        })
    });
    SNAPSHOT.clone()
}

/// Reads `source` through `cached`.
pub(super) async fn load(
    ctx: &Ctx,
    name: &str,
    source: &Source,
    headers: Headers<'_>,
    cached: &mut Cached,
    freshness: Freshness,
) -> Result<Arc<Snapshot>, RegistryError> {
    match source {
        Source::Embedded => Ok(embedded()),
        Source::File { path } => load_file(path, cached).await,
        Source::Url { url, allow_private } => {
            load_url(ctx, name, url, *allow_private, headers, cached, freshness).await
        }
        Source::Api { url, allow_private } => {
            load_api(ctx, name, url, *allow_private, headers, cached, freshness).await
        }
        Source::Plugin { plugin } => load_plugin(ctx, plugin, cached, freshness).await,
    }
}

async fn load_file(path: &Path, cached: &mut Cached) -> Result<Arc<Snapshot>, RegistryError> {
    let unreadable = |e: std::io::Error| {
        RegistryError::Unavailable(format!(
            "cannot read the registry file {}: {e}",
            path.display()
        ))
    };
    let meta = tokio::fs::metadata(path).await.map_err(unreadable)?;
    let stamp = (meta.modified().map_err(unreadable)?, meta.len());
    if let Some(s) = &cached.snapshot
        && cached.stamp == Some(stamp)
    {
        return Ok(s.clone());
    }
    if meta.len() > MAX_DOCUMENT_BYTES as u64 {
        return Err(RegistryError::Invalid(format!(
            "the registry file {} is larger than {MAX_DOCUMENT_BYTES} bytes",
            path.display()
        )));
    }
    let bytes = tokio::fs::read(path).await.map_err(unreadable)?;
    let catalog = parse(&bytes, false)?;
    let snapshot = Arc::new(Snapshot {
        catalog: Arc::new(catalog),
        fetched_at: OffsetDateTime::now_utc(),
        stale: None,
    });
    cached.snapshot = Some(snapshot.clone());
    cached.stamp = Some(stamp);
    Ok(snapshot)
}

fn parse(bytes: &[u8], require_entries: bool) -> Result<Catalog, RegistryError> {
    let bytes = bytes.to_vec();
    let catalog = Catalog::parse(&bytes, require_entries).map_err(RegistryError::from)?;
    for w in catalog.warnings.iter().take(20) {
        tracing::warn!(warning = %crate::logging::escape_controls(w), "Registry entry skipped.");
    }
    Ok(catalog)
}

/// The on-disk copy of a `url` or `api` source.
#[derive(Serialize, Deserialize)]
struct DiskCopy {
    url: String,
    #[serde(with = "time::serde::rfc3339")]
    fetched_at: OffsetDateTime,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    last_modified: Option<String>,
    document: Box<serde_json::value::RawValue>,
}

fn disk_path(ctx: &Ctx, name: &str, url: &str) -> PathBuf {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(url.as_bytes());
    let hex: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    ctx.cache_dir.join(format!("{name}-{hex}.json"))
}

/// Fills `cached` from the disk copy when it has nothing yet. With a
/// `ttl`, a copy younger than it counts as just checked (an API listing is
/// not walked again at every start); without, the source is asked at the
/// first read (a URL revalidates cheaply with its ETag).
async fn from_disk(ctx: &Ctx, name: &str, url: &str, cached: &mut Cached, ttl: Option<Duration>) {
    if cached.disk_tried || cached.snapshot.is_some() {
        return;
    }
    cached.disk_tried = true;
    let path = disk_path(ctx, name, url);
    let Ok(bytes) = tokio::fs::read(&path).await else {
        return;
    };
    let copy: DiskCopy = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(registry = name, path = %path.display(), error = %e, "Unreadable registry cache file ignored.");
            return;
        }
    };
    if copy.url != url {
        return;
    }
    match Catalog::parse(copy.document.get().as_bytes(), false) {
        Ok(catalog) => {
            let age = OffsetDateTime::now_utc() - copy.fetched_at;
            if let Some(ttl) = ttl
                && age.is_positive()
                && let Ok(age) = Duration::try_from(age)
                && age < ttl
            {
                cached.checked = Instant::now().checked_sub(age);
            }
            cached.snapshot = Some(Arc::new(Snapshot {
                catalog: Arc::new(catalog),
                fetched_at: copy.fetched_at,
                stale: None,
            }));
            cached.etag = copy.etag;
            cached.last_modified = copy.last_modified;
        }
        Err(e) => {
            tracing::warn!(registry = name, path = %path.display(), error = %e, "Invalid registry cache file ignored.");
        }
    }
}

async fn to_disk(ctx: &Ctx, name: &str, url: &str, cached: &Cached, document: &[u8]) {
    let Some(s) = &cached.snapshot else { return };
    let Ok(raw) =
        serde_json::value::RawValue::from_string(String::from_utf8_lossy(document).into_owned())
    else {
        return;
    };
    let copy = DiskCopy {
        url: url.to_owned(),
        fetched_at: s.fetched_at,
        etag: cached.etag.clone(),
        last_modified: cached.last_modified.clone(),
        document: raw,
    };
    let path = disk_path(ctx, name, url);
    let dir = ctx.cache_dir.clone();
    let result = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        let bytes = serde_json::to_vec(&copy).map_err(std::io::Error::other)?;
        crate::state::write_atomic(&path, &bytes)
    })
    .await;
    if !matches!(result, Ok(Ok(()))) {
        tracing::warn!(registry = name, "Could not write the registry cache file.");
    }
}

/// Serves the cached snapshot marked stale with `why`, or fails with `err`.
fn stale_or(
    cached: &mut Cached,
    why: &str,
    err: RegistryError,
) -> Result<Arc<Snapshot>, RegistryError> {
    match &cached.snapshot {
        Some(s) => {
            let stale = Arc::new(Snapshot {
                catalog: s.catalog.clone(),
                fetched_at: s.fetched_at,
                stale: Some(why.to_owned()),
            });
            cached.snapshot = Some(stale.clone());
            Ok(stale)
        }
        None => Err(err),
    }
}

fn fresh(cached: &Cached, ttl: Duration, freshness: Freshness) -> Option<Arc<Snapshot>> {
    if freshness == Freshness::Force {
        return None;
    }
    let s = cached.snapshot.as_ref()?;
    cached
        .checked
        .is_some_and(|t| t.elapsed() < ttl)
        .then(|| s.clone())
}

pub(super) fn fetch_error(url: &str, e: FetchError) -> RegistryError {
    if e.is_connectivity() {
        RegistryError::Unreachable(format!("registry at {url} is unreachable: {e}"))
    } else {
        match e {
            FetchError::InvalidUrl(m) | FetchError::InsecureScheme(m) => RegistryError::Invalid(m),
            other => RegistryError::Unavailable(format!(
                "upstream registry at {url} is unavailable: {other}"
            )),
        }
    }
}

async fn load_url(
    ctx: &Ctx,
    name: &str,
    url: &str,
    allow_private: bool,
    headers: Headers<'_>,
    cached: &mut Cached,
    freshness: Freshness,
) -> Result<Arc<Snapshot>, RegistryError> {
    from_disk(ctx, name, url, cached, None).await;
    if let Some(s) = fresh(cached, URL_TTL, freshness) {
        return Ok(s);
    }
    let mut opts = ctx.options(allow_private, headers.await?);
    opts.headers
        .push(("Accept".into(), "application/json".into()));
    if cached.snapshot.is_some() {
        opts.if_none_match = cached.etag.clone();
        opts.if_modified_since = cached.last_modified.clone();
    }
    cached.checked = Some(Instant::now());
    let fetched: Fetched = match ctx.fetcher.get(url, &opts).await {
        Ok(f) => f,
        Err(e) => {
            let why = e.to_string();
            return stale_or(cached, &why, fetch_error(url, e));
        }
    };
    if fetched.status == 304
        && let Some(s) = &cached.snapshot
    {
        let s = Arc::new(Snapshot {
            catalog: s.catalog.clone(),
            fetched_at: OffsetDateTime::now_utc(),
            stale: None,
        });
        cached.snapshot = Some(s.clone());
        return Ok(s);
    }
    if fetched.status != 200 {
        let err = RegistryError::Unavailable(format!(
            "upstream registry at {url} is unavailable: status {}",
            fetched.status
        ));
        return stale_or(cached, &format!("status {}", fetched.status), err);
    }
    let catalog = match parse(&fetched.body, true) {
        Ok(c) => c,
        Err(e) => {
            let why = e.to_string();
            return stale_or(cached, &why, e);
        }
    };
    cached.snapshot = Some(Arc::new(Snapshot {
        catalog: Arc::new(catalog),
        fetched_at: OffsetDateTime::now_utc(),
        stale: None,
    }));
    cached.etag = fetched.etag;
    cached.last_modified = fetched.last_modified;
    to_disk(ctx, name, url, cached, &fetched.body).await;
    Ok(cached.snapshot.clone().expect("just set"))
}

/// One page of an MCP Registry API listing; items are parsed one by one
/// (a bad item is skipped, not the page).
#[derive(Deserialize)]
struct ApiPage<'a> {
    #[serde(borrow)]
    servers: Vec<&'a serde_json::value::RawValue>,
    #[serde(default)]
    metadata: ApiMetadata,
}

#[derive(Deserialize)]
struct ApiItem {
    server: ServerJson,
}

#[derive(Deserialize, Default)]
struct ApiMetadata {
    #[serde(default, rename = "nextCursor")]
    next_cursor: Option<String>,
}

async fn load_api(
    ctx: &Ctx,
    name: &str,
    url: &str,
    allow_private: bool,
    headers: Headers<'_>,
    cached: &mut Cached,
    freshness: Freshness,
) -> Result<Arc<Snapshot>, RegistryError> {
    from_disk(ctx, name, url, cached, Some(API_TTL)).await;
    if let Some(s) = fresh(cached, API_TTL, freshness) {
        return Ok(s);
    }
    let headers = headers.await?;
    cached.checked = Some(Instant::now());
    let walked = tokio::time::timeout(API_WALK_TIMEOUT, walk_api(ctx, url, allow_private, headers))
        .await
        .unwrap_or_else(|_| {
            Err(RegistryError::Unreachable(format!(
                "registry at {url} is unreachable: the listing took longer than {}s",
                API_WALK_TIMEOUT.as_secs()
            )))
        });
    let (servers, mut warnings) = match walked {
        Ok(s) => s,
        // Authentication errors are never masked by a stale copy.
        Err(e @ RegistryError::AuthRequired(_)) => return Err(e),
        Err(e) => {
            let why = e.to_string();
            return stale_or(cached, &why, e);
        }
    };
    let now = OffsetDateTime::now_utc();
    let stamp = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut catalog = Catalog::from_entries(servers, &mut warnings);
    catalog.last_updated = stamp.clone();
    for w in warnings.iter().take(20) {
        tracing::warn!(registry = name, warning = %crate::logging::escape_controls(w), "Registry entry skipped.");
    }
    catalog.warnings = warnings;
    let bytes = serde_json::to_vec(&json!({
        "version": "1.0.0",
        "meta": {"last_updated": stamp},
        "data": {"servers": catalog.servers().iter().map(|s| &s.json).collect::<Vec<_>>()},
    }))
    .unwrap_or_default();
    cached.snapshot = Some(Arc::new(Snapshot {
        catalog: Arc::new(catalog),
        fetched_at: now,
        stale: None,
    }));
    to_disk(ctx, name, url, cached, &bytes).await;
    Ok(cached.snapshot.clone().expect("just set"))
}

/// The API's `/v0.1/servers` URL for a page.
fn api_page_url(base: &str, cursor: Option<&str>, limit: usize) -> String {
    let mut u = format!(
        "{}/v0.1/servers?limit={limit}&version=latest",
        base.trim_end_matches('/')
    );
    if let Some(c) = cursor {
        u.push_str("&cursor=");
        u.push_str(&url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>());
    }
    u
}

async fn walk_api(
    ctx: &Ctx,
    base: &str,
    allow_private: bool,
    headers: Vec<(String, String)>,
) -> Result<(Vec<ServerJson>, Vec<String>), RegistryError> {
    let mut opts = ctx.options(allow_private, headers);
    opts.headers
        .push(("Accept".into(), "application/json".into()));
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0usize;
    loop {
        let page_url = api_page_url(base, cursor.as_deref(), 100);
        let fetched = ctx
            .fetcher
            .get(&page_url, &opts)
            .await
            .map_err(|e| fetch_error(base, e))?;
        match fetched.status {
            200 => {}
            401 | 403 => {
                return Err(RegistryError::AuthRequired(format!(
                    "the registry API at {base} answered {}",
                    fetched.status
                )));
            }
            s => {
                return Err(RegistryError::Unavailable(format!(
                    "upstream registry at {base} is unavailable: status {s}"
                )));
            }
        }
        let page: ApiPage = serde_json::from_slice(&fetched.body).map_err(|e| {
            RegistryError::ValidationFailed(format!(
                "the registry API at {base} answered something that is not a server list: {e}"
            ))
        })?;
        for (i, item) in page.servers.into_iter().enumerate() {
            match serde_json::from_str::<ApiItem>(item.get()) {
                Ok(item) => out.push(item.server),
                Err(e) => warnings.push(format!("page {pages} item {i}: {e}")),
            }
        }
        pages += 1;
        if out.len() > MAX_SERVERS {
            tracing::warn!(
                url = base,
                "Registry API lists more than {MAX_SERVERS} servers; the rest are ignored."
            );
            out.truncate(MAX_SERVERS);
            break;
        }
        match page.metadata.next_cursor {
            Some(next) if !next.is_empty() && cursor.as_deref() != Some(next.as_str()) => {
                cursor = Some(next);
            }
            _ => break,
        }
        // A server that never ends its cursor chain with tiny pages.
        if pages > MAX_SERVERS {
            break;
        }
    }
    Ok((out, warnings))
}

async fn load_plugin(
    ctx: &Ctx,
    plugin: &str,
    cached: &mut Cached,
    freshness: Freshness,
) -> Result<Arc<Snapshot>, RegistryError> {
    if let Some(s) = fresh(cached, PLUGIN_TTL, freshness) {
        return Ok(s);
    }
    let plugins = ctx.plugins.as_ref().ok_or_else(|| {
        RegistryError::Invalid(format!("no plugin `{plugin}`: berth has no [[plugins]]"))
    })?;
    let source: Arc<dyn RegistrySource> = plugins
        .registry(plugin)
        .map_err(|e| RegistryError::Invalid(e.to_string()))?;
    cached.checked = Some(Instant::now());
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    let mut cursor = None;
    let result: Result<(), RegistryError> = async {
        loop {
            let page = source
                .list(ListQuery {
                    query: None,
                    cursor: cursor.take(),
                    limit: 500,
                })
                .await?;
            for e in page.servers {
                match ServerJson::from_plugin_entry(&e.name, &e.entry) {
                    Ok(s) => entries.push(s),
                    Err(w) => warnings.push(w),
                }
            }
            match page.next_cursor {
                Some(c) if entries.len() < MAX_SERVERS => cursor = Some(c),
                _ => return Ok(()),
            }
        }
    }
    .await;
    if let Err(e) = result {
        let why = e.to_string();
        return stale_or(cached, &why, e);
    }
    let mut catalog = Catalog::from_entries(entries, &mut warnings);
    catalog.last_updated = OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    for w in warnings.iter().take(20) {
        tracing::warn!(plugin, warning = %crate::logging::escape_controls(w), "Registry entry skipped.");
    }
    catalog.warnings = warnings;
    let s = Arc::new(Snapshot {
        catalog: Arc::new(catalog),
        fetched_at: OffsetDateTime::now_utc(),
        stale: None,
    });
    cached.snapshot = Some(s.clone());
    Ok(s)
}

impl From<CatalogError> for RegistryError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Legacy => RegistryError::LegacyFormat(e.to_string()),
            CatalogError::Invalid(_) | CatalogError::Empty => {
                RegistryError::ValidationFailed(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalogue_is_valid_entry_by_entry() {
        let s = embedded();
        let raw: serde_json::Value = serde_json::from_slice(EMBEDDED).expect("JSON");
        let listed = raw["data"]["servers"].as_array().expect("servers").len();
        assert!(s.catalog.warnings.is_empty(), "{:?}", s.catalog.warnings);
        assert_eq!(s.catalog.len(), listed, "no entry skipped");
        assert!(listed >= 24, "a few dozen servers");
        let mut short = std::collections::HashSet::new();
        for server in s.catalog.servers() {
            let name = server.name();
            assert!(
                short.insert(server.short_name().to_owned()),
                "{name}: short name taken twice"
            );
            let j = &server.json;
            assert!(
                !j.description.is_empty() && j.description.chars().count() <= 100,
                "{name}: description"
            );
            assert!(!j.version.is_empty(), "{name}: version");
            assert!(!server.runs_on().is_empty(), "{name}: no way to run");
            for p in &j.packages {
                match p.registry_type.as_str() {
                    "npm" | "pypi" => {
                        assert!(
                            !p.version.is_empty()
                                && p.version != "latest"
                                && p.version
                                    .chars()
                                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
                            "{name}: {} must be pinned",
                            p.identifier
                        );
                        berth_container::Package::parse(&server.package_ref().expect("ref"))
                            .expect("a package reference")
                            .unwrap_or_else(|e| panic!("{name}: {e}"));
                    }
                    "oci" => {
                        let (_, tag) = p.identifier.rsplit_once(':').expect("tagged");
                        assert!(
                            tag != "latest" && !tag.contains('/'),
                            "{name}: {} must be pinned",
                            p.identifier
                        );
                    }
                    other => panic!("{name}: package type {other}"),
                }
                for e in &p.environment_variables {
                    assert!(
                        crate::registry::model::valid_env_name(&e.name),
                        "{name}: {}",
                        e.name
                    );
                    assert!(!e.description.is_empty(), "{name}: {} undocumented", e.name);
                }
            }
            for r in &j.remotes {
                assert!(r.url.starts_with("https://"), "{name}: remote over https");
            }
        }
        for wanted in [
            "fetch",
            "osv",
            "github",
            "filesystem",
            "memory",
            "time",
            "everything",
            "git",
        ] {
            assert!(short.contains(wanted), "the catalogue names `{wanted}`");
        }
        let everything = s.catalog.lookup("everything").expect("everything");
        assert!(
            everything.native.is_some(),
            "everything runs natively (npm)"
        );
        let time = s.catalog.lookup("time").expect("time");
        assert_eq!(
            time.native_package().map(|p| p.registry_type.as_str()),
            Some("pypi")
        );
        assert!(
            s.catalog.lookup("github").expect("github").native.is_none(),
            "an OCI-only entry"
        );
    }

    #[test]
    fn api_page_urls_escape_the_cursor() {
        assert_eq!(
            api_page_url("https://r.example/", Some("a/b&c"), 100),
            "https://r.example/v0.1/servers?limit=100&version=latest&cursor=a%2Fb%26c"
        );
    }
}
