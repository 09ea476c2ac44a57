//! Shadow comparison: run a sampled request on the other path too.
//!
//! For a route with both a Spin and a native backend, `shadow.sample` of
//! its requests are replayed on the backend that did *not* answer, after
//! the client has its answer and off the request path. The two answers
//! (status + body bytes) and durations are compared and recorded on a
//! `shadow` span (`gateway.shadow.match`), in metrics and in the dashboard;
//! a mismatch logs the first bytes of both. The queue is bounded, in jobs
//! and in the bytes they hold (request and answer bodies): when either is
//! full the sample is dropped (and counted), so a shadow never delays or
//! fails a real request and never holds more than [`MAX_BUFFERED_BYTES`].
//!
//! Each pair also times one request on both paths: the Wasm/native
//! duration ratio, per request-size class, is the like-for-like answer to
//! "how much slower is Wasm for my requests" (`gateway.shadow.latency_ratio`
//! and `/admin/stats`). A replay costs a core, so none is taken while the
//! gateway is busy (see [`Shadow::sample`]): it never competes with real
//! traffic, and the skipped samples are counted as `skipped_busy`.
//!
//! Sampling is a layer of the route's stack ([`layer`]); this module is
//! the queue and the worker.

pub mod layer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::backend::{Backend, RequestBody, clone_parts};
use crate::config::RouteConfig;
use crate::fallback::learn::{Learned, Path};
use crate::native::{Native, NativeTiming};
use crate::spin::SpinBackend;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::size_class::SizeClass;
use crate::telemetry::stats::Stats;

/// Samples waiting for a shadow run; beyond this, new samples are dropped.
const QUEUE: usize = 64;
/// Bytes of bodies (request + answer) that queued and running samples may
/// hold together; a sample that would exceed it is dropped.
pub const MAX_BUFFERED_BYTES: usize = 32 << 20;
/// Bytes of each answer logged on a mismatch.
const LOGGED_BYTES: usize = 200;

/// Where a route's samples are replayed: the route and both its backends.
pub struct Target {
    /// The route's config.
    pub route: Arc<RouteConfig>,
    /// The Spin backend.
    pub spin: SpinBackend,
    /// The native handlers.
    pub native: Native,
    /// The route's learned estimates, which the shadow runs keep measuring
    /// (`native_above_bytes = "learn"`).
    pub learned: Option<Arc<Learned>>,
}

/// One sampled request and the answer the client got.
pub struct Job {
    /// The route and its backends.
    pub target: Arc<Target>,
    /// The request head.
    pub parts: http::request::Parts,
    /// The request body.
    pub body: Bytes,
    /// The Spin path the request used.
    pub spin_path: Option<String>,
    /// Who asked.
    pub client: SocketAddr,
    /// The backend that answered the client.
    pub primary_backend: Backend,
    /// Its status.
    pub primary_status: u16,
    /// Its body.
    pub primary_body: Bytes,
    /// How long it took.
    pub primary_took: Duration,
    /// The request's span, parent of the shadow span.
    pub parent: tracing::Span,
}

/// The bounded queue in front of the shadow worker.
#[derive(Clone)]
pub struct Shadow {
    tx: mpsc::Sender<Job>,
    /// Body bytes held by queued and running samples.
    buffered: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    stats: Arc<Stats>,
    /// Backend calls in flight from which the gateway counts as busy: the
    /// CPU cores, or half of `[server] max_in_flight` if lower (read once:
    /// `[server]` changes need a restart).
    busy_at: usize,
}

impl Job {
    /// Bytes this sample keeps alive until it has run.
    fn weight(&self) -> usize {
        self.body.len() + self.primary_body.len()
    }
}

