//! A retry goes to another replica: the rule `Retry` alone cannot keep,
//! since the balancer picks afresh for every attempt (and a replica that
//! just failed fast looks the least loaded).
//!
//! [`ElsewhereLayer`] sits above the route's retry layer and gives each
//! request a [`Trail`], which the copies made for retries share
//! ([`RouteRequest::try_clone`](crate::backend::RouteRequest::try_clone)
//! carries it). The external Spin backend records in it the replica each
//! attempt went to and asks the balancer to avoid that one on the next,
//! whatever the failure was (a timeout included, whose error names no
//! replica).

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::discover::ReplicaKey;
use crate::backend::RouteRequest;

/// The replica the previous attempt of a request went to (a request
/// extension, shared by the request and its retry copies).
#[derive(Clone, Debug, Default)]
pub struct Trail(Arc<Mutex<Option<ReplicaKey>>>);

impl Trail {
    /// The replica of the previous attempt, if there was one.
    pub fn previous(&self) -> Option<ReplicaKey> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// This attempt went to `key`.
    pub fn record(&self, key: ReplicaKey) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(key);
    }
}

/// Builds [`Elsewhere`]; `enabled` only where it matters (external mode, a
/// route with retries), so other routes pay nothing.
#[derive(Clone, Copy, Debug)]
pub struct ElsewhereLayer {
    enabled: bool,
}

impl ElsewhereLayer {
    /// Trails for every request when `enabled`.
    pub fn new(enabled: bool) -> Self {
        ElsewhereLayer { enabled }
    }
}

impl<S> Layer<S> for ElsewhereLayer {
    type Service = Elsewhere<S>;
    fn layer(&self, inner: S) -> Elsewhere<S> {
        Elsewhere {
            enabled: self.enabled,
            inner,
        }
    }
}

/// See [`ElsewhereLayer`].
#[derive(Clone)]
pub struct Elsewhere<S> {
    enabled: bool,
    inner: S,
}

impl<S: Service<RouteRequest>> Service<RouteRequest> for Elsewhere<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: RouteRequest) -> S::Future {
        if self.enabled {
            request.parts.extensions.insert(Trail::default());
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::RequestBody;

    #[test]
    fn retry_copies_share_the_trail() {
        let (parts, ()) = http::Request::get("/items").body(()).unwrap().into_parts();
        let mut request = RouteRequest {
            parts,
            body: RequestBody::Buffered(bytes::Bytes::new()),
            spin_path: Some("/list".into()),
            client: "127.0.0.1:1".parse().unwrap(),
            fallback: None,
            attempt: 1,
        };
        request.parts.extensions.insert(Trail::default());
        let copy = request.try_clone().expect("a buffered body can be copied");
        let trail = request.parts.extensions.get::<Trail>().unwrap();
        assert_eq!(trail.previous(), None);
        trail.record(ReplicaKey::new("127.0.0.1:3001"));
        let seen = copy.parts.extensions.get::<Trail>().map(Trail::previous);
        assert_eq!(seen, Some(Some(ReplicaKey::new("127.0.0.1:3001"))));
    }
}
