//! Admission: what the gateway lets in before it spends memory or a Spin
//! slot on a request.
//!
//! * A cap on requests in flight, for the whole gateway (`[server]
//!   max_in_flight`) and for each route (`[[route]] max_in_flight`):
//!   beyond either, `503` with `Retry-After` at once, before the body is
//!   touched.
//! * A budget of buffered request bytes, for the whole gateway and for
//!   each route (`max_buffered_bytes` in both places): a declared
//!   `Content-Length` is reserved from both before a byte is read, a
//!   chunked body frame by frame; over either budget, `503`.
//! * A deadline for the whole body (`[server] body_read_timeout_ms`): a
//!   slow upload gets `408` instead of holding memory and a Spin slot.
//!
//! Errors a client causes (a body over the route's limit, a body that
//! stalls or breaks off, a broken chunked encoding) are the client's: they
//! are answered with a 4xx, and when they surface while the body streams
//! to Spin, [`client_fault`] lets the fallback policy tell them apart from
//! Spin failures so they never count toward the circuit breaker or
//! trigger a retry.
//!
//! [`layer`] puts a route's share (its in-flight cap, body rules) at the
//! top of the route's stack; the gateway-wide cap is taken by the public
//! listener before a route is even matched.

pub mod layer;

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::config::ServerLimits;
use crate::problem::{Problem, ProblemResponse};

/// The public listener's shared admission state (one per listener).
pub struct Admission {
    in_flight: Budget,
    bytes: Arc<ByteBudget>,
    /// See [`ServerLimits::body_read_timeout`].
    pub body_read_timeout: Duration,
}

impl Admission {
    /// Fresh state for `limits`.
    pub fn new(limits: &ServerLimits) -> Self {
        Admission {
            in_flight: Budget::new(Scope::Gateway, limits.max_in_flight),
            bytes: ByteBudget::new(Scope::Gateway, limits.max_buffered_bytes),
            body_read_timeout: limits.body_read_timeout,
        }
    }

    /// A slot for one request, or the `503` to answer instead. Never waits:
    /// queueing behind a full gateway only turns overload into timeouts.
    pub fn enter(&self) -> Result<OwnedSemaphorePermit, Busy> {
        self.in_flight.enter()
    }

    /// The shared budget of buffered request bytes.
    pub fn bytes(&self) -> &Arc<ByteBudget> {
        &self.bytes
    }
}

/// One route's share of the gateway's budgets (`[[route]] max_in_flight`,
/// `max_buffered_bytes`): a flood on one route is refused before it takes
/// everything the gateway has, so the other routes keep being served.
/// Lives in the route's policy state and is rebuilt with it on reload.
pub struct RouteAdmission {
    in_flight: Budget,
    bytes: Arc<ByteBudget>,
}

impl RouteAdmission {
    /// Fresh state for `route` with `max_in_flight` requests and
    /// `max_buffered_bytes` bytes.
    pub fn new(route: &str, max_in_flight: usize, max_buffered_bytes: usize) -> Self {
        let scope = || Scope::Route(route.to_string());
        RouteAdmission {
            in_flight: Budget::new(scope(), max_in_flight),
            bytes: ByteBudget::new(scope(), max_buffered_bytes),
        }
    }

    /// A slot on the route, or the `503` to answer instead. Never waits.
    pub fn enter(&self) -> Result<OwnedSemaphorePermit, Busy> {
        self.in_flight.enter()
    }

    /// The route's budget of buffered request bytes.
    pub fn bytes(&self) -> &Arc<ByteBudget> {
        &self.bytes
    }
}

/// Whose budget ran out, for the client's `detail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole gateway (`[server]`).
    Gateway,
    /// One route (`[[route]]`), by name.
    Route(String),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Gateway => f.write_str("the gateway"),
            Scope::Route(name) => write!(f, "route `{name}`"),
        }
    }
}

/// A count of requests in flight with a limit that sheds instead of
/// queueing.
struct Budget {
    scope: Scope,
    slots: Arc<Semaphore>,
    limit: usize,
}

