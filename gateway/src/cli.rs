//! The command line.
//!
//! `gateway --manifest spin.toml` runs the components in-process,
//! `gateway --upstream http://127.0.0.1:3000` fronts a running `spin up`,
//! `gateway --config gateway.toml` runs from a route-level config file (the
//! two flags above override its `[spin]` section). `gateway serve-spin`
//! serves a manifest the way `spin up` does, with no gateway policy at all.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};

use crate::runtime::Overrides;

/// Command-line arguments of the `gateway` binary.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "gateway",
    version,
    about = "Axum gateway in front of a Spin application"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Run mode; without one, the gateway runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Gateway options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Serve a Spin manifest's routes unchanged, like `spin up` (no
    /// gateway routing or policy): the stand-in for an external Spin.
    ServeSpin(ServeSpinArgs),
}

/// `gateway [OPTIONS]`.
#[derive(ClapArgs, Debug, Clone, Default)]
pub struct RunArgs {
    /// Route-level config file (default: the built-in routes for spin.toml).
    #[arg(long, env = "GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Public listener; overrides `[server].listen`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin listener; overrides `[server].admin_listen`.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Run this manifest's components in the embedded host; overrides `[spin]`.
    #[arg(long, conflicts_with = "upstream")]
    pub manifest: Option<PathBuf>,
    /// Proxy to a running Spin at this URL; overrides `[spin]`.
    #[arg(long, value_parser = parse_upstream)]
    pub upstream: Option<http::Uri>,
    /// SQLite directory of the embedded host; overrides `[spin].data_dir`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Spin's runtime-config.toml for the embedded host (Spin's format and
    /// flag); overrides `[spin].runtime_config_file`. A store the host
    /// cannot honour (libSQL, Redis...) refuses the start.
    #[arg(long, conflicts_with = "upstream")]
    pub runtime_config_file: Option<PathBuf>,
}

impl RunArgs {
    /// The values that win over the config file.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            admin_listen: self.admin_listen,
            manifest: self.manifest.clone(),
            upstream: self.upstream.clone(),
            data_dir: self.data_dir.clone(),
            runtime_config_file: self.runtime_config_file.clone(),
            ..Overrides::default()
        }
    }
}

/// `gateway serve-spin`.
#[derive(ClapArgs, Debug, Clone)]
pub struct ServeSpinArgs {
    /// The Spin manifest to serve.
    #[arg(long, default_value = "spin.toml")]
    pub manifest: PathBuf,
    /// Where to listen (Spin's default is 127.0.0.1:3000).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// SQLite directory (Spin's `.spin/` equivalent).
    #[arg(long, default_value = ".data")]
    pub data_dir: PathBuf,
    /// Serve up to N requests serially on one warm instance of each
    /// component (0: a fresh instance per request, Spin's default).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub reuse_max_requests: u32,
    /// Recycle a warm instance idle for this long (with --reuse-max-requests).
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    pub reuse_idle_ms: u64,
    /// Instances alive at once (busy or idle); beyond it requests get 503.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_instances: u32,
    /// Per-request deadline inside the host.
    #[arg(long, default_value_t = 30_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub component_timeout_ms: u64,
    /// Compile every component from scratch instead of using wasmtime's
    /// on-disk cache (to measure a cold start).
    #[arg(long)]
    pub no_compile_cache: bool,
    /// Spin's runtime-config.toml, as `spin up --runtime-config-file` takes
    /// it; a store the host cannot honour refuses the start.
    #[arg(long)]
    pub runtime_config_file: Option<PathBuf>,
}

impl ServeSpinArgs {
    /// The embedded host's settings these flags describe; reuse applies to
    /// every component of the manifest.
    pub fn host_config(&self, component_ids: &[String]) -> spin_host::HostConfig {
        let reuse = if self.reuse_max_requests > 0 {
            let policy = spin_host::ReusePolicy {
                max_requests: self.reuse_max_requests,
                idle: std::time::Duration::from_millis(self.reuse_idle_ms),
            };
            component_ids
                .iter()
                .map(|id| (id.clone(), policy))
                .collect()
        } else {
            Default::default()
        };
        spin_host::HostConfig {
            data_dir: self.data_dir.clone(),
            request_timeout: std::time::Duration::from_millis(self.component_timeout_ms),
            max_concurrent_instances: self.max_instances,
            reuse,
            compile_cache: !self.no_compile_cache,
            runtime_config_file: self.runtime_config_file.clone(),
            ..spin_host::HostConfig::default()
        }
    }
}

fn parse_upstream(text: &str) -> Result<http::Uri, String> {
    crate::config::parse_upstream(text)
}
