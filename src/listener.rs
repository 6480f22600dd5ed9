//! The HTTP/1 server loop of berth's listeners (the management API and
//! every proxy), with connection limits.
//!
//! berth serves each connection itself (hyper's `http1` server) rather than
//! through `axum::serve`, to bound how long a client may hold a connection
//! without using it:
//!
//! - a request's headers must arrive within `header_read_timeout`,
//!   counted from the first byte of the request;
//! - a keep-alive connection with no request in flight is closed after
//!   `idle_timeout`.
//!
//! A connection whose response is still being sent (an open SSE stream, a
//! streamed answer) is never idle, however quiet it is. hyper's own
//! `header_read_timeout` is not used: it runs whenever a connection waits
//! for a request head, so it would also close every idle keep-alive
//! connection after the (shorter) header limit.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::debug;

/// How long a connection may take or idle.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the first byte of a request to the end of its headers.
    pub header_read: Duration,
    /// With no request in flight.
    pub idle: Duration,
}

/// Whether a request declares a body (`Content-Length`) larger than
/// `max` bytes: such a request is refused before any of its body is read.
pub fn declares_more_than(headers: &http::HeaderMap, max: usize) -> bool {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > max as u64)
}

/// Serves `app` on `listener` until `stop` is cancelled, then lets the open
/// connections finish (idle ones close at once) and returns.
pub async fn serve<L>(mut listener: L, app: Router, limits: Limits, stop: CancellationToken)
where
    L: axum::serve::Listener,
    L::Addr: std::any::Any,
{
    let connections = TaskTracker::new();
    loop {
        // `Listener::accept` retries failed accepts (out of file
        // descriptors and the like) itself.
        let io = tokio::select! {
            () = stop.cancelled() => break,
            (io, addr) = listener.accept() => (io, addr),
        };
        let (io, addr) = io;
        let peer = (&addr as &dyn std::any::Any)
            .downcast_ref::<std::net::SocketAddr>()
            .map(|a| PeerAddr(a.ip()));
        connections.spawn(connection(io, peer, app.clone(), limits, stop.clone()));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// The address of the TCP peer that sent a request (in its extensions;
/// absent on a Unix socket). Never taken from a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::IpAddr);

/// One connection, until it ends, breaks a limit, or the proxy stops.
async fn connection<I>(
    io: I,
    peer: Option<PeerAddr>,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: io,
        activity: activity.clone(),
    });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let in_flight = requests.begin();
        if let Some(peer) = peer {
            req.extensions_mut().insert(peer);
        }
        let app = app.clone();
        async move {
            let resp = app.oneshot(req.map(Body::new)).await?;
            // The request counts as in flight until its body is sent.
            Ok::<_, std::convert::Infallible>(resp.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _in_flight = &in_flight;
                    frame
                }))
            }))
        }
    });
    let mut builder = http1::Builder::new();
    builder.header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    // One timer for the connection's life, moved only when its deadline
    // does (a new timer per request would cost a timer-wheel insert and
    // removal each time). While a request is in flight there is no
    // deadline; the timer then looks again after the shorter limit.
    let recheck = limits.header_read.min(limits.idle);
    let mut armed = activity.deadline(limits);
    let timer = tokio::time::sleep_until(armed.unwrap_or_else(|| Instant::now() + recheck));
    let mut timer = std::pin::pin!(timer);
    // Made once, like the timer: a new one per wake-up would register and
    // remove a waiter on the token each time.
    let mut stopped = std::pin::pin!(stop.cancelled());
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(err) = served {
                    debug!(error = %err, "A connection ended with an error.");
                }
                return;
            }
            () = stopped.as_mut(), if !stopping => {
                conn.as_mut().graceful_shutdown();
                stopping = true;
            }
            // A request's first byte or its end: the deadline moved.
            () = activity.changed.notified() => {
                let next = activity.deadline(limits);
                if let Some(deadline) = next
                    && next != armed
                {
                    timer.as_mut().reset(deadline);
                }
                armed = next;
            }
            () = timer.as_mut() => {
                let now = Instant::now();
                match activity.deadline(limits) {
                    Some(d) if d <= now => {
                        debug!(reading_headers = activity.reading_head(), "Closed a connection that was idle or slow to send its headers.");
                        return;
                    }
                    next => {
                        armed = next;
                        timer.as_mut().reset(next.unwrap_or(now + recheck));
                    }
                }
            }
        }
    }
}

/// What a connection is doing, as far as its limits care.
struct Activity {
    state: Mutex<ActivityState>,
    changed: Notify,
}

struct ActivityState {
    /// Requests whose response has not been sent completely.
    in_flight: usize,
    /// Since when no request has been in flight.
    idle_since: Instant,
    /// When the first byte of the next request arrived, if it has.
    head_since: Option<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: Instant::now(),
                head_since: None,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        // The lock guards plain counters; a panic elsewhere cannot leave
        // them inconsistent, so a poisoned lock is used as it is.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request's headers were read: it is in flight until the guard drops.
    fn begin(self: &Arc<Self>) -> InFlight {
        let mut s = self.state();
        s.in_flight += 1;
        s.head_since = None;
        drop(s);
        // No wake-up: an armed timer that fires during the request finds
        // it in flight and only looks again later.
        InFlight(self.clone())
    }

    /// Bytes arrived from the client.
    fn read(&self) {
        let mut s = self.state();
        if s.in_flight == 0 && s.head_since.is_none() {
            s.head_since = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    fn reading_head(&self) -> bool {
        self.state().head_since.is_some()
    }

    /// When the connection breaks a limit, unless something happens first;
    /// never while a request is in flight.
    fn deadline(&self, limits: Limits) -> Option<Instant> {
        let s = self.state();
        if s.in_flight > 0 {
            return None;
        }
        Some(match s.head_since {
            Some(t) => t + limits.header_read,
            None => s.idle_since + limits.idle,
        })
    }
}

/// Marks one request in flight.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        let idle = s.in_flight == 0;
        if idle {
            s.idle_since = Instant::now();
            s.head_since = None;
        }
        drop(s);
        if idle {
            self.0.changed.notify_one();
        }
    }
}

/// A connection that reports arriving bytes to its [`Activity`].
struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
