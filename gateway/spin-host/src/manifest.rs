//! Parsing of Spin manifest v2 (`spin.toml`) into the subset this host runs.
//!
//! We keep our own serde structs rather than depending on Spin's crates:
//! those pull in the whole Spin runtime. Unknown keys are ignored like Spin's
//! lenient sections do; features we cannot honour (remote sources, inline
//! components) are rejected with a message instead of misbehaving later.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The parts of a Spin v2 manifest that matter to the embedded host.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    /// Base path of all HTTP routes (`[application.trigger.http] base`).
    pub base: String,
    /// Application variables (`[variables]`), by name.
    pub variables: BTreeMap<String, VariableDecl>,
    /// HTTP triggers in manifest order (private routes already skipped).
    pub triggers: Vec<HttpTrigger>,
    /// Components in the order they are first referenced or declared.
    pub components: Vec<ComponentDecl>,
}

/// One `[variables]` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct VariableDecl {
    /// Value used when nothing overrides it.
    #[serde(default)]
    pub default: Option<String>,
    /// Load fails if no value is provided.
    #[serde(default)]
    pub required: bool,
    /// Informational in Spin (redacted in logs); accepted for compatibility.
    #[serde(default)]
    #[allow(dead_code)]
    pub secret: bool,
}

/// One routable `[[trigger.http]]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HttpTrigger {
    /// Route pattern as written (`/items/...`).
    pub route: String,
    /// Component id handling the route.
    pub component: String,
}

/// One `[component.<id>]` table.
#[derive(Debug, Clone)]
pub(crate) struct ComponentDecl {
    /// The id (table key).
    pub id: String,
    /// Absolute path of the wasm file.
    pub source: PathBuf,
    /// Outbound hosts the manifest grants; only stored so we can warn.
    pub allowed_outbound_hosts: Vec<String>,
    /// Component variables (name -> template).
    pub variables: BTreeMap<String, String>,
    /// Environment variables given to the guest (`environment`).
    pub environment: BTreeMap<String, String>,
    /// The whole `[component.<id>]` table: each host interface reads its
    /// own keys (`sqlite_databases`, `key_value_stores`) from it.
    pub table: toml::Table,
}

#[derive(Deserialize)]
struct RawManifest {
    spin_manifest_version: toml::Value,
    #[serde(default)]
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<String, toml::Table>,
}

#[derive(Deserialize, Default)]
struct RawApplication {
    #[serde(default)]
    trigger: RawAppTrigger,
}

#[derive(Deserialize, Default)]
struct RawAppTrigger {
    #[serde(default)]
    http: Option<RawAppHttp>,
}

#[derive(Deserialize, Default)]
struct RawAppHttp {
    #[serde(default)]
    base: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpTrigger>,
}

#[derive(Deserialize)]
struct RawHttpTrigger {
    route: RawRoute,
    component: toml::Value,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRoute {
    Route(String),
    Private { private: bool },
}

#[derive(Deserialize)]
struct RawComponent {
    source: toml::Value,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    files: Vec<toml::Value>,
}

/// Reads and validates a manifest file.
pub(crate) fn load(path: &Path) -> Result<Manifest, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    parse(&text, dir)
}

