//! The repository's real `spin.toml` in the embedded host: it loads, routes
//! like Spin, and its components answer the same with instance reuse as
//! with a fresh instance per request.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::Value;
use spin_host::{HostConfig, ReusePolicy, SpinApp};

fn require_app() -> std::path::PathBuf {
    let manifest = crate_path("../../spin.toml");
    assert!(
        manifest.exists(),
        "{} is missing (the app manifest is expected at the repo root)",
        manifest.display()
    );
    for wasm in ["list_items", "create_item", "validate_items"] {
        require_wasm(&crate_path(&format!(
            "../../target/wasm32-wasip2/release/{wasm}.wasm"
        )));
    }
    manifest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_manifest_loads_and_unknown_routes_are_404() {
    let app = load(&require_app(), Duration::from_secs(30), 128 * 1024 * 1024);
    assert_eq!(app.component_ids(), ["list", "create", "validate"]);
    let r = get(&app, "/definitely/not/a/route/xyz").await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.content_type, "application/problem+json");
    assert!(r.served.is_none(), "no component ran");
}

/// `created_at` is the server's clock: the only part allowed to differ.
fn without_clock(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            map.remove("created_at");
            for (_, x) in map.iter_mut() {
                *x = without_clock(x.take());
            }
        }
        Value::Array(items) => {
            for x in items.iter_mut() {
                *x = without_clock(x.take());
            }
        }
        _ => {}
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_answer_the_same_with_and_without_instance_reuse() {
    let manifest = require_app();
    let apps: Vec<SpinApp> = [false, true]
        .into_iter()
        .map(|reused| {
            let policy = ReusePolicy {
                max_requests: 1000,
                idle: Duration::from_secs(600),
            };
            let reuse = if reused {
                ["list", "create", "validate"]
                    .into_iter()
                    .map(|id| (id.to_string(), policy))
                    .collect()
            } else {
                HashMap::new()
            };
            SpinApp::load(
                &manifest,
                HostConfig {
                    data_dir: tempfile::tempdir().expect("tempdir").keep(),
                    reuse,
                    ..HostConfig::default()
                },
            )
            .unwrap_or_else(|e| panic!("load: {e}"))
        })
        .collect();

    let valid_batch = r#"{"items":[{"id":1,"name":"a"},{"id":2,"name":"b","tags":["x","x"]}]}"#;
    let script: Vec<(&str, &str, String)> = vec![
        ("POST", "/create", r#"{"id": 7, "name": "seven"}"#.into()),
        ("POST", "/create", r#"{"id": 7, "name": "again"}"#.into()),
        (
            "POST",
            "/create",
            r#"{"name": "assigned", "tags": ["a"]}"#.into(),
        ),
        ("POST", "/create", r#"{"name": ""}"#.into()),
        ("POST", "/create", "{not json".into()),
        ("GET", "/list", String::new()),
        ("GET", "/list/7", String::new()),
        ("GET", "/list/999", String::new()),
        ("GET", "/list?limit=1", String::new()),
        ("POST", "/validate", valid_batch.into()),
        ("POST", "/validate", r#"{"items": 3}"#.into()),
        ("POST", "/validate", valid_batch.into()),
        ("GET", "/list?tag=a", String::new()),
    ];
    // Twice through, so the reusing app serves most requests on warm
    // instances that already ran every kind of request.
    for round in 0..2 {
        for (method, uri, body) in &script {
            let mut answers = Vec::new();
            for app in &apps {
                let r = send(app, method, uri, body).await;
                let body = serde_json::from_str::<Value>(&r.body)
                    .map(without_clock)
                    .unwrap_or(Value::String(r.body.clone()));
                answers.push((r.status, r.content_type.clone(), body));
            }
            assert_eq!(
                answers[0], answers[1],
                "round {round}: {method} {uri}: fresh (left) vs reused (right)"
            );
        }
    }
    assert!(apps[1].pool_stats().idle >= 1, "the second app did reuse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_config_moves_the_default_database() {
    let manifest = require_app();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime_config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &runtime_config,
        "[sqlite_database.default]\ntype = \"spin\"\npath = \"elsewhere.db\"\n",
    )
    .expect("write");
    let app = SpinApp::load(
        &manifest,
        HostConfig {
            data_dir: dir.path().join("data"),
            runtime_config_file: Some(runtime_config),
            ..HostConfig::default()
        },
    )
    .unwrap_or_else(|e| panic!("load: {e}"));
    let req = http::Request::builder()
        .method("POST")
        .uri("/create")
        .header("host", "test.local:3000")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"id": 3, "name": "moved"}"#,
        )))
        .expect("request");
    let addr: std::net::SocketAddr = "127.0.0.1:4242".parse().expect("addr");
    let created = app.handle(req, addr).await;
    assert_eq!(created.status(), 201);
    // The item is in the configured file, relative to the config's directory,
    // and the data dir's default file was never created.
    let conn = rusqlite::Connection::open(dir.path().join("elsewhere.db")).expect("open");
    let names: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .expect("query");
    assert!(names > 0, "the app's schema is in elsewhere.db");
    assert!(!dir.path().join("data/default.db").exists());
}
