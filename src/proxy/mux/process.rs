//! The server process behind a [`Mux`]: attaching a (new) one, letting it
//! go, and the two tasks that write its stdin and read its stdout.

use std::time::Duration;

use berth_runtime_api::StdioHandle;
use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{Conn, Mux, Phase, State, encode, finish};
use crate::proxy::jsonrpc;

impl Mux {
    /// Attaches a (new) server process. If a handshake was cached, it is
    /// replayed to the new process before any request reaches it.
    pub fn attach(&self, io: StdioHandle) {
        let (tx, rx) = mpsc::channel::<(u64, Bytes)>(1024);
        let generation = {
            let mut state = self.state();
            state.generation += 1;
            state.initialized_sent = false;
            state.generation
        };
        let writer = tokio::spawn(write_loop(self.clone(), io.stdin, rx));
        self.state().conn = Some(Conn {
            tx,
            writer: Some(writer),
            reader: None,
        });
        let this = self.clone();
        let reader = tokio::spawn(async move { this.read_loop(io.stdout, generation).await });
        {
            let mut state = self.state();
            if state.generation == generation
                && let Some(conn) = state.conn.as_mut()
            {
                conn.reader = Some(reader);
            }
        }
        let replay = self.state().init.as_ref().map(|c| c.params.clone());
        match replay {
            None => {
                self.inner.phase.send_replace(Phase::Up);
            }
            Some(params) => {
                self.inner.phase.send_replace(Phase::Up);
                let this = self.clone();
                tokio::spawn(async move {
                    match this.handshake(params).await {
                        Ok(_) => this.note(
                            "replayed the MCP handshake to the new server process; sessions continue",
                        ),
                        Err(err) => {
                            warn!(workload = %this.inner.name, error = %err, "Could not replay the MCP handshake.");
                            this.note(&format!("could not replay the MCP handshake: {err}"));
                        }
                    }
                });
            }
        }
    }

    /// Lets go of the attached server connection, both pipes, as if the
    /// server's output had closed, so that the backend can lend the stdio
    /// out again (berth re-attaching to a server that kept running while
    /// its engine was unreachable). Nothing happens without a connection.
    pub async fn release(&self) {
        let (generation, reader) = {
            let mut state = self.state();
            let generation = state.generation;
            let Some(conn) = state.conn.as_mut() else {
                return;
            };
            (generation, conn.reader.take())
        };
        if let Some(reader) = reader {
            reader.abort();
            // Dropped (with the stdout pipe) once the abort is seen.
            let _ = reader.await;
        }
        self.detach(generation).await;
    }

    /// Marks the server as gone: requests wait for the next one (up to the
    /// timeout); requests it had read but not answered fail, requests it
    /// never read are sent again to the next one.
    pub(super) async fn detach(&self, generation: u64) {
        let writer = {
            let mut state = self.state();
            if state.generation != generation {
                return;
            }
            state.conn.take().and_then(|c| c.writer)
        };
        // With the sender gone, the writer drains what is queued; what it
        // cannot write is marked undelivered.
        if let Some(w) = writer {
            let _ = tokio::time::timeout(Duration::from_secs(1), w).await;
        }
        let mut state = self.state();
        if state.generation != generation {
            return;
        }
        let lost: Vec<u64> = state
            .pending
            .iter()
            .filter(|(_, p)| p.generation == generation && !p.undelivered)
            .map(|(k, _)| *k)
            .collect();
        let failed = lost.len();
        let kept = state.pending.values().filter(|p| p.undelivered).count();
        for key in lost {
            if let Some(p) = finish(&mut state, key) {
                let _ = p.reply.send(jsonrpc::error(
                    p.original_id,
                    jsonrpc::INTERNAL_ERROR,
                    "the MCP server exited before answering; berth is restarting it",
                ));
            }
        }
        state
            .server_requests
            .retain(|_, r| r.generation != generation);
        drop(state);
        self.inner.phase.send_replace(Phase::Down);
        self.note(&format!(
            "server output closed; {failed} unanswered request(s) failed, {kept} unsent request(s) wait for the restart"
        ));
    }

    /// Requests the server process never read: sent again once a new one is
    /// ready.
    pub(super) fn mark_undelivered(&self, keys: &[u64]) {
        let mut state = self.state();
        for k in keys {
            if let Some(p) = state.pending.get_mut(k) {
                p.undelivered = true;
            }
        }
    }

    pub(super) fn resend_undelivered(&self) {
        let mut state = self.state();
        let generation = state.generation;
        let Some(tx) = state.conn.as_ref().map(|c| c.tx.clone()) else {
            return;
        };
        for (key, p) in state.pending.iter_mut().filter(|(_, p)| p.undelivered) {
            p.undelivered = false;
            p.generation = generation;
            let _ = tx.try_send((*key, p.line.clone()));
        }
    }

    pub(super) async fn read_loop(
        self,
        stdout: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>,
        generation: u64,
    ) {
        let mut reader = BufReader::with_capacity(64 * 1024, stdout);
        let mut line = Vec::with_capacity(8 * 1024);
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Value>(text) {
                Ok(msg) => self.dispatch(msg, generation),
                Err(_) => {
                    debug!(workload = %self.inner.name, "Ignored a non-JSON line on the server's stdout.")
                }
            }
        }
        self.detach(generation).await;
    }

    pub(super) fn send_upstream(&self, state: &State, msg: &Value) -> bool {
        match &state.conn {
            Some(conn) => conn.tx.try_send((0, encode(msg))).is_ok(),
            None => false,
        }
    }
}

async fn write_loop(
    mux: Mux,
    stdin: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    mut rx: mpsc::Receiver<(u64, Bytes)>,
) {
    let mut w = BufWriter::with_capacity(64 * 1024, stdin);
    let mut batch: Vec<u64> = Vec::new();
    while let Some((key, line)) = rx.recv().await {
        batch.clear();
        batch.push(key);
        let mut ok = w.write_all(&line).await.is_ok();
        // Batch whatever else is queued into the same flush.
        while ok && let Ok((key, line)) = rx.try_recv() {
            batch.push(key);
            ok = w.write_all(&line).await.is_ok();
        }
        if !ok || w.flush().await.is_err() {
            // The server is gone: nothing of this batch nor of the queue
            // reached it.
            rx.close();
            while let Some((key, _)) = rx.recv().await {
                batch.push(key);
            }
            batch.retain(|k| *k != 0);
            mux.mark_undelivered(&batch);
            return;
        }
    }
}
