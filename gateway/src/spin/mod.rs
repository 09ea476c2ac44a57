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

pub use crate::backend::RequestBody;
use crate::backend::{Backend, BackendError};
use crate::proxy::{ExternalSpin, ProxyError};
pub use embedded::EmbeddedSpin;

/// The Spin application, wherever it runs.
#[derive(Clone)]
pub enum SpinBackend {
    /// In-process, in the embedded host.
    Embedded(EmbeddedSpin),
    /// Running `spin up` replicas, over HTTP.
    External(ExternalSpin),
}

impl SpinBackend {
    /// The embedded host's instance slots (`None` for an external Spin).
    pub fn pool_stats(&self) -> Option<spin_host::PoolStats> {
        match self {
            SpinBackend::Embedded(app) => Some(app.pool_stats()),
            SpinBackend::External(_) => None,
        }
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            SpinBackend::Embedded(_) => Backend::SpinEmbedded,
            SpinBackend::External(_) => Backend::SpinExternal,
        }
    }

    /// `spin-embedded` or `spin-external`: the value of `x-gateway-backend`
    /// and of the `gateway.backend` telemetry attribute.
    pub fn label(&self) -> &'static str {
        self.backend().as_str()
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

    /// Whether the backend can take requests (for `/readyz`), and in
    /// external mode each replica's state: ready when at least one replica
    /// is healthy (not ejected) and its health endpoint answers.
    pub async fn ready(&self) -> (Result<(), String>, Option<serde_json::Value>) {
        let SpinBackend::External(e) = self else {
            return (Ok(()), None);
        };
        let replicas = e.replicas(Duration::from_secs(1)).await;
        let ready = replicas
            .iter()
            .any(|(r, answer)| r.state == "healthy" && answer.is_ok());
        let outcome = if ready {
            Ok(())
        } else if replicas.is_empty() {
            Err("no Spin replica is known yet".to_string())
        } else {
            let why: Vec<String> = replicas
                .iter()
                .map(|(r, answer)| match answer {
                    Err(e) => format!("{}: {e}", r.address),
                    Ok(status) => format!("{}: {status}", r.address),
                })
                .collect();
            Err(format!(
                "no healthy Spin replica answers ({})",
                why.join("; ")
            ))
        };
        let list: Vec<serde_json::Value> = replicas
            .into_iter()
            .map(|(report, answer)| {
                let mut value = serde_json::to_value(&report).unwrap_or_default();
                value["reachable"] = serde_json::Value::Bool(answer.is_ok());
                if let Err(e) = answer {
                    value["error"] = serde_json::Value::String(e);
                }
                value
            })
            .collect();
        (outcome, Some(serde_json::Value::Array(list)))
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
    ) -> Result<Response, BackendError> {
        match self {
            SpinBackend::Embedded(app) => {
                let bytes = match body {
                    RequestBody::Buffered(bytes) => bytes,
                    // The embedded host takes whole bodies; callers buffer
                    // for it, so this only happens if that rule is broken.
                    RequestBody::Streaming(_) => {
                        return Err(BackendError::Io(
                            "internal error: the embedded host needs a buffered body".into(),
                        ));
                    }
                };
                app.call(parts, bytes, spin_path, client, timeout)
                    .await
                    .map_err(|full| BackendError::PoolFull {
                        component: full.component,
                        capacity: full.capacity,
                    })
            }
            SpinBackend::External(proxy) => {
                let body = match body {
                    RequestBody::Buffered(bytes) => Body::from(bytes),
                    RequestBody::Streaming(body) => body,
                };
                let mut parts = parts;
                // The current (`spin` client) span becomes the parent
                // Spin's spans join.
                {
                    use tracing_opentelemetry::OpenTelemetrySpanExt;
                    crate::telemetry::propagation::inject(
                        &tracing::Span::current().context(),
                        &mut parts.headers,
                    );
                }
                proxy
                    .call(parts, body, spin_path, client)
                    .await
                    .map_err(|e| match e {
                        ProxyError::Connect { .. } => BackendError::Connect(Box::new(e)),
                        ProxyError::Io { .. } => BackendError::Io(Box::new(e)),
                    })
            }
        }
    }

    /// Whether request bodies must be buffered before calling.
    pub fn needs_buffered_body(&self) -> bool {
        matches!(self, SpinBackend::Embedded(_))
    }
}
