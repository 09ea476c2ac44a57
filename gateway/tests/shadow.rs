//! Shadow comparison: sampled requests replayed on the other path, off the
//! request path, compared, and recorded.

mod common;

use std::time::Duration;

use common::fake_spin::{self, Mode};
use common::{Options, TestGateway, client, require_app_wasm, start_with};
use serde_json::{Value, json};

/// The built-in config with every validate request shadowed.
fn shadowed_builtin() -> String {
    gateway::config::BUILTIN.replace(
        "native = \"validate\"\n",
        "native = \"validate\"\nshadow = { sample = 1.0 }\n",
    )
}

async fn validate(gw: &TestGateway, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/validate", gw.base))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Polls the dashboard stats until `validate`'s shadow counts satisfy `done`.
async fn shadow_counts(gw: &TestGateway, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        let stats: Value = common::get_json(&format!("{}/admin/stats", gw.admin)).await;
        last = stats["routes"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["route"] == "validate"))
            .map(|r| r["shadow"].clone())
            .unwrap_or(Value::Null);
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("shadow counts never got there: {last}");
}

async fn metrics(gw: &TestGateway) -> String {
    common::admin_metrics(&gw.admin).await
}

#[tokio::test]
async fn identical_answers_are_recorded_as_matches() {
    require_app_wasm();
    let gw = start_with(Options {
        config: Some(shadowed_builtin()),
        ..Options::default()
    })
    .await;
    for i in 0..5 {
        let body = json!({"items": [{"id": i, "name": format!("n{i}")}, {"name": ""}]});
        let response = validate(&gw, &body).await;
        assert_eq!(response.headers()["x-gateway-backend"], "spin-embedded");
    }
    let counts = shadow_counts(&gw, |s| s["match"] == 5).await;
    assert!(counts.get("mismatch").is_none(), "{counts}");
    let text = metrics(&gw).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("gateway_shadow_comparisons_total")
                && l.contains("result=\"match\"")
                && l.ends_with(" 5")),
        "{text}"
    );
    assert!(
        text.contains("gateway_shadow_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn a_different_native_answer_is_recorded_as_a_mismatch() {
    require_app_wasm();
    let gw = start_with(Options {
        config: Some(shadowed_builtin()),
        tamper_native: true,
        ..Options::default()
    })
    .await;
    let body = json!({"items": [{"id": 1, "name": "Item1"}]});
    let response = validate(&gw, &body).await;
    // The client got Wasm's answer, untouched.
    assert_eq!(response.headers()["x-gateway-backend"], "spin-embedded");
    let bytes = response.bytes().await.unwrap();
    assert!(!bytes.ends_with(b" "));
    let counts = shadow_counts(&gw, |s| s["mismatch"] == 1).await;
    assert!(counts.get("match").is_none(), "{counts}");
    let text = metrics(&gw).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("gateway_shadow_comparisons_total")
                && l.contains("result=\"mismatch\"")),
        "{text}"
    );
}

