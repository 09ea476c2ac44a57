//! What happens when the Wasm path fails, is slow or is overloaded.
//!
//! Each route names a backend in the config:
//!
//! * `spin` – call Spin under the route's policy (concurrency limit with
//!   load shedding, circuit breaker, timeout, retries for idempotent
//!   methods); if that fails, answer with a problem that names the backend
//!   (`503`/`504`, `Retry-After` where retrying later helps).
//! * `native` – the native handler, always.
//! * `auto` – big bodies (`native_above_bytes`) go straight to native; the
//!   rest try Spin, and any failure listed in `fallback.on` is answered by
//!   the native handler instead.
//!
//! Every response carries an [`Answered`] extension saying which backend
//! produced it and, when native stood in, why; the server turns it into
//! the `x-gateway-backend` / `x-gateway-fallback` headers, metrics and span
//! fields. A backend's own headers never speak for the gateway.

pub mod circuit;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, header};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::retry::backoff::{Backoff, ExponentialBackoffMaker, MakeBackoff};
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::rng::HasherRng;

use crate::config::{BackendKind, FallbackTrigger, NativeHandler, RouteConfig};
use crate::native::Native;
use crate::problem::{Problem, ProblemResponse};
use crate::server::admission::{HeldSlot, RouteAdmission};
use crate::spin::{RequestBody, SpinBackend, SpinError};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::size_class::{BodySize, SizeClass};
use circuit::CircuitBreaker;
use tracing::Instrument;

/// Response header naming the backend that answered.
pub const BACKEND_HEADER: &str = "x-gateway-backend";
/// Response header saying why the native backend stood in for Spin.
pub const FALLBACK_HEADER: &str = "x-gateway-fallback";
/// The `x-gateway-fallback` value when the size rule picked native.
pub const SIZE_REASON: &str = "size";

/// Who answered a request and why native stood in, if it did: a response
/// extension set here and read by the server, which alone writes the
/// `x-gateway-*` headers. Being typed, it cannot be forged by a component
/// or an upstream Spin, whatever headers they send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answered {
    /// `spin-embedded`, `spin-external`, `native` or `gateway`.
    pub backend: &'static str,
    /// The fallback trigger (or `size`, `spin-disabled`) when native
    /// answered in Spin's place.
    pub fallback: Option<&'static str>,
}

impl Answered {
    /// The gateway answered by itself (a refusal, an error, a 404).
    pub const GATEWAY: Answered = Answered {
        backend: "gateway",
        fallback: None,
    };

    /// Who answered `response` (the gateway, when nobody said).
    pub fn of(response: &Response) -> Answered {
        response
            .extensions()
            .get::<Answered>()
            .copied()
            .unwrap_or(Answered::GATEWAY)
    }
}

/// A route's live policy state: shared by all its requests, rebuilt when a
/// config reload changes the route. Clones share the state.
#[derive(Clone)]
pub struct RoutePolicy {
    /// The breaker on the route's Spin backend.
    pub circuit: CircuitBreaker,
    /// The route's share of the gateway's admission budgets.
    pub admission: Arc<RouteAdmission>,
    limit: Arc<Semaphore>,
    budget: Arc<TpsBudget>,
}

impl RoutePolicy {
    /// Fresh state for `route`.
    pub fn new(route: &RouteConfig) -> Self {
        RoutePolicy {
            circuit: CircuitBreaker::new(route.circuit.clone()),
            admission: Arc::new(RouteAdmission::new(
                &route.name,
                route.max_in_flight,
                route.max_buffered_bytes,
            )),
            limit: Arc::new(Semaphore::new(route.concurrency)),
            // Tower's retry budget: retries may add `budget_ratio` of the
            // recent request rate, plus a floor of 10/s, over 10 s.
            budget: Arc::new(TpsBudget::new(
                Duration::from_secs(10),
                10,
                route.retry.budget_ratio,
            )),
        }
    }
}

