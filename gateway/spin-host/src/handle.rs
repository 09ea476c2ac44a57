//! Serving one request, in named steps: [`route`] it, [`prepare_request`]
//! (`spin-*` headers, absolute URI), lease a slot, [`take_instance`] (a
//! warm one when the component reuses instances, else a fresh one),
//! [`pass_request`] into its wasi:http context, [`spawn_guest`] to call
//! `wasi:http/incoming-handler.handle`, and [`await_response`], which turns
//! every failure into a problem+json response.
//!
//! The guest call runs in its own task because a component may keep writing
//! the response body after handing over the response head (streaming); the
//! task owns the store until the guest returns or the deadline hits. The
//! task is aborted when nobody waits for it any more: the caller dropped the
//! request future (client gone, route timeout) or the response body before
//! its end, as Spin does, so a guest never runs on for an answer nobody reads.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;
use wasmtime::component::Resource;
use wasmtime::{Store, Trap};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::{HyperIncomingBody, HyperOutgoingBody};
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use crate::app::{AppInner, LoadedComponent};
use crate::cpu::{CpuMeter, Metered};
use crate::pool::Lease;
use crate::routes::RouteMatch;
use crate::wasi::HostState;

use crate::{BoxError, HostBody, PoolFull, Served, headers, limits, problem};

/// How a guest call ended.
#[derive(Debug, Clone)]
enum Outcome {
    /// `handle` returned normally.
    Ok,
    /// The guest trapped (panic, unreachable, out of memory, ...).
    Trapped(String),
    /// The deadline passed (epoch trap or wall-clock timeout).
    TimedOut,
}

/// Aborts the guest's task when dropped: the request future or the
/// response body holds it, whichever lives longer.
struct AbortOnDrop(JoinHandle<Outcome>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        // A no-op once the task has finished.
        self.0.abort();
    }
}

/// The deadlines of one request, fixed when it gets an instance slot.
#[derive(Clone, Copy)]
struct Deadlines {
    started: Instant,
    /// When the epoch check interrupts a running guest.
    epoch: Instant,
    /// When a guest blocked in a host call is abandoned.
    wall: tokio::time::Instant,
    timeout: Duration,
}

impl Deadlines {
    fn start(timeout: Duration) -> Deadlines {
        let started = Instant::now();
        Deadlines {
            started,
            epoch: started + timeout,
            wall: tokio::time::Instant::now() + timeout + limits::WALL_CLOCK_GRACE,
            timeout,
        }
    }
}

/// An instance ready to serve this request, with its slot.
struct Instance {
    store: Store<HostState>,
    proxy: Proxy,
    permit: OwnedSemaphorePermit,
    /// Requests it served before this one.
    served_before: u32,
}

/// What the guest's response comes back on.
type ResponseRx = oneshot::Receiver<Result<http::Response<HyperOutgoingBody>, ErrorCode>>;

/// An answer given instead of running the guest (boxed: a response is
/// large, and most requests never need one).
type Refusal = Box<http::Response<HostBody>>;

/// A problem response as a [`Refusal`].
fn refuse(status: StatusCode, title: &str, detail: &str) -> Refusal {
    Box::new(problem::response(status, title, detail))
}

/// The request as the guest gets it: wasi:http resources in its store, and
/// the channel its response comes back on.
struct Call {
    request: Resource<HostIncomingRequest>,
    outparam: Resource<HostResponseOutparam>,
    response: ResponseRx,
}

