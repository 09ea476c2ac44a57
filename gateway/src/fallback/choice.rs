//! The `auto` backend: [`Fallback`] over a Spin service and a native one,
//! with a pluggable [`PathChoice`] deciding which path a request takes
//! first. A Spin failure listed in the route's `fallback.on` is answered
//! by native instead; any other failure passes up unchanged.
//!
//! The first choice is [`SizeRule`] (`native_above_bytes`); the one that
//! learns from latencies is [`LearnedRule`](super::learn::rule::LearnedRule)
//! (`native_above_bytes = "learn"`), which implements
//! [`PathChoice::observe`] too. Each decision is recorded on the request's
//! span as `gateway.decision` (`size`, `learned`, `explore`,
//! `circuit-open`, and `fallback` once native stood in for a failure),
//! with the predicted times that decided it.
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
use crate::native::NativeTiming;
use crate::telemetry::size_class::SizeClass;
use spin_host::cpu::{CpuMeter, Metered};

/// Which path a request takes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Spin, with native standing in on a listed failure.
    Spin,
    /// Native straight away; the reason goes to `x-gateway-fallback`.
    Native(&'static str),
}

/// A choice and what it was based on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    /// The path.
    pub choice: Choice,
    /// Why (`gateway.decision`): `size`, `learned`, `explore`, ...
    pub why: &'static str,
    /// The predicted completion times that decided it, ms (Wasm, native).
    pub predicted_ms: [Option<f64>; 2],
    /// The request's size class.
    pub class: SizeClass,
    /// Requests in flight on the chosen path when it was sent.
    pub pending: u32,
}

/// What became of a request on the path it was given.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// The decision.
    pub decision: Decision,
    /// The fallback trigger when Spin failed (native may have stood in).
    pub failure: Option<FallbackTrigger>,
    /// From the choice to the answer's head, fallback included; `None`
    /// when the request says nothing of the path's cost (the client went
    /// away, or broke its own request).
    pub took: Option<Duration>,
    /// The part of `took` a native answer waited for a worker (its
    /// [`NativeTiming`]); zero when Spin answered.
    pub queued: Duration,
}

/// Picks a request's path on an `auto` route, and may learn from what
/// happened on it.
pub trait PathChoice: Send + Sync + 'static {
    /// The path for `request`, before anything is sent.
    fn choose(&self, request: &RouteRequest) -> Choice;

    /// The path for `request` and why; by default [`PathChoice::choose`]'s,
    /// as the size rule's (`size`).
    fn decide(&self, request: &RouteRequest) -> Decision {
        let len = request.body.bytes().map_or(0, |b| b.len());
        Decision {
            choice: self.choose(request),
            why: SIZE_REASON,
            predicted_ms: [None, None],
            class: SizeClass::of(len as u64),
            pending: 0,
        }
    }

    /// What happened on the chosen path (default: nothing is learned).
    /// Called once per decision, also when the request was abandoned.
    fn observe(&self, outcome: Outcome) {
        let _ = outcome;
    }

    /// Whether [`PathChoice::spent`] is wanted: metering costs a
    /// thread-CPU clock read around every poll, so only a choice that uses
    /// it asks.
    fn meters_cpu(&self) -> bool {
        false
    }

    /// The CPU time the gateway spent on a request on every thread (its
    /// task, the guest's task, a native worker), reported once all of its
    /// work has ended, after [`PathChoice::observe`]. Only when
    /// [`PathChoice::meters_cpu`].
    fn spent(&self, decision: Decision, cpu: Duration) {
        let _ = (decision, cpu);
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
        let shared = self.shared.clone();
        let decision = shared.choice.decide(&request);
        record_decision(&decision);
        // Reports the outcome to the choice however the call ends (also
        // when the client goes away and this future is dropped).
        let meter = shared.choice.meters_cpu().then(|| {
            let shared = shared.clone();
            CpuMeter::reporting(move |cpu| shared.choice.spent(decision, cpu))
        });
        if let Some(meter) = &meter {
            // The embedded host meters the guest's task with it.
            request.parts.extensions.insert(meter.clone());
        }
        let mut pending = Pending::new(shared.clone(), decision, meter.clone());
        if let Choice::Native(reason) = decision.choice {
            request.fallback = Some(reason);
            let call = metered(self.native.call(request), &meter);
            return Box::pin(async move {
                let result = call.await;
                // An answer without its timing was shed, or refused before
                // a worker took it (a client's fault): no measure of the
                // path. One out of time is: the path was that slow.
                let timing = native_timing(&result);
                let timed = timing.is_some() || out_of_time(&result);
                let timing = timing.unwrap_or_default();
                pending.done(None, timed, timing.cpu, timing.queued);
                result
            });
        }
        let Some(mut kept) = request.try_clone() else {
            let route = shared.route.clone();
            return Box::pin(async move {
                pending.done(None, false, Duration::ZERO, Duration::ZERO);
                Ok(super::backends::misconfigured(&route))
            });
        };
        let spin = metered(self.spin.call(request), &meter);
        let mut native = self.native.clone();
        Box::pin(async move {
            let failure = match spin.await {
                Ok(response) => {
                    pending.done(None, true, Duration::ZERO, Duration::ZERO);
                    shared.episode.spin_answered(&shared.route.name);
                    return Ok(response);
                }
                Err(failure) => failure,
            };
            let trigger = failure.trigger();
            match trigger.filter(|t| shared.route.fallback_on.contains(t)) {
                Some(trigger) => {
                    let reason = trigger.as_str();
                    shared.episode.fell_back(&shared.route.name, reason);
                    tracing::Span::current().record("gateway.decision", "fallback");
                    kept.fallback = Some(reason);
                    let answer = metered(native.call(kept), &meter).await;
                    // A sample of the Spin attempt (the choice made), so
                    // native's wait is part of what choosing Spin cost.
                    let cpu = native_timing(&answer).map_or(Duration::ZERO, |t| t.cpu);
                    pending.done(Some(trigger), true, cpu, Duration::ZERO);
                    answer
                }
                None => {
                    // A client's fault says nothing of the path's cost.
                    pending.done(trigger, trigger.is_some(), Duration::ZERO, Duration::ZERO);
                    Err(failure)
                }
            }
        })
    }
}