/// Why a Spin call did not produce a usable response.
#[derive(Debug)]
pub enum Failure {
    /// Spin could not be reached.
    Connect(String),
    /// The exchange with Spin broke after connecting.
    Io(String),
    /// No response within the route's timeout.
    Timeout(Duration),
    /// Spin answered with a 5xx (kept, to pass on when not falling back).
    ServerError(Response),
    /// The circuit breaker refused the call.
    CircuitOpen,
    /// The route's concurrency limit was reached.
    Overloaded,
    /// The embedded host's instance pool was full.
    PoolFull(String),
}

impl Failure {
    /// The fallback trigger this failure corresponds to.
    pub fn trigger(&self) -> FallbackTrigger {
        match self {
            Failure::Connect(_) | Failure::Io(_) => FallbackTrigger::ConnectError,
            Failure::Timeout(_) => FallbackTrigger::Timeout,
            Failure::ServerError(_) => FallbackTrigger::ServerError,
            Failure::CircuitOpen => FallbackTrigger::CircuitOpen,
            Failure::Overloaded | Failure::PoolFull(_) => FallbackTrigger::Overloaded,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            Failure::Connect(_) | Failure::Io(_) | Failure::Timeout(_) => true,
            // Like Envoy's `retry_on: 5xx`: a fresh instance (or another
            // Spin replica) may well succeed; the budget bounds the cost.
            Failure::ServerError(_) => true,
            Failure::CircuitOpen | Failure::Overloaded | Failure::PoolFull(_) => false,
        }
    }
}

/// Everything a route needs to serve one request.
pub struct Backends<'a> {
    /// The Spin application (absent only for all-native configs).
    pub spin: Option<&'a SpinBackend>,
    /// The native handlers.
    pub native: &'a Native,
    /// Where fallbacks, shedding and breaker changes are counted.
    pub metrics: &'a Metrics,
}

/// Serves one request on `route`, applying its backend choice and fallback.
///
/// `body` must be buffered unless the route is `spin`-only and makes no
/// retries (see [`needs_buffered_body`]).
pub async fn serve(
    route: &RouteConfig,
    policy: &RoutePolicy,
    backends: Backends<'_>,
    parts: http::request::Parts,
    body: RequestBody,
    spin_path: Option<String>,
    client: SocketAddr,
) -> Response {
    match route.backend {
        BackendKind::Native => native(route, &backends, &parts, body, None).await,
        BackendKind::Spin => {
            let (Some(spin), Some(path)) = (backends.spin, spin_path) else {
                return misconfigured(route);
            };
            match call_spin(route, policy, &backends, spin, parts, body, &path, client).await {
                Ok(response) => response,
                Err(failure) => failure_response(route, spin, backends.metrics, failure),
            }
        }
        BackendKind::Auto => {
            let (Some(spin), Some(path)) = (backends.spin, spin_path) else {
                return native(route, &backends, &parts, body, Some("spin-disabled")).await;
            };
            let RequestBody::Buffered(bytes) = body else {
                return misconfigured(route);
            };
            if route
                .native_above_bytes
                .is_some_and(|limit| bytes.len() > limit)
            {
                let body = RequestBody::Buffered(bytes);
                return native(route, &backends, &parts, body, Some(SIZE_REASON)).await;
            }
            let kept = clone_parts(&parts);
            let attempt = RequestBody::Buffered(bytes.clone());
            match call_spin(
                route, policy, &backends, spin, parts, attempt, &path, client,
            )
            .await
            {
                Ok(response) => response,
                Err(failure) if route.fallback_on.contains(&failure.trigger()) => {
                    let reason = failure.trigger().as_str();
                    tracing::info!(route = %route.name, reason, "falling back to native");
                    let body = RequestBody::Buffered(bytes);
                    native(route, &backends, &kept, body, Some(reason)).await
                }
                Err(failure) => failure_response(route, spin, backends.metrics, failure),
            }
        }
    }
}

/// Whether this route must read the whole body before calling a backend:
/// native handlers and the embedded host take whole bodies, a fallback
/// needs to send it a second time, and so does a retry.
pub fn needs_buffered_body(
    route: &RouteConfig,
    spin: Option<&SpinBackend>,
    method: &Method,
) -> bool {
    route.backend != BackendKind::Spin
        || spin.is_none_or(SpinBackend::needs_buffered_body)
        || (route.retry.attempts > 0 && is_idempotent(method))
}

