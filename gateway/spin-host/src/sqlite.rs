//! `fermyon:spin/sqlite@2.0.0` on top of rusqlite.
//!
//! Spin's default SQLite provider stores each database label in a local file;
//! we do the same under `HostConfig::data_dir` (`<data_dir>/<label>.db`).
//!
//! Durability: every connection runs in WAL mode with `synchronous=FULL`,
//! so a `COMMIT` that returned has been fsynced to the WAL and survives a
//! crash or power loss; a component answers 201 only after its commit.
//!
//! Connections are long-lived: each database file has a small pool
//! ([`Database`]), and a component's `open` leases one connection for the
//! life of its `connection` resource. Exclusive use keeps transactions
//! whole (one request's `BEGIN` never captures another request's
//! statements, as a single shared connection would), while reuse saves
//! opening the file, the WAL-index mapping and the schema parse on every
//! request, and keeps each connection's prepared-statement cache warm.
//!
//! rusqlite is blocking, so everything that may touch the disk runs on
//! tokio's blocking pool, never on an async worker: opening, statements
//! (including the automatic WAL checkpoint SQLite runs inside the `COMMIT`
//! that crosses the threshold), rolling back a lease left mid-transaction,
//! and closing a connection (closing the last one checkpoints the WAL).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use wasmtime::component::Resource;

use crate::bindings::fermyon::spin::sqlite::{
    self, Error, HostConnection, QueryResult, RowResult, Value,
};
use crate::wasi::HostState;

/// How long a statement waits for another connection's write lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept per database file. More may be open at once (one
/// per concurrent request); those beyond this are closed when released.
const MAX_IDLE: usize = 16;

/// Which databases a component may open and where they live.
#[derive(Debug, Clone)]
pub(crate) struct SqliteAccess {
    /// Directory holding `<label>.db` files.
    pub data_dir: PathBuf,
    /// Labels from the component's `sqlite_databases`.
    pub allowed: HashSet<String>,
    /// Labels that exist in this app: "default" plus every declared label.
    pub known: HashSet<String>,
}

impl SqliteAccess {
    /// Spin semantics: not granted to the component -> `access-denied`
    /// (whether or not it exists); granted but unknown -> `no-such-database`.
    pub fn resolve(&self, label: &str) -> Result<PathBuf, Error> {
        if !self.allowed.contains(label) {
            return Err(Error::AccessDenied);
        }
        if !self.known.contains(label) {
            return Err(Error::NoSuchDatabase);
        }
        Ok(self.data_dir.join(format!("{label}.db")))
    }
}

/// The host side of a `connection` resource: a leased pooled connection.
///
/// Shared with the blocking task running its current statement, so the
/// lease goes back to the pool only when both are done (a request that
/// timed out drops its store while a statement may still be running).
pub struct Connection {
    lease: Arc<Mutex<Lease>>,
}

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
/// Pools live for the whole process in a registry keyed by path: the
/// embedded host may be rebuilt on a config reload, and the connections
/// should outlive that. Their number is bounded by the distinct database
/// files the process ever opened.
pub(crate) struct Database {
    path: PathBuf,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    /// The file the idle connections were opened on.
    file: Option<FileId>,
    conns: Vec<rusqlite::Connection>,
}

impl Database {
    /// The pool for `path`, created empty on first use. No I/O: safe on an
    /// async worker.
    pub(crate) fn for_path(path: &Path) -> Arc<Database> {
        static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Arc<Database>>>> = OnceLock::new();
        let mut registry = lock(REGISTRY.get_or_init(Default::default));
        registry
            .entry(path.to_path_buf())
            .or_insert_with(|| {
                Arc::new(Database {
                    path: path.to_path_buf(),
                    idle: Mutex::new(Idle::default()),
                })
            })
            .clone()
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
}

impl Lease {
    /// The leased connection.
    pub(crate) fn conn(&self) -> Result<&rusqlite::Connection, Error> {
        self.conn
            .as_ref()
            .ok_or_else(|| Error::Io("the connection was released".into()))
    }
}

impl Drop for Lease {
    /// Returns the connection to the pool. Usually that is a push onto the
    /// idle list; when it must first roll back an abandoned transaction (a
    /// component that trapped or timed out between `BEGIN` and `COMMIT`)
    /// or be closed, that work goes to the blocking pool, because this drop
    /// may run on an async worker (when a request's store is dropped).
    fn drop(&mut self) {
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

/// Opens a database file in WAL mode with `synchronous=FULL` and a busy
/// timeout. Blocking.
pub(crate) fn open_file(path: &Path) -> Result<rusqlite::Connection, Error> {
    let conn = rusqlite::Connection::open(path).map_err(io_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(io_error)?;
    // `journal_mode` returns a row, so it is a query, not an execute.
    let _: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(io_error)?;
    // FULL in WAL mode: the WAL is fsynced at every commit, so a commit
    // that returned survives power loss (NORMAL may lose the last ones).
    // Bundled SQLite defaults to FULL already; this does not rely on how
    // it was compiled.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(io_error)?;
    Ok(conn)
}

/// Runs one statement with positional parameters and collects all rows.
pub(crate) fn execute(
    conn: &rusqlite::Connection,
    statement: &str,
    parameters: Vec<Value>,
) -> Result<QueryResult, Error> {
    let mut stmt = conn.prepare_cached(statement).map_err(io_error)?;
    let columns: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
    let params: Vec<SqlValue> = parameters.into_iter().map(to_sql).collect();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(io_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(io_error)? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            values.push(from_sql(row.get_ref(i).map_err(io_error)?));
        }
        out.push(RowResult { values });
    }
    Ok(QueryResult { columns, rows: out })
}

fn to_sql(v: Value) -> SqlValue {
    match v {
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(f) => SqlValue::Real(f),
        Value::Text(s) => SqlValue::Text(s),
        Value::Blob(b) => SqlValue::Blob(b),
        Value::Null => SqlValue::Null,
    }
}

fn from_sql(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn io_error(e: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && f.code == rusqlite::ErrorCode::DiskFull
    {
        return Error::DatabaseFull;
    }
    Error::Io(e.to_string())
}

/// Runs blocking SQLite work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Error::Io(format!("sqlite task failed: {e}"))))
}

impl HostConnection for HostState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        let path = match self.component.sqlite.resolve(&database) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let db = Database::for_path(&path);
        let lease = match blocking(move || db.checkout()).await {
            Ok(lease) => lease,
            Err(e) => return Ok(Err(e)),
        };
        let res = self.table().push(Connection {
            lease: Arc::new(Mutex::new(lease)),
        })?;
        Ok(Ok(res))
    }

