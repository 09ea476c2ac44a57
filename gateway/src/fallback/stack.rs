//! A route's whole stack, built once per config snapshot, so a request
//! only clones it (a few `Arc`s) and calls it:
//!
//! ```text
//! admission                      crate::admission::layer
//!  └ shadow sampling             crate::shadow::layer      (`shadow.sample` > 0)
//!    └ answer                    super::answer             (failures → problems)
//!      └ native                                            (backend = "native")
//!      │ spin policy                                       (backend = "spin")
//!      │ fallback(choice, spin policy, native)             (backend = "auto")
//!
//! spin policy = limit → elsewhere → retry → circuit → client fault → attempt span → timeout → Spin
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::Response;
use tower::retry::{Retry, RetryLayer};
use tower::{Layer, Service, ServiceBuilder};

use super::RoutePolicy;
use super::answer::{Answer, AnswerFuture, AnswerLayer};
use super::backends::{Misconfigured, NativeService, SpinService};
use super::choice::{Choice, Decision, Fallback, PathChoice, SizeRule};
use super::circuit::{Circuit, CircuitLayer};
use super::client_fault::{ClientFault, ClientFaultLayer};
use super::learn::rule::LearnedRule;
use super::limit::{Limit, LimitLayer};
use super::retry::RetryPolicy;
use super::timeout::{Timeout, TimeoutLayer};
use crate::admission::layer::{Admit, AdmitLayer, BufferRule};
use crate::backend::{RouteRequest, SPIN_DISABLED_REASON};
use crate::config::{BackendKind, RouteConfig};
use crate::native::Native;
use crate::proxy::elsewhere::{Elsewhere, ElsewhereLayer};
use crate::shadow::Shadow;
use crate::shadow::layer::{Sample, SampleLayer};
use crate::spin::SpinBackend;
use crate::telemetry::attempt::{AttemptSpan, AttemptSpanLayer};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::size_class::SizeClass;

/// A route's stack, ready to serve: a concrete type rather than a boxed
/// service, so serving a request clones a few `Arc`s and allocates
/// nothing for the stack itself (each layer's future is boxed once).
pub type RouteStack = Admit<Sample<RouteBackend>>;

/// The policy in front of a route's Spin backend.
pub type SpinPolicy =
    Limit<Elsewhere<Retry<RetryPolicy, Circuit<ClientFault<AttemptSpan<Timeout<SpinService>>>>>>>;

/// A route's backend, by kind, with failures turned into answers.
#[derive(Clone)]
pub enum RouteBackend {
    /// `backend = "native"`.
    Native(Answer<NativeService>),
    /// `backend = "spin"`.
    Spin(Answer<SpinPolicy>),
    /// `backend = "auto"`.
    Auto(Answer<Fallback<SpinPolicy, NativeService>>),
    /// A `spin` route without a Spin path.
    Misconfigured(Misconfigured),
}

impl Service<RouteRequest> for RouteBackend {
    type Response = Response;
    type Error = Infallible;
    type Future = AnswerFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Every backend below is always ready (limits shed in `call`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RouteRequest) -> AnswerFuture {
        match self {
            RouteBackend::Native(s) => s.call(request),
            RouteBackend::Spin(s) => s.call(request),
            RouteBackend::Auto(s) => s.call(request),
            RouteBackend::Misconfigured(s) => Box::pin(s.call(request)),
        }
    }
}

/// Everything a route's stack is built from.
pub struct StackParts<'a> {
    /// The route.
    pub route: &'a Arc<RouteConfig>,
    /// Its live state (breaker, limits, budget), kept across reloads.
    pub policy: &'a RoutePolicy,
    /// The snapshot's Spin backend.
    pub spin: &'a SpinBackend,
    /// The snapshot's native handlers.
    pub native: &'a Native,
    /// The gateway's metrics.
    pub metrics: &'a Arc<Metrics>,
    /// The gateway's shadow queue.
    pub shadow: &'a Shadow,
}

