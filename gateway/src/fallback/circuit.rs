//! A circuit breaker for one route's Spin backend.
//!
//! When Spin keeps failing, hammering it only makes things worse and makes
//! every client wait for a timeout. The breaker *opens* after
//! `consecutive_failures` failures in a row, or when at least `min_requests`
//! requests in the last `window` failed at `failure_rate` or more. While
//! open, calls are refused at once (an `auto` route goes native, a `spin`
//! route answers 503). After `open_for`, up to `half_open_probes` requests
//! are let through as probes: that many successes close the circuit, one
//! failure opens it again.
//!
//! The window is counted in [`BUCKETS`] buckets of `window / BUCKETS`
//! each, so an outcome leaves it a bucket at a time, and a breaker takes
//! the same few hundred bytes and constant time per request at any request
//! rate (a list of every outcome would hold an hour of traffic with the
//! longest window, and scan it on every failure).
//!
//! Time is tokio's, so tests drive it with `tokio::time::pause`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::Response;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::backend::{BackendError, BackendFuture, RouteRequest};
use crate::config::{CircuitPolicy, RouteConfig};
use crate::telemetry::metrics::Metrics;

pub use crate::backend::CircuitState;

enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

struct Inner {
    state: State,
    consecutive_failures: u32,
    /// Recent outcomes while closed.
    window: Window,
}

/// How many buckets the failure-rate window is counted in.
pub const BUCKETS: usize = 10;

/// Outcomes of the last `window`, counted per bucket of `window / BUCKETS`.
struct Window {
    /// Where bucket 0 started; every bucket is numbered from here.
    origin: Instant,
    /// A bucket's span in nanoseconds (at least 1 ms).
    bucket_nanos: u64,
    /// The number of the newest bucket (its slot is `newest % BUCKETS`).
    newest: u64,
    /// (requests, failures) per slot.
    counts: [(u64, u64); BUCKETS],
    /// Sums over all slots.
    total: u64,
    failed: u64,
}

impl Window {
    fn new(window: Duration, now: Instant) -> Self {
        Window {
            origin: now,
            // At least 1 ms: the config's smallest window is 100 ms.
            bucket_nanos: u64::try_from((window / BUCKETS as u32).as_nanos())
                .unwrap_or(u64::MAX)
                .max(1_000_000),
            newest: 0,
            counts: [(0, 0); BUCKETS],
            total: 0,
            failed: 0,
        }
    }

    /// Counts one outcome at `now`, first dropping buckets that fell out.
    fn record(&mut self, now: Instant, failed: bool) {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        let bucket = u64::try_from(elapsed).unwrap_or(u64::MAX) / self.bucket_nanos;
        if bucket > self.newest {
            // Every bucket between the newest and this one is stale (at
            // most all of them, however long it was).
            let stale = (bucket - self.newest).min(BUCKETS as u64);
            for n in 1..=stale {
                let slot = ((self.newest + n) % BUCKETS as u64) as usize;
                let (total, failed) = std::mem::take(&mut self.counts[slot]);
                self.total -= total;
                self.failed -= failed;
            }
            self.newest = bucket;
        }
        let slot = (self.newest % BUCKETS as u64) as usize;
        self.counts[slot].0 += 1;
        self.total += 1;
        if failed {
            self.counts[slot].1 += 1;
            self.failed += 1;
        }
    }

    fn clear(&mut self) {
        self.counts = [(0, 0); BUCKETS];
        self.total = 0;
        self.failed = 0;
    }
}

/// One route's breaker; shared by all its requests.
#[derive(Clone)]
pub struct CircuitBreaker {
    policy: CircuitPolicy,
    inner: Arc<Mutex<Inner>>,
}

/// Permission to call the backend once; report the outcome with
/// [`Attempt::record`]. Dropping it unrecorded (the client went away)
/// counts as neither success nor failure.
pub struct Attempt {
    inner: Arc<Mutex<Inner>>,
    policy: CircuitPolicy,
    probe: bool,
    recorded: bool,
}

