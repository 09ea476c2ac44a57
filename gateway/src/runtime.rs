//! The running configuration: a snapshot built from a checked [`Config`].
//!
//! A request loads the current snapshot once and uses it to the end, so a
//! reload never changes the rules under a request in flight. Building a
//! snapshot is where a config meets the world (the manifest is loaded, the
//! upstream URL is turned into a client); if that fails, the old snapshot
//! keeps serving. An unchanged `[spin]` section reuses the old backend, so a
//! reload does not recompile the components.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use items_core::TrustedKeys;

use crate::config::{self, Config, ConfigError, RouteConfig, SpinMode};
use crate::fallback::RoutePolicy;
use crate::fallback::stack::{self, RouteStack, StackParts};
use crate::native::Native;
use crate::proxy::ExternalSpin;
use crate::routing::RouteTable;
use crate::shadow::Shadow;
use crate::spin::{EmbeddedSpin, SpinBackend};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::stats::Stats;

/// Command-line values that win over the config file (at start and on
/// every reload).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<std::net::SocketAddr>,
    /// `--admin-listen`.
    pub admin_listen: Option<std::net::SocketAddr>,
    /// `--manifest`: embedded mode with this manifest.
    pub manifest: Option<PathBuf>,
    /// `--upstream`: external mode with this Spin.
    pub upstream: Option<http::Uri>,
    /// `--data-dir` for the embedded host.
    pub data_dir: Option<PathBuf>,
    /// `--runtime-config-file` for the embedded host.
    pub runtime_config_file: Option<PathBuf>,
    /// Spin application variables (highest priority; used by tests).
    pub variables: HashMap<String, String>,
    /// Test-only: the native handler alters its answers, so shadow
    /// comparison has a real mismatch to find.
    #[doc(hidden)]
    pub tamper_native_output: bool,
}

impl Overrides {
    /// Applies the overrides to a parsed config.
    pub fn apply(&self, mut config: Config) -> Config {
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(admin) = self.admin_listen {
            config.admin_listen = admin;
        }
        if let Some(upstream) = &self.upstream {
            // The file's discovery and outlier settings stay, if it had any.
            let (resolve_every, outlier) = match &config.spin {
                SpinMode::External {
                    resolve_every,
                    outlier,
                    ..
                } => (*resolve_every, outlier.clone()),
                SpinMode::Embedded { .. } => (None, config::OutlierPolicy::default()),
            };
            config.spin = SpinMode::External {
                upstreams: vec![upstream.clone()],
                resolve_every,
                outlier,
            };
        }
        if let Some(manifest) = &self.manifest {
            config.spin = match config.spin {
                SpinMode::Embedded {
                    data_dir,
                    component_timeout,
                    component_memory_bytes,
                    max_instances,
                    reuse,
                    runtime_config_file,
                    ..
                } => SpinMode::Embedded {
                    manifest: manifest.clone(),
                    data_dir,
                    component_timeout,
                    component_memory_bytes,
                    max_instances,
                    reuse,
                    runtime_config_file,
                },
                SpinMode::External { .. } => SpinMode::Embedded {
                    manifest: manifest.clone(),
                    data_dir: PathBuf::from(config::DEFAULT_DATA_DIR),
                    component_timeout: std::time::Duration::from_millis(
                        config::DEFAULT_COMPONENT_TIMEOUT_MS,
                    ),
                    component_memory_bytes: config::DEFAULT_COMPONENT_MEMORY_MIB << 20,
                    max_instances: config::default_max_instances(&config.routes),
                    reuse: Default::default(),
                    runtime_config_file: None,
                },
            };
        }
        if let (Some(dir), SpinMode::Embedded { data_dir, .. }) = (&self.data_dir, &mut config.spin)
        {
            *data_dir = dir.clone();
        }
        if let (
            Some(file),
            SpinMode::Embedded {
                runtime_config_file,
                ..
            },
        ) = (&self.runtime_config_file, &mut config.spin)
        {
            *runtime_config_file = Some(file.clone());
        }
        config
    }
}

/// One route with its live policy state and its stack.
pub struct RouteRuntime {
    /// The route's checked config.
    pub config: Arc<RouteConfig>,
    /// Its limit, breaker and retry budget.
    pub policy: RoutePolicy,
    /// Its layers over its backend, built with this snapshot.
    pub stack: RouteStack,
}

/// What outlives snapshots and every route's stack reports to.
#[derive(Clone)]
pub struct Shared {
    /// Metrics, exported at `/metrics` and over OTLP.
    pub metrics: Arc<Metrics>,
    /// The shadow-comparison queue.
    pub shadow: Shadow,
}

/// Everything a request needs, frozen for its lifetime.
pub struct Runtime {
    /// The config this snapshot was built from.
    pub config: Config,
    /// Method + path matcher over `routes`.
    pub table: RouteTable,
    /// Routes, in config order (the table's indices point here).
    pub routes: Vec<RouteRuntime>,
    /// The Spin backend.
    pub spin: SpinBackend,
    /// The native handlers.
    pub native: Native,
}

