//! The WebAssembly plugin host: components implementing a world of
//! `berth:plugin` (see `wit/`), loaded with wasmtime.
//!
//! Each `[[plugins]]` entry is compiled once (or loaded from the on-disk
//! cache), checked against the world of its declared kind and
//! pre-instantiated. Calls run on pooled instances, each with its own
//! `Store`: a memory limit, a deadline (epoch interruption, yielding to
//! tokio every tick), no filesystem, environment or network unless granted.
//! A trap or a timeout fails only that call; the instance is dropped and a
//! fresh one made from the `InstancePre` for the next call.

mod engine;
mod host;
mod middleware;
mod outbound;
mod registry;
mod secrets;
mod v0_1;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use crate::proxy::{Chain, Middleware};
use crate::registry::RegistrySource;
use crate::secrets::SecretsProvider;
use host::HostState;
pub use middleware::PluginMiddleware;
pub use registry::PluginRegistry;
pub use secrets::PluginSecrets;

/// What a plugin is for: which world it implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Proxy middleware (`middleware-plugin`).
    Middleware,
    /// A registry of MCP servers (`registry-source-plugin`).
    RegistrySource,
    /// A secrets store (`secrets-provider-plugin`).
    SecretsProvider,
}

impl PluginKind {
    /// The world's name.
    pub fn world(self) -> &'static str {
        match self {
            Self::Middleware => "middleware-plugin",
            Self::RegistrySource => "registry-source-plugin",
            Self::SecretsProvider => "secrets-provider-plugin",
        }
    }

    fn export(self) -> &'static str {
        match self {
            Self::Middleware => v0_1::MIDDLEWARE_EXPORT,
            Self::RegistrySource => v0_1::REGISTRY_EXPORT,
            Self::SecretsProvider => v0_1::SECRETS_EXPORT,
        }
    }
}

/// A directory a plugin may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the plugin sees it (e.g. `/data`).
    pub guest: String,
    /// Read-only unless `false`.
    #[serde(default = "yes")]
    pub read_only: bool,
}

fn yes() -> bool {
    true
}

/// What a plugin may touch beyond its own memory. Nothing by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Permissions {
    /// Destinations of outbound HTTP: `host`, `host:port`, `*.domain[:port]`.
    pub allow_http: Vec<String>,
    /// Let granted names resolve to loopback, private or link-local
    /// addresses (off: such answers are refused, against SSRF and DNS
    /// rebinding).
    pub allow_private: bool,
    /// Environment variables the plugin sees (values given here; berth's
    /// own environment is never passed).
    pub env: BTreeMap<String, String>,
    /// Directories the plugin sees.
    pub dirs: Vec<DirGrant>,
}

/// One `[[plugins]]` entry of berth.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Unique name, used in `middleware_configs` and the API.
    pub name: String,
    /// Which world it implements.
    pub kind: PluginKind,
    /// The component (`.wasm`).
    pub path: PathBuf,
    /// Its configuration, given to it as JSON by `host.config`.
    #[serde(default)]
    pub config: serde_json::Map<String, Value>,
    /// What it may touch.
    #[serde(default)]
    pub permissions: Permissions,
    /// Middleware only: attach to every stdio workload (before the
    /// workload's own middleware).
    #[serde(default)]
    pub global: bool,
    /// Deadline of one call in milliseconds (default: 100 for middleware,
    /// 5000 for other kinds).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Linear memory limit of one instance, in bytes.
    #[serde(default)]
    pub memory_limit_bytes: Option<usize>,
}

/// Settings shared by all plugins (`[plugin_host]` in berth.toml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Default deadline of a middleware call, in milliseconds.
    pub middleware_timeout_ms: u64,
    /// Default deadline of a registry or secrets call, in milliseconds.
    pub call_timeout_ms: u64,
    /// Default and largest linear memory of one instance, in bytes.
    pub memory_limit_bytes: usize,
    /// Instances alive at once, across all plugins.
    pub max_instances: u32,
    /// Idle instances kept per plugin use (workload attachment). Instances
    /// are made only when that many calls run at once, so this bounds what
    /// a burst leaves behind (about 40 KiB each for a small plugin), and a
    /// concurrency above it pays an instantiation per call.
    pub pool_size: usize,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            middleware_timeout_ms: 100,
            call_timeout_ms: 5000,
            memory_limit_bytes: 64 * 1024 * 1024,
            max_instances: 1000,
            pool_size: 64,
        }
    }
}

