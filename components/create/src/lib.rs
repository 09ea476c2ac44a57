//! `create`: stores one new item.
//!
//! Route `/create/...`; the gateway maps the public `POST /items` here.
//! The body is checked by [`items_core::check_new_item`] (the same rules the
//! gateway and the batch validator apply), the server stamps `created_at`
//! and, when the client sent none, assigns the id.

use http_util::{BodyError, store};
use items_core::{Item, MAX_ITEM_BYTES, Problem, check_new_item, problem::types};
use serde_json::json;
use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;
use spin_sdk::sqlite::Value;

mod clock;

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
    insert(item)
}

/// Inserts the item and answers 201 with the stored item, or 409 / 507 / 500.
fn insert(mut item: Item) -> Response {
    let doc = match store::doc(&item) {
        Ok(doc) => doc,
        Err(e) => return http_util::internal_error("the item could not be stored", &e),
    };
    let db = match store::open() {
        Ok(db) => db,
        Err(e) => return http_util::internal_error("the item store is unavailable", &e),
    };
    let name = Value::Text(item.name.clone());
    // Each insert is one statement, so SQLite's write lock makes it atomic:
    // two clients racing for the same id (or for the next free one) cannot
    // both succeed, and no check-then-insert window exists.
    let result = match item.id {
        Some(id) => db.execute(
            "INSERT INTO items (id, name, doc) VALUES (?, ?, ?) ON CONFLICT(id) DO NOTHING RETURNING id",
            &[Value::Integer(i64::from(id)), name, Value::Text(doc)],
        ),
        // The next id after the largest one in use (1 in an empty table),
        // as long as it still fits an item id (u32).
        None => db.execute(
            "INSERT INTO items (id, name, doc) \
             SELECT next, ?, ? FROM (SELECT COALESCE(MAX(id), 0) + 1 AS next FROM items) \
             WHERE next <= 4294967295 RETURNING id",
            &[name, Value::Text(doc)],
        ),
    };
    let rows = match result {
        Ok(result) => result.rows,
        Err(e) => return http_util::internal_error("the item could not be stored", &e),
    };
    let stored_id = rows
        .first()
        .and_then(|row| row.get::<i64>(0))
        .and_then(|id| u32::try_from(id).ok());
    let Some(id) = stored_id else {
        return match item.id {
            Some(id) => conflict(id),
            None => http_util::problem(&Problem::new(
                507,
                "Insufficient Storage",
                "every item id up to 4294967295 is taken at the top end; create the item with an explicit free id",
            )),
        };
    };
    item.id = Some(id);
    match serde_json::to_vec(&item) {
        Ok(json) => {
            let mut response = http_util::json(201, json);
            response.set_header("location", format!("/items/{id}"));
            response
        }
        Err(e) => http_util::internal_error("the stored item could not be serialized", &e),
    }
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
