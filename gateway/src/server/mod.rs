//! The public listener: every request is matched against the current
//! runtime snapshot and handed to the fallback policy.
//!
//! Unknown paths and methods are answered here, in problem+json, so a
//! client never sees an HTML or plain-text error. The admin listener lives
//! in [`admin`], the accept loop (connection limits, drain) in
//! [`listener`], and the request admission rules in [`admission`].

pub mod admin;
pub mod admission;
pub mod header_limits;
pub mod listener;
mod openapi;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Router, body::Body};
use bytes::Bytes;
use http::{HeaderValue, header};
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use std::time::Instant;

use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::fallback::{self, Answered, Backends};
use crate::native::NativeTiming;
use crate::problem::{self, Problem, ProblemResponse};
use crate::proxy;
use crate::routing::{self, Match};
use crate::runtime::Gateway;
use crate::runtime::{RouteRuntime, Runtime};
use crate::shadow;
use crate::spin::RequestBody;
use crate::telemetry::propagation;
use crate::telemetry::size_class::BodySize;
use admission::{Admission, AdmittedBody, ByteBudget};

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
        .route("/healthz", axum::routing::get(healthz))
        .route("/openapi.json", axum::routing::get(openapi::document))
        .route(
            "/item.schema.json",
            axum::routing::get(openapi::item_schema),
        )
        .fallback(handle)
        .with_state(state)
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
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
    State(admission): State<Arc<Admission>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let runtime = gateway.current();
    let method = request.method().clone();
    let path = request.uri().path();
    let resolved = runtime.table.resolve(&method, path);
    let route = match &resolved {
        Match::Route { index, .. } | Match::InvalidParam { index, .. } => {
            runtime.routes.get(*index)
        }
        _ => None,
    };
    let armed = crate::telemetry::traces::arm(request.headers());
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
        gateway.size_class = tracing::field::Empty,
        http.request.body.size = tracing::field::Empty,
        http.response.body.size = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    drop(armed);
    // Without a span (no OTLP export) there is nothing to continue; the
    // client's `traceparent` still travels on to the backend unchanged.
    if !span.is_disabled() {
        let _ = span.set_parent(propagation::extract(request.headers()));
    }

    // Admitted (or refused) before anything is read or matched further; a
    // refusal is the gateway's answer, counted like any other below.
    let (permit, refused) = match admission.enter() {
        Ok(permit) => (Some(permit), None),
        Err(busy) => (None, Some(busy.response())),
    };
    let declared = BodySize::declared(request.headers());
    let mut slots = admission::Slots {
        gateway: permit,
        ..Default::default()
    };
    let mut response = match (resolved, refused) {
        (_, Some(busy)) => busy,
        (Match::Route { index, params }, None) => {
            // Boxed, so the handler's own future stays small (it is moved
            // into axum's box and through the layers).
            let (response, route_permit) = Box::pin(
                route_request(
                    &gateway, &runtime, &admission, index, params, client, request,
                )
                .instrument(span.clone()),
            )
            .await;
            slots.route = route_permit;
            response
        }
        (Match::MethodNotAllowed { allow }, None) => {
            let mut response =
                ProblemResponse(problem::method_not_allowed(method.as_str(), path, &allow))
                    .into_response();
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            response
        }
        (Match::InvalidParam { name, reason, .. }, None) => {
            ProblemResponse(problem::invalid_path_param(&name, reason)).into_response()
        }
        (Match::NotFound, None) => ProblemResponse(problem::not_found(path)).into_response(),
    };

    let status = response.status();
    let took = started.elapsed();
    let answered = Answered::of(&response);
    span.record("http.response.status_code", i64::from(status.as_u16()));
    span.record("gateway.backend", answered.backend);
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
    // The only place the gateway's headers are written, from its own
    // account; whatever a backend sent under these names is gone.
    let headers = response.headers_mut();
    proxy::headers::remove_prefixed(headers, proxy::headers::GATEWAY_PREFIX);
    headers.insert(
        fallback::BACKEND_HEADER,
        HeaderValue::from_static(answered.backend),
    );
    if let Some(reason) = answered.fallback {
        headers.insert(fallback::FALLBACK_HEADER, HeaderValue::from_static(reason));
    }
    let route_name = route.map_or("unmatched", |r| r.config.name.as_str());
    let class = BodySize::record(&span, BodySize::of(&response, declared));
    gateway
        .metrics
        .request(route_name, answered.backend, class, &method, status, took);
    gateway
        .stats
        .request(route_name, answered.backend, class, took);
    gateway.series.request(route_name, answered.backend, took);
    if let Some(reason) = answered.fallback {
        span.record("gateway.fallback.reason", reason);
        gateway.metrics.fallback(route_name, reason);
        gateway.stats.fallback(route_name, reason);
        gateway.series.fallback(route_name, reason);
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
    admission::hold_until_sent(response, slots)
}

/// Admits the request on its route, then reads the body as the route needs
/// it, calls the fallback policy, and queues a shadow comparison when the
/// route samples this request. The route's in-flight permit comes back
/// with the answer, to be held until it has been sent.
async fn route_request(
    gateway: &Arc<Gateway>,
    runtime: &Arc<Runtime>,
    admission: &Admission,
    index: usize,
    params: Vec<(String, String)>,
    client: SocketAddr,
    request: Request,
) -> (Response, Option<OwnedSemaphorePermit>) {
    let Some(route) = runtime.routes.get(index) else {
        let path = request.uri().path();
        return (
            ProblemResponse(problem::not_found(path)).into_response(),
            None,
        );
    };
    let started = Instant::now();
    // The route's own share of the gateway, taken before the body is read
    // and held (with the gateway's) until the answer has been sent.
    let route_permit = match route.policy.admission.enter() {
        Ok(permit) => permit,
        Err(busy) => return (busy.response(), None),
    };
    let admitted = Admitted {
        route,
        index,
        started,
    };
    let response = admitted_request(
        gateway, runtime, admission, admitted, params, client, request,
    )
    .await;
    (response, Some(route_permit))
}

