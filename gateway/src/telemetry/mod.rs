//! Traces and metrics that compare the Wasm and native paths of a route.
//!
//! * [`init`] installs the `tracing` subscriber: logs, and an OpenTelemetry
//!   layer whose spans are exported over OTLP when the standard
//!   `OTEL_EXPORTER_OTLP_*` variables say where. Off otherwise: no spans
//!   are built (but for the few requests [`traces`] records), and a
//!   client's `traceparent` is forwarded unchanged.
//! * [`metrics::Metrics`] holds the instruments; they are exported in
//!   Prometheus text format on the admin listener and over OTLP.
//! * [`stats::Stats`] keeps the per-route, per-backend latency histograms
//!   the built-in `/dashboard` reads, with no external service.
//! * [`size_class`] buckets requests by body size, so Wasm and native are
//!   compared on equal work.
//! * [`propagation`] reads and writes W3C `traceparent` headers.
//! * [`traces`] keeps recently finished traces in fixed memory (export on
//!   or off) for the dashboard's waterfalls; [`series`] keeps per-second
//!   aggregates of the last 15 minutes for its charts.
//! * [`request`] records each public request (server span, metrics,
//!   statistics, `x-gateway-*` headers); [`attempt`] is the layer that
//!   spans each attempt on Spin.

