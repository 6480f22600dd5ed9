//! The `berth` binary: command line, configuration, logging, and the server's
//! start and graceful stop. The only file that uses anyhow or reads the
//! process environment.

// The one module that reads the process environment (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use berth::api::{self};
use berth::auth::{ApiAuth, ApiToken, BrowserGuard, TokenSource};
use berth::config::{self, Config, LogFormat, RuntimeKind};
use clap::{Args, Parser, Subcommand};
use figment::Figment;
use figment::providers::Serialized;
use tracing::info;

/// Runs MCP servers and manages them through a ToolHive-compatible REST API.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the REST API and run the workloads.
    Serve(ServeArgs),
    /// Serve one stdio MCP server over streamable HTTP and SSE, with no API
    /// and no state: `berth bridge --port 8000 -- npx -y some-mcp-server`.
    Bridge(BridgeArgs),
    /// Import the secrets of a ToolHive `encrypted` store into berth's
    /// (same-named secrets are replaced). The ToolHive password is read
    /// from TOOLHIVE_SECRETS_PASSWORD or the first line of standard input;
    /// never prompted for.
    ImportToolhiveSecrets(ImportArgs),
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// ToolHive's store (default: $XDG_DATA_HOME/toolhive/secrets_encrypted).
    file: Option<PathBuf>,
    /// Configuration file (its `[secrets]` section applies).
    #[arg(long)]
    config: Option<PathBuf>,
    /// berth's state directory (default: $XDG_STATE_HOME/berth).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct BridgeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Port to listen on.
    #[arg(long)]
    port: u16,
    /// Configuration file (its `[proxy]` section applies).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Put this middleware plugin (a `[[plugins]]` name from the
    /// configuration file) on the request path; repeat for a chain, in order.
    #[arg(long = "middleware", value_name = "PLUGIN")]
    middleware: Vec<String>,
    /// Protect the proxy as a workload would be: a JSON file with a create
    /// request's `oidc`, `authz_config`, `audit_config`, `tools`,
    /// `tools_override` and `tool_pinning` fields.
    #[arg(long, value_name = "FILE")]
    protect: Option<PathBuf>,
    /// Where audit lines (and tool pins) go with `--protect`.
    #[arg(long, value_name = "DIR")]
    audit_dir: Option<PathBuf>,
    /// The server's command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (default 127.0.0.1).
    #[arg(long)]
    host: Option<std::net::IpAddr>,
    /// Port to listen on (default 8080).
    #[arg(long)]
    port: Option<u16>,
    /// Listen on this Unix socket (mode 0600) instead of TCP.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Configuration file (default: $XDG_CONFIG_HOME/berth/berth.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Runtime for workloads.
    #[arg(long, value_enum)]
    runtime: Option<RuntimeKind>,
    /// State directory (default: $XDG_STATE_HOME/berth).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Allow listening on a non-loopback address without authentication.
    #[arg(long)]
    insecure_allow_remote: bool,
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn home() -> Option<PathBuf> {
    env_path("HOME")
}

fn default_state_dir() -> anyhow::Result<PathBuf> {
    match env_path("XDG_STATE_HOME").or_else(|| home().map(|h| h.join(".local/state"))) {
        Some(dir) => Ok(dir.join("berth")),
        None => {
            bail!("cannot find a state directory: set XDG_STATE_HOME or HOME, or pass --state-dir")
        }
    }
}

/// berth's configuration directory, `$XDG_CONFIG_HOME/berth`.
fn config_dir() -> Option<PathBuf> {
    env_path("XDG_CONFIG_HOME")
        .or_else(|| home().map(|h| h.join(".config")))
        .map(|d| d.join("berth"))
}

fn default_config_file() -> Option<PathBuf> {
    config_dir().map(|d| d.join("berth.toml"))
}

/// Container engine sockets to try, from the environment and the usual places.
fn engine_sockets() -> berth::runtimes::EngineSockets {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut docker: Vec<String> = var("DOCKER_HOST").into_iter().collect();
    docker.push("unix:///var/run/docker.sock".into());
    let mut podman: Vec<String> = var("CONTAINER_HOST").into_iter().collect();
    if let Some(dir) = var("XDG_RUNTIME_DIR") {
        podman.push(format!("unix://{dir}/podman/podman.sock"));
    }
    podman.push("unix:///run/podman/podman.sock".into());
    berth::runtimes::EngineSockets { docker, podman }
}

