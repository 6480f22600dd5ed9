//! Audit events of MCP requests: ToolHive's audit configuration
//! (`audit_config`), one JSON event per request, and the writer that puts
//! the events into each workload's audit file (`audit/writer.rs`).
//!
//! The proxy knows each request when it is done (its identity, outcome,
//! duration and answer) and hands a [`Record`] to [`event`], which applies
//! the configuration's filters and builds the line; [`AuditLog::write`]
//! queues it. Invariants:
//!
//! - An API caller never chooses where events go: `logFile` is refused
//!   when a configuration is read, and the files are berth's own (the
//!   global sink is the operator's, from `berth.toml`).
//! - Request and response bodies appear only when the configuration asks
//!   for them, with secret-looking members masked, and whole or not at
//!   all: a body larger than `maxDataSize` becomes a marker, never a
//!   prefix that could be mistaken for the whole.
//! - The source address is the peer's, never a header the client wrote.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::DENIED;
use crate::auth::Identity;

mod writer;

pub use writer::AuditLog;

#[cfg(test)]
mod tests;

/// Every event type a configuration may name: ToolHive's (spec 4.8) and
/// berth's own [`TOOL_DRIFT`].
pub const EVENT_TYPES: &[&str] = &[
    "mcp_initialize",
    "mcp_tool_call",
    "mcp_tools_list",
    "mcp_resource_read",
    "mcp_resources_list",
    "mcp_prompt_get",
    "mcp_prompts_list",
    "mcp_notification",
    "mcp_ping",
    "mcp_logging",
    "mcp_completion",
    "mcp_roots_list_changed",
    "mcp_request",
    "sse_connection",
    "http_request",
    TOOL_DRIFT,
];

/// berth's event type for a tool whose definition changed (see
/// [`drift_event`]).
pub const TOOL_DRIFT: &str = "mcp_tool_drift";

/// Default of `maxDataSize`, in bytes.
pub const DEFAULT_MAX_DATA_SIZE: usize = 1024;

/// The largest body an event embeds, whatever `maxDataSize` says.
pub const MAX_DATA_SIZE_CAP: usize = 1024 * 1024;

/// Default of `maxDelegationDepth`.
pub const DEFAULT_MAX_DELEGATION_DEPTH: usize = 10;

/// Longest `component` a configuration may set, in bytes.
const MAX_COMPONENT_LEN: usize = 256;

/// Longest string copied from a request or a token into an event (names,
/// user agent, error message), in bytes; longer ones are cut.
const MAX_FIELD_LEN: usize = 256;

/// Longest endpoint copied into an event, in bytes.
const MAX_ENDPOINT_LEN: usize = 1024;

/// How deep masking looks into a body: anything deeper is replaced whole.
const MAX_MASK_DEPTH: usize = 32;

/// Links of an `act` chain looked at, at most (the chain kept is capped
/// lower, by `maxDelegationDepth`; this bounds the counting of the rest).
const MAX_ACT_LINKS: usize = 1000;

/// What replaces a masked value.
const REDACTED: &str = "[redacted]";

/// Parts of a member name that mark its value as a secret (compared with
/// the lowercased name).
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "authorization",
    "credential",
    "private_key",
    "private-key",
    "cookie",
];

// === impl AuditConfig ===

/// ToolHive's audit configuration (`audit_config`, spec 4.8), as a
/// workload's RunConfig carries it.
///
/// Reading one validates it: `logFile` is refused (an API caller must not
/// choose a path berth writes to; events go to berth's own files), as are
/// unknown fields and unknown event type names. The snake_case names of
/// older ToolHive releases (`event_types`, …) are accepted as aliases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "AuditConfigWire")]
pub struct AuditConfig {
    /// Whether events are emitted at all (true when the object is given
    /// without it).
    pub enabled: bool,
    /// The events' `component`; the workload's name when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Only these event types are emitted (all when empty).
    pub event_types: Vec<String>,
    /// These event types are never emitted (wins over `event_types`).
    pub exclude_event_types: Vec<String>,
    /// Whether events embed the request's params (`data.request`).
    pub include_request_data: bool,
    /// Whether events embed the answer (`data.response`).
    pub include_response_data: bool,
    /// Largest embedded body, in bytes of its JSON; a larger one becomes a
    /// marker. Used up to [`MAX_DATA_SIZE_CAP`].
    pub max_data_size: usize,
    /// Whether a JSON-RPC error inside a successful answer makes the
    /// outcome `application_error` (and its code and message are recorded).
    pub detect_application_errors: bool,
    /// Links of an `act` (delegation) chain recorded, at most.
    pub max_delegation_depth: usize,
}

