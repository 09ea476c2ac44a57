//! `fermyon:spin/key-value@2.0.0`: Spin's key-value store, kept in SQLite.
//!
//! Spin apps reach for key-value right after HTTP, and a component that
//! imports it could not run in-process before. Spin's default store is a
//! SQLite file in the state directory with one table,
//! `spin_key_value(store, key, value)`, keyed by label and key; we keep the
//! same file (`<data_dir>/sqlite_key_value.db`) and schema, so a data
//! directory moves between `spin up` and the embedded host unchanged.
//!
//! Permissions follow Spin's: a component opens only the labels in its
//! `key_value_stores` (anything else is `access-denied`, whether or not the
//! store exists), and a declared label with no store behind it stops the
//! load, as Spin refuses to start with an unknown label. `default` always
//! exists; other labels exist when the runtime config file gives them a
//! file (`[key_value_store.<label>] type = "spin"`, see
//! [`crate::runtime_config`]). Labels sharing a file are told apart by the
//! `store` column, as in Spin.
//!
//! Durability: the file runs in WAL mode with `synchronous=FULL` (see
//! [`crate::db`]), so a `set` or `delete` that returned survives a crash.
//! Every statement runs on tokio's blocking pool, never on an async worker.
//!
//! Bounds on hostile input, which Spin's own SQLite store does not have:
//! keys up to [`MAX_KEY_BYTES`] and values up to [`MAX_VALUE_BYTES`] (the
//! limits Fermyon Cloud documents for its key-value store, so an app that
//! fits there fits here), at most [`MAX_OPEN_STORES`] open stores per
//! instance (Spin's default store-table capacity; more is
//! `store-table-full`), and a `get-keys` answer of at most
//! [`MAX_KEYS_BYTES`]. Breaking one is `other(..)` with a message that
//! says which limit.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use crate::LoadError;
use crate::interfaces::{HostInterface, LoadContext, string_list};
use crate::manifest::ComponentDecl;
use crate::wasi::HostState;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        interfaces: "import fermyon:spin/key-value@2.0.0;",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value.store": super::Store,
        },
    });
}

use bindings::fermyon::spin::key_value::{self as wit, Error, HostStore};

/// The manifest key listing the stores a component may open.
const GRANT_KEY: &str = "key_value_stores";
/// The store every app has, as in Spin.
const DEFAULT_LABEL: &str = "default";
/// The file under the data directory, Spin's name for its default store.
pub(crate) const FILE_NAME: &str = "sqlite_key_value.db";
/// Longest key accepted, in bytes.
pub(crate) const MAX_KEY_BYTES: usize = 255;
/// Largest value accepted, in bytes (1 MiB).
pub(crate) const MAX_VALUE_BYTES: usize = 1 << 20;
/// Stores one instance may hold open at once.
pub(crate) const MAX_OPEN_STORES: usize = 256;
/// Largest `get-keys` answer, in bytes of keys (16 MiB).
pub(crate) const MAX_KEYS_BYTES: usize = 16 << 20;
/// Idle connections kept to the file.
const MAX_IDLE: usize = 8;

/// The app's key-value stores by label (only `default`, when a component
/// declares any store at all).
pub(crate) struct KeyValue {
    stores: Arc<HashMap<String, Arc<KvFile>>>,
}

/// One instance's view: the app's stores, the labels its component was
/// granted, and the stores it has open.
pub(crate) struct KeyValueCtx {
    stores: Arc<HashMap<String, Arc<KvFile>>>,
    allowed: Arc<HashSet<String>>,
    table: ResourceTable,
}

/// The host side of a `store` resource: which label, in which file.
pub struct Store {
    label: String,
    file: Arc<KvFile>,
}

/// The SQLite file behind the stores, with a few idle connections.
struct KvFile {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl KvFile {
    /// Creates the file and Spin's table if needed. Blocking (load time).
    fn create(path: PathBuf) -> rusqlite::Result<KvFile> {
        let conn = crate::db::open(&path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            )",
        )?;
        Ok(KvFile {
            path,
            idle: Mutex::new(vec![conn]),
        })
    }

    /// Runs `f` on a pooled connection. Blocking: call it on the blocking pool.
    fn with<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let pooled = lock(&self.idle).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => crate::db::open(&self.path).map_err(other)?,
        };
        let result = f(&conn);
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        result
    }
}

/// The idle list is only pushed and popped, so a poisoned lock is still
/// consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn other(e: rusqlite::Error) -> Error {
    Error::Other(e.to_string())
}

