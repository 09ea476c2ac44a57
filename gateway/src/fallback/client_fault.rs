//! Tells the client's faults from the backend's. When a Spin attempt fails
//! (a 5xx, a broken exchange, a timeout) while the client's streamed body
//! broke off, passed the route's limit or was still arriving, the failure
//! becomes [`BackendError::ClientFault`]: the client gets its 4xx, and
//! neither the circuit breaker nor the retries hear of it (see
//! [`crate::admission::client_fault`]).

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::Response;
use tower::{Layer, Service};

use crate::admission::{body_watch, client_fault};
use crate::backend::{BackendError, BackendFuture, RouteRequest};
use crate::config::RouteConfig;

/// Builds [`ClientFault`] for the route named `route`.
#[derive(Clone, Debug)]
pub struct ClientFaultLayer {
    route: Arc<RouteConfig>,
}

impl ClientFaultLayer {
    /// The layer for `route`.
    pub fn new(route: Arc<RouteConfig>) -> Self {
        ClientFaultLayer { route }
    }
}

impl<S> Layer<S> for ClientFaultLayer {
    type Service = ClientFault<S>;
    fn layer(&self, inner: S) -> ClientFault<S> {
        ClientFault {
            route: self.route.clone(),
            inner,
        }
    }
}

/// See [`ClientFaultLayer`].
#[derive(Clone)]
pub struct ClientFault<S> {
    route: Arc<RouteConfig>,
    inner: S,
}

impl<S> Service<RouteRequest> for ClientFault<S>
where
    S: Service<RouteRequest, Response = Response, Error = BackendError, Future = BackendFuture>,
{
    type Response = Response;
    type Error = BackendError;
    type Future = BackendFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: RouteRequest) -> BackendFuture {
        // Only a streamed body has a watch; a buffered one arrived in full.
        let Some(watch) = body_watch(&request.parts) else {
            return self.inner.call(request);
        };
        let call = self.inner.call(request);
        let route = self.route.clone();
        Box::pin(async move {
            let failure = match call.await {
                Ok(response) => return Ok(response),
                Err(e @ (BackendError::PoolFull { .. } | BackendError::ClientFault { .. })) => {
                    return Err(e);
                }
                Err(e) => e,
            };
            let timed_out = matches!(failure, BackendError::Timeout(_));
            match client_fault(Some(&watch), timed_out) {
                Some(fault) => {
                    tracing::debug!(route = %route.name, ?failure, "client-side failure: {fault}");
                    Err(BackendError::ClientFault {
                        answer: fault.response(),
                        cause: Box::new(fault),
                    })
                }
                None => Err(failure),
            }
        })
    }
}