async fn native(
    route: &RouteConfig,
    backends: &Backends<'_>,
    parts: &http::request::Parts,
    body: RequestBody,
    reason: Option<&'static str>,
) -> Response {
    let (Some(handler), RequestBody::Buffered(bytes)) = (route.native, body) else {
        return misconfigured(route);
    };
    let span = tracing::info_span!(
        "native",
        gateway.route = %route.name,
        gateway.backend = "native",
        gateway.fallback.reason = reason,
        gateway.size_class = SizeClass::of(bytes.len() as u64).as_str(),
        http.request.body.size = bytes.len() as i64,
        validate.items = tracing::field::Empty,
    );
    let _in_flight = backends.metrics.in_flight("native");
    let mut response = backends
        .native
        .call(handler, &parts.headers, bytes, route.timeout)
        .instrument(span)
        .await;
    response.extensions_mut().insert(Answered {
        backend: "native",
        fallback: reason,
    });
    response
}

/// Calls Spin under the route's limit, breaker, timeout and retry policy.
#[allow(clippy::too_many_arguments)]
pub async fn call_spin(
    route: &RouteConfig,
    policy: &RoutePolicy,
    backends: &Backends<'_>,
    spin: &SpinBackend,
    parts: http::request::Parts,
    body: RequestBody,
    spin_path: &str,
    client: SocketAddr,
) -> Result<Response, Failure> {
    let permit = policy
        .limit
        .clone()
        .try_acquire_owned()
        .map_err(|_| Failure::Overloaded)?;
    // The budget only ever pays for retries: a route without them has no
    // use for the bookkeeping (a lock and a clock read per request). A
    // reload that turns retries on builds a fresh policy, budget included.
    let retries = route.retry.attempts > 0;
    if retries {
        policy.budget.deposit();
    }

    let may_retry = retries && is_idempotent(&parts.method);
    // Made at the first retry: most requests never need one.
    let mut backoff = None;
    // Read after a failure, to tell the client's faults from Spin's.
    let watch = crate::server::admission::body_watch(&parts);
    let size = BodySize::buffered(&body).or_else(|| BodySize::declared(&parts.headers));
    // An attempt that may be retried sends a copy of the head; the last
    // possible one sends the head itself.
    let mut parts = Some(parts);
    let mut retries_left = route.retry.attempts;
    // A streaming body can be sent once; a buffered one as often as needed.
    let (buffered, mut streaming) = match body {
        RequestBody::Buffered(bytes) => (Some(bytes), None),
        RequestBody::Streaming(stream) => (None, Some(stream)),
    };
    loop {
        let (attempt, transition) = policy.circuit.try_acquire();
        if let Some(t) = transition {
            log_transition(route, backends.metrics, t);
        }
        let Some(attempt) = attempt else {
            return Err(Failure::CircuitOpen);
        };
        let this_body = match (&buffered, streaming.take()) {
            (Some(bytes), _) => RequestBody::Buffered(bytes.clone()),
            (None, Some(stream)) => RequestBody::Streaming(stream),
            // Only reachable on a retry of a streamed body, which
            // `may_retry` rules out; refuse rather than send an empty body.
            (None, None) => return Err(Failure::Io("request body already consumed".into())),
        };
        let span = tracing::info_span!(
            "spin",
            otel.kind = if matches!(spin, SpinBackend::External(_)) { "client" } else { "internal" },
            gateway.route = %route.name,
            gateway.backend = spin.label(),
            gateway.attempt = i64::from(route.retry.attempts - retries_left + 1),
            gateway.size_class = BodySize::class(size).as_str(),
            http.request.body.size = size.map(|s| s.0 as i64),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            validate.items = tracing::field::Empty,
        );
        let _in_flight = backends.metrics.in_flight(spin.label());
        // Boxed: the host's call is a large future, and kept inline it
        // would be copied along with every future that holds this one.
        let head = if may_retry {
            parts.as_ref().map(clone_parts)
        } else {
            parts.take()
        };
        let Some(head) = head else {
            return Err(Failure::Io("the request head was already sent".into()));
        };
        let call = Box::pin(
            spin.call(head, this_body, spin_path, client, route.timeout)
                .instrument(span.clone()),
        );
        let outcome = tokio::time::timeout(route.timeout, call).await;
        match &outcome {
            Ok(Ok(response)) => {
                span.record(
                    "http.response.status_code",
                    i64::from(response.status().as_u16()),
                );
                if response.status().is_server_error() {
                    span.record("error.type", response.status().as_str());
                }
            }
            Ok(Err(SpinError::Connect(_))) => {
                span.record("error.type", "connect-error");
            }
            Ok(Err(SpinError::Io(_))) => {
                span.record("error.type", "io");
            }
            Ok(Err(SpinError::Overloaded(_))) => {
                span.record("error.type", "overloaded");
            }
            Err(_) => {
                span.record("error.type", "timeout");
            }
        }
        let failure = match outcome {
            Ok(Ok(response)) if !response.status().is_server_error() => {
                if let Some(t) = attempt.record(true) {
                    log_transition(route, backends.metrics, t);
                }
                let response = if route.native == Some(NativeHandler::Validate) {
                    record_batch_size(response, span.clone())
                } else {
                    response
                };
                return Ok(with_held_slot(label(response, spin), permit));
            }
            Ok(Ok(response)) => Failure::ServerError(label(response, spin)),
            // A full instance pool says nothing about the component's
            // health: the breaker does not hear of it and it is not retried.
            Ok(Err(SpinError::Overloaded(message))) => {
                drop(attempt);
                return Err(Failure::PoolFull(message));
            }
            Ok(Err(SpinError::Connect(m))) => Failure::Connect(m),
            Ok(Err(SpinError::Io(m))) => Failure::Io(m),
            Err(_) => Failure::Timeout(route.timeout),
        };
        // A failure the client caused (its streamed body broke off, passed
        // the route's limit or stalled) is not Spin's: answer the client's
        // 4xx, and leave the breaker and the retries out of it (the attempt
        // is dropped unrecorded).
        let timed_out = matches!(failure, Failure::Timeout(_));
        if let Some(fault) = crate::server::admission::client_fault(watch.as_deref(), timed_out) {
            tracing::debug!(route = %route.name, ?failure, "client-side failure: {fault}");
            drop(attempt);
            return Ok(fault.response());
        }
        if let Some(t) = attempt.record(false) {
            log_transition(route, backends.metrics, t);
        }
        let can_retry = may_retry && buffered.is_some() && retries_left > 0 && failure.retryable();
        if !can_retry || !policy.budget.withdraw() {
            return Err(failure);
        }
        retries_left -= 1;
        tracing::debug!(route = %route.name, ?failure, "retrying Spin");
        if backoff.is_none() {
            backoff = ExponentialBackoffMaker::new(
                route.retry.backoff,
                route.retry.backoff * 16,
                0.5,
                HasherRng::default(),
            )
            .ok()
            .map(|mut maker| maker.make_backoff());
        }
        if let Some(backoff) = backoff.as_mut() {
            backoff.next_backoff().await;
        }
    }
}

