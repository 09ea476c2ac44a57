//! The `spin` span around one attempt on the Spin backend, and the
//! in-flight gauge it counts in: a layer of its own, just outside the
//! attempt's timeout, so a timed-out attempt is recorded as one.
//!
//! The span carries the route, backend, attempt number and body size (and,
//! in external mode, the replica as `server.address`/`server.port`); it
//! records the status (or `error.type`) of the attempt and, on the
//! `validate` route, the batch size read from the verdict as it streams.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use http_body_util::BodyExt;
use tower::{Layer, Service};
use tracing::Instrument;

use super::metrics::Metrics;
use super::size_class::BodySize;
use crate::backend::{Backend, BackendError, BackendFuture, RouteRequest};
use crate::config::{NativeHandler, RouteConfig};

/// Builds [`AttemptSpan`] for one route on one Spin backend.
#[derive(Clone)]
pub struct AttemptSpanLayer {
    shared: Arc<Shared>,
}

struct Shared {
    route: Arc<RouteConfig>,
    backend: Backend,
    metrics: Arc<Metrics>,
}

impl AttemptSpanLayer {
    /// Spans for `route`'s attempts on `backend`, counted in `metrics`.
    pub fn new(route: Arc<RouteConfig>, backend: Backend, metrics: Arc<Metrics>) -> Self {
        AttemptSpanLayer {
            shared: Arc::new(Shared {
                route,
                backend,
                metrics,
            }),
        }
    }
}

impl<S> Layer<S> for AttemptSpanLayer {
    type Service = AttemptSpan<S>;
    fn layer(&self, inner: S) -> AttemptSpan<S> {
        AttemptSpan {
            shared: self.shared.clone(),
            inner,
        }
    }
}

/// See [`AttemptSpanLayer`].
#[derive(Clone)]
pub struct AttemptSpan<S> {
    shared: Arc<Shared>,
    inner: S,
}

impl<S> Service<RouteRequest> for AttemptSpan<S>
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
        let shared = self.shared.clone();
        let size = BodySize::buffered(&request.body)
            .or_else(|| BodySize::declared(&request.parts.headers));
        let span = tracing::info_span!(
            "spin",
            otel.kind = if shared.backend == Backend::SpinExternal { "client" } else { "internal" },
            gateway.route = %shared.route.name,
            gateway.backend = shared.backend.as_str(),
            gateway.attempt = i64::from(request.attempt),
            gateway.size_class = BodySize::class(size).as_str(),
            http.request.body.size = size.map(|s| s.0 as i64),
            http.response.status_code = tracing::field::Empty,
            // The replica an external attempt went to (`proxy`).
            server.address = tracing::field::Empty,
            server.port = tracing::field::Empty,
            error.type = tracing::field::Empty,
            validate.items = tracing::field::Empty,
        );
        let call = span.in_scope(|| self.inner.call(request));
        Box::pin(async move {
            let _in_flight = shared.metrics.in_flight(shared.backend);
            let result = call.instrument(span.clone()).await;
            record(&span, &result);
            match result {
                Ok(response) if shared.route.native == Some(NativeHandler::Validate) => {
                    Ok(record_batch_size(response, span))
                }
                other => other,
            }
        })
    }
}

/// The attempt's outcome on its span.
fn record(span: &tracing::Span, result: &Result<Response, BackendError>) {
    let response = match result {
        Ok(response) | Err(BackendError::ServerError(response)) => response,
        Err(e) => {
            span.record("error.type", e.kind());
            return;
        }
    };
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("error.type", status.as_str());
    }
}

/// Records `validate.items` on the `spin` span from the verdict as it
/// streams past: the component's answer starts `{"valid":N,"invalid":M`,
/// so the first frame is enough and nothing is buffered.
fn record_batch_size(response: Response, span: tracing::Span) -> Response {
    if response.status() != http::StatusCode::OK {
        return response;
    }
    let mut seen = false;
    response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            if !seen {
                seen = true;
                if let Some(items) = frame.data_ref().and_then(|d| verdict_items(d)) {
                    span.record("validate.items", items);
                }
            }
            frame
        }))
    })
}

/// `valid + invalid` from the start of a verdict document.
fn verdict_items(prefix: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(prefix.get(..prefix.len().min(64))?).ok()?;
    let number = |key: &str| -> Option<i64> {
        let rest = text.split(key).nth(1)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    Some(number("\"valid\":")? + number("\"invalid\":")?)
}

#[cfg(test)]
mod tests {
    use super::verdict_items;

    #[test]
    fn batch_size_is_read_from_the_verdict_prefix() {
        assert_eq!(
            verdict_items(br#"{"valid":3,"invalid":14,"results":[{"#),
            Some(17)
        );
        assert_eq!(
            verdict_items(br#"{"valid":0,"invalid":0,"results":[]}"#),
            Some(0)
        );
        assert_eq!(verdict_items(b"\xff\xfe"), None);
        assert_eq!(verdict_items(br#"{"type":"about:blank"}"#), None);
    }
}
