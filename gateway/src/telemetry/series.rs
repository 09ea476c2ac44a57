//! Per-second aggregates of the last 15 minutes, for the dashboard's charts.
//!
//! [`super::stats::Stats`] answers "how fast since start"; a chart over
//! time needs each second on its own. The gateway keeps a ring of
//! [`SECONDS`] one-second slots per route and backend (request count and a
//! small log-bucket latency histogram, from which p50/p99 are read to
//! within about ±20%) and per route (fallbacks by reason, shadow results).
//! A slot is reset when its second comes round again, so memory is fixed
//! (allocated when a route or backend is first seen, at most [`MAX_ROUTES`]
//! × [`MAX_BACKENDS`]) and recording is constant time: one lock, a short
//! scan of the route's backends and an array increment.
//!
//! Shadow results are finished off the request path, in the shadow worker;
//! [`Series::follow_shadow`] reads their running totals once a second.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::stats::Stats;

/// Seconds kept: 15 minutes.
pub const SECONDS: usize = 900;
/// Latency buckets: bucket `i` holds `[2^(i/2), 2^((i+1)/2))` microseconds.
pub const BUCKETS: usize = 52;
/// Routes kept; traffic of further routes is not charted.
pub const MAX_ROUTES: usize = 64;
/// Backends per route (`spin-embedded`, `spin-external`, `native`, `gateway`).
pub const MAX_BACKENDS: usize = 4;
/// Fallback reasons per route; the reasons are a small closed set.
pub const MAX_REASONS: usize = 8;
/// Shadow results, in the order they are counted.
pub const SHADOW_RESULTS: [&str; 3] = ["match", "mismatch", "dropped"];

#[derive(Clone, Copy)]
struct Latency {
    count: u32,
    buckets: [u32; BUCKETS],
}

#[derive(Clone, Copy, Default)]
struct Events {
    fallbacks: [u32; MAX_REASONS],
    shadow: [u32; 3],
}

/// One slot per second of the window, each stamped with its second.
struct Ring<T> {
    stamps: Box<[u64]>,
    slots: Box<[T]>,
}

impl<T: Copy> Ring<T> {
    fn new(empty: T) -> Ring<T> {
        Ring {
            stamps: vec![u64::MAX; SECONDS].into_boxed_slice(),
            slots: vec![empty; SECONDS].into_boxed_slice(),
        }
    }

    /// The slot of `second`, emptied if it last held an older one.
    fn at(&mut self, second: u64, empty: T) -> &mut T {
        let i = (second % SECONDS as u64) as usize;
        if self.stamps[i] != second {
            self.stamps[i] = second;
            self.slots[i] = empty;
        }
        &mut self.slots[i]
    }

    /// The slots of the window ending at `now`, oldest first.
    fn window(&self, now: u64) -> impl Iterator<Item = (u64, &T)> {
        let from = now.saturating_sub(SECONDS as u64 - 1);
        (from..=now).filter_map(move |second| {
            let i = (second % SECONDS as u64) as usize;
            (self.stamps[i] == second).then(|| (second, &self.slots[i]))
        })
    }
}

const NO_LATENCY: Latency = Latency {
    count: 0,
    buckets: [0; BUCKETS],
};

struct BackendSeries {
    backend: String,
    ring: Ring<Latency>,
}

struct RouteSeries {
    route: String,
    backends: Vec<BackendSeries>,
    reasons: Vec<&'static str>,
    events: Ring<Events>,
    /// Shadow totals last read from [`Stats`].
    shadow_seen: [u64; 3],
}

impl RouteSeries {
    fn new(route: &str) -> RouteSeries {
        RouteSeries {
            route: route.to_string(),
            backends: Vec::new(),
            reasons: Vec::new(),
            events: Ring::new(Events::default()),
            shadow_seen: [0; 3],
        }
    }
}

/// The per-second aggregates of every route.
pub struct Series {
    started: Instant,
    started_unix: u64,
    routes: Mutex<Vec<RouteSeries>>,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            routes: Mutex::new(Vec::new()),
        }
    }
}

