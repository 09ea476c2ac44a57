//! The item: its typed form, the full validity check, and the create path.
//!
//! [`check_item`] is the single definition of "valid item" used by every
//! surface (create, batch validation, gateway): the JSON Schema plus the rules
//! a schema cannot express. [`check_new_item`] adds what only applies when a
//! client creates an item, and hands back a typed [`Item`] so that storage code
//! never touches unchecked JSON.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use unicode_normalization::is_nfc;

use crate::issue::{Issue, show, sort_issues};
use crate::json::{DUPLICATE_MEMBER, from_slice_strict};
use crate::keys::TrustedKeys;
use crate::problem::{Problem, types};
use crate::schema::schema_issues;
use crate::signing::verify_item_signature;

/// A validated item, typed.
///
/// Only ever built from JSON that passed [`check_item`], so its invariants
/// (lengths, tag syntax, currency code, signature) hold. Serializes with the
/// members in a fixed order (id, name, description, tags, price, created_at,
/// signature), skipping absent ones and empty `tags`, so stored and returned
/// items are byte-stable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Identifier; `None` until the server assigns one on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// 1..=200 code points, NFC, no control characters.
    pub name: String,
    /// At most 4000 code points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// At most 16 distinct tags matching `^[a-z0-9-]{1,32}$`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Optional price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    /// RFC 3339 creation time, assigned by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Optional Ed25519 signature by the author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

/// A price in minor units of an ISO 4217 currency.
///
/// Integer minor units, because binary floating point cannot represent most
/// decimal prices exactly.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Amount in the currency's minor unit (e.g. cents); at most 2^53 - 1 so
    /// that it is exact in every JSON implementation and in the RFC 8785
    /// signing payload (which formats numbers as IEEE 754 doubles).
    pub amount_cents: u64,
    /// Active ISO 4217 alphabetic code, e.g. `"EUR"`.
    pub currency: String,
}

/// An Ed25519 signature by the item's author, as carried in JSON.
///
/// Kept in its base64 wire form so that a stored item re-serializes to exactly
/// what was verified.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Standard base64 of the 32-byte public key.
    pub public_key: String,
    /// Standard base64 of the 64-byte signature.
    pub value: String,
}

/// Check one JSON value as an item: schema + NFC + signature (+ allow-list).
///
/// Returns every problem found, not just the first, so a client can fix an
/// item in one round trip. Issues are sorted by path, then code, then message,
/// and paths are JSON Pointers relative to the item. An empty vector means
/// valid.
pub fn check_item(value: &Value, trusted: &TrustedKeys) -> Vec<Issue> {
    let mut issues = schema_issues(value);

    if let Some(name) = value.get("name").and_then(Value::as_str)
        && !is_nfc(name)
    {
        issues.push(Issue::new(
            "/name",
            "not-nfc",
            "must be in Unicode Normalization Form C (NFC): use precomposed characters, \
             e.g. \"é\" as U+00E9 rather than \"e\" followed by U+0301",
        ));
    }

    plain_integer(value, "/id", &mut issues);
    plain_integer(value, "/price/amount_cents", &mut issues);
    issues.extend(verify_item_signature(value, trusted));

    sort_issues(&mut issues);
    issues.dedup();
    issues
}

/// JSON Schema counts `1.0` and `1e2` as integers, but they are not integer
/// *literals* and would not round-trip through `u32`/`u64`. Flag a number that
/// the schema accepted as a whole number yet is not an unsigned integer
/// literal. Out-of-range and fractional numbers are left to the schema.
fn plain_integer(item: &Value, pointer: &str, issues: &mut Vec<Issue>) {
    let Some(Value::Number(n)) = item.pointer(pointer) else {
        return;
    };
    if n.is_u64() {
        return;
    }
    if let Some(f) = n.as_f64()
        && f >= 0.0
        && f.fract() == 0.0
        && f < 18_446_744_073_709_551_616.0
    {
        issues.push(Issue::new(
            pointer,
            "type",
            format!("must be written as a plain integer without fraction or exponent, got {n}"),
        ));
    }
}

