//! In-process statistics for the built-in `/dashboard`.
//!
//! The dashboard must work with nothing installed, so it cannot ask
//! Prometheus for percentiles. The gateway keeps an HDR histogram of
//! latency per route and backend (microsecond resolution, three
//! significant digits), plus fallback and shadow counts, and serves a
//! snapshot as JSON at `/admin/stats`. Throughput is the change in counts
//! between two snapshots.
//!
//! The same latencies are also kept per request-size class
//! ([`SizeClass`]), since a route's backends often see different work (the
//! size rule sends big bodies to native): `classes` compares backends on
//! equal work. Shadow pairs give the Wasm/native ratio of one request run
//! both ways; `paired` has their distribution per class, with the
//! byte-match rate. Memory is fixed: five classes per route and backend.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::size_class::SizeClass;

/// One histogram per size class, made when the class first sees traffic.
type PerClass<T> = [Option<T>; SizeClass::ALL.len()];

/// Paired ratios are kept in thousandths.
const RATIO_SCALE: f64 = 1000.0;

#[derive(Default)]
struct RouteStats {
    latency: BTreeMap<String, Histogram<u64>>,
    /// By backend, then size class.
    classes: BTreeMap<String, PerClass<Histogram<u64>>>,
    paired: PerClass<Pairs>,
    fallbacks: BTreeMap<String, u64>,
    shadow: BTreeMap<&'static str, u64>,
}

/// The shadow pairs of one route and size class.
struct Pairs {
    /// Wasm / native duration, in thousandths.
    ratios: Histogram<u64>,
    matched: u64,
    mismatched: u64,
}

/// A histogram from 1 to `high` at 3 significant digits that grows to fit
/// outliers. Valid bounds, so creation cannot fail; `None` if it ever did.
fn histogram(high: u64) -> Option<Histogram<u64>> {
    let mut h = Histogram::new_with_bounds(1, high, 3).ok()?;
    h.auto(true);
    Some(h)
}

/// A latency histogram: 1 µs .. 1 h.
fn latency_histogram() -> Option<Histogram<u64>> {
    histogram(3_600_000_000)
}

/// Records `value` in `slot`, making the histogram on first use.
fn record_in(slot: &mut Option<Histogram<u64>>, value: u64, make: fn() -> Option<Histogram<u64>>) {
    if slot.is_none() {
        *slot = make();
    }
    if let Some(h) = slot {
        let _ = h.record(value);
    }
}

/// Per-route, per-backend counters and latency histograms.
pub struct Stats {
    started: Instant,
    routes: Mutex<BTreeMap<String, RouteStats>>,
}

/// One backend of one route in a snapshot.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct BackendSnapshot {
    /// `spin-embedded`, `spin-external`, `native` or `gateway`.
    pub backend: String,
    /// Requests answered so far.
    pub count: u64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 95th percentile, milliseconds.
    pub p95_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Mean latency, milliseconds.
    pub mean_ms: f64,
}

/// One request-size class of one route: its backends on equal work.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ClassSnapshot {
    /// The class's label value (`le_1KiB` ...).
    pub size_class: &'static str,
    /// The class for people (`≤ 1 KiB` ...).
    pub label: &'static str,
    /// The backends that answered requests of this size.
    pub backends: Vec<BackendSnapshot>,
}

/// The shadow pairs of one route and size class: each pair is one request
/// answered by both paths.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct PairedSnapshot {
    /// The class's label value.
    pub size_class: &'static str,
    /// The class for people.
    pub label: &'static str,
    /// Pairs with a duration on both sides (the shadow answered).
    pub pairs: u64,
    /// 10th percentile of Wasm duration / native duration (`null`
    /// without pairs).
    pub ratio_p10: Option<f64>,
    /// Median ratio: above 1, Wasm is slower for these requests.
    pub ratio_p50: Option<f64>,
    /// 90th percentile ratio.
    pub ratio_p90: Option<f64>,
    /// Comparisons whose status and body bytes were the same.
    pub matched: u64,
    /// Comparisons that differed (or whose shadow failed).
    pub mismatched: u64,
    /// `matched / (matched + mismatched)`.
    pub match_rate: f64,
}

/// One route in a snapshot.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct RouteSnapshot {
    /// Route name.
    pub route: String,
    /// Its backends.
    pub backends: Vec<BackendSnapshot>,
    /// Its backends per request-size class (classes with traffic, smallest
    /// first).
    pub classes: Vec<ClassSnapshot>,
    /// Shadow pairs per size class (classes with comparisons, smallest
    /// first).
    pub paired: Vec<PairedSnapshot>,
    /// Fallbacks to native by reason.
    pub fallbacks: BTreeMap<String, u64>,
    /// Shadow comparison outcomes (`match`, `mismatch`, `dropped`,
    /// `skipped_busy`).
    pub shadow: BTreeMap<&'static str, u64>,
}

