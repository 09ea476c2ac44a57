//! The dashboard's evidence, checked in headless Chromium against the
//! gateway's own JSON: a real gateway (tracing subscriber installed as the
//! binary installs it, every validate request shadowed) serves validate
//! batches of mixed sizes and one request with a known sampled
//! `traceparent`; the page is loaded at `#trace=<id>` and its DOM, after
//! its scripts ran, must show
//! * a Wasm-vs-native row per size class, saying which side has no data,
//! * the paired-ratio figures of `/admin/stats`, digit for digit,
//! * the crossover chart with the configured `native_above_bytes`, the
//!   suggestion the live data makes and the bench report's curve,
//! * the waterfall of the known trace with the spans `/admin/traces` has,
//! * the four charts over time with data in them,
//!
//! and nothing on the console; then, on a second gateway with validate on
//! learned routing, the learned table with the figures of `/admin/stats`.
//! Screenshots land in `target/dashboard-overview.png`,
//! `target/dashboard-trace.png` and `target/dashboard-learned.png`.
//!
//! Also: `/admin/traces` and `/admin/series` refuse bad parameters with
//! problem+json, and an unsampled request is not recorded while nobody
//! looks.

mod browser;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use browser::{Run, attr, between, dump_dom, require_chromium, screenshot, tags_with};
use common::{TestGateway, client, expect_problem, get_json};
use gateway::server::admin::{AdminOptions, admin_router_with};
use serde_json::{Value, json};

const KNOWN_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const UNSAMPLED_TRACE: &str = "1bf7651916cd43dd8448eb211c80319d";

/// The built-in config with every validate request shadowed.
fn shadowed_builtin() -> String {
    gateway::config::BUILTIN.replace(
        "native = \"validate\"\n",
        "native = \"validate\"\nshadow = { sample = 1.0 }\n",
    )
}

/// A bench report's validate section, as `cargo xtask bench` writes it
/// (only the fields `/admin/bench` reads are filled in with care).
fn bench_fixture(dir: &Path) -> PathBuf {
    let stats = |mean: f64| {
        json!({"requests": 100, "seconds": 1.0, "rps": 1000.0 / mean, "mean_ms": mean,
               "p50_ms": mean, "p90_ms": mean * 1.2, "p99_ms": mean * 1.5, "max_ms": mean * 2.0, "errors": 0})
    };
    let row = |items: u32, bytes: u64, native: f64, fresh: f64, reuse: f64| {
        json!({"items": items, "body_bytes": bytes, "native": stats(native), "wasm_fresh": stats(fresh),
               "wasm_reuse": stats(reuse), "fresh_ratio": fresh / native, "reuse_ratio": reuse / native})
    };
    let report = json!({
        "schema_version": 1, "mode": "quick", "started_unix": 1_780_000_000u64, "duration_seconds": 60.0,
        "machine": {"commit": "fixture"},
        "validate": {
            "connections": 1, "rounds": 3,
            "rows": [row(1, 280, 0.9, 1.4, 1.1), row(100, 21_000, 4.0, 9.0, 8.0), row(2000, 420_000, 46.0, 129.0, 120.0)],
            "crossover": {"threshold": 1.5},
            "suggested_native_above_bytes": 280,
            "suggestion_basis": "fixture: the smallest batch measured"
        }
    });
    let path = dir.join("report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report).expect("json")).expect("write report");
    path
}

async fn validate(gw: &TestGateway, body: &[u8], traceparent: Option<&str>) -> String {
    let mut request = client()
        .post(format!("{}/validate", gw.base))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let response = request.send().await.expect("POST /validate");
    assert_eq!(response.status(), 200, "validate");
    response
        .headers()
        .get("x-gateway-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The validate route of `/admin/stats` once every shadow has finished.
async fn settled_stats(admin: &str, requests: u64) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        let stats: Value = get_json(&format!("{admin}/admin/stats")).await;
        let route = stats["routes"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["route"] == "validate"))
            .cloned()
            .unwrap_or(Value::Null);
        let shadow = &route["shadow"];
        let done: u64 = ["match", "mismatch", "dropped", "skipped_busy"]
            .iter()
            .map(|k| shadow[k].as_u64().unwrap_or(0))
            .sum();
        if done >= requests {
            return route;
        }
        last = route;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the shadows never finished: {last}");
}

/// Waits until `/admin/series` has taken in `requests` shadow results for
/// validate (it reads the running totals once a second).
async fn series_has_shadows(admin: &str, requests: u64) {
    let mut last = Value::Null;
    for _ in 0..100 {
        let series: Value = get_json(&format!("{admin}/admin/series?route=validate")).await;
        let total: u64 = series["routes"][0]["shadow"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|line| line["points"].as_array().into_iter().flatten())
            .filter_map(|p| p["count"].as_u64())
            .sum();
        if total >= requests {
            return;
        }
        last = series;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/admin/series never took in {requests} shadow results: {last}");
}

/// The `<tr data-class="...">` row of the class table, as HTML.
fn class_row<'a>(section: &'a str, class: &str) -> &'a str {
    between(section, &format!("<tr data-class=\"{class}\">"), "</tr>")
        .unwrap_or_else(|| panic!("no {class} row in the class table:\n{section}"))
}