/// The latency bucket of `micros`.
fn bucket(micros: u64) -> usize {
    let micros = micros.max(1);
    let log2 = 63 - micros.leading_zeros() as usize;
    // The upper half of [2^k, 2^(k+1)) starts at 2^k·√2: micros² ≥ 2^(2k+1).
    let upper = u128::from(micros) * u128::from(micros) >= 1u128 << (2 * log2 + 1);
    (2 * log2 + usize::from(upper)).min(BUCKETS - 1)
}

/// A bucket's representative value (its geometric middle), milliseconds.
fn bucket_ms(i: usize) -> f64 {
    2f64.powf((i as f64 + 0.5) / 2.0) / 1000.0
}

/// The `q` quantile of a slot's histogram, milliseconds.
fn quantile_ms(latency: &Latency, q: f64) -> f64 {
    let rank = (q * f64::from(latency.count)).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    for (i, n) in latency.buckets.iter().enumerate() {
        seen += u64::from(*n);
        if seen >= rank {
            return bucket_ms(i);
        }
    }
    bucket_ms(BUCKETS - 1)
}

/// One second of one backend.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct LatencyPoint {
    /// Unix second.
    pub t: u64,
    /// Requests answered in that second.
    pub count: u32,
    /// Median latency (±20%), milliseconds.
    pub p50_ms: f64,
    /// 99th percentile (±20%), milliseconds.
    pub p99_ms: f64,
}

/// A count in one second.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct CountPoint {
    /// Unix second.
    pub t: u64,
    /// How many.
    pub count: u32,
}

/// One backend of a route over the window.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct BackendLine {
    /// The backend.
    pub backend: String,
    /// Seconds with traffic, oldest first.
    pub points: Vec<LatencyPoint>,
}

/// One named count over the window (a fallback reason, a shadow result).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct CountLine {
    /// The reason or result.
    pub name: String,
    /// Seconds where it happened, oldest first.
    pub points: Vec<CountPoint>,
}

/// One route over the window.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct RouteLines {
    /// Route name.
    pub route: String,
    /// Latency and throughput per backend.
    pub backends: Vec<BackendLine>,
    /// Fallbacks to native, by reason.
    pub fallbacks: Vec<CountLine>,
    /// Shadow comparisons, by result.
    pub shadow: Vec<CountLine>,
}

/// What `/admin/series` returns.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct SeriesSnapshot {
    /// The current Unix second (the window's right edge).
    pub now: u64,
    /// The window's length, seconds.
    pub seconds: usize,
    /// Routes that saw traffic in the window.
    pub routes: Vec<RouteLines>,
}

