//! The generated validator against the reference: `jsonschema` 0.61 plus the
//! translation of its errors that `src/schema.rs` used before the validator
//! was generated at build time (kept here verbatim, below).
//!
//! Both must report the same multiset of issues (path, code and message byte
//! for byte) for every item, with two deliberate exceptions that bound the
//! work of hostile input, both checked exactly:
//!
//! * elements of an array past its `maxItems` are not checked one by one by
//!   the generated validator, so the reference's issues for them are dropped
//!   before comparing (the comparison is on the first `maxItems` elements);
//! * the generated validator reports at most `MAX_SCHEMA_ISSUES` issues and
//!   then one `too-many-issues` issue; where the reference has more, the
//!   generated ones must be a sub-multiset of the reference's and the count
//!   of omitted ones must be right.

use std::collections::HashMap;
use std::sync::LazyLock;

use items_core::issue::{pointer_push, show, sort_issues, type_name};
use items_core::schema::{ITEM_SCHEMA_JSON, NO_CONTROL_PATTERN, TAG_PATTERN, schema_issues};
use items_core::{Issue, MAX_SCHEMA_ISSUES};
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{Draft, ValidationError, Validator};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------
// The reference.

static SCHEMA_DOC: LazyLock<Result<Value, String>> = LazyLock::new(|| {
    serde_json::from_str(ITEM_SCHEMA_JSON)
        .map_err(|e| format!("item schema is not valid JSON: {e}"))
});

static VALIDATOR: LazyLock<Result<Validator, String>> = LazyLock::new(|| {
    let doc = SCHEMA_DOC.as_ref().map_err(Clone::clone)?;
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .build(doc)
        .map_err(|e| format!("item schema does not compile: {e}"))
});

/// What `schema_issues` returned before the validator was generated.
fn reference(value: &Value) -> Vec<Issue> {
    let validator = VALIDATOR.as_ref().unwrap();
    let mut issues = Vec::new();
    for error in validator.iter_errors(value) {
        push_issues(&error, &mut issues);
    }
    issues
}

