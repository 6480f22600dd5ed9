//! Client sessions of a [`Mux`]: opening, adopting, closing and reaping
//! them, and the streams their clients read (each session's unread bytes
//! share one budget, see [`super::super::outbox`]).

use std::time::{Duration, Instant};

use tracing::warn;

use super::{Mux, Session, SessionId, finish};
use crate::proxy::outbox::{Budget, Inbox, Outbox, SESSION_BUDGET, SendError};

impl Mux {
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
}

/// A random UUID v4 string.
fn new_session_id() -> String {
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
