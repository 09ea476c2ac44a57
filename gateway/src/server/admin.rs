//! The admin listener: health, readiness, configuration and the dashboard.
//!
//! Kept off the public port so operators can expose it to their network
//! only (probes, reloads) without it being reachable by API clients.
//!
//! The dashboard (`/dashboard`, its script at `/dashboard.js`) reads
//! `/admin/stats` (totals and per-size-class figures), `/admin/series`
//! (the last 15 minutes, second by second), `/admin/traces` (recently
//! finished traces) and `/admin/bench` (the last `cargo xtask bench`
//! report's validate curve, when there is one). Everything it needs ships
//! in the binary: no CDN, it works offline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{GET, fixed};
use crate::config::{BackendKind, SpinMode};
use crate::problem::{Problem, ProblemResponse};
use crate::runtime::Gateway;
use crate::telemetry::traces;

/// What the admin listener serves besides the gateway's own state.
#[derive(Clone, Debug, Default)]
pub struct AdminOptions {
    /// The bench report behind `/admin/bench`, instead of the config's
    /// `[telemetry] bench_report` (tests).
    pub bench_report: Option<PathBuf>,
}

#[derive(Clone)]
struct Admin {
    gateway: Arc<Gateway>,
    options: Arc<AdminOptions>,
}

impl axum::extract::FromRef<Admin> for Arc<Gateway> {
    fn from_ref(admin: &Admin) -> Self {
        admin.gateway.clone()
    }
}

impl axum::extract::FromRef<Admin> for Arc<AdminOptions> {
    fn from_ref(admin: &Admin) -> Self {
        admin.options.clone()
    }
}

/// The admin router, with the default [`AdminOptions`].
pub fn admin_router(gateway: Arc<Gateway>) -> Router {
    admin_router_with(gateway, AdminOptions::default())
}

/// The admin router.
pub fn admin_router_with(gateway: Arc<Gateway>, options: AdminOptions) -> Router {
    let state = Admin {
        gateway,
        options: Arc::new(options),
    };
    Router::new()
        .route(
            "/healthz",
            fixed(
                get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
                GET,
            ),
        )
        .route("/readyz", fixed(get(readyz), GET))
        .route("/admin/config", fixed(get(show_config), GET))
        .route("/admin/config/reload", fixed(post(reload), "POST"))
        .route("/metrics", fixed(get(metrics), GET))
        .route("/admin/stats", fixed(get(stats), GET))
        .route("/admin/series", fixed(get(series), GET))
        .route("/admin/traces", fixed(get(traces_json), GET))
        .route("/admin/bench", fixed(get(bench), GET))
        .route("/dashboard", fixed(get(dashboard), GET))
        .route("/dashboard.js", fixed(get(dashboard_script), GET))
        .fallback(
            |uri: http::Uri| async move { ProblemResponse(crate::problem::not_found(uri.path())) },
        )
        .with_state(state)
}

