//! The answer when the backend failed and nobody stood in: a problem that
//! names the route and the backend (`502`/`503`/`504`, `Retry-After`
//! where retrying later helps), a 5xx passed on as Spin sent it, or the
//! client's own 4xx. Sheds (the route's limit, a full instance pool) are
//! counted here.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use tower::{Layer, Service};

use crate::backend::{Answered, Backend, BackendError, BackendFuture, RouteRequest};
use crate::config::RouteConfig;
use crate::problem::{Problem, ProblemResponse};
use crate::telemetry::metrics::Metrics;

pub use crate::backend::AnswerFuture;

/// Builds [`Answer`] for one route.
#[derive(Clone)]
pub struct AnswerLayer {
    shared: Arc<Shared>,
}

struct Shared {
    route: Arc<RouteConfig>,
    /// The Spin backend the failures come from.
    backend: Backend,
    /// Where it runs, for details ("Spin at http://...").
    describe: String,
    metrics: Arc<Metrics>,
}

impl AnswerLayer {
    /// Answers for `route`'s failures on `backend` (described as
    /// `describe`), counting sheds in `metrics`.
    pub fn new(
        route: Arc<RouteConfig>,
        backend: Backend,
        describe: String,
        metrics: Arc<Metrics>,
    ) -> Self {
        AnswerLayer {
            shared: Arc::new(Shared {
                route,
                backend,
                describe,
                metrics,
            }),
        }
    }
}

impl<S> Layer<S> for AnswerLayer {
    type Service = Answer<S>;
    fn layer(&self, inner: S) -> Answer<S> {
        Answer {
            shared: self.shared.clone(),
            inner,
        }
    }
}

/// See [`AnswerLayer`].
#[derive(Clone)]
pub struct Answer<S> {
    shared: Arc<Shared>,
    inner: S,
}

impl<S> Service<RouteRequest> for Answer<S>
where
    S: Service<RouteRequest, Response = Response, Error = BackendError, Future = BackendFuture>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AnswerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The backends below are always ready.
        let _ = self.inner.poll_ready(cx);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RouteRequest) -> Self::Future {
        let call = self.inner.call(request);
        let shared = self.shared.clone();
        Box::pin(async move {
            Ok(match call.await {
                Ok(response) => response,
                Err(failure) => shared.failure_response(failure),
            })
        })
    }
}

/// `503 Overloaded` + `Retry-After: 1`: a shed, worth retrying shortly.
fn overloaded(detail: String) -> (Problem, Option<u64>) {
    (Problem::new(503, "Overloaded", detail), Some(1))
}

impl Shared {
    /// The problem for a failure, and the `Retry-After` seconds if
    /// retrying later helps.
    fn problem_for(&self, failure: BackendError) -> (Problem, Option<u64>) {
        let route = &*self.route;
        let backend = &self.describe;
        match failure {
            BackendError::Connect(cause) => (
                Problem::new(
                    503,
                    "Backend Unavailable",
                    format!(
                        "route `{}` is served by {backend}, which cannot be reached: {cause}",
                        route.name
                    ),
                ),
                Some(1),
            ),
            BackendError::Io(cause) => (
                Problem::new(
                    502,
                    "Bad Gateway",
                    format!(
                        "route `{}`: the exchange with {backend} failed: {cause}",
                        route.name
                    ),
                ),
                None,
            ),
            BackendError::Timeout(after) => (
                Problem::new(
                    504,
                    "Gateway Timeout",
                    format!(
                        "route `{}`: {backend} did not answer within {} ms",
                        route.name,
                        after.as_millis()
                    ),
                ),
                None,
            ),
            BackendError::CircuitOpen => (
                Problem::new(
                    503,
                    "Backend Unavailable",
                    format!(
                        "route `{}`: the circuit breaker on {backend} is open after repeated failures; \
                         requests are refused until it recovers",
                        route.name
                    ),
                ),
                Some(route.circuit.open_for.as_secs().max(1)),
            ),
            pool @ BackendError::PoolFull { .. } => {
                overloaded(format!("route `{}`: {pool}; retry shortly", route.name))
            }
            BackendError::Overloaded { limit } => overloaded(format!(
                "route `{}` already has {limit} requests in flight on {backend}; retry shortly",
                route.name
            )),
            // Answered before this is asked (a 5xx passed on, the client's
            // 4xx), or a failure with no problem of its own yet.
            other => (
                Problem::new(
                    502,
                    "Bad Gateway",
                    format!("route `{}`: {backend}: {other}", route.name),
                ),
                None,
            ),
        }
    }

    /// The answer when Spin failed and native does not stand in.
    fn failure_response(&self, failure: BackendError) -> Response {
        if matches!(
            failure,
            BackendError::Overloaded { .. } | BackendError::PoolFull { .. }
        ) {
            self.metrics.shed(&self.route.name);
        }
        let (problem, retry_after) = match failure {
            BackendError::ServerError(response) => return response,
            BackendError::ClientFault { answer, .. } => return answer,
            failure => self.problem_for(failure),
        };
        let route = &*self.route;
        let problem = problem
            .with("route", serde_json::json!(route.name))
            .with("backend", serde_json::json!(self.backend.as_str()));
        let mut response = ProblemResponse(problem).into_response();
        response.extensions_mut().insert(Answered::GATEWAY);
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
