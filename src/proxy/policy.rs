//! berth's own policy on a workload's MCP messages: authorization (Cedar),
//! the tool filter and overrides, tool-definition pinning, and the audit
//! record of each request. The chain layer (`layers/chain.rs`) calls it on
//! every message path — POST bodies, their SSE answers, GET and legacy SSE
//! streams — after the user's middleware on the way to the server and
//! after it on the way back, so that the policy sees the request exactly
//! as it reaches the server and the answer exactly as it reaches the
//! client: no plugin can rewrite a call past it.
//!
//! Invariants:
//! - a request the policy refuses never reaches the server; its answer is
//!   a JSON-RPC error that names no policy internals;
//! - list answers (`tools/list`, `prompts/list`, `resources/list`) are
//!   filtered item by item with the same check as a call of the item;
//! - names the server sees are the server's own (overrides translated);
//! - pinning records the server's full list, before any filtering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

use super::jsonrpc;
use super::middleware::Identity;
use super::pins::Pins;
use super::tools::ToolView;
use crate::auth::audit::{self, AuditConfig, AuditLog, Outcome};
use crate::auth::cedar::{Authorizer, Operation};

/// JSON-RPC error code of a request berth's policy refused (the code the
/// middleware chain uses too).
pub const DENIED: i64 = super::middleware::DENIED;
/// JSON-RPC error code of a call to a tool the client cannot see.
const NOT_FOUND: i64 = jsonrpc::INVALID_PARAMS;

/// Where a workload's audit events go, and how they are made.
#[derive(Clone)]
pub struct Auditor {
    /// The event settings.
    pub config: Arc<AuditConfig>,
    /// The writer.
    pub log: Arc<AuditLog>,
}

/// The policy of one workload's proxy.
pub struct Policy {
    workload: Arc<str>,
    authz: Option<Arc<Authorizer>>,
    tools: ToolView,
    pins: Option<Arc<Pins>>,
    audit: Option<Auditor>,
    /// Where a changed tool definition is recorded (the workload's audit
    /// log, whether or not its requests are audited).
    drift_log: Option<Arc<AuditLog>>,
    /// Each tool's `annotations` from the server's latest list, by the
    /// server's name (Cedar policies may read them).
    annotations: Mutex<HashMap<String, Value>>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("workload", &self.workload)
            .field("authz", &self.authz.is_some())
            .field("tools", &self.tools)
            .field("pins", &self.pins.is_some())
            .field("audit", &self.audit.is_some())
            .finish()
    }
}

/// What an audited request carries from its HTTP request.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The TCP peer.
    pub source: Option<std::net::IpAddr>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// `X-Request-Id`.
    pub request_id: Option<String>,
    /// The path posted to.
    pub endpoint: String,
    /// `http` or `sse`.
    pub transport: &'static str,
}

/// One request the policy follows to its answer.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// The method as the client sent it.
    pub method: String,
    /// The params as the client sent them (audit data), when audited.
    pub params: Option<Value>,
    /// When it was received.
    pub started: Instant,
    /// Its HTTP request, when audited.
    pub origin: Option<Arc<Origin>>,
    /// The caller.
    pub identity: Option<Identity>,
}

impl Policy {
    /// The policy of workload `workload`; `None` when it would do nothing.
    pub fn new(
        workload: &str,
        authz: Option<Arc<Authorizer>>,
        tools: ToolView,
        pins: Option<Arc<Pins>>,
        audit: Option<Auditor>,
        drift_log: Option<Arc<AuditLog>>,
    ) -> Option<Self> {
        if authz.is_none() && tools.is_identity() && pins.is_none() && audit.is_none() {
            return None;
        }
        Some(Self {
            workload: Arc::from(workload),
            authz,
            tools,
            pins,
            audit,
            drift_log,
            annotations: Mutex::new(HashMap::new()),
        })
    }

    /// Whether requests are audited.
    pub fn audits(&self) -> bool {
        self.audit.is_some()
    }

    /// Whether the policy needs the answer to `method`.
    pub fn watches(&self, method: &str) -> bool {
        self.audit.is_some()
            || matches!(method, "tools/list")
            || (self.authz.is_some() && matches!(method, "prompts/list" | "resources/list"))
    }

