//! Wasm and native compared on equal work: every request is also recorded
//! under its body-size class, in `/admin/stats` and on the request-duration
//! histogram, so a route whose size rule sends big bodies to native still
//! shows both backends side by side for bodies of the same size.

mod common;

use common::{Options, TestGateway, client, require_app_wasm, start_with};
use serde_json::{Value, json};

/// The built-in config with validate's size rule at 100 bytes: a one-item
/// batch goes to Wasm, a five-item one to native, both under 1 KiB; and
/// shadowing off, so only real requests are counted.
fn split_at_100_bytes() -> String {
    let builtin = gateway::config::BUILTIN;
    assert_eq!(builtin.matches("native_above_bytes = 262144").count(), 1);
    builtin
        .replace("native_above_bytes = 262144", "native_above_bytes = 100")
        .replace(
            "concurrency = 64\n",
            "concurrency = 64\nshadow = { sample = 0 }\n",
        )
}

async fn post_validate(gw: &TestGateway, body: Vec<u8>) -> String {
    let response = client()
        .post(format!("{}/validate", gw.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let backend = response.headers()["x-gateway-backend"]
        .to_str()
        .unwrap()
        .to_string();
    response.bytes().await.unwrap();
    backend
}

fn batch(n: usize) -> Vec<u8> {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"id": i, "name": format!("n{i}")}))
        .collect();
    serde_json::to_vec(&json!({ "items": items })).unwrap()
}

/// `count` of `backend` in `class` of a route's `classes` rows.
fn class_count(route: &Value, class: &str, backend: &str) -> Option<u64> {
    route["classes"]
        .as_array()?
        .iter()
        .find(|c| c["size_class"] == class)?["backends"]
        .as_array()?
        .iter()
        .find(|b| b["backend"] == backend)?["count"]
        .as_u64()
}

#[tokio::test]
async fn both_backends_are_shown_per_size_class_after_mixed_traffic() {
    require_app_wasm();
    let gw = start_with(Options {
        config: Some(split_at_100_bytes()),
        ..Options::default()
    })
    .await;
    let (small, medium, big) = (batch(1), batch(5), common::big_batch(2_000));
    assert!(small.len() <= 100 && medium.len() > 100 && medium.len() <= 1024);
    assert!(big.len() > 256 * 1024 && big.len() <= 4 << 20);
    for _ in 0..4 {
        assert_eq!(post_validate(&gw, small.clone()).await, "spin-embedded");
    }
    for _ in 0..3 {
        assert_eq!(post_validate(&gw, medium.clone()).await, "native");
    }
    assert_eq!(post_validate(&gw, big.clone()).await, "native");
    assert_eq!(post_validate(&gw, big).await, "native");

    let stats: Value = common::get_json(&format!("{}/admin/stats", gw.admin)).await;
    let route = stats["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["route"] == "validate"))
        .cloned()
        .unwrap_or_else(|| panic!("no validate route: {stats}"));
    // The route's own figures are kept.
    let overall: Vec<_> = route["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["backend"].as_str().unwrap(), b["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(overall, [("native", 5), ("spin-embedded", 4)], "{route}");
    // Per class, smallest first, only classes with traffic.
    let classes: Vec<_> = route["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["size_class"].clone(), c["label"].clone()))
        .collect();
    assert_eq!(
        classes,
        [
            (json!("le_1KiB"), json!("≤ 1 KiB")),
            (json!("le_4MiB"), json!("≤ 4 MiB"))
        ],
        "{route}"
    );
    assert_eq!(class_count(&route, "le_1KiB", "spin-embedded"), Some(4));
    assert_eq!(class_count(&route, "le_1KiB", "native"), Some(3));
    assert_eq!(class_count(&route, "le_4MiB", "native"), Some(2));
    assert_eq!(
        class_count(&route, "le_4MiB", "spin-embedded"),
        None,
        "Wasm never saw a big batch: {route}"
    );
    for class in route["classes"].as_array().unwrap() {
        for b in class["backends"].as_array().unwrap() {
            for field in ["p50_ms", "p95_ms", "p99_ms", "mean_ms"] {
                assert!(b[field].as_f64().is_some(), "{field} in {b}");
            }
        }
    }
    assert_eq!(route["paired"], json!([]), "shadowing is off: {route}");

    // The request-duration histogram carries the class too.
    let text = common::admin_metrics(&gw.admin).await;
    let count = |backend: &str, class: &str| {
        text.lines()
            .filter(|l| l.starts_with("gateway_request_duration_seconds_count{"))
            .filter(|l| l.contains("route=\"validate\""))
            .filter(|l| l.contains(&format!("backend=\"{backend}\"")))
            .filter(|l| l.contains(&format!("size_class=\"{class}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    assert_eq!(count("spin-embedded", "le_1KiB"), 4, "{text}");
    assert_eq!(count("native", "le_1KiB"), 3, "{text}");
    assert_eq!(count("native", "le_4MiB"), 2, "{text}");
    assert_eq!(count("spin-embedded", "le_4MiB"), 0, "{text}");
}

#[tokio::test]
async fn a_request_without_a_body_is_in_the_smallest_class() {
    let gw = common::start().await;
    let response = client()
        .get(format!("{}/items", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    let text = common::admin_metrics(&gw.admin).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("gateway_request_duration_seconds_count{")
                && l.contains("route=\"list\"")
                && l.contains("size_class=\"le_1KiB\"")),
        "{text}"
    );
}

#[tokio::test]
async fn the_default_config_shadows_one_validate_request_in_a_hundred() {
    let gw = common::start().await;
    let config: Value = common::get_json(&format!("{}/admin/config", gw.admin)).await;
    let route = |name: &str| {
        config["routes"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no route {name}: {config}"))
    };
    assert_eq!(route("validate")["shadow"]["sample"], 0.01, "{config}");
    assert_eq!(route("list")["shadow"]["sample"], 0.0, "{config}");
}
