//! Spin variables: application variables, their overrides, and the
//! per-component templates that expose them (`fermyon:spin/variables`).
//!
//! Spin's model is two-level: `[variables]` declares application variables
//! (with defaults, overridable by `SPIN_VARIABLE_<NAME>` env vars), and each
//! component only sees the names in its own `[component.x.variables]`
//! table, whose values are templates like `"{{ app_var }}"`. We resolve all
//! of it once at load: values are static for the life of the process, and a
//! missing required variable should stop startup, not fail a request.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use crate::LoadError;
use crate::interfaces::{HostInterface, LoadContext};
use crate::manifest::{ComponentDecl, VariableDecl};
use crate::wasi::HostState;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        interfaces: "import fermyon:spin/variables@2.0.0;",
        imports: { default: async | trappable },
    });
}

use bindings::fermyon::spin::variables::{self, Error};

/// The application variables, resolved once at load.
pub(crate) struct Variables {
    app: HashMap<String, Option<String>>,
}

/// One instance's view: its component's variables, nothing else.
pub(crate) struct VariablesCtx(Arc<ComponentVariables>);

impl HostInterface for Variables {
    const WIT: &'static str = "fermyon:spin/variables@2.0.0";
    type Grant = Arc<ComponentVariables>;
    type Instance = VariablesCtx;

    fn load(cx: &LoadContext<'_>) -> Result<Self, LoadError> {
        let app = resolve_app_variables(
            &cx.manifest.variables,
            |k| std::env::var(k).ok(),
            &cx.config.variables,
        )
        .map_err(LoadError::Variables)?;
        Ok(Variables { app })
    }

    fn grant(&self, component: &ComponentDecl) -> Result<Self::Grant, LoadError> {
        component_variables(&component.id, &component.variables, &self.app)
            .map(Arc::new)
            .map_err(LoadError::Variables)
    }

    fn instance(&self, grant: &Self::Grant) -> VariablesCtx {
        VariablesCtx(grant.clone())
    }

    fn add_to_linker(
        linker: &mut Linker<HostState>,
        get: fn(&mut HostState) -> &mut VariablesCtx,
    ) -> wasmtime::Result<()> {
        variables::add_to_linker::<HostState, HasSelf<VariablesCtx>>(linker, get)
    }
}

/// The variables one component can read, fully expanded.
#[derive(Debug, Clone, Default)]
pub(crate) struct ComponentVariables {
    /// name -> value. A declared variable whose template refers to an app
    /// variable without any value is absent (reads as `undefined`).
    values: HashMap<String, String>,
}

impl ComponentVariables {
    /// Spin's `get`: invalid names and unknown names are distinct errors.
    pub fn get(&self, name: &str) -> Result<String, Error> {
        if !is_valid_name(name) {
            return Err(Error::InvalidName(format!(
                "invalid variable name '{name}': use lowercase letters, digits and single underscores, starting with a letter"
            )));
        }
        self.values
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Undefined(format!("no variable for '{name}'")))
    }
}

/// Spin's variable-name rule: `[a-z][a-z0-9_]*`, no `__`, no trailing `_`.
pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_')
}

/// Resolves application variables. Priority: `overrides` (HostConfig), then
/// `env(SPIN_VARIABLE_<NAME>)`, then the manifest default. A variable with no
/// value maps to `None`; a *required* one without a value is an error.
pub(crate) fn resolve_app_variables(
    decls: &BTreeMap<String, VariableDecl>,
    env: impl Fn(&str) -> Option<String>,
    overrides: &HashMap<String, String>,
) -> Result<HashMap<String, Option<String>>, String> {
    let mut out = HashMap::new();
    let mut missing = Vec::new();
    for (name, decl) in decls {
        if !is_valid_name(name) {
            return Err(format!(
                "invalid application variable name '{name}' (lowercase letters, digits and single underscores, starting with a letter)"
            ));
        }
        if decl.required && decl.default.is_some() {
            return Err(format!(
                "variable '{name}' cannot be both required and have a default"
            ));
        }
        let value = overrides
            .get(name)
            .cloned()
            .or_else(|| env(&env_key(name)))
            .or_else(|| decl.default.clone());
        if decl.required && value.is_none() {
            missing.push(name.clone());
        }
        out.insert(name.clone(), value);
    }
    if !missing.is_empty() {
        let hint: Vec<String> = missing.iter().map(|n| env_key(n)).collect();
        return Err(format!(
            "required variable(s) {} have no value; set {}",
            missing.join(", "),
            hint.join(", ")
        ));
    }
    Ok(out)
}

