//! The Spin backend, external: a reverse proxy to running `spin up`
//! replicas.
//!
//! This is the production path. Bodies stream both ways (the caller decides
//! whether a request body was buffered, which it only does when a fallback
//! or retry needs it again); connections are pooled and kept alive;
//! hop-by-hop headers are dropped and `Forwarded` / `X-Forwarded-*` added.
//! `x-request-id` passes through untouched; the caller sets `traceparent`. Client-sent
//! `spin-*` and `x-gateway-*` request headers are dropped, and so are
//! upstream `x-gateway-*` response headers (see [`headers`]).
//!
//! Several replicas: [`discover`] yields them (a list, or DNS names
//! re-resolved), [`balance`] picks one per attempt (tower's p2c over
//! PeakEwma), [`outlier`] ejects one that keeps failing and a probe of
//! Spin's `/.well-known/spin/health` brings it back, and [`elsewhere`]
//! sends a retry to another replica than the one that failed.

pub mod balance;
pub mod discover;
pub mod elsewhere;
pub mod headers;
pub mod outlier;

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Uri, header};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover};

use crate::config::OutlierPolicy;
use crate::telemetry::metrics::Metrics;
use balance::Balancer;
use discover::ReplicaKey;
use elsewhere::Trail;
use outlier::{Outcome, Outlier, ReplicaReport, Verdict};

/// Spin's health endpoint, which `spin up` (and `gateway serve-spin`) serve.
pub const HEALTH_PATH: &str = "/.well-known/spin/health";

/// Why a proxied request got no response from Spin.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No connection could be made: Spin is not running or not reachable.
    #[error("cannot connect to Spin at {upstream}: {message}")]
    Connect {
        /// The replica's base URL.
        upstream: String,
        /// The transport error.
        message: String,
    },
    /// The connection broke or the response was malformed.
    #[error("Spin at {upstream} failed mid-request: {message}")]
    Io {
        /// The replica's base URL.
        upstream: String,
        /// The transport error.
        message: String,
    },
}

/// The pooled client every replica shares (its pool is per address).
type HttpClient = Client<HttpConnector, Body>;

/// PeakEwma's estimate for a replica not measured yet, and how fast an
/// estimate forgets a peak (tower's examples use the same order).
const DEFAULT_RTT: Duration = Duration::from_millis(10);
const DECAY: Duration = Duration::from_secs(10);

/// The running `spin up` replicas; clones share them.
#[derive(Clone)]
pub struct ExternalSpin {
    shared: Arc<Shared>,
}

struct Shared {
    balancer: Balancer<Request<Body>, http::Response<Incoming>>,
    outlier: Arc<Outlier>,
    client: HttpClient,
    metrics: Arc<Metrics>,
    /// The configured upstreams, for messages.
    upstream: String,
}

