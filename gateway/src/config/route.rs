//! One `[[route]]` section, checked: a function per part of it (name,
//! match, backend, paths, limits, retry, circuit, fallback, shadow), and
//! every default named once, here.

use std::time::Duration;

use http::Method;
use toml::Spanned;

use super::schema;
use super::validate::{ConfigError, Ctx, path_params};
use super::{
    BackendKind, CircuitPolicy, FallbackTrigger, NativeHandler, RetryPolicy, RouteConfig,
    ServerLimits,
};

/// `timeout_ms` when unset.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// `concurrency` when unset.
pub const DEFAULT_CONCURRENCY: usize = 256;
/// `retry.attempts` when unset (and with no `[route.retry]`).
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 0;
/// `retry.backoff_ms` when unset.
pub const DEFAULT_RETRY_BACKOFF_MS: u64 = 25;
/// `retry.budget_percent` when unset.
pub const DEFAULT_RETRY_BUDGET_PERCENT: u32 = 20;
/// `circuit.consecutive_failures` when unset.
pub const DEFAULT_CIRCUIT_CONSECUTIVE_FAILURES: u32 = 5;
/// `circuit.failure_rate` when unset.
pub const DEFAULT_CIRCUIT_FAILURE_RATE: f64 = 0.5;
/// `circuit.min_requests` when unset.
pub const DEFAULT_CIRCUIT_MIN_REQUESTS: u32 = 20;
/// `circuit.window_ms` when unset.
pub const DEFAULT_CIRCUIT_WINDOW_MS: u64 = 10_000;
/// `circuit.open_ms` when unset.
pub const DEFAULT_CIRCUIT_OPEN_MS: u64 = 5_000;
/// `circuit.half_open_probes` when unset.
pub const DEFAULT_CIRCUIT_HALF_OPEN_PROBES: u32 = 1;
/// `shadow.sample` with no `[route.shadow]` on an `auto` route with both
/// paths: one request in a hundred is replayed on the other path and
/// compared, the paired evidence. Any other route leaves shadowing off.
pub const DEFAULT_SHADOW_SAMPLE: f64 = 0.01;

/// The route's field names, as errors spell them (`route[2].timeout_ms`).
struct Fields(usize);

impl Fields {
    fn name(&self, name: &str) -> String {
        format!("route[{}].{name}", self.0)
    }
}

/// Checks route `i` of the file; `server` bounds its shares of the budgets.
pub(super) fn route_config(
    ctx: &Ctx,
    i: usize,
    route: &schema::Route,
    server: &ServerLimits,
) -> Result<RouteConfig, ConfigError> {
    let f = Fields(i);
    let name = route_name(ctx, &f, route)?;
    let (method, path, params) = route_match(ctx, &f, route)?;
    let backend = route_backend(ctx, &f, route)?;
    let spin_path = route_spin_path(ctx, &f, route, backend, &params)?;
    let native = route_native(ctx, &f, route, backend)?;
    let limits = route_limits(ctx, &f, route, server)?;
    let retry = retry_policy(ctx, &f, route.retry.as_ref().map(Spanned::get_ref))?;
    let circuit = circuit_policy(ctx, &f, route.circuit.as_ref().map(Spanned::get_ref))?;
    let (fallback_on, threshold) = fallback_rules(ctx, &f, route, backend)?;
    let learn = threshold == Some(Threshold::Learn);
    let native_above_bytes = match threshold {
        Some(Threshold::Bytes(n)) => Some(n),
        _ => None,
    };
    let has_both = spin_path.is_some() && native.is_some();
    let shadow_sample = shadow_sample(ctx, &f, route, backend, has_both)?;
    Ok(RouteConfig {
        name,
        method,
        path,
        backend,
        spin_path,
        native,
        timeout: limits.timeout,
        max_body_bytes: limits.max_body_bytes,
        concurrency: limits.concurrency,
        max_in_flight: limits.max_in_flight,
        max_buffered_bytes: limits.max_buffered_bytes,
        retry,
        circuit,
        fallback_on,
        native_above_bytes,
        learn,
        shadow_sample,
    })
}