/// Why a create request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The body is not JSON, or not a JSON object. The message says where
    /// (serde_json's line and column) so a client can find the typo.
    Malformed(String),
    /// The body is a JSON object but not a valid new item.
    Invalid(Vec<Issue>),
}

impl Rejection {
    /// The RFC 9457 response for this rejection: always 400, with the issues
    /// in the `errors` extension member.
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::Malformed(message) => {
                Problem::new(400, "Malformed request body", message.clone())
                    .with_type(types::MALFORMED_BODY)
            }
            Self::Invalid(issues) => {
                Problem::new(400, "Invalid item", summarize("the item", issues))
                    .with_type(types::INVALID_ITEM)
                    .with_serialized("errors", issues)
            }
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(m) => f.write_str(m),
            Self::Invalid(issues) => f.write_str(&summarize("the item", issues)),
        }
    }
}

impl std::error::Error for Rejection {}

/// One-line human summary of a list of issues, naming the first one.
pub(crate) fn summarize(subject: &str, issues: &[Issue]) -> String {
    let Some(first) = issues.first() else {
        return format!("{subject} is valid");
    };
    let at = if first.path.is_empty() {
        "the item".to_owned()
    } else {
        first.path.clone()
    };
    let more = match issues.len() {
        1 => String::new(),
        2 => " (and 1 more problem)".to_owned(),
        n => format!(" (and {} more problems)", n - 1),
    };
    let count = if issues.len() == 1 {
        "1 problem".to_owned()
    } else {
        format!("{} problems", issues.len())
    };
    format!("{subject} has {count}: {at}: {}{more}", first.message)
}

/// The create path: parse the body, check it, refuse a client-sent
/// `created_at`, and return the typed item.
///
/// Bounding the body to [`crate::MAX_ITEM_BYTES`] is the caller's job (only it
/// sees the stream). `created_at` is refused with code `server-assigned`
/// rather than silently overwritten, so a client that thinks it controls the
/// timestamp learns otherwise.
pub fn check_new_item(body: &[u8], trusted: &TrustedKeys) -> Result<Item, Rejection> {
    let value = parse_object(body, "request body").map_err(Rejection::Malformed)?;
    let mut issues = check_item(&value, trusted);
    if let Some(created_at) = value.get("created_at") {
        issues.push(Issue::new(
            "/created_at",
            "server-assigned",
            format!(
                "is assigned by the server and must not be sent when creating an item (got {})",
                show(created_at)
            ),
        ));
        sort_issues(&mut issues);
    }
    if !issues.is_empty() {
        return Err(Rejection::Invalid(issues));
    }
    // check_item guarantees the shape; this conversion failing would be a bug
    // in the schema, reported as an issue rather than a panic.
    serde_json::from_value(value).map_err(|e| {
        Rejection::Invalid(vec![Issue::new(
            "",
            "type",
            format!("cannot be read as an item: {e}"),
        )])
    })
}

/// Parses `body` as one JSON value that must be an object, with messages
/// that tell a human where the problem is.
///
/// Objects with a duplicate member name, at any depth, are refused (see
/// [`crate::json`]), as is nesting deeper than serde_json's recursion limit.
pub(crate) fn parse_object(body: &[u8], what: &str) -> Result<Value, String> {
    let value = from_slice_strict(body).map_err(|e| describe_json_error(what, &e))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(format!(
            "{what} must be a JSON object, found {}",
            crate::issue::type_name(&value)
        ))
    }
}

fn describe_json_error(what: &str, e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof if e.line() == 1 && e.column() == 0 => {
            format!("{what} is empty; expected a JSON object")
        }
        Category::Eof => format!("{what} is not valid JSON: unexpected end of input ({e})"),
        Category::Data if e.to_string().starts_with(DUPLICATE_MEMBER) => format!(
            "{what} has a {e}; a member name may appear only once per object, because \
             a signed item must read the same to every JSON parser"
        ),
        Category::Syntax | Category::Data | Category::Io => {
            format!("{what} is not valid JSON: {e}")
        }
    }
}
