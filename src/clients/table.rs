//! Every MCP client berth can configure: where its file is, how the file is
//! laid out, and what one server entry looks like (spec 5.8 of
//! `workloads-groups-clients.md`, with berth's fixes: one URL form, the
//! entry's type chosen by the proxy mode the client speaks).
//!
//! One table of data; the writers in `format/` do the rest.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::format::Layout;

/// Where a client keeps its configuration, relative to the home directory.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Place {
    /// Under the platform's application-data prefix: `~/.config` (Linux),
    /// `~/Library/Application Support` (macOS), `~/AppData/Roaming`
    /// (Windows).
    AppData(&'static str),
    /// The same path below the home directory on every platform.
    Home(&'static str),
    /// One path on Linux and macOS, another on Windows.
    Split {
        /// Linux and macOS.
        unix: &'static str,
        /// Windows.
        windows: &'static str,
    },
}

/// The platform a path is computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Os {
    Linux,
    Mac,
    Windows,
}

impl Os {
    /// The platform berth was built for.
    pub(crate) const fn current() -> Self {
        if cfg!(target_os = "macos") {
            Self::Mac
        } else if cfg!(windows) {
            Self::Windows
        } else {
            Self::Linux
        }
    }

    fn app_data(self) -> &'static str {
        match self {
            Self::Linux => ".config",
            Self::Mac => "Library/Application Support",
            Self::Windows => "AppData/Roaming",
        }
    }
}

/// How an entry names its URL.
#[derive(Debug, Clone, Copy)]
pub(crate) enum UrlField {
    /// The same key for every proxy mode.
    Always(&'static str),
    /// Gemini CLI: `httpUrl` for streamable HTTP, `url` for SSE.
    Gemini,
}

/// The value of an entry's transport field per proxy mode; `None` when the
/// client cannot speak that mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Types {
    /// The key: `type` or `transport`.
    pub(crate) key: &'static str,
    /// For a proxy that speaks streamable HTTP.
    pub(crate) streamable: &'static str,
    /// For a proxy that speaks the legacy SSE transport.
    pub(crate) sse: Option<&'static str>,
}

/// Extra fields an entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `{url, type}`.
    Plain,
    /// `{name, url, type}`: the items of a list matched by `name`.
    Named,
    /// Goose's extension: `{name, uri, type, enabled, timeout, description}`.
    Goose,
}

/// One MCP client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientDef {
    /// Its identifier on the wire (ToolHive's `ClientApp`).
    pub(crate) id: &'static str,
    pub(crate) place: Place,
    pub(crate) layout: Layout,
    /// The key the servers live under (one top-level key, taken literally:
    /// Amp's `amp.mcpServers` is one key with a dot).
    pub(crate) servers_key: &'static str,
    pub(crate) url: UrlField,
    pub(crate) types: Option<Types>,
    pub(crate) shape: Shape,
    /// Whether the client has a legacy SSE client (without one, a server
    /// whose proxy speaks SSE is not written and the status says why).
    pub(crate) speaks_sse: bool,
    pub(crate) supports_skills: bool,
    pub(crate) supports_plugins: bool,
}

const fn t(streamable: &'static str, sse: &'static str) -> Option<Types> {
    Some(Types {
        key: "type",
        streamable,
        sse: Some(sse),
    })
}

const HTTP: Option<Types> = t("http", "sse");

const fn json(
    id: &'static str,
    place: Place,
    servers_key: &'static str,
    url: &'static str,
    types: Option<Types>,
) -> ClientDef {
    ClientDef {
        id,
        place,
        layout: Layout::JsonMap,
        servers_key,
        url: UrlField::Always(url),
        types,
        shape: Shape::Plain,
        speaks_sse: true,
        supports_skills: true,
        supports_plugins: false,
    }
}

const fn no_skills(mut c: ClientDef) -> ClientDef {
    c.supports_skills = false;
    c
}

const fn plugins(mut c: ClientDef) -> ClientDef {
    c.supports_plugins = true;
    c
}

