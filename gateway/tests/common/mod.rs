//! Shared test harness: real gateways on loopback ports, serving the real
//! compiled components through the embedded host (or proxying to them).
#![allow(dead_code)]

pub mod fake_spin;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gateway::runtime::{Gateway, Overrides};
use gateway::server;
use tempfile::TempDir;
use tokio::sync::oneshot;

/// The Prometheus text of the admin listener at `admin` (`http://host:port`).
pub async fn admin_metrics(admin: &str) -> String {
    let response = client()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200, "/metrics");
    response.text().await.expect("/metrics body")
}

/// The repository root (the gateway crate lives in `gateway/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("gateway/ has a parent")
        .to_path_buf()
}

/// Fails (never skips) when a component has not been built.
pub fn require_wasm(file: &str) {
    let path = repo_root().join("target/wasm32-wasip2/release").join(file);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build` (or `cargo xtask test`) first",
        path.display()
    );
}

pub fn require_app_wasm() {
    for wasm in ["list_items.wasm", "create_item.wasm", "validate_items.wasm"] {
        require_wasm(wasm);
    }
}

/// A server on 127.0.0.1:<random port> until dropped.
pub struct Served {
    pub addr: SocketAddr,
    pub base: String,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves an Axum router on a loopback port.
pub async fn serve(router: axum::Router) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = server::serve(listener, router, async {
            let _ = rx.await;
        })
        .await;
    });
    Served {
        addr,
        base: format!("http://{addr}"),
        shutdown: Some(tx),
    }
}

/// A gateway: public and admin listeners, plus its data dir.
pub struct TestGateway {
    pub base: String,
    pub admin: String,
    pub gateway: Arc<Gateway>,
    pub data_dir: TempDir,
    _public: Served,
    _admin: Served,
}

/// How to start a test gateway.
pub struct Options {
    /// Config file text (written to a temp file); `None` = built-in routes.
    pub config: Option<String>,
    pub manifest: Option<PathBuf>,
    pub upstream: Option<String>,
    pub variables: HashMap<String, String>,
    /// Test-only: the native validate alters its verdicts (shadow tests).
    pub tamper_native: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config: None,
            manifest: Some(repo_root().join("spin.toml")),
            upstream: None,
            variables: HashMap::new(),
            tamper_native: false,
        }
    }
}

/// The gateway over the project's own spin.toml with its built-in routes.
pub async fn start() -> TestGateway {
    require_app_wasm();
    start_with(Options::default()).await
}

pub async fn start_with(options: Options) -> TestGateway {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config_path = options.config.as_ref().map(|text| {
        let path = data_dir.path().join("gateway.toml");
        std::fs::write(&path, text).expect("write config");
        path
    });
    let overrides = Overrides {
        manifest: options.manifest.clone(),
        upstream: options
            .upstream
            .as_deref()
            .map(|u| u.parse().expect("upstream URL")),
        data_dir: Some(data_dir.path().join("db")),
        variables: options.variables.clone(),
        tamper_native_output: options.tamper_native,
        ..Overrides::default()
    };
    let gateway = tokio::task::spawn_blocking(move || Gateway::start(config_path, overrides))
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("the gateway starts: {e:#}"));
    let gateway = Arc::new(gateway);
    let public = serve(server::public_router(gateway.clone())).await;
    let admin = serve(server::admin::admin_router(gateway.clone())).await;
    TestGateway {
        base: public.base.clone(),
        admin: admin.base.clone(),
        gateway,
        data_dir,
        _public: public,
        _admin: admin,
    }
}

/// `gateway serve-spin`'s router for the project's spin.toml on a loopback
/// port: the stand-in for a real `spin up`.
pub async fn start_spin_standin(data_dir: &Path) -> Served {
    require_app_wasm();
    let manifest = repo_root().join("spin.toml");
    let dir = data_dir.to_path_buf();
    let router = tokio::task::spawn_blocking(move || {
        let config = spin_host::HostConfig {
            data_dir: dir,
            ..spin_host::HostConfig::default()
        };
        gateway::spin::embedded::standalone_router(&manifest, config)
    })
    .await
    .expect("join")
    .expect("the stand-in loads spin.toml");
    serve(router).await
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

/// A gateway serving the `misbehave` test component in the embedded host:
/// `spin` is added to its `[spin]` table (limits), then `routes` (TOML
/// `[[route]]` tables).
pub async fn start_misbehave(spin: &str, routes: &str) -> TestGateway {
    require_wasm("misbehave.wasm");
    let manifest = repo_root().join("gateway/spin-host/tests/fixtures/misbehave.toml");
    start_with(Options {
        config: Some(format!(
            "[spin]\nmode = \"embedded\"\nmanifest = {manifest:?}\n{spin}\n{routes}"
        )),
        manifest: None,
        ..Options::default()
    })
    .await
}

/// Whether a spawned gateway's admin listener (`http://host:port`) answers
/// `/healthz` within `attempts` tries, 50 ms apart.
pub async fn comes_up(admin: &str, attempts: u32) -> bool {
    let http = client();
    for _ in 0..attempts {
        if http.get(format!("{admin}/healthz")).send().await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// `GET url`, its body parsed as JSON (whatever the status: the callers
/// assert on the document).
pub async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> T {
    client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not the expected JSON: {e}"))
}

/// Asserts a response is RFC 9457 problem+json with `status` and returns it.
pub async fn expect_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/problem+json"),
        "expected problem+json, got {content_type:?}"
    );
    let body: serde_json::Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status, "problem status member: {body}");
    assert!(body["title"].is_string(), "problem title: {body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "problem detail must say something useful: {body}"
    );
    body
}

/// The built-in config with every route on Spin (the validate route's
/// `auto` size rule would otherwise send big batches to native).
pub fn all_spin_config() -> String {
    let builtin = gateway::config::BUILTIN;
    let cut = builtin.find("[route.fallback]").unwrap_or(builtin.len());
    // Gateway body limits above the components' own, so the components'
    // 413s are what the tests see.
    builtin[..cut]
        .replace("backend = \"auto\"", "backend = \"spin\"")
        .replace("max_body_bytes = 16777216", "max_body_bytes = 33554432")
        .replace("max_body_bytes = 1048576", "max_body_bytes = 2097152")
}

/// A gateway over the project's spin.toml with every route on Spin.
pub async fn start_all_spin() -> TestGateway {
    require_app_wasm();
    start_with(Options {
        config: Some(all_spin_config()),
        ..Options::default()
    })
    .await
}

/// Two items, one valid and one not: answered by Wasm on `auto` routes.
pub fn small_batch() -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({"items": [{"id": 1, "name": "Item1"}, {"id": 2, "name": ""}]}),
    )
    .expect("serializable")
}

/// `n` items of ~200 bytes; 2,000 of them exceed validate's built-in
/// `native_above_bytes` (256 KiB), so the size rule sends them to native.
pub fn big_batch(n: usize) -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"id": i, "name": format!("item {i}"), "description": "d".repeat(150)}))
        .collect();
    serde_json::to_vec(&serde_json::json!({ "items": items })).expect("serializable")
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
