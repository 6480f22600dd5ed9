//! The composition root: the one place that builds every service of a
//! berth and names them all.
//!
//! `berth serve`, `berth bridge` and the test harnesses build through here,
//! so a new subsystem (registry, secrets, clients, auth, metrics) is wired
//! once: a field of [`App`], a step of [`AppBuilder::build`]. Services never
//! reach each other through [`App`]; each gets what it needs at build time.

mod scrape;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime_api::{Backend, RuntimeError};

use crate::api::Access;
use crate::config::Config;
use crate::groups::{GroupError, Groups};
use crate::plugins::{PluginError, Plugins};
use crate::proxy::{Chain, Proxies};
use crate::runtimes::{self, EngineSockets, Runtimes};
use crate::state::{StateError, Store};
use crate::workloads::{Settings, WorkloadError, Workloads};

/// Why a berth could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The state directory cannot be used.
    #[error("opening the state directory {}: {source}", .dir.display())]
    State {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: StateError,
    },
    /// The group store cannot be read.
    #[error("reading the groups: {0}")]
    Groups(#[from] GroupError),
    /// No runtime could be set up.
    #[error("starting the runtimes: {0}")]
    Runtime(#[from] RuntimeError),
    /// The plugin host cannot be set up.
    #[error("loading plugins: {0}")]
    Plugins(#[from] PluginError),
    /// A plugin named on `berth bridge`'s command line is unusable.
    #[error("{0}")]
    Middleware(String),
    /// The stored workloads cannot be loaded.
    #[error("loading the workloads: {0}")]
    Workloads(#[from] WorkloadError),
    /// The secrets configuration names no valid provider.
    #[error("secrets: {0}")]
    Secrets(#[from] crate::secrets::SecretsError),
    /// The registries cannot be set up.
    #[error("registries: {0}")]
    Registry(String),
    /// The builder was given no state directory.
    #[error("no state directory")]
    NoStateDir,
    /// The trace exporter's settings are invalid.
    #[error("traces: {0}")]
    Traces(#[from] crate::telemetry::TraceError),
}

/// Every service of a running berth. The API's state is `Arc<App>`.
pub struct App {
    /// The configuration it was built from.
    pub config: Config,
    /// Where its state lives.
    pub state_dir: PathBuf,
    /// Every runtime it runs workloads on.
    pub runtimes: Runtimes,
    /// The group store.
    pub groups: Arc<Groups>,
    /// The plugin host, when `[[plugins]]` are configured.
    pub plugins: Option<Arc<Plugins>>,
    /// The per-workload MCP proxies.
    pub proxies: Arc<Proxies>,
    /// The registries of MCP servers.
    pub registries: Arc<crate::registry::Registries>,
    /// The secrets providers.
    pub secrets: Arc<crate::secrets::Secrets>,
    /// The workload service.
    pub workloads: Workloads,
    /// The MCP clients' configuration files.
    pub clients: Arc<crate::clients::Clients>,
    /// Who may call the management API.
    pub access: Access,
    /// Random per-process nonce sent on `/health`, so that a client can
    /// tell it talks to the server it started.
    pub nonce: Arc<str>,
    /// Metrics and the trace exporter.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("state_dir", &self.state_dir)
            .field("runtimes", &self.runtimes)
            .finish_non_exhaustive()
    }
}

/// Builds an [`App`]: `App::builder(config).backend(b).build().await`.
pub struct AppBuilder {
    config: Config,
    state_dir: Option<PathBuf>,
    backends: Vec<Arc<dyn Backend>>,
    discovery: Option<(EngineSockets, BTreeMap<String, String>)>,
    access: Access,
    nonce: Option<String>,
    secrets_env: crate::secrets::SecretsEnv,
    store_options: crate::secrets::encrypted::StoreOptions,
    home: Option<PathBuf>,
}

impl App {
    /// A builder from `config`. Its `state_dir` is used unless
    /// [`AppBuilder::state_dir`] names another.
    pub fn builder(config: Config) -> AppBuilder {
        AppBuilder {
            state_dir: config.state_dir.clone(),
            config,
            backends: Vec::new(),
            discovery: None,
            access: Access::default(),
            nonce: None,
            secrets_env: Default::default(),
            store_options: Default::default(),
            home: None,
        }
    }

    /// Lets running workload operations finish (up to `grace`), lets every
    /// runtime shut down its instances, and closes the proxies.
    pub async fn shutdown(&self, grace: Duration) {
        self.clients.stop();
        self.workloads.shutdown(grace).await;
        self.proxies.stop_all().await;
        if let Some(tracer) = &self.telemetry.tracer {
            // The spans of the last requests.
            tracer.shutdown(Duration::from_secs(2)).await;
        }
    }
}

impl AppBuilder {
    /// Keeps the state in `dir`.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Adds a runtime; the first one given is the default. Without any,
    /// [`AppBuilder::discover`] must be called.
    pub fn backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backends.push(backend);
        self
    }

    /// Connects the runtimes the configuration names or discovery finds
    /// (see [`runtimes::connect`]), with these engine sockets and this base
    /// environment of native processes.
    pub fn discover(mut self, sockets: EngineSockets, base_env: BTreeMap<String, String>) -> Self {
        self.discovery = Some((sockets, base_env));
        self
    }

    /// Who may call the management API.
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// What `main` read from the environment for the secrets providers
    /// (`BERTH_SECRETS_PASSWORD`, `BERTH_SECRET_*`, the key file's place).
    pub fn secrets_env(mut self, env: crate::secrets::SecretsEnv) -> Self {
        self.secrets_env = env;
        self
    }

    /// The encrypted store's key derivation for a store created now (tests
    /// use cheap parameters; berth uses the defaults).
    pub fn secrets_store_options(
        mut self,
        options: crate::secrets::encrypted::StoreOptions,
    ) -> Self {
        self.store_options = options;
        self
    }

    /// The home directory of the user whose MCP clients berth configures
    /// (`[clients] home` wins over it); without either, client
    /// registration is refused.
    pub fn home(mut self, dir: impl Into<PathBuf>) -> Self {
        self.home = Some(dir.into());
        self
    }

    /// A fixed `/health` nonce (tests); random otherwise.
    pub fn nonce(mut self, nonce: impl Into<String>) -> Self {
        self.nonce = Some(nonce.into());
        self
    }

    /// Opens the state, connects the runtimes, loads the plugins and the
    /// stored workloads (which start reconciling in the background).
    pub async fn build(self) -> Result<Arc<App>, AppError> {
        let Self {
            config,
            state_dir,
            mut backends,
            discovery,
            access,
            nonce,
            secrets_env,
            store_options,
            home,
        } = self;
        let state_dir = state_dir.ok_or(AppError::NoStateDir)?;
        let store = Store::open(&state_dir).map_err(|source| AppError::State {
            dir: state_dir.clone(),
            source,
        })?;
        let groups = Arc::new(Groups::open(store.clone())?);
        if let Some((sockets, base_env)) = discovery {
            let found = runtimes::connect(&config, &state_dir, base_env, &sockets).await?;
            backends.extend(found.iter().cloned());
        }
        if backends.is_empty() {
            return Err(RuntimeError::InvalidSpec(
                "no runtime: give a backend or discover the configured ones".into(),
            )
            .into());
        }
        let runtimes = Runtimes::new(backends);
        let plugins = if config.plugins.is_empty() {
            None
        } else {
            let host = config.plugin_host.clone();
            let entries = config.plugins.clone();
            let cache = state_dir.join("plugin-cache");
            Some(Arc::new(load_plugins(host, entries, Some(cache)).await?))
        };
        let secrets = crate::secrets::Secrets::open_with(
            &config.secrets,
            secrets_env,
            &state_dir,
            plugins.clone(),
            store_options,
        )
        .await?;
        // The registries keep their login tokens in berth's own secrets.
        let registries = Arc::new(
            crate::registry::Registries::open(
                &config.registries,
                &state_dir,
                plugins.clone(),
                secrets.clone(),
            )
            .await
            .map_err(AppError::Registry)?,
        );
        let telemetry = Arc::new(crate::telemetry::Telemetry::start(
            &config.metrics,
            &config.traces,
        )?);
        let proxies = Arc::new(Proxies::new(config.proxy.clone()));
        proxies.set_telemetry(telemetry.clone());
        let audit =
            crate::auth::audit::AuditLog::new(state_dir.join("audit"), config.audit.sink.clone())
                .map_err(|source| AppError::State {
                dir: state_dir.join("audit"),
                source: crate::state::StateError::Io {
                    path: state_dir.join("audit"),
                    source,
                },
            })?;
        let mut guarding = crate::workloads::protect::Guarding::default();
        guarding.policies_dir = config.policies_dir.clone();
        guarding.audit = Some(Arc::new(audit));
        guarding.audit_all = config.audit.all_workloads;
        guarding.fetcher = crate::registry::fetch::Fetcher::new().ok();
        guarding.pins_dir = Some(state_dir.join("pins"));
        guarding.api_audience = config.api.oidc.as_ref().map(|o| o.audience.clone());
        let settings = Settings {
            guarding,
            secrets: Some(secrets.clone()),
            port_range: (config.ports.start, config.ports.end),
            restart: config.restart,
            plugins: plugins.clone(),
            egress: config.egress.clone(),
        };
        let workloads = Workloads::open(
            runtimes.clone(),
            proxies.clone(),
            store,
            groups.clone(),
            settings,
        )
        .await?;
        // After the workloads: it lists them, and repairs the files at once.
        let clients = crate::clients::Clients::open(
            config.clients.home.as_deref().or(home.as_deref()),
            &state_dir,
            groups.clone(),
            workloads.clone(),
        );
        clients.start();
        let nonce = nonce.unwrap_or_else(|| {
            (0..16)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect()
        });
        Ok(Arc::new(App {
            config,
            state_dir,
            runtimes,
            groups,
            plugins,
            proxies,
            registries,
            secrets,
            workloads,
            clients,
            access,
            nonce: nonce.into(),
            telemetry,
        }))
    }
}

/// Loads plugins off the async threads (compiling them can take seconds).
async fn load_plugins(
    host: crate::plugins::HostConfig,
    entries: Vec<crate::plugins::PluginConfig>,
    cache: Option<PathBuf>,
) -> Result<Plugins, AppError> {
    tokio::task::spawn_blocking(move || Plugins::load(host, entries, cache))
        .await
        .map_err(|e| PluginError::Engine(format!("loading plugins failed: {e}")))?
        .map_err(AppError::from)
}

impl Bridge {
    /// What its `/metrics` shows: the bridged server's traffic and
    /// sessions, berth's own process, the trace exporter.
    pub fn scrape(&self) -> crate::telemetry::Scrape {
        use crate::telemetry::expose::{OwnProcess, WorkloadSample};
        crate::telemetry::Scrape {
            workloads: vec![WorkloadSample {
                name: "bridge".to_owned(),
                status: "running",
                restarts: 0,
                sessions: self.proxies.mux("bridge").map(|m| m.session_count()),
                usage: None,
                metrics: self
                    .telemetry
                    .metrics
                    .as_ref()
                    .map(|m| m.workload("bridge")),
            }],
            plugins: Vec::new(),
            process: OwnProcess::read(),
            traces: self.telemetry.tracer.as_ref().map(|t| t.stats()),
        }
    }
}

/// What `berth bridge` runs: the proxies and, when middleware is named,
/// its chain. No state, no runtime, no API.
pub struct Bridge {
    /// The proxy of the one bridged server.
    pub proxies: Proxies,
    /// The middleware chain named on the command line, in order.
    pub chain: Option<Chain>,
    /// The protections of `--protect`.
    pub protection: crate::proxy::Protection,
    /// Its metrics (counted only when `[metrics] listen` serves them) and
    /// trace exporter (`[traces]`).
    pub telemetry: Arc<crate::telemetry::Telemetry>,
}

impl Bridge {
    /// Loads the middleware plugins named in `middleware` (each a
    /// `[[plugins]]` entry of `config`; none is global here) and sets up
    /// the proxies.
    /// `protect` holds a create request's protection fields (`oidc`,
    /// `authz_config`, `audit_config`, `tools`, `tools_override`,
    /// `tool_pinning`); audit lines go to `audit_dir`, tool pins to
    /// `pins_dir`.
    pub async fn build(
        config: Config,
        middleware: &[String],
        protect: Option<&crate::workloads::types::CreateRequest>,
        audit_dir: Option<&std::path::Path>,
    ) -> Result<Self, AppError> {
        let protection = match protect {
            None => crate::proxy::Protection::default(),
            Some(req) => {
                let spec = crate::workloads::protect::spec_of_request(req)
                    .map_err(AppError::Middleware)?;
                let audit = match audit_dir {
                    Some(dir) => Some(Arc::new(
                        crate::auth::audit::AuditLog::new(
                            dir.to_owned(),
                            config.audit.sink.clone(),
                        )
                        .map_err(|e| AppError::Middleware(format!("audit directory: {e}")))?,
                    )),
                    None => None,
                };
                if spec.audit.is_some() && audit.is_none() {
                    return Err(AppError::Middleware(
                        "--protect asks for an audit: give --audit-dir".into(),
                    ));
                }
                let mut guarding = crate::workloads::protect::Guarding::default();
                guarding.policies_dir = config.policies_dir.clone();
                guarding.pins_dir = audit_dir.map(|d| d.join("pins"));
                guarding.audit = audit;
                guarding
                    .protection("bridge", &spec)
                    .map_err(AppError::Middleware)?
            }
        };
        let chain = if middleware.is_empty() {
            None
        } else {
            let wanted: Vec<_> = config
                .plugins
                .iter()
                .filter(|p| middleware.contains(&p.name))
                .cloned()
                .map(|mut p| {
                    p.global = false;
                    p
                })
                .collect();
            let plugins = load_plugins(config.plugin_host.clone(), wanted, None).await?;
            for name in middleware {
                let info = plugins.info(name).map_err(|_| {
                    AppError::Middleware(format!("--middleware {name}: no such [[plugins]] entry"))
                })?;
                if let Some(error) = info.error {
                    return Err(AppError::Middleware(format!(
                        "plugin `{name}` did not load: {error}"
                    )));
                }
            }
            let attachments: Vec<(String, Option<serde_json::Value>)> =
                middleware.iter().map(|n| (n.clone(), None)).collect();
            Arc::new(plugins).chain(&attachments)?
        };
        // Nothing else shows a bridge's metrics: they are counted only
        // when a listener serves them.
        let metrics = crate::telemetry::MetricsSettings {
            enabled: config.metrics.enabled && config.metrics.listen.is_some(),
            ..config.metrics.clone()
        };
        let telemetry = Arc::new(crate::telemetry::Telemetry::start(
            &metrics,
            &config.traces,
        )?);
        let proxies = Proxies::new(config.proxy);
        proxies.set_telemetry(telemetry.clone());
        Ok(Self {
            proxies,
            chain,
            protection,
            telemetry,
        })
    }
}
