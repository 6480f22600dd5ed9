//! The workload's middleware chain ([`crate::proxy::middleware`]) on every
//! upstream: stdio, HTTP and remote workloads alike.
//!
//! Requests: each JSON-RPC request read by the parse layer, in a single
//! message or a batch, passes the chain's request hooks (the handshake,
//! `initialize` and `server/discover`, does not). A refused request is
//! answered by berth and never forwarded: in the answer to the POST, or,
//! when the POST goes to the endpoint of a legacy SSE stream, on that
//! stream. A rewritten request is forwarded as rewritten.
//!
//! Answers: each successful answer to a request whose results a middleware
//! wants passes the response hooks, whether it comes as the POST's JSON
//! body, in the POST's SSE stream, or on the legacy SSE stream the request
//! was posted for; everything else streams through as it came. An answer
//! berth cannot tie to a request it checked (on a GET stream: an answer
//! resent on a resumed stream, or to a request posted past this layer) is
//! withheld, replaced by a JSON-RPC error: the chain fails closed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, BodyDataStream};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tower::{Layer, Service};

use super::parse::Parsed;
use super::rescue::RequestError;
use super::take;
use crate::listener::PeerAddr;
use crate::proxy::jsonrpc::{self, Kind};
use crate::proxy::middleware::{self, Chain, Identity, McpRequest};
use crate::proxy::policy::{Origin, Policy, Ticket};
use crate::proxy::sse::{self, Event, EventReader};

/// Largest answer (a JSON body, or one event of a stream) the response
/// hooks check; a larger one fails closed.
const MAX_CHECKED: usize = 16 * 1024 * 1024;
/// Requests posted for one legacy SSE stream that may await their answers
/// at once.
const MAX_PENDING: usize = 4096;
/// Refusals queued for a legacy SSE stream whose client is not reading.
const INJECT_QUEUE: usize = 64;
/// The handshake: it concerns the connection, and is never shown to
/// middleware.
const HANDSHAKE: [&str; 2] = ["initialize", "server/discover"];

/// Puts [`Chained`] in front of a service.
#[derive(Clone)]
pub(crate) struct ChainLayer {
    shared: Arc<Shared>,
}

impl ChainLayer {
    /// Runs `chain`, then berth's `policy`, on the traffic of workload
    /// `workload`.
    pub(crate) fn new(workload: &str, chain: Chain, policy: Option<Arc<Policy>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                workload: Arc::from(workload),
                chain,
                policy,
                legacy: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl<S> Layer<S> for ChainLayer {
    type Service = Chained<S>;

    fn layer(&self, inner: S) -> Chained<S> {
        Chained {
            shared: self.shared.clone(),
            inner,
        }
    }
}

/// See [`ChainLayer`].
#[derive(Clone)]
pub(crate) struct Chained<S> {
    shared: Arc<Shared>,
    inner: S,
}

struct Shared {
    workload: Arc<str>,
    chain: Chain,
    /// berth's own policy: after the chain towards the server, after it
    /// towards the client.
    policy: Option<Arc<Policy>>,
    /// The legacy SSE streams open through this proxy, by the endpoint (path
    /// and query) their clients post to.
    legacy: Mutex<HashMap<String, Arc<Legacy>>>,
}

/// A legacy SSE stream: its client posts requests to its endpoint and
/// reads their answers on it.
struct Legacy {
    /// The requests posted for it that await their answers, by id key.
    pending: Mutex<HashMap<String, Watched>>,
    /// Answers berth gives itself (refusals), sent on the stream.
    inject: mpsc::Sender<Bytes>,
}

/// A forwarded request whose answer is awaited: what looks at the answer.
#[derive(Default)]
struct Watched {
    /// The request as the middleware's response hooks see it, when one
    /// wants its result.
    view: Option<McpRequest>,
    /// The policy's record of it, when the policy follows it.
    ticket: Option<Ticket>,
}

impl Watched {
    fn is_empty(&self) -> bool {
        self.view.is_none() && self.ticket.is_none()
    }
}

/// What an audited request carries from its HTTP request.
fn origin_of(req: &Request, transport: &'static str) -> Origin {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect::<String>())
    };
    Origin {
        source: req.extensions().get::<PeerAddr>().map(|p| p.0),
        user_agent: header("user-agent"),
        request_id: header("x-request-id"),
        endpoint: req.uri().path().chars().take(256).collect(),
        transport,
    }
}

impl<S> Service<Request> for Chained<S>
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
        let shared = self.shared.clone();
        let mut inner = take(&mut self.inner);
        match req.extensions_mut().remove::<Parsed>() {
            Some(parsed) => shared.post(req, parsed, inner).boxed(),
            None if req.method() == Method::GET => shared.get(req, inner).boxed(),
            None => inner.call(req).boxed(),
        }
    }
}

