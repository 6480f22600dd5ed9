//! berth secrets-provider plugin `vault-kv`: secrets in a HashiCorp Vault
//! KV version 2 mount, over wasi:http. See README.md for the configuration.
//!
//! The Vault specifics live in [`kv`] (plain Rust, tested natively); the
//! `component` module binds them to the `secrets-provider-plugin` world and
//! is only compiled for wasm32. Errors and logs name the operation, the
//! secret's name and Vault's status, never the token or a value.

pub mod kv;

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "../../wit/deps/berth-plugin@0.1.0",
        world: "secrets-provider-plugin",
    });

    use std::cell::RefCell;
    use std::time::Duration;

    use berth::plugin::host::{self, Level};
    use berth::plugin::types::PluginError;
    use berth_plugin_sdk::http::{self, Method, Response};
    use berth_plugin_sdk::url::Url;
    use exports::berth::plugin::secrets_provider::{CapabilitySet, Guest};

    use crate::kv::{self, Config, Read, Status};

    /// The largest answer accepted from Vault.
    const MAX_BODY: usize = 4 * 1024 * 1024;

    thread_local! {
        static CONFIG: RefCell<Option<Result<Config, String>>> = const { RefCell::new(None) };
    }

    fn config() -> Result<Config, PluginError> {
        CONFIG.with_borrow_mut(|config| {
            config
                .get_or_insert_with(|| {
                    Config::from_json(&host::config()).inspect_err(|err| {
                        host::log(Level::Error, &format!("vault-kv: {err}"));
                    })
                })
                .clone()
                .map_err(|err| PluginError::Other(format!("plugin {err}")))
        })
    }

    /// Sends one request. `what` names the operation for errors, e.g.
    /// "read `db/password`".
    fn send(
        config: &Config,
        method: Method,
        url: &Url,
        body: Option<&str>,
        what: &str,
    ) -> Result<Response, PluginError> {
        let mut headers = config.headers();
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        http::send(&http::Request {
            method,
            url,
            headers: &headers,
            body: body.map(str::as_bytes),
            timeout: Duration::from_secs(config.timeout_secs),
            max_body: MAX_BODY,
        })
        .map_err(|err| {
            PluginError::Unavailable(format!(
                "vault {what}: {} {}: {err}",
                method.as_str(),
                url_for_errors(url)
            ))
        })
    }

    /// The URL without its query, for messages.
    fn url_for_errors(url: &Url) -> String {
        let text = url.to_string();
        text.split_once('?')
            .map_or(text.clone(), |(path, _)| path.to_owned())
    }

    /// Maps a non-2xx answer to an error.
    fn status_error(status: u16, what: &str, name: &str) -> PluginError {
        match kv::classify(status) {
            Status::NotFound => PluginError::NotFound(format!("secret `{name}` not found")),
            Status::Denied => PluginError::Denied(format!(
                "vault refused to {what} (status {status}): check the token and its policy"
            )),
            Status::Ok | Status::Unavailable => {
                PluginError::Unavailable(format!("vault {what}: status {status}"))
            }
        }
    }

    fn checked_name(name: &str) -> Result<(), PluginError> {
        kv::validate_name(name).map_err(PluginError::InvalidInput)
    }

    struct VaultKv;

    impl Guest for VaultKv {
        fn capabilities() -> CapabilitySet {
            CapabilitySet {
                can_read: true,
                can_write: true,
                can_delete: true,
                can_list: true,
            }
        }

        fn get(name: String) -> Result<String, PluginError> {
            checked_name(&name)?;
            let config = config()?;
            let what = format!("read `{name}`");
            let response = send(&config, Method::Get, &config.data_url(&name), None, &what)?;
            if kv::classify(response.status) != Status::Ok {
                return Err(status_error(response.status, &what, &name));
            }
            match kv::parse_read(&response.body, &config.field) {
                Ok(Read::Value(value)) => Ok(value),
                Ok(Read::Deleted) => Err(PluginError::NotFound(format!(
                    "secret `{name}` not found (deleted)"
                ))),
                Ok(Read::NoField) => Err(PluginError::NotFound(format!(
                    "secret `{name}` has no field `{}`",
                    config.field
                ))),
                Err(err) => Err(PluginError::Other(format!("vault {what}: {err}"))),
            }
        }

        fn set(name: String, value: String) -> Result<(), PluginError> {
            checked_name(&name)?;
            let config = config()?;
            let what = format!("write `{name}`");
            let body = config.write_body(&value);
            let response = send(
                &config,
                Method::Post,
                &config.data_url(&name),
                Some(&body),
                &what,
            )?;
            match kv::classify(response.status) {
                Status::Ok => Ok(()),
                // A 404 on write means the mount does not exist (or is not KV v2).
                Status::NotFound => Err(PluginError::Unavailable(format!(
                    "vault {what}: status 404 (is `{}` a KV version 2 mount?)",
                    config.mount
                ))),
                _ => Err(status_error(response.status, &what, &name)),
            }
        }

        fn delete(name: String) -> Result<(), PluginError> {
            checked_name(&name)?;
            let config = config()?;
            let url = config.metadata_url(&name);
            // Vault answers 204 to deleting a missing path, so look first.
            // A policy may allow deleting but not reading metadata: then
            // delete without knowing.
            let what = format!("look up `{name}`");
            let response = send(&config, Method::Get, &url, None, &what)?;
            match kv::classify(response.status) {
                Status::Ok | Status::Denied => {}
                _ => return Err(status_error(response.status, &what, &name)),
            }
            let what = format!("delete `{name}`");
            let response = send(&config, Method::Delete, &url, None, &what)?;
            match kv::classify(response.status) {
                Status::Ok => {
                    host::log(
                        Level::Info,
                        &format!("vault-kv: deleted `{name}` (all versions)"),
                    );
                    Ok(())
                }
                _ => Err(status_error(response.status, &what, &name)),
            }
        }

        fn list() -> Result<Vec<String>, PluginError> {
            let config = config()?;
            kv::list_recursive(
                |folder| {
                    let what = if folder.is_empty() {
                        "list secrets".to_owned()
                    } else {
                        format!("list `{folder}`")
                    };
                    let response =
                        send(&config, Method::Get, &config.list_url(folder), None, &what)?;
                    match kv::classify(response.status) {
                        Status::Ok => kv::parse_list(&response.body)
                            .map(Some)
                            .map_err(|err| PluginError::Other(format!("vault {what}: {err}"))),
                        // Vault answers 404 to an empty (or missing) folder.
                        Status::NotFound => Ok(None),
                        _ => Err(status_error(response.status, &what, folder)),
                    }
                },
                PluginError::Other,
            )
        }
    }

    export!(VaultKv);
}
