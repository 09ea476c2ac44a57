//! Recently finished traces, kept in fixed memory for the dashboard.
//!
//! Without a collector an operator still wants to see where one slow
//! request's time went. The gateway keeps the last [`RECENT`] recorded
//! traces, plus the [`SLOWEST`] slowest per route and backend, and serves
//! them at `/admin/traces`; the dashboard draws them as waterfalls. Export
//! over OTLP is independent of this: spans still go to the collector when
//! one is configured.
//!
//! Cheap when nobody looks: a request is *recorded* only when
//! * its W3C `traceparent` has the sampled flag set,
//! * a viewer polled `/admin/traces` (or opened the dashboard) within the
//!   last [`VIEWER_WINDOW_MS`], or
//! * it is the 1-in-N head sample (`[telemetry] trace_sample` in
//!   `gateway.toml`, default [`DEFAULT_SAMPLE_ONE_IN`]; `0` turns it off),
//!
//! and never more than [`MAX_PER_SECOND`] a second. The decision is made
//! once per request, by [`arm`], just before the server span is created;
//! the [`layer`] then enables that span and the spans below the ones it
//! recorded, nothing else. For every other request a span macro costs one
//! `enabled` call that says no, and no span is built (as with no layer at
//! all). So "slowest" means slowest among recorded traces.
//!
//! Fixed memory: at most [`MAX_SPANS`] spans and [`MAX_ATTR_BYTES`] of
//! attribute values per trace (each value cut at [`MAX_VALUE_BYTES`]).
//!
//! Trace ids are W3C ids: the client's `traceparent` id when it sent a valid
//! one, the id OpenTelemetry gave the trace when export is on (so the same
//! trace can be found in the collector), else a fresh random one.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde::Serialize;
use serde_json::Value;
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Metadata, Subscriber, span};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::propagation;

/// Recorded traces kept in arrival order.
pub const RECENT: usize = 256;
/// Slowest recorded traces kept per route and backend.
pub const SLOWEST: usize = 3;
/// Route and backend pairs whose slowest traces are kept.
pub const MAX_KEYS: usize = 64;
/// Spans kept per trace; more are counted as dropped.
pub const MAX_SPANS: usize = 64;
/// Attribute value bytes kept per trace.
pub const MAX_ATTR_BYTES: usize = 4096;
/// Bytes kept of one attribute value.
pub const MAX_VALUE_BYTES: usize = 200;
/// How long after a viewer's last poll every request is recorded.
pub const VIEWER_WINDOW_MS: u64 = 30_000;
/// Traces recorded per second at most, whatever asks for them.
pub const MAX_PER_SECOND: u64 = 200;
/// The default head sample: one request in this many.
pub const DEFAULT_SAMPLE_ONE_IN: u32 = crate::config::DEFAULT_TRACE_SAMPLE;
/// Spans the gateway starts with an explicit parent, off the request path
/// (no current span to inherit from): enabled while a trace is recording,
/// and kept only when their parent was recorded.
const DETACHED: &[&str] = &["shadow"];
/// The root span's field the server records when the answer is ready:
/// the root's duration ends there, not when the last clone of the span
/// (a shadow run's parent) is dropped.
const ANSWERED_FIELD: &str = "http.response.status_code";

/// Why a trace was recorded.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The client's `traceparent` had the sampled flag.
    Sampled,
    /// A viewer had the dashboard or `/admin/traces` open.
    Viewer,
    /// The 1-in-N head sample.
    HeadSample,
}

#[derive(Clone, Copy)]
struct Seed {
    trace_id: u128,
    reason: Reason,
}

thread_local! {
    /// Set by [`arm`] for the root span created next on this thread.
    static SEED: Cell<Option<Seed>> = const { Cell::new(None) };
    /// This thread's head-sample counter.
    static HEAD: Cell<u32> = const { Cell::new(0) };
}

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Milliseconds since the process first asked, never 0.
fn now_ms() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One span of a finished trace.
#[derive(Serialize, Debug, Clone)]
pub struct SpanOut {
    /// W3C span id, 16 hex digits.
    pub span_id: String,
    /// The parent's span id (none for the trace's root).
    pub parent_span_id: Option<String>,
    /// `request`, `spin`, `wasm.instantiate`, `native.compute`, ...
    pub name: &'static str,
    /// Start, milliseconds after the root span started.
    pub start_ms: f64,
    /// Open to closed, milliseconds.
    pub duration_ms: f64,
    /// The span's fields (values cut at [`MAX_VALUE_BYTES`]).
    pub attributes: BTreeMap<&'static str, Value>,
}

