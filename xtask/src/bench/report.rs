//! The report: what `target/bench/report.json` holds (described by
//! `schemas/bench-report.schema.json`), the targets judged from it, and its
//! Markdown rendering.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::wrk::Stats;

/// Bumped when report.json changes shape.
pub const SCHEMA_VERSION: u32 = 1;

/// Wasm counts as "within" native below this latency ratio; the validate
/// crossover is where it stops being so.
pub const CROSSOVER_RATIO: f64 = 1.5;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Report {
    pub schema_version: u32,
    /// `"full"` or `"quick"`.
    pub mode: String,
    /// Unix time the run started.
    pub started_unix: u64,
    /// Wall time of the run (scenarios and report, not the build), seconds.
    pub duration_seconds: f64,
    pub machine: Machine,
    pub validate: Validate,
    pub hello: Hello,
    pub gateway_overhead: Overhead,
    pub cold_start: ColdStart,
    pub rss: Rss,
    pub trace_recorder: TraceCost,
    pub targets: Vec<Target>,
    /// Scenario 7, learned routing (absent from reports made before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixed: Option<super::mixed::Mixed>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Machine {
    pub cpus: u32,
    pub kernel: String,
    /// 1-minute load average before and after the run (other work on the
    /// machine skews the numbers).
    pub load_average_start: f64,
    pub load_average_end: f64,
    pub wrk: String,
    pub wasmtime: String,
    /// `git describe` of the measured tree.
    pub commit: String,
}

/// Scenario 1: POST /validate at several batch sizes, one connection.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Validate {
    pub connections: u32,
    /// Runs per cell, the backends taking turns; each cell is the run with
    /// the median mean latency.
    pub rounds: u32,
    pub rows: Vec<ValidateRow>,
    pub crossover: Crossovers,
    /// The `fallback.native_above_bytes` this run suggests for the
    /// validate route as the built-in config runs it (fresh instances).
    pub suggested_native_above_bytes: u64,
    /// How the suggestion was derived.
    pub suggestion_basis: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ValidateRow {
    pub items: u32,
    pub body_bytes: u64,
    /// The gateway, route with `backend = "native"`.
    pub native: Stats,
    /// `gateway serve-spin`: a fresh instance per request.
    pub wasm_fresh: Stats,
    /// `gateway serve-spin --reuse-max-requests 128`.
    pub wasm_reuse: Stats,
    /// Mean latency, Wasm fresh / native.
    pub fresh_ratio: f64,
    /// Mean latency, Wasm reuse / native.
    pub reuse_ratio: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Crossovers {
    /// The ratio that counts as "within" (1.5).
    pub threshold: f64,
    pub fresh: Crossover,
    pub reuse: Crossover,
}

/// Where Wasm stops being within `threshold` of native, for one Wasm mode.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Crossover {
    /// Largest measured batch still within the threshold (none: never).
    pub within_up_to_items: Option<u32>,
    pub within_up_to_bytes: Option<u64>,
    /// The next measured batch, beyond it (none: never beyond).
    pub exceeded_at_items: Option<u32>,
    pub exceeded_at_bytes: Option<u64>,
    /// Body size where the ratio crosses the threshold, interpolated
    /// between those two (ratio linear in log(bytes)).
    pub crossover_bytes: Option<u64>,
    /// `fallback.native_above_bytes` for a validate component run this way.
    pub suggested_native_above_bytes: u64,
    /// One sentence for people.
    pub summary: String,
}

/// Scenario 2: a trivial hello, wrk `-t2 -c50`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Hello {
    pub threads: u32,
    pub connections: u32,
    /// Runs per server, the four taking turns; the median throughput is kept.
    pub rounds: u32,
    /// The gateway's admin `/healthz` (plain Axum, no Wasm).
    pub native_axum: Stats,
    /// `gateway serve-spin` on the misbehave component's `/ok`.
    pub embedded_fresh: Stats,
    /// The same with `--reuse-max-requests 128`.
    pub embedded_reuse: Stats,
    /// `wasmtime serve -Scli` on the same component.
    pub wasmtime_serve: Stats,
}