/// What `/admin/stats` returns.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Seconds since the gateway started.
    pub uptime_s: f64,
    /// Every route that saw traffic.
    pub routes: Vec<RouteSnapshot>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            routes: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Stats {
    fn with<R>(&self, route: &str, f: impl FnOnce(&mut RouteStats) -> R) -> R {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        // The key is copied once, when a route is first seen, not per request.
        if let Some(stats) = routes.get_mut(route) {
            return f(stats);
        }
        f(routes.entry(route.to_string()).or_default())
    }

    /// Records one answered request whose body was in `class`.
    pub fn request(&self, route: &str, backend: &str, class: SizeClass, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        self.with(route, |r| {
            match r.latency.get_mut(backend) {
                Some(h) => {
                    let _ = h.record(micros);
                }
                None => {
                    let mut slot = None;
                    record_in(&mut slot, micros, latency_histogram);
                    if let Some(h) = slot {
                        r.latency.insert(backend.to_string(), h);
                    }
                }
            }
            // The backend's key is copied once, when first seen.
            if !r.classes.contains_key(backend) {
                r.classes.insert(backend.to_string(), Default::default());
            }
            if let Some(classes) = r.classes.get_mut(backend) {
                record_in(&mut classes[class.index()], micros, latency_histogram);
            }
        });
    }

    /// Records one shadow pair: `ratio` is Wasm / native duration of the
    /// same request (`None` when the shadow gave no answer to time).
    pub fn pair(&self, route: &str, class: SizeClass, ratio: Option<f64>, matched: bool) {
        self.with(route, |r| {
            let slot = &mut r.paired[class.index()];
            if slot.is_none() {
                *slot = histogram(1_000_000_000).map(|ratios| Pairs {
                    ratios,
                    matched: 0,
                    mismatched: 0,
                });
            }
            let Some(pairs) = slot else { return };
            if matched {
                pairs.matched += 1;
            } else {
                pairs.mismatched += 1;
            }
            if let Some(ratio) = ratio.filter(|r| r.is_finite() && *r >= 0.0) {
                // At least one thousandth: a histogram value is >= 1.
                let _ = pairs.ratios.record(((ratio * RATIO_SCALE) as u64).max(1));
            }
        });
    }

    /// Records a fallback to native.
    pub fn fallback(&self, route: &str, reason: &str) {
        self.with(route, |r| {
            *r.fallbacks.entry(reason.to_string()).or_default() += 1
        });
    }

    /// Records a shadow outcome.
    pub fn shadow(&self, route: &str, result: &'static str) {
        self.with(route, |r| *r.shadow.entry(result).or_default() += 1);
    }

    /// The current numbers.
    pub fn snapshot(&self) -> Snapshot {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        Snapshot {
            uptime_s: self.started.elapsed().as_secs_f64(),
            routes: routes
                .iter()
                .map(|(route, r)| RouteSnapshot {
                    route: route.clone(),
                    backends: r
                        .latency
                        .iter()
                        .map(|(backend, h)| backend_snapshot(backend, h))
                        .collect(),
                    classes: class_snapshots(&r.classes),
                    paired: paired_snapshots(&r.paired),
                    fallbacks: r.fallbacks.clone(),
                    shadow: r.shadow.clone(),
                })
                .collect(),
        }
    }
}

