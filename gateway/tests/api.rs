//! End to end: the public item API through the gateway and the real list and
//! create components running in the embedded host.

mod common;

use common::{client, expect_problem, start_all_spin as start};
use serde_json::{Value, json};

#[tokio::test]
async fn seed_example_requests_work() {
    let gw = start().await;
    let http = client();

    // The seed's exact requests.
    let created = http
        .post(format!("{}/items", gw.base))
        .header("Content-Type", "application/json")
        .body(r#"{"id": 1, "name": "Item1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["location"], "/items/1");
    assert_eq!(created.headers()["x-gateway-backend"], "spin-embedded");
    let item: Value = created.json().await.unwrap();
    assert_eq!(item["id"], 1);
    assert_eq!(item["name"], "Item1");
    assert!(
        item["created_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z')),
        "{item}"
    );

    let listed = http.get(format!("{}/items", gw.base)).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    let items: Value = listed.json().await.unwrap();
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{items}");
    assert_eq!(items[0]["id"], 1);
    assert_eq!(items[0]["name"], "Item1");

    let one = http
        .get(format!("{}/items/1", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    assert_eq!(one.json::<Value>().await.unwrap(), item);

    // Same id again: conflict, and the stored item is untouched.
    let again = http
        .post(format!("{}/items", gw.base))
        .json(&json!({"id": 1, "name": "Other"}))
        .send()
        .await
        .unwrap();
    expect_problem(again, 409).await;
    let items: Value = common::get_json(&format!("{}/items", gw.base)).await;
    assert_eq!(items[0]["name"], "Item1");

    let missing = http
        .get(format!("{}/items/999", gw.base))
        .send()
        .await
        .unwrap();
    expect_problem(missing, 404).await;
}

#[tokio::test]
async fn server_assigns_ids_and_pagination_follows_link() {
    let gw = start().await;
    let http = client();
    for i in 0..7 {
        let tags = if i % 2 == 0 {
            json!(["even", "all"])
        } else {
            json!(["odd", "all"])
        };
        let response = http
            .post(format!("{}/items", gw.base))
            .json(&json!({"name": format!("item {i}"), "tags": tags}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
    }

    // Walk the pages by following Link rel="next".
    let mut url = format!("{}/items?limit=3", gw.base);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let link = response
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_string());
        let page: Vec<Value> = response.json().await.unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|i| i["id"].as_u64().unwrap()));
        pages += 1;
        match link {
            Some(link) => {
                assert!(link.ends_with(r#">; rel="next""#), "{link}");
                let target = link.trim_start_matches('<').split('>').next().unwrap();
                assert!(target.starts_with("/items?"), "{target}");
                url = format!("{}{}", gw.base, target);
            }
            None => break,
        }
        assert!(pages < 10, "pagination does not terminate");
    }
    assert_eq!(
        seen,
        (1..=7).collect::<Vec<u64>>(),
        "ids ascending, each once"
    );
    assert_eq!(pages, 3);

    // Tag filter, combined with the cursor.
    let odd: Vec<Value> = common::get_json(&format!("{}/items?tag=odd", gw.base)).await;
    let odd_ids: Vec<u64> = odd.iter().map(|i| i["id"].as_u64().unwrap()).collect();
    assert_eq!(odd_ids, vec![2, 4, 6]);
    let page = http
        .get(format!("{}/items?tag=even&limit=2", gw.base))
        .send()
        .await
        .unwrap();
    let link = page.headers()["link"].to_str().unwrap().to_string();
    assert!(
        link.contains("tag=even"),
        "the cursor keeps the filter: {link}"
    );
    let after: Vec<Value> = page.json().await.unwrap();
    assert_eq!(after.len(), 2);
    let ids: Vec<u64> = after.iter().map(|i| i["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![1, 3]);
    let rest: Vec<Value> = common::get_json(&format!("{}/items?tag=even&after=3", gw.base)).await;
    let ids: Vec<u64> = rest.iter().map(|i| i["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![5, 7]);

    for bad in ["limit=0", "limit=1001", "limit=abc", "after=-1"] {
        let response = http
            .get(format!("{}/items?{bad}", gw.base))
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400).await;
        let detail = problem["detail"].as_str().unwrap();
        let param = bad.split('=').next().unwrap();
        assert!(detail.contains(param), "detail names `{param}`: {detail}");
    }
}

#[tokio::test]
async fn create_rejects_bad_requests_with_problems() {
    let gw = start().await;
    let http = client();
    let url = format!("{}/items", gw.base);

    // 415: not JSON.
    let response = http
        .post(&url)
        .header("Content-Type", "text/plain")
        .body(r#"{"name": "x"}"#)
        .send()
        .await
        .unwrap();
    expect_problem(response, 415).await;

    // 413: above 1 MiB.
    let big = format!(
        r#"{{"name": "x", "description": "{}"}}"#,
        "a".repeat(1 << 20)
    );
    let response = http
        .post(&url)
        .header("Content-Type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    expect_problem(response, 413).await;

    // 400: malformed JSON, with a useful detail.
    let response = http
        .post(&url)
        .header("Content-Type", "application/json")
        .body(r#"{"name": "#)
        .send()
        .await
        .unwrap();
    expect_problem(response, 400).await;

    // 400: schema violations carry the verdict.
    let response = http
        .post(&url)
        .json(&json!({"name": "", "tags": ["UPPER"], "price": {"amount_cents": 1, "currency": "XXY"}}))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 400).await;
    let errors = problem["errors"].as_array().expect("errors extension");
    let paths: Vec<&str> = errors.iter().filter_map(|e| e["path"].as_str()).collect();
    for expected in ["/name", "/tags/0", "/price/currency"] {
        assert!(paths.contains(&expected), "{expected} in {paths:?}");
    }

    // 400: client-set created_at.
    let response = http
        .post(&url)
        .json(&json!({"name": "n", "created_at": "2020-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400).await;

    // 405 with Allow, and 404 for unknown paths.
    let response = http.delete(&url).send().await.unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_string();
    for m in ["GET", "POST"] {
        assert!(allow.contains(m), "Allow lists {m}: {allow}");
    }
    expect_problem(response, 405).await;
    let response = http
        .put(format!("{}/validate", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    expect_problem(response, 405).await;
    let response = http.get(format!("{}/nope", gw.base)).send().await.unwrap();
    expect_problem(response, 404).await;

    // Nothing above was stored.
    let items: Vec<Value> = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert!(items.is_empty(), "{items:?}");
}

#[tokio::test]
async fn signed_items_are_verified_on_create() {
    let gw = start().await;
    let http = client();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let mut item = json!({"id": 10, "name": "signed", "tags": ["a"]});
    items_core::sign_item(&mut item, &key).unwrap();

    let mut tampered = item.clone();
    tampered["name"] = json!("signed!");
    let response = http
        .post(format!("{}/items", gw.base))
        .json(&tampered)
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 400).await;
    let codes: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["code"].as_str())
        .collect();
    assert!(codes.contains(&"signature-mismatch"), "{codes:?}");

    let response = http
        .post(format!("{}/items", gw.base))
        .json(&item)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let stored: Value = response.json().await.unwrap();
    assert_eq!(stored["signature"], item["signature"]);
}

#[tokio::test]
async fn healthz_lists_components() {
    let gw = start().await;
    let body: Value = common::get_json(&format!("{}/healthz", gw.base)).await;
    assert_eq!(body["status"], "ok");
    let components: Vec<&str> = body["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for c in ["list", "create", "validate"] {
        assert!(components.contains(&c), "{components:?}");
    }
}
