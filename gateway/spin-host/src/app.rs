//! Loading an application: engine, linker, compilation, pre-instantiation.
//!
//! All expensive and fallible work happens here, once, at startup: compiling
//! wasm, checking that every import is something this host provides, and
//! resolving variables. Serving a request then only instantiates a
//! pre-linked component, which is what makes Spin's instance-per-request
//! model affordable.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::interfaces::LoadContext;
use crate::manifest::ComponentDecl;
use crate::pool::{InstancePool, policies_in_order};
use crate::routes::Router;
use crate::wasi::{ComponentCtx, HostState};
use crate::{AppInterfaces, HostConfig, LoadError, limits, manifest};

/// Interfaces this host implements, for error messages.
fn supported() -> String {
    format!(
        "wasi:cli, wasi:clocks, wasi:filesystem (no preopens), wasi:io, wasi:random, \
         wasi:sockets (all denied), wasi:http@0.2 (outbound denied), {}",
        AppInterfaces::WIT.join(", ")
    )
}

/// A compiled, linked component ready to instantiate.
pub(crate) struct LoadedComponent {
    /// Static per-component data shared by its requests.
    pub ctx: Arc<ComponentCtx>,
    /// The pre-instantiated `wasi:http/proxy` component.
    pub pre: ProxyPre<HostState>,
}

/// The shared state behind `SpinApp`.
pub(crate) struct AppInner {
    /// The engine every component was compiled with.
    pub engine: Engine,
    /// Maps request paths to component indices.
    pub router: Router,
    /// Components in manifest order.
    pub components: Vec<LoadedComponent>,
    /// The host configuration (timeouts, limits).
    pub config: HostConfig,
    /// Instance slots, and warm instances of components that reuse them.
    pub pool: Arc<InstancePool>,
    /// The Spin interfaces' app-wide state (databases, stores, variables).
    pub interfaces: AppInterfaces,
}

impl AppInner {
    /// See [`crate::SpinApp::load`].
    pub fn load(manifest_path: &Path, config: HostConfig) -> Result<AppInner, LoadError> {
        let started = Instant::now();
        let manifest = manifest::load(manifest_path).map_err(|message| LoadError::Manifest {
            path: manifest_path.to_path_buf(),
            message,
        })?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            LoadError::Setup(format!(
                "cannot create data dir {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let runtime_config = crate::runtime_config::load(config.runtime_config_file.as_deref())?;
        let interfaces = AppInterfaces::load(&LoadContext {
            config: &config,
            manifest: &manifest,
            runtime_config: &runtime_config,
        })?;

        let engine = build_engine(&config)?;
        let linker = build_linker(&engine)?;
        let components = manifest
            .components
            .iter()
            .map(|decl| load_component(&engine, &linker, &interfaces, decl))
            .collect::<Result<Vec<_>, _>>()?;
        let router = build_router(manifest_path, &manifest)?;

        let ids: Vec<String> = manifest.components.iter().map(|c| c.id.clone()).collect();
        let reuse = policies_in_order(&ids, &config.reuse).map_err(LoadError::Setup)?;
        let capacity = config.max_concurrent_instances.max(1) as usize;
        let pool = Arc::new(InstancePool::new(capacity, reuse));

        limits::start_epoch_ticker(engine.weak())
            .map_err(|e| LoadError::Setup(format!("cannot start epoch ticker thread: {e}")))?;
        crate::pool::start_sweeper(Arc::downgrade(&pool))
            .map_err(|e| LoadError::Setup(format!("cannot start instance sweeper thread: {e}")))?;
        tracing::info!(
            components = components.len(),
            elapsed = ?started.elapsed(),
            "loaded Spin application"
        );
        Ok(AppInner {
            engine,
            router,
            components,
            config,
            pool,
            interfaces,
        })
    }
}

/// Reads, compiles and pre-links one component, with what each interface
/// grants it.
fn load_component(
    engine: &Engine,
    linker: &Linker<HostState>,
    interfaces: &AppInterfaces,
    decl: &ComponentDecl,
) -> Result<LoadedComponent, LoadError> {
    let grants = interfaces.grants(decl)?;
    if !decl.allowed_outbound_hosts.is_empty() {
        tracing::warn!(
            component = %decl.id,
            hosts = ?decl.allowed_outbound_hosts,
            "allowed_outbound_hosts is not supported by the embedded host; outbound requests will be denied"
        );
    }
    let component_err = |message: String| LoadError::Component {
        component: decl.id.clone(),
        message,
    };
    let bytes = std::fs::read(&decl.source).map_err(|e| {
        component_err(format!(
            "cannot read {}: {e} (build the components first, e.g. `cargo xtask build`)",
            decl.source.display()
        ))
    })?;
    let t0 = Instant::now();
    let component = Component::new(engine, &bytes)
        .map_err(|e| component_err(format!("cannot compile {}: {e:#}", decl.source.display())))?;
    let compiled_in = t0.elapsed();
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| component_err(link_error_message(&format!("{e:#}"))))?;
    let pre = ProxyPre::new(pre).map_err(|e| {
        component_err(format!(
            "it does not export wasi:http/incoming-handler@0.2 (is it an HTTP component?): {e:#}"
        ))
    })?;
    tracing::info!(component = %decl.id, ?compiled_in, bytes = bytes.len(), "compiled component");
    Ok(LoadedComponent {
        ctx: Arc::new(ComponentCtx {
            id: decl.id.clone(),
            environment: decl
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            grants,
        }),
        pre,
    })
}

/// The routing table, in manifest order.
fn build_router(manifest_path: &Path, manifest: &manifest::Manifest) -> Result<Router, LoadError> {
    let index: HashMap<&str, usize> = manifest
        .components
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let routes = manifest.triggers.iter().filter_map(|t| {
        index
            .get(t.component.as_str())
            .map(|i| (t.route.as_str(), *i))
    });
    Router::build(&manifest.base, routes).map_err(|message| LoadError::Manifest {
        path: manifest_path.to_path_buf(),
        message,
    })
}

/// Linear memory per slot reset in place rather than decommitted.
const KEEP_RESIDENT_BYTES: usize = 16 << 20;
/// Slots whose leftover pages are decommitted together.
const DECOMMIT_BATCH: usize = 32;

/// One engine for all components: epoch interruption for deadlines and the
/// pooling allocator for fast, bounded per-request instantiation. Falls back
/// to on-demand allocation if the pool's virtual memory cannot be reserved
/// (e.g. under a tight `ulimit -v`).
fn build_engine(config: &HostConfig) -> Result<Engine, LoadError> {
    let n = config.max_concurrent_instances.max(1);
    let mut base = Config::new();
    base.epoch_interruption(true).wasm_component_model(true);
    if std::env::var_os("SPIN_HOST_PERFMAP").is_some() {
        base.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if config.compile_cache {
        // wasmtime's own on-disk cache of compiled code: a restart (or a
        // second app in the same process) skips Cranelift entirely.
        match wasmtime::Cache::new(wasmtime::CacheConfig::new()) {
            Ok(cache) => {
                base.cache(Some(cache));
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "compilation cache unavailable"),
        }
    }

    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(16))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(16))
        .total_stacks(n)
        .max_memory_size(config.max_memory_bytes)
        // Resetting a slot with madvise unmaps pages, and in a multi-threaded
        // process every unmap is a TLB shootdown on the other cores: measured
        // as a quarter of the CPU time of a fresh-instance hello. Instead,
        // PAGEMAP_SCAN finds the pages a request touched and they are reset
        // in place with memset (up to these sizes), staying resident for the
        // next instance; what is left is decommitted in batches.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES.min(config.max_memory_bytes))
        .table_keep_resident(1 << 20)
        .decommit_batch_size(DECOMMIT_BATCH);
    let mut pooled = base.clone();
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&pooled) {
        Ok(engine) => Ok(engine),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "pooling allocator unavailable; using on-demand allocation");
            Engine::new(&base)
                .map_err(|e| LoadError::Setup(format!("cannot create wasmtime engine: {e:#}")))
        }
    }
}

