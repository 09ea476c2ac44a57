//! The five scenarios. Each starts the servers it needs (release builds, on
//! free loopback ports), warms them up, measures with wrk, and stops them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::report::{
    CROSSOVER_RATIO, ColdStart, Crossovers, Hello, Overhead, OverheadRow, Rss, RssSample, Validate,
    ValidateRow, crossover,
};
use super::server::{Server, free_addr};
use super::wrk::{self, Load, Requests, Stats};

/// The misbehave test component's manifest (GET /ok answers 200 `ok`).
pub(super) const HELLO_MANIFEST: &str = "gateway/spin-host/tests/fixtures/misbehave.toml";
const HELLO_WASM: &str = "target/wasm32-wasip2/release/misbehave.wasm";
/// What `--reuse-max-requests` is set to for the "reuse" servers.
const REUSE_MAX_REQUESTS: &str = "128";
/// The first-200 probe of the app: the list component, one item.
const APP_PROBE: &str = "/list?limit=1";
/// A new item without an id: the server assigns one, so every request
/// creates a row.
const CREATE_BODY: &str =
    r#"{"name":"bench item","tags":["bench"],"price":{"amount_cents":100,"currency":"EUR"}}"#;

/// Sizes and durations of one run.
pub struct Plan {
    pub quick: bool,
    /// Batch sizes (items) and seconds per measured run.
    pub validate: Vec<(u32, u64)>,
    /// Runs per cell of the validate, hello and overhead scenarios, the
    /// servers of a cell taking turns; the median run is kept.
    pub rounds: u32,
    pub hello_seconds: u64,
    pub overhead_connections: Vec<u32>,
    pub overhead_seconds: u64,
    pub cold_runs: u32,
    /// Rounds of the trace-recorder scenario (each setting once a round)
    /// and seconds per run.
    pub trace_rounds: u32,
    pub trace_seconds: u64,
    /// Request counts at which the gateway's RSS is sampled; the first is
    /// "early", the last "late".
    pub rss_samples: Vec<u64>,
    /// Warm-up before each measured run: at most this many requests...
    pub warmup_requests: u32,
    /// ...or this long.
    pub warmup: Duration,
}

impl Plan {
    /// The full run (about 6 minutes on 2 cores). `seconds` overrides the
    /// length of every wrk run.
    pub fn full(seconds: Option<u64>) -> Plan {
        let s = |default: u64| seconds.unwrap_or(default);
        Plan {
            quick: false,
            validate: vec![
                (1, s(2)),
                (10, s(2)),
                (100, s(2)),
                (1000, s(2)),
                (10_000, s(4)),
            ],
            rounds: 3,
            hello_seconds: s(3),
            overhead_connections: vec![1, 16, 64],
            overhead_seconds: s(2),
            cold_runs: 3,
            trace_rounds: 5,
            trace_seconds: s(2),
            rss_samples: vec![1_000, 10_000, 25_000, 50_000, 75_000, 100_000],
            warmup_requests: 50,
            warmup: Duration::from_secs(1),
        }
    }

    /// Under a minute: fewer sizes, 1-second runs, one connection level.
    pub fn quick(seconds: Option<u64>) -> Plan {
        let s = seconds.unwrap_or(1);
        Plan {
            quick: true,
            validate: vec![(1, s), (100, s), (1000, s)],
            rounds: 1,
            hello_seconds: s,
            overhead_connections: vec![64],
            overhead_seconds: s,
            cold_runs: 1,
            trace_rounds: 1,
            trace_seconds: s,
            rss_samples: vec![200, 1_000, 2_000],
            warmup_requests: 10,
            warmup: Duration::from_millis(200),
        }
    }
}

/// Where things are.
pub struct Env<'a> {
    pub root: &'a Path,
    /// `target/release/gateway`.
    pub gateway: PathBuf,
    /// The `wasmtime` CLI.
    pub wasmtime: PathBuf,
    /// Scratch space: bodies, scripts, configs, data dirs, server logs.
    pub work: PathBuf,
    pub plan: &'a Plan,
}

