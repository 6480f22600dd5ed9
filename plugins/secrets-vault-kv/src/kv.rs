//! Vault KV version 2, independent of the WIT bindings: configuration,
//! secret names, request paths and bodies, response parsing and status
//! mapping.
//!
//! API used (all under `{address}/v1/{mount}/`):
//!
//! | operation | request | answer |
//! |---|---|---|
//! | get | `GET data/{path}` | `{"data": {"data": {field: value}, "metadata": {…}}}` |
//! | set | `POST data/{path}`, body `{"data": {field: value}}` | 200 |
//! | delete | `GET metadata/{path}` (404: absent), then `DELETE metadata/{path}` | 204 |
//! | list | `GET metadata/{folder}?list=true` | `{"data": {"keys": ["a", "team/"]}}`, 404 when empty |
//!
//! `{path}` is `prefix/name`, percent-encoded per segment.

use std::fmt;

use berth_plugin_sdk::percent_encode_path;
use berth_plugin_sdk::url::Url;
use serde::Deserialize;
use serde_json::Value;

/// The configuration as written in `berth.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    address: String,
    token: String,
    #[serde(default = "default_mount")]
    mount: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default = "default_field")]
    field: String,
    #[serde(default = "default_timeout_secs")]
    timeout_secs: u64,
}

fn default_mount() -> String {
    "secret".to_owned()
}

fn default_field() -> String {
    "value".to_owned()
}

fn default_timeout_secs() -> u64 {
    30
}

/// A checked configuration. Its `Debug` output hides the token.
#[derive(Clone)]
pub struct Config {
    /// Vault's base URL, e.g. `http://127.0.0.1:8200`.
    pub address: Url,
    /// Sent as `X-Vault-Token`; never logged.
    pub token: String,
    /// The KV v2 mount, without slashes at either end.
    pub mount: String,
    /// A path prefix every name lives under (no slashes at either end;
    /// empty for none).
    pub prefix: String,
    /// Sent as `X-Vault-Namespace` when set.
    pub namespace: Option<String>,
    /// The key inside a secret's data map that holds the value.
    pub field: String,
    /// The HTTP timeout in seconds.
    pub timeout_secs: u64,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("address", &self.address)
            .field("token", &"<hidden>")
            .field("mount", &self.mount)
            .field("prefix", &self.prefix)
            .field("namespace", &self.namespace)
            .field("field", &self.field)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl Config {
    /// Parses and checks the configuration JSON. Errors never quote the
    /// token.
    pub fn from_json(json: &str) -> Result<Config, String> {
        let raw: RawConfig = serde_json::from_str(json).map_err(|e| {
            // serde quotes a value of the wrong type, which could be the
            // token: say where instead.
            let msg = e.to_string();
            if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
                format!(
                    "invalid configuration: a value has the wrong type (line {} column {})",
                    e.line(),
                    e.column()
                )
            } else {
                format!("invalid configuration: {e}")
            }
        })?;
        let address =
            Url::parse(&raw.address).map_err(|e| format!("invalid configuration: address: {e}"))?;
        if raw.token.is_empty() {
            return Err("invalid configuration: `token` is empty".to_owned());
        }
        if raw.token.chars().any(|c| c.is_control()) {
            return Err("invalid configuration: `token` contains control characters".to_owned());
        }
        let mount = raw.mount.trim_matches('/').to_owned();
        validate_path(&mount).map_err(|e| format!("invalid configuration: mount: {e}"))?;
        let prefix = raw.prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            validate_path(&prefix).map_err(|e| format!("invalid configuration: prefix: {e}"))?;
        }
        if raw.field.is_empty() {
            return Err("invalid configuration: `field` is empty".to_owned());
        }
        if raw.timeout_secs == 0 {
            return Err("invalid configuration: timeout_secs must be at least 1".to_owned());
        }
        Ok(Config {
            address,
            token: raw.token,
            mount,
            prefix,
            namespace: raw.namespace.filter(|n| !n.is_empty()),
            field: raw.field,
            timeout_secs: raw.timeout_secs,
        })
    }

    /// The headers every request carries.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        let mut headers = vec![("x-vault-token", self.token.as_str())];
        if let Some(ns) = &self.namespace {
            headers.push(("x-vault-namespace", ns.as_str()));
        }
        headers
    }

    /// The path of `name` inside the mount (prefix included), unencoded.
    fn secret_path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    fn url(&self, kind: &str, path: &str, query: &str) -> Url {
        let mut url = self.address.join_path(&format!(
            "v1/{}/{kind}/{}",
            percent_encode_path(&self.mount),
            percent_encode_path(path)
        ));
        url.path_and_query.push_str(query);
        url
    }

    /// `GET`/`POST` here reads/writes the secret `name`.
    pub fn data_url(&self, name: &str) -> Url {
        self.url("data", &self.secret_path(name), "")
    }

    /// `GET`/`DELETE` here reads/deletes the metadata (all versions) of
    /// `name`.
    pub fn metadata_url(&self, name: &str) -> Url {
        self.url("metadata", &self.secret_path(name), "")
    }

    /// `GET` here lists the folder `folder` (`""` for the prefix itself, else
    /// ending in `/`).
    pub fn list_url(&self, folder: &str) -> Url {
        let path = match (self.prefix.is_empty(), folder.is_empty()) {
            (true, _) => folder.to_owned(),
            (false, true) => format!("{}/", self.prefix),
            (false, false) => format!("{}/{folder}", self.prefix),
        };
        self.url("metadata", &path, "?list=true")
    }

    /// The body that writes `value` into `field`.
    pub fn write_body(&self, value: &str) -> String {
        let mut data = serde_json::Map::new();
        data.insert(self.field.clone(), Value::String(value.to_owned()));
        serde_json::json!({ "data": data }).to_string()
    }
}

