//! Refuses a request whose declared `Content-Length` is over
//! `max_body_bytes` before any of its body is read. A body without a
//! declared length is cut at the limit where it is read (`parse`, or the
//! reverse proxy while forwarding).

use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures::future::{BoxFuture, FutureExt};
use tower::{Layer, Service};

use super::rescue::RequestError;

/// Puts [`Limit`] in front of a service.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LimitLayer {
    max: usize,
}

impl LimitLayer {
    /// Bodies of up to `max` bytes pass.
    pub(crate) fn new(max: usize) -> Self {
        Self { max }
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = Limit<S>;

    fn layer(&self, inner: S) -> Limit<S> {
        Limit {
            max: self.max,
            inner,
        }
    }
}

/// See [`LimitLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Limit<S> {
    max: usize,
    inner: S,
}

impl<S> Service<Request> for Limit<S>
where
    S: Service<Request, Response = Response, Error = RequestError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = RequestError;
    type Future = BoxFuture<'static, Result<Response, RequestError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RequestError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if crate::listener::declares_more_than(req.headers(), self.max) {
            return futures::future::ready(Err(RequestError::TooLarge(self.max))).boxed();
        }
        self.inner.call(req).boxed()
    }
}