impl Series {
    fn lock(&self) -> MutexGuard<'_, Vec<RouteSeries>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn second(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn with_route(&self, route: &str, f: impl FnOnce(&mut RouteSeries, u64)) {
        let second = self.second();
        let mut routes = self.lock();
        if let Some(r) = routes.iter_mut().find(|r| r.route == route) {
            return f(r, second);
        }
        if routes.len() < MAX_ROUTES {
            routes.push(RouteSeries::new(route));
            if let Some(r) = routes.last_mut() {
                f(r, second);
            }
        }
    }

    /// Records one answered request.
    pub fn request(&self, route: &str, backend: &str, took: Duration) {
        let b = bucket(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        self.with_route(route, |r, second| {
            let at = match r.backends.iter().position(|s| s.backend == backend) {
                Some(i) => i,
                None if r.backends.len() < MAX_BACKENDS => {
                    r.backends.push(BackendSeries {
                        backend: backend.to_string(),
                        ring: Ring::new(NO_LATENCY),
                    });
                    r.backends.len() - 1
                }
                None => return,
            };
            let slot = r.backends[at].ring.at(second, NO_LATENCY);
            slot.count = slot.count.saturating_add(1);
            slot.buckets[b] = slot.buckets[b].saturating_add(1);
        });
    }

    /// Records a fallback to native.
    pub fn fallback(&self, route: &str, reason: &'static str) {
        self.with_route(route, |r, second| {
            let at = match r.reasons.iter().position(|known| *known == reason) {
                Some(i) => i,
                None if r.reasons.len() < MAX_REASONS => {
                    r.reasons.push(reason);
                    r.reasons.len() - 1
                }
                None => return,
            };
            let slot = r.events.at(second, Events::default());
            slot.fallbacks[at] = slot.fallbacks[at].saturating_add(1);
        });
    }

    /// Takes a route's running shadow totals (match, mismatch, dropped):
    /// what they grew by since the last call lands in the current second.
    pub fn shadow_totals(&self, route: &str, totals: [u64; 3]) {
        self.with_route(route, |r, second| {
            let slot = r.events.at(second, Events::default());
            for (i, total) in totals.into_iter().enumerate() {
                let grew = total.saturating_sub(r.shadow_seen[i]);
                slot.shadow[i] =
                    slot.shadow[i].saturating_add(u32::try_from(grew).unwrap_or(u32::MAX));
                r.shadow_seen[i] = r.shadow_seen[i].max(total);
            }
        });
    }

    /// Reads the shadow totals from `stats` once a second while both live
    /// (a task on the current Tokio runtime).
    pub fn follow_shadow(self: &Arc<Self>, stats: &Arc<Stats>) {
        let (series, stats): (Weak<Series>, Weak<Stats>) =
            (Arc::downgrade(self), Arc::downgrade(stats));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let (Some(series), Some(stats)) = (series.upgrade(), stats.upgrade()) else {
                    return;
                };
                for route in stats.snapshot().routes {
                    let count = |name: &str| route.shadow.get(name).copied().unwrap_or(0);
                    if SHADOW_RESULTS.iter().any(|name| count(name) > 0) {
                        series.shadow_totals(&route.route, SHADOW_RESULTS.map(count));
                    }
                }
            }
        });
    }

    /// The window, optionally for one route.
    pub fn snapshot(&self, only: Option<&str>) -> SeriesSnapshot {
        let now = self.second();
        let unix = |second: u64| self.started_unix + second;
        let routes = self.lock();
        let lines = routes
            .iter()
            .filter(|r| only.is_none_or(|name| name == r.route))
            .map(|r| RouteLines {
                route: r.route.clone(),
                backends: r
                    .backends
                    .iter()
                    .map(|b| BackendLine {
                        backend: b.backend.clone(),
                        points: b
                            .ring
                            .window(now)
                            .filter(|(_, l)| l.count > 0)
                            .map(|(s, l)| LatencyPoint {
                                t: unix(s),
                                count: l.count,
                                p50_ms: quantile_ms(l, 0.50),
                                p99_ms: quantile_ms(l, 0.99),
                            })
                            .collect(),
                    })
                    .collect(),
                fallbacks: r
                    .reasons
                    .iter()
                    .enumerate()
                    .map(|(i, reason)| count_line(reason, &r.events, now, unix, |e| e.fallbacks[i]))
                    .collect(),
                shadow: SHADOW_RESULTS
                    .iter()
                    .enumerate()
                    .map(|(i, result)| count_line(result, &r.events, now, unix, |e| e.shadow[i]))
                    .collect(),
            })
            .collect();
        SeriesSnapshot {
            now: unix(now),
            seconds: SECONDS,
            routes: lines,
        }
    }
}

