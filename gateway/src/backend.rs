//! Who serves a request, what they are handed, and how they fail: the
//! vocabulary every layer of a route's stack speaks.
//!
//! Kept apart from the layers themselves so that the server, telemetry,
//! shadow sampling and the policy layers all depend on this module and not
//! on each other.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;

use crate::config::FallbackTrigger;

/// Response header naming the backend that answered.
pub const BACKEND_HEADER: &str = "x-gateway-backend";
/// Response header saying why the native backend stood in for Spin.
pub const FALLBACK_HEADER: &str = "x-gateway-fallback";
/// The `x-gateway-fallback` value when the size rule picked native.
pub const SIZE_REASON: &str = "size";
/// The `x-gateway-fallback` value when an `auto` route has no Spin path.
pub const SPIN_DISABLED_REASON: &str = "spin-disabled";

/// A backend, by identity rather than by string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The Spin app in the embedded host.
    SpinEmbedded,
    /// A running `spin up`, over HTTP.
    SpinExternal,
    /// A handler compiled into the gateway.
    Native,
    /// The gateway itself (a refusal, an error, a 404).
    Gateway,
}

impl Backend {
    /// The value of `x-gateway-backend` and of the `gateway.backend`
    /// telemetry attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::SpinEmbedded => "spin-embedded",
            Backend::SpinExternal => "spin-external",
            Backend::Native => "native",
            Backend::Gateway => "gateway",
        }
    }

    /// Whether this is one of the Spin backends.
    pub fn is_spin(self) -> bool {
        matches!(self, Backend::SpinEmbedded | Backend::SpinExternal)
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who answered a request and why native stood in, if it did: a response
/// extension set by the backend services and read by the request
/// telemetry, which alone writes the `x-gateway-*` headers. Being typed, it
/// cannot be forged by a component or an upstream Spin, whatever headers
/// they send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answered {
    /// Who produced the response.
    pub backend: Backend,
    /// The fallback trigger (or `size`, `spin-disabled`) when native
    /// answered in Spin's place.
    pub fallback: Option<&'static str>,
}

impl Answered {
    /// The gateway answered by itself (a refusal, an error, a 404).
    pub const GATEWAY: Answered = Answered {
        backend: Backend::Gateway,
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

    /// Marks `response` as this backend's answer.
    pub fn mark(self, mut response: Response) -> Response {
        response.extensions_mut().insert(self);
        response
    }
}

/// A request body, either already read (so it can be sent again on retry
/// or to the native fallback) or still streaming from the client.
pub enum RequestBody {
    /// Read in full (within the route's limit).
    Buffered(Bytes),
    /// Not read yet; can be sent once.
    Streaming(Body),
}

impl RequestBody {
    /// The bytes, when the body was read in full.
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            RequestBody::Buffered(bytes) => Some(bytes),
            RequestBody::Streaming(_) => None,
        }
    }
}

/// One admitted request on its way to a backend: what every layer of a
/// route's stack below admission takes.
pub struct RouteRequest {
    /// The public request's head.
    pub parts: http::request::Parts,
    /// Its body, buffered or streaming as the route needs.
    pub body: RequestBody,
    /// The component route (the route's `spin_path`, parameters filled).
    pub spin_path: Option<String>,
    /// Who asked.
    pub client: SocketAddr,
    /// Why native serves it in Spin's place, once that is decided.
    pub fallback: Option<&'static str>,
    /// Which try this is: 1, then counted up by the retry policy.
    pub attempt: u32,
}

impl RouteRequest {
    /// A copy for a second backend, when the body is buffered: the head
    /// (without extensions, but for the replica [`Trail`] that retries
    /// share and the request's CPU meter) and the same bytes.
    ///
    /// [`Trail`]: crate::proxy::elsewhere::Trail
    pub fn try_clone(&self) -> Option<RouteRequest> {
        let mut parts = clone_parts(&self.parts);
        if let Some(trail) = self
            .parts
            .extensions
            .get::<crate::proxy::elsewhere::Trail>()
        {
            parts.extensions.insert(trail.clone());
        }
        // A metered request's retries are the same request's CPU.
        if let Some(meter) = self.parts.extensions.get::<spin_host::cpu::CpuMeter>() {
            parts.extensions.insert(meter.clone());
        }
        Some(RouteRequest {
            parts,
            body: RequestBody::Buffered(self.body.bytes()?.clone()),
            spin_path: self.spin_path.clone(),
            client: self.client,
            fallback: self.fallback,
            attempt: self.attempt,
        })
    }
}

