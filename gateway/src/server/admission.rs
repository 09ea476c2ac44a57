//! Admission: what the gateway lets in before it spends memory or a Spin
//! slot on a request.
//!
//! * A global cap on requests in flight (`[server] max_in_flight`): beyond
//!   it, `503` with `Retry-After` at once, before the body is touched.
//! * A global budget of buffered request bytes (`[server]
//!   max_buffered_bytes`): a declared `Content-Length` is reserved before a
//!   byte is read, a chunked body frame by frame; over budget, `503`.
//! * A deadline for the whole body (`[server] body_read_timeout_ms`): a
//!   slow upload gets `408` instead of holding memory and a Spin slot.
//!
//! Errors a client causes (a body over the route's limit, a body that
//! stalls or breaks off, a broken chunked encoding) are the client's: they
//! are answered with a 4xx, and when they surface while the body streams
//! to Spin, [`client_fault`] lets the fallback policy tell them apart from
//! Spin failures so they never count toward the circuit breaker or
//! trigger a retry.

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
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    bytes: Arc<ByteBudget>,
    /// See [`ServerLimits::body_read_timeout`].
    pub body_read_timeout: Duration,
}

impl Admission {
    /// Fresh state for `limits`.
    pub fn new(limits: &ServerLimits) -> Self {
        Admission {
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            max_in_flight: limits.max_in_flight,
            bytes: Arc::new(ByteBudget {
                used: AtomicUsize::new(0),
                limit: limits.max_buffered_bytes,
            }),
            body_read_timeout: limits.body_read_timeout,
        }
    }

    /// A slot for one request, or the `503` to answer instead. Never waits:
    /// queueing behind a full gateway only turns overload into timeouts.
    pub fn enter(&self) -> Result<OwnedSemaphorePermit, Response> {
        self.in_flight.clone().try_acquire_owned().map_err(|_| {
            busy(Problem::new(
                503,
                "Gateway Busy",
                format!(
                    "the gateway already serves {} requests, its limit; retry shortly",
                    self.max_in_flight
                ),
            ))
        })
    }

    /// The shared budget of buffered request bytes.
    pub fn bytes(&self) -> &Arc<ByteBudget> {
        &self.bytes
    }
}

/// Keeps `permit` until the response body has been sent, so a streaming
/// answer still counts as in flight. The body's size hint is kept, so a
/// known length is still sent as `Content-Length`.
pub fn hold_until_sent(response: Response, permit: OwnedSemaphorePermit) -> Response {
    response.map(|inner| {
        Body::new(Holding {
            inner,
            _permit: permit,
        })
    })
}

/// A response body holding an in-flight slot.
struct Holding {
    inner: Body,
    _permit: OwnedSemaphorePermit,
}

impl HttpBody for Holding {
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

/// Request bytes held in memory by all requests together.
pub struct ByteBudget {
    used: AtomicUsize,
    limit: usize,
}

impl ByteBudget {
    /// Reserves `n` bytes, or `None` when that would pass the limit.
    pub fn reserve(self: &Arc<Self>, n: usize) -> Option<Reservation> {
        let mut reservation = Reservation {
            budget: self.clone(),
            bytes: 0,
        };
        reservation.grow(n).then_some(reservation)
    }

    /// The configured limit, for messages.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved right now (for tests and the dashboard).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Bytes taken from a [`ByteBudget`]; given back on drop.
pub struct Reservation {
    budget: Arc<ByteBudget>,
    bytes: usize,
}

impl Reservation {
    /// Takes `n` more bytes; `false` (nothing taken) when over budget.
    fn grow(&mut self, n: usize) -> bool {
        let budget = &self.budget;
        let taken = budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= budget.limit)
            })
            .is_ok();
        if taken {
            self.bytes += n;
        }
        taken
    }

    /// Bytes held by this reservation.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
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
    /// Buffering it would pass the gateway's `max_buffered_bytes`.
    OverBudget {
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
            BodyError::OverBudget { limit } => write!(
                f,
                "the gateway already holds its limit of {limit} buffered request bytes"
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

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
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

/// When a Spin call failed (5xx, broken exchange, timeout), whether the
/// client is to blame: its body broke off, passed a limit or stalled, or was
/// still arriving when the route's timeout ran out. Spin cannot be blamed for
/// not answering a request it never received in full. `None` when the body
/// arrived in full (or was buffered before the call).
pub fn client_fault(parts: &http::request::Parts, spin_timed_out: bool) -> Option<BodyError> {
    let watch = parts.extensions.get::<Arc<BodyWatch>>()?;
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
                        if more > 0 && !reservation.grow(more) {
                            let limit = reservation.budget.limit();
                            return this.fail(BodyError::OverBudget { limit });
                        }
                    }
                    if this.expected == Some(this.seen as u64) {
                        this.watch.complete();
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let reason = error_chain(&e);
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
        Arc::new(ByteBudget {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    #[test]
    fn reservations_are_bounded_and_given_back() {
        let b = budget(10);
        let r1 = b.reserve(6).expect("fits");
        assert!(b.reserve(5).is_none(), "6 + 5 > 10");
        let r2 = b.reserve(4).expect("fits exactly");
        assert_eq!(b.used(), 10);
        drop(r1);
        drop(r2);
        assert_eq!(b.used(), 0);
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
        let err = body.collect().await.err().expect("too large");
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
            b.reserve(0),
        );
        let err = body.collect().await.err().expect("over budget");
        assert_eq!(err, BodyError::OverBudget { limit: 8 });
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
            client_fault(&parts, true),
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
        let err = body.collect().await.err().expect("times out");
        assert!(matches!(err, BodyError::Timeout { .. }));
        assert_eq!(watch.state.load(Ordering::Acquire), FAILED);
    }
}