use Place::{AppData, Home, Split};

/// Every client, in ToolHive's order (the order of discovery).
pub(crate) const CLIENTS: &[ClientDef] = &[
    json(
        "roo-code",
        AppData("Code/User/globalStorage/rooveterinaryinc.roo-cline/settings/mcp_settings.json"),
        "mcpServers",
        "url",
        t("streamable-http", "sse"),
    ),
    json(
        "cline",
        AppData("Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json"),
        "mcpServers",
        "url",
        t("streamableHttp", "sse"),
    ),
    json(
        "cursor",
        Home(".cursor/mcp.json"),
        "mcpServers",
        "url",
        HTTP,
    ),
    json(
        "vscode-insider",
        AppData("Code - Insiders/User/mcp.json"),
        "servers",
        "url",
        HTTP,
    ),
    json(
        "vscode",
        AppData("Code/User/mcp.json"),
        "servers",
        "url",
        HTTP,
    ),
    plugins(json(
        "claude-code",
        Home(".claude.json"),
        "mcpServers",
        "url",
        HTTP,
    )),
    json(
        "windsurf",
        Home(".codeium/windsurf/mcp_config.json"),
        "mcpServers",
        "serverUrl",
        HTTP,
    ),
    no_skills(json(
        "windsurf-jetbrains",
        Home(".codeium/mcp_config.json"),
        "mcpServers",
        "serverUrl",
        HTTP,
    )),
    json(
        "amp-cli",
        Split {
            unix: ".config/amp/settings.json",
            windows: "AppData/Roaming/amp/settings.json",
        },
        "amp.mcpServers",
        "url",
        HTTP,
    ),
    no_skills(json(
        "lm-studio",
        Home(".lmstudio/mcp.json"),
        "mcpServers",
        "url",
        HTTP,
    )),
    ClientDef {
        id: "goose",
        place: Split {
            unix: ".config/goose/config.yaml",
            windows: "AppData/Block/goose/config.yaml",
        },
        layout: Layout::YamlMap,
        servers_key: "extensions",
        url: UrlField::Always("uri"),
        types: t("streamable_http", "sse"),
        shape: Shape::Goose,
        speaks_sse: true,
        supports_skills: true,
        supports_plugins: false,
    },
    json(
        "trae",
        AppData("Trae/User/mcp.json"),
        "mcpServers",
        "url",
        None,
    ),
    ClientDef {
        id: "continue",
        place: Home(".continue/config.yaml"),
        layout: Layout::YamlList,
        servers_key: "mcpServers",
        url: UrlField::Always("url"),
        types: t("streamable-http", "sse"),
        shape: Shape::Named,
        speaks_sse: true,
        supports_skills: false,
        supports_plugins: false,
    },
    json(
        "opencode",
        Home(".config/opencode/opencode.json"),
        "mcp",
        "url",
        t("remote", "remote"),
    ),
    json(
        "kiro",
        Home(".kiro/settings/mcp.json"),
        "mcpServers",
        "url",
        None,
    ),
    json(
        "antigravity",
        Home(".gemini/antigravity/mcp_config.json"),
        "mcpServers",
        "serverUrl",
        None,
    ),
    no_skills(json(
        "zed",
        Split {
            unix: ".config/zed/settings.json",
            windows: "AppData/Roaming/zed/settings.json",
        },
        "context_servers",
        "url",
        None,
    )),
    ClientDef {
        url: UrlField::Gemini,
        ..json(
            "gemini-cli",
            Home(".gemini/settings.json"),
            "mcpServers",
            "",
            None,
        )
    },
    no_skills(json(
        "vscode-server",
        Home(".vscode-server/data/User/mcp.json"),
        "servers",
        "url",
        None,
    )),
    ClientDef {
        id: "mistral-vibe",
        place: Home(".vibe/config.toml"),
        layout: Layout::TomlArray,
        servers_key: "mcp_servers",
        url: UrlField::Always("url"),
        // Vibe's transports are `http`, `streamable-http` and `stdio`: it
        // has no legacy SSE client (ToolHive writes `http` for an SSE
        // server, which Vibe then talks streamable HTTP to).
        types: Some(Types {
            key: "transport",
            streamable: "streamable-http",
            sse: None,
        }),
        shape: Shape::Named,
        speaks_sse: false,
        supports_skills: true,
        supports_plugins: false,
    },
    // Codex speaks streamable HTTP only: an SSE URL would be read as a
    // streamable endpoint and fail.
    plugins(ClientDef {
        layout: Layout::TomlTables,
        speaks_sse: false,
        ..json(
            "codex",
            Home(".codex/config.toml"),
            "mcp_servers",
            "url",
            None,
        )
    }),
    json(
        "kimi-cli",
        Home(".kimi/mcp.json"),
        "mcpServers",
        "url",
        None,
    ),
    json(
        "factory",
        Home(".factory/mcp.json"),
        "mcpServers",
        "url",
        HTTP,
    ),
    no_skills(json(
        "copilot-cli",
        Home(".copilot/mcp-config.json"),
        "mcpServers",
        "url",
        HTTP,
    )),
    json(
        "qoder",
        Split {
            unix: ".qoder/mcp.json",
            windows: "AppData/Roaming/Qoder/SharedClientCache/mcp.json",
        },
        "mcpServers",
        "url",
        HTTP,
    ),
];

