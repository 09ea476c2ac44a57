//! The batch path: limits, duplicates, determinism, error shapes.

use items_core::{
    BatchError, MAX_BATCH_BYTES, MAX_BATCH_ITEMS, TrustedKeys, Verdict, sign_item, validate_batch,
};
use serde_json::{Value, json};

fn run(body: &Value) -> Verdict {
    validate_batch(&serde_json::to_vec(body).unwrap(), &TrustedKeys::any()).unwrap()
}

fn batch_of(n: usize) -> Vec<u8> {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"id": i, "name": format!("Item{i}"), "tags": ["t"]}))
        .collect();
    serde_json::to_vec(&json!({ "items": items })).unwrap()
}

#[test]
fn mixed_batch_verdict_shape() {
    let v = run(&json!({"items": [
        {"id": 1, "name": "Item1"},
        {"id": 2, "name": ""},
        "not an item",
        {"id": 4294967296u64, "name": "Big"},
    ]}));
    assert_eq!((v.valid, v.invalid), (1, 3));
    let json: Value = serde_json::from_slice(&v.to_json()).unwrap();
    assert_eq!(
        json["results"][0],
        json!({"index": 0, "id": 1, "valid": true, "errors": []})
    );
    assert_eq!(
        json["results"][1]["errors"][0],
        json!({"path": "/name", "code": "min-length", "message": "must not be empty"})
    );
    assert_eq!(json["results"][2]["id"], Value::Null);
    assert_eq!(json["results"][2]["errors"][0]["path"], "");
    assert_eq!(json["results"][2]["errors"][0]["code"], "type");
    // Not a valid u32 -> null.
    assert_eq!(json["results"][3]["id"], Value::Null);
    let text = String::from_utf8(v.to_json()).unwrap();
    assert!(
        text.starts_with(
            r#"{"valid":1,"invalid":3,"results":[{"index":0,"id":1,"valid":true,"errors":[]}"#
        ),
        "{text}"
    );
}

#[test]
fn duplicates_are_flagged_after_the_first_occurrence() {
    let v = run(&json!({"items": [
        {"id": 1, "name": "A"},
        {"id": 2, "name": "B"},
        {"id": 1, "name": "C"},
        {"id": 3, "name": "A"},
        {"id": 1, "name": "A"},
        {"id": 4, "name": "a"},
        {"name": "B"},
    ]}));
    let errs = |i: usize| -> Vec<(String, String, String)> {
        v.results[i]
            .errors
            .iter()
            .map(|e| (e.path.clone(), e.code.clone(), e.message.clone()))
            .collect()
    };
    assert!(errs(0).is_empty() && errs(1).is_empty() && errs(5).is_empty());
    assert_eq!(
        errs(2),
        vec![(
            "/id".into(),
            "duplicate-id".into(),
            "id 1 is already used by the item at index 0".into()
        )]
    );
    assert_eq!(
        errs(3),
        vec![(
            "/name".into(),
            "duplicate-name".into(),
            "name \"A\" is already used by the item at index 0".into()
        )]
    );
    let e4: Vec<_> = errs(4).into_iter().map(|(p, c, _)| (p, c)).collect();
    assert_eq!(
        e4,
        vec![
            ("/id".to_owned(), "duplicate-id".to_owned()),
            ("/name".to_owned(), "duplicate-name".to_owned())
        ]
    );
    assert!(errs(6)[0].2.contains("index 1"));
    assert_eq!((v.valid, v.invalid), (3, 4));
}

#[test]
fn batch_items_get_signature_checks() {
    let mut signed = json!({"id": 1, "name": "S"});
    sign_item(
        &mut signed,
        &ed25519_dalek::SigningKey::from_bytes(&[5; 32]),
    )
    .unwrap();
    let mut tampered = signed.clone();
    tampered["name"] = json!("T");
    tampered["id"] = json!(2);
    let v = run(&json!({"items": [signed, tampered]}));
    assert!(v.results[0].valid);
    assert_eq!(v.results[1].errors[0].code, "signature-mismatch");
    assert_eq!(v.results[1].errors[0].path, "/signature/value");
}