fn route_name(ctx: &Ctx, f: &Fields, route: &schema::Route) -> Result<String, ConfigError> {
    let name = route.name.get_ref().clone();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(ctx.err(
            route.name.span(),
            f.name("name"),
            format!("`{name}` must be non-empty lowercase letters, digits, `-` or `_`"),
        ));
    }
    Ok(name)
}

/// `match`: the method, the path and the path's `{param}` names.
fn route_match(
    ctx: &Ctx,
    f: &Fields,
    route: &schema::Route,
) -> Result<(Method, String, Vec<String>), ConfigError> {
    let matcher = route.matcher.get_ref();
    let method_text = matcher.method.get_ref();
    let method = match method_text.as_str() {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => Method::from_bytes(method_text.as_bytes())
            .map_err(|_| {
            ctx.err(
                matcher.method.span(),
                f.name("match.method"),
                "invalid method",
            )
        })?,
        other => {
            return Err(ctx.err(
                matcher.method.span(),
                f.name("match.method"),
                format!("`{other}` is not supported; expected GET, POST, PUT, PATCH or DELETE"),
            ));
        }
    };
    let path = matcher.path.get_ref().clone();
    let params =
        path_params(&path).map_err(|m| ctx.err(matcher.path.span(), f.name("match.path"), m))?;
    Ok((method, path, params))
}

fn route_backend(ctx: &Ctx, f: &Fields, route: &schema::Route) -> Result<BackendKind, ConfigError> {
    match route
        .backend
        .as_ref()
        .map_or("spin", |b| b.get_ref().as_str())
    {
        "spin" => Ok(BackendKind::Spin),
        "native" => Ok(BackendKind::Native),
        "auto" => Ok(BackendKind::Auto),
        other => {
            let span = route.backend.as_ref().map_or(0..0, Spanned::span);
            Err(ctx.err(
                span,
                f.name("backend"),
                format!("`{other}` is not a backend; expected \"spin\", \"native\" or \"auto\""),
            ))
        }
    }
}

fn route_spin_path(
    ctx: &Ctx,
    f: &Fields,
    route: &schema::Route,
    backend: BackendKind,
    params: &[String],
) -> Result<Option<String>, ConfigError> {
    match &route.spin_path {
        Some(p) => {
            let text = p.get_ref();
            let spin_params =
                path_params(text).map_err(|m| ctx.err(p.span(), f.name("spin_path"), m))?;
            if let Some(missing) = spin_params.iter().find(|p| !params.contains(p)) {
                return Err(ctx.err(
                    p.span(),
                    f.name("spin_path"),
                    format!("uses `{{{missing}}}`, which `match.path` does not capture"),
                ));
            }
            Ok(Some(text.clone()))
        }
        None if backend != BackendKind::Native => Err(ctx.err(
            route.name.span(),
            f.name("spin_path"),
            "required when backend is \"spin\" or \"auto\" (the path on the Spin app)",
        )),
        None => Ok(None),
    }
}

fn route_native(
    ctx: &Ctx,
    f: &Fields,
    route: &schema::Route,
    backend: BackendKind,
) -> Result<Option<NativeHandler>, ConfigError> {
    match &route.native {
        Some(n) => match n.get_ref().as_str() {
            "validate" => Ok(Some(NativeHandler::Validate)),
            other => Err(ctx.err(
                n.span(),
                f.name("native"),
                format!("no native handler `{other}`; available: \"validate\""),
            )),
        },
        None if backend != BackendKind::Spin => Err(ctx.err(
            route.name.span(),
            f.name("native"),
            "required when backend is \"native\" or \"auto\" (available: \"validate\")",
        )),
        None => Ok(None),
    }
}

/// The route's timeout, body limit, concurrency and budget shares.
struct Limits {
    timeout: Duration,
    max_body_bytes: usize,
    concurrency: usize,
    max_in_flight: usize,
    max_buffered_bytes: usize,
}

