//! Outlier detection on the Spin replicas, as Envoy does it
//! (`consecutive_5xx`): a replica whose answers keep failing is *ejected*
//! (the balancer stops picking it) before the route's circuit breaker,
//! which sees every replica together, has to open.
//!
//! A replica is ejected after `consecutive_failures` connect errors, broken
//! exchanges or 5xx answers in a row (one success resets the count), unless
//! more than `max_ejected_percent` of the replicas would then be out: one
//! of several may always go, the last one never does, so a fault of the
//! whole app still reaches the breaker instead of emptying the pool. An
//! ejected replica comes back when a probe of Spin's health endpoint
//! answers 200 (`ExternalSpin` runs the probes).
//!
//! The state machine takes the time as an argument, so tests replay a
//! sequence of outcomes on a clock of their own.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::discover::ReplicaKey;
use crate::config::OutlierPolicy;

/// What one attempt on a replica said about its health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An answer below 500.
    Success,
    /// A connect error, a broken exchange or a 5xx.
    Failure,
}

/// What [`Outlier::record`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Counted; the replica stays in.
    Counted,
    /// This failure ejected the replica.
    Ejected,
    /// Ejection was due but the cap keeps the replica in.
    Spared,
}

#[derive(Default)]
struct Health {
    consecutive: u32,
    /// When it was ejected, on the detector's clock and the wall clock.
    ejected: Option<(Instant, SystemTime)>,
    ejections: u64,
    /// The balancer's task, woken when an ejected replica comes back.
    waker: Option<Waker>,
}

/// One replica's state, as `/readyz` reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaReport {
    /// `host:port`.
    pub address: String,
    /// `healthy` or `ejected`.
    pub state: &'static str,
    /// Failures in a row so far.
    pub consecutive_failures: u32,
    /// When it was ejected (Unix milliseconds), if it is.
    pub ejected_since_unix_ms: Option<u64>,
    /// For how long it has been ejected, if it is.
    pub ejected_for_ms: Option<u64>,
    /// Ejections since it was discovered.
    pub ejections: u64,
}

/// The detector over every known replica; shared by the balancer's
/// endpoints, the request path, the probes and `/readyz`.
pub struct Outlier {
    policy: OutlierPolicy,
    replicas: Mutex<BTreeMap<ReplicaKey, Health>>,
}

impl Outlier {
    /// A detector with no replicas yet.
    pub fn new(policy: OutlierPolicy) -> Self {
        Outlier {
            policy,
            replicas: Mutex::new(BTreeMap::new()),
        }
    }

