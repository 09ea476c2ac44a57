//! Shadow sampling as a layer of a route's stack: a `shadow.sample` share
//! of the requests with a buffered body keep a copy; once the backend has
//! answered (and not the gateway itself), the answer is buffered, queued
//! with the copy for a replay on the other path, and passed on to the
//! client unchanged.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tower::{Layer, Service};

use super::{Job, Shadow, Target};
use crate::backend::{AnswerFuture, Answered, Backend, RouteRequest, clone_parts};
use crate::problem::{Problem, ProblemResponse};

/// Builds [`Sample`] for one route.
#[derive(Clone)]
pub struct SampleLayer {
    shared: Arc<Shared>,
}

struct Shared {
    target: Arc<Target>,
    queue: Shadow,
}

impl SampleLayer {
    /// Samples of `target`'s route, queued on `queue`.
    pub fn new(target: Target, queue: Shadow) -> Self {
        SampleLayer {
            shared: Arc::new(Shared {
                target: Arc::new(target),
                queue,
            }),
        }
    }
}

impl<S> Layer<S> for SampleLayer {
    type Service = Sample<S>;
    fn layer(&self, inner: S) -> Sample<S> {
        Sample {
            shared: self.shared.clone(),
            inner,
        }
    }
}

/// See [`SampleLayer`].
#[derive(Clone)]
pub struct Sample<S> {
    shared: Arc<Shared>,
    inner: S,
}

/// What a sampled request keeps for its replay.
struct Kept {
    parts: http::request::Parts,
    body: bytes::Bytes,
    spin_path: Option<String>,
    client: std::net::SocketAddr,
    started: Instant,
}

impl<S> Service<RouteRequest> for Sample<S>
where
    S: Service<RouteRequest, Response = Response, Error = Infallible, Future = AnswerFuture>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AnswerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: RouteRequest) -> Self::Future {
        let route = &self.shared.target.route;
        // Most routes never sample: no draw, no copy, no extra future.
        if route.shadow_sample <= 0.0 {
            return self.inner.call(request);
        }
        // Drawn, and skipped while the gateway is busy, before the request
        // is served: a skipped sample copies nothing. The primary is timed
        // from here, like its replay, so the upload is not counted.
        let kept = match request.body.bytes() {
            Some(bytes) if self.shared.queue.sample(route) => Some(Kept {
                parts: clone_parts(&request.parts),
                body: bytes.clone(),
                spin_path: request.spin_path.clone(),
                client: request.client,
                started: Instant::now(),
            }),
            _ => None,
        };
        let call = self.inner.call(request);
        let Some(kept) = kept else {
            return call;
        };
        let shared = self.shared.clone();
        Box::pin(async move {
            let Ok(response) = call.await;
            Ok(shared.submit(kept, response).await)
        })
    }
}

impl Shared {
    /// Queues the comparison of `response` with a replay of `kept`, and
    /// gives the response back, buffered.
    async fn submit(&self, kept: Kept, response: Response) -> Response {
        let primary_backend = Answered::of(&response).backend;
        if primary_backend == Backend::Gateway {
            return response;
        }
        // Buffer the answer to compare it; the client still gets it first.
        let (head, body) = response.into_parts();
        let primary_body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                tracing::warn!("could not read the answer to shadow it: {e}");
                return ProblemResponse(Problem::new(
                    502,
                    "Bad Gateway",
                    format!("the backend's answer broke off: {e}"),
                ))
                .into_response();
            }
        };
        self.queue.submit(Job {
            target: self.target.clone(),
            parts: kept.parts,
            body: kept.body,
            spin_path: kept.spin_path,
            client: kept.client,
            primary_backend,
            primary_status: head.status.as_u16(),
            primary_body: primary_body.clone(),
            primary_took: kept.started.elapsed(),
            parent: tracing::Span::current(),
        });
        Response::from_parts(head, axum::body::Body::from(primary_body))
    }
}