/// Scenario 3: the gateway in front of the embedded host vs `serve-spin`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Overhead {
    /// Runs per cell, direct and via gateway taking turns; the median
    /// throughput is kept.
    pub rounds: u32,
    pub rows: Vec<OverheadRow>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct OverheadRow {
    /// `"hello"` (GET /hello → /ok) or `"create"` (POST /items → /create).
    pub workload: String,
    pub connections: u32,
    /// `gateway serve-spin` alone.
    pub direct: Stats,
    /// The gateway (embedded mode) with a route to the same component.
    pub via_gateway: Stats,
    /// Throughput, via gateway / direct.
    pub rps_ratio: f64,
    /// p99 via gateway minus p99 direct (may be negative: noise).
    pub p99_added_ms: f64,
}

/// Scenario 4: spawn of `gateway serve-spin` to its first 200 from a component.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ColdStart {
    /// The request polled for (the first 2xx ends the clock).
    pub probe: String,
    pub runs: u32,
    /// Best run with wasmtime's compile cache warm.
    pub with_cache_ms: f64,
    /// Best run with `--no-compile-cache`.
    pub without_cache_ms: f64,
    pub with_cache_runs_ms: Vec<f64>,
    pub without_cache_runs_ms: Vec<f64>,
}

/// Scenario 5: resident memory of the gateway serving the app.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Rss {
    /// What the requests were.
    pub workload: String,
    pub connections: u32,
    /// Requests served when the first sample was taken (about the plan's
    /// early count).
    pub early_requests: u64,
    pub early_mib: f64,
    /// Requests served in total at the second sample.
    pub late_requests: u64,
    pub late_mib: f64,
    /// late_mib / early_mib.
    pub growth: f64,
    /// Every sample, early to late (plateau or steady growth?).
    pub samples: Vec<RssSample>,
}

/// Scenario 6: the in-memory trace recorder's cost (see `trace_cost.rs`).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct TraceCost {
    pub workload: String,
    pub threads: u32,
    pub connections: u32,
    /// Rounds; each setting runs once a round, in turn.
    pub rounds: u32,
    /// (max - min) / median of the `off` runs' CPU time per request: how far
    /// one setting moves between runs.
    pub noise_cpu: f64,
    /// The same for throughput.
    pub noise_rps: f64,
    /// `off`, `idle`, `viewed`, in that order.
    pub settings: Vec<TraceSetting>,
}

/// One trace-recorder setting: its runs and their median.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct TraceSetting {
    pub name: String,
    pub description: String,
    /// The run with the median CPU time per request.
    pub median: TraceRun,
    pub runs: Vec<TraceRun>,
    /// Median CPU time per request over `off`'s.
    pub cpu_vs_off: f64,
    /// Median run's throughput over `off`'s.
    pub rps_vs_off: f64,
    /// Traces the gateway recorded over the whole scenario (warm-up
    /// included), read at the end.
    pub traces_recorded: u64,
}

/// One run: wrk's figures and the gateway's CPU time per request.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct TraceRun {
    pub stats: Stats,
    /// Gateway user + system CPU time over the run / requests, µs.
    pub cpu_us_per_request: f64,
}

/// VmRSS after a number of requests.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RssSample {
    pub requests: u64,
    pub mib: f64,
}

/// One target, judged on this run's numbers.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Target {
    pub id: String,
    pub description: String,
    pub measured: f64,
    /// `"<="` or `">="`.
    pub comparison: String,
    pub limit: f64,
    /// `"x"` (a ratio), `"ms"` or `"MiB"`.
    pub unit: String,
    pub met: bool,
}

