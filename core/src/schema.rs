//! The item's shape, checked by a validator generated at build time.
//!
//! The shape lives in exactly one file, `schemas/item.schema.json`, so that
//! clients, docs and this crate cannot drift apart. `build.rs` translates it
//! into plain Rust (see `schema/generated.rs`), because a Spin component gets a
//! fresh Wasm instance per request: compiling the schema with a JSON Schema
//! library at run time cost every request about 2 ms before the first item was
//! even looked at, against microseconds for the generated code. The generator
//! supports exactly the keywords the schema uses and stops the build on any
//! other, so a schema change cannot be silently ignored.
//!
//! Each failed keyword becomes an [`Issue`] with one of this crate's stable
//! codes and a hand-written message. The wording predates the generator (it
//! translated `jsonschema` errors), and `tests/schema_equivalence.rs` still
//! checks the generated validator against that translation on generated items.
//!
//! Two deliberate limits bound the work and output for hostile input: at most
//! [`MAX_SCHEMA_ISSUES`](crate::MAX_SCHEMA_ISSUES) issues per item (then one `too-many-issues` issue),
//! and elements of an array beyond its `maxItems` are not checked one by one
//! (the array already gets a `max-items` issue).

mod date_time;
mod generated;
mod messages;
mod numbers;
mod sink;
mod unique;

use serde_json::Value;

use crate::issue::Issue;
use sink::{At, Sink};

/// The JSON Schema (draft 2020-12) for one item, as shipped in `schemas/`.
///
/// Public so that services can publish it (e.g. `GET /schema`) byte for byte.
pub const ITEM_SCHEMA_JSON: &str = include_str!("../../schemas/item.schema.json");

/// The schema's `pattern` for `name`: no C0 controls, DEL or C1 controls.
///
/// A failure of this pattern gets the dedicated code `control-character`. A
/// unit test checks that the schema file really contains this pattern.
pub const NO_CONTROL_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// The schema's `pattern` for one tag (its length is bounded separately by
/// `minLength`/`maxLength` so that too-long tags get a precise message).
pub const TAG_PATTERN: &str = "^[a-z0-9-]*$";

/// Validates `value` against the item schema and returns one [`Issue`] per
/// problem, unsorted.
///
/// At most [`MAX_SCHEMA_ISSUES`](crate::MAX_SCHEMA_ISSUES) issues are returned, plus one
/// `too-many-issues` issue at the item saying how many were left out.
pub fn schema_issues(value: &Value) -> Vec<Issue> {
    let mut sink = Sink::default();
    generated::check_root(value, &At::Root, &mut sink);
    sink.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_SCHEMA_ISSUES;

    fn doc() -> Value {
        serde_json::from_str(ITEM_SCHEMA_JSON).unwrap()
    }

    #[test]
    fn schema_file_parses_and_has_metadata() {
        let doc = doc();
        assert_eq!(
            doc["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert!(doc["$id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(doc["title"].is_string());
        assert!(doc["description"].is_string());
    }

    #[test]
    fn code_constants_match_the_schema_file() {
        let doc = doc();
        assert_eq!(
            doc.pointer("/properties/name/pattern").unwrap(),
            NO_CONTROL_PATTERN
        );
        assert_eq!(
            doc.pointer("/properties/tags/items/pattern").unwrap(),
            TAG_PATTERN
        );
    }

    #[test]
    fn every_property_is_described() {
        fn walk(v: &Value, at: &str) {
            if let Some(props) = v.get("properties").and_then(Value::as_object) {
                for (k, p) in props {
                    assert!(
                        p.get("description").is_some(),
                        "{at}/{k} lacks a description"
                    );
                    walk(p, &format!("{at}/{k}"));
                }
            }
        }
        walk(&doc(), "");
    }

    #[test]
    fn currency_enum_is_sorted_unique_iso_codes() {
        let doc = doc();
        let codes: Vec<&str> = doc
            .pointer("/properties/price/properties/currency/enum")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(codes.len() > 150);
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
        for c in ["EUR", "USD", "JPY", "GBP", "CHF"] {
            assert!(codes.contains(&c));
        }
        // Withdrawn codes are not "active".
        for c in ["DEM", "FRF", "HRK", "XXY"] {
            assert!(!codes.contains(&c), "{c}");
        }
    }

    #[test]
    fn allowed_members_are_listed_sorted() {
        let at = |v: Value| {
            schema_issues(&v)
                .into_iter()
                .map(|i| i.message)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            at(
                serde_json::json!({"name": "x", "price": {"amount_cents": 1, "currency": "EUR", "vat": 1}})
            ),
            ["member \"vat\" is not allowed here; allowed members are: amount_cents, currency"]
        );
        assert_eq!(
            at(serde_json::json!({"name": "x", "x": 1})),
            [
                "member \"x\" is not allowed here; allowed members are: created_at, description, id, name, price, signature, tags"
            ]
        );
    }

    #[test]
    fn too_many_issues_are_capped_and_counted() {
        let mut item = serde_json::Map::new();
        for i in 0..MAX_SCHEMA_ISSUES + 10 {
            item.insert(format!("extra{i}"), Value::Null);
        }
        // Plus one: "name" is missing.
        let issues = schema_issues(&Value::Object(item));
        assert_eq!(issues.len(), MAX_SCHEMA_ISSUES + 1);
        let last = issues.last().unwrap();
        assert_eq!(
            (last.path.as_str(), last.code.as_str()),
            ("", "too-many-issues")
        );
        assert_eq!(
            last.message,
            format!(
                "11 more schema issues not reported: at most {MAX_SCHEMA_ISSUES} are reported per item"
            )
        );
    }

    #[test]
    fn elements_past_max_items_are_not_checked() {
        let tags: Vec<Value> = (0..1000).map(Value::from).collect();
        let issues = schema_issues(&serde_json::json!({"name": "x", "tags": tags}));
        let codes: Vec<(&str, &str)> = issues
            .iter()
            .map(|i| (i.path.as_str(), i.code.as_str()))
            .collect();
        assert_eq!(codes.len(), 16 + 1, "{codes:?}");
        assert!(codes.contains(&("/tags", "max-items")));
        assert!(codes.contains(&("/tags/15", "type")));
        assert!(!codes.contains(&("/tags/16", "type")));
    }
}