impl Runtime {
    /// Builds a snapshot, reusing `previous`'s Spin backend when the
    /// `[spin]` section did not change.
    pub fn build(
        config: Config,
        overrides: &Overrides,
        previous: Option<&Runtime>,
        shared: &Shared,
    ) -> anyhow::Result<Runtime> {
        let table = RouteTable::new(config.routes.iter().map(|r| (&r.method, r.path.as_str())))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // Both depend only on `[spin]`: an unchanged section keeps them
        // (no recompiling components, no re-reading the manifest).
        let (spin, native) = match previous {
            Some(prev) if prev.config.spin == config.spin => {
                (prev.spin.clone(), prev.native.clone())
            }
            _ => (
                build_spin(&config.spin, overrides, &shared.metrics)?,
                build_native(&config.spin, overrides)?,
            ),
        };
        let routes = config
            .routes
            .iter()
            .map(|route| {
                // Unchanged routes keep their breaker and counters.
                let policy = previous
                    .and_then(|p| p.routes.iter().find(|r| *r.config == *route))
                    .map(|r| r.policy.clone())
                    .unwrap_or_else(|| RoutePolicy::new(route));
                let config = Arc::new(route.clone());
                let stack = stack::build(&StackParts {
                    route: &config,
                    policy: &policy,
                    spin: &spin,
                    native: &native,
                    metrics: &shared.metrics,
                    shadow: &shared.shadow,
                });
                RouteRuntime {
                    config,
                    policy,
                    stack,
                }
            })
            .collect();
        Ok(Runtime {
            config,
            table,
            routes,
            spin,
            native,
        })
    }
}