fn push_issues(error: &ValidationError<'_>, out: &mut Vec<Issue>) {
    let path = error.instance_path().as_str().to_owned();
    let instance: &Value = error.instance();
    let (code, message): (&str, String) = match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_owned);
            let message = format!(
                "required member {} is missing",
                show(&Value::String(name.clone()))
            );
            out.push(Issue::new(pointer_push(&path, &name), "required", message));
            return;
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = allowed_members(error.schema_path().as_str());
            for name in unexpected {
                let message = if allowed.is_empty() {
                    format!(
                        "member {} is not allowed here",
                        show(&Value::String(name.clone()))
                    )
                } else {
                    format!(
                        "member {} is not allowed here; allowed members are: {}",
                        show(&Value::String(name.clone())),
                        allowed.join(", ")
                    )
                };
                out.push(Issue::new(
                    pointer_push(&path, name),
                    "additional-property",
                    message,
                ));
            }
            return;
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => article(&t.to_string()),
                TypeKind::Multiple(set) => {
                    let names: Vec<String> = set.iter().map(|t| t.to_string()).collect();
                    format!("one of the types {}", names.join(", "))
                }
            };
            let found = match instance {
                Value::Number(n) if n.is_f64() => {
                    format!("a number with a fraction or exponent ({n})")
                }
                Value::Null | Value::Array(_) | Value::Object(_) => type_name(instance).to_owned(),
                other => format!("{} ({})", type_name(other), show(other)),
            };
            ("type", format!("must be {expected}, found {found}"))
        }
        ValidationErrorKind::MinLength { limit } => {
            let got = char_len(instance);
            if *limit == 1 {
                ("min-length", "must not be empty".to_owned())
            } else {
                (
                    "min-length",
                    format!("must be at least {limit} characters long, got {got}"),
                )
            }
        }
        ValidationErrorKind::MaxLength { limit } => (
            "max-length",
            format!(
                "must be at most {limit} characters (Unicode code points) long, got {}",
                char_len(instance)
            ),
        ),
        ValidationErrorKind::Pattern { pattern } => pattern_issue(pattern, instance),
        ValidationErrorKind::Enum { options } => ("enum", enum_message(&path, instance, options)),
        ValidationErrorKind::Constant { expected_value } => {
            ("const", format!("must be exactly {}", show(expected_value)))
        }
        ValidationErrorKind::UniqueItems => ("unique-items", unique_message(instance)),
        ValidationErrorKind::MaxItems { limit } => (
            "max-items",
            format!(
                "must have at most {limit} elements, got {}",
                array_len(instance)
            ),
        ),
        ValidationErrorKind::MinItems { limit } => (
            "min-items",
            format!(
                "must have at least {limit} elements, got {}",
                array_len(instance)
            ),
        ),
        ValidationErrorKind::Minimum { limit } => (
            "minimum",
            format!("must be at least {limit}, got {}", show(instance)),
        ),
        ValidationErrorKind::ExclusiveMinimum { limit } => (
            "minimum",
            format!("must be greater than {limit}, got {}", show(instance)),
        ),
        ValidationErrorKind::Maximum { limit } => (
            "maximum",
            format!("must be at most {limit}, got {}", show(instance)),
        ),
        ValidationErrorKind::ExclusiveMaximum { limit } => (
            "maximum",
            format!("must be less than {limit}, got {}", show(instance)),
        ),
        ValidationErrorKind::Format { format } => ("format", format_message(format, instance)),
        ValidationErrorKind::FalseSchema => ("not-allowed", "no value is allowed here".to_owned()),
        ValidationErrorKind::MaxProperties { limit } => (
            "max-properties",
            format!("must have at most {limit} members"),
        ),
        ValidationErrorKind::MinProperties { limit } => (
            "min-properties",
            format!("must have at least {limit} members"),
        ),
        // Keywords the item schema does not use today. They keep a stable
        // code derived from the keyword and the library's message, so that a
        // schema change cannot make an error vanish.
        other => {
            let code = match other {
                ValidationErrorKind::AnyOf { .. } => "any-of",
                ValidationErrorKind::OneOfMultipleValid { .. }
                | ValidationErrorKind::OneOfNotValid { .. } => "one-of",
                ValidationErrorKind::Not { .. } => "not",
                ValidationErrorKind::Contains => "contains",
                ValidationErrorKind::MultipleOf { .. } => "multiple-of",
                ValidationErrorKind::ContentEncoding { .. } => "content-encoding",
                ValidationErrorKind::ContentMediaType { .. } => "content-media-type",
                ValidationErrorKind::PropertyNames { .. } => "property-names",
                ValidationErrorKind::UnevaluatedItems { .. }
                | ValidationErrorKind::AdditionalItems { .. } => "unevaluated-items",
                ValidationErrorKind::UnevaluatedProperties { .. } => "additional-property",
                _ => "schema-error",
            };
            let mut message = error.to_string();
            if message.chars().count() > 200 {
                message = message.chars().take(200).collect::<String>() + "…";
            }
            (code, message)
        }
    };
    out.push(Issue::new(path, code, message));
}

/// "integer" -> "an integer", "string" -> "a string".
fn article(type_name: &str) -> String {
    match type_name.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {type_name}"),
        _ => format!("a {type_name}"),
    }
}