/// `data-value` and text of `td.{cell}` in a row.
fn cell<'a>(row: &'a str, cell: &str) -> (f64, &'a str) {
    let tag = tags_with(row, &["td", &format!("class=\"{cell}\"")])
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no td.{cell} in {row}"));
    let value = attr(tag, "data-value")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("td.{cell} has no numeric data-value: {tag}"));
    let text = between(row, &format!("{tag}>"), "</td>")
        .unwrap_or("")
        .trim();
    (value, text)
}

/// `text` is `value` rounded to `decimals` places, then `suffix`. The page
/// rounds with JavaScript's `toFixed`, which takes an exact tie (1.625)
/// up where Rust's formatting takes it to even, so the check is that the
/// digits shown are `decimals` places long and within half a unit of the
/// last place of `value`.
fn assert_rounded(text: &str, value: f64, decimals: usize, suffix: &str, what: &str) {
    let digits = text
        .strip_suffix(suffix)
        .unwrap_or_else(|| panic!("{what}: {text:?} does not end with {suffix:?}"));
    let places = digits.split_once('.').map_or(0, |(_, f)| f.len());
    assert_eq!(places, decimals, "{what}: {text:?} against {value}");
    let shown: f64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("{what}: {text:?} is not a number"));
    let half = 0.5 * 10f64.powi(-(decimals as i32));
    assert!(
        (shown - value).abs() <= half * (1.0 + 1e-9),
        "{what}: {text:?} against {value}"
    );
}

fn assert_paired_rows(section: &str, route: &Value) {
    let paired = route["paired"].as_array().expect("paired in /admin/stats");
    assert!(
        !paired.is_empty(),
        "no shadow pairs in /admin/stats: {route}"
    );
    for p in paired {
        let class = p["size_class"].as_str().expect("size_class");
        let row = class_row(section, class);
        let pairs = cell(row, "pairs");
        assert_eq!(
            pairs.0,
            p["pairs"].as_f64().unwrap(),
            "{class} pairs: {row}"
        );
        assert_eq!(pairs.1, p["pairs"].to_string(), "{class} pairs text");
        for key in ["ratio_p10", "ratio_p50", "ratio_p90"] {
            let expected = p[key].as_f64().expect("a ratio with pairs");
            let (value, text) = cell(row, &key.replace('_', "-"));
            assert_eq!(value, expected, "{class} {key}: {row}");
            assert_rounded(text, expected, 2, "×", &format!("{class} {key} text"));
        }
        let (rate, text) = cell(row, "match-rate");
        assert_eq!(
            rate,
            p["match_rate"].as_f64().unwrap(),
            "{class} match rate"
        );
        assert_rounded(
            text,
            100.0 * rate,
            1,
            "%",
            &format!("{class} match rate text"),
        );
        // Which path is faster: from the paired median.
        let verdict = tags_with(row, &["td", "class=\"verdict"]);
        let faster = verdict.first().and_then(|t| attr(t, "data-faster"));
        let expected = if p["ratio_p50"].as_f64().unwrap() > 1.0 {
            "native"
        } else {
            "wasm"
        };
        assert_eq!(faster, Some(expected), "{class} verdict: {row}");
    }
}

