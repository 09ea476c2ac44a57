//! The words of every schema issue.
//!
//! Clients switch on codes, but messages are compared byte for byte between
//! the components and the gateway, and they were fixed when the crate still
//! translated `jsonschema` errors: `tests/schema_equivalence.rs` keeps that
//! translation as the reference these functions must match. Messages never
//! echo a whole client value ([`show`] truncates), so an issue stays small
//! whatever the input.

use serde_json::Value;

use super::unique::Duplicate;
use super::{NO_CONTROL_PATTERN, TAG_PATTERN};
use crate::issue::{show, type_name};

/// `type`: `expected` is the schema type with its article ("an integer").
pub(crate) fn wrong_type(expected: &str, instance: &Value) -> String {
    let found = match instance {
        Value::Number(n) if n.is_f64() => format!("a number with a fraction or exponent ({n})"),
        Value::Null | Value::Array(_) | Value::Object(_) => type_name(instance).to_owned(),
        other => format!("{} ({})", type_name(other), show(other)),
    };
    format!("must be {expected}, found {found}")
}

/// `minimum`; `limit` as the schema writes it.
pub(crate) fn minimum(limit: &str, instance: &Value) -> String {
    format!("must be at least {limit}, got {}", show(instance))
}

/// `maximum`; `limit` as the schema writes it.
pub(crate) fn maximum(limit: &str, instance: &Value) -> String {
    format!("must be at most {limit}, got {}", show(instance))
}

/// `minLength`, counted in code points.
pub(crate) fn min_length(limit: u64, got: usize) -> String {
    if limit == 1 {
        "must not be empty".to_owned()
    } else {
        format!("must be at least {limit} characters long, got {got}")
    }
}

/// `maxLength`, counted in code points.
pub(crate) fn max_length(limit: u64, got: usize) -> String {
    format!("must be at most {limit} characters (Unicode code points) long, got {got}")
}

/// `pattern`: the two patterns the item schema uses get dedicated wording
/// (and control characters their own code); any other pattern is quoted.
pub(crate) fn pattern(pattern: &str, instance: &Value) -> (&'static str, String) {
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

/// `format`.
pub(crate) fn format(format: &str, instance: &Value) -> String {
    match format {
        "date-time" => format!(
            "{} is not an RFC 3339 date-time such as \"2024-05-01T12:30:00Z\"",
            show(instance)
        ),
        other => format!("{} is not a valid {other}", show(instance)),
    }
}

/// `enum`, with a hint for currency codes (recognised by the instance
/// path); `options` in schema order.
pub(crate) fn enumeration(path: &str, instance: &Value, options: &[&str]) -> String {
    if path.ends_with("/currency") {
        let hint = match instance.as_str() {
            Some(s) if s.len() == 3 && s.chars().all(|c| c.is_ascii_lowercase()) => format!(
                " (codes are upper-case: {})",
                show(&Value::String(s.to_ascii_uppercase()))
            ),
            _ => String::new(),
        };
        return format!(
            "{} is not an active ISO 4217 alphabetic currency code such as \"EUR\" or \"USD\"{hint}",
            show(instance)
        );
    }
    if options.len() <= 10 {
        let shown: Vec<String> = options
            .iter()
            .map(|o| show(&Value::String((*o).to_owned())))
            .collect();
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

/// `maxItems`.
pub(crate) fn max_items(limit: u64, got: usize) -> String {
    format!("must have at most {limit} elements, got {got}")
}

/// `uniqueItems`, naming the first repeat where there is one as written.
pub(crate) fn unique_items(elements: &[Value], duplicate: Duplicate) -> String {
    match duplicate {
        Duplicate::Exact { first, again } => format!(
            "must not contain duplicates: {} appears at index {first} and {again}",
            elements.get(again).map(show).unwrap_or_default()
        ),
        Duplicate::ByValue => "must not contain duplicates".to_owned(),
    }
}

/// `required`: one issue per missing member, at the member's own path.
pub(crate) fn required(name: &str) -> String {
    format!(
        "required member {} is missing",
        show(&Value::String(name.to_owned()))
    )
}

/// `additionalProperties: false`: one issue per unexpected member;
/// `allowed` lists the schema's `properties`, sorted and comma-separated.
pub(crate) fn additional_property(name: &str, allowed: &str) -> String {
    let name = show(&Value::String(name.to_owned()));
    if allowed.is_empty() {
        format!("member {name} is not allowed here")
    } else {
        format!("member {name} is not allowed here; allowed members are: {allowed}")
    }
}
