//! The Spin backend, embedded: the application's components run in-process.
//!
//! The gateway hands a request to [`spin_host::SpinApp`] with the path
//! rewritten to the component's internal route; the host does everything
//! Wasm (instances, WASI, Spin interfaces, limits). Nothing here touches
//! wasmtime types, so routing and policy code stays independent of the host.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::Request;
use http::uri::PathAndQuery;
use http_body_util::Full;
use spin_host::{HostConfig, PoolFull, PoolStats, SpinApp};

/// A loaded Spin application, shared by every request.
#[derive(Clone)]
pub struct EmbeddedSpin {
    app: Arc<SpinApp>,
}

impl EmbeddedSpin {
    /// Loads `spin.toml` and compiles its components (once, at start).
    pub fn load(manifest: &Path, config: HostConfig) -> anyhow::Result<Self> {
        let app = SpinApp::load(manifest, config).map_err(|e| {
            anyhow::anyhow!("cannot load the Spin app from {}: {e}", manifest.display())
        })?;
        Ok(EmbeddedSpin { app: Arc::new(app) })
    }

    /// Names of the components, for logs and health output.
    pub fn component_ids(&self) -> Vec<String> {
        self.app.component_ids()
    }

    /// Busy and idle instance slots, for metrics and health output.
    pub fn pool_stats(&self) -> PoolStats {
        self.app.pool_stats()
    }

    /// Sends a (buffered) request to the component serving `spin_path`,
    /// with a deadline of `timeout` (capped by `component_timeout_ms`).
    ///
    /// `parts` are the public request's; only the path changes, the query
    /// string is kept as is. `Err` carries the host's typed "every instance
    /// slot is busy" answer, which is overload, not a component failure.
    pub async fn call(
        &self,
        parts: http::request::Parts,
        body: Bytes,
        spin_path: &str,
        client_addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Response, PoolFull> {
        let mut parts = parts;
        // The host replaces `spin-*` itself; `x-gateway-*` are the
        // gateway's and no component's business.
        crate::proxy::headers::remove_prefixed(
            &mut parts.headers,
            crate::proxy::headers::GATEWAY_PREFIX,
        );
        let response = self
            .call_unchecked(parts, body, spin_path, client_addr, timeout)
            .await;
        match response.extensions().get::<PoolFull>() {
            Some(full) => Err(full.clone()),
            None => Ok(response),
        }
    }

    /// [`EmbeddedSpin::call`], passing the host's 503 on a full pool through
    /// as a response (what `serve-spin`, standing in for Spin, answers).
    async fn call_unchecked(
        &self,
        mut parts: http::request::Parts,
        body: Bytes,
        spin_path: &str,
        client_addr: SocketAddr,
        timeout: Duration,
    ) -> Response {
        let path_and_query = crate::routing::with_query(spin_path, &parts.uri);
        let mut uri = parts.uri.clone().into_parts();
        uri.path_and_query = PathAndQuery::try_from(path_and_query).ok();
        if let Ok(rewritten) = http::Uri::from_parts(uri) {
            parts.uri = rewritten;
        }
        let request = Request::from_parts(parts, Full::new(body));
        let response = self.app.handle_within(request, client_addr, timeout).await;
        response.map(Body::new)
    }
}

/// Largest body `serve-spin` buffers for a component (the embedded host
/// takes whole bodies).
const STANDALONE_MAX_BODY: usize = 64 << 20;

/// The prefix `spin up` keeps for itself: its router answers these paths
/// before any component route (a component route under it is never
/// reached), so `serve-spin` does the same.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// `/.well-known/spin/info`: Spin answers the app's `name` and `version`
/// (and `oci_image_digest` when run from a registry); `runtime` says which
/// host serves it, where Spin's answer would imply Spin.
fn app_info(manifest: &Path) -> serde_json::Value {
    let doc: Option<toml::Table> = std::fs::read_to_string(manifest)
        .ok()
        .and_then(|text| toml::from_str(&text).ok());
    let field = |name: &str| {
        doc.as_ref().and_then(|d| {
            d.get("application")?
                .get(name)?
                .as_str()
                .map(str::to_string)
        })
    };
    serde_json::json!({
        "name": field("name").unwrap_or_default(),
        "version": field("version"),
        "runtime": {
            "name": "gateway serve-spin",
            "version": env!("CARGO_PKG_VERSION"),
        },
    })
}

/// Spin's own answers under [`WELL_KNOWN_PREFIX`]: `health` (200 `OK`),
/// `info` (JSON), anything else 404.
fn well_known(path: &str, info: &serde_json::Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    match path.strip_prefix(WELL_KNOWN_PREFIX) {
        Some("health") => (http::StatusCode::OK, "OK").into_response(),
        Some("info") => axum::Json(info.clone()).into_response(),
        _ => crate::problem::ProblemResponse(crate::problem::Problem::new(
            404,
            "Not Found",
            format!("`{path}` is not one of Spin's well-known paths (health, info)"),
        ))
        .into_response(),
    }
}

/// A router that serves the manifest's own routes, unchanged, like
/// `spin up` does: the stand-in for an external Spin where no Spin CLI is
/// installed (and what the external-mode tests run against). `config` is
/// the host's (data dir, limits, reuse), as `spin up`'s flags would be.
/// Like Spin it answers `/.well-known/spin/health` and `/info` itself.
pub fn standalone_router(manifest: &Path, config: HostConfig) -> anyhow::Result<axum::Router> {
    let timeout = config.request_timeout;
    let info = Arc::new(app_info(manifest));
    let spin = EmbeddedSpin::load(manifest, config)?;
    let handler =
        move |axum::extract::ConnectInfo(client): axum::extract::ConnectInfo<SocketAddr>,
              request: axum::extract::Request| {
            let spin = spin.clone();
            let info = info.clone();
            async move {
                use axum::response::IntoResponse;
                use http_body_util::BodyExt;
                if request.uri().path().starts_with(WELL_KNOWN_PREFIX) {
                    return well_known(request.uri().path(), &info);
                }
                let (parts, body) = request.into_parts();
                let bytes = match http_body_util::Limited::new(body, STANDALONE_MAX_BODY)
                    .collect()
                    .await
                {
                    Ok(collected) => collected.to_bytes(),
                    Err(e) => {
                        return crate::problem::ProblemResponse(crate::problem::Problem::new(
                            413,
                            "Payload Too Large",
                            format!("request body rejected: {e}"),
                        ))
                        .into_response();
                    }
                };
                let path = parts.uri.path().to_string();
                spin.call_unchecked(parts, bytes, &path, client, timeout)
                    .await
            }
        };
    Ok(axum::Router::new().fallback(handler))
}
