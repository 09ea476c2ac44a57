//! End to end: batch validation by the real validate component, and the
//! guarantee the native fallback rests on: the core crate compiled natively
//! gives byte-identical verdicts to the same core compiled into Wasm.

mod common;

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{
    Options, TestGateway, all_spin_config, client, expect_problem, start_all_spin, start_with,
};
use ed25519_dalek::SigningKey;
use items_core::TrustedKeys;
use proptest::prelude::*;
use serde_json::{Value, json};

fn signed(mut item: Value, seed: u8) -> Value {
    items_core::sign_item(&mut item, &SigningKey::from_bytes(&[seed; 32])).unwrap();
    item
}

async fn post_batch(gw: &TestGateway, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(format!("{}/validate", gw.base))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn verdicts_for_valid_invalid_signed_and_tampered_items() {
    let gw = start_all_spin().await;
    let good_signed = signed(json!({"id": 3, "name": "signed"}), 1);
    let mut tampered = signed(json!({"id": 4, "name": "tampered"}), 2);
    tampered["name"] = json!("tampered!");
    let batch = json!({"items": [
        {"id": 1, "name": "Item1"},
        {"id": 2, "name": ""},
        good_signed,
        tampered,
        {"id": 1, "name": "dup id"},
    ]});
    let body = serde_json::to_vec(&batch).unwrap();
    let response = post_batch(&gw, body.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-gateway-backend"], "spin-embedded");
    let bytes = response.bytes().await.unwrap();
    let verdict: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(verdict["valid"], 2, "{verdict}");
    assert_eq!(verdict["invalid"], 3, "{verdict}");
    let valid: Vec<bool> = verdict["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["valid"].as_bool().unwrap())
        .collect();
    assert_eq!(valid, vec![true, false, true, false, false]);
    let codes = |i: usize| -> Vec<String> {
        verdict["results"][i]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["code"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        codes(3).contains(&"signature-mismatch".to_string()),
        "{:?}",
        codes(3)
    );
    assert!(
        codes(4).contains(&"duplicate-id".to_string()),
        "{:?}",
        codes(4)
    );

    // Byte-identical to the native core.
    let native = items_core::validate_batch(&body, &TrustedKeys::any())
        .unwrap()
        .to_json();
    assert_eq!(bytes.as_ref(), native.as_slice());
}

#[tokio::test]
async fn trusted_keys_variable_limits_accepted_signers() {
    let trusted = SigningKey::from_bytes(&[1; 32]);
    let trusted_b64 = B64.encode(trusted.verifying_key().as_bytes());
    common::require_app_wasm();
    let gw = start_with(Options {
        config: Some(all_spin_config()),
        variables: HashMap::from([("trusted_keys".to_string(), trusted_b64.clone())]),
        ..Options::default()
    })
    .await;
    let batch = json!({"items": [
        signed(json!({"id": 1, "name": "by trusted"}), 1),
        signed(json!({"id": 2, "name": "by stranger"}), 9),
    ]});
    let body = serde_json::to_vec(&batch).unwrap();
    let bytes = post_batch(&gw, body.clone()).await.bytes().await.unwrap();
    let verdict: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(verdict["results"][0]["valid"], true, "{verdict}");
    assert_eq!(verdict["results"][1]["valid"], false, "{verdict}");
    assert_eq!(
        verdict["results"][1]["errors"][0]["code"], "untrusted-key",
        "{verdict}"
    );
    let keys = TrustedKeys::parse(&trusted_b64).unwrap();
    let native = items_core::validate_batch(&body, &keys).unwrap().to_json();
    assert_eq!(bytes.as_ref(), native.as_slice());
}

#[tokio::test]
async fn batch_errors_are_problems() {
    let gw = start_all_spin().await;
    // Not JSON at all.
    expect_problem(post_batch(&gw, b"{\"items\": [".to_vec()).await, 400).await;
    // No `items` array.
    expect_problem(post_batch(&gw, b"{\"things\": []}".to_vec()).await, 400).await;
    // Too many items.
    let many = json!({"items": vec![json!({"name": "x"}); items_core::MAX_BATCH_ITEMS + 1]});
    expect_problem(
        post_batch(&gw, serde_json::to_vec(&many).unwrap()).await,
        413,
    )
    .await;
    // Above 16 MiB.
    let huge = format!(
        r#"{{"items": [{{"name": "x", "description": "{}"}}]}}"#,
        "a".repeat(items_core::MAX_BATCH_BYTES)
    );
    expect_problem(post_batch(&gw, huge.into_bytes()).await, 413).await;
    // Wrong media type.
    let response = client()
        .post(format!("{}/validate", gw.base))
        .header("Content-Type", "text/csv")
        .body("a,b")
        .send()
        .await
        .unwrap();
    expect_problem(response, 415).await;
}

#[tokio::test]
async fn the_largest_batch_is_validated_identically() {
    let gw = start_all_spin().await;
    let items: Vec<Value> = (0..items_core::MAX_BATCH_ITEMS)
        .map(|i| {
            let item = json!({"id": i, "name": format!("item {}", i % 9_000), "tags": ["bulk"]});
            if i % 1000 == 0 {
                signed(item, (i / 1000) as u8)
            } else {
                item
            }
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "items": items })).unwrap();
    let response = post_batch(&gw, body.clone()).await;
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    let native = items_core::validate_batch(&body, &TrustedKeys::any())
        .unwrap()
        .to_json();
    assert_eq!(bytes.as_ref(), native.as_slice());
    let verdict: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(verdict["invalid"], 1_000, "names repeat after 9,000 items");
}

// ---- generated batches: native == Wasm, byte for byte ----

/// One runtime and one gateway for all generated cases.
static SHARED: LazyLock<(tokio::runtime::Runtime, TestGateway)> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let gw = runtime.block_on(start_all_spin());
    (runtime, gw)
});

fn name_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[A-Za-z0-9 ]{1,20}".prop_map(Value::from),
        Just(json!("")),
        Just(json!("e\u{301}")), // not NFC
        Just(json!("tab\there")),
        "[a-z]{199,202}".prop_map(Value::from),
        Just(json!(42)),
    ]
}

