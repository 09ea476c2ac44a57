//! End to end: learned routing (`fallback.native_above_bytes = "learn"`)
//! on a route whose Wasm path is the `misbehave` component's `/burn`
//! (CPU in proportion to the body: `x-burn-rounds` rounds per byte) and
//! whose native path is the validate handler, whose cost is the Ed25519
//! check of each signed item. The medium bodies (≤ 16 KiB) are 70 signed
//! items: native verifies all 70, Wasm burns 14 KB. The big ones
//! (≤ 256 KiB) are 100 unsigned items with long descriptions: nothing to
//! verify natively, 200 KB for Wasm to burn. So Wasm wins the medium class
//! and native the big one: a crossover at 16 KiB, native above, the shape
//! of a CPU-bound route. Then Wasm is made forty times costlier per byte,
//! and back.
//!
//! Every bound below is a number of requests, never a time: the paths
//! differ several-fold in each class (measured in this test's debug
//! build: Wasm about 3 ms against native 10 ms for the medium bodies,
//! 20 ms against 5 ms for the big ones), so the outcome does not depend
//! on the machine's speed.

mod common;

use common::{TestGateway, client, get_json, start_misbehave};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

const ROUTE: &str = r#"
[[route]]
name = "burn"
match = { method = "POST", path = "/burn" }
backend = "auto"
spin_path = "/burn"
native = "validate"
timeout_ms = 30000
max_body_bytes = 8388608
# Every request is also run on the other path, so the path not chosen
# stays measured (the queue drops what it cannot keep up with).
shadow = { sample = 1.0 }

[route.fallback]
native_above_bytes = "learn"
"#;

/// Rounds of burn per byte while Wasm is fast, and while it is slow.
const FAST: u32 = 50;
const SLOW: u32 = 2_000;

/// `n` unsigned items with 2,000-character descriptions: cheap natively
/// (no signature), 2 KB each for Wasm to burn.
fn fat_batch(n: usize) -> Vec<u8> {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"id": i, "name": format!("item {i}"), "description": "d".repeat(2000)}))
        .collect();
    serde_json::to_vec(&json!({ "items": items })).expect("serializable")
}

/// A batch of `n` signed items (one Ed25519 verification each natively).
fn batch(n: usize) -> Vec<u8> {
    let key = SigningKey::from_bytes(&[9; 32]);
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let mut item = json!({"id": i, "name": format!("item {i}")});
            items_core::sign_item(&mut item, &key).expect("signable");
            item
        })
        .collect();
    serde_json::to_vec(&json!({ "items": items })).expect("serializable")
}

/// Posts `body` with `rounds`; returns who answered.
async fn post(gw: &TestGateway, body: &[u8], rounds: u32) -> String {
    let response = client()
        .post(format!("{}/burn", gw.base))
        .header("content-type", "application/json")
        .header("x-burn-rounds", rounds.to_string())
        .body(body.to_vec())
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    response.headers()["x-gateway-backend"]
        .to_str()
        .expect("ascii")
        .to_string()
}

/// The route's learned figures from `/admin/stats`.
async fn learned(gw: &TestGateway) -> Value {
    let stats: Value = get_json(&format!("{}/admin/stats", gw.admin)).await;
    stats["routes"]
        .as_array()
        .and_then(|routes| routes.iter().find(|r| r["route"] == "burn"))
        .map(|r| r["learned"].clone())
        .expect("the burn route has learned figures")
}

