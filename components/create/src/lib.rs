//! `create`: stores one new item.
//!
//! Route `/create/...`; the gateway maps the public `POST /items` here.
//! The body is checked by [`items_core::check_new_item`] (the same rules the
//! gateway and the batch validator apply), the server stamps `created_at`
//! and, when the client sent none, assigns the id ([`ids`]). An
//! `Idempotency-Key` header makes a retry safe ([`idempotency`]).
//!
//! Everything a create writes (the item, the key) is one `BEGIN IMMEDIATE`
//! transaction, and the 201 is sent only after its `COMMIT` returned: an
//! acknowledged item is on disk (the host runs SQLite with
//! `synchronous=FULL`), and an unacknowledged one is either fully there or
//! not at all.

use http_util::{BodyError, store};
use items_core::{Item, MAX_ITEM_BYTES, Problem, check_new_item, problem::types};
use serde_json::json;
use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;
use spin_sdk::sqlite::{Connection, Error, Value};

mod clock;
mod idempotency;
mod ids;

#[http_component]
fn handle(req: IncomingRequest) -> Response {
    let info = http_util::path_info(&req, "/create");
    if !(info.is_empty() || info == "/") {
        return http_util::not_found(format!("no resource at /create{info}"));
    }
    if req.method() != Method::Post {
        return http_util::method_not_allowed(&req.method(), "POST");
    }
    if let Err(response) = http_util::require_json(&req) {
        return response;
    }
    let key = match idempotency::from_request(&req) {
        Ok(key) => key,
        Err(problem) => return http_util::problem(&problem),
    };
    let trusted = match http_util::trusted_keys() {
        Ok(keys) => keys,
        Err(response) => return response,
    };
    let body = match http_util::read_body(req, MAX_ITEM_BYTES) {
        Ok(body) => body,
        Err(BodyError::TooLarge(bytes)) => return too_large(bytes),
        Err(BodyError::Read(e)) => return http_util::unreadable_body(&e),
    };
    let mut item = match check_new_item(&body, &trusted) {
        Ok(item) => item,
        Err(rejection) => return http_util::problem(&rejection.to_problem()),
    };
    item.created_at = Some(clock::now_rfc3339());
    let key = key.map(|key| idempotency::Key {
        key,
        body_sha256: idempotency::fingerprint(&body),
    });
    insert(item, key.as_ref())
}

/// What a create transaction decided.
enum Outcome {
    /// Stored now: the item's id and public JSON.
    Created(u32, Vec<u8>),
    /// Stored by an earlier request with the same key and body.
    Replayed(u32, Vec<u8>),
    /// The explicit id is taken.
    Conflict(u32),
    /// No id could be chosen (see [`ids`]).
    IdsExhausted,
    /// The key was used with another body.
    KeyReused(String),
}

/// Why a create transaction failed.
enum Failure {
    Db(Error),
    /// A stored row does not read back (corrupt data).
    Corrupt(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Db(e)
    }
}

/// Stores the item (and the key) and answers 201, or 409 / 422 / 507 / 500.
fn insert(item: Item, key: Option<&idempotency::Key>) -> Response {
    let doc = match store::doc(&item) {
        Ok(doc) => doc,
        Err(e) => return http_util::internal_error("the item could not be stored", &e),
    };
    let db = match open(key.is_some()) {
        Ok(db) => db,
        Err(e) => return http_util::internal_error("the item store is unavailable", &e),
    };
    match in_transaction(&db, |db| store_item(db, &item, &doc, key)) {
        Ok(Outcome::Created(id, json)) => created(id, json, false),
        Ok(Outcome::Replayed(id, json)) => created(id, json, true),
        Ok(Outcome::Conflict(id)) => conflict(id),
        Ok(Outcome::IdsExhausted) => ids_exhausted(),
        Ok(Outcome::KeyReused(key)) => http_util::problem(&idempotency::reused(&key)),
        Err(Failure::Db(e)) => http_util::internal_error("the item could not be stored", &e),
        Err(Failure::Corrupt(e)) => http_util::internal_error("a stored item is corrupt", &e),
    }
}

/// The item store, plus the key table when the request has a key.
fn open(with_keys: bool) -> Result<Connection, Error> {
    let db = store::open()?;
    if with_keys {
        db.execute(idempotency::CREATE_TABLE, &[])?;
    }
    Ok(db)
}