    fn allows(
        &self,
        identity: Option<&Identity>,
        op: Operation,
        name: &str,
        args: Option<&Value>,
    ) -> bool {
        let Some(authz) = &self.authz else {
            return true;
        };
        let annotations = (op == Operation::CallTool)
            .then(|| {
                self.annotations
                    .lock()
                    .expect("annotations lock")
                    .get(name)
                    .cloned()
            })
            .flatten();
        authz.allows(identity, op, name, args, annotations.as_ref())
    }

    /// Decides about a client request as it reaches the server: `Ok` with
    /// whether `msg` was rewritten, or `Err` with the answer to give the
    /// client instead.
    pub fn admit(&self, identity: Option<&Identity>, msg: &mut Value) -> Result<bool, Value> {
        let method = jsonrpc::method(msg).to_owned();
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        let refuse = |code: i64, message: &str| Err(jsonrpc::error(id.clone(), code, message));
        match method.as_str() {
            "tools/call" => {
                let Some(shown) = msg
                    .get("params")
                    .and_then(|p| p.get("name"))
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                else {
                    return refuse(NOT_FOUND, "tools/call needs the tool's `name`");
                };
                let Some(server) = self.tools.resolve(&shown) else {
                    return refuse(NOT_FOUND, &format!("tool `{shown}` not found"));
                };
                if self.pins.as_ref().is_some_and(|p| p.blocks(&server)) {
                    return refuse(
                        NOT_FOUND,
                        &format!(
                            "tool `{shown}` changed since it was approved; it is unavailable until an administrator approves it"
                        ),
                    );
                }
                let args = msg.get("params").and_then(|p| p.get("arguments"));
                if !self.allows(identity, Operation::CallTool, &server, args) {
                    return refuse(DENIED, "not authorized to call this tool");
                }
                if server != shown {
                    msg["params"]["name"] = Value::String(server);
                    return Ok(true);
                }
                Ok(false)
            }
            "prompts/get" => {
                let name = param_str(msg, "name");
                let args = msg.get("params").and_then(|p| p.get("arguments"));
                if !self.allows(identity, Operation::GetPrompt, &name, args) {
                    return refuse(DENIED, "not authorized to get this prompt");
                }
                Ok(false)
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let uri = param_str(msg, "uri");
                if !self.allows(identity, Operation::ReadResource, &uri, None) {
                    return refuse(DENIED, "not authorized to read this resource");
                }
                Ok(false)
            }
            _ if self.authz.is_none() => Ok(false),
            // With a policy, what it cannot judge is refused, as ToolHive
            // does: only methods that act on no tool, prompt or resource
            // of the server pass.
            "ping"
            | "initialize"
            | "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "roots/list"
            | "logging/setLevel"
            | "completion/complete"
            | "server/discover" => Ok(false),
            _ => refuse(DENIED, "not authorized"),
        }
    }

    /// Sees the server's answer to `method` before anything changes it
    /// (pinning, annotations).
    pub async fn observe(&self, method: &str, answer: &Value) {
        if method != "tools/list" {
            return;
        }
        let Some(result) = answer.get("result") else {
            return;
        };
        if self.authz.is_some()
            && let Some(tools) = result.get("tools").and_then(Value::as_array)
        {
            let mut annotations = self.annotations.lock().expect("annotations lock");
            for t in tools {
                if let (Some(name), Some(a)) =
                    (t.get("name").and_then(Value::as_str), t.get("annotations"))
                {
                    annotations.insert(name.to_owned(), a.clone());
                }
            }
        }
        if let Some(pins) = &self.pins {
            for change in pins.observe(result).await {
                tracing::warn!(workload = %self.workload, tool = %crate::logging::escape_controls(&change.tool), "A tool's definition changed since it was first seen.");
                if let Some(log) = &self.drift_log {
                    log.write(
                        &self.workload,
                        &audit::drift_event(&self.workload, &change.tool, &change.detail),
                    );
                }
            }
        }
    }