/// A finished trace.
#[derive(Serialize, Debug, Clone)]
pub struct Trace {
    /// W3C trace id, 32 hex digits.
    pub trace_id: String,
    /// Why it was recorded.
    pub recorded_because: Reason,
    /// Wall-clock start, Unix milliseconds.
    pub started_unix_ms: u64,
    /// The root span's duration (until the answer's status was recorded),
    /// milliseconds; a shadow run may go on after it.
    pub duration_ms: f64,
    /// The route (`unmatched` when none matched).
    pub route: String,
    /// The backend that answered.
    pub backend: String,
    /// The response status, when the root span recorded one.
    pub status: Option<i64>,
    /// Spans beyond [`MAX_SPANS`], not kept.
    pub dropped_spans: u32,
    /// Root first, then in creation order.
    pub spans: Vec<SpanOut>,
}

/// A span still open, in its trace's buffer.
struct Open {
    span_id: u64,
    parent: Option<usize>,
    name: &'static str,
    start: Instant,
    end: Option<Instant>,
    attrs: Vec<(&'static str, Value)>,
}

/// The spans of one trace being recorded, shared by its spans.
struct Building {
    trace_id: u128,
    reason: Reason,
    started: Instant,
    started_unix_ms: u64,
    spans: Vec<Open>,
    /// Recorded spans not closed yet; the trace is published at 0.
    open: usize,
    dropped: u32,
    attr_bytes_left: usize,
}

/// The extension a recorded span carries.
struct Recorded {
    trace: Arc<Mutex<Building>>,
    index: usize,
}

#[derive(Default)]
struct Slowest {
    route: String,
    backend: String,
    traces: Vec<Arc<Trace>>,
}

#[derive(Default)]
struct Kept {
    recent: VecDeque<Arc<Trace>>,
    slowest: Vec<Slowest>,
}

/// The recorded traces, and what decides whether a request is recorded.
pub struct TraceStore {
    installed: AtomicBool,
    sample_one_in: AtomicU32,
    viewer_until_ms: AtomicU64,
    /// `(second << 32) | traces recorded in it`.
    window: AtomicU64,
    /// Traces being recorded right now.
    live: AtomicUsize,
    recorded: AtomicU64,
    kept: Mutex<Kept>,
}

static STORE: LazyLock<TraceStore> = LazyLock::new(TraceStore::new);

/// The process's store (the tracing subscriber is process-wide too).
pub fn store() -> &'static TraceStore {
    &STORE
}

/// Decides whether the request with these headers is recorded; see the
/// module docs. Call it just before the request's server span is created,
/// and drop the guard right after.
pub fn arm(headers: &HeaderMap) -> Armed {
    store().arm(headers)
}

/// Keeps the decision of [`arm`] for the next root span on this thread.
#[must_use = "the decision holds only until the guard is dropped"]
pub struct Armed(bool);

impl Drop for Armed {
    fn drop(&mut self) {
        if self.0 {
            SEED.set(None);
        }
    }
}

impl Default for TraceStore {
    fn default() -> Self {
        Self::new()
    }
}

impl TraceStore {
    /// An empty store, not yet fed by any layer.
    pub fn new() -> TraceStore {
        TraceStore {
            installed: AtomicBool::new(false),
            sample_one_in: AtomicU32::new(DEFAULT_SAMPLE_ONE_IN),
            viewer_until_ms: AtomicU64::new(0),
            window: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            recorded: AtomicU64::new(0),
            kept: Mutex::new(Kept::default()),
        }
    }

    /// See [`arm`].
    pub fn arm(&self, headers: &HeaderMap) -> Armed {
        if !self.installed.load(Ordering::Relaxed) {
            return Armed(false);
        }
        let parent = headers
            .contains_key("traceparent")
            .then(|| propagation::remote_span_context(headers))
            .filter(|p| p.is_valid());
        let reason = if parent.as_ref().is_some_and(|p| p.is_sampled()) {
            Reason::Sampled
        } else if self.viewer_active() {
            Reason::Viewer
        } else if self.head_sample() {
            Reason::HeadSample
        } else {
            return Armed(false);
        };
        if !self.within_rate() {
            return Armed(false);
        }
        let trace_id = parent.map_or_else(fresh_trace_id, |p| {
            u128::from_be_bytes(p.trace_id().to_bytes())
        });
        SEED.set(Some(Seed { trace_id, reason }));
        Armed(true)
    }

