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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_runtime_api::StdioHandle;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

use super::jsonrpc::{self, Kind};
use super::outbox::{Budget, Inbox, Outbox, SESSION_BUDGET, SendError};

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

/// The id key of a client request, unique within its session.
fn id_key(id: &Value) -> String {
    match id {
        Value::String(s) => format!("s:{s}"),
        other => format!("n:{other}"),
    }
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

    // === sessions ===

    /// Registers a new client session.
    pub(crate) fn open_session(&self) -> SessionId {
        let id: SessionId = new_session_id().into();
        self.state().sessions.insert(
            id.clone(),
            Session {
                stream: None,
                budget: Budget::new(SESSION_BUDGET),
                last_seen: Instant::now(),
                in_flight: 0,
            },
        );
        id
    }

    /// Registers a session under an id a client already holds (after berth
    /// restarted, its sessions are adopted rather than refused).
    pub(crate) fn adopt_session(&self, id: &str) -> SessionId {
        let id: SessionId = id.into();
        self.state()
            .sessions
            .entry(id.clone())
            .or_insert_with(|| Session {
                stream: None,
                budget: Budget::new(SESSION_BUDGET),
                last_seen: Instant::now(),
                in_flight: 0,
            });
        id
    }

    /// The session `id`, if it is open (and marks it used).
    pub(crate) fn session(&self, id: &str) -> Option<SessionId> {
        let mut state = self.state();
        let key = state.sessions.get_key_value(id)?.0.clone();
        state.sessions.get_mut(&key)?.last_seen = Instant::now();
        Some(key)
    }

    /// The stream of `session`, if it has one open.
    pub(crate) fn stream_of(&self, session: &SessionId) -> Option<Outbox> {
        self.state()
            .sessions
            .get(session)
            .and_then(|s| s.stream.clone())
    }

    /// Opens the stream unsolicited messages of `session` go to (GET /mcp,
    /// SSE), in place of any earlier one.
    pub(crate) fn open_stream(&self, session: &SessionId) -> Option<Inbox> {
        let mut state = self.state();
        let s = state.sessions.get_mut(session)?;
        let (tx, rx) = Outbox::channel(s.budget.clone());
        s.stream = Some(tx);
        Some(rx)
    }

    /// A stream for the answer of one request of `session` (charged to the
    /// session's budget), or of a session-less request (its own budget).
    pub(crate) fn request_stream(&self, session: Option<&SessionId>) -> (Outbox, Inbox) {
        let budget = session
            .and_then(|s| self.state().sessions.get(s).map(|s| s.budget.clone()))
            .unwrap_or_else(|| Budget::new(SESSION_BUDGET));
        Outbox::channel(budget)
    }

    /// Handles a send to a client stream that failed: when it exhausted
    /// the budget of a session, that session is closed (its streams end
    /// with an error); the other sessions go on.
    pub(crate) fn undelivered(&self, session: Option<&SessionId>, err: SendError) {
        let SendError::Exceeded { first: true } = err else {
            return;
        };
        match session {
            Some(s) => {
                warn!(workload = %self.inner.name, limit = SESSION_BUDGET, "Closed a client session that left too much unread.");
                self.note(&format!(
                    "closed a client session: it left more than {SESSION_BUDGET} bytes unread"
                ));
                self.close_session(s);
            }
            None => {
                warn!(workload = %self.inner.name, limit = SESSION_BUDGET, "Closed the stream of a request whose client left too much unread.");
                self.note(&format!(
                    "closed the stream of a session-less request: its client left more than {SESSION_BUDGET} bytes unread"
                ));
            }
        }
    }

    /// Whether `id` names a session that was closed.
    pub(crate) fn was_closed(&self, id: &str) -> bool {
        self.state().closed.iter().any(|c| &**c == id)
    }

    /// Closes a session; its pending requests are abandoned.
    pub(crate) fn close_session(&self, session: &str) -> bool {
        let mut state = self.state();
        let removed = state.sessions.remove_entry(session);
        if let Some((id, _)) = &removed {
            if state.closed.len() >= 4096 {
                state.closed.pop_front();
            }
            state.closed.push_back(id.clone());
        }
        let removed = removed.is_some();
        let keys: Vec<u64> = state
            .pending
            .iter()
            .filter(|(_, p)| p.session.as_deref() == Some(session))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            finish(&mut state, k);
        }
        state.server_requests.retain(|_, r| &*r.session != session);
        removed
    }

    /// Closes every session (the proxy is going away).
    pub(crate) fn close_all_sessions(&self) {
        let ids: Vec<SessionId> = self.state().sessions.keys().cloned().collect();
        for id in ids {
            self.close_session(&id);
        }
    }

    /// Closes sessions idle for longer than `ttl`.
    pub(crate) fn reap_idle(&self, ttl: Duration) -> usize {
        let now = Instant::now();
        let idle: Vec<SessionId> = self
            .state()
            .sessions
            .iter()
            .filter(|(_, s)| s.in_flight == 0 && now.duration_since(s.last_seen) > ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for s in &idle {
            self.close_session(s);
        }
        idle.len()
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        self.state().sessions.len()
    }

    // === attaching a server process ===

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
    async fn detach(&self, generation: u64) {
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
    fn mark_undelivered(&self, keys: &[u64]) {
        let mut state = self.state();
        for k in keys {
            if let Some(p) = state.pending.get_mut(k) {
                p.undelivered = true;
            }
        }
    }

    fn resend_undelivered(&self) {
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

    async fn read_loop(
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

    fn send_upstream(&self, state: &State, msg: &Value) -> bool {
        match &state.conn {
            Some(conn) => conn.tx.try_send((0, encode(msg))).is_ok(),
            None => false,
        }
    }

    // === server -> clients ===

    fn dispatch(&self, mut msg: Value, generation: u64) {
        match jsonrpc::kind(&msg) {
            Kind::Response => {
                let Some(key) = msg.get("id").and_then(Value::as_u64) else {
                    return;
                };
                let mut state = self.state();
                let Some(p) = finish(&mut state, key) else {
                    return; // answered after its caller gave up
                };
                drop(state);
                msg["id"] = p.original_id;
                let _ = p.reply.send(msg);
            }
            Kind::Request => self.server_request(msg, generation),
            Kind::Notification => self.server_notification(msg),
            Kind::Invalid => {}
        }
    }

    fn server_request(&self, mut msg: Value, generation: u64) {
        let upstream_id = msg["id"].clone();
        let mut guard = self.state();
        let state = &mut *guard;
        if jsonrpc::method(&msg) == "ping" {
            let pong = jsonrpc::result(upstream_id, json!({}));
            self.send_upstream(state, &pong);
            return;
        }
        // A server request carries no link to the client request that caused
        // it; it can be routed only when one session is waiting for the server.
        let busy: Vec<&SessionId> = state
            .sessions
            .iter()
            .filter(|(_, s)| s.in_flight > 0)
            .map(|(k, _)| k)
            .collect();
        let target = match busy.as_slice() {
            [one] => Some((*one).clone()),
            [] if state.sessions.len() == 1 => state.sessions.keys().next().cloned(),
            _ => None,
        };
        let stream = target.as_ref().and_then(|s| {
            let per_request = state
                .pending
                .values()
                .filter(|p| p.session.as_ref() == Some(s))
                .find_map(|p| p.stream.clone());
            per_request.or_else(|| state.sessions.get(s).and_then(|x| x.stream.clone()))
        });
        let (Some(session), Some(stream)) = (target, stream) else {
            self.note(&format!(
                "refused server request `{}`: no single client session to route it to",
                jsonrpc::method(&msg)
            ));
            let err = jsonrpc::error(
                upstream_id,
                jsonrpc::METHOD_NOT_FOUND,
                format!(
                    "berth cannot route `{}` to a client: it is not clear which of the sessions sharing this server it belongs to, or that session has no open stream",
                    jsonrpc::method(&msg)
                ),
            );
            self.send_upstream(state, &err);
            return;
        };
        let proxy_id = server_request_id();
        msg["id"] = Value::String(proxy_id.clone());
        match stream.send(&msg) {
            Ok(()) => {
                state.server_requests.insert(
                    proxy_id,
                    ServerRequest {
                        session,
                        upstream_id,
                        generation,
                    },
                );
            }
            Err(why) => {
                let err = jsonrpc::error(
                    upstream_id,
                    jsonrpc::INTERNAL_ERROR,
                    format!("cannot reach the client: {why}"),
                );
                self.send_upstream(state, &err);
                drop(guard);
                self.undelivered(Some(&session), why);
            }
        }
    }

    fn server_notification(&self, mut msg: Value) {
        let state = self.state();
        // Sends that failed, with the session whose stream it was.
        let mut failed: Vec<(Option<SessionId>, SendError)> = Vec::new();
        match jsonrpc::method(&msg) {
            "notifications/progress" => {
                let token = msg["params"]["progressToken"].to_string();
                let Some(route) = state.progress.get(&token) else {
                    return;
                };
                msg["params"]["progressToken"] = route.original.clone();
                let stream = route.stream.clone().or_else(|| {
                    route
                        .session
                        .as_ref()
                        .and_then(|s| state.sessions.get(s))
                        .and_then(|s| s.stream.clone())
                });
                if let Some(tx) = stream
                    && let Err(why) = tx.send(&msg)
                {
                    failed.push((route.session.clone(), why));
                }
            }
            "notifications/cancelled" => {
                // The server withdraws one of its own requests to a client.
                let withdrawn = msg["params"]["requestId"].clone();
                let found = state
                    .server_requests
                    .iter()
                    .find(|(_, r)| r.upstream_id == withdrawn);
                if let Some((proxy_id, r)) = found {
                    msg["params"]["requestId"] = Value::String(proxy_id.clone());
                    if let Some(tx) = state
                        .sessions
                        .get(&r.session)
                        .and_then(|s| s.stream.clone())
                        && let Err(why) = tx.send(&msg)
                    {
                        failed.push((Some(r.session.clone()), why));
                    }
                }
            }
            _ => {
                // Server-wide events (list changes, resource updates, log
                // messages) concern every client of this server.
                let frame = super::sse::frame(&msg);
                for (id, s) in &state.sessions {
                    if let Some(tx) = &s.stream
                        && let Err(why) = tx.send_frame(frame.clone(), false)
                    {
                        failed.push((Some(id.clone()), why));
                    }
                }
            }
        }
        drop(state);
        for (session, why) in failed {
            self.undelivered(session.as_ref(), why);
        }
    }

    // === clients -> server ===

    /// Waits until a server is attached and initialized, doing the handshake
    /// itself if no client has yet.
    async fn ready(&self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        let mut phase = self.inner.phase.subscribe();
        loop {
            let now = *phase.borrow_and_update();
            match now {
                Phase::Ready => return Ok(()),
                Phase::Up => {
                    let start = {
                        let mut state = self.state();
                        if state.init.is_none() && !state.init_in_flight {
                            state.init_in_flight = true;
                            true
                        } else {
                            false
                        }
                    };
                    if start {
                        let params = json!({
                            "protocolVersion": jsonrpc::LATEST_HANDSHAKE_VERSION,
                            "capabilities": {},
                            "clientInfo": {"name": "berth", "version": env!("CARGO_PKG_VERSION")},
                        });
                        self.handshake(params).await.map(drop)?;
                        continue;
                    }
                }
                Phase::Down => {}
            }
            if tokio::time::timeout_at(deadline, phase.changed())
                .await
                .is_err()
            {
                return Err(format!(
                    "the MCP server of `{}` is not ready after {:?}",
                    self.inner.name, self.inner.timeout
                ));
            }
        }
    }

    /// Sends `initialize` with `params` to the attached server, caches the
    /// result and completes the handshake. The caller must have claimed
    /// `init_in_flight` or be replaying a cached handshake.
    async fn handshake(&self, params: Value) -> Result<Value, String> {
        let request = json!({"jsonrpc": "2.0", "method": "initialize", "params": params.clone()});
        let answer = self.call(None, request, None, true).await;
        let mut state = self.state();
        state.init_in_flight = false;
        match answer.get("result") {
            Some(result) => {
                state.init = Some(InitCache {
                    params,
                    result: result.clone(),
                });
                if !state.initialized_sent {
                    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
                    state.initialized_sent = self.send_upstream(&state, &note);
                }
                drop(state);
                self.inner.phase.send_replace(Phase::Ready);
                self.resend_undelivered();
                Ok(answer)
            }
            None => {
                drop(state);
                // Wake waiters so that one of them may try again.
                self.inner.phase.send_modify(|_| {});
                Err(answer["error"]["message"]
                    .as_str()
                    .unwrap_or("initialize failed")
                    .to_owned())
            }
        }
    }

    /// A client's `initialize`: forwarded for the first client, answered from
    /// the cache for the others.
    pub(crate) async fn initialize(&self, msg: Value) -> Value {
        let id = msg["id"].clone();
        let requested = msg["params"]["protocolVersion"].as_str().map(str::to_owned);
        let mut phase = self.inner.phase.subscribe();
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        loop {
            let claim = {
                let mut state = self.state();
                if let Some(cache) = &state.init {
                    let mut result = cache.result.clone();
                    if let Some(v) = requested
                        .as_deref()
                        .filter(|v| jsonrpc::HANDSHAKE_VERSIONS.contains(v))
                    {
                        result["protocolVersion"] = Value::String(v.to_owned());
                    }
                    return jsonrpc::result(id, result);
                }
                if !state.init_in_flight && *phase.borrow() != Phase::Down {
                    state.init_in_flight = true;
                    true
                } else {
                    false
                }
            };
            if claim {
                let params = msg.get("params").cloned().unwrap_or_else(|| json!({}));
                return match self.handshake(params).await {
                    Ok(mut answer) => {
                        answer["id"] = id;
                        answer
                    }
                    Err(why) => jsonrpc::error(id, jsonrpc::INTERNAL_ERROR, why),
                };
            }
            if tokio::time::timeout_at(deadline, phase.changed())
                .await
                .is_err()
            {
                return jsonrpc::error(
                    id,
                    jsonrpc::REQUEST_TIMEOUT,
                    "the MCP server did not become ready in time",
                );
            }
        }
    }

    /// The cached `initialize` result, after making sure there is one.
    pub(crate) async fn init_result(&self) -> Result<Value, String> {
        self.ready().await?;
        self.state()
            .init
            .as_ref()
            .map(|c| c.result.clone())
            .ok_or_else(|| "the MCP server is not initialized".to_owned())
    }

    /// Forwards a client request and waits for its answer (with the client's
    /// own id). `stream` receives the progress notifications and server
    /// requests that belong to this request.
    pub(crate) async fn request(
        &self,
        session: Option<&SessionId>,
        msg: Value,
        stream: Option<Outbox>,
    ) -> Value {
        if let Err(why) = self.ready().await {
            return jsonrpc::error(msg["id"].clone(), jsonrpc::REQUEST_TIMEOUT, why);
        }
        self.call(session.cloned(), msg, stream, false).await
    }

    /// Rewrites the id (and progress token), sends the request, awaits the
    /// answer within the timeout.
    async fn call(
        &self,
        session: Option<SessionId>,
        mut msg: Value,
        stream: Option<Outbox>,
        handshake: bool,
    ) -> Value {
        let original_id = msg.get("id").cloned().unwrap_or(Value::Null);
        let key = self.next_id();
        msg["id"] = Value::from(key);
        let line: Bytes;
        let (reply, answer) = oneshot::channel();
        let mut progress_key = None;
        {
            let mut state = self.state();
            if let Some(token) = msg
                .get_mut("params")
                .and_then(|p| p.get_mut("_meta"))
                .and_then(Value::as_object_mut)
                .and_then(|m| m.get_mut("progressToken"))
            {
                let ours = Value::String(format!("berth-p-{key}"));
                let original = std::mem::replace(token, ours.clone());
                let pk = ours.to_string();
                state.progress.insert(
                    pk.clone(),
                    Progress {
                        original,
                        session: session.clone(),
                        stream: stream.clone(),
                    },
                );
                progress_key = Some(pk);
            }
            let client_key = session.as_ref().map(|_| id_key(&original_id));
            if let (Some(s), Some(k)) = (&session, &client_key) {
                state.by_client.insert((s.clone(), k.clone()), key);
                if let Some(sess) = state.sessions.get_mut(s) {
                    sess.in_flight += 1;
                    sess.last_seen = Instant::now();
                }
            }
            let generation = state.generation;
            line = encode(&msg);
            state.pending.insert(
                key,
                Pending {
                    line: line.clone(),
                    undelivered: false,
                    original_id: original_id.clone(),
                    session,
                    client_key,
                    progress_key: progress_key.clone(),
                    reply,
                    stream,
                    generation,
                },
            );
            if handshake && state.conn.is_none() {
                finish(&mut state, key);
                return jsonrpc::error(
                    original_id,
                    jsonrpc::INTERNAL_ERROR,
                    "no MCP server process is attached",
                );
            }
        }
        let tx = self.state().conn.as_ref().map(|c| c.tx.clone());
        let mut guard = PendingGuard {
            mux: self,
            key,
            armed: true,
        };
        let sent = match tx {
            Some(tx) => tx.send((key, line)).await.is_ok(),
            None => false,
        };
        if !sent {
            guard.armed = false;
            let mut state = self.state();
            finish(&mut state, key);
            return jsonrpc::error(
                original_id,
                jsonrpc::INTERNAL_ERROR,
                "the MCP server is not running",
            );
        }
        match tokio::time::timeout(self.inner.timeout, answer).await {
            Ok(Ok(answer)) => {
                guard.armed = false;
                answer
            }
            Ok(Err(_)) => {
                guard.armed = false;
                jsonrpc::error(
                    original_id,
                    jsonrpc::INTERNAL_ERROR,
                    "the request was abandoned",
                )
            }
            Err(_) => {
                self.note(&format!(
                    "request {key} got no answer within {:?}; cancelled",
                    self.inner.timeout
                ));
                jsonrpc::error(
                    original_id,
                    jsonrpc::REQUEST_TIMEOUT,
                    format!(
                        "the MCP server did not answer within {:?}",
                        self.inner.timeout
                    ),
                )
            }
        }
    }

    /// A client notification: `initialized` is berth's to send (once per
    /// server process), cancellations are re-numbered, the rest forwarded.
    pub(crate) fn notify(&self, session: Option<&SessionId>, mut msg: Value) {
        let state = self.state();
        match jsonrpc::method(&msg) {
            "notifications/initialized" => {}
            "notifications/cancelled" => {
                let Some(session) = session else { return };
                let key = id_key(&msg["params"]["requestId"]);
                let Some(up) = state.by_client.get(&(session.clone(), key)).copied() else {
                    return;
                };
                msg["params"]["requestId"] = Value::from(up);
                self.send_upstream(&state, &msg);
                // The server will not answer a cancelled request; its caller
                // is released now rather than at the timeout.
                drop(state);
                let mut state = self.state();
                if let Some(p) = finish(&mut state, up) {
                    let _ = p.reply.send(jsonrpc::error(
                        p.original_id,
                        jsonrpc::REQUEST_CANCELLED,
                        "cancelled by the client",
                    ));
                }
            }
            _ => {
                self.send_upstream(&state, &msg);
            }
        }
    }

    /// A client's answer to a server request: back to the server with the
    /// server's own id. Only the session the request was routed to may
    /// answer it; an answer from any other session (or from none) is
    /// refused and the request stays pending for the right one.
    pub(crate) fn respond(
        &self,
        session: Option<&SessionId>,
        mut msg: Value,
    ) -> Result<(), RespondError> {
        let mut state = self.state();
        let proxy_id = msg["id"].as_str().ok_or(RespondError::Unknown)?;
        let Some(r) = state.server_requests.get(proxy_id) else {
            return Err(RespondError::Unknown);
        };
        if session != Some(&r.session) {
            // Refused exactly like an unknown id: the answer reveals
            // nothing about the other sessions.
            warn!(workload = %self.inner.name, "Refused an answer to a server request from a session it was not sent to.");
            return Err(RespondError::Unknown);
        }
        let Some(r) = state.server_requests.remove(proxy_id) else {
            return Err(RespondError::Unknown);
        };
        if r.generation != state.generation {
            return Err(RespondError::Stale);
        }
        msg["id"] = r.upstream_id;
        self.send_upstream(&state, &msg);
        Ok(())
    }

    /// Health probe: an MCP `ping` to the server.
    pub async fn ping(&self) -> Result<Duration, String> {
        let start = Instant::now();
        if self.state().conn.is_none() {
            return Err("no server process attached".into());
        }
        let answer = self
            .call(
                None,
                json!({"jsonrpc": "2.0", "id": 0, "method": "ping"}),
                None,
                false,
            )
            .await;
        match answer.get("error") {
            None => Ok(start.elapsed()),
            Some(e) => Err(e["message"].as_str().unwrap_or("ping failed").to_owned()),
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

/// The id berth gives a server request on its way to a client: 128 random
/// bits, so that no other client can guess it and answer in its place.
fn server_request_id() -> String {
    let bits: u128 = rand::random();
    format!("berth-{bits:032x}")
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

/// A random UUID v4 string.
pub(crate) fn new_session_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Methods whose 2026-07-28 results carry caching directives.
const CACHEABLE: [&str; 6] = [
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// Adds what stateless-revision clients expect on a result a handshake-era
/// server produced: `resultType`, caching directives on cacheable methods
/// (immediately stale and private: berth cannot know better), and the
/// server-identity stamp.
pub(crate) fn modernize(answer: &mut Value, method: &str, server_info: Option<&Value>) {
    if let Some(result) = answer.get_mut("result").and_then(Value::as_object_mut) {
        result
            .entry("resultType")
            .or_insert_with(|| Value::String("complete".into()));
        if CACHEABLE.contains(&method) {
            result.entry("ttlMs").or_insert_with(|| Value::from(0));
            result
                .entry("cacheScope")
                .or_insert_with(|| Value::String("private".into()));
        }
        if let Some(info) = server_info {
            let meta = result
                .entry("_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(meta) = meta.as_object_mut() {
                meta.entry(jsonrpc::META_SERVER_INFO)
                    .or_insert_with(|| info.clone());
            }
        }
    }
}
