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

use crate::fallback::{self, Backends};
use crate::problem::{self, Problem, ProblemResponse};
use crate::routing::{self, Match};
use crate::runtime::Gateway;
use crate::spin::RequestBody;

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

/// Serves one public request.
async fn handle(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let runtime = gateway.current();
    let (index, params) = match runtime
        .table
        .resolve(request.method(), request.uri().path())
    {
        Match::Route { index, params } => (index, params),
        Match::MethodNotAllowed { allow } => {
            let mut response = ProblemResponse(problem::method_not_allowed(
                request.method().as_str(),
                request.uri().path(),
                &allow,
            ))
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            return response;
        }
        Match::NotFound => {
            return ProblemResponse(problem::not_found(request.uri().path())).into_response();
        }
    };
    let Some(route) = runtime.routes.get(index) else {
        return ProblemResponse(problem::not_found(request.uri().path())).into_response();
    };
    let config = &route.config;

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
    let spin_path = config
        .spin_path
        .as_deref()
        .map(|template| routing::fill_template(template, &params));
    let backends = Backends {
        spin: Some(&runtime.spin),
        native: &runtime.native,
    };
    fallback::serve(
        config,
        &route.policy,
        backends,
        parts,
        body,
        spin_path,
        client,
    )
    .await
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