#[tokio::test]
async fn the_client_never_waits_for_the_shadow_and_a_full_queue_drops_samples() {
    // Native answers; the shadow goes to a Spin that hangs until released.
    let fake = fake_spin::start(Mode::Hang).await;
    let config = format!(
        r#"
[spin]
mode = "external"
upstream = "{}"

[[route]]
name = "validate"
match = {{ method = "POST", path = "/validate" }}
backend = "native"
spin_path = "/validate"
native = "validate"
timeout_ms = 60000
shadow = {{ sample = 1.0 }}
"#,
        fake.served.base
    );
    let gw = start_with(Options {
        config: Some(config),
        manifest: None,
        ..Options::default()
    })
    .await;
    let body = json!({"items": [{"id": 1, "name": "Item1"}]});
    let response = validate(&gw, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-gateway-backend"], "native");
    response.bytes().await.unwrap();
    // The client has its full answer while the shadow is still inside Spin.
    for _ in 0..400 {
        if fake.hits() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.hits(), 1, "the shadow call is in flight");

    // With the worker stuck, the bounded queue fills and samples drop.
    for _ in 0..80 {
        assert_eq!(validate(&gw, &body).await.status(), 200);
    }
    let counts = shadow_counts(&gw, |s| s["dropped"].as_u64().unwrap_or(0) > 0).await;
    assert!(
        counts["dropped"].as_u64().unwrap() >= 80 - 64 - 1,
        "{counts}"
    );

    // Released: the fake's answer differs from native's, so: mismatch.
    fake.open_gate();
    shadow_counts(&gw, |s| s["mismatch"].as_u64().unwrap_or(0) >= 1).await;
}

/// The `validate` route's object in `/admin/stats`.
async fn validate_stats(gw: &TestGateway) -> Value {
    let stats: Value = common::get_json(&format!("{}/admin/stats", gw.admin)).await;
    stats["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["route"] == "validate"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// The value of the one series of `family` whose labels include all of
/// `labels` (`None` when there is none).
fn series_value(text: &str, family: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn each_pair_gives_the_wasm_native_ratio_of_one_request_per_size_class() {
    require_app_wasm();
    let gw = start_with(Options {
        config: Some(shadowed_builtin()),
        ..Options::default()
    })
    .await;
    // Small batches: Wasm answers, native is the shadow.
    for i in 0..6 {
        let body = json!({"items": [{"id": i, "name": format!("n{i}")}]});
        let response = validate(&gw, &body).await;
        assert_eq!(response.headers()["x-gateway-backend"], "spin-embedded");
        response.bytes().await.unwrap();
    }
    // Big batches: the size rule sends them to native, Wasm is the shadow.
    let big = common::big_batch(2_000);
    assert!(big.len() > 256 * 1024 && big.len() <= 4 << 20);
    for _ in 0..2 {
        let response = client()
            .post(format!("{}/validate", gw.base))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-gateway-backend"], "native");
        response.bytes().await.unwrap();
    }
    shadow_counts(&gw, |s| s["match"] == 8).await;
    let route = validate_stats(&gw).await;
    let paired = route["paired"].as_array().expect("paired rows");
    let classes: Vec<_> = paired.iter().map(|p| p["size_class"].clone()).collect();
    assert_eq!(classes, [json!("le_1KiB"), json!("le_4MiB")], "{route}");
    let text = metrics(&gw).await;
    for (row, label, pairs) in [(&paired[0], "≤ 1 KiB", 6), (&paired[1], "≤ 4 MiB", 2)] {
        assert_eq!(row["label"], label, "{row}");
        assert_eq!(row["pairs"], pairs, "{row}");
        assert_eq!(row["matched"], pairs, "{row}");
        assert_eq!(row["mismatched"], 0, "{row}");
        assert_eq!(row["match_rate"], 1.0, "{row}");
        let ratio = |q: &str| {
            row[q]
                .as_f64()
                .unwrap_or_else(|| panic!("{q} is a number: {row}"))
        };
        let (p10, p50, p90) = (ratio("ratio_p10"), ratio("ratio_p50"), ratio("ratio_p90"));
        assert!(p10 > 0.0 && p10 <= p50 && p50 <= p90, "{row}");
        // The metric saw the same pairs.
        let class = format!("size_class=\"{}\"", row["size_class"].as_str().unwrap());
        let count = series_value(
            &text,
            "gateway_shadow_latency_ratio_count",
            &["route=\"validate\"", &class],
        );
        assert_eq!(count, Some(f64::from(pairs)), "{class}: {text}");
    }
    // Its buckets are the ratio buckets, from 1/8 to 16.
    for le in ["0.125", "0.75", "1", "1.25", "16", "+Inf"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("gateway_shadow_latency_ratio_bucket{")
                    && l.contains(&format!("le=\"{le}\""))),
            "bucket {le}: {text}"
        );
    }
}

#[tokio::test]
async fn samples_are_skipped_and_counted_while_the_gateway_is_busy() {
    // Two requests held inside an external Spin make the gateway busy
    // (half of its `max_in_flight` of 4); native answers `validate`, and
    // every request of it is sampled.
    let fake = fake_spin::start(Mode::Hang).await;
    let config = format!(
        r#"
[server]
max_in_flight = 4

[spin]
mode = "external"
upstream = "{}"

[[route]]
name = "held"
match = {{ method = "GET", path = "/items" }}
backend = "spin"
spin_path = "/list"
timeout_ms = 60000

[[route]]
name = "validate"
match = {{ method = "POST", path = "/validate" }}
backend = "native"
spin_path = "/validate"
native = "validate"
timeout_ms = 60000
shadow = {{ sample = 1.0 }}
"#,
        fake.served.base
    );
    let gw = start_with(Options {
        config: Some(config),
        manifest: None,
        ..Options::default()
    })
    .await;
    let held: Vec<_> = (0..2)
        .map(|_| {
            let url = format!("{}/items", gw.base);
            tokio::spawn(async move { client().get(url).send().await })
        })
        .collect();
    for _ in 0..400 {
        if fake.hits() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.hits(), 2, "both held requests are inside Spin");

    let body = json!({"items": [{"id": 1, "name": "Item1"}]});
    for _ in 0..5 {
        let response = validate(&gw, &body).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-gateway-backend"], "native");
    }
    let counts = shadow_counts(&gw, |s| s["skipped_busy"] == 5).await;
    assert_eq!(counts.as_object().map(|o| o.len()), Some(1), "{counts}");
    // Not queued: no replay reached Spin and no bytes are held for one.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.hits(), 2, "no shadow replay ran");
    assert_eq!(gw.gateway.shadow.buffered_bytes(), 0);
    let text = metrics(&gw).await;
    assert_eq!(
        series_value(
            &text,
            "gateway_shadow_comparisons_total",
            &["route=\"validate\"", "result=\"skipped_busy\""],
        ),
        Some(5.0),
        "{text}"
    );

    // Released, the gateway is idle again and the next sample is replayed
    // (the fake's echo differs from native's verdict: a mismatch).
    fake.open_gate();
    for request in held {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(validate(&gw, &body).await.status(), 200);
    let counts = shadow_counts(&gw, |s| s["mismatch"] == 1).await;
    assert_eq!(counts["skipped_busy"], 5, "{counts}");
    assert_eq!(fake.hits(), 3);
}
