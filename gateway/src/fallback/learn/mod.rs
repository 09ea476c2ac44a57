//! Learned routing: an `auto` route with `fallback.native_above_bytes =
//! "learn"` sends each request to the path, Wasm or native, that is
//! predicted to answer it first, from what each path costs *now*.
//!
//! Per route and per request-size class ([`SizeClass`]) each path has a
//! Peak-EWMA latency estimate ([`estimate`]), fed by live answers and by
//! the paired shadow samples (which measure the path not chosen), and an
//! average of the CPU time its requests take. A request goes to the path
//! with the lower predicted cost:
//!
//! ```text
//! cost(wasm)   = latency(wasm) × (1 + pending(wasm)) / (1 + pending its samples met)
//!              + in_flight × cpu(wasm) / cores
//! cost(native) = compute(native) + wait(native) × counted
//!              + in_flight × cpu(native) / cores
//! wait(native) = 0                                              if pending(native) < workers
//!              = (pending(native) − workers + 1) × mean compute in flight / workers   otherwise
//! counted      = 1 − saturation × min(1, workers / cores)
//! ```
//!
//! The first line is the request's own completion time, tower's
//! Peak-EWMA prediction: the estimate, scaled by the requests in flight
//! on that path now against those its samples met, so a burst sent to one
//! path raises its price before any of it has answered (without it, ten
//! 10,000-item batches would go to Wasm before the first came back ten
//! seconds later).
//!
//! The native path is priced from two parts, because it reports them:
//! each answer says how long it waited for one of the native workers and
//! how long it then computed ([`crate::native::NativeTiming`]). Its
//! Peak-EWMA estimate is of the compute time alone, and its wait is
//! predicted from the queue in front of the workers *now*: nothing while
//! a worker is free, else the requests ahead of it, each costing the
//! compute estimate of its own class, spread over the workers. Priced as
//! one Peak-EWMA, a small batch that once waited behind two 10,000-item
//! batches would make native's *peak* its queue, hundreds of times its
//! compute, and keep the class on Wasm long after the queue was gone at
//! twice the CPU (measured under steady load, see the README). Wasm's peak
//! is its service time, so a single estimate suits it.
//!
//! The wait counts in full while it is a burst, and less as it becomes
//! the route's steady state: `saturation` is the share of the route's
//! recent requests that found every native worker busy ([`saturation`]).
//! A queue that drains is worth skipping on Wasm; a queue that every
//! request meets means the workers keep the cores busy all the time, and
//! a request that skips it takes the CPU from the requests ahead of it
//! at twice native's price, so the route's throughput falls (measured:
//! 28% under a 16-client closed loop, before this discount).
//!
//! The last term of each is what the request costs everybody else: both
//! paths run on the same cores (the embedded host and the native
//! workers), and `cpu` seconds of work spread over `cores` cores
//! delay each of the `in_flight` requests on the route, whichever path
//! they are on, by about `cpu / cores`. This is what keeps an idle path
//! from looking cheap for being idle while the other keeps the cores
//! busy, and what keeps a mid-size batch off a path that answers it a
//! little sooner while taking three times the CPU from every request
//! behind it. With nothing else in flight that term is zero and the
//! faster path wins; under load the cheaper path does, unless the other
//! is faster by more than it costs the rest. (CPU time is measured on the
//! gateway's own threads, so a Wasm path on an external Spin costs the
//! gateway only its proxying.)
//!
//! The choice has the guards a router between two runtimes needs:
//!
//! * **warm-up**: until both paths of a class have [`Tuning::min_samples`]
//!   samples, each path short of them is sent one request of the class at
//!   a time (`explore`), the others go to the cheaper path so far;
//! * **staleness**: the evidence behind an estimate fades with time; below
//!   half the minimum samples the estimate is stale;
//! * **hysteresis**: a class switches only when the other path is
//!   predicted cheaper by more than [`Tuning::hysteresis`], when the last
//!   [`Tuning::confirm`] answers on the current path each cost more than
//!   the other path typically does (an ordinary EWMA kept beside the
//!   peak: one slow answer is a peak, not a trend, and a typical answer
//!   held against the other's peak would almost never confirm), and only
//!   after the current path has answered `min_samples` requests since the
//!   last switch, so it cannot flap on every sample; the other path need
//!   not be fresh, only heard from in the last few seconds (a path the
//!   class does not use is refreshed by one exploring request in a
//!   hundred, which at a few requests a second never makes it fresh);
//! * **bounded exploration**: when the path not chosen has gone stale
//!   (no shadow pair refreshed it: shadow off, or the gateway busy), at
//!   most [`Tuning::explore_share`] of the class's requests go to it until
//!   it has fresh evidence again;
//! * **failures still win**: a path whose breaker is open is never chosen
//!   (`circuit-open`), and every fallback trigger applies as before; a
//!   Spin attempt that failed counts as a slow sample (twice the time the
//!   request took, its fallback included).
//!
//! What it can get wrong, and the README says so: an estimate is only as
//! good as the load its samples met, so when the load changes faster than
//! the estimates decay a class may move and move back as the two catch
//! up; the dwell time and hysteresis bound how often. The CPU term and
//! native's wait count this route's requests in flight, not other
//! routes' that share the cores and the native workers.
//!
//! Time is read from an injected [`Clock`], so the tests are
//! deterministic.