fn char_len(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

fn array_len(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

/// Member names the schema allows at the object whose `additionalProperties`
/// failed, sorted (so the message does not depend on map order).
fn allowed_members(schema_path: &str) -> Vec<String> {
    let Some(parent) = schema_path.strip_suffix("/additionalProperties") else {
        return Vec::new();
    };
    let Ok(doc) = SCHEMA_DOC.as_ref() else {
        return Vec::new();
    };
    let mut names: Vec<String> = doc
        .pointer(&format!("{parent}/properties"))
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn pattern_issue(pattern: &str, instance: &Value) -> (&'static str, String) {
    if pattern == NO_CONTROL_PATTERN {
        let found = instance
            .as_str()
            .and_then(|s| s.chars().enumerate().find(|(_, c)| c.is_control()))
            .map(|(i, c)| format!("; found U+{:04X} at code point index {i}", u32::from(c)))
            .unwrap_or_default();
        (
            "control-character",
            format!("must not contain control characters{found}"),
        )
    } else if pattern == TAG_PATTERN {
        (
            "pattern",
            format!(
                "{} must consist of lowercase ASCII letters a-z, digits 0-9 and '-' only",
                show(instance)
            ),
        )
    } else {
        (
            "pattern",
            format!("{} does not match the pattern {pattern}", show(instance)),
        )
    }
}

fn enum_message(path: &str, instance: &Value, options: &Value) -> String {
    let options = options.as_array().map(Vec::as_slice).unwrap_or_default();
    if path.ends_with("/currency") {
        let hint = match instance.as_str() {
            Some(s) if s.len() == 3 && s.chars().all(|c| c.is_ascii_lowercase()) => {
                format!(
                    " (codes are upper-case: {})",
                    show(&Value::String(s.to_ascii_uppercase()))
                )
            }
            _ => String::new(),
        };
        return format!(
            "{} is not an active ISO 4217 alphabetic currency code such as \"EUR\" or \"USD\"{hint}",
            show(instance)
        );
    }
    if options.len() <= 10 {
        let shown: Vec<String> = options.iter().map(show).collect();
        format!(
            "{} is not one of the allowed values: {}",
            show(instance),
            shown.join(", ")
        )
    } else {
        format!(
            "{} is not one of the {} allowed values",
            show(instance),
            options.len()
        )
    }
}

fn unique_message(instance: &Value) -> String {
    let items = instance.as_array().map(Vec::as_slice).unwrap_or_default();
    for (j, b) in items.iter().enumerate() {
        if let Some(i) = items[..j].iter().position(|a| a == b) {
            return format!(
                "must not contain duplicates: {} appears at index {i} and {j}",
                show(b)
            );
        }
    }
    "must not contain duplicates".to_owned()
}

fn format_message(format: &str, instance: &Value) -> String {
    match format {
        "date-time" => format!(
            "{} is not an RFC 3339 date-time such as \"2024-05-01T12:30:00Z\"",
            show(instance)
        ),
        other => format!("{} is not a valid {other}", show(instance)),
    }
}

// ---------------------------------------------------------------------------
// The comparison.

/// `maxItems` of every array the schema has, by the array's instance path.
const MAX_ITEMS: &[(&str, usize)] = &[("/tags", 16)];

fn sorted(mut issues: Vec<Issue>) -> Vec<Issue> {
    sort_issues(&mut issues);
    issues
}

/// Whether `path` is at or under an array element past its `maxItems`.
fn past_max_items(path: &str) -> bool {
    MAX_ITEMS.iter().any(|(array, max)| {
        path.strip_prefix(array)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.split('/').next())
            .and_then(|index| index.parse::<usize>().ok())
            .is_some_and(|index| index >= *max)
    })
}

/// Checks the generated validator against the reference for one value.
fn check_equivalent(value: &Value) -> Result<(), TestCaseError> {
    let generated = sorted(schema_issues(value));
    let expected: Vec<Issue> = sorted(reference(value))
        .into_iter()
        .filter(|i| !past_max_items(&i.path))
        .collect();
    if expected.len() <= MAX_SCHEMA_ISSUES {
        prop_assert_eq!(&generated, &expected, "value: {}", value);
        return Ok(());
    }
    // Capped: MAX_SCHEMA_ISSUES of the reference's issues plus the count.
    prop_assert_eq!(generated.len(), MAX_SCHEMA_ISSUES + 1, "value: {}", value);
    let omitted = expected.len() - MAX_SCHEMA_ISSUES;
    let key = |i: &Issue| (i.path.clone(), i.code.clone(), i.message.clone());
    let mut left: HashMap<(String, String, String), usize> = HashMap::new();
    for issue in &expected {
        *left.entry(key(issue)).or_default() += 1;
    }
    let mut summaries = 0;
    for issue in &generated {
        if issue.code == "too-many-issues" {
            summaries += 1;
            prop_assert_eq!(issue.path.as_str(), "");
            let wanted = format!(
                "{omitted} more schema issue{} not reported: at most {MAX_SCHEMA_ISSUES} are reported per item",
                if omitted == 1 { "" } else { "s" }
            );
            prop_assert_eq!(&issue.message, &wanted);
            continue;
        }
        let n = left.get_mut(&key(issue));
        prop_assert!(
            n.as_ref().is_some_and(|n| **n > 0),
            "not in the reference: {:?}",
            issue
        );
        if let Some(n) = n {
            *n -= 1;
        }
    }
    prop_assert_eq!(summaries, 1);
    Ok(())
}

fn assert_equivalent(value: &Value) {
    if let Err(e) = check_equivalent(value) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------
// Generated items.

/// Characters at the edges of what the schema's patterns and lengths see:
/// the C0/DEL/C1 boundaries, multi-byte UTF-8, a combining mark, the tag
/// alphabet's neighbours, and JSON Pointer's special characters.
const SPECIAL: &[char] = &[
    '\u{0}', '\u{1f}', ' ', '~', '\u{7e}', '\u{7f}', '\u{80}', '\u{9f}', '\u{a0}', 'é', 'e',
    '\u{301}', '😀', '\u{ffff}', '\n', '\t', 'A', 'Z', 'a', 'z', '0', '9', '-', '_', '/', '"',
    '\\', '`', '{', '.', 'ä',
];

/// A string of a boundary (or small random) length in code points, built from
/// one repeated character with a few special characters dropped in.
fn text() -> impl Strategy<Value = String> {
    let length = prop_oneof![
        2 => prop::sample::select(vec![0usize, 1, 31, 32, 33, 199, 200, 201, 4000, 4001]),
        3 => 0usize..12,
    ];
    let base = prop::sample::select(vec!['a', 'é', '😀', '-', 'A', '0']);
    let specials = prop::collection::vec(
        (any::<prop::sample::Index>(), prop::sample::select(SPECIAL)),
        0..3,
    );
    (length, base, specials).prop_map(|(length, base, specials)| {
        let mut chars = vec![base; length];
        for (at, c) in specials {
            if !chars.is_empty() {
                let i = at.index(chars.len());
                chars[i] = c;
            }
        }
        chars.into_iter().collect()
    })
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!(-1),
            json!(0),
            json!(1),
            json!(4_294_967_295u64),
            json!(4_294_967_296u64),
            json!(9_007_199_254_740_991u64),
            json!(9_007_199_254_740_992u64),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1.0),
            json!(1.5),
            json!(1e2),
            json!(-0.0),
            json!(-1.5),
            json!(-1.0),
            json!(4_294_967_295.0),
            json!(4_294_967_295.5),
            json!(4_294_967_296.0),
            json!(9_007_199_254_740_992.0),
            json!(18_446_744_073_709_551_616.0),
            json!(1e300),
            json!(-1e300),
            json!(1e-300),
        ]),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
    ]
}

