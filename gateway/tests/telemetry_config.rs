//! `[telemetry]` in `gateway.toml`: the trace store's head sample and the
//! bench report the dashboard reads come from the config file, at start and
//! on reload.
//!
//! Its own test binary: the trace store is one per process, so a gateway
//! started by another test could set its sample while this one looks.

mod common;

use common::{Options, client, start_with};
use serde_json::Value;

fn config(trace_sample: u32, bench_report: &str) -> String {
    format!(
        r#"
[telemetry]
trace_sample = {trace_sample}
bench_report = "{bench_report}"

[[route]]
name = "validate"
match = {{ method = "POST", path = "/validate" }}
backend = "native"
native = "validate"
"#
    )
}

async fn sample_one_in(admin: &str) -> u64 {
    let traces: Value = common::get_json(&format!("{admin}/admin/traces?limit=1")).await;
    traces["recording"]["sample_one_in"]
        .as_u64()
        .unwrap_or_else(|| panic!("no recording.sample_one_in in {traces}"))
}

async fn bench_detail(admin: &str) -> String {
    let bench: Value = common::get_json(&format!("{admin}/admin/bench")).await;
    assert_eq!(bench["available"], false, "{bench}");
    bench["detail"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn telemetry_settings_apply_at_start_and_on_reload() {
    let gw = start_with(Options {
        config: Some(config(0, "/nonexistent/first.json")),
        ..Options::default()
    })
    .await;
    assert_eq!(sample_one_in(&gw.admin).await, 0);
    let detail = bench_detail(&gw.admin).await;
    assert!(detail.contains("/nonexistent/first.json"), "{detail}");

    let path = gw.data_dir.path().join("gateway.toml");
    std::fs::write(&path, config(7, "/nonexistent/second.json")).unwrap();
    let reload = client()
        .post(format!("{}/admin/config/reload", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200, "{}", reload.text().await.unwrap());
    assert_eq!(sample_one_in(&gw.admin).await, 7);
    let detail = bench_detail(&gw.admin).await;
    assert!(detail.contains("/nonexistent/second.json"), "{detail}");

    // A refused file changes neither.
    std::fs::write(
        &path,
        config(7, "/x").replace("trace_sample = 7", "trace_sample = -3"),
    )
    .unwrap();
    let refused = client()
        .post(format!("{}/admin/config/reload", gw.admin))
        .send()
        .await
        .unwrap();
    assert_ne!(refused.status(), 200);
    assert_eq!(sample_one_in(&gw.admin).await, 7);
}
