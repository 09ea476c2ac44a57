//! External mode against the real components: the gateway proxies to a
//! Spin-compatible server (`gateway serve-spin`, standing in for `spin up`,
//! which cannot be installed here) speaking the same internal routes.

mod common;

use std::time::Duration;

use common::{Options, client, expect_problem, start_spin_standin, start_with};
use items_core::TrustedKeys;
use serde_json::{Value, json};

#[tokio::test]
async fn every_route_works_through_an_external_spin_and_validate_survives_its_loss() {
    let spin_data = tempfile::tempdir().unwrap();
    let spin = start_spin_standin(spin_data.path()).await;
    let gw = start_with(Options {
        manifest: None,
        upstream: Some(spin.base.clone()),
        ..Options::default()
    })
    .await;
    let http = client();

    // Spin's own paths, answered before any component route, as `spin up` does.
    let health = http
        .get(format!("{}/.well-known/spin/health", spin.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "OK");
    let info: Value = common::get_json(&format!("{}/.well-known/spin/info", spin.base)).await;
    assert_eq!(info["name"], "items", "{info}");
    assert_eq!(info["version"], "0.1.0", "{info}");
    assert_eq!(info["runtime"]["name"], "gateway serve-spin", "{info}");
    let other = http
        .get(format!("{}/.well-known/spin/nothing", spin.base))
        .send()
        .await
        .unwrap();
    expect_problem(other, 404).await;

    let created = http
        .post(format!("{}/items", gw.base))
        .header("content-type", "application/json")
        .body(r#"{"id": 1, "name": "Item1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["x-gateway-backend"], "spin-external");
    assert_eq!(created.headers()["location"], "/items/1");

    let listed = http.get(format!("{}/items", gw.base)).send().await.unwrap();
    assert_eq!(listed.headers()["x-gateway-backend"], "spin-external");
    let items: Vec<Value> = listed.json().await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["name"], "Item1");

    let one = http
        .get(format!("{}/items/1", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);

    let batch = serde_json::to_vec(&json!({"items": [{"id": 1, "name": "Item1"}]})).unwrap();
    let verdict = http
        .post(format!("{}/validate", gw.base))
        .header("content-type", "application/json")
        .body(batch.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(verdict.headers()["x-gateway-backend"], "spin-external");
    let wasm = verdict.bytes().await.unwrap();
    let native = items_core::validate_batch(&batch, &TrustedKeys::any())
        .unwrap()
        .to_json();
    assert_eq!(wasm.as_ref(), native.as_slice());

    let ready = http
        .get(format!("{}/readyz", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // Spin goes away.
    drop(spin);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = http
        .get(format!("{}/readyz", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let list = http.get(format!("{}/items", gw.base)).send().await.unwrap();
    let problem = expect_problem(list, 503).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Spin at http://"),
        "{problem}"
    );
    let verdict = http
        .post(format!("{}/validate", gw.base))
        .header("content-type", "application/json")
        .body(batch.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(verdict.status(), 200);
    assert_eq!(verdict.headers()["x-gateway-backend"], "native");
    assert_eq!(verdict.headers()["x-gateway-fallback"], "connect-error");
    assert_eq!(verdict.bytes().await.unwrap().as_ref(), native.as_slice());
}
