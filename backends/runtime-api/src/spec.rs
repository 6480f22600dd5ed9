//! What to run: the workload spec handed to a backend.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::WorkloadName;

/// How the workload's MCP server talks: over its stdio, or over HTTP.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// JSON-RPC lines on stdin/stdout.
    #[default]
    Stdio,
    /// The legacy HTTP+SSE transport on a port.
    Sse,
    /// The streamable HTTP transport on a port.
    StreamableHttp,
}

impl Transport {
    /// The wire spelling, as in ToolHive's API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdio => "stdio",
            Self::Sse => "sse",
            Self::StreamableHttp => "streamable-http",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transport name that berth does not know.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid transport mode: {0}. Valid modes are: sse, streamable-http, stdio")]
pub struct UnknownTransport(pub String);

impl FromStr for Transport {
    type Err = UnknownTransport;

    /// Parses `stdio`, `sse` or `streamable-http`, in lower or upper case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "stdio" => Ok(Self::Stdio),
            "sse" => Ok(Self::Sse),
            "streamable-http" => Ok(Self::StreamableHttp),
            _ => Err(UnknownTransport(s.to_owned())),
        }
    }
}

/// Everything a backend needs to run one workload instance.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkloadSpec {
    /// The workload's name; the identity of the instance.
    pub name: WorkloadName,
    /// What to run: an image reference or a package scheme
    /// (`npx://`, `uvx://`, `exec://`), as the backend supports.
    pub image: String,
    /// Arguments appended to the image's command, passed as argv (never
    /// through a shell).
    pub args: Vec<String>,
    /// Environment variables for the server.
    pub env: BTreeMap<String, String>,
    /// How the server talks MCP.
    pub transport: Transport,
    /// For HTTP transports, the port the server listens on inside its
    /// runtime.
    pub target_port: Option<u16>,
    /// Labels attached to the instance, for identification.
    pub labels: BTreeMap<String, String>,
}

impl WorkloadSpec {
    /// A stdio spec with no arguments, environment or labels.
    pub fn new(name: WorkloadName, image: impl Into<String>) -> Self {
        Self {
            name,
            image: image.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            transport: Transport::Stdio,
            target_port: None,
            labels: BTreeMap::new(),
        }
    }
}
