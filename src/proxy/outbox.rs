//! Queues of SSE frames on their way to one client, bounded in bytes.
//!
//! Every stream a client reads (its session's `GET /mcp` or `/sse` stream,
//! the SSE answer of each of its requests) is fed through an [`Outbox`].
//! All outboxes of one session share one [`Budget`]: the bytes queued and
//! not yet taken by the HTTP connection. A client that stops reading makes
//! the budget run out; the session's streams then end with an error, and
//! nothing more is queued for it, so one slow client holds at most its
//! budget while the other sessions go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use futures::Stream;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::sse;

/// Bytes a session's client may leave unread before its streams are
/// closed (a single larger message is let through when nothing else is
/// waiting).
pub(crate) const SESSION_BUDGET: usize = 16 * 1024 * 1024;

/// The unread bytes of one session (or of one session-less request).
pub(crate) struct Budget {
    queued: AtomicUsize,
    limit: usize,
    exceeded: AtomicBool,
    closed: CancellationToken,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            queued: AtomicUsize::new(0),
            limit,
            exceeded: AtomicBool::new(false),
            closed: CancellationToken::new(),
        })
    }

    /// Whether the budget ran out (for good).
    #[cfg(test)]
    fn is_exceeded(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Bytes queued and not yet taken by a connection.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    fn release(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::SeqCst);
    }
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SendError {
    /// The stream's reader is gone.
    #[error("the client's stream is closed")]
    Closed,
    /// The session's budget ran out; `first` is set for the one send that
    /// exhausted it.
    #[error("the client left more than its budget of unread bytes")]
    Exceeded {
        /// This send exhausted the budget (report it once).
        first: bool,
    },
}

/// The error a stream ends with when its session's budget ran out.
#[derive(Debug, thiserror::Error)]
#[error("the client left more than {0} bytes unread; its streams are closed")]
pub(crate) struct BudgetExceeded(usize);

/// One frame on its way to the client.
struct Frame {
    bytes: Bytes,
    /// The stream ends after this frame (the final answer of a request).
    last: bool,
}

/// The sending side of one client stream; cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Frame>,
    budget: Arc<Budget>,
}

/// The receiving side of one client stream.
pub(crate) struct Inbox {
    rx: mpsc::UnboundedReceiver<Frame>,
    budget: Arc<Budget>,
    /// Resolves when the budget runs out; made once per stream (not per
    /// frame: registering a waiter on the token takes its lock).
    exceeded: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

impl Outbox {
    /// A stream charged to `budget`.
    pub(crate) fn channel(budget: Arc<Budget>) -> (Outbox, Inbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Outbox {
                tx,
                budget: budget.clone(),
            },
            Inbox {
                rx,
                exceeded: Box::pin(budget.closed.clone().cancelled_owned()),
                budget,
            },
        )
    }

    /// Queues `msg` as an SSE `message` event.
    pub(crate) fn send(&self, msg: &Value) -> Result<(), SendError> {
        self.push(sse::frame(msg), false)
    }

    /// Queues an already framed event; with `last`, the stream ends after it.
    pub(crate) fn send_frame(&self, bytes: Bytes, last: bool) -> Result<(), SendError> {
        self.push(bytes, last)
    }

    fn push(&self, bytes: Bytes, last: bool) -> Result<(), SendError> {
        let b = &*self.budget;
        if b.closed.is_cancelled() {
            return Err(SendError::Exceeded { first: false });
        }
        let n = bytes.len();
        let before = b.queued.fetch_add(n, Ordering::SeqCst);
        // One message larger than the whole budget still goes to a client
        // that has read everything before it.
        if before > 0 && before.saturating_add(n) > b.limit {
            b.release(n);
            let first = !b.exceeded.swap(true, Ordering::SeqCst);
            b.closed.cancel();
            return Err(SendError::Exceeded { first });
        }
        self.tx.send(Frame { bytes, last }).map_err(|_| {
            b.release(n);
            SendError::Closed
        })
    }
}

impl Inbox {
    /// The next frame and whether it is the last; `Err` once the budget ran
    /// out; `None` when every sender is gone.
    async fn recv(&mut self) -> Option<Result<(Bytes, bool), BudgetExceeded>> {
        tokio::select! {
            biased;
            () = self.exceeded.as_mut() => Some(Err(BudgetExceeded(self.budget.limit))),
            frame = self.rx.recv() => {
                let frame = frame?;
                self.budget.release(frame.bytes.len());
                Some(Ok((frame.bytes, frame.last)))
            }
        }
    }