impl Env<'_> {
    fn gateway_command(&self) -> Command {
        let mut cmd = Command::new(&self.gateway);
        cmd.current_dir(self.root);
        // The defaults, whatever the calling shell has: info logs, no export.
        for var in [
            "RUST_LOG",
            "GATEWAY_CONFIG",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// A fresh, empty data directory.
    fn data_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.work.join("data").join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// `gateway serve-spin --manifest MANIFEST [--reuse-max-requests 128] EXTRA`.
    fn serve_spin_command(
        &self,
        name: &str,
        manifest: &str,
        reuse: bool,
        extra: &[&str],
    ) -> Result<(Command, std::net::SocketAddr)> {
        let addr = free_addr()?;
        let mut cmd = self.gateway_command();
        cmd.args([
            "serve-spin",
            "--manifest",
            manifest,
            "--listen",
            &addr.to_string(),
            "--data-dir",
        ])
        .arg(self.data_dir(name)?);
        if reuse {
            cmd.args(["--reuse-max-requests", REUSE_MAX_REQUESTS]);
        }
        cmd.args(extra);
        Ok((cmd, addr))
    }

    fn serve_spin(&self, name: &str, manifest: &str, reuse: bool, probe: &str) -> Result<Server> {
        let (mut cmd, addr) = self.serve_spin_command(name, manifest, reuse, &[])?;
        Server::start(name, &mut cmd, addr, probe, &self.work)
    }

    /// The gateway with a config file written from `routes` (TOML
    /// `[[route]]` tables) and `[spin] manifest = MANIFEST`; returns the
    /// server (public listener) and its admin address.
    pub(super) fn gateway(
        &self,
        name: &str,
        manifest: &str,
        routes: &str,
        probe: &str,
    ) -> Result<(Server, std::net::SocketAddr)> {
        self.gateway_with(name, manifest, "", routes, probe)
    }

    /// [`Env::gateway`] with `tables` (more TOML tables, e.g.
    /// `[telemetry]`) between `[spin]` and the routes.
    pub(super) fn gateway_with(
        &self,
        name: &str,
        manifest: &str,
        tables: &str,
        routes: &str,
        probe: &str,
    ) -> Result<(Server, std::net::SocketAddr)> {
        let (listen, admin) = (free_addr()?, free_addr()?);
        let data = self.data_dir(name)?;
        let config = format!(
            "# Written by `cargo xtask bench`.\n[server]\nlisten = \"{listen}\"\nadmin_listen = \"{admin}\"\n\n\
             [spin]\nmode = \"embedded\"\nmanifest = {}\ndata_dir = {}\n\n{tables}\n{routes}",
            toml_str(&self.root.join(manifest)),
            toml_str(&data)
        );
        let path = self.work.join(format!("{name}.toml"));
        std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
        let mut cmd = self.gateway_command();
        cmd.arg("--config").arg(&path);
        Ok((
            Server::start(name, &mut cmd, listen, probe, &self.work)?,
            admin,
        ))
    }

    /// Runs each server's load in turn, `plan.rounds` times (warming each
    /// up, and checking its first answer, before its first run), and keeps
    /// per server the run with the median `key`. Side by side, a busy
    /// moment on the machine hits every server alike.
    fn take_turns(
        &self,
        loads: &[(&Server, Load)],
        key: fn(&Stats) -> f64,
        check: &dyn Fn(&[u8]) -> Result<()>,
    ) -> Result<Vec<Stats>> {
        let rounds = self.plan.rounds.max(1);
        let mut runs = vec![Vec::new(); loads.len()];
        for round in 0..rounds {
            for (i, (server, load)) in loads.iter().enumerate() {
                println!("xtask bench: {}, round {}/{rounds}", load.label, round + 1);
                if round == 0 {
                    self.warm_up(server, load, check)?;
                }
                runs[i].push(wrk::run(load, &self.work)?);
            }
        }
        runs.into_iter().map(|r| median_by(r, key)).collect()
    }

    /// Sends the run's request until the plan's warm-up count or time is
    /// reached; every answer must be 2xx, and the first one pass `check`.
    pub(super) fn warm_up(
        &self,
        server: &Server,
        load: &Load,
        check: &dyn Fn(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let path = load
            .url
            .split_once("//")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
            .unwrap_or_else(|| "/".into());
        let (method, body) = match &load.requests {
            Requests::Get => ("GET", None),
            Requests::PostFile(file) => (
                "POST",
                Some(std::fs::read(file).with_context(|| format!("reading {}", file.display()))?),
            ),
            Requests::Mix(_) => bail!("{}: mixed runs are not warmed up here", load.label),
        };
        let addr = load
            .url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("no address in {}", load.url))?;
        let started = Instant::now();
        for i in 0..self.plan.warmup_requests.max(1) {
            let (status, answer) = super::server::http(addr, method, &path, body.as_deref())
                .with_context(|| format!("{}: warm-up {method} {}", load.label, load.url))?;
            if !(200..300).contains(&status) {
                bail!(
                    "{}: {method} {} answered {status} during warm-up ({}): {}",
                    load.label,
                    load.url,
                    server.name,
                    String::from_utf8_lossy(&answer[..answer.len().min(300)])
                );
            }
            if i == 0 {
                check(&answer).with_context(|| {
                    format!("{}: checking the answer of {}", load.label, load.url)
                })?;
            }
            if started.elapsed() > self.plan.warmup {
                break;
            }
        }
        Ok(())
    }
}

/// A TOML basic string.
fn toml_str(path: &Path) -> String {
    let text = path.to_string_lossy();
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The run with the median `key` (the middle one of 3 rounds): one
/// disturbed round does not move the result.
fn median_by(mut runs: Vec<Stats>, key: fn(&Stats) -> f64) -> Result<Stats> {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let middle = runs.len() / 2;
    runs.into_iter()
        .nth(middle)
        .context("no run to take the median of")
}

fn mean_latency(s: &Stats) -> f64 {
    s.mean_ms
}

fn throughput(s: &Stats) -> f64 {
    s.rps
}

pub(super) fn no_check(_: &[u8]) -> Result<()> {
    Ok(())
}

/// A batch of `n` items, every one signed with Ed25519 (as
/// `gateway/benches/wasm_vs_native.rs` builds them).
pub fn signed_batch(n: u32) -> Result<Vec<u8>> {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let mut items = Vec::with_capacity(n as usize);
    for i in 0..n {
        let mut item = json!({
            "id": i,
            "name": format!("item {i}"),
            "tags": ["bench", "batch"],
            "price": {"amount_cents": 100 + u64::from(i), "currency": "EUR"},
        });
        items_core::sign_item(&mut item, &key)
            .map_err(|e| anyhow::anyhow!("signing item {i}: {e:?}"))?;
        items.push(item);
    }
    serde_json::to_vec(&json!({ "items": items })).context("serializing a batch")
}

/// Scenario 1: POST /validate, native vs Wasm fresh vs Wasm reuse.
pub fn validate(env: &Env<'_>) -> Result<Validate> {
    let mut bodies = Vec::new();
    for &(items, _) in &env.plan.validate {
        let body = signed_batch(items)?;
        let path = env.work.join(format!("validate-{items}.json"));
        std::fs::write(&path, &body).with_context(|| format!("writing {}", path.display()))?;
        bodies.push((items, body.len() as u64, path));
    }
    let check = |items: u32| {
        move |answer: &[u8]| -> Result<()> {
            let expected = format!("{{\"valid\":{items},\"invalid\":0,");
            if !answer.starts_with(expected.as_bytes()) {
                bail!(
                    "expected a verdict starting {expected}, got {}",
                    String::from_utf8_lossy(&answer[..answer.len().min(200)])
                );
            }
            Ok(())
        }
    };
    // All three servers run side by side and take turns, size by size and
    // round by round, so a busy moment on the machine hits them alike.
    let (native_server, _) = env.gateway(
        "validate-native",
        "spin.toml",
        &app_routes(),
        "/items?limit=1",
    )?;
    let fresh_server = env.serve_spin("validate-fresh", "spin.toml", false, APP_PROBE)?;
    let reuse_server = env.serve_spin("validate-reuse", "spin.toml", true, APP_PROBE)?;
    let servers = [
        ("native", &native_server),
        ("wasm-fresh", &fresh_server),
        ("wasm-reuse", &reuse_server),
    ];
    let mut cells: Vec<Vec<Stats>> = Vec::new();
    for (&(items, seconds), (_, _, body)) in env.plan.validate.iter().zip(&bodies) {
        let loads: Vec<(&Server, Load)> = servers
            .iter()
            .map(|&(label, server)| {
                let load = Load {
                    label: format!("validate-{items}-{label}"),
                    url: server.url("/validate"),
                    requests: Requests::PostFile(body.clone()),
                    threads: 1,
                    connections: 1,
                    duration: Duration::from_secs(seconds),
                    stop_after: None,
                    think: None,
                };
                (server, load)
            })
            .collect();
        cells.push(env.take_turns(&loads, mean_latency, &check(items))?);
    }
    let native: Vec<Stats> = cells.iter().map(|c| c[0].clone()).collect();
    let fresh: Vec<Stats> = cells.iter().map(|c| c[1].clone()).collect();
    let reuse: Vec<Stats> = cells.iter().map(|c| c[2].clone()).collect();

    let mut rows = Vec::new();
    for (i, (items, bytes, _)) in bodies.iter().enumerate() {
        rows.push(ValidateRow {
            items: *items,
            body_bytes: *bytes,
            fresh_ratio: fresh[i].mean_ms / native[i].mean_ms,
            reuse_ratio: reuse[i].mean_ms / native[i].mean_ms,
            native: native[i].clone(),
            wasm_fresh: fresh[i].clone(),
            wasm_reuse: reuse[i].clone(),
        });
    }
    let sizes: Vec<(u32, u64)> = rows.iter().map(|r| (r.items, r.body_bytes)).collect();
    let fresh_ratios: Vec<f64> = rows.iter().map(|r| r.fresh_ratio).collect();
    let reuse_ratios: Vec<f64> = rows.iter().map(|r| r.reuse_ratio).collect();
    let max = items_core::MAX_BATCH_BYTES as u64;
    let crossovers = Crossovers {
        threshold: CROSSOVER_RATIO,
        fresh: crossover(&sizes, &fresh_ratios, CROSSOVER_RATIO, max),
        reuse: crossover(&sizes, &reuse_ratios, CROSSOVER_RATIO, max),
    };
    Ok(Validate {
        connections: 1,
        rounds: env.plan.rounds.max(1),
        rows,
        suggested_native_above_bytes: crossovers.fresh.suggested_native_above_bytes,
        suggestion_basis: format!(
            "the built-in config runs validate in a fresh instance per request; with \
             `[spin.component.validate] reuse` use {} instead",
            crossovers.reuse.suggested_native_above_bytes
        ),
        crossover: crossovers,
    })
}

/// The app's public routes used here: create and list through Spin, and
/// validate served natively.
fn app_routes() -> String {
    r#"[[route]]
name = "list"
match = { method = "GET", path = "/items" }
backend = "spin"
spin_path = "/list"

[[route]]
name = "create"
match = { method = "POST", path = "/items" }
backend = "spin"
spin_path = "/create"

[[route]]
name = "validate"
match = { method = "POST", path = "/validate" }
backend = "native"
native = "validate"
max_body_bytes = 16777216
"#
    .to_string()
}

/// GET /hello → the misbehave component's /ok.
pub(super) fn hello_routes() -> String {
    r#"[[route]]
name = "hello"
match = { method = "GET", path = "/hello" }
backend = "spin"
spin_path = "/ok"
"#
    .to_string()
}

/// Scenario 2: trivial hello, wrk -t2 -c50.
pub fn hello(env: &Env<'_>) -> Result<Hello> {
    let (threads, connections) = (2, 50);
    let load = |label: &str, url: String| Load {
        label: format!("hello-{label}"),
        url,
        requests: Requests::Get,
        threads,
        connections,
        duration: Duration::from_secs(env.plan.hello_seconds),
        stop_after: None,
        think: None,
    };
    let (gateway, admin) =
        env.gateway("hello-native", HELLO_MANIFEST, &hello_routes(), "/hello")?;
    let fresh = env.serve_spin("hello-fresh", HELLO_MANIFEST, false, "/ok")?;
    let reuse = env.serve_spin("hello-reuse", HELLO_MANIFEST, true, "/ok")?;
    let wasmtime = {
        let addr = free_addr()?;
        let mut cmd = Command::new(&env.wasmtime);
        cmd.current_dir(env.root)
            .args(["serve", "--addr", &addr.to_string(), "-Scli"])
            .arg(env.root.join(HELLO_WASM));
        Server::start("hello-wasmtime", &mut cmd, addr, "/ok", &env.work)?
    };
    let loads = [
        (
            &gateway,
            load("native-axum", format!("http://{admin}/healthz")),
        ),
        (&fresh, load("embedded-fresh", fresh.url("/ok"))),
        (&reuse, load("embedded-reuse", reuse.url("/ok"))),
        (&wasmtime, load("wasmtime-serve", wasmtime.url("/ok"))),
    ];
    let [native_axum, embedded_fresh, embedded_reuse, wasmtime_serve]: [Stats; 4] = env
        .take_turns(&loads, throughput, &no_check)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("expected four hello results"))?;
    Ok(Hello {
        threads,
        connections,
        rounds: env.plan.rounds.max(1),
        native_axum,
        embedded_fresh,
        embedded_reuse,
        wasmtime_serve,
    })
}

/// Scenario 3: the gateway in front of the embedded host vs serve-spin alone.
pub fn overhead(env: &Env<'_>) -> Result<Overhead> {
    let create_body = env.work.join("create.json");
    std::fs::write(&create_body, CREATE_BODY)
        .with_context(|| format!("writing {}", create_body.display()))?;
    let mut rows = Vec::new();
    // (workload, direct server, its path, gateway, its path, requests)
    let hello_direct = env.serve_spin("overhead-hello-direct", HELLO_MANIFEST, false, "/ok")?;
    let (hello_gateway, _) = env.gateway(
        "overhead-hello-gateway",
        HELLO_MANIFEST,
        &hello_routes(),
        "/hello",
    )?;
    let create_direct = env.serve_spin("overhead-create-direct", "spin.toml", false, APP_PROBE)?;
    let (create_gateway, _) = env.gateway(
        "overhead-create-gateway",
        "spin.toml",
        &app_routes(),
        "/items?limit=1",
    )?;
    let workloads = [
        (
            "hello",
            &hello_direct,
            "/ok",
            &hello_gateway,
            "/hello",
            None,
        ),
        (
            "create",
            &create_direct,
            "/create",
            &create_gateway,
            "/items",
            Some(&create_body),
        ),
    ];
    for (workload, direct, direct_path, gateway, gateway_path, body) in workloads {
        for &connections in &env.plan.overhead_connections {
            let load = |side: &str, server: &Server, path: &str| Load {
                label: format!("overhead-{workload}-c{connections}-{side}"),
                url: server.url(path),
                requests: match body {
                    Some(file) => Requests::PostFile(file.clone()),
                    None => Requests::Get,
                },
                threads: if connections == 1 { 1 } else { 2 },
                connections,
                duration: Duration::from_secs(env.plan.overhead_seconds),
                stop_after: None,
                think: None,
            };
            let loads = [
                (direct, load("direct", direct, direct_path)),
                (gateway, load("gateway", gateway, gateway_path)),
            ];
            let [direct, via_gateway]: [Stats; 2] = env
                .take_turns(&loads, throughput, &no_check)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("expected two overhead results"))?;
            rows.push(OverheadRow {
                workload: workload.into(),
                connections,
                rps_ratio: via_gateway.rps / direct.rps,
                p99_added_ms: via_gateway.p99_ms - direct.p99_ms,
                direct,
                via_gateway,
            });
        }
    }
    Ok(Overhead {
        rounds: env.plan.rounds.max(1),
        rows,
    })
}

