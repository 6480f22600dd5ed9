//! berth registry-source plugin `registry-http-json`: serves a registry
//! document in ToolHive's format, fetched over wasi:http and cached for
//! `cache_secs`. See README.md for the configuration.
//!
//! Parsing, search and paging live in [`catalog`] and [`config`] (plain
//! Rust, tested natively); the `component` module binds them to the
//! `registry-source-plugin` world and is only compiled for wasm32.

pub mod catalog;
pub mod config;

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "../../wit/deps/berth-plugin@0.1.0",
        world: "registry-source-plugin",
    });

    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use berth::plugin::host::{self, Level};
    use berth::plugin::types::PluginError;
    use berth_plugin_sdk::http::{self, Method};
    use exports::berth::plugin::registry_source::{Guest, ListRequest, Page, Server};
    use wasi::clocks::monotonic_clock;

    use crate::catalog::{Catalog, Entry};
    use crate::config::{Config, is_fresh};

    /// The largest registry document accepted.
    const MAX_DOCUMENT_BYTES: usize = 32 * 1024 * 1024;

    /// What one instance keeps between calls.
    #[derive(Default)]
    struct State {
        /// The parsed configuration (`Err`: the message for every call).
        config: Option<Result<Config, String>>,
        /// The last document and when it was fetched (monotonic ns).
        cached: Option<(Rc<Catalog>, u64)>,
    }

    thread_local! {
        static STATE: RefCell<State> = RefCell::new(State::default());
    }

    fn config(state: &mut State) -> Result<Config, PluginError> {
        let config = state.config.get_or_insert_with(|| {
            Config::from_json(&host::config()).inspect_err(|err| {
                host::log(Level::Error, &format!("registry-http-json: {err}"));
            })
        });
        config
            .clone()
            .map_err(|err| PluginError::Other(format!("plugin {err}")))
    }

    /// The catalog, from the cache while it is fresh.
    fn catalog() -> Result<Rc<Catalog>, PluginError> {
        STATE.with_borrow_mut(|state| {
            let config = config(state)?;
            let now = monotonic_clock::now();
            if let Some((catalog, fetched)) = &state.cached
                && is_fresh(*fetched, now, config.cache_secs)
            {
                return Ok(Rc::clone(catalog));
            }
            let catalog = Rc::new(fetch(&config)?);
            state.cached = Some((Rc::clone(&catalog), monotonic_clock::now()));
            Ok(catalog)
        })
    }

    fn fetch(config: &Config) -> Result<Catalog, PluginError> {
        let url = &config.url;
        let headers: Vec<(&str, &str)> = std::iter::once(("accept", "application/json"))
            .chain(config.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .collect();
        let response = http::send(&http::Request {
            method: Method::Get,
            url,
            headers: &headers,
            body: None,
            timeout: Duration::from_secs(config.timeout_secs),
            max_body: MAX_DOCUMENT_BYTES,
        })
        .map_err(|err| PluginError::Unavailable(format!("GET {url}: {err}")))?;
        if !(200..300).contains(&response.status) {
            return Err(PluginError::Unavailable(format!(
                "GET {url}: status {}",
                response.status
            )));
        }
        let (catalog, warnings) = Catalog::parse(&response.body)
            .map_err(|err| PluginError::Other(format!("GET {url}: {err}")))?;
        for warning in warnings.iter().take(20) {
            host::log(
                Level::Warn,
                &format!("registry-http-json: {url}: {warning}"),
            );
        }
        if warnings.len() > 20 {
            host::log(
                Level::Warn,
                &format!(
                    "registry-http-json: {url}: {} more warnings",
                    warnings.len() - 20
                ),
            );
        }
        host::log(
            Level::Debug,
            &format!(
                "registry-http-json: fetched {url}: {} servers",
                catalog.len()
            ),
        );
        Ok(catalog)
    }

    fn server(entry: &Entry) -> Server {
        Server {
            name: entry.name.clone(),
            entry: entry.json.clone(),
        }
    }

    struct RegistryHttpJson;

    impl Guest for RegistryHttpJson {
        fn list(req: ListRequest) -> Result<Page, PluginError> {
            let catalog = catalog()?;
            let page = catalog.list(req.query.as_deref(), req.cursor.as_deref(), req.limit);
            Ok(Page {
                servers: page.entries.into_iter().map(server).collect(),
                next_cursor: page.next_cursor,
            })
        }

        fn get(name: String) -> Result<Server, PluginError> {
            let catalog = catalog()?;
            catalog.get(&name).map(server).ok_or_else(|| {
                PluginError::NotFound(format!("no server named `{name}` in the registry"))
            })
        }
    }

    export!(RegistryHttpJson);
}
