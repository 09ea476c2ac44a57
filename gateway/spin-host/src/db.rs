//! Opening the SQLite files host interfaces keep their data in.
//!
//! Both `fermyon:spin/sqlite` and the key-value store write to local SQLite
//! files, and both owe a component the same promise: a write that returned
//! survives a crash. One place sets that up, so the two cannot drift apart.

use std::path::Path;
use std::time::Duration;

/// How long a statement waits for another connection's write lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a database file in WAL mode with `synchronous=FULL` and a busy
/// timeout. Blocking: call it on the blocking pool.
///
/// FULL in WAL mode fsyncs the WAL at every commit, so a commit that
/// returned survives power loss (NORMAL may lose the last ones). Bundled
/// SQLite defaults to FULL already; this does not rely on how it was
/// compiled.
pub(crate) fn open(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // `journal_mode` returns a row, so it is a query, not an execute.
    let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}