    /// Sets the head sample: one request in `one_in` is recorded (`0`:
    /// none); `[telemetry] trace_sample`, applied at start and on reload.
    pub fn set_sample_one_in(&self, one_in: u32) {
        self.sample_one_in.store(one_in, Ordering::Relaxed);
    }

    /// A viewer is looking: record every request for the next
    /// [`VIEWER_WINDOW_MS`].
    pub fn viewer_seen(&self) {
        self.viewer_until_ms
            .store(now_ms() + VIEWER_WINDOW_MS, Ordering::Relaxed);
    }

    /// Whether a viewer polled within the window. No clock read when none
    /// ever did (or the last one left).
    fn viewer_active(&self) -> bool {
        let until = self.viewer_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if now_ms() < until {
            return true;
        }
        let _ =
            self.viewer_until_ms
                .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        false
    }

    fn head_sample(&self) -> bool {
        let one_in = self.sample_one_in.load(Ordering::Relaxed);
        if one_in == 0 {
            return false;
        }
        HEAD.with(|count| {
            let next = count.get() + 1;
            let hit = next >= one_in;
            count.set(if hit { 0 } else { next });
            hit
        })
    }

    fn within_rate(&self) -> bool {
        self.within_rate_at(now_ms() / 1000)
    }

    fn within_rate_at(&self, second: u64) -> bool {
        self.window
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                if w >> 32 != second {
                    Some((second << 32) | 1)
                } else if w & 0xffff_ffff < MAX_PER_SECOND {
                    Some(w + 1)
                } else {
                    None
                }
            })
            .is_ok()
    }

    fn publish(&self, trace: Trace) {
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.recorded.fetch_add(1, Ordering::Relaxed);
        let trace = Arc::new(trace);
        let mut kept = lock(&self.kept);
        if kept.recent.len() >= RECENT {
            kept.recent.pop_front();
        }
        kept.recent.push_back(trace.clone());
        kept.keep_if_slowest(trace);
    }

    /// The kept traces that match `query`, newest (or slowest) first.
    pub fn find(&self, query: &Query) -> Vec<Arc<Trace>> {
        let mut found: Vec<Arc<Trace>> = {
            let kept = lock(&self.kept);
            let mut all: Vec<Arc<Trace>> = kept.recent.iter().rev().cloned().collect();
            for t in kept.slowest.iter().flat_map(|s| &s.traces) {
                if !all.iter().any(|a| Arc::ptr_eq(a, t)) {
                    all.push(t.clone());
                }
            }
            all
        };
        found.retain(|t| query.matches(t));
        if query.slowest {
            found.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms));
        } else {
            found.sort_by_key(|t| std::cmp::Reverse(t.started_unix_ms));
        }
        found.truncate(query.limit);
        found
    }

    /// How traces are being recorded, for `/admin/traces`.
    pub fn status(&self) -> Value {
        serde_json::json!({
            "installed": self.installed.load(Ordering::Relaxed),
            "sample_one_in": self.sample_one_in.load(Ordering::Relaxed),
            "viewer_window_ms": VIEWER_WINDOW_MS,
            "max_per_second": MAX_PER_SECOND,
            "recorded_total": self.recorded.load(Ordering::Relaxed),
            "kept": {
                "recent": RECENT,
                "slowest_per_route_backend": SLOWEST,
                "max_spans_per_trace": MAX_SPANS,
            },
        })
    }
}

impl Kept {
    fn keep_if_slowest(&mut self, trace: Arc<Trace>) {
        let at = self
            .slowest
            .iter()
            .position(|s| s.route == trace.route && s.backend == trace.backend);
        let entry = match at {
            Some(i) => &mut self.slowest[i],
            None if self.slowest.len() < MAX_KEYS => {
                self.slowest.push(Slowest {
                    route: trace.route.clone(),
                    backend: trace.backend.clone(),
                    traces: Vec::with_capacity(SLOWEST),
                });
                let last = self.slowest.len() - 1;
                &mut self.slowest[last]
            }
            None => return,
        };
        if entry.traces.len() < SLOWEST {
            entry.traces.push(trace);
            return;
        }
        let fastest = entry
            .traces
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.duration_ms.total_cmp(&b.1.duration_ms));
        if let Some((i, kept)) = fastest
            && trace.duration_ms > kept.duration_ms
        {
            entry.traces[i] = trace;
        }
    }
}

