//! W3C trace context on HTTP headers.
//!
//! The server span continues a client's `traceparent` (or starts a trace),
//! and the `spin` client span is injected into the request sent to an
//! external Spin, so Spin's own spans join the same trace.

use http::HeaderMap;
use opentelemetry::Context;
use opentelemetry::global;
use opentelemetry::propagation::{Extractor, Injector};

struct Reader<'a>(&'a HeaderMap);

impl Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct Writer<'a>(&'a mut HeaderMap);

impl Injector for Writer<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The remote parent described by `traceparent`/`tracestate`, if any.
pub fn extract(headers: &HeaderMap) -> Context {
    global::get_text_map_propagator(|p| p.extract(&Reader(headers)))
}

/// Writes `cx` as `traceparent`/`tracestate`. A context without a valid
/// span leaves the headers as they are.
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    use opentelemetry::trace::TraceContextExt;
    if cx.span().span_context().is_valid() {
        global::get_text_map_propagator(|p| p.inject_context(cx, &mut Writer(headers)));
    }
}

/// The span context a client's `traceparent` describes (invalid when it is
/// absent or malformed), read with the W3C propagator whatever the global
/// one is: the in-memory trace store keys traces by this id.
pub fn remote_span_context(headers: &HeaderMap) -> opentelemetry::trace::SpanContext {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    let cx =
        opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&Reader(headers));
    cx.span().span_context().clone()
}
