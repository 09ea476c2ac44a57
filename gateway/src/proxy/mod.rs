//! The Spin backend, external: a reverse proxy to a running `spin up`.
//!
//! This is the production path. Bodies stream both ways (the caller decides
//! whether a request body was buffered, which it only does when a fallback
//! or retry needs it again); connections are pooled and kept alive;
//! hop-by-hop headers are dropped and `Forwarded` / `X-Forwarded-*` added.
//! `x-request-id` passes through untouched; the caller sets `traceparent`. Client-sent
//! `spin-*` and `x-gateway-*` request headers are dropped, and so are
//! upstream `x-gateway-*` response headers (see [`headers`]).

pub mod headers;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a proxied request got no response from Spin.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No connection could be made: Spin is not running or not reachable.
    #[error("cannot connect to Spin at {upstream}: {message}")]
    Connect {
        /// The upstream base URL.
        upstream: String,
        /// The transport error.
        message: String,
    },
    /// The connection broke or the response was malformed.
    #[error("Spin at {upstream} failed mid-request: {message}")]
    Io {
        /// The upstream base URL.
        upstream: String,
        /// The transport error.
        message: String,
    },
}

/// A pooled HTTP/1.1 client for one upstream Spin.
#[derive(Clone)]
pub struct ExternalSpin {
    client: Client<HttpConnector, Body>,
    scheme: Scheme,
    authority: Authority,
    upstream: String,
}

impl ExternalSpin {
    /// A client for `upstream` (`http://host:port`, already validated).
    pub fn new(upstream: &Uri) -> anyhow::Result<Self> {
        let authority = upstream
            .authority()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("upstream `{upstream}` has no host"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(ExternalSpin {
            client,
            scheme: upstream.scheme().cloned().unwrap_or(Scheme::HTTP),
            authority,
            upstream: upstream.to_string().trim_end_matches('/').to_string(),
        })
    }

    /// The upstream base URL, for messages.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Proxies one request to `spin_path` (query string kept).
    pub async fn call(
        &self,
        mut parts: http::request::Parts,
        body: Body,
        spin_path: &str,
        client: SocketAddr,
    ) -> Result<Response, ProxyError> {
        let path_and_query = crate::routing::with_query(spin_path, &parts.uri);
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(
                PathAndQuery::try_from(path_and_query).map_err(|e| ProxyError::Io {
                    upstream: self.upstream.clone(),
                    message: format!("cannot build the upstream path: {e}"),
                })?,
            )
            .build()
            .map_err(|e| ProxyError::Io {
                upstream: self.upstream.clone(),
                message: e.to_string(),
            })?;
        headers::remove_hop_by_hop(&mut parts.headers);
        headers::remove_reserved_request(&mut parts.headers);
        headers::add_forwarded(&mut parts.headers, client, "http");
        if let Ok(host) = HeaderValue::from_str(self.authority.as_str()) {
            parts.headers.insert(header::HOST, host);
        }
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        let request = Request::from_parts(parts, body);
        let response = self.client.request(request).await.map_err(|e| {
            if e.is_connect() {
                ProxyError::Connect {
                    upstream: self.upstream.clone(),
                    message: crate::problem::error_chain(&e),
                }
            } else {
                ProxyError::Io {
                    upstream: self.upstream.clone(),
                    message: crate::problem::error_chain(&e),
                }
            }
        })?;
        let (mut parts, body) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers);
        headers::remove_reserved_response(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// Whether Spin answers at all (any HTTP status counts), for `/readyz`.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let uri = format!("{}/", self.upstream);
        let request = Request::get(uri)
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(crate::problem::error_chain(&e)),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }
}