pub mod estimate;
pub mod rule;
pub mod saturation;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::telemetry::size_class::SizeClass;
use estimate::{Decay, Estimate};
use saturation::Saturation;

/// A source of time: seconds since some fixed origin.
pub trait Clock: Send + Sync + 'static {
    /// Time since the clock's origin.
    fn now(&self) -> Duration;
}

/// The monotonic clock, from the moment it was made.
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// The two paths of an `auto` route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    /// The Spin component (embedded host or external Spin).
    Wasm,
    /// The native handler.
    Native,
}

impl Path {
    fn index(self) -> usize {
        self as usize
    }

    fn other(self) -> Path {
        match self {
            Path::Wasm => Path::Native,
            Path::Native => Path::Wasm,
        }
    }

    /// `wasm` or `native` (metric label, span value).
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Wasm => "wasm",
            Path::Native => "native",
        }
    }
}

/// Why a request went where it went (`gateway.decision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The path with the lower predicted completion time.
    Learned,
    /// Warm-up, or the bounded share sent to refresh a stale estimate.
    Explore,
    /// Spin's breaker is open: native, whatever the estimates say.
    CircuitOpen,
}

impl Why {
    /// The `gateway.decision` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Learned => "learned",
            Why::Explore => "explore",
            Why::CircuitOpen => "circuit-open",
        }
    }
}

/// The knobs of the learned choice (the defaults are what
/// `native_above_bytes = "learn"` uses).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tuning {
    /// Samples each path needs in a class before the class picks a path
    /// (warm-up); also the answers a class's path must give before it may
    /// switch. An estimate whose faded evidence is below half of this is
    /// stale.
    pub min_samples: f64,
    /// How much faster (as a fraction) the other path must be predicted
    /// before a class switches to it.
    pub hysteresis: f64,
    /// The largest share of a class's requests sent to a stale path.
    pub explore_share: f64,
    /// Answers in a row on the current path, each costing more than the
    /// other path typically does (with the hysteresis margin), before a
    /// class switches: one slow answer (a peak the estimate takes at once)
    /// is not enough.
    pub confirm: u32,
    /// The estimates' time constants.
    pub decay: Decay,
    /// The cores the paths share: a request's CPU time, spread over them,
    /// is the delay it adds to each other request in flight.
    pub cores: f64,
    /// The native path's workers: a native request waits for one when
    /// this many are in flight.
    pub workers: f64,
}