fn count_line(
    name: &str,
    events: &Ring<Events>,
    now: u64,
    unix: impl Fn(u64) -> u64,
    count: impl Fn(&Events) -> u32,
) -> CountLine {
    CountLine {
        name: name.to_string(),
        points: events
            .window(now)
            .map(|(s, e)| (s, count(e)))
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| CountPoint {
                t: unix(s),
                count: n,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_half_octaves() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 2);
        assert_eq!(bucket(3), 3); // 3 ≥ 2·√2
        assert_eq!(bucket(1000), 19); // 2^9.5 ≈ 724 ≤ 1000 < 1024
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        for micros in [5u64, 70, 900, 12_000, 480_000, 7_000_000] {
            let ms = micros as f64 / 1000.0;
            let estimate = bucket_ms(bucket(micros));
            assert!(
                estimate / ms < 1.2 && ms / estimate < 1.2,
                "{micros} µs read back as {estimate} ms"
            );
        }
    }

    #[test]
    fn one_slot_per_second_with_quantiles() {
        let series = Series::default();
        for ms in 1..=100 {
            series.request("validate", "native", Duration::from_millis(ms));
        }
        series.request("validate", "spin-embedded", Duration::from_millis(40));
        series.fallback("validate", "size");
        series.fallback("validate", "size");
        series.fallback("validate", "timeout");
        series.shadow_totals("validate", [3, 1, 0]);
        series.shadow_totals("validate", [5, 1, 0]);
        let snap = series.snapshot(Some("validate"));
        assert_eq!(snap.seconds, SECONDS);
        let route = &snap.routes[0];
        let native = &route.backends[0];
        assert_eq!(native.backend, "native");
        // Recorded within one or two seconds of each other.
        let total: u32 = native.points.iter().map(|p| p.count).sum();
        assert_eq!(total, 100);
        assert!(native.points.iter().all(|p| p.t <= snap.now));
        let count = |lines: &[CountLine], name: &str| -> u32 {
            lines
                .iter()
                .find(|l| l.name == name)
                .map_or(0, |l| l.points.iter().map(|p| p.count).sum())
        };
        assert_eq!(count(&route.fallbacks, "size"), 2);
        assert_eq!(count(&route.fallbacks, "timeout"), 1);
        // Totals 3 then 5 matches: 5 in all, never counted twice.
        assert_eq!(count(&route.shadow, "match"), 5);
        assert_eq!(count(&route.shadow, "mismatch"), 1);
        assert_eq!(count(&route.shadow, "dropped"), 0);
        assert!(series.snapshot(Some("other")).routes.is_empty());
    }

    #[test]
    fn quantiles_read_from_the_buckets() {
        let mut latency = NO_LATENCY;
        for ms in 1..=100u64 {
            latency.count += 1;
            latency.buckets[bucket(ms * 1000)] += 1;
        }
        let (p50, p99) = (quantile_ms(&latency, 0.5), quantile_ms(&latency, 0.99));
        assert!((p50 / 50.0 - 1.0).abs() < 0.2, "p50 {p50}");
        assert!((p99 / 99.0 - 1.0).abs() < 0.2, "p99 {p99}");
        assert!(p50 < p99);
    }

    #[test]
    fn a_slot_is_reused_when_its_second_comes_round() {
        let mut ring = Ring::new(NO_LATENCY);
        ring.at(5, NO_LATENCY).count = 7;
        ring.at(5, NO_LATENCY).count += 1;
        assert_eq!(ring.window(5).map(|(_, l)| l.count).sum::<u32>(), 8);
        // 900 s later the same slot holds the new second, emptied first.
        let later = 5 + SECONDS as u64;
        ring.at(later, NO_LATENCY).count += 1;
        let seen: Vec<(u64, u32)> = ring.window(later).map(|(s, l)| (s, l.count)).collect();
        assert_eq!(seen, vec![(later, 1)]);
        // Seconds older than the window are not shown.
        ring.at(later + SECONDS as u64 + 10, NO_LATENCY);
        assert!(
            ring.window(later + SECONDS as u64 + 10)
                .all(|(s, _)| s > later)
        );
    }

    #[test]
    fn memory_is_bounded_in_routes_backends_and_reasons() {
        let series = Series::default();
        for i in 0..MAX_ROUTES + 5 {
            series.request(&format!("r{i}"), "native", Duration::from_millis(1));
        }
        for b in ["a", "b", "c", "d", "e", "f"] {
            series.request("r0", b, Duration::from_millis(1));
        }
        let reasons: Vec<&'static str> = (0..MAX_REASONS + 3)
            .map(|i| &*Box::leak(format!("reason{i}").into_boxed_str()))
            .collect();
        for reason in &reasons {
            series.fallback("r0", reason);
        }
        let snap = series.snapshot(None);
        assert_eq!(snap.routes.len(), MAX_ROUTES);
        let r0 = &snap.routes[0];
        assert_eq!(r0.backends.len(), MAX_BACKENDS);
        assert_eq!(r0.fallbacks.len(), MAX_REASONS);
    }
}
