//! How persistently a route's native workers are all busy: the share of
//! the route's recent requests that, when they were sent, found every
//! native worker taken.
//!
//! Why the learned choice needs it: a wait for a native worker is worth
//! skipping on Wasm only when it is a *burst*, a queue that drains. Then
//! a request sent to Wasm answers sooner and its extra CPU is taken from
//! a queue that is going away. When nearly every request meets the queue,
//! it is the route's steady state: the workers keep the cores busy all
//! the time, throughput is the cores over the CPU per request, and a
//! request that skips the queue on Wasm only takes the CPU from the
//! requests ahead of it, at about twice native's CPU. Its own answer comes
//! sooner; the others', and the route's throughput, pay for it (with a
//! fixed number of clients in the loop, the mean latency is the clients
//! over the throughput, so it rises). Measured: pricing the wait in full
//! under a 16-client closed loop cost learned routing 28% of its
//! throughput (README, the fifth bench run).
//!
//! The share is a time-decayed ratio of two faded counts (every request,
//! and those that found the workers busy), so requests sent at the same
//! instant all count and a share older than the decay time fades.

use std::time::Duration;

/// The faded counts behind the share.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Saturation {
    /// Requests seen, faded.
    all: f64,
    /// Of them, those that found every native worker busy, faded.
    busy: f64,
    /// Clock reading of the last update.
    at: Duration,
}

impl Saturation {
    /// A request of the route was sent at `now`; `busy` says every native
    /// worker was taken. `decay` is how fast old requests fade.
    pub fn observe(&mut self, now: Duration, busy: bool, decay: Duration) {
        let fade = self.fade(now, decay);
        self.all = self.all * fade + 1.0;
        self.busy = self.busy * fade + if busy { 1.0 } else { 0.0 };
        self.at = self.at.max(now);
    }

    /// The share of recent requests that found every worker busy, 0..=1
    /// (0 before any request).
    pub fn share(&self) -> f64 {
        if self.all <= 0.0 {
            0.0
        } else {
            (self.busy / self.all).clamp(0.0, 1.0)
        }
    }

    fn fade(&self, now: Duration, decay: Duration) -> f64 {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        let tau = decay.as_secs_f64().max(f64::MIN_POSITIVE);
        (-elapsed / tau).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAU: Duration = Duration::from_secs(10);

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn requests_sent_at_one_instant_all_count() {
        let mut sat = Saturation::default();
        assert_eq!(sat.share(), 0.0);
        sat.observe(s(1.0), false, TAU);
        sat.observe(s(1.0), true, TAU);
        sat.observe(s(1.0), true, TAU);
        sat.observe(s(1.0), true, TAU);
        assert!((sat.share() - 0.75).abs() < 1e-12, "{sat:?}");
    }

    #[test]
    fn an_old_share_fades_behind_new_requests() {
        let mut sat = Saturation::default();
        for i in 0..100 {
            sat.observe(s(f64::from(i) * 0.01), true, TAU);
        }
        assert!((sat.share() - 1.0).abs() < 1e-12);
        // Ten decay times later, one request with a worker free outweighs
        // the hundred busy ones: 100 × e^-10 ≈ 0.005.
        sat.observe(s(101.0), false, TAU);
        assert!(sat.share() < 0.01, "{sat:?}");
        // A burst: half of a second's requests busy, after 10 s of free
        // workers, is a share of about a twentieth, not a steady state.
        let mut sat = Saturation::default();
        for i in 0..1000 {
            sat.observe(s(f64::from(i) * 0.01), false, TAU);
        }
        for i in 0..50 {
            sat.observe(s(10.0 + f64::from(i) * 0.01), true, TAU);
        }
        assert!(sat.share() > 0.05 && sat.share() < 0.1, "{sat:?}");
    }
}
