//! From the parsed file to a checked [`Config`]: defaults, ranges, and
//! cross-field rules, each failure naming file, line, column and field.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;
use toml::Spanned;

use super::schema;
use super::{
    BackendKind, CircuitPolicy, Config, FallbackTrigger, NativeHandler, RetryPolicy, RouteConfig,
    ServerLimits, SpinMode,
};

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
struct Ctx<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Ctx<'_> {
    fn err(
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

    fn int_in<T: TryFrom<i64>>(
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
    let mut spin = spin_mode(&ctx, &parsed.spin)?;

    if parsed.route.is_empty() {
        return Err(ctx.err(0..0, "route", "at least one [[route]] is required"));
    }
    let mut routes = Vec::with_capacity(parsed.route.len());
    let mut names = HashSet::new();
    let mut matches = HashSet::new();
    for (i, route) in parsed.route.iter().enumerate() {
        let checked = route_config(&ctx, i, route.get_ref(), &server)?;
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
        routes,
        source: Some(file.to_path_buf()),
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
            })
        }
        "external" => {
            let Some(upstream) = &spin.upstream else {
                let span = spin.mode.as_ref().map_or(0..0, Spanned::span);
                return Err(ctx.err(
                    span,
                    "spin.upstream",
                    "mode = \"external\" needs an upstream URL",
                ));
            };
            Ok(SpinMode::External {
                upstream: upstream_uri(ctx, upstream)?,
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

fn upstream_uri(ctx: &Ctx, value: &Spanned<String>) -> Result<http::Uri, ConfigError> {
    parse_upstream(value.get_ref()).map_err(|m| ctx.err(value.span(), "spin.upstream", m))
}

fn route_config(
    ctx: &Ctx,
    i: usize,
    route: &schema::Route,
    server: &ServerLimits,
) -> Result<RouteConfig, ConfigError> {
    let f = |name: &str| format!("route[{i}].{name}");
    let name = route.name.get_ref().clone();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(ctx.err(
            route.name.span(),
            f("name"),
            format!("`{name}` must be non-empty lowercase letters, digits, `-` or `_`"),
        ));
    }

    let matcher = route.matcher.get_ref();
    let method_text = matcher.method.get_ref();
    let method = match method_text.as_str() {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => {
            Method::from_bytes(method_text.as_bytes())
                .map_err(|_| ctx.err(matcher.method.span(), f("match.method"), "invalid method"))?
        }
        other => {
            return Err(ctx.err(
                matcher.method.span(),
                f("match.method"),
                format!("`{other}` is not supported; expected GET, POST, PUT, PATCH or DELETE"),
            ));
        }
    };
    let path = matcher.path.get_ref().clone();
    let params =
        path_params(&path).map_err(|m| ctx.err(matcher.path.span(), f("match.path"), m))?;

    let backend = match route
        .backend
        .as_ref()
        .map_or("spin", |b| b.get_ref().as_str())
    {
        "spin" => BackendKind::Spin,
        "native" => BackendKind::Native,
        "auto" => BackendKind::Auto,
        other => {
            let span = route.backend.as_ref().map_or(0..0, Spanned::span);
            return Err(ctx.err(
                span,
                f("backend"),
                format!("`{other}` is not a backend; expected \"spin\", \"native\" or \"auto\""),
            ));
        }
    };
    let route_span = route.name.span();

    let spin_path = match &route.spin_path {
        Some(p) => {
            let text = p.get_ref();
            let spin_params =
                path_params(text).map_err(|m| ctx.err(p.span(), f("spin_path"), m))?;
            if let Some(missing) = spin_params.iter().find(|p| !params.contains(p)) {
                return Err(ctx.err(
                    p.span(),
                    f("spin_path"),
                    format!("uses `{{{missing}}}`, which `match.path` does not capture"),
                ));
            }
            Some(text.clone())
        }
        None if backend != BackendKind::Native => {
            return Err(ctx.err(
                route_span,
                f("spin_path"),
                "required when backend is \"spin\" or \"auto\" (the path on the Spin app)",
            ));
        }
        None => None,
    };

    let native = match &route.native {
        Some(n) => match n.get_ref().as_str() {
            "validate" => Some(NativeHandler::Validate),
            other => {
                return Err(ctx.err(
                    n.span(),
                    f("native"),
                    format!("no native handler `{other}`; available: \"validate\""),
                ));
            }
        },
        None if backend != BackendKind::Spin => {
            return Err(ctx.err(
                route_span,
                f("native"),
                "required when backend is \"native\" or \"auto\" (available: \"validate\")",
            ));
        }
        None => None,
    };

    let timeout = Duration::from_millis(ctx.int_in(
        &route.timeout_ms,
        &f("timeout_ms"),
        1..=600_000,
        30_000u64,
    )?);
    let max_body_bytes = ctx.int_in(
        &route.max_body_bytes,
        &f("max_body_bytes"),
        0..=1 << 30,
        items_core::MAX_ITEM_BYTES,
    )?;
    let concurrency = ctx.int_in(&route.concurrency, &f("concurrency"), 1..=100_000, 256usize)?;
    // A route's budgets are shares of the gateway's: larger would never
    // apply, so it is refused rather than silently capped.
    let max_in_flight = ctx.int_in(
        &route.max_in_flight,
        &f("max_in_flight"),
        1..=server.max_in_flight as i64,
        server.max_in_flight.div_ceil(2),
    )?;
    let max_buffered_bytes = ctx.int_in(
        &route.max_buffered_bytes,
        &f("max_buffered_bytes"),
        1..=server.max_buffered_bytes as i64,
        server.max_buffered_bytes.div_ceil(2),
    )?;

    let retry = match &route.retry {
        None => RetryPolicy {
            attempts: 0,
            backoff: Duration::from_millis(25),
            budget_ratio: 0.2,
        },
        Some(r) => {
            let r = r.get_ref();
            RetryPolicy {
                attempts: ctx.int_in(&r.attempts, &f("retry.attempts"), 0..=5, 0u32)?,
                backoff: Duration::from_millis(ctx.int_in(
                    &r.backoff_ms,
                    &f("retry.backoff_ms"),
                    1..=10_000,
                    25u64,
                )?),
                budget_ratio: ctx.int_in::<u32>(
                    &r.budget_percent,
                    &f("retry.budget_percent"),
                    1..=100,
                    20,
                )? as f32
                    / 100.0,
            }
        }
    };

    let circuit = {
        let empty = schema::Circuit {
            consecutive_failures: None,
            failure_rate: None,
            min_requests: None,
            window_ms: None,
            open_ms: None,
            half_open_probes: None,
        };
        let c = route.circuit.as_ref().map_or(&empty, Spanned::get_ref);
        let failure_rate = match &c.failure_rate {
            None => 0.5,
            Some(r) => {
                let v = *r.get_ref();
                if !(v > 0.0 && v <= 1.0) {
                    return Err(ctx.err(
                        r.span(),
                        f("circuit.failure_rate"),
                        format!("{v} is out of range; expected a fraction in (0, 1]"),
                    ));
                }
                v
            }
        };
        CircuitPolicy {
            consecutive_failures: ctx.int_in(
                &c.consecutive_failures,
                &f("circuit.consecutive_failures"),
                1..=1_000,
                5u32,
            )?,
            failure_rate,
            min_requests: ctx.int_in(
                &c.min_requests,
                &f("circuit.min_requests"),
                1..=100_000,
                20u32,
            )?,
            window: Duration::from_millis(ctx.int_in(
                &c.window_ms,
                &f("circuit.window_ms"),
                100..=3_600_000,
                10_000u64,
            )?),
            open_for: Duration::from_millis(ctx.int_in(
                &c.open_ms,
                &f("circuit.open_ms"),
                10..=3_600_000,
                5_000u64,
            )?),
            half_open_probes: ctx.int_in(
                &c.half_open_probes,
                &f("circuit.half_open_probes"),
                1..=100,
                1u32,
            )?,
        }
    };

    let (fallback_on, native_above_bytes) = match &route.fallback {
        None if backend == BackendKind::Auto => (FallbackTrigger::ALL.to_vec(), None),
        None => (Vec::new(), None),
        Some(fb) if backend != BackendKind::Auto => {
            return Err(ctx.err(
                fb.span(),
                f("fallback"),
                "only routes with backend = \"auto\" fall back to native",
            ));
        }
        Some(fb) => {
            let fb = fb.get_ref();
            let mut triggers = Vec::new();
            if let Some(on) = &fb.on {
                for t in on.get_ref() {
                    let trigger = FallbackTrigger::ALL
                        .into_iter()
                        .find(|k| k.as_str() == t.get_ref())
                        .ok_or_else(|| {
                            ctx.err(
                                t.span(),
                                f("fallback.on"),
                                format!(
                                    "`{}` is not a trigger; expected one of {}",
                                    t.get_ref(),
                                    FallbackTrigger::ALL
                                        .map(|k| format!("\"{}\"", k.as_str()))
                                        .join(", ")
                                ),
                            )
                        })?;
                    if triggers.contains(&trigger) {
                        return Err(ctx.err(
                            t.span(),
                            f("fallback.on"),
                            format!("`{}` is listed twice", t.get_ref()),
                        ));
                    }
                    triggers.push(trigger);
                }
            } else {
                triggers = FallbackTrigger::ALL.to_vec();
            }
            let above = match &fb.native_above_bytes {
                None => None,
                Some(v) => Some(ctx.int_in(
                    &Some(v.clone()),
                    &f("fallback.native_above_bytes"),
                    0..=1 << 30,
                    0usize,
                )?),
            };
            (triggers, above)
        }
    };

    let shadow_sample = match &route.shadow {
        // Where a route has both paths and may use either, a few of its
        // requests are compared by default: the paired evidence.
        None if backend == BackendKind::Auto && spin_path.is_some() && native.is_some() => {
            super::DEFAULT_SHADOW_SAMPLE
        }
        None => 0.0,
        Some(shadow) => {
            let sample = &shadow.get_ref().sample;
            let v = *sample.get_ref();
            if !(0.0..=1.0).contains(&v) {
                return Err(ctx.err(
                    sample.span(),
                    f("shadow.sample"),
                    format!("{v} is out of range; expected a fraction in [0, 1]"),
                ));
            }
            if spin_path.is_none() || native.is_none() {
                return Err(ctx.err(
                    shadow.span(),
                    f("shadow"),
                    "shadowing compares Spin and native: the route needs both `spin_path` and `native`",
                ));
            }
            v
        }
    };

    Ok(RouteConfig {
        name,
        method,
        path,
        backend,
        spin_path,
        native,
        timeout,
        max_body_bytes,
        concurrency,
        max_in_flight,
        max_buffered_bytes,
        retry,
        circuit,
        fallback_on,
        native_above_bytes,
        shadow_sample,
    })
}

/// The `{param}` names of a path, checking its syntax on the way.
fn path_params(path: &str) -> Result<Vec<String>, String> {
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
