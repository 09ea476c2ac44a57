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
use crate::native::Native;
use crate::spin::SpinBackend;
use crate::telemetry::metrics::Metrics;
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
}

impl Job {
    /// Bytes this sample keeps alive until it has run.
    fn weight(&self) -> usize {
        self.body.len() + self.primary_body.len()
    }
}

impl Shadow {
    /// Starts the worker on the current Tokio runtime.
    pub fn start(metrics: Arc<Metrics>, stats: Arc<Stats>) -> Shadow {
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
        Shadow {
            tx,
            buffered,
            metrics,
            stats,
        }
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
    let span = tracing::info_span!(
        parent: &job.parent,
        "shadow",
        gateway.route = %route.name,
        gateway.shadow.primary_backend = %job.primary_backend,
        gateway.shadow.backend = shadow_backend.as_str(),
        gateway.shadow.primary_ms = job.primary_took.as_secs_f64() * 1000.0,
        gateway.shadow.shadow_ms = tracing::field::Empty,
        gateway.shadow.match = tracing::field::Empty,
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
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, body))
    }
    .instrument(span.clone())
    .await;
    let took = started.elapsed();
    span.record("gateway.shadow.shadow_ms", took.as_secs_f64() * 1000.0);
    metrics.shadow_duration(&route.name, shadow_backend.as_str(), took);
    let matched = answer
        .as_ref()
        .is_some_and(|(status, body)| *status == job.primary_status && *body == job.primary_body);
    span.record("gateway.shadow.match", matched);
    let result = if matched { "match" } else { "mismatch" };
    metrics.shadow(&route.name, result);
    stats.shadow(&route.name, result);
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
