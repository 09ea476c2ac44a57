//! The `auto` backend: [`Fallback`] over a Spin service and a native one,
//! with a pluggable [`PathChoice`] deciding which path a request takes
//! first. A Spin failure listed in the route's `fallback.on` is answered
//! by native instead; any other failure passes up unchanged.
//!
//! The first choice is [`SizeRule`] (`native_above_bytes`); a choice that
//! learns (say, from latencies) implements [`PathChoice::observe`] too.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::response::Response;
use tower::Service;

use crate::backend::{BackendError, BackendFuture, RouteRequest, SIZE_REASON};
use crate::config::{FallbackTrigger, RouteConfig};

/// Which path a request takes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Spin, with native standing in on a listed failure.
    Spin,
    /// Native straight away; the reason goes to `x-gateway-fallback`.
    Native(&'static str),
}

/// What became of a request on the path it was given.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// The path chosen.
    pub choice: Choice,
    /// The fallback trigger when Spin failed (native may have stood in).
    pub failure: Option<FallbackTrigger>,
    /// From the choice to the answer's head.
    pub took: Duration,
}

/// Picks a request's path on an `auto` route, and may learn from what
/// happened on it.
pub trait PathChoice: Send + Sync + 'static {
    /// The path for `request`, before anything is sent.
    fn choose(&self, request: &RouteRequest) -> Choice;

    /// What happened on the chosen path (default: nothing is learned).
    fn observe(&self, outcome: Outcome) {
        let _ = outcome;
    }
}

/// Bodies over `native_above_bytes` go native (`size`); the rest try Spin.
#[derive(Clone, Copy, Debug)]
pub struct SizeRule {
    /// The threshold, if the route has one.
    pub native_above_bytes: Option<usize>,
}

impl PathChoice for SizeRule {
    fn choose(&self, request: &RouteRequest) -> Choice {
        let len = request.body.bytes().map_or(0, |b| b.len());
        match self.native_above_bytes {
            Some(limit) if len > limit => Choice::Native(SIZE_REASON),
            _ => Choice::Spin,
        }
    }
}

/// Spin first, native on a listed failure; see the module docs. Needs a
/// buffered body (it may be sent twice).
#[derive(Clone)]
pub struct Fallback<S, N> {
    spin: S,
    native: N,
    shared: Arc<Shared>,
}

struct Shared {
    route: Arc<RouteConfig>,
    choice: Box<dyn PathChoice>,
}

impl<S, N> Fallback<S, N> {
    /// `route`'s `auto` backend over `spin` and `native`, paths picked by
    /// `choice`.
    pub fn new(route: Arc<RouteConfig>, choice: Box<dyn PathChoice>, spin: S, native: N) -> Self {
        Fallback {
            spin,
            native,
            shared: Arc::new(Shared { route, choice }),
        }
    }
}

impl<S, N> Service<RouteRequest> for Fallback<S, N>
where
    S: Service<RouteRequest, Response = Response, Error = BackendError, Future = BackendFuture>
        + Clone
        + Send
        + 'static,
    N: Service<RouteRequest, Response = Response, Error = BackendError, Future = BackendFuture>
        + Clone
        + Send
        + 'static,
{
    type Response = Response;
    type Error = BackendError;
    type Future = BackendFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        // Both backends are always ready; which one is called is decided
        // per request.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: RouteRequest) -> BackendFuture {
        let started = Instant::now();
        let shared = self.shared.clone();
        let choice = shared.choice.choose(&request);
        if let Choice::Native(reason) = choice {
            request.fallback = Some(reason);
            let call = self.native.call(request);
            return observed(shared, choice, started, None, call);
        }
        let Some(mut kept) = request.try_clone() else {
            let route = shared.route.clone();
            return Box::pin(async move { Ok(super::backends::misconfigured(&route)) });
        };
        let spin = self.spin.call(request);
        let mut native = self.native.clone();
        Box::pin(async move {
            let failure = match spin.await {
                Ok(response) => {
                    shared.observe(choice, started, None);
                    return Ok(response);
                }
                Err(failure) => failure,
            };
            let trigger = failure.trigger();
            shared.observe(choice, started, trigger);
            match trigger.filter(|t| shared.route.fallback_on.contains(t)) {
                Some(trigger) => {
                    let reason = trigger.as_str();
                    tracing::info!(route = %shared.route.name, reason, "falling back to native");
                    kept.fallback = Some(reason);
                    native.call(kept).await
                }
                None => Err(failure),
            }
        })
    }
}

/// `call`, with its outcome reported to the choice.
fn observed(
    shared: Arc<Shared>,
    choice: Choice,
    started: Instant,
    failure: Option<FallbackTrigger>,
    call: BackendFuture,
) -> BackendFuture {
    Box::pin(async move {
        let result = call.await;
        shared.observe(choice, started, failure);
        result
    })
}

impl Shared {
    fn observe(&self, choice: Choice, started: Instant, failure: Option<FallbackTrigger>) {
        self.choice.observe(Outcome {
            choice,
            failure,
            took: started.elapsed(),
        });
    }
}
