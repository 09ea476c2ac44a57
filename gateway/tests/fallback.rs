//! Backend choice and fallback, trigger by trigger, against a scriptable
//! external Spin: validate (backend = "auto") is answered natively with the
//! reason in `x-gateway-fallback`; list (backend = "spin", no native twin)
//! gets a clear problem naming the backend.

mod common;

use std::time::Duration;

use common::fake_spin::{self, FakeSpin, Mode};
use common::{Options, TestGateway, client, expect_problem, start_with};
use items_core::TrustedKeys;
use serde_json::json;

/// Routes against an external (fake) Spin with tight, test-friendly limits.
fn config(upstream: &str, concurrency: usize, consecutive_failures: u32) -> String {
    config_open_for(upstream, concurrency, consecutive_failures, 400)
}

/// [`config`] with the circuits' `open_ms`.
fn config_open_for(
    upstream: &str,
    concurrency: usize,
    consecutive_failures: u32,
    open_ms: u64,
) -> String {
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
timeout_ms = 300
concurrency = {concurrency}
circuit = {{ consecutive_failures = {consecutive_failures}, open_ms = {open_ms}, half_open_probes = 1, min_requests = 1000 }}

[[route]]
name = "create"
match = {{ method = "POST", path = "/items" }}
backend = "spin"
spin_path = "/create"
timeout_ms = 300
concurrency = {concurrency}
circuit = {{ consecutive_failures = {consecutive_failures}, open_ms = {open_ms}, min_requests = 1000 }}

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
concurrency = {concurrency}
circuit = {{ consecutive_failures = {consecutive_failures}, open_ms = {open_ms}, half_open_probes = 1, min_requests = 1000 }}
fallback = {{ on = ["connect-error", "timeout", "5xx", "circuit-open", "overloaded"], native_above_bytes = 2000 }}
"#
    )
}

async fn gateway_for(upstream: &str, concurrency: usize, failures: u32) -> TestGateway {
    start_with(Options {
        config: Some(config(upstream, concurrency, failures)),
        manifest: None,
        ..Options::default()
    })
    .await
}

fn native_verdict(body: &[u8]) -> Vec<u8> {
    items_core::validate_batch(body, &TrustedKeys::any())
        .unwrap()
        .to_json()
}

