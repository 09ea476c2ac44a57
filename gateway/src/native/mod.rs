//! Native handlers: the core crate's code compiled into the gateway.
//!
//! A CPU-bound route can be served here instead of in Wasm, either because
//! its config says `backend = "native"`, or as the `auto` backend's fallback
//! when the Wasm path fails, is slow or is overloaded. The handlers keep the
//! component's request/response contract byte for byte; the computation runs
//! on Tokio's blocking pool, never on the async workers, behind a semaphore
//! sized to the machine's cores so a flood of batches queues instead of
//! oversubscribing the CPU.
//!
//! The queue in front of the workers is bounded ([`QUEUED_PER_WORKER`] per
//! worker): when the Wasm path is overloaded and an `auto` route sends its
//! load here, a full queue sheds with `503` + `Retry-After` instead of
//! piling up requests (and their buffered bodies) without limit. Each call
//! has a deadline (the route's timeout): past it the client gets a `504`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use items_core::{Problem, TrustedKeys};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::config::NativeHandler;
use crate::problem::ProblemResponse;

/// How long a native call waited for a worker and how long it computed;
/// recorded so the Wasm and native paths can be compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NativeTiming {
    /// Time spent waiting for a free worker.
    pub queued: Duration,
    /// Time spent computing.
    pub compute: Duration,
    /// CPU time the computation took (its worker thread's CPU clock):
    /// below `compute` when other work shared the cores.
    pub cpu: Duration,
}

/// Requests that may wait for a native worker, per worker; beyond this
/// the native path sheds.
pub const QUEUED_PER_WORKER: usize = 16;

/// The native handlers and the worker budget they share.
#[derive(Clone)]
pub struct Native {
    workers: Arc<Semaphore>,
    /// Calls waiting for a worker right now.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    trusted: Arc<TrustedKeys>,
    tampered: bool,
}