    /// The frames as a body stream: up to and including a `last` frame, or
    /// until every sender is gone; an error ends it if the budget runs out.
    /// A keep-alive comment is sent whenever the stream is quiet for
    /// `keepalive`; `first` goes out before anything else and `guard` lives
    /// as long as the stream.
    pub(crate) fn into_stream<G: Send + 'static>(
        self,
        first: Option<Bytes>,
        keepalive: Option<std::time::Duration>,
        guard: G,
    ) -> impl Stream<Item = Result<Bytes, BudgetExceeded>> + Send + 'static {
        futures::stream::unfold(Some((first, self, guard)), move |state| async move {
            let (mut first, mut inbox, guard) = state?;
            if let Some(f) = first.take() {
                return Some((Ok(f), Some((None, inbox, guard))));
            }
            let next = match keepalive {
                Some(k) => match tokio::time::timeout(k, inbox.recv()).await {
                    Ok(next) => next,
                    Err(_) => {
                        let ping = Bytes::from_static(b": keep-alive\n\n");
                        return Some((Ok(ping), Some((None, inbox, guard))));
                    }
                },
                None => inbox.recv().await,
            };
            match next? {
                Ok((bytes, last)) => {
                    let rest = (!last).then_some((None, inbox, guard));
                    Some((Ok(bytes), rest))
                }
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        // What the client will never read no longer counts.
        self.rx.close();
        while let Ok(frame) = self.rx.try_recv() {
            self.budget.release(frame.bytes.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn a_budget_bounds_the_unread_bytes_of_all_streams_of_a_session() {
        let budget = Budget::new(1000);
        let (a, inbox_a) = Outbox::channel(budget.clone());
        let (b, inbox_b) = Outbox::channel(budget.clone());
        let big = json!({"x": "y".repeat(400)});
        assert_eq!(a.send(&big), Ok(()));
        assert_eq!(b.send(&big), Ok(()));
        assert!(budget.queued() > 800);
        assert_eq!(a.send(&big), Err(SendError::Exceeded { first: true }));
        assert_eq!(b.send(&json!(1)), Err(SendError::Exceeded { first: false }));
        assert!(budget.is_exceeded());
        // Both streams end with the error, whatever they still held.
        for inbox in [inbox_a, inbox_b] {
            let items: Vec<_> = inbox.into_stream(None, None, ()).collect().await;
            assert_eq!(items.len(), 1);
            assert!(items[0].is_err());
        }
        assert_eq!(budget.queued(), 0, "dropped frames are released");
    }

    #[tokio::test]
    async fn read_frames_free_their_bytes_and_a_last_frame_ends_the_stream() {
        let budget = Budget::new(200);
        let (tx, inbox) = Outbox::channel(budget.clone());
        let frame = Bytes::from(vec![b'a'; 60]);
        let mut stream = Box::pin(inbox.into_stream(Some(Bytes::from_static(b"hi")), None, ()));
        assert_eq!(stream.next().await.unwrap().unwrap(), "hi");
        for _ in 0..5 {
            assert_eq!(tx.send_frame(frame.clone(), false), Ok(()));
            assert_eq!(stream.next().await.unwrap().unwrap(), frame);
            assert_eq!(budget.queued(), 0);
        }
        assert_eq!(tx.send_frame(frame.clone(), true), Ok(()));
        assert_eq!(tx.send_frame(frame.clone(), false), Ok(()));
        assert!(stream.next().await.unwrap().is_ok());
        assert!(
            stream.next().await.is_none(),
            "nothing after the last frame"
        );
        drop(stream);
        assert_eq!(budget.queued(), 0);
        assert_eq!(tx.send_frame(frame, false), Err(SendError::Closed));
    }

    #[tokio::test]
    async fn one_message_larger_than_the_budget_passes_when_nothing_waits() {
        let budget = Budget::new(100);
        let (tx, inbox) = Outbox::channel(budget.clone());
        let mut stream = Box::pin(inbox.into_stream(None, None, ()));
        let huge = Bytes::from(vec![b'a'; 1000]);
        assert_eq!(tx.send_frame(huge.clone(), false), Ok(()));
        assert_eq!(stream.next().await.unwrap().unwrap(), huge);
        assert_eq!(tx.send_frame(huge.clone(), false), Ok(()));
        // Unread, it leaves no room for anything else.
        assert_eq!(
            tx.send_frame(Bytes::from_static(b"x"), false),
            Err(SendError::Exceeded { first: true })
        );
        assert!(stream.next().await.unwrap().is_err());
    }
}
