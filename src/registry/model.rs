//! Registry entries. berth's canonical form is the upstream MCP registry's
//! `server.json` ([`ServerJson`]), with ToolHive's extension block under
//! `_meta` ([`Extensions`]). ToolHive's own server shapes (`ImageMetadata`,
//! `RemoteServerMetadata`) are views computed from it for the
//! `/api/v1beta/registry` routes ([`Server::toolhive_view`]), and entries
//! that arrive in that older shape (from registry-source plugins) are
//! turned into `server.json` on the way in ([`ServerJson::from_toolhive`]).
//!
//! Unlike ToolHive, an entry whose only packages are npm or PyPI packages
//! is kept: berth runs it natively (`npx://`, `uvx://`) or as a package
//! image on a container engine.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The `_meta` key of publisher-provided data.
pub const PUBLISHER_PROVIDED: &str = "io.modelcontextprotocol.registry/publisher-provided";
/// ToolHive's publisher key inside it.
pub const TOOLHIVE_PUBLISHER: &str = "io.github.stacklok";
/// The upstream server schema berth writes into entries it converts.
pub const SERVER_SCHEMA: &str =
    "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json";

/// The longest entry name accepted (the upstream schema's limit).
pub const MAX_NAME_LEN: usize = 200;

/// One entry in the upstream MCP registry format.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerJson {
    /// The schema the entry follows.
    #[serde(rename = "$schema", default, skip_serializing_if = "String::is_empty")]
    pub schema: String,
    /// Reverse-DNS `namespace/name`.
    #[serde(default)]
    pub name: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// What the server does.
    #[serde(default)]
    pub description: String,
    /// The server's version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Its web site.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub website_url: String,
    /// Its source repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Repository>,
    /// Icons, passed through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub icons: Vec<Value>,
    /// Ways to run it locally.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<Package>,
    /// Hosted endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<Transport>,
    /// Publisher metadata (ToolHive's extension block lives here).
    #[serde(rename = "_meta", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
}

/// A source repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Repository {
    /// Its URL.
    #[serde(default)]
    pub url: String,
    /// Its host (`github`, …).
    #[serde(default)]
    pub source: String,
    /// The host's id for it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The server's folder inside it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subfolder: String,
}

/// One package of an entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    /// `oci`, `npm`, `pypi`, `nuget`, `mcpb`.
    #[serde(default)]
    pub registry_type: String,
    /// The package registry's base URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registry_base_url: String,
    /// The package name or image reference.
    #[serde(default)]
    pub identifier: String,
    /// The package version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Checksum of a downloaded file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file_sha256: String,
    /// The runner it expects (`npx`, `uvx`, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runtime_hint: String,
    /// How a client talks to it.
    #[serde(default)]
    pub transport: Transport,
    /// Arguments for the runner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_arguments: Vec<Input>,
    /// Arguments for the server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub package_arguments: Vec<Input>,
    /// Environment variables it reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_variables: Vec<Input>,
}

/// A transport: `stdio`, `sse` or `streamable-http`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Transport {
    /// The transport type.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Its URL (HTTP transports).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Headers it takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Input>,
    /// Variables used in `url`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub variables: Map<String, Value>,
}

/// An input: an environment variable, header or argument.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// `positional` or `named` (arguments only).
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Its name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Whether it must be given.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_required: bool,
    /// Whether it holds a secret.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_secret: bool,
    /// Its default value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default: String,
    /// A fixed value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// A hint for the user.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub placeholder: String,
    /// Its format.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub format: String,
    /// The values it may take.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// A hint for a positional argument's value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value_hint: String,
    /// Whether the argument repeats.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_repeated: bool,
    /// Variables used in `value`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub variables: Map<String, Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// ToolHive's extension block
/// (`_meta[publisher-provided]["io.github.stacklok"][<image or url>]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extensions {
    /// `active` or `deprecated`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// `Official` or `Community`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tier: String,
    /// The tools the server offers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Search tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Longer Markdown description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub overview: String,
    /// The permission profile it needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Value>,
    /// Default server arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables (remote servers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_vars: Vec<Value>,
    /// Preferred proxy port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_port: Option<u16>,
    /// Everything else (`metadata`, `provenance`, `docker_tags`,
    /// `tool_definitions`, `custom_metadata`, `oauth_config`, `stateless`),
    /// passed through.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// How an entry runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Locally, from a package or an image.
    Local,
    /// A hosted endpoint berth proxies to.
    Remote,
}