impl Target {
    /// A target judged on `measured` (`met` when finite and within `limit`).
    pub(super) fn new(
        id: &str,
        description: &str,
        measured: f64,
        comparison: &str,
        limit: f64,
        unit: &str,
    ) -> Self {
        let met = measured.is_finite()
            && match comparison {
                ">=" => measured >= limit,
                _ => measured <= limit,
            };
        Target {
            id: id.into(),
            description: description.into(),
            measured,
            comparison: comparison.into(),
            limit,
            unit: unit.into(),
            met,
        }
    }
}

/// Ids of every target, in report order (the schema requires each).
#[cfg(test)]
pub const TARGET_IDS: &[&str] = &[
    "validate_1_fresh",
    "validate_1_reuse",
    "validate_1000_fresh",
    "validate_1000_reuse",
    "hello_fresh_throughput",
    "hello_fresh_p99",
    "hello_reuse_throughput",
    "gateway_hello_throughput_64",
    "gateway_hello_p99_added_64",
    "gateway_create_throughput_64",
    "gateway_create_p99_added_64",
    "cold_start_cached",
    "rss_growth",
    "rss_late",
    "trace_recorder_idle_cpu",
];

/// Judges the targets on the scenarios' numbers.
pub fn targets(
    validate: &Validate,
    hello: &Hello,
    overhead: &Overhead,
    cold: &ColdStart,
    rss: &Rss,
    trace: &TraceCost,
) -> Result<Vec<Target>> {
    let idle = trace
        .settings
        .iter()
        .find(|s| s.name == "idle")
        .context("the trace-recorder scenario has no `idle` setting")?;
    let row = |items: u32| {
        validate
            .rows
            .iter()
            .find(|r| r.items == items)
            .with_context(|| format!("the validate scenario has no {items}-item row"))
    };
    let at64 = |workload: &str| {
        overhead
            .rows
            .iter()
            .find(|r| r.workload == workload && r.connections == 64)
            .with_context(|| {
                format!("the overhead scenario has no {workload} row at 64 connections")
            })
    };
    let (one, thousand) = (row(1)?, row(1000)?);
    let (hello64, create64) = (at64("hello")?, at64("create")?);
    let wasmtime = &hello.wasmtime_serve;
    Ok(vec![
        Target::new(
            "validate_1_fresh",
            "validate, 1 item: Wasm fresh instance <= 5x native latency",
            one.fresh_ratio,
            "<=",
            5.0,
            "x",
        ),
        Target::new(
            "validate_1_reuse",
            "validate, 1 item: Wasm instance reuse <= 2x native latency",
            one.reuse_ratio,
            "<=",
            2.0,
            "x",
        ),
        Target::new(
            "validate_1000_fresh",
            "validate, 1,000 items: Wasm fresh instance <= 1.5x native latency",
            thousand.fresh_ratio,
            "<=",
            1.5,
            "x",
        ),
        Target::new(
            "validate_1000_reuse",
            "validate, 1,000 items: Wasm instance reuse <= 1.5x native latency",
            thousand.reuse_ratio,
            "<=",
            1.5,
            "x",
        ),
        Target::new(
            "hello_fresh_throughput",
            "hello: embedded fresh >= 1.5x `wasmtime serve` throughput",
            hello.embedded_fresh.rps / wasmtime.rps,
            ">=",
            1.5,
            "x",
        ),
        Target::new(
            "hello_fresh_p99",
            "hello: embedded fresh p99 no worse than `wasmtime serve` (ratio)",
            hello.embedded_fresh.p99_ms / wasmtime.p99_ms,
            "<=",
            1.0,
            "x",
        ),
        Target::new(
            "hello_reuse_throughput",
            "hello: embedded reuse >= 3x `wasmtime serve` throughput",
            hello.embedded_reuse.rps / wasmtime.rps,
            ">=",
            3.0,
            "x",
        ),
        Target::new(
            "gateway_hello_throughput_64",
            "hello at 64 connections: gateway in front >= 0.85x throughput of serve-spin alone",
            hello64.rps_ratio,
            ">=",
            0.85,
            "x",
        ),
        Target::new(
            "gateway_hello_p99_added_64",
            "hello at 64 connections: p99 added by the gateway <= 1 ms",
            hello64.p99_added_ms,
            "<=",
            1.0,
            "ms",
        ),
        Target::new(
            "gateway_create_throughput_64",
            "create at 64 connections: gateway in front >= 0.85x throughput of serve-spin alone",
            create64.rps_ratio,
            ">=",
            0.85,
            "x",
        ),
        Target::new(
            "gateway_create_p99_added_64",
            "create at 64 connections: p99 added by the gateway <= 1 ms",
            create64.p99_added_ms,
            "<=",
            1.0,
            "ms",
        ),
        Target::new(
            "cold_start_cached",
            "cold start to the first Wasm 200, compile cache warm, <= 150 ms",
            cold.with_cache_ms,
            "<=",
            150.0,
            "ms",
        ),
        Target::new(
            "rss_growth",
            "RSS after the late sample <= 1.2x RSS after the early one",
            rss.growth,
            "<=",
            1.2,
            "x",
        ),
        Target::new(
            "rss_late",
            "RSS after the late sample <= 150 MiB",
            rss.late_mib,
            "<=",
            150.0,
            "MiB",
        ),
        Target::new(
            "trace_recorder_idle_cpu",
            "trace recorder, dashboard closed: gateway CPU per request <= 1.05x recorder off",
            idle.cpu_vs_off,
            "<=",
            1.05,
            "x",
        ),
    ])
}

