//! Every schema rule and code rule at its boundary, through the public API.

use items_core::{Issue, Item, Rejection, TrustedKeys, check_item, check_new_item};
use serde_json::{Value, json};

fn issues(v: &Value) -> Vec<Issue> {
    check_item(v, &TrustedKeys::any())
}

/// The (path, code) pairs of the issues, for compact assertions.
fn codes(v: &Value) -> Vec<(String, String)> {
    issues(v).into_iter().map(|i| (i.path, i.code)).collect()
}

fn one(path: &str, code: &str) -> Vec<(String, String)> {
    vec![(path.to_owned(), code.to_owned())]
}

fn ok(v: &Value) {
    assert_eq!(issues(v), vec![], "expected valid: {v}");
}

#[test]
fn seed_example_is_accepted() {
    ok(&json!({"id": 1, "name": "Item1"}));
    let item = check_new_item(br#"{"id": 1, "name": "Item1"}"#, &TrustedKeys::any()).unwrap();
    assert_eq!(
        item,
        Item {
            id: Some(1),
            name: "Item1".into(),
            description: None,
            tags: vec![],
            price: None,
            created_at: None,
            signature: None
        }
    );
    assert_eq!(
        serde_json::to_string(&item).unwrap(),
        r#"{"id":1,"name":"Item1"}"#
    );
}

#[test]
fn full_item_is_accepted_and_serializes_in_field_order() {
    let v = json!({
        "signature": null, "tags": ["a-1", "b"], "name": "Ünïcödé ✓", "id": 7,
        "price": {"currency": "EUR", "amount_cents": 1999},
        "description": "Line one\nline two\ttab", "created_at": "2024-05-01T12:30:00.5+02:00"
    });
    // signature: null is a type error; drop it for the positive case.
    let mut v = v;
    v.as_object_mut().unwrap().remove("signature");
    ok(&v);
    let item: Item = serde_json::from_value(v).unwrap();
    assert_eq!(
        serde_json::to_string(&item).unwrap(),
        r#"{"id":7,"name":"Ünïcödé ✓","description":"Line one\nline two\ttab","tags":["a-1","b"],"price":{"amount_cents":1999,"currency":"EUR"},"created_at":"2024-05-01T12:30:00.5+02:00"}"#
    );
}

#[test]
fn id_is_optional_and_bounded_to_u32() {
    ok(&json!({"name": "x"}));
    ok(&json!({"id": 0, "name": "x"}));
    ok(&json!({"id": 4294967295u64, "name": "x"}));
    assert_eq!(
        codes(&json!({"id": 4294967296u64, "name": "x"})),
        one("/id", "maximum")
    );
    assert_eq!(
        codes(&json!({"id": -1, "name": "x"})),
        one("/id", "minimum")
    );
    assert_eq!(codes(&json!({"id": 1.5, "name": "x"})), one("/id", "type"));
    assert_eq!(codes(&json!({"id": "1", "name": "x"})), one("/id", "type"));
    assert_eq!(codes(&json!({"id": 1.0, "name": "x"})), one("/id", "type"));
}

#[test]
fn name_length_is_1_to_200_code_points() {
    ok(&json!({"name": "a".repeat(200)}));
    ok(&json!({"name": "é".repeat(200)})); // 400 bytes, 200 code points
    assert_eq!(
        codes(&json!({"name": "a".repeat(201)})),
        one("/name", "max-length")
    );
    assert_eq!(
        codes(&json!({"name": "é".repeat(201)})),
        one("/name", "max-length")
    );
    assert_eq!(codes(&json!({"name": ""})), one("/name", "min-length"));
    assert_eq!(codes(&json!({})), one("/name", "required"));
    assert_eq!(codes(&json!({"name": 5})), one("/name", "type"));
    let msg = &issues(&json!({"name": "a".repeat(201)}))[0].message;
    assert!(msg.contains("200") && msg.contains("201"), "{msg}");
}

#[test]
fn name_rejects_control_characters() {
    for c in [
        '\u{0}', '\u{7}', '\n', '\t', '\u{1f}', '\u{7f}', '\u{85}', '\u{9f}',
    ] {
        let v = json!({"name": format!("a{c}b")});
        assert_eq!(codes(&v), one("/name", "control-character"), "{:?}", c);
    }
    let msg = &issues(&json!({"name": "ab\u{7}"}))[0].message;
    assert!(msg.contains("U+0007"), "{msg}");
    // Neighbours of the control ranges are fine.
    ok(&json!({"name": " ~\u{a0}\u{200b}"}));
}

#[test]
fn name_must_be_nfc() {
    ok(&json!({"name": "caf\u{e9}"}));
    assert_eq!(
        codes(&json!({"name": "cafe\u{301}"})),
        one("/name", "not-nfc")
    );
    // Hangul jamo sequence vs precomposed syllable.
    ok(&json!({"name": "\u{d55c}"}));
    assert_eq!(
        codes(&json!({"name": "\u{1112}\u{1161}\u{11ab}"})),
        one("/name", "not-nfc")
    );
}

#[test]
fn description_is_at_most_4000_code_points() {
    ok(&json!({"name": "x", "description": "d".repeat(4000)}));
    ok(&json!({"name": "x", "description": ""}));
    assert_eq!(
        codes(&json!({"name": "x", "description": "d".repeat(4001)})),
        one("/description", "max-length")
    );
    // The message must not echo the whole value.
    let msg = &issues(&json!({"name": "x", "description": "d".repeat(4001)}))[0].message;
    assert!(msg.len() < 200, "{msg}");
}

#[test]
fn tags_rules() {
    let tags = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
    ok(&json!({"name": "x", "tags": []}));
    ok(&json!({"name": "x", "tags": tags(16)}));
    assert_eq!(
        codes(&json!({"name": "x", "tags": tags(17)})),
        one("/tags", "max-items")
    );
    ok(&json!({"name": "x", "tags": ["a".repeat(32)]}));
    assert_eq!(
        codes(&json!({"name": "x", "tags": ["a".repeat(33)]})),
        one("/tags/0", "max-length")
    );
    assert_eq!(
        codes(&json!({"name": "x", "tags": ["ok", ""]})),
        one("/tags/1", "min-length")
    );
    ok(&json!({"name": "x", "tags": ["a-b-0-9", "-", "z"]}));
    for bad in ["Abc", "a b", "a_b", "ä", "a.b", "a/b", "TAG"] {
        assert_eq!(
            codes(&json!({"name": "x", "tags": [bad]})),
            one("/tags/0", "pattern"),
            "{bad}"
        );
    }
    assert_eq!(
        codes(&json!({"name": "x", "tags": ["a", "b", "a"]})),
        one("/tags", "unique-items")
    );
    let msg = &issues(&json!({"name": "x", "tags": ["a", "b", "a"]}))[0].message;
    assert!(
        msg.contains("\"a\"") && msg.contains('0') && msg.contains('2'),
        "{msg}"
    );
    assert_eq!(
        codes(&json!({"name": "x", "tags": [1]})),
        one("/tags/0", "type")
    );
}

#[test]
fn price_rules() {
    ok(&json!({"name": "x", "price": {"amount_cents": 0, "currency": "EUR"}}));
    // 2^53 - 1: larger integers are not exact in JSON doubles nor in RFC 8785.
    ok(
        &json!({"name": "x", "price": {"amount_cents": 9_007_199_254_740_991u64, "currency": "JPY"}}),
    );
    assert_eq!(
        codes(
            &json!({"name": "x", "price": {"amount_cents": 9_007_199_254_740_992u64, "currency": "JPY"}})
        ),
        one("/price/amount_cents", "maximum")
    );
    assert_eq!(
        codes(&json!({"name": "x", "price": {"amount_cents": u64::MAX, "currency": "JPY"}})),
        one("/price/amount_cents", "maximum")
    );
    for cur in ["USD", "CHF", "XAU", "ZWG", "XCG"] {
        ok(&json!({"name": "x", "price": {"amount_cents": 1, "currency": cur}}));
    }
    for cur in ["XXY", "eur", "EURO", "", "DEM", "HRK"] {
        assert_eq!(
            codes(&json!({"name": "x", "price": {"amount_cents": 1, "currency": cur}})),
            one("/price/currency", "enum"),
            "{cur}"
        );
    }
    assert_eq!(
        codes(&json!({"name": "x", "price": {"amount_cents": -1, "currency": "EUR"}})),
        one("/price/amount_cents", "minimum")
    );
    assert_eq!(
        codes(&json!({"name": "x", "price": {"amount_cents": 1.5, "currency": "EUR"}})),
        one("/price/amount_cents", "type")
    );
    assert_eq!(
        codes(&json!({"name": "x", "price": {"currency": "EUR"}})),
        one("/price/amount_cents", "required")
    );
    assert_eq!(
        codes(&json!({"name": "x", "price": {"amount_cents": 1, "currency": "EUR", "vat": 2}})),
        one("/price/vat", "additional-property")
    );
    let over = check_new_item(
        br#"{"name":"x","price":{"amount_cents":18446744073709551616,"currency":"EUR"}}"#,
        &TrustedKeys::any(),
    );
    assert!(
        matches!(over, Err(Rejection::Invalid(ref i)) if i[0].path == "/price/amount_cents"),
        "{over:?}"
    );
}

#[test]
fn created_at_must_be_rfc3339() {
    for good in [
        "2024-05-01T12:30:00Z",
        "2024-05-01T12:30:00.123456+05:30",
        "1985-04-12t23:20:50.52z",
    ] {
        ok(&json!({"name": "x", "created_at": good}));
    }
    for bad in [
        "yesterday",
        "2024-05-01",
        "2024-05-01T12:30:00",
        "2024-13-01T00:00:00Z",
        "2024-05-01 12:30:00Z",
    ] {
        assert_eq!(
            codes(&json!({"name": "x", "created_at": bad})),
            one("/created_at", "format"),
            "{bad}"
        );
    }
}

#[test]
fn additional_properties_are_rejected_one_issue_each() {
    assert_eq!(
        codes(&json!({"name": "x", "colour": "red", "a/b": 1})),
        vec![
            ("/a~1b".to_owned(), "additional-property".to_owned()),
            ("/colour".to_owned(), "additional-property".to_owned())
        ]
    );
    let msg = &issues(&json!({"name": "x", "colour": "red"}))[0].message;
    assert!(
        msg.contains("colour") && msg.contains("description"),
        "{msg}"
    );
}

#[test]
fn non_objects_are_type_errors() {
    for v in [json!(null), json!([]), json!("item"), json!(1)] {
        assert_eq!(codes(&v), one("", "type"), "{v}");
    }
}

#[test]
fn issues_are_sorted_and_all_reported() {
    let v = json!({"id": -1, "name": "", "tags": ["B"], "extra": true, "price": {"amount_cents": -1, "currency": "x"}});
    let got = issues(&v);
    let mut sorted = got.clone();
    sorted.sort_by(|a, b| (&a.path, &a.code, &a.message).cmp(&(&b.path, &b.code, &b.message)));
    assert_eq!(got, sorted);
    assert_eq!(got.len(), 6, "{got:#?}");
    for i in &got {
        assert!(!i.message.is_empty());
    }
}

#[test]
fn create_rejects_client_created_at() {
    let r = check_new_item(
        br#"{"name": "x", "created_at": "2024-05-01T12:30:00Z"}"#,
        &TrustedKeys::any(),
    );
    match r {
        Err(Rejection::Invalid(i)) => {
            assert_eq!(i.len(), 1);
            assert_eq!(
                (i[0].path.as_str(), i[0].code.as_str()),
                ("/created_at", "server-assigned")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_bodies_say_where() {
    let t = TrustedKeys::any();
    let cases: [(&[u8], &[&str]); 5] = [
        (b"{\"name\": \"x\",\n}", &["line 2", "column 1"]),
        (b"", &["empty"]),
        (b"[1,2]", &["object", "array"]),
        (b"{\"name\": \"x\"", &["end of", "line 1"]),
        (b"\xff", &["line 1"]),
    ];
    for (body, needles) in cases {
        match check_new_item(body, &t) {
            Err(Rejection::Malformed(m)) => {
                for n in needles {
                    assert!(m.contains(n), "{m:?} lacks {n:?}");
                }
            }
            other => panic!("{body:?}: {other:?}"),
        }
    }
}

#[test]
fn rejection_problem_shape() {
    let r = check_new_item(br#"{"name": "", "id": -1}"#, &TrustedKeys::any()).unwrap_err();
    let p = r.to_problem();
    assert_eq!(p.status(), 400);
    let v: Value = serde_json::from_slice(&p.to_json()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    for k in ["type", "title", "status", "detail", "errors"] {
        assert!(keys.contains(&k), "{k}");
    }
    assert_eq!(v["status"], 400);
    assert_ne!(v["type"], "about:blank");
    assert!(v["detail"].as_str().unwrap().contains("2 problems"));
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["errors"][0],
        json!({"path": "/id", "code": "minimum", "message": "must be at least 0, got -1"})
    );
    // Raw bytes: members in the documented order.
    let text = String::from_utf8(p.to_json()).unwrap();
    assert!(text.starts_with(r#"{"type":"#), "{text}");
    let pos = |k: &str| text.find(&format!("\"{k}\":")).unwrap();
    assert!(
        pos("type") < pos("title") && pos("title") < pos("status") && pos("status") < pos("detail")
    );
    assert!(pos("detail") < pos("errors"));
    assert!(
        text.contains(r#"{"path":"/id","code":"minimum","#),
        "{text}"
    );

    let m = check_new_item(b"nope", &TrustedKeys::any())
        .unwrap_err()
        .to_problem();
    assert_eq!(m.status(), 400);
    let v: Value = serde_json::from_slice(&m.to_json()).unwrap();
    assert!(v["detail"].as_str().unwrap().contains("line 1"));
}
