//! Secrets-provider plugins as berth's [`SecretsProvider`].

use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt;
use wasmtime::Store;

use super::host::HostState;
use super::v0_1::middleware::berth::plugin::types::PluginError as WitError;
use super::v0_1::secrets::SecretsProviderPlugin;
use super::{Bindings, KindPre, Plugin, Plugins, Pool};
use crate::secrets::{Capabilities, SecretsError, SecretsProvider};

impl Bindings for SecretsProviderPlugin {
    fn instantiate<'a>(
        pre: &'a KindPre,
        store: &'a mut Store<HostState>,
    ) -> futures::future::BoxFuture<'a, wasmtime::Result<Self>> {
        async move {
            match pre {
                KindPre::Secrets(pre) => pre.instantiate_async(store).await,
                _ => Err(wasmtime::Error::msg("not a secrets-provider plugin")),
            }
        }
        .boxed()
    }
}

/// A secrets-provider plugin.
pub struct PluginSecrets {
    pool: Pool<SecretsProviderPlugin>,
}

impl PluginSecrets {
    pub(crate) fn new(plugins: Arc<Plugins>, plugin: Arc<Plugin>, config: Arc<str>) -> Self {
        Self {
            pool: Pool::new(plugins, plugin, config),
        }
    }

    fn answer<T>(&self, r: Result<T, WitError>, op: &'static str) -> Result<T, SecretsError> {
        r.map_err(|e| {
            self.pool.count_error();
            match e {
                WitError::NotFound(m) => SecretsError::NotFound(m),
                WitError::InvalidInput(m) => SecretsError::Invalid(m),
                WitError::Unavailable(m) => SecretsError::Unavailable(m),
                WitError::Denied(m) => SecretsError::Denied(m),
                WitError::Unsupported(_) => SecretsError::Unsupported(op),
                WitError::Other(m) => SecretsError::Failed(m),
            }
        })
    }
}

fn failed(e: super::CallError) -> SecretsError {
    SecretsError::Failed(e.to_string())
}

#[async_trait]
impl SecretsProvider for PluginSecrets {
    async fn capabilities(&self) -> Result<Capabilities, SecretsError> {
        let c = self
            .pool
            .call(|store, b| {
                async move {
                    b.berth_plugin_secrets_provider()
                        .call_capabilities(store)
                        .await
                }
                .boxed()
            })
            .await
            .map_err(failed)?;
        Ok(Capabilities {
            read: c.can_read,
            write: c.can_write,
            delete: c.can_delete,
            list: c.can_list,
        })
    }

    async fn get(&self, name: &str) -> Result<String, SecretsError> {
        let name = name.to_owned();
        let r = self
            .pool
            .call(move |store, b| {
                async move {
                    b.berth_plugin_secrets_provider()
                        .call_get(store, &name)
                        .await
                }
                .boxed()
            })
            .await
            .map_err(failed)?;
        self.answer(r, "reading")
    }

    async fn set(&self, name: &str, value: &str) -> Result<(), SecretsError> {
        let (name, value) = (name.to_owned(), value.to_owned());
        let r = self
            .pool
            .call(move |store, b| {
                async move {
                    b.berth_plugin_secrets_provider()
                        .call_set(store, &name, &value)
                        .await
                }
                .boxed()
            })
            .await
            .map_err(failed)?;
        self.answer(r, "writing")
    }

    async fn delete(&self, name: &str) -> Result<(), SecretsError> {
        let name = name.to_owned();
        let r = self
            .pool
            .call(move |store, b| {
                async move {
                    b.berth_plugin_secrets_provider()
                        .call_delete(store, &name)
                        .await
                }
                .boxed()
            })
            .await
            .map_err(failed)?;
        self.answer(r, "deleting")
    }

    async fn list(&self) -> Result<Vec<String>, SecretsError> {
        let r = self
            .pool
            .call(|store, b| {
                async move { b.berth_plugin_secrets_provider().call_list(store).await }.boxed()
            })
            .await
            .map_err(failed)?;
        self.answer(r, "listing")
    }
}