fn fresh_trace_id() -> u128 {
    rand::random::<u128>().max(1)
}

fn fresh_span_id() -> u64 {
    rand::random::<u64>().max(1)
}

/// What `/admin/traces` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Only this route.
    pub route: Option<String>,
    /// Only this backend.
    pub backend: Option<String>,
    /// Only traces at least this long, milliseconds.
    pub min_ms: f64,
    /// Only this trace (32 lowercase hex digits).
    pub trace_id: Option<String>,
    /// Slowest first instead of newest first.
    pub slowest: bool,
    /// At most this many.
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            route: None,
            backend: None,
            min_ms: 0.0,
            trace_id: None,
            slowest: false,
            limit: 50,
        }
    }
}

/// The parameters `/admin/traces` takes.
pub const QUERY_PARAMS: &str = "route, backend, min_ms, trace_id, order, limit";

impl Query {
    /// Reads `/admin/traces` parameters; the error says what is wrong.
    pub fn parse(params: &BTreeMap<String, String>) -> Result<Query, String> {
        let mut query = Query::default();
        for (name, value) in params {
            match name.as_str() {
                "route" => query.route = non_empty(name, value)?,
                "backend" => query.backend = non_empty(name, value)?,
                "min_ms" => query.min_ms = parse_min_ms(value)?,
                "trace_id" => query.trace_id = Some(parse_trace_id(value)?),
                "order" => query.slowest = parse_order(value)?,
                "limit" => query.limit = parse_limit(value)?,
                other => {
                    return Err(format!(
                        "unknown parameter `{other}`; /admin/traces takes {QUERY_PARAMS}"
                    ));
                }
            }
        }
        Ok(query)
    }

    fn matches(&self, t: &Trace) -> bool {
        self.route.as_ref().is_none_or(|r| *r == t.route)
            && self.backend.as_ref().is_none_or(|b| *b == t.backend)
            && t.duration_ms >= self.min_ms
            && self.trace_id.as_ref().is_none_or(|id| *id == t.trace_id)
    }
}

fn non_empty(name: &str, value: &str) -> Result<Option<String>, String> {
    if value.is_empty() {
        return Err(format!(
            "`{name}` is empty; leave it out to match every {name}"
        ));
    }
    Ok(Some(value.to_string()))
}

fn parse_min_ms(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "`min_ms` must be a number of milliseconds, 0 or more; got `{value}`"
        )),
    }
}

fn parse_trace_id(value: &str) -> Result<String, String> {
    let id = value.to_ascii_lowercase();
    let hex = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex || id.bytes().all(|b| b == b'0') {
        return Err(format!(
            "`trace_id` must be a W3C trace id (32 hex digits, not all zero); got `{value}`"
        ));
    }
    Ok(id)
}

fn parse_order(value: &str) -> Result<bool, String> {
    match value {
        "recent" => Ok(false),
        "slowest" => Ok(true),
        _ => Err(format!(
            "`order` must be `recent` or `slowest`; got `{value}`"
        )),
    }
}

fn parse_limit(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (1..=RECENT).contains(&n) => Ok(n),
        _ => Err(format!(
            "`limit` must be a whole number from 1 to {RECENT}; got `{value}`"
        )),
    }
}

fn is_ours(target: &str) -> bool {
    target.starts_with("gateway") || target.starts_with("spin_host")
}

/// The layer that writes recorded spans into the [`TraceStore`].
///
/// A plain layer, not a per-layer filtered one: a per-layer filter can
/// only hide spans from its own layer, and the registry would still build
/// every span some other filter turned down. This layer turns down, for
/// every subscriber, the gateway's spans of requests it does not record,
/// unless the OpenTelemetry layer is installed (export on), which wants
/// them all: then it only picks which ones it keeps.
pub struct Recorder {
    store: &'static TraceStore,
    dispatch: OnceLock<WeakDispatch>,
    otel: bool,
    max_level: Option<LevelFilter>,
}

