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
