//! An embedded, Spin-compatible host built on wasmtime.
//!
//! The gateway serves the Spin application in-process instead of proxying to a
//! separate `spin up`, so it needs to load `spin.toml`, compile the components
//! once and run each request in a fresh instance exactly like Spin does. This
//! crate keeps every wasmtime type private: the gateway only sees
//! [`SpinApp::load`], [`SpinApp::handle`] and plain `http` types, so routing,
//! proxying and policy code never depend on the wasm runtime.
//!
//! # Host interfaces
//!
//! Besides WASI and wasi:http, the host provides these Spin interfaces:
//! `fermyon:spin/sqlite@2.0.0`, `fermyon:spin/variables@2.0.0` and
//! `fermyon:spin/key-value@2.0.0`. Each is one module with its own context
//! type; the linker reaches it through a projection of the store state
//! (`|state| &mut state.interfaces.key_value`), so an interface's code sees
//! only its own context and owns its app-wide state (pools, files).
//!
//! Adding an interface (say `fermyon:spin/mqtt@2.0.0`):
//!
//! 1. copy its WIT file verbatim into `wit/` (from spin-sdk's
//!    `wit/deps/spin@2.0.0`);
//! 2. write `src/mqtt.rs`: generate its bindings with `bindgen!` and
//!    `interfaces: "import fermyon:spin/mqtt@2.0.0;"`, implement the
//!    generated `Host` traits on a context type, and implement
//!    `interfaces::HostInterface` (load the app-wide state, read the
//!    component's grant from its manifest table, make the per-instance
//!    context, add to the linker through the projection it is given);
//! 3. add one line, `mqtt: mqtt::Mqtt,`, to the `host_interfaces!` list
//!    below, from which the linker is built.
//!
//! Nothing else changes: not the store state, the manifest parser, the
//! loader nor the request path.
#![deny(missing_docs)]

mod app;
pub mod cpu;
mod db;
mod handle;
mod headers;
mod interfaces;
mod limits;
mod manifest;
mod pool;
mod problem;
mod routes;
mod runtime_config;
mod wasi;

// The Spin interfaces, one line each: `field: module::Type`.
interfaces::host_interfaces! {
    sqlite: sqlite::Sqlite,
    variables: variables::Variables,
    key_value: key_value::KeyValue,
}

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use pool::{PoolStats, ReusePolicy};

/// Boxed error used by request and response bodies.
///
/// It is the least common denominator of hyper, axum and wasmtime body errors,
/// so the gateway can pass any body in and get one out without conversions.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response produced by [`SpinApp::handle`].
///
/// Boxed (and `Sync`) so it plugs directly into axum/hyper responses while
/// hiding the wasmtime-internal streaming body behind it.
pub type HostBody = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;

/// Settings of the embedded host that are not part of `spin.toml`.
///
/// They are the knobs `spin up` takes on its command line or runtime config
/// (state directory, limits) plus test overrides, so the gateway can decide
/// them without editing the manifest.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Directory holding the SQLite files (`<data_dir>/<db-name>.db`, and the
    /// key-value store `<data_dir>/sqlite_key_value.db`); created if absent.
    /// Mirrors Spin's `.spin/` state directory.
    pub data_dir: PathBuf,
    /// Per-request deadline, enforced by epoch interruption (CPU loops) and a
    /// wall-clock timer (guests blocked in host calls). Default 30s.
    pub request_timeout: Duration,
    /// Cap on one instance's linear memory, so one request cannot exhaust the
    /// gateway's memory. Default 128 MiB.
    pub max_memory_bytes: usize,
    /// Number of instances that may be alive at once, busy or idle (the
    /// size of the pooling allocator and of the instance pool). A request
    /// that finds every slot busy gets a 503 with `Retry-After` and the
    /// [`PoolFull`] extension. Default 100.
    pub max_concurrent_instances: u32,
    /// Components (by id) that serve requests serially on warm instances
    /// instead of a fresh instance per request. Empty by default: Spin's
    /// fresh-instance isolation. See [`ReusePolicy`].
    pub reuse: HashMap<String, ReusePolicy>,
    /// Explicit application-variable values; they win over `SPIN_VARIABLE_*`
    /// environment variables and manifest defaults. Mainly for tests.
    pub variables: HashMap<String, String>,
    /// Keep compiled components in wasmtime's on-disk cache (the user's
    /// cache directory), so restarts skip recompiling unchanged `.wasm`
    /// files. Default on.
    pub compile_cache: bool,
    /// Spin's runtime configuration file (`spin up --runtime-config-file`).
    /// Its file-backed stores are honoured (`[sqlite_database.<label>]` and
    /// `[key_value_store.<label>]` with `type = "spin"` and a `path`,
    /// relative to the file's directory); anything else makes
    /// [`SpinApp::load`] fail with a message to run the app under a real
    /// `spin up`. `None` (the default): every store is the default one in
    /// `data_dir`.
    pub runtime_config_file: Option<PathBuf>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            data_dir: PathBuf::from(".spin"),
            request_timeout: Duration::from_secs(30),
            max_memory_bytes: 128 * 1024 * 1024,
            max_concurrent_instances: 100,
            reuse: HashMap::new(),
            variables: HashMap::new(),
            compile_cache: true,
            runtime_config_file: None,
        }
    }
}

