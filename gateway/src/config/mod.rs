//! The route-level configuration file (`gateway.toml`).
//!
//! Every public route is declared here with the backend that serves it and
//! what happens when that backend fails. The file is parsed and *validated*
//! before anything uses it, at start and on every reload, so a typo is an
//! error naming the file, line and field, never a half-applied config.
//!
//! [`schema`] holds the file's shape (serde); [`validate`] turns it into the
//! checked, typed [`Config`] the gateway runs on.

mod route;
pub use route::LEARN;
mod schema;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;

pub use validate::{ConfigError, default_max_instances, parse_upstream};

/// `[spin].data_dir` when the file leaves it out.
pub const DEFAULT_DATA_DIR: &str = ".data";
/// `[spin].component_timeout_ms` when the file leaves it out.
pub const DEFAULT_COMPONENT_TIMEOUT_MS: u64 = 30_000;
/// `[spin].component_memory_mib` when the file leaves it out.
pub const DEFAULT_COMPONENT_MEMORY_MIB: usize = 256;
/// `reuse.max_requests` when a `[spin.component.<id>] reuse` table leaves it out.
pub const DEFAULT_REUSE_MAX_REQUESTS: u32 = 128;
/// `reuse.idle_ms` when a `[spin.component.<id>] reuse` table leaves it out.
pub const DEFAULT_REUSE_IDLE_MS: u64 = 60_000;

/// Serving requests serially on a warm instance of one component, instead
/// of Spin's fresh instance per request (embedded host only).
///
/// Opt-in per component because it trades isolation for speed: a request
/// can see what an earlier one left in the instance's memory (statics,
/// caches). The instance is recycled after `max_requests`, after `idle`
/// without work, and after any trap, deadline or error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reuse {
    /// Requests per instance before it is recycled.
    pub max_requests: u32,
    /// Idle time after which an instance is recycled.
    pub idle: Duration,
}

/// `[server].header_read_timeout_ms` when the file leaves it out.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// `[server].body_read_timeout_ms` when the file leaves it out.
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// `[server].max_in_flight` when the file leaves it out.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// `[server].max_buffered_bytes` when the file leaves it out (256 MiB).
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 << 20;
/// `[server].drain_ms` when the file leaves it out.
pub const DEFAULT_DRAIN_MS: u64 = 10_000;

/// How the public listener treats connections and admits requests. These
/// settings shape the listener itself, so a reload reports a change as
/// needing a restart rather than applying it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// A client must send a complete request head within this time, or the
    /// connection is closed (slowloris).
    pub header_read_timeout: Duration,
    /// A client must send a complete request body within this time, or it
    /// gets `408` (slow uploads hold memory and a Spin slot).
    pub body_read_timeout: Duration,
    /// Requests being served at once, over all routes; more get `503`.
    pub max_in_flight: usize,
    /// Request bytes the gateway holds in memory at once, over all
    /// requests; a body that would exceed it gets `503`.
    pub max_buffered_bytes: usize,
    /// On SIGTERM, how long in-flight requests may take to finish before
    /// they are cut off.
    pub drain: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_millis(DEFAULT_HEADER_READ_TIMEOUT_MS),
            body_read_timeout: Duration::from_millis(DEFAULT_BODY_READ_TIMEOUT_MS),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            drain: Duration::from_millis(DEFAULT_DRAIN_MS),
        }
    }
}

/// `[telemetry].trace_sample` when the file leaves it out: one request in
/// this many is kept in the in-memory trace store.
pub const DEFAULT_TRACE_SAMPLE: u32 = 64;
/// `[telemetry].bench_report` when the file leaves it out (relative to the
/// working directory: where `cargo xtask bench` writes it when run from the
/// repository).
pub const DEFAULT_BENCH_REPORT: &str = "target/bench/report.json";

/// What the gateway keeps for its own pages (`[telemetry]`); both apply on
/// reload. Export over OTLP is set by the standard `OTEL_*` variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// The in-memory trace store's head sample: one request in this many
    /// is recorded when nobody is looking (`0`: only sampled `traceparent`s
    /// and requests while a viewer has the dashboard open).
    pub trace_sample: u32,
    /// The bench report the dashboard's crossover chart reads
    /// (`/admin/bench`).
    pub bench_report: PathBuf,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            trace_sample: DEFAULT_TRACE_SAMPLE,
            bench_report: PathBuf::from(DEFAULT_BENCH_REPORT),
        }
    }
}