/// Why a plugin cannot be loaded or used.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The wasm engine could not be set up.
    #[error("{0}")]
    Engine(String),
    /// The configuration is wrong.
    #[error("invalid plugin configuration: {0}")]
    Config(String),
    /// The file cannot be read.
    #[error("cannot read plugin {path}: {why}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The file is not a valid component.
    #[error("{path} is not a valid WebAssembly component: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The component does not implement its kind's world.
    #[error("plugin `{plugin}` does not fit the `{world}` world: {why}")]
    WrongWorld {
        /// The plugin.
        plugin: String,
        /// The world it was loaded as.
        world: &'static str,
        /// What is missing.
        why: String,
    },
    /// No plugin by that name.
    #[error("plugin `{0}` not found")]
    NotFound(String),
    /// The plugin is not of the kind needed.
    #[error("plugin `{name}` is a {actual:?} plugin, not {wanted:?}")]
    WrongKind {
        /// The plugin.
        name: String,
        /// Its kind.
        actual: PluginKind,
        /// The kind needed.
        wanted: PluginKind,
    },
    /// The plugin failed to load and is not usable.
    #[error("plugin `{0}` is not loaded: {1}")]
    Unavailable(String, String),
}

/// How a call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The plugin did not finish in time.
    #[error("plugin `{plugin}` timed out after {ms} ms")]
    Timeout {
        /// The plugin.
        plugin: String,
        /// Its deadline.
        ms: u64,
    },
    /// The plugin went past its memory limit.
    #[error("plugin `{plugin}` exceeded its memory limit of {limit} bytes")]
    Memory {
        /// The plugin.
        plugin: String,
        /// The limit.
        limit: usize,
    },
    /// The plugin trapped.
    #[error("plugin `{plugin}` trapped: {why}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The trap.
        why: String,
    },
    /// The plugin is not usable.
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// Counters of one plugin.
#[derive(Debug, Default)]
struct Stats {
    calls: AtomicU64,
    errors: AtomicU64,
    traps: AtomicU64,
    /// The last call times in microseconds (a ring).
    recent: Mutex<(Vec<u32>, usize)>,
    /// Every call's time, for `/metrics`.
    latency: crate::telemetry::metrics::Histogram,
}

const RECENT: usize = 1024;

impl Stats {
    fn record(&self, took: Duration) {
        self.latency.observe(took);
        let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        let mut r = self.recent.lock().expect("stats lock");
        let (buf, next) = &mut *r;
        if buf.len() < RECENT {
            buf.push(us);
        } else {
            buf[*next] = us;
        }
        *next = (*next + 1) % RECENT;
    }

    fn p50_us(&self) -> Option<u32> {
        let mut v = self.recent.lock().expect("stats lock").0.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        Some(v[v.len() / 2])
    }
}

/// A compiled, pre-instantiated plugin.
pub(crate) struct Compiled {
    generation: u64,
    pre: KindPre,
}

pub(crate) enum KindPre {
    Middleware(v0_1::middleware::MiddlewarePluginPre<HostState>),
    Registry(v0_1::registry::RegistrySourcePluginPre<HostState>),
    Secrets(v0_1::secrets::SecretsProviderPluginPre<HostState>),
}

/// The state of a plugin, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// Loaded and usable.
    Loaded,
    /// Not usable; see `error`.
    Failed,
}

/// A plugin as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PluginInfo {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: PluginKind,
    /// The WIT package version it was loaded with.
    pub wit_version: String,
    /// The component file.
    pub path: String,
    /// Loaded or failed.
    pub state: PluginState,
    /// Why it failed to load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Middleware attached to every stdio workload.
    pub global: bool,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed (traps, timeouts, plugin errors).
    pub errors: u64,
    /// Calls that trapped or timed out (the instance was replaced).
    pub traps: u64,
    /// Median call time over the last 1024 calls, in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_call_us: Option<u32>,
    /// Times it was (re)loaded.
    pub loads: u64,
    /// Whether the last load came from the compilation cache.
    pub cached: bool,
}

/// One loaded plugin.
pub struct Plugin {
    config: PluginConfig,
    name: Arc<str>,
    timeout: Duration,
    memory_limit: usize,
    compiled: RwLock<Result<Arc<Compiled>, String>>,
    cached: std::sync::atomic::AtomicBool,
    loads: AtomicU64,
    stats: Stats,
    rules: Arc<[outbound::HostRule]>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("name", &self.name).finish()
    }
}