/// Records `validate.items` on the `spin` span from the verdict as it
/// streams past: the component's answer starts `{"valid":N,"invalid":M`,
/// so the first frame is enough and nothing is buffered.
fn record_batch_size(response: Response, span: tracing::Span) -> Response {
    if response.status() != http::StatusCode::OK {
        return response;
    }
    let mut seen = false;
    response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            if !seen {
                seen = true;
                if let Some(items) = frame.data_ref().and_then(|d| verdict_items(d)) {
                    span.record("validate.items", items);
                }
            }
            frame
        }))
    })
}

/// `valid + invalid` from the start of a verdict document.
fn verdict_items(prefix: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(prefix.get(..prefix.len().min(64))?).ok()?;
    let number = |key: &str| -> Option<i64> {
        let rest = text.split(key).nth(1)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    Some(number("\"valid\":")? + number("\"invalid\":")?)
}

/// Marks a response as Spin's. Any `x-gateway-*` header a component (or
/// an external Spin) set is dropped by the server, the only writer of
/// those headers.
fn label(mut response: Response, spin: &SpinBackend) -> Response {
    response.extensions_mut().insert(Answered {
        backend: spin.label(),
        fallback: None,
    });
    response
}

/// Hands the concurrency permit up with the answer; the server holds it,
/// with its own slots, until the body is fully sent, so the limit counts
/// streaming responses too.
fn with_held_slot(mut response: Response, permit: OwnedSemaphorePermit) -> Response {
    response.extensions_mut().insert(HeldSlot(Arc::new(permit)));
    response
}

fn log_transition(route: &RouteConfig, metrics: &Metrics, t: circuit::Transition) {
    metrics.circuit_transition(&route.name, t.from, t.to);
    tracing::warn!(
        route = %route.name,
        from = t.from.as_str(),
        to = t.to.as_str(),
        "circuit breaker on the Spin backend changed state"
    );
}

/// Idempotent methods (RFC 9110 §9.2.2) may be retried safely.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

/// A copy of the request head (extensions are not carried over).
pub(crate) fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let (mut copy, ()) = http::Request::new(()).into_parts();
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy
}