#[test]
fn max_items_accepted_one_more_rejected() {
    let ok = validate_batch(&batch_of(MAX_BATCH_ITEMS), &TrustedKeys::any()).unwrap();
    assert_eq!((ok.valid, ok.invalid), (MAX_BATCH_ITEMS, 0));
    assert_eq!(ok.results.len(), MAX_BATCH_ITEMS);
    assert!(
        ok.results
            .iter()
            .enumerate()
            .all(|(i, r)| r.index == i && r.id == Some(i as u32))
    );

    let err = validate_batch(&batch_of(MAX_BATCH_ITEMS + 1), &TrustedKeys::any()).unwrap_err();
    assert_eq!(
        err,
        BatchError::TooManyItems {
            count: MAX_BATCH_ITEMS + 1
        }
    );
    assert_eq!(err.status(), 413);
    let p = err.to_problem();
    assert_eq!(p.status(), 413);
    let v: Value = serde_json::from_slice(&p.to_json()).unwrap();
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("10001") && detail.contains("10000"),
        "{detail}"
    );
    assert_eq!(v["max_items"], 10_000);
}

#[test]
fn oversized_body_is_rejected_before_parsing() {
    let mut body = b"{\"items\": []}".to_vec();
    body.resize(MAX_BATCH_BYTES, b' ');
    assert!(validate_batch(&body, &TrustedKeys::any()).is_ok());
    body.push(b' ');
    let err = validate_batch(&body, &TrustedKeys::any()).unwrap_err();
    assert_eq!(
        err,
        BatchError::TooLarge {
            bytes: MAX_BATCH_BYTES + 1
        }
    );
    assert_eq!(err.status(), 413);
    let v: Value = serde_json::from_slice(&err.to_problem().to_json()).unwrap();
    assert_eq!(v["status"], 413);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains(&MAX_BATCH_BYTES.to_string())
    );
}

#[test]
fn validation_is_deterministic() {
    let mut items = vec![];
    for i in 0..300u32 {
        items.push(json!({
            "id": i % 97, "name": format!("n{}", i % 50), "extra": i, "zzz": 1, "aaa": 2,
            "tags": ["B", "b", "b"], "price": {"amount_cents": -1, "currency": "eur", "x": 1}
        }));
    }
    let body = serde_json::to_vec(&json!({ "items": items })).unwrap();
    let a = validate_batch(&body, &TrustedKeys::any())
        .unwrap()
        .to_json();
    let b = validate_batch(&body, &TrustedKeys::any())
        .unwrap()
        .to_json();
    assert_eq!(a, b);
    // Within each item the issues are sorted.
    let v = validate_batch(&body, &TrustedKeys::any()).unwrap();
    for r in &v.results {
        let keys: Vec<_> = r
            .errors
            .iter()
            .map(|e| (&e.path, &e.code, &e.message))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}

#[test]
fn malformed_bodies() {
    let cases: [(&[u8], &str); 7] = [
        (b"{\"items\": [}", "line 1 column 12"),
        (b"", "empty"),
        (b"[]", "must be a JSON object"),
        (b"{}", "lacks the member \"items\""),
        (b"{\"items\": {}}", "must be an array"),
        (b"{\"items\": [], \"itmes\": []}", "\"itmes\""),
        (
            b"{\"items\": [\n{\"name\": \"x\"},\n{\"name\": x}]}",
            "line 3",
        ),
    ];
    for (body, needle) in cases {
        match validate_batch(body, &TrustedKeys::any()) {
            Err(e @ BatchError::Malformed(_)) => {
                let BatchError::Malformed(ref m) = e else {
                    unreachable!()
                };
                assert!(m.contains(needle), "{m:?} lacks {needle:?}");
                assert_eq!(e.status(), 400);
                let v: Value = serde_json::from_slice(&e.to_problem().to_json()).unwrap();
                assert_eq!(v["status"], 400);
                assert_eq!(v["detail"], m.as_str());
            }
            other => panic!("{body:?}: {other:?}"),
        }
    }
}

#[test]
fn empty_batch_is_fine() {
    let v = validate_batch(br#"{"items": []}"#, &TrustedKeys::any()).unwrap();
    assert_eq!(v.to_json(), br#"{"valid":0,"invalid":0,"results":[]}"#);
}
