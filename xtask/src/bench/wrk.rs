//! Load runs with `wrk`, driven by generated Lua scripts.
//!
//! Every script ends with the same `done` hook, which prints wrk's own
//! summary and latency histogram as one JSON line (latencies in µs, exactly
//! as wrk recorded them), so nothing is parsed from wrk's human-readable
//! output.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Marks the JSON line the `done` hook prints.
const RESULT_MARK: &str = "XTASK_WRK_RESULT ";

/// What each request of a run looks like.
#[derive(Clone)]
pub enum Requests {
    /// `GET` the URL's path.
    Get,
    /// `POST` the file's bytes as `application/json` to the URL's path.
    PostFile(PathBuf),
    /// Cycle through these requests (method, path, optional JSON body file).
    Mix(Vec<(&'static str, String, Option<PathBuf>)>),
}

/// One wrk run.
#[derive(Clone)]
pub struct Load {
    /// Label used in logs, file names and error messages.
    pub label: String,
    /// `http://127.0.0.1:PORT/path`.
    pub url: String,
    pub requests: Requests,
    pub threads: u32,
    pub connections: u32,
    /// Run length (whole seconds; wrk's resolution).
    pub duration: Duration,
    /// Stop after about this many responses (the run then uses one thread;
    /// `duration` is only a cap).
    pub stop_after: Option<u64>,
    /// Each connection waits an exponentially distributed think time of
    /// this mean before each request (`None`: none, the closed loop). With
    /// many connections and a think time far above the latency, requests
    /// arrive at about `connections / think` per second whatever the
    /// latency: the many-clients, open-loop-like load of a public API.
    pub think: Option<Duration>,
}

/// What one wrk run measured.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Stats {
    /// Completed requests.
    pub requests: u64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// Requests per second.
    pub rps: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Responses with status >= 400, plus connect/read/write errors and
    /// timeouts.
    pub errors: u64,
}

/// The JSON the `done` hook prints.
#[derive(Deserialize)]
struct Raw {
    requests: f64,
    duration_us: f64,
    connect_errors: f64,
    read_errors: f64,
    write_errors: f64,
    status_errors: f64,
    timeouts: f64,
    mean_us: f64,
    max_us: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
}

/// Runs wrk and returns its statistics. Fails when wrk fails, when nothing
/// completed, or when more than 1% of the requests failed.
pub fn run(load: &Load, work_dir: &Path) -> Result<Stats> {
    let script = work_dir.join(format!("{}.lua", file_stem(&load.label)));
    std::fs::write(&script, lua_script(load))
        .with_context(|| format!("writing {}", script.display()))?;
    let threads = if load.stop_after.is_some() {
        1
    } else {
        load.threads.clamp(1, load.connections.max(1))
    };
    let seconds = load.duration.as_secs().max(1);
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{}", load.connections.max(1)))
        .arg(format!("-d{seconds}s"))
        .arg("--timeout")
        .arg("60s")
        .arg("-s")
        .arg(&script)
        .arg(&load.url);
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("could not start {shown} (is wrk installed?)"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{} ({shown}) failed with {}:\n{stdout}{}",
            load.label,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT_MARK))
        .with_context(|| {
            format!(
                "{}: no result line in the output of {shown}:\n{stdout}",
                load.label
            )
        })?;
    let raw: Raw = serde_json::from_str(line)
        .with_context(|| format!("{}: unreadable wrk result {line:?}", load.label))?;
    let stats = stats_from(&raw);
    if stats.requests == 0 {
        bail!(
            "{}: no request completed in {seconds} s ({shown}):\n{stdout}",
            load.label
        );
    }
    if stats.errors * 100 > stats.requests {
        bail!(
            "{}: {} of {} requests failed ({shown}); see the server log:\n{stdout}",
            load.label,
            stats.errors,
            stats.requests
        );
    }
    Ok(stats)
}

fn stats_from(raw: &Raw) -> Stats {
    let seconds = raw.duration_us / 1e6;
    let requests = raw.requests.max(0.0) as u64;
    Stats {
        requests,
        seconds,
        rps: if seconds > 0.0 {
            raw.requests / seconds
        } else {
            0.0
        },
        mean_ms: raw.mean_us / 1e3,
        p50_ms: raw.p50_us / 1e3,
        p90_ms: raw.p90_us / 1e3,
        p99_ms: raw.p99_us / 1e3,
        max_ms: raw.max_us / 1e3,
        errors: (raw.connect_errors
            + raw.read_errors
            + raw.write_errors
            + raw.status_errors
            + raw.timeouts)
            .max(0.0) as u64,
    }
}

