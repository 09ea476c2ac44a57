//! Input built to hurt: duplicate member names, hostile nesting, broken
//! Unicode. Every one must end in a clean error.

use items_core::{BatchError, Rejection, TrustedKeys, check_new_item, validate_batch};

fn create_malformed(body: &[u8]) -> String {
    match check_new_item(body, &TrustedKeys::any()) {
        Err(Rejection::Malformed(m)) => m,
        other => panic!(
            "{:?}: {other:?}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        ),
    }
}

fn batch_malformed(body: &[u8]) -> String {
    match validate_batch(body, &TrustedKeys::any()) {
        Err(BatchError::Malformed(m)) => m,
        other => panic!(
            "{:?}: {other:?}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        ),
    }
}

#[test]
fn duplicate_member_names_are_refused_at_any_depth() {
    let m = create_malformed(br#"{"name": "a", "id": 1, "name": "b"}"#);
    assert!(m.contains(r#"duplicate member name "name""#), "{m}");
    assert!(m.contains("line 1 column"), "{m}");
    let m = create_malformed(b"{\"name\": \"a\",\n \"price\": {\"currency\": \"EUR\", \"amount_cents\": 1, \"currency\": \"USD\"}}");
    assert!(m.contains(r#""currency""#) && m.contains("line 2"), "{m}");

    let m =
        batch_malformed(br#"{"items": [{"name": "a"}, {"name": "b", "tags": [], "tags": ["x"]}]}"#);
    assert!(m.contains(r#"duplicate member name "tags""#), "{m}");
    let m = batch_malformed(br#"{"items": [], "items": []}"#);
    assert!(m.contains(r#""items""#), "{m}");
    // Same name in sibling objects is fine.
    let v = validate_batch(
        br#"{"items": [{"name": "a"}, {"name": "b"}]}"#,
        &TrustedKeys::any(),
    )
    .unwrap();
    assert_eq!(v.valid, 2);
}

#[test]
fn deep_nesting_is_a_clean_error() {
    for open in ["[", "{\"a\":"] {
        let deep = open.repeat(100_000);
        let m = create_malformed(deep.as_bytes());
        assert!(m.contains("recursion limit"), "{m}");
        let body = format!("{{\"items\": [{deep}");
        let m = batch_malformed(body.as_bytes());
        assert!(m.contains("recursion limit"), "{m}");
    }
    // Nesting inside an item, within the limit, is just a wrong type.
    let ok_depth = format!(
        "{{\"name\": \"x\", \"tags\": {}{}}}",
        "[".repeat(100),
        "]".repeat(100)
    );
    assert!(matches!(
        check_new_item(ok_depth.as_bytes(), &TrustedKeys::any()),
        Err(Rejection::Invalid(_))
    ));
}

#[test]
fn broken_unicode_is_a_clean_error() {
    for body in [
        &br#"{"name": "\ud800"}"#[..],
        br#"{"name": "\udc00x"}"#,
        br#"{"name": "\ud800\u0041"}"#,
        b"{\"name\": \"\xff\"}",
        b"{\"name\": \"\xed\xa0\x80\"}",
        b"{\"name\": \"\xc3\"}",
    ] {
        let m = create_malformed(body);
        assert!(m.contains("line 1"), "{m}");
        let mut batch = b"{\"items\": [".to_vec();
        batch.extend_from_slice(body);
        batch.extend_from_slice(b"]}");
        batch_malformed(&batch);
    }
    // A proper surrogate pair is fine.
    assert!(check_new_item(br#"{"name": "\ud83d\ude00"}"#, &TrustedKeys::any()).is_ok());
}
