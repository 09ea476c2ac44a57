//! The services at the bottom of a route's stack: Spin, native, and the
//! answer for a route no backend can serve. Each marks its answers with
//! [`Answered`].

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use tower::Service;
use tracing::Instrument;

use crate::backend::{Answered, Backend, BackendError, BackendFuture, RequestBody, RouteRequest};
use crate::config::RouteConfig;
use crate::native::Native;
use crate::problem::{Problem, ProblemResponse};
use crate::spin::SpinBackend;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::size_class::SizeClass;

/// One attempt on the Spin backend. A 5xx is a failure
/// ([`BackendError::ServerError`], the response kept to pass on).
#[derive(Clone)]
pub struct SpinService {
    shared: Arc<SpinShared>,
}

struct SpinShared {
    spin: SpinBackend,
    route: Arc<RouteConfig>,
}

impl SpinService {
    /// `route`'s calls to `spin`.
    pub fn new(spin: SpinBackend, route: Arc<RouteConfig>) -> Self {
        SpinService {
            shared: Arc::new(SpinShared { spin, route }),
        }
    }
}

impl Service<RouteRequest> for SpinService {
    type Response = Response;
    type Error = BackendError;
    type Future = BackendFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RouteRequest) -> BackendFuture {
        let shared = self.shared.clone();
        Box::pin(async move {
            let RouteRequest {
                parts,
                body,
                spin_path,
                client,
                ..
            } = request;
            let Some(path) = spin_path else {
                return Err(BackendError::Io("the route has no Spin path".into()));
            };
            let timeout = shared.route.timeout;
            let response = shared
                .spin
                .call(parts, body, &path, client, timeout)
                .await?;
            let answered = Answered {
                backend: shared.spin.backend(),
                fallback: None,
            };
            let response = answered.mark(response);
            if response.status().is_server_error() {
                return Err(BackendError::ServerError(response));
            }
            Ok(response)
        })
    }
}

/// The route's native handler, under its own `native` span; never fails
/// (its errors are answers: `503` when its queue is full, `504` past the
/// deadline).
#[derive(Clone)]
pub struct NativeService {
    shared: Arc<NativeShared>,
}

struct NativeShared {
    native: Native,
    route: Arc<RouteConfig>,
    metrics: Arc<Metrics>,
}

impl NativeService {
    /// `route`'s calls to `native`, counted in `metrics`.
    pub fn new(native: Native, route: Arc<RouteConfig>, metrics: Arc<Metrics>) -> Self {
        NativeService {
            shared: Arc::new(NativeShared {
                native,
                route,
                metrics,
            }),
        }
    }
}

impl Service<RouteRequest> for NativeService {
    type Response = Response;
    type Error = BackendError;
    type Future = BackendFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RouteRequest) -> BackendFuture {
        let shared = self.shared.clone();
        Box::pin(async move {
            let route = &*shared.route;
            let reason = request.fallback;
            let (Some(handler), RequestBody::Buffered(bytes)) = (route.native, request.body) else {
                return Ok(misconfigured(route));
            };
            let span = tracing::info_span!(
                "native",
                gateway.route = %route.name,
                gateway.backend = "native",
                gateway.fallback.reason = reason,
                gateway.size_class = SizeClass::of(bytes.len() as u64).as_str(),
                http.request.body.size = bytes.len() as i64,
                validate.items = tracing::field::Empty,
            );
            let _in_flight = shared.metrics.in_flight(Backend::Native);
            let response = shared
                .native
                .call(handler, &request.parts.headers, bytes, route.timeout)
                .instrument(span)
                .await;
            let answered = Answered {
                backend: Backend::Native,
                fallback: reason,
            };
            Ok(answered.mark(response))
        })
    }
}

/// A route whose config leaves no backend able to serve it (a `spin`
/// route without a Spin path): `500`, from the gateway.
#[derive(Clone)]
pub struct Misconfigured {
    route: Arc<RouteConfig>,
}

impl Misconfigured {
    /// The answer for `route`.
    pub fn new(route: Arc<RouteConfig>) -> Self {
        Misconfigured { route }
    }
}

impl Service<RouteRequest> for Misconfigured {
    type Response = Response;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: RouteRequest) -> Self::Future {
        std::future::ready(Ok(misconfigured(&self.route)))
    }
}

/// `500`: the route has no backend able to serve it.
pub fn misconfigured(route: &RouteConfig) -> Response {
    ProblemResponse(Problem::new(
        500,
        "Internal Server Error",
        format!("route `{}` has no backend able to serve it", route.name),
    ))
    .into_response()
}