/// `gateway.decision` and the predictions behind it, on the request's span.
fn record_decision(decision: &Decision) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    span.record("gateway.decision", decision.why);
    if let Some(ms) = decision.predicted_ms[0] {
        span.record("gateway.predicted.wasm_ms", ms);
    }
    if let Some(ms) = decision.predicted_ms[1] {
        span.record("gateway.predicted.native_ms", ms);
    }
}

/// `call` with its polls' CPU time added to `meter`, if there is one.
fn metered(call: BackendFuture, meter: &Option<CpuMeter>) -> BackendFuture {
    match meter {
        Some(meter) => Box::pin(Metered::new(call, meter.clone())),
        None => call,
    }
}

/// How long a native answer waited for a worker, and the CPU time the
/// worker spent computing it (on a blocking thread, which no metered poll
/// sees); `None` when no worker computed it (shed, or out of time).
fn native_timing(answer: &Result<Response, BackendError>) -> Option<NativeTiming> {
    answer
        .as_ref()
        .ok()
        .and_then(|r| r.extensions().get::<NativeTiming>())
        .copied()
}

/// Whether a native answer is the `504` of its deadline.
fn out_of_time(answer: &Result<Response, BackendError>) -> bool {
    answer
        .as_ref()
        .is_ok_and(|r| r.status() == http::StatusCode::GATEWAY_TIMEOUT)
}

/// A decision not yet reported to the choice.
struct Pending {
    shared: Arc<Shared>,
    decision: Decision,
    started: Instant,
    meter: Option<CpuMeter>,
    reported: bool,
}

impl Pending {
    fn new(shared: Arc<Shared>, decision: Decision, meter: Option<CpuMeter>) -> Self {
        Pending {
            shared,
            decision,
            started: Instant::now(),
            meter,
            reported: false,
        }
    }

    /// The request is done; `timed` says whether its time is a sample;
    /// `off_meter` is CPU time no metered poll saw (a native worker's);
    /// `queued` the part of its time it waited for a native worker.
    fn done(
        &mut self,
        failure: Option<FallbackTrigger>,
        timed: bool,
        off_meter: Duration,
        queued: Duration,
    ) {
        self.reported = true;
        if let Some(meter) = &self.meter {
            meter.add(off_meter);
        }
        self.shared.choice.observe(Outcome {
            decision: self.decision,
            failure,
            took: timed.then(|| self.started.elapsed()),
            queued,
        });
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.reported {
            self.shared.choice.observe(Outcome {
                decision: self.decision,
                failure: None,
                took: None,
                queued: Duration::ZERO,
            });
        }
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