impl Budget {
    fn new(scope: Scope, limit: usize) -> Self {
        Budget {
            scope,
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    fn enter(&self) -> Result<OwnedSemaphorePermit, Busy> {
        self.slots.clone().try_acquire_owned().map_err(|_| Busy {
            scope: self.scope.clone(),
            limit: self.limit,
        })
    }
}

/// A request refused because a `max_in_flight` was reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Busy {
    /// Whose limit: the gateway's or the route's.
    pub scope: Scope,
    /// The limit.
    pub limit: usize,
}

impl Busy {
    /// `503` + `Retry-After`, naming whose limit was reached.
    pub fn response(&self) -> Response {
        busy(Problem::new(
            503,
            "Gateway Busy",
            format!(
                "{} already serves {} requests, its limit; retry shortly",
                self.scope, self.limit
            ),
        ))
    }
}

/// Keeps `guard` (in-flight permits, a byte reservation) until the
/// response body has been sent, so a streaming answer still counts as in
/// flight. The body's size hint is kept, so a known length is still sent
/// as `Content-Length`.
pub fn hold_until_sent<G: Send + Unpin + 'static>(response: Response, guard: G) -> Response {
    response.map(|inner| {
        Body::new(Holding {
            inner,
            _guard: guard,
        })
    })
}

/// A response body holding what its request took until it ends.
struct Holding<G> {
    inner: Body,
    _guard: G,
}

impl<G: Unpin> HttpBody for Holding<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Request bytes held in memory by a set of requests together (all of
/// them, or one route's).
#[derive(Debug)]
pub struct ByteBudget {
    scope: Scope,
    used: AtomicUsize,
    limit: usize,
}

impl ByteBudget {
    fn new(scope: Scope, limit: usize) -> Arc<Self> {
        Arc::new(ByteBudget {
            scope,
            used: AtomicUsize::new(0),
            limit,
        })
    }

    /// Reserves `n` bytes from every budget in `budgets` (all or none), or
    /// says which one it would overflow.
    pub fn reserve(budgets: &[&Arc<Self>], n: usize) -> Result<Reservation, BodyError> {
        let mut reservation = Reservation {
            budgets: budgets.iter().map(|&b| b.clone()).collect(),
            bytes: 0,
        };
        reservation.grow(n)?;
        Ok(reservation)
    }

    /// Takes `n` bytes, or gives `false` (nothing taken) when that would
    /// pass the limit.
    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    fn over(&self) -> BodyError {
        BodyError::OverBudget {
            scope: self.scope.clone(),
            limit: self.limit,
        }
    }

    /// Bytes reserved right now (for tests and the dashboard).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Bytes taken from one or more [`ByteBudget`]s (the same amount from
/// each); given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budgets: Vec<Arc<ByteBudget>>,
    bytes: usize,
}

impl Reservation {
    /// Takes `n` more bytes from every budget, or none of them and the
    /// error naming the budget that is full.
    fn grow(&mut self, n: usize) -> Result<(), BodyError> {
        for (i, budget) in self.budgets.iter().enumerate() {
            if !budget.take(n) {
                for taken in &self.budgets[..i] {
                    taken.give_back(n);
                }
                return Err(budget.over());
            }
        }
        self.bytes += n;
        Ok(())
    }

    /// Bytes held by this reservation.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        for budget in &self.budgets {
            budget.give_back(self.bytes);
        }
    }
}

/// Why a request body was not read in full: all of them the client's doing
/// or the gateway's own limits, never the backend's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// More than the route's `max_body_bytes`.
    TooLarge {
        /// The route.
        route: String,
        /// Its limit.
        limit: usize,
    },
    /// The body did not arrive in full within the deadline.
    Timeout {
        /// How long the client had.
        after: Duration,
    },
    /// Buffering it would pass a `max_buffered_bytes` budget.
    OverBudget {
        /// Whose budget: the gateway's or the route's.
        scope: Scope,
        /// The budget.
        limit: usize,
    },
    /// The stream broke off or was malformed (client abort, bad chunk).
    Read(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { route, limit } => {
                write!(
                    f,
                    "the request body exceeds the {limit} bytes route `{route}` accepts"
                )
            }
            BodyError::Timeout { after } => write!(
                f,
                "the request body did not arrive in full within {} ms",
                after.as_millis()
            ),
            BodyError::OverBudget { scope, limit } => write!(
                f,
                "{scope} already holds its limit of {limit} buffered request bytes; retry shortly"
            ),
            BodyError::Read(reason) => write!(f, "the request body could not be read: {reason}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl BodyError {
    /// The problem+json answer for the client.
    pub fn response(&self) -> Response {
        match self {
            BodyError::TooLarge { route, limit } => {
                ProblemResponse(crate::problem::payload_too_large(route, *limit)).into_response()
            }
            BodyError::Timeout { after } => ProblemResponse(
                Problem::new(408, "Request Timeout", self.to_string())
                    .with("timeout_ms", serde_json::json!(after.as_millis() as u64)),
            )
            .into_response(),
            BodyError::OverBudget { .. } => {
                busy(Problem::new(503, "Gateway Busy", self.to_string()))
            }
            BodyError::Read(_) => {
                ProblemResponse(Problem::new(400, "Bad Request", self.to_string())).into_response()
            }
        }
    }
}

/// `503` + `Retry-After: 1` for the gateway's own overload.
fn busy(problem: Problem) -> Response {
    let mut response = ProblemResponse(problem).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

const READING: u8 = 0;
const COMPLETE: u8 = 1;
const FAILED: u8 = 2;

/// What became of a request body, readable after it has been handed to a
/// backend. Stored in the request's extensions by the public handler.
#[derive(Default)]
pub struct BodyWatch {
    state: AtomicU8,
    error: Mutex<Option<BodyError>>,
    timeout: Duration,
}

impl BodyWatch {
    /// Marks the body as received in full (unless it already failed).
    fn complete(&self) {
        let _ = self
            .state
            .compare_exchange(READING, COMPLETE, Ordering::AcqRel, Ordering::Acquire);
    }

    fn fail(&self, error: BodyError) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(error);
        }
        self.state.store(FAILED, Ordering::Release);
    }
}

