//! Server-assigned ids that a client cannot exhaust with one request.
//!
//! The rule is "one more than the largest id in use", which keeps ids dense
//! and increasing. Alone it breaks as soon as anyone creates the item with
//! id 4294967295 (`u32::MAX`, which clients may do): max + 1 no longer fits
//! and every later create without an id would fail. So when the top id is
//! taken, the ids at the very top that are taken in a row (usually just
//! that one) are stepped over: we walk down from `u32::MAX` to the first
//! free id `c`, at most [`TOP_RUN_SEARCH`] steps, and assign one more than
//! the largest id below `c`. Numbering then carries on after the ordinary
//! ids as if the stray top ids were not there, and it stays the smallest
//! unused id above them.
//!
//! The walk is bounded so that a create's cost (and how long it holds the
//! write lock) does not grow with what other clients did: a run of more
//! than [`TOP_RUN_SEARCH`] consecutive taken ids at the top can only come
//! from clients choosing them on purpose, and then the answer is a 507
//! problem telling the client to choose its id too. Free ids may still
//! exist lower down; searching all of them would be unbounded.
//!
//! Must run inside the write transaction that inserts the row, so the id
//! cannot be taken between choosing and inserting it.

use spin_sdk::sqlite::{Connection, Error, Value};

/// The largest item id.
pub const MAX_ID: u32 = u32::MAX;

/// How many consecutive taken ids below `u32::MAX` are stepped over at most.
pub const TOP_RUN_SEARCH: u32 = 10_000;

/// The outcome of choosing an id.
#[derive(Debug, PartialEq, Eq)]
pub enum NextId {
    /// Free, and the one to use.
    Free(u32),
    /// The top [`TOP_RUN_SEARCH`] ids are all taken; no id was chosen.
    Exhausted,
}

/// max + 1 while it fits; `NULL` when the top id is taken. 1 in an empty table.
const AFTER_MAX: &str = "SELECT CASE WHEN m < 4294967295 THEN m + 1 END \
    FROM (SELECT COALESCE(MAX(id), 0) AS m FROM items)";

/// With the top id taken: walks down the run of taken ids ending at
/// `u32::MAX` (`top` holds each taken id and, last, the first free one,
/// at most `?` rows), then answers one more than the largest id below the
/// free one. No row when the walk ended on a taken id (the bound was hit).
const BELOW_TOP_RUN: &str = "WITH RECURSIVE top(id) AS (\
        SELECT 4294967295 \
        UNION ALL \
        SELECT top.id - 1 FROM top \
        WHERE top.id > 1 AND EXISTS (SELECT 1 FROM items WHERE items.id = top.id) \
        LIMIT ?\
    ) \
    SELECT COALESCE((SELECT MAX(items.id) FROM items WHERE items.id < free.id), 0) + 1 \
    FROM (SELECT MIN(id) AS id FROM top) AS free \
    WHERE NOT EXISTS (SELECT 1 FROM items WHERE items.id = free.id)";

/// Chooses the id for an item created without one.
pub fn next_id(db: &Connection) -> Result<NextId, Error> {
    if let Some(id) = first_u32(&db.execute(AFTER_MAX, &[])?) {
        return Ok(NextId::Free(id));
    }
    // `TOP_RUN_SEARCH` taken ids plus the free one after them.
    let rows = db.execute(
        BELOW_TOP_RUN,
        &[Value::Integer(i64::from(TOP_RUN_SEARCH) + 1)],
    )?;
    Ok(first_u32(&rows).map_or(NextId::Exhausted, NextId::Free))
}

/// The first column of the first row, if it is an integer that fits a u32.
fn first_u32(result: &spin_sdk::sqlite::QueryResult) -> Option<u32> {
    result.rows.first().and_then(|row| row.get::<u32>(0))
}
