//! Input built to hurt: duplicate member names, hostile nesting, broken
//! Unicode, and batches of worst-case items. Every one must end in a clean
//! error or a bounded verdict; the assertions are on counts and sizes, never
//! on wall-clock time.

use items_core::{
    BatchError, MAX_BATCH_BYTES, MAX_BATCH_ISSUES, MAX_SCHEMA_ISSUES, Rejection, TrustedKeys,
    check_new_item, validate_batch,
};

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

/// Items as bad as they get while staying small per byte: thousands of
/// identical tags, thousands of unexpected members, both at once.
fn worst_case_batch() -> (Vec<u8>, usize) {
    let tags = format!("[{}\"a\"]", "\"a\",".repeat(4000));
    let members: String = (0..2000).map(|i| format!("\"m{i}\":0,")).collect();
    let kinds = [
        format!("{{\"name\":\"x\",\"tags\":{tags}}}"),
        format!("{{{members}\"tags\":{tags}}}"),
        format!("{{{members}\"name\":\"\\u0001\"}}"),
    ];
    let mut body = b"{\"items\":[".to_vec();
    let mut count = 0;
    loop {
        let next = &kinds[count % kinds.len()];
        if body.len() + next.len() + 3 > MAX_BATCH_BYTES {
            break;
        }
        if count > 0 {
            body.push(b',');
        }
        body.extend_from_slice(next.as_bytes());
        count += 1;
    }
    body.extend_from_slice(b"]}");
    (body, count)
}

#[test]
fn worst_case_batch_has_a_bounded_verdict() {
    let (body, count) = worst_case_batch();
    assert!(body.len() > MAX_BATCH_BYTES - (64 << 10), "{}", body.len());
    let verdict = validate_batch(&body, &TrustedKeys::any()).unwrap();
    assert_eq!((verdict.valid, verdict.invalid), (0, count));

    let total: usize = verdict.results.iter().map(|r| r.errors.len()).sum();
    assert!(total <= MAX_BATCH_ISSUES + count, "{total}");
    for r in &verdict.results {
        // Schema cap plus its summary, plus the few code-level checks.
        assert!(
            r.errors.len() <= MAX_SCHEMA_ISSUES + 8,
            "{}: {}",
            r.index,
            r.errors.len()
        );
    }
    // The unexpected-member items hit the per-item cap.
    assert!(
        verdict.results[1]
            .errors
            .iter()
            .any(|e| e.code == "too-many-issues")
    );
    // Past the batch cap, invalid items carry one summary issue each.
    let summarized = verdict
        .results
        .iter()
        .filter(|r| r.errors.len() == 1 && r.errors[0].code == "too-many-issues")
        .count();
    assert!(summarized > 0);
    let summary = verdict
        .results
        .iter()
        .rev()
        .find(|r| r.errors.len() == 1)
        .map(|r| r.errors[0].message.clone())
        .unwrap_or_default();
    assert!(
        summary.ends_with(&format!(
            "issues not listed: a batch verdict lists at most {MAX_BATCH_ISSUES} issues in full"
        )),
        "{summary}"
    );
    let listed: usize = verdict
        .results
        .iter()
        .filter(|r| !(r.errors.len() == 1 && r.errors[0].code == "too-many-issues"))
        .map(|r| r.errors.len())
        .sum();
    assert!(listed <= MAX_BATCH_ISSUES, "{listed}");
    let json = verdict.to_json();
    assert!(json.len() < 4 << 20, "verdict is {} bytes", json.len());
}
