//! The public listener: every request is matched against the current
//! runtime snapshot and handed to its route's stack.
//!
//! Unknown paths and methods are answered here, in problem+json, so a
//! client never sees an HTML or plain-text error. The admin listener lives
//! in [`admin`], the accept loop (connection limits, drain) in
//! [`listener`]; the admission rules are [`crate::admission`]'s, what is
//! recorded about a request [`crate::telemetry::request`]'s.

pub mod admin;
pub mod header_limits;
pub mod listener;
mod openapi;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, FromRef, Request, State};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::Instrument;

use crate::admission::{self, Admission, layer::Incoming};
use crate::problem::{self, ProblemResponse};
use crate::routing::Match;
use crate::runtime::{Gateway, RouteRuntime};
use crate::telemetry::request::{Recorders, RequestTelemetry};

/// The request id header: taken from the client or generated, passed to
/// the backend, and echoed in the response.
pub const REQUEST_ID: &str = "x-request-id";

/// What the public handlers share: the gateway (its current runtime,
/// metrics and stats) and the admission budgets every request draws on.
/// Router state rather than a request extension, so no per-request layer
/// inserts it.
#[derive(Clone)]
struct Public {
    gateway: Arc<Gateway>,
    admission: Arc<Admission>,
}

impl FromRef<Public> for Arc<Gateway> {
    fn from_ref(public: &Public) -> Self {
        public.gateway.clone()
    }
}

impl FromRef<Public> for Arc<Admission> {
    fn from_ref(public: &Public) -> Self {
        public.admission.clone()
    }
}

/// The public router. Its admission limits (`[server]`) are read once, here:
/// they size shared budgets, so a change takes a restart.
pub fn public_router(gateway: Arc<Gateway>) -> Router {
    let request_id = http::HeaderName::from_static(REQUEST_ID);
    let admission = Arc::new(Admission::new(&gateway.current().config.server));
    let state = Public { gateway, admission };
    Router::new()
        .route("/healthz", fixed(axum::routing::get(healthz), GET))
        .route(
            "/openapi.json",
            fixed(axum::routing::get(openapi::document), GET),
        )
        .route(
            "/item.schema.json",
            fixed(axum::routing::get(openapi::item_schema), GET),
        )
        .fallback(handle)
        .with_state(state)
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(request_id)),
        )
}

/// `Allow` of a route served by `get` (axum answers `HEAD` with it).
pub(crate) const GET: &str = "GET, HEAD";

/// `methods`, with any other method answered by a `405` problem naming
/// `allow` (axum's own `405` has an empty body).
pub(crate) fn fixed<S>(
    methods: axum::routing::MethodRouter<S>,
    allow: &'static str,
) -> axum::routing::MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    methods.fallback(move |method: http::Method, uri: http::Uri| async move {
        problem::method_not_allowed_response(method.as_str(), uri.path(), allow)
    })
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

/// Serves one public request: resolve the route on the current snapshot,
/// open the request's telemetry, dispatch inside its span, then let the
/// telemetry record the answer. The in-flight slots the request took are
/// held until the answer's body has been sent.
async fn handle(
    State(gateway): State<Arc<Gateway>>,
    State(admission): State<Arc<Admission>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let runtime = gateway.current();
    let resolved = runtime
        .table
        .resolve(request.method(), request.uri().path());
    let route = match &resolved {
        Match::Route { index, .. } | Match::InvalidParam { index, .. } => {
            runtime.routes.get(*index)
        }
        _ => None,
    };
    let record = Recorders {
        metrics: &gateway.metrics,
        stats: &gateway.stats,
        series: &gateway.series,
    };
    let telemetry = RequestTelemetry::start(record, route.map(|r| &*r.config), &request, client);
    // Admitted (or refused) before anything is read or matched further; a
    // refusal is the gateway's answer, recorded like any other.
    let (response, permit) = match admission.enter() {
        Ok(permit) => {
            let dispatched = Dispatch {
                admission,
                route,
                resolved,
                client,
            };
            // Boxed, so the handler's own future stays small (it is moved
            // into axum's box and through the layers).
            let response = Box::pin(dispatched.serve(request))
                .instrument(telemetry.span().clone())
                .await;
            (response, Some(permit))
        }
        Err(busy) => (busy.response(), None),
    };
    let response = telemetry.finish(response);
    match permit {
        Some(permit) => admission::hold_until_sent(response, permit),
        None => response,
    }
}

/// A request the gateway let in, with what routing made of it.
struct Dispatch<'a> {
    admission: Arc<Admission>,
    route: Option<&'a RouteRuntime>,
    resolved: Match,
    client: SocketAddr,
}

impl Dispatch<'_> {
    /// The route's stack serves a matched request; anything else is the
    /// gateway's problem+json answer.
    async fn serve(self, request: Request) -> Response {
        let path = request.uri().path();
        match (self.resolved, self.route) {
            (Match::Route { params, .. }, Some(route)) => {
                let incoming = Incoming {
                    request,
                    params,
                    client: self.client,
                    gateway: self.admission,
                };
                match route.stack.clone().serve(incoming).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
            (Match::MethodNotAllowed { allow }, _) => {
                problem::method_not_allowed_response(request.method().as_str(), path, &allow)
            }
            (Match::InvalidParam { name, reason, .. }, _) => {
                ProblemResponse(problem::invalid_path_param(&name, reason)).into_response()
            }
            (Match::NotFound, _) | (Match::Route { .. }, None) => {
                ProblemResponse(problem::not_found(path)).into_response()
            }
        }
    }
}

/// Serves `router` on `listener` with the default connection settings
/// until `shutdown` completes, then lets in-flight requests finish (up to
/// the default drain time).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener::serve(
        listener,
        router,
        listener::ListenerOptions::default(),
        shutdown,
    )
    .await
    .map(|_| ())
}

/// Serves `router` with the settings of a `[server]` section; see
/// [`listener::serve`].
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: &crate::config::ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<listener::Drained> {
    listener::serve(listener, router, limits.into(), shutdown).await
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
