//! How a Spin host interface plugs into the host: one context per interface.
//!
//! Each interface (`fermyon:spin/sqlite`, `.../variables`, `.../key-value`)
//! lives in its own module and implements [`HostInterface`]: what it keeps
//! for the whole app (pools, files, resolved values), what the manifest
//! grants each component, and the context one instance's host calls get.
//! The linker reaches that context through a projection
//! (`|state| &mut state.interfaces.sqlite`), as wasmtime's `serve` command
//! links WASI and wasi:http, so an interface's code never sees the rest of
//! the host state and no interface module imports another.
//!
//! [`host_interfaces!`] turns the list of interfaces in `lib.rs` into the
//! per-app, per-component and per-instance structs and the linker calls, so
//! adding an interface is its module plus one line in that list.

use wasmtime::component::Linker;

use crate::manifest::{ComponentDecl, Manifest};
use crate::runtime_config::RuntimeConfig;
use crate::wasi::HostState;
use crate::{HostConfig, LoadError};

/// What an interface may read while the app loads.
pub(crate) struct LoadContext<'a> {
    /// The host's settings (data directory, variable overrides, ...).
    pub config: &'a HostConfig,
    /// The whole manifest (every component's table, application variables).
    pub manifest: &'a Manifest,
    /// The stores the runtime config file defines (empty without one).
    pub runtime_config: &'a RuntimeConfig,
}

/// One Spin host interface: its app-wide state is the implementing type.
pub(crate) trait HostInterface: Sized + Send + Sync + 'static {
    /// The WIT interface(s) it provides, for error messages.
    const WIT: &'static str;
    /// What one component may use, read from its manifest table at load.
    type Grant: Send + Sync + 'static;
    /// The context of one instance: the target of the linker's projection.
    type Instance: Send + 'static;

    /// Builds the app-wide state once, at load; a manifest this interface
    /// cannot honour fails here, not on a request.
    fn load(cx: &LoadContext<'_>) -> Result<Self, LoadError>;

    /// What `component` may use.
    fn grant(&self, component: &ComponentDecl) -> Result<Self::Grant, LoadError>;

    /// A fresh context for one instance of a component with `grant`. Runs
    /// for every instance, so it should only clone `Arc`s.
    fn instance(&self, grant: &Self::Grant) -> Self::Instance;

    /// Adds the interface's functions to `linker`, reaching the instance
    /// context through `get`.
    fn add_to_linker(
        linker: &mut Linker<HostState>,
        get: fn(&mut HostState) -> &mut Self::Instance,
    ) -> wasmtime::Result<()>;
}

/// Declares the host's interfaces: `field: module::Type` per interface,
/// where `module` is a file in `src/` and `Type` its [`HostInterface`].
///
/// Generates the modules, `AppInterfaces` (app-wide state), `Grants` (per
/// component), `InstanceContexts` (per instance, one field per interface,
/// held by the store's `HostState`) and the linker calls.
macro_rules! host_interfaces {
    ($($field:ident: $module:ident::$ty:ident),+ $(,)?) => {
        $(mod $module;)+

        /// Every host interface's app-wide state, built once at load.
        pub(crate) struct AppInterfaces {
            $($field: $module::$ty,)+
        }

        /// What the manifest grants one component, per interface.
        pub(crate) struct Grants {
            $($field: <$module::$ty as $crate::interfaces::HostInterface>::Grant,)+
        }

        /// One instance's interface contexts; each interface's host calls
        /// see only their own field.
        pub(crate) struct InstanceContexts {
            $(pub(crate) $field: <$module::$ty as $crate::interfaces::HostInterface>::Instance,)+
        }

        impl AppInterfaces {
            /// The WIT interfaces provided, for error messages.
            pub(crate) const WIT: &'static [&'static str] =
                &[$(<$module::$ty as $crate::interfaces::HostInterface>::WIT,)+];

            /// Builds every interface's app-wide state.
            pub(crate) fn load(
                cx: &$crate::interfaces::LoadContext<'_>,
            ) -> Result<Self, $crate::LoadError> {
                Ok(AppInterfaces {
                    $($field: <$module::$ty as $crate::interfaces::HostInterface>::load(cx)?,)+
                })
            }

            /// What each interface grants `component`.
            pub(crate) fn grants(
                &self,
                component: &$crate::manifest::ComponentDecl,
            ) -> Result<Grants, $crate::LoadError> {
                Ok(Grants {
                    $($field: $crate::interfaces::HostInterface::grant(&self.$field, component)?,)+
                })
            }

            /// Fresh contexts for one instance.
            pub(crate) fn instance(&self, grants: &Grants) -> InstanceContexts {
                InstanceContexts {
                    $($field: $crate::interfaces::HostInterface::instance(
                        &self.$field,
                        &grants.$field,
                    ),)+
                }
            }

            /// Links every interface, each through its own projection.
            pub(crate) fn add_to_linker(
                linker: &mut wasmtime::component::Linker<$crate::wasi::HostState>,
            ) -> wasmtime::Result<()> {
                $(<$module::$ty as $crate::interfaces::HostInterface>::add_to_linker(
                    linker,
                    |state| &mut state.interfaces.$field,
                )?;)+
                Ok(())
            }
        }
    };
}

pub(crate) use host_interfaces;

/// A manifest value that must be a list of strings (`sqlite_databases`,
/// `key_value_stores`); absent means empty.
pub(crate) fn string_list(component: &ComponentDecl, key: &str) -> Result<Vec<String>, LoadError> {
    let invalid = || LoadError::Component {
        component: component.id.clone(),
        message: format!("`{key}` must be a list of strings"),
    };
    match component.table.get(key) {
        None => Ok(Vec::new()),
        Some(toml::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(invalid))
            .collect(),
        Some(_) => Err(invalid()),
    }
}

/// Labels name files, so they must not contain path syntax.
pub(crate) fn is_valid_label(label: &str) -> bool {
    !label.is_empty()
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