pub mod attempt;
pub mod metrics;
pub mod propagation;
pub mod request;
pub mod series;
pub mod size_class;
pub mod stats;
pub mod traces;

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::global;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Where OTLP data goes, from the standard environment variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpTarget {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` (default) or `http/protobuf`.
    pub protocol: Protocol,
}

impl OtlpTarget {
    /// Reads the environment; `None` when no endpoint is set (export off).
    pub fn from_env() -> Result<Option<OtlpTarget>, String> {
        let Ok(endpoint) = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") else {
            return Ok(None);
        };
        if endpoint.trim().is_empty() {
            return Ok(None);
        }
        let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
            Err(_) | Ok("grpc") => Protocol::Grpc,
            Ok("http/protobuf") => Protocol::HttpBinary,
            Ok(other) => {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL=`{other}` is not supported; use `grpc` or `http/protobuf`"
                ));
            }
        };
        Ok(Some(OtlpTarget { endpoint, protocol }))
    }
}

/// The service's resource: `OTEL_SERVICE_NAME` (and
/// `OTEL_RESOURCE_ATTRIBUTES`) or `gateway`.
pub fn resource() -> Resource {
    let builder = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_ok() {
        builder.build()
    } else {
        builder.with_service_name("gateway").build()
    }
}

/// Spans handed to the collector, and spans lost because an export failed
/// (collector down or refusing). Process-wide, like the tracer; exported as
/// `gateway_telemetry_spans_total{result}`. Spans dropped because the
/// bounded queue was full are reported by the SDK itself in the log.
pub static SPANS_EXPORTED: AtomicU64 = AtomicU64::new(0);
/// See [`SPANS_EXPORTED`].
pub static SPANS_FAILED: AtomicU64 = AtomicU64::new(0);

/// Counts what the wrapped exporter delivers and loses.
#[derive(Debug)]
struct Counting<E>(E);

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.0.export(batch).await;
        let counter = if result.is_ok() {
            &SPANS_EXPORTED
        } else {
            &SPANS_FAILED
        };
        counter.fetch_add(n, Ordering::Relaxed);
        result
    }
    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// Keeps the tracer provider alive; flushes pending spans when dropped.
pub struct TracingGuard {
    provider: SdkTracerProvider,
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("flushing traces at exit failed: {e}");
        }
    }
}

/// The `log` crate's level for a tracing level hint (`None`: no limit).
fn log_level_filter(hint: Option<tracing_subscriber::filter::LevelFilter>) -> log::LevelFilter {
    use tracing_subscriber::filter::LevelFilter;
    match hint {
        Some(LevelFilter::OFF) => log::LevelFilter::Off,
        Some(LevelFilter::ERROR) => log::LevelFilter::Error,
        Some(LevelFilter::WARN) => log::LevelFilter::Warn,
        Some(LevelFilter::INFO) => log::LevelFilter::Info,
        Some(LevelFilter::DEBUG) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

/// Installs logging and tracing for the process (call once, from `main`
/// or a test). Spans go to the OTLP target when there is one, through a
/// batching processor with a bounded queue: a slow or absent collector
/// drops spans, it never blocks a request.
pub fn init(target: Option<&OtlpTarget>) -> anyhow::Result<TracingGuard> {
    let mut builder = SdkTracerProvider::builder().with_resource(resource());
    if let Some(target) = target {
        let exporter = match target.protocol {
            Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(target.endpoint.clone())
                .build()?,
            _ => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(format!(
                    "{}/v1/traces",
                    target.endpoint.trim_end_matches('/')
                ))
                .build()?,
        };
        let processor = BatchSpanProcessor::builder(Counting(exporter))
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(4096)
                    .with_scheduled_delay(std::time::Duration::from_millis(500))
                    .build(),
            )
            .build();
        builder = builder.with_span_processor(processor);
    }
    let provider = builder.build();
    let tracer = provider.tracer("gateway");
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());

    // `RUST_LOG` decides what is logged; spans are exported whatever the
    // log level, so quieting logs never breaks a trace.
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let log_level = log_filter.max_level_hint();
    let span_filter = tracing_subscriber::filter::Targets::new()
        .with_target("gateway", tracing::Level::INFO)
        .with_target("spin_host", tracing::Level::INFO);
    // Log lines are events only: spans are what traces are for, and a span
    // the log layer knew of would have its fields formatted into a string
    // on every request, logged or not.
    let log_filter = log_filter.and(tracing_subscriber::filter::filter_fn(|meta| {
        meta.is_event()
    }));
    // Spans are built only when they go somewhere: with no OTLP target
    // there is no OpenTelemetry layer, and the trace recorder builds the
    // spans of the few requests it records only, so a request's spans cost
    // next to nothing, and a client's `traceparent` is passed upstream
    // untouched.
    let spans = target.map(|_| {
        // Per span, no wall-clock reads at every poll (busy/idle times),
        // nor thread and source-location attributes: a trace says what the
        // request did, the rest is per-request cost.
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_filter(span_filter)
    });
    // Not `.with(Option<layer>)`: an absent layer would count as one that
    // wants every span and event, and every span would be built. The
    // in-memory trace recorder is innermost: it sees a span close before
    // the OpenTelemetry layer ends it (and can read its ids), and its
    // `enabled` can turn down the spans of requests it does not record.
    // The config's `[telemetry] trace_sample` replaces the default sample
    // once it is loaded (the subscriber is installed before).
    let recorder = traces::layer(target.is_some(), log_level);
    let logs = tracing_subscriber::registry()
        .with(recorder)
        .with(tracing_subscriber::fmt::layer().with_filter(log_filter));
    match spans {
        Some(spans) => logs.with(spans).try_init(),
        None => logs.try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot install the tracing subscriber: {e}"))?;
    // Records from crates that use `log` (wasmtime logs at trace level on
    // every instantiation) are only wanted up to the log level: without
    // this cap each one was turned into a tracing event and then filtered
    // out, dozens per request.
    log::set_max_level(log_level_filter(log_level));
    Ok(TracingGuard { provider })
}

#[cfg(test)]
mod tests {
    use super::log_level_filter;
    use tracing_subscriber::filter::LevelFilter;

    #[test]
    fn log_records_are_capped_at_the_log_level() {
        let cases = [
            (Some(LevelFilter::OFF), log::LevelFilter::Off),
            (Some(LevelFilter::ERROR), log::LevelFilter::Error),
            (Some(LevelFilter::WARN), log::LevelFilter::Warn),
            (Some(LevelFilter::INFO), log::LevelFilter::Info),
            (Some(LevelFilter::DEBUG), log::LevelFilter::Debug),
            (Some(LevelFilter::TRACE), log::LevelFilter::Trace),
            (None, log::LevelFilter::Trace),
        ];
        for (hint, expected) in cases {
            assert_eq!(log_level_filter(hint), expected, "{hint:?}");
        }
    }
}
