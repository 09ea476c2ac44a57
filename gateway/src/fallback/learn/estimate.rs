//! One path's cost in one size class: a Peak-EWMA latency estimate, the
//! load it was measured under, and how much evidence is behind it.
//!
//! The update rule is tower's `load::PeakEwma` (itself Finagle's): a
//! sample above the estimate replaces it at once (the peak), a sample
//! below it pulls the estimate down by how much time passed since the
//! last update:
//!
//! ```text
//! decay    = exp(-elapsed / decay_time)
//! estimate = sample                                   if sample > estimate
//!          = estimate * decay + sample * (1 - decay)  otherwise
//! ```
//!
//! so a path is penalised at once for a slow answer and forgiven only as
//! time passes. Tower multiplies the estimate by `pending + 1` to price
//! the work waiting in front of a request. Here the estimate already
//! contains the queueing its samples met, so it is scaled by the work in
//! flight on the path now over the work in flight its samples met (kept
//! as an EWMA of its own): more work in flight than when it was measured
//! predicts a later answer, at once, before any of that work answers.
//!
//! Each path also keeps an EWMA of the CPU time its requests take
//! ([`Estimate::spend`]): the part of a request's cost that falls on the
//! other requests in flight, not on itself (see [`super::Learned`]).
//!
//! Tower lets an idle estimate decay towards zero, so a replica that was
//! slow is eventually tried again. Here the *evidence* decays instead:
//! each sample counts one, the count decays with `stale_time` and is
//! capped, and an estimate whose count falls below the minimum is stale,
//! which sends the route back to exploring that path (see
//! [`super::Learned`]). An old estimate is never trusted, and never
//! mistaken for a fast path.

use std::time::Duration;

/// Peak-EWMA of one path's latency in one size class.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimate {
    /// The latency estimate, seconds (0 before the first sample).
    value: f64,
    /// EWMA of the path's pending requests when its samples were sent.
    load: f64,
    /// Ordinary EWMA of the samples: the path's typical latency, where
    /// `value` is its recent worst.
    mean: f64,
    /// Samples behind the estimate, decayed with time and capped.
    weight: f64,
    /// Clock reading of the last update.
    at: Duration,
    /// Samples ever taken (not decayed).
    samples: u64,
    /// EWMA of the CPU time one request took, seconds.
    cpu: f64,
    /// CPU samples ever taken.
    cpu_samples: u64,
}

/// The time constants of an [`Estimate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decay {
    /// How fast the estimate forgets a peak (tower's `decay_ns`).
    pub estimate: Duration,
    /// How fast the evidence behind it fades when no sample comes.
    pub evidence: Duration,
    /// The most evidence an estimate holds (so that fading takes a
    /// bounded time however long the path was used).
    pub max_weight: f64,
}

impl Estimate {
    /// Takes one sample: the path answered in `took`, sent while
    /// `pending` other requests were in flight on it, at `now`.
    pub fn observe(&mut self, now: Duration, took: Duration, pending: u32, decay: &Decay) {
        let sample = took.as_secs_f64();
        let pending = f64::from(pending);
        if self.samples == 0 {
            self.value = sample;
            self.load = pending;
            self.mean = sample;
        } else {
            let elapsed = now.saturating_sub(self.at).as_secs_f64();
            let keep = (-elapsed / decay.estimate.as_secs_f64()).exp();
            if sample > self.value {
                // The peak: the worst recent latency is the estimate.
                self.value = sample;
            } else {
                self.value = self.value * keep + sample * (1.0 - keep);
            }
            // The load moves like an ordinary EWMA, with a floor on how far
            // one sample moves it so that back-to-back samples count.
            let step = (1.0 - keep).max(0.1);
            self.load = self.load * (1.0 - step) + pending * step;
            self.mean = self.mean * (1.0 - step) + sample * step;
        }
        self.weight = (self.weight(now, decay) + 1.0).min(decay.max_weight);
        self.at = now;
        self.samples += 1;
    }

    /// Takes one CPU sample: a request on the path took `cpu` of the
    /// machine's CPU time, on every thread. An ordinary EWMA (CPU time is
    /// a property of the work, not a peak to react to) moving at least a
    /// tenth of the way per sample.
    pub fn spend(&mut self, now: Duration, cpu: Duration, decay: &Decay) {
        let cpu = cpu.as_secs_f64();
        if self.cpu_samples == 0 {
            self.cpu = cpu;
        } else {
            let elapsed = now.saturating_sub(self.at).as_secs_f64();
            let step = (1.0 - (-elapsed / decay.estimate.as_secs_f64()).exp()).max(0.1);
            self.cpu = self.cpu * (1.0 - step) + cpu * step;
        }
        self.cpu_samples += 1;
    }

    /// The CPU time per request, seconds (`None` before any CPU sample).
    pub fn cpu(&self) -> Option<f64> {
        (self.cpu_samples > 0).then_some(self.cpu)
    }

    /// The latency estimate, seconds (`None` before any sample).
    pub fn latency(&self) -> Option<f64> {
        (self.samples > 0).then_some(self.value)
    }

    /// The typical latency, seconds: an ordinary EWMA of the samples, no
    /// peak (`None` before any sample).
    pub fn typical(&self) -> Option<f64> {
        (self.samples > 0).then_some(self.mean)
    }

