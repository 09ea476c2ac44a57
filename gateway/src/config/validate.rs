//! From the parsed file to a checked [`Config`]: defaults, ranges, and
//! cross-field rules, each failure naming file, line, column and field.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::schema;
use super::{BackendKind, Config, RouteConfig, ServerLimits, SpinMode, TelemetrySettings};

/// Why a config file was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the config file: {message}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The file was read but is not a valid config.
    #[error("{}:{line}:{column}: `{field}`: {message}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column of the offending value.
        column: usize,
        /// Dotted path of the field (`route[2].timeout_ms`).
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

/// Error construction with positions computed from spans.
pub(super) struct Ctx<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Ctx<'_> {
    /// An error at `span` about `field`.
    pub(super) fn err(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = position(self.text, span.start);
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    /// `value` (or `default` when absent), checked against `range`.
    pub(super) fn int_in<T: TryFrom<i64>>(
        &self,
        value: &Option<Spanned<i64>>,
        field: &str,
        range: std::ops::RangeInclusive<i64>,
        default: T,
    ) -> Result<T, ConfigError> {
        let Some(v) = value else { return Ok(default) };
        let n = *v.get_ref();
        if !range.contains(&n) {
            return Err(self.err(
                v.span(),
                field,
                format!(
                    "{n} is out of range; expected {} to {}",
                    range.start(),
                    range.end()
                ),
            ));
        }
        T::try_from(n).map_err(|_| self.err(v.span(), field, format!("{n} does not fit")))
    }
}

/// 1-based line and column of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

pub(super) fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let ctx = Ctx { text, file };
    let parsed: schema::File = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().to_string();
        let field = field_from_message(&message);
        ctx.err(span, field, message)
    })?;

    let listen = socket_addr(
        &ctx,
        &parsed.server.listen,
        "server.listen",
        "127.0.0.1:8080",
    )?;
    let admin_listen = socket_addr(
        &ctx,
        &parsed.server.admin_listen,
        "server.admin_listen",
        "127.0.0.1:9090",
    )?;
    if listen == admin_listen && listen.port() != 0 {
        let span = parsed
            .server
            .admin_listen
            .as_ref()
            .map_or(0..0, Spanned::span);
        return Err(ctx.err(
            span,
            "server.admin_listen",
            "must differ from server.listen",
        ));
    }
    let server = server_limits(&ctx, &parsed.server)?;
    let telemetry = telemetry_settings(&ctx, &parsed.telemetry)?;
    let mut spin = spin_mode(&ctx, &parsed.spin)?;

    if parsed.route.is_empty() {
        return Err(ctx.err(0..0, "route", "at least one [[route]] is required"));
    }
    let mut routes = Vec::with_capacity(parsed.route.len());
    let mut names = HashSet::new();
    let mut matches = HashSet::new();
    for (i, route) in parsed.route.iter().enumerate() {
        let checked = super::route::route_config(&ctx, i, route.get_ref(), &server)?;
        if !names.insert(checked.name.clone()) {
            return Err(ctx.err(
                route.get_ref().name.span(),
                format!("route[{i}].name"),
                format!("duplicate route name `{}`", checked.name),
            ));
        }
        if !matches.insert((checked.method.clone(), checked.path.clone())) {
            return Err(ctx.err(
                route.get_ref().matcher.span(),
                format!("route[{i}].match"),
                format!(
                    "another route already matches {} {}",
                    checked.method, checked.path
                ),
            ));
        }
        routes.push(checked);
    }

    if let SpinMode::Embedded { max_instances, .. } = &mut spin
        && parsed.spin.max_instances.is_none()
    {
        *max_instances = default_max_instances(&routes);
    }

    Ok(Config {
        listen,
        admin_listen,
        server,
        spin,
        telemetry,
        routes,
        source: Some(file.to_path_buf()),
    })
}