/// The side of each class's comparison that has no data says so.
fn assert_class_rows(section: &str, route: &Value) {
    let classes = route["classes"]
        .as_array()
        .expect("classes in /admin/stats");
    let ids: Vec<&str> = classes
        .iter()
        .filter_map(|c| c["size_class"].as_str())
        .collect();
    for needed in ["le_1KiB", "le_4MiB"] {
        assert!(
            ids.contains(&needed),
            "no {needed} in /admin/stats classes: {ids:?}"
        );
    }
    for class in classes {
        let id = class["size_class"].as_str().unwrap();
        let row = class_row(section, id);
        let backend = |b: &str| {
            class["backends"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["backend"] == b)
                .cloned()
        };
        match backend("spin-embedded") {
            Some(wasm) => {
                let (p50, _) = cell(row, "wasm-p50");
                assert_eq!(p50, wasm["p50_ms"].as_f64().unwrap(), "{id} Wasm p50");
            }
            None => assert!(row.contains("no Wasm data"), "{id}: {row}"),
        }
        match backend("native") {
            Some(native) => {
                let (p50, _) = cell(row, "native-p50");
                assert_eq!(p50, native["p50_ms"].as_f64().unwrap(), "{id} native p50");
            }
            None => assert!(row.contains("no native data in this class"), "{id}: {row}"),
        }
    }
}

/// The `native_above_bytes` the live data suggests, by the page's rule:
/// the smallest class where native is faster (paired median if any, else
/// the p50s); its lower edge.
fn expected_suggestion(route: &Value) -> Option<u64> {
    let lower = [
        ("le_1KiB", 0u64),
        ("le_16KiB", 1024),
        ("le_256KiB", 16384),
        ("le_4MiB", 262144),
        ("gt_4MiB", 4194304),
    ];
    for (id, lo) in lower {
        let paired = route["paired"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["size_class"] == id);
        let ratio = paired
            .filter(|p| p["pairs"].as_u64() > Some(0))
            .and_then(|p| p["ratio_p50"].as_f64());
        let ratio = ratio.or_else(|| {
            let class = route["classes"]
                .as_array()?
                .iter()
                .find(|c| c["size_class"] == id)?;
            let p50 = |b: &str| {
                class["backends"]
                    .as_array()?
                    .iter()
                    .find(|x| x["backend"] == b)?["p50_ms"]
                    .as_f64()
            };
            Some(p50("spin-embedded")? / p50("native")?)
        });
        if ratio.is_some_and(|r| r > 1.0) {
            return Some(lo);
        }
    }
    None
}

fn assert_crossover(section: &str, route: &Value) {
    let chart = tags_with(section, &["svg", "data-chart=\"crossover\""]);
    assert_eq!(chart.len(), 1, "one crossover chart");
    let points: u32 = attr(chart[0], "data-points")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(points >= 3 + 2, "crossover points: {}", chart[0]);
    for line in ["bench-native", "bench-wasm_fresh", "bench-wasm_reuse"] {
        let found = tags_with(section, &["polyline", &format!("data-line=\"{line}\"")]);
        let pts = found.first().and_then(|t| attr(t, "points")).unwrap_or("");
        assert_eq!(
            pts.split(' ').count(),
            3,
            "{line}: three bench rows drawn: {found:?}"
        );
    }
    assert!(
        !tags_with(section, &["g", "data-line=\"live-native\""]).is_empty(),
        "live native points"
    );
    assert!(
        !tags_with(section, &["g", "data-line=\"live-spin-embedded\""]).is_empty(),
        "live Wasm points"
    );
    let suggest = |kind: &str| {
        let tags = tags_with(section, &["div", &format!("class=\"suggest {kind}\"")]);
        tags.first()
            .and_then(|t| attr(t, "data-bytes"))
            .map(str::to_string)
    };
    assert_eq!(
        suggest("configured").as_deref(),
        Some("262144"),
        "configured native_above_bytes"
    );
    assert_eq!(
        suggest("bench").as_deref(),
        Some("280"),
        "the bench report's suggestion"
    );
    let live = suggest("live").expect("a live suggestion line");
    match expected_suggestion(route) {
        Some(bytes) => assert_eq!(live, bytes.to_string(), "live suggestion"),
        None => {
            assert_eq!(live, "");
            assert!(
                section.contains("not enough data"),
                "says there is not enough data"
            );
        }
    }
}