/// Any JSON value, small: the "wrong type" for every member.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        "[a-z]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn string_or_any() -> impl Strategy<Value = Value> {
    prop_oneof![4 => text().prop_map(Value::String), 1 => any_json()]
}

fn tag() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "a", "b", "t1", "a-b", "-", "", "A", "ä", "a\n", "1", "a b",
            "abcdefghijklmnopqrstuvwxyz012345", "abcdefghijklmnopqrstuvwxyz0123456",
        ])
        .prop_map(Value::from),
        1 => text().prop_map(Value::String),
        1 => prop::sample::select(vec![
            json!(1), json!(1.0), json!(-0.0), json!(0), json!([1]), json!([1.0]),
            json!({"a": 1}), json!({"a": 1.0}), json!(null), json!(true),
        ]),
        1 => any_json(),
    ]
}

fn tags() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::collection::vec(tag(), 0..6).prop_map(Value::Array),
        2 => prop::collection::vec(tag(), 14..20).prop_map(Value::Array),
        // Many distinct valid tags around the limit, some with a repeat.
        1 => (15usize..19, any::<bool>()).prop_map(|(n, repeat)| {
            let mut v: Vec<Value> = (0..n).map(|i| json!(format!("t{i}"))).collect();
            if repeat {
                v.push(json!("t3"));
            }
            Value::Array(v)
        }),
        1 => any_json(),
    ]
}