/// The session a request belongs to: its `Mcp-Session-Id`, or the
/// `session_id` (`sessionId`) of a legacy SSE endpoint.
fn session_of(req: &Request) -> Option<String> {
    if let Some(id) = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
    {
        return Some(id.to_owned());
    }
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "session_id" || k == "sessionId")
        .map(|(_, v)| v.into_owned())
}

/// Where a request was posted: its path and query, as the client wrote them.
pub(crate) fn endpoint_of(uri: &Uri) -> &str {
    uri.path_and_query().map_or(uri.path(), |p| p.as_str())
}

/// The endpoint an `endpoint` event of the stream at `stream_path` names,
/// in the form [`endpoint_of`] gives for the client's posts to it.
pub(crate) fn endpoint_key(data: &str, stream_path: &str) -> String {
    let data = data.trim();
    if let Ok(uri) = data.parse::<Uri>()
        && uri.scheme().is_some()
    {
        return endpoint_of(&uri).to_owned();
    }
    if data.starts_with('/') {
        return data.to_owned();
    }
    // A reference relative to the stream's own path.
    let dir = stream_path.rsplit_once('/').map_or("", |(dir, _)| dir);
    format!("{dir}/{data}")
}

fn is_event_stream(resp: &Response) -> bool {
    content_type(resp).starts_with("text/event-stream")
}

