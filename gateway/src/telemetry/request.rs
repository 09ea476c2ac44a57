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
use super::series::Series;
use super::size_class::BodySize;
use super::stats::Stats;
use crate::backend::{Answered, BACKEND_HEADER, FALLBACK_HEADER};
use crate::config::RouteConfig;
use crate::native::NativeTiming;
use crate::proxy::headers::{GATEWAY_PREFIX, remove_prefixed};

/// Where every request is recorded: metrics (`/metrics`, OTLP), the
/// dashboard's totals and its per-second series.
#[derive(Clone, Copy)]
pub struct Recorders<'a> {
    /// Metrics.
    pub metrics: &'a Metrics,
    /// Dashboard totals per route, backend and size class.
    pub stats: &'a Stats,
    /// The last 15 minutes, second by second.
    pub series: &'a Series,
}

/// One request's telemetry, from its head to its answer.
pub struct RequestTelemetry<'a> {
    record: Recorders<'a>,
    route: Option<&'a RouteConfig>,
    method: Method,
    /// The declared body size, for answers that did not say what they read.
    declared: Option<BodySize>,
    started: Instant,
    span: tracing::Span,
}

impl<'a> RequestTelemetry<'a> {
    /// Opens the server span for `request` on `route` (`None`: no route
    /// matched) from `client`.
    pub fn start(
        record: Recorders<'a>,
        route: Option<&'a RouteConfig>,
        request: &http::Request<axum::body::Body>,
        client: SocketAddr,
    ) -> Self {
        let started = Instant::now();
        let method = request.method().clone();
        // The trace recorder decides here, once, whether this request's
        // spans are kept; the decision covers the span created next.
        let armed = super::traces::arm(request.headers());
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
            gateway.decision = tracing::field::Empty,
            gateway.predicted.wasm_ms = tracing::field::Empty,
            gateway.predicted.native_ms = tracing::field::Empty,
            gateway.size_class = tracing::field::Empty,
            http.request.body.size = tracing::field::Empty,
            http.response.body.size = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        drop(armed);
        // Without a span (no OTLP export) there is nothing to continue; the
        // client's `traceparent` still travels on to the backend unchanged.
        if !span.is_disabled() {
            let _ = span.set_parent(propagation::extract(request.headers()));
        }
        RequestTelemetry {
            record,
            route,
            method,
            declared: BodySize::declared(request.headers()),
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
        let class = BodySize::record(span, BodySize::of(&response, self.declared));
        let Recorders {
            metrics,
            stats,
            series,
        } = self.record;
        metrics.request(route, backend, class, &self.method, status, took);
        stats.request(route, backend, class, took);
        series.request(route, backend, took);
        if let Some(reason) = answered.fallback {
            span.record("gateway.fallback.reason", reason);
            metrics.fallback(route, reason);
            stats.fallback(route, reason);
            series.fallback(route, reason);
        }
        if let Some(served) = response.extensions().get::<spin_host::Served>() {
            metrics.instantiate(route, &served.component, served.instantiate);
        }
        if let Some(timing) = response.extensions().get::<NativeTiming>() {
            metrics.native(route, timing.queued, timing.compute);
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
