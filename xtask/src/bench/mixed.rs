//! Scenario 7: learned routing on a mixed-size validate workload.
//!
//! Batch sizes are drawn log-uniformly from 1 to 10,000 items (a fixed,
//! shuffled sample of [`SAMPLE`] sizes, cycled by wrk), sent at
//! [`CONNECTIONS`] connections to four gateways that differ only in how the
//! validate route picks its path:
//!
//! * `always-wasm`: `backend = "spin"`;
//! * `always-native`: `backend = "native"`;
//! * `fixed`: `backend = "auto"` with `native_above_bytes` at the value
//!   scenario 1 suggests;
//! * `learned`: `backend = "auto"` with `native_above_bytes = "learn"`.
//!
//! Each configuration is warmed up with the same mix, then measured twice,
//! the four taking turns; the spread between a configuration's two runs is
//! the run's noise. The verdicts (learned against the best fixed rule,
//! learned's p99 against both single paths) are judged with that noise.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::report::Target;
use super::scenarios::{Env, signed_batch};
use super::server::Server;
use super::wrk::{self, Load, Requests, Stats};

/// Distinct batch sizes in the mix.
pub const SAMPLE: u32 = 32;
/// Connections of every run.
pub const CONNECTIONS: u32 = 16;
/// The largest batch.
const MAX_ITEMS: f64 = 10_000.0;

/// The scenario's section of the report.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Mixed {
    pub connections: u32,
    /// The batch sizes cycled through (items), in request order.
    pub items: Vec<u32>,
    /// Mean body size of the mix, bytes.
    pub mean_body_bytes: f64,
    /// The fixed rule's `native_above_bytes` (scenario 1's suggestion).
    pub fixed_native_above_bytes: u64,
    pub configs: Vec<MixedConfig>,
    /// The largest relative spread between two runs of one configuration
    /// (throughput, p50 or p99): the run's noise.
    pub noise: f64,
}

/// One configuration, measured twice.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct MixedConfig {
    /// `always-wasm`, `always-native`, `fixed` or `learned`.
    pub name: String,
    /// What its validate route says.
    pub route: String,
    pub runs: Vec<Stats>,
    /// Means of the two runs.
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The gateway's CPU time over both runs / their requests, ms: what
    /// bounds the throughput once the cores are saturated.
    pub cpu_ms_per_request: f64,
    /// Largest relative spread between its two runs.
    pub spread: f64,
}

/// A deterministic log-uniform sample of batch sizes in 1..=10,000: the
/// midpoints of `SAMPLE` equal steps in log space, in a fixed shuffled
/// order (stride 13, coprime with 32) so sizes interleave.
pub fn sizes() -> Vec<u32> {
    let step = MAX_ITEMS.log10() / f64::from(SAMPLE);
    let sorted: Vec<u32> = (0..SAMPLE)
        .map(|i| {
            let items = 10f64.powf(step * (f64::from(i) + 0.5)).round();
            items.clamp(1.0, MAX_ITEMS) as u32
        })
        .collect();
    (0..SAMPLE)
        .map(|i| sorted[((i * 13) % SAMPLE) as usize])
        .collect()
}

/// The validate route of each configuration.
fn route(kind: &str, fixed: u64) -> String {
    // A list route too: the server counts as up once GET /items answers.
    let head = "[[route]]\nname = \"list\"\nmatch = { method = \"GET\", path = \"/items\" }\n\
                backend = \"spin\"\nspin_path = \"/list\"\n\n\
                [[route]]\nname = \"validate\"\nmatch = { method = \"POST\", path = \"/validate\" }\n\
                spin_path = \"/validate\"\nnative = \"validate\"\ntimeout_ms = 60000\n\
                max_body_bytes = 16777216\nconcurrency = 64\n";
    match kind {
        "always-wasm" => format!("{head}backend = \"spin\"\n"),
        "always-native" => format!("{head}backend = \"native\"\n"),
        "fixed" => {
            format!("{head}backend = \"auto\"\n[route.fallback]\nnative_above_bytes = {fixed}\n")
        }
        _ => {
            format!("{head}backend = \"auto\"\n[route.fallback]\nnative_above_bytes = \"learn\"\n")
        }
    }
}

