//! A route's admission as the top layer of its stack: its in-flight cap
//! (`[[route]] max_in_flight`), then the body rules (declared size, read
//! deadline, byte budgets), before anything below spends a Spin slot.
//!
//! The route's in-flight permit is held by a body guard
//! ([`hold_until_sent`]) until the response body has been sent, so a
//! streaming answer still counts; a buffered body's byte reservation is
//! held until the backend has answered (the bytes live as long).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header;
use http_body_util::BodyExt;
use tower::{Layer, Service};

use super::{Admission, AdmittedBody, ByteBudget, Reservation, RouteAdmission, hold_until_sent};
use crate::backend::{AnswerFuture, RequestBody, RouteRequest, is_idempotent};
use crate::config::RouteConfig;
use crate::problem::{self, ProblemResponse};
use crate::telemetry::size_class::BodySize;

/// What the public listener hands a route's stack: the request as it came,
/// with its path parameters and the listener's shared budgets.
pub struct Incoming {
    /// The public request.
    pub request: http::Request<Body>,
    /// Path parameters, decoded and checked.
    pub params: Vec<(String, String)>,
    /// Who asked.
    pub client: SocketAddr,
    /// The listener's budgets (`[server]`), drawn on with the route's own.
    pub gateway: Arc<Admission>,
}

/// When a route reads the whole body before calling a backend: native
/// handlers and the embedded host take whole bodies, a fallback needs to
/// send it a second time, and so does a retry (of an idempotent method).
#[derive(Clone, Copy, Debug)]
pub struct BufferRule {
    /// Every body is buffered.
    pub always: bool,
    /// Bodies of idempotent methods are buffered (the route retries).
    pub for_retries: bool,
}

impl BufferRule {
    /// Whether a request with `method` is read in full first.
    pub fn buffers(self, method: &http::Method) -> bool {
        self.always || (self.for_retries && is_idempotent(method))
    }
}

/// Builds [`Admit`] for one route.
#[derive(Clone)]
pub struct AdmitLayer {
    shared: Arc<Shared>,
}

struct Shared {
    route: Arc<RouteConfig>,
    admission: Arc<RouteAdmission>,
    buffer: BufferRule,
}

impl AdmitLayer {
    /// Admission for `route` with its share `admission` of the budgets.
    pub fn new(
        route: Arc<RouteConfig>,
        admission: Arc<RouteAdmission>,
        buffer: BufferRule,
    ) -> Self {
        AdmitLayer {
            shared: Arc::new(Shared {
                route,
                admission,
                buffer,
            }),
        }
    }
}

impl<S> Layer<S> for AdmitLayer {
    type Service = Admit<S>;
    fn layer(&self, inner: S) -> Admit<S> {
        Admit {
            shared: self.shared.clone(),
            inner,
        }
    }
}

/// A route's admission in front of `S`; see the module docs.
#[derive(Clone)]
pub struct Admit<S> {
    shared: Arc<Shared>,
    inner: S,
}

impl<S> Service<Incoming> for Admit<S>
where
    S: Service<RouteRequest, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AnswerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, incoming: Incoming) -> AnswerFuture {
        self.clone().serve(incoming)
    }
}

impl<S> Admit<S>
where
    S: Service<RouteRequest, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send,
{
    /// Serves one request with this copy of the stack (what
    /// [`Service::call`] does with a fresh copy): the public listener
    /// clones a route's stack once per request and hands it over here.
    pub fn serve(self, incoming: Incoming) -> AnswerFuture {
        let Admit { shared, mut inner } = self;
        Box::pin(async move {
            let permit = match shared.admission.enter() {
                Ok(permit) => permit,
                Err(busy) => return Ok(busy.response()),
            };
            let response = match shared.admit(incoming).await {
                Ok((request, _held)) => {
                    // The size the backends saw, for the request's size class.
                    let size = BodySize::buffered(&request.body);
                    match inner.call(request).await {
                        Ok(response) => BodySize::tag(response, size),
                        Err(never) => match never {},
                    }
                }
                Err(refused) => refused,
            };
            Ok(hold_until_sent(response, permit))
        })
    }
}

impl Shared {
    /// The request under the route's body rules, with the byte reservation
    /// to hold while its bytes live, or the refusal to answer.
    async fn admit(
        &self,
        incoming: Incoming,
    ) -> Result<(RouteRequest, Option<Reservation>), Response> {
        let Incoming {
            request,
            params,
            client,
            gateway,
        } = incoming;
        let config = &*self.route;
        let (mut parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // Refused from the head alone: not a byte of the body is read.
        if declared.is_some_and(|len| len > config.max_body_bytes as u64) {
            return Err(ProblemResponse(problem::payload_too_large(
                &config.name,
                config.max_body_bytes,
            ))
            .into_response());
        }
        let buffered = self.buffer.buffers(&parts.method);
        // A request without a body (most GETs) has nothing to admit, time
        // or watch: no byte can arrive late, run over a limit or break off.
        let (body, held) = if http_body::Body::is_end_stream(&body) {
            let empty = if buffered {
                RequestBody::Buffered(Bytes::new())
            } else {
                RequestBody::Streaming(Body::empty())
            };
            (empty, None)
        } else {
            let rules = BodyRules {
                gateway: &gateway,
                route: self,
                declared,
                buffered,
            };
            admit_body(rules, &mut parts, body).await?
        };
        let spin_path = config
            .spin_path
            .as_deref()
            .map(|template| crate::routing::fill_template(template, &params));
        let request = RouteRequest {
            parts,
            body,
            spin_path,
            client,
            fallback: None,
            attempt: 1,
        };
        Ok((request, held))
    }
}

/// What [`admit_body`] needs to know about the request and its route.
struct BodyRules<'a> {
    gateway: &'a Admission,
    route: &'a Shared,
    /// The `Content-Length` the client declared, if any.
    declared: Option<u64>,
    /// Whether the body is read in full before a backend is called.
    buffered: bool,
}

/// Puts a request body under the gateway's rules (size limit, read
/// deadline, byte budgets): read in full when `buffered` (the reservation
/// comes back, to be held while the bytes live), else wrapped to stream,
/// with a watch in `parts` telling the policy layers whether a failure was
/// the client's.
async fn admit_body(
    rules: BodyRules<'_>,
    parts: &mut http::request::Parts,
    body: Body,
) -> Result<(RequestBody, Option<Reservation>), Response> {
    let BodyRules {
        gateway,
        route,
        declared,
        buffered,
    } = rules;
    let config = &*route.route;
    // A body the gateway will hold in memory reserves its declared length
    // before it is read; a chunked one reserves frame by frame as it comes.
    let reservation = if buffered {
        let declared = declared.map_or(0, |len| len as usize);
        let budgets = [gateway.bytes(), route.admission.bytes()];
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
        gateway.body_read_timeout,
        reservation,
    );
    if !buffered {
        // Errors surface while the body streams to Spin; the client-fault
        // layer reads the watch to know they were the client's.
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