/// Ready when the Spin backend answers (in external mode: at least one
/// replica is healthy and answers; each replica's state is listed). Routes
/// with a native twin keep working without it, which the body spells out
/// route by route.
async fn readyz(State(gateway): State<Arc<Gateway>>) -> Response {
    let runtime = gateway.current();
    let (spin, replicas) = runtime.spin.ready().await;
    let routes: Vec<serde_json::Value> = runtime
        .routes
        .iter()
        .map(|r| {
            let available = match r.config.backend {
                BackendKind::Native => true,
                BackendKind::Auto => true,
                BackendKind::Spin => spin.is_ok(),
            };
            serde_json::json!({
                "route": r.config.name,
                "available": available,
                "circuit": r.policy.circuit.state().as_str(),
            })
        })
        .collect();
    let body = serde_json::json!({
        "ready": spin.is_ok(),
        "spin": {
            "backend": runtime.spin.label(),
            "target": runtime.spin.describe(),
            "error": spin.as_ref().err(),
            "replicas": replicas,
        },
        "routes": routes,
    });
    let status = if spin.is_ok() {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// The running configuration, as the gateway understood it, with its
/// generation (successful reloads since start) and the count of refused
/// reloads: a reload by SIGHUP shows up here.
async fn show_config(State(gateway): State<Arc<Gateway>>) -> Response {
    let runtime = gateway.current();
    let config = &runtime.config;
    let spin = match &config.spin {
        SpinMode::Embedded {
            manifest,
            data_dir,
            component_timeout,
            component_memory_bytes,
            max_instances,
            reuse,
            runtime_config_file,
        } => {
            let reuse: serde_json::Map<String, serde_json::Value> = reuse
                .iter()
                .map(|(id, r)| {
                    let settings = serde_json::json!({
                        "max_requests": r.max_requests,
                        "idle_ms": r.idle.as_millis() as u64,
                    });
                    (id.clone(), settings)
                })
                .collect();
            serde_json::json!({
                "mode": "embedded",
                "manifest": manifest,
                "data_dir": data_dir,
                "component_timeout_ms": component_timeout.as_millis() as u64,
                "component_memory_bytes": component_memory_bytes,
                "max_instances": max_instances,
                "reuse": reuse,
                "runtime_config_file": runtime_config_file,
            })
        }
        SpinMode::External {
            upstreams,
            resolve_every,
            outlier,
        } => {
            let upstreams: Vec<String> = upstreams.iter().map(ToString::to_string).collect();
            serde_json::json!({
                "mode": "external",
                "upstream": upstreams,
                "resolve_every_ms": resolve_every.map(|d| d.as_millis() as u64),
                "outlier": {
                    "consecutive_failures": outlier.consecutive_failures,
                    "max_ejected_percent": outlier.max_ejected_percent,
                    "probe_every_ms": outlier.probe_every.as_millis() as u64,
                },
            })
        }
    };
    let routes: Vec<serde_json::Value> = config
        .routes
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "match": { "method": r.method.as_str(), "path": r.path },
                "backend": format!("{:?}", r.backend).to_lowercase(),
                "spin_path": r.spin_path,
                "native": r.native.map(|_| "validate"),
                "timeout_ms": r.timeout.as_millis() as u64,
                "max_body_bytes": r.max_body_bytes,
                "concurrency": r.concurrency,
                "max_in_flight": r.max_in_flight,
                "max_buffered_bytes": r.max_buffered_bytes,
                "retry": {
                    "attempts": r.retry.attempts,
                    "backoff_ms": r.retry.backoff.as_millis() as u64,
                    "budget_ratio": r.retry.budget_ratio,
                },
                "circuit": {
                    "consecutive_failures": r.circuit.consecutive_failures,
                    "failure_rate": r.circuit.failure_rate,
                    "min_requests": r.circuit.min_requests,
                    "window_ms": r.circuit.window.as_millis() as u64,
                    "open_ms": r.circuit.open_for.as_millis() as u64,
                    "half_open_probes": r.circuit.half_open_probes,
                },
                "fallback": {
                    "on": r.fallback_on.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                    "native_above_bytes": if r.learn {
                        serde_json::json!(crate::config::LEARN)
                    } else {
                        serde_json::json!(r.native_above_bytes)
                    },
                },
                "shadow": { "sample": r.shadow_sample },
            })
        })
        .collect();
    let server = &config.server;
    axum::Json(serde_json::json!({
        "source": gateway.source().map(|p| p.display().to_string()),
        "generation": gateway.reloads.generation.load(Ordering::Acquire),
        "reloads_failed": gateway.reloads.failed.load(Ordering::Acquire),
        "listen": config.listen.to_string(),
        "admin_listen": config.admin_listen.to_string(),
        "server": {
            "header_read_timeout_ms": server.header_read_timeout.as_millis() as u64,
            "body_read_timeout_ms": server.body_read_timeout.as_millis() as u64,
            "max_in_flight": server.max_in_flight,
            "max_buffered_bytes": server.max_buffered_bytes,
            "drain_ms": server.drain.as_millis() as u64,
        },
        "spin": spin,
        "routes": routes,
    }))
    .into_response()
}