fn route_limits(
    ctx: &Ctx,
    f: &Fields,
    route: &schema::Route,
    server: &ServerLimits,
) -> Result<Limits, ConfigError> {
    Ok(Limits {
        timeout: Duration::from_millis(ctx.int_in(
            &route.timeout_ms,
            &f.name("timeout_ms"),
            1..=600_000,
            DEFAULT_TIMEOUT_MS,
        )?),
        max_body_bytes: ctx.int_in(
            &route.max_body_bytes,
            &f.name("max_body_bytes"),
            0..=1 << 30,
            items_core::MAX_ITEM_BYTES,
        )?,
        concurrency: ctx.int_in(
            &route.concurrency,
            &f.name("concurrency"),
            1..=100_000,
            DEFAULT_CONCURRENCY,
        )?,
        // A route's budgets are shares of the gateway's: larger would never
        // apply, so it is refused rather than silently capped. The default
        // is half the gateway's.
        max_in_flight: ctx.int_in(
            &route.max_in_flight,
            &f.name("max_in_flight"),
            1..=server.max_in_flight as i64,
            server.max_in_flight.div_ceil(2),
        )?,
        max_buffered_bytes: ctx.int_in(
            &route.max_buffered_bytes,
            &f.name("max_buffered_bytes"),
            1..=server.max_buffered_bytes as i64,
            server.max_buffered_bytes.div_ceil(2),
        )?,
    })
}

/// `[route.retry]`, or its defaults (no retries) when absent.
fn retry_policy(
    ctx: &Ctx,
    f: &Fields,
    retry: Option<&schema::Retry>,
) -> Result<RetryPolicy, ConfigError> {
    let none = None;
    let (attempts, backoff_ms, budget_percent) = match retry {
        Some(r) => (&r.attempts, &r.backoff_ms, &r.budget_percent),
        None => (&none, &none, &none),
    };
    Ok(RetryPolicy {
        attempts: ctx.int_in(
            attempts,
            &f.name("retry.attempts"),
            0..=5,
            DEFAULT_RETRY_ATTEMPTS,
        )?,
        backoff: Duration::from_millis(ctx.int_in(
            backoff_ms,
            &f.name("retry.backoff_ms"),
            1..=10_000,
            DEFAULT_RETRY_BACKOFF_MS,
        )?),
        budget_ratio: ctx.int_in::<u32>(
            budget_percent,
            &f.name("retry.budget_percent"),
            1..=100,
            DEFAULT_RETRY_BUDGET_PERCENT,
        )? as f32
            / 100.0,
    })
}

/// `[route.circuit]`, or its defaults when absent.
fn circuit_policy(
    ctx: &Ctx,
    f: &Fields,
    circuit: Option<&schema::Circuit>,
) -> Result<CircuitPolicy, ConfigError> {
    let empty = schema::Circuit {
        consecutive_failures: None,
        failure_rate: None,
        min_requests: None,
        window_ms: None,
        open_ms: None,
        half_open_probes: None,
    };
    let c = circuit.unwrap_or(&empty);
    let failure_rate = match &c.failure_rate {
        None => DEFAULT_CIRCUIT_FAILURE_RATE,
        Some(r) => {
            let v = *r.get_ref();
            if !(v > 0.0 && v <= 1.0) {
                return Err(ctx.err(
                    r.span(),
                    f.name("circuit.failure_rate"),
                    format!("{v} is out of range; expected a fraction in (0, 1]"),
                ));
            }
            v
        }
    };
    let ms = |value, field: &str, range, default| {
        ctx.int_in(value, &f.name(field), range, default)
            .map(Duration::from_millis)
    };
    Ok(CircuitPolicy {
        consecutive_failures: ctx.int_in(
            &c.consecutive_failures,
            &f.name("circuit.consecutive_failures"),
            1..=1_000,
            DEFAULT_CIRCUIT_CONSECUTIVE_FAILURES,
        )?,
        failure_rate,
        min_requests: ctx.int_in(
            &c.min_requests,
            &f.name("circuit.min_requests"),
            1..=100_000,
            DEFAULT_CIRCUIT_MIN_REQUESTS,
        )?,
        window: ms(
            &c.window_ms,
            "circuit.window_ms",
            100..=3_600_000,
            DEFAULT_CIRCUIT_WINDOW_MS,
        )?,
        open_for: ms(
            &c.open_ms,
            "circuit.open_ms",
            10..=3_600_000,
            DEFAULT_CIRCUIT_OPEN_MS,
        )?,
        half_open_probes: ctx.int_in(
            &c.half_open_probes,
            &f.name("circuit.half_open_probes"),
            1..=100,
            DEFAULT_CIRCUIT_HALF_OPEN_PROBES,
        )?,
    })
}

