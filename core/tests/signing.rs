//! RFC 8785 canonicalization, Ed25519 signing and verification, allow-list.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use items_core::{SigningError, TrustedKeys, check_item, sign_item, signing_payload};
use proptest::prelude::*;
use serde_json::{Value, json};

fn jcs(text: &str) -> String {
    let v: Value = serde_json::from_str(text).unwrap();
    String::from_utf8(signing_payload(&v).unwrap()).unwrap()
}

fn codes(v: &Value, trusted: &TrustedKeys) -> Vec<(String, String)> {
    check_item(v, trusted)
        .into_iter()
        .map(|i| (i.path, i.code))
        .collect()
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

// RFC 8785 §3.2.2 / §3.2.3: the complete example.
#[test]
fn jcs_rfc8785_example() {
    let input = r#"{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"#;
    assert_eq!(
        jcs(input),
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
    );
}

// RFC 8785 §3.2.3: members sorted by UTF-16 code units, not UTF-8 bytes.
#[test]
fn jcs_sorts_keys_by_utf16() {
    let input = r#"{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }"#;
    let out = jcs(input);
    let v: Value = serde_json::from_str(input).unwrap();
    let order: Vec<&str> = [
        "\r",
        "1",
        "\u{80}",
        "\u{f6}",
        "\u{20ac}",
        "\u{1f600}",
        "\u{fb33}",
    ]
    .into_iter()
    .collect();
    let mut last = 0;
    for k in order {
        let needle = format!("\"{}\"", v[k].as_str().unwrap());
        let pos = out.find(&needle).unwrap();
        assert!(pos >= last, "{k:?} out of order in {out}");
        last = pos;
    }
    // UTF-8 byte order would put U+FB33 before U+1F600.
    assert!(out.find("Emoji").unwrap() < out.find("Hebrew").unwrap());
}

// RFC 8785 Appendix B: number serialization (ECMAScript Number.toString).
#[test]
fn jcs_number_formatting() {
    let cases: [(Value, &str); 10] = [
        (json!(0), "0"),
        (json!(-0.0), "0"),
        (json!(1e21), "1e+21"),
        (json!(1e20), "100000000000000000000"),
        (json!(5e-324), "5e-324"),
        (json!(9007199254740992u64), "9007199254740992"),
        (json!(295147905179352830000.0), "295147905179352830000"),
        (json!(1.7976931348623157e308), "1.7976931348623157e+308"),
        (json!(0.000001), "0.000001"),
        (json!(1e-7), "1e-7"),
    ];
    for (n, want) in cases {
        let got = String::from_utf8(signing_payload(&json!({ "n": n })).unwrap()).unwrap();
        assert_eq!(got, format!(r#"{{"n":{want}}}"#), "{n}");
    }
}

#[test]
fn payload_excludes_signature_and_created_at_and_ignores_layout() {
    let a = jcs(
        r#"{"name": "x", "id": 1, "created_at": "2024-01-01T00:00:00Z", "signature": {"a": 1}}"#,
    );
    assert_eq!(a, r#"{"id":1,"name":"x"}"#);
    let b = jcs("{\n  \"id\" : 1.0e0 ,\"name\":\"\\u0078\"}");
    assert_eq!(b, r#"{"id":1,"name":"x"}"#);
    assert_eq!(signing_payload(&json!([1])), Err(SigningError::NotAnObject));
    assert_eq!(
        sign_item(&mut json!("x"), &key(1)),
        Err(SigningError::NotAnObject)
    );
}

#[test]
fn signed_item_verifies_and_survives_reserialization_and_created_at() {
    let mut item = json!({"id": 3, "name": "Signed", "tags": ["a", "b"], "price": {"amount_cents": 5, "currency": "EUR"}});
    sign_item(&mut item, &key(9)).unwrap();
    assert_eq!(codes(&item, &TrustedKeys::any()), vec![]);
    // Pretty-printing and re-parsing changes nothing that is signed.
    let reparsed: Value =
        serde_json::from_str(&serde_json::to_string_pretty(&item).unwrap()).unwrap();
    assert_eq!(codes(&reparsed, &TrustedKeys::any()), vec![]);
    // The server adds created_at after signing.
    item["created_at"] = json!("2024-05-01T12:30:00Z");
    assert_eq!(codes(&item, &TrustedKeys::any()), vec![]);
}

#[test]
fn encoding_problems_have_their_own_codes() {
    let mut item = json!({"name": "x"});
    sign_item(&mut item, &key(2)).unwrap();
    let good = item.clone();

    item["signature"]["public_key"] = json!("!!!");
    assert_eq!(
        codes(&item, &TrustedKeys::any()),
        vec![("/signature/public_key".into(), "bad-public-key".into())]
    );
    item["signature"]["public_key"] = json!(STANDARD.encode([1u8; 31]));
    assert_eq!(
        codes(&item, &TrustedKeys::any()),
        vec![("/signature/public_key".into(), "bad-public-key".into())]
    );

    let mut item = good.clone();
    item["signature"]["value"] = json!(STANDARD.encode([1u8; 63]));
    assert_eq!(
        codes(&item, &TrustedKeys::any()),
        vec![("/signature/value".into(), "bad-signature-encoding".into())]
    );
    item["signature"]["value"] = json!("not base64");
    assert_eq!(
        codes(&item, &TrustedKeys::any()),
        vec![("/signature/value".into(), "bad-signature-encoding".into())]
    );

    let mut item = good.clone();
    item["signature"] = json!({"public_key": 1});
    let got = codes(&item, &TrustedKeys::any());
    assert!(
        got.contains(&("/signature/public_key".into(), "type".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("/signature/value".into(), "required".into())),
        "{got:?}"
    );

    let mut item = good;
    item["signature"]["extra"] = json!(1);
    assert_eq!(
        codes(&item, &TrustedKeys::any()),
        vec![("/signature/extra".into(), "additional-property".into())]
    );
}

#[test]
fn allow_list_is_enforced() {
    let mut item = json!({"name": "x"});
    sign_item(&mut item, &key(1)).unwrap();
    let only_2 = TrustedKeys::from_keys([key(2).verifying_key()]);
    assert_eq!(
        codes(&item, &only_2),
        vec![("/signature/public_key".into(), "untrusted-key".into())]
    );
    let csv = format!(
        "{}, {}",
        STANDARD.encode(key(2).verifying_key().to_bytes()),
        STANDARD.encode(key(1).verifying_key().to_bytes())
    );
    assert_eq!(codes(&item, &TrustedKeys::parse(&csv).unwrap()), vec![]);
    // Unsigned items are not affected by the allow-list.
    assert_eq!(codes(&json!({"name": "x"}), &only_2), vec![]);
}

fn arb_item() -> impl Strategy<Value = Value> {
    let currencies = prop::sample::select(vec!["EUR", "USD", "JPY", "GBP", "CHF", "XAU"]);
    (
        prop::option::of(any::<u32>()),
        "[a-zA-Z0-9 àéîõüßØ€✓한]{1,40}",
        prop::option::of("\\PC{0,80}"),
        prop::collection::btree_set("[a-z0-9-]{1,32}", 0..=16),
        prop::option::of((0u64..=9_007_199_254_740_991, currencies)),
    )
        .prop_map(|(id, name, description, tags, price)| {
            let mut v = json!({ "name": name });
            if let Some(id) = id {
                v["id"] = json!(id);
            }
            if let Some(d) = description {
                v["description"] = json!(d);
            }
            if !tags.is_empty() {
                v["tags"] = json!(tags);
            }
            if let Some((amount, currency)) = price {
                v["price"] = json!({"amount_cents": amount, "currency": currency});
            }
            v
        })
}

/// Ways to change a signed item; each changes the signed payload.
#[derive(Debug, Clone)]
enum Tamper {
    AppendToName(char),
    SetId(u32),
    AddTag,
    SetDescription(String),
    BumpPrice,
    DropMember,
    AddUnknownMember,
    OtherKey(u8),
    FlipSignatureBit(usize),
}

fn arb_tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        prop::char::range('a', 'z').prop_map(Tamper::AppendToName),
        any::<u32>().prop_map(Tamper::SetId),
        Just(Tamper::AddTag),
        "\\PC{0,20}".prop_map(Tamper::SetDescription),
        Just(Tamper::BumpPrice),
        Just(Tamper::DropMember),
        Just(Tamper::AddUnknownMember),
        any::<u8>().prop_map(Tamper::OtherKey),
        (0usize..512).prop_map(Tamper::FlipSignatureBit),
    ]
}

/// Applies `t`; returns false when it would not change anything (e.g. setting
/// the id it already has), so the case is skipped.
fn apply(item: &mut Value, t: &Tamper, signer_seed: [u8; 32]) -> bool {
    let obj = item.as_object_mut().unwrap();
    match t {
        Tamper::AppendToName(c) => {
            let name = format!("{}{c}", obj["name"].as_str().unwrap());
            obj.insert("name".into(), json!(name));
        }
        Tamper::SetId(id) => {
            if obj.get("id") == Some(&json!(id)) {
                return false;
            }
            obj.insert("id".into(), json!(id));
        }
        Tamper::AddTag => {
            let tags = obj.entry("tags").or_insert(json!([]));
            tags.as_array_mut().unwrap().push(json!("zz-tampered-zz"));
        }
        Tamper::SetDescription(d) => {
            if obj.get("description") == Some(&json!(d)) {
                return false;
            }
            obj.insert("description".into(), json!(d));
        }
        Tamper::BumpPrice => match obj.get_mut("price") {
            Some(p) => {
                let a = p["amount_cents"].as_u64().unwrap();
                p["amount_cents"] = json!(if a == 0 { 1 } else { a - 1 });
            }
            None => {
                obj.insert(
                    "price".into(),
                    json!({"amount_cents": 1, "currency": "EUR"}),
                );
            }
        },
        Tamper::DropMember => {
            let victim = ["description", "tags", "price", "id"]
                .into_iter()
                .find(|k| obj.contains_key(*k));
            match victim {
                Some(k) => {
                    obj.remove(k);
                }
                None => return false,
            }
        }
        Tamper::AddUnknownMember => {
            obj.insert("note".into(), json!("x"));
        }
        Tamper::OtherKey(seed) => {
            let other = SigningKey::from_bytes(&[*seed; 32]);
            if other.to_bytes() == signer_seed {
                return false;
            }
            obj["signature"]["public_key"] =
                json!(STANDARD.encode(other.verifying_key().to_bytes()));
        }
        Tamper::FlipSignatureBit(bit) => {
            let mut sig = STANDARD
                .decode(obj["signature"]["value"].as_str().unwrap())
                .unwrap();
            sig[bit / 8] ^= 1 << (bit % 8);
            obj["signature"]["value"] = json!(STANDARD.encode(sig));
        }
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn generated_items_are_valid_and_round_trip_signatures(seed in any::<[u8; 32]>(), item in arb_item()) {
        prop_assert_eq!(codes(&item, &TrustedKeys::any()), vec![]);
        let key = SigningKey::from_bytes(&seed);
        let mut signed = item.clone();
        sign_item(&mut signed, &key).unwrap();
        prop_assert_eq!(codes(&signed, &TrustedKeys::any()), vec![]);
        prop_assert_eq!(codes(&signed, &TrustedKeys::from_keys([key.verifying_key()])), vec![]);
        // The payload is exactly the unsigned item, canonicalized.
        prop_assert_eq!(signing_payload(&signed).unwrap(), signing_payload(&item).unwrap());
        // And the typed item carries the signature unchanged.
        let typed: items_core::Item = serde_json::from_value(signed.clone()).unwrap();
        let back = serde_json::to_value(&typed).unwrap();
        prop_assert_eq!(codes(&back, &TrustedKeys::any()), vec![]);
    }

    #[test]
    fn tampered_items_fail_verification(seed in any::<[u8; 32]>(), item in arb_item(), tamper in arb_tamper()) {
        let key = SigningKey::from_bytes(&seed);
        let mut signed = item;
        sign_item(&mut signed, &key).unwrap();
        prop_assume!(apply(&mut signed, &tamper, seed));
        let got = codes(&signed, &TrustedKeys::any());
        prop_assert!(
            got.contains(&("/signature/value".to_owned(), "signature-mismatch".to_owned())),
            "{:?} after {:?}", got, tamper
        );
    }

    #[test]
    fn untrusted_keys_are_rejected(seed in any::<[u8; 32]>(), other in any::<[u8; 32]>(), item in arb_item()) {
        prop_assume!(seed != other);
        let key = SigningKey::from_bytes(&seed);
        let trusted = TrustedKeys::from_keys([SigningKey::from_bytes(&other).verifying_key()]);
        let mut signed = item;
        sign_item(&mut signed, &key).unwrap();
        prop_assert_eq!(
            codes(&signed, &trusted),
            vec![("/signature/public_key".to_owned(), "untrusted-key".to_owned())]
        );
    }
}