pub(crate) async fn serve<B>(
    app: &Arc<AppInner>,
    req: http::Request<B>,
    client_addr: SocketAddr,
    timeout: Duration,
) -> http::Response<HostBody>
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let (index, component, m) = match route(app, req.uri().path()) {
        Ok(routed) => routed,
        Err(resp) => return *resp,
    };
    let id = component.ctx.id.clone();
    // Taken out of the request, which the guest's store may outlive.
    let mut req = req;
    let meter = req.extensions_mut().remove::<CpuMeter>();
    let req = match prepare_request(req, &m, client_addr) {
        Ok(req) => req,
        Err(resp) => return *resp,
    };
    let Some(lease) = app.pool.acquire(index) else {
        return pool_full(&id, app.pool.stats().capacity);
    };
    let deadlines = Deadlines::start(timeout);
    let mut instance = match take_instance(app, component, lease, deadlines).await {
        Ok(instance) => instance,
        Err(resp) => return with_served(*resp, served(&id, deadlines, 1)),
    };
    let served = served(&id, deadlines, instance.served_before + 1);
    let call = match pass_request(&mut instance.store, req) {
        Ok(call) => call,
        Err(resp) => return with_served(*resp, served),
    };
    let (task, done) = spawn_guest(
        app,
        index,
        &served,
        instance,
        call.request,
        call.outparam,
        deadlines,
        meter,
    );
    let resp = await_response(call.response, task, done, &id, timeout).await;
    with_served(resp, served)
}

fn served(id: &str, deadlines: Deadlines, instance_request: u32) -> Served {
    Served {
        component: id.to_string(),
        instantiate: deadlines.started.elapsed(),
        instance_request,
    }
}

/// Picks the component for `path`, or the 404 (or 500 for a routing table
/// pointing nowhere) to answer instead.
fn route<'a>(
    app: &'a AppInner,
    path: &str,
) -> Result<(usize, &'a LoadedComponent, RouteMatch), Refusal> {
    let Some(m) = app.router.route(path) else {
        return Err(Box::new(problem::response(
            StatusCode::NOT_FOUND,
            "Not Found",
            &format!("no route matches {path}"),
        )));
    };
    match app.components.get(m.component) {
        Some(component) => Ok((m.component, component, m)),
        None => Err(Box::new(problem::response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Routing error",
            "route points to an unknown component",
        ))),
    }
}

/// Adds the `spin-*` headers and makes the URI absolute (wasi:http needs an
/// authority: origin-form URIs get the Host, or the default host).
fn prepare_request<B>(
    req: http::Request<B>,
    m: &RouteMatch,
    client_addr: SocketAddr,
) -> Result<http::Request<HyperIncomingBody>, Refusal>
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    let host = headers::request_host(&parts.uri, &parts.headers);
    let spin = headers::spin_headers(&parts.uri, &host, m, client_addr);
    headers::apply(&mut parts.headers, spin);
    if parts.uri.authority().is_none() {
        parts.uri = absolute_uri(&parts.uri, &host).map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                &format!("invalid request URI: {e}"),
            )
        })?;
    }
    let body = body
        .map_err(|e| {
            let e: BoxError = e.into();
            wasmtime_wasi_http::Error::InternalError(Some(e.to_string()))
        })
        .boxed_unsync();
    Ok(http::Request::from_parts(parts, body))
}

fn absolute_uri(uri: &http::Uri, host: &str) -> Result<http::Uri, http::Error> {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    http::Uri::builder()
        .scheme("http")
        .authority(host)
        .path_and_query(pq)
        .build()
        .or_else(|_| {
            http::Uri::builder()
                .scheme("http")
                .authority(headers::DEFAULT_HOST)
                .path_and_query(pq)
                .build()
        })
}

/// A warm instance as it is, or a fresh one instantiated into the slot,
/// armed with this request's deadline. A failed instantiation is answered
/// as the component's failure (or the deadline's).
async fn take_instance(
    app: &AppInner,
    component: &LoadedComponent,
    lease: Lease,
    deadlines: Deadlines,
) -> Result<Instance, Refusal> {
    let permit = match lease {
        Lease::Warm(mut warm) => {
            limits::arm_deadline(&mut warm.store, deadlines.epoch);
            return Ok(Instance {
                store: warm.store,
                proxy: warm.proxy,
                permit: warm.permit,
                served_before: warm.served,
            });
        }
        Lease::Fresh(permit) => permit,
    };
    let id = &component.ctx.id;
    let state = HostState::new(
        &component.ctx,
        app.interfaces.instance(&component.ctx.grants),
        limits::MemoryCap::new(app.config.max_memory_bytes),
    );
    let mut store = Store::new(&app.engine, state);
    store.limiter(|s| &mut s.limits);
    limits::arm_deadline(&mut store, deadlines.epoch);
    let instantiated = tokio::time::timeout_at(
        deadlines.wall,
        component
            .pre
            .instantiate_async(&mut store)
            .instrument(tracing::info_span!("wasm.instantiate", wasm.component = %id)),
    )
    .await;
    match instantiated {
        Ok(Ok(proxy)) => Ok(Instance {
            store,
            proxy,
            permit,
            served_before: 0,
        }),
        Ok(Err(e)) => Err(Box::new(instantiate_failure(id, &e))),
        Err(_) => Err(Box::new(timeout_response(id, deadlines.timeout))),
    }
}

