//! The file's shape, as serde sees it. Every value keeps its span so that
//! validation errors can point at a line.

use serde::Deserialize;
use toml::Spanned;

/// Top level of `gateway.toml`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub spin: Spin,
    #[serde(default)]
    pub telemetry: Telemetry,
    #[serde(default)]
    pub route: Vec<Spanned<Route>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    pub trace_sample: Option<Spanned<i64>>,
    pub bench_report: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: Option<Spanned<String>>,
    pub admin_listen: Option<Spanned<String>>,
    pub header_read_timeout_ms: Option<Spanned<i64>>,
    pub body_read_timeout_ms: Option<Spanned<i64>>,
    pub max_in_flight: Option<Spanned<i64>>,
    pub max_buffered_bytes: Option<Spanned<i64>>,
    pub drain_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Spin {
    pub mode: Option<Spanned<String>>,
    pub manifest: Option<Spanned<String>>,
    /// One `http://host:port` or a list of them (checked in `validate`).
    pub upstream: Option<Spanned<toml::Value>>,
    pub resolve_every_ms: Option<Spanned<i64>>,
    pub outlier: Option<Spanned<Outlier>>,
    pub data_dir: Option<Spanned<String>>,
    pub component_timeout_ms: Option<Spanned<i64>>,
    pub component_memory_mib: Option<Spanned<i64>>,
    pub max_instances: Option<Spanned<i64>>,
    pub runtime_config_file: Option<Spanned<String>>,
    /// `[spin.component.<id>]`: per-component settings of the embedded host.
    pub component: Option<std::collections::BTreeMap<String, Spanned<Component>>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Outlier {
    pub consecutive_failures: Option<Spanned<i64>>,
    pub max_ejected_percent: Option<Spanned<i64>>,
    pub probe_every_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub reuse: Option<Spanned<Reuse>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Reuse {
    pub max_requests: Option<Spanned<i64>>,
    pub idle_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: Spanned<String>,
    #[serde(rename = "match")]
    pub matcher: Spanned<Match>,
    pub backend: Option<Spanned<String>>,
    pub spin_path: Option<Spanned<String>>,
    pub native: Option<Spanned<String>>,
    pub timeout_ms: Option<Spanned<i64>>,
    pub max_body_bytes: Option<Spanned<i64>>,
    pub concurrency: Option<Spanned<i64>>,
    pub max_in_flight: Option<Spanned<i64>>,
    pub max_buffered_bytes: Option<Spanned<i64>>,
    pub retry: Option<Spanned<Retry>>,
    pub circuit: Option<Spanned<Circuit>>,
    pub fallback: Option<Spanned<Fallback>>,
    pub shadow: Option<Spanned<Shadow>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    pub sample: Spanned<f64>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub method: Spanned<String>,
    pub path: Spanned<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    pub attempts: Option<Spanned<i64>>,
    pub backoff_ms: Option<Spanned<i64>>,
    pub budget_percent: Option<Spanned<i64>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Circuit {
    pub consecutive_failures: Option<Spanned<i64>>,
    pub failure_rate: Option<Spanned<f64>>,
    pub min_requests: Option<Spanned<i64>>,
    pub window_ms: Option<Spanned<i64>>,
    pub open_ms: Option<Spanned<i64>>,
    pub half_open_probes: Option<Spanned<i64>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    pub on: Option<Spanned<Vec<Spanned<String>>>>,
    pub native_above_bytes: Option<Spanned<Threshold>>,
}

/// `fallback.native_above_bytes`: a number of bytes, or `"learn"`.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Threshold {
    Bytes(i64),
    Word(String),
}