impl Tuning {
    /// Evidence below which an estimate is stale: half the minimum
    /// samples.
    pub fn stale_below(&self) -> f64 {
        self.min_samples / 2.0
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            min_samples: 8.0,
            hysteresis: 0.25,
            // 1%: an exploring request on the slow path is a tail request
            // (a big batch on Wasm takes several times native's time), so
            // the share must stay below the p99's 1%.
            explore_share: 0.01,
            confirm: 4,
            decay: Decay {
                estimate: Duration::from_secs(2),
                evidence: Duration::from_secs(10),
                // Evidence of 8 samples is stale (below 4) after 10 s × ln 2
                // ≈ 7 s without a sample; of 32 (the cap), after ≈ 21 s.
                max_weight: 32.0,
            },
            cores: parallelism(),
            // The native pool is sized to the cores (`Native::new`).
            workers: parallelism(),
        }
    }
}

/// Evidence (in samples, faded) of a path heard from lately: half a
/// sample is one taken within the evidence time × ln 2 (7 s by default).
const HEARD: f64 = 0.5;

/// The machine's cores, as the gateway sizes its pools by them.
fn parallelism() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// One size class of one route.
#[derive(Clone, Copy, Debug, Default)]
struct Class {
    estimates: [Estimate; 2],
    /// The class's learned path, once both paths were measured.
    current: Option<Path>,
    /// Live answers on the current path since it was chosen.
    since_switch: u64,
    /// Live answers in a row on the current path that each took longer
    /// than the other path typically costs (with the hysteresis margin).
    slower_streak: u32,
    /// Requests sent to each path.
    requests: [u64; 2],
    /// Requests of this class in flight on each path.
    in_flight: [u32; 2],
    /// Requests sent to refresh a stale path (after warm-up).
    explored: u64,
    /// Exploration credit: each request adds `explore_share`, an
    /// exploring request spends 1, capped at 1 so none accumulates.
    credit: f64,
    /// Requests sent during warm-up.
    warmup: u64,
    /// Times the class changed path.
    switches: u64,
}

/// One decision, with what it was based on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    /// Where the request goes.
    pub path: Path,
    /// Why.
    pub why: Why,
    /// The predicted costs, seconds (`None`: not measured).
    pub predicted: [Option<f64>; 2],
    /// Requests in flight on the chosen path when it was sent (this one
    /// not counted).
    pub pending: u32,
}

impl Verdict {
    /// The predicted completion time on `path`, milliseconds.
    pub fn predicted_ms(&self, path: Path) -> Option<f64> {
        self.predicted[path.index()].map(|s| s * 1000.0)
    }
}

/// A route's learned choice: the estimates of both paths in every size
/// class. Kept in the route's policy, so it survives a reload that leaves
/// the route unchanged.
pub struct Learned {
    clock: Box<dyn Clock>,
    tuning: Tuning,
    state: Mutex<State>,
    pending: [AtomicU32; 2],
    /// Times any class took or changed its path: the crossover can only
    /// have moved when this did.
    changes: AtomicU64,
}

/// Every size class of a route.
type Classes = [Class; SizeClass::ALL.len()];

/// What the route's lock guards: its classes, and how persistently its
/// native workers are all busy.
#[derive(Clone, Copy, Debug, Default)]
struct State {
    classes: Classes,
    saturation: Saturation,
}

