//! The stdio multiplexer: many MCP client sessions over one server's
//! stdin/stdout.
//!
//! Every client request is re-numbered with an id unique to this proxy, so
//! the server sees one well-formed JSON-RPC peer and every answer goes back
//! to the caller that asked, never to another session. The server's
//! `initialize` result is cached: the first client's handshake is forwarded,
//! later sessions are answered from the cache, and when the server process
//! is replaced (crash, restart) the cached handshake is replayed to the new
//! one before traffic resumes, so client sessions survive it.
//!
//! A server's own request goes to one session under an id of 128 random
//! bits, and only that session's answer goes back to the server. What a
//! session's client has not read yet is bounded (see [`super::outbox`]).
//!
//! This file holds the state and the facade; one file per concern:
//! `sessions.rs` (client sessions and their streams), `process.rs` (the
//! server process: attach, release, the stdin and stdout tasks),
//! `dispatch.rs` (server to clients) and `calls.rs` (clients to server).

mod calls;
mod dispatch;
mod process;
mod sessions;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;

use super::outbox::{Budget, Outbox};

/// A session id (a UUID string).
pub(crate) type SessionId = Arc<str>;

/// Where the proxy is with the current server process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No server process attached.
    Down,
    /// Attached; the MCP handshake has not been done (or replayed) yet.
    Up,
    /// Attached and initialized.
    Ready,
}

struct Conn {
    /// Lines to the server's stdin, with the key of the request they carry
    /// (0 for anything else).
    tx: mpsc::Sender<(u64, Bytes)>,
    writer: Option<tokio::task::JoinHandle<()>>,
    /// The task reading the server's stdout.
    reader: Option<tokio::task::JoinHandle<()>>,
}

struct Pending {
    /// The request as sent, kept for a resend when it never reached the
    /// server (the server died before reading it).
    line: Bytes,
    undelivered: bool,
    original_id: Value,
    session: Option<SessionId>,
    client_key: Option<String>,
    progress_key: Option<String>,
    reply: oneshot::Sender<Value>,
    stream: Option<Outbox>,
    generation: u64,
}

struct ServerRequest {
    session: SessionId,
    upstream_id: Value,
    generation: u64,
}

struct Progress {
    original: Value,
    session: Option<SessionId>,
    stream: Option<Outbox>,
}

struct Session {
    stream: Option<Outbox>,
    /// The bytes its client left unread, over all its streams.
    budget: Arc<Budget>,
    last_seen: Instant,
    in_flight: usize,
}

struct InitCache {
    params: Value,
    result: Value,
}

#[derive(Default)]
struct State {
    conn: Option<Conn>,
    generation: u64,
    pending: HashMap<u64, Pending>,
    by_client: HashMap<(SessionId, String), u64>,
    server_requests: HashMap<String, ServerRequest>,
    progress: HashMap<String, Progress>,
    sessions: HashMap<SessionId, Session>,
    /// Recently closed session ids (bounded): they answer 404, never adopted.
    closed: std::collections::VecDeque<SessionId>,
    init: Option<InitCache>,
    init_in_flight: bool,
    initialized_sent: bool,
}

/// Where a proxy writes the notable events of its workload (berth's
/// per-workload log, served as `proxy-logs`).
pub type LogSink = Arc<dyn Fn(&str, &str) + Send + Sync>;

struct Inner {
    name: String,
    log: Option<LogSink>,
    timeout: Duration,
    state: Mutex<State>,
    phase: watch::Sender<Phase>,
    next_id: AtomicU64,
}

/// Many client sessions over one stdio MCP server; cheap to clone.
#[derive(Clone)]
pub struct Mux {
    inner: Arc<Inner>,
}

fn encode(msg: &Value) -> Bytes {
    let mut line = serde_json::to_vec(msg).expect("JSON values encode");
    line.push(b'\n');
    Bytes::from(line)
}

/// Removes the request of `key`, sends its answer if `reply` is given.
fn finish(state: &mut State, key: u64) -> Option<Pending> {
    let p = state.pending.remove(&key)?;
    if let (Some(s), Some(k)) = (&p.session, &p.client_key) {
        state.by_client.remove(&(s.clone(), k.clone()));
        if let Some(sess) = state.sessions.get_mut(s) {
            sess.in_flight = sess.in_flight.saturating_sub(1);
        }
    }
    if let Some(pk) = &p.progress_key {
        state.progress.remove(pk);
    }
    Some(p)
}

/// Removes a pending request if its caller gives up (timeout, disconnect),
/// and tells the server to stop working on it.
struct PendingGuard<'a> {
    mux: &'a Mux,
    key: u64,
    armed: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut state = self.mux.state();
        if finish(&mut state, self.key).is_some()
            && let Some(conn) = &state.conn
        {
            {
                let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": self.key, "reason": "the client went away or timed out"}});
                let _ = conn.tx.try_send((0, encode(&cancel)));
            }
        }
    }
}

impl Mux {
    /// A multiplexer for workload `name`, with no server attached yet.
    pub(crate) fn new(name: &str, timeout: Duration, log: Option<LogSink>) -> Self {
        let (phase, _) = watch::channel(Phase::Down);
        Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                log,
                timeout,
                state: Mutex::new(State::default()),
                phase,
                next_id: AtomicU64::new(1),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().expect("mux state lock")
    }

    /// Records a notable event in the workload's log.
    fn note(&self, line: &str) {
        debug!(workload = %self.inner.name, "{line}");
        if let Some(log) = &self.inner.log {
            log(&self.inner.name, &format!("proxy: {line}"));
        }
    }

    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Why a client's answer to a server request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RespondError {
    /// No server request with this id awaits an answer from this session.
    #[error("no request of the server awaits this answer in this session")]
    Unknown,
    /// The server process that asked has been replaced.
    #[error("the MCP server that asked has restarted; its request is void")]
    Stale,
}
