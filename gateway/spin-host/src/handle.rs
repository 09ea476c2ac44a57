//! Serving one request: route, add `spin-*` headers, take an instance (a
//! warm one when the component reuses instances, else a fresh one in a free
//! slot), call `wasi:http/incoming-handler.handle`, and turn every failure
//! into a problem+json response.
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
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wasmtime::{Store, Trap};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::app::AppInner;
use crate::pool::Lease;
use tracing::Instrument;

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
    let path = req.uri().path().to_string();
    let Some(m) = app.router.route(&path) else {
        return problem::response(
            StatusCode::NOT_FOUND,
            "Not Found",
            &format!("no route matches {path}"),
        );
    };
    let index = m.component;
    let Some(component) = app.components.get(index) else {
        return problem::response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Routing error",
            "route points to an unknown component",
        );
    };
    let id = component.ctx.id.clone();

    let (mut parts, body) = req.into_parts();
    let host = headers::request_host(&parts.uri, &parts.headers);
    let spin = headers::spin_headers(&parts.uri, &host, &m, client_addr);
    headers::apply(&mut parts.headers, spin);
    // wasi:http needs an authority; origin-form URIs get the Host (or default).
    if parts.uri.authority().is_none() {
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string());
        let absolute = http::Uri::builder()
            .scheme("http")
            .authority(host.as_str())
            .path_and_query(pq.as_str())
            .build()
            .or_else(|_| {
                http::Uri::builder()
                    .scheme("http")
                    .authority(headers::DEFAULT_HOST)
                    .path_and_query(pq.as_str())
                    .build()
            });
        match absolute {
            Ok(uri) => parts.uri = uri,
            Err(e) => {
                return problem::response(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    &format!("invalid request URI: {e}"),
                );
            }
        }
    }
    let body = body.map_err(|e| {
        let e: BoxError = e.into();
        wasmtime_wasi_http::Error::InternalError(Some(e.to_string()))
    });
    let req = http::Request::from_parts(parts, body);

    let Some(lease) = app.pool.acquire(index) else {
        return pool_full(&id, app.pool.stats().capacity);
    };

    let started = Instant::now();
    let deadline = started + timeout;
    let wall_deadline = tokio::time::Instant::now() + timeout + limits::WALL_CLOCK_GRACE;
    let (mut store, proxy, permit, served_before) = match lease {
        Lease::Warm(mut warm) => {
            limits::arm_deadline(&mut warm.store, deadline);
            (warm.store, warm.proxy, warm.permit, warm.served)
        }
        Lease::Fresh(permit) => {
            let mut store = Store::new(
                &app.engine,
                crate::wasi::HostState::new(
                    component.ctx.clone(),
                    limits::MemoryCap::new(app.config.max_memory_bytes),
                ),
            );
            store.limiter(|s| &mut s.limits);
            limits::arm_deadline(&mut store, deadline);
            let instantiated = tokio::time::timeout_at(
                wall_deadline,
                component
                    .pre
                    .instantiate_async(&mut store)
                    .instrument(tracing::info_span!("wasm.instantiate", wasm.component = %id)),
            )
            .await;
            let served = |n| Served {
                component: id.clone(),
                instantiate: started.elapsed(),
                instance_request: n,
            };
            match instantiated {
                Ok(Ok(proxy)) => (store, proxy, permit, 0),
                Ok(Err(e)) => return with_served(instantiate_failure(&id, &e), served(1)),
                Err(_) => return with_served(timeout_response(&id, timeout), served(1)),
            }
        }
    };
    let served = Served {
        component: id.clone(),
        instantiate: started.elapsed(),
        instance_request: served_before + 1,
    };

    let (tx, rx) = oneshot::channel();
    let resources = {
        let mut http = store.data_mut().http();
        http.new_incoming_request(Scheme::Http, req)
            .and_then(|r| http.new_response_outparam(tx).map(|o| (r, o)))
    };
    let (wasi_req, outparam) = match resources {
        Ok(r) => r,
        Err(e) => {
            return with_served(
                problem::response(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    &format!("cannot pass request to component: {e:#}"),
                ),
                served,
            );
        }
    };

    let (done_tx, done_rx) = oneshot::channel::<Outcome>();
    let task_id = id.clone();
    let pool = app.pool.clone();
    let handle_span = tracing::info_span!(
        "wasm.handle",
        wasm.component = %id,
        wasm.instance.request = i64::from(served.instance_request),
    );
    let task = AbortOnDrop(tokio::spawn(
        async move {
            let call = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, wasi_req, outparam);
            let outcome = match tokio::time::timeout_at(wall_deadline, call).await {
                Ok(Ok(())) => Outcome::Ok,
                Ok(Err(e)) => classify(&task_id, &e, store.data_mut().limits.take_refusal()),
                Err(_) => {
                    tracing::warn!(component = %task_id, "request exceeded its deadline while blocked in a host call");
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
        .instrument(handle_span),
    ));

    let resp = match rx.await {
        Ok(Ok(resp)) => resp.map(|b| guarded_body(b, done_rx, id.clone(), task)),
        Ok(Err(code)) => problem::response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Component failed",
            &format!("component '{id}' returned an error instead of a response: {code:?}"),
        ),
        // The store (and with it the outparam) is gone: the task has ended.
        Err(_) => {
            let mut task = task;
            match (&mut task.0).await {
                Ok(Outcome::TimedOut) => timeout_response(&id, timeout),
                Ok(Outcome::Trapped(msg)) => problem::response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Component failed",
                    &format!("component '{id}' trapped: {msg}"),
                ),
                Ok(Outcome::Ok) => problem::response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Component failed",
                    &format!("component '{id}' returned without setting a response"),
                ),
                Err(e) => problem::response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Component failed",
                    &format!("component '{id}' task failed: {e}"),
                ),
            }
        }
    };
    with_served(resp, served)
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

/// Wraps the guest's streaming body so that it is `Sync` (what `HostBody`
/// needs) and so that a body cut short by a trap or deadline ends with an
/// error instead of looking complete.
fn guarded_body(
    inner: HyperOutgoingBody,
    done: oneshot::Receiver<Outcome>,
    id: String,
    task: AbortOnDrop,
) -> HostBody {
    GuardedBody {
        inner: Mutex::new(inner),
        done: Some(done),
        id,
        _task: Mutex::new(task),
    }
    .boxed()
}

struct GuardedBody {
    /// `Mutex` only to make the `!Sync` body `Sync`; we always have `&mut`.
    inner: Mutex<HyperOutgoingBody>,
    done: Option<oneshot::Receiver<Outcome>>,
    id: String,
    /// Dropping the body before its end aborts the guest.
    _task: Mutex<AbortOnDrop>,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let inner = this
            .inner
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => {
                // The body looks finished; only trust it if the guest ended well.
                let Some(done) = this.done.as_mut() else {
                    return Poll::Ready(None);
                };
                match Pin::new(done).poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(outcome) => {
                        this.done = None;
                        match outcome {
                            Ok(Outcome::Ok) => Poll::Ready(None),
                            Ok(Outcome::TimedOut) => Poll::Ready(Some(Err(format!(
                                "component '{}' exceeded its deadline while streaming the response",
                                this.id
                            )
                            .into()))),
                            Ok(Outcome::Trapped(msg)) => Poll::Ready(Some(Err(format!(
                                "component '{}' trapped while streaming the response: {msg}",
                                this.id
                            )
                            .into()))),
                            Err(_) => Poll::Ready(Some(Err(format!(
                                "component '{}' ended unexpectedly while streaming the response",
                                this.id
                            )
                            .into()))),
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }
}