impl Learned {
    /// Fresh estimates with `tuning`, timed by `clock`.
    pub fn new(tuning: Tuning, clock: Box<dyn Clock>) -> Self {
        Learned {
            clock,
            tuning,
            state: Mutex::new(State::default()),
            pending: [AtomicU32::new(0), AtomicU32::new(0)],
            changes: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain numbers: a panic elsewhere cannot leave it
        // unusable, so a poisoned lock is taken over.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self, path: Path) -> u32 {
        self.pending[path.index()].load(Ordering::Acquire)
    }

    /// The predicted cost of a request of class `class` on each path
    /// (Wasm, native) when `pending` requests are in flight on each path
    /// (see the module docs), from the Peak-EWMA estimates.
    fn costs(&self, state: &State, class: usize, pending: [u32; 2]) -> [Option<f64>; 2] {
        self.costs_from(state, class, pending, Level::Peak)
    }

    fn costs_from(
        &self,
        state: &State,
        class: usize,
        pending: [u32; 2],
        level: Level,
    ) -> [Option<f64>; 2] {
        let in_flight = pending[0].saturating_add(pending[1]);
        let [wasm, native] = &state.classes[class].estimates;
        [
            level.of(wasm).map(|latency| {
                wasm.scale(latency, pending[0]) + self.cost_to_others(wasm, in_flight)
            }),
            level.of(native).map(|compute| {
                compute
                    + self.native_wait(state, class, level) * self.wait_counted(state)
                    + self.cost_to_others(native, in_flight)
            }),
        ]
    }

    /// How long a native request of `class` sent now waits for a worker:
    /// nothing while one is free; else the requests ahead of it (each at
    /// its class's compute estimate, or at `class`'s when its own has
    /// none) spread over the workers.
    fn native_wait(&self, state: &State, class: usize, level: Level) -> f64 {
        let classes = &state.classes;
        let native = Path::Native.index();
        let own = level.of(&classes[class].estimates[native]).unwrap_or(0.0);
        let (ahead, work) = classes.iter().fold((0u32, 0.0), |(n, work), c| {
            let k = c.in_flight[native];
            let compute = level.of(&c.estimates[native]).unwrap_or(own);
            (n.saturating_add(k), work + f64::from(k) * compute)
        });
        let workers = self.tuning.workers.max(1.0);
        let ahead = f64::from(ahead);
        if ahead < workers {
            return 0.0;
        }
        // The first of them to finish frees a worker: with `workers`
        // computing, that takes about a mean compute over the workers; the
        // ones still waiting take a mean compute over the workers each.
        (ahead - workers + 1.0) * (work / ahead) / workers
    }

    /// The part of native's wait a cost counts: all of it while the wait
    /// is a burst, less as it becomes the route's steady state (see
    /// [`saturation`]). What a request saves by skipping a queue that
    /// every request meets, it takes from the requests ahead of it, as
    /// far as the workers keep the cores busy (`workers / cores`; with
    /// fewer workers than cores, Wasm can run on cores they leave idle).
    fn wait_counted(&self, state: &State) -> f64 {
        let t = &self.tuning;
        let shared = (t.workers / t.cores.max(1.0)).clamp(0.0, 1.0);
        1.0 - state.saturation.share() * shared
    }

    /// What a request on a path with estimate `e` costs the `in_flight`
    /// others: its CPU time spread over the cores, for each of them.
    fn cost_to_others(&self, e: &Estimate, in_flight: u32) -> f64 {
        f64::from(in_flight) * e.cpu().unwrap_or(0.0) / self.tuning.cores.max(1.0)
    }

    /// Picks the path for a request of `class`; `circuit_open` says Spin's
    /// breaker refuses calls. The request counts as in flight on that path
    /// until [`Learned::answered`] hears of it.
    pub fn decide(&self, class: SizeClass, circuit_open: bool) -> Verdict {
        let now = self.clock.now();
        let t = &self.tuning;
        let pending = [self.pending(Path::Wasm), self.pending(Path::Native)];
        let mut state = self.state();
        // Every request counts towards how persistently native's workers
        // are busy, whichever path it is sent to.
        let busy = f64::from(pending[Path::Native.index()]) >= t.workers.max(1.0);
        state.saturation.observe(now, busy, t.decay.estimate);
        let predicted = self.costs(&state, class.index(), pending);
        let c = &mut state.classes[class.index()];
        let weight = [
            c.estimates[0].weight(now, &t.decay),
            c.estimates[1].weight(now, &t.decay),
        ];
        let fresh = |p: Path| weight[p.index()] >= t.stale_below();
        let measured = c
            .estimates
            .iter()
            .all(|e| e.samples() as f64 >= t.min_samples);
        let (path, why) = if circuit_open {
            (Path::Native, Why::CircuitOpen)
        } else if c.current.is_none() && !measured {
            // Warm-up: a path still short of samples gets a request when
            // none of this class is in flight on it (the one given fewer
            // requests first, Wasm on a tie), so a class measures each path
            // one request at a time and never sends a burst of big batches
            // to a path that may take ten times longer. Meanwhile the rest
            // go to the cheaper path on the evidence so far.
            let short = |p: Path| {
                (c.estimates[p.index()].samples() as f64) < t.min_samples
                    && c.in_flight[p.index()] == 0
            };
            let measure = match (short(Path::Wasm), short(Path::Native)) {
                (true, true) if c.requests[1] < c.requests[0] => Some(Path::Native),
                (true, _) => Some(Path::Wasm),
                (false, true) => Some(Path::Native),
                (false, false) => None,
            };
            match measure {
                Some(path) => {
                    c.warmup += 1;
                    (path, Why::Explore)
                }
                None => (cheaper(predicted), Why::Learned),
            }
        } else {
            let current = self.settle(c, predicted, now);
            let other = current.other();
            c.credit = (c.credit + t.explore_share).min(1.0);
            if !fresh(other) && c.credit >= 1.0 {
                c.credit -= 1.0;
                c.explored += 1;
                (other, Why::Explore)
            } else {
                (current, Why::Learned)
            }
        };
        c.requests[path.index()] += 1;
        c.in_flight[path.index()] += 1;
        self.pending[path.index()].fetch_add(1, Ordering::AcqRel);
        Verdict {
            path,
            why,
            predicted,
            pending: pending[path.index()],
        }
    }

    /// The class's path after this decision: the first choice once both
    /// paths are measured, then a switch only past the hysteresis and the
    /// dwell.
    fn settle(&self, c: &mut Class, predicted: [Option<f64>; 2], now: Duration) -> Path {
        let t = &self.tuning;
        let faster = cheaper(predicted);
        let Some(current) = c.current else {
            c.current = Some(faster);
            c.since_switch = 0;
            self.changes.fetch_add(1, Ordering::AcqRel);
            return faster;
        };
        let other = current.other();
        let weight = |p: Path| c.estimates[p.index()].weight(now, &t.decay);
        let stale = |p: Path| weight(p) < t.stale_below();
        // Heard from lately: a sample within the last few seconds. A path
        // the class does not use is refreshed only by shadow runs and the
        // capped exploration, which at a few requests a second leave it
        // stale for good; its latest sample is still news, and with the
        // hysteresis and the confirming answers it may win the class.
        let heard = |p: Path| weight(p) >= HEARD;
        let beats = match (predicted[other.index()], predicted[current.index()]) {
            (Some(o), Some(cur)) => o * (1.0 + t.hysteresis) < cur,
            (Some(_), None) => true,
            _ => false,
        };
        let dwelt = c.since_switch as f64 >= t.min_samples;
        let confirmed = c.slower_streak >= t.confirm;
        // A stale current path with a proven other one switches once it
        // has dwelt: its estimate is no longer evidence. (Not before: a
        // path just switched to has few samples, and would hand the class
        // straight back.)
        let faded = dwelt && stale(current) && !stale(other);
        if (beats && dwelt && confirmed && heard(other)) || faded {
            c.current = Some(other);
            c.since_switch = 0;
            c.slower_streak = 0;
            c.switches += 1;
            self.changes.fetch_add(1, Ordering::AcqRel);
            return other;
        }
        current
    }

    /// A request sent by [`Learned::decide`] to `path` is done: `took` is
    /// the sample it gives (`None`: no sample, e.g. the client went away),
    /// taken with `pending` other requests in flight on the path when it
    /// was sent; `queued` of it was spent waiting for a native worker
    /// (zero on Wasm).
    pub fn answered(
        &self,
        class: SizeClass,
        path: Path,
        pending: u32,
        took: Option<Duration>,
        queued: Duration,
    ) {
        let counter = &self.pending[path.index()];
        let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        {
            let mut state = self.state();
            let n = &mut state.classes[class.index()].in_flight[path.index()];
            *n = n.saturating_sub(1);
        }
        if let Some(took) = took {
            self.sample(class, path, pending, Sample { took, queued }, true);
        }
    }

    /// How many times a class took or changed its path so far: when this
    /// has not moved, neither has the [`Learned::crossover`].
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Where the learned choice changes path now (see [`Crossover`]).
    pub fn crossover(&self) -> Option<Crossover> {
        crossover_of(&self.state().classes)
    }

    /// `path`'s latency estimate in `class`, seconds.
    pub fn latency(&self, class: SizeClass, path: Path) -> Option<f64> {
        self.state().classes[class.index()].estimates[path.index()].latency()
    }

    /// `path`'s CPU time per request in `class`, seconds.
    pub fn cpu(&self, class: SizeClass, path: Path) -> Option<f64> {
        self.state().classes[class.index()].estimates[path.index()].cpu()
    }

    /// A request of `class` on `path` took `cpu` of the gateway's CPU
    /// time, all its work done (reported after [`Learned::answered`]).
    pub fn spent(&self, class: SizeClass, path: Path, cpu: Duration) {
        let now = self.clock.now();
        let decay = self.tuning.decay;
        self.state().classes[class.index()].estimates[path.index()].spend(now, cpu, &decay);
    }

    /// A shadow run measured `path` on a request of `class` (the path not
    /// chosen for it): it took `took`, `queued` of it waiting for a native
    /// worker.
    pub fn shadow(&self, class: SizeClass, path: Path, took: Duration, queued: Duration) {
        self.sample(
            class,
            path,
            self.pending(path),
            Sample { took, queued },
            false,
        );
    }

    fn sample(&self, class: SizeClass, path: Path, pending: u32, s: Sample, live: bool) {
        let now = self.clock.now();
        let all = [self.pending(Path::Wasm), self.pending(Path::Native)];
        let in_flight = all[0].saturating_add(all[1]);
        let t = &self.tuning;
        let mut state = self.state();
        // The estimate is of the path's own time: native's wait for a
        // worker is predicted from its queue when a request is sent.
        let own = s.took.saturating_sub(s.queued);
        state.classes[class.index()].estimates[path.index()].observe(now, own, pending, &t.decay);
        if live && state.classes[class.index()].current == Some(path) {
            // Against what the other path *typically* costs: an answer is
            // a typical value, so held against the other's peak it would
            // almost never confirm a switch, and a class would stay on a
            // path long after the other became cheaper.
            let other =
                self.costs_from(&state, class.index(), all, Level::Typical)[path.other().index()];
            let counted = self.wait_counted(&state);
            let c = &mut state.classes[class.index()];
            c.since_switch += 1;
            // The answer's cost (its own time, the part of its wait a cost
            // counts, and what its path's CPU costs the others) against the
            // other path's predicted cost.
            let cost = own.as_secs_f64()
                + s.queued.as_secs_f64() * counted
                + self.cost_to_others(&c.estimates[path.index()], in_flight);
            let slower = other.is_some_and(|o| cost > o * (1.0 + t.hysteresis));
            c.slower_streak = if slower { c.slower_streak + 1 } else { 0 };
        }
    }

    /// The estimates of every class that saw traffic, and the crossover
    /// they imply.
    pub fn snapshot(&self) -> LearnedSnapshot {
        let now = self.clock.now();
        let t = &self.tuning;
        let pending = [self.pending(Path::Wasm), self.pending(Path::Native)];
        let in_flight = pending[0].saturating_add(pending[1]);
        let state = self.state();
        let rows: Vec<ClassRow> = SizeClass::ALL
            .into_iter()
            .filter_map(|class| {
                let c = &state.classes[class.index()];
                let total = c.requests[0] + c.requests[1];
                let any = c.estimates.iter().any(|e| e.samples() > 0);
                let predicted = self.costs(&state, class.index(), pending);
                (total > 0 || any).then(|| {
                    let path = |p: Path| {
                        let e = &c.estimates[p.index()];
                        PathRow {
                            estimate_ms: e.latency().map(|s| s * 1000.0),
                            wait_ms: (p == Path::Native && e.latency().is_some()).then(|| {
                                self.native_wait(&state, class.index(), Level::Peak) * 1000.0
                            }),
                            predicted_ms: predicted[p.index()].map(|s| s * 1000.0),
                            cpu_ms: e.cpu().map(|s| s * 1000.0),
                            evidence: e.weight(now, &t.decay),
                            samples: e.samples(),
                            requests: c.requests[p.index()],
                            share: if total == 0 {
                                0.0
                            } else {
                                c.requests[p.index()] as f64 / total as f64
                            },
                        }
                    };
                    ClassRow {
                        size_class: class.as_str(),
                        label: class.label(),
                        choice: c.current,
                        wasm: path(Path::Wasm),
                        native: path(Path::Native),
                        explored: c.explored,
                        warmup: c.warmup,
                        switches: c.switches,
                    }
                })
            })
            .collect();
        let crossover = crossover_of(&state.classes);
        LearnedSnapshot {
            classes: rows,
            crossover,
            tuning: TuningRow {
                min_samples: t.min_samples,
                hysteresis: t.hysteresis,
                explore_share: t.explore_share,
                confirm: t.confirm,
                estimate_decay_ms: t.decay.estimate.as_millis() as u64,
                evidence_decay_ms: t.decay.evidence.as_millis() as u64,
                cores: t.cores,
                workers: t.workers,
            },
            in_flight,
            saturation: state.saturation.share(),
            wait_counted: self.wait_counted(&state),
        }
    }
}

/// The path with the lower predicted cost; a path with a prediction over
/// one without; native when neither has one.
fn cheaper(predicted: [Option<f64>; 2]) -> Path {
    match predicted {
        [Some(w), Some(n)] if n < w => Path::Native,
        [Some(_), Some(_)] | [Some(_), None] => Path::Wasm,
        [None, _] => Path::Native,
    }
}

/// Where the classes' choices change path.
fn crossover_of(classes: &Classes) -> Option<Crossover> {
    crossover(
        SizeClass::ALL
            .into_iter()
            .filter_map(|class| classes[class.index()].current.map(|p| (class, p))),
    )
}

/// Where the learned choice changes path, from the classes that have a
/// choice (smallest first): one boundary, or none when one path serves
/// every class or the choices change more than once.
fn crossover(choices: impl Iterator<Item = (SizeClass, Path)>) -> Option<Crossover> {
    let choices: Vec<_> = choices.collect();
    let flips: Vec<_> = choices.windows(2).filter(|w| w[0].1 != w[1].1).collect();
    match flips.as_slice() {
        [flip] => {
            let (below, above) = (flip[0], flip[1]);
            // The boundary is the lower edge of the first class of the new
            // path: bodies larger than the class below's upper limit.
            let bytes = below.0.upper_bytes().unwrap_or(u64::MAX);
            Some(Crossover {
                bytes,
                native: if above.1 == Path::Native {
                    "above"
                } else {
                    "below"
                },
                between: [below.0.as_str(), above.0.as_str()],
            })
        }
        _ => None,
    }
}

/// Where the learned choice changes path.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Crossover {
    /// Bodies larger than this many bytes get the other path (the
    /// learned counterpart of `native_above_bytes`).
    pub bytes: u64,
    /// `above`: native serves bodies larger than `bytes` (the shape of a
    /// CPU-bound route); `below`: native serves the smaller ones.
    pub native: &'static str,
    /// The two classes on either side (`size_class` values).
    pub between: [&'static str; 2],
}

/// Which of an estimate's figures a cost is made from.
#[derive(Clone, Copy, Debug)]
enum Level {
    /// The Peak-EWMA estimate: what decisions are made on.
    Peak,
    /// The typical latency: what one answer is held against.
    Typical,
}

impl Level {
    fn of(self, e: &Estimate) -> Option<f64> {
        match self {
            Level::Peak => e.latency(),
            Level::Typical => e.typical(),
        }
    }
}

/// One answer's times, as a sample of its path.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// From the choice to the answer's head.
    took: Duration,
    /// The part of it spent waiting for a native worker.
    queued: Duration,
}