/// Builds `parts.route`'s stack.
pub fn build(parts: &StackParts<'_>) -> RouteStack {
    let route = parts.route;
    let buffer = BufferRule {
        always: route.backend != BackendKind::Spin || parts.spin.needs_buffered_body(),
        for_retries: route.retry.attempts > 0,
    };
    let target = crate::shadow::Target {
        route: route.clone(),
        spin: parts.spin.clone(),
        native: parts.native.clone(),
        learned: parts.policy.learned.clone(),
    };
    ServiceBuilder::new()
        .layer(AdmitLayer::new(
            route.clone(),
            parts.policy.admission.clone(),
            buffer,
        ))
        .layer(SampleLayer::new(target, parts.shadow.clone()))
        .service(backend(parts))
}

/// The route's backend with failures turned into answers.
fn backend(parts: &StackParts<'_>) -> RouteBackend {
    let route = parts.route;
    let answer = AnswerLayer::new(
        route.clone(),
        parts.spin.backend(),
        parts.spin.describe(),
        parts.metrics.clone(),
    );
    let native = NativeService::new(parts.native.clone(), route.clone(), parts.metrics.clone());
    let has_spin = route.spin_path.is_some();
    match route.backend {
        BackendKind::Native => RouteBackend::Native(answer.layer(native)),
        BackendKind::Spin if has_spin => RouteBackend::Spin(answer.layer(spin_policy(parts))),
        BackendKind::Spin => RouteBackend::Misconfigured(Misconfigured::new(route.clone())),
        BackendKind::Auto => {
            let choice: Box<dyn PathChoice> = match &parts.policy.learned {
                _ if !has_spin => Box::new(NoSpin),
                Some(learned) => Box::new(LearnedRule::new(
                    learned.clone(),
                    parts.policy.circuit.clone(),
                    &route.name,
                    parts.metrics.clone(),
                )),
                None => Box::new(SizeRule {
                    native_above_bytes: route.native_above_bytes,
                }),
            };
            let auto = Fallback::new(route.clone(), choice, spin_policy(parts), native);
            RouteBackend::Auto(answer.layer(auto))
        }
    }
}

/// The policy in front of the route's Spin backend.
fn spin_policy(parts: &StackParts<'_>) -> SpinPolicy {
    let route = parts.route;
    let policy = parts.policy;
    ServiceBuilder::new()
        .layer(LimitLayer::new(policy.limit.clone(), route.concurrency))
        // Retries of an external route go to another replica.
        .layer(ElsewhereLayer::new(
            route.retry.attempts > 0 && matches!(parts.spin, SpinBackend::External(_)),
        ))
        .layer(RetryLayer::new(RetryPolicy::new(
            route.clone(),
            policy.budget.clone(),
        )))
        .layer(CircuitLayer::new(
            policy.circuit.clone(),
            route.clone(),
            parts.metrics.clone(),
        ))
        .layer(ClientFaultLayer::new(route.clone()))
        .layer(AttemptSpanLayer::new(
            route.clone(),
            parts.spin.backend(),
            parts.metrics.clone(),
        ))
        .layer(TimeoutLayer::new(route.timeout))
        .service(SpinService::new(parts.spin.clone(), route.clone()))
}

/// An `auto` route without a Spin path: native answers, saying why.
struct NoSpin;

impl PathChoice for NoSpin {
    fn choose(&self, _: &RouteRequest) -> Choice {
        Choice::Native(SPIN_DISABLED_REASON)
    }

    fn decide(&self, request: &RouteRequest) -> Decision {
        let len = request.body.bytes().map_or(0, |b| b.len());
        Decision {
            choice: self.choose(request),
            why: SPIN_DISABLED_REASON,
            predicted_ms: [None, None],
            class: SizeClass::of(len as u64),
            pending: 0,
        }
    }
}