/// The answer when Spin failed and native does not stand in.
fn failure_response(
    route: &RouteConfig,
    spin: &SpinBackend,
    metrics: &Metrics,
    failure: Failure,
) -> Response {
    if matches!(failure, Failure::Overloaded | Failure::PoolFull(_)) {
        metrics.shed(&route.name);
    }
    let backend = spin.describe();
    let (problem, retry_after) = match failure {
        Failure::ServerError(response) => return response,
        Failure::Connect(message) => (
            Problem::new(
                503,
                "Backend Unavailable",
                format!(
                    "route `{}` is served by {backend}, which cannot be reached: {message}",
                    route.name
                ),
            ),
            Some(1),
        ),
        Failure::Io(message) => (
            Problem::new(
                502,
                "Bad Gateway",
                format!(
                    "route `{}`: the exchange with {backend} failed: {message}",
                    route.name
                ),
            ),
            None,
        ),
        Failure::Timeout(after) => (
            Problem::new(
                504,
                "Gateway Timeout",
                format!(
                    "route `{}`: {backend} did not answer within {} ms",
                    route.name,
                    after.as_millis()
                ),
            ),
            None,
        ),
        Failure::CircuitOpen => (
            Problem::new(
                503,
                "Backend Unavailable",
                format!(
                    "route `{}`: the circuit breaker on {backend} is open after repeated failures; \
                     requests are refused until it recovers",
                    route.name
                ),
            ),
            Some(route.circuit.open_for.as_secs().max(1)),
        ),
        Failure::PoolFull(message) => (
            Problem::new(
                503,
                "Overloaded",
                format!("route `{}`: {message}; retry shortly", route.name),
            ),
            Some(1),
        ),
        Failure::Overloaded => (
            Problem::new(
                503,
                "Overloaded",
                format!(
                    "route `{}` already has {} requests in flight on {backend}; retry shortly",
                    route.name, route.concurrency
                ),
            ),
            Some(1),
        ),
    };
    let problem = problem
        .with("route", serde_json::json!(route.name))
        .with("backend", serde_json::json!(spin.label()));
    let mut response = ProblemResponse(problem).into_response();
    response.extensions_mut().insert(Answered::GATEWAY);
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn misconfigured(route: &RouteConfig) -> Response {
    ProblemResponse(Problem::new(
        500,
        "Internal Server Error",
        format!("route `{}` has no backend able to serve it", route.name),
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::verdict_items;

    #[test]
    fn batch_size_is_read_from_the_verdict_prefix() {
        assert_eq!(
            verdict_items(br#"{"valid":3,"invalid":14,"results":[{"#),
            Some(17)
        );
        assert_eq!(
            verdict_items(br#"{"valid":0,"invalid":0,"results":[]}"#),
            Some(0)
        );
        assert_eq!(verdict_items(br#"{"type":"about:blank"}"#), None);
        assert_eq!(verdict_items(b"\xff\xfe"), None);
    }
}