/// Telemetry about the component that served a response, stored in the
/// response's `http::Extensions`.
///
/// The gateway records which component ran and how long instantiation took
/// without having to parse headers or know about wasmtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// The id of the component (`[component.<id>]`) that handled the request.
    pub component: String,
    /// Time spent getting an instance: instantiating a fresh one, or taking
    /// a warm one from the pool.
    pub instantiate: Duration,
    /// Which request of its instance this was: 1 for a fresh instance, more
    /// when the component reuses instances.
    pub instance_request: u32,
}

/// Marks the 503 [`SpinApp::handle`] answers when every instance slot is
/// busy, so callers can treat it as overload (shed, or serve elsewhere)
/// without reading the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolFull {
    /// The component that could not get an instance.
    pub component: String,
    /// The pool's size.
    pub capacity: usize,
}

/// Why [`SpinApp::load`] failed.
///
/// Loading happens at startup, so every variant carries a message meant for a
/// human fixing the manifest, the build or the environment.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `spin.toml` could not be read or is not a manifest this host supports.
    #[error("invalid manifest {path}: {message}")]
    Manifest {
        /// Path of the manifest.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A component's wasm could not be read, compiled or linked.
    #[error("component '{component}': {message}")]
    Component {
        /// The component id.
        component: String,
        /// What went wrong.
        message: String,
    },
    /// Application or component variables cannot be resolved.
    #[error("variables: {0}")]
    Variables(String),
    /// The wasmtime engine or the data directory could not be set up.
    #[error("host setup: {0}")]
    Setup(String),
}

/// A loaded Spin application, ready to serve requests.
///
/// Components are compiled and pre-instantiated once here; every request then
/// only pays for a cheap instantiation. Cloning the `Arc` around it is the
/// intended way to share it between server tasks.
pub struct SpinApp {
    inner: Arc<app::AppInner>,
}

impl std::fmt::Debug for SpinApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpinApp")
            .field("components", &self.component_ids())
            .finish_non_exhaustive()
    }
}

impl SpinApp {
    /// Reads `spin.toml`, compiles every component once and pre-instantiates
    /// it, failing with a clear message (unsupported imports, missing wasm,
    /// unresolved variables) so problems surface at startup, not per request.
    pub fn load(manifest: &Path, config: HostConfig) -> Result<SpinApp, LoadError> {
        let inner = app::AppInner::load(manifest, config)?;
        Ok(SpinApp {
            inner: Arc::new(inner),
        })
    }

    /// Serves one request in a fresh component instance (or a warm one,
    /// for components configured with a [`ReusePolicy`]), under the host's
    /// `request_timeout`.
    ///
    /// Never fails: no matching route gives a 404, a trapping component a 500,
    /// an exceeded deadline a 504 and a full pool a 503 (with [`PoolFull`]),
    /// all as `application/problem+json`, so the gateway can return the
    /// result as-is. The response carries a [`Served`] extension when a
    /// component ran. Dropping the returned future, or the response body
    /// before its end, aborts the guest.
    pub async fn handle<B>(
        &self,
        req: http::Request<B>,
        client_addr: SocketAddr,
    ) -> http::Response<HostBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let timeout = self.inner.config.request_timeout;
        handle::serve(&self.inner, req, client_addr, timeout).await
    }

    /// Like [`SpinApp::handle`], with a deadline of `timeout` when that is
    /// shorter than the host's `request_timeout`: a caller with its own
    /// deadline (a gateway route) gets the guest interrupted when it stops
    /// waiting, rather than running on unobserved.
    pub async fn handle_within<B>(
        &self,
        req: http::Request<B>,
        client_addr: SocketAddr,
        timeout: Duration,
    ) -> http::Response<HostBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let timeout = timeout.min(self.inner.config.request_timeout);
        handle::serve(&self.inner, req, client_addr, timeout).await
    }

    /// How many instance slots are busy and idle right now.
    pub fn pool_stats(&self) -> PoolStats {
        self.inner.pool.stats()
    }

    /// Ids of the components a manifest declares, without loading them: lets
    /// a caller build per-component settings (such as reuse) before
    /// [`SpinApp::load`].
    pub fn manifest_component_ids(manifest: &Path) -> Result<Vec<String>, LoadError> {
        let parsed = manifest::load(manifest).map_err(|message| LoadError::Manifest {
            path: manifest.to_path_buf(),
            message,
        })?;
        Ok(parsed.components.into_iter().map(|c| c.id).collect())
    }

    /// Ids of the loaded components, in manifest order; useful for startup
    /// logs and health endpoints.
    pub fn component_ids(&self) -> Vec<String> {
        self.inner
            .components
            .iter()
            .map(|c| c.ctx.id.clone())
            .collect()
    }
}