fn assert_series_charts(section: &str) {
    for kind in ["latency", "throughput", "fallbacks", "shadow"] {
        let chart = tags_with(section, &["svg", &format!("data-chart=\"{kind}\"")]);
        assert_eq!(chart.len(), 1, "one {kind} chart");
        let points: u32 = attr(chart[0], "data-points")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(points > 0, "the {kind} chart has no data: {}", chart[0]);
    }
    let svg = between(section, "data-chart=\"latency\"", "</svg>").unwrap_or("");
    assert!(
        svg.contains("<polyline") || svg.contains("<circle"),
        "latency drawn"
    );
    let svg = between(section, "data-chart=\"fallbacks\"", "</svg>").unwrap_or("");
    assert!(svg.contains("<rect"), "fallback bars drawn");
}

async fn assert_waterfall(dom: &str, admin: &str) {
    let trace: Value = get_json(&format!("{admin}/admin/traces?trace_id={KNOWN_TRACE}")).await;
    let spans: Vec<&str> = trace["traces"][0]["spans"]
        .as_array()
        .expect("the known trace is kept")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    for name in ["request", "spin", "wasm.handle", "shadow", "native.compute"] {
        assert!(
            spans.contains(&name),
            "span {name} in the known trace: {spans:?}"
        );
    }
    let waterfall = between(dom, "id=\"waterfall\"", "</section>").expect("the waterfall box");
    assert!(
        waterfall.contains(&format!("data-trace-id=\"{KNOWN_TRACE}\"")),
        "the waterfall shows the known trace: {waterfall}"
    );
    let drawn: Vec<&str> = tags_with(waterfall, &["g", "class=\"span\""])
        .iter()
        .filter_map(|t| attr(t, "data-name"))
        .collect();
    assert_eq!(drawn, spans, "one bar per span, in order");
}

fn assert_quiet(run: &Run, what: &str) {
    let console = run.console();
    assert!(console.is_empty(), "{what}: console messages: {console:#?}");
}

/// `--enable-logging=stderr` does show a page's console (else "no console
/// errors" would prove nothing).
async fn console_is_visible(chromium: &Path) {
    let page = "data:text/html,<script>console.error('probe-7f3a')</script>";
    let run = dump_dom(chromium, page).await;
    assert!(
        run.console().iter().any(|l| l.contains("probe-7f3a")),
        "Chromium did not report the probe's console.error; stderr:\n{}",
        run.stderr
    );
}