impl Default for AuditConfig {
    /// The configuration of an empty object: everything audited, no bodies.
    fn default() -> Self {
        Self {
            enabled: true,
            component: None,
            event_types: Vec::new(),
            exclude_event_types: Vec::new(),
            include_request_data: false,
            include_response_data: false,
            max_data_size: DEFAULT_MAX_DATA_SIZE,
            detect_application_errors: true,
            max_delegation_depth: DEFAULT_MAX_DELEGATION_DEPTH,
        }
    }
}

/// Why an audit configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditConfigError {
    /// `logFile` was given.
    #[error(
        "`logFile` is not accepted: berth writes audit events to its own files (a global sink is set in berth.toml)"
    )]
    LogFile,
    /// An event type name is not one berth emits.
    #[error("unknown event type `{name}` in `{field}`")]
    UnknownEventType {
        /// `eventTypes` or `excludeEventTypes`.
        field: &'static str,
        /// The name given.
        name: String,
    },
    /// `component` is empty or too long.
    #[error("`component` must be 1 to {MAX_COMPONENT_LEN} bytes long")]
    Component,
}

impl AuditConfig {
    /// Checks the event type names and the component.
    pub fn validate(&self) -> Result<(), AuditConfigError> {
        for (field, names) in [
            ("eventTypes", &self.event_types),
            ("excludeEventTypes", &self.exclude_event_types),
        ] {
            if let Some(name) = names.iter().find(|n| !EVENT_TYPES.contains(&n.as_str())) {
                return Err(AuditConfigError::UnknownEventType {
                    field,
                    name: name.clone(),
                });
            }
        }
        if let Some(c) = &self.component
            && (c.is_empty() || c.len() > MAX_COMPONENT_LEN)
        {
            return Err(AuditConfigError::Component);
        }
        Ok(())
    }

    /// Whether events of `event_type` are emitted.
    pub fn wants(&self, event_type: &str) -> bool {
        self.enabled
            && !self.exclude_event_types.iter().any(|t| t == event_type)
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
    }

    /// The largest embedded body, with the cap applied.
    fn data_limit(&self) -> usize {
        self.max_data_size.min(MAX_DATA_SIZE_CAP)
    }
}

/// The configuration as written, before `logFile` is refused and the
/// names are checked.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct AuditConfigWire {
    enabled: bool,
    component: Option<String>,
    #[serde(alias = "event_types")]
    event_types: Vec<String>,
    #[serde(alias = "exclude_event_types")]
    exclude_event_types: Vec<String>,
    #[serde(alias = "include_request_data")]
    include_request_data: bool,
    #[serde(alias = "include_response_data")]
    include_response_data: bool,
    #[serde(alias = "max_data_size")]
    max_data_size: usize,
    #[serde(alias = "detect_application_errors")]
    detect_application_errors: bool,
    #[serde(alias = "max_delegation_depth")]
    max_delegation_depth: usize,
    /// Read only to be refused (`null` counts as absent).
    #[serde(alias = "log_file")]
    log_file: Option<serde::de::IgnoredAny>,
}

impl Default for AuditConfigWire {
    fn default() -> Self {
        let d = AuditConfig::default();
        Self {
            enabled: d.enabled,
            component: d.component,
            event_types: d.event_types,
            exclude_event_types: d.exclude_event_types,
            include_request_data: d.include_request_data,
            include_response_data: d.include_response_data,
            max_data_size: d.max_data_size,
            detect_application_errors: d.detect_application_errors,
            max_delegation_depth: d.max_delegation_depth,
            log_file: None,
        }
    }
}

impl TryFrom<AuditConfigWire> for AuditConfig {
    type Error = AuditConfigError;

    fn try_from(w: AuditConfigWire) -> Result<Self, Self::Error> {
        if w.log_file.is_some() {
            return Err(AuditConfigError::LogFile);
        }
        let config = Self {
            enabled: w.enabled,
            component: w.component,
            event_types: w.event_types,
            exclude_event_types: w.exclude_event_types,
            include_request_data: w.include_request_data,
            include_response_data: w.include_response_data,
            max_data_size: w.max_data_size,
            detect_application_errors: w.detect_application_errors,
            max_delegation_depth: w.max_delegation_depth,
        };
        config.validate()?;
        Ok(config)
    }
}