/// A checked registry entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// The entry as given (or as converted from ToolHive's shape).
    pub json: ServerJson,
    /// ToolHive's extension block, parsed.
    pub ext: Extensions,
    /// Local or remote.
    pub kind: Kind,
    /// The `oci` package, if any.
    pub oci: Option<usize>,
    /// The `npm` or `pypi` package, if any.
    pub native: Option<usize>,
}

/// An environment variable an entry declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Whether the server needs it.
    pub required: bool,
    /// Its default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default: String,
    /// Whether it holds a secret.
    #[serde(default, skip_serializing_if = "is_false")]
    pub secret: bool,
}

/// Whether `name` is a valid entry name: `namespace/name` with the
/// upstream schema's characters, at most [`MAX_NAME_LEN`] bytes.
pub fn valid_name(name: &str) -> bool {
    let Some((ns, last)) = name.split_once('/') else {
        return false;
    };
    name.len() >= 3
        && name.len() <= MAX_NAME_LEN
        && !ns.is_empty()
        && !last.is_empty()
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        && last
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `name` is a valid environment variable name.
pub fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 256
}

impl Server {
    /// Checks an entry. `Err` says why it cannot be used (the catalog
    /// skips it with that warning).
    pub fn new(json: ServerJson) -> Result<Self, String> {
        if !valid_name(&json.name) {
            return Err(format!(
                "entry name `{}` is not `namespace/name`",
                crate::logging::escape_controls(&truncate(&json.name, 80))
            ));
        }
        let name = &json.name;
        for text in [&json.title, &json.description, &json.version] {
            if text.chars().any(char::is_control) {
                return Err(format!("{name}: control characters in its text"));
            }
        }
        let oci = json.packages.iter().position(|p| p.registry_type == "oci");
        let native = json
            .packages
            .iter()
            .position(|p| matches!(p.registry_type.as_str(), "npm" | "pypi"));
        let kind = if !json.remotes.is_empty() {
            Kind::Remote
        } else if oci.is_some() || native.is_some() {
            Kind::Local
        } else {
            return Err(format!(
                "{name}: no way to run it (no oci, npm or pypi package and no remote)"
            ));
        };
        for p in &json.packages {
            if !matches!(
                p.transport.kind.as_str(),
                "stdio" | "sse" | "streamable-http"
            ) {
                return Err(format!(
                    "{name}: package `{}` has an unknown transport `{}`",
                    truncate(&p.identifier, 80),
                    truncate(&p.transport.kind, 40)
                ));
            }
            if let Some(bad) = p
                .environment_variables
                .iter()
                .find(|e| !valid_env_name(&e.name))
            {
                return Err(format!(
                    "{name}: invalid environment variable name `{}`",
                    crate::logging::escape_controls(&truncate(&bad.name, 80))
                ));
            }
        }
        if kind == Kind::Remote {
            let r = &json.remotes[0];
            if !matches!(r.kind.as_str(), "sse" | "streamable-http") {
                return Err(format!(
                    "{name}: remote transport must be sse or streamable-http"
                ));
            }
            if !(r.url.starts_with("https://") || r.url.starts_with("http://")) {
                return Err(format!("{name}: remote URL must be http(s)"));
            }
        }
        let ext = extensions(&json).unwrap_or_default();
        Ok(Self {
            json,
            ext,
            kind,
            oci,
            native,
        })
    }

    /// The full name.
    pub fn name(&self) -> &str {
        &self.json.name
    }

    /// The last segment of the name: the short name a user types.
    pub fn short_name(&self) -> &str {
        self.json.name.rsplit('/').next().unwrap_or(&self.json.name)
    }

    /// The OCI package.
    pub fn oci_package(&self) -> Option<&Package> {
        self.oci.map(|i| &self.json.packages[i])
    }

    /// The npm or PyPI package.
    pub fn native_package(&self) -> Option<&Package> {
        self.native.map(|i| &self.json.packages[i])
    }