/// One path of one class in `/admin/stats`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct PathRow {
    /// The Peak-EWMA latency estimate, ms (`null` before any sample); on
    /// native, of the time after a worker took the request (its wait is
    /// `wait_ms`).
    pub estimate_ms: Option<f64>,
    /// Native only: how long a request sent now would wait for a worker,
    /// ms, from the queue in front of the workers now (`null` on Wasm,
    /// whose waits are in its estimate, and before any sample); its
    /// predicted cost counts `wait_counted` of it.
    pub wait_ms: Option<f64>,
    /// Predicted cost of a request sent now, ms: its completion time
    /// plus what its CPU time costs the requests in flight.
    pub predicted_ms: Option<f64>,
    /// The CPU time a request takes on this path, ms (`null` before the
    /// first report).
    pub cpu_ms: Option<f64>,
    /// Samples behind the estimate, faded with time (trusted from
    /// `tuning.min_samples`).
    pub evidence: f64,
    /// Samples ever taken (live answers and shadow runs).
    pub samples: u64,
    /// Requests this path was given.
    pub requests: u64,
    /// Its share of the class's requests.
    pub share: f64,
}

/// One class of a learned route in `/admin/stats`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ClassRow {
    /// The class's label value.
    pub size_class: &'static str,
    /// The class for people.
    pub label: &'static str,
    /// The learned path (`null` during warm-up).
    pub choice: Option<Path>,
    /// The Wasm path.
    pub wasm: PathRow,
    /// The native path.
    pub native: PathRow,
    /// Requests sent to refresh a stale path.
    pub explored: u64,
    /// Requests sent during warm-up.
    pub warmup: u64,
    /// Times the class changed path.
    pub switches: u64,
}