fn item_strategy() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop_oneof![0u64..6, Just(4_294_967_296u64)]),
        name_strategy(),
        prop::collection::vec("[a-z0-9-]{1,4}|[A-Z]{2}", 0..4),
        prop::option::of((
            0u64..1000,
            prop_oneof![Just("EUR"), Just("USD"), Just("XXY"), Just("eur")],
        )),
        prop::option::of(prop_oneof![Just("2026-11-23T21:00:00Z"), Just("yesterday")]),
        prop::option::of((any::<u8>(), any::<bool>())),
    )
        .prop_map(|(id, name, tags, price, created, signature)| {
            let mut item = json!({ "name": name });
            if let Some(id) = id {
                item["id"] = json!(id);
            }
            if !tags.is_empty() {
                item["tags"] = json!(tags);
            }
            if let Some((cents, currency)) = price {
                item["price"] = json!({"amount_cents": cents, "currency": currency});
            }
            if let Some((seed, tamper)) = signature {
                item = signed(item, seed);
                if tamper {
                    item["description"] = json!("added after signing");
                }
            }
            if let Some(created) = created {
                item["created_at"] = json!(created);
            }
            item
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn generated_batches_give_identical_verdicts(items in prop::collection::vec(item_strategy(), 0..40)) {
        let body = serde_json::to_vec(&json!({ "items": items })).unwrap();
        let native = items_core::validate_batch(&body, &TrustedKeys::any()).unwrap().to_json();
        let (runtime, gw) = &*SHARED;
        let wasm = runtime.block_on(async {
            let response = post_batch(gw, body.clone()).await;
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap()
        });
        prop_assert_eq!(String::from_utf8_lossy(&wasm), String::from_utf8_lossy(&native));
    }
}
