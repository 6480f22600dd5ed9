//! The stdio pipes of a running instance.

use std::fmt;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// The stdin and stdout of a running instance, for the stdio transport.
///
/// Dropping `stdin` closes the server's input, which ends most MCP servers.
pub struct StdioHandle {
    /// Writes to the server's stdin.
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// Reads the server's stdout.
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
}

impl StdioHandle {
    /// Wraps a writer and a reader.
    pub fn new(
        stdin: impl AsyncWrite + Send + 'static,
        stdout: impl AsyncRead + Send + 'static,
    ) -> Self {
        Self {
            stdin: Box::pin(stdin),
            stdout: Box::pin(stdout),
        }
    }
}

impl fmt::Debug for StdioHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdioHandle").finish_non_exhaustive()
    }
}
