//! The Spin backend: the same components, embedded or external.
//!
//! `[spin].mode` picks one: the embedded host runs the `.wasm` files
//! in-process (one command runs everything), the external mode proxies to a
//! real `spin up` (production). Both take the same request with the path
//! already rewritten to the component's route, and both report failures the
//! fallback policy can classify.

pub mod embedded;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;

use crate::proxy::{ExternalSpin, ProxyError};
pub use embedded::EmbeddedSpin;

/// A request body, either already read (so it can be sent again on retry
/// or to the native fallback) or still streaming from the client.
pub enum RequestBody {
    /// Read in full (within the route's limit).
    Buffered(Bytes),
    /// Not read yet; can be sent once.
    Streaming(Body),
}

/// Why the Spin backend produced no response.
#[derive(Debug, thiserror::Error)]
pub enum SpinError {
    /// Spin could not be reached at all.
    #[error("{0}")]
    Connect(String),
    /// The exchange broke after connecting.
    #[error("{0}")]
    Io(String),
    /// The embedded host has no free instance slot: overload, not failure.
    #[error("{0}")]
    Overloaded(String),
}

/// The Spin application, wherever it runs.
#[derive(Clone)]
pub enum SpinBackend {
    /// In-process, in the embedded host.
    Embedded(EmbeddedSpin),
    /// A running `spin up`, over HTTP (boxed: the pooled client is large).
    External(Box<ExternalSpin>),
}

impl SpinBackend {
    /// The embedded host's instance slots (`None` for an external Spin).
    pub fn pool_stats(&self) -> Option<spin_host::PoolStats> {
        match self {
            SpinBackend::Embedded(app) => Some(app.pool_stats()),
            SpinBackend::External(_) => None,
        }
    }

    /// `spin-embedded` or `spin-external`: the value of `x-gateway-backend`
    /// and of the `gateway.backend` telemetry attribute.
    pub fn label(&self) -> &'static str {
        match self {
            SpinBackend::Embedded(_) => "spin-embedded",
            SpinBackend::External(_) => "spin-external",
        }
    }

    /// Where it runs, for problem details ("Spin at http://...").
    pub fn describe(&self) -> String {
        match self {
            SpinBackend::Embedded(_) => "the embedded Spin host".to_string(),
            SpinBackend::External(e) => format!("Spin at {}", e.upstream()),
        }
    }

    /// Component ids (embedded) or none (external: Spin knows them).
    pub fn component_ids(&self) -> Vec<String> {
        match self {
            SpinBackend::Embedded(app) => app.component_ids(),
            SpinBackend::External(_) => Vec::new(),
        }
    }

    /// Whether the backend can take requests (for `/readyz`).
    pub async fn ready(&self) -> Result<(), String> {
        match self {
            SpinBackend::Embedded(_) => Ok(()),
            SpinBackend::External(e) => e.probe(Duration::from_secs(1)).await,
        }
    }

    /// Sends one request to the component route `spin_path`; the embedded
    /// host interrupts the guest after `timeout` (the route's), an external
    /// Spin is simply no longer waited for (the caller's timeout).
    pub async fn call(
        &self,
        parts: http::request::Parts,
        body: RequestBody,
        spin_path: &str,
        client: SocketAddr,
        timeout: Duration,
    ) -> Result<Response, SpinError> {
        match self {
            SpinBackend::Embedded(app) => {
                let bytes = match body {
                    RequestBody::Buffered(bytes) => bytes,
                    // The embedded host takes whole bodies; callers buffer
                    // for it, so this only happens if that rule is broken.
                    RequestBody::Streaming(_) => {
                        return Err(SpinError::Io(
                            "internal error: the embedded host needs a buffered body".into(),
                        ));
                    }
                };
                app.call(parts, bytes, spin_path, client, timeout)
                    .await
                    .map_err(|full| {
                        SpinError::Overloaded(format!(
                            "all {} instance slots of the embedded host are busy (component '{}')",
                            full.capacity, full.component
                        ))
                    })
            }
            SpinBackend::External(proxy) => {
                let body = match body {
                    RequestBody::Buffered(bytes) => Body::from(bytes),
                    RequestBody::Streaming(body) => body,
                };
                proxy
                    .call(parts, body, spin_path, client)
                    .await
                    .map_err(|e| match e {
                        ProxyError::Connect { .. } => SpinError::Connect(e.to_string()),
                        ProxyError::Io { .. } => SpinError::Io(e.to_string()),
                    })
            }
        }
    }

    /// Whether request bodies must be buffered before calling.
    pub fn needs_buffered_body(&self) -> bool {
        matches!(self, SpinBackend::Embedded(_))
    }
}