impl HostInterface for KeyValue {
    const WIT: &'static str = "fermyon:spin/key-value@2.0.0";
    type Grant = Arc<HashSet<String>>;
    type Instance = KeyValueCtx;

    fn load(cx: &LoadContext<'_>) -> Result<Self, LoadError> {
        let file_stem = FILE_NAME.trim_end_matches(".db");
        let mut configured = cx.runtime_config.key_value.clone();
        configured
            .entry(DEFAULT_LABEL.to_string())
            .or_insert_with(|| cx.config.data_dir.join(FILE_NAME));
        let mut used: HashMap<String, PathBuf> = HashMap::new();
        for component in &cx.manifest.components {
            let err = |message: String| LoadError::Component {
                component: component.id.clone(),
                message,
            };
            for label in string_list(component, GRANT_KEY)? {
                let Some(path) = configured.get(&label) else {
                    return Err(err(format!(
                        "unknown key_value_stores label \"{label}\": no store is configured for it; \
                         give it one in the runtime config ([key_value_store.{label}] type = \"spin\", \
                         path = ...) or run this app with `spin up`"
                    )));
                };
                used.insert(label, path.clone());
            }
            // `<label>.db` would be the key-value file itself, every
            // component's data, past the key-value permissions.
            if string_list(component, "sqlite_databases")?.iter().any(|l| l == file_stem) {
                return Err(err(format!(
                    "sqlite database label \"{file_stem}\" names the key-value store's file \
                     ({FILE_NAME}); choose another label"
                )));
            }
        }
        // One `KvFile` per file, shared by the labels stored in it.
        let mut files: HashMap<PathBuf, Arc<KvFile>> = HashMap::new();
        let mut stores = HashMap::new();
        for (label, path) in used {
            let file = match files.get(&path) {
                Some(file) => file.clone(),
                None => {
                    let file = KvFile::create(path.clone()).map_err(|e| {
                        LoadError::Setup(format!(
                            "cannot open the key-value store {}: {e}",
                            path.display()
                        ))
                    })?;
                    let file = Arc::new(file);
                    files.insert(path, file.clone());
                    file
                }
            };
            stores.insert(label, file);
        }
        Ok(KeyValue {
            stores: Arc::new(stores),
        })
    }

    fn grant(&self, component: &ComponentDecl) -> Result<Self::Grant, LoadError> {
        Ok(Arc::new(
            string_list(component, GRANT_KEY)?.into_iter().collect(),
        ))
    }

    fn instance(&self, grant: &Self::Grant) -> KeyValueCtx {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_OPEN_STORES);
        KeyValueCtx {
            stores: self.stores.clone(),
            allowed: grant.clone(),
            table,
        }
    }

    fn add_to_linker(
        linker: &mut Linker<HostState>,
        get: fn(&mut HostState) -> &mut KeyValueCtx,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<HostState, HasSelf<KeyValueCtx>>(linker, get)
    }
}

