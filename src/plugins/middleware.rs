//! Middleware plugins as the proxy's [`Middleware`].

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::FutureExt;
use serde_json::Value;
use wasmtime::Store;

use super::host::HostState;
use super::v0_1::middleware::MiddlewarePlugin;
use super::v0_1::middleware::exports::berth::plugin::middleware as wit;
use super::{Bindings, CallError, KindPre, Plugin, Plugins, Pool};
use crate::proxy::{Decision, McpRequest, Middleware, MiddlewareFailure};

impl Bindings for MiddlewarePlugin {
    fn instantiate<'a>(
        pre: &'a KindPre,
        store: &'a mut Store<HostState>,
    ) -> futures::future::BoxFuture<'a, wasmtime::Result<Self>> {
        async move {
            match pre {
                KindPre::Middleware(pre) => pre.instantiate_async(store).await,
                _ => Err(wasmtime::Error::msg("not a middleware plugin")),
            }
        }
        .boxed()
    }
}

/// A method pattern: `*` matches any run of characters.
fn matches(pattern: &str, method: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == method,
        Some((head, tail)) => {
            let Some(rest) = method.strip_prefix(head) else {
                return false;
            };
            if !tail.contains('*') {
                return rest.len() >= tail.len() && rest.ends_with(tail);
            }
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| matches(tail, &rest[i..]))
        }
    }
}

/// What the plugin asked to see, for one generation of its code.
struct Interests {
    generation: u64,
    requests: Vec<String>,
    responses: Vec<String>,
}

/// One middleware attachment: a plugin with its merged configuration.
pub struct PluginMiddleware {
    pool: Pool<MiddlewarePlugin>,
    interests: Mutex<Option<Arc<Interests>>>,
}

impl PluginMiddleware {
    pub(crate) fn new(plugins: Arc<Plugins>, plugin: Arc<Plugin>, config: Arc<str>) -> Self {
        Self {
            pool: Pool::new(plugins, plugin, config),
            interests: Mutex::new(None),
        }
    }

    fn failure(e: CallError) -> MiddlewareFailure {
        MiddlewareFailure(e.to_string())
    }

    async fn interests(&self) -> Result<Arc<Interests>, MiddlewareFailure> {
        let generation = self
            .pool
            .plugin()
            .current()
            .map_err(|e| MiddlewareFailure(e.to_string()))?
            .generation;
        if let Some(i) = self.interests.lock().expect("interests lock").as_ref()
            && i.generation == generation
        {
            return Ok(i.clone());
        }
        let set = self
            .pool
            .call(|store, b| {
                async move { b.berth_plugin_middleware().call_interests(store).await }.boxed()
            })
            .await
            .map_err(Self::failure)?;
        let i = Arc::new(Interests {
            generation,
            requests: set.requests,
            responses: set.responses,
        });
        *self.interests.lock().expect("interests lock") = Some(i.clone());
        Ok(i)
    }
}

fn to_wit(req: &McpRequest) -> wit::Request {
    wit::Request {
        workload: req.workload.to_string(),
        method: req.method.clone(),
        params: req.params.as_ref().map(Value::to_string),
        session: req.session.clone(),
        identity: req.identity.as_ref().map(|i| i.subject.clone()),
        headers: req
            .headers
            .iter()
            .map(|(name, value)| wit::Pair {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
    }
}

#[async_trait]
impl Middleware for PluginMiddleware {
    fn name(&self) -> &str {
        self.pool.plugin().name()
    }

    async fn wants_request(&self, method: &str) -> Result<bool, MiddlewareFailure> {
        Ok(self
            .interests()
            .await?
            .requests
            .iter()
            .any(|p| matches(p, method)))
    }

    async fn wants_response(&self, method: &str) -> Result<bool, MiddlewareFailure> {
        Ok(self
            .interests()
            .await?
            .responses
            .iter()
            .any(|p| matches(p, method)))
    }

    async fn on_request(&self, req: &McpRequest) -> Result<Decision, MiddlewareFailure> {
        let wreq = to_wit(req);
        let decision = self
            .pool
            .call(move |store, b| {
                async move {
                    b.berth_plugin_middleware()
                        .call_on_request(store, &wreq)
                        .await
                }
                .boxed()
            })
            .await
            .map_err(Self::failure)?;
        Ok(match decision {
            wit::Decision::Allow => Decision::Allow,
            wit::Decision::Deny(d) => Decision::Deny {
                status: d.status,
                message: d.message,
            },
            wit::Decision::Rewrite(params) => match serde_json::from_str::<Value>(&params) {
                Ok(v @ Value::Object(_)) => Decision::Rewrite(v),
                _ => {
                    self.pool.count_error();
                    return Err(MiddlewareFailure(
                        "it rewrote the params to something that is not a JSON object".into(),
                    ));
                }
            },
        })
    }

    async fn on_response(
        &self,
        req: &McpRequest,
        result: &Value,
    ) -> Result<Option<Value>, MiddlewareFailure> {
        let wreq = to_wit(req);
        let body = result.to_string();
        let replaced = self
            .pool
            .call(move |store, b| {
                async move {
                    b.berth_plugin_middleware()
                        .call_on_response(store, &wreq, &body)
                        .await
                }
                .boxed()
            })
            .await
            .map_err(Self::failure)?;
        match replaced {
            None => Ok(None),
            Some(text) => match serde_json::from_str::<Value>(&text) {
                Ok(v @ Value::Object(_)) => Ok(Some(v)),
                _ => {
                    self.pool.count_error();
                    Err(MiddlewareFailure(
                        "it rewrote the result to something that is not a JSON object".into(),
                    ))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns() {
        assert!(matches("tools/*", "tools/call"));
        assert!(matches("tools/*", "tools/"));
        assert!(!matches("tools/*", "resources/list"));
        assert!(matches("*", "anything"));
        assert!(matches("tools/call", "tools/call"));
        assert!(!matches("tools/call", "tools/callx"));
        assert!(matches("*/list", "prompts/list"));
        assert!(matches("*s/*", "tools/list"));
        assert!(!matches("a*b*c", "acb"));
    }
}
