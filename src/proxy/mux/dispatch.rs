//! Server to clients: answers go to the caller that asked, progress to the
//! request's stream, a server request to the one session waiting on the
//! server (under an id of 128 random bits), server-wide notifications to
//! every session.

use serde_json::{Value, json};

use super::{Mux, ServerRequest, SessionId, finish};
use crate::proxy::jsonrpc::{self, Kind};
use crate::proxy::outbox::SendError;

impl Mux {
    pub(super) fn dispatch(&self, mut msg: Value, generation: u64) {
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

    pub(super) fn server_request(&self, mut msg: Value, generation: u64) {
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

    pub(super) fn server_notification(&self, mut msg: Value) {
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
                let frame = crate::proxy::sse::frame(&msg);
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
}

/// The id berth gives a server request on its way to a client: 128 random
/// bits, so that no other client can guess it and answer in its place.
fn server_request_id() -> String {
    let bits: u128 = rand::random();
    format!("berth-{bits:032x}")
}