/// Hands the request to the instance's wasi:http context.
fn pass_request(
    store: &mut Store<HostState>,
    req: http::Request<HyperIncomingBody>,
) -> Result<Call, Refusal> {
    let (tx, response) = oneshot::channel();
    let mut http = store.data_mut().http();
    http.new_incoming_request(Scheme::Http, req)
        .and_then(|request| {
            http.new_response_outparam(tx).map(|outparam| Call {
                request,
                outparam,
                response,
            })
        })
        .map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                &format!("cannot pass request to component: {e:#}"),
            )
        })
}

/// Runs the guest's `handle` in its own task (it may stream the body after
/// the response head), giving the instance back to the pool when it ends
/// well and dropping it otherwise. The returned receiver says how it ended.
/// With a `meter`, the task's CPU time is added to it.
#[allow(clippy::too_many_arguments)]
fn spawn_guest(
    app: &AppInner,
    index: usize,
    served: &Served,
    instance: Instance,
    request: Resource<HostIncomingRequest>,
    outparam: Resource<HostResponseOutparam>,
    deadlines: Deadlines,
    meter: Option<CpuMeter>,
) -> (AbortOnDrop, oneshot::Receiver<Outcome>) {
    let (done_tx, done_rx) = oneshot::channel::<Outcome>();
    let id = served.component.clone();
    let pool = app.pool.clone();
    let span = tracing::info_span!(
        "wasm.handle",
        wasm.component = %id,
        wasm.instance.request = i64::from(served.instance_request),
    );
    let Instance {
        mut store,
        proxy,
        permit,
        served_before,
    } = instance;
    let guest = async move {
            let call = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, outparam);
            let outcome = match tokio::time::timeout_at(deadlines.wall, call).await {
                Ok(Ok(())) => Outcome::Ok,
                Ok(Err(e)) => classify(&id, &e, store.data_mut().limits.take_refusal()),
                Err(_) => {
                    tracing::warn!(component = %id, "request exceeded its deadline while blocked in a host call");
                    Outcome::TimedOut
                }
            };
            if matches!(outcome, Outcome::Ok) {
                // Back to the idle list (or dropped) *before* the body ends,
                // so the client's next request can find it.
                pool.release(index, store, proxy, served_before + 1, permit);
            } else {
                // Never reuse an instance that trapped or was interrupted.
                drop(store);
                drop(permit);
            }
            let _ = done_tx.send(outcome.clone());
            outcome
        }
        .instrument(span);
    let task = match meter {
        Some(meter) => tokio::spawn(Metered::new(guest, meter)),
        None => tokio::spawn(guest),
    };
    (AbortOnDrop(task), done_rx)
}

