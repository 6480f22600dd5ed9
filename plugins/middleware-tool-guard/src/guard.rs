//! The tool guard's rules, independent of the WIT bindings: parse the
//! configuration, decide on `tools/call` requests, filter `tools/list`
//! results and redact `tools/call` results.
//!
//! Every transform returns `None` when it changed nothing, so the caller
//! passes the original JSON on without re-serialising it.

use std::borrow::Cow;
use std::cell::Cell;

use regex_lite::Regex;
use serde::Deserialize;
use serde_json::Value;

use crate::glob;

/// The configuration object, as `host::config()` returns it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Tool-name globs that are refused.
    #[serde(default)]
    deny: Vec<String>,
    /// When present, only tools matching one of these globs are allowed.
    #[serde(default)]
    allow: Option<Vec<String>>,
    /// Regular expressions (regex-lite syntax) whose matches are replaced in
    /// tool output.
    #[serde(default)]
    redact: Vec<String>,
    /// The replacement text.
    #[serde(default = "default_redact_with")]
    redact_with: String,
}

fn default_redact_with() -> String {
    "[REDACTED]".to_owned()
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it on.
    Allow,
    /// Refuse it with this status and message.
    Deny {
        /// HTTP-style status.
        status: u16,
        /// Shown to the client.
        message: String,
    },
}

/// A parsed configuration.
#[derive(Debug)]
pub struct Guard {
    deny: Vec<String>,
    allow: Option<Vec<String>>,
    redact: Vec<Regex>,
    redact_with: String,
}

impl Guard {
    /// Parses the configuration JSON. The error says which key is wrong; it
    /// may quote the configuration, so it goes to berth's log, not to
    /// clients.
    pub fn from_json(config: &str) -> Result<Guard, String> {
        let config: Config = if config.trim().is_empty() {
            serde_json::from_str("{}")
        } else {
            serde_json::from_str(config)
        }
        .map_err(|e| format!("invalid configuration: {e}"))?;
        let redact = config
            .redact
            .iter()
            .enumerate()
            .map(|(i, pattern)| {
                if pattern.is_empty() {
                    return Err(format!("invalid configuration: redact[{i}] is empty"));
                }
                Regex::new(pattern).map_err(|e| {
                    format!("invalid configuration: redact[{i}] is not a valid regex: {e}")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Guard {
            deny: config.deny,
            allow: config.allow,
            redact,
            redact_with: config.redact_with,
        })
    }

    /// Whether redaction patterns are configured.
    pub fn redacts(&self) -> bool {
        !self.redact.is_empty()
    }

    /// Whether the tool `name` may be listed and called.
    pub fn is_allowed(&self, name: &str) -> bool {
        if glob::any_matches(&self.deny, name) {
            return false;
        }
        match &self.allow {
            Some(allow) => glob::any_matches(allow, name),
            None => true,
        }
    }

    /// The verdict on a `tools/call` request with these params (JSON text).
    pub fn check_call(&self, params: Option<&str>) -> Verdict {
        #[derive(Deserialize)]
        struct CallParams<'a> {
            #[serde(borrow)]
            name: Option<Cow<'a, str>>,
        }
        let name = params
            .and_then(|p| serde_json::from_str::<CallParams<'_>>(p).ok())
            .and_then(|p| p.name);
        match name {
            Some(name) if self.is_allowed(&name) => Verdict::Allow,
            Some(name) => Verdict::Deny {
                status: 403,
                message: format!("tool `{name}` is not allowed on this workload"),
            },
            None => Verdict::Deny {
                status: 400,
                message: "tools/call params have no tool `name`".to_owned(),
            },
        }
    }

    /// A `tools/list` result without the denied tools; `None` when no tool
    /// is denied (or the result has no `tools` list).
    pub fn filter_tools_list(&self, result: &str) -> Option<String> {
        // Cheap first pass: only the names, everything else skipped.
        #[derive(Deserialize)]
        struct ToolName<'a> {
            #[serde(borrow, default)]
            name: Option<Cow<'a, str>>,
        }
        #[derive(Deserialize)]
        struct ListResult<'a> {
            #[serde(borrow, default)]
            tools: Vec<ToolName<'a>>,
        }
        let names: ListResult<'_> = serde_json::from_str(result).ok()?;
        let denied = |name: Option<&str>| name.is_some_and(|n| !self.is_allowed(n));
        if !names.tools.iter().any(|t| denied(t.name.as_deref())) {
            return None;
        }
        let mut value: Value = serde_json::from_str(result).ok()?;
        let tools = value.get_mut("tools")?.as_array_mut()?;
        tools.retain(|tool| !denied(tool.get("name").and_then(Value::as_str)));
        serde_json::to_string(&value).ok()
    }

    /// A `tools/call` result with every match of the redaction patterns
    /// replaced in `content[].text`, `content[].resource.text` and every
    /// string value of `structuredContent`; `None` when nothing matched.
    pub fn redact_call_result(&self, result: &str) -> Option<String> {
        if self.redact.is_empty() {
            return None;
        }
        let mut value: Value = serde_json::from_str(result).ok()?;
        let mut changed = false;
        if let Some(content) = value.get_mut("content").and_then(Value::as_array_mut) {
            for item in content {
                if let Some(Value::String(text)) = item.get_mut("text") {
                    changed |= self.redact_string(text);
                }
                if let Some(Value::String(text)) =
                    item.get_mut("resource").and_then(|r| r.get_mut("text"))
                {
                    changed |= self.redact_string(text);
                }
            }
        }
        if let Some(structured) = value.get_mut("structuredContent") {
            changed |= self.redact_value(structured);
        }
        if changed {
            serde_json::to_string(&value).ok()
        } else {
            None
        }
    }

    /// Redacts every string value (not keys) in `value`.
    fn redact_value(&self, value: &mut Value) -> bool {
        match value {
            Value::String(s) => self.redact_string(s),
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, v| self.redact_value(v) | changed),
            Value::Object(map) => map
                .values_mut()
                .fold(false, |changed, v| self.redact_value(v) | changed),
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }

    /// Applies every pattern in turn; empty matches replace nothing.
    fn redact_string(&self, text: &mut String) -> bool {
        let mut changed = false;
        for re in &self.redact {
            let hit = Cell::new(false);
            let replaced = re.replace_all(text, |caps: &regex_lite::Captures<'_>| {
                let m = &caps[0];
                if m.is_empty() {
                    String::new()
                } else {
                    hit.set(true);
                    self.redact_with.clone()
                }
            });
            if hit.get() {
                *text = replaced.into_owned();
                changed = true;
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests;
