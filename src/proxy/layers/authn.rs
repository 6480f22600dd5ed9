//! Authentication of a workload's callers: the proxy as an OAuth 2.1
//! resource server (MCP's authorization model).
//!
//! - `/.well-known/oauth-protected-resource[/<path>]` serves the RFC 9728
//!   metadata (issuer, scopes) to anyone: it is how a client learns where
//!   to get a token.
//! - Every other request needs `Authorization: Bearer <token>`, checked by
//!   the workload's [`Validator`] (signature, issuer, audience, lifetime).
//!   Without one, or with a bad one, the answer is 401 with a
//!   `WWW-Authenticate` challenge naming the metadata; when the issuer's
//!   keys cannot be had, 503 — never an open door.
//! - The caller's [`Identity`] goes into the request's extensions for the
//!   layers below; the `Authorization` header is removed: the client's
//!   token never reaches the server.
//! - A session is bound to the principal that opened it: a request naming
//!   a session opened by another principal is refused (403), one naming a
//!   session this proxy did not see opened gets 404 (the client opens a
//!   new one).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};
use serde_json::Value;
use tower::{Layer, Service};

use super::rescue::RequestError;
use super::take;
use crate::auth::oidc::{AuthnError, Validator};

/// Where the RFC 9728 metadata is served (and below it, per path).
pub(crate) const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// Sessions remembered per proxy; the oldest binding is forgotten first
/// (its client then opens a new session).
const MAX_SESSIONS: usize = 65_536;
/// How far into a legacy SSE stream its `endpoint` event is looked for.
const ENDPOINT_SCAN: usize = 16 * 1024;

/// The authentication of one proxy.
pub struct Authn {
    validator: Validator,
    sessions: Mutex<Sessions>,
}

impl std::fmt::Debug for Authn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authn").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Sessions {
    owner: HashMap<String, String>,
    order: VecDeque<String>,
}

impl Sessions {
    fn bind(&mut self, session: &str, subject: &str) {
        if self
            .owner
            .insert(session.to_owned(), subject.to_owned())
            .is_none()
        {
            self.order.push_back(session.to_owned());
        }
        while self.order.len() > MAX_SESSIONS {
            if let Some(old) = self.order.pop_front() {
                self.owner.remove(&old);
            }
        }
    }

    fn unbind(&mut self, session: &str) {
        if self.owner.remove(session).is_some() {
            self.order.retain(|s| s != session);
        }
    }
}

impl Authn {
    /// Authentication with `validator`.
    pub fn new(validator: Validator) -> Self {
        Self {
            validator,
            sessions: Mutex::new(Sessions::default()),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().expect("sessions lock")
    }

    /// The resource's base URL, as the client reached it.
    fn base(req: &Request) -> String {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
            })
            .unwrap_or("localhost");
        format!("http://{host}")
    }

    /// The resource identifier: the audience when it is a URL (RFC 8707),
    /// else the URL the client reached.
    fn resource(&self, req: &Request, path: &str) -> String {
        let audience = &self.validator.settings().audience;
        if audience.starts_with("https://") || audience.starts_with("http://") {
            return audience.clone();
        }
        format!("{}{path}", Self::base(req))
    }

    fn challenge(&self, req: &Request, error: Option<(&str, &str)>) -> String {
        let path = req.uri().path();
        let path = if path == "/" { "" } else { path };
        let mut c = format!(
            "Bearer resource_metadata=\"{}{METADATA_PATH}{path}\"",
            Self::base(req)
        );
        let scopes = &self.validator.settings().scopes;
        if !scopes.is_empty() {
            c.push_str(&format!(", scope=\"{}\"", quoted(&scopes.join(" "))));
        }
        if let Some((code, why)) = error {
            c.push_str(&format!(
                ", error=\"{code}\", error_description=\"{}\"",
                quoted(why)
            ));
        }
        c
    }

    fn metadata(&self, req: &Request) -> Response {
        let cors = [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, OPTIONS"),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "mcp-protocol-version, content-type, authorization",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ];
        match *req.method() {
            Method::OPTIONS => (StatusCode::NO_CONTENT, cors).into_response(),
            Method::GET | Method::HEAD => {
                let rest = &req.uri().path()[METADATA_PATH.len()..];
                let path = if rest.is_empty() { "/mcp" } else { rest };
                let doc = self
                    .validator
                    .protected_resource_metadata(&self.resource(req, path));
                (
                    StatusCode::OK,
                    cors,
                    [(header::CONTENT_TYPE, "application/json")],
                    doc.to_string(),
                )
                    .into_response()
            }
            _ => (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, "GET, OPTIONS")],
            )
                .into_response(),
        }
    }
}