fn telemetry_settings(
    ctx: &Ctx,
    telemetry: &schema::Telemetry,
) -> Result<TelemetrySettings, ConfigError> {
    let bench_report = match &telemetry.bench_report {
        None => PathBuf::from(super::DEFAULT_BENCH_REPORT),
        Some(path) if path.get_ref().trim().is_empty() => {
            return Err(ctx.err(
                path.span(),
                "telemetry.bench_report",
                "must name a file (the report `cargo xtask bench` writes)",
            ));
        }
        Some(path) => PathBuf::from(path.get_ref()),
    };
    Ok(TelemetrySettings {
        trace_sample: ctx.int_in(
            &telemetry.trace_sample,
            "telemetry.trace_sample",
            0..=1_000_000,
            super::DEFAULT_TRACE_SAMPLE,
        )?,
        bench_report,
    })
}

/// serde's unknown-field and missing-field messages name the field; keep it.
fn field_from_message(message: &str) -> String {
    for marker in ["unknown field `", "missing field `"] {
        if let Some(rest) = message.split(marker).nth(1)
            && let Some(name) = rest.split('`').next()
        {
            return name.to_string();
        }
    }
    "(syntax)".to_string()
}

fn socket_addr(
    ctx: &Ctx,
    value: &Option<Spanned<String>>,
    field: &str,
    default: &str,
) -> Result<std::net::SocketAddr, ConfigError> {
    let (text, span) = match value {
        Some(v) => (v.get_ref().as_str(), v.span()),
        None => (default, 0..0),
    };
    text.parse().map_err(|_| {
        ctx.err(
            span,
            field,
            format!("`{text}` is not an IP:port address (e.g. 127.0.0.1:8080)"),
        )
    })
}

/// Largest `[spin].max_instances`: each slot reserves address space for its
/// memories in the pooling allocator.
const MAX_INSTANCES: i64 = 100_000;

/// The pool size when `[spin].max_instances` is absent: enough slots for
/// every Spin route to use its whole `concurrency`, so a route's own limit
/// (which sheds or falls back route by route) is reached before the host's
/// shared pool is.
pub fn default_max_instances(routes: &[RouteConfig]) -> u32 {
    let sum: usize = routes
        .iter()
        .filter(|r| r.backend != BackendKind::Native)
        .map(|r| r.concurrency)
        .sum();
    u32::try_from(sum.clamp(1, MAX_INSTANCES as usize)).unwrap_or(1)
}

/// `[spin.component.<id>]` tables: only `reuse` today.
fn component_reuse(
    ctx: &Ctx,
    spin: &schema::Spin,
) -> Result<std::collections::BTreeMap<String, super::Reuse>, ConfigError> {
    let mut out = std::collections::BTreeMap::new();
    for (id, settings) in spin.component.iter().flatten() {
        let Some(reuse) = &settings.get_ref().reuse else {
            continue;
        };
        let field = |name: &str| format!("spin.component.{id}.reuse.{name}");
        let r = reuse.get_ref();
        let max_requests = ctx.int_in(
            &r.max_requests,
            &field("max_requests"),
            1..=1_000_000,
            super::DEFAULT_REUSE_MAX_REQUESTS,
        )?;
        let idle_ms: u64 = ctx.int_in(
            &r.idle_ms,
            &field("idle_ms"),
            1..=3_600_000,
            super::DEFAULT_REUSE_IDLE_MS,
        )?;
        out.insert(
            id.clone(),
            super::Reuse {
                max_requests,
                idle: Duration::from_millis(idle_ms),
            },
        );
    }
    Ok(out)
}