/// The watch the public handler put on a streamed request body, if any.
pub fn body_watch(parts: &http::request::Parts) -> Option<Arc<BodyWatch>> {
    parts.extensions.get::<Arc<BodyWatch>>().cloned()
}

/// When a Spin call failed (5xx, broken exchange, timeout), whether the
/// client is to blame: its body broke off, passed a limit or stalled, or was
/// still arriving when the route's timeout ran out. Spin cannot be blamed for
/// not answering a request it never received in full. `None` when the body
/// arrived in full (or was buffered before the call).
pub fn client_fault(watch: Option<&BodyWatch>, spin_timed_out: bool) -> Option<BodyError> {
    let watch = watch?;
    match watch.state.load(Ordering::Acquire) {
        FAILED => watch.error.lock().ok().and_then(|e| e.clone()),
        READING if spin_timed_out => Some(BodyError::Timeout {
            after: watch.timeout,
        }),
        _ => None,
    }
}

/// A request body under the gateway's rules: at most `limit` bytes, in
/// full by `deadline`, optionally reserving what it yields from the byte
/// budget. Errors are [`BodyError`]s and are recorded in the
/// [`BodyWatch`].
pub struct AdmittedBody {
    inner: Body,
    limit: usize,
    route: String,
    seen: usize,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    reservation: Option<Reservation>,
    watch: Arc<BodyWatch>,
    done: bool,
    /// The declared length, if any: once that much has arrived the body is
    /// complete, even if the reader never polls for the end.
    expected: Option<u64>,
}

impl AdmittedBody {
    /// Wraps `inner`. With a `reservation`, every byte read must fit the
    /// budget it came from.
    pub fn new(
        inner: Body,
        route: &str,
        limit: usize,
        timeout: Duration,
        reservation: Option<Reservation>,
    ) -> (Self, Arc<BodyWatch>) {
        let watch = Arc::new(BodyWatch {
            timeout,
            ..BodyWatch::default()
        });
        // An empty body (a GET) is complete before anyone reads it.
        if inner.is_end_stream() {
            watch.complete();
        }
        let expected = inner.size_hint().exact();
        let body = AdmittedBody {
            inner,
            limit,
            route: route.to_string(),
            seen: 0,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            timeout,
            reservation,
            watch: watch.clone(),
            done: false,
            expected,
        };
        (body, watch)
    }

    /// Gives up the byte reservation (to keep it while the bytes live).
    pub fn take_reservation(&mut self) -> Option<Reservation> {
        self.reservation.take()
    }

    fn fail(&mut self, error: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.done = true;
        self.watch.fail(error.clone());
        Poll::Ready(Some(Err(error)))
    }
}

