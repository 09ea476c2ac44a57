//! In-process statistics for the built-in `/dashboard`.
//!
//! The dashboard must work with nothing installed, so it cannot ask
//! Prometheus for percentiles. The gateway keeps an HDR histogram of
//! latency per route and backend (microsecond resolution, three
//! significant digits), plus fallback and shadow counts, and serves a
//! snapshot as JSON at `/admin/stats`. Throughput is the change in counts
//! between two snapshots.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Default)]
struct RouteStats {
    latency: BTreeMap<String, Histogram<u64>>,
    fallbacks: BTreeMap<String, u64>,
    shadow: BTreeMap<&'static str, u64>,
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

/// One route in a snapshot.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct RouteSnapshot {
    /// Route name.
    pub route: String,
    /// Its backends.
    pub backends: Vec<BackendSnapshot>,
    /// Fallbacks to native by reason.
    pub fallbacks: BTreeMap<String, u64>,
    /// Shadow comparison outcomes (`match`, `mismatch`, `dropped`).
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

    /// Records one answered request.
    pub fn request(&self, route: &str, backend: &str, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        self.with(route, |r| {
            if let Some(h) = r.latency.get_mut(backend) {
                let _ = h.record(micros);
                return;
            }
            // 1 µs .. 1 h at 3 significant digits: valid bounds, so
            // creation cannot fail; auto-resize covers outliers.
            let Ok(mut h) = Histogram::new_with_bounds(1, 3_600_000_000, 3) else {
                return;
            };
            h.auto(true);
            let _ = h.record(micros);
            r.latency.insert(backend.to_string(), h);
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
        let ms = |micros: u64| micros as f64 / 1000.0;
        Snapshot {
            uptime_s: self.started.elapsed().as_secs_f64(),
            routes: routes
                .iter()
                .map(|(route, r)| RouteSnapshot {
                    route: route.clone(),
                    backends: r
                        .latency
                        .iter()
                        .map(|(backend, h)| BackendSnapshot {
                            backend: backend.clone(),
                            count: h.len(),
                            p50_ms: ms(h.value_at_quantile(0.50)),
                            p95_ms: ms(h.value_at_quantile(0.95)),
                            p99_ms: ms(h.value_at_quantile(0.99)),
                            mean_ms: h.mean() / 1000.0,
                        })
                        .collect(),
                    fallbacks: r.fallbacks.clone(),
                    shadow: r.shadow.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_per_route_and_backend() {
        let stats = Stats::default();
        for ms in 1..=100 {
            stats.request("validate", "native", Duration::from_millis(ms));
        }
        stats.request("validate", "spin-embedded", Duration::from_millis(7));
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
}