/// A request its route has let in.
struct Admitted<'a> {
    route: &'a RouteRuntime,
    /// The route's position in the snapshot (for the shadow queue).
    index: usize,
    started: Instant,
}

/// [`route_request`] once the route has admitted the request.
async fn admitted_request(
    gateway: &Arc<Gateway>,
    runtime: &Arc<Runtime>,
    admission: &Admission,
    admitted: Admitted<'_>,
    params: Vec<(String, String)>,
    client: SocketAddr,
    request: Request,
) -> Response {
    let Admitted {
        route,
        index,
        started,
    } = admitted;
    let config = &route.config;
    let (mut parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Refused from the head alone: not a byte of the body is read.
    if declared.is_some_and(|len| len > config.max_body_bytes as u64) {
        return ProblemResponse(problem::payload_too_large(
            &config.name,
            config.max_body_bytes,
        ))
        .into_response();
    }
    let buffered = fallback::needs_buffered_body(config, Some(&runtime.spin), &parts.method);
    // A request without a body (most GETs) has nothing to admit, time or
    // watch: no byte can arrive late, run over a limit or break off. Any
    // other body's byte reservation (`_held`) is kept until the backend
    // has answered: the buffered bytes live as long.
    let (body, _held) = if http_body::Body::is_end_stream(&body) {
        let empty = if buffered {
            RequestBody::Buffered(Bytes::new())
        } else {
            RequestBody::Streaming(Body::empty())
        };
        (empty, None)
    } else {
        let rules = BodyRules {
            admission,
            route,
            declared,
            buffered,
        };
        match admit_body(rules, &mut parts, body).await {
            Ok(admitted) => admitted,
            Err(refused) => return refused,
        }
    };
    let spin_path = config
        .spin_path
        .as_deref()
        .map(|template| routing::fill_template(template, &params));

    // Keep what a shadow replay needs before the request is consumed.
    let sampled = match &body {
        RequestBody::Buffered(bytes) if gateway.shadow.sample(runtime, config) => {
            Some((fallback::clone_parts(&parts), bytes.clone()))
        }
        _ => None,
    };
    // A sample's primary is timed like its shadow, from the backend call on.
    let started = sampled.as_ref().map_or(started, |_| Instant::now());
    let size = BodySize::buffered(&body);
    // The shadow replays to the same component path; copied only then.
    let shadow_path = if sampled.is_some() {
        spin_path.clone()
    } else {
        None
    };
    let backends = Backends {
        spin: Some(&runtime.spin),
        native: &runtime.native,
        metrics: &gateway.metrics,
    };
    let response = Box::pin(fallback::serve(
        config,
        &route.policy,
        backends,
        parts,
        body,
        spin_path,
        client,
    ))
    .await;
    let response = BodySize::tag(response, size);
    let Some((shadow_parts, shadow_body)) = sampled else {
        return response;
    };
    let primary_backend = Answered::of(&response).backend.to_string();
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
        spin_path: shadow_path,
        client,
        primary_backend,
        primary_status: head.status.as_u16(),
        primary_body: primary_body.clone(),
        primary_took: started.elapsed(),
        parent: tracing::Span::current(),
    });
    Response::from_parts(head, axum::body::Body::from(primary_body))
}

/// What [`admit_body`] needs to know about the request and its route.
struct BodyRules<'a> {
    admission: &'a Admission,
    route: &'a RouteRuntime,
    /// The `Content-Length` the client declared, if any.
    declared: Option<u64>,
    /// Whether the body is read in full before a backend is called.
    buffered: bool,
}

/// Puts a request body under the gateway's rules (size limit, read
/// deadline, byte budgets): read in full when `buffered` (the reservation
/// comes back, to be held while the bytes live), else wrapped to stream,
/// with a watch in `parts` telling the fallback policy whether a failure
/// was the client's.
async fn admit_body(
    rules: BodyRules<'_>,
    parts: &mut http::request::Parts,
    body: Body,
) -> Result<(RequestBody, Option<admission::Reservation>), Response> {
    let BodyRules {
        admission,
        route,
        declared,
        buffered,
    } = rules;
    let config = &route.config;
    // A body the gateway will hold in memory reserves its declared length
    // before it is read; a chunked one reserves frame by frame as it comes.
    let reservation = if buffered {
        let declared = declared.map_or(0, |len| len as usize);
        let budgets = [admission.bytes(), route.policy.admission.bytes()];
        match ByteBudget::reserve(&budgets, declared) {
            Ok(reservation) => Some(reservation),
            Err(over) => return Err(over.response()),
        }
    } else {
        None
    };
    let (mut admitted, watch) = AdmittedBody::new(
        body,
        &config.name,
        config.max_body_bytes,
        admission.body_read_timeout,
        reservation,
    );
    if !buffered {
        // Errors surface while the body streams to Spin; the fallback
        // policy reads the watch to know they were the client's.
        parts.extensions.insert(watch);
        return Ok((RequestBody::Streaming(Body::new(admitted)), None));
    }
    match (&mut admitted).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            tracing::Span::current().record("http.request.body.size", bytes.len() as i64);
            Ok((RequestBody::Buffered(bytes), admitted.take_reservation()))
        }
        Err(e) => Err(e.response()),
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