    async fn execute(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        parameters: Vec<Value>,
    ) -> wasmtime::Result<Result<QueryResult, Error>> {
        let lease = match self.table().get(&this) {
            Ok(c) => c.lease.clone(),
            Err(_) => return Ok(Err(Error::InvalidConnection)),
        };
        Ok(blocking(move || {
            let guard = lease
                .lock()
                .map_err(|_| Error::Io("connection poisoned".into()))?;
            execute(guard.conn()?, &statement, parameters)
        })
        .await)
    }

    async fn drop(&mut self, rep: Resource<Connection>) -> wasmtime::Result<()> {
        // The lease goes back to the pool when its last holder lets go.
        self.table().delete(rep)?;
        Ok(())
    }
}

impl sqlite::Host for HostState {}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(dir: &Path) -> SqliteAccess {
        SqliteAccess {
            data_dir: dir.to_path_buf(),
            allowed: HashSet::from(["default".to_string(), "ghost".to_string()]),
            known: HashSet::from(["default".to_string(), "other".to_string()]),
        }
    }

    #[test]
    fn access_rules_follow_spin() {
        let dir = tempfile::tempdir().unwrap();
        let a = access(dir.path());
        assert_eq!(a.resolve("default").unwrap(), dir.path().join("default.db"));
        assert!(matches!(a.resolve("other"), Err(Error::AccessDenied)));
        assert!(matches!(a.resolve("missing"), Err(Error::AccessDenied)));
        assert!(matches!(a.resolve("ghost"), Err(Error::NoSuchDatabase)));
    }

    #[test]
    fn opens_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_file(&dir.path().join("default.db")).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        let timeout: i64 = conn
            .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
            .unwrap();
        assert_eq!(timeout, 5000);
    }

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
        let db = Database::for_path(&dir.path().join("default.db"));
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
        let db = Database::for_path(&dir.path().join("default.db"));
        assert!(Arc::ptr_eq(
            &db,
            &Database::for_path(&dir.path().join("default.db"))
        ));
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
        let db = Database::for_path(&dir.path().join("default.db"));
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
    fn a_replaced_file_gets_fresh_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("default.db");
        let db = Database::for_path(&path);
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

    #[test]
    fn values_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_file(&dir.path().join("t.db")).unwrap();
        let r = execute(
            &conn,
            "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n TEXT)",
            vec![],
        )
        .unwrap();
        assert!(r.rows.is_empty());
        execute(
            &conn,
            "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
            vec![
                Value::Integer(-7),
                Value::Real(1.5),
                Value::Text("héllo".into()),
                Value::Blob(vec![0, 1, 255]),
                Value::Null,
            ],
        )
        .unwrap();
        let r = execute(&conn, "SELECT i, r, s, b, n FROM t", vec![]).unwrap();
        assert_eq!(r.columns, ["i", "r", "s", "b", "n"]);
        assert_eq!(r.rows.len(), 1);
        let v = &r.rows[0].values;
        assert!(matches!(v[0], Value::Integer(-7)));
        assert!(matches!(v[1], Value::Real(f) if f == 1.5));
        assert!(matches!(&v[2], Value::Text(s) if s == "héllo"));
        assert!(matches!(&v[3], Value::Blob(b) if b == &[0, 1, 255]));
        assert!(matches!(v[4], Value::Null));
    }

    #[test]
    fn sql_errors_are_io_errors() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_file(&dir.path().join("t.db")).unwrap();
        let e = execute(&conn, "SELEC nonsense", vec![]).unwrap_err();
        assert!(matches!(e, Error::Io(m) if m.contains("syntax")));
    }
}
