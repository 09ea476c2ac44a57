//! Serving one request: route, add `spin-*` headers, build a fresh store,
//! instantiate, call `wasi:http/incoming-handler.handle`, and turn every
//! failure into a problem+json response.
//!
//! The guest call runs in its own task because a component may keep writing
//! the response body after handing over the response head (streaming); the
//! task owns the store until the guest returns or the deadline hits.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use wasmtime::{Store, Trap};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::app::AppInner;
use tracing::Instrument;

use crate::{BoxError, HostBody, Served, headers, limits, problem};

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

pub(crate) async fn serve<B>(
    app: &AppInner,
    req: http::Request<B>,
    client_addr: SocketAddr,
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
    let Some(component) = app.components.get(m.component) else {
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

    let timeout = app.config.request_timeout;
    let mut store = Store::new(
        &app.engine,
        crate::wasi::HostState::new(
            component.ctx.clone(),
            limits::store_limits(app.config.max_memory_bytes),
        ),
    );
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(limits::deadline_ticks(timeout));
    store.epoch_deadline_trap();

    let (tx, rx) = oneshot::channel();
    let resources = {
        let mut http = store.data_mut().http();
        http.new_incoming_request(Scheme::Http, req)
            .and_then(|r| http.new_response_outparam(tx).map(|o| (r, o)))
    };
    let (wasi_req, outparam) = match resources {
        Ok(r) => r,
        Err(e) => {
            return problem::response(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                &format!("cannot pass request to component: {e:#}"),
            );
        }
    };

    let started = Instant::now();
    let wall_deadline = tokio::time::Instant::now() + timeout + limits::WALL_CLOCK_GRACE;
    let proxy = match tokio::time::timeout_at(
        wall_deadline,
        component
            .pre
            .instantiate_async(&mut store)
            .instrument(tracing::info_span!("wasm.instantiate", wasm.component = %id)),
    )
    .await
    {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            let served = Served {
                component: id.clone(),
                instantiate: started.elapsed(),
            };
            return with_served(instantiate_failure(&id, &e), served);
        }
        Err(_) => {
            let served = Served {
                component: id.clone(),
                instantiate: started.elapsed(),
            };
            return with_served(timeout_response(&id, timeout), served);
        }
    };
    let served = Served {
        component: id.clone(),
        instantiate: started.elapsed(),
    };

    let (done_tx, done_rx) = oneshot::channel::<Outcome>();
    let task_id = id.clone();
    let handle_span = tracing::info_span!("wasm.handle", wasm.component = %id);
    let task = tokio::spawn(async move {
        let call = proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, wasi_req, outparam);
        let outcome = match tokio::time::timeout_at(wall_deadline, call).await {
            Ok(Ok(())) => Outcome::Ok,
            Ok(Err(e)) => classify(&task_id, &e),
            Err(_) => {
                tracing::warn!(component = %task_id, "request exceeded its deadline while blocked in a host call");
                Outcome::TimedOut
            }
        };
        drop(store);
        let _ = done_tx.send(outcome.clone());
        outcome
    }.instrument(handle_span));

    let resp = match rx.await {
        Ok(Ok(resp)) => resp.map(|b| guarded_body(b, done_rx, id.clone())),
        Ok(Err(code)) => problem::response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Component failed",
            &format!("component '{id}' returned an error instead of a response: {code:?}"),
        ),
        // The store (and with it the outparam) is gone: the task has ended.
        Err(_) => match task.await {
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
        },
    };
    with_served(resp, served)
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

/// Instantiation fails mostly when the instance pool is full: that is a
/// capacity problem (503), anything else is a 500.
fn instantiate_failure(id: &str, e: &wasmtime::Error) -> http::Response<HostBody> {
    let text = format!("{e:#}");
    if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
        return problem::response(
            StatusCode::GATEWAY_TIMEOUT,
            "Deadline exceeded",
            &format!("component '{id}' did not finish instantiating in time"),
        );
    }
    tracing::warn!(component = %id, error = %text, "instantiation failed");
    if text.contains("concurrent") || text.contains("limit") {
        problem::response(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many concurrent requests",
            &format!("no instance slot available for component '{id}': {text}"),
        )
    } else {
        problem::response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Component failed",
            &format!("cannot instantiate component '{id}': {text}"),
        )
    }
}

/// Deadline traps become `TimedOut`; everything else is a trap with a short
/// message (the full error, with wasm backtrace, goes to the log).
fn classify(id: &str, e: &wasmtime::Error) -> Outcome {
    tracing::warn!(component = %id, error = ?e, "component trapped");
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Outcome::TimedOut,
        Some(trap) => Outcome::Trapped(trap.to_string()),
        None => Outcome::Trapped(format!("{e}")),
    }
}

/// Wraps the guest's streaming body so that it is `Sync` (what `HostBody`
/// needs) and so that a body cut short by a trap or deadline ends with an
/// error instead of looking complete.
fn guarded_body(
    inner: HyperOutgoingBody,
    done: oneshot::Receiver<Outcome>,
    id: String,
) -> HostBody {
    GuardedBody {
        inner: Mutex::new(inner),
        done: Some(done),
        id,
    }
    .boxed()
}

struct GuardedBody {
    /// `Mutex` only to make the `!Sync` body `Sync`; we always have `&mut`.
    inner: Mutex<HyperOutgoingBody>,
    done: Option<oneshot::Receiver<Outcome>>,
    id: String,
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
