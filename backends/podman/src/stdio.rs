//! A container's attach connection as the stdin/stdout pipes of the
//! contract.
//!
//! Podman's attach answers with one upgraded connection: berth writes the
//! container's stdin on it and reads frames tagged stdout or stderr.
//! [`StdoutReader`] passes on the stdout frames only.
//!
//! conmon closes a container's stdin as soon as *any* attach connection to it
//! ends (Podman never passes it `--leave-stdin-open`). So the backend keeps
//! one [`Attachment`] per stdio container for as long as it runs and lends
//! its two halves out: dropping a [`StdioHandle`] returns them, and the next
//! [`Attachment::lease`] hands them out again, with the server's stdin still
//! open.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use berth_runtime_api::StdioHandle;
use futures::Stream;
use podman_api::conn::TtyChunk;
use podman_api::opts::ContainerAttachOpts;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::compat::FuturesAsyncWriteCompatExt;

/// The frames of an attach stream.
type Frames = Pin<Box<dyn Stream<Item = Result<TtyChunk, podman_api::conn::Error>> + Send>>;

/// The writing half of an attach connection: the container's stdin.
type Stdin = Pin<Box<dyn AsyncWrite + Send>>;

/// Where a half waits while nobody holds it.
type Slot<T> = Arc<Mutex<Option<T>>>;

/// Attaches to the stdin and stdout of `container` (running, or created and
/// about to start).
///
/// Only stdin and stdout are attached: the server's stderr reaches the
/// container's log, not the proxy.
pub(crate) async fn attach(
    container: &podman_api::api::Container,
) -> Result<Attachment, podman_api::Error> {
    let opts = ContainerAttachOpts::builder()
        .stdin(true)
        .stdout(true)
        .stderr(false)
        .build();
    let (frames, stdin) = container.attach(&opts).await?.split();
    let stdin: Stdin = Box::pin(stdin.compat_write());
    Ok(Attachment {
        stdin: Arc::new(Mutex::new(Some(stdin))),
        stdout: Arc::new(Mutex::new(Some(StdoutReader::new(Box::pin(frames))))),
    })
}

/// One attach connection, kept open while its halves are lent out.
pub(crate) struct Attachment {
    stdin: Slot<Stdin>,
    stdout: Slot<StdoutReader>,
}

impl Attachment {
    /// Lends both halves out; `None` while an earlier lease still holds
    /// either of them.
    pub(crate) fn lease(&self) -> Option<StdioHandle> {
        let mut stdin = lock(&self.stdin);
        let mut stdout = lock(&self.stdout);
        if stdin.is_none() || stdout.is_none() {
            return None;
        }
        Some(StdioHandle::new(
            Lease {
                inner: stdin.take(),
                slot: self.stdin.clone(),
            },
            Lease {
                inner: stdout.take(),
                slot: self.stdout.clone(),
            },
        ))
    }
}

fn lock<T>(slot: &Slot<T>) -> std::sync::MutexGuard<'_, Option<T>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A half of an [`Attachment`], put back into its slot when dropped.
struct Lease<T> {
    /// Always `Some` until dropped.
    inner: Option<T>,
    slot: Slot<T>,
}

impl<T> Lease<T> {
    fn inner(&mut self) -> Pin<&mut T>
    where
        T: Unpin,
    {
        Pin::new(
            self.inner
                .as_mut()
                .expect("a lease holds its half until dropped"),
        )
    }
}

impl<T> Drop for Lease<T> {
    fn drop(&mut self) {
        if let Some(half) = self.inner.take() {
            *lock(&self.slot) = Some(half);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Lease<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.inner().poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Lease<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_flush(cx)
    }

    /// Only flushes: closing the connection would close the server's stdin
    /// for good, so that only a stop or a remove ends it.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_flush(cx)
    }
}

/// Reads the stdout frames of an attach stream, dropping every other frame.
pub(crate) struct StdoutReader {
    frames: Frames,
    /// The rest of the last stdout frame.
    pending: Vec<u8>,
    /// How much of `pending` was read.
    pos: usize,
}

impl StdoutReader {
    pub(crate) fn new(frames: Frames) -> Self {
        Self {
            frames,
            pending: Vec::new(),
            pos: 0,
        }
    }
}

impl AsyncRead for StdoutReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.pos < this.pending.len() {
                let n = buf.remaining().min(this.pending.len() - this.pos);
                buf.put_slice(&this.pending[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            match ready!(this.frames.as_mut().poll_next(cx)) {
                Some(Ok(TtyChunk::StdOut(data))) => {
                    this.pending = data;
                    this.pos = 0;
                }
                Some(Ok(TtyChunk::StdErr(_) | TtyChunk::StdIn(_))) => {}
                Some(Err(err)) => return Poll::Ready(Err(io::Error::other(err))),
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn only_stdout_frames_are_read() {
        let frames = futures::stream::iter(vec![
            Ok(TtyChunk::StdOut(b"one\n".to_vec())),
            Ok(TtyChunk::StdErr(b"noise\n".to_vec())),
            Ok(TtyChunk::StdOut(Vec::new())),
            Ok(TtyChunk::StdOut(b"two\n".to_vec())),
        ]);
        let mut reader = StdoutReader::new(Box::pin(frames));
        let mut out = String::new();
        reader.read_to_string(&mut out).await.expect("read");
        assert_eq!(out, "one\ntwo\n");
    }

    #[tokio::test]
    async fn small_reads_get_whole_frames_in_pieces() {
        let frames = futures::stream::iter(vec![Ok(TtyChunk::StdOut(b"abcdef".to_vec()))]);
        let mut reader = StdoutReader::new(Box::pin(frames));
        let mut two = [0u8; 2];
        reader.read_exact(&mut two).await.expect("read");
        assert_eq!(&two, b"ab");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"cdef");
    }

    #[tokio::test]
    async fn leases_return_their_halves() {
        let (stdin, mut server_in) = tokio::io::duplex(64);
        let frames = futures::stream::iter(vec![
            Ok(TtyChunk::StdOut(b"one\n".to_vec())),
            Ok(TtyChunk::StdOut(b"two\n".to_vec())),
        ]);
        let attachment = Attachment {
            stdin: Arc::new(Mutex::new(Some(Box::pin(stdin) as Stdin))),
            stdout: Arc::new(Mutex::new(Some(StdoutReader::new(Box::pin(frames))))),
        };
        let mut first = attachment.lease().expect("a first lease");
        assert!(attachment.lease().is_none(), "one holder at a time");
        first.stdin.write_all(b"a").await.expect("write");
        first.stdin.shutdown().await.expect("shutdown only flushes");
        let mut line = [0u8; 4];
        first.stdout.read_exact(&mut line).await.expect("read");
        assert_eq!(&line, b"one\n");
        drop(first);

        let mut second = attachment.lease().expect("the halves came back");
        second
            .stdin
            .write_all(b"b")
            .await
            .expect("write after a shutdown");
        let mut rest = String::new();
        second.stdout.read_to_string(&mut rest).await.expect("read");
        assert_eq!(rest, "two\n");
        let mut got = [0u8; 2];
        server_in.read_exact(&mut got).await.expect("server reads");
        assert_eq!(&got, b"ab");
    }

    #[tokio::test]
    async fn stream_errors_are_read_errors() {
        let frames =
            futures::stream::iter(vec![Err(podman_api::conn::Error::ConnectionNotUpgraded)]);
        let mut reader = StdoutReader::new(Box::pin(frames));
        let mut out = Vec::new();
        assert!(reader.read_to_end(&mut out).await.is_err());
    }
}