/// The client called `id`.
pub(crate) fn find(id: &str) -> Option<&'static ClientDef> {
    CLIENTS.iter().find(|c| c.id == id)
}

/// Every client identifier, in table order.
pub(crate) fn ids() -> impl Iterator<Item = &'static str> {
    CLIENTS.iter().map(|c| c.id)
}

/// How a proxy talks to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Streamable HTTP (`/mcp`).
    Streamable,
    /// The legacy HTTP+SSE transport (`/sse`).
    Sse,
}

/// A running workload as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Server {
    /// The workload's name, the entry's key.
    pub(crate) name: String,
    /// Its proxy's URL.
    pub(crate) url: String,
    /// The mode its proxy speaks.
    pub(crate) mode: Mode,
}

impl ClientDef {
    /// The configuration file below `home` on `os`.
    pub(crate) fn path(&self, home: &Path, os: Os) -> PathBuf {
        let rel = match (self.place, os) {
            (AppData(rel), os) => return home.join(os.app_data()).join(rel),
            (Home(rel), _) => rel,
            (Split { windows, .. }, Os::Windows) => windows,
            (Split { unix, .. }, _) => unix,
        };
        home.join(rel)
    }

    /// What marks the client as installed: the directory of its file, or,
    /// for a file right in the home directory (`~/.claude.json`), the file.
    pub(crate) fn installed_marker(&self, home: &Path, os: Os) -> PathBuf {
        let path = self.path(home, os);
        match path.parent() {
            Some(dir) if dir != home => dir.to_owned(),
            _ => path,
        }
    }