/// What native workloads inherit from berth's environment: only the
/// variables `process.inherit_env` names.
fn base_env(config: &Config) -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| config.inherits_env(k))
        .collect()
}

/// What the secrets providers take from the environment: the store's
/// password, the `BERTH_SECRET_*` / `TOOLHIVE_SECRET_*` variables, the
/// default key file's place.
fn secrets_env() -> berth::secrets::SecretsEnv {
    berth::secrets::SecretsEnv {
        password: std::env::var("BERTH_SECRETS_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
            .map(zeroize::Zeroizing::new),
        variables: std::env::vars()
            .filter(|(k, _)| berth::secrets::environment::is_secret_variable(k))
            .collect(),
        key_file: config_dir().map(|d| d.join("secrets.key")),
    }
}

fn overrides(args: &ServeArgs) -> Figment {
    let mut fig = Figment::new();
    if let Some(host) = args.host {
        fig = fig.merge(Serialized::default("api.host", host));
    }
    if let Some(port) = args.port {
        fig = fig.merge(Serialized::default("api.port", port));
    }
    if let Some(socket) = &args.socket {
        fig = fig.merge(Serialized::default("api.socket", socket));
    }
    if let Some(runtime) = args.runtime {
        fig = fig.merge(Serialized::default("runtime", runtime));
    }
    if let Some(dir) = &args.state_dir {
        fig = fig.merge(Serialized::default("state_dir", dir));
    }
    if let Some(format) = args.log_format {
        fig = fig.merge(Serialized::default("log_format", format));
    }
    if args.insecure_allow_remote {
        fig = fig.merge(Serialized::default("api.insecure_allow_remote", true));
    }
    fig
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // One record, one line: no request field can forge a log line.
    let writer = || berth::logging::OneLine(std::io::stderr().lock());
    let registry = tracing_subscriber::registry()
        .with(filter)
        // Whatever RUST_LOG says, no library writes request bodies (a
        // container's environment, so secrets) into berth's log.
        .with(tracing_subscriber::filter::filter_fn(berth::logging::keeps));
    match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(writer))
            .init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(writer))
            .init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("Shutting down: no new requests, finishing the ones in flight.");
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::ImportToolhiveSecrets(args) => {
            let config = config::load(
                args.config.as_deref(),
                default_config_file().as_deref(),
                Figment::new(),
            )?;
            init_tracing(config.log_format);
            return runtime(&config)?.block_on(import_toolhive(config, args));
        }
        Command::Bridge(args) => {
            let config = config::load(
                args.config.as_deref(),
                default_config_file().as_deref(),
                Figment::new(),
            )?;
            init_tracing(args.log_format);
            return runtime(&config)?.block_on(bridge(config, args));
        }
    };
    let mut config = config::load(
        args.config.as_deref(),
        default_config_file().as_deref(),
        overrides(&args),
    )?;
    if config.policies_dir.is_none() {
        config.policies_dir = config_dir().map(|d| d.join("policies"));
    }
    init_tracing(config.log_format);
    runtime(&config)?.block_on(serve(config))
}

