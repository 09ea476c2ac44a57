//! The route's Spin concurrency limit (`concurrency`), shedding instead of
//! queueing: a call over the limit fails at once with
//! [`BackendError::Overloaded`] (an `auto` route goes native, a `spin`
//! route answers `503` + `Retry-After`).
//!
//! Tower's `ConcurrencyLimit` waits for a permit and releases it when the
//! response head is ready. Here a permit is tried (never waited for) and a
//! small body guard ([`hold_until_sent`]) holds it until the response body
//! has been sent, so a streaming answer counts against the limit for as
//! long as it streams.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::Response;
use tokio::sync::Semaphore;
use tower::{Layer, Service};

use crate::admission::hold_until_sent;
use crate::backend::{BackendError, BackendFuture, RouteRequest};

/// Builds [`Limit`] over a route's semaphore.
#[derive(Clone)]
pub struct LimitLayer {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl LimitLayer {
    /// `limit` calls at once, counted by `permits` (shared across reloads
    /// that keep the route).
    pub fn new(permits: Arc<Semaphore>, limit: usize) -> Self {
        LimitLayer { permits, limit }
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = Limit<S>;
    fn layer(&self, inner: S) -> Limit<S> {
        Limit {
            layer: self.clone(),
            inner,
        }
    }
}

/// See [`LimitLayer`].
#[derive(Clone)]
pub struct Limit<S> {
    layer: LimitLayer,
    inner: S,
}

impl<S> Service<RouteRequest> for Limit<S>
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
        let Ok(permit) = self.layer.permits.clone().try_acquire_owned() else {
            let limit = self.layer.limit;
            return Box::pin(std::future::ready(Err(BackendError::Overloaded { limit })));
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            Ok(hold_until_sent(response, permit))
        })
    }
}
