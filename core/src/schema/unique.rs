//! `uniqueItems` in linear time.
//!
//! JSON Schema compares array elements by JSON value, numbers by
//! mathematical value (`1` equals `1.0`). Each element is reduced to a
//! canonical key (object members sorted, numbers normalised) and looked up in
//! a hash map, so a hostile array of thousands of elements costs one pass
//! instead of a quadratic number of comparisons.
//!
//! The message names the first element that repeats an earlier one *as
//! written* (`serde_json` equality, where `1` and `1.0` differ) together with
//! that earlier one's index, as the message always has. When the only
//! duplicates are equal by value alone, the message names no index.

use std::collections::HashMap;
use std::collections::HashSet;
use std::collections::hash_map::Entry;
use std::fmt::Write as _;

use serde_json::{Number, Value};

/// Why an array fails `uniqueItems`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Duplicate {
    /// `elements[again]` is written exactly as `elements[first]`, the
    /// earliest such pair by `again`.
    Exact {
        /// Index of the first occurrence.
        first: usize,
        /// Index of the repeat.
        again: usize,
    },
    /// Two elements are equal only by numeric value (e.g. `1` and `1.0`).
    ByValue,
}

/// How numbers enter a key.
#[derive(Clone, Copy)]
enum Numbers {
    /// As `serde_json` tells them apart: unsigned, negative or double.
    AsWritten,
    /// By mathematical value, as JSON Schema compares them.
    ByValue,
}

/// The first duplicate in `elements`, if any.
pub(crate) fn duplicate(elements: &[Value]) -> Option<Duplicate> {
    if elements.len() < 2 {
        return None;
    }
    let mut as_written: HashMap<String, usize> = HashMap::with_capacity(elements.len());
    let mut by_value: HashSet<String> = HashSet::new();
    let mut equal_by_value = false;
    for (index, element) in elements.iter().enumerate() {
        let mut key = String::new();
        push_key(element, Numbers::AsWritten, &mut key);
        match as_written.entry(key) {
            Entry::Occupied(first) => {
                return Some(Duplicate::Exact {
                    first: *first.get(),
                    again: index,
                });
            }
            Entry::Vacant(slot) => {
                slot.insert(index);
            }
        }
        // Elements without numbers are equal by value exactly when they are
        // equal as written, which the map above already sees.
        if !equal_by_value && has_number(element) {
            let mut key = String::new();
            push_key(element, Numbers::ByValue, &mut key);
            equal_by_value = !by_value.insert(key);
        }
    }
    equal_by_value.then_some(Duplicate::ByValue)
}

fn has_number(value: &Value) -> bool {
    match value {
        Value::Number(_) => true,
        Value::Array(a) => a.iter().any(has_number),
        Value::Object(o) => o.values().any(has_number),
        Value::Null | Value::Bool(_) | Value::String(_) => false,
    }
}

/// Appends a self-delimiting canonical key of `value` to `out`: two values
/// get the same key exactly when they are equal under `numbers`.
fn push_key(value: &Value, numbers: Numbers, out: &mut String) {
    match value {
        Value::Null => out.push('n'),
        Value::Bool(true) => out.push('t'),
        Value::Bool(false) => out.push('f'),
        Value::Number(n) => push_number(n, numbers, out),
        Value::String(s) => push_str(s, out),
        Value::Array(elements) => {
            out.push('[');
            for element in elements {
                push_key(element, numbers, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            // Sorted, whatever the map's iteration order.
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (name, member) in sorted {
                push_str(name, out);
                push_key(member, numbers, out);
            }
            out.push('}');
        }
    }
}

fn push_str(s: &str, out: &mut String) {
    // Length-prefixed, so no escaping is needed to stay unambiguous.
    let _ = write!(out, "s{}:", s.len());
    out.push_str(s);
}

fn push_number(n: &Number, numbers: Numbers, out: &mut String) {
    // Writing to a String cannot fail.
    let _ = match numbers {
        Numbers::AsWritten => {
            if let Some(u) = n.as_u64() {
                write!(out, "u{u};")
            } else if let Some(i) = n.as_i64() {
                write!(out, "i{i};")
            } else {
                // serde_json compares doubles with `==`, so 0.0 equals -0.0.
                let f = n.as_f64().unwrap_or(0.0);
                let f = if f == 0.0 { 0.0 } else { f };
                write!(out, "d{:x};", f.to_bits())
            }
        }
        Numbers::ByValue => {
            if let Some(u) = n.as_u64() {
                write!(out, "z{u};")
            } else if let Some(i) = n.as_i64() {
                write!(out, "z{i};")
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                // 2^64: integral doubles below it in magnitude fit an i128.
                if f.fract() == 0.0 && f.abs() < 18_446_744_073_709_551_616.0 {
                    // Exact: integral and in range.
                    #[allow(clippy::cast_possible_truncation)]
                    let whole = f as i128;
                    write!(out, "z{whole};")
                } else {
                    write!(out, "d{:x};", f.to_bits())
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dup(v: Value) -> Option<Duplicate> {
        duplicate(v.as_array().unwrap())
    }

    #[test]
    fn finds_the_first_repeat_and_its_first_occurrence() {
        assert_eq!(dup(json!([])), None);
        assert_eq!(dup(json!(["a", "b", "c"])), None);
        assert_eq!(
            dup(json!(["a", "b", "b", "a"])),
            Some(Duplicate::Exact { first: 1, again: 2 })
        );
        assert_eq!(
            dup(json!(["a", "b", "a", "b", "a"])),
            Some(Duplicate::Exact { first: 0, again: 2 })
        );
    }

    #[test]
    fn compares_json_values_not_text() {
        assert_eq!(
            dup(json!([{"a": 1, "b": [true, null]}, {"b": [true, null], "a": 1}])),
            Some(Duplicate::Exact { first: 0, again: 1 })
        );
        assert_eq!(dup(json!([{"a": 1}, {"a": "1"}, ["a", 1], "a1"])), None);
        assert_eq!(dup(json!(["ab", ["a", "b"], ["ab"]])), None);
        assert_eq!(dup(json!([1, 1.0])), Some(Duplicate::ByValue));
        assert_eq!(dup(json!([[-3], [-3.0]])), Some(Duplicate::ByValue));
        assert_eq!(
            dup(json!([0.0, -0.0])),
            Some(Duplicate::Exact { first: 0, again: 1 })
        );
        assert_eq!(dup(json!([1, 1.5, 2.0])), None);
        assert_eq!(
            dup(json!([9_007_199_254_740_993u64, 9_007_199_254_740_992.0])),
            None
        );
        assert_eq!(
            dup(json!([1e20, 1e20])),
            Some(Duplicate::Exact { first: 0, again: 1 })
        );
    }

    #[test]
    fn is_linear_on_many_identical_strings() {
        let many: Vec<Value> = (0..200_000).map(|i| json!(format!("t{i}"))).collect();
        assert_eq!(duplicate(&many), None);
    }
}