impl KeyValueCtx {
    /// The label and file of an open store. An unknown handle is a trap,
    /// as in Spin: the guest's bindings never produce one.
    fn store(&self, store: &Resource<Store>) -> wasmtime::Result<(String, Arc<KvFile>)> {
        let s = self.table.get(store)?;
        Ok((s.label.clone(), s.file.clone()))
    }
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::Other(format!(
            "key is {} bytes; the embedded host accepts keys of at most {MAX_KEY_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// Runs blocking SQLite work off the async workers.
async fn blocking<T: Send + 'static>(
    file: Arc<KvFile>,
    f: impl FnOnce(&rusqlite::Connection) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(move || file.with(f))
        .await
        .unwrap_or_else(|e| Err(Error::Other(format!("key-value task failed: {e}"))))
}

impl HostStore for KeyValueCtx {
    async fn open(&mut self, label: String) -> wasmtime::Result<Result<Resource<Store>, Error>> {
        if !self.allowed.contains(&label) {
            return Ok(Err(Error::AccessDenied));
        }
        let Some(file) = self.stores.get(&label).cloned() else {
            return Ok(Err(Error::NoSuchStore));
        };
        Ok(self
            .table
            .push(Store { label, file })
            .map_err(|_| Error::StoreTableFull))
    }

    async fn get(
        &mut self,
        store: Resource<Store>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let (label, file) = self.store(&store)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(blocking(file, move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")
                .map_err(other)?;
            let mut rows = stmt.query((&label, &key)).map_err(other)?;
            match rows.next().map_err(other)? {
                Some(row) => row.get(0).map(Some).map_err(other),
                None => Ok(None),
            }
        })
        .await)
    }

    async fn set(
        &mut self,
        store: Resource<Store>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (label, file) = self.store(&store)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(Error::Other(format!(
                "value is {} bytes; the embedded host accepts values of at most {MAX_VALUE_BYTES} bytes",
                value.len()
            ))));
        }
        Ok(blocking(file, move |conn| {
            conn.prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut stmt| stmt.execute((&label, &key, &value)))
            .map(drop)
            .map_err(other)
        })
        .await)
    }

    async fn delete(
        &mut self,
        store: Resource<Store>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (label, file) = self.store(&store)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(blocking(file, move |conn| {
            conn.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")
                .and_then(|mut stmt| stmt.execute((&label, &key)))
                .map(drop)
                .map_err(other)
        })
        .await)
    }

    async fn exists(
        &mut self,
        store: Resource<Store>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let (label, file) = self.store(&store)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(blocking(file, move |conn| {
            conn.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")
                .and_then(|mut stmt| stmt.exists((&label, &key)))
                .map_err(other)
        })
        .await)
    }

    async fn get_keys(
        &mut self,
        store: Resource<Store>,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let (label, file) = self.store(&store)?;
        Ok(blocking(file, move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")
                .map_err(other)?;
            let mut rows = stmt.query([&label]).map_err(other)?;
            let mut keys = Vec::new();
            let mut bytes = 0usize;
            while let Some(row) = rows.next().map_err(other)? {
                let key: String = row.get(0).map_err(other)?;
                bytes += key.len();
                if bytes > MAX_KEYS_BYTES {
                    return Err(Error::Other(format!(
                        "the store's keys exceed {MAX_KEYS_BYTES} bytes, more than the embedded host returns at once"
                    )));
                }
                keys.push(key);
            }
            Ok(keys)
        })
        .await)
    }

    async fn drop(&mut self, store: Resource<Store>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl wit::Host for KeyValueCtx {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(dir: &std::path::Path, allowed: &[&str]) -> KeyValueCtx {
        let file = KvFile::create(dir.join(FILE_NAME)).unwrap();
        let kv = KeyValue {
            stores: Arc::new(HashMap::from([(DEFAULT_LABEL.to_string(), Arc::new(file))])),
        };
        kv.instance(&Arc::new(allowed.iter().map(|s| s.to_string()).collect()))
    }

    #[tokio::test]
    async fn oversized_keys_and_values_are_refused_with_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut kv = ctx(dir.path(), &["default"]);
        let store = kv.open("default".into()).await.unwrap().unwrap();
        let rep = store.rep();
        let again = || Resource::<Store>::new_own(rep);
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let e = kv.set(again(), long.clone(), vec![1]).await.unwrap().unwrap_err();
        assert!(matches!(&e, Error::Other(m) if m.contains("at most 255 bytes")), "{e:?}");
        assert!(kv.get(again(), long).await.unwrap().is_err());
        let fits = "k".repeat(MAX_KEY_BYTES);
        kv.set(again(), fits.clone(), vec![0; MAX_VALUE_BYTES]).await.unwrap().unwrap();
        let e = kv
            .set(again(), fits.clone(), vec![0; MAX_VALUE_BYTES + 1])
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(&e, Error::Other(m) if m.contains("values of at most")), "{e:?}");
        let stored = kv.get(again(), fits).await.unwrap().unwrap().unwrap();
        assert_eq!(stored.len(), MAX_VALUE_BYTES, "the refused set changed nothing");
    }

    #[tokio::test]
    async fn open_stores_are_bounded_per_instance() {
        let dir = tempfile::tempdir().unwrap();
        let mut kv = ctx(dir.path(), &["default"]);
        let mut open = Vec::new();
        for _ in 0..MAX_OPEN_STORES {
            open.push(kv.open("default".into()).await.unwrap().unwrap());
        }
        let full = kv.open("default".into()).await.unwrap();
        assert!(matches!(full, Err(Error::StoreTableFull)));
        // Closing one makes room again.
        let first = open.remove(0);
        HostStore::drop(&mut kv, first).await.unwrap();
        assert!(kv.open("default".into()).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn labels_follow_spin_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let mut kv = ctx(dir.path(), &["default", "ghost"]);
        assert!(matches!(kv.open("other".into()).await.unwrap(), Err(Error::AccessDenied)));
        assert!(matches!(kv.open("ghost".into()).await.unwrap(), Err(Error::NoSuchStore)));
        let mut none = ctx(dir.path(), &[]);
        assert!(matches!(none.open("default".into()).await.unwrap(), Err(Error::AccessDenied)));
    }
}