fn build_spin(
    mode: &SpinMode,
    overrides: &Overrides,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<SpinBackend> {
    Ok(match mode {
        SpinMode::Embedded {
            manifest,
            data_dir,
            component_timeout,
            component_memory_bytes,
            max_instances,
            reuse,
            runtime_config_file,
        } => {
            let host = spin_host::HostConfig {
                data_dir: data_dir.clone(),
                request_timeout: *component_timeout,
                max_memory_bytes: *component_memory_bytes,
                max_concurrent_instances: *max_instances,
                reuse: reuse
                    .iter()
                    .map(|(id, r)| {
                        let policy = spin_host::ReusePolicy {
                            max_requests: r.max_requests,
                            idle: r.idle,
                        };
                        (id.clone(), policy)
                    })
                    .collect(),
                variables: overrides.variables.clone(),
                runtime_config_file: runtime_config_file.clone(),
                ..spin_host::HostConfig::default()
            };
            let started = std::time::Instant::now();
            let app = EmbeddedSpin::load(manifest, host)?;
            tracing::info!(
                manifest = %manifest.display(),
                components = ?app.component_ids(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "Spin app loaded in the embedded host"
            );
            SpinBackend::Embedded(app)
        }
        SpinMode::External {
            upstreams,
            resolve_every,
            outlier,
        } => SpinBackend::External(ExternalSpin::new(
            upstreams,
            *resolve_every,
            outlier,
            metrics.clone(),
        )?),
    })
}

/// The native handlers, trusting what the components trust.
fn build_native(mode: &SpinMode, overrides: &Overrides) -> anyhow::Result<Native> {
    let native = Native::new(trusted_keys(mode, overrides)?, workers());
    Ok(if overrides.tamper_native_output {
        native.tampered_for_tests()
    } else {
        native
    })
}

/// The `trusted_keys` value the components see, so the native twin of
/// `validate` accepts exactly the same signers: an explicit override, else
/// `SPIN_VARIABLE_TRUSTED_KEYS` (as Spin reads it), else the manifest's
/// default, else empty (any well-formed key).
fn trusted_keys(mode: &SpinMode, overrides: &Overrides) -> anyhow::Result<TrustedKeys> {
    let manifest = match mode {
        SpinMode::Embedded { manifest, .. } => Some(manifest.as_path()),
        SpinMode::External { .. } => overrides
            .manifest
            .as_deref()
            .or(Some(Path::new("spin.toml"))),
    };
    let value = overrides
        .variables
        .get("trusted_keys")
        .cloned()
        .or_else(|| std::env::var("SPIN_VARIABLE_TRUSTED_KEYS").ok())
        .or_else(|| manifest.and_then(manifest_default))
        .unwrap_or_default();
    TrustedKeys::parse(&value)
        .map_err(|e| anyhow::anyhow!("the trusted_keys variable is invalid: {e}"))
}

/// `[variables] trusted_keys = { default = "..." }` from a manifest, if any.
fn manifest_default(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let doc: toml::Table = toml::from_str(&text).ok()?;
    doc.get("variables")?
        .get("trusted_keys")?
        .get("default")?
        .as_str()
        .map(str::to_string)
}

/// Native workers: one per core, leaving the async workers responsive.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// The current snapshot plus what is needed to replace it, and the
/// telemetry that outlives snapshots.
pub struct Gateway {
    current: Arc<ArcSwap<Runtime>>,
    source: Option<PathBuf>,
    overrides: Overrides,
    /// Metrics, exported at `/metrics` and over OTLP.
    pub metrics: Arc<Metrics>,
    /// Numbers for the built-in dashboard.
    pub stats: Arc<Stats>,
    /// The last 15 minutes, second by second, for the dashboard's charts.
    pub series: Arc<crate::telemetry::series::Series>,
    /// The shadow-comparison queue.
    pub shadow: Shadow,
    /// Reload outcomes, for `/admin/config` (and so for tests and operators
    /// to see that a SIGHUP was acted on).
    pub reloads: ReloadCounters,
}

/// How many reloads succeeded and failed since start.
#[derive(Debug, Default)]
pub struct ReloadCounters {
    /// The config generation: 0 at start, +1 per successful reload.
    pub generation: std::sync::atomic::AtomicU64,
    /// Reloads refused (the running config stayed).
    pub failed: std::sync::atomic::AtomicU64,
}

/// What a successful reload changed.
#[derive(Debug, serde::Serialize)]
pub struct ReloadReport {
    /// Routes now served.
    pub routes: Vec<String>,
    /// Whether the Spin backend was rebuilt.
    pub spin_rebuilt: bool,
    /// Settings that only take effect after a restart (listeners).
    pub restart_required: Vec<String>,
}

impl Gateway {
    /// Loads `source` (or the built-in config), applies `overrides` and
    /// builds the first snapshot.
    pub fn start(source: Option<PathBuf>, overrides: Overrides) -> anyhow::Result<Gateway> {
        let config = overrides.apply(load_config(source.as_deref())?);
        let otlp = crate::telemetry::OtlpTarget::from_env().map_err(|e| anyhow::anyhow!(e))?;
        let metrics = Arc::new(Metrics::new(otlp.as_ref())?);
        let stats = Arc::new(Stats::default());
        let shadow = Shadow::start(metrics.clone(), stats.clone(), config.server.max_in_flight);
        let series = Arc::new(crate::telemetry::series::Series::default());
        series.follow_shadow(&stats);
        let shared = Shared {
            metrics: metrics.clone(),
            shadow: shadow.clone(),
        };
        let runtime = Runtime::build(config, &overrides, None, &shared)?;
        apply_telemetry(&runtime.config);
        for route in &runtime.routes {
            metrics.circuit_state(&route.config.name, route.policy.circuit.state());
        }
        let current = Arc::new(ArcSwap::from_pointee(runtime));
        // Whatever snapshot is current when metrics are collected.
        let snapshots = Arc::downgrade(&current);
        metrics.watch_pool(move || {
            let current = snapshots.upgrade()?;
            current.load().spin.pool_stats()
        });
        Ok(Gateway {
            current,
            source,
            overrides,
            metrics,
            stats,
            series,
            shadow,
            reloads: ReloadCounters::default(),
        })
    }

    /// The snapshot a new request should use.
    pub fn current(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// Re-reads the config file; on any error the running config stays.
    /// Either way the outcome is counted in [`Gateway::reloads`].
    pub fn reload(&self) -> anyhow::Result<ReloadReport> {
        use std::sync::atomic::Ordering;
        let outcome = self.reload_once();
        let counter = match &outcome {
            Ok(_) => &self.reloads.generation,
            Err(_) => &self.reloads.failed,
        };
        counter.fetch_add(1, Ordering::AcqRel);
        outcome
    }

    fn reload_once(&self) -> anyhow::Result<ReloadReport> {
        let config = self.overrides.apply(load_config(self.source.as_deref())?);
        let old = self.current();
        let mut restart_required = Vec::new();
        if config.listen != old.config.listen {
            restart_required.push("server.listen".to_string());
        }
        if config.admin_listen != old.config.admin_listen {
            restart_required.push("server.admin_listen".to_string());
        }
        if config.server != old.config.server {
            restart_required.push("server (limits and timeouts)".to_string());
        }
        let spin_rebuilt = config.spin != old.config.spin;
        let shared = Shared {
            metrics: self.metrics.clone(),
            shadow: self.shadow.clone(),
        };
        let runtime = Runtime::build(config, &self.overrides, Some(&old), &shared)?;
        apply_telemetry(&runtime.config);
        let routes = runtime
            .routes
            .iter()
            .map(|r| r.config.name.clone())
            .collect();
        self.current.store(Arc::new(runtime));
        Ok(ReloadReport {
            routes,
            spin_rebuilt,
            restart_required,
        })
    }

    /// Where the config comes from, for `/admin/config`.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }
}

/// The process-wide settings a config carries: the trace store's head
/// sample (the store, like the tracing subscriber, is one per process).
fn apply_telemetry(config: &Config) {
    crate::telemetry::traces::store().set_sample_one_in(config.telemetry.trace_sample);
}

fn load_config(source: Option<&Path>) -> Result<Config, ConfigError> {
    match source {
        Some(path) => Config::load(path),
        None => Config::builtin(),
    }
}
