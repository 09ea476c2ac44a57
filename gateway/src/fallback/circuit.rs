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
//! Time is tokio's, so tests drive it with `tokio::time::pause`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use crate::config::CircuitPolicy;

/// The breaker's observable state (exported as a gauge: 0, 1, 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests flow normally.
    Closed,
    /// Requests are refused without calling the backend.
    Open,
    /// A few probe requests test whether the backend recovered.
    HalfOpen,
}

impl CircuitState {
    /// Lowercase name for logs, metrics and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}

enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

struct Inner {
    state: State,
    consecutive_failures: u32,
    /// (time, failed) of recent outcomes while closed.
    window: VecDeque<(Instant, bool)>,
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
            policy,
            inner: Arc::new(Mutex::new(Inner {
                state: State::Closed,
                consecutive_failures: 0,
                window: VecDeque::new(),
            })),
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
        let now = Instant::now();
        let mut transition = None;
        if let State::Open { until } = inner.state {
            if now < until {
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
        while inner
            .window
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > policy.window)
        {
            inner.window.pop_front();
        }
        inner.window.push_back((now, !success));
        if success {
            inner.consecutive_failures = 0;
            return None;
        }
        inner.consecutive_failures += 1;
        let total = inner.window.len() as u32;
        let failed = inner.window.iter().filter(|(_, f)| *f).count() as u32;
        let rate_tripped = total >= policy.min_requests
            && f64::from(failed) / f64::from(total) >= policy.failure_rate;
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