/// Checks a secret name: non-empty, relative (no leading `/`), no empty,
/// `.` or `..` segments, no trailing `/` (that would be a folder), no
/// control characters, at most 1024 bytes.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the secret name is empty".to_owned());
    }
    if name.starts_with('/') {
        return Err(format!("secret name `{name}` must not start with `/`"));
    }
    if name.ends_with('/') {
        return Err(format!("secret name `{name}` must not end with `/`"));
    }
    validate_path(name).map_err(|e| format!("secret name `{}`: {e}", name.escape_debug()))
}

fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("is empty".to_owned());
    }
    if path.len() > 1024 {
        return Err("is longer than 1024 bytes".to_owned());
    }
    if path.chars().any(char::is_control) {
        return Err("contains control characters".to_owned());
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err("has an empty path segment (`//`)".to_owned()),
            "." | ".." => return Err(format!("has a `{segment}` path segment")),
            _ => {}
        }
    }
    Ok(())
}

/// How a Vault status is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 2xx.
    Ok,
    /// 404.
    NotFound,
    /// 401 or 403: the token or policy refuses the operation.
    Denied,
    /// Anything else (sealed, standby, rate-limited, bad request…).
    Unavailable,
}

/// Classifies an HTTP status from Vault.
pub fn classify(status: u16) -> Status {
    match status {
        200..=299 => Status::Ok,
        404 => Status::NotFound,
        401 | 403 => Status::Denied,
        _ => Status::Unavailable,
    }
}

/// What a read answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// The field's value (a non-string JSON value as its JSON text).
    Value(String),
    /// The latest version is deleted or destroyed.
    Deleted,
    /// The secret exists but has no such field.
    NoField,
}

/// Parses the body of a 200 answer to `GET data/{path}`. Errors never
/// quote the body (it holds secret values).
pub fn parse_read(body: &[u8], field: &str) -> Result<Read, String> {
    #[derive(Deserialize)]
    struct Outer {
        data: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        data: Option<serde_json::Map<String, Value>>,
    }
    let outer: Outer = serde_json::from_slice(body)
        .map_err(|_| "vault answered with an unexpected document (not a KV v2 read)".to_owned())?;
    let Some(data) = outer.data.and_then(|inner| inner.data) else {
        return Ok(Read::Deleted);
    };
    Ok(match data.get(field) {
        None | Some(Value::Null) => Read::NoField,
        Some(Value::String(s)) => Read::Value(s.clone()),
        Some(other) => Read::Value(other.to_string()),
    })
}

/// Parses the body of a 200 answer to a list request: the keys, folders
/// ending in `/`.
pub fn parse_list(body: &[u8]) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Outer {
        data: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default)]
        keys: Vec<String>,
    }
    serde_json::from_slice::<Outer>(body)
        .map(|o| o.data.keys)
        .map_err(|e| format!("vault answered with an unexpected list document: {e}"))
}

/// Limits of a recursive listing.
pub const MAX_LIST_DEPTH: usize = 16;
/// The most names one listing returns.
pub const MAX_LIST_NAMES: usize = 10_000;

/// Lists every secret below the prefix, descending into folders (keys
/// ending in `/`) up to [`MAX_LIST_DEPTH`] levels; `fetch(folder)` lists
/// one folder (`None` when it does not exist). Names come back sorted,
/// relative to the prefix, so `get` accepts them.
pub fn list_recursive<E>(
    mut fetch: impl FnMut(&str) -> Result<Option<Vec<String>>, E>,
    too_many: impl Fn(String) -> E,
) -> Result<Vec<String>, E> {
    let mut names = Vec::new();
    let mut folders = vec![(String::new(), 0usize)];
    while let Some((folder, depth)) = folders.pop() {
        let Some(keys) = fetch(&folder)? else {
            continue;
        };
        for key in keys {
            if key.is_empty() {
                continue;
            }
            let full = format!("{folder}{key}");
            if key.ends_with('/') {
                if depth + 1 < MAX_LIST_DEPTH {
                    folders.push((full, depth + 1));
                }
                // Deeper folders are skipped: their names could not be
                // listed within the limit anyway.
            } else {
                names.push(full);
                if names.len() > MAX_LIST_NAMES {
                    return Err(too_many(format!(
                        "more than {MAX_LIST_NAMES} secrets below the prefix"
                    )));
                }
            }
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests;