fn date_time() -> impl Strategy<Value = String> {
    // (valid, invalid) choices per part; a part is valid nine times in ten,
    // so about a fifth of the strings are valid and most others are off by
    // one part. Hours, minutes and offsets are picked so that leap seconds
    // land on 23:59 UTC often enough.
    let parts: Vec<(Vec<&'static str>, Vec<&'static str>)> = vec![
        (
            vec!["2024", "2023", "2000", "1900", "0000", "9999"],
            vec!["24", "２024", "+2024"],
        ),
        (vec!["-"], vec!["/", ""]),
        (vec!["01", "02", "04", "12"], vec!["13", "00", "1", "0a"]),
        (vec!["-"], vec!["/"]),
        (vec!["01", "28", "29", "30", "31"], vec!["00", "32", "1"]),
        (vec!["T", "t"], vec![" ", "", "TT", "Z"]),
        (vec!["00", "12", "22", "23"], vec!["24", "1", "-1"]),
        (vec![":"], vec!["", "::"]),
        (vec!["00", "29", "59"], vec!["60", "5"]),
        (vec![":"], vec![""]),
        (vec!["00", "59", "60"], vec!["61", "6", "99"]),
        (vec!["", ".5", ".123456789"], vec![".", ".x", ".5.5"]),
        (
            vec![
                "Z", "z", "+00:00", "-00:00", "+01:00", "-01:00", "+00:30", "-00:30", "+23:59",
                "-23:59", "-05:30",
            ],
            vec![
                "+24:00", "+05:60", "+0530", "", "ZZ", "+01:00Z", "+1:00", "+01:0", "Z ",
            ],
        ),
    ];
    parts
        .into_iter()
        .map(|(valid, invalid)| {
            prop_oneof![
                9 => prop::sample::select(valid),
                1 => prop::sample::select(invalid),
            ]
        })
        .collect::<Vec<_>>()
        .prop_map(|chosen| chosen.concat())
}

fn created_at() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => date_time().prop_map(Value::String),
        1 => text().prop_map(Value::String),
        1 => any_json(),
    ]
}

fn currency() -> impl Strategy<Value = Value> {
    prop_oneof![
        5 => prop::sample::select(vec![
            "EUR", "USD", "AED", "ZWG", "XXX", "eur", "usd", "Eur", "XXY", "DEM", "EU", "EURO",
            "", "AAA", "ZZZ", "ÉUR", "eu1",
        ])
        .prop_map(Value::from),
        1 => any_json(),
    ]
}

/// An object built from optional known members plus unexpected ones.
fn object(known: Vec<(&'static str, BoxedStrategy<Value>)>) -> impl Strategy<Value = Value> {
    let members: Vec<_> = known
        .into_iter()
        .map(|(name, value)| prop::option::weighted(0.6, value).prop_map(move |v| (name, v)))
        .collect();
    let unexpected = prop::collection::vec(
        (
            prop::sample::select(vec![
                "a/b",
                "~",
                "~1",
                "a~0b",
                "",
                "Name",
                "ID",
                "name ",
                "ключ",
                "tags/20",
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            ]),
            any_json(),
        ),
        0..3,
    );
    (members, prop::option::weighted(0.2, unexpected)).prop_map(|(members, unexpected)| {
        let mut map = Map::new();
        for (name, value) in members {
            if let Some(value) = value {
                map.insert(name.to_owned(), value);
            }
        }
        for (name, value) in unexpected.unwrap_or_default() {
            map.insert(name.to_owned(), value);
        }
        Value::Object(map)
    })
}

fn price() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => object(vec![
            ("amount_cents", prop_oneof![4 => number(), 1 => any_json()].boxed()),
            ("currency", currency().boxed()),
        ]),
        1 => any_json(),
    ]
}

fn signature() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => object(vec![
            ("public_key", string_or_any().boxed()),
            ("value", string_or_any().boxed()),
        ]),
        1 => any_json(),
    ]
}

/// An item with dozens of unexpected members (and maybe more problems), so
/// that the per-item cap is reached now and then.
fn crowded_item() -> impl Strategy<Value = Value> {
    (40usize..90, item_object()).prop_map(|(n, mut item)| {
        if let Value::Object(map) = &mut item {
            for i in 0..n {
                map.insert(format!("extra/{i}"), json!(i));
            }
        }
        item
    })
}

fn item() -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => item_object(),
        1 => crowded_item(),
        1 => any_json(),
    ]
}

fn item_object() -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => object(vec![
            ("id", prop_oneof![4 => number(), 1 => any_json()].boxed()),
            ("name", string_or_any().boxed()),
            ("description", string_or_any().boxed()),
            ("tags", tags().boxed()),
            ("price", price().boxed()),
            ("created_at", created_at().boxed()),
            ("signature", signature().boxed()),
        ]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn generated_validator_matches_jsonschema(value in item()) {
        check_equivalent(&value)?;
    }

    #[test]
    fn date_times_match_jsonschema(text in date_time()) {
        check_equivalent(&json!({"name": "x", "created_at": text}))?;
    }
}

// ---------------------------------------------------------------------------
// Boundaries, one by one, with the exact wording pinned where it matters.