impl Shadow {
    /// Starts the worker on the current Tokio runtime.
    pub fn start(metrics: Arc<Metrics>, stats: Arc<Stats>, max_in_flight: usize) -> Shadow {
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
        let (m, s) = (metrics.clone(), stats.clone());
        let buffered = Arc::new(AtomicUsize::new(0));
        let held = buffered.clone();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let weight = job.weight();
                run(job, &m, &s).await;
                held.fetch_sub(weight, Ordering::AcqRel);
            }
        });
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Shadow {
            tx,
            buffered,
            metrics,
            stats,
            busy_at: cores.min(max_in_flight / 2).max(1),
        }
    }

    /// Whether to replay this request of `route`: drawn at the route's
    /// `shadow.sample` rate, then skipped (and counted as `skipped_busy`)
    /// while the gateway is busy, which is when the requests inside a
    /// backend call reach the number of cores or half of `[server]
    /// max_in_flight`, whichever is lower: a replay then would compete with
    /// real traffic for CPU. Decided before the request is served, so a
    /// skipped sample costs no copy of its answer.
    pub fn sample(&self, route: &RouteConfig) -> bool {
        if route.shadow_sample <= 0.0 || rand::random::<f64>() >= route.shadow_sample {
            return false;
        }
        let in_flight = usize::try_from(self.metrics.backend_calls_in_flight()).unwrap_or(0);
        if in_flight >= self.busy_at {
            self.metrics.shadow(&route.name, "skipped_busy");
            self.stats.shadow(&route.name, "skipped_busy");
            return false;
        }
        true
    }

    /// Queues a sample, or drops (and counts) it when the queue is full
    /// or its bodies would take the buffered bytes past the limit.
    pub fn submit(&self, job: Job) {
        let route = job.target.route.name.clone();
        let weight = job.weight();
        let reserved = self
            .buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(weight)
                    .filter(|total| *total <= MAX_BUFFERED_BYTES)
            })
            .is_ok();
        if !reserved {
            self.count_dropped(&route);
            return;
        }
        if self.tx.try_send(job).is_err() {
            self.buffered.fetch_sub(weight, Ordering::AcqRel);
            self.count_dropped(&route);
        }
    }

    /// A sample not run: counted in metrics and on the dashboard.
    fn count_dropped(&self, route: &str) {
        self.metrics.shadow(route, "dropped");
        self.stats.shadow(route, "dropped");
    }

    /// Body bytes held by samples right now (for tests and health output).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered.load(Ordering::Acquire)
    }
}

