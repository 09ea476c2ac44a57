//! The gateway's metrics, one instrument per question users ask:
//! how long does each route take on each backend, how often does it fall
//! back and why, what does instantiating a component cost, how often do the
//! Wasm and native answers disagree.
//!
//! Instruments are OpenTelemetry's; every gateway has its own meter
//! provider with two readers: a Prometheus registry (rendered at the admin
//! listener's `/metrics`) and, when configured, an OTLP exporter.

use std::time::Duration;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};

use http::StatusCode;
use opentelemetry::metrics::{Counter, Gauge, Histogram, MeterProvider as _};
use opentelemetry::{KeyValue, StringValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

use super::OtlpTarget;
use super::size_class::SizeClass;
use crate::backend::{Backend, CircuitState};
use crate::fallback::learn::Crossover;
use spin_host::PoolStats;

/// Latency buckets in seconds: 100 µs to 30 s, dense where Wasm and native
/// differ (sub-millisecond to tens of milliseconds).
const LATENCY_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
    0.5, 1.0, 2.5, 10.0, 30.0,
];

/// Buckets of `gateway.shadow.latency_ratio` (Wasm / native duration of
/// one request): fine around 1 (as fast), coarse towards the extremes.
pub const RATIO_BUCKETS: [f64; 13] = [
    0.125, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0,
];

/// The instruments, and the registry `/metrics` renders.
pub struct Metrics {
    names: Names,
    /// The embedded host's instance-pool gauge, once a source is attached.
    pool: std::sync::OnceLock<opentelemetry::metrics::ObservableGauge<i64>>,
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    request_duration: Histogram<f64>,
    instantiate_duration: Histogram<f64>,
    native_queue: Histogram<f64>,
    native_compute: Histogram<f64>,
    shadow_duration: Histogram<f64>,
    shadow_ratio: Histogram<f64>,
    fallbacks: Counter<u64>,
    shed: Counter<u64>,
    circuit_transitions: Counter<u64>,
    shadow_comparisons: Counter<u64>,
    circuit_state: Gauge<i64>,
    learned_estimate: Gauge<f64>,
    learned_decisions: Counter<u64>,
    learned_cpu: Gauge<f64>,
    learned_crossover: Gauge<f64>,
    upstream_attempts: Counter<u64>,
    upstream_ejections: Counter<u64>,
    upstream_state: Gauge<i64>,
    /// Replica names given their own `upstream` label so far.
    upstreams: std::sync::Mutex<std::collections::HashSet<Box<str>>>,
    in_flight: Arc<InFlightCounts>,
    _in_flight_gauge: opentelemetry::metrics::ObservableUpDownCounter<i64>,
}