fn issues_of(value: &Value) -> Vec<(String, String, String)> {
    assert_equivalent(value);
    sorted(schema_issues(value))
        .into_iter()
        .map(|i| (i.path, i.code, i.message))
        .collect()
}

fn one(path: &str, code: &str, message: &str) -> Vec<(String, String, String)> {
    vec![(path.to_owned(), code.to_owned(), message.to_owned())]
}

#[test]
fn string_lengths_at_their_boundaries() {
    for n in [1, 199, 200] {
        assert_eq!(issues_of(&json!({"name": "é".repeat(n)})), vec![]);
    }
    assert_eq!(
        issues_of(&json!({"name": ""})),
        one("/name", "min-length", "must not be empty")
    );
    assert_eq!(
        issues_of(&json!({"name": "😀".repeat(201)})),
        one(
            "/name",
            "max-length",
            "must be at most 200 characters (Unicode code points) long, got 201"
        )
    );
    assert_eq!(
        issues_of(&json!({"name": "x", "description": "a".repeat(4000)})),
        vec![]
    );
    assert_eq!(
        issues_of(&json!({"name": "x", "description": "a".repeat(4001)})),
        one(
            "/description",
            "max-length",
            "must be at most 4000 characters (Unicode code points) long, got 4001"
        )
    );
}

#[test]
fn control_characters_at_their_boundaries() {
    for ok in ['\u{20}', '\u{7e}', '\u{a0}', 'é'] {
        assert_eq!(
            issues_of(&json!({"name": format!("a{ok}")})),
            vec![],
            "{ok:?}"
        );
    }
    for (bad, hex) in [
        ('\u{0}', "0000"),
        ('\u{1f}', "001F"),
        ('\u{7f}', "007F"),
        ('\u{80}', "0080"),
        ('\u{9f}', "009F"),
    ] {
        assert_eq!(
            issues_of(&json!({"name": format!("ab{bad}")})),
            one(
                "/name",
                "control-character",
                &format!(
                    "must not contain control characters; found U+{hex} at code point index 2"
                )
            )
        );
    }
}

#[test]
fn ids_and_amounts_at_their_boundaries() {
    for ok in [
        json!(0),
        json!(4_294_967_295u64),
        json!(1.0),
        json!(1e2),
        json!(-0.0),
    ] {
        assert_eq!(issues_of(&json!({"name": "x", "id": ok})), vec![], "{ok}");
    }
    assert_eq!(
        issues_of(&json!({"name": "x", "id": -1})),
        one("/id", "minimum", "must be at least 0, got -1")
    );
    assert_eq!(
        issues_of(&json!({"name": "x", "id": 4_294_967_296u64})),
        one(
            "/id",
            "maximum",
            "must be at most 4294967295, got 4294967296"
        )
    );
    assert_eq!(
        issues_of(&json!({"name": "x", "id": 1.5})),
        one(
            "/id",
            "type",
            "must be an integer, found a number with a fraction or exponent (1.5)"
        )
    );
    assert_eq!(issues_of(&json!({"name": "x", "id": -1.5})).len(), 2);
    let price =
        |amount: Value| json!({"name": "x", "price": {"amount_cents": amount, "currency": "EUR"}});
    assert_eq!(issues_of(&price(json!(0))), vec![]);
    assert_eq!(issues_of(&price(json!(9_007_199_254_740_991u64))), vec![]);
    assert_eq!(
        issues_of(&price(json!(9_007_199_254_740_992u64))),
        one(
            "/price/amount_cents",
            "maximum",
            "must be at most 9007199254740991, got 9007199254740992"
        )
    );
    assert_eq!(issues_of(&price(json!(9_007_199_254_740_992.0))).len(), 1);
}

#[test]
fn currencies() {
    let price = |c: Value| json!({"name": "x", "price": {"amount_cents": 1, "currency": c}});
    for ok in ["AED", "EUR", "ZWG"] {
        assert_eq!(issues_of(&price(json!(ok))), vec![]);
    }
    assert_eq!(
        issues_of(&price(json!("eur"))),
        one(
            "/price/currency",
            "enum",
            "\"eur\" is not an active ISO 4217 alphabetic currency code such as \"EUR\" or \"USD\" (codes are upper-case: \"EUR\")"
        )
    );
    for bad in [
        json!("XXY"),
        json!("AAA"),
        json!("ZZZ"),
        json!(""),
        json!(5),
        json!(null),
    ] {
        assert_eq!(issues_of(&price(bad.clone()))[0].1, "enum", "{bad}");
    }
}