async fn bad_parameters_are_problems(admin: &str) {
    for (query, needle) in [
        ("/admin/traces?min_ms=-3", "min_ms"),
        ("/admin/traces?trace_id=xyz", "trace_id"),
        ("/admin/traces?limit=0", "limit"),
        ("/admin/traces?order=fastest", "order"),
        ("/admin/traces?colour=red", "colour"),
        ("/admin/series?route=", "route"),
        ("/admin/series?window=5", "window"),
    ] {
        let response = client()
            .get(format!("{admin}{query}"))
            .send()
            .await
            .expect("GET");
        let problem = expect_problem(response, 400).await;
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(needle), "{query}: {detail}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_evidence_a_user_can_decide_on() {
    let chromium = require_chromium();
    // As the binary does: logs, and the trace recorder (export off).
    let _tracing = gateway::telemetry::init(None).expect("tracing installs");
    console_is_visible(&chromium).await;
    let gw = common::start_with(common::Options {
        config: Some(shadowed_builtin()),
        ..common::Options::default()
    })
    .await;
    let reports = tempfile::tempdir().expect("temp dir");
    let options = AdminOptions {
        bench_report: Some(bench_fixture(reports.path())),
    };
    let admin_server = common::serve(admin_router_with(gw.gateway.clone(), options)).await;
    let admin = admin_server.base.clone();

    // Nobody looks: an unsampled traceparent is not recorded.
    let unsampled = format!("00-{UNSAMPLED_TRACE}-00f067aa0ba902b7-00");
    let small = common::small_batch();
    assert_eq!(
        validate(&gw, &small, Some(&unsampled)).await,
        "spin-embedded"
    );
    // Mixed sizes: small and medium batches on Wasm, big ones (over
    // native_above_bytes) on native; each also run on the other path.
    let (medium, big) = (common::big_batch(100), common::big_batch(2_000));
    for _ in 0..5 {
        assert_eq!(validate(&gw, &small, None).await, "spin-embedded");
    }
    for _ in 0..3 {
        assert_eq!(validate(&gw, &medium, None).await, "spin-embedded");
    }
    for _ in 0..3 {
        assert_eq!(validate(&gw, &big, None).await, "native");
    }
    let known = format!("00-{KNOWN_TRACE}-00f067aa0ba902b7-01");
    assert_eq!(validate(&gw, &small, Some(&known)).await, "spin-embedded");
    let route = settled_stats(&admin, 13).await;
    let shadowed = ["match", "mismatch", "dropped"]
        .iter()
        .map(|k| route["shadow"][k].as_u64().unwrap_or(0))
        .sum();
    series_has_shadows(&admin, shadowed).await;
    let none: Value = get_json(&format!("{admin}/admin/traces?trace_id={UNSAMPLED_TRACE}")).await;
    assert_eq!(
        none["traces"],
        json!([]),
        "an unsampled request was recorded"
    );

    bad_parameters_are_problems(&admin).await;

    let url = format!("{admin}/dashboard#trace={KNOWN_TRACE}");
    let run = dump_dom(&chromium, &url).await;
    let dom = &run.stdout;
    assert_quiet(&run, "dashboard");
    let section = between(dom, "data-route=\"validate\"", "</section>")
        .unwrap_or_else(|| panic!("no validate section:\n{dom}"));
    assert_class_rows(section, &route);
    assert_paired_rows(section, &route);
    assert_crossover(section, &route);
    assert_series_charts(section);
    assert_waterfall(dom, &admin).await;

    let target = common::repo_root().join("target");
    let overview = target.join("dashboard-overview.png");
    let run = screenshot(
        &chromium,
        &format!("{admin}/dashboard"),
        &overview,
        (1400, 2000),
    )
    .await;
    assert_quiet(&run, "overview screenshot");
    let trace_png = target.join("dashboard-trace.png");
    let run = screenshot(&chromium, &url, &trace_png, (1400, 1400)).await;
    assert_quiet(&run, "trace screenshot");
    println!(
        "screenshots: {} and {}",
        overview.display(),
        trace_png.display()
    );
    the_dashboard_shows_what_learned_routing_decided(&chromium).await;
}

/// The built-in config with validate on learned routing, every request
/// shadowed.
fn learned_builtin() -> String {
    shadowed_builtin().replace(
        "native_above_bytes = 262144",
        "native_above_bytes = \"learn\"",
    )
}

/// `data-value` of `td.{class}` in the learned row of `size_class`.
fn learned_cell(section: &str, size_class: &str, class: &str) -> String {
    let row = between(
        section,
        &format!("<tr data-learned-class=\"{size_class}\">"),
        "</tr>",
    )
    .unwrap_or_else(|| panic!("no learned row for {size_class}:\n{section}"));
    let tag = tags_with(row, &["td", &format!("class=\"{class}")])
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no td.{class} in {row}"));
    attr(tag, "data-value")
        .or_else(|| attr(tag, "data-choice"))
        .unwrap_or_else(|| panic!("td.{class} has no value: {tag}"))
        .to_string()
}

/// The learned figures that do not move while nothing is served (the
/// evidence fades with time; everything else waits for a sample).
fn learned_still(route: &Value) -> Value {
    let classes: Vec<Value> = route["learned"]["classes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            json!([
                c["size_class"],
                c["choice"],
                c["wasm"]["estimate_ms"],
                c["native"]["estimate_ms"],
                c["wasm"]["cpu_ms"],
                c["native"]["cpu_ms"],
                c["wasm"]["share"],
                c["explored"],
                c["switches"]
            ])
        })
        .collect();
    json!([classes, route["learned"]["crossover"]])
}