pub(crate) fn content_type(resp: &Response) -> &str {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn json_response(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The request with the messages that are forwarded; its body is encoded
/// again only when they differ from what the client sent.
fn restore(
    mut req: Request,
    body: Bytes,
    batch: bool,
    kept: Vec<Value>,
    raws: &[Option<Box<RawValue>>],
    changed: bool,
) -> Request {
    let body = if changed {
        let encoded: Vec<Vec<u8>> = kept
            .iter()
            .zip(raws)
            .map(|(m, raw)| jsonrpc::encode(m, raw.as_deref()))
            .collect();
        req.headers_mut().remove(header::CONTENT_LENGTH);
        match (batch, <[Vec<u8>; 1]>::try_from(encoded)) {
            (false, Ok([one])) => Bytes::from(one),
            (_, Ok(one)) => Bytes::from(jsonrpc::join(&one)),
            (_, Err(many)) => Bytes::from(jsonrpc::join(&many)),
        }
    } else {
        body
    };
    *req.body_mut() = Body::from(body.clone());
    req.extensions_mut().insert(Parsed {
        body,
        messages: kept,
        batch,
    });
    req
}

impl Shared {
    /// A request whose body the parse layer read.
    async fn post<S>(
        self: Arc<Self>,
        req: Request,
        parsed: Parsed,
        mut inner: S,
    ) -> Result<Response, RequestError>
    where
        S: Service<Request, Response = Response, Error = RequestError>,
    {
        let session = session_of(&req);
        let identity = req.extensions().get::<Identity>().cloned();
        let legacy = self
            .legacy
            .lock()
            .expect("legacy streams lock")
            .get(endpoint_of(req.uri()))
            .cloned();
        let Parsed {
            body,
            messages,
            batch,
        } = parsed;
        let raws = if batch {
            jsonrpc::raw_ids_of(&body, &messages)
        } else {
            messages
                .iter()
                .map(|m| jsonrpc::raw_id_of(&body, m))
                .collect()
        };
        let policy = self.policy.clone();
        let origin = policy.as_ref().filter(|p| p.audits()).map(|_| {
            Arc::new(origin_of(
                &req,
                if legacy.is_some() { "sse" } else { "http" },
            ))
        });
        let mut kept = Vec::with_capacity(messages.len());
        let mut kept_raws = Vec::with_capacity(messages.len());
        let mut refusals: Vec<Vec<u8>> = Vec::new();
        // The forwarded requests, by id key, with what looks at their
        // answers.
        let mut watched: Vec<(String, Watched)> = Vec::new();
        let mut changed = false;
        for (mut msg, raw) in messages.into_iter().zip(raws) {
            let kind = jsonrpc::kind(&msg);
            if kind == Kind::Request {
                let ticket = policy
                    .as_ref()
                    .map(|p| p.ticket(&msg, identity.as_ref(), origin.as_ref()));
                let view = if HANDSHAKE.contains(&jsonrpc::method(&msg)) || self.chain.is_empty() {
                    None
                } else {
                    let mut view = middleware::view(
                        &self.workload,
                        &msg,
                        session.as_deref(),
                        req.headers(),
                        identity.as_ref(),
                    );
                    match middleware::before(&self.chain, &mut view, &mut msg).await {
                        Ok(rewritten) => {
                            changed |= rewritten;
                            middleware::wants_response(&self.chain, &view.method)
                                .await
                                .then_some(view)
                        }
                        Err(refusal) => {
                            if let (Some(p), Some(t)) = (&policy, &ticket) {
                                p.record_refusal(t, &refusal);
                            }
                            refusals.push(jsonrpc::encode(&refusal, raw.as_deref()));
                            changed = true;
                            continue;
                        }
                    }
                };
                // berth's policy sees the request as it reaches the server.
                let ticket = match (&policy, ticket) {
                    (Some(p), Some(t)) => match p.admit(identity.as_ref(), &mut msg) {
                        Ok(rewritten) => {
                            changed |= rewritten;
                            p.watches(&t.method).then_some(t)
                        }
                        Err(refusal) => {
                            p.record_refusal(&t, &refusal);
                            refusals.push(jsonrpc::encode(&refusal, raw.as_deref()));
                            changed = true;
                            continue;
                        }
                    },
                    _ => None,
                };
                watched.push((jsonrpc::id_key(&msg["id"]), Watched { view, ticket }));
            } else if kind == Kind::Notification
                && let Some(p) = policy.as_ref().filter(|p| p.audits())
            {
                p.record(
                    &p.ticket(&msg, identity.as_ref(), origin.as_ref()),
                    None,
                    None,
                );
            }
            kept.push(msg);
            kept_raws.push(raw);
        }

        if let Some(legacy) = legacy {
            // The answers come on the stream: the refusals go there too.
            let mut keys = Vec::with_capacity(watched.len());
            {
                let mut pending = legacy.pending.lock().expect("pending lock");
                if pending.len() + watched.len() > MAX_PENDING {
                    return Err(RequestError::Backlog(MAX_PENDING));
                }
                for (key, view) in watched {
                    pending.insert(key.clone(), view);
                    keys.push(key);
                }
            }
            for refusal in &refusals {
                // A client that does not read its stream loses its refusals,
                // as it would lose the answers.
                let _ = legacy.inject.try_send(sse::frame_json(refusal));
            }
            if kept.is_empty() && !refusals.is_empty() {
                return Ok((StatusCode::ACCEPTED, "Accepted").into_response());
            }
            let req = restore(req, body, batch, kept, &kept_raws, changed);
            let resp = inner.call(req).await;
            if !matches!(&resp, Ok(r) if r.status().is_success()) {
                // Not taken: no answer will come.
                let mut pending = legacy.pending.lock().expect("pending lock");
                for key in keys {
                    if let Some(Watched {
                        ticket: Some(t), ..
                    }) = pending.remove(&key)
                        && let Some(p) = &policy
                    {
                        p.record(&t, None, Some(failed(&resp)));
                    }
                }
            }
            return resp;
        }

        if kept.is_empty() && !refusals.is_empty() {
            // Every request was refused: berth answers alone.
            let body = match <[Vec<u8>; 1]>::try_from(refusals) {
                Ok([one]) if !batch => one,
                Ok(one) => jsonrpc::join(&one),
                Err(many) => jsonrpc::join(&many),
            };
            return Ok(json_response(body));
        }
        let hooked: HashMap<String, Watched> =
            watched.into_iter().filter(|(_, w)| !w.is_empty()).collect();
        let req = restore(req, body, batch, kept, &kept_raws, changed);
        let resp = inner.call(req).await;
        if let Some(p) = &policy
            && !matches!(&resp, Ok(r) if r.status().is_success())
        {
            for w in hooked.values() {
                if let Some(t) = &w.ticket {
                    p.record(t, None, Some(failed(&resp)));
                }
            }
        }
        let resp = resp?;
        if hooked.is_empty() && refusals.is_empty() {
            return Ok(resp);
        }
        self.answer(resp, hooked, refusals, batch, identity).await
    }

    /// The answer to a POST with requests to check the results of, or
    /// refusals to add.
    async fn answer(
        self: Arc<Self>,
        resp: Response,
        hooked: HashMap<String, Watched>,
        refusals: Vec<Vec<u8>>,
        batch: bool,
        identity: Option<Identity>,
    ) -> Result<Response, RequestError> {
        if !resp.status().is_success() {
            return Ok(resp);
        }
        if is_event_stream(&resp) {
            let first = refusals.iter().map(|r| sse::frame_json(r)).collect();
            return Ok(self.stream(resp, Watch::Post(hooked), first, identity));
        }
        if !content_type(&resp).starts_with("application/json") {
            // No answer in the body (a 202 for notifications): the
            // refusals are the answer.
            if let Some(p) = &self.policy {
                for w in hooked.values() {
                    if let Some(t) = &w.ticket {
                        p.record(t, None, None);
                    }
                }
            }
            if refusals.is_empty() {
                return Ok(resp);
            }
            return Ok(json_response(jsonrpc::join(&refusals)));
        }
        let (mut parts, body) = resp.into_parts();
        let bytes = match Limited::new(body, MAX_CHECKED).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(RequestError::AnswerTooLarge(MAX_CHECKED));
            }
            Err(e) => return Err(RequestError::Unreachable(e.to_string())),
        };
        let mut watch = Watch::Post(hooked);
        let mut items = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Array(mut msgs)) => {
                for m in &mut msgs {
                    self.check(&mut watch, m, identity.as_ref()).await;
                }
                let raws = jsonrpc::raw_ids_of(&bytes, &msgs);
                msgs.iter()
                    .zip(&raws)
                    .map(|(m, raw)| jsonrpc::encode(m, raw.as_deref()))
                    .collect()
            }
            Ok(mut one) => {
                self.check(&mut watch, &mut one, identity.as_ref()).await;
                vec![jsonrpc::encode(
                    &one,
                    jsonrpc::raw_id_of(&bytes, &one).as_deref(),
                )]
            }
            // Not JSON after all: nothing a hook could read.
            Err(_) => vec![bytes.to_vec()],
        };
        let body = if batch || !refusals.is_empty() {
            items.extend(refusals);
            jsonrpc::join(&items)
        } else {
            items.pop().unwrap_or_default()
        };
        parts.headers.remove(header::CONTENT_LENGTH);
        Ok(Response::from_parts(parts, Body::from(body)))
    }

    /// A GET: its event stream, if it is one, is watched.
    async fn get<S>(self: Arc<Self>, req: Request, mut inner: S) -> Result<Response, RequestError>
    where
        S: Service<Request, Response = Response, Error = RequestError>,
    {
        let path = req.uri().path().to_owned();
        let identity = req.extensions().get::<Identity>().cloned();
        let resp = inner.call(req).await?;
        if resp.status().is_success() && is_event_stream(&resp) {
            return Ok(self.stream(
                resp,
                Watch::Get { path, legacy: None },
                Vec::new(),
                identity,
            ));
        }
        Ok(resp)
    }

    /// `resp` with its event stream passed through [`Pump`].
    fn stream(
        self: Arc<Self>,
        resp: Response,
        watch: Watch,
        first: Vec<Bytes>,
        identity: Option<Identity>,
    ) -> Response {
        let (mut parts, body) = resp.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts
            .headers
            .insert("x-accel-buffering", HeaderValue::from_static("no"));
        let pump = Pump {
            shared: self,
            body: body.into_data_stream(),
            reader: EventReader::new(MAX_CHECKED),
            out: first.into(),
            watch,
            identity,
            inject: None,
            done: false,
        };
        let events = futures::stream::unfold(pump, |mut pump| async move {
            let item = pump.next().await?;
            Some((item, pump))
        });
        Response::from_parts(parts, Body::from_stream(events))
    }

    /// Runs the response hooks and the policy on `msg` if it answers a
    /// request `watch` holds; withholds an answer a GET stream cannot tie
    /// to one; drops a message of the server's own the policy refuses
    /// (it becomes `Null`). Returns whether `msg` may have changed.
    async fn check(&self, watch: &mut Watch, msg: &mut Value, identity: Option<&Identity>) -> bool {
        match jsonrpc::kind(msg) {
            Kind::Response => {}
            Kind::Request | Kind::Notification => {
                if let Some(p) = &self.policy
                    && !p.passes(identity, msg)
                {
                    *msg = Value::Null;
                    return true;
                }
                return false;
            }
            _ => return false,
        }
        let key = jsonrpc::id_key(&msg["id"]);
        let watched = match watch {
            Watch::Post(hooked) => hooked.remove(&key),
            Watch::Get {
                legacy: Some(reg), ..
            } => {
                let found = reg
                    .legacy
                    .pending
                    .lock()
                    .expect("pending lock")
                    .remove(&key);
                match found {
                    Some(w) => Some(w),
                    None => return withhold(msg),
                }
            }
            Watch::Get { legacy: None, .. } => return withhold(msg),
        };
        let Some(Watched { view, ticket }) = watched else {
            return false;
        };
        if let (Some(p), Some(t)) = (&self.policy, &ticket) {
            // What the server said, before anything changes it.
            p.observe(&t.method, msg).await;
        }
        let mut changed = false;
        if let Some(view) = view {
            middleware::after(&self.chain, &view, msg).await;
            changed = true;
        }
        if let (Some(p), Some(t)) = (&self.policy, &ticket) {
            // What the client gets, after every plugin.
            changed |= p.present(t.identity.as_ref(), &t.method, msg);
            p.record(t, Some(msg), None);
        }
        changed
    }
}

