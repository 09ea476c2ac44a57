//! `cargo xtask bench`: one run, one report.
//!
//! Every number comes from the same run on the same machine, measured with
//! wrk against release builds on loopback:
//!
//! 1. validate: native (the gateway, `backend = "native"`) vs Wasm with a
//!    fresh instance per request vs Wasm with instance reuse
//!    (`gateway serve-spin [--reuse-max-requests 128]`), 1 to 10,000 signed
//!    items; the Wasm/native crossover suggests the validate route's
//!    `fallback.native_above_bytes`;
//! 2. a trivial hello: native Axum vs the embedded host (fresh, reuse) vs
//!    `wasmtime serve` on the same component;
//! 3. gateway overhead: the gateway in front of the embedded host vs
//!    `gateway serve-spin` alone, for hello and create;
//! 4. cold start to the first Wasm 200, compile cache warm and disabled;
//! 5. RSS of the gateway serving the app, early and late;
//! 6. the in-memory trace recorder's cost: recording off vs the default
//!    sample with the dashboard closed vs open.
//!
//! Output: `target/bench/report.json` (schema:
//! `schemas/bench-report.schema.json`), `report.md` and SVG charts next to
//! them. `--quick` keeps the same structure in under a minute.

mod charts;
pub mod check;
mod mixed;
mod report;
mod scenarios;
mod server;
mod trace_cost;
mod wrk;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::toolchain::which;
use report::Report;
use scenarios::{Env, Plan};

/// Options of `cargo xtask bench`.
pub struct Options {
    /// Short runs, fewer sizes, same report structure.
    pub quick: bool,
    /// Overrides the length of every wrk run (seconds).
    pub seconds: Option<u64>,
}

/// Where the report goes.
pub fn out_dir(root: &Path) -> PathBuf {
    root.join("target/bench")
}

/// Runs every scenario and writes the report; returns the report.json path.
/// Expects the components to be built already.
pub fn bench(root: &Path, options: &Options) -> Result<PathBuf> {
    if which("wrk").is_none() {
        bail!("the benchmark needs `wrk` on PATH; `cargo xtask setup` installs it");
    }
    let wasmtime = crate::toolchain::wasmtime_cli()
        .context("the benchmark needs the `wasmtime` CLI; `cargo xtask setup` installs it")?;

    // The quick run checks that every scenario runs and the report has its
    // shape, never its numbers: it uses the debug binary the test build
    // makes (same command, same feature set, so nothing is rebuilt after
    // `cargo test`) instead of paying for a release build of wasmtime in CI.
    let profile = if options.quick { "debug" } else { "release" };
    println!("xtask bench: building the gateway ({profile})");
    let mut build = Command::new(crate::cargo());
    build.current_dir(root);
    if options.quick {
        build.args(["test", "--workspace", "--locked", "--no-run"]);
    } else {
        build.args(["build", "--release", "--locked", "-p", "gateway"]);
    }
    crate::run(&mut build)?;

    // The clock (and the load average) start once the build is done.
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1);
    let load_average_start = load_average();

    let out = out_dir(root);
    let work = out.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let plan = if options.quick {
        Plan::quick(options.seconds)
    } else {
        Plan::full(options.seconds)
    };
    let env = Env {
        root,
        gateway: root.join("target").join(profile).join("gateway"),
        wasmtime: wasmtime.clone(),
        work,
        plan: &plan,
    };

    let validate = timed("scenario 1 (validate)", || scenarios::validate(&env))?;
    let hello = timed("scenario 2 (hello)", || scenarios::hello(&env))?;
    let gateway_overhead = timed("scenario 3 (gateway overhead)", || {
        scenarios::overhead(&env)
    })?;
    let cold_start = timed("scenario 4 (cold start)", || scenarios::cold_start(&env))?;
    let rss = timed("scenario 5 (memory)", || scenarios::rss(&env))?;
    let trace_recorder = timed("scenario 6 (trace recorder)", || {
        trace_cost::trace_cost(&env)
    })?;
    let mixed = timed("scenario 7 (learned routing)", || {
        mixed::mixed(&env, validate.suggested_native_above_bytes)
    })?;
    let mut targets = report::targets(
        &validate,
        &hello,
        &gateway_overhead,
        &cold_start,
        &rss,
        &trace_recorder,
    )?;
    targets.extend(mixed::targets(&mixed));

    let report = Report {
        schema_version: report::SCHEMA_VERSION,
        mode: if options.quick { "quick" } else { "full" }.into(),
        started_unix,
        duration_seconds: started.elapsed().as_secs_f64(),
        machine: report::Machine {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| std::env::consts::OS.to_string()),
            load_average_start,
            load_average_end: load_average(),
            wrk: tool_version("wrk", &["-v"]),
            wasmtime: tool_version(&wasmtime.to_string_lossy(), &["--version"]),
            commit: commit(root),
        },
        validate,
        hello,
        gateway_overhead,
        cold_start,
        rss,
        trace_recorder,
        targets,
        mixed: Some(mixed),
    };

    let json_path = out.join("report.json");
    let json = serde_json::to_string_pretty(&report).context("serializing the report")?;
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md_path = out.join("report.md");
    std::fs::write(&md_path, report::markdown(&report))
        .with_context(|| format!("writing {}", md_path.display()))?;
    let charts = charts::write_all(&report, &out)?;

    println!("\n{}", report::markdown(&report));
    println!(
        "xtask bench: wrote {}, {} and {} charts in {:.0} s",
        json_path.display(),
        md_path.display(),
        charts.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(json_path)
}

/// Runs one scenario, naming it in its error and printing how long it took.
fn timed<T>(name: &str, scenario: impl FnOnce() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let result = scenario().context(name.to_string())?;
    println!(
        "xtask bench: {name} took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(result)
}

/// The 1-minute load average (0 when unknown).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// The first line that names a version (wrk prints it before its usage).
fn tool_version(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines()
                .next()
                .map(|l| l.split(" Copyright").next().unwrap_or(l).trim().to_string())
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("{program} (version unknown)"))
}

fn commit(root: &Path) -> String {
    Command::new("git")
        .current_dir(root)
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
