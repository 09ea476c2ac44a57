//! The route's `timeout_ms` on one Spin attempt: past it the call is
//! dropped and fails with [`BackendError::Timeout`] (retryable, and a
//! fallback trigger). Tower's `Timeout` would erase the error type; this
//! one keeps the backend's.

use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::Response;
use tower::{Layer, Service};

use crate::backend::{BackendError, BackendFuture, RouteRequest};

/// Builds [`Timeout`].
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    after: Duration,
}

impl TimeoutLayer {
    /// Attempts get `after` to answer.
    pub fn new(after: Duration) -> Self {
        TimeoutLayer { after }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            after: self.after,
            inner,
        }
    }
}

/// See [`TimeoutLayer`].
#[derive(Clone)]
pub struct Timeout<S> {
    after: Duration,
    inner: S,
}

impl<S> Service<RouteRequest> for Timeout<S>
where
    S: Service<RouteRequest, Response = Response, Error = BackendError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BackendError;
    type Future = BackendFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: RouteRequest) -> BackendFuture {
        let after = self.after;
        let call = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(after, call).await {
                Ok(result) => result,
                Err(_) => Err(BackendError::Timeout(after)),
            }
        })
    }
}