impl Metrics {
    /// Instruments exported to Prometheus, and over OTLP to `otlp`.
    pub fn new(otlp: Option<&OtlpTarget>) -> anyhow::Result<Metrics> {
        let registry = prometheus::Registry::new();
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build()?;
        let mut builder = SdkMeterProvider::builder()
            .with_resource(super::resource())
            .with_reader(prometheus);
        if let Some(target) = otlp {
            let exporter = match target.protocol {
                Protocol::Grpc => opentelemetry_otlp::MetricExporter::builder()
                    .with_tonic()
                    .with_endpoint(target.endpoint.clone())
                    .build()?,
                _ => opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(format!(
                        "{}/v1/metrics",
                        target.endpoint.trim_end_matches('/')
                    ))
                    .build()?,
            };
            builder = builder.with_reader(
                PeriodicReader::builder(exporter)
                    .with_interval(Duration::from_secs(10))
                    .build(),
            );
        }
        let provider = builder.build();
        let meter = provider.meter("gateway");
        meter
            .u64_observable_counter("gateway.telemetry.spans")
            .with_description("Spans exported over OTLP (result=exported) or lost to a failed export (result=failed)")
            .with_callback(|observer| {
                use std::sync::atomic::Ordering;
                observer.observe(
                    super::SPANS_EXPORTED.load(Ordering::Relaxed),
                    &[KeyValue::new("result", "exported")],
                );
                observer.observe(
                    super::SPANS_FAILED.load(Ordering::Relaxed),
                    &[KeyValue::new("result", "failed")],
                );
            })
            .build();
        let in_flight = Arc::new(InFlightCounts::default());
        let seconds = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build()
        };
        Ok(Metrics {
            names: Names::default(),
            pool: std::sync::OnceLock::new(),
            request_duration: seconds(
                "gateway.request.duration",
                "Time to answer a public request, by route, backend, request size class and status",
            ),
            instantiate_duration: seconds(
                "gateway.wasm.instantiate.duration",
                "Time to create the fresh component instance for a request (embedded host)",
            ),
            native_queue: seconds(
                "gateway.native.queue.duration",
                "Time a native call waited for a worker",
            ),
            native_compute: seconds(
                "gateway.native.compute.duration",
                "Time a native call computed",
            ),
            shadow_duration: seconds(
                "gateway.shadow.duration",
                "Duration of the shadow run on the other backend",
            ),
            shadow_ratio: meter
                .f64_histogram("gateway.shadow.latency_ratio")
                // Dimensionless. Not unit "1": the Prometheus exporter would
                // append `_ratio` to the name a second time.
                .with_description(
                    "Wasm duration / native duration of the same request (a shadow pair), \
                     by route and request size class",
                )
                .with_boundaries(RATIO_BUCKETS.to_vec())
                .build(),
            fallbacks: meter
                .u64_counter("gateway.fallbacks")
                .with_description("Requests answered by native instead of Spin, by reason")
                .build(),
            shed: meter
                .u64_counter("gateway.shed")
                .with_description("Requests refused with 503 by a route's concurrency limit")
                .build(),
            circuit_transitions: meter
                .u64_counter("gateway.circuit.transitions")
                .with_description("Circuit breaker state changes")
                .build(),
            shadow_comparisons: meter
                .u64_counter("gateway.shadow.comparisons")
                .with_description(
                    "Shadow comparisons of Wasm and native answers: match, mismatch, dropped \
                     (queue full), skipped_busy (not run: the gateway was busy)",
                )
                .build(),
            circuit_state: meter
                .i64_gauge("gateway.circuit.state")
                .with_description("Circuit breaker state: 0 closed, 1 open, 2 half-open")
                .build(),
            learned_estimate: meter
                .f64_gauge("gateway.learned.estimate")
                .with_unit("s")
                .with_description(
                    "Learned routing: each path's Peak-EWMA latency estimate, by route, \
                     request size class and path (wasm, native)",
                )
                .build(),
            learned_cpu: meter
                .f64_gauge("gateway.learned.cpu")
                .with_unit("s")
                .with_description(
                    "Learned routing: the gateway's CPU time per request on each path \
                     (all threads), by route, request size class and path (wasm, native)",
                )
                .build(),
            learned_crossover: meter
                .f64_gauge("gateway.learned.crossover")
                .with_unit("By")
                .with_description(
                    "Learned routing: the body size where the learned choice changes path, by \
                     route and native (above: native serves larger bodies; below: smaller); \
                     NaN (left out of /metrics) off the crossover's direction, and on both \
                     when one path serves every class or the choice changes more than once",
                )
                .build(),
            learned_decisions: meter
                .u64_counter("gateway.learned.decisions")
                .with_description(
                    "Learned routing: requests by route, size class, path given and why \
                     (learned, explore, circuit-open)",
                )
                .build(),
            upstream_attempts: meter
                .u64_counter("gateway.upstream.attempts")
                .with_description(
                    "Attempts on each external Spin replica, by outcome: ok, 5xx, connect-error, io",
                )
                .build(),
            upstream_ejections: meter
                .u64_counter("gateway.upstream.ejections")
                .with_description("Spin replicas ejected by outlier detection")
                .build(),
            upstream_state: meter
                .i64_gauge("gateway.upstream.ejected")
                .with_description("Whether a Spin replica is ejected: 0 in, 1 ejected")
                .build(),
            upstreams: std::sync::Mutex::new(std::collections::HashSet::new()),
            _in_flight_gauge: {
                let counts = in_flight.clone();
                meter
                    .i64_observable_up_down_counter("gateway.in_flight.requests")
                    .with_description("Requests in flight, by backend")
                    .with_callback(move |observer| counts.observe(observer))
                    .build()
            },
            in_flight,
            provider,
            registry,
        })
    }

    /// The Prometheus text exposition of every instrument.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# metrics encoding failed: {e}\n"))
    }

    /// One answered public request, whose body was in `size_class`.
    pub fn request(
        &self,
        route: &str,
        backend: &'static str,
        size_class: SizeClass,
        method: &http::Method,
        status: StatusCode,
        took: Duration,
    ) {
        let method = match *method {
            http::Method::GET => StringValue::from("GET"),
            http::Method::POST => StringValue::from("POST"),
            http::Method::PUT => StringValue::from("PUT"),
            http::Method::PATCH => StringValue::from("PATCH"),
            http::Method::DELETE => StringValue::from("DELETE"),
            http::Method::HEAD => StringValue::from("HEAD"),
            http::Method::OPTIONS => StringValue::from("OPTIONS"),
            // Any other token is the client's choice: recording it as is
            // would let a client mint series (and memory) at will. OTel's
            // semantic conventions name the bucket `_OTHER`.
            _ => StringValue::from("_OTHER"),
        };
        self.request_duration.record(
            took.as_secs_f64(),
            &[
                KeyValue::new("route", self.names.get(route)),
                KeyValue::new("backend", backend),
                KeyValue::new("size_class", size_class.as_str()),
                KeyValue::new("method", method),
                KeyValue::new("status", self.names.get(status.as_str())),
            ],
        );
    }

    /// Instantiation time of an embedded component.
    pub fn instantiate(&self, route: &str, component: &str, took: Duration) {
        self.instantiate_duration.record(
            took.as_secs_f64(),
            &[
                KeyValue::new("route", self.names.get(route)),
                KeyValue::new("component", self.names.get(component)),
            ],
        );
    }

    /// Queue and compute time of a native call.
    pub fn native(&self, route: &str, queued: Duration, compute: Duration) {
        let attrs = [KeyValue::new("route", self.names.get(route))];
        self.native_queue.record(queued.as_secs_f64(), &attrs);
        self.native_compute.record(compute.as_secs_f64(), &attrs);
    }

    /// A fallback to native (`reason` is a trigger or `size`).
    pub fn fallback(&self, route: &str, reason: &str) {
        self.fallbacks.add(
            1,
            &[
                KeyValue::new("route", self.names.get(route)),
                KeyValue::new("reason", self.names.get(reason)),
            ],
        );
    }

    /// A request shed by the concurrency limit.
    pub fn shed(&self, route: &str) {
        self.shed
            .add(1, &[KeyValue::new("route", self.names.get(route))]);
    }

    /// The breaker's state now (also set at start for every route).
    pub fn circuit_state(&self, route: &str, state: CircuitState) {
        let value = match state {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        };
        self.circuit_state
            .record(value, &[KeyValue::new("route", self.names.get(route))]);
    }

    /// A breaker state change.
    pub fn circuit_transition(&self, route: &str, from: CircuitState, to: CircuitState) {
        self.circuit_transitions.add(
            1,
            &[
                KeyValue::new("route", self.names.get(route)),
                KeyValue::new("from", from.as_str()),
                KeyValue::new("to", to.as_str()),
            ],
        );
        self.circuit_state(route, to);
    }

    /// A learned route sent a request of `size_class` to `path` because
    /// of `why`.
    pub fn learned_decision(
        &self,
        route: &str,
        size_class: SizeClass,
        path: &'static str,
        why: &'static str,
    ) {
        self.learned_decisions.add(
            1,
            &[
                KeyValue::new("route", self.names.get(route)),
                KeyValue::new("size_class", size_class.as_str()),
                KeyValue::new("path", path),
                KeyValue::new("decision", why),
            ],
        );
    }

    /// A learned route's latency estimate for `path` in `size_class`,
    /// seconds.
    pub fn learned_estimate(
        &self,
        route: &str,
        size_class: SizeClass,
        path: &'static str,
        seconds: f64,
    ) {
        self.learned_estimate
            .record(seconds, &self.class_path(route, size_class, path));
    }

    /// The attributes of a learned route's per-class, per-path figure.
    fn class_path(&self, route: &str, size_class: SizeClass, path: &'static str) -> [KeyValue; 3] {
        [
            KeyValue::new("route", self.names.get(route)),
            KeyValue::new("size_class", size_class.as_str()),
            KeyValue::new("path", path),
        ]
    }

    /// A learned route's CPU time per request for `path` in `size_class`,
    /// seconds.
    pub fn learned_cpu(
        &self,
        route: &str,
        size_class: SizeClass,
        path: &'static str,
        seconds: f64,
    ) {
        self.learned_cpu
            .record(seconds, &self.class_path(route, size_class, path));
    }

    /// A learned route's crossover now: its bytes on the series of its
    /// direction, NaN on the other (on both when there is none), so each
    /// route keeps two series whatever it learns.
    pub fn learned_crossover(&self, route: &str, crossover: Option<&Crossover>) {
        let route = self.names.get(route);
        for native in ["above", "below"] {
            let bytes = crossover
                .filter(|c| c.native == native)
                .map_or(f64::NAN, |c| c.bytes as f64);
            self.learned_crossover.record(
                bytes,
                &[
                    KeyValue::new("route", route.clone()),
                    KeyValue::new("native", native),
                ],
            );
        }
    }

    /// A shadow comparison outcome: `match`, `mismatch`, `dropped` or
    /// `skipped_busy`.
    pub fn shadow(&self, route: &str, result: &'static str) {
        self.shadow_comparisons.add(
            1,
            &[
                KeyValue::new("route", self.names.get(route)),
                KeyValue::new("result", result),
            ],
        );
    }

    /// Duration of a shadow run on `backend`.
    pub fn shadow_duration(&self, route: &str, backend: &str, took: Duration) {
        self.shadow_duration.record(
            took.as_secs_f64(),
            &[
                KeyValue::new("route", self.names.get(route)),
                KeyValue::new("backend", self.names.get(backend)),
            ],
        );
    }

    /// Wasm / native duration of one request run on both paths.
    pub fn shadow_ratio(&self, route: &str, size_class: SizeClass, ratio: f64) {
        self.shadow_ratio.record(
            ratio,
            &[
                KeyValue::new("route", self.names.get(route)),
                KeyValue::new("size_class", size_class.as_str()),
            ],
        );
    }

    /// The `upstream` label of a replica: its `host:port` for the first
    /// [`MAX_UPSTREAMS`](crate::config::MAX_UPSTREAMS) replicas ever seen,
    /// `_other` beyond, so DNS churn cannot mint series without end.
    fn upstream_label(&self, upstream: &str) -> StringValue {
        let mut seen = self
            .upstreams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(upstream) || seen.len() < crate::config::MAX_UPSTREAMS {
            seen.insert(upstream.into());
            self.names.get(upstream)
        } else {
            StringValue::from("_other")
        }
    }

    /// One attempt on a Spin replica and its `outcome`.
    pub fn upstream_attempt(&self, upstream: &str, outcome: &'static str) {
        self.upstream_attempts.add(
            1,
            &[
                KeyValue::new("upstream", self.upstream_label(upstream)),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    /// A replica's ejection state (counted as an ejection when `ejected`).
    pub fn upstream_ejected(&self, upstream: &str, ejected: bool) {
        let label = [KeyValue::new("upstream", self.upstream_label(upstream))];
        if ejected {
            self.upstream_ejections.add(1, &label);
        }
        self.upstream_state.record(i64::from(ejected), &label);
    }

    /// Requests inside a backend call right now, over every backend (the
    /// sum of `gateway.in_flight.requests`).
    pub fn backend_calls_in_flight(&self) -> i64 {
        self.in_flight.total()
    }

    /// Counts a request in flight on `backend` until the guard drops. An
    /// atomic, read when metrics are collected: a level needs no
    /// measurement per request.
    pub fn in_flight(&self, backend: Backend) -> InFlight<'_> {
        let count = self.in_flight.count(backend);
        if let Some(count) = count {
            count.fetch_add(1, Ordering::Relaxed);
        }
        InFlight { count }
    }

    /// Reports the embedded host's instance slots as
    /// `gateway.wasm.instances{state="busy"|"idle"|"capacity"}`, read from
    /// `source` at every collection (a Prometheus scrape, an OTLP export):
    /// busy near capacity means `[spin] max_instances` is what sheds. No
    /// series while `source` gives `None` (an external Spin). Only the
    /// first source attached counts.
    pub fn watch_pool(&self, source: impl Fn() -> Option<PoolStats> + Send + Sync + 'static) {
        self.pool.get_or_init(|| {
            self.provider
                .meter("gateway")
                .i64_observable_gauge("gateway.wasm.instances")
                .with_description(
                    "Embedded host instance slots: busy (running a request), idle (warm, kept \
                     for reuse) and capacity ([spin] max_instances)",
                )
                .with_callback(move |observer| {
                    if let Some(stats) = source() {
                        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                        for (state, n) in [
                            ("busy", stats.busy),
                            ("idle", stats.idle),
                            ("capacity", stats.capacity),
                        ] {
                            observer.observe(count(n), &[KeyValue::new("state", state)]);
                        }
                    }
                })
                .build()
        });
    }

    /// Flushes OTLP metrics (at shutdown).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("flushing metrics failed: {e}");
        }
    }
}