/// Runs the scenario; `fixed` is scenario 1's suggested threshold.
pub fn mixed(env: &Env<'_>, fixed: u64) -> Result<Mixed> {
    let items = sizes();
    let mut mix = Vec::new();
    let mut total_bytes = 0u64;
    for (i, &n) in items.iter().enumerate() {
        let body = signed_batch(n)?;
        total_bytes += body.len() as u64;
        let path: PathBuf = env.work.join(format!("mixed-{i:02}-{n}.json"));
        std::fs::write(&path, &body).with_context(|| format!("writing {}", path.display()))?;
        mix.push(("POST", "/validate".to_string(), Some(path)));
    }
    let kinds = ["always-wasm", "always-native", "fixed", "learned"];
    let mut servers = Vec::new();
    for kind in kinds {
        let text = route(kind, fixed);
        let (server, _) = env.gateway(
            &format!("mixed-{kind}"),
            "spin.toml",
            &text,
            "/items?limit=1",
        )?;
        servers.push((kind, text, server));
    }
    let seconds = if env.plan.quick { 2 } else { 6 };
    // Long enough for the learned route to finish its warm-up in the big
    // classes too (8 answers per path, a 10,000-item batch on Wasm taking
    // about a second), so the runs measure its steady state.
    let warmup = if env.plan.quick { 1 } else { 5 };
    let load = |kind: &str, server: &Server, phase: &str, secs: u64| Load {
        label: format!("mixed-{kind}-{phase}"),
        url: server.url("/validate"),
        requests: Requests::Mix(mix.clone()),
        threads: 2,
        connections: CONNECTIONS,
        duration: Duration::from_secs(secs),
        stop_after: None,
    };
    // Warm-up: the same mix for every configuration (the learned one
    // learns its classes here; the others warm their caches).
    for (kind, _, server) in &servers {
        println!("xtask bench: mixed {kind}, warm-up");
        wrk::run(&load(kind, server, "warmup", warmup), &env.work)?;
    }
    let mut runs: Vec<Vec<Stats>> = vec![Vec::new(); servers.len()];
    let mut cpu = vec![0.0f64; servers.len()];
    for round in 1..=2 {
        for (i, (kind, _, server)) in servers.iter().enumerate() {
            println!("xtask bench: mixed {kind}, run {round}/2");
            let before = server.cpu_seconds()?;
            runs[i].push(wrk::run(
                &load(kind, server, &format!("run{round}"), seconds),
                &env.work,
            )?);
            cpu[i] += server.cpu_seconds()? - before;
        }
    }
    let configs: Vec<MixedConfig> = servers
        .iter()
        .zip(runs)
        .zip(cpu)
        .map(|(((kind, text, _), runs), cpu)| summarize(kind, text, runs, cpu))
        .collect();
    let noise = configs.iter().map(|c| c.spread).fold(0.0, f64::max);
    Ok(Mixed {
        connections: CONNECTIONS,
        mean_body_bytes: total_bytes as f64 / f64::from(SAMPLE),
        items,
        fixed_native_above_bytes: fixed,
        configs,
        noise,
    })
}

/// One configuration's figures; `cpu` is the gateway's CPU seconds over
/// its `runs`.
fn summarize(kind: &str, text: &str, runs: Vec<Stats>, cpu: f64) -> MixedConfig {
    let requests: u64 = runs.iter().map(|r| r.requests).sum();
    let mean = |f: fn(&Stats) -> f64| runs.iter().map(f).sum::<f64>() / runs.len().max(1) as f64;
    let spread_of = |f: fn(&Stats) -> f64| {
        let (lo, hi) = runs
            .iter()
            .map(f)
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        let m = mean(f);
        if m > 0.0 { (hi - lo) / m } else { 0.0 }
    };
    let rps = |s: &Stats| s.rps;
    let p50 = |s: &Stats| s.p50_ms;
    let p99 = |s: &Stats| s.p99_ms;
    MixedConfig {
        name: kind.to_string(),
        route: text
            .lines()
            .skip_while(|l| !l.contains("\"validate\""))
            .filter(|l| l.starts_with("backend") || l.starts_with("native_above"))
            .collect::<Vec<_>>()
            .join("; "),
        rps: mean(rps),
        p50_ms: mean(p50),
        p99_ms: mean(p99),
        cpu_ms_per_request: cpu * 1e3 / requests.max(1) as f64,
        spread: spread_of(rps).max(spread_of(p50)).max(spread_of(p99)),
        runs,
    }
}

