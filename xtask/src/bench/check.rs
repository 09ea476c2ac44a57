//! Structural check of report.json against `schemas/bench-report.schema.json`
//! (never of how fast anything was).

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Path of the schema, relative to the project root.
pub const SCHEMA_PATH: &str = "schemas/bench-report.schema.json";

/// Checks `report` against `schema`; the error lists every violation with
/// its JSON pointer.
pub fn validate_report(schema: &Value, report: &Value) -> Result<()> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| anyhow::anyhow!("the report schema itself is invalid: {e}"))?;
    let problems: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{}: {e}", pointer(&e.instance_path().to_string())))
        .collect();
    if !problems.is_empty() {
        bail!(
            "the report does not match the schema ({} problem(s)):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

fn pointer(p: &str) -> &str {
    if p.is_empty() { "(root)" } else { p }
}

/// Reads the schema from the project and `report_path`, and checks one
/// against the other.
pub fn check_report_file(root: &Path, report_path: &Path) -> Result<()> {
    let schema_path = root.join(SCHEMA_PATH);
    let schema = read_json(&schema_path)?;
    let report = read_json(report_path)?;
    validate_report(&schema, &report).with_context(|| {
        format!(
            "{} against {}",
            report_path.display(),
            schema_path.display()
        )
    })
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::{self, Report};

    const SCHEMA: &str = include_str!("../../../schemas/bench-report.schema.json");
    const MINIMAL: &str = include_str!("../../tests/fixtures/bench-report-minimal.json");

    fn schema() -> Value {
        serde_json::from_str(SCHEMA).expect("the schema is JSON")
    }

    fn minimal() -> Value {
        serde_json::from_str(MINIMAL).expect("the fixture is JSON")
    }

    #[test]
    fn the_hand_made_minimal_report_is_valid() {
        validate_report(&schema(), &minimal()).expect("valid");
    }

    fn remove(report: &mut Value, pointer: &str, key: &str) {
        if let Some(object) = report.pointer_mut(pointer).and_then(Value::as_object_mut) {
            object.remove(key);
        }
    }

    #[test]
    fn broken_reports_are_rejected_with_the_place() {
        let schema = schema();
        // (where the error must point, how the report is broken)
        type Damage = fn(&mut Value);
        let cases: [(&str, Damage); 7] = [
            ("(root)", |r| remove(r, "", "hello")),
            ("/validate/rows/0/native/p99_ms", |r| {
                r["validate"]["rows"][0]["native"]["p99_ms"] = Value::from(-1.0);
            }),
            ("/targets/0", |r| remove(r, "/targets/0", "met")),
            ("/targets/1/met", |r| {
                r["targets"][1]["met"] = Value::from("yes")
            }),
            ("/cold_start/with_cache_ms", |r| {
                r["cold_start"]["with_cache_ms"] = Value::Null
            }),
            ("/targets", |r| {
                if let Some(targets) = r["targets"].as_array_mut() {
                    targets.retain(|t| t["id"] != "rss_late");
                }
            }),
            ("/trace_recorder/settings", |r| {
                if let Some(settings) = r["trace_recorder"]["settings"].as_array_mut() {
                    settings.retain(|s| s["name"] != "idle");
                }
            }),
        ];
        for (place, damage) in cases {
            let mut report = minimal();
            damage(&mut report);
            let err = validate_report(&schema, &report).expect_err(place);
            let text = format!("{err:#}");
            assert!(text.contains(place), "{place}: {text}");
        }
    }

    #[test]
    fn the_fixture_round_trips_through_the_report_type() {
        // The Rust types and the schema describe the same document.
        let parsed: Report = serde_json::from_str(MINIMAL).expect("the fixture fits Report");
        let again = serde_json::to_value(&parsed).expect("serializable");
        validate_report(&schema(), &again).expect("still valid");
        // Targets recomputed from the fixture's numbers cover every id.
        let targets = report::targets(
            &parsed.validate,
            &parsed.hello,
            &parsed.gateway_overhead,
            &parsed.cold_start,
            &parsed.rss,
            &parsed.trace_recorder,
        )
        .expect("targets");
        let ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, report::TARGET_IDS);
    }

    #[test]
    fn markdown_and_charts_render_the_minimal_report() {
        let parsed: Report = serde_json::from_str(MINIMAL).expect("the fixture fits Report");
        let md = report::markdown(&parsed);
        for heading in [
            "## Targets",
            "## 1. Validate",
            "## 2. Trivial hello",
            "## 3. Gateway overhead",
            "## 4. Cold start",
            "## 5. Memory",
            "## 6. The trace recorder's cost",
        ] {
            assert!(md.contains(heading), "{heading} missing:\n{md}");
        }
        let dir = std::env::temp_dir().join(format!("xtask-charts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let files = crate::bench::charts::write_all(&parsed, &dir).expect("charts");
        for file in &files {
            let svg = std::fs::read_to_string(file).expect("written");
            assert!(
                svg.starts_with("<svg") && svg.contains("</svg>"),
                "{}",
                file.display()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
