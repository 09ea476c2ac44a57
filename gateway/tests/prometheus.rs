//! The gateway's metrics as Prometheus sees them: a real Prometheus (the
//! Debian binary, on loopback) scrapes a real gateway serving validate on
//! both backends; the Grafana dashboard and the alerting/recording rules only
//! query metric families the gateway really exports; promtool accepts the
//! configs and the rule unit tests pass.
//!
//! Needs `prometheus` and `promtool` on PATH (Debian: `apt-get install
//! prometheus`); the tests fail (never skip) when they are missing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fake_spin::{self, Mode};
use common::{Options, TestGateway, client, repo_root, start_with};
use serde_json::{Value, json};

// ---- helpers ----

/// The path of an external tool; panics (the test fails) when it is missing.
fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed (not on PATH nor in /usr/bin): run `cargo xtask setup` \
                 (Debian: `apt-get install prometheus`)"
            )
        })
}

async fn post_validate(base: &str, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(format!("{base}/validate"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST /validate")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Validate on Wasm (small batches) and natively (big ones), plus list and
/// create; checks every answer and where it was served.
async fn drive_both_backends(gw: &TestGateway, rounds: usize) {
    let http = client();
    for i in 0..rounds {
        let small = post_validate(&gw.base, common::small_batch()).await;
        assert_eq!(small.status(), 200, "small validate");
        assert_eq!(header(&small, "x-gateway-backend"), "spin-embedded");
        let big = post_validate(&gw.base, common::big_batch(2_000)).await;
        assert_eq!(big.status(), 200, "big validate");
        assert_eq!(header(&big, "x-gateway-backend"), "native");
        assert_eq!(header(&big, "x-gateway-fallback"), "size");

        let created = http
            .post(format!("{}/items", gw.base))
            .header("content-type", "application/json")
            .body(
                serde_json::to_vec(&json!({"id": i + 1, "name": format!("metrics {i}")})).unwrap(),
            )
            .send()
            .await
            .expect("POST /items");
        assert!(
            created.status().is_success(),
            "create: {}",
            created.status()
        );
        let listed = http
            .get(format!("{}/items", gw.base))
            .send()
            .await
            .expect("GET /items");
        assert_eq!(listed.status(), 200, "list");
    }
}

async fn fetch_metrics(gw: &TestGateway) -> String {
    common::admin_metrics(&gw.admin).await
}

/// Metric families in a Prometheus text exposition: name -> type, from the
/// `# TYPE <name> <type>` lines.
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut words = rest.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

/// The metric names a PromQL expression (or any text) queries: identifiers
/// starting with `gateway_`, outside quoted strings; recording-rule names
/// (which contain `:`) are left out.
fn gateway_metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut unquoted = String::with_capacity(text.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    unquoted.push(' ');
                }
            }
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None => unquoted.push(c),
        }
    }
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    for token in unquoted.split(|c: char| !is_ident(c)) {
        if token.starts_with("gateway_") && !token.contains(':') {
            names.insert(token.to_string());
        }
    }
    names
}

/// Whether `name` is something a query can select given the exported
/// families: a non-histogram family itself, or a histogram's
/// `_bucket`/`_sum`/`_count` series.
fn is_exported(name: &str, families: &BTreeMap<String, String>) -> bool {
    if let Some(kind) = families.get(name) {
        return kind != "histogram";
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(|base| families.get(base))
            .is_some_and(|kind| kind == "histogram")
    })
}

/// Every panel target `expr` in a Grafana dashboard (panels nested in rows
/// included) and every query variable's definition.
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("(untitled)").to_string();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((format!("panel {title:?}"), expr.to_string()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(definition) = variable["definition"].as_str() {
            let name = variable["name"].as_str().unwrap_or("?");
            out.push((format!("variable {name:?}"), definition.to_string()));
        }
    }
    out
}

/// The values of every `expr:` key in a YAML file (plain one-line values and
/// `|`/`>` block scalars), without a YAML parser.
fn yaml_exprs(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let trimmed = line.trim_start().trim_start_matches("- ");
        let Some(value) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let mut block = Vec::new();
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > indent(line))
            {
                block.push(lines[i].trim());
                i += 1;
            }
            exprs.push(block.join("\n"));
        } else {
            let unquoted = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(value);
            exprs.push(unquoted.to_string());
        }
    }
    exprs
}