/// Where Wasm (latency ratios `ratios`, per batch `(items, bytes)`, in
/// ascending size) stops being within `threshold` of native, and the
/// `native_above_bytes` that follows (see [`suggest_native_above_bytes`]).
pub fn crossover(
    sizes: &[(u32, u64)],
    ratios: &[f64],
    threshold: f64,
    max_batch_bytes: u64,
) -> Crossover {
    let mut c = locate_crossover(sizes, ratios, threshold);
    let smallest = sizes.first().map(|s| s.1).unwrap_or(1);
    c.suggested_native_above_bytes = suggest_native_above_bytes(&c, smallest, max_batch_bytes);
    c
}

fn locate_crossover(sizes: &[(u32, u64)], ratios: &[f64], threshold: f64) -> Crossover {
    let within = |i: usize| ratios[i] <= threshold;
    let last_within = (0..ratios.len().min(sizes.len()))
        .rev()
        .find(|&i| within(i));
    match last_within {
        None => Crossover {
            within_up_to_items: None,
            within_up_to_bytes: None,
            exceeded_at_items: sizes.first().map(|s| s.0),
            exceeded_at_bytes: sizes.first().map(|s| s.1),
            crossover_bytes: None,
            suggested_native_above_bytes: 0,
            summary: format!("never within {threshold}x of native at any measured size"),
        },
        Some(i) if i + 1 >= sizes.len().min(ratios.len()) => Crossover {
            within_up_to_items: Some(sizes[i].0),
            within_up_to_bytes: Some(sizes[i].1),
            exceeded_at_items: None,
            exceeded_at_bytes: None,
            crossover_bytes: None,
            suggested_native_above_bytes: 0,
            summary: format!(
                "within {threshold}x of native up to the largest measured batch ({} items, {} bytes)",
                sizes[i].0, sizes[i].1
            ),
        },
        Some(i) => {
            let (lo, hi) = (sizes[i], sizes[i + 1]);
            let (r_lo, r_hi) = (ratios[i], ratios[i + 1]);
            let (x_lo, x_hi) = ((lo.1 as f64).ln(), (hi.1 as f64).ln());
            let t = ((threshold - r_lo) / (r_hi - r_lo)).clamp(0.0, 1.0);
            let bytes = (x_lo + t * (x_hi - x_lo)).exp().round() as u64;
            Crossover {
                within_up_to_items: Some(lo.0),
                within_up_to_bytes: Some(lo.1),
                exceeded_at_items: Some(hi.0),
                exceeded_at_bytes: Some(hi.1),
                crossover_bytes: Some(bytes),
                suggested_native_above_bytes: 0,
                summary: format!(
                    "within {threshold}x up to {} items ({} bytes), {r_hi:.2}x at {} items ({} bytes); crosses near {bytes} bytes",
                    lo.0, lo.1, hi.0, hi.1
                ),
            }
        }
    }
}

