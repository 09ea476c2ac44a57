//! Reading request bodies as JSON, strictly: no duplicate member names.
//!
//! RFC 8259 leaves duplicate names to the parser, and parsers disagree: one
//! keeps the first value, `serde_json` keeps the last. Items are signed over
//! their canonical JSON, so a body with `"name"` twice could be verified with
//! one reading and stored or displayed with the other. Refusing such bodies
//! outright means every reader sees the same document.
//!
//! The check rides on serde's own machinery (a visitor that builds a
//! [`Value`]), so `serde_json` still does all the parsing: its recursion limit
//! (128 levels) turns hostile nesting into an error instead of a stack
//! overflow, and its errors carry line and column.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::issue::show;

/// Start of the error message for a duplicate member name, so callers can
/// word the rejection (serde_json appends " at line L column C").
pub(crate) const DUPLICATE_MEMBER: &str = "duplicate member name";

/// Parses one JSON document, refusing any object (at any depth) that has the
/// same member name twice.
pub(crate) fn from_slice_strict(body: &[u8]) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = StrictValue.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Deserializes any JSON value like `serde_json::Value` does, except that
/// duplicate member names are an error.
#[derive(Clone, Copy)]
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // As serde_json's own Value does; JSON text never yields NaN or ±inf.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut elements = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(element) = seq.next_element_seed(self)? {
            elements.push(element);
        }
        Ok(Value::Array(elements))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                // Reported as soon as the name is read, so serde_json's
                // position points at the duplicate.
                return Err(de::Error::custom(format_args!(
                    "{DUPLICATE_MEMBER} {}",
                    show(&Value::String(name))
                )));
            }
            let member = map.next_value_seed(self)?;
            members.insert(name, member);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_serde_json() {
        let text = br#"{"a": [1, -2, 3.5, 1e2, 18446744073709551616, true, null, "x\u00e9"], "b": {"c": {}}, "d": []}"#;
        assert_eq!(
            from_slice_strict(text).unwrap(),
            serde_json::from_slice::<Value>(text).unwrap()
        );
    }

    #[test]
    fn refuses_duplicates_at_any_depth_with_position() {
        for (text, name, line, column) in [
            (&br#"{"a": 1, "a": 2}"#[..], "\"a\"", 1, 12),
            (br#"{"a": {"b": 1,"c": 2,"b": 3}}"#, "\"b\"", 1, 24),
            (b"[{},\n {\"x\": 1, \"x\": 1}]", "\"x\"", 2, 13),
            (br#"{"a\u0062": 1, "ab": 2}"#, "\"ab\"", 1, 19),
        ] {
            let e = from_slice_strict(text).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("{DUPLICATE_MEMBER} {name}")),
                "{msg}"
            );
            assert_eq!((e.line(), e.column()), (line, column), "{msg}");
        }
        // The same name in different objects is fine.
        assert!(from_slice_strict(br#"{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]}"#).is_ok());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        let e = from_slice_strict(deep.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("recursion limit"), "{e}");
        let deep = "{\"a\":".repeat(100_000);
        assert!(from_slice_strict(deep.as_bytes()).is_err());
    }
}