/// A child process killed (and reaped) when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .expect("local addr")
        .port()
}

/// `host:port` of a `http://host:port` base URL.
fn host_port(base: &str) -> &str {
    base.trim_start_matches("http://").trim_end_matches('/')
}

/// Runs an instant query against Prometheus' HTTP API; `None` while
/// Prometheus is not answering yet.
async fn prom_query(prom: &str, query: &str) -> Option<Vec<Value>> {
    let response = client()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .ok()?;
    let body: Value = response.json().await.ok()?;
    assert_eq!(body["status"], "success", "query {query:?} failed: {body}");
    Some(
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    )
}

/// `label` -> sample value (as Prometheus prints it) of an instant vector.
fn by_label(result: &[Value], label: &str) -> BTreeMap<String, String> {
    result
        .iter()
        .map(|series| {
            (
                series["metric"][label].as_str().unwrap_or("").to_string(),
                series["value"][1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn is_finite_number(value: &str) -> bool {
    value.parse::<f64>().is_ok_and(f64::is_finite)
}

// ---- a real Prometheus scrapes both backends ----

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_both_backends() {
    let prometheus = require_tool("prometheus");
    let gw = common::start().await;
    drive_both_backends(&gw, 3).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: gateway\n    metrics_path: /metrics\n    \
         static_configs:\n      - targets: [\"{}\"]\n",
        host_port(&gw.admin)
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).expect("write prometheus.yml");
    let log_path = dir.path().join("prometheus.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let port = free_loopback_port();
    let child = Command::new(&prometheus)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let mut child = KillOnDrop(child);
    let prom = format!("http://127.0.0.1:{port}");
    let log_tail = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };

    // Keep validate traffic flowing on both backends, so rate() has
    // increases to work with.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let base = gw.base.clone();
    let traffic = tokio::spawn(async move {
        let (small, big) = (common::small_batch(), common::big_batch(2_000));
        while !*stop_rx.borrow() {
            assert_eq!(post_validate(&base, small.clone()).await.status(), 200);
            assert_eq!(post_validate(&base, big.clone()).await.status(), 200);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop_rx.changed() => {}
            }
        }
    });

    // Both backends show up as series of the request counter.
    let count_query = r#"gateway_request_duration_seconds_count{route="validate"}"#;
    let mut backends = BTreeSet::new();
    for _ in 0..600 {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            panic!("prometheus exited ({status}):\n{}", log_tail());
        }
        if let Some(result) = prom_query(&prom, count_query).await {
            backends = by_label(&result, "backend").into_keys().collect();
            if backends.contains("spin-embedded") && backends.contains("native") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        backends.contains("spin-embedded") && backends.contains("native"),
        "after 60 s Prometheus has validate series for {backends:?}, expected spin-embedded \
         and native; targets: {}\nprometheus log:\n{}",
        prom_query(&prom, "up")
            .await
            .map(|r| json!(r).to_string())
            .unwrap_or_default(),
        log_tail()
    );

    // A quantile per backend over the buckets: all-time first, then the
    // dashboard's rate() form, once two scrapes with new traffic are in.
    let all_time = r#"histogram_quantile(0.95, sum by (le, backend) (gateway_request_duration_seconds_bucket{route="validate"}))"#;
    let result = prom_query(&prom, all_time)
        .await
        .expect("prometheus answers");
    let quantiles = by_label(&result, "backend");
    for backend in ["spin-embedded", "native"] {
        let value = quantiles
            .get(backend)
            .map(String::as_str)
            .unwrap_or("(none)");
        assert!(
            is_finite_number(value) && value.parse::<f64>().unwrap() > 0.0,
            "all-time p95 for {backend} is {value}: {quantiles:?}"
        );
    }
    let rated = r#"histogram_quantile(0.5, sum by (le, backend) (rate(gateway_request_duration_seconds_bucket{route="validate"}[30s])))"#;
    let mut quantiles = BTreeMap::new();
    for _ in 0..600 {
        if let Some(result) = prom_query(&prom, rated).await {
            quantiles = by_label(&result, "backend");
            if ["spin-embedded", "native"]
                .iter()
                .all(|b| quantiles.get(*b).is_some_and(|v| is_finite_number(v)))
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for backend in ["spin-embedded", "native"] {
        let value = quantiles
            .get(backend)
            .map(String::as_str)
            .unwrap_or("(none)");
        assert!(
            is_finite_number(value),
            "rate-based p50 for {backend} is {value} after 60 s: {quantiles:?}"
        );
    }
    println!("validate p50 by backend (rate over 30s): {quantiles:?}");

    stop_tx.send_replace(true);
    traffic.await.expect("traffic task");
    drop(child);
}

// ---- the dashboard and rules only query exported metrics ----

/// The built-in routes with every validate request shadowed on the other path.
fn shadowed_builtin() -> String {
    let builtin = gateway::config::BUILTIN;
    assert_eq!(
        builtin.matches("concurrency = 64\n").count(),
        1,
        "builtin config changed"
    );
    builtin.replace(
        "concurrency = 64\n",
        "concurrency = 64\nshadow = { sample = 1.0 }\n",
    )
}

/// An external Spin that never answers: list sheds at concurrency 1,
/// validate times out, falls back natively and opens its circuit.
fn stuck_external_config(upstream: &str) -> String {
    format!(
        r#"
[spin]
mode = "external"
upstream = "{upstream}"

[[route]]
name = "list"
match = {{ method = "GET", path = "/items" }}
backend = "spin"
spin_path = "/list"
timeout_ms = 20000
concurrency = 1

[[route]]
name = "validate"
match = {{ method = "POST", path = "/validate" }}
backend = "auto"
spin_path = "/validate"
native = "validate"
# Counted Spin calls: no shadow replays (on by default for auto).
shadow = {{ sample = 0 }}
timeout_ms = 300
max_body_bytes = 16777216
circuit = {{ consecutive_failures = 1, open_ms = 60000, half_open_probes = 1, min_requests = 1000 }}
fallback = {{ on = ["connect-error", "timeout", "5xx", "circuit-open", "overloaded"], native_above_bytes = 262144 }}
"#
    )
}

/// Families every metric in the gateway's metrics module should produce.
const EXPECTED_FAMILIES: [&str; 11] = [
    "gateway_request_duration_seconds",
    "gateway_wasm_instantiate_duration_seconds",
    "gateway_native_queue_duration_seconds",
    "gateway_native_compute_duration_seconds",
    "gateway_shadow_duration_seconds",
    "gateway_fallbacks_total",
    "gateway_shed_total",
    "gateway_circuit_transitions_total",
    "gateway_circuit_state",
    "gateway_in_flight_requests",
    "gateway_shadow_comparisons_total",
];

/// The union of the families two gateways export after traffic that
/// exercises every instrument: an embedded one (both backends, shadowing,
/// instantiation) and one in front of a stuck external Spin (timeouts,
/// fallbacks, an open circuit, shedding).
async fn every_exported_family() -> BTreeMap<String, String> {
    // Embedded, validate shadowed.
    common::require_app_wasm();
    let embedded = start_with(Options {
        config: Some(shadowed_builtin()),
        ..Options::default()
    })
    .await;
    drive_both_backends(&embedded, 2).await;

    // External and stuck.
    let fake = fake_spin::start(Mode::Hang).await;
    let stuck = start_with(Options {
        config: Some(stuck_external_config(&fake.served.base)),
        manifest: None,
        ..Options::default()
    })
    .await;
    for reason in ["timeout", "circuit-open"] {
        let response = post_validate(&stuck.base, common::small_batch()).await;
        assert_eq!(response.status(), 200, "validate falls back");
        assert_eq!(header(&response, "x-gateway-backend"), "native");
        assert_eq!(header(&response, "x-gateway-fallback"), reason);
    }
    let hits = fake.hits();
    let base = stuck.base.clone();
    let first_list =
        tokio::spawn(async move { client().get(format!("{base}/items")).send().await });
    for _ in 0..500 {
        if fake.hits() > hits {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        fake.hits() > hits,
        "the first list never reached the external Spin"
    );
    let shed = client()
        .get(format!("{}/items", stuck.base))
        .send()
        .await
        .expect("GET /items");
    assert_eq!(shed.status(), 503, "the second list is shed");

    // Shadow runs finish after the answer: wait for their metrics.
    let mut all = BTreeMap::new();
    for _ in 0..300 {
        all = families(&fetch_metrics(&embedded).await);
        all.extend(families(&fetch_metrics(&stuck).await));
        if EXPECTED_FAMILIES.iter().all(|f| all.contains_key(*f)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "embedded gateway /metrics:\n{}",
        fetch_metrics(&embedded).await
    );
    println!(
        "stuck-external gateway /metrics (families): {:?}",
        families(&fetch_metrics(&stuck).await)
    );

    fake.open_gate();
    assert_eq!(first_list.await.unwrap().expect("first list").status(), 200);
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_json_queries_only_exported_metrics() {
    let exported = every_exported_family().await;
    println!("exported families: {exported:#?}");
    let missing: Vec<_> = EXPECTED_FAMILIES
        .iter()
        .filter(|f| !exported.contains_key(**f))
        .collect();
    assert!(
        missing.is_empty(),
        "families not in /metrics after exercising every instrument: {missing:?}; exported: {exported:?}"
    );

    // The Grafana dashboard.
    let path = repo_root().join("observability/grafana/dashboards/gateway.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let exprs = dashboard_exprs(&dashboard);
    assert!(
        exprs.len() >= 10,
        "only {} exprs found in {}",
        exprs.len(),
        path.display()
    );
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr) in &exprs {
        let names = gateway_metric_names(expr);
        // A query of a recording rule (`gateway:...`) names no raw metric;
        // the rule's own expression is checked below, and that the rule is
        // defined in rules.yml by observability/grafana/validate_dashboard.py.
        if names.is_empty() && !expr.contains("gateway:") {
            problems.push(format!("{place}: no gateway_ metric in {expr:?}"));
        }
        for name in names {
            if !is_exported(&name, &exported) {
                problems.push(format!("{place}: {name} is not exported; expr {expr:?}"));
            }
            used.insert(name);
        }
    }

    // The recording and alerting rules.
    let rules_path = repo_root().join("observability/prometheus/rules.yml");
    let rules = std::fs::read_to_string(&rules_path).expect("read rules.yml");
    let rule_exprs = yaml_exprs(&rules);
    assert!(
        rule_exprs.len() >= 8,
        "only {} `expr:` found in rules.yml",
        rule_exprs.len()
    );
    let mut rule_names = BTreeSet::new();
    for expr in &rule_exprs {
        let names = gateway_metric_names(expr);
        for name in &names {
            if !is_exported(name, &exported) {
                problems.push(format!("rules.yml: {name} is not exported; expr {expr:?}"));
            }
        }
        rule_names.extend(names);
    }
    assert!(
        rule_names.len() >= 4,
        "only {rule_names:?} queried in rules.yml"
    );

    let unused: Vec<_> = exported
        .keys()
        .filter(|family| {
            !used.iter().chain(rule_names.iter()).any(|n| {
                n == *family
                    || n.strip_prefix(family.as_str())
                        .is_some_and(|s| s.starts_with('_'))
            })
        })
        .collect();
    println!(
        "dashboard queries: {used:?}\nrules query: {rule_names:?}\nexported but queried nowhere: {unused:?}"
    );
    assert!(
        problems.is_empty(),
        "queries of metrics the gateway does not export:\n{}\nexported families: {exported:?}",
        problems.join("\n")
    );
}

// ---- promtool ----

fn promtool(dir: &Path, args: &[&str]) {
    let promtool = require_tool("promtool");
    let output = Command::new(&promtool)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run promtool");
    assert!(
        output.status.success(),
        "`promtool {}` in {} failed ({}):\n{}{}",
        args.join(" "),
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn promtool_accepts_the_configs() {
    let dir = repo_root().join("observability/prometheus");
    promtool(&dir, &["check", "config", "prometheus.local.yml"]);
    promtool(&dir, &["check", "config", "prometheus.yml"]);
    promtool(&dir, &["check", "rules", "rules.yml"]);
    if dir.join("rules_test.yml").exists() {
        promtool(&dir, &["test", "rules", "rules_test.yml"]);
    }
}