impl Plugin {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its kind.
    pub fn kind(&self) -> PluginKind {
        self.config.kind
    }

    fn current(&self) -> Result<Arc<Compiled>, PluginError> {
        self.compiled
            .read()
            .expect("plugin lock")
            .clone()
            .map_err(|why| PluginError::Unavailable(self.name.to_string(), why))
    }

    fn info(&self) -> PluginInfo {
        let error = self.compiled.read().expect("plugin lock").clone().err();
        PluginInfo {
            name: self.name.to_string(),
            kind: self.config.kind,
            wit_version: v0_1::VERSION.to_owned(),
            path: self.config.path.display().to_string(),
            state: if error.is_some() {
                PluginState::Failed
            } else {
                PluginState::Loaded
            },
            error,
            global: self.config.global,
            calls: self.stats.calls.load(Ordering::Relaxed),
            errors: self.stats.errors.load(Ordering::Relaxed),
            traps: self.stats.traps.load(Ordering::Relaxed),
            p50_call_us: self.stats.p50_us(),
            loads: self.loads.load(Ordering::Relaxed),
            cached: self.cached.load(Ordering::Relaxed),
        }
    }
}

/// The plugin host: the engine and the configured plugins.
pub struct Plugins {
    engine: engine::PluginEngine,
    linker: Linker<HostState>,
    host: HostConfig,
    plugins: BTreeMap<String, Arc<Plugin>>,
    resolver: Arc<hickory_resolver::TokioResolver>,
    generation: AtomicU64,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("plugins", &self.plugins.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Plugins {
    /// Sets up the host and loads every configured plugin. A plugin that
    /// fails to load is kept, in state `failed` with its error, so the API
    /// shows why; a configuration error (duplicate name, bad permission)
    /// fails the whole host.
    pub fn load(
        host: HostConfig,
        configs: Vec<PluginConfig>,
        cache_dir: Option<PathBuf>,
    ) -> Result<Self, PluginError> {
        let engine = engine::PluginEngine::new(
            host.memory_limit_bytes,
            host.max_instances.max(1),
            cache_dir,
        )?;
        let mut linker = Linker::new(&engine.engine);
        host::add_to_linker(&mut linker)
            .map_err(|e| PluginError::Engine(format!("cannot link the host interfaces: {e}")))?;
        let resolver = hickory_resolver::TokioResolver::builder_tokio()
            .and_then(|b| b.build())
            .map_err(|e| PluginError::Engine(format!("cannot set up the DNS resolver: {e}")))?;
        let mut this = Self {
            engine,
            linker,
            host,
            plugins: BTreeMap::new(),
            resolver: Arc::new(resolver),
            generation: AtomicU64::new(0),
        };
        for config in configs {
            let plugin = this.configure(config)?;
            this.compile(&plugin);
            this.plugins.insert(plugin.name.to_string(), plugin);
        }
        Ok(this)
    }

    fn configure(&self, config: PluginConfig) -> Result<Arc<Plugin>, PluginError> {
        if config.name.is_empty()
            || !config
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(PluginError::Config(format!(
                "plugin name `{}`: use letters, digits, `-`, `_`, `.`",
                config.name
            )));
        }
        if self.plugins.contains_key(&config.name) {
            return Err(PluginError::Config(format!(
                "two plugins are named `{}`",
                config.name
            )));
        }
        if config.global && config.kind != PluginKind::Middleware {
            return Err(PluginError::Config(format!(
                "plugin `{}`: only middleware can be global",
                config.name
            )));
        }
        let rules = config
            .permissions
            .allow_http
            .iter()
            .map(|r| outbound::HostRule::parse(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PluginError::Config(format!("plugin `{}`: {e}", config.name)))?;
        let default_timeout = match config.kind {
            PluginKind::Middleware => self.host.middleware_timeout_ms,
            _ => self.host.call_timeout_ms,
        };
        let memory_limit = config
            .memory_limit_bytes
            .unwrap_or(self.host.memory_limit_bytes)
            .min(self.host.memory_limit_bytes);
        Ok(Arc::new(Plugin {
            name: Arc::from(config.name.as_str()),
            timeout: Duration::from_millis(config.timeout_ms.unwrap_or(default_timeout).max(1)),
            memory_limit,
            compiled: RwLock::new(Err("not loaded yet".into())),
            cached: Default::default(),
            loads: AtomicU64::new(0),
            stats: Stats::default(),
            rules: rules.into(),
            config,
        }))
    }

    /// (Re)compiles a plugin; a failure leaves it `failed` with the error.
    fn compile(&self, plugin: &Plugin) {
        let started = Instant::now();
        let result = self
            .engine
            .load(&plugin.config.path)
            .and_then(|(component, cached)| {
                let pre = self.check_world(plugin, &component)?;
                Ok((pre, cached))
            });
        plugin.loads.fetch_add(1, Ordering::Relaxed);
        let next = match result {
            Ok((pre, cached)) => {
                plugin.cached.store(cached, Ordering::Relaxed);
                tracing::info!(plugin = %plugin.name, kind = ?plugin.config.kind, cached, ms = started.elapsed().as_millis() as u64, "Plugin loaded.");
                Ok(Arc::new(Compiled {
                    generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
                    pre,
                }))
            }
            Err(e) => {
                tracing::error!(plugin = %plugin.name, error = %e, "Plugin failed to load.");
                Err(e.to_string())
            }
        };
        *plugin.compiled.write().expect("plugin lock") = next;
    }

    /// Checks that the component exports its kind's interface and that
    /// berth provides everything it imports; pre-instantiates it.
    fn check_world(&self, plugin: &Plugin, component: &Component) -> Result<KindPre, PluginError> {
        let kind = plugin.config.kind;
        let wrong = |why: String| PluginError::WrongWorld {
            plugin: plugin.name.to_string(),
            world: kind.world(),
            why,
        };
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let want = kind.export();
        let family = want.rsplit_once('.').map_or(want, |(head, _)| head);
        if !exports.iter().any(|e| e == want || e.starts_with(family)) {
            let has = if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            };
            return Err(wrong(format!(
                "the component does not export `{want}` (it exports {has}); build it for the `{}` world",
                kind.world()
            )));
        }
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| wrong(format!("{e:#}")))?;
        let pre = match kind {
            PluginKind::Middleware => KindPre::Middleware(
                v0_1::middleware::MiddlewarePluginPre::new(pre)
                    .map_err(|e| wrong(format!("{e:#}")))?,
            ),
            PluginKind::RegistrySource => KindPre::Registry(
                v0_1::registry::RegistrySourcePluginPre::new(pre)
                    .map_err(|e| wrong(format!("{e:#}")))?,
            ),
            PluginKind::SecretsProvider => KindPre::Secrets(
                v0_1::secrets::SecretsProviderPluginPre::new(pre)
                    .map_err(|e| wrong(format!("{e:#}")))?,
            ),
        };
        Ok(pre)
    }