/// Links exactly the interfaces this host supports.
fn build_linker(engine: &Engine) -> Result<Linker<HostState>, LoadError> {
    let setup = |e: wasmtime::Error| LoadError::Setup(format!("cannot build linker: {e:#}"));
    let mut linker = Linker::<HostState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(setup)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(setup)?;
    AppInterfaces::add_to_linker(&mut linker).map_err(setup)?;
    Ok(linker)
}

/// Rephrases a linker error into advice: which import is missing, what we do
/// support, and that `spin up` is the way to run such a component.
pub(crate) fn link_error_message(err: &str) -> String {
    let missing = err.split('`').nth(1).filter(|_| {
        err.contains("matching implementation was not found") || err.contains("import")
    });
    match missing {
        Some(name) => format!(
            "it imports `{name}`, which the embedded host does not provide (it supports {}); \
             run this app with `spin up` instead, or remove that dependency. Linker said: {err}",
            supported()
        ),
        None => format!(
            "cannot link it against the embedded host ({err}); the host supports {}; \
             run this app with `spin up` if it needs more",
            supported()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_error_names_the_interface_and_suggests_spin_up() {
        let msg = link_error_message(
            "component imports instance `fermyon:spin/mqtt@2.0.0`, but a matching implementation was not found in the linker",
        );
        assert!(msg.contains("`fermyon:spin/mqtt@2.0.0`"), "{msg}");
        assert!(msg.contains("spin up"), "{msg}");
        for supported in [
            "fermyon:spin/sqlite@2.0.0",
            "fermyon:spin/variables@2.0.0",
            "fermyon:spin/key-value@2.0.0",
        ] {
            assert!(msg.contains(supported), "{msg}");
        }
    }

    #[test]
    fn unknown_link_errors_still_suggest_spin_up() {
        let msg = link_error_message("something odd");
        assert!(
            msg.contains("something odd") && msg.contains("spin up"),
            "{msg}"
        );
    }
}
