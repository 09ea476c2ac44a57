//! The `auto` backend: [`Fallback`] over a Spin service and a native one,
//! with a pluggable [`PathChoice`] deciding which path a request takes
//! first. A Spin failure listed in the route's `fallback.on` is answered
//! by native instead; any other failure passes up unchanged.
//!
//! The first choice is [`SizeRule`] (`native_above_bytes`); a choice that
//! learns (say, from latencies) implements [`PathChoice::observe`] too.
//!
//! The log hears of state changes, not of every request: one line when a
//! route starts falling back, one when Spin answers again (with how many
//! requests native served meanwhile). Each fallback is still on its
//! request's spans and in the `gateway.fallbacks` metric; an outage of a
//! hundred thousand requests writes two lines, not a hundred thousand.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::response::Response;
use tower::Service;

use crate::backend::{BackendError, BackendFuture, RouteRequest, SIZE_REASON};
use crate::config::{FallbackTrigger, RouteConfig};

/// Which path a request takes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Spin, with native standing in on a listed failure.
    Spin,
    /// Native straight away; the reason goes to `x-gateway-fallback`.
    Native(&'static str),
}

/// What became of a request on the path it was given.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// The path chosen.
    pub choice: Choice,
    /// The fallback trigger when Spin failed (native may have stood in).
    pub failure: Option<FallbackTrigger>,
    /// From the choice to the answer's head.
    pub took: Duration,
}

/// Picks a request's path on an `auto` route, and may learn from what
/// happened on it.
pub trait PathChoice: Send + Sync + 'static {
    /// The path for `request`, before anything is sent.
    fn choose(&self, request: &RouteRequest) -> Choice;

    /// What happened on the chosen path (default: nothing is learned).
    fn observe(&self, outcome: Outcome) {
        let _ = outcome;
    }
}

/// Bodies over `native_above_bytes` go native (`size`); the rest try Spin.
#[derive(Clone, Copy, Debug)]
pub struct SizeRule {
    /// The threshold, if the route has one.
    pub native_above_bytes: Option<usize>,
}

impl PathChoice for SizeRule {
    fn choose(&self, request: &RouteRequest) -> Choice {
        let len = request.body.bytes().map_or(0, |b| b.len());
        match self.native_above_bytes {
            Some(limit) if len > limit => Choice::Native(SIZE_REASON),
            _ => Choice::Spin,
        }
    }
}

/// Spin first, native on a listed failure; see the module docs. Needs a
/// buffered body (it may be sent twice).
#[derive(Clone)]
pub struct Fallback<S, N> {
    spin: S,
    native: N,
    shared: Arc<Shared>,
}

struct Shared {
    route: Arc<RouteConfig>,
    choice: Box<dyn PathChoice>,
    episode: Episode,
}

/// Whether the route is falling back right now, and how many requests
/// native has served in its place since it started.
#[derive(Default)]
struct Episode {
    active: AtomicBool,
    served: AtomicU64,
}

impl Episode {
    /// Native stands in for one request; logs when that starts an episode.
    fn fell_back(&self, route: &str, reason: &'static str) {
        self.served.fetch_add(1, Ordering::AcqRel);
        if !self.active.swap(true, Ordering::AcqRel) {
            tracing::info!(route, reason, "falling back to native");
        } else {
            tracing::debug!(route, reason, "falling back to native");
        }
    }

    /// Spin answered; logs the end of an episode, if one was running.
    fn spin_answered(&self, route: &str) {
        if self.active.load(Ordering::Acquire) && self.active.swap(false, Ordering::AcqRel) {
            let served = self.served.swap(0, Ordering::AcqRel);
            tracing::info!(
                route,
                served_by_native = served,
                "Spin answers again; fallback to native ended"
            );
        }
    }
}

impl<S, N> Fallback<S, N> {
    /// `route`'s `auto` backend over `spin` and `native`, paths picked by
    /// `choice`.
    pub fn new(route: Arc<RouteConfig>, choice: Box<dyn PathChoice>, spin: S, native: N) -> Self {
        Fallback {
            spin,
            native,
            shared: Arc::new(Shared {
                route,
                choice,
                episode: Episode::default(),
            }),
        }
    }
}