/// Counts a call as waiting until dropped.
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Native {
    /// Handlers using `trusted` keys (the same value the components get from
    /// the `trusted_keys` Spin variable) and `workers` parallel computations.
    pub fn new(trusted: TrustedKeys, workers: usize) -> Self {
        Native::with_queue(trusted, workers, workers.max(1) * QUEUED_PER_WORKER)
    }

    /// Like [`Native::new`] with an explicit bound on waiting calls.
    pub fn with_queue(trusted: TrustedKeys, workers: usize, max_waiting: usize) -> Self {
        Native {
            workers: Arc::new(Semaphore::new(workers.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
            trusted: Arc::new(trusted),
            tampered: false,
        }
    }

    /// Test-only: verdicts get a trailing space, so the shadow comparison
    /// has a real mismatch to detect.
    #[doc(hidden)]
    pub fn tampered_for_tests(mut self) -> Self {
        self.tampered = true;
        self
    }

    /// Runs `handler` on a request, answering within `deadline` (a `504`
    /// problem past it). The response carries a [`NativeTiming`] extension
    /// when the handler ran.
    pub async fn call(
        &self,
        handler: NativeHandler,
        headers: &HeaderMap,
        body: Bytes,
        deadline: Duration,
    ) -> Response {
        let work = match handler {
            NativeHandler::Validate => self.validate(headers, body),
        };
        match tokio::time::timeout(deadline, work).await {
            Ok(response) => response,
            Err(_) => ProblemResponse(Problem::new(
                504,
                "Gateway Timeout",
                format!(
                    "the native handler did not answer within {} ms (queued behind other work, or computing)",
                    deadline.as_millis()
                ),
            ))
            .into_response(),
        }
    }

    async fn validate(&self, headers: &HeaderMap, body: Bytes) -> Response {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if let Err(problem) = items_core::http::require_json(content_type) {
            let mut response = ProblemResponse(problem).into_response();
            response.headers_mut().insert(
                "accept-post",
                HeaderValue::from_static(items_core::http::JSON),
            );
            return response;
        }
        let queued_at = Instant::now();
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return self.queue_full();
        }
        let waiting = Waiting(self.waiting.clone());
        let acquire = self
            .workers
            .clone()
            .acquire_owned()
            .instrument(tracing::info_span!("native.queue"));
        let Ok(permit) = acquire.await else {
            return ProblemResponse(Problem::new(
                503,
                "Service Unavailable",
                "the native worker pool is shut down",
            ))
            .into_response();
        };
        drop(waiting);
        let queued = queued_at.elapsed();
        let trusted = self.trusted.clone();
        let compute_span =
            tracing::info_span!("native.compute", http.request.body.size = body.len() as i64);
        let joined = tokio::task::spawn_blocking(move || {
            let _entered = compute_span.enter();
            let started = Instant::now();
            let (result, cpu) =
                spin_host::cpu::measure(|| items_core::validate_batch(&body, &trusted));
            drop(permit);
            (result, started.elapsed(), cpu)
        })
        .await;
        let (result, compute, cpu) = match joined {
            Ok(done) => done,
            Err(e) => {
                tracing::error!("native validate panicked: {e}");
                return ProblemResponse(Problem::new(
                    500,
                    "Internal Server Error",
                    "native validation failed unexpectedly; see the gateway log",
                ))
                .into_response();
            }
        };
        let mut response = match result {
            Ok(verdict) => self.verdict_response(&verdict),
            Err(e) => ProblemResponse(e.to_problem()).into_response(),
        };
        response.extensions_mut().insert(NativeTiming {
            queued,
            compute,
            cpu,
        });
        response
    }

    /// `503` + `Retry-After`: the queue in front of the workers is full.
    fn queue_full(&self) -> Response {
        let mut response = ProblemResponse(Problem::new(
            503,
            "Overloaded",
            format!(
                "the native workers are busy and {} requests already wait for them; retry shortly",
                self.max_waiting
            ),
        ))
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }

    /// The `200` verdict, byte for byte the component's.
    fn verdict_response(&self, verdict: &items_core::Verdict) -> Response {
        tracing::Span::current().record("validate.items", (verdict.valid + verdict.invalid) as i64);
        let mut json = verdict.to_json();
        if self.tampered {
            json.push(b' ');
        }
        let mut response = Response::new(Body::from(json));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        *response.status_mut() = StatusCode::OK;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers
    }

    fn batch() -> Bytes {
        Bytes::from_static(br#"{"items":[{"id":1,"name":"a"}]}"#)
    }

    #[tokio::test]
    async fn a_full_queue_sheds_with_503_and_retry_after() {
        let native = Native::with_queue(TrustedKeys::any(), 1, 1);
        // The only worker is busy.
        let busy = native.workers.clone().acquire_owned().await.unwrap();
        let waiting = {
            let native = native.clone();
            tokio::spawn(async move {
                let headers = json_headers();
                native
                    .call(
                        NativeHandler::Validate,
                        &headers,
                        batch(),
                        Duration::from_secs(60),
                    )
                    .await
            })
        };
        while native.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let shed = native
            .call(
                NativeHandler::Validate,
                &json_headers(),
                batch(),
                Duration::from_secs(60),
            )
            .await;
        assert_eq!(shed.status(), 503);
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");

        drop(busy);
        let served = waiting.await.unwrap();
        assert_eq!(
            served.status(),
            200,
            "the queued call runs once a worker is free"
        );
        assert_eq!(native.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_a_504_and_leaves_the_queue() {
        let native = Native::with_queue(TrustedKeys::any(), 1, 4);
        let _busy = native.workers.clone().acquire_owned().await.unwrap();
        let late = native
            .call(
                NativeHandler::Validate,
                &json_headers(),
                batch(),
                Duration::from_millis(20),
            )
            .await;
        assert_eq!(late.status(), 504);
        assert_eq!(
            native.waiting.load(Ordering::Acquire),
            0,
            "no longer counted as waiting"
        );
    }
}
