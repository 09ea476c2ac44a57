//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use spin_host::{HostConfig, Served, SpinApp};

/// Path relative to this crate's directory.
pub fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Fails (never skips) when a component has not been built.
pub fn require_wasm(path: &Path) {
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build` first",
        path.display()
    );
}

/// Loads a manifest with a fresh data dir (kept alive for the process).
pub fn load(manifest: &Path, timeout: Duration, max_memory: usize) -> SpinApp {
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let config = HostConfig {
        data_dir: dir,
        request_timeout: timeout,
        max_memory_bytes: max_memory,
        max_concurrent_instances: 10,
        ..HostConfig::default()
    };
    let started = std::time::Instant::now();
    let app = SpinApp::load(manifest, config).unwrap_or_else(|e| panic!("load failed: {e}"));
    eprintln!(
        "loaded {} ({:?}) in {:?}",
        manifest.display(),
        app.component_ids(),
        started.elapsed()
    );
    app
}

/// A finished response.
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub body: String,
    pub served: Option<Served>,
    pub body_error: Option<String>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not json ({e}): {}", self.body))
    }
}

/// Sends one request through `SpinApp::handle` and collects the body.
pub async fn send(app: &SpinApp, method: &str, uri: &str, body: &str) -> Resp {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "test.local:3000")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let addr: SocketAddr = "127.0.0.1:4242".parse().expect("addr");
    let resp = app.handle(req, addr).await;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let served = resp.extensions().get::<Served>().cloned();
    let (body, body_error) = match resp.into_body().collect().await {
        Ok(c) => (String::from_utf8_lossy(&c.to_bytes()).into_owned(), None),
        Err(e) => (String::new(), Some(e.to_string())),
    };
    Resp {
        status,
        content_type,
        body,
        served,
        body_error,
    }
}

pub async fn get(app: &SpinApp, uri: &str) -> Resp {
    send(app, "GET", uri, "").await
}
