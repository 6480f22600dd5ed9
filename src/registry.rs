//! Registry sources: where berth finds MCP server entries. A source is
//! anything implementing [`RegistrySource`]; plugins are one kind
//! (`src/plugins/registry.rs`). The REST endpoints serving registries come
//! with the registry subsystem.

pub mod fetch;

use async_trait::async_trait;
use serde_json::Value;

/// One server entry of a registry.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerEntry {
    /// Its unique name in the source.
    pub name: String,
    /// The entry in ToolHive's registry format.
    pub entry: Value,
}

/// A page request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Case-insensitive text to match; `None` lists everything.
    pub query: Option<String>,
    /// Continue after an earlier page.
    pub cursor: Option<String>,
    /// The most entries wanted.
    pub limit: u32,
}

/// A page of entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The entries.
    pub servers: Vec<ServerEntry>,
    /// Present when more follow.
    pub next_cursor: Option<String>,
}

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No entry by that name.
    #[error("server `{0}` not found in the registry")]
    NotFound(String),
    /// The request was refused.
    #[error("invalid registry request: {0}")]
    Invalid(String),
    /// The source's upstream failed or could not be reached.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// The source refused the operation.
    #[error("registry access denied: {0}")]
    Denied(String),
    /// The source is broken (a plugin trapped or timed out).
    #[error("registry source failed: {0}")]
    Failed(String),
}

/// A registry of MCP servers.
#[async_trait]
pub trait RegistrySource: Send + Sync {
    /// Lists entries, a page at a time.
    async fn list(&self, query: ListQuery) -> Result<Page, RegistryError>;
    /// One entry by name.
    async fn get(&self, name: &str) -> Result<ServerEntry, RegistryError>;
}