    /// Every plugin, by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        self.plugins.values().map(|p| p.info()).collect()
    }

    /// Every plugin's counters and call times, for `/metrics`.
    pub fn samples(&self) -> Vec<crate::telemetry::expose::PluginSample> {
        self.plugins
            .values()
            .map(|p| crate::telemetry::expose::PluginSample {
                name: p.name.to_string(),
                kind: match p.config.kind {
                    PluginKind::Middleware => "middleware",
                    PluginKind::RegistrySource => "registry_source",
                    PluginKind::SecretsProvider => "secrets_provider",
                },
                calls: p.stats.calls.load(Ordering::Relaxed),
                errors: p.stats.errors.load(Ordering::Relaxed),
                traps: p.stats.traps.load(Ordering::Relaxed),
                latency: p.stats.latency.snapshot(),
            })
            .collect()
    }

    /// One plugin.
    pub fn info(&self, name: &str) -> Result<PluginInfo, PluginError> {
        Ok(self.get(name)?.info())
    }

    fn get(&self, name: &str) -> Result<&Arc<Plugin>, PluginError> {
        self.plugins
            .get(name)
            .ok_or_else(|| PluginError::NotFound(name.to_owned()))
    }

    /// Re-reads and recompiles a plugin from its path. Calls in flight
    /// finish on the old code; new calls use the new one. Blocking
    /// (compilation); call from a blocking task.
    pub fn reload(&self, name: &str) -> Result<PluginInfo, PluginError> {
        let plugin = self.get(name)?;
        self.compile(plugin);
        Ok(plugin.info())
    }

    fn of_kind(&self, name: &str, wanted: PluginKind) -> Result<Arc<Plugin>, PluginError> {
        let p = self.get(name)?;
        if p.config.kind != wanted {
            return Err(PluginError::WrongKind {
                name: name.to_owned(),
                actual: p.config.kind,
                wanted,
            });
        }
        Ok(p.clone())
    }

    /// Checks a workload's `wasm` middleware entry: the plugin exists and is
    /// middleware, and `config` (if any) is an object.
    pub fn check_attachment(
        &self,
        plugin: &str,
        config: Option<&Value>,
    ) -> Result<(), PluginError> {
        self.of_kind(plugin, PluginKind::Middleware)?;
        match config {
            None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
            Some(_) => Err(PluginError::Config(format!(
                "the config of middleware `{plugin}` must be an object"
            ))),
        }
    }

    /// The middleware of `plugin` with an attachment's `config` merged over
    /// the plugin's own.
    pub fn middleware(
        self: &Arc<Self>,
        plugin: &str,
        config: Option<&Value>,
    ) -> Result<Arc<dyn Middleware>, PluginError> {
        self.check_attachment(plugin, config)?;
        let p = self.of_kind(plugin, PluginKind::Middleware)?;
        let merged = merge(&p.config.config, config);
        Ok(Arc::new(PluginMiddleware::new(self.clone(), p, merged)))
    }

    /// The chain of a workload: global middleware first, then the
    /// workload's `(plugin, config)` entries in order. `None` when empty.
    pub fn chain(
        self: &Arc<Self>,
        attachments: &[(String, Option<Value>)],
    ) -> Result<Option<Chain>, PluginError> {
        let mut chain: Vec<Arc<dyn Middleware>> = Vec::new();
        for p in self.plugins.values() {
            if p.config.global && p.config.kind == PluginKind::Middleware {
                chain.push(self.middleware(&p.name, None)?);
            }
        }
        for (plugin, config) in attachments {
            chain.push(self.middleware(plugin, config.as_ref())?);
        }
        Ok((!chain.is_empty()).then(|| chain.into()))
    }

    /// Whether any middleware applies to every workload.
    pub fn has_global_middleware(&self) -> bool {
        self.plugins
            .values()
            .any(|p| p.config.global && p.config.kind == PluginKind::Middleware)
    }

    /// A registry-source plugin as a [`RegistrySource`].
    pub fn registry(self: &Arc<Self>, name: &str) -> Result<Arc<dyn RegistrySource>, PluginError> {
        let p = self.of_kind(name, PluginKind::RegistrySource)?;
        let config = merge(&p.config.config, None);
        Ok(Arc::new(PluginRegistry::new(self.clone(), p, config)))
    }

    /// A secrets-provider plugin as a [`SecretsProvider`].
    pub fn secrets(self: &Arc<Self>, name: &str) -> Result<Arc<dyn SecretsProvider>, PluginError> {
        let p = self.of_kind(name, PluginKind::SecretsProvider)?;
        let config = merge(&p.config.config, None);
        Ok(Arc::new(PluginSecrets::new(self.clone(), p, config)))
    }

    /// A fresh store for one instance of `plugin`.
    fn store(&self, plugin: &Plugin, config: &Arc<str>) -> Result<Store<HostState>, PluginError> {
        let outbound = outbound::Outbound::new(
            plugin.name.clone(),
            plugin.rules.clone(),
            plugin.config.permissions.allow_private,
            self.resolver.clone(),
        );
        let state = HostState::new(
            plugin.name.clone(),
            config.clone(),
            &plugin.config.permissions,
            outbound,
            plugin.memory_limit,
        )?;
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|s| &mut s.limits);
        // Yield to tokio at every epoch tick; the caller's timeout ends
        // the call.
        store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Yield(1)));
        store.set_epoch_deadline(1);
        Ok(store)
    }
}