/// Scenario 4: spawn to first Wasm 200, compile cache warm vs disabled.
pub fn cold_start(env: &Env<'_>) -> Result<ColdStart> {
    let once = |label: &str, extra: &[&str]| -> Result<f64> {
        let name = format!("cold-{label}");
        let (mut cmd, addr) = env.serve_spin_command(&name, "spin.toml", false, extra)?;
        let started = Instant::now();
        let mut server = Server::spawn(&name, &mut cmd, addr, &env.work)?;
        server.wait_ready(APP_PROBE, Duration::from_secs(120))?;
        Ok(started.elapsed().as_secs_f64() * 1e3)
    };
    println!("xtask bench: cold start (warming the compile cache)");
    once("warm-up", &[])?;
    let mut with_cache = Vec::new();
    let mut without_cache = Vec::new();
    for i in 0..env.plan.cold_runs {
        println!("xtask bench: cold start {}/{}", i + 1, env.plan.cold_runs);
        with_cache.push(once("cached", &[])?);
        without_cache.push(once("uncached", &["--no-compile-cache"])?);
    }
    let best = |runs: &[f64]| runs.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(ColdStart {
        probe: format!("GET {APP_PROBE}"),
        runs: env.plan.cold_runs,
        with_cache_ms: best(&with_cache),
        without_cache_ms: best(&without_cache),
        with_cache_runs_ms: with_cache,
        without_cache_runs_ms: without_cache,
    })
}