impl HttpBody for AdmittedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len());
                    if this.seen > this.limit {
                        let error = BodyError::TooLarge {
                            route: this.route.clone(),
                            limit: this.limit,
                        };
                        return this.fail(error);
                    }
                    // A declared length was reserved up front; only what
                    // goes past it is taken now.
                    if let Some(reservation) = this.reservation.as_mut() {
                        let more = this.seen.saturating_sub(reservation.bytes());
                        if more > 0
                            && let Err(over) = reservation.grow(more)
                        {
                            return this.fail(over);
                        }
                    }
                    if this.expected == Some(this.seen as u64) {
                        this.watch.complete();
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let reason = crate::problem::error_chain(&e);
                this.fail(BodyError::Read(reason))
            }
            Poll::Ready(None) => {
                this.done = true;
                this.watch.complete();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    let after = this.timeout;
                    return this.fail(BodyError::Timeout { after });
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let end = self.done || self.inner.is_end_stream();
        if end {
            self.watch.complete();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn budget(limit: usize) -> Arc<ByteBudget> {
        ByteBudget::new(Scope::Gateway, limit)
    }

    #[test]
    fn reservations_are_bounded_and_given_back() {
        let b = budget(10);
        let r1 = ByteBudget::reserve(&[&b], 6).expect("fits");
        assert!(ByteBudget::reserve(&[&b], 5).is_err(), "6 + 5 > 10");
        let r2 = ByteBudget::reserve(&[&b], 4).expect("fits exactly");
        assert_eq!(b.used(), 10);
        drop(r1);
        drop(r2);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_reservation_takes_from_every_budget_or_from_none() {
        let gateway = budget(100);
        let route = ByteBudget::new(Scope::Route("validate".into()), 10);
        let other = ByteBudget::new(Scope::Route("create".into()), 100);
        let held = ByteBudget::reserve(&[&gateway, &route], 8).expect("fits both");
        assert_eq!((gateway.used(), route.used()), (8, 8));
        // The route is full: nothing is taken from the gateway either.
        let err = ByteBudget::reserve(&[&gateway, &route], 3).expect_err("route full");
        assert_eq!(
            err,
            BodyError::OverBudget {
                scope: Scope::Route("validate".into()),
                limit: 10
            }
        );
        assert!(err.to_string().contains("route `validate`"), "{err}");
        assert_eq!(gateway.used(), 8, "rolled back");
        // Another route still has the gateway's room.
        let other_held = ByteBudget::reserve(&[&gateway, &other], 90).expect("fits");
        let err = ByteBudget::reserve(&[&gateway, &other], 3).expect_err("gateway full");
        assert_eq!(
            err,
            BodyError::OverBudget {
                scope: Scope::Gateway,
                limit: 100
            }
        );
        assert_eq!(other.used(), 90, "rolled back");
        drop((held, other_held));
        assert_eq!((gateway.used(), route.used(), other.used()), (0, 0, 0));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_fails_and_is_recorded() {
        let (body, watch) = AdmittedBody::new(
            Body::from(vec![0u8; 11]),
            "r",
            10,
            Duration::from_secs(5),
            None,
        );
        let err = body.collect().await.expect_err("too large");
        assert!(matches!(err, BodyError::TooLarge { limit: 10, .. }));
        assert_eq!(watch.state.load(Ordering::Acquire), FAILED);
    }

    #[tokio::test]
    async fn buffered_bytes_count_against_the_budget() {
        let b = budget(8);
        let (body, _) = AdmittedBody::new(
            Body::from(vec![0u8; 9]),
            "r",
            100,
            Duration::from_secs(5),
            ByteBudget::reserve(&[&b], 0).ok(),
        );
        let err = body.collect().await.expect_err("over budget");
        assert_eq!(
            err,
            BodyError::OverBudget {
                scope: Scope::Gateway,
                limit: 8
            }
        );
        assert_eq!(b.used(), 0, "given back when the body is dropped");
    }

    #[tokio::test]
    async fn empty_and_fully_read_bodies_are_complete() {
        let (_body, watch) =
            AdmittedBody::new(Body::empty(), "r", 10, Duration::from_secs(5), None);
        assert_eq!(watch.state.load(Ordering::Acquire), COMPLETE, "empty");
        // All declared bytes read, the end never polled for.
        let (mut body, watch) =
            AdmittedBody::new(Body::from("abc"), "r", 10, Duration::from_secs(5), None);
        let frame = body.frame().await.expect("a frame").expect("data");
        assert_eq!(frame.into_data().ok().as_deref(), Some(&b"abc"[..]));
        assert_eq!(
            watch.state.load(Ordering::Acquire),
            COMPLETE,
            "declared length"
        );
        let parts = {
            let mut request = http::Request::new(());
            request.extensions_mut().insert(watch);
            request.into_parts().0
        };
        assert_eq!(
            client_fault(body_watch(&parts).as_deref(), true),
            None,
            "a slow Spin is Spin's fault"
        );
    }

    /// A body whose client never sends anything.
    struct Stalled;

    impl http_body::Body for Stalled {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out() {
        let (body, watch) = AdmittedBody::new(
            Body::new(Stalled),
            "r",
            100,
            Duration::from_millis(300),
            None,
        );
        let err = body.collect().await.expect_err("times out");
        assert!(matches!(err, BodyError::Timeout { .. }));
        assert_eq!(watch.state.load(Ordering::Acquire), FAILED);
    }
}
