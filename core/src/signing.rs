//! Ed25519 signatures over RFC 8785 canonical JSON.
//!
//! A signature must survive any re-serialization that keeps the item's
//! meaning: key order, whitespace and number spelling differ between JSON
//! libraries (and between this crate's native and Wasm builds if a feature
//! flag differs). The JSON Canonicalization Scheme (JCS, RFC 8785) fixes one
//! byte sequence per JSON value, so we sign those bytes.
//!
//! The signed payload is the item *without* its `signature` member (a
//! signature cannot cover itself) and *without* `created_at`, which the
//! server assigns after the client has signed.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::Value;

use crate::issue::Issue;
use crate::keys::{TrustedKeys, decode_public_key};

/// Members excluded from the signed payload, see the module docs.
pub const UNSIGNED_MEMBERS: [&str; 2] = ["signature", "created_at"];

/// Why a payload could not be produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SigningError {
    /// Only JSON objects are items; anything else has no members to sign.
    NotAnObject,
    /// The canonicalizer refused the value (e.g. a non-finite number, which
    /// JSON text cannot contain but a hand-built value might).
    Canonicalization(String),
}

impl fmt::Display for SigningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnObject => f.write_str("only a JSON object can be signed as an item"),
            Self::Canonicalization(e) => write!(f, "cannot canonicalize the item (RFC 8785): {e}"),
        }
    }
}

impl std::error::Error for SigningError {}

/// The exact bytes an item's signature covers: the RFC 8785 canonical JSON
/// of the item with `signature` and `created_at` removed.
///
/// Public so that clients and tools in Rust can sign exactly what the server
/// verifies.
pub fn signing_payload(item: &Value) -> Result<Vec<u8>, SigningError> {
    let object = item.as_object().ok_or(SigningError::NotAnObject)?;
    // Borrow instead of cloning the item; JCS sorts the members itself.
    let signed: BTreeMap<&str, &Value> = object
        .iter()
        .filter(|(k, _)| !UNSIGNED_MEMBERS.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    serde_json_canonicalizer::to_vec(&signed)
        .map_err(|e| SigningError::Canonicalization(e.to_string()))
}

/// Signs `item` with `key` and stores the result in its `signature` member
/// (replacing any previous one).
///
/// Used by tests, tools and Rust clients; the services only verify.
pub fn sign_item(item: &mut Value, key: &SigningKey) -> Result<(), SigningError> {
    let payload = signing_payload(item)?;
    let signature = key.sign(&payload);
    let object = item.as_object_mut().ok_or(SigningError::NotAnObject)?;
    object.insert(
        "signature".to_owned(),
        serde_json::json!({
            "public_key": STANDARD.encode(key.verifying_key().to_bytes()),
            "value": STANDARD.encode(signature.to_bytes()),
        }),
    );
    Ok(())
}

/// Checks the item's `signature` member, if any, and returns the problems.
///
/// * `bad-public-key` (`/signature/public_key`): not base64 of 32 bytes, not a
///   curve point, or a weak key.
/// * `bad-signature-encoding` (`/signature/value`): not base64 of 64 bytes.
/// * `untrusted-key` (`/signature/public_key`): well-formed but not on the
///   configured allow-list.
/// * `signature-mismatch` (`/signature/value`): does not verify (strictly,
///   with `verify_strict`, which rejects malleable signatures) over
///   [`signing_payload`].
///
/// Shape problems (missing members, wrong types) are the schema's to report;
/// this function stays silent about them so no problem is reported twice.
pub fn verify_item_signature(item: &Value, trusted: &TrustedKeys) -> Vec<Issue> {
    let mut issues = Vec::new();
    let Some(sig) = item.get("signature").and_then(Value::as_object) else {
        return issues;
    };

    let key = match sig
        .get("public_key")
        .and_then(Value::as_str)
        .map(decode_public_key)
    {
        Some(Ok(key)) => Some(key),
        Some(Err(reason)) => {
            issues.push(Issue::new(
                "/signature/public_key",
                "bad-public-key",
                format!("is not a usable Ed25519 public key: {reason}"),
            ));
            None
        }
        None => None,
    };

    let signature = match sig
        .get("value")
        .and_then(Value::as_str)
        .map(decode_signature)
    {
        Some(Ok(s)) => Some(s),
        Some(Err(reason)) => {
            issues.push(Issue::new(
                "/signature/value",
                "bad-signature-encoding",
                format!("is not an encoded Ed25519 signature: {reason}"),
            ));
            None
        }
        None => None,
    };

    if let Some(key) = &key
        && !trusted.allows(key)
    {
        issues.push(Issue::new(
            "/signature/public_key",
            "untrusted-key",
            "the signing key is not in this service's list of trusted keys",
        ));
    }

    if let (Some(key), Some(signature)) = (key, signature) {
        match signing_payload(item) {
            Ok(payload) => {
                if key.verify_strict(&payload, &signature).is_err() {
                    issues.push(Issue::new(
                        "/signature/value",
                        "signature-mismatch",
                        "does not verify: the item was changed after signing, or was signed with another key \
                         (the signature covers the RFC 8785 canonical JSON of the item without \
                         \"signature\" and \"created_at\")",
                    ));
                }
            }
            Err(e) => issues.push(Issue::new("", "signature-mismatch", e.to_string())),
        }
    }
    issues
}

fn decode_signature(b64: &str) -> Result<ed25519_dalek::Signature, String> {
    let bytes = STANDARD
        .decode(b64)
        .map_err(|e| format!("not standard base64 with padding ({e})"))?;
    let bytes: [u8; 64] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "decodes to {} bytes, an Ed25519 signature has 64",
            bytes.len()
        )
    })?;
    Ok(ed25519_dalek::Signature::from_bytes(&bytes))
}