    /// The entry for `server`, or `None` (with the reason) when the client
    /// cannot speak the server's proxy mode.
    pub(crate) fn entry(&self, server: &Server) -> Result<Map<String, Value>, String> {
        if server.mode == Mode::Sse && !self.speaks_sse {
            return Err(format!(
                "{} cannot speak the SSE transport that `{}`'s proxy serves",
                self.id, server.name
            ));
        }
        let kind = match (self.types, server.mode) {
            (None, _) => None,
            (Some(t), Mode::Streamable) => Some((t.key, t.streamable)),
            (Some(t), Mode::Sse) => match t.sse {
                Some(v) => Some((t.key, v)),
                None => {
                    return Err(format!(
                        "{} cannot speak the SSE transport that `{}`'s proxy serves",
                        self.id, server.name
                    ));
                }
            },
        };
        let url_key = match self.url {
            UrlField::Always(k) => k,
            UrlField::Gemini if server.mode == Mode::Sse => "url",
            UrlField::Gemini => "httpUrl",
        };
        let mut m = Map::new();
        if self.shape != Shape::Plain {
            m.insert("name".into(), server.name.clone().into());
        }
        m.insert(url_key.into(), server.url.clone().into());
        if let Some((key, value)) = kind {
            m.insert(key.into(), value.into());
        }
        if self.shape == Shape::Goose {
            m.insert("enabled".into(), true.into());
            m.insert("timeout".into(), 60.into());
            m.insert("description".into(), "".into());
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_five_clients_with_unique_ids() {
        assert_eq!(CLIENTS.len(), 25);
        let mut ids: Vec<_> = ids().collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 25);
    }

    #[test]
    fn paths_per_platform() {
        let home = Path::new("/home/u");
        let vscode = find("vscode").expect("vscode");
        assert_eq!(
            vscode.path(home, Os::Linux),
            Path::new("/home/u/.config/Code/User/mcp.json")
        );
        assert_eq!(
            vscode.path(home, Os::Mac),
            Path::new("/home/u/Library/Application Support/Code/User/mcp.json")
        );
        assert_eq!(
            vscode.path(home, Os::Windows),
            Path::new("/home/u/AppData/Roaming/Code/User/mcp.json")
        );
        let goose = find("goose").expect("goose");
        assert_eq!(
            goose.path(home, Os::Mac),
            Path::new("/home/u/.config/goose/config.yaml")
        );
        assert_eq!(
            goose.path(home, Os::Windows),
            Path::new("/home/u/AppData/Block/goose/config.yaml")
        );
        let claude = find("claude-code").expect("claude");
        assert_eq!(
            claude.installed_marker(home, Os::Linux),
            Path::new("/home/u/.claude.json")
        );
        assert_eq!(
            find("cursor")
                .expect("cursor")
                .installed_marker(home, Os::Linux),
            Path::new("/home/u/.cursor")
        );
    }

    #[test]
    fn entries_follow_the_proxy_mode() {
        let sse = Server {
            name: "ev".into(),
            url: "http://127.0.0.1:1/sse#ev".into(),
            mode: Mode::Sse,
        };
        let http = Server {
            name: "f".into(),
            url: "http://127.0.0.1:2/mcp".into(),
            mode: Mode::Streamable,
        };
        let entry = |id: &str, s: &Server| {
            find(id)
                .expect(id)
                .entry(s)
                .map(|m| serde_json::to_string(&m).expect("json"))
        };
        assert_eq!(
            entry("vscode", &sse).as_deref(),
            Ok(r#"{"url":"http://127.0.0.1:1/sse#ev","type":"sse"}"#)
        );
        assert_eq!(
            entry("gemini-cli", &http).as_deref(),
            Ok(r#"{"httpUrl":"http://127.0.0.1:2/mcp"}"#)
        );
        assert_eq!(
            entry("gemini-cli", &sse).as_deref(),
            Ok(r#"{"url":"http://127.0.0.1:1/sse#ev"}"#)
        );
        assert!(entry("mistral-vibe", &sse).is_err());
        assert!(entry("codex", &sse).is_err());
        assert_eq!(
            entry("codex", &http).as_deref(),
            Ok(r#"{"url":"http://127.0.0.1:2/mcp"}"#)
        );
        assert_eq!(
            entry("goose", &http).as_deref(),
            Ok(
                r#"{"name":"f","uri":"http://127.0.0.1:2/mcp","type":"streamable_http","enabled":true,"timeout":60,"description":""}"#
            )
        );
        let skills: Vec<_> = CLIENTS
            .iter()
            .filter(|c| !c.supports_skills)
            .map(|c| c.id)
            .collect();
        assert_eq!(
            skills,
            [
                "windsurf-jetbrains",
                "lm-studio",
                "continue",
                "zed",
                "vscode-server",
                "copilot-cli"
            ]
        );
        let plugins: Vec<_> = CLIENTS
            .iter()
            .filter(|c| c.supports_plugins)
            .map(|c| c.id)
            .collect();
        assert_eq!(plugins, ["claude-code", "codex"]);
    }
}