/// Runs `work` in a write transaction taken up front (`BEGIN IMMEDIATE`:
/// creates queue for the write lock instead of failing on a stale read
/// snapshot), committing on `Ok` and rolling back on `Err`. An `Outcome`
/// that stored nothing commits an empty transaction, which is harmless.
fn in_transaction(
    db: &Connection,
    work: impl FnOnce(&Connection) -> Result<Outcome, Failure>,
) -> Result<Outcome, Failure> {
    db.execute("BEGIN IMMEDIATE", &[])?;
    match work(db) {
        Ok(outcome) => match db.execute("COMMIT", &[]) {
            Ok(_) => Ok(outcome),
            Err(e) => {
                // A failed COMMIT may leave the transaction open.
                let _ = db.execute("ROLLBACK", &[]);
                Err(Failure::Db(e))
            }
        },
        Err(failure) => {
            let _ = db.execute("ROLLBACK", &[]);
            Err(failure)
        }
    }
}

/// The body of the create transaction.
fn store_item(
    db: &Connection,
    item: &Item,
    doc: &str,
    key: Option<&idempotency::Key>,
) -> Result<Outcome, Failure> {
    if let Some(key) = key
        && let Some(earlier) = idempotency::find(db, &key.key)?
    {
        if earlier.body_sha256 != key.body_sha256 {
            return Ok(Outcome::KeyReused(key.key.clone()));
        }
        return stored_item(db, earlier.item_id).map(|(id, json)| Outcome::Replayed(id, json));
    }
    let id = match item.id {
        Some(id) => id,
        None => match ids::next_id(db)? {
            ids::NextId::Free(id) => id,
            ids::NextId::Exhausted => return Ok(Outcome::IdsExhausted),
        },
    };
    let inserted = db.execute(
        "INSERT INTO items (id, name, doc) VALUES (?, ?, ?) ON CONFLICT(id) DO NOTHING RETURNING id",
        &[
            Value::Integer(i64::from(id)),
            Value::Text(item.name.clone()),
            Value::Text(doc.to_owned()),
        ],
    )?;
    if inserted.rows.is_empty() {
        return Ok(Outcome::Conflict(id));
    }
    if let Some(key) = key {
        let created_at = item.created_at.as_deref().unwrap_or_default();
        idempotency::record(db, key, id, created_at)?;
    }
    let stored = Item {
        id: Some(id),
        ..item.clone()
    };
    serde_json::to_vec(&stored)
        .map(|json| Outcome::Created(id, json))
        .map_err(|e| Failure::Corrupt(format!("item {id} cannot be serialized: {e}")))
}

/// An item's public JSON, read back from its row.
fn stored_item(db: &Connection, id: u32) -> Result<(u32, Vec<u8>), Failure> {
    let rows = db
        .execute(
            "SELECT id, doc FROM items WHERE id = ?",
            &[Value::Integer(i64::from(id))],
        )?
        .rows;
    match rows.first().map(|row| row.values.as_slice()) {
        Some([id, doc]) => store::item_json(id, doc).map_err(Failure::Corrupt),
        _ => Err(Failure::Corrupt(format!(
            "the idempotency key points at item {id}, which is not stored"
        ))),
    }
}

/// 201 with the item and its `Location`; a replay says so.
fn created(id: u32, json: Vec<u8>, replayed: bool) -> Response {
    let mut response = http_util::json(201, json);
    response.set_header("location", format!("/items/{id}"));
    if replayed {
        response.set_header("idempotent-replayed", "true");
    }
    response
}

fn ids_exhausted() -> Response {
    http_util::problem(
        &Problem::new(
            507,
            "Insufficient Storage",
            format!(
                "no free item id was found: the {} ids below 4294967295 are all taken; \
                 create the item with an explicit free id",
                ids::TOP_RUN_SEARCH
            ),
        )
        .with_type("https://items.example/problems/ids-exhausted")
        .with("max_id", json!(ids::MAX_ID)),
    )
}

fn conflict(id: u32) -> Response {
    let p = Problem::new(
        409,
        "Conflict",
        format!("an item with id {id} already exists"),
    )
    .with_type("https://items.example/problems/duplicate-id")
    .with("id", json!(id));
    let mut response = http_util::problem(&p);
    response.set_header("location", format!("/items/{id}"));
    response
}

fn too_large(bytes: usize) -> Response {
    http_util::problem(
        &Problem::new(
            413,
            "Request body too large",
            format!(
                "the request body is at least {bytes} bytes; an item may be at most {MAX_ITEM_BYTES} bytes ({} MiB)",
                MAX_ITEM_BYTES >> 20
            ),
        )
        .with_type(types::BODY_TOO_LARGE)
        .with("max_bytes", json!(MAX_ITEM_BYTES)),
    )
}