/// Requests in flight per backend. A backend's series appears once it has
/// served a request.
#[derive(Default)]
struct InFlightCounts {
    embedded: AtomicI64,
    external: AtomicI64,
    native: AtomicI64,
    /// Backends that have been counted (bit per backend).
    seen: AtomicU8,
}

impl InFlightCounts {
    const BACKENDS: [Backend; 3] = [
        Backend::SpinEmbedded,
        Backend::SpinExternal,
        Backend::Native,
    ];

    /// The backend's slot; the gateway itself is not a backend to count.
    fn index(backend: Backend) -> Option<usize> {
        match backend {
            Backend::SpinEmbedded => Some(0),
            Backend::SpinExternal => Some(1),
            Backend::Native => Some(2),
            Backend::Gateway => None,
        }
    }

    fn slot(&self, index: usize) -> &AtomicI64 {
        match index {
            0 => &self.embedded,
            1 => &self.external,
            _ => &self.native,
        }
    }

    fn count(&self, backend: Backend) -> Option<&AtomicI64> {
        let index = Self::index(backend)?;
        self.seen.fetch_or(1 << index, Ordering::Relaxed);
        Some(self.slot(index))
    }

    fn total(&self) -> i64 {
        (0..Self::BACKENDS.len())
            .map(|index| self.slot(index).load(Ordering::Relaxed))
            .sum()
    }