/// The scenario's targets: learned at least as fast as the best fixed
/// rule within the noise, and a better p99 than either single path.
pub fn targets(m: &Mixed) -> Vec<Target> {
    let find = |name: &str| m.configs.iter().find(|c| c.name == name);
    let (Some(wasm), Some(native), Some(fixed), Some(learned)) = (
        find("always-wasm"),
        find("always-native"),
        find("fixed"),
        find("learned"),
    ) else {
        return Vec::new();
    };
    let best_rps = [wasm, native, fixed]
        .iter()
        .map(|c| c.rps)
        .fold(0.0, f64::max);
    let throughput = learned.rps / best_rps.max(f64::MIN_POSITIVE);
    let p99 = learned.p99_ms / wasm.p99_ms.min(native.p99_ms).max(f64::MIN_POSITIVE);
    let target = |id: &str, description: &str, measured: f64, comparison: &str, limit: f64| {
        Target::new(id, description, measured, comparison, limit, "x")
    };
    vec![
        target(
            "mixed_learned_throughput",
            "mixed validate at 16 connections: learned throughput / best of always-Wasm, always-native and the fixed rule, at least 1 less the run's noise",
            throughput,
            ">=",
            (1.0 - m.noise).max(0.01),
        ),
        target(
            "mixed_learned_p99",
            "mixed validate at 16 connections: learned p99 / the better p99 of always-Wasm and always-native, below 1",
            p99,
            "<=",
            1.0,
        ),
    ]
}

/// The scenario's Markdown section.
pub fn markdown(m: &Mixed) -> String {
    use std::fmt::Write as _;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## 7. Learned routing: mixed-size validate, {} connections\n\n\
         Batch sizes log-uniform from 1 to 10,000 items ({} sizes, mean body {:.0} KiB); \
         the fixed rule at `native_above_bytes = {}`. Two runs per configuration; \
         the largest spread between two runs of one configuration (the noise) is {:.0}%. \
         CPU/request is the gateway's CPU time (all threads, both paths) per request: with the \
         cores saturated, the throughput follows it.\n\n\
         | configuration | route | req/s | p50 ms | p99 ms | CPU/request ms | runs (req/s) | spread |\n|---|---|---:|---:|---:|---:|---|---:|",
        m.connections,
        m.items.len(),
        m.mean_body_bytes / 1024.0,
        m.fixed_native_above_bytes,
        100.0 * m.noise
    );
    for c in &m.configs {
        let runs: Vec<String> = c.runs.iter().map(|r| format!("{:.1}", r.rps)).collect();
        let _ = writeln!(
            md,
            "| {} | `{}` | {:.1} | {:.1} | {:.1} | {:.2} | {} | {:.0}% |",
            c.name,
            c.route,
            c.rps,
            c.p50_ms,
            c.p99_ms,
            c.cpu_ms_per_request,
            runs.join(", "),
            100.0 * c.spread
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_log_uniform_over_1_to_10000_and_interleaved() {
        let items = sizes();
        assert_eq!(items.len(), SAMPLE as usize);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted[0], 1);
        assert!(*sorted.last().unwrap() > 8_000 && *sorted.last().unwrap() <= 10_000);
        // A quarter of the sample in each decade.
        for decade in 0..4 {
            let (lo, hi) = (10u32.pow(decade), 10u32.pow(decade + 1));
            let n = sorted.iter().filter(|&&n| n >= lo && n < hi).count();
            assert!((7..=9).contains(&n), "decade {decade}: {n} of {sorted:?}");
        }
        // Neighbours in request order are far apart in size.
        assert!(items.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn targets_use_the_runs_noise() {
        let config = |name: &str, rps: f64, p99: f64| MixedConfig {
            name: name.into(),
            route: String::new(),
            runs: Vec::new(),
            rps,
            p50_ms: 1.0,
            p99_ms: p99,
            cpu_ms_per_request: 1.0,
            spread: 0.1,
        };
        let m = Mixed {
            connections: 16,
            items: vec![1],
            mean_body_bytes: 1.0,
            fixed_native_above_bytes: 280,
            configs: vec![
                config("always-wasm", 10.0, 900.0),
                config("always-native", 30.0, 500.0),
                config("fixed", 31.0, 480.0),
                config("learned", 29.0, 400.0),
            ],
            noise: 0.1,
        };
        let t = targets(&m);
        assert_eq!(t.len(), 2);
        assert!(t[0].met, "29 is within 10% of 31: {:?}", t[0]);
        assert!(t[1].met, "{:?}", t[1]);
        assert!((t[1].measured - 0.8).abs() < 1e-9);
    }
}