/// The outcome of an exchange that brought no answer.
fn failed(resp: &Result<Response, RequestError>) -> crate::auth::audit::Outcome {
    use crate::auth::audit::Outcome;
    match resp {
        Ok(r) if matches!(r.status().as_u16(), 401 | 403) => Outcome::Denied,
        Ok(r) if r.status().is_client_error() => Outcome::Failure,
        _ => Outcome::Error,
    }
}

/// Replaces a successful answer berth cannot tie to a request it checked.
fn withhold(msg: &mut Value) -> bool {
    if msg.get("result").is_none() {
        return false;
    }
    *msg = jsonrpc::error(
        msg["id"].clone(),
        jsonrpc::INTERNAL_ERROR,
        "berth's middleware did not see the request this answers, so the answer is withheld",
    );
    true
}

/// What a watched stream answers.
enum Watch {
    /// The answers to the requests of its own POST, by id key.
    Post(HashMap<String, Watched>),
    /// A GET stream: a legacy SSE stream once its `endpoint` event names
    /// where its requests are posted; otherwise a stream where an answer
    /// can only be resent (a resumption), for a request berth cannot know.
    Get {
        /// The stream's path, for a relative endpoint.
        path: String,
        legacy: Option<Registration>,
    },
}

/// A legacy SSE stream known to the proxy while it is open.
struct Registration {
    shared: Arc<Shared>,
    key: String,
    legacy: Arc<Legacy>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut streams = self.shared.legacy.lock().expect("legacy streams lock");
        if streams
            .get(&self.key)
            .is_some_and(|l| Arc::ptr_eq(l, &self.legacy))
        {
            streams.remove(&self.key);
        }
    }
}

