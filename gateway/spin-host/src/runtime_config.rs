//! Spin's runtime configuration file (`spin up --runtime-config-file`),
//! as far as the embedded host can honour it.
//!
//! The same `runtime-config.toml` should work for both hosts, and a
//! setting that cannot be honoured must stop the load rather than be
//! ignored: silently using a local file where the operator configured a
//! remote database would lose data. What is supported is Spin's own
//! file-backed providers:
//!
//! ```toml
//! [sqlite_database.default]
//! type = "spin"
//! path = "data/app.db"
//!
//! [key_value_store.cache]
//! type = "spin"
//! path = "data/cache.db"
//! ```
//!
//! A relative `path` is resolved against the directory of the runtime
//! config file. Any other provider type (`libsql`, `redis`, ...), a `spin`
//! store without a `path` (Spin's in-memory database), or any other section
//! (`[variables_provider]`, `[llm_compute]`, ...) is refused with an error
//! that says to run the app in external mode, under a real `spin up`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::LoadError;

/// The sections the embedded host supports.
const SQLITE: &str = "sqlite_database";
const KEY_VALUE: &str = "key_value_store";

/// The stores a runtime config file defines, by label.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct RuntimeConfig {
    /// `[sqlite_database.<label>]`: the file of each database.
    pub sqlite: HashMap<String, PathBuf>,
    /// `[key_value_store.<label>]`: the file of each store.
    pub key_value: HashMap<String, PathBuf>,
}

/// Reads `path`; `None` means no runtime config (every store is the default).
pub(crate) fn load(path: Option<&Path>) -> Result<RuntimeConfig, LoadError> {
    let Some(path) = path else {
        return Ok(RuntimeConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        LoadError::Setup(format!(
            "cannot read runtime config {}: {e}",
            path.display()
        ))
    })?;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    parse(&text, dir).map_err(|e| {
        LoadError::Setup(format!(
            "runtime config {}: {e}; run this app in external mode (a real `spin up`) to use it",
            path.display()
        ))
    })
}

/// Parses runtime config text; relative paths resolve against `dir`.
pub(crate) fn parse(text: &str, dir: &Path) -> Result<RuntimeConfig, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut config = RuntimeConfig::default();
    for (section, value) in table {
        let stores = match section.as_str() {
            SQLITE => &mut config.sqlite,
            KEY_VALUE => &mut config.key_value,
            _ => {
                return Err(format!(
                    "[{section}] is not supported by the embedded host (it supports only \
                     [{SQLITE}.<label>] and [{KEY_VALUE}.<label>] with type = \"spin\" and a path)"
                ));
            }
        };
        let toml::Value::Table(labels) = value else {
            return Err(format!("[{section}] must be a table of labels"));
        };
        for (label, store) in labels {
            let file = spin_file(&section, &label, &store)?;
            stores.insert(label, dir.join(file));
        }
    }
    Ok(config)
}

/// The `path` of a `type = "spin"` store; anything else is refused.
fn spin_file(section: &str, label: &str, store: &toml::Value) -> Result<PathBuf, String> {
    let name = format!("[{section}.{label}]");
    let toml::Value::Table(fields) = store else {
        return Err(format!("{name} must be a table"));
    };
    match fields.get("type").and_then(|t| t.as_str()) {
        Some("spin") => {}
        Some(other) => {
            return Err(format!(
                "{name} has type = \"{other}\", which the embedded host does not provide (only \"spin\")"
            ));
        }
        None => return Err(format!("{name} has no type")),
    }
    if let Some(key) = fields.keys().find(|k| *k != "type" && *k != "path") {
        return Err(format!(
            "{name} has `{key}`, which the embedded host does not support"
        ));
    }
    match fields.get("path") {
        Some(toml::Value::String(p)) if !p.is_empty() => Ok(PathBuf::from(p)),
        Some(_) => Err(format!("{name} path must be a non-empty string")),
        None => Err(format!(
            "{name} has no path: Spin keeps such a store in memory, which the embedded host does not"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_stores_resolve_against_the_config_dir() {
        let c = parse(
            "[sqlite_database.default]\ntype = \"spin\"\npath = \"db/app.db\"\n\
             [key_value_store.cache]\ntype = \"spin\"\npath = \"/abs/cache.db\"\n",
            Path::new("/etc/app"),
        )
        .unwrap();
        assert_eq!(c.sqlite["default"], PathBuf::from("/etc/app/db/app.db"));
        assert_eq!(c.key_value["cache"], PathBuf::from("/abs/cache.db"));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused() {
        for (text, says) in [
            (
                "[sqlite_database.default]\ntype = \"libsql\"\nurl = \"https://x\"\ntoken = \"t\"\n",
                "type = \"libsql\"",
            ),
            (
                "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://x\"\n",
                "type = \"redis\"",
            ),
            ("[key_value_store.default]\ntype = \"spin\"\n", "in memory"),
            (
                "[sqlite_database.default]\ntype = \"spin\"\npath = \"a.db\"\nextra = 1\n",
                "`extra`",
            ),
            (
                "[[config_provider]]\ntype = \"vault\"\n",
                "[config_provider]",
            ),
            ("[llm_compute]\ntype = \"remote_http\"\n", "[llm_compute]"),
        ] {
            let e = parse(text, Path::new(".")).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn a_refusal_says_to_use_external_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime-config.toml");
        std::fs::write(&path, "[sqlite_database.default]\ntype = \"libsql\"\n").unwrap();
        let e = load(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("external mode") && e.contains("spin up"), "{e}");
        assert_eq!(load(None).unwrap(), RuntimeConfig::default());
    }
}
