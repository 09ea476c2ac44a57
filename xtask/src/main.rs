//! `cargo xtask`: the project's task runner.
//!
//! The README promises two commands on a fresh machine, `cargo xtask up` and
//! `cargo xtask test`. Everything they need (a wasm32-wasip2 toolchain, the
//! components, the gateway) is prepared here, idempotently, so a second run
//! takes seconds.

mod bench;
mod deny;
mod toolchain;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use toolchain::WasmToolchain;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Set up, build, run and test the project"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Make wasm32-wasip2 builds work and install the tools the tests use
    /// (Prometheus, Chromium, the rotel OTLP collector); idempotent.
    Setup,
    /// Build the Spin components (.wasm, at the paths spin.toml names) and the gateway.
    Build,
    /// Set up, build, and run the gateway with the embedded Spin host.
    Up {
        /// Address the public API listens on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Extra arguments passed to the gateway binary.
        #[arg(last = true)]
        gateway_args: Vec<String>,
    },
    /// Set up, check the dependencies with cargo-deny (licenses, bans,
    /// sources; advisories when the database can be had), build the
    /// components, and run the whole test suite.
    Test {
        /// Extra arguments passed to `cargo test` (e.g. a test name filter).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Build only the Spin components.
    BuildComponents,
    /// Benchmarks, one run, one report (target/bench/report.{json,md} + SVG
    /// charts): validate Wasm vs native, a trivial hello vs `wasmtime serve`,
    /// gateway overhead, cold start, memory.
    Bench {
        /// Under a minute: fewer sizes, 1-second runs, same report structure.
        #[arg(long)]
        quick: bool,
        /// Seconds per wrk run (default: per scenario; 1 with --quick).
        #[arg(long)]
        seconds: Option<u64>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = project_root()?;
    match cli.command {
        Task::Setup => {
            let tc = toolchain::setup()?;
            println!("xtask: wasm32-wasip2 toolchain ready ({})", tc.describe());
            toolchain::setup_test_tools(&root)?;
            println!(
                "xtask: test tools ready (prometheus, promtool, chromium, wrk, rotel, the pinned Python tools)"
            );
            toolchain::setup_bench_tools()?;
            println!("xtask: benchmark tools ready (wrk, wasmtime CLI)");
        }
        Task::Bench { quick, seconds } => {
            let tc = toolchain::setup()?;
            toolchain::setup_bench_tools()?;
            build_components(&root, &tc)?;
            let report = bench::bench(&root, &bench::Options { quick, seconds })?;
            bench::check::check_report_file(&root, &report)?;
        }
        Task::BuildComponents => {
            let tc = toolchain::setup()?;
            build_components(&root, &tc)?;
        }
        Task::Build => {
            let tc = toolchain::setup()?;
            build_components(&root, &tc)?;
            build_gateway(&root)?;
        }
        Task::Up {
            listen,
            gateway_args,
        } => {
            let tc = toolchain::setup()?;
            build_components(&root, &tc)?;
            let gateway = build_gateway(&root)?;
            println!("xtask: starting the gateway on http://{listen} (embedded Spin host)");
            let status = Command::new(&gateway)
                .current_dir(&root)
                .args(["--manifest", "spin.toml", "--listen", &listen])
                .args(&gateway_args)
                .status()
                .with_context(|| format!("starting {}", gateway.display()))?;
            if !status.success() {
                bail!("the gateway exited with {status}");
            }
        }
        Task::Test { cargo_args } => {
            let tc = toolchain::setup()?;
            toolchain::setup_test_tools(&root)?;
            toolchain::ensure_cargo_deny()?;
            deny::check(&root)?;
            build_components(&root, &tc)?;
            run(Command::new(cargo())
                .current_dir(&root)
                .args(["test", "--workspace", "--locked"])
                .args(&cargo_args))?;
            // The criterion benches are not built by `cargo test`; build
            // them (not run) so `cargo bench` keeps compiling.
            run(Command::new(cargo()).current_dir(&root).args([
                "test",
                "--workspace",
                "--locked",
                "--benches",
                "--no-run",
            ]))?;
            // The benchmark's quick run: every scenario must run and the
            // report must match its schema (structure only, never times).
            // Skipped when only some tests were asked for.
            if cargo_args.is_empty() {
                bench_quick_and_check(&root)?;
            } else {
                println!("xtask: test filter given; skipping `cargo xtask bench --quick`");
            }
        }
    }
    Ok(())
}

/// `cargo xtask bench --quick`, then the report checked against its schema.
fn bench_quick_and_check(root: &Path) -> Result<()> {
    toolchain::setup_bench_tools()?;
    let options = bench::Options {
        quick: true,
        seconds: None,
    };
    let report = bench::bench(root, &options)?;
    bench::check::check_report_file(root, &report)?;
    println!(
        "xtask: benchmark report matches {}",
        bench::check::SCHEMA_PATH
    );
    Ok(())
}

/// The repository root: xtask lives one level below it.
fn project_root() -> Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .context("xtask must live one directory below the project root")
}

/// The cargo that runs us (rustup's), for the native builds.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Builds every component of the `components/` workspace in release mode;
/// the artifacts land in `target/wasm32-wasip2/release/`, where spin.toml
/// expects them.
fn build_components(root: &Path, tc: &WasmToolchain) -> Result<()> {
    println!("xtask: building Spin components for wasm32-wasip2");
    let mut cmd = tc.cargo_command();
    cmd.current_dir(root.join("components"))
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ])
        .args(tc.extra_build_args());
    run(&mut cmd)
}

/// Where `cargo xtask build` puts the binary it ships.
const DIST: &str = "target/dist";

/// Builds the gateway (release) and ships it stripped: `target/dist/gateway`
/// without debug info (code and symbols, so a backtrace still names
/// functions) and `target/dist/gateway.debug` with the line tables, which
/// the binary names in a `.gnu_debuglink` section. A backtrace finds the
/// `.debug` file beside the binary (as gdb and perf do) and gives file:line;
/// without it, function names only. Returns the shipped binary's path.
fn build_gateway(root: &Path) -> Result<PathBuf> {
    println!("xtask: building the gateway");
    run(Command::new(cargo()).current_dir(root).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "gateway",
    ]))?;
    let built = root.join("target/release/gateway");
    let dist = root.join(DIST);
    std::fs::create_dir_all(&dist).with_context(|| format!("creating {}", dist.display()))?;
    let (shipped, debug) = (dist.join("gateway"), dist.join("gateway.debug"));
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&built)
        .arg(&debug))?;
    run(Command::new("objcopy")
        .arg("--strip-debug")
        .arg(format!("--add-gnu-debuglink={}", debug.display()))
        .arg(&built)
        .arg(&shipped))?;
    let size = |path: &Path| {
        std::fs::metadata(path)
            .map(|m| format!("{:.1} MiB", m.len() as f64 / f64::from(1u32 << 20)))
            .unwrap_or_else(|_| "absent".to_string())
    };
    println!(
        "xtask: shipped {DIST}/gateway ({}, stripped); its line tables: {DIST}/gateway.debug ({})",
        size(&shipped),
        size(&debug)
    );
    Ok(shipped)
}

/// Runs a command to completion, failing with the command line on error.
///
/// Each command's wall time is printed when it ends, so a slow first run
/// on a fresh machine shows where its time went.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let started = std::time::Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    let program = cmd.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = cmd
        .get_args()
        .take(4)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    println!(
        "xtask: {:.1} s: {program} {}",
        started.elapsed().as_secs_f64(),
        args.join(" ")
    );
    if !status.success() {
        bail!("command failed ({status}): {shown}");
    }
    Ok(())
}