/// `[route.fallback]`: the triggers (all of them by default on an `auto`
/// route) and the size rule.
fn fallback_rules(
    ctx: &Ctx,
    f: &Fields,
    route: &schema::Route,
    backend: BackendKind,
) -> Result<(Vec<FallbackTrigger>, Option<Threshold>), ConfigError> {
    let fb = match &route.fallback {
        None if backend == BackendKind::Auto => return Ok((FallbackTrigger::ALL.to_vec(), None)),
        None => return Ok((Vec::new(), None)),
        Some(fb) if backend != BackendKind::Auto => {
            return Err(ctx.err(
                fb.span(),
                f.name("fallback"),
                "only routes with backend = \"auto\" fall back to native",
            ));
        }
        Some(fb) => fb.get_ref(),
    };
    let triggers = match &fb.on {
        Some(on) => fallback_triggers(ctx, f, on.get_ref())?,
        None => FallbackTrigger::ALL.to_vec(),
    };
    let field = f.name("fallback.native_above_bytes");
    let above = match &fb.native_above_bytes {
        None => None,
        Some(v) => match v.get_ref() {
            schema::Threshold::Bytes(n) => Some(Threshold::Bytes(ctx.int_in(
                &Some(Spanned::new(v.span(), *n)),
                &field,
                0..=1 << 30,
                0usize,
            )?)),
            schema::Threshold::Word(word) if word == LEARN => Some(Threshold::Learn),
            schema::Threshold::Word(word) => {
                return Err(ctx.err(
                    v.span(),
                    &field,
                    format!(
                        "`{word}` is neither a number of bytes nor \"{LEARN}\"; expected 0 to {} or \"{LEARN}\" (pick the path from each path's measured cost)",
                        1 << 30
                    ),
                ));
            }
        },
    };
    Ok((triggers, above))
}

/// `fallback.native_above_bytes = "learn"`.
pub const LEARN: &str = "learn";

/// What `fallback.native_above_bytes` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Threshold {
    /// Bodies above this many bytes go native.
    Bytes(usize),
    /// The path is learned per size class.
    Learn,
}

/// `fallback.on`: known trigger names, each listed once.
fn fallback_triggers(
    ctx: &Ctx,
    f: &Fields,
    on: &[Spanned<String>],
) -> Result<Vec<FallbackTrigger>, ConfigError> {
    let mut triggers = Vec::new();
    for t in on {
        let trigger = FallbackTrigger::ALL
            .into_iter()
            .find(|k| k.as_str() == t.get_ref())
            .ok_or_else(|| {
                ctx.err(
                    t.span(),
                    f.name("fallback.on"),
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
                f.name("fallback.on"),
                format!("`{}` is listed twice", t.get_ref()),
            ));
        }
        triggers.push(trigger);
    }
    Ok(triggers)
}

/// `[route.shadow]`: the share of requests replayed on the other path.
fn shadow_sample(
    ctx: &Ctx,
    f: &Fields,
    route: &schema::Route,
    backend: BackendKind,
    has_both: bool,
) -> Result<f64, ConfigError> {
    let Some(shadow) = &route.shadow else {
        let on = backend == BackendKind::Auto && has_both;
        return Ok(if on { DEFAULT_SHADOW_SAMPLE } else { 0.0 });
    };
    let sample = &shadow.get_ref().sample;
    let v = *sample.get_ref();
    if !(0.0..=1.0).contains(&v) {
        return Err(ctx.err(
            sample.span(),
            f.name("shadow.sample"),
            format!("{v} is out of range; expected a fraction in [0, 1]"),
        ));
    }
    if !has_both {
        return Err(ctx.err(
            shadow.span(),
            f.name("shadow"),
            "shadowing compares Spin and native: the route needs both `spin_path` and `native`",
        ));
    }
    Ok(v)
}
