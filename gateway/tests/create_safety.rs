//! `POST /items` under hostile or unlucky clients, through the embedded
//! host and the real create component: one client taking the top id must
//! not stop server-assigned ids for everyone, and a retried create with an
//! `Idempotency-Key` must not create a second item.

mod common;

use common::{TestGateway, client, expect_problem, start_all_spin as start};
use serde_json::{Value, json};

const MAX_ID: u64 = u32::MAX as u64;

async fn create(gw: &TestGateway, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut request = client()
        .post(format!("{}/items", gw.base))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap()
}

/// Creates without an id and returns the assigned one.
async fn create_unnumbered(gw: &TestGateway, name: &str) -> u64 {
    let response = create(gw, &json!({ "name": name }), None).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let item: Value = response.json().await.unwrap();
    item["id"].as_u64().expect("an id")
}

async fn all_ids(gw: &TestGateway) -> Vec<u64> {
    let items: Vec<Value> = common::get_json(&format!("{}/items?limit=1000", gw.base)).await;
    items.iter().filter_map(|i| i["id"].as_u64()).collect()
}

#[tokio::test]
async fn taking_the_top_id_does_not_stop_server_assigned_ids() {
    let gw = start().await;
    // One client takes 4294967295: max + 1 no longer fits a u32.
    let top = create(&gw, &json!({"id": MAX_ID, "name": "top"}), None).await;
    assert_eq!(top.status(), 201);

    // Server-assigned ids carry on from the ordinary ids.
    assert_eq!(create_unnumbered(&gw, "a").await, 1);
    assert_eq!(create_unnumbered(&gw, "b").await, 2);
    // More ids at the top, in a run: stepped over too.
    for id in [MAX_ID - 1, MAX_ID - 2] {
        let r = create(&gw, &json!({"id": id, "name": "top run"}), None).await;
        assert_eq!(r.status(), 201);
    }
    // An explicit id above the ordinary ones moves the numbering on.
    let r = create(&gw, &json!({"id": 10, "name": "ten"}), None).await;
    assert_eq!(r.status(), 201);
    assert_eq!(create_unnumbered(&gw, "c").await, 11);
    assert_eq!(
        all_ids(&gw).await,
        [1, 2, 10, 11, MAX_ID - 2, MAX_ID - 1, MAX_ID]
    );
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_first_answer() {
    let gw = start().await;
    let body = json!({"name": "once", "tags": ["retry"]});
    let first = create(&gw, &body, Some("key-1")).await;
    assert_eq!(first.status(), 201);
    let location = first.headers()["location"].clone();
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let first_body = first.bytes().await.unwrap();

    // The client never saw that answer and sends the same request again.
    for _ in 0..2 {
        let retry = create(&gw, &body, Some("key-1")).await;
        assert_eq!(retry.status(), 201);
        assert_eq!(retry.headers()["location"], location);
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
        assert_eq!(
            retry.bytes().await.unwrap(),
            first_body,
            "same body, created_at included"
        );
    }
    assert_eq!(all_ids(&gw).await.len(), 1, "one item, not three");

    // Explicit ids too: a retry is a 201 again, not a 409.
    let numbered = json!({"id": 77, "name": "numbered"});
    assert_eq!(create(&gw, &numbered, Some("key-2")).await.status(), 201);
    let retry = create(&gw, &numbered, Some("key-2")).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["location"], "/items/77");
    // Without a key the same body is a new create (here: a conflict).
    expect_problem(create(&gw, &numbered, None).await, 409).await;

    // Another key is another create.
    let other = create(&gw, &body, Some("key-3")).await;
    assert_eq!(other.status(), 201);
    assert_ne!(other.headers()["location"], location);
    assert_eq!(all_ids(&gw).await.len(), 3);
}

#[tokio::test]
async fn concurrent_retries_with_one_key_create_one_item() {
    let gw = start().await;
    let body = json!({"name": "racing"});
    let answers =
        futures_util::future::join_all((0..8).map(|_| create(&gw, &body, Some("race-key")))).await;
    let mut locations = Vec::new();
    for answer in answers {
        assert_eq!(answer.status(), 201);
        locations.push(answer.headers()["location"].clone());
    }
    locations.dedup();
    assert_eq!(locations.len(), 1, "{locations:?}");
    assert_eq!(all_ids(&gw).await.len(), 1);
}

#[tokio::test]
async fn a_key_reused_with_another_body_is_refused() {
    let gw = start().await;
    let first = create(&gw, &json!({"name": "first"}), Some("key-x")).await;
    assert_eq!(first.status(), 201);
    let other = create(&gw, &json!({"name": "second"}), Some("key-x")).await;
    let problem = expect_problem(other, 422).await;
    assert_eq!(problem["idempotency_key"], "key-x", "{problem}");
    assert_eq!(all_ids(&gw).await.len(), 1);
}

#[tokio::test]
async fn malformed_keys_are_refused_before_anything_is_stored() {
    let gw = start().await;
    let body = json!({"name": "x"});
    let too_long = "k".repeat(256);
    for key in ["", "has space", "tab\there", too_long.as_str()] {
        let response = create(&gw, &body, Some(key)).await;
        let problem = expect_problem(response, 400).await;
        assert_eq!(problem["header"], "Idempotency-Key", "{key:?}: {problem}");
    }
    // Non-ASCII bytes in the value.
    let response = client()
        .post(format!("{}/items", gw.base))
        .header("content-type", "application/json")
        .header(
            "idempotency-key",
            reqwest::header::HeaderValue::from_bytes("clé".as_bytes()).unwrap(),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    expect_problem(response, 400).await;
    // Twice.
    let response = client()
        .post(format!("{}/items", gw.base))
        .header("content-type", "application/json")
        .header("idempotency-key", "a")
        .header("idempotency-key", "b")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    expect_problem(response, 400).await;
    // 255 visible characters is fine.
    let longest = "~".repeat(255);
    assert_eq!(create(&gw, &body, Some(&longest)).await.status(), 201);
    assert_eq!(all_ids(&gw).await.len(), 1);
}
