//! The item's shape, and how JSON Schema errors become [`Issue`]s.
//!
//! The shape lives in exactly one file, `schemas/item.schema.json`, so that
//! clients, docs and this crate cannot drift apart. It is embedded at compile
//! time (no file or network access at run time, which a Wasm component may not
//! have) and compiled once per process.
//!
//! JSON Schema error kinds are translated into this crate's stable codes and
//! hand-written messages: the library's own messages echo whole values (a
//! 4000-character description, say) and may change between versions, while
//! clients switch on our codes.

use std::sync::LazyLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{Draft, ValidationError, Validator};
use serde_json::Value;

use crate::issue::{Issue, pointer_push, show, type_name};

/// The JSON Schema (draft 2020-12) for one item, as shipped in `schemas/`.
///
/// Public so that services can publish it (e.g. `GET /schema`) byte for byte.
pub const ITEM_SCHEMA_JSON: &str = include_str!("../../schemas/item.schema.json");

/// The schema's `pattern` for `name`: no C0 controls, DEL or C1 controls.
///
/// Matched against the pattern reported by the validator so that its failure
/// gets the dedicated code `control-character`. A unit test checks that the
/// schema file really contains this pattern.
pub const NO_CONTROL_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// The schema's `pattern` for one tag (its length is bounded separately by
/// `minLength`/`maxLength` so that too-long tags get a precise message).
pub const TAG_PATTERN: &str = "^[a-z0-9-]*$";

/// The parsed schema document, used both to build the validator and to look up
/// allowed member names for "unexpected member" messages.
static SCHEMA_DOC: LazyLock<Result<Value, String>> = LazyLock::new(|| {
    serde_json::from_str(ITEM_SCHEMA_JSON)
        .map_err(|e| format!("item schema is not valid JSON: {e}"))
});

/// The compiled validator, built once per process (or per component instance)
/// because compiling the schema costs far more than validating one item.
static VALIDATOR: LazyLock<Result<Validator, String>> = LazyLock::new(|| {
    let doc = SCHEMA_DOC.as_ref().map_err(Clone::clone)?;
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .build(doc)
        .map_err(|e| format!("item schema does not compile: {e}"))
});

/// Validates `value` against the item schema and returns one [`Issue`] per
/// problem, unsorted.
///
/// The schema is embedded and covered by tests, so it cannot fail to compile
/// in a released build; should it ever, every item gets one `schema-error`
/// issue instead of a panic, because a validator must never crash on input.
pub fn schema_issues(value: &Value) -> Vec<Issue> {
    let validator = match VALIDATOR.as_ref() {
        Ok(v) => v,
        Err(e) => return vec![Issue::new("", "schema-error", e.clone())],
    };
    let mut issues = Vec::new();
    for error in validator.iter_errors(value) {
        push_issues(&error, &mut issues);
    }
    issues
}

/// Translates one validator error into zero or more issues (an
/// `additionalProperties` error becomes one issue per unexpected member).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_file_parses_compiles_and_has_metadata() {
        let doc = SCHEMA_DOC.as_ref().unwrap();
        assert!(VALIDATOR.is_ok(), "{:?}", VALIDATOR.as_ref().err());
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
        let doc = SCHEMA_DOC.as_ref().unwrap();
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
        walk(SCHEMA_DOC.as_ref().unwrap(), "");
    }

    #[test]
    fn currency_enum_is_sorted_unique_iso_codes() {
        let doc = SCHEMA_DOC.as_ref().unwrap();
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
        assert_eq!(
            allowed_members("/properties/price/additionalProperties"),
            ["amount_cents", "currency"]
        );
        assert_eq!(allowed_members("/additionalProperties").len(), 7);
        assert!(allowed_members("/nonsense").is_empty());
    }
}
