//! stdio through the engine's attach: a container's attach streams as a
//! [`StdioHandle`] (stdin as written, stdout demultiplexed from the
//! engine's frames) and a token that tells the backend whether the handle
//! is still held.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use berth_runtime_api::StdioHandle;
use bollard::container::{AttachContainerResults, LogOutput};
use bollard::errors::Error as EngineError;
use bollard::query_parameters::AttachContainerOptionsBuilder;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio_util::io::StreamReader;

use crate::DockerBackend;

impl DockerBackend {
    /// Opens an attach to container `id`: stdin and stdout, streaming from
    /// now on. stderr is left to the engine log, so that a server logging
    /// while nobody reads the attach is never blocked by it.
    pub(crate) async fn open_attach(
        &self,
        id: &str,
    ) -> Result<AttachContainerResults, EngineError> {
        let opts = AttachContainerOptionsBuilder::new()
            .stream(true)
            .logs(false)
            .stdin(true)
            .stdout(true)
            .stderr(false)
            .build();
        self.docker.attach_container(id, Some(opts)).await
    }
}

/// Held by both halves of a handed-out [`StdioHandle`]; the backend keeps a
/// [`Weak`] to see whether someone still holds either half.
#[derive(Debug, Default)]
pub(crate) struct HolderToken;

/// A new token and the backend's weak view of it.
pub(crate) fn token() -> (Arc<HolderToken>, Weak<HolderToken>) {
    let token = Arc::new(HolderToken);
    let weak = Arc::downgrade(&token);
    (token, weak)
}

/// Turns attach streams into a handle that holds `token`.
///
/// Only the container's stdout reaches the reader; stderr frames (if the
/// attach asked for them) are dropped here, since the engine log keeps them.
pub(crate) fn handle(streams: AttachContainerResults, token: Arc<HolderToken>) -> StdioHandle {
    let AttachContainerResults { output, input } = streams;
    let stdout = output.filter_map(|chunk| async move {
        match chunk {
            Ok(LogOutput::StdOut { message }) => Some(Ok(message)),
            Ok(_) => None,
            Err(err) => Some(Err(io::Error::other(err))),
        }
    });
    let stdout: Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>> = Box::pin(stdout);
    StdioHandle::guarded(input, StreamReader::new(stdout), token)
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn only_stdout_reaches_the_reader_and_the_token_lives_with_the_halves() {
        let chunks = vec![
            Ok(LogOutput::StdErr {
                message: Bytes::from_static(b"noise\n"),
            }),
            Ok(LogOutput::StdOut {
                message: Bytes::from_static(b"{\"id\":1}"),
            }),
            Ok(LogOutput::StdErr {
                message: Bytes::from_static(b"more noise\n"),
            }),
            Ok(LogOutput::StdOut {
                message: Bytes::from_static(b"\n"),
            }),
        ];
        let (sink, _keep) = tokio::io::duplex(64);
        let streams = AttachContainerResults {
            output: Box::pin(futures::stream::iter(chunks)),
            input: Box::pin(sink),
        };
        let (token, weak) = token();
        let mut io = handle(streams, token);
        assert!(weak.upgrade().is_some());

        let mut out = String::new();
        io.stdout.read_to_string(&mut out).await.expect("read");
        assert_eq!(out, "{\"id\":1}\n");
        io.stdin.write_all(b"x").await.expect("write");

        let StdioHandle { stdin, stdout } = io;
        drop(stdout);
        assert!(weak.upgrade().is_some(), "stdin still holds the token");
        drop(stdin);
        assert!(weak.upgrade().is_none(), "both halves dropped");
    }
}
