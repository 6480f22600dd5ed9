//! Registry-source plugins as berth's [`RegistrySource`].

use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt;
use serde_json::Value;
use wasmtime::Store;

use super::host::HostState;
use super::v0_1::middleware::berth::plugin::types::PluginError as WitError;
use super::v0_1::registry::RegistrySourcePlugin;
use super::v0_1::registry::exports::berth::plugin::registry_source as wit;
use super::{Bindings, KindPre, Plugin, Plugins, Pool};
use crate::registry::{ListQuery, Page, RegistryError, RegistrySource, ServerEntry};

impl Bindings for RegistrySourcePlugin {
    fn instantiate<'a>(
        pre: &'a KindPre,
        store: &'a mut Store<HostState>,
    ) -> futures::future::BoxFuture<'a, wasmtime::Result<Self>> {
        async move {
            match pre {
                KindPre::Registry(pre) => pre.instantiate_async(store).await,
                _ => Err(wasmtime::Error::msg("not a registry-source plugin")),
            }
        }
        .boxed()
    }
}

/// A registry-source plugin.
pub struct PluginRegistry {
    pool: Pool<RegistrySourcePlugin>,
}

impl PluginRegistry {
    pub(crate) fn new(plugins: Arc<Plugins>, plugin: Arc<Plugin>, config: Arc<str>) -> Self {
        Self {
            pool: Pool::new(plugins, plugin, config),
        }
    }

    fn answer<T>(&self, r: Result<T, WitError>) -> Result<T, RegistryError> {
        r.map_err(|e| {
            self.pool.count_error();
            match e {
                WitError::NotFound(m) => RegistryError::NotFound(m),
                WitError::InvalidInput(m) => RegistryError::Invalid(m),
                WitError::Unavailable(m) => RegistryError::Unavailable(m),
                WitError::Denied(m) => RegistryError::Denied(m),
                WitError::Unsupported(m) | WitError::Other(m) => RegistryError::Failed(m),
            }
        })
    }

    fn entry(&self, s: wit::Server) -> Result<ServerEntry, RegistryError> {
        let entry: Value = serde_json::from_str(&s.entry).map_err(|e| {
            self.pool.count_error();
            RegistryError::Failed(format!("entry `{}` is not valid JSON: {e}", s.name))
        })?;
        Ok(ServerEntry {
            name: s.name,
            entry,
        })
    }
}

#[async_trait]
impl RegistrySource for PluginRegistry {
    async fn list(&self, query: ListQuery) -> Result<Page, RegistryError> {
        let req = wit::ListRequest {
            query: query.query,
            cursor: query.cursor,
            limit: query.limit,
        };
        let page = self
            .pool
            .call(move |store, b| {
                async move {
                    b.berth_plugin_registry_source()
                        .call_list(store, &req)
                        .await
                }
                .boxed()
            })
            .await
            .map_err(|e| RegistryError::Failed(e.to_string()))?;
        let page = self.answer(page)?;
        Ok(Page {
            servers: page
                .servers
                .into_iter()
                .map(|s| self.entry(s))
                .collect::<Result<_, _>>()?,
            next_cursor: page.next_cursor,
        })
    }

    async fn get(&self, name: &str) -> Result<ServerEntry, RegistryError> {
        let name = name.to_owned();
        let server = self
            .pool
            .call(move |store, b| {
                async move {
                    b.berth_plugin_registry_source()
                        .call_get(store, &name)
                        .await
                }
                .boxed()
            })
            .await
            .map_err(|e| RegistryError::Failed(e.to_string()))?;
        self.entry(self.answer(server)?)
    }
}