impl ExternalSpin {
    /// Replicas of `upstreams` (`http://host:port`, already validated),
    /// names re-resolved every `resolve_every` if set; needs a tokio
    /// runtime (it starts the discovery and balancer tasks).
    pub fn new(
        upstreams: &[Uri],
        resolve_every: Option<Duration>,
        policy: &OutlierPolicy,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        tokio::runtime::Handle::try_current()
            .map_err(|_| anyhow::anyhow!("external mode needs a tokio runtime"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client: HttpClient = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        let outlier = Arc::new(Outlier::new(policy.clone()));
        let (made, gone) = (outlier.clone(), outlier.clone());
        let (for_make, for_metrics) = (client.clone(), metrics.clone());
        let changes = discover::watch(
            upstreams.to_vec(),
            resolve_every,
            move |key, upstream| {
                made.insert(key.clone());
                for_metrics.upstream_ejected(key.as_str(), false);
                tracing::info!(replica = key.as_str(), %upstream, "Spin replica added");
                Endpoint::new(key, upstream, for_make.clone(), made.clone())
            },
            move |key| {
                gone.remove(key);
                tracing::info!(replica = key.as_str(), "Spin replica removed");
            },
        );
        let loads = PeakEwmaDiscover::new::<Request<Body>>(
            changes,
            DEFAULT_RTT,
            DECAY,
            CompleteOnResponse::default(),
        );
        let upstream = upstreams
            .iter()
            .map(|u| u.to_string().trim_end_matches('/').to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(ExternalSpin {
            shared: Arc::new(Shared {
                balancer: Balancer::spawn(loads),
                outlier,
                client,
                metrics,
                upstream,
            }),
        })
    }

    /// The configured upstreams, for messages.
    pub fn upstream(&self) -> &str {
        &self.shared.upstream
    }

    /// Proxies one request to `spin_path` (query string kept) on a replica
    /// the balancer picks (another than the previous attempt's, when the
    /// request has a [`Trail`]).
    pub async fn call(
        &self,
        mut parts: http::request::Parts,
        body: Body,
        spin_path: &str,
        client: SocketAddr,
    ) -> Result<Response, ProxyError> {
        let shared = &self.shared;
        let path_and_query = crate::routing::with_query(spin_path, &parts.uri);
        let path = PathAndQuery::try_from(path_and_query).map_err(|e| ProxyError::Io {
            upstream: shared.upstream.clone(),
            message: format!("cannot build the upstream path: {e}"),
        })?;
        let trail = parts.extensions.remove::<Trail>();
        headers::remove_hop_by_hop(&mut parts.headers);
        headers::remove_reserved_request(&mut parts.headers);
        headers::add_forwarded(&mut parts.headers, client, "http");
        parts.uri = Uri::from(path);
        parts.version = http::Version::HTTP_11;
        let request = Request::from_parts(parts, body);
        let avoid = trail.as_ref().and_then(Trail::previous);
        let (key, call) =
            shared
                .balancer
                .pick(request, avoid)
                .await
                .map_err(|e| ProxyError::Io {
                    upstream: shared.upstream.clone(),
                    message: crate::problem::error_chain(&*e),
                })?;
        if let Some(trail) = &trail {
            trail.record(key.clone());
        }
        let span = tracing::Span::current();
        span.record("server.address", key.host());
        span.record("server.port", i64::from(key.port()));
        let result = call.await;
        let (outcome, label) = match &result {
            Ok(response) if response.status().is_server_error() => (Outcome::Failure, "5xx"),
            Ok(_) => (Outcome::Success, "ok"),
            Err(e) if is_connect(&**e) => (Outcome::Failure, "connect-error"),
            Err(_) => (Outcome::Failure, "io"),
        };
        shared.metrics.upstream_attempt(key.as_str(), label);
        let verdict = shared
            .outlier
            .record(&key, outcome, tokio::time::Instant::now());
        if verdict == Verdict::Ejected {
            self.ejected(&key);
        }
        let response = result.map_err(|e| {
            let upstream = format!("http://{}", key.as_str());
            let message = crate::problem::error_chain(&*e);
            if is_connect(&*e) {
                ProxyError::Connect { upstream, message }
            } else {
                ProxyError::Io { upstream, message }
            }
        })?;
        let (mut parts, body) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers);
        headers::remove_reserved_response(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// `key` was just ejected: count it and probe its health endpoint
    /// until it answers 200, then bring it back.
    fn ejected(&self, key: &ReplicaKey) {
        let policy = self.shared.outlier.policy().clone();
        tracing::warn!(
            replica = key.as_str(),
            failures = policy.consecutive_failures,
            "Spin replica ejected"
        );
        self.shared.metrics.upstream_ejected(key.as_str(), true);
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        let key = key.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(policy.probe_every).await;
                let Some(shared) = weak.upgrade() else { return };
                if !shared.outlier.is_ejected(&key) {
                    return;
                }
                let timeout = policy.probe_every.min(Duration::from_secs(1));
                if let Ok(200) = probe(&shared.client, &key, timeout).await
                    && shared.outlier.restore(&key)
                {
                    shared.metrics.upstream_ejected(key.as_str(), false);
                    tracing::info!(replica = key.as_str(), "Spin replica healthy again");
                    return;
                }
            }
        });
    }

    /// Each replica's state, with whether its health endpoint answers
    /// (any HTTP status) within `timeout`, for `/readyz`. Ejected replicas
    /// are not asked (their own probe is).
    pub async fn replicas(&self, timeout: Duration) -> Vec<(ReplicaReport, Result<u16, String>)> {
        let report = self.shared.outlier.report(tokio::time::Instant::now());
        let mut probes = tokio::task::JoinSet::new();
        for (i, replica) in report.iter().enumerate() {
            if replica.state == "healthy" {
                let client = self.shared.client.clone();
                let key = ReplicaKey::new(&replica.address);
                probes.spawn(async move { (i, probe(&client, &key, timeout).await) });
            }
        }
        let mut answers: Vec<Result<u16, String>> =
            vec![Err("ejected: probed until healthy".to_string()); report.len()];
        while let Some(done) = probes.join_next().await {
            if let Ok((i, answer)) = done
                && let Some(slot) = answers.get_mut(i)
            {
                *slot = answer;
            }
        }
        report.into_iter().zip(answers).collect()
    }
}

/// Whether a transport error is a failure to connect.
fn is_connect(error: &(dyn std::error::Error + 'static)) -> bool {
    error
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(hyper_util::client::legacy::Error::is_connect)
}

/// `GET /.well-known/spin/health` on `key`: its status, or why none came.
async fn probe(client: &HttpClient, key: &ReplicaKey, timeout: Duration) -> Result<u16, String> {
    let request = Request::get(format!("http://{}{HEALTH_PATH}", key.as_str()))
        .body(Body::empty())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(response)) => Ok(response.status().as_u16()),
        Ok(Err(e)) => Err(crate::problem::error_chain(&e)),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// One replica as a tower service: sends a request (its URI only a path)
/// to the replica's address with the upstream's `Host`, and is not ready
/// while the replica is ejected.
struct Endpoint {
    key: ReplicaKey,
    authority: Option<Authority>,
    host: Option<HeaderValue>,
    client: HttpClient,
    outlier: Arc<Outlier>,
}

impl Endpoint {
    fn new(key: &ReplicaKey, upstream: &Uri, client: HttpClient, outlier: Arc<Outlier>) -> Self {
        Endpoint {
            key: key.clone(),
            authority: Authority::try_from(key.as_str()).ok(),
            host: upstream
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
            client,
            outlier,
        }
    }
}

impl tower::Service<Request<Body>> for Endpoint {
    type Response = http::Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.outlier.poll_admit(&self.key, cx).map(Ok)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let mut uri = std::mem::take(request.uri_mut()).into_parts();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = self.authority.clone();
        if let Ok(uri) = Uri::from_parts(uri) {
            *request.uri_mut() = uri;
        }
        if let Some(host) = &self.host {
            request.headers_mut().insert(header::HOST, host.clone());
        }
        self.client.request(request)
    }
}