/// Which Spin the `spin` backend talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpinMode {
    /// Components run in-process in the embedded host.
    Embedded {
        /// The manifest whose components are loaded.
        manifest: PathBuf,
        /// Where SQLite databases live.
        data_dir: PathBuf,
        /// Per-request deadline inside the host.
        component_timeout: Duration,
        /// Linear-memory cap per instance.
        component_memory_bytes: usize,
        /// Instances alive at once (busy or idle); by default the sum of
        /// the Spin routes' `concurrency`, so route limits shed first.
        max_instances: u32,
        /// Components that reuse instances, by component id.
        reuse: BTreeMap<String, Reuse>,
        /// Spin's `runtime-config.toml` (`spin up --runtime-config-file`):
        /// its file-backed SQLite and key-value stores are honoured, and
        /// anything the host cannot honour (libSQL, Redis...) refuses the
        /// start, pointing to external mode.
        runtime_config_file: Option<PathBuf>,
    },
    /// Running `spin up` replicas, reached over HTTP.
    External {
        /// Base URLs, e.g. `http://127.0.0.1:3000` (at least one).
        upstreams: Vec<http::Uri>,
        /// When set, DNS names among `upstreams` are resolved this often
        /// and every address is a replica (a headless Service: one A record
        /// per pod); when absent, a name is one replica that the connector
        /// resolves per connection.
        resolve_every: Option<Duration>,
        /// When a replica is ejected and brought back.
        outlier: OutlierPolicy,
    },
}

/// `[spin.outlier].consecutive_failures` when the file leaves it out.
pub const DEFAULT_OUTLIER_FAILURES: u32 = 5;
/// `[spin.outlier].max_ejected_percent` when the file leaves it out.
pub const DEFAULT_MAX_EJECTED_PERCENT: u32 = 50;
/// `[spin.outlier].probe_every_ms` when the file leaves it out.
pub const DEFAULT_PROBE_EVERY_MS: u64 = 1_000;
/// Most upstream replicas (listed, or resolved from DNS) the gateway keeps:
/// also the bound on the `upstream` metric label.
pub const MAX_UPSTREAMS: usize = 64;

/// Passive outlier detection on the Spin replicas (external mode), after
/// Envoy's `consecutive_5xx`: a replica is ejected after
/// `consecutive_failures` connect errors or 5xx answers in a row, unless
/// that would eject more than `max_ejected_percent` of the replicas (never
/// all of them), and comes back once a probe of Spin's health endpoint
/// (`/.well-known/spin/health`, every `probe_every`) answers 200.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// Failures in a row that eject a replica.
    pub consecutive_failures: u32,
    /// Largest share of the replicas ejected at once (at least one of
    /// several may always be ejected; the last one never is).
    pub max_ejected_percent: u32,
    /// How often an ejected replica's health endpoint is probed.
    pub probe_every: Duration,
}

impl Default for OutlierPolicy {
    fn default() -> Self {
        OutlierPolicy {
            consecutive_failures: DEFAULT_OUTLIER_FAILURES,
            max_ejected_percent: DEFAULT_MAX_EJECTED_PERCENT,
            probe_every: Duration::from_millis(DEFAULT_PROBE_EVERY_MS),
        }
    }
}

/// Which backend serves a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// The Spin application only.
    Spin,
    /// The native handler only.
    Native,
    /// Spin first; native on a listed fallback trigger or by the size rule.
    Auto,
}

/// Native handlers compiled into the gateway from the core crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NativeHandler {
    /// Batch validation (`items_core::validate_batch`).
    Validate,
}

/// Reasons the `auto` backend falls back to native.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FallbackTrigger {
    /// The Spin backend could not be reached.
    ConnectError,
    /// The Spin backend did not answer within the route's timeout.
    Timeout,
    /// The Spin backend answered with a 5xx status.
    ServerError,
    /// The circuit breaker on the Spin backend is open.
    CircuitOpen,
    /// The route's concurrency limit for Spin is reached.
    Overloaded,
}

impl FallbackTrigger {
    /// The name used in the config file and in `x-gateway-fallback`.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackTrigger::ConnectError => "connect-error",
            FallbackTrigger::Timeout => "timeout",
            FallbackTrigger::ServerError => "5xx",
            FallbackTrigger::CircuitOpen => "circuit-open",
            FallbackTrigger::Overloaded => "overloaded",
        }
    }

    /// Every trigger, in the order they are documented.
    pub const ALL: [FallbackTrigger; 5] = [
        FallbackTrigger::ConnectError,
        FallbackTrigger::Timeout,
        FallbackTrigger::ServerError,
        FallbackTrigger::CircuitOpen,
        FallbackTrigger::Overloaded,
    ];
}