/// A state change, returned so callers can log and count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: CircuitState,
    /// State after.
    pub to: CircuitState,
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while holding this lock cannot leave the state inconsistent
    // in a way that matters more than refusing service forever would.
    inner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl CircuitBreaker {
    /// A closed breaker with `policy`.
    pub fn new(policy: CircuitPolicy) -> Self {
        CircuitBreaker {
            inner: Arc::new(Mutex::new(Inner {
                state: State::Closed,
                consecutive_failures: 0,
                window: Window::new(policy.window, Instant::now()),
            })),
            policy,
        }
    }

    /// The current state (an open breaker past its `open_for` reports
    /// half-open: the next request will be a probe).
    pub fn state(&self) -> CircuitState {
        let inner = lock(&self.inner);
        match inner.state {
            State::Closed => CircuitState::Closed,
            State::Open { until } if Instant::now() < until => CircuitState::Open,
            State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Asks to call the backend. `None` means the circuit is open (or all
    /// half-open probe slots are taken): don't call it.
    pub fn try_acquire(&self) -> (Option<Attempt>, Option<Transition>) {
        let mut inner = lock(&self.inner);
        let mut transition = None;
        if let State::Open { until } = inner.state {
            if Instant::now() < until {
                return (None, None);
            }
            inner.state = State::HalfOpen {
                in_flight: 0,
                successes: 0,
            };
            transition = Some(Transition {
                from: CircuitState::Open,
                to: CircuitState::HalfOpen,
            });
        }
        let probe = match &mut inner.state {
            State::Closed => false,
            State::HalfOpen {
                in_flight,
                successes,
            } => {
                if *in_flight + *successes >= self.policy.half_open_probes {
                    return (None, transition);
                }
                *in_flight += 1;
                true
            }
            State::Open { .. } => return (None, transition),
        };
        let attempt = Attempt {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
            probe,
            recorded: false,
        };
        (Some(attempt), transition)
    }
}

impl Attempt {
    /// Records the outcome of the call this attempt allowed.
    pub fn record(mut self, success: bool) -> Option<Transition> {
        self.recorded = true;
        let mut inner = lock(&self.inner);
        let now = Instant::now();
        let policy = &self.policy;
        if self.probe {
            let State::HalfOpen {
                in_flight,
                successes,
            } = &mut inner.state
            else {
                // Another probe already decided the state.
                return None;
            };
            *in_flight = in_flight.saturating_sub(1);
            if success {
                *successes += 1;
                if *successes >= policy.half_open_probes {
                    inner.state = State::Closed;
                    inner.consecutive_failures = 0;
                    inner.window.clear();
                    return Some(Transition {
                        from: CircuitState::HalfOpen,
                        to: CircuitState::Closed,
                    });
                }
                return None;
            }
            inner.state = State::Open {
                until: now + policy.open_for,
            };
            return Some(Transition {
                from: CircuitState::HalfOpen,
                to: CircuitState::Open,
            });
        }

        if !matches!(inner.state, State::Closed) {
            // A request admitted while closed finished after the circuit
            // changed; the state machine has moved on without it.
            return None;
        }
        inner.window.record(now, !success);
        if success {
            inner.consecutive_failures = 0;
            return None;
        }
        inner.consecutive_failures += 1;
        let (total, failed) = (inner.window.total, inner.window.failed);
        let rate_tripped = total >= u64::from(policy.min_requests)
            && failed as f64 / total as f64 >= policy.failure_rate;
        if inner.consecutive_failures >= policy.consecutive_failures || rate_tripped {
            inner.state = State::Open {
                until: now + policy.open_for,
            };
            inner.consecutive_failures = 0;
            inner.window.clear();
            return Some(Transition {
                from: CircuitState::Closed,
                to: CircuitState::Open,
            });
        }
        None
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            let mut inner = lock(&self.inner);
            if let State::HalfOpen { in_flight, .. } = &mut inner.state {
                *in_flight = in_flight.saturating_sub(1);
            }
        }
    }
}

/// Puts a route's [`CircuitBreaker`] in front of a backend service: an
/// open circuit refuses at once ([`BackendError::CircuitOpen`]); each call
/// it lets through reports its outcome, except failures that say nothing
/// about the backend's health (a full instance pool, a client's fault),
/// which are dropped unrecorded.
#[derive(Clone)]
pub struct CircuitLayer {
    shared: Arc<Shared>,
}

struct Shared {
    breaker: CircuitBreaker,
    route: Arc<RouteConfig>,
    metrics: Arc<Metrics>,
}

impl CircuitLayer {
    /// The layer for `route`'s `breaker`, counting changes in `metrics`.
    pub fn new(breaker: CircuitBreaker, route: Arc<RouteConfig>, metrics: Arc<Metrics>) -> Self {
        CircuitLayer {
            shared: Arc::new(Shared {
                breaker,
                route,
                metrics,
            }),
        }
    }
}

impl<S> Layer<S> for CircuitLayer {
    type Service = Circuit<S>;
    fn layer(&self, inner: S) -> Circuit<S> {
        Circuit {
            shared: self.shared.clone(),
            inner,
        }
    }
}

/// See [`CircuitLayer`].
#[derive(Clone)]
pub struct Circuit<S> {
    shared: Arc<Shared>,
    inner: S,
}

impl<S> Service<RouteRequest> for Circuit<S>
where
    S: Service<RouteRequest, Response = Response, Error = BackendError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BackendError;
    type Future = BackendFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: RouteRequest) -> BackendFuture {
        let (attempt, transition) = self.shared.breaker.try_acquire();
        if let Some(t) = transition {
            self.shared.log(t);
        }
        let Some(attempt) = attempt else {
            return Box::pin(std::future::ready(Err(BackendError::CircuitOpen)));
        };
        let call = self.inner.call(request);
        let shared = self.shared.clone();
        Box::pin(async move {
            let result = call.await;
            let heard = match &result {
                Ok(_) => Some(true),
                Err(e) if e.is_backend_failure() => Some(false),
                Err(_) => None,
            };
            if let Some(success) = heard
                && let Some(t) = attempt.record(success)
            {
                shared.log(t);
            }
            result
        })
    }
}