fn file_stem(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A Lua string literal (long brackets would do too; this is simpler to read).
fn lua_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The Lua script for a run: request set-up, optional stop counter, and the
/// `done` hook that prints the result line.
fn lua_script(load: &Load) -> String {
    let mut lua = String::from("-- generated by `cargo xtask bench`\n");
    lua.push_str(
        "local function slurp(path)\n  \
           local f = assert(io.open(path, \"rb\"))\n  \
           local data = f:read(\"*a\")\n  \
           f:close()\n  \
           return data\nend\n",
    );
    match &load.requests {
        Requests::Get => lua.push_str("wrk.method = \"GET\"\n"),
        Requests::PostFile(body) => {
            let _ = write!(
                lua,
                "wrk.method = \"POST\"\nwrk.body = slurp({})\n\
                 wrk.headers[\"Content-Type\"] = \"application/json\"\n",
                lua_string(&body.to_string_lossy())
            );
        }
        Requests::Mix(list) => {
            lua.push_str("local mix = {}\nfunction init(args)\n");
            for (method, path, body) in list {
                match body {
                    Some(body) => {
                        let _ = writeln!(
                            lua,
                            "  mix[#mix + 1] = wrk.format({}, {}, {{[\"Content-Type\"] = \"application/json\"}}, slurp({}))",
                            lua_string(method),
                            lua_string(path),
                            lua_string(&body.to_string_lossy())
                        );
                    }
                    None => {
                        let _ = writeln!(
                            lua,
                            "  mix[#mix + 1] = wrk.format({}, {})",
                            lua_string(method),
                            lua_string(path)
                        );
                    }
                }
            }
            lua.push_str(
                "end\nlocal turn = 0\nfunction request()\n  \
                   turn = turn % #mix + 1\n  \
                   return mix[turn]\nend\n",
            );
        }
    }
    if let Some(think) = load.think {
        // wrk calls `delay` before every request of a connection, the first
        // included; each thread has its own Lua state, seeded apart by
        // `setup` so the two threads' clients do not think in step.
        let _ = write!(
            lua,
            "local threads = 0\nfunction setup(thread)\n  \
               threads = threads + 1\n  \
               thread:set(\"seed\", threads)\nend\n\
             local seeded = false\nfunction delay()\n  \
               if not seeded then\n    \
                 math.randomseed(7919 * (seed or 1))\n    \
                 seeded = true\n  \
               end\n  \
               return -math.log(1 - math.random()) * {:.3}\nend\n",
            think.as_secs_f64() * 1e3
        );
    }
    if let Some(limit) = load.stop_after {
        // wrk's main thread sleeps for the whole `-d`; stopping the (only)
        // thread is not enough, so wrk is also sent the SIGINT that ends a
        // run early (and still prints the summary).
        let _ = write!(
            lua,
            "local ffi = require(\"ffi\")\n\
             ffi.cdef[[int getpid(void); int kill(int pid, int sig);]]\n\
             local seen = 0\nfunction response(status, headers, body)\n  \
               seen = seen + 1\n  \
               if seen == {limit} then\n    \
                 wrk.thread:stop()\n    \
                 ffi.C.kill(ffi.C.getpid(), 2)\n  \
               end\nend\n"
        );
    }
    lua.push_str(
        "function done(summary, latency, requests)\n  \
           local e = summary.errors\n  \
           io.write(string.format('XTASK_WRK_RESULT {\"requests\":%.0f,\"duration_us\":%.0f,\
\"connect_errors\":%.0f,\"read_errors\":%.0f,\"write_errors\":%.0f,\"status_errors\":%.0f,\
\"timeouts\":%.0f,\"mean_us\":%.3f,\"max_us\":%.0f,\"p50_us\":%.0f,\"p90_us\":%.0f,\
\"p99_us\":%.0f}\\n',\n    \
             summary.requests, summary.duration, e.connect, e.read, e.write, e.status,\n    \
             e.timeout, latency.mean, latency.max, latency:percentile(50),\n    \
             latency:percentile(90), latency:percentile(99)))\nend\n",
    );
    lua
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_becomes_stats() {
        let raw: Raw = serde_json::from_str(
            r#"{"requests":2000,"duration_us":2000000,"connect_errors":0,"read_errors":0,
                "write_errors":0,"status_errors":3,"timeouts":0,"mean_us":1500.5,"max_us":9000,
                "p50_us":1400,"p90_us":2000,"p99_us":4000}"#,
        )
        .expect("valid raw result");
        let stats = stats_from(&raw);
        assert_eq!(stats.requests, 2000);
        assert_eq!(stats.rps, 1000.0);
        assert_eq!(stats.p99_ms, 4.0);
        assert_eq!(stats.errors, 3);
    }

    #[test]
    fn scripts_quote_paths_and_stop() {
        let load = Load {
            label: "mix test".into(),
            url: "http://127.0.0.1:1/".into(),
            requests: Requests::Mix(vec![
                ("GET", "/items?limit=10".into(), None),
                (
                    "POST",
                    "/validate".into(),
                    Some(PathBuf::from("/tmp/a \"b\".json")),
                ),
            ]),
            threads: 1,
            connections: 4,
            duration: Duration::from_secs(1),
            stop_after: Some(500),
            think: Some(Duration::from_millis(2500)),
        };
        let lua = lua_script(&load);
        assert!(lua.contains(r#"slurp("/tmp/a \"b\".json")"#), "{lua}");
        assert!(lua.contains("if seen == 500 then"), "{lua}");
        assert!(lua.contains("ffi.C.kill(ffi.C.getpid(), 2)"), "{lua}");
        assert!(lua.contains("function done("), "{lua}");
        assert!(lua.contains("function delay()"), "{lua}");
        assert!(lua.contains("math.random()) * 2500.000"), "{lua}");
        assert_eq!(file_stem(&load.label), "mix-test");
    }
}