/// `[server]` limits; every field is optional and range-checked.
fn server_limits(ctx: &Ctx, server: &schema::Server) -> Result<ServerLimits, ConfigError> {
    let ms = |value: &Option<Spanned<i64>>, field: &str, default: u64| {
        ctx.int_in::<u64>(value, field, 1..=3_600_000, default)
            .map(Duration::from_millis)
    };
    Ok(ServerLimits {
        header_read_timeout: ms(
            &server.header_read_timeout_ms,
            "server.header_read_timeout_ms",
            super::DEFAULT_HEADER_READ_TIMEOUT_MS,
        )?,
        body_read_timeout: ms(
            &server.body_read_timeout_ms,
            "server.body_read_timeout_ms",
            super::DEFAULT_BODY_READ_TIMEOUT_MS,
        )?,
        max_in_flight: ctx.int_in(
            &server.max_in_flight,
            "server.max_in_flight",
            1..=1_000_000,
            super::DEFAULT_MAX_IN_FLIGHT,
        )?,
        max_buffered_bytes: ctx.int_in(
            &server.max_buffered_bytes,
            "server.max_buffered_bytes",
            1..=(1 << 40),
            super::DEFAULT_MAX_BUFFERED_BYTES,
        )?,
        // 0 is allowed: cut in-flight requests off at once.
        drain: Duration::from_millis(ctx.int_in(
            &server.drain_ms,
            "server.drain_ms",
            0..=3_600_000,
            super::DEFAULT_DRAIN_MS,
        )?),
    })
}

fn spin_mode(ctx: &Ctx, spin: &schema::Spin) -> Result<SpinMode, ConfigError> {
    let mode = spin
        .mode
        .as_ref()
        .map_or("embedded", |m| m.get_ref().as_str());
    match mode {
        "embedded" => {
            let manifest = spin
                .manifest
                .as_ref()
                .map_or("spin.toml", |m| m.get_ref().as_str());
            if manifest.is_empty() {
                let span = spin.manifest.as_ref().map_or(0..0, Spanned::span);
                return Err(ctx.err(span, "spin.manifest", "must not be empty"));
            }
            let data_dir = spin
                .data_dir
                .as_ref()
                .map_or(super::DEFAULT_DATA_DIR, |d| d.get_ref().as_str());
            Ok(SpinMode::Embedded {
                manifest: PathBuf::from(manifest),
                data_dir: PathBuf::from(data_dir),
                component_timeout: Duration::from_millis(ctx.int_in(
                    &spin.component_timeout_ms,
                    "spin.component_timeout_ms",
                    1..=3_600_000,
                    super::DEFAULT_COMPONENT_TIMEOUT_MS,
                )?),
                component_memory_bytes: ctx.int_in::<usize>(
                    &spin.component_memory_mib,
                    "spin.component_memory_mib",
                    1..=65_536,
                    super::DEFAULT_COMPONENT_MEMORY_MIB,
                )? * 1024
                    * 1024,
                // Replaced by the routes' total concurrency when absent.
                max_instances: ctx.int_in(
                    &spin.max_instances,
                    "spin.max_instances",
                    1..=MAX_INSTANCES,
                    1,
                )?,
                reuse: component_reuse(ctx, spin)?,
                runtime_config_file: match &spin.runtime_config_file {
                    Some(file) if file.get_ref().trim().is_empty() => {
                        return Err(ctx.err(
                            file.span(),
                            "spin.runtime_config_file",
                            "must name Spin's runtime-config.toml",
                        ));
                    }
                    file => file.as_ref().map(|f| PathBuf::from(f.get_ref())),
                },
            })
        }
        "external" => {
            if let Some(file) = &spin.runtime_config_file {
                return Err(ctx.err(
                    file.span(),
                    "spin.runtime_config_file",
                    "only the embedded host reads it; with mode = \"external\" give it to \
                     `spin up --runtime-config-file`",
                ));
            }
            let Some(upstream) = &spin.upstream else {
                let span = spin.mode.as_ref().map_or(0..0, Spanned::span);
                return Err(ctx.err(
                    span,
                    "spin.upstream",
                    "mode = \"external\" needs an upstream URL",
                ));
            };
            let resolve_every: u64 = ctx.int_in(
                &spin.resolve_every_ms,
                "spin.resolve_every_ms",
                100..=3_600_000,
                0,
            )?;
            Ok(SpinMode::External {
                upstreams: upstream_list(ctx, upstream)?,
                resolve_every: (resolve_every > 0).then(|| Duration::from_millis(resolve_every)),
                outlier: outlier_policy(ctx, spin.outlier.as_ref())?,
            })
        }
        other => {
            let span = spin.mode.as_ref().map_or(0..0, Spanned::span);
            Err(ctx.err(
                span,
                "spin.mode",
                format!("`{other}` is not a mode; expected \"embedded\" or \"external\""),
            ))
        }
    }
}