// === impl Outcome ===

/// How a request ended, as an event's `outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered (HTTP 2xx, no JSON-RPC error).
    Success,
    /// Refused: HTTP 401 or 403, or berth's policy or middleware refused it.
    Denied,
    /// Refused as malformed or unacceptable (another HTTP 4xx).
    Failure,
    /// The proxy or the server failed (HTTP 5xx, an upstream gone).
    Error,
    /// Answered with a JSON-RPC error.
    ApplicationError,
}

impl Outcome {
    /// The outcome of a request answered with the JSON-RPC message
    /// `answer`: an `error` member makes it [`Outcome::ApplicationError`],
    /// or [`Outcome::Denied`] when its code is berth's denial (-32003) or
    /// 403.
    pub fn of_answer(answer: &Value) -> Self {
        match answer.get("error") {
            None => Self::Success,
            Some(err) => match err.get("code").and_then(Value::as_i64) {
                Some(code) if code == DENIED || code == 403 => Self::Denied,
                _ => Self::ApplicationError,
            },
        }
    }

    /// The outcome of a request answered with HTTP `status` (ToolHive's
    /// mapping): 2xx success, 401 and 403 denied, other 4xx failure, 5xx
    /// error.
    pub fn of_status(status: u16) -> Self {
        match status {
            401 | 403 => Self::Denied,
            400..=499 => Self::Failure,
            500.. => Self::Error,
            _ => Self::Success,
        }
    }

    /// The name an event shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Failure => "failure",
            Self::Error => "error",
            Self::ApplicationError => "application_error",
        }
    }
}

// === impl Record ===

/// What the proxy knows about one MCP request when it is done.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The workload's name.
    pub workload: &'a str,
    /// The authenticated caller: subject and verified claims (`name`,
    /// `preferred_username`, `email`, `act`).
    pub identity: Option<&'a Identity>,
    /// The peer's address (never a forwarding header).
    pub source: Option<IpAddr>,
    /// The request's `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// The request's `X-Request-ID`.
    pub request_id: Option<&'a str>,
    /// The HTTP path.
    pub endpoint: &'a str,
    /// `http` or `sse`.
    pub transport: &'a str,
    /// The MCP method (`tools/call`, …); empty for a request that carried
    /// no MCP message (its type is then `http_request`).
    pub method: &'a str,
    /// The request's params.
    pub params: Option<&'a Value>,
    /// How it ended, as the proxy saw it; [`event`] turns a success whose
    /// answer holds a JSON-RPC error into an application error (when the
    /// configuration detects them).
    pub outcome: Outcome,
    /// From the request's arrival to its answer.
    pub duration: Duration,
    /// The JSON-RPC answer as the client got it, if any.
    pub response: Option<&'a Value>,
    /// Bytes of the answer.
    pub response_size: usize,
}

/// The event type of MCP `method` (spec 4.8); `http_request` for an empty
/// method, `mcp_request` for a method without a type of its own.
pub fn event_type(method: &str) -> &'static str {
    match method {
        "" => "http_request",
        "initialize" => "mcp_initialize",
        "tools/call" => "mcp_tool_call",
        "tools/list" => "mcp_tools_list",
        "resources/read" => "mcp_resource_read",
        "resources/list" => "mcp_resources_list",
        "prompts/get" => "mcp_prompt_get",
        "prompts/list" => "mcp_prompts_list",
        "notifications/message" => "mcp_notification",
        "ping" => "mcp_ping",
        "logging/setLevel" => "mcp_logging",
        "completion/complete" => "mcp_completion",
        "notifications/roots/list_changed" => "mcp_roots_list_changed",
        _ => "mcp_request",
    }
}