/// berth's async runtime, with [`Config::runtime_threads`] worker threads.
fn runtime(config: &Config) -> anyhow::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.runtime_threads(cores))
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Who may call the API: the browser guard on TCP, the token if
/// `[api] auth` (or `BERTH_API_TOKEN`) asks for one.
fn api_access(config: &Config) -> anyhow::Result<api::Access> {
    let from_env = std::env::var("BERTH_API_TOKEN").ok();
    let auth = match (config.api.auth, &from_env) {
        (Some(auth), _) => auth,
        (None, Some(_)) => ApiAuth::Token,
        (None, None) => ApiAuth::None,
    };
    if config.api.socket.is_none()
        && !config.api.host.is_loopback()
        && auth == ApiAuth::None
        && !config.api.insecure_allow_remote
    {
        bail!(
            "refusing to listen on {} without authentication; set `[api] auth = \"token\"` \
             (or BERTH_API_TOKEN), bind a loopback address, or pass --insecure-allow-remote",
            config.api.host
        );
    }
    let token = match auth {
        ApiAuth::Oidc => None,
        ApiAuth::None => {
            if from_env.is_some() {
                tracing::warn!(
                    "BERTH_API_TOKEN is set but `[api] auth` is \"none\": the API takes no token."
                );
            }
            None
        }
        ApiAuth::Token => {
            let file = match &config.api.token_file {
                Some(file) => file.clone(),
                None => config_dir()
                    .context("cannot find the configuration directory for the API token file: set XDG_CONFIG_HOME or HOME, or `[api] token_file`")?
                    .join("api-token"),
            };
            let (token, source) = ApiToken::resolve(from_env.as_deref(), &file)?;
            match source {
                TokenSource::Environment => {
                    info!("The API requires the token from BERTH_API_TOKEN.")
                }
                TokenSource::File(path) => {
                    info!(file = %path.display(), "The API requires the token in this file.")
                }
                TokenSource::Created(path) => {
                    info!(file = %path.display(), "The API requires a token; a new one was written to this file (mode 0600).")
                }
            }
            Some(token)
        }
    };
    let guard = match config.api.socket {
        Some(_) => None,
        None => Some(Arc::new(BrowserGuard::new(
            &config.api.allowed_origins,
            &config.api.public_hosts,
            false,
        )?)),
    };
    let oidc = match auth {
        ApiAuth::Oidc => {
            let settings = config
                .api
                .oidc
                .as_ref()
                .context("`[api] auth = \"oidc\"` needs `[api.oidc]` with `issuer` and `audience`")?
                .settings();
            let fetcher = berth::registry::fetch::Fetcher::new()?;
            let validator = berth::auth::oidc::Validator::new(settings, fetcher)
                .context("invalid `[api.oidc]`")?;
            info!(issuer = %validator.settings().issuer, audience = %validator.settings().audience, "The API requires an access token of this issuer for this audience.");
            Some(validator)
        }
        _ => None,
    };
    Ok(api::Access { guard, token, oidc })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let access = api_access(&config)?;
    let state_dir = match &config.state_dir {
        Some(dir) => dir.clone(),
        None => default_state_dir()?,
    };
    let base_env = base_env(&config);
    let mut builder = berth::app::App::builder(config)
        .state_dir(&state_dir)
        .discover(engine_sockets(), base_env)
        .secrets_env(secrets_env())
        .access(access);
    if let Some(home) = home() {
        builder = builder.home(home);
    }
    let app = builder.build().await?;
    let runtimes = app.runtimes.names().join(",");
    let router = api::router(app.clone());

    // The listener stops taking connections on SIGINT/SIGTERM and lets the
    // requests in flight finish.
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            stop.cancel();
        }
    });
    let limits = app.config.api.limits();
    if let (Some(addr), true) = (app.config.metrics.listen, app.config.metrics.enabled) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr} for /metrics ([metrics] listen)"))?;
        let public = app.config.metrics.public;
        info!(address = %listener.local_addr()?, public, "Serving /metrics.");
        let router = api::metrics_router(app.clone(), public);
        tokio::spawn(berth::listener::serve(
            listener,
            router,
            limits,
            stop.clone(),
        ));
    }
    match &app.config.api.socket {
        Some(path) => {
            let listener = bind_socket(path)?;
            info!(socket = %path.display(), runtimes = %runtimes, state_dir = %state_dir.display(), "berth is listening.");
            berth::listener::serve(listener, router, limits, stop).await;
            let _ = std::fs::remove_file(path);
        }
        None => {
            let addr = SocketAddr::new(app.config.api.host, app.config.api.port);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            info!(address = %listener.local_addr()?, runtimes = %runtimes, state_dir = %state_dir.display(), "berth is listening.");
            berth::listener::serve(listener, router, limits, stop).await;
        }
    }
    app.shutdown(Duration::from_secs(30)).await;
    info!("berth stopped.");
    Ok(())
}