    /// berth's `npx://` / `uvx://` reference of the native package.
    pub fn package_ref(&self) -> Option<String> {
        let p = self.native_package()?;
        let scheme = if p.registry_type == "npm" {
            "npx"
        } else {
            "uvx"
        };
        Some(if p.version.is_empty() {
            format!("{scheme}://{}", p.identifier)
        } else {
            format!("{scheme}://{}@{}", p.identifier, p.version)
        })
    }

    /// The package used to describe the entry: OCI first, else native.
    pub fn main_package(&self) -> Option<&Package> {
        self.oci_package().or_else(|| self.native_package())
    }

    /// Transport of the entry (`stdio`, `sse`, `streamable-http`).
    pub fn transport(&self) -> &str {
        match self.kind {
            Kind::Remote => &self.json.remotes[0].kind,
            Kind::Local => self
                .main_package()
                .map_or("stdio", |p| p.transport.kind.as_str()),
        }
    }

    /// The container port of an HTTP transport (from its URL).
    pub fn target_port(&self) -> Option<u16> {
        let p = self.main_package()?;
        port_of(&p.transport.url)
    }

    /// The environment variables the entry declares (the main package's,
    /// then those of `-e KEY=VALUE` runtime arguments; remote entries:
    /// the extension's).
    pub fn env_vars(&self) -> Vec<EnvVar> {
        let mut out: Vec<EnvVar> = Vec::new();
        if self.kind == Kind::Remote {
            for v in &self.ext.env_vars {
                if let Ok(e) = serde_json::from_value::<EnvVar>(v.clone())
                    && valid_env_name(&e.name)
                {
                    out.push(e);
                }
            }
            return out;
        }
        let Some(p) = self.main_package() else {
            return out;
        };
        for e in &p.environment_variables {
            out.push(EnvVar {
                name: e.name.clone(),
                description: e.description.clone(),
                required: e.is_required,
                default: e.default.clone(),
                secret: e.is_secret,
            });
        }
        for a in &p.runtime_arguments {
            if a.kind != "named" || !matches!(a.name.as_str(), "-e" | "--env") {
                continue;
            }
            let Some((key, value)) = a.value.split_once('=') else {
                continue;
            };
            if !valid_env_name(key) || out.iter().any(|e| e.name == key) {
                continue;
            }
            let var = value
                .strip_prefix('{')
                .and_then(|v| v.strip_suffix('}'))
                .and_then(|v| a.variables.get(v))
                .and_then(|v| serde_json::from_value::<Input>(v.clone()).ok());
            let mut env = match var {
                Some(v) => EnvVar {
                    name: key.to_owned(),
                    description: v.description,
                    required: v.is_required,
                    default: v.default,
                    secret: v.is_secret,
                },
                None => EnvVar {
                    name: key.to_owned(),
                    description: a.description.clone(),
                    required: false,
                    default: value.to_owned(),
                    secret: a.is_secret,
                },
            };
            env.required |= a.is_required;
            out.push(env);
        }
        out
    }

