//! What the gateway records about every public request, in one place: the
//! `request` server span (continuing the client's `traceparent`), the
//! request metrics and dashboard statistics, and the `x-gateway-*`
//! response headers, written from the typed [`Answered`] record and from
//! nothing else.
//!
//! The public listener opens a [`RequestTelemetry`] once it knows the
//! route, runs the request inside its span, and hands it the answer.

use std::net::SocketAddr;
use std::time::Instant;

use axum::response::Response;
use http::{HeaderValue, Method, header};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::metrics::Metrics;
use super::propagation;
use super::stats::Stats;
use crate::backend::{Answered, BACKEND_HEADER, FALLBACK_HEADER};
use crate::config::RouteConfig;
use crate::native::NativeTiming;
use crate::proxy::headers::{GATEWAY_PREFIX, remove_prefixed};

/// One request's telemetry, from its head to its answer.
pub struct RequestTelemetry<'a> {
    metrics: &'a Metrics,
    stats: &'a Stats,
    route: Option<&'a RouteConfig>,
    method: Method,
    started: Instant,
    span: tracing::Span,
}

impl<'a> RequestTelemetry<'a> {
    /// Opens the server span for `request` on `route` (`None`: no route
    /// matched) from `client`.
    pub fn start(
        metrics: &'a Metrics,
        stats: &'a Stats,
        route: Option<&'a RouteConfig>,
        request: &http::Request<axum::body::Body>,
        client: SocketAddr,
    ) -> Self {
        let started = Instant::now();
        let method = request.method().clone();
        let span = tracing::info_span!(
            "request",
            otel.name = %match route {
                Some(r) => format!("{method} {}", r.path),
                None => method.to_string(),
            },
            otel.kind = "server",
            http.request.method = %method,
            http.route = route.map(|r| r.path.as_str()),
            url.path = %request.uri().path(),
            server.address = request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default(),
            client.address = %client.ip(),
            gateway.route = route.map(|r| r.name.as_str()),
            gateway.backend = tracing::field::Empty,
            gateway.fallback.reason = tracing::field::Empty,
            http.request.body.size = tracing::field::Empty,
            http.response.body.size = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        // Without a span (no OTLP export) there is nothing to continue; the
        // client's `traceparent` still travels on to the backend unchanged.
        if !span.is_disabled() {
            let _ = span.set_parent(propagation::extract(request.headers()));
        }
        RequestTelemetry {
            metrics,
            stats,
            route,
            method,
            started,
            span,
        }
    }

    /// The request's span, to run the request in.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Records the answer (span fields, metrics, statistics) and writes
    /// the gateway's headers; whatever a backend sent under those names
    /// is gone.
    pub fn finish(self, mut response: Response) -> Response {
        let took = self.started.elapsed();
        let status = response.status();
        let answered = Answered::of(&response);
        let span = &self.span;
        span.record("http.response.status_code", i64::from(status.as_u16()));
        span.record("gateway.backend", answered.backend.as_str());
        if let Some(size) = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
        {
            span.record("http.response.body.size", size);
        }
        if status.is_server_error() {
            span.record("error.type", status.as_str());
        }
        write_headers(response.headers_mut(), answered);
        let route = self.route.map_or("unmatched", |r| r.name.as_str());
        let backend = answered.backend.as_str();
        self.metrics
            .request(route, backend, &self.method, status, took);
        self.stats.request(route, backend, took);
        if let Some(reason) = answered.fallback {
            span.record("gateway.fallback.reason", reason);
            self.metrics.fallback(route, reason);
            self.stats.fallback(route, reason);
        }
        if let Some(served) = response.extensions().get::<spin_host::Served>() {
            self.metrics
                .instantiate(route, &served.component, served.instantiate);
        }
        if let Some(timing) = response.extensions().get::<NativeTiming>() {
            self.metrics.native(route, timing.queued, timing.compute);
        }
        response
    }
}

/// The only place the gateway's headers are written, from its own account.
fn write_headers(headers: &mut http::HeaderMap, answered: Answered) {
    remove_prefixed(headers, GATEWAY_PREFIX);
    headers.insert(
        BACKEND_HEADER,
        HeaderValue::from_static(answered.backend.as_str()),
    );
    if let Some(reason) = answered.fallback {
        headers.insert(FALLBACK_HEADER, HeaderValue::from_static(reason));
    }
}
