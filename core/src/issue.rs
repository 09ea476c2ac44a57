//! The unit of feedback: one problem with one item.
//!
//! Every check in this crate — JSON Schema, Unicode, signatures, batch-level
//! duplicates — reports in the same shape, so clients need exactly one way to
//! display errors and tests can compare whole results.

use serde::Serialize;

/// One problem with one item.
///
/// Serialized as `{"path": "/json/pointer", "code": "...", "message": "..."}`.
/// `path` is a JSON Pointer (RFC 6901) *relative to the item* (`""` is the
/// item itself), so the same issue reads the same whether the item came alone
/// or inside a batch. For a missing or unexpected member the pointer names that
/// member. `code` is a stable machine-readable token that clients may switch
/// on; `message` is for humans and may be reworded.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// JSON Pointer to the offending value, relative to the item.
    pub path: String,
    /// Stable machine-readable error code, e.g. `"max-length"`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl Issue {
    /// Builds an issue; a convenience so checks read as one line each.
    pub fn new(
        path: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Sorts issues by path, then code, then message.
///
/// The checks run in an order that depends on library internals (JSON Schema
/// keyword evaluation order, map iteration order under different `serde_json`
/// features); sorting makes the output depend only on the input, which is
/// what makes the components and the gateway byte-identical.
pub fn sort_issues(issues: &mut [Issue]) {
    issues.sort_by(|a, b| {
        a.path
            .cmp(&b.path)
            .then_with(|| a.code.cmp(&b.code))
            .then_with(|| a.message.cmp(&b.message))
    });
}

/// Appends one reference token to a JSON Pointer, escaping `~` and `/`
/// (RFC 6901 §3), because member names are client-controlled.
pub fn pointer_push(base: &str, token: &str) -> String {
    let mut out = String::with_capacity(base.len() + token.len() + 1);
    out.push_str(base);
    out.push('/');
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

/// Renders a client value for a message: scalars as JSON, containers by kind,
/// long strings truncated.
///
/// Messages must stay short (a 4000-character description must not be echoed
/// back) and must not depend on map iteration order, so objects and arrays
/// are never rendered in full.
pub fn show(value: &serde_json::Value) -> String {
    use serde_json::Value;
    const MAX_CHARS: usize = 40;
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            if s.chars().count() <= MAX_CHARS {
                serde_json::Value::String(s.clone()).to_string()
            } else {
                let head: String = s.chars().take(MAX_CHARS).collect();
                let quoted = serde_json::Value::String(head).to_string();
                format!("{}…\"", &quoted[..quoted.len() - 1])
            }
        }
        Value::Array(a) => format!("an array of {} element{}", a.len(), plural(a.len())),
        Value::Object(o) => format!("an object with {} member{}", o.len(), plural(o.len())),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Names the JSON type of a value the way JSON Schema does, for "expected X,
/// found Y" messages.
pub fn type_name(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointer_escapes_tilde_and_slash() {
        assert_eq!(pointer_push("", "a/b~c"), "/a~1b~0c");
        assert_eq!(pointer_push("/x", "0"), "/x/0");
    }

    #[test]
    fn show_truncates_long_strings_and_hides_containers() {
        let long = "é".repeat(100);
        let shown = show(&json!(long));
        assert!(shown.starts_with('"') && shown.ends_with("…\""));
        assert_eq!(shown.chars().count(), 40 + 3);
        assert_eq!(show(&json!([1, 2])), "an array of 2 elements");
        assert_eq!(show(&json!({"a": 1})), "an object with 1 member");
        assert_eq!(show(&json!("a\"b")), r#""a\"b""#);
    }

    #[test]
    fn sorting_is_by_path_code_message() {
        let mut v = vec![
            Issue::new("/name", "b", "x"),
            Issue::new("", "z", "x"),
            Issue::new("/name", "a", "y"),
            Issue::new("/name", "a", "x"),
        ];
        sort_issues(&mut v);
        let got: Vec<_> = v
            .iter()
            .map(|i| (i.path.as_str(), i.code.as_str(), i.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("", "z", "x"),
                ("/name", "a", "x"),
                ("/name", "a", "y"),
                ("/name", "b", "x")
            ]
        );
    }
}