async fn run(job: Job, metrics: &Metrics, stats: &Stats) {
    let route = &*job.target.route;
    // The other path: Spin when native answered, native when Spin did.
    let shadow_backend = if job.primary_backend == Backend::Native {
        job.target.spin.backend()
    } else {
        Backend::Native
    };
    let class = SizeClass::of(job.body.len() as u64);
    let span = tracing::info_span!(
        parent: &job.parent,
        "shadow",
        gateway.route = %route.name,
        gateway.size_class = class.as_str(),
        http.request.body.size = job.body.len() as i64,
        gateway.shadow.primary_backend = %job.primary_backend,
        gateway.shadow.backend = shadow_backend.as_str(),
        gateway.shadow.primary_ms = job.primary_took.as_secs_f64() * 1000.0,
        gateway.shadow.shadow_ms = tracing::field::Empty,
        gateway.shadow.match = tracing::field::Empty,
        gateway.shadow.latency_ratio = tracing::field::Empty,
    );
    let started = Instant::now();
    let answer = async {
        let response = if shadow_backend == Backend::Native {
            let handler = route.native?;
            job.target
                .native
                .call(handler, &job.parts.headers, job.body.clone(), route.timeout)
                .await
        } else {
            let path = job.spin_path.as_deref()?;
            let call = job.target.spin.call(
                clone_parts(&job.parts),
                RequestBody::Buffered(job.body.clone()),
                path,
                job.client,
                route.timeout,
            );
            tokio::time::timeout(route.timeout, call).await.ok()?.ok()?
        };
        let status = response.status().as_u16();
        let queued = response
            .extensions()
            .get::<NativeTiming>()
            .map_or(Duration::ZERO, |t| t.queued);
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, body, queued))
    }
    .instrument(span.clone())
    .await;
    let took = started.elapsed();
    // A native shadow's wait for a worker, apart from its compute.
    let (answer, queued) = match answer {
        Some((status, body, queued)) => (Some((status, body)), queued),
        None => (None, Duration::ZERO),
    };
    span.record("gateway.shadow.shadow_ms", took.as_secs_f64() * 1000.0);
    metrics.shadow_duration(&route.name, shadow_backend.as_str(), took);
    let matched = answer
        .as_ref()
        .is_some_and(|(status, body)| *status == job.primary_status && *body == job.primary_body);
    span.record("gateway.shadow.match", matched);
    let result = if matched { "match" } else { "mismatch" };
    metrics.shadow(&route.name, result);
    stats.shadow(&route.name, result);
    // Timed only when the shadow answered: a failed run says nothing of
    // how long the work takes.
    let ratio = answer
        .as_ref()
        .map(|_| pair_ratio(job.primary_backend, job.primary_took, took));
    if let Some(ratio) = ratio {
        span.record("gateway.shadow.latency_ratio", ratio);
        metrics.shadow_ratio(&route.name, class, ratio);
    }
    stats.pair(&route.name, class, ratio, matched);
    // The learned choice hears how long the path not chosen took, when it
    // answered as the chosen one did (a quick error is no measure of it).
    let same_status = answer
        .as_ref()
        .is_some_and(|(status, _)| *status == job.primary_status);
    if let (Some(learned), true) = (&job.target.learned, same_status) {
        let path = if shadow_backend == Backend::Native {
            Path::Native
        } else {
            Path::Wasm
        };
        learned.shadow(class, path, took, queued);
    }
    if !matched {
        let (status, body) = answer.unwrap_or((0, Bytes::new()));
        tracing::warn!(
            parent: &span,
            route = %route.name,
            primary = %job.primary_backend,
            shadow = shadow_backend.as_str(),
            primary_status = job.primary_status,
            shadow_status = status,
            primary_body = %String::from_utf8_lossy(&job.primary_body[..job.primary_body.len().min(LOGGED_BYTES)]),
            shadow_body = %String::from_utf8_lossy(&body[..body.len().min(LOGGED_BYTES)]),
            "shadow mismatch between the Wasm and native answers"
        );
    }
}

/// Wasm / native duration of one request, whichever way round the primary
/// (answered by `primary_backend`) and its shadow ran.
fn pair_ratio(primary_backend: Backend, primary_took: Duration, shadow_took: Duration) -> f64 {
    if primary_backend == Backend::Native {
        latency_ratio(shadow_took, primary_took)
    } else {
        latency_ratio(primary_took, shadow_took)
    }
}

/// Wasm duration / native duration (a native run too short to time counts
/// as one microsecond).
fn latency_ratio(wasm: Duration, native: Duration) -> f64 {
    wasm.as_secs_f64() / native.as_secs_f64().max(1e-6)
}

#[cfg(test)]
mod tests {
    use super::{latency_ratio, pair_ratio};
    use crate::backend::Backend;
    use std::time::Duration;

    #[test]
    fn the_ratio_is_wasm_over_native() {
        let ms = Duration::from_millis;
        assert_eq!(latency_ratio(ms(6), ms(2)), 3.0);
        assert_eq!(latency_ratio(ms(1), ms(4)), 0.25);
        assert!(latency_ratio(ms(1), Duration::ZERO).is_finite());
        // Wasm answered in 6 ms and its native shadow took 2 ms, or the
        // other way round: the same request, the same ratio's meaning.
        assert_eq!(pair_ratio(Backend::SpinEmbedded, ms(6), ms(2)), 3.0);
        assert_eq!(pair_ratio(Backend::SpinExternal, ms(6), ms(2)), 3.0);
        assert_eq!(pair_ratio(Backend::Native, ms(2), ms(6)), 3.0);
    }
}