/// The recording layer, feeding [`store`] with the default head sample
/// until the config sets its own ([`TraceStore::set_sample_one_in`]):
/// `otel` whether the OpenTelemetry layer is installed too, `log_level`
/// the level logs are kept at (the layer must not lower the subscriber's
/// level hint below it).
pub fn layer(otel: bool, log_level: Option<LevelFilter>) -> Recorder {
    layer_for(store(), DEFAULT_SAMPLE_ONE_IN, otel, log_level)
}

/// [`layer`] feeding another store (tests).
pub fn layer_for(
    store: &'static TraceStore,
    sample_one_in: u32,
    otel: bool,
    log_level: Option<LevelFilter>,
) -> Recorder {
    store.sample_one_in.store(sample_one_in, Ordering::Relaxed);
    store.installed.store(true, Ordering::Relaxed);
    Recorder {
        store,
        dispatch: OnceLock::new(),
        otel,
        max_level: log_level.map(|level| level.max(LevelFilter::INFO)),
    }
}

impl Recorder {
    /// The trace and span ids OpenTelemetry gave this span, when its layer
    /// is installed (export on).
    fn otel_ids(&self, id: &span::Id) -> Option<(u128, u64)> {
        use opentelemetry::trace::TraceContextExt;
        let dispatch = self.dispatch.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| {
            (
                u128::from_be_bytes(sc.trace_id().to_bytes()),
                u64::from_be_bytes(sc.span_id().to_bytes()),
            )
        })
    }

    /// The trace a new span belongs to and its parent's index, or a new
    /// trace when [`arm`] chose this span as a root.
    fn trace_for<S>(
        &self,
        attrs: &span::Attributes<'_>,
        ctx: &Context<'_, S>,
    ) -> Option<(Arc<Mutex<Building>>, Option<usize>)>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let parent = if attrs.is_contextual() {
            ctx.lookup_current()
        } else {
            attrs.parent().and_then(|p| ctx.span(p))
        };
        let inherited = parent.and_then(|p| {
            p.extensions()
                .get::<Recorded>()
                .map(|r| (r.trace.clone(), r.index))
        });
        if let Some((trace, index)) = inherited {
            return Some((trace, Some(index)));
        }
        let seed = SEED.take()?;
        self.store.live.fetch_add(1, Ordering::Relaxed);
        let started_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        let building = Building {
            trace_id: seed.trace_id,
            reason: seed.reason,
            started: Instant::now(),
            started_unix_ms,
            spans: Vec::with_capacity(8),
            open: 0,
            dropped: 0,
            attr_bytes_left: MAX_ATTR_BYTES,
        };
        Some((Arc::new(Mutex::new(building)), None))
    }
}