    /// The predicted completion time of a request sent now, when
    /// `pending` requests are in flight on the path: the estimate, scaled
    /// by the work in front of it against the work its samples met.
    pub fn predict(&self, pending: u32) -> Option<f64> {
        self.latency().map(|value| self.scale(value, pending))
    }

    /// `latency` (this path's estimate or its typical latency) scaled by
    /// `pending` requests in front against the work its samples met.
    pub fn scale(&self, latency: f64, pending: u32) -> f64 {
        latency * (1.0 + f64::from(pending)) / (1.0 + self.load)
    }

    /// The evidence left at `now`: samples, faded by time.
    pub fn weight(&self, now: Duration, decay: &Decay) -> f64 {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        self.weight * (-elapsed / decay.evidence.as_secs_f64()).exp()
    }

    /// Samples ever taken.
    pub fn samples(&self) -> u64 {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECAY: Decay = Decay {
        estimate: Duration::from_secs(1),
        evidence: Duration::from_secs(10),
        max_weight: 32.0,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_peak_is_taken_at_once_and_forgotten_with_time() {
        let mut e = Estimate::default();
        assert_eq!(e.latency(), None);
        e.observe(ms(0), ms(10), 0, &DECAY);
        assert_eq!(e.latency(), Some(0.010));
        // A slow answer: the estimate is the peak at once.
        e.observe(ms(1), ms(100), 0, &DECAY);
        assert_eq!(e.latency(), Some(0.100));
        // A fast answer right after moves it very little...
        e.observe(ms(2), ms(10), 0, &DECAY);
        assert!(e.latency().unwrap() > 0.099, "{e:?}");
        // ...one five decay times later almost all the way.
        e.observe(ms(5_002), ms(10), 0, &DECAY);
        let v = e.latency().unwrap();
        assert!((0.010..0.011).contains(&v), "{v}");
    }

    #[test]
    fn the_typical_latency_has_no_peak() {
        let mut e = Estimate::default();
        e.observe(ms(0), ms(10), 0, &DECAY);
        e.observe(ms(10), ms(110), 0, &DECAY);
        // The peak is the estimate; the typical latency moved a tenth.
        assert_eq!(e.latency(), Some(0.110));
        let v = e.typical().unwrap();
        assert!((v - 0.020).abs() < 1e-9, "{v}");
        // After a long quiet spell one sample is the typical latency again.
        e.observe(ms(60_000), ms(5), 0, &DECAY);
        let v = e.typical().unwrap();
        assert!((v - 0.005).abs() < 1e-6, "{v}");
    }

    #[test]
    fn steady_samples_converge_on_their_value() {
        let mut e = Estimate::default();
        e.observe(ms(0), ms(80), 0, &DECAY);
        for i in 1..=200 {
            e.observe(ms(i * 50), ms(20), 0, &DECAY);
        }
        let v = e.latency().unwrap();
        assert!((v - 0.020).abs() < 1e-4, "{v}");
    }

    #[test]
    fn more_work_in_front_predicts_a_later_answer() {
        let mut e = Estimate::default();
        for i in 0..50 {
            e.observe(ms(i * 100), ms(10), 1, &DECAY);
        }
        // Measured with one other request in flight: that load is priced in.
        let same = e.predict(1).unwrap();
        assert!((same - 0.010).abs() < 1e-4, "{same}");
        assert!(e.predict(7).unwrap() > 3.0 * same);
        assert!(e.predict(0).unwrap() < same);
    }

    #[test]
    fn cpu_per_request_is_an_ordinary_average() {
        let mut e = Estimate::default();
        assert_eq!(e.cpu(), None);
        e.spend(ms(0), ms(10), &DECAY);
        assert_eq!(e.cpu(), Some(0.010));
        // One expensive request moves it a tenth of the way, not to the peak.
        e.spend(ms(1), ms(110), &DECAY);
        let v = e.cpu().unwrap();
        assert!((v - 0.020).abs() < 1e-9, "{v}");
        for i in 2..200 {
            e.spend(ms(i), ms(40), &DECAY);
        }
        let v = e.cpu().unwrap();
        assert!((v - 0.040).abs() < 1e-4, "{v}");
        // CPU samples are not latency samples.
        assert_eq!(e.samples(), 0);
        assert_eq!(e.latency(), None);
    }

    #[test]
    fn evidence_fades_when_no_sample_comes() {
        let mut e = Estimate::default();
        for i in 0..100 {
            e.observe(ms(i), ms(5), 0, &DECAY);
        }
        assert_eq!(e.samples(), 100);
        let now = ms(100);
        assert!((e.weight(now, &DECAY) - 32.0).abs() < 0.5, "capped");
        // One evidence time later, e^-1 of it is left; five later, nearly none.
        let later = e.weight(now + DECAY.evidence, &DECAY);
        assert!((later - 32.0 / std::f64::consts::E).abs() < 0.5, "{later}");
        assert!(e.weight(now + 5 * DECAY.evidence, &DECAY) < 0.25);
        // The estimate itself is kept: only trust in it fades.
        assert_eq!(e.latency(), Some(0.005));
    }
}