/// Passes an event stream through, event by event, checking answers.
struct Pump {
    shared: Arc<Shared>,
    body: BodyDataStream,
    reader: EventReader,
    /// Bytes to send before reading more.
    out: VecDeque<Bytes>,
    watch: Watch,
    /// Who reads the stream.
    identity: Option<Identity>,
    /// Refusals to put into a legacy stream.
    inject: Option<mpsc::Receiver<Bytes>>,
    done: bool,
}

impl Pump {
    async fn next(&mut self) -> Option<Result<Bytes, axum::BoxError>> {
        loop {
            if let Some(bytes) = self.out.pop_front() {
                return Some(Ok(bytes));
            }
            if self.done {
                return None;
            }
            match self.reader.next_event() {
                Ok(Some(event)) => {
                    let bytes = self.event(event).await;
                    self.out.push_back(bytes);
                    continue;
                }
                Ok(None) => {}
                Err(too_long) => {
                    self.done = true;
                    return Some(Err(too_long.into()));
                }
            }
            let chunk = match self.inject.as_mut() {
                Some(refusals) => tokio::select! {
                    chunk = self.body.next() => chunk,
                    Some(refusal) = refusals.recv() => {
                        self.out.push_back(refusal);
                        continue;
                    }
                },
                None => self.body.next().await,
            };
            match chunk {
                Some(Ok(bytes)) => self.reader.push(&bytes),
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
                None => {
                    self.done = true;
                    let rest = self.reader.rest();
                    if !rest.is_empty() {
                        self.out.push_back(rest);
                    }
                }
            }
        }
    }

