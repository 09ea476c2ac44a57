//! `fermyon:spin/sqlite@2.0.0` on top of rusqlite.
//!
//! Spin's default SQLite provider stores each database label in a local file;
//! we do the same under `HostConfig::data_dir` (`<data_dir>/<label>.db`).
//! The app owns one connection pool per label, created at load for the
//! `default` database and every label a component declares, so `open` is a
//! lookup in an immutable map, not a trip through a process-wide registry.
//!
//! Durability: every connection runs in WAL mode with `synchronous=FULL`,
//! so a `COMMIT` that returned has been fsynced to the WAL and survives a
//! crash or power loss; a component answers 201 only after its commit.
//!
//! Connections are long-lived: each database file has a small pool
//! ([`pool`]), and a component's `open` leases one connection for the life
//! of its `connection` resource. Write transactions started with
//! `BEGIN IMMEDIATE` take turns in arrival order ([`write_queue`]).
//!
//! rusqlite is blocking, so everything that may touch the disk runs on
//! tokio's blocking pool, never on an async worker: opening, statements
//! (including the automatic WAL checkpoint SQLite runs inside the `COMMIT`
//! that crosses the threshold), rolling back a lease left mid-transaction,
//! and closing a connection (closing the last one checkpoints the WAL).

mod pool;
mod write_queue;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::types::{Value as SqlValue, ValueRef};
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use crate::interfaces::{HostInterface, LoadContext, is_valid_label, string_list};
use crate::manifest::ComponentDecl;
use crate::wasi::HostState;
use crate::LoadError;
use pool::{Database, Lease};

pub(crate) use crate::db::BUSY_TIMEOUT;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        interfaces: "import fermyon:spin/sqlite@2.0.0;",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/sqlite.connection": super::Connection,
        },
    });
}

use bindings::fermyon::spin::sqlite::{self as wit, Error, HostConnection, QueryResult, RowResult, Value};

/// The manifest key listing the databases a component may open.
const GRANT_KEY: &str = "sqlite_databases";

/// The app's databases: `default` plus every label a component declares,
/// each with its pool of connections.
pub(crate) struct Sqlite {
    databases: Arc<HashMap<String, Arc<Database>>>,
}

/// One instance's view: the app's databases, the labels its component
/// was granted, and its open connections.
pub(crate) struct SqliteCtx {
    databases: Arc<HashMap<String, Arc<Database>>>,
    allowed: Arc<HashSet<String>>,
    table: ResourceTable,
}

impl SqliteCtx {
    /// Spin semantics: not granted to the component -> `access-denied`
    /// (whether or not it exists); granted but unknown -> `no-such-database`.
    fn resolve(&self, label: &str) -> Result<Arc<Database>, Error> {
        if !self.allowed.contains(label) {
            return Err(Error::AccessDenied);
        }
        self.databases
            .get(label)
            .cloned()
            .ok_or(Error::NoSuchDatabase)
    }
}

/// A component's `sqlite_databases`, each checked to be a usable file name.
fn granted_labels(component: &ComponentDecl) -> Result<Vec<String>, LoadError> {
    let labels = string_list(component, GRANT_KEY)?;
    if let Some(bad) = labels.iter().find(|l| !is_valid_label(l)) {
        return Err(LoadError::Component {
            component: component.id.clone(),
            message: format!(
                "invalid sqlite database label '{bad}' (use letters, digits, '_' and '-')"
            ),
        });
    }
    Ok(labels)
}

impl HostInterface for Sqlite {
    const WIT: &'static str = "fermyon:spin/sqlite@2.0.0";
    type Grant = Arc<HashSet<String>>;
    type Instance = SqliteCtx;

    fn load(cx: &LoadContext<'_>) -> Result<Self, LoadError> {
        let mut labels: HashSet<String> = HashSet::from(["default".to_string()]);
        for component in &cx.manifest.components {
            labels.extend(granted_labels(component)?);
        }
        labels.extend(cx.runtime_config.sqlite.keys().cloned());
        // A label the runtime config gives a file uses it; the others are
        // `<data_dir>/<label>.db`.
        let databases = labels
            .into_iter()
            .map(|label| {
                let path = match cx.runtime_config.sqlite.get(&label) {
                    Some(path) => path.clone(),
                    None => cx.config.data_dir.join(format!("{label}.db")),
                };
                (label, Database::new(&path))
            })
            .collect();
        Ok(Sqlite {
            databases: Arc::new(databases),
        })
    }

    fn grant(&self, component: &ComponentDecl) -> Result<Self::Grant, LoadError> {
        Ok(Arc::new(granted_labels(component)?.into_iter().collect()))
    }

    fn instance(&self, grant: &Self::Grant) -> SqliteCtx {
        SqliteCtx {
            databases: self.databases.clone(),
            allowed: grant.clone(),
            table: ResourceTable::new(),
        }
    }

    fn add_to_linker(
        linker: &mut Linker<HostState>,
        get: fn(&mut HostState) -> &mut SqliteCtx,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<HostState, HasSelf<SqliteCtx>>(linker, get)
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

/// Opens a database file the way every connection must be (see
/// [`crate::db::open`]). Blocking.
pub(crate) fn open_file(path: &Path) -> Result<rusqlite::Connection, Error> {
    crate::db::open(path).map_err(io_error)
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

impl HostConnection for SqliteCtx {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        let db = match self.resolve(&database) {
            Ok(db) => db,
            Err(e) => return Ok(Err(e)),
        };
        let lease = match blocking(move || db.checkout()).await {
            Ok(lease) => lease,
            Err(e) => return Ok(Err(e)),
        };
        let res = self.table.push(Connection {
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
        let lease = match self.table.get(&this) {
            Ok(c) => c.lease.clone(),
            Err(_) => return Ok(Err(Error::InvalidConnection)),
        };
        Ok(blocking(move || {
            let mut guard = lease
                .lock()
                .map_err(|_| Error::Io("connection poisoned".into()))?;
            guard.execute(&statement, parameters)
        })
        .await)
    }

    async fn drop(&mut self, rep: Resource<Connection>) -> wasmtime::Result<()> {
        // The lease goes back to the pool when its last holder lets go.
        self.table.delete(rep)?;
        Ok(())
    }
}

impl wit::Host for SqliteCtx {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(dir: &Path) -> SqliteCtx {
        let databases = ["default", "other"]
            .into_iter()
            .map(|l| (l.to_string(), Database::new(&dir.join(format!("{l}.db")))))
            .collect();
        SqliteCtx {
            databases: Arc::new(databases),
            allowed: Arc::new(HashSet::from(["default".to_string(), "ghost".to_string()])),
            table: ResourceTable::new(),
        }
    }

    #[test]
    fn access_rules_follow_spin() {
        let dir = tempfile::tempdir().unwrap();
        let a = ctx(dir.path());
        assert!(a.resolve("default").is_ok());
        assert!(matches!(a.resolve("other"), Err(Error::AccessDenied)));
        assert!(matches!(a.resolve("missing"), Err(Error::AccessDenied)));
        assert!(matches!(a.resolve("ghost"), Err(Error::NoSuchDatabase)));
    }

    #[test]
    fn labels_that_are_not_file_names_are_refused() {
        let m = crate::manifest::parse(
            "spin_manifest_version = 2\n[component.c]\nsource='c.wasm'\nsqlite_databases=['../etc']\n",
            Path::new("."),
        )
        .unwrap();
        let e = granted_labels(&m.components[0]).unwrap_err().to_string();
        assert!(e.contains("invalid sqlite database label '../etc'"), "{e}");
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