/// The learned path of `class` (`null` while it warms up).
async fn choice(gw: &TestGateway, class: &str) -> Value {
    let learned = learned(gw).await;
    learned["classes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["size_class"] == class))
        .map_or(Value::Null, |c| c["choice"].clone())
}

#[tokio::test]
async fn traffic_follows_the_faster_path_per_size_class_and_moves_when_it_slows() {
    let gw = start_misbehave("", ROUTE).await;
    let medium = batch(70); // ≤ 16 KiB
    let big = fat_batch(100); // ≤ 256 KiB
    assert!(
        medium.len() > 1024 && medium.len() <= 16 << 10,
        "{}",
        medium.len()
    );
    assert!(
        big.len() > 16 << 10 && big.len() <= 256 << 10,
        "{}",
        big.len()
    );

    // 1. The crossover is learned. Warm-up needs 8 samples per path and
    // class (live answers and shadow runs both count); within 60 requests
    // of each class both are decided, with the boundary between them.
    let mut learned_after = None;
    for n in 1..=60 {
        post(&gw, &medium, FAST).await;
        post(&gw, &big, FAST).await;
        if learned(&gw).await["crossover"]["native"] == "above" {
            learned_after = Some(n);
            break;
        }
    }
    let Some(n) = learned_after else {
        let l = learned(&gw).await;
        panic!("no crossover within 60 requests per class: {l:#}");
    };
    assert!(n >= 4, "not before the warm-up ended: {n}");
    let l = learned(&gw).await;
    println!("learned after {n} requests per class: {l:#}");
    assert_eq!(l["crossover"]["bytes"], 16384, "{l:#}");
    assert_eq!(choice(&gw, "le_16KiB").await, "wasm", "{l:#}");
    assert_eq!(choice(&gw, "le_256KiB").await, "native", "{l:#}");
    // And the traffic follows it.
    let mut medium_wasm = 0;
    let mut big_native = 0;
    for _ in 0..20 {
        medium_wasm += usize::from(post(&gw, &medium, FAST).await == "spin-embedded");
        big_native += usize::from(post(&gw, &big, FAST).await == "native");
    }
    assert!(
        medium_wasm >= 18,
        "medium bodies on Wasm: {medium_wasm} of 20"
    );
    assert!(big_native >= 18, "big bodies on native: {big_native} of 20");

    // 2. Wasm slows forty times per byte: medium bodies move to native
    // within the dwell (8 answers) and a few more.
    let mut moved = None;
    for n in 1..=40 {
        post(&gw, &medium, SLOW).await;
        if choice(&gw, "le_16KiB").await == "native" {
            moved = Some(n);
            break;
        }
    }
    let Some(moved) = moved else {
        let l = learned(&gw).await;
        panic!("medium bodies still on Wasm after 40 slow requests: {l:#}");
    };
    let mut on_native = 0;
    for _ in 0..10 {
        on_native += usize::from(post(&gw, &medium, SLOW).await == "native");
    }
    assert!(
        on_native >= 9,
        "after moving ({moved}), native served {on_native} of 10"
    );
    println!("moved to native after {moved} slow requests");

    // 3. Wasm recovers: the shadow runs measure it fast again, its peak
    // fades, and the class comes back (bounded by requests, generously:
    // queued slow replays run first).
    let mut back = None;
    for n in 1..=3_000 {
        post(&gw, &medium, FAST).await;
        if n % 10 == 0 && choice(&gw, "le_16KiB").await == "wasm" {
            back = Some(n);
            break;
        }
    }
    println!("back on Wasm after {back:?} requests");
    if back.is_none() {
        let l = learned(&gw).await;
        panic!("medium bodies not back on Wasm within 3,000 requests: {l:#}");
    }
    let mut on_wasm = 0;
    for _ in 0..10 {
        on_wasm += usize::from(post(&gw, &medium, FAST).await == "spin-embedded");
    }
    assert!(on_wasm >= 9, "back on Wasm: {on_wasm} of 10");
    // Big bodies never left native.
    assert_eq!(choice(&gw, "le_256KiB").await, "native");

    // The figures are on /metrics too, bounded by route, class and path.
    let metrics = common::admin_metrics(&gw.admin).await;
    assert!(
        metrics.contains(
            "gateway_learned_estimate_seconds{path=\"wasm\",route=\"burn\",size_class=\"le_16KiB\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("gateway_learned_decisions_total{decision=\"learned\",path=\"native\",route=\"burn\",size_class=\"le_256KiB\"}"), "{metrics}");
    assert!(
        metrics.contains(
            "gateway_learned_cpu_seconds{path=\"native\",route=\"burn\",size_class=\"le_256KiB\"}"
        ),
        "{metrics}"
    );
    // The crossover /admin/stats shows, on its direction's series.
    let l = learned(&gw).await;
    assert_eq!(l["crossover"]["native"], "above", "{l:#}");
    let bytes = l["crossover"]["bytes"].as_u64().expect("a crossover");
    let line = |native: &str| {
        let series =
            format!("gateway_learned_crossover_bytes{{native=\"{native}\",route=\"burn\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map(str::to_owned)
    };
    assert_eq!(
        line("above").and_then(|v| v.parse::<u64>().ok()),
        Some(bytes),
        "{metrics}"
    );
    // The other direction is recorded as NaN, which /metrics leaves out.
    assert_eq!(line("below"), None, "{metrics}");
}

#[tokio::test]
async fn a_learned_route_never_sends_to_spin_while_its_breaker_is_open() {
    // The Wasm path traps (a 500): native stands in (`5xx`), and after two
    // failures the breaker opens; from then on the learned choice sends
    // every request to native itself, saying why.
    let route = r#"
[[route]]
name = "burn"
match = { method = "POST", path = "/burn" }
backend = "auto"
spin_path = "/trap"
native = "validate"
shadow = { sample = 0.0 }

[route.circuit]
consecutive_failures = 2
open_ms = 600000

[route.fallback]
native_above_bytes = "learn"
"#;
    let gw = start_misbehave("", route).await;
    let body = batch(1);
    let mut reasons = Vec::new();
    for _ in 0..30 {
        let response = client()
            .post(format!("{}/burn", gw.base))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-gateway-backend"], "native");
        let reason = response.headers()["x-gateway-fallback"]
            .to_str()
            .expect("ascii")
            .to_string();
        reasons.push(reason);
    }
    // Two traps (warm-up sends them to Spin), then the breaker is open:
    // never Spin again, every later request says `circuit-open`.
    assert_eq!(
        reasons.iter().filter(|r| *r == "5xx").count(),
        2,
        "{reasons:?}"
    );
    assert!(
        reasons[reasons.len() - 20..]
            .iter()
            .all(|r| r == "circuit-open"),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn each_requests_span_says_what_decided_its_path() {
    // As the binary does: logs, and the in-memory trace recorder.
    let _tracing = gateway::telemetry::init(None).expect("tracing installs");
    let route = ROUTE.replace("shadow = { sample = 1.0 }", "shadow = { sample = 0.0 }");
    let gw = start_misbehave("", &route).await;
    let body = batch(2);
    let mut seen = Vec::new();
    // Warm-up (`explore`), then the learned choice (`learned`).
    for i in 0..24u32 {
        let trace = format!("{:032x}", 0x00c0_ffee_0000_u64 + u64::from(i));
        let response = client()
            .post(format!("{}/burn", gw.base))
            .header("content-type", "application/json")
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
            .body(body.clone())
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200);
        let traces: Value = get_json(&format!("{}/admin/traces?trace_id={trace}", gw.admin)).await;
        let request = traces["traces"][0]["spans"]
            .as_array()
            .and_then(|spans| spans.iter().find(|s| s["name"] == "request"))
            .cloned()
            .unwrap_or_else(|| panic!("the sampled trace {trace} is kept: {traces}"));
        let attrs = &request["attributes"];
        let decision = attrs["gateway.decision"].as_str().unwrap_or("").to_string();
        if decision == "learned" {
            assert!(
                attrs["gateway.predicted.wasm_ms"].as_f64().is_some()
                    && attrs["gateway.predicted.native_ms"].as_f64().is_some(),
                "a learned decision carries both predictions: {attrs}"
            );
        }
        seen.push(decision);
    }
    assert_eq!(seen[0], "explore", "{seen:?}");
    assert!(seen[16..].iter().all(|d| d == "learned"), "{seen:?}");
}
