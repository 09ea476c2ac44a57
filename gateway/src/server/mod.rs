//! The public listener: every request is matched against the current
//! runtime snapshot and handed to the fallback policy.
//!
//! Unknown paths and methods are answered here, in problem+json, so a
//! client never sees an HTML or plain-text error. The admin listener lives
//! in [`admin`].

pub mod admin;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use http_body_util::{BodyExt, Limited};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use std::time::Instant;

use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::fallback::{self, Backends};
use crate::native::NativeTiming;
use crate::problem::{self, Problem, ProblemResponse};
use crate::routing::{self, Match};
use crate::runtime::Gateway;
use crate::runtime::Runtime;
use crate::shadow;
use crate::spin::RequestBody;
use crate::telemetry::propagation;

/// The request id header: taken from the client or generated, passed to
/// the backend, and echoed in the response.
pub const REQUEST_ID: &str = "x-request-id";

/// The public router.
pub fn public_router(gateway: Arc<Gateway>) -> Router {
    let request_id = http::HeaderName::from_static(REQUEST_ID);
    Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .fallback(handle)
        .with_state(gateway)
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http())
                .layer(PropagateRequestIdLayer::new(request_id)),
        )
}

async fn healthz(State(gateway): State<Arc<Gateway>>) -> Response {
    let runtime = gateway.current();
    axum::Json(serde_json::json!({
        "status": "ok",
        "backend": runtime.spin.label(),
        "components": runtime.spin.component_ids(),
        "routes": runtime.routes.iter().map(|r| r.config.name.clone()).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// Serves one public request: resolve the route, open the server span
/// (continuing the client's `traceparent`), serve, then record what
/// happened.
async fn handle(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let runtime = gateway.current();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let resolved = runtime.table.resolve(&method, &path);
    let route = match &resolved {
        Match::Route { index, .. } | Match::InvalidParam { index, .. } => {
            runtime.routes.get(*index)
        }
        _ => None,
    };
    let span = tracing::info_span!(
        "request",
        otel.name = %match route {
            Some(r) => format!("{method} {}", r.config.path),
            None => method.to_string(),
        },
        otel.kind = "server",
        http.request.method = %method,
        http.route = route.map(|r| r.config.path.as_str()),
        url.path = %path,
        server.address = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default(),
        client.address = %client.ip(),
        gateway.route = route.map(|r| r.config.name.as_str()),
        gateway.backend = tracing::field::Empty,
        gateway.fallback.reason = tracing::field::Empty,
        http.request.body.size = tracing::field::Empty,
        http.response.body.size = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    let _ = span.set_parent(propagation::extract(request.headers()));

    let mut response = match resolved {
        Match::Route { index, params } => {
            route_request(&gateway, &runtime, index, params, client, request)
                .instrument(span.clone())
                .await
        }
        Match::MethodNotAllowed { allow } => {
            let mut response =
                ProblemResponse(problem::method_not_allowed(method.as_str(), &path, &allow))
                    .into_response();
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            response
        }
        Match::InvalidParam { name, reason, .. } => {
            ProblemResponse(problem::invalid_path_param(&name, reason)).into_response()
        }
        Match::NotFound => ProblemResponse(problem::not_found(&path)).into_response(),
    };

    let status = response.status();
    let took = started.elapsed();
    let backend = response
        .headers()
        .get(fallback::BACKEND_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("gateway")
        .to_string();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    span.record("gateway.backend", backend.as_str());
    if let Some(size) = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
    {
        span.record("http.response.body.size", size);
    }
    if status.is_server_error() {
        span.record("error.type", status.as_str());
    }
    if !response.headers().contains_key(fallback::BACKEND_HEADER) {
        response.headers_mut().insert(
            fallback::BACKEND_HEADER,
            HeaderValue::from_static("gateway"),
        );
    }
    let route_name = route.map_or("unmatched", |r| r.config.name.as_str());
    gateway
        .metrics
        .request(route_name, &backend, method.as_str(), status.as_u16(), took);
    gateway.stats.request(route_name, &backend, took);
    if let Some(reason) = response
        .headers()
        .get(fallback::FALLBACK_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        span.record("gateway.fallback.reason", reason);
        gateway.metrics.fallback(route_name, reason);
        gateway.stats.fallback(route_name, reason);
    }
    if let Some(served) = response.extensions().get::<spin_host::Served>() {
        gateway
            .metrics
            .instantiate(route_name, &served.component, served.instantiate);
    }
    if let Some(timing) = response.extensions().get::<NativeTiming>() {
        gateway
            .metrics
            .native(route_name, timing.queued, timing.compute);
    }
    response
}

/// Reads the body as the route needs it, calls the fallback policy, and
/// queues a shadow comparison when the route samples this request.
async fn route_request(
    gateway: &Arc<Gateway>,
    runtime: &Arc<Runtime>,
    index: usize,
    params: Vec<(String, String)>,
    client: SocketAddr,
    request: Request,
) -> Response {
    let Some(route) = runtime.routes.get(index) else {
        return ProblemResponse(problem::not_found(request.uri().path())).into_response();
    };
    let config = &route.config;
    let started = Instant::now();

    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > config.max_body_bytes as u64) {
        return ProblemResponse(problem::payload_too_large(
            &config.name,
            config.max_body_bytes,
        ))
        .into_response();
    }
    let body = if fallback::needs_buffered_body(config, Some(&runtime.spin), &parts.method) {
        match Limited::new(body, config.max_body_bytes).collect().await {
            Ok(collected) => RequestBody::Buffered(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return ProblemResponse(problem::payload_too_large(
                    &config.name,
                    config.max_body_bytes,
                ))
                .into_response();
            }
            Err(e) => {
                return ProblemResponse(Problem::new(
                    400,
                    "Bad Request",
                    format!("the request body could not be read: {e}"),
                ))
                .into_response();
            }
        }
    } else {
        RequestBody::Streaming(axum::body::Body::new(Limited::new(
            body,
            config.max_body_bytes,
        )))
    };
    if let RequestBody::Buffered(bytes) = &body {
        tracing::Span::current().record("http.request.body.size", bytes.len() as i64);
    }
    let spin_path = config
        .spin_path
        .as_deref()
        .map(|template| routing::fill_template(template, &params));

    // Keep what a shadow replay needs before the request is consumed.
    let sampled = match &body {
        RequestBody::Buffered(bytes)
            if config.shadow_sample > 0.0 && rand::random::<f64>() < config.shadow_sample =>
        {
            Some((fallback::clone_parts(&parts), bytes.clone()))
        }
        _ => None,
    };
    let backends = Backends {
        spin: Some(&runtime.spin),
        native: &runtime.native,
        metrics: &gateway.metrics,
    };
    let response = fallback::serve(
        config,
        &route.policy,
        backends,
        parts,
        body,
        spin_path.clone(),
        client,
    )
    .await;
    let Some((shadow_parts, shadow_body)) = sampled else {
        return response;
    };
    let primary_backend = response
        .headers()
        .get(fallback::BACKEND_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("gateway")
        .to_string();
    if primary_backend == "gateway" {
        return response;
    }
    // Buffer the answer to compare it; the client still gets it first.
    let (head, body) = response.into_parts();
    let primary_body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::warn!("could not read the answer to shadow it: {e}");
            return ProblemResponse(Problem::new(
                502,
                "Bad Gateway",
                format!("the backend's answer broke off: {e}"),
            ))
            .into_response();
        }
    };
    gateway.shadow.submit(shadow::Job {
        runtime: runtime.clone(),
        route: index,
        parts: shadow_parts,
        body: shadow_body,
        spin_path,
        client,
        primary_backend,
        primary_status: head.status.as_u16(),
        primary_body: primary_body.clone(),
        primary_took: started.elapsed(),
        parent: tracing::Span::current(),
    });
    Response::from_parts(head, axum::body::Body::from(primary_body))
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