    fn observe(&self, observer: &dyn opentelemetry::metrics::AsyncInstrument<i64>) {
        let seen = self.seen.load(Ordering::Relaxed);
        for (index, backend) in Self::BACKENDS.iter().enumerate() {
            if seen & (1 << index) != 0 {
                let value = self.slot(index).load(Ordering::Relaxed);
                observer.observe(value, &[KeyValue::new("backend", backend.as_str())]);
            }
        }
    }
}

/// Decrements the in-flight count when dropped.
pub struct InFlight<'a> {
    count: Option<&'a AtomicI64>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(count) = self.count {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Attribute values (route names, components, statuses, reasons) recorded
/// on every request: each distinct string is stored once, for the life of
/// the process, and handed out as a `&'static str`, so recording copies
/// nothing and touches no shared reference count or lock (two cores
/// bumping one counter on every request was measurable). Only names from
/// the config, status codes and the gateway's own words come here, never a
/// client's string, so the set stays small.
#[derive(Default)]
struct Names(arc_swap::ArcSwap<NameMap>);

/// Keys are the gateway's own strings, never a client's, so a fast
/// non-keyed hash is safe here.
type NameMap = HashMap<Box<str>, &'static str, foldhash::fast::FixedState>;

impl Names {
    fn get(&self, name: &str) -> StringValue {
        if let Some(value) = self.0.load().get(name) {
            return StringValue::from(*value);
        }
        let mut interned = None;
        self.0.rcu(|names| {
            let mut names = NameMap::clone(names);
            let value = *names
                .entry(name.into())
                .or_insert_with(|| *interned.get_or_insert_with(|| leak(name)));
            interned = Some(value);
            names
        });
        StringValue::from(interned.unwrap_or("unknown"))
    }
}