/// Waits for the guest's response head and its first body event (see
/// [`GuardedBody::prime`]), or for the guest to end without a response,
/// and turns every failure into a problem response.
async fn await_response(
    response: ResponseRx,
    mut task: AbortOnDrop,
    done: oneshot::Receiver<Outcome>,
    id: &str,
    timeout: Duration,
) -> http::Response<HostBody> {
    let resp = match response.await {
        Ok(Ok(resp)) => resp,
        Ok(Err(code)) => {
            return problem::response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Component failed",
                &format!("component '{id}' returned an error instead of a response: {code:?}"),
            );
        }
        // The store (and with it the outparam) is gone: the task has ended.
        Err(_) => return ended_without_response(id, (&mut task.0).await, timeout),
    };
    let (parts, body) = resp.into_parts();
    let mut body = GuardedBody::new(body, done, id.to_string(), task, &parts.headers);
    match body.prime().await {
        Ok(()) => http::Response::from_parts(parts, body.boxed()),
        Err(Some(Outcome::TimedOut)) => timeout_response(id, timeout),
        Err(Some(Outcome::Trapped(msg))) => problem::response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Component failed",
            &format!("component '{id}' trapped before writing its response body: {msg}"),
        ),
        Err(_) => problem::response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Component failed",
            &format!("component '{id}' failed before writing its response body"),
        ),
    }
}

/// The answer when the guest's task ended without setting a response.
fn ended_without_response(
    id: &str,
    ended: Result<Outcome, tokio::task::JoinError>,
    timeout: Duration,
) -> http::Response<HostBody> {
    let detail = match ended {
        Ok(Outcome::TimedOut) => return timeout_response(id, timeout),
        Ok(Outcome::Trapped(msg)) => format!("component '{id}' trapped: {msg}"),
        Ok(Outcome::Ok) => format!("component '{id}' returned without setting a response"),
        Err(e) => format!("component '{id}' task failed: {e}"),
    };
    problem::response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Component failed",
        &detail,
    )
}

/// Every instance slot is busy: a capacity problem the caller may retry
/// shortly or send elsewhere, marked with the typed [`PoolFull`] extension.
fn pool_full(id: &str, capacity: usize) -> http::Response<HostBody> {
    let mut resp = problem::response(
        StatusCode::SERVICE_UNAVAILABLE,
        "Too many concurrent requests",
        &format!(
            "all {capacity} instance slots of the embedded host are busy; component '{id}' cannot start another instance now"
        ),
    );
    resp.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp.extensions_mut().insert(PoolFull {
        component: id.to_string(),
        capacity,
    });
    resp
}

fn with_served(mut resp: http::Response<HostBody>, served: Served) -> http::Response<HostBody> {
    resp.extensions_mut().insert(served);
    resp
}

fn timeout_response(id: &str, timeout: Duration) -> http::Response<HostBody> {
    problem::response(
        StatusCode::GATEWAY_TIMEOUT,
        "Deadline exceeded",
        &format!("component '{id}' did not finish within {timeout:?}"),
    )
}

/// Instantiation cannot fail for lack of a slot (the pool hands out slots
/// first), so a failure here is the component's own: its start-up code
/// trapped or ran past the deadline.
fn instantiate_failure(id: &str, e: &wasmtime::Error) -> http::Response<HostBody> {
    if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
        return problem::response(
            StatusCode::GATEWAY_TIMEOUT,
            "Deadline exceeded",
            &format!("component '{id}' did not finish instantiating in time"),
        );
    }
    let text = format!("{e:#}");
    tracing::warn!(component = %id, error = %text, "instantiation failed");
    problem::response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Component failed",
        &format!("cannot instantiate component '{id}': {text}"),
    )
}

/// Deadline traps become `TimedOut`; everything else is a trap with a short
/// message (the full error, with wasm backtrace, goes to the log).
/// A trap after a refused memory growth is reported as the memory limit it
/// is, with the size the guest asked for.
fn classify(id: &str, e: &wasmtime::Error, memory_refused: Option<usize>) -> Outcome {
    tracing::warn!(component = %id, error = ?e, "component trapped");
    match (e.downcast_ref::<Trap>(), memory_refused) {
        (Some(Trap::Interrupt), _) => Outcome::TimedOut,
        (_, Some(asked)) => Outcome::Trapped(format!(
            "it reached its memory limit (growing linear memory to {} MiB was refused)",
            asked.div_ceil(1 << 20)
        )),
        (Some(trap), None) => Outcome::Trapped(trap.to_string()),
        (None, None) => Outcome::Trapped(format!("{e}")),
    }
}

