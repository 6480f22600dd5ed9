//! Refuses what a web page could send (see [`crate::auth::browser`]): a page
//! cannot reach the local MCP servers by DNS rebinding or cross-site
//! requests, whatever the route and whatever the upstream.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures::future::{BoxFuture, FutureExt};
use tower::{Layer, Service};
use tracing::warn;

use super::rescue::RequestError;
use crate::auth::BrowserGuard;

/// Puts [`Guard`] in front of a service.
#[derive(Clone)]
pub(crate) struct GuardLayer {
    guard: Arc<BrowserGuard>,
}

impl GuardLayer {
    /// A layer checking with `guard`.
    pub(crate) fn new(guard: BrowserGuard) -> Self {
        Self {
            guard: Arc::new(guard),
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            guard: self.guard.clone(),
            inner,
        }
    }
}

/// See [`GuardLayer`].
#[derive(Clone)]
pub(crate) struct Guard<S> {
    guard: Arc<BrowserGuard>,
    inner: S,
}

impl<S> Service<Request> for Guard<S>
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

    fn call(&mut self, req: Request) -> Self::Future {
        if let Err(why) = self.guard.check(req.headers()) {
            warn!(reason = %why, "Refused a request a web page could have sent.");
            return futures::future::ready(Err(RequestError::CrossOrigin(why))).boxed();
        }
        self.inner.call(req).boxed()
    }
}