/// A second gateway, validate on learned routing: the dashboard's learned
/// table must show what `/admin/stats` says. Run after the first part, not
/// beside it: an open dashboard makes the trace recorder keep every request
/// (process-wide), which the first part checks it does not.
async fn the_dashboard_shows_what_learned_routing_decided(chromium: &Path) {
    let gw = common::start_with(common::Options {
        config: Some(learned_builtin()),
        ..common::Options::default()
    })
    .await;
    let admin = gw.admin.clone();
    // Two classes, past their warm-up (8 requests per path).
    let (small, medium) = (common::small_batch(), common::big_batch(100));
    for _ in 0..24 {
        validate(&gw, &small, None).await;
        validate(&gw, &medium, None).await;
    }
    let mut route = settled_stats(&admin, 48).await;
    // Settled: two snapshots in a row agree.
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let again = settled_stats(&admin, 48).await;
        if learned_still(&again) == learned_still(&route) {
            break;
        }
        route = again;
    }
    let learned = &route["learned"];
    assert_eq!(
        learned["classes"].as_array().map(Vec::len),
        Some(2),
        "{learned:#}"
    );

    let run = dump_dom(chromium, &format!("{admin}/dashboard")).await;
    assert_quiet(&run, "learned dashboard");
    let dom = &run.stdout;
    let section = between(dom, "data-route=\"validate\"", "</section>")
        .unwrap_or_else(|| panic!("no validate section:\n{dom}"));
    for class in learned["classes"].as_array().into_iter().flatten() {
        let id = class["size_class"].as_str().expect("class id");
        let choice = class["choice"].as_str().unwrap_or("");
        assert_eq!(learned_cell(section, id, "choice"), choice, "{id} choice");
        for path in ["wasm", "native"] {
            let estimate = class[path]["estimate_ms"].as_f64().expect("estimated");
            let shown: f64 = learned_cell(section, id, &format!("{path}-estimate"))
                .parse()
                .expect("a number");
            assert!(
                (shown - estimate).abs() < 1e-9,
                "{id} {path} estimate: page {shown}, /admin/stats {estimate}"
            );
            // Every live answer's CPU time was metered, on both paths.
            let cpu = class[path]["cpu_ms"].as_f64().expect("CPU metered");
            assert!(cpu > 0.0, "{id} {path} CPU per request: {cpu}");
            let shown: f64 = learned_cell(section, id, &format!("{path}-cpu"))
                .parse()
                .expect("a number");
            assert!(
                (shown - cpu).abs() < 1e-9,
                "{id} {path} CPU: page {shown}, /admin/stats {cpu}"
            );
            let share = class[path]["share"].as_f64().expect("share");
            let shown: f64 = learned_cell(section, id, &format!("{path}-share"))
                .parse()
                .expect("a number");
            assert!((shown - share).abs() < 1e-9, "{id} {path} share");
        }
        // Nothing is in flight: native's predicted wait is none, and shown.
        assert_eq!(class["native"]["wait_ms"].as_f64(), Some(0.0), "{id}");
        assert_eq!(learned_cell(section, id, "native-wait"), "0", "{id}");
        assert_eq!(class["wasm"]["wait_ms"], Value::Null, "{id}");
        let switches = class["switches"].as_u64().expect("switches");
        assert_eq!(learned_cell(section, id, "switches"), switches.to_string());
    }
    // One request at a time: a worker was always free, the wait counts in
    // full, and the page says so.
    assert_eq!(learned["saturation"].as_f64(), Some(0.0), "{learned:#}");
    assert_eq!(learned["wait_counted"].as_f64(), Some(1.0), "{learned:#}");
    let saturation = tags_with(section, &["span", "class=\"saturation\""]);
    let tag = saturation.first().expect("the saturation line");
    assert_eq!(attr(tag, "data-saturation"), Some("0"), "{tag}");
    assert_eq!(attr(tag, "data-counted"), Some("1"), "{tag}");
    assert!(
        section.contains("all busy for 0% of the route"),
        "the saturation in words"
    );
    let configured = tags_with(section, &["div", "class=\"suggest configured\""]);
    assert_eq!(
        configured.first().and_then(|t| attr(t, "data-bytes")),
        Some("learn")
    );
    let line = tags_with(section, &["div", "class=\"suggest learned\""]);
    let shown = line
        .first()
        .and_then(|t| attr(t, "data-bytes"))
        .unwrap_or("");
    match learned["crossover"]["bytes"].as_u64() {
        Some(bytes) => assert_eq!(shown, bytes.to_string()),
        None => assert_eq!(shown, ""),
    }

    let png = common::repo_root().join("target/dashboard-learned.png");
    let run = screenshot(chromium, &format!("{admin}/dashboard"), &png, (1400, 2000)).await;
    assert_quiet(&run, "learned screenshot");
    println!("screenshot: {}", png.display());
}