/// The guest's streaming body, made `Sync` (what `HostBody` needs), ended
/// with an error when a trap or deadline cuts it short instead of looking
/// complete, and framed as Spin frames it.
///
/// Framing: before the response head goes out, [`GuardedBody::prime`]
/// waits for the first body event. A body that ends before any data is
/// reported as empty (`is_end_stream`, exact size 0), so hyper sends
/// `content-length: 0` as `spin up` does (and none for HEAD, 204 and 304);
/// a body whose component declared `content-length` reports that exact
/// size. Any other body streams (chunked).
struct GuardedBody {
    /// `Mutex` only to make the `!Sync` body `Sync`; we always have `&mut`.
    inner: Mutex<HyperOutgoingBody>,
    done: Option<oneshot::Receiver<Outcome>>,
    id: String,
    /// Dropping the body before its end aborts the guest.
    _task: Mutex<AbortOnDrop>,
    /// A frame `prime` read and not yet handed out.
    ahead: Option<Frame<Bytes>>,
    /// The guest's body ended well; nothing more comes after `ahead`.
    ended: bool,
    /// How the guest ended, when that ended the body with an error.
    failed: Option<Outcome>,
    /// The `content-length` the component declared, if any.
    declared: Option<u64>,
    /// Data bytes handed out so far.
    sent: u64,
}

impl GuardedBody {
    fn new(
        inner: HyperOutgoingBody,
        done: oneshot::Receiver<Outcome>,
        id: String,
        task: AbortOnDrop,
        headers: &http::HeaderMap,
    ) -> GuardedBody {
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        GuardedBody {
            inner: Mutex::new(inner),
            done: Some(done),
            id,
            _task: Mutex::new(task),
            ahead: None,
            ended: false,
            failed: None,
            declared,
            sent: 0,
        }
    }

    /// Waits for the first body event, so an empty body is known to be
    /// empty before the head is sent. Bounded by the guest's deadline (its
    /// task ends the body then). `Err` carries how the guest failed (when
    /// known) if the body broke before its first byte: nothing has been
    /// sent yet, so the caller can still answer with a problem.
    async fn prime(&mut self) -> Result<(), Option<Outcome>> {
        match std::future::poll_fn(|cx| self.poll_guest(cx)).await {
            Some(Ok(frame)) => {
                self.ahead = Some(frame);
                Ok(())
            }
            None => Ok(()),
            Some(Err(_)) => Err(self.failed.take()),
        }
    }

    /// The guest's next frame; its end is only trusted if the guest ended
    /// well.
    fn poll_guest(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let inner = self
            .inner
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => {
                let Some(done) = self.done.as_mut() else {
                    self.ended = true;
                    return Poll::Ready(None);
                };
                let outcome = std::task::ready!(Pin::new(done).poll(cx));
                self.done = None;
                let id = &self.id;
                let message = match &outcome {
                    Ok(Outcome::Ok) => {
                        self.ended = true;
                        return Poll::Ready(None);
                    }
                    Ok(Outcome::TimedOut) => format!(
                        "component '{id}' exceeded its deadline while streaming the response"
                    ),
                    Ok(Outcome::Trapped(msg)) => {
                        format!("component '{id}' trapped while streaming the response: {msg}")
                    }
                    Err(_) => {
                        format!("component '{id}' ended unexpectedly while streaming the response")
                    }
                };
                self.failed = outcome.ok();
                Poll::Ready(Some(Err(message.into())))
            }
        }
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let next = match this.ahead.take() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => this.poll_guest(cx),
        };
        if let Poll::Ready(Some(Ok(frame))) = &next
            && let Some(data) = frame.data_ref()
        {
            this.sent += data.len() as u64;
        }
        next
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.ahead.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.is_end_stream() {
            return SizeHint::with_exact(0);
        }
        match self.declared {
            Some(n) => SizeHint::with_exact(n.saturating_sub(self.sent)),
            None => SizeHint::default(),
        }
    }
}