/// Reloads the config file; a bad file keeps the running config.
async fn reload(State(gateway): State<Arc<Gateway>>) -> Response {
    let outcome = tokio::task::spawn_blocking(move || gateway.reload()).await;
    match outcome {
        Ok(Ok(report)) => {
            tracing::info!(?report, "configuration reloaded");
            axum::Json(serde_json::json!({ "reloaded": true, "report": report })).into_response()
        }
        Ok(Err(e)) => {
            tracing::error!("configuration reload refused, keeping the running config: {e:#}");
            ProblemResponse(Problem::new(
                422,
                "Configuration Rejected",
                format!("{e:#}; the running configuration is unchanged"),
            ))
            .into_response()
        }
        Err(e) => ProblemResponse(Problem::new(
            500,
            "Internal Server Error",
            format!("the reload task failed: {e}"),
        ))
        .into_response(),
    }
}

/// Prometheus text exposition of the gateway's metrics.
async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        gateway.metrics.render(),
    )
        .into_response()
}

/// Per-route, per-backend numbers for the dashboard.
async fn stats(State(gateway): State<Arc<Gateway>>) -> Response {
    let snapshot = gateway.stats.snapshot();
    let runtime = gateway.current();
    let mut value = match serde_json::to_value(&snapshot) {
        Ok(value) => value,
        Err(e) => {
            return ProblemResponse(Problem::new(
                500,
                "Internal Server Error",
                format!("the statistics could not be written: {e}"),
            ))
            .into_response();
        }
    };
    // Each learned route's estimates, beside its measured figures.
    if let Some(routes) = value.get_mut("routes").and_then(|r| r.as_array_mut()) {
        for route in routes {
            let name = route
                .get("route")
                .and_then(|n| n.as_str())
                .unwrap_or_default();
            let learned = runtime
                .routes
                .iter()
                .find(|r| r.config.name == name)
                .and_then(|r| r.policy.learned.as_ref())
                .map(|l| l.snapshot());
            if let (Some(learned), Some(fields)) = (learned, route.as_object_mut()) {
                fields.insert(
                    "learned".into(),
                    serde_json::to_value(learned).unwrap_or_default(),
                );
            }
        }
    }
    axum::Json(value).into_response()
}

/// A 400 problem for a bad query string.
fn bad_query(detail: String) -> Response {
    ProblemResponse(Problem::new(400, "Bad Request", detail)).into_response()
}