/// Stores `name` for the rest of the process (see [`Names`]).
fn leak(name: &str) -> &'static str {
    Box::leak(Box::<str>::from(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_own_method_is_recorded_as_other() {
        let metrics = Metrics::new(None).expect("metrics");
        let took = Duration::from_millis(3);
        for method in ["GET", "BREW", "X-MINT-A-SERIES-1", "X-MINT-A-SERIES-2"] {
            let method = http::Method::from_bytes(method.as_bytes()).expect("a valid token");
            metrics.request(
                "hello",
                "spin-embedded",
                SizeClass::Le1KiB,
                &method,
                StatusCode::OK,
                took,
            );
        }
        let text = metrics.render();
        let series = |method: &str| {
            text.lines()
                .filter(|l| l.starts_with("gateway_request_duration_seconds_count"))
                .filter(|l| l.contains(&format!("method=\"{method}\"")))
                .map(|l| l.rsplit(' ').next().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(series("GET"), ["1"], "{text}");
        assert_eq!(series("_OTHER"), ["3"], "{text}");
        assert!(!text.contains("BREW") && !text.contains("MINT"), "{text}");
    }

    #[test]
    fn the_upstream_label_is_bounded() {
        let metrics = Metrics::new(None).expect("metrics");
        for i in 0..crate::config::MAX_UPSTREAMS + 10 {
            metrics.upstream_attempt(&format!("10.0.0.{i}:80"), "ok");
        }
        metrics.upstream_attempt("10.0.0.0:80", "5xx");
        let text = metrics.render();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("gateway_upstream_attempts_total{"))
            .collect();
        // 64 own labels (one with two outcomes) and one `_other`.
        assert_eq!(series.len(), crate::config::MAX_UPSTREAMS + 2, "{text}");
        assert!(
            series
                .iter()
                .any(|l| l.contains("upstream=\"_other\"") && l.ends_with(" 10")),
            "{text}"
        );
    }

    #[test]
    fn names_are_stored_once_and_read_back_unchanged() {
        let names = Names::default();
        let first = names.get("validate");
        let again = names.get("validate");
        assert_eq!(first.as_str(), "validate");
        // The same stored string, not a second copy.
        assert!(std::ptr::eq(first.as_str(), again.as_str()));
        assert_eq!(names.get("list").as_str(), "list");
        assert_eq!(names.0.load().len(), 2);
    }

    #[test]
    fn durations_carry_the_size_class_and_ratios_their_own_buckets() {
        let metrics = Metrics::new(None).expect("metrics");
        let took = Duration::from_millis(3);
        for class in [SizeClass::Le1KiB, SizeClass::Le4MiB, SizeClass::Le4MiB] {
            metrics.request(
                "validate",
                "native",
                class,
                &http::Method::POST,
                StatusCode::OK,
                took,
            );
        }
        metrics.shadow_ratio("validate", SizeClass::Le16KiB, 1.1);
        let text = metrics.render();
        let count = |family: &str, class: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("{family}{{")))
                .find(|l| l.contains(&format!("size_class=\"{class}\"")))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_string)
        };
        let durations = "gateway_request_duration_seconds_count";
        assert_eq!(count(durations, "le_1KiB").as_deref(), Some("1"), "{text}");
        assert_eq!(count(durations, "le_4MiB").as_deref(), Some("2"), "{text}");
        let ratios = "gateway_shadow_latency_ratio_count";
        assert_eq!(count(ratios, "le_16KiB").as_deref(), Some("1"), "{text}");
        // 1.1 falls in (1, 1.25].
        let bucket = |le: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("gateway_shadow_latency_ratio_bucket{")
                        && l.contains(&format!("le=\"{le}\""))
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_string)
        };
        assert_eq!(bucket("1").as_deref(), Some("0"), "{text}");
        assert_eq!(bucket("1.25").as_deref(), Some("1"), "{text}");
        assert_eq!(bucket("0.125").as_deref(), Some("0"), "{text}");
        assert_eq!(bucket("16").as_deref(), Some("1"), "{text}");
    }
}
