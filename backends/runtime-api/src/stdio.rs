//! The stdio pipes of a running instance.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

    /// Wraps a writer and a reader that both keep `guard` alive: it is
    /// dropped once both halves are (a backend's "lent out" marker).
    pub fn guarded(
        stdin: impl AsyncWrite + Unpin + Send + 'static,
        stdout: impl AsyncRead + Unpin + Send + 'static,
        guard: impl Send + Sync + 'static,
    ) -> Self {
        let guard: Arc<dyn Send + Sync> = Arc::new(guard);
        Self::new(
            Guarded {
                inner: stdin,
                _guard: guard.clone(),
            },
            Guarded {
                inner: stdout,
                _guard: guard,
            },
        )
    }
}

/// An I/O half that keeps a guard alive while it exists.
struct Guarded<T> {
    inner: T,
    _guard: Arc<dyn Send + Sync>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl fmt::Debug for StdioHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdioHandle").finish_non_exhaustive()
    }
}
