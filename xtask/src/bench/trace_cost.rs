//! Scenario 6: what the in-memory trace recorder costs a request.
//!
//! The gateway keeps recent traces for its dashboard, and promises that this
//! costs nothing measurable while nobody looks. Three gateways serve the
//! same hello route (GET /hello -> the `misbehave` component's `/ok`, the
//! cheapest request, where a per-request cost shows most) and take turns,
//! round by round:
//!
//! * `off`: `[telemetry] trace_sample = 0` and nobody looking, so no request
//!   is recorded (the baseline);
//! * `idle`: the default head sample (1 in 64), nobody looking: what every
//!   gateway pays while the dashboard is closed;
//! * `viewed`: the default, with `/admin/traces` polled during the run (the
//!   dashboard open): every request is recorded, up to 200 a second.
//!
//! Per run: throughput, p99, and the gateway process's CPU time per request
//! (user + system over the run, from `/proc/PID/stat`), which moves less
//! than throughput when wrk shares the two cores. The noise is the spread of
//! the `off` runs. Each gateway's count of recorded traces is read once, at
//! the end (reading it earlier would itself count as a viewer), and checks
//! the settings did what they say: `off` must have recorded none.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::report::{TraceCost, TraceRun, TraceSetting};
use super::scenarios::{Env, HELLO_MANIFEST, hello_routes, no_check};
use super::server::{self, Server};
use super::wrk::{self, Load, Requests};

/// wrk threads and connections of every run.
const THREADS: u32 = 2;
const CONNECTIONS: u32 = 16;
/// How often the `viewed` run polls `/admin/traces` (the viewer window is
/// 30 s, so any period under it keeps every request recorded).
const VIEWER_POLL: Duration = Duration::from_secs(5);

/// One setting under test.
struct Setting {
    name: &'static str,
    description: &'static str,
    tables: &'static str,
    viewed: bool,
}

const SETTINGS: [Setting; 3] = [
    Setting {
        name: "off",
        description: "`trace_sample = 0`, nobody looking: nothing recorded",
        tables: "[telemetry]\ntrace_sample = 0\n",
        viewed: false,
    },
    Setting {
        name: "idle",
        description: "default (1 in 64 recorded), dashboard closed",
        tables: "",
        viewed: false,
    },
    Setting {
        name: "viewed",
        description: "default, `/admin/traces` polled (dashboard open): every request recorded, at most 200/s",
        tables: "",
        viewed: true,
    },
];