/// `fallback.native_above_bytes` from a crossover: the crossing rounded
/// down to whole KiB; everything measured when Wasm is never within; the
/// largest batch the core accepts when it always is.
fn suggest_native_above_bytes(c: &Crossover, smallest_bytes: u64, max_batch_bytes: u64) -> u64 {
    match (c.crossover_bytes, c.within_up_to_bytes) {
        (Some(bytes), _) => (bytes / 1024 * 1024).max(bytes.min(1024)).max(1),
        (None, None) => smallest_bytes.max(1),
        (None, Some(_)) => max_batch_bytes,
    }
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 1.0 {
        format!("{v:.2} ms")
    } else {
        format!("{:.0} µs", v * 1000.0)
    }
}

fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn measured(t: &Target) -> String {
    match t.unit.as_str() {
        "x" => format!("{:.2}x", t.measured),
        "ms" => format!("{:.2} ms", t.measured),
        unit => format!("{:.1} {unit}", t.measured),
    }
}

/// The Markdown report (charts are the SVGs next to it).
pub fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let m = &r.machine;
    let _ = writeln!(md, "# Benchmark report ({} run)\n", r.mode);
    let _ = writeln!(
        md,
        "All numbers come from this one run of `cargo xtask bench{}` ({:.0} s), on {} CPUs \
         (Linux {}), load average {:.2} before and {:.2} after; {}; {}; tree {}. \
         Servers are {} builds on 127.0.0.1; wrk runs on the same machine.\n",
        if r.mode == "quick" { " --quick" } else { "" },
        r.duration_seconds,
        m.cpus,
        m.kernel,
        m.load_average_start,
        m.load_average_end,
        m.wrk,
        m.wasmtime,
        m.commit,
        if r.mode == "quick" {
            "debug (quick: structure only, the numbers mean nothing)"
        } else {
            "release"
        }
    );

    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(
        md,
        "| Target | Measured | Limit | Met |\n|---|---:|---:|:---:|"
    );
    for t in &r.targets {
        let limit = match t.unit.as_str() {
            "x" => format!("{} {}x", t.comparison, t.limit),
            unit => format!("{} {} {unit}", t.comparison, t.limit),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            t.description,
            measured(t),
            limit,
            if t.met { "yes" } else { "**no**" }
        );
    }
    let met = r.targets.iter().filter(|t| t.met).count();
    let _ = writeln!(md, "\n{met} of {} targets met.\n", r.targets.len());

    let v = &r.validate;
    let _ = writeln!(
        md,
        "## 1. Validate: Wasm vs native\n\n\
         POST /validate with N Ed25519-signed items, wrk with {} connection (latency per request); \
         the three servers run side by side and take turns, each cell is the median of {} run(s). \
         Native: the gateway, route `backend = \"native\"`. Wasm fresh: `gateway serve-spin` \
         (a new instance per request). Wasm reuse: `gateway serve-spin --reuse-max-requests 128`.\n",
        v.connections, v.rounds
    );
    let _ = writeln!(
        md,
        "| Items | Body | Native mean | p99 | Wasm fresh mean | p99 | Wasm reuse mean | p99 | Fresh / native | Reuse / native |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for row in &v.rows {
        let _ = writeln!(
            md,
            "| {} | {} B | {} | {} | {} | {} | {} | {} | {:.2}x | {:.2}x |",
            thousands(row.items as f64),
            thousands(row.body_bytes as f64),
            ms(row.native.mean_ms),
            ms(row.native.p99_ms),
            ms(row.wasm_fresh.mean_ms),
            ms(row.wasm_fresh.p99_ms),
            ms(row.wasm_reuse.mean_ms),
            ms(row.wasm_reuse.p99_ms),
            row.fresh_ratio,
            row.reuse_ratio
        );
    }
    let _ = writeln!(
        md,
        "\nWhere Wasm stops being within {}x of native latency:\n\n\
         * fresh instance: {}; suggested `native_above_bytes` = {};\n\
         * instance reuse: {}; suggested `native_above_bytes` = {}.\n\n\
         **Suggested `fallback.native_above_bytes` for the validate route: {}** ({}).\n\n\
         ![validate latency](validate_latency.svg)\n![validate ratio](validate_ratio.svg)\n",
        v.crossover.threshold,
        v.crossover.fresh.summary,
        v.crossover.fresh.suggested_native_above_bytes,
        v.crossover.reuse.summary,
        v.crossover.reuse.suggested_native_above_bytes,
        v.suggested_native_above_bytes,
        v.suggestion_basis
    );

    let h = &r.hello;
    let _ = writeln!(
        md,
        "## 2. Trivial hello\n\nwrk -t{} -c{}; component `misbehave`, `/ok` (200 `ok`). The four \
         servers run side by side and take turns; each is the median of {} run(s) by throughput.\n\n\
         | Server | req/s | mean | p99 | vs `wasmtime serve` |\n|---|---:|---:|---:|---:|",
        h.threads, h.connections, h.rounds
    );
    for (name, s) in [
        ("native Axum (gateway admin `/healthz`)", &h.native_axum),
        ("embedded, fresh instance (`serve-spin`)", &h.embedded_fresh),
        (
            "embedded, instance reuse (`serve-spin --reuse-max-requests 128`)",
            &h.embedded_reuse,
        ),
        ("`wasmtime serve -Scli`", &h.wasmtime_serve),
    ] {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {:.2}x |",
            thousands(s.rps),
            ms(s.mean_ms),
            ms(s.p99_ms),
            s.rps / h.wasmtime_serve.rps
        );
    }
    let _ = writeln!(md, "\n![hello throughput](hello_throughput.svg)\n");

    let _ = writeln!(
        md,
        "## 3. Gateway overhead\n\nClient → gateway (embedded mode, route to the component) → component, \
         vs client → `gateway serve-spin`. hello: GET /hello → /ok (misbehave); create: POST /items → /create \
         (server-assigned ids). Both sides run side by side and take turns; each cell is the median of {} \
         run(s) by throughput.\n\n\
         | Workload | Connections | serve-spin req/s | p99 | via gateway req/s | p99 | Throughput ratio | p99 added |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|",
        r.gateway_overhead.rounds
    );
    for row in &r.gateway_overhead.rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.2}x | {:+.2} ms |",
            row.workload,
            row.connections,
            thousands(row.direct.rps),
            ms(row.direct.p99_ms),
            thousands(row.via_gateway.rps),
            ms(row.via_gateway.p99_ms),
            row.rps_ratio,
            row.p99_added_ms
        );
    }
    let _ = writeln!(md, "\n![gateway overhead](gateway_overhead.svg)\n");

    let c = &r.cold_start;
    let list = |runs: &[f64]| {
        runs.iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        md,
        "## 4. Cold start\n\nFrom spawning `gateway serve-spin --manifest spin.toml` to the first 2xx of `{}`, best of {}.\n\n\
         | Compile cache | Best | Runs (ms) |\n|---|---:|---|\n\
         | warm | {} | {} |\n| disabled (`--no-compile-cache`) | {} | {} |\n",
        c.probe,
        c.runs,
        ms(c.with_cache_ms),
        list(&c.with_cache_runs_ms),
        ms(c.without_cache_ms),
        list(&c.without_cache_runs_ms)
    );

    let s = &r.rss;
    let _ = writeln!(
        md,
        "## 5. Memory\n\nVmRSS of the gateway serving the app (built-in config, embedded host), \
         {} connections; workload: {}.\n\n| After requests | VmRSS |\n|---:|---:|",
        s.connections, s.workload
    );
    for sample in &s.samples {
        let _ = writeln!(
            md,
            "| {} | {:.1} MiB |",
            thousands(sample.requests as f64),
            sample.mib
        );
    }
    let _ = writeln!(
        md,
        "\nGrowth from {} to {} requests: {:.2}x.\n\n![memory](rss.svg)",
        thousands(s.early_requests as f64),
        thousands(s.late_requests as f64),
        s.growth
    );

    let t = &r.trace_recorder;
    let _ = writeln!(
        md,
        "\n## 6. The trace recorder's cost\n\n{}, wrk -t{} -c{}. Three gateways, one per setting, \
         take turns for {} round(s); each row is the run with the median gateway CPU time per request \
         (user + system from `/proc/PID/stat` over the run / requests). {}\n\n\
         | Setting | req/s | p99 | CPU per request | CPU vs off | req/s vs off | Traces recorded |\n\
         |---|---:|---:|---:|---:|---:|---:|",
        t.workload,
        t.threads,
        t.connections,
        t.rounds,
        if t.rounds < 2 {
            "One round, so no noise figure.".to_string()
        } else {
            format!(
                "Noise: the `off` runs spread by {:.1}% in CPU per request and {:.1}% in throughput.",
                t.noise_cpu * 100.0,
                t.noise_rps * 100.0
            )
        }
    );
    for setting in &t.settings {
        let _ = writeln!(
            md,
            "| `{}`: {} | {} | {} | {:.1} µs | {:.3}x | {:.3}x | {} |",
            setting.name,
            setting.description,
            thousands(setting.median.stats.rps),
            ms(setting.median.stats.p99_ms),
            setting.median.cpu_us_per_request,
            setting.cpu_vs_off,
            setting.rps_vs_off,
            thousands(setting.traces_recorded as f64)
        );
    }
    if let Some(mixed) = &r.mixed {
        let _ = writeln!(
            md,
            "\n{}\n![learned routing](mixed.svg)",
            super::mixed::markdown(mixed)
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: &[(u32, u64)] = &[(1, 300), (10, 3000), (100, 30000), (1000, 300000)];

    #[test]
    fn crossover_is_interpolated_between_the_neighbours() {
        let c = crossover(SIZES, &[1.1, 1.2, 1.3, 1.7], 1.5, 1 << 24);
        assert_eq!(c.within_up_to_items, Some(100));
        assert_eq!(c.exceeded_at_items, Some(1000));
        let bytes = c.crossover_bytes.expect("a crossing");
        // Half way between 30 kB and 300 kB in log space: ~94.9 kB.
        assert!((94_000..96_000).contains(&bytes), "{bytes}");
        assert_eq!(c.suggested_native_above_bytes, bytes / 1024 * 1024);
    }

    #[test]
    fn crossover_edges() {
        let never = crossover(SIZES, &[9.0, 5.0, 3.0, 2.0], 1.5, 1 << 24);
        assert_eq!(never.within_up_to_items, None);
        assert_eq!(never.suggested_native_above_bytes, 300);
        let always = crossover(SIZES, &[1.0, 1.0, 1.1, 1.2], 1.5, 1 << 24);
        assert_eq!(always.exceeded_at_items, None);
        assert_eq!(always.suggested_native_above_bytes, 1 << 24);
        // Within only in the middle: the last size within sets the crossing.
        let middle = crossover(SIZES, &[3.0, 1.4, 1.6, 2.0], 1.5, 1 << 24);
        assert_eq!(middle.within_up_to_items, Some(10));
        assert_eq!(middle.exceeded_at_items, Some(100));
    }

    #[test]
    fn numbers_are_readable() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(12.0), "12");
        assert_eq!(ms(0.045), "45 µs");
        assert_eq!(ms(2.5), "2.50 ms");
        assert_eq!(ms(150.4), "150 ms");
    }
}