/// `berth import-toolhive-secrets`: ToolHive's store into berth's.
async fn import_toolhive(config: Config, args: ImportArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let file = match args.file {
        Some(f) => f,
        None => env_path("XDG_DATA_HOME")
            .or_else(|| home().map(|h| h.join(".local/share")))
            .context("cannot find ToolHive's data directory: give the file")?
            .join("toolhive/secrets_encrypted"),
    };
    let password = match std::env::var("TOOLHIVE_SECRETS_PASSWORD") {
        Ok(p) if !p.is_empty() => zeroize::Zeroizing::new(p),
        _ => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!(
                    "give ToolHive's password on standard input or in TOOLHIVE_SECRETS_PASSWORD \
                     (berth never prompts)"
                );
            }
            let mut line = zeroize::Zeroizing::new(String::new());
            stdin.read_line(&mut line)?;
            zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned())
        }
    };
    let state_dir = match args.state_dir.or(config.state_dir.clone()) {
        Some(dir) => dir,
        None => default_state_dir()?,
    };
    let env = secrets_env();
    let (store, key_file) =
        berth::secrets::store_paths(&config.secrets, env.key_file.as_deref(), &state_dir);
    let source = berth::secrets::encrypted::PasswordSource {
        password: env.password,
        key_file,
    };
    let store =
        berth::secrets::encrypted::EncryptedStore::open_async(store, source, Default::default())
            .await?;
    let n = store.import_toolhive(&file, &password).await?;
    println!(
        "Imported {n} secret{} from {} into {}.",
        if n == 1 { "" } else { "s" },
        file.display(),
        store.path().display()
    );
    Ok(())
}

/// `berth bridge`: one stdio server behind the proxy, until a signal or
/// until the server exits (then with its exit code).
async fn bridge(config: Config, args: BridgeArgs) -> anyhow::Result<()> {
    let (program, argv) = args
        .command
        .split_first()
        .context("a command is required")?;
    let protect: Option<berth::workloads::types::CreateRequest> = match &args.protect {
        Some(file) => Some(
            serde_json::from_slice(
                &std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
            )
            .with_context(|| format!("{} is not a create request's JSON", file.display()))?,
        ),
        None => None,
    };
    let metrics_at = config.metrics.listen.filter(|_| config.metrics.enabled);
    let limits = config.api.limits();
    let guard = config.proxy.browser_guard()?;
    let mut bridge = berth::app::Bridge::build(
        config,
        &args.middleware,
        protect.as_ref(),
        args.audit_dir.as_deref(),
    )
    .await?;
    let addr = SocketAddr::new(args.host, args.port);
    let (chain, protection) = (bridge.chain.take(), std::mem::take(&mut bridge.protection));
    bridge
        .proxies
        .start("bridge", addr, None, chain, protection)
        .await?;
    let bridge = std::sync::Arc::new(bridge);
    let stop = tokio_util::sync::CancellationToken::new();
    if let Some(at) = metrics_at {
        let listener = tokio::net::TcpListener::bind(at)
            .await
            .with_context(|| format!("listening on {at} for /metrics ([metrics] listen)"))?;
        info!(address = %listener.local_addr()?, "Serving /metrics.");
        let scraped = bridge.clone();
        let router = api::bridge_metrics_router(move || scraped.scrape(), guard);
        tokio::spawn(berth::listener::serve(
            listener,
            router,
            limits,
            stop.clone(),
        ));
    }
    let proxies = &bridge.proxies;
    let mut child = tokio::process::Command::new(program)
        .args(argv)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting `{program}`"))?;
    let stdin = child.stdin.take().context("child stdin")?;
    let stdout = child.stdout.take().context("child stdout")?;
    proxies.attach("bridge", berth_runtime_api::StdioHandle::new(stdin, stdout));
    info!(address = %addr, command = %program, "berth bridge is listening.");
    let code = tokio::select! {
        () = shutdown_signal() => {
            let _ = child.start_kill();
            0
        }
        status = child.wait() => {
            let status = status?;
            tracing::warn!(status = %status, "The server exited; the bridge stops.");
            status.code().unwrap_or(1)
        }
    };
    stop.cancel();
    proxies.stop_all().await;
    if let Some(tracer) = &bridge.telemetry.tracer {
        tracer.shutdown(Duration::from_secs(2)).await;
    }
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

fn bind_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("{} is in use by another server", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