    /// The server arguments: the main package's `packageArguments`
    /// flattened (name, then value), else the extension's `args`.
    pub fn args(&self) -> Vec<String> {
        let from_package: Vec<String> = self
            .main_package()
            .map(|p| {
                p.package_arguments
                    .iter()
                    .flat_map(|a| {
                        [a.name.clone(), a.value.clone()]
                            .into_iter()
                            .filter(|s| !s.is_empty())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if from_package.is_empty() {
            self.ext.args.clone()
        } else {
            from_package
        }
    }

    /// Which runtimes can run it: `container` engines (an OCI image or a
    /// package image) and/or `process` (a package).
    pub fn runs_on(&self) -> Vec<&'static str> {
        match self.kind {
            Kind::Remote => vec!["remote"],
            Kind::Local => {
                let mut out = Vec::new();
                if self.oci.is_some() || self.native.is_some() {
                    out.push("docker");
                    out.push("podman");
                }
                if self.native.is_some() {
                    out.push("process");
                }
                out
            }
        }
    }

    /// The version berth records and compares: the OCI tag or the
    /// package version the given runtime would use, else the entry's.
    pub fn version(&self) -> &str {
        &self.json.version
    }

    /// ToolHive's view: `(is_remote, ImageMetadata | RemoteServerMetadata)`.
    /// A package-only entry shows its `npx://`/`uvx://` reference as
    /// `image`; `package` (a berth extension) names the package whenever
    /// there is one.
    pub fn toolhive_view(&self) -> (bool, Value) {
        let mut v = Map::new();
        let put = |v: &mut Map<String, Value>, k: &str, val: Value| {
            v.insert(k.to_owned(), val);
        };
        put(&mut v, "name", json!(self.json.name));
        if !self.json.title.is_empty() {
            put(&mut v, "title", json!(self.json.title));
        }
        put(&mut v, "description", json!(self.json.description));
        put(&mut v, "tier", json!(self.ext.tier));
        put(
            &mut v,
            "status",
            json!(if self.ext.status.is_empty() {
                "Active"
            } else {
                &self.ext.status
            }),
        );
        put(&mut v, "transport", json!(self.transport()));
        put(
            &mut v,
            "tools",
            if self.ext.tools.is_empty() {
                Value::Null
            } else {
                json!(self.ext.tools)
            },
        );
        let mut metadata = self
            .ext
            .rest
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        metadata.retain(|k, _| matches!(k.as_str(), "stars" | "last_updated" | "kubernetes"));
        put(&mut v, "metadata", Value::Object(metadata));
        if let Some(r) = &self.json.repository
            && !r.url.is_empty()
        {
            put(&mut v, "repository_url", json!(r.url));
        }
        if !self.ext.tags.is_empty() {
            put(&mut v, "tags", json!(self.ext.tags));
        }
        if !self.ext.overview.is_empty() {
            put(&mut v, "overview", json!(self.ext.overview));
        }
        for key in ["tool_definitions", "custom_metadata"] {
            if let Some(x) = self.ext.rest.get(key)
                && !x.is_null()
            {
                put(&mut v, key, x.clone());
            }
        }
        if self.ext.rest.get("stateless") == Some(&Value::Bool(true)) {
            put(&mut v, "stateless", json!(true));
        }
        if let Some(p) = self.ext.proxy_port {
            put(&mut v, "proxy_port", json!(p));
        }
        let env: Vec<Value> = self
            .env_vars()
            .into_iter()
            .map(|e| serde_json::to_value(e).unwrap_or_default())
            .collect();
        match self.kind {
            Kind::Remote => {
                let r = &self.json.remotes[0];
                put(&mut v, "url", json!(r.url));
                if !r.headers.is_empty() {
                    let headers: Vec<Value> = r
                        .headers
                        .iter()
                        .map(|h| {
                            let mut o = json!({"name": h.name, "description": h.description,
                                "required": h.is_required});
                            if !h.default.is_empty() {
                                o["default"] = json!(h.default);
                            }
                            if h.is_secret {
                                o["secret"] = json!(true);
                            }
                            if !h.choices.is_empty() {
                                o["choices"] = json!(h.choices);
                            }
                            o
                        })
                        .collect();
                    put(&mut v, "headers", Value::Array(headers));
                }
                if let Some(o) = self.ext.rest.get("oauth_config") {
                    put(&mut v, "oauth_config", o.clone());
                }
                if !env.is_empty() {
                    put(&mut v, "env_vars", Value::Array(env));
                }
                (true, Value::Object(v))
            }
            Kind::Local => {
                let image = match self.oci_package() {
                    Some(p) => p.identifier.clone(),
                    None => self.package_ref().unwrap_or_default(),
                };
                put(&mut v, "image", json!(image));
                if let Some(p) = self.package_ref() {
                    put(&mut v, "package", json!(p));
                }
                if let Some(port) = self.target_port() {
                    put(&mut v, "target_port", json!(port));
                }
                if let Some(p) = &self.ext.permissions {
                    put(&mut v, "permissions", p.clone());
                }
                if !env.is_empty() {
                    put(&mut v, "env_vars", Value::Array(env));
                }
                let args = self.args();
                if !args.is_empty() {
                    put(&mut v, "args", json!(args));
                }
                for key in ["docker_tags", "provenance"] {
                    if let Some(x) = self.ext.rest.get(key)
                        && !x.is_null()
                    {
                        put(&mut v, key, x.clone());
                    }
                }
                put(&mut v, "runs_on", json!(self.runs_on()));
                (false, Value::Object(v))
            }
        }
    }

    /// Lower-cased text a search matches: name, title, description, tags.
    pub fn haystack(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}",
            self.json.name, self.json.title, self.json.description
        );
        for t in &self.ext.tags {
            s.push('\n');
            s.push_str(t);
        }
        s.to_lowercase()
    }
}

/// The port of an `http://host:port/...` URL.
pub fn port_of(url: &str) -> Option<u16> {
    url::Url::parse(url).ok()?.port_or_known_default()
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The extension block: under the key of the entry's OCI image or remote
/// URL when present, else the first one (ToolHive takes the first in map
/// order, which is random; berth keeps the document's order).
fn extensions(json: &ServerJson) -> Option<Extensions> {
    let block = json
        .meta
        .as_ref()?
        .get(PUBLISHER_PROVIDED)?
        .get(TOOLHIVE_PUBLISHER)?
        .as_object()?;
    let preferred = json
        .packages
        .iter()
        .map(|p| p.identifier.as_str())
        .chain(json.remotes.iter().map(|r| r.url.as_str()));
    let value = preferred
        .filter_map(|k| block.get(k))
        .find(|v| v.is_object())
        .or_else(|| block.values().find(|v| v.is_object()))?;
    serde_json::from_value(value.clone()).ok()
}

impl ServerJson {
    /// Converts an entry in ToolHive's server shape (`ImageMetadata` or
    /// `RemoteServerMetadata`, as registry-source plugins answer) to
    /// `server.json`. An entry already in `server.json` shape (it has
    /// `packages` or `remotes`) is parsed as it is.
    pub fn from_plugin_entry(name: &str, entry: &Value) -> Result<Self, String> {
        let obj = entry
            .as_object()
            .ok_or_else(|| format!("entry `{}` is not an object", truncate(name, 80)))?;
        if obj.contains_key("packages") || obj.contains_key("remotes") {
            let mut s: ServerJson = serde_json::from_value(entry.clone())
                .map_err(|e| format!("entry `{}`: {e}", truncate(name, 80)))?;
            if s.name.is_empty() {
                s.name = name.to_owned();
            }
            return Ok(s);
        }
        let text = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let mut full = text("name");
        if full.is_empty() {
            full = name.to_owned();
        }
        if !full.contains('/') {
            full = format!("{TOOLHIVE_PUBLISHER}/{full}");
        }
        let transport = match text("transport") {
            t if t.is_empty() => "stdio".to_owned(),
            t => t,
        };
        let env: Vec<Input> = obj
            .get("env_vars")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| serde_json::from_value::<EnvVar>(e.clone()).ok())
                    .map(|e| Input {
                        name: e.name,
                        description: e.description,
                        is_required: e.required,
                        is_secret: e.secret,
                        default: e.default,
                        ..Input::default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let repository = obj
            .get("repository_url")
            .and_then(Value::as_str)
            .map(|u| Repository {
                url: u.to_owned(),
                source: "github".into(),
                ..Repository::default()
            });
        let mut ext = Map::new();
        for (k, v) in obj {
            if matches!(
                k.as_str(),
                "status"
                    | "tier"
                    | "tools"
                    | "tags"
                    | "overview"
                    | "metadata"
                    | "custom_metadata"
                    | "tool_definitions"
                    | "proxy_port"
                    | "stateless"
                    | "permissions"
                    | "args"
                    | "provenance"
                    | "docker_tags"
                    | "oauth_config"
            ) && !v.is_null()
            {
                ext.insert(k.clone(), v.clone());
            }
        }
        let (packages, remotes, key) = if let Some(url) = obj.get("url").and_then(Value::as_str) {
            let headers = obj
                .get("headers")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|h| {
                            Some(Input {
                                name: h.get("name")?.as_str()?.to_owned(),
                                description: h
                                    .get("description")
                                    .and_then(Value::as_str)
                                    .unwrap_or("")
                                    .to_owned(),
                                is_required: h.get("required") == Some(&Value::Bool(true)),
                                is_secret: h.get("secret") == Some(&Value::Bool(true)),
                                ..Input::default()
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            if let Some(e) = obj.get("env_vars") {
                ext.insert("env_vars".into(), e.clone());
            }
            let remote = Transport {
                kind: transport,
                url: url.to_owned(),
                headers,
                variables: Map::new(),
            };
            (Vec::new(), vec![remote], url.to_owned())
        } else {
            let image = text("image");
            if image.is_empty() {
                return Err(format!(
                    "entry `{}` has neither image nor url",
                    truncate(name, 80)
                ));
            }
            let url = match obj.get("target_port").and_then(Value::as_u64) {
                Some(p) if transport != "stdio" => format!("http://localhost:{p}"),
                _ => String::new(),
            };
            let package = native_from_ref(&image).unwrap_or_else(|| Package {
                registry_type: "oci".into(),
                identifier: image.clone(),
                ..Package::default()
            });
            let package = Package {
                transport: Transport {
                    kind: transport,
                    url,
                    ..Transport::default()
                },
                environment_variables: env,
                ..package
            };
            let key = package.identifier.clone();
            (vec![package], Vec::new(), key)
        };
        let meta = json!({PUBLISHER_PROVIDED: {TOOLHIVE_PUBLISHER: {key: Value::Object(ext)}}});
        Ok(ServerJson {
            schema: SERVER_SCHEMA.into(),
            name: full,
            title: text("title"),
            description: text("description"),
            version: text("version"),
            repository,
            packages,
            remotes,
            meta: meta.as_object().cloned(),
            ..ServerJson::default()
        })
    }
}

/// An `npx://pkg@ver` / `uvx://pkg@ver` reference as a package.
fn native_from_ref(image: &str) -> Option<Package> {
    let (registry_type, rest) = if let Some(r) = image.strip_prefix("npx://") {
        ("npm", r)
    } else if let Some(r) = image.strip_prefix("uvx://") {
        ("pypi", r)
    } else {
        return None;
    };
    // `@scope/name@1.2.3`: the version is after the last `@` that is not first.
    let (identifier, version) = match rest.rfind('@') {
        Some(i) if i > 0 => (&rest[..i], &rest[i + 1..]),
        _ => (rest, ""),
    };
    Some(Package {
        registry_type: registry_type.into(),
        identifier: identifier.into(),
        version: version.into(),
        ..Package::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(v: Value) -> Server {
        Server::new(serde_json::from_value(v).expect("parses")).expect("valid")
    }

    #[test]
    fn names() {
        assert!(valid_name("io.github.x/fetch"));
        assert!(!valid_name("fetch"));
        assert!(!valid_name("a/b/c"));
        assert!(!valid_name("io.github.x/fe\ntch"));
        assert!(!valid_name(&format!("a/{}", "b".repeat(200))));
        assert!(valid_env_name("GITHUB_TOKEN"));
        assert!(!valid_env_name("1X"));
        assert!(!valid_env_name("X;rm"));
        assert!(!valid_env_name(""));
    }

    #[test]
    fn a_package_only_entry_runs_natively_and_as_a_package_image() {
        let s = entry(json!({
            "name": "io.github.modelcontextprotocol/everything",
            "description": "d", "version": "1.0.0",
            "packages": [{"registryType": "npm", "identifier": "@modelcontextprotocol/server-everything",
                "version": "2025.1.1", "transport": {"type": "stdio"},
                "environmentVariables": [{"name": "TOKEN", "isRequired": true, "isSecret": true}]}]
        }));
        assert_eq!(s.short_name(), "everything");
        assert_eq!(
            s.package_ref().as_deref(),
            Some("npx://@modelcontextprotocol/server-everything@2025.1.1")
        );
        assert_eq!(s.runs_on(), ["docker", "podman", "process"]);
        let (remote, view) = s.toolhive_view();
        assert!(!remote);
        assert_eq!(
            view["image"],
            "npx://@modelcontextprotocol/server-everything@2025.1.1"
        );
        assert_eq!(view["env_vars"][0]["name"], "TOKEN");
        assert_eq!(view["env_vars"][0]["required"], true);
        assert_eq!(view["tools"], Value::Null);
    }

    #[test]
    fn oci_entries_read_the_extension_block_and_env_arguments() {
        let s = entry(json!({
            "name": "io.github.stacklok/osv", "description": "d",
            "packages": [{"registryType": "oci", "identifier": "ghcr.io/x/osv:1.2.0",
                "transport": {"type": "streamable-http", "url": "http://localhost:8080/mcp"},
                "runtimeArguments": [{"type": "named", "name": "-e", "value": "MODE={mode}",
                    "variables": {"mode": {"isRequired": true, "default": "fast"}}}]}],
            "_meta": {PUBLISHER_PROVIDED: {TOOLHIVE_PUBLISHER: {
                "other": {"tools": ["wrong"]},
                "ghcr.io/x/osv:1.2.0": {"status": "active", "tools": ["query"], "args": ["--x"]}}}}
        }));
        assert_eq!(s.runs_on(), ["docker", "podman"]);
        assert_eq!(s.target_port(), Some(8080));
        assert_eq!(s.ext.tools, ["query"]);
        assert_eq!(s.args(), ["--x"]);
        let env = s.env_vars();
        assert_eq!(env[0].name, "MODE");
        assert!(env[0].required);
        assert_eq!(env[0].default, "fast");
    }

    #[test]
    fn hostile_entries_are_refused() {
        let bad = |v: Value| {
            let json: ServerJson = serde_json::from_value(v).expect("parses");
            Server::new(json).expect_err("refused")
        };
        bad(
            json!({"name": "noslash", "packages": [{"registryType": "oci", "identifier": "x", "transport": {"type": "stdio"}}]}),
        );
        bad(
            json!({"name": "a/b", "packages": [{"registryType": "nuget", "identifier": "x", "transport": {"type": "stdio"}}]}),
        );
        bad(
            json!({"name": "a/b", "packages": [{"registryType": "oci", "identifier": "x", "transport": {"type": "carrier-pigeon"}}]}),
        );
        bad(
            json!({"name": "a/b", "packages": [{"registryType": "oci", "identifier": "x", "transport": {"type": "stdio"},
            "environmentVariables": [{"name": "A=B"}]}]}),
        );
        bad(json!({"name": "a/b", "remotes": [{"type": "stdio", "url": "https://x"}]}));
        bad(json!({"name": "a/b", "remotes": [{"type": "sse", "url": "file:///etc/passwd"}]}));
        bad(
            json!({"name": "a/b", "description": "x\u{1b}[2J", "packages": [{"registryType": "oci", "identifier": "x", "transport": {"type": "stdio"}}]}),
        );
    }

    #[test]
    fn toolhive_shaped_plugin_entries_convert() {
        let s = ServerJson::from_plugin_entry(
            "fetch",
            &json!({"image": "ghcr.io/x/fetch:1.0", "description": "d", "transport": "sse",
                "target_port": 9000, "tools": ["fetch"], "env_vars": [{"name": "K", "description": "", "required": true}]}),
        )
        .expect("converts");
        let s = Server::new(s).expect("valid");
        assert_eq!(s.name(), "io.github.stacklok/fetch");
        assert_eq!(s.transport(), "sse");
        assert_eq!(s.target_port(), Some(9000));
        assert_eq!(s.ext.tools, ["fetch"]);
        assert!(s.env_vars()[0].required);
        let r = ServerJson::from_plugin_entry(
            "notion",
            &json!({"url": "https://mcp.notion.com/mcp", "transport": "streamable-http"}),
        )
        .expect("converts");
        let r = Server::new(r).expect("valid");
        assert_eq!(r.kind, Kind::Remote);
        let n =
            ServerJson::from_plugin_entry("t", &json!({"image": "uvx://mcp-server-time@1.2.3"}))
                .expect("converts");
        let n = Server::new(n).expect("valid");
        assert_eq!(
            n.package_ref().as_deref(),
            Some("uvx://mcp-server-time@1.2.3")
        );
        assert!(ServerJson::from_plugin_entry("x", &json!("str")).is_err());
        assert!(ServerJson::from_plugin_entry("x", &json!({"description": "no image"})).is_err());
    }
}