    /// One event, as it goes on to the client.
    async fn event(&mut self, event: Event) -> Bytes {
        if let Watch::Get {
            path,
            legacy: legacy @ None,
        } = &mut self.watch
            && event.name.as_deref() == Some("endpoint")
        {
            if let Some(data) = &event.data {
                let key = endpoint_key(data, path);
                let (inject, refusals) = mpsc::channel(INJECT_QUEUE);
                let stream = Arc::new(Legacy {
                    pending: Mutex::new(HashMap::new()),
                    inject,
                });
                self.shared
                    .legacy
                    .lock()
                    .expect("legacy streams lock")
                    .insert(key.clone(), stream.clone());
                *legacy = Some(Registration {
                    shared: self.shared.clone(),
                    key,
                    legacy: stream,
                });
                self.inject = Some(refusals);
            }
            return event.raw;
        }
        if !event.is_message() {
            return event.raw;
        }
        let Some(data) = event.data.as_deref() else {
            return event.raw;
        };
        let Ok(value) = serde_json::from_str::<Value>(data) else {
            return event.raw;
        };
        let shared = self.shared.clone();
        let encoded = match value {
            Value::Array(mut msgs) => {
                let mut changed = false;
                for m in &mut msgs {
                    changed |= shared
                        .check(&mut self.watch, m, self.identity.as_ref())
                        .await;
                }
                if !changed {
                    return event.raw;
                }
                msgs.retain(|m| !m.is_null());
                if msgs.is_empty() {
                    return Bytes::new();
                }
                let raws = jsonrpc::raw_ids_of(data.as_bytes(), &msgs);
                let encoded: Vec<Vec<u8>> = msgs
                    .iter()
                    .zip(&raws)
                    .map(|(m, raw)| jsonrpc::encode(m, raw.as_deref()))
                    .collect();
                jsonrpc::join(&encoded)
            }
            mut one => {
                if !shared
                    .check(&mut self.watch, &mut one, self.identity.as_ref())
                    .await
                {
                    return event.raw;
                }
                if one.is_null() {
                    // Refused by the policy: not sent.
                    return Bytes::new();
                }
                jsonrpc::encode(&one, jsonrpc::raw_id_of(data.as_bytes(), &one).as_deref())
            }
        };
        event.with_data(&encoded)
    }
}

#[cfg(test)]
mod tests;
