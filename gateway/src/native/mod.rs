//! Native handlers: the core crate's code compiled into the gateway.
//!
//! A CPU-bound route can be served here instead of in Wasm, either because
//! its config says `backend = "native"`, or as the `auto` backend's fallback
//! when the Wasm path fails, is slow or is overloaded. The handlers keep the
//! component's request/response contract byte for byte; the computation runs
//! on Tokio's blocking pool, never on the async workers, behind a semaphore
//! sized to the machine's cores so a flood of batches queues instead of
//! oversubscribing the CPU.

use std::sync::Arc;
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
}

/// The native handlers and the worker budget they share.
#[derive(Clone)]
pub struct Native {
    workers: Arc<Semaphore>,
    trusted: Arc<TrustedKeys>,
    tampered: bool,
}

impl Native {
    /// Handlers using `trusted` keys (the same value the components get from
    /// the `trusted_keys` Spin variable) and `workers` parallel computations.
    pub fn new(trusted: TrustedKeys, workers: usize) -> Self {
        Native {
            workers: Arc::new(Semaphore::new(workers.max(1))),
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

    /// Runs `handler` on a request. The response carries a [`NativeTiming`]
    /// extension.
    pub async fn call(&self, handler: NativeHandler, headers: &HeaderMap, body: Bytes) -> Response {
        match handler {
            NativeHandler::Validate => self.validate(headers, body).await,
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
        let queued = queued_at.elapsed();
        let trusted = self.trusted.clone();
        let compute_span =
            tracing::info_span!("native.compute", http.request.body.size = body.len() as i64);
        let joined = tokio::task::spawn_blocking(move || {
            let _entered = compute_span.enter();
            let started = Instant::now();
            let result = items_core::validate_batch(&body, &trusted);
            drop(permit);
            (result, started.elapsed())
        })
        .await;
        let (result, compute) = match joined {
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
            Ok(verdict) => {
                tracing::Span::current()
                    .record("validate.items", (verdict.valid + verdict.invalid) as i64);
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
            Err(e) => ProblemResponse(e.to_problem()).into_response(),
        };
        response
            .extensions_mut()
            .insert(NativeTiming { queued, compute });
        response
    }
}
