//! The `items` table that `list` and `create` share through Spin's SQLite
//! API (`fermyon:spin/sqlite@2.0.0`, database `default`). It is the only
//! state they share; nothing is kept between requests. (`create` also keeps
//! an `idempotency_keys` table beside it, which `list` never reads.)
//!
//! Every table is created by the components themselves (`CREATE TABLE IF
//! NOT EXISTS` on each request), so a real `spin up` needs no migration step.
//!
//! The id lives only in the `id` column; `doc` is the item's JSON *without*
//! its id (everything else, `created_at` included), so a row can never
//! contradict itself. [`item_json`] puts the two back together.

use items_core::Item;
use spin_sdk::sqlite::{Connection, Error, Value};

/// Creates the table if it does not exist yet; run on every request because
/// a component keeps no state and cannot know whether it ran before.
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS items (\
    id INTEGER PRIMARY KEY, \
    name TEXT NOT NULL, \
    doc TEXT NOT NULL)";

/// Opens the `default` database and makes sure the table exists.
pub fn open() -> Result<Connection, Error> {
    let db = Connection::open_default()?;
    db.execute(CREATE_TABLE, &[])?;
    Ok(db)
}

/// The stored form of an item: its JSON without the id.
pub fn doc(item: &Item) -> Result<String, serde_json::Error> {
    let without_id = Item {
        id: None,
        ..item.clone()
    };
    serde_json::to_string(&without_id)
}

/// An item's public JSON from a row's `id` and `doc`, members in the fixed
/// order of [`Item`]. `Err` names what is wrong with a corrupt row.
pub fn item_json(id: &Value, doc: &Value) -> Result<(u32, Vec<u8>), String> {
    let id = match id {
        Value::Integer(n) => u32::try_from(*n).map_err(|_| format!("id {n} is out of range"))?,
        other => return Err(format!("id is not an integer: {other:?}")),
    };
    let Value::Text(doc) = doc else {
        return Err(format!("doc of item {id} is not text"));
    };
    let mut item: Item =
        serde_json::from_str(doc).map_err(|e| format!("doc of item {id} is not an item: {e}"))?;
    item.id = Some(id);
    let json =
        serde_json::to_vec(&item).map_err(|e| format!("item {id} cannot be serialized: {e}"))?;
    Ok((id, json))
}