/// `s` fit for a quoted-string of a header (no quotes, backslashes or
/// control characters).
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .collect()
}

/// The bearer token of a request: `Err` with why there is none usable.
fn bearer(req: &Request) -> Result<&str, &'static str> {
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err("a bearer token is required");
    };
    if values.next().is_some() {
        return Err("more than one Authorization header");
    }
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not ASCII")?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or("the Authorization header is not `Bearer <token>`")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("the Authorization header is not `Bearer <token>`");
    }
    let token = token.trim();
    if token.is_empty() {
        return Err("the bearer token is empty");
    }
    Ok(token)
}

/// The session a request names: its `Mcp-Session-Id`, or the `session_id`
/// (`sessionId`) query parameter of a legacy SSE endpoint.
fn session_of(req: &Request) -> Option<String> {
    if let Some(id) = req.headers().get("mcp-session-id") {
        return Some(id.to_str().unwrap_or("\u{fffd}").to_owned());
    }
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "session_id" || k == "sessionId")
        .map(|(_, v)| v.into_owned())
}

/// The session id in the `endpoint` event of a legacy SSE stream's
/// beginning, if it is there yet.
fn endpoint_session(text: &str) -> Option<String> {
    for key in ["session_id=", "sessionId="] {
        if let Some(at) = text.find(key) {
            let rest = &text[at + key.len()..];
            let end =
                rest.find(|c: char| c == '&' || c == '\r' || c == '\n' || c.is_whitespace())?;
            let raw = &rest[..end];
            let decoded = url::form_urlencoded::parse(format!("x={raw}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())?;
            return Some(decoded);
        }
    }
    None
}

/// Puts [`Authenticated`] in front of a service.
#[derive(Clone)]
pub(crate) struct AuthnLayer {
    authn: Arc<Authn>,
}

impl AuthnLayer {
    /// A layer authenticating with `authn`.
    pub(crate) fn new(authn: Arc<Authn>) -> Self {
        Self { authn }
    }
}

impl<S> Layer<S> for AuthnLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Authenticated<S> {
        Authenticated {
            authn: self.authn.clone(),
            inner,
        }
    }
}

/// See [`AuthnLayer`].
#[derive(Clone)]
pub(crate) struct Authenticated<S> {
    authn: Arc<Authn>,
    inner: S,
}

impl<S> Service<Request> for Authenticated<S>
where
    S: Service<Request, Response = Response, Error = RequestError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = RequestError;
    type Future = BoxFuture<'static, Result<Response, RequestError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RequestError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let authn = self.authn.clone();
        let path = req.uri().path();
        if path == METADATA_PATH
            || path
                .strip_prefix(METADATA_PATH)
                .is_some_and(|rest| rest.starts_with('/'))
        {
            return futures::future::ready(Ok(authn.metadata(&req))).boxed();
        }
        let mut inner = take(&mut self.inner);
        async move {
            let token = match bearer(&req) {
                Ok(t) => t.to_owned(),
                Err(why) => {
                    return Err(RequestError::Unauthenticated {
                        challenge: authn.challenge(&req, None),
                        error: "invalid_request",
                        description: why.to_owned(),
                    });
                }
            };
            let identity = match authn.validator.validate(&token).await {
                Ok(identity) => identity,
                Err(AuthnError::Invalid(why)) => {
                    tracing::info!(reason = %why, "Refused a request with an unacceptable bearer token.");
                    return Err(RequestError::Unauthenticated {
                        challenge: authn.challenge(&req, Some(("invalid_token", &why))),
                        error: "invalid_token",
                        description: why,
                    });
                }
                Err(AuthnError::Unavailable(why)) => {
                    tracing::warn!(reason = %why, "Cannot check bearer tokens: the issuer's keys are unavailable; requests are refused with 503 until they are.");
                    return Err(RequestError::AuthUnavailable);
                }
            };
            drop(token);
            // The client's credentials are for berth, never for the server.
            req.headers_mut().remove(header::AUTHORIZATION);
            let session = session_of(&req);
            if let Some(session) = &session {
                let owner = authn.sessions().owner.get(session).cloned();
                match owner {
                    Some(owner) if owner == identity.subject => {}
                    Some(_) => {
                        tracing::warn!("Refused a request naming another caller's session.");
                        return Err(RequestError::SessionOwner);
                    }
                    None => {
                        return Err(RequestError::SessionNotFound {
                            id: Value::Null,
                            raw: None,
                        });
                    }
                }
            }
            let subject = identity.subject.clone();
            let method = req.method().clone();
            req.extensions_mut().insert(identity);
            let resp = inner.call(req).await?;
            match (&session, resp.headers().get("mcp-session-id")) {
                (None, Some(new)) => {
                    if let Ok(new) = new.to_str() {
                        authn.sessions().bind(new, &subject);
                    }
                }
                (Some(s), _) if method == Method::DELETE && resp.status().is_success() => {
                    authn.sessions().unbind(s);
                }
                _ => {}
            }
            if method == Method::GET
                && session.is_none()
                && resp.status().is_success()
                && resp
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|ct| ct.starts_with("text/event-stream"))
            {
                return Ok(bind_legacy(resp, authn, subject));
            }
            Ok(resp)
        }
        .boxed()
    }
}