/// Parses manifest text; relative `source` paths resolve against `dir`.
pub(crate) fn parse(text: &str, dir: &Path) -> Result<Manifest, String> {
    let raw: RawManifest = toml::from_str(text).map_err(|e| e.to_string())?;
    match raw.spin_manifest_version {
        toml::Value::Integer(2) => {}
        toml::Value::String(ref s) if s == "2" => {}
        other => {
            return Err(format!(
                "spin_manifest_version = {other} is not supported (only version 2)"
            ));
        }
    }

    let base = raw
        .application
        .trigger
        .http
        .and_then(|h| h.base)
        .unwrap_or_else(|| "/".to_string());

    let mut triggers = Vec::new();
    let mut referenced = Vec::new();
    for (i, t) in raw.trigger.http.into_iter().enumerate() {
        let component = match t.component {
            toml::Value::String(id) => id,
            _ => {
                return Err(format!(
                    "trigger.http #{}: inline components are not supported; declare [component.<id>] and reference it by id",
                    i + 1
                ));
            }
        };
        if !raw.component.contains_key(&component) {
            return Err(format!(
                "trigger.http #{} references component '{component}', which is not declared",
                i + 1
            ));
        }
        match t.route {
            RawRoute::Route(route) => {
                if !referenced.contains(&component) {
                    referenced.push(component.clone());
                }
                triggers.push(HttpTrigger { route, component });
            }
            RawRoute::Private { private: true } => {
                tracing::debug!(%component, "skipping private route");
            }
            RawRoute::Private { private: false } => {
                return Err(format!(
                    "route must be a string pattern or '{{ private = true }}': '{component}' has {{ private = false }}"
                ));
            }
        }
    }

    let mut order: Vec<String> = referenced;
    for id in raw.component.keys() {
        if !order.contains(id) {
            order.push(id.clone());
        }
    }

    let mut components = Vec::new();
    let mut raw_components: HashMap<String, toml::Table> = raw.component.into_iter().collect();
    for id in order {
        let Some(table) = raw_components.remove(&id) else {
            continue;
        };
        let c: RawComponent = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e| format!("component '{id}': {e}"))?;
        let source = match c.source {
            toml::Value::String(s) => dir.join(s),
            _ => {
                return Err(format!(
                    "component '{id}': only local file sources (`source = \"path.wasm\"`) are supported"
                ));
            }
        };
        if !c.files.is_empty() {
            tracing::warn!(component = %id, "`files` are not mounted by the embedded host");
        }
        components.push(ComponentDecl {
            id,
            source,
            allowed_outbound_hosts: c.allowed_outbound_hosts,
            variables: c.variables,
            environment: c.environment,
            table,
        });
    }

    Ok(Manifest {
        base,
        variables: raw.variables,
        triggers,
        components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
spin_manifest_version = 2

[application]
name = "items"
version = "0.1.0"
authors = ["x"]

[application.trigger.http]
base = "/api"

[variables]
max_items = { default = "100" }
api_key = { required = true, secret = true }

[[trigger.http]]
route = "/items/..."
component = "list-items"

[[trigger.http]]
route = { private = true }
component = "validate"

[[trigger.http]]
route = "/create"
component = "create"
executor = { type = "spin" }

[component.list-items]
source = "target/list_items.wasm"
sqlite_databases = ["default"]
allowed_outbound_hosts = []
[component.list-items.variables]
limit = "{{ max_items }}"
[component.list-items.build]
command = "cargo build"
watch = ["src/**/*.rs"]

[component.create]
source = "create.wasm"
description = "unknown keys are fine"

[component.validate]
source = "validate.wasm"
environment = { RUST_LOG = "info" }
"#;

    #[test]
    fn parses_full_manifest() {
        let m = parse(FULL, Path::new("/app")).unwrap();
        assert_eq!(m.base, "/api");
        assert_eq!(
            m.triggers,
            vec![
                HttpTrigger {
                    route: "/items/...".into(),
                    component: "list-items".into()
                },
                HttpTrigger {
                    route: "/create".into(),
                    component: "create".into()
                },
            ]
        );
        let ids: Vec<_> = m.components.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["list-items", "create", "validate"]);
        let list = &m.components[0];
        assert_eq!(list.source, PathBuf::from("/app/target/list_items.wasm"));
        assert_eq!(
            list.table["sqlite_databases"],
            toml::Value::Array(vec!["default".into()])
        );
        assert_eq!(list.variables["limit"], "{{ max_items }}");
        assert_eq!(m.variables["max_items"].default.as_deref(), Some("100"));
        assert!(m.variables["api_key"].required);
        assert_eq!(m.components[2].environment["RUST_LOG"], "info");
    }

    #[test]
    fn base_defaults_to_root() {
        let m = parse(
            "spin_manifest_version = 2\n[application]\nname='a'\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(m.base, "/");
        assert!(m.triggers.is_empty());
    }

    #[test]
    fn rejects_v1_manifest() {
        let e = parse("spin_manifest_version = \"1\"\n", Path::new(".")).unwrap_err();
        assert!(e.contains("only version 2"), "{e}");
    }

    #[test]
    fn rejects_undeclared_component() {
        let e = parse(
            "spin_manifest_version = 2\n[[trigger.http]]\nroute='/'\ncomponent='nope'\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.contains("'nope'"), "{e}");
    }

    #[test]
    fn rejects_private_false() {
        let e = parse(
            "spin_manifest_version = 2\n[[trigger.http]]\nroute={private=false}\ncomponent='c'\n[component.c]\nsource='c.wasm'\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.contains("private = false"), "{e}");
    }

    #[test]
    fn rejects_remote_source_and_bad_keys() {
        let e = parse(
            "spin_manifest_version = 2\n[component.c]\nsource={url='https://x/c.wasm', digest='sha256:0'}\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.contains("local file"), "{e}");
        let e = parse(
            "spin_manifest_version = 2\n[component.c]\nsource='c.wasm'\nenvironment=['x']\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.contains("component 'c'"), "{e}");
    }

    #[test]
    fn reports_toml_errors() {
        let e = parse("spin_manifest_version = 2\n[component.c\n", Path::new(".")).unwrap_err();
        assert!(!e.is_empty());
        let e = parse("[application]\n", Path::new(".")).unwrap_err();
        assert!(e.contains("spin_manifest_version"), "{e}");
    }
}