/// Retries of idempotent requests against the Spin backend.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Extra attempts after the first (0 = no retries).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Retries allowed as a fraction of recent requests (tower's budget).
    pub budget_ratio: f32,
}

/// The circuit breaker on a route's Spin backend.
#[derive(Clone, Debug, PartialEq)]
pub struct CircuitPolicy {
    /// Opens after this many failures in a row.
    pub consecutive_failures: u32,
    /// ...or when this fraction of the requests in the window failed.
    pub failure_rate: f64,
    /// ...counting only once the window holds this many requests.
    pub min_requests: u32,
    /// The sliding window for the failure rate.
    pub window: Duration,
    /// How long the circuit stays open before letting probes through.
    pub open_for: Duration,
    /// Successful probes needed in half-open to close again.
    pub half_open_probes: u32,
}

/// One public route, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteConfig {
    /// Stable name, used in metrics, logs and headers.
    pub name: String,
    /// Method the route answers.
    pub method: Method,
    /// Public path in Axum syntax (`/items/{id}`).
    pub path: String,
    /// Which backend serves it.
    pub backend: BackendKind,
    /// Path on the Spin app (`{param}`s filled from `path`).
    pub spin_path: Option<String>,
    /// Native twin, if any.
    pub native: Option<NativeHandler>,
    /// Deadline for one Spin attempt.
    pub timeout: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// In-flight requests allowed on the Spin backend; beyond it the route
    /// sheds (503 + Retry-After) or falls back.
    pub concurrency: usize,
    /// Requests on this route being served at once, from the moment they
    /// are matched until their answer is sent; more get `503` before a byte
    /// of their body is read. Defaults to half of `[server] max_in_flight`,
    /// so a flood on one route leaves room for the others.
    pub max_in_flight: usize,
    /// Request bytes this route may hold in memory at once (bodies it
    /// buffers); a body that would pass it gets `503`. Defaults to half of
    /// `[server] max_buffered_bytes`.
    pub max_buffered_bytes: usize,
    /// Retry policy (applied only when the method is idempotent).
    pub retry: RetryPolicy,
    /// Circuit breaker.
    pub circuit: CircuitPolicy,
    /// Triggers that send an `auto` route to native.
    pub fallback_on: Vec<FallbackTrigger>,
    /// Bodies larger than this go straight to native (`auto` only).
    pub native_above_bytes: Option<usize>,
    /// `fallback.native_above_bytes = "learn"`: the path is picked per
    /// request from each path's measured cost (`auto` only; see
    /// `fallback::learn`). `native_above_bytes` is `None` then.
    pub learn: bool,
    /// Fraction of requests replayed on the other backend and compared
    /// (0 = off); needs both `spin_path` and `native`. An `auto` route
    /// without a `shadow` table samples 1% (`route::DEFAULT_SHADOW_SAMPLE`).
    pub shadow_sample: f64,
}

/// The whole gateway configuration, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Public listener.
    pub listen: SocketAddr,
    /// Admin listener (health, readiness, config reload).
    pub admin_listen: SocketAddr,
    /// Public listener limits and admission (`[server]`).
    pub server: ServerLimits,
    /// Spin backend.
    pub spin: SpinMode,
    /// The in-memory trace store and the dashboard (`[telemetry]`).
    pub telemetry: TelemetrySettings,
    /// Public routes.
    pub routes: Vec<RouteConfig>,
    /// Where the config came from (for reload and error messages).
    pub source: Option<PathBuf>,
}

impl Config {
    /// Parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `file` is named in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        validate::parse(text, file)
    }

    /// The configuration used when no file is given: the built-in routes for
    /// the three components of `spin.toml`, with the embedded host.
    pub fn builtin() -> Result<Config, ConfigError> {
        validate::parse(BUILTIN, Path::new("gateway/gateway.toml (built in)"))
    }

    /// Looks up a route by name.
    pub fn route(&self, name: &str) -> Option<&RouteConfig> {
        self.routes.iter().find(|r| r.name == name)
    }
}

/// The built-in config, also shipped as `gateway/gateway.toml`.
pub const BUILTIN: &str = include_str!("../../gateway.toml");