/// The query parameters, or why they cannot be read.
fn query_params(
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<BTreeMap<String, String>, String> {
    query
        .map(|Query(params)| params)
        .map_err(|e| format!("the query string cannot be read: {}", e.body_text()))
}

/// The last 15 minutes per second: `?route=` for one route.
async fn series(
    State(gateway): State<Arc<Gateway>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    let params = match query_params(query) {
        Ok(params) => params,
        Err(detail) => return bad_query(detail),
    };
    if let Some(other) = params.keys().find(|k| *k != "route") {
        return bad_query(format!(
            "unknown parameter `{other}`; /admin/series takes only `route`"
        ));
    }
    let route = params.get("route").map(String::as_str);
    if route == Some("") {
        return bad_query("`route` is empty; leave it out for every route".to_string());
    }
    axum::Json(gateway.series.snapshot(route)).into_response()
}

/// Recently finished traces (see [`traces`]); polling this keeps every
/// request recorded for a while, so an open dashboard sees fresh traces.
async fn traces_json(query: Result<Query<BTreeMap<String, String>>, QueryRejection>) -> Response {
    let params = match query_params(query) {
        Ok(params) => params,
        Err(detail) => return bad_query(detail),
    };
    let query = match traces::Query::parse(&params) {
        Ok(query) => query,
        Err(detail) => return bad_query(detail),
    };
    let store = traces::store();
    store.viewer_seen();
    let found = store.find(&query);
    axum::Json(serde_json::json!({
        "recording": store.status(),
        "traces": found.iter().map(|t| &**t).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// The validate part of the last bench report: latency per batch size for
/// native and Wasm, and the crossover it found; `"available": false` when
/// there is none, a 500 problem when it cannot be read.
async fn bench(
    State(options): State<Arc<AdminOptions>>,
    State(gateway): State<Arc<Gateway>>,
) -> Response {
    let path = options
        .bench_report
        .clone()
        .unwrap_or_else(|| gateway.current().config.telemetry.bench_report.clone());
    let read = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || std::fs::read(&path)).await
    };
    let shown = path.display();
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        // Not an error: the page says there is none (a 404 would be
        // logged by the browser as a failed load on every visit).
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return axum::Json(serde_json::json!({
                "available": false,
                "detail": format!(
                    "no bench report at {shown}: run `cargo xtask bench` (or set `[telemetry] bench_report`)"
                ),
            }))
            .into_response();
        }
        Ok(Err(e)) => return unreadable_report(&shown, &e.to_string()),
        Err(e) => return unreadable_report(&shown, &e.to_string()),
    };
    match bench_summary(&bytes) {
        Ok(summary) => axum::Json(summary).into_response(),
        Err(e) => unreadable_report(&shown, &e),
    }
}

fn unreadable_report(path: &std::path::Display<'_>, why: &str) -> Response {
    ProblemResponse(Problem::new(
        500,
        "Bench Report Unreadable",
        format!("the bench report at {path} cannot be used: {why}"),
    ))
    .into_response()
}

/// The fields of a bench report the crossover chart draws.
fn bench_summary(bytes: &[u8]) -> Result<serde_json::Value, String> {
    let report: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let validate = report
        .get("validate")
        .ok_or("it has no `validate` section")?;
    let rows = validate
        .get("rows")
        .and_then(|r| r.as_array())
        .ok_or("`validate.rows` is not a list")?;
    let stats = |row: &serde_json::Value, side: &str| {
        row.get(side).map(|s| {
            serde_json::json!({
                "mean_ms": s.get("mean_ms"),
                "p50_ms": s.get("p50_ms"),
                "p99_ms": s.get("p99_ms"),
            })
        })
    };
    let mut points = Vec::with_capacity(rows.len());
    for row in rows {
        let body_bytes = row
            .get("body_bytes")
            .and_then(|b| b.as_u64())
            .ok_or("a `validate.rows` entry has no `body_bytes`")?;
        points.push(serde_json::json!({
            "items": row.get("items"),
            "body_bytes": body_bytes,
            "native": stats(row, "native"),
            "wasm_fresh": stats(row, "wasm_fresh"),
            "wasm_reuse": stats(row, "wasm_reuse"),
        }));
    }
    Ok(serde_json::json!({
        "available": true,
        "mode": report.get("mode"),
        "started_unix": report.get("started_unix"),
        "commit": report.pointer("/machine/commit"),
        "rows": points,
        "crossover": validate.get("crossover"),
        "suggested_native_above_bytes": validate.get("suggested_native_above_bytes"),
        "suggestion_basis": validate.get("suggestion_basis"),
    }))
}

/// The built-in Wasm-vs-native comparison page (no external service).
/// Opening it counts as a viewer: requests are recorded as traces while
/// it stays open (it polls `/admin/traces`).
async fn dashboard() -> Response {
    traces::store().viewer_seen();
    axum::response::Html(include_str!("dashboard.html")).into_response()
}

/// The dashboard's script: tables and hand-drawn SVG charts, no libraries.
async fn dashboard_script() -> Response {
    (
        [
            (http::header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (http::header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("dashboard.js"),
    )
        .into_response()
}