/// The audit event of `rec`, or `None` when the configuration does not
/// want its type (or is disabled).
pub fn event(config: &AuditConfig, rec: &Record<'_>) -> Option<Value> {
    let kind = event_type(rec.method);
    if !config.wants(kind) {
        return None;
    }
    let rpc_error = rec
        .response
        .filter(|_| config.detect_application_errors)
        .and_then(|r| r.get("error"));
    let outcome = match rec.outcome {
        Outcome::Success if rpc_error.is_some() => {
            rec.response.map_or(rec.outcome, Outcome::of_answer)
        }
        Outcome::ApplicationError if !config.detect_application_errors => Outcome::Success,
        o => o,
    };
    let mut ev = header(kind, outcome);
    ev.insert(
        "component".into(),
        config.component.as_deref().unwrap_or(rec.workload).into(),
    );
    ev.insert("source".into(), source(rec));
    ev.insert("subjects".into(), subjects(rec));
    if let Some(d) = rec
        .identity
        .and_then(|i| delegation(&i.claims, config.max_delegation_depth))
    {
        ev.insert("delegation".into(), d);
    }
    ev.insert("target".into(), target(rec));
    let mut extra = Map::new();
    extra.insert("duration_ms".into(), millis(rec.duration).into());
    extra.insert("transport".into(), rec.transport.into());
    extra.insert("response_size_bytes".into(), rec.response_size.into());
    extra.insert("workload".into(), rec.workload.into());
    if let Some(err) = rpc_error {
        if let Some(code) = err.get("code").and_then(Value::as_i64) {
            extra.insert("jsonrpc_error_code".into(), code.into());
        }
        if let Some(msg) = err.get("message").and_then(Value::as_str) {
            extra.insert(
                "jsonrpc_error_message".into(),
                short(msg, MAX_FIELD_LEN).into(),
            );
        }
    }
    ev.insert("metadata".into(), json!({ "extra": extra }));
    let mut data = Map::new();
    if config.include_request_data
        && let Some(p) = rec.params
    {
        data.insert("request".into(), embed(p, config.data_limit()));
    }
    if config.include_response_data
        && let Some(r) = rec.response
    {
        data.insert("response".into(), embed(r, config.data_limit()));
    }
    if !data.is_empty() {
        ev.insert("data".into(), data.into());
    }
    Some(ev.into())
}

/// berth's event for a tool whose definition changed since the workload
/// last listed it: `change` says how (it is embedded up to
/// [`MAX_DATA_SIZE_CAP`]). The caller checks `config.wants(TOOL_DRIFT)`.
pub fn drift_event(workload: &str, tool: &str, change: &Value) -> Value {
    let mut ev = header(TOOL_DRIFT, Outcome::Success);
    ev.insert("component".into(), workload.into());
    ev.insert(
        "target".into(),
        json!({
            "method": "tools/list",
            "name": short(tool, MAX_FIELD_LEN),
            "type": "tool",
        }),
    );
    ev.insert(
        "metadata".into(),
        json!({ "extra": {
            "workload": workload,
            "change": embed(change, MAX_DATA_SIZE_CAP),
        }}),
    );
    ev.into()
}

/// The members every event starts with.
fn header(kind: &str, outcome: Outcome) -> Map<String, Value> {
    let now = rfc3339_now();
    let mut ev = Map::new();
    ev.insert("time".into(), now.clone().into());
    ev.insert("level".into(), "AUDIT".into());
    ev.insert("msg".into(), "audit_event".into());
    ev.insert("audit_id".into(), uuid_v4().into());
    ev.insert("type".into(), kind.into());
    ev.insert("logged_at".into(), now.into());
    ev.insert("outcome".into(), outcome.as_str().into());
    ev
}

fn source(rec: &Record<'_>) -> Value {
    let mut s = Map::new();
    s.insert("type".into(), "network".into());
    if let Some(ip) = rec.source {
        s.insert("value".into(), ip.to_canonical().to_string().into());
    }
    let mut extra = Map::new();
    if let Some(ua) = rec.user_agent {
        extra.insert("user_agent".into(), short(ua, MAX_FIELD_LEN).into());
    }
    if let Some(id) = rec.request_id {
        extra.insert("request_id".into(), short(id, MAX_FIELD_LEN).into());
    }
    if !extra.is_empty() {
        s.insert("extra".into(), extra.into());
    }
    s.into()
}

