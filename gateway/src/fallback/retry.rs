//! Retries of a failed Spin attempt, as a [`tower::retry::Policy`]: only
//! idempotent methods with a buffered body (a streamed one can be sent
//! once), only failures another attempt may mend
//! ([`BackendError::retryable`]), at most `retry.attempts` times, each
//! paid from the route's [`TpsBudget`] and after an exponential backoff
//! with jitter (`retry.backoff_ms`, up to 16×).

use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::rng::HasherRng;

use crate::backend::{BackendError, RouteRequest, is_idempotent};
use crate::config::RouteConfig;

/// A route's retry policy. The copy tower keeps per request carries that
/// request's retries left and backoff.
#[derive(Clone)]
pub struct RetryPolicy {
    route: Arc<RouteConfig>,
    budget: Arc<TpsBudget>,
    left: u32,
    backoff: Option<ExponentialBackoff>,
}

impl RetryPolicy {
    /// The policy for `route`, paying from `budget`.
    pub fn new(route: Arc<RouteConfig>, budget: Arc<TpsBudget>) -> Self {
        RetryPolicy {
            left: route.retry.attempts,
            route,
            budget,
            backoff: None,
        }
    }

    /// The wait before the next attempt (made at the first retry: most
    /// requests never need one).
    fn next_backoff(&mut self) -> tokio::time::Sleep {
        if self.backoff.is_none() {
            let base = self.route.retry.backoff;
            self.backoff = ExponentialBackoffMaker::new(base, base * 16, 0.5, HasherRng::default())
                .ok()
                .map(|mut maker| maker.make_backoff());
        }
        match self.backoff.as_mut() {
            Some(backoff) => backoff.next_backoff(),
            None => tokio::time::sleep(Duration::ZERO),
        }
    }
}

impl tower::retry::Policy<RouteRequest, Response, BackendError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        request: &mut RouteRequest,
        result: &mut Result<Response, BackendError>,
    ) -> Option<tokio::time::Sleep> {
        let failure = result.as_ref().err()?;
        if self.left == 0 || !failure.retryable() || !self.budget.withdraw() {
            return None;
        }
        self.left -= 1;
        request.attempt += 1;
        tracing::debug!(route = %self.route.name, ?failure, "retrying Spin");
        Some(self.next_backoff())
    }

    /// Called before each attempt: the copy kept for a retry, when one may
    /// follow. The first call also deposits into the budget, which only
    /// ever pays for retries: a route without them has no use for the
    /// bookkeeping (a lock and a clock read per request).
    fn clone_request(&mut self, request: &RouteRequest) -> Option<RouteRequest> {
        if self.route.retry.attempts == 0 {
            return None;
        }
        if request.attempt == 1 {
            self.budget.deposit();
        }
        if self.left == 0 || !is_idempotent(&request.parts.method) {
            return None;
        }
        request.try_clone()
    }
}