#[test]
fn tags_counts_and_duplicates() {
    let tags = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
    for n in [0, 16] {
        assert_eq!(issues_of(&json!({"name": "x", "tags": tags(n)})), vec![]);
    }
    assert_eq!(
        issues_of(&json!({"name": "x", "tags": tags(17)})),
        one(
            "/tags",
            "max-items",
            "must have at most 16 elements, got 17"
        )
    );
    assert_eq!(
        issues_of(&json!({"name": "x", "tags": ["a", "b", "b", "a"]})),
        one(
            "/tags",
            "unique-items",
            "must not contain duplicates: \"b\" appears at index 1 and 2"
        )
    );
    // Equal by value only: the reference names no index either.
    assert_eq!(
        issues_of(&json!({"name": "x", "tags": [1, 1.0]}))
            .iter()
            .filter(|i| i.1 == "unique-items")
            .map(|i| i.2.as_str())
            .collect::<Vec<_>>(),
        ["must not contain duplicates"]
    );
    // More than 15 elements: jsonschema switches to hashing.
    let mut many = tags(16);
    many.push("t15".to_owned());
    issues_of(&json!({"name": "x", "tags": many}));
}

#[test]
fn unexpected_members_with_pointer_characters() {
    assert_eq!(
        issues_of(&json!({"name": "x", "a/b": 1, "~": 2}))
            .iter()
            .map(|i| i.0.as_str())
            .collect::<Vec<_>>(),
        ["/a~1b", "/~0"]
    );
    issues_of(&json!({"name": "x", "signature": {"public_key": 1, "x/y": 2}}));
    issues_of(&json!({"signature": [], "price": "EUR", "tags": {}, "created_at": 1}));
}

#[test]
fn non_objects_and_nested_wrong_types() {
    for v in [
        json!(null),
        json!([]),
        json!("x"),
        json!(1.5),
        json!(true),
        json!([{"name": "x"}]),
    ] {
        assert_eq!(issues_of(&v).len(), 1, "{v}");
    }
    issues_of(
        &json!({"name": ["x"], "description": {}, "id": "1", "price": {"amount_cents": "1", "currency": ["EUR"]}}),
    );
}

#[test]
fn date_time_boundaries() {
    for text in [
        "2016-12-31T23:59:60Z",
        "2016-12-31T23:59:60+00:30",
        "2017-01-01T00:59:60+01:00",
        "2016-12-31T22:59:60-01:00",
        "2016-12-31T22:59:60+01:00",
        "2024-02-29T00:00:00z",
        "2023-02-29T00:00:00Z",
        "1985-04-12t23:20:50.52z",
        "2024-05-01T12:30:00+24:00",
        "2024-05-01T12:30:00.Z",
    ] {
        issues_of(&json!({"name": "x", "created_at": text}));
    }
    assert_eq!(
        issues_of(&json!({"name": "x", "created_at": "yesterday"})),
        one(
            "/created_at",
            "format",
            "\"yesterday\" is not an RFC 3339 date-time such as \"2024-05-01T12:30:00Z\""
        )
    );
}

#[test]
fn content_encoding_is_an_annotation_only() {
    // contentEncoding: "base64" is not asserted in draft 2020-12; the
    // signature module checks base64 itself.
    assert_eq!(
        issues_of(&json!({"name": "x", "signature": {"public_key": "not base64!", "value": "%%"}})),
        vec![]
    );
}

#[test]
fn over_long_arrays_compare_on_their_prefix() {
    let tags: Vec<Value> = (0..40)
        .map(|i| if i % 2 == 0 { json!(i) } else { json!("A") })
        .collect();
    issues_of(&json!({"name": "x", "tags": tags}));
}

#[test]
fn capped_items_keep_a_subset_of_the_reference() {
    let mut item = Map::new();
    for i in 0..200 {
        item.insert(format!("m/{i}"), json!(i));
    }
    item.insert("tags".to_owned(), json!(vec!["A"; 16]));
    let value = Value::Object(item);
    assert!(reference(&value).len() > MAX_SCHEMA_ISSUES);
    assert_equivalent(&value);
}
