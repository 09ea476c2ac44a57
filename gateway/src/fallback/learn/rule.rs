//! [`LearnedRule`]: the learned estimates as the `auto` backend's
//! [`PathChoice`], with Spin's breaker consulted first and every decision
//! counted in the metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Learned, Path, Why};
use crate::backend::{CircuitState, RouteRequest};
use crate::config::FallbackTrigger;
use crate::fallback::choice::{Choice, Decision, Outcome, PathChoice};
use crate::fallback::circuit::CircuitBreaker;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::size_class::SizeClass;

/// `x-gateway-fallback` when the learned choice sent a request to native.
pub const LEARNED_REASON: &str = "learned";
/// `x-gateway-fallback` when native was given a request to measure it.
pub const EXPLORE_REASON: &str = "explore";

/// A route's learned choice of path.
pub struct LearnedRule {
    learned: Arc<Learned>,
    circuit: CircuitBreaker,
    route: String,
    metrics: Arc<Metrics>,
    /// [`Learned::changes`] when the crossover was last recorded
    /// (`u64::MAX`: never).
    recorded: AtomicU64,
}

impl LearnedRule {
    /// `route`'s choice from `learned`, never Spin while `circuit` is open.
    pub fn new(
        learned: Arc<Learned>,
        circuit: CircuitBreaker,
        route: &str,
        metrics: Arc<Metrics>,
    ) -> Self {
        LearnedRule {
            learned,
            circuit,
            route: route.to_string(),
            metrics,
            recorded: AtomicU64::new(u64::MAX),
        }
    }
}

impl PathChoice for LearnedRule {
    fn choose(&self, request: &RouteRequest) -> Choice {
        self.decide(request).choice
    }

    fn decide(&self, request: &RouteRequest) -> Decision {
        let len = request.body.bytes().map_or(0, |b| b.len());
        let class = SizeClass::of(len as u64);
        let open = self.circuit.state() == CircuitState::Open;
        let verdict = self.learned.decide(class, open);
        let choice = match (verdict.path, verdict.why) {
            (Path::Wasm, _) => Choice::Spin,
            (Path::Native, Why::Learned) => Choice::Native(LEARNED_REASON),
            (Path::Native, Why::Explore) => Choice::Native(EXPLORE_REASON),
            (Path::Native, Why::CircuitOpen) => {
                Choice::Native(FallbackTrigger::CircuitOpen.as_str())
            }
        };
        self.metrics.learned_decision(
            &self.route,
            class,
            verdict.path.as_str(),
            verdict.why.as_str(),
        );
        Decision {
            choice,
            why: verdict.why.as_str(),
            predicted_ms: [
                verdict.predicted_ms(Path::Wasm),
                verdict.predicted_ms(Path::Native),
            ],
            class,
            pending: verdict.pending,
        }
    }

    fn meters_cpu(&self) -> bool {
        true
    }

    fn spent(&self, decision: Decision, cpu: Duration) {
        let path = path_of(decision.choice);
        self.learned.spent(decision.class, path, cpu);
        if let Some(cpu) = self.learned.cpu(decision.class, path) {
            self.metrics
                .learned_cpu(&self.route, decision.class, path.as_str(), cpu);
        }
    }

    fn observe(&self, outcome: Outcome) {
        let d = outcome.decision;
        let path = path_of(d.choice);
        let sample = match (outcome.failure, outcome.took) {
            (_, None) => None,
            // Refused by the breaker: says nothing of how fast Spin is.
            (Some(FallbackTrigger::CircuitOpen), _) => None,
            // A failed attempt: what choosing Spin cost, counted twice.
            (Some(_), Some(took)) => Some(took * 2),
            (None, Some(took)) => Some(took),
        };
        let queued = if path == Path::Native {
            outcome.queued
        } else {
            Duration::ZERO
        };
        self.learned
            .answered(d.class, path, d.pending, sample, queued);
        if sample.is_some()
            && let Some(estimate) = self.learned.latency(d.class, path)
        {
            self.metrics
                .learned_estimate(&self.route, d.class, path.as_str(), estimate);
        }
        // The crossover moves only when a class changes path: recorded
        // then, not on every answer.
        let changes = self.learned.changes();
        if self.recorded.swap(changes, Ordering::AcqRel) != changes {
            self.metrics
                .learned_crossover(&self.route, self.learned.crossover().as_ref());
        }
    }
}

/// The path a choice sent a request to.
fn path_of(choice: Choice) -> Path {
    match choice {
        Choice::Spin => Path::Wasm,
        Choice::Native(_) => Path::Native,
    }
}
