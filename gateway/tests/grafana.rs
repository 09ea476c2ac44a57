//! The Grafana dashboard, checked without a running Grafana.
//!
//! `observability/grafana/validate_dashboard.py` loads the dashboard into
//! grafana-foundation-sdk (Grafana Labs' generated models of the dashboard
//! schema) and validates it against a closed JSON Schema derived from those
//! models, then checks datasources, exprs, panel ids, the 24-column grid and
//! that every `gateway:*` recording rule it queries is defined. These tests
//! run it on the real dashboard and on broken copies it must reject, and have
//! Prometheus' own engine (promtool) evaluate every panel query against
//! synthetic series, so the size-class table is shown to say which side has
//! no data.
//!
//! Needs `python3` with `pip install -r observability/requirements.txt`, and
//! `promtool` (Debian: `apt-get install prometheus`); the tests fail (never
//! skip) when they are missing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

const INSTALL_HINT: &str = "pip install -r observability/requirements.txt";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("gateway/ has a parent")
        .to_path_buf()
}

fn validator() -> PathBuf {
    repo_root().join("observability/grafana/validate_dashboard.py")
}

fn dashboard_path() -> PathBuf {
    repo_root().join("observability/grafana/dashboards/gateway.json")
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(dashboard_path()).expect("read gateway.json");
    serde_json::from_str(&text).expect("gateway.json is JSON")
}

/// Runs the validator with `python_args` before the script and the given
/// dashboard on stdin (or the file itself when `None`).
fn run_validator(python_args: &[&str], dashboard: Option<&Value>) -> Output {
    let mut command = Command::new("python3");
    command.args(python_args).arg(validator());
    if dashboard.is_some() {
        command.args(["--dashboard", "-"]);
    }
    let mut child = command
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): install Python 3 and `{INSTALL_HINT}`")
        });
    let mut stdin = child.stdin.take().expect("stdin is piped");
    if let Some(dashboard) = dashboard {
        stdin
            .write_all(dashboard.to_string().as_bytes())
            .expect("write the dashboard to the validator");
    }
    drop(stdin);
    child.wait_with_output().expect("wait for the validator")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Exit 2 means the pinned Python packages are missing: fail with the
/// validator's own message, which names the install command.
fn fail_if_packages_missing(output: &Output) {
    assert_ne!(
        output.status.code(),
        Some(2),
        "the dashboard validator's Python packages are missing: run `{INSTALL_HINT}`\n{}",
        describe(output)
    );
}

/// The validator must reject `mutated` with an error containing `needle`.
fn assert_rejected(mutated: &Value, needle: &str) {
    let output = run_validator(&[], Some(mutated));
    fail_if_packages_missing(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "the validator accepted a broken dashboard (expected an error containing {needle:?})\n{}",
        describe(&output)
    );
    assert!(
        stderr.contains(needle),
        "expected an error containing {needle:?}\n{}",
        describe(&output)
    );
}

/// A copy of the dashboard with `change` applied to the panel titled `title`.
fn with_panel(title: &str, change: impl FnOnce(&mut Value)) -> Value {
    let mut dash = dashboard();
    let panel = dash["panels"]
        .as_array_mut()
        .expect("panels")
        .iter_mut()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no panel titled {title:?} in gateway.json"));
    change(panel);
    dash
}

const SIZE_CLASS_TABLE: &str = "Wasm vs native latency by size class (last 5m)";
const PAIRED_RATIO: &str = "Paired latency ratio (Wasm / native, same request) by size class";
const BYTE_MATCH: &str = "Shadow byte-match rate by route (last 5m)";

// ---- the real dashboard ----

#[test]
fn the_dashboard_is_valid_against_grafanas_schema() {
    let output = run_validator(&[], None);
    fail_if_packages_missing(&output);
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("valid against grafana-foundation-sdk"),
        "{}",
        describe(&output)
    );
}

#[test]
fn missing_packages_fail_with_the_install_command() {
    // `-S` leaves site-packages (where pip installs) off the module path.
    let output = run_validator(&["-S"], None);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(INSTALL_HINT), "{}", describe(&output));
}

// ---- Grafana's schema, strictly ----

#[test]
fn an_unknown_panel_field_is_rejected() {
    let dash = with_panel(SIZE_CLASS_TABLE, |p| p["colour"] = json!("red"));
    assert_rejected(&dash, "'colour' was unexpected");
}

#[test]
fn an_unknown_field_in_a_plugins_options_is_rejected() {
    let dash = with_panel(SIZE_CLASS_TABLE, |p| {
        p["options"]["showHeadr"] = json!(true)
    });
    assert_rejected(&dash, "'showHeadr' was unexpected");
}

#[test]
fn a_mistyped_field_is_rejected() {
    let dash = with_panel(PAIRED_RATIO, |p| p["gridPos"]["h"] = json!("8"));
    assert_rejected(&dash, "gridPos.h: '8' is not of type 'integer'");
    let dash = with_panel(BYTE_MATCH, |p| {
        p["fieldConfig"]["defaults"]["noValue"] = json!(0)
    });
    assert_rejected(&dash, "noValue: 0 is not of type 'string'");
}