/// Parses and checks an upstream base URL (`http://host:port`, no path).
pub fn parse_upstream(text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "`{text}`: only http:// upstreams are supported (Spin on loopback or a private network)"
        ));
    }
    if uri.authority().is_none() {
        return Err(format!("`{text}` has no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`{text}` must not have a path or query; routes add the path"
        ));
    }
    Ok(uri)
}

/// `host:port` of an upstream, the port defaulted to 80: two spellings of
/// one replica compare equal.
fn upstream_key(uri: &http::Uri) -> String {
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    format!("{host}:{}", uri.port_u16().unwrap_or(80))
}

/// `[spin] upstream`: one URL, or a non-empty list of distinct ones.
fn upstream_list(ctx: &Ctx, value: &Spanned<toml::Value>) -> Result<Vec<http::Uri>, ConfigError> {
    let err = |field: String, message: String| ctx.err(value.span(), field, message);
    let items: Vec<(String, &toml::Value)> = match value.get_ref() {
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("spin.upstream[{i}]"), item))
            .collect(),
        single => vec![("spin.upstream".to_string(), single)],
    };
    if items.is_empty() {
        return Err(err(
            "spin.upstream".into(),
            "the list is empty; give at least one http://host:port".into(),
        ));
    }
    if items.len() > super::MAX_UPSTREAMS {
        return Err(err(
            "spin.upstream".into(),
            format!(
                "{} upstreams listed; at most {} are supported",
                items.len(),
                super::MAX_UPSTREAMS
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (field, item) in items {
        let Some(text) = item.as_str() else {
            return Err(err(
                field,
                format!(
                    "expected a URL string like \"http://127.0.0.1:3000\" (or a list of them), found a {}",
                    item.type_str()
                ),
            ));
        };
        let uri = parse_upstream(text).map_err(|m| err(field.clone(), m))?;
        if !seen.insert(upstream_key(&uri)) {
            return Err(err(field, format!("`{text}` is listed twice")));
        }
        out.push(uri);
    }
    Ok(out)
}

/// `[spin.outlier]`: every field optional and range-checked.
fn outlier_policy(
    ctx: &Ctx,
    outlier: Option<&Spanned<schema::Outlier>>,
) -> Result<super::OutlierPolicy, ConfigError> {
    let Some(outlier) = outlier.map(Spanned::get_ref) else {
        return Ok(super::OutlierPolicy::default());
    };
    Ok(super::OutlierPolicy {
        consecutive_failures: ctx.int_in(
            &outlier.consecutive_failures,
            "spin.outlier.consecutive_failures",
            1..=1000,
            super::DEFAULT_OUTLIER_FAILURES,
        )?,
        max_ejected_percent: ctx.int_in(
            &outlier.max_ejected_percent,
            "spin.outlier.max_ejected_percent",
            0..=100,
            super::DEFAULT_MAX_EJECTED_PERCENT,
        )?,
        probe_every: Duration::from_millis(ctx.int_in(
            &outlier.probe_every_ms,
            "spin.outlier.probe_every_ms",
            10..=3_600_000,
            super::DEFAULT_PROBE_EVERY_MS,
        )?),
    })
}

/// The `{param}` names of a path, checking its syntax on the way.
pub(super) fn path_params(path: &str) -> Result<Vec<String>, String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` must start with `/`"));
    }
    let mut params = Vec::new();
    for segment in path.split('/').skip(1) {
        if segment.starts_with('{') && segment.ends_with('}') && segment.len() > 2 {
            let name = &segment[1..segment.len() - 1];
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`{{{name}}}` is not a valid parameter name"));
            }
            if params.iter().any(|p| p == name) {
                return Err(format!("parameter `{name}` appears twice"));
            }
            params.push(name.to_string());
        } else if segment.contains(['{', '}', '*', ':']) {
            return Err(format!(
                "segment `{segment}` is not allowed; use whole-segment parameters like `{{id}}`"
            ));
        }
    }
    Ok(params)
}