/// Runs the scenario; see the module docs.
pub fn trace_cost(env: &Env<'_>) -> Result<TraceCost> {
    let mut gateways = Vec::new();
    for setting in &SETTINGS {
        let name = format!("trace-{}", setting.name);
        let (gateway, admin) = env.gateway_with(
            &name,
            HELLO_MANIFEST,
            setting.tables,
            &hello_routes(),
            "/hello",
        )?;
        gateways.push((setting, gateway, admin));
    }
    let rounds = env.plan.trace_rounds.max(1);
    let mut runs: Vec<Vec<TraceRun>> = vec![Vec::new(); SETTINGS.len()];
    for round in 0..rounds {
        for (i, (setting, gateway, admin)) in gateways.iter().enumerate() {
            let load = Load {
                label: format!("trace-{}", setting.name),
                url: gateway.url("/hello"),
                requests: Requests::Get,
                threads: THREADS,
                connections: CONNECTIONS,
                duration: Duration::from_secs(env.plan.trace_seconds),
                stop_after: None,
                think: None,
            };
            println!("xtask bench: {}, round {}/{rounds}", load.label, round + 1);
            if round == 0 {
                env.warm_up(gateway, &load, &no_check)?;
            }
            runs[i].push(measured_run(env, gateway, *admin, &load, setting.viewed)?);
        }
    }

    let mut settings = Vec::new();
    for ((setting, _, admin), runs) in gateways.iter().zip(runs) {
        let recorded = recorded_total(*admin)?;
        settings.push((setting, runs, recorded));
    }
    if let Some((_, _, recorded)) = settings.iter().find(|(s, _, _)| s.name == "off")
        && *recorded != 0
    {
        bail!(
            "the `off` gateway recorded {recorded} trace(s); trace_sample = 0 should record none"
        );
    }
    let median_of = |runs: &[TraceRun]| -> Result<TraceRun> {
        let mut sorted = runs.to_vec();
        sorted.sort_by(|a, b| a.cpu_us_per_request.total_cmp(&b.cpu_us_per_request));
        sorted
            .get(sorted.len() / 2)
            .cloned()
            .context("no trace-recorder run to take the median of")
    };
    let off_runs = settings
        .first()
        .map(|(_, runs, _)| runs.clone())
        .context("no `off` runs")?;
    let off = median_of(&off_runs)?;
    let spread = |key: fn(&TraceRun) -> f64| {
        let values: Vec<f64> = off_runs.iter().map(key).collect();
        let (lo, hi) = values.iter().fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
        let median = key(&off);
        if values.len() < 2 || median <= 0.0 {
            0.0
        } else {
            (hi - lo) / median
        }
    };
    let (noise_cpu, noise_rps) = (spread(|r| r.cpu_us_per_request), spread(|r| r.stats.rps));
    let mut out = Vec::new();
    for (setting, runs, recorded) in settings {
        let median = median_of(&runs)?;
        out.push(TraceSetting {
            name: setting.name.into(),
            description: setting.description.into(),
            cpu_vs_off: median.cpu_us_per_request / off.cpu_us_per_request,
            rps_vs_off: median.stats.rps / off.stats.rps,
            traces_recorded: recorded,
            median,
            runs,
        });
    }
    Ok(TraceCost {
        workload: "GET /hello -> misbehave /ok (embedded, fresh instance)".into(),
        threads: THREADS,
        connections: CONNECTIONS,
        rounds,
        noise_cpu,
        noise_rps,
        settings: out,
    })
}

/// One wrk run with the gateway's CPU time read around it; for `viewed`,
/// `/admin/traces` is polled before and during the run.
fn measured_run(
    env: &Env<'_>,
    gateway: &Server,
    admin: std::net::SocketAddr,
    load: &Load,
    viewed: bool,
) -> Result<TraceRun> {
    if viewed {
        poll_traces(admin)?;
    }
    let cpu_before = gateway.cpu_seconds()?;
    let done = AtomicBool::new(false);
    let stats = std::thread::scope(|scope| {
        if viewed {
            scope.spawn(|| {
                let mut waited = Duration::ZERO;
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    waited += Duration::from_millis(100);
                    if waited >= VIEWER_POLL {
                        waited = Duration::ZERO;
                        let _ = poll_traces(admin);
                    }
                }
            });
        }
        let result = wrk::run(load, &env.work);
        done.store(true, Ordering::Relaxed);
        result
    })?;
    let cpu = gateway.cpu_seconds()? - cpu_before;
    Ok(TraceRun {
        cpu_us_per_request: cpu * 1e6 / stats.requests.max(1) as f64,
        stats,
    })
}

/// `GET /admin/traces?limit=1`: what the dashboard does while it is open.
fn poll_traces(admin: std::net::SocketAddr) -> Result<serde_json::Value> {
    let (status, body) = server::http(admin, "GET", "/admin/traces?limit=1", None)?;
    if status != 200 {
        bail!("GET /admin/traces answered {status} on {admin}");
    }
    serde_json::from_slice(&body).context("unreadable /admin/traces answer")
}

/// How many traces the gateway has recorded since it started.
fn recorded_total(admin: std::net::SocketAddr) -> Result<u64> {
    let traces = poll_traces(admin)?;
    traces["recording"]["recorded_total"]
        .as_u64()
        .with_context(|| format!("no recording.recorded_total in /admin/traces on {admin}"))
}