async fn validate(gw: &TestGateway, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(format!("{}/validate", gw.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// `GET /items` (the `list` route, Spin only).
async fn get_items(gw: &TestGateway) -> reqwest::Response {
    client()
        .get(format!("{}/items", gw.base))
        .send()
        .await
        .unwrap()
}

/// One Spin call at a time per route, with a timeout long enough for a
/// first request to still be in flight while the next arrives.
async fn one_at_a_time(fake: &FakeSpin) -> TestGateway {
    let text = config(&fake.served.base, 1, 100).replace("timeout_ms = 300", "timeout_ms = 20000");
    start_with(Options {
        config: Some(text),
        manifest: None,
        ..Options::default()
    })
    .await
}

/// Asserts the native handler answered validate because of `reason`.
async fn expect_native(response: reqwest::Response, reason: &str, body: &[u8]) {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-gateway-backend"], "native");
    assert_eq!(response.headers()["x-gateway-fallback"], reason);
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.as_ref(), native_verdict(body).as_slice());
}

#[tokio::test]
async fn auto_goes_native_above_the_size_threshold_and_to_spin_below() {
    let fake = fake_spin::start(Mode::Ok).await;
    let gw = gateway_for(&fake.served.base, 8, 5).await;

    let small = common::small_batch();
    let response = validate(&gw, small).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-gateway-backend"], "spin-external");
    assert!(response.headers().get("x-gateway-fallback").is_none());
    assert_eq!(fake.hits(), 1);
    assert_eq!(fake.last_path(), "/validate");

    let items: Vec<_> = (0..100)
        .map(|i| json!({"id": i, "name": format!("n{i}")}))
        .collect();
    let big = serde_json::to_vec(&json!({ "items": items })).unwrap();
    assert!(big.len() > 2000);
    expect_native(validate(&gw, big.clone()).await, "size", &big).await;
    assert_eq!(fake.hits(), 1, "Spin was not called for the big batch");
}

#[tokio::test]
async fn spin_refusing_connections_falls_back_or_names_the_backend() {
    let closed = fake_spin::closed_port().await;
    let upstream = closed.url.clone();
    let gw = gateway_for(&upstream, 8, 100).await;
    let body = common::small_batch();
    expect_native(validate(&gw, body.clone()).await, "connect-error", &body).await;

    let list = get_items(&gw).await;
    assert_eq!(list.headers()["retry-after"], "1");
    let problem = expect_problem(list, 503).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&upstream), "names the backend: {detail}");
    assert!(detail.contains("list"), "names the route: {detail}");
    assert_eq!(problem["backend"], "spin-external");

    let create = client()
        .post(format!("{}/items", gw.base))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    expect_problem(create, 503).await;

    // Readiness reports Spin down, and which routes still work.
    let ready = client()
        .get(format!("{}/readyz", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["ready"], false);
    let available: Vec<(String, bool)> = ready["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["route"].as_str().unwrap().to_string(),
                r["available"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(
        available.contains(&("validate".to_string(), true)),
        "{available:?}"
    );
    assert!(
        available.contains(&("list".to_string(), false)),
        "{available:?}"
    );
}

#[tokio::test]
async fn spin_hanging_past_the_timeout_falls_back_or_times_out() {
    let fake = fake_spin::start(Mode::Hang).await;
    let gw = gateway_for(&fake.served.base, 8, 100).await;
    let body = common::small_batch();
    expect_native(validate(&gw, body.clone()).await, "timeout", &body).await;
    let list = get_items(&gw).await;
    let problem = expect_problem(list, 504).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("300 ms"),
        "{problem}"
    );
    fake.open_gate();
}

#[tokio::test]
async fn spin_5xx_falls_back_or_passes_through() {
    let fake = fake_spin::start(Mode::Fail).await;
    let gw = gateway_for(&fake.served.base, 8, 100).await;
    let body = common::small_batch();
    expect_native(validate(&gw, body.clone()).await, "5xx", &body).await;
    // No native twin: Spin's own 500 problem reaches the client unchanged.
    let list = get_items(&gw).await;
    let problem = expect_problem(list, 500).await;
    assert_eq!(problem["detail"], "fake failure");
}

#[tokio::test]
async fn an_answer_still_streaming_keeps_its_spin_slot() {
    let fake = fake_spin::start(Mode::HangBody).await;
    let gw = one_at_a_time(&fake).await;

    // The head has arrived; the body has not ended.
    let mut streaming = get_items(&gw).await;
    assert_eq!(streaming.status(), 200);
    let first = streaming.chunk().await.unwrap().expect("the first bytes");
    assert_eq!(&first[..], b"{\"fake\": \"");

    // The route's one Spin slot is still taken by that answer.
    let shed = get_items(&gw).await;
    let problem = expect_problem(shed, 503).await;
    assert_eq!(problem["title"], "Overloaded");

    // Once the body has ended, the slot is free again.
    fake.open_gate();
    let mut rest = Vec::new();
    while let Some(chunk) = streaming.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(&rest[..], b"released\"}");
    let mut status = 0;
    for _ in 0..100 {
        let next = get_items(&gw).await;
        status = next.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_concurrency_limit_sheds_or_falls_back() {
    let fake = fake_spin::start(Mode::Hang).await;
    let gw = one_at_a_time(&fake).await;

    let base = gw.base.clone();
    let first_list = tokio::spawn(client().get(format!("{base}/items")).send());
    let first_validate = tokio::spawn(
        client()
            .post(format!("{base}/validate"))
            .header("content-type", "application/json")
            .body(common::small_batch())
            .send(),
    );
    // Wait until both are inside the fake.
    for _ in 0..200 {
        if fake.hits() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.hits(), 2);

    let body = common::small_batch();
    expect_native(validate(&gw, body.clone()).await, "overloaded", &body).await;
    let list = get_items(&gw).await;
    assert_eq!(list.headers()["retry-after"], "1");
    let problem = expect_problem(list, 503).await;
    assert_eq!(problem["title"], "Overloaded");

    fake.open_gate();
    assert_eq!(first_list.await.unwrap().unwrap().status(), 200);
    assert_eq!(first_validate.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn the_circuit_opens_sends_auto_to_native_then_half_opens_and_closes() {
    let fake = fake_spin::start(Mode::Fail).await;
    // Open for 3 s: far longer than the few local requests that check it is
    // open take, even on a loaded machine; recovery is awaited by polling.
    let gw = start_with(Options {
        config: Some(config_open_for(&fake.served.base, 8, 2, 3000)),
        manifest: None,
        ..Options::default()
    })
    .await;
    let body = common::small_batch();
    // Sends validates until one is a half-open probe reaching Spin; every
    // answer before it must be the open circuit's native one.
    let until_probe = |gw: &TestGateway| {
        let (base, body) = (gw.base.clone(), body.clone());
        async move {
            for _ in 0..200 {
                let response = client()
                    .post(format!("{base}/validate"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let open = response
                    .headers()
                    .get("x-gateway-fallback")
                    .is_some_and(|reason| reason == "circuit-open");
                if !open {
                    return response;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the circuit never half-opened");
        }
    };

    // Two failures open validate's circuit (each answered natively: 5xx).
    expect_native(validate(&gw, body.clone()).await, "5xx", &body).await;
    expect_native(validate(&gw, body.clone()).await, "5xx", &body).await;
    assert_eq!(fake.hits(), 2);
    // Open: native without calling Spin.
    expect_native(validate(&gw, body.clone()).await, "circuit-open", &body).await;
    assert_eq!(fake.hits(), 2, "an open circuit does not call Spin");

    // The list route has its own breaker: open it, then it answers 503.
    for _ in 0..2 {
        let r = get_items(&gw).await;
        assert_eq!(r.status(), 500);
    }
    let r = get_items(&gw).await;
    assert!(r.headers().contains_key("retry-after"));
    let problem = expect_problem(r, 503).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("circuit"),
        "{problem}"
    );
    let ready: serde_json::Value = common::get_json(&format!("{}/readyz", gw.admin)).await;
    let circuit_of = |name: &str| {
        ready["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == name)
            .map(|r| r["circuit"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(circuit_of("validate"), "open");
    assert_eq!(circuit_of("create"), "closed");

    // Spin recovers; after open_ms the next request is a probe and closes it.
    fake.set_mode(Mode::Ok);
    let hits = fake.hits();
    let response = until_probe(&gw).await;
    assert_eq!(response.headers()["x-gateway-backend"], "spin-external");
    assert_eq!(fake.hits(), hits + 1);
    let response = validate(&gw, body.clone()).await;
    assert_eq!(
        response.headers()["x-gateway-backend"],
        "spin-external",
        "closed again"
    );

    // A failed probe re-opens it.
    fake.set_mode(Mode::Fail);
    expect_native(validate(&gw, body.clone()).await, "5xx", &body).await;
    expect_native(validate(&gw, body.clone()).await, "5xx", &body).await;
    expect_native(validate(&gw, body.clone()).await, "circuit-open", &body).await;
    let probe = until_probe(&gw).await;
    assert_eq!(probe.headers()["x-gateway-backend"], "native");
    assert_eq!(probe.headers()["x-gateway-fallback"], "5xx");
    expect_native(validate(&gw, body.clone()).await, "circuit-open", &body).await;
}

#[tokio::test]
async fn idempotent_requests_are_retried_and_posts_are_not() {
    let fake = fake_spin::start(Mode::FailFirst(2)).await;
    let text = config(&fake.served.base, 8, 100).replace(
        "spin_path = \"/list\"",
        "spin_path = \"/list\"\nretry = { attempts = 2, backoff_ms = 5, budget_percent = 100 }",
    );
    let gw = start_with(Options {
        config: Some(text),
        manifest: None,
        ..Options::default()
    })
    .await;
    let response = client()
        .get(format!("{}/items?limit=5", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "two failures, then the third attempt succeeds"
    );
    assert_eq!(fake.hits(), 3);
    assert_eq!(fake.last_path(), "/list?limit=5");

    // POST is not idempotent: one attempt, the 500 is returned.
    fake.set_mode(Mode::FailFirst(1));
    let response = client()
        .post(format!("{}/items", gw.base))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(fake.hits(), 4);
}

#[tokio::test]
async fn native_backend_never_calls_spin() {
    let fake: FakeSpin = fake_spin::start(Mode::Ok).await;
    let text = config(&fake.served.base, 8, 100)
        .replace("backend = \"auto\"", "backend = \"native\"")
        .replace(
            "fallback = { on = [\"connect-error\", \"timeout\", \"5xx\", \"circuit-open\", \"overloaded\"], native_above_bytes = 2000 }",
            "",
        );
    let gw = start_with(Options {
        config: Some(text),
        manifest: None,
        ..Options::default()
    })
    .await;
    let body = common::small_batch();
    let response = validate(&gw, body.clone()).await;
    assert_eq!(response.headers()["x-gateway-backend"], "native");
    assert!(response.headers().get("x-gateway-fallback").is_none());
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        native_verdict(&body).as_slice()
    );
    assert_eq!(fake.hits(), 0);

    // The native handler keeps the component's contract for bad input.
    let response = client()
        .post(format!("{}/validate", gw.base))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    expect_problem(response, 415).await;
    let response = validate(&gw, b"{\"items\": 5}".to_vec()).await;
    expect_problem(response, 400).await;
}