/// The environment variable Spin's env provider reads for an app variable.
pub(crate) fn env_key(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

/// Expands a component's `[component.x.variables]` templates.
///
/// Referring to an undeclared app variable is a load error (as in Spin);
/// referring to a declared one that has no value leaves the component
/// variable undefined.
pub(crate) fn component_variables(
    component: &str,
    templates: &BTreeMap<String, String>,
    app: &HashMap<String, Option<String>>,
) -> Result<ComponentVariables, String> {
    let mut values = HashMap::new();
    for (name, template) in templates {
        if !is_valid_name(name) {
            return Err(format!(
                "component '{component}': invalid variable name '{name}'"
            ));
        }
        match expand(template, app) {
            Ok(Some(v)) => {
                values.insert(name.clone(), v);
            }
            Ok(None) => {}
            Err(e) => return Err(format!("component '{component}' variable '{name}': {e}")),
        }
    }
    Ok(ComponentVariables { values })
}

/// Expands `{{ name }}` references in `template`. `Ok(None)` when a
/// referenced variable has no value.
fn expand(template: &str, app: &HashMap<String, Option<String>>) -> Result<Option<String>, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(format!("unterminated '{{{{' in template \"{template}\""));
        };
        let name = after[..end].trim();
        match app.get(name) {
            Some(Some(v)) => out.push_str(v),
            Some(None) => return Ok(None),
            None => {
                return Err(format!(
                    "template \"{template}\" refers to '{name}', which is not declared in [variables]"
                ));
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

impl variables::Host for VariablesCtx {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        Ok(self.0.get(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(default: Option<&str>, required: bool) -> VariableDecl {
        VariableDecl {
            default: default.map(str::to_string),
            required,
            secret: false,
        }
    }

    fn decls() -> BTreeMap<String, VariableDecl> {
        BTreeMap::from([
            ("region".to_string(), decl(Some("eu"), false)),
            ("token".to_string(), decl(None, true)),
            ("optional".to_string(), decl(None, false)),
        ])
    }

    #[test]
    fn priority_is_override_then_env_then_default() {
        let env = |k: &str| match k {
            "SPIN_VARIABLE_TOKEN" => Some("from-env".to_string()),
            "SPIN_VARIABLE_REGION" => Some("us".to_string()),
            _ => None,
        };
        let app = resolve_app_variables(&decls(), env, &HashMap::new()).unwrap();
        assert_eq!(app["token"].as_deref(), Some("from-env"));
        assert_eq!(app["region"].as_deref(), Some("us"));
        assert_eq!(app["optional"], None);

        let overrides = HashMap::from([("region".to_string(), "ap".to_string())]);
        let app = resolve_app_variables(&decls(), env, &overrides).unwrap();
        assert_eq!(app["region"].as_deref(), Some("ap"));

        let app = resolve_app_variables(
            &decls(),
            |k| (k == "SPIN_VARIABLE_TOKEN").then(|| "t".to_string()),
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(app["region"].as_deref(), Some("eu"));
    }

    #[test]
    fn missing_required_is_an_error_naming_the_env_var() {
        let e = resolve_app_variables(&decls(), |_| None, &HashMap::new()).unwrap_err();
        assert!(
            e.contains("token") && e.contains("SPIN_VARIABLE_TOKEN"),
            "{e}"
        );
    }

    #[test]
    fn templates_expand_and_scope_per_component() {
        let app = HashMap::from([
            ("region".to_string(), Some("eu".to_string())),
            ("optional".to_string(), None),
        ]);
        let templates = BTreeMap::from([
            (
                "url".to_string(),
                "https://{{ region }}.db/{{region}}".to_string(),
            ),
            ("plain".to_string(), "literal".to_string()),
            ("maybe".to_string(), "{{ optional }}".to_string()),
        ]);
        let vars = component_variables("c", &templates, &app).unwrap();
        assert_eq!(vars.get("url").unwrap(), "https://eu.db/eu");
        assert_eq!(vars.get("plain").unwrap(), "literal");
        assert!(matches!(vars.get("maybe"), Err(Error::Undefined(_))));
        assert!(
            matches!(vars.get("region"), Err(Error::Undefined(_))),
            "app vars are not visible directly"
        );
        assert!(matches!(vars.get("Bad-Name"), Err(Error::InvalidName(_))));
    }

    #[test]
    fn template_errors() {
        let app = HashMap::from([("a".to_string(), Some("1".to_string()))]);
        let bad = BTreeMap::from([("x".to_string(), "{{ nope }}".to_string())]);
        let e = component_variables("c", &bad, &app).unwrap_err();
        assert!(e.contains("'nope'"), "{e}");
        let bad = BTreeMap::from([("x".to_string(), "{{ a".to_string())]);
        assert!(
            component_variables("c", &bad, &app)
                .unwrap_err()
                .contains("unterminated")
        );
    }

    #[test]
    fn name_rules() {
        for ok in ["a", "api_key", "v2"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "A", "2a", "a__b", "a_", "a-b"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        assert_eq!(env_key("api_key"), "SPIN_VARIABLE_API_KEY");
    }

    #[test]
    fn required_with_default_is_rejected() {
        let d = BTreeMap::from([("x".to_string(), decl(Some("1"), true))]);
        assert!(resolve_app_variables(&d, |_| None, &HashMap::new()).is_err());
    }
}