/// The tuning in force, for people reading the figures.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct TuningRow {
    /// See [`Tuning::min_samples`].
    pub min_samples: f64,
    /// See [`Tuning::hysteresis`].
    pub hysteresis: f64,
    /// See [`Tuning::explore_share`].
    pub explore_share: f64,
    /// See [`Tuning::confirm`].
    pub confirm: u32,
    /// How fast an estimate forgets a peak, ms.
    pub estimate_decay_ms: u64,
    /// How fast the evidence behind an estimate fades, ms.
    pub evidence_decay_ms: u64,
    /// See [`Tuning::cores`].
    pub cores: f64,
    /// See [`Tuning::workers`].
    pub workers: f64,
}

/// A learned route in `/admin/stats` (`learned`).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct LearnedSnapshot {
    /// Classes that saw traffic, smallest first.
    pub classes: Vec<ClassRow>,
    /// Where the choice changes path (`null`: one path everywhere, not
    /// learned yet, or more than one change).
    pub crossover: Option<Crossover>,
    /// The tuning in force.
    pub tuning: TuningRow,
    /// Requests in flight on the route now (both paths): what the
    /// predictions are for.
    pub in_flight: u32,
    /// The share of the route's recent requests (faded over
    /// `tuning.estimate_decay_ms`, as a peak is) that found every native
    /// worker busy.
    pub saturation: f64,
    /// The part of native's wait (`wait_ms`) that its predicted cost
    /// counts: 1 while the wait is a burst, down to `1 − saturation` as
    /// it becomes the route's steady state (when the workers keep every
    /// core busy, skipping their queue on Wasm takes the CPU from the
    /// requests ahead).
    pub wait_counted: f64,
}

#[cfg(test)]
mod tests;