impl Shared {
    fn log(&self, t: Transition) {
        self.metrics
            .circuit_transition(&self.route.name, t.from, t.to);
        tracing::warn!(
            route = %self.route.name,
            from = t.from.as_str(),
            to = t.to.as_str(),
            "circuit breaker on the Spin backend changed state"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy() -> CircuitPolicy {
        CircuitPolicy {
            consecutive_failures: 3,
            failure_rate: 0.5,
            min_requests: 10,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
            half_open_probes: 2,
        }
    }

    fn call(breaker: &CircuitBreaker, success: bool) -> Option<Option<Transition>> {
        let (attempt, _) = breaker.try_acquire();
        attempt.map(|a| a.record(success))
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_then_half_opens_and_closes() {
        let b = CircuitBreaker::new(policy());
        assert_eq!(call(&b, false), Some(None));
        assert_eq!(call(&b, false), Some(None));
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(
            call(&b, false),
            Some(Some(Transition {
                from: CircuitState::Closed,
                to: CircuitState::Open
            }))
        );
        assert_eq!(b.state(), CircuitState::Open);
        assert!(b.try_acquire().0.is_none(), "open refuses");

        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.state(), CircuitState::HalfOpen);
        let (p1, t) = b.try_acquire();
        assert_eq!(
            t,
            Some(Transition {
                from: CircuitState::Open,
                to: CircuitState::HalfOpen
            })
        );
        let (p2, _) = b.try_acquire();
        assert!(p1.is_some() && p2.is_some());
        assert!(b.try_acquire().0.is_none(), "only half_open_probes probes");
        assert_eq!(p1.map(|p| p.record(true)), Some(None));
        assert_eq!(
            p2.map(|p| p.record(true)),
            Some(Some(Transition {
                from: CircuitState::HalfOpen,
                to: CircuitState::Closed
            }))
        );
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens() {
        let b = CircuitBreaker::new(policy());
        for _ in 0..3 {
            call(&b, false);
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(
            call(&b, false),
            Some(Some(Transition {
                from: CircuitState::HalfOpen,
                to: CircuitState::Open
            }))
        );
        assert_eq!(b.state(), CircuitState::Open);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(b.state(), CircuitState::Open, "open_for restarts on reopen");
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_failure_rate_once_min_requests_seen() {
        let b = CircuitBreaker::new(policy());
        // Alternate: never 3 in a row, but 50% failures.
        for i in 0..9 {
            assert_eq!(call(&b, i % 2 == 0), Some(None), "call {i}");
        }
        // 10th request: 5 failures of 10 = 0.5 >= 0.5.
        assert_eq!(
            call(&b, false),
            Some(Some(Transition {
                from: CircuitState::Closed,
                to: CircuitState::Open
            }))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn old_outcomes_leave_the_window() {
        let b = CircuitBreaker::new(policy());
        for i in 0..8 {
            call(&b, i % 2 == 0);
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        // The 8 old outcomes expired: 2 new ones don't reach min_requests.
        assert_eq!(call(&b, true), Some(None));
        assert_eq!(call(&b, false), Some(None));
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_leave_the_window_a_bucket_at_a_time() {
        // 5 failures in 9 requests at t=0: never 3 in a row, under min_requests.
        let fill = |b: &CircuitBreaker| {
            for i in 0..9 {
                assert_eq!(call(b, i % 2 == 1), Some(None), "call {i}");
            }
        };
        let opened = Some(Some(Transition {
            from: CircuitState::Closed,
            to: CircuitState::Open,
        }));
        // Within the window (buckets of 1 s), the t=0 bucket still counts:
        // 6 failures of 10.
        let b = CircuitBreaker::new(policy());
        fill(&b);
        tokio::time::advance(Duration::from_millis(9_500)).await;
        assert_eq!(call(&b, false), opened);
        // A bucket later it has left: 1 request, under min_requests.
        let b = CircuitBreaker::new(policy());
        fill(&b);
        tokio::time::advance(Duration::from_millis(10_500)).await;
        assert_eq!(call(&b, false), Some(None));
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn the_window_holds_only_its_own_span_of_traffic() {
        let start = Instant::now();
        let mut w = Window::new(Duration::from_secs(10), start);
        // One outcome per millisecond for a minute, every tenth a failure.
        for ms in 0..60_000u64 {
            w.record(start + Duration::from_millis(ms), ms % 10 == 0);
        }
        // The last 10 s, to a bucket (1 s): 9,001 to 10,000 outcomes.
        assert!((9_001..=10_000).contains(&w.total), "total {}", w.total);
        assert_eq!(w.failed, w.total / 10, "failures {}", w.failed);
        assert_eq!(w.counts.iter().map(|c| c.0).sum::<u64>(), w.total);
        // A long silence empties it.
        w.record(start + Duration::from_secs(3_600), false);
        assert_eq!((w.total, w.failed), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_consecutive_count() {
        let b = CircuitBreaker::new(policy());
        call(&b, false);
        call(&b, false);
        call(&b, true);
        call(&b, false);
        call(&b, false);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_frees_its_slot() {
        let b = CircuitBreaker::new(policy());
        for _ in 0..3 {
            call(&b, false);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        let (p1, _) = b.try_acquire();
        let (p2, _) = b.try_acquire();
        drop(p1);
        let (p3, _) = b.try_acquire();
        assert!(p2.is_some() && p3.is_some());
    }
}
