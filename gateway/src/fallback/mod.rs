//! What happens when the Wasm path fails, is slow or is overloaded: the
//! policy layers of a route's stack.
//!
//! Each route names a backend in the config:
//!
//! * `spin` – call Spin under the route's policy (concurrency limit with
//!   load shedding, circuit breaker, timeout, retries for idempotent
//!   methods); if that fails, answer with a problem that names the backend
//!   (`503`/`504`, `Retry-After` where retrying later helps).
//! * `native` – the native handler, always.
//! * `auto` – a [`PathChoice`](choice::PathChoice) picks the path (the
//!   size rule: bodies over `native_above_bytes` go straight to native; or,
//!   with `native_above_bytes = "learn"`, the path each size class has
//!   measured faster, see [`learn`]); requests on Spin that fail with a
//!   failure listed in `fallback.on` are answered by the native handler
//!   instead.
//!
//! One file per layer, each a tower `Layer` + `Service`, stacked once per
//! config snapshot by [`stack`]:
//!
//! ```text
//! admission → shadow → answer → [fallback] → limit → elsewhere → retry → circuit
//!           → client fault → attempt span → timeout → Spin
//! ```
//!
//! Every response carries an [`Answered`](crate::backend::Answered)
//! extension saying which backend produced it and, when native stood in,
//! why; the request telemetry turns it into the `x-gateway-backend` /
//! `x-gateway-fallback` headers, metrics and span fields. A backend's own
//! headers never speak for the gateway.

pub mod answer;
pub mod backends;
pub mod choice;
pub mod circuit;
pub mod client_fault;
pub mod learn;
pub mod limit;
pub mod retry;
pub mod stack;
pub mod timeout;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tower::retry::budget::TpsBudget;

use crate::admission::RouteAdmission;
pub use crate::backend::{Answered, BACKEND_HEADER, FALLBACK_HEADER, SIZE_REASON};
use crate::config::RouteConfig;
use circuit::CircuitBreaker;

/// A route's live policy state: shared by all its requests, kept across a
/// config reload that leaves the route unchanged (its breaker and counters
/// with it). Clones share the state.
#[derive(Clone)]
pub struct RoutePolicy {
    /// The breaker on the route's Spin backend.
    pub circuit: CircuitBreaker,
    /// The route's share of the gateway's admission budgets.
    pub admission: Arc<RouteAdmission>,
    /// The route's Spin concurrency limit.
    pub limit: Arc<Semaphore>,
    /// The route's retry budget.
    pub budget: Arc<TpsBudget>,
    /// The learned estimates (`native_above_bytes = "learn"` on a route
    /// with both paths).
    pub learned: Option<Arc<learn::Learned>>,
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
            learned: (route.learn && route.spin_path.is_some() && route.native.is_some()).then(
                || {
                    Arc::new(learn::Learned::new(
                        learn::Tuning::default(),
                        Box::new(learn::SystemClock::default()),
                    ))
                },
            ),
        }
    }
}