/// A copy of a request head (extensions are not carried over).
pub fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let (mut copy, ()) = http::Request::new(()).into_parts();
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy
}

/// Idempotent methods (RFC 9110 §9.2.2) may be retried safely.
pub fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

/// Boxed error sources (transport errors, internal misuse).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a backend call did not produce a usable response: the one error type
/// of every layer of a route's stack. The cause, where there is one, is
/// kept as the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Spin could not be reached.
    #[error("the backend cannot be reached")]
    Connect(#[source] BoxError),
    /// The exchange with Spin broke after connecting.
    #[error("the exchange with the backend failed")]
    Io(#[source] BoxError),
    /// No response within the route's timeout.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// Spin answered with a 5xx (kept, to pass on when not falling back).
    #[error("the backend answered {}", .0.status())]
    ServerError(Response),
    /// The circuit breaker refused the call.
    #[error("the circuit breaker is open")]
    CircuitOpen,
    /// The route's concurrency limit was reached.
    #[error("the route's concurrency limit of {limit} is reached")]
    Overloaded {
        /// The limit.
        limit: usize,
    },
    /// The embedded host's instance pool was full.
    #[error(
        "all {capacity} instance slots of the embedded host are busy (component '{component}')"
    )]
    PoolFull {
        /// The component that found no free slot.
        component: String,
        /// The pool's size.
        capacity: usize,
    },
    /// The client broke the exchange (its streamed body broke off, passed a
    /// limit or stalled): not the backend's fault.
    #[error("the client's request failed")]
    ClientFault {
        /// The client's 4xx.
        answer: Response,
        /// What the client did.
        #[source]
        cause: BoxError,
    },
}

impl BackendError {
    /// The fallback trigger this failure corresponds to (`None` for a
    /// client's fault, which no backend can mend).
    pub fn trigger(&self) -> Option<FallbackTrigger> {
        Some(match self {
            BackendError::Connect(_) | BackendError::Io(_) => FallbackTrigger::ConnectError,
            BackendError::Timeout(_) => FallbackTrigger::Timeout,
            BackendError::ServerError(_) => FallbackTrigger::ServerError,
            BackendError::CircuitOpen => FallbackTrigger::CircuitOpen,
            BackendError::Overloaded { .. } | BackendError::PoolFull { .. } => {
                FallbackTrigger::Overloaded
            }
            BackendError::ClientFault { .. } => return None,
        })
    }

    /// Whether another attempt may succeed. Like Envoy's `retry_on: 5xx`,
    /// a server error counts: a fresh instance (or another Spin replica)
    /// may well succeed; the budget bounds the cost.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            BackendError::Connect(_)
                | BackendError::Io(_)
                | BackendError::Timeout(_)
                | BackendError::ServerError(_)
        )
    }

    /// Whether the circuit breaker hears of it. A full instance pool says
    /// nothing about the component's health, and a client's fault is not
    /// the backend's.
    pub fn is_backend_failure(&self) -> bool {
        !matches!(
            self,
            BackendError::PoolFull { .. } | BackendError::ClientFault { .. }
        )
    }

    /// The `error.type` recorded on the attempt's span (a server error
    /// records its status instead).
    pub fn kind(&self) -> &'static str {
        match self {
            BackendError::Connect(_) => "connect-error",
            BackendError::Io(_) => "io",
            BackendError::Timeout(_) => "timeout",
            // The attempt's span records the status itself.
            BackendError::ServerError(_) => "5xx",
            BackendError::CircuitOpen => "circuit-open",
            BackendError::Overloaded { .. } | BackendError::PoolFull { .. } => "overloaded",
            BackendError::ClientFault { .. } => "client",
        }
    }
}

/// The state of a backend's circuit breaker (exported as a gauge: 0, 1, 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests flow normally.
    Closed,
    /// Requests are refused without calling the backend.
    Open,
    /// A few probe requests test whether the backend recovered.
    HalfOpen,
}

impl CircuitState {
    /// Lowercase name for logs, metrics and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}

/// What a backend or policy service's call returns (boxed: one allocation
/// per layer and request, against the many a backend call makes).
pub type BackendFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, BackendError>> + Send>>;

/// What a route's stack returns from admission down to the answer layer:
/// failures have become responses by then.
pub type AnswerFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send>,
>;