#[test]
fn a_value_outside_grafanas_enums_is_rejected() {
    let dash = with_panel(SIZE_CLASS_TABLE, |p| {
        p["fieldConfig"]["defaults"]["mappings"][0]["options"]["match"] = json!("nul")
    });
    assert_rejected(&dash, "'nul' is not one of");
    let dash = with_panel(SIZE_CLASS_TABLE, |p| p["type"] = json!("tabel"));
    assert_rejected(&dash, "'tabel' is not one of");
}

// ---- the project's rules ----

#[test]
fn a_reference_to_an_undefined_recording_rule_is_rejected() {
    let dash = with_panel(SIZE_CLASS_TABLE, |p| {
        p["targets"][4]["expr"] =
            json!("max by (route, size_class) (gateway:size_class_wasm_native_ratio:p95)")
    });
    assert_rejected(
        &dash,
        "recording rule gateway:size_class_wasm_native_ratio:p95 is not defined",
    );
}

#[test]
fn overlapping_panels_are_rejected() {
    // The paired-ratio table moved right, under the byte-match stat beside it.
    let dash = with_panel(PAIRED_RATIO, |p| p["gridPos"]["x"] = json!(8));
    assert_rejected(&dash, &format!("overlaps panel '{PAIRED_RATIO}'"));
}

#[test]
fn a_panel_past_the_24th_column_is_rejected() {
    let dash = with_panel(BYTE_MATCH, |p| p["gridPos"]["w"] = json!(9));
    assert_rejected(&dash, "is outside the 24-column grid");
}

#[test]
fn duplicate_ids_empty_exprs_and_other_datasources_are_rejected() {
    let dash = with_panel(PAIRED_RATIO, |p| p["id"] = json!(26));
    assert_rejected(&dash, "id 26 is also used by panel");
    let dash = with_panel(PAIRED_RATIO, |p| p["targets"][1]["expr"] = json!("  "));
    assert_rejected(&dash, "target B: expr is empty");
    let dash = with_panel(BYTE_MATCH, |p| p["datasource"]["uid"] = json!("other"));
    assert_rejected(&dash, "datasource is");
}

// ---- the panel queries, evaluated by Prometheus ----

/// Every panel target as a recording rule `dashboard:panel<id>_<refId>`,
/// with the dashboard's variables filled in (all routes, 1m rate window).
fn dashboard_queries_as_rules(dashboard: &Value) -> Value {
    fn walk(panels: &Value, rules: &mut Vec<Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("every target has an expr");
                rules.push(json!({
                    "record": format!("dashboard:panel{}_{}", panel["id"], target["refId"].as_str().expect("refId")),
                    "expr": expr.replace("$__rate_interval", "1m").replace("$route", ".*"),
                }));
            }
            walk(&panel["panels"], rules);
        }
    }
    let mut rules = Vec::new();
    walk(&dashboard["panels"], &mut rules);
    // JSON is YAML: promtool reads this file as a rule file.
    json!({"groups": [{"name": "dashboard", "interval": "15s", "rules": rules}]})
}

fn require_promtool() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("promtool"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("`promtool` is not installed: run `cargo xtask setup` (Debian: `apt-get install prometheus`)")
        })
}

fn promtool_test(dashboard: &Value) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = repo_root().join("observability");
    std::fs::copy(
        root.join("prometheus/rules.yml"),
        dir.path().join("rules.yml"),
    )
    .expect("copy rules.yml");
    std::fs::copy(
        root.join("grafana/dashboard_queries_test.yml"),
        dir.path().join("test.yml"),
    )
    .expect("copy dashboard_queries_test.yml");
    std::fs::write(
        dir.path().join("dashboard_queries.yml"),
        dashboard_queries_as_rules(dashboard).to_string(),
    )
    .expect("write dashboard_queries.yml");
    Command::new(require_promtool())
        .args(["test", "rules", "test.yml"])
        .current_dir(dir.path())
        .output()
        .expect("run promtool")
}

#[test]
fn the_size_class_panels_say_which_side_has_no_data() {
    let output = promtool_test(&dashboard());
    assert!(
        output.status.success(),
        "promtool test rules observability/grafana/dashboard_queries_test.yml failed:\n{}",
        describe(&output)
    );
}

#[test]
fn a_table_query_that_ignores_the_missing_side_is_caught() {
    // "Compared" without the native-missing term: the le_16KiB row would no
    // longer say that native has no data.
    let dash = with_panel(SIZE_CLASS_TABLE, |p| {
        let expr = p["targets"][5]["expr"].as_str().expect("expr").to_string();
        let (_, rest) = expr
            .split_once(" or ")
            .expect("Compared joins its parts with `or`");
        p["targets"][5]["expr"] = json!(rest);
    });
    let output = promtool_test(&dash);
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        describe(&output).contains("FAILED:\n    expr: \"dashboard:panel26_F\""),
        "{}",
        describe(&output)
    );
}