/// A plugin's configuration with an attachment's merged over it, as JSON.
fn merge(base: &serde_json::Map<String, Value>, over: Option<&Value>) -> Arc<str> {
    let mut merged = base.clone();
    if let Some(Value::Object(o)) = over {
        for (k, v) in o {
            merged.insert(k.clone(), v.clone());
        }
    }
    Arc::from(Value::Object(merged).to_string())
}

/// One instance of a plugin, with its store.
pub(crate) struct Instance<B> {
    store: Store<HostState>,
    bindings: B,
    generation: u64,
}

/// Idle instances of one plugin use (one attachment's configuration).
pub(crate) struct Pool<B> {
    plugins: Arc<Plugins>,
    plugin: Arc<Plugin>,
    config: Arc<str>,
    idle: Mutex<Vec<Instance<B>>>,
}

/// How to make bindings of kind `B` from a compiled plugin.
pub(crate) trait Bindings: Sized + Send + 'static {
    fn instantiate<'a>(
        pre: &'a KindPre,
        store: &'a mut Store<HostState>,
    ) -> futures::future::BoxFuture<'a, wasmtime::Result<Self>>;
}

impl<B: Bindings> Pool<B> {
    pub(crate) fn new(plugins: Arc<Plugins>, plugin: Arc<Plugin>, config: Arc<str>) -> Self {
        Self {
            plugins,
            plugin,
            config,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// An idle instance of the current code, or a new one.
    async fn take(&self) -> Result<Instance<B>, CallError> {
        let compiled = self.plugin.current()?;
        loop {
            let Some(inst) = self.idle.lock().expect("pool lock").pop() else {
                break;
            };
            if inst.generation == compiled.generation {
                return Ok(inst);
            }
        }
        let mut store = self.plugins.store(&self.plugin, &self.config)?;
        let bindings = tokio::time::timeout(
            self.plugin.timeout.max(Duration::from_secs(1)),
            B::instantiate(&compiled.pre, &mut store),
        )
        .await
        .map_err(|_| CallError::Timeout {
            plugin: self.plugin.name.to_string(),
            ms: self.plugin.timeout.as_millis() as u64,
        })?
        .map_err(|e| self.failure(&store, &e))?;
        Ok(Instance {
            store,
            bindings,
            generation: compiled.generation,
        })
    }

    fn failure(&self, store: &Store<HostState>, e: &wasmtime::Error) -> CallError {
        if store.data().limits.hit() {
            CallError::Memory {
                plugin: self.plugin.name.to_string(),
                limit: self.plugin.memory_limit,
            }
        } else {
            CallError::Trap {
                plugin: self.plugin.name.to_string(),
                why: format!("{e:#}"),
            }
        }
    }

    /// Runs `f` on an instance under the plugin's deadline. A trap or a
    /// timeout drops the instance; success returns it to the pool.
    pub(crate) async fn call<R, F>(&self, f: F) -> Result<R, CallError>
    where
        F: for<'a> FnOnce(
            &'a mut Store<HostState>,
            &'a B,
        ) -> futures::future::BoxFuture<'a, wasmtime::Result<R>>,
    {
        let started = Instant::now();
        let stats = &self.plugin.stats;
        stats.calls.fetch_add(1, Ordering::Relaxed);
        let mut inst = match self.take().await {
            Ok(i) => i,
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                if matches!(
                    e,
                    CallError::Trap { .. } | CallError::Timeout { .. } | CallError::Memory { .. }
                ) {
                    stats.traps.fetch_add(1, Ordering::Relaxed);
                }
                return Err(e);
            }
        };
        let Instance {
            store, bindings, ..
        } = &mut inst;
        // The deadline counts from now: the first yield to tokio comes after
        // one epoch tick of this call, not at its first instruction.
        store.set_epoch_deadline(1);
        let outcome = tokio::time::timeout(self.plugin.timeout, f(store, bindings)).await;
        stats.record(started.elapsed());
        match outcome {
            Ok(Ok(r)) => {
                let mut idle = self.idle.lock().expect("pool lock");
                if idle.len() < self.plugins.host.pool_size {
                    idle.push(inst);
                }
                Ok(r)
            }
            Ok(Err(e)) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                stats.traps.fetch_add(1, Ordering::Relaxed);
                let err = self.failure(&inst.store, &e);
                tracing::warn!(plugin = %self.plugin.name, error = %err, "Plugin call failed; instance replaced.");
                Err(err)
            }
            Err(_) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                stats.traps.fetch_add(1, Ordering::Relaxed);
                let err = CallError::Timeout {
                    plugin: self.plugin.name.to_string(),
                    ms: self.plugin.timeout.as_millis() as u64,
                };
                tracing::warn!(plugin = %self.plugin.name, error = %err, "Plugin call failed; instance replaced.");
                Err(err)
            }
        }
    }

    /// Counts an answer that was a plugin-reported error.
    pub(crate) fn count_error(&self) {
        self.plugin.stats.errors.fetch_add(1, Ordering::Relaxed);
    }
}
