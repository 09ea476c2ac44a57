//! RFC 9457 problem details, shared by the components and the gateway.
//!
//! Every error response of the system has the same machine-readable shape,
//! whichever process produced it, so clients need one error handler and the
//! gateway can pass a component's problem through unchanged or produce an
//! identical one itself.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

/// Problem type URIs used by this crate, shared so that every surface names the
/// same failure the same way.
pub mod types {
    /// The item is well-formed JSON but breaks one or more rules.
    pub const INVALID_ITEM: &str = "https://items.example/problems/invalid-item";
    /// The body is not JSON, not an object, or not the expected envelope.
    pub const MALFORMED_BODY: &str = "https://items.example/problems/malformed-body";
    /// The body exceeds the byte limit.
    pub const BODY_TOO_LARGE: &str = "https://items.example/problems/body-too-large";
    /// The batch has more items than allowed.
    pub const TOO_MANY_ITEMS: &str = "https://items.example/problems/too-many-items";
}

/// An RFC 9457 problem details object.
///
/// Built with [`Problem::new`] and the `with*` methods, rendered with
/// [`Problem::to_json`]. Members come out in a fixed order (`type`, `title`,
/// `status`, `detail`, then extensions in insertion order) and extension
/// values whose shape is a `serde_json::Value` are written in RFC 8785
/// canonical form, so the bytes do not depend on `serde_json`'s
/// `preserve_order` feature being on in one build and off in another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    type_uri: String,
    title: String,
    status: u16,
    detail: String,
    /// (name, JSON text) in insertion order; names are unique.
    extensions: Vec<(String, String)>,
}

/// Member names defined by RFC 9457 itself; extensions may not shadow them.
const RESERVED: [&str; 5] = ["type", "title", "status", "detail", "instance"];

impl Problem {
    /// Media type of [`Problem::to_json`] output.
    pub const CONTENT_TYPE: &'static str = "application/problem+json";

    /// A problem with `type` `"about:blank"` (RFC 9457 §4.2.1: the problem has
    /// no semantics beyond the HTTP status).
    pub fn new(status: u16, title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            type_uri: "about:blank".to_owned(),
            title: title.into(),
            status,
            detail: detail.into(),
            extensions: Vec::new(),
        }
    }

    /// Sets the `type` URI identifying the kind of problem.
    pub fn with_type(mut self, uri: impl Into<String>) -> Self {
        self.type_uri = uri.into();
        self
    }

    /// Adds (or replaces) an extension member.
    ///
    /// The value is written in RFC 8785 canonical form (sorted object keys),
    /// see the type docs. Names reserved by RFC 9457 (`type`, `title`,
    /// `status`, `detail`, `instance`) are ignored so an extension can never
    /// contradict the standard members.
    pub fn with(self, key: &str, value: Value) -> Self {
        let json =
            serde_json_canonicalizer::to_string(&value).unwrap_or_else(|_| "null".to_owned());
        self.with_json(key, json)
    }

    /// Adds (or replaces) an extension member from any serializable value,
    /// keeping its own field order (e.g. [`crate::Issue`] as
    /// `path, code, message`).
    ///
    /// Use this for derived `Serialize` structs, whose field order is fixed at
    /// compile time; use [`Problem::with`] for ad-hoc `serde_json::Value`s.
    pub fn with_serialized<T: Serialize + ?Sized>(self, key: &str, value: &T) -> Self {
        let json = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
        self.with_json(key, json)
    }

    fn with_json(mut self, key: &str, json: String) -> Self {
        if RESERVED.contains(&key) {
            return self;
        }
        match self.extensions.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = json,
            None => self.extensions.push((key.to_owned(), json)),
        }
        self
    }

    /// The HTTP status code, for the response line.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The `type` URI.
    pub fn type_uri(&self) -> &str {
        &self.type_uri
    }

    /// The short, human-readable summary of the problem type.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The human-readable explanation of this occurrence.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The response body: compact JSON with members `type`, `title`, `status`,
    /// `detail`, then the extensions in insertion order.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = String::with_capacity(128 + self.detail.len());
        out.push_str("{\"type\":");
        push_json_string(&mut out, &self.type_uri);
        out.push_str(",\"title\":");
        push_json_string(&mut out, &self.title);
        let _ = write!(out, ",\"status\":{}", self.status);
        out.push_str(",\"detail\":");
        push_json_string(&mut out, &self.detail);
        for (key, json) in &self.extensions {
            out.push(',');
            push_json_string(&mut out, key);
            out.push(':');
            out.push_str(json);
        }
        out.push('}');
        out.into_bytes()
    }
}

fn push_json_string(out: &mut String, s: &str) {
    // Serializing a &str cannot fail.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn minimal_problem_has_the_standard_members_in_order() {
        let p = Problem::new(404, "Not Found", "no item with id 7");
        assert_eq!(p.status(), 404);
        assert_eq!(
            String::from_utf8(p.to_json()).unwrap(),
            r#"{"type":"about:blank","title":"Not Found","status":404,"detail":"no item with id 7"}"#
        );
        assert_eq!(Problem::CONTENT_TYPE, "application/problem+json");
    }

    #[test]
    fn extensions_follow_in_insertion_order_and_replace() {
        let p = Problem::new(413, "Too big", "d")
            .with_type("https://x.example/p")
            .with("limit", json!(16))
            .with("b", json!({"z": 1, "a": [true, null]}))
            .with("limit", json!(17))
            .with("status", json!(200))
            .with("type", json!("evil"));
        assert_eq!(
            String::from_utf8(p.to_json()).unwrap(),
            r#"{"type":"https://x.example/p","title":"Too big","status":413,"detail":"d","limit":17,"b":{"a":[true,null],"z":1}}"#
        );
    }

    #[test]
    fn strings_are_escaped() {
        let p = Problem::new(400, "a\"b", "line\nbreak \u{1}");
        let v: Value = serde_json::from_slice(&p.to_json()).unwrap();
        assert_eq!(v["title"], "a\"b");
        assert_eq!(v["detail"], "line\nbreak \u{1}");
    }
}