impl<S, N> Service<RouteRequest> for Fallback<S, N>
where
    S: Service<RouteRequest, Response = Response, Error = BackendError, Future = BackendFuture>
        + Clone
        + Send
        + 'static,
    N: Service<RouteRequest, Response = Response, Error = BackendError, Future = BackendFuture>
        + Clone
        + Send
        + 'static,
{
    type Response = Response;
    type Error = BackendError;
    type Future = BackendFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        // Both backends are always ready; which one is called is decided
        // per request.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: RouteRequest) -> BackendFuture {
        let started = Instant::now();
        let shared = self.shared.clone();
        let choice = shared.choice.choose(&request);
        if let Choice::Native(reason) = choice {
            request.fallback = Some(reason);
            let call = self.native.call(request);
            return observed(shared, choice, started, None, call);
        }
        let Some(mut kept) = request.try_clone() else {
            let route = shared.route.clone();
            return Box::pin(async move { Ok(super::backends::misconfigured(&route)) });
        };
        let spin = self.spin.call(request);
        let mut native = self.native.clone();
        Box::pin(async move {
            let failure = match spin.await {
                Ok(response) => {
                    shared.observe(choice, started, None);
                    shared.episode.spin_answered(&shared.route.name);
                    return Ok(response);
                }
                Err(failure) => failure,
            };
            let trigger = failure.trigger();
            shared.observe(choice, started, trigger);
            match trigger.filter(|t| shared.route.fallback_on.contains(t)) {
                Some(trigger) => {
                    let reason = trigger.as_str();
                    shared.episode.fell_back(&shared.route.name, reason);
                    kept.fallback = Some(reason);
                    native.call(kept).await
                }
                None => Err(failure),
            }
        })
    }
}

/// `call`, with its outcome reported to the choice.
fn observed(
    shared: Arc<Shared>,
    choice: Choice,
    started: Instant,
    failure: Option<FallbackTrigger>,
    call: BackendFuture,
) -> BackendFuture {
    Box::pin(async move {
        let result = call.await;
        shared.observe(choice, started, failure);
        result
    })
}

impl Shared {
    fn observe(&self, choice: Choice, started: Instant, failure: Option<FallbackTrigger>) {
        self.choice.observe(Outcome {
            choice,
            failure,
            took: started.elapsed(),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use axum::body::Body;
    use bytes::Bytes;
    use tower::service_fn;

    use super::*;
    use crate::backend::RequestBody;
    use crate::config::{BackendKind, Config};

    /// Log output, shared with the subscriber that writes it.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl Write for Logs {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
        type Writer = Logs;
        fn make_writer(&'a self) -> Logs {
            self.clone()
        }
    }

    fn request() -> RouteRequest {
        RouteRequest {
            parts: http::Request::new(()).into_parts().0,
            body: RequestBody::Buffered(Bytes::from_static(b"[]")),
            spin_path: Some("/validate".into()),
            client: "127.0.0.1:9".parse().expect("address"),
            fallback: None,
            attempt: 1,
        }
    }

    fn ok() -> BackendFuture {
        Box::pin(async { Ok(Response::new(Body::empty())) })
    }

    #[test]
    fn an_outage_logs_its_start_and_end_not_every_request() {
        const OUTAGE: usize = 500;
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish();
        let config = Config::builtin().expect("built-in config");
        let route = config
            .route("validate")
            .expect("the validate route")
            .clone();
        assert_eq!(route.backend, BackendKind::Auto);
        let spin_up = Arc::new(AtomicBool::new(false));
        let up = spin_up.clone();
        let spin = service_fn(move |_: RouteRequest| -> BackendFuture {
            if up.load(Ordering::Acquire) {
                ok()
            } else {
                Box::pin(async { Err(BackendError::Connect("connection refused".into())) })
            }
        });
        let native = service_fn(|_: RouteRequest| ok());
        let choice = Box::new(SizeRule {
            native_above_bytes: None,
        });
        let mut fallback = Fallback::new(Arc::new(route), choice, spin, native);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(async {
                for _ in 0..OUTAGE {
                    fallback.call(request()).await.expect("native answers");
                }
                spin_up.store(true, Ordering::Release);
                for _ in 0..3 {
                    fallback.call(request()).await.expect("Spin answers");
                }
            })
        });
        let bytes = logs.0.lock().expect("log buffer").clone();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "one line at each end of the outage:\n{text}"
        );
        assert!(lines[0].contains("falling back to native"), "{text}");
        assert!(lines[0].contains("connect-error"), "{text}");
        assert!(lines[1].contains("fallback to native ended"), "{text}");
        assert!(
            lines[1].contains(&format!("served_by_native={OUTAGE}")),
            "{text}"
        );
    }
}
