//! Long-lived SQLite connections, one small pool per database file.
//!
//! A component's `open` leases a connection for the life of its
//! `connection` resource: exclusive use keeps its transactions whole (one
//! request's `BEGIN` never captures another request's statements, as a
//! single shared connection would), and reuse saves opening the file, the
//! WAL-index mapping and the schema parse on every request, and keeps each
//! connection's prepared-statement cache warm.
//!
//! Nothing here may block an async worker: [`Database::checkout`] and
//! [`Lease::execute`] are called on the blocking pool, and dropping a
//! [`Lease`] (which may happen on an async worker, when a request's store
//! is dropped) only pushes onto the idle list, or hands the rollback or
//! close to the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::write_queue::{WriteQueue, WriteTurn, begins_write_transaction};
use super::{BUSY_TIMEOUT, Error, QueryResult, Value, execute, io_error, open_file};

/// Idle connections kept per database file. More may be open at once (one
/// per concurrent request); those beyond this are closed when released.
const MAX_IDLE: usize = 16;

/// Identifies a database file (device and inode on Unix), so connections
/// to a file that was deleted or replaced are not handed out again: writes
/// through them would go to an unlinked file and be lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId(u64, u64);

#[cfg(unix)]
fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| FileId(m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(path: &Path) -> Option<FileId> {
    // No cheap identity: trust the path (a replaced file keeps stale
    // connections until they are closed).
    path.exists().then_some(FileId(0, 0))
}

/// One database file's pool of idle connections.
///
/// The app owns its pools (one per database label, made at load), so a
/// reloaded app starts with its own connections and the old ones close
/// with the old app; `open` never takes a process-wide lock.
pub(crate) struct Database {
    path: PathBuf,
    idle: Mutex<Idle>,
    /// Explicit write transactions queue here (see [`super::write_queue`]).
    writers: Arc<WriteQueue>,
}

#[derive(Default)]
struct Idle {
    /// The file the idle connections were opened on.
    file: Option<FileId>,
    conns: Vec<rusqlite::Connection>,
}

impl Database {
    /// An empty pool for the file at `path`. No I/O: the file is opened
    /// by the first checkout.
    pub(crate) fn new(path: &Path) -> Arc<Database> {
        Arc::new(Database {
            path: path.to_path_buf(),
            idle: Mutex::new(Idle::default()),
            writers: Arc::default(),
        })
    }

    /// Leases a connection for exclusive use: an idle one when the file is
    /// still the one it was opened on, else a new one. Blocking (a `stat`,
    /// maybe an open): call it on the blocking pool.
    pub(crate) fn checkout(self: &Arc<Self>) -> Result<Lease, Error> {
        let current = file_id(&self.path);
        let (reused, stale) = {
            let mut idle = lock(&self.idle);
            if current.is_some() && idle.file == current {
                (idle.conns.pop(), Vec::new())
            } else {
                idle.file = None;
                (None, std::mem::take(&mut idle.conns))
            }
        };
        // Closed outside the lock; this is the blocking pool already.
        drop(stale);
        let (conn, file) = match reused {
            Some(conn) => (conn, current),
            None => {
                let conn = open_file(&self.path)?;
                let file = file_id(&self.path);
                let mut idle = lock(&self.idle);
                if idle.file.is_none() {
                    idle.file = file;
                }
                (conn, file)
            }
        };
        // A component may have changed it on this connection's last lease;
        // durability is not the component's to lower. Sets a flag, no I/O.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(io_error)?;
        Ok(Lease {
            conn: Some(conn),
            file,
            db: self.clone(),
            turn: None,
        })
    }

    /// Takes a released connection back, or hands it back to be closed
    /// (pool full, file replaced, or a transaction still open). No I/O.
    fn keep(
        &self,
        conn: rusqlite::Connection,
        file: Option<FileId>,
    ) -> Option<rusqlite::Connection> {
        if !conn.is_autocommit() {
            return Some(conn);
        }
        let mut idle = lock(&self.idle);
        if file.is_some() && idle.file == file && idle.conns.len() < MAX_IDLE {
            idle.conns.push(conn);
            None
        } else {
            Some(conn)
        }
    }

    /// How many connections are idle now (tests and diagnostics).
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        lock(&self.idle).conns.len()
    }
}

