//! What to run: the workload spec handed to a backend.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

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
    /// Environment variables whose values are secrets, resolved by berth
    /// at this start. They win over [`WorkloadSpec::env`] on a name clash.
    /// A backend hands them to the server without putting them where
    /// others can read them when its engine allows it (Podman: its own
    /// secrets with `type=env`), never in labels, command lines or logs.
    pub secret_env: BTreeMap<String, SecretValue>,
    /// How the server talks MCP.
    pub transport: Transport,
    /// For HTTP transports, the port the server listens on inside its
    /// runtime.
    pub target_port: Option<u16>,
    /// Labels attached to the instance, for identification.
    pub labels: BTreeMap<String, String>,
    /// Host paths bound into the instance, in order. Empty: none.
    pub mounts: Vec<Mount>,
    /// What the instance may reach over the network.
    pub network: NetworkAccess,
    /// Where the deploy reports what it is doing before the instance
    /// starts (image pulls and builds), line by line. Not part of what
    /// runs: two specs that differ only here are equal.
    pub progress: Progress,
}

impl WorkloadSpec {
    /// A stdio spec with no arguments, environment or labels.
    pub fn new(name: WorkloadName, image: impl Into<String>) -> Self {
        Self {
            name,
            image: image.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            transport: Transport::Stdio,
            target_port: None,
            labels: BTreeMap::new(),
            mounts: Vec::new(),
            network: NetworkAccess::Full,
            progress: Progress::default(),
        }
    }

    /// Refuses secret environment variables an environment cannot carry:
    /// an empty name, a name with `=` or a NUL byte, a value with a NUL
    /// byte. The message names the variable, never its value. Every
    /// backend checks this before it deploys.
    pub fn check_secret_env(&self) -> Result<(), crate::RuntimeError> {
        for (key, value) in &self.secret_env {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(crate::RuntimeError::InvalidSpec(format!(
                    "secret environment variable name {key:?} is empty or holds `=` or a NUL byte"
                )));
            }
            if value.expose().contains('\0') {
                return Err(crate::RuntimeError::InvalidSpec(format!(
                    "the value of secret environment variable `{key}` holds a NUL byte, which an environment cannot carry"
                )));
            }
        }
        Ok(())
    }

    /// Whether the spec asks for anything beyond an unrestricted default
    /// runtime: mounts, or a network other than [`NetworkAccess::Full`].
    /// A backend that cannot enforce these must refuse such a spec
    /// ([`RuntimeError::InvalidSpec`](crate::RuntimeError::InvalidSpec)),
    /// never run it without them.
    pub fn is_confined(&self) -> bool {
        !self.mounts.is_empty() || self.network != NetworkAccess::Full
    }
}

/// A secret's value on its way to a workload: zeroized when dropped, and
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(zeroize::Zeroizing<String>);

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(zeroize::Zeroizing::new(value.into()))
    }

    /// The value itself, for the one place that hands it to the engine.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// A host path bound into a container.
///
/// Invariants (checked by berth before a spec reaches a backend): `source`
/// is an absolute path that existed when the workload was accepted, and
/// `target` is an absolute path without `..` components. Backends bind
/// `source` at `target` as it is, never creating `source`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mount {
    /// The path on the host.
    pub source: PathBuf,
    /// Where it appears inside the instance.
    pub target: String,
    /// Whether the instance may only read it.
    pub read_only: bool,
}

/// What a workload may reach over the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum NetworkAccess {
    /// The runtime's default network, with unrestricted outbound access.
    #[default]
    Full,
    /// No network at all: only a loopback interface.
    None,
    /// Only the workload's own *isolated* network, which has no route out:
    /// its one other peer is the host side of that network, the address
    /// [`Backend::isolated_network`](crate::Backend::isolated_network)
    /// returns, where berth runs the workload's egress proxy. The backend
    /// only provides the network; what the proxy lets through is berth's
    /// business.
    Isolated,
}

/// A receiver of progress lines of a deploy (an image pull or build),
/// handed in with the [`WorkloadSpec`]. The default discards them.
///
/// Lines are short, single-line and human-readable; a backend reports
/// milestones ("building image …", "using cached image …") and the
/// engine's own output. Reporting never blocks for long and never fails.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<ReportFn>>);

/// What a [`Progress`] calls with each line.
type ReportFn = dyn Fn(&str) + Send + Sync;

impl Progress {
    /// A receiver that calls `f` with each line.
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    /// Reports one line; blank lines are dropped, others trimmed.
    pub fn report(&self, line: &str) {
        let line = line.trim();
        if let (Some(f), false) = (&self.0, line.is_empty()) {
            f(line);
        }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(..)"
        } else {
            "Progress(none)"
        })
    }
}

/// Progress receivers are not part of a spec's identity.
impl PartialEq for Progress {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Progress {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn progress_reports_trimmed_lines_and_is_not_identity() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let progress = Progress::new(move |l| sink.lock().expect("lock").push(l.to_owned()));
        progress.report(" Step 1/3 : FROM x\n");
        progress.report("\n");
        Progress::default().report("dropped");
        assert_eq!(*seen.lock().expect("lock"), vec!["Step 1/3 : FROM x"]);
        assert_eq!(progress, Progress::default());
        assert_eq!(format!("{progress:?}"), "Progress(..)");
    }
}

#[cfg(test)]
mod secret_value_tests {
    use super::*;

    #[test]
    fn debug_of_a_spec_never_shows_a_secret() {
        let mut spec = WorkloadSpec::new(WorkloadName::parse("w").unwrap(), "img");
        spec.secret_env
            .insert("TOKEN".into(), SecretValue::new("hunter2-value"));
        let shown = format!("{spec:?} {spec:#?}");
        assert!(shown.contains("TOKEN"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(spec.secret_env["TOKEN"].expose(), "hunter2-value");
    }
}