fn backend_snapshot(backend: &str, h: &Histogram<u64>) -> BackendSnapshot {
    let ms = |micros: u64| micros as f64 / 1000.0;
    BackendSnapshot {
        backend: backend.to_string(),
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p95_ms: ms(h.value_at_quantile(0.95)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        mean_ms: h.mean() / 1000.0,
    }
}

/// Each class with traffic, smallest first, with the backends it saw.
fn class_snapshots(classes: &BTreeMap<String, PerClass<Histogram<u64>>>) -> Vec<ClassSnapshot> {
    SizeClass::ALL
        .into_iter()
        .filter_map(|class| {
            let backends: Vec<_> = classes
                .iter()
                .filter_map(|(backend, per)| {
                    let h = per[class.index()].as_ref()?;
                    Some(backend_snapshot(backend, h))
                })
                .collect();
            (!backends.is_empty()).then_some(ClassSnapshot {
                size_class: class.as_str(),
                label: class.label(),
                backends,
            })
        })
        .collect()
}

/// Each class with shadow comparisons, smallest first.
fn paired_snapshots(paired: &PerClass<Pairs>) -> Vec<PairedSnapshot> {
    SizeClass::ALL
        .into_iter()
        .filter_map(|class| {
            let p = paired[class.index()].as_ref()?;
            let compared = p.matched + p.mismatched;
            let pairs = p.ratios.len();
            let ratio =
                |q: f64| (pairs > 0).then(|| p.ratios.value_at_quantile(q) as f64 / RATIO_SCALE);
            Some(PairedSnapshot {
                size_class: class.as_str(),
                label: class.label(),
                pairs,
                ratio_p10: ratio(0.10),
                ratio_p50: ratio(0.50),
                ratio_p90: ratio(0.90),
                matched: p.matched,
                mismatched: p.mismatched,
                match_rate: if compared == 0 {
                    0.0
                } else {
                    p.matched as f64 / compared as f64
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_per_route_and_backend() {
        let stats = Stats::default();
        for ms in 1..=100 {
            stats.request(
                "validate",
                "native",
                SizeClass::Le1KiB,
                Duration::from_millis(ms),
            );
        }
        stats.request(
            "validate",
            "spin-embedded",
            SizeClass::Le1KiB,
            Duration::from_millis(7),
        );
        stats.fallback("validate", "timeout");
        stats.fallback("validate", "timeout");
        stats.shadow("validate", "match");
        let snap = stats.snapshot();
        assert_eq!(snap.routes.len(), 1);
        let route = &snap.routes[0];
        let native = route
            .backends
            .iter()
            .find(|b| b.backend == "native")
            .unwrap();
        assert_eq!(native.count, 100);
        assert!((native.p50_ms - 50.0).abs() < 0.5, "{native:?}");
        assert!((native.p99_ms - 99.0).abs() < 0.5, "{native:?}");
        let spin = route
            .backends
            .iter()
            .find(|b| b.backend == "spin-embedded")
            .unwrap();
        assert_eq!(spin.count, 1);
        assert_eq!(route.fallbacks["timeout"], 2);
        assert_eq!(route.shadow["match"], 1);
    }

    #[test]
    fn backends_are_compared_within_a_size_class() {
        let stats = Stats::default();
        // Native only ever saw big bodies, Wasm only small ones, except
        // for a few small ones native answered too.
        for _ in 0..10 {
            stats.request(
                "validate",
                "native",
                SizeClass::Le4MiB,
                Duration::from_millis(40),
            );
            stats.request(
                "validate",
                "spin-embedded",
                SizeClass::Le1KiB,
                Duration::from_millis(2),
            );
        }
        for _ in 0..3 {
            stats.request(
                "validate",
                "native",
                SizeClass::Le1KiB,
                Duration::from_millis(1),
            );
        }
        let snap = stats.snapshot();
        let route = &snap.routes[0];
        let classes: Vec<_> = route.classes.iter().map(|c| c.size_class).collect();
        assert_eq!(
            classes,
            ["le_1KiB", "le_4MiB"],
            "classes with traffic, in size order"
        );
        let small = &route.classes[0];
        assert_eq!(small.label, "≤ 1 KiB");
        let count = |c: &ClassSnapshot, backend: &str| {
            c.backends
                .iter()
                .find(|b| b.backend == backend)
                .map(|b| b.count)
        };
        assert_eq!(count(small, "native"), Some(3));
        assert_eq!(count(small, "spin-embedded"), Some(10));
        let big = &route.classes[1];
        assert_eq!(count(big, "native"), Some(10));
        assert_eq!(
            count(big, "spin-embedded"),
            None,
            "no Wasm data for big bodies"
        );
        // The overall figures are unchanged.
        assert_eq!(route.backends.iter().map(|b| b.count).sum::<u64>(), 23);
    }

    #[test]
    fn paired_ratios_per_class() {
        let stats = Stats::default();
        for i in 1..=100 {
            stats.pair(
                "validate",
                SizeClass::Le16KiB,
                Some(f64::from(i) / 10.0),
                i % 4 != 0,
            );
        }
        // A shadow that failed: compared (a mismatch), no ratio.
        stats.pair("validate", SizeClass::Le16KiB, None, false);
        stats.pair("validate", SizeClass::Gt4MiB, Some(0.5), true);
        let snap = stats.snapshot();
        let paired = &snap.routes[0].paired;
        assert_eq!(paired.len(), 2);
        let p = &paired[0];
        assert_eq!((p.size_class, p.label), ("le_16KiB", "≤ 16 KiB"));
        assert_eq!(p.pairs, 100);
        assert_eq!((p.matched, p.mismatched), (75, 26));
        assert!((p.match_rate - 75.0 / 101.0).abs() < 1e-9, "{p:?}");
        let (p10, p50, p90) = (
            p.ratio_p10.unwrap(),
            p.ratio_p50.unwrap(),
            p.ratio_p90.unwrap(),
        );
        assert!((p10 - 1.0).abs() < 0.01, "{p:?}");
        assert!((p50 - 5.0).abs() < 0.01, "{p:?}");
        assert!((p90 - 9.0).abs() < 0.01, "{p:?}");
        assert_eq!(paired[1].size_class, "gt_4MiB");
        assert_eq!(paired[1].ratio_p50, Some(0.5));
        assert!(snap.routes[0].classes.is_empty(), "pairs are not requests");
    }
}