/// A pool mutex's data stays consistent across a panic (pushes and pops
/// only), so a poisoned lock is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One connection leased from a [`Database`]; returned to it on drop.
pub(crate) struct Lease {
    conn: Option<rusqlite::Connection>,
    file: Option<FileId>,
    db: Arc<Database>,
    /// Held from `BEGIN IMMEDIATE` / `EXCLUSIVE` until the transaction ends.
    turn: Option<WriteTurn>,
}

impl Lease {
    /// The leased connection.
    pub(crate) fn conn(&self) -> Result<&rusqlite::Connection, Error> {
        self.conn
            .as_ref()
            .ok_or_else(|| Error::Io("the connection was released".into()))
    }

    /// Runs one statement. A statement that starts a write transaction
    /// first waits for this database's write turn (at most the busy
    /// timeout, then fails as SQLite would: "database is locked"); the turn
    /// is given back as soon as the connection leaves the transaction.
    /// Blocking.
    pub(crate) fn execute(
        &mut self,
        statement: &str,
        parameters: Vec<Value>,
    ) -> Result<QueryResult, Error> {
        if self.turn.is_none() && begins_write_transaction(statement) {
            let turn = self.db.writers.wait_turn(BUSY_TIMEOUT).ok_or_else(|| {
                Error::Io(format!(
                    "database is locked: no write turn within {} ms",
                    BUSY_TIMEOUT.as_millis()
                ))
            })?;
            self.turn = Some(turn);
        }
        let result = execute(self.conn()?, statement, parameters);
        if self.conn.as_ref().is_none_or(|c| c.is_autocommit()) {
            self.turn = None;
        }
        result
    }
}

impl Drop for Lease {
    /// Returns the connection to the pool. Usually that is a push onto the
    /// idle list; when it must first roll back an abandoned transaction (a
    /// component that trapped or timed out between `BEGIN` and `COMMIT`)
    /// or be closed, that work goes to the blocking pool, because this drop
    /// may run on an async worker (when a request's store is dropped).
    fn drop(&mut self) {
        // Given back after the rollback below, so the next writer does not
        // find the lock still taken.
        let turn = self.turn.take();
        let Some(conn) = self.conn.take() else {
            return;
        };
        let Some(conn) = self.db.keep(conn, self.file) else {
            return;
        };
        let db = self.db.clone();
        let file = self.file;
        let finish = move || {
            if !conn.is_autocommit() {
                // Best effort: if even the rollback fails, the connection
                // is closed below, which rolls back too.
                let _ = conn.execute_batch("ROLLBACK");
            }
            // `keep` returns it when it cannot be pooled: closed here.
            drop(db.keep(conn, file));
            drop(turn);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(finish);
            }
            // No runtime (a plain thread, or shutdown): nothing to block.
            Err(_) => finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_temp_marker(conn: &rusqlite::Connection) -> bool {
        conn.query_row(
            "SELECT count(*) FROM temp.sqlite_master WHERE name = 'marker'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            == 1
    }

    #[test]
    fn leased_connections_are_durable_and_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::new(&dir.path().join("default.db"));
        let lease = db.checkout().unwrap();
        let conn = lease.conn().unwrap();
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // A component lowering it only lasts for its own lease.
        conn.execute_batch("PRAGMA synchronous=OFF").unwrap();
        drop(lease);
        let lease = db.checkout().unwrap();
        let sync: i64 = lease
            .conn()
            .unwrap()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL again on the next lease");
    }

    #[test]
    fn connections_are_long_lived_and_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::new(&dir.path().join("default.db"));
        let first = db.checkout().unwrap();
        // Connection-local state: a TEMP table lives as long as the connection.
        first
            .conn()
            .unwrap()
            .execute_batch("CREATE TEMP TABLE marker (x)")
            .unwrap();
        // Leased at the same time: another connection.
        let second = db.checkout().unwrap();
        assert!(!has_temp_marker(second.conn().unwrap()));
        drop(second);
        drop(first);
        assert_eq!(db.idle_count(), 2);
        // Released and leased again: the same connections, not new opens.
        let a = db.checkout().unwrap();
        let b = db.checkout().unwrap();
        assert!(
            has_temp_marker(a.conn().unwrap()) || has_temp_marker(b.conn().unwrap()),
            "a released connection is reused"
        );
        assert_eq!(db.idle_count(), 0);
    }

