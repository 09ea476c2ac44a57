//! The admin listener: health, readiness and configuration.
//!
//! Kept off the public port so operators can expose it to their network
//! only (probes, reloads) without it being reachable by API clients.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::config::{BackendKind, SpinMode};
use crate::problem::{Problem, ProblemResponse};
use crate::runtime::Gateway;

/// The admin router.
pub fn admin_router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/admin/config", get(show_config))
        .route("/admin/config/reload", post(reload))
        .route("/metrics", get(metrics))
        .route("/admin/stats", get(stats))
        .route("/dashboard", get(dashboard))
        .with_state(gateway)
}

/// Ready when the Spin backend answers. Routes with a native twin keep
/// working without it, which the body spells out route by route.
async fn readyz(State(gateway): State<Arc<Gateway>>) -> Response {
    let runtime = gateway.current();
    let spin = runtime.spin.ready().await;
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
            })
        }
        SpinMode::External { upstream } => {
            serde_json::json!({ "mode": "external", "upstream": upstream.to_string() })
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
                    "native_above_bytes": r.native_above_bytes,
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
    axum::Json(gateway.stats.snapshot()).into_response()
}

/// The built-in Wasm-vs-native comparison page (no external service).
async fn dashboard() -> Response {
    axum::response::Html(include_str!("dashboard.html")).into_response()
}