    /// Rewrites the answer to `method` as it goes to the client: list
    /// items the caller may not use, or that are hidden, are removed;
    /// overridden tools are shown renamed. Returns whether it changed.
    pub fn present(&self, identity: Option<&Identity>, method: &str, answer: &mut Value) -> bool {
        let Some(result) = answer.get_mut("result") else {
            return false;
        };
        let (key, op, field) = match method {
            "tools/list" => ("tools", Operation::CallTool, "name"),
            "prompts/list" => ("prompts", Operation::GetPrompt, "name"),
            "resources/list" => ("resources", Operation::ReadResource, "uri"),
            _ => return false,
        };
        let blocked = |name: &str| {
            op == Operation::CallTool && self.pins.as_ref().is_some_and(|p| p.blocks(name))
        };
        let mut changed = false;
        if self.authz.is_some() || self.pins.is_some() {
            // The caller's side of the checks is built once per list.
            let caller = self.authz.as_ref().map(|a| a.caller(identity));
            let annotations = self.annotations.lock().expect("annotations lock").clone();
            if let Some(Value::Array(items)) = result.get_mut(key) {
                let before = items.len();
                items.retain(|item| {
                    let Some(name) = item.get(field).and_then(Value::as_str) else {
                        return false;
                    };
                    if blocked(name) {
                        return false;
                    }
                    match (&self.authz, &caller) {
                        (Some(authz), Some(caller)) => authz.allows_caller(
                            caller,
                            op,
                            name,
                            None,
                            (op == Operation::CallTool)
                                .then(|| annotations.get(name))
                                .flatten(),
                        ),
                        _ => true,
                    }
                });
                changed |= items.len() != before;
            } else if result.get(key).is_some() && self.authz.is_some() {
                // A list that is not a list: nothing can be checked, so
                // nothing is shown.
                result[key] = json!([]);
                changed = true;
            }
        }
        if op == Operation::CallTool {
            changed |= self.tools.show_list(result);
        }
        changed
    }

    /// Whether a message the server sends on its own (a request or a
    /// notification on a stream) may reach the caller: a notification
    /// about a resource the caller may not read does not.
    pub fn passes(&self, identity: Option<&Identity>, msg: &Value) -> bool {
        if self.authz.is_none() {
            return true;
        }
        match jsonrpc::method(msg) {
            "notifications/resources/updated" => {
                let uri = param_str(msg, "uri");
                self.allows(identity, Operation::ReadResource, &uri, None)
            }
            _ => true,
        }
    }

    /// The ticket of a request being forwarded.
    pub fn ticket(
        &self,
        msg: &Value,
        identity: Option<&Identity>,
        origin: Option<&Arc<Origin>>,
    ) -> Ticket {
        Ticket {
            method: jsonrpc::method(msg).to_owned(),
            params: self.audit.as_ref().and_then(|_| msg.get("params").cloned()),
            started: Instant::now(),
            origin: origin.cloned(),
            identity: identity.cloned(),
        }
    }

    /// Writes the audit line of a request that got `answer` (`None`: no
    /// answer came — a notification, or a failed exchange with `outcome`).
    pub fn record(&self, ticket: &Ticket, answer: Option<&Value>, outcome: Option<Outcome>) {
        let Some(a) = &self.audit else {
            return;
        };
        let origin = ticket.origin.as_deref().cloned().unwrap_or_default();
        let outcome = outcome.unwrap_or_else(|| match answer {
            Some(v) => Outcome::of_answer(v),
            None => Outcome::Success,
        });
        let size = answer.map_or(0, |v| v.to_string().len());
        let rec = audit::Record {
            workload: &self.workload,
            identity: ticket.identity.as_ref(),
            source: origin.source,
            user_agent: origin.user_agent.as_deref(),
            request_id: origin.request_id.as_deref(),
            endpoint: &origin.endpoint,
            transport: origin.transport,
            method: &ticket.method,
            params: ticket.params.as_ref(),
            outcome,
            duration: ticket.started.elapsed(),
            response: answer,
            response_size: size,
        };
        if let Some(event) = audit::event(&a.config, &rec) {
            a.log.write(&self.workload, &event);
        }
    }

    /// Writes the audit line of a request refused before it was forwarded.
    pub fn record_refusal(&self, ticket: &Ticket, answer: &Value) {
        self.record(ticket, Some(answer), Some(Outcome::Denied));
    }
}

fn param_str(msg: &Value, key: &str) -> String {
    msg.get("params")
        .and_then(|p| p.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}
