//! Clients to server: the handshake (forwarded once, cached, replayed to a
//! new server process), requests with their ids and progress tokens
//! re-numbered, notifications, clients' answers to server requests, and
//! the health ping.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tracing::warn;

use super::{
    InitCache, Mux, Pending, PendingGuard, Phase, Progress, RespondError, SessionId, encode, finish,
};
use crate::proxy::jsonrpc::{self, id_key};
use crate::proxy::outbox::Outbox;

impl Mux {
    /// Waits until a server is attached and initialized, doing the handshake
    /// itself if no client has yet.
    pub(super) async fn ready(&self) -> Result<(), String> {
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
    pub(super) async fn handshake(&self, params: Value) -> Result<Value, String> {
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
    pub(super) async fn call(
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