/// Scenario 5: VmRSS of the gateway (built-in config, the app) after the
/// early and the late request counts.
pub fn rss(env: &Env<'_>) -> Result<Rss> {
    let validate_body = env.work.join("rss-validate-10.json");
    std::fs::write(&validate_body, signed_batch(10)?)
        .with_context(|| format!("writing {}", validate_body.display()))?;
    let create_body = env.work.join("rss-create.json");
    std::fs::write(&create_body, CREATE_BODY)
        .with_context(|| format!("writing {}", create_body.display()))?;
    let (listen, admin) = (free_addr()?, free_addr()?);
    let mut cmd = env.gateway_command();
    cmd.args(["--manifest", "spin.toml", "--listen", &listen.to_string()])
        .args(["--admin-listen", &admin.to_string(), "--data-dir"])
        .arg(env.data_dir("rss")?);
    let server = Server::start("rss-gateway", &mut cmd, listen, "/items?limit=1", &env.work)?;
    let connections = 8;
    // 20 requests a cycle: list and validate alternately, one create (SQLite
    // writes are the slowest part; all creates would make 100,000 requests
    // take many minutes).
    let mix = || {
        let mut requests: Vec<(&'static str, String, Option<PathBuf>)> = (0..19)
            .map(|i| {
                if i % 2 == 0 {
                    ("GET", "/items?limit=10".to_string(), None)
                } else {
                    ("POST", "/validate".to_string(), Some(validate_body.clone()))
                }
            })
            .collect();
        requests.push(("POST", "/items".into(), Some(create_body.clone())));
        Requests::Mix(requests)
    };
    let cap = Duration::from_secs(if env.plan.quick { 60 } else { 600 });
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut served = 0;
    let mut samples = Vec::new();
    for &until in &env.plan.rss_samples {
        println!("xtask bench: memory, up to {until} requests");
        let run = wrk::run(
            &Load {
                label: format!("rss-{until}"),
                url: server.url("/"),
                requests: mix(),
                threads: 1,
                connections,
                duration: cap,
                stop_after: Some(until.saturating_sub(served).max(1)),
                think: None,
            },
            &env.work,
        )?;
        served += run.requests;
        samples.push(RssSample {
            requests: served,
            mib: mib(server.rss_bytes()?),
        });
    }
    let (early, late) = match (samples.first(), samples.last()) {
        (Some(first), Some(last)) if samples.len() >= 2 => (first.clone(), last.clone()),
        _ => bail!("the memory scenario needs at least two samples"),
    };
    Ok(Rss {
        workload:
            "cycles of 20: GET /items?limit=10 and POST /validate (10 signed items) alternately, \
             then one POST /items (new item)"
                .into(),
        connections,
        early_requests: early.requests,
        early_mib: early.mib,
        late_requests: late.requests,
        late_mib: late.mib,
        growth: late.mib / early.mib,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_signed_and_valid() {
        let body = signed_batch(3).expect("a batch");
        let verdict =
            items_core::validate_batch(&body, &items_core::TrustedKeys::any()).expect("a verdict");
        assert_eq!((verdict.valid, verdict.invalid), (3, 0));
        let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert!(value["items"][2]["signature"]["value"].is_string());
    }
}