/// A legacy SSE stream whose `endpoint` event names its session: the
/// session is bound to `subject` before the event reaches the client, so
/// the client cannot post before the binding exists.
fn bind_legacy(resp: Response, authn: Arc<Authn>, subject: String) -> Response {
    let (parts, body) = resp.into_parts();
    struct Scan {
        seen: String,
        done: bool,
        authn: Arc<Authn>,
        subject: String,
    }
    let mut scan = Scan {
        seen: String::new(),
        done: false,
        authn,
        subject,
    };
    let stream = body.into_data_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk
            && !scan.done
        {
            scan.seen.push_str(&String::from_utf8_lossy(bytes));
            if let Some(session) = endpoint_session(&scan.seen) {
                scan.authn.sessions().bind(&session, &scan.subject);
                scan.done = true;
            } else if scan.seen.len() > ENDPOINT_SCAN {
                scan.done = true;
            }
            if scan.done {
                scan.seen = String::new();
            }
        }
        chunk.map(|b: Bytes| b)
    });
    let mut resp = Response::from_parts(parts, Body::from_stream(stream));
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_event_names_the_session() {
        assert_eq!(
            endpoint_session("event: endpoint\ndata: /messages?session_id=abc-1\n\n").as_deref(),
            Some("abc-1")
        );
        assert_eq!(
            endpoint_session("event: endpoint\r\ndata: http://h/m?x=1&sessionId=a%2Fb&y=2\r\n")
                .as_deref(),
            Some("a/b")
        );
        // Not complete yet: wait for more.
        assert_eq!(
            endpoint_session("event: endpoint\ndata: /messages?session_id=ab"),
            None
        );
    }

    #[test]
    fn challenge_parts_cannot_break_the_header() {
        assert_eq!(quoted("a\"b\\c\r\nd"), "abcd");
    }

    #[test]
    fn sessions_are_bounded_and_unbound() {
        let mut s = Sessions::default();
        for i in 0..(MAX_SESSIONS + 3) {
            s.bind(&i.to_string(), "u");
        }
        assert_eq!(s.owner.len(), MAX_SESSIONS);
        assert!(!s.owner.contains_key("0"));
        s.unbind("5");
        assert!(!s.owner.contains_key("5"));
        assert_eq!(s.order.len(), MAX_SESSIONS - 1);
    }
}
