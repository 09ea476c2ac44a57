//! `cargo xtask bench`: speed measured side by side, reported as ratios.
//!
//! 1. criterion: the same batch validated natively and by the validate
//!    component in the embedded host (`gateway/benches/wasm_vs_native.rs`);
//!    the Wasm/native ratio per batch size is read from criterion's
//!    estimates.
//! 2. load (wrk, 50 connections, 2 threads): a trivial hello served by
//!    native Axum (the gateway's `/healthz`), by the embedded host
//!    (`gateway serve-spin` on the test component's `/ok`), and by
//!    `wasmtime serve` on the same component when it is installed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::run;
use crate::toolchain::which;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs both parts and prints the ratios.
pub fn bench(root: &Path, seconds: u32) -> Result<()> {
    run(Command::new(crate::cargo()).current_dir(root).args([
        "bench",
        "-p",
        "gateway",
        "--bench",
        "wasm_vs_native",
        "--",
        "--noplot",
    ]))?;
    println!("\n== Wasm (embedded host) vs native, same batch, same run");
    println!(
        "{:>8} {:>14} {:>14} {:>8}",
        "items", "native", "wasm", "ratio"
    );
    for n in [1, 100, 1000] {
        let native = estimate(root, "native", n)?;
        let wasm = estimate(root, "wasm-embedded", n)?;
        println!(
            "{n:>8} {:>11.1} µs {:>11.1} µs {:>7.2}x",
            native / 1000.0,
            wasm / 1000.0,
            wasm / native
        );
    }

    if which("wrk").is_none() {
        bail!("the load comparison needs wrk: apt-get install wrk");
    }
    run(Command::new(crate::cargo()).current_dir(root).args([
        "build",
        "--release",
        "-p",
        "gateway",
    ]))?;
    let gateway = root.join("target/release/gateway");
    let component = root.join("target/wasm32-wasip2/release/misbehave.wasm");
    let data = std::env::temp_dir().join("items-bench-data");

    let mut results = Vec::new();
    {
        let _native = spawn(
            Command::new(&gateway)
                .current_dir(root)
                .args([
                    "--manifest",
                    "spin.toml",
                    "--listen",
                    "127.0.0.1:18480",
                    "--admin-listen",
                    "127.0.0.1:18490",
                    "--data-dir",
                ])
                .arg(&data),
            "127.0.0.1:18480",
        )?;
        results.push((
            "native axum (gateway /healthz)",
            wrk("http://127.0.0.1:18480/healthz", seconds)?,
        ));
    }
    {
        let _embedded = spawn(
            Command::new(&gateway)
                .current_dir(root)
                .args([
                    "serve-spin",
                    "--manifest",
                    "gateway/spin-host/tests/fixtures/misbehave.toml",
                    "--listen",
                    "127.0.0.1:18481",
                    "--data-dir",
                ])
                .arg(&data),
            "127.0.0.1:18481",
        )?;
        results.push((
            "embedded host (serve-spin /ok)",
            wrk("http://127.0.0.1:18481/ok", seconds)?,
        ));
    }
    if which("wasmtime").is_some() {
        let _serve = spawn(
            Command::new("wasmtime")
                .args(["serve", "--addr", "127.0.0.1:18482", "-Scli"])
                .arg(&component),
            "127.0.0.1:18482",
        )?;
        results.push((
            "wasmtime serve (/ok)",
            wrk("http://127.0.0.1:18482/ok", seconds)?,
        ));
    } else {
        println!(
            "(wasmtime CLI not installed: `cargo install wasmtime-cli@48.0.8 --locked` to add it)"
        );
    }
    let base = results[0].1.0;
    println!("\n== Trivial hello under load (wrk -t2 -c50 -d{seconds}s), same machine, same run");
    println!(
        "{:<34} {:>12} {:>10} {:>10}",
        "server", "req/s", "p99", "vs native"
    );
    for (name, (rps, p99)) in &results {
        println!("{name:<34} {rps:>12.0} {p99:>10} {:>9.2}x", rps / base);
    }
    Ok(())
}

/// Mean time (ns) criterion estimated for `validate/<id>/<n>`.
fn estimate(root: &Path, id: &str, n: usize) -> Result<f64> {
    let path = root.join(format!(
        "target/criterion/validate/{id}/{n}/new/estimates.json"
    ));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    // {"mean":{"confidence_interval":{...},"point_estimate":123.4,...},...}
    let mean = text
        .split("\"mean\"")
        .nth(1)
        .and_then(|rest| rest.split("\"point_estimate\":").nth(1))
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no mean estimate in {}", path.display()))?;
    Ok(mean)
}

fn spawn(cmd: &mut Command, addr: &str) -> Result<Killed> {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let child = Killed(child);
    for _ in 0..600 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{cmd:?} did not listen on {addr}");
}

/// Requests per second and p99 latency from one wrk run.
fn wrk(url: &str, seconds: u32) -> Result<(f64, String)> {
    // Warm up (compilation caches, connection pools), then measure.
    let _ = Command::new("wrk")
        .args(["-t2", "-c50", "-d2s", url])
        .output();
    let out = Command::new("wrk")
        .args(["-t2", "-c50", &format!("-d{seconds}s"), "--latency", url])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "?".into());
    Ok((rps, p99))
}