    #[test]
    fn an_abandoned_transaction_is_rolled_back_before_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::new(&dir.path().join("default.db"));
        let lease = db.checkout().unwrap();
        let conn = lease.conn().unwrap();
        conn.execute_batch("CREATE TABLE t (x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        assert!(!conn.is_autocommit());
        drop(lease);
        let lease = db.checkout().unwrap();
        let conn = lease.conn().unwrap();
        assert!(conn.is_autocommit());
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        // And the write lock is free for others.
        let other = db.checkout().unwrap();
        other
            .conn()
            .unwrap()
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (2); COMMIT;")
            .unwrap();
    }

    #[test]
    fn write_transactions_take_turns_and_give_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::new(&dir.path().join("default.db"));
        let mut setup = db.checkout().unwrap();
        setup.execute("CREATE TABLE t (x)", vec![]).unwrap();
        drop(setup);

        let mut a = db.checkout().unwrap();
        a.execute("BEGIN IMMEDIATE", vec![]).unwrap();
        assert!(a.turn.is_some());
        a.execute("INSERT INTO t VALUES (1)", vec![]).unwrap();
        // A second writer waits for the turn rather than polling SQLite.
        let b = std::thread::spawn({
            let db = db.clone();
            move || {
                let mut b = db.checkout().unwrap();
                b.execute("BEGIN IMMEDIATE", vec![]).unwrap();
                let seen = b.execute("SELECT count(*) FROM t", vec![]).unwrap();
                b.execute("INSERT INTO t VALUES (2)", vec![]).unwrap();
                b.execute("COMMIT", vec![]).unwrap();
                assert!(b.turn.is_none(), "given back at COMMIT");
                seen
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!b.is_finished(), "b waits while a holds the turn");
        // Reads do not queue.
        let mut reader = db.checkout().unwrap();
        reader.execute("SELECT count(*) FROM t", vec![]).unwrap();
        a.execute("COMMIT", vec![]).unwrap();
        assert!(a.turn.is_none());
        let seen = b.join().unwrap();
        assert!(matches!(seen.rows[0].values[0], Value::Integer(1)));

        // A lease dropped mid-transaction gives its turn back too.
        let mut c = db.checkout().unwrap();
        c.execute("BEGIN EXCLUSIVE", vec![]).unwrap();
        drop(c);
        let mut d = db.checkout().unwrap();
        d.execute("BEGIN IMMEDIATE", vec![]).unwrap();
        d.execute("ROLLBACK", vec![]).unwrap();
    }

    #[test]
    fn a_replaced_file_gets_fresh_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("default.db");
        let db = Database::new(&path);
        let lease = db.checkout().unwrap();
        lease
            .conn()
            .unwrap()
            .execute_batch("CREATE TEMP TABLE marker (x); CREATE TABLE t (x)")
            .unwrap();
        drop(lease);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let lease = db.checkout().unwrap();
        let conn = lease.conn().unwrap();
        assert!(
            !has_temp_marker(conn),
            "not the connection to the deleted file"
        );
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1)")
            .unwrap();
        let fresh = open_file(&path).unwrap();
        let n: i64 = fresh
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "writes land in the file that is there now");
    }
}
