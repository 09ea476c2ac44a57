//! `Idempotency-Key` on `POST /items`: a retried create returns the first
//! answer instead of creating a second item.
//!
//! A client that timed out (or lost the connection) cannot know whether its
//! create committed; sending the same request again with the same key is
//! then safe. The key and a SHA-256 of the request body are stored in the
//! same transaction as the item, so either both exist or neither does:
//!
//! * same key, same body: the original 201 again (same `Location`, same
//!   body, `created_at` included), with `idempotent-replayed: true`;
//! * same key, another body: 422, the key is bound to its first request;
//! * no key: a plain create, as before.
//!
//! Keys belong to the database (shared by every client of it) and are kept
//! as long as the item: a retry is recognised however late it comes. Only
//! successful creates record a key; a request that failed can be retried
//! with the same key and is then simply tried again.

use items_core::Problem;
use serde_json::json;
use spin_sdk::http::IncomingRequest;
use spin_sdk::sqlite::{Connection, Error, Value};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// Problem type for a key reused with another body.
pub const KEY_REUSED: &str = "https://items.example/problems/idempotency-key-reused";
/// Problem type for a malformed key.
pub const INVALID_KEY: &str = "https://items.example/problems/invalid-idempotency-key";

/// Keys already used, with what they created. `item_id` is the item's id;
/// items are never deleted, so the row it points to stays.
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS idempotency_keys (\
    key TEXT PRIMARY KEY, \
    body_sha256 TEXT NOT NULL, \
    item_id INTEGER NOT NULL, \
    created_at TEXT NOT NULL)";

/// A validated key and the fingerprint of the request it came with.
pub struct Key {
    pub key: String,
    pub body_sha256: String,
}

/// The request's key, if it sent one: 1 to 255 visible ASCII characters
/// (`!` to `~`), given once. Anything else is a 400 problem.
pub fn from_request(req: &IncomingRequest) -> Result<Option<String>, Problem> {
    let values = req.headers().get(HEADER);
    match values.as_slice() {
        [] => Ok(None),
        [value] => parse(value).map(Some),
        _ => Err(invalid("the Idempotency-Key header may be given only once")),
    }
}

/// Checks one header value.
pub fn parse(value: &[u8]) -> Result<String, Problem> {
    if value.is_empty() || value.len() > MAX_KEY_LEN {
        return Err(invalid(&format!(
            "the Idempotency-Key must be 1 to {MAX_KEY_LEN} characters (got {})",
            value.len()
        )));
    }
    if !value.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(invalid(
            "the Idempotency-Key may only contain visible ASCII characters (! to ~, no spaces)",
        ));
    }
    // All ASCII, so this cannot fail; no panic path either way.
    String::from_utf8(value.to_vec()).map_err(|_| invalid("the Idempotency-Key is not ASCII"))
}

fn invalid(detail: &str) -> Problem {
    Problem::new(400, "Invalid Idempotency-Key", detail)
        .with_type(INVALID_KEY)
        .with("header", json!("Idempotency-Key"))
}

/// 422: the key was first used with another body.
pub fn reused(key: &str) -> Problem {
    Problem::new(
        422,
        "Idempotency-Key reused",
        "this Idempotency-Key was already used with a different request body; \
         use a new key for a new item",
    )
    .with_type(KEY_REUSED)
    .with("idempotency_key", json!(key))
}

/// The lowercase hex SHA-256 of the body.
pub fn fingerprint(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(body);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    hex
}

/// What an earlier use of a key created.
pub struct Earlier {
    pub body_sha256: String,
    pub item_id: u32,
}

/// Looks the key up (inside the create's transaction).
pub fn find(db: &Connection, key: &str) -> Result<Option<Earlier>, Error> {
    let result = db.execute(
        "SELECT body_sha256, item_id FROM idempotency_keys WHERE key = ?",
        &[Value::Text(key.to_owned())],
    )?;
    Ok(result.rows.first().and_then(|row| {
        Some(Earlier {
            body_sha256: row.get::<&str>(0)?.to_owned(),
            item_id: row.get::<u32>(1)?,
        })
    }))
}

/// Records the key for the item just inserted (same transaction).
pub fn record(db: &Connection, key: &Key, item_id: u32, created_at: &str) -> Result<(), Error> {
    db.execute(
        "INSERT INTO idempotency_keys (key, body_sha256, item_id, created_at) VALUES (?, ?, ?, ?)",
        &[
            Value::Text(key.key.clone()),
            Value::Text(key.body_sha256.clone()),
            Value::Integer(i64::from(item_id)),
            Value::Text(created_at.to_owned()),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_up_to_255() {
        assert_eq!(parse(b"abc-123_~!").unwrap(), "abc-123_~!");
        assert!(parse(&[b'k'; 255]).is_ok());
        assert_eq!(parse(&[b'k'; 256]).unwrap_err().status(), 400);
        assert_eq!(parse(b"").unwrap_err().status(), 400);
        assert_eq!(parse(b"a b").unwrap_err().status(), 400);
        assert_eq!(parse(b"a\tb").unwrap_err().status(), 400);
        assert_eq!(parse("é".as_bytes()).unwrap_err().status(), 400);
        assert_eq!(parse(b"a\x7f").unwrap_err().status(), 400);
    }

    #[test]
    fn fingerprint_is_sha256_hex() {
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