impl<S> Layer<S> for Recorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, dispatch: &Dispatch) {
        let _ = self.dispatch.set(dispatch.downgrade());
    }

    /// Asked per span for the gateway's spans; no opinion on the rest.
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() && is_ours(meta.target()) {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }

    /// The span [`arm`] chose as a root, the spans below recorded ones and
    /// detached spans while a trace records; with export on, every span.
    fn enabled(&self, meta: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        if self.otel || !meta.is_span() || !is_ours(meta.target()) {
            return true;
        }
        if SEED.get().is_some() {
            return true;
        }
        if DETACHED.contains(&meta.name()) && self.store.live.load(Ordering::Relaxed) > 0 {
            return true;
        }
        ctx.lookup_current()
            .is_some_and(|span| span.extensions().get::<Recorded>().is_some())
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.max_level
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if !is_ours(attrs.metadata().target()) {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let Some((trace, parent)) = self.trace_for(attrs, &ctx) else {
            return;
        };
        let index = {
            let mut b = lock(&trace);
            if b.spans.len() >= MAX_SPANS {
                b.dropped += 1;
                return;
            }
            let mut open = Open {
                span_id: fresh_span_id(),
                parent,
                name: attrs.metadata().name(),
                start: if parent.is_none() {
                    b.started
                } else {
                    Instant::now()
                },
                end: None,
                attrs: Vec::new(),
            };
            attrs.record(&mut Fields {
                attrs: &mut open.attrs,
                budget: &mut b.attr_bytes_left,
            });
            b.spans.push(open);
            b.open += 1;
            b.spans.len() - 1
        };
        span.extensions_mut().insert(Recorded { trace, index });
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let extensions = span.extensions();
        let Some(recorded) = extensions.get::<Recorded>() else {
            return;
        };
        let mut b = lock(&recorded.trace);
        let Building {
            spans,
            attr_bytes_left,
            ..
        } = &mut *b;
        if let Some(open) = spans.get_mut(recorded.index) {
            values.record(&mut Fields {
                attrs: &mut open.attrs,
                budget: attr_bytes_left,
            });
            // The root ends when the server records its answer's status: a
            // shadow run holds the span open after the client has its answer.
            if recorded.index == 0
                && open.end.is_none()
                && open.attrs.iter().any(|(k, _)| *k == ANSWERED_FIELD)
            {
                open.end = Some(Instant::now());
            }
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(recorded) = span.extensions_mut().remove::<Recorded>() else {
            return;
        };
        drop(span);
        let ended = Instant::now();
        // Read before locking the trace: it takes the span's extensions.
        let otel = self.otel_ids(&id);
        let finished = {
            let mut b = lock(&recorded.trace);
            if let Some((trace_id, span_id)) = otel {
                if recorded.index == 0 {
                    b.trace_id = trace_id;
                }
                if let Some(open) = b.spans.get_mut(recorded.index) {
                    open.span_id = span_id;
                }
            }
            if let Some(open) = b.spans.get_mut(recorded.index) {
                open.end.get_or_insert(ended);
            }
            b.open -= 1;
            (b.open == 0).then(|| finish(&mut b))
        };
        if let Some(trace) = finished {
            self.store.publish(trace);
        }
    }
}

/// The finished form of a trace whose spans have all closed.
fn finish(b: &mut Building) -> Trace {
    let spans = std::mem::take(&mut b.spans);
    let root_attr = |name: &str| {
        spans
            .first()
            .and_then(|root| root.attrs.iter().find(|(k, _)| *k == name))
            .map(|(_, v)| v.clone())
    };
    let text = |name: &str, default: &str| {
        root_attr(name)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| default.to_string())
    };
    let route = text("gateway.route", "unmatched");
    let backend = text("gateway.backend", "gateway");
    let status = root_attr("http.response.status_code").and_then(|v| v.as_i64());
    let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1000.0;
    let ids: Vec<u64> = spans.iter().map(|s| s.span_id).collect();
    let duration_ms = spans
        .first()
        .map_or(0.0, |root| ms(root.start, root.end.unwrap_or(root.start)));
    let out = spans
        .into_iter()
        .map(|s| SpanOut {
            span_id: format!("{:016x}", s.span_id),
            parent_span_id: s
                .parent
                .and_then(|i| ids.get(i))
                .map(|id| format!("{id:016x}")),
            name: s.name,
            start_ms: ms(b.started, s.start),
            duration_ms: ms(s.start, s.end.unwrap_or(s.start)),
            attributes: s.attrs.into_iter().collect(),
        })
        .collect();
    Trace {
        trace_id: format!("{:032x}", b.trace_id),
        recorded_because: b.reason,
        started_unix_ms: b.started_unix_ms,
        duration_ms,
        route,
        backend,
        status,
        dropped_spans: b.dropped,
        spans: out,
    }
}

/// Writes span fields into a span's attributes, within the trace's budget.
struct Fields<'a> {
    attrs: &'a mut Vec<(&'static str, Value)>,
    budget: &'a mut usize,
}

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value, bytes: usize) {
        let name = field.name();
        if let Some(slot) = self.attrs.iter_mut().find(|(k, _)| *k == name) {
            slot.1 = value;
            return;
        }
        if *self.budget < bytes {
            return;
        }
        *self.budget -= bytes;
        self.attrs.push((name, value));
    }

    fn put_text(&mut self, field: &Field, mut text: String) {
        if text.len() > MAX_VALUE_BYTES {
            let mut end = MAX_VALUE_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        let bytes = text.len();
        self.put(field, Value::String(text), bytes);
    }
}

impl Visit for Fields<'_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value), 8);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value), 8);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value), 8);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value), 1);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let end = value.len().min(MAX_VALUE_BYTES + 4);
        let end = (0..=end)
            .rev()
            .find(|i| value.is_char_boundary(*i))
            .unwrap_or(0);
        self.put_text(field, value[..end].to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put_text(field, format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests;