fn subjects(rec: &Record<'_>) -> Value {
    let mut s = Map::new();
    let claim = |name: &str| {
        rec.identity
            .and_then(|i| i.claims.get(name))
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let user = ["name", "preferred_username", "email"]
        .into_iter()
        .find_map(claim)
        .unwrap_or("anonymous");
    s.insert("user".into(), short(user, MAX_FIELD_LEN).into());
    if let Some(i) = rec.identity.filter(|i| !i.subject.is_empty()) {
        s.insert("user_id".into(), short(&i.subject, MAX_FIELD_LEN).into());
    }
    // Only an initialize says who the client is.
    let info = (rec.method == "initialize")
        .then(|| rec.params?.get("clientInfo"))
        .flatten();
    for (key, member) in [("client_name", "name"), ("client_version", "version")] {
        if let Some(v) = info.and_then(|i| i.get(member)).and_then(Value::as_str) {
            s.insert(key.into(), short(v, MAX_FIELD_LEN).into());
        }
    }
    s.into()
}

/// The `act` chain of `claims` (RFC 8693: the current actor first, each
/// earlier one nested in it), at most `max_depth` links kept.
fn delegation(claims: &Map<String, Value>, max_depth: usize) -> Option<Value> {
    let mut act = claims.get("act")?;
    let mut chain = Vec::new();
    let (mut omitted, mut malformed) = (0usize, false);
    for _ in 0..MAX_ACT_LINKS {
        let Some(link) = act.as_object() else {
            malformed = true;
            break;
        };
        let sub = link.get("sub").and_then(Value::as_str);
        malformed |= sub.is_none();
        if chain.len() < max_depth {
            let mut entry = Map::new();
            if let Some(iss) = link.get("iss").and_then(Value::as_str) {
                entry.insert("iss".into(), short(iss, MAX_FIELD_LEN).into());
            }
            if let Some(sub) = sub {
                entry.insert("sub".into(), short(sub, MAX_FIELD_LEN).into());
            }
            chain.push(Value::Object(entry));
        } else {
            omitted += 1;
        }
        match link.get("act") {
            Some(next) => act = next,
            None => break,
        }
    }
    Some(json!({
        "chain": chain,
        "truncated": omitted > 0,
        "omitted": omitted,
        "malformed": malformed,
    }))
}

fn target(rec: &Record<'_>) -> Value {
    let param = |key: &str| rec.params?.get(key)?.as_str();
    let (name, kind) = match rec.method {
        "tools/call" => (param("name"), "tool"),
        "prompts/get" => (param("name"), "prompt"),
        "resources/read" => (param("uri"), "resource"),
        "initialize" => (
            rec.params
                .and_then(|p| p.get("clientInfo")?.get("name")?.as_str()),
            "endpoint",
        ),
        _ => (None, "endpoint"),
    };
    let mut t = Map::new();
    t.insert(
        "endpoint".into(),
        short(rec.endpoint, MAX_ENDPOINT_LEN).into(),
    );
    t.insert("method".into(), short(rec.method, MAX_FIELD_LEN).into());
    if let Some(name) = name {
        t.insert("name".into(), short(name, MAX_FIELD_LEN).into());
    }
    t.insert("type".into(), kind.into());
    t.into()
}

// === Bodies ===

/// `body` as an event embeds it: masked, and whole if its JSON is at most
/// `limit` bytes, else a marker saying how large it was.
fn embed(body: &Value, limit: usize) -> Value {
    let masked = mask(body, 0);
    let size = serialized_len(&masked);
    if size > limit {
        json!({ "truncated": true, "size": size })
    } else {
        masked
    }
}

/// `v` with the value of every member whose name looks like a secret
/// replaced by `"[redacted]"`, at any depth; what lies deeper than
/// [`MAX_MASK_DEPTH`] is replaced whole.
fn mask(v: &Value, depth: usize) -> Value {
    match v {
        Value::Object(_) | Value::Array(_) if depth >= MAX_MASK_DEPTH => REDACTED.into(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_key(k) {
                    REDACTED.into()
                } else {
                    mask(v, depth + 1)
                };
                (k.clone(), v)
            })
            .collect::<Map<_, _>>()
            .into(),
        Value::Array(a) => a.iter().map(|v| mask(v, depth + 1)).collect(),
        other => other.clone(),
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| key.contains(s))
}

/// Bytes of `v`'s compact JSON, counted without building it.
fn serialized_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

// === Helpers ===

/// `s` cut to at most `max` bytes, on a character boundary.
fn short(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A random (version 4) UUID, lowercase and hyphenated.
fn uuid_v4() -> String {
    let mut b = rand::random::<u128>().to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