    /// The policy it applies.
    pub fn policy(&self) -> &OutlierPolicy {
        &self.policy
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<ReplicaKey, Health>> {
        self.replicas.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A replica was discovered (kept as it is if already known).
    pub fn insert(&self, key: ReplicaKey) {
        self.lock().entry(key).or_default();
    }

    /// A replica left the set.
    pub fn remove(&self, key: &ReplicaKey) {
        self.lock().remove(key);
    }

    /// How many of `total` replicas may be ejected at once.
    pub fn max_ejected(total: usize, percent: u32) -> usize {
        let share = total * percent as usize / 100;
        share.max(1).min(total.saturating_sub(1))
    }

    /// Counts one outcome of `key` at `now`.
    pub fn record(&self, key: &ReplicaKey, outcome: Outcome, now: Instant) -> Verdict {
        let mut replicas = self.lock();
        let total = replicas.len();
        let ejected = replicas.values().filter(|h| h.ejected.is_some()).count();
        let Some(health) = replicas.get_mut(key) else {
            return Verdict::Counted;
        };
        if health.ejected.is_some() {
            // An answer still in flight when it was ejected.
            return Verdict::Counted;
        }
        match outcome {
            Outcome::Success => {
                health.consecutive = 0;
                Verdict::Counted
            }
            Outcome::Failure => {
                health.consecutive = health.consecutive.saturating_add(1);
                if health.consecutive < self.policy.consecutive_failures {
                    Verdict::Counted
                } else if ejected < Self::max_ejected(total, self.policy.max_ejected_percent) {
                    health.ejected = Some((now, SystemTime::now()));
                    health.ejections += 1;
                    Verdict::Ejected
                } else {
                    Verdict::Spared
                }
            }
        }
    }

    /// A probe succeeded: `key` is back, its count reset. Whether it had
    /// been ejected.
    pub fn restore(&self, key: &ReplicaKey) -> bool {
        let mut replicas = self.lock();
        let Some(health) = replicas.get_mut(key) else {
            return false;
        };
        health.consecutive = 0;
        let was = health.ejected.take().is_some();
        if let Some(waker) = health.waker.take() {
            waker.wake();
        }
        was
    }

    /// Whether `key` is ejected (`false` for an unknown replica).
    pub fn is_ejected(&self, key: &ReplicaKey) -> bool {
        self.lock().get(key).is_some_and(|h| h.ejected.is_some())
    }

    /// Whether `key` may be picked: pending while ejected, and woken when
    /// it comes back (the balancer's readiness).
    pub fn poll_admit(&self, key: &ReplicaKey, cx: &mut Context<'_>) -> Poll<()> {
        let mut replicas = self.lock();
        match replicas.get_mut(key) {
            Some(health) if health.ejected.is_some() => {
                health.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    /// Every replica's state at `now`, in address order.
    pub fn report(&self, now: Instant) -> Vec<ReplicaReport> {
        self.lock()
            .iter()
            .map(|(key, health)| ReplicaReport {
                address: key.as_str().to_string(),
                state: if health.ejected.is_some() {
                    "ejected"
                } else {
                    "healthy"
                },
                consecutive_failures: health.consecutive,
                ejected_since_unix_ms: health.ejected.map(|(_, wall)| {
                    let since = wall.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
                    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
                }),
                ejected_for_ms: health.ejected.map(|(at, _)| {
                    u64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(u64::MAX)
                }),
                ejections: health.ejections,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector(keys: &[&str], failures: u32, percent: u32) -> Outlier {
        let outlier = Outlier::new(OutlierPolicy {
            consecutive_failures: failures,
            max_ejected_percent: percent,
            probe_every: Duration::from_millis(100),
        });
        for key in keys {
            outlier.insert(ReplicaKey::new(key));
        }
        outlier
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_resets_the_count() {
        let outlier = detector(&["a:1", "b:1", "c:1"], 3, 50);
        let a = ReplicaKey::new("a:1");
        let t0 = Instant::now();
        use Outcome::{Failure as F, Success as S};
        for outcome in [F, F, S, F, F] {
            assert_eq!(outlier.record(&a, outcome, t0), Verdict::Counted);
        }
        assert!(!outlier.is_ejected(&a));
        assert_eq!(outlier.record(&a, F, t0), Verdict::Ejected);
        assert!(outlier.is_ejected(&a));
        // Answers still in flight change nothing while it is out.
        assert_eq!(outlier.record(&a, S, t0), Verdict::Counted);
        assert!(outlier.is_ejected(&a));
        let report = outlier.report(t0 + Duration::from_millis(2500));
        assert_eq!(report[0].address, "a:1");
        assert_eq!(report[0].state, "ejected");
        assert_eq!(report[0].ejected_for_ms, Some(2500));
        assert!(report[0].ejected_since_unix_ms.is_some());
        assert_eq!(report[0].ejections, 1);
        assert_eq!(report[1].state, "healthy");
        assert_eq!(report[1].ejected_for_ms, None);

        assert!(outlier.restore(&a));
        assert!(!outlier.is_ejected(&a));
        assert!(!outlier.restore(&a), "restoring twice is a no-op");
        // The count starts afresh.
        assert_eq!(outlier.record(&a, F, t0), Verdict::Counted);
        assert_eq!(outlier.report(t0)[0].consecutive_failures, 1);
    }

    #[test]
    fn the_cap_never_ejects_every_replica() {
        assert_eq!(Outlier::max_ejected(1, 100), 0);
        assert_eq!(Outlier::max_ejected(2, 10), 1);
        assert_eq!(Outlier::max_ejected(3, 50), 1);
        assert_eq!(Outlier::max_ejected(3, 100), 2);
        assert_eq!(Outlier::max_ejected(10, 50), 5);

        let outlier = detector(&["a:1", "b:1", "c:1"], 2, 50);
        let [a, b] = [ReplicaKey::new("a:1"), ReplicaKey::new("b:1")];
        let t0 = Instant::now();
        outlier.record(&a, Outcome::Failure, t0);
        assert_eq!(outlier.record(&a, Outcome::Failure, t0), Verdict::Ejected);
        outlier.record(&b, Outcome::Failure, t0);
        assert_eq!(outlier.record(&b, Outcome::Failure, t0), Verdict::Spared);
        assert!(!outlier.is_ejected(&b));
        // Once `a` is back, `b`'s next failure ejects it.
        outlier.restore(&a);
        assert_eq!(outlier.record(&b, Outcome::Failure, t0), Verdict::Ejected);

        let single = detector(&["only:1"], 1, 100);
        let only = ReplicaKey::new("only:1");
        assert_eq!(single.record(&only, Outcome::Failure, t0), Verdict::Spared);
    }

    #[test]
    fn an_ejected_replica_is_not_ready_until_restored() {
        let outlier = detector(&["a:1", "b:1"], 1, 50);
        let a = ReplicaKey::new("a:1");
        let mut cx = Context::from_waker(Waker::noop());
        assert!(outlier.poll_admit(&a, &mut cx).is_ready());
        outlier.record(&a, Outcome::Failure, Instant::now());
        assert!(outlier.poll_admit(&a, &mut cx).is_pending());
        outlier.restore(&a);
        assert!(outlier.poll_admit(&a, &mut cx).is_ready());
        outlier.remove(&a);
        assert!(
            outlier
                .report(Instant::now())
                .iter()
                .all(|r| r.address != "a:1")
        );
    }
}
