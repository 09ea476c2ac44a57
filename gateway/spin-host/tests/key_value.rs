//! `fermyon:spin/key-value@2.0.0` with the repo's `kv` component: every
//! operation, persistence across a restart, Spin's permission rules and the
//! per-instance store limit.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use spin_host::{HostConfig, LoadError, SpinApp};

fn manifest() -> std::path::PathBuf {
    require_wasm(&crate_path("../../target/wasm32-wasip2/release/kv.wasm"));
    crate_path("tests/fixtures/kv.toml")
}

/// The kv app on `data_dir` (each test its own, so stores start empty).
fn load_on(data_dir: &Path) -> SpinApp {
    let config = HostConfig {
        data_dir: data_dir.to_path_buf(),
        request_timeout: Duration::from_secs(10),
        max_concurrent_instances: 10,
        ..HostConfig::default()
    };
    SpinApp::load(&manifest(), config).unwrap_or_else(|e| panic!("load failed: {e}"))
}

async fn expect(app: &SpinApp, method: &str, uri: &str, body: &str, status: u16, want: &str) {
    let r = send(app, method, uri, body).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (status, want),
        "{method} {uri}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_behaves_as_in_spin() {
    let dir = tempfile::tempdir().unwrap();
    let app = load_on(dir.path());
    // An empty store has no keys.
    expect(&app, "GET", "/kv/default/keys", "", 200, "").await;
    expect(&app, "GET", "/kv/default/exists/a", "", 200, "false").await;
    expect(&app, "GET", "/kv/default/get/a", "", 404, "absent").await;

    expect(&app, "POST", "/kv/default/set/a", "one", 200, "ok").await;
    expect(&app, "POST", "/kv/default/set/b", "two", 200, "ok").await;
    expect(&app, "GET", "/kv/default/get/a", "", 200, "one").await;
    expect(&app, "GET", "/kv/default/exists/a", "", 200, "true").await;
    expect(&app, "GET", "/kv/default/keys", "", 200, "a\nb").await;

    // `set` overwrites; `delete` removes, and deleting nothing is no error.
    expect(&app, "POST", "/kv/default/set/a", "uno", 200, "ok").await;
    expect(&app, "GET", "/kv/default/get/a", "", 200, "uno").await;
    expect(&app, "POST", "/kv/default/delete/a", "", 200, "ok").await;
    expect(&app, "POST", "/kv/default/delete/a", "", 200, "ok").await;
    expect(&app, "GET", "/kv/default/get/a", "", 404, "absent").await;
    expect(&app, "GET", "/kv/default/exists/a", "", 200, "false").await;
    expect(&app, "GET", "/kv/default/keys", "", 200, "b").await;

    // Stored as Spin stores it, where Spin keeps its default store.
    let conn = rusqlite::Connection::open(dir.path().join("sqlite_key_value.db")).unwrap();
    let value: Vec<u8> = conn
        .query_row(
            "SELECT value FROM spin_key_value WHERE store = 'default' AND key = 'b'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(value, b"two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_survive_a_restart_on_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let app = load_on(dir.path());
    expect(
        &app,
        "POST",
        "/kv/default/set/kept",
        "across restarts",
        200,
        "ok",
    )
    .await;
    drop(app);
    let app = load_on(dir.path());
    expect(
        &app,
        "GET",
        "/kv/default/get/kept",
        "",
        200,
        "across restarts",
    )
    .await;
    expect(&app, "GET", "/kv/default/keys", "", 200, "kept").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeclared_label_is_access_denied() {
    let dir = tempfile::tempdir().unwrap();
    let app = load_on(dir.path());
    // Not in the component's key_value_stores: denied, whether or not a
    // store of that name exists.
    expect(&app, "GET", "/kv/cache/get/x", "", 403, "access-denied").await;
    expect(&app, "GET", "/none/default/keys", "", 403, "access-denied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_see_a_store_only_through_their_grant() {
    let dir = tempfile::tempdir().unwrap();
    let app = load_on(dir.path());
    expect(&app, "POST", "/kv/default/set/shared", "from kv", 200, "ok").await;
    // The same label is the same store for every component granted it.
    expect(&app, "GET", "/also/default/get/shared", "", 200, "from kv").await;
    // A component without the grant can neither read nor write it.
    expect(
        &app,
        "GET",
        "/none/default/get/shared",
        "",
        403,
        "access-denied",
    )
    .await;
    expect(
        &app,
        "POST",
        "/none/default/set/shared",
        "overwrite",
        403,
        "access-denied",
    )
    .await;
    expect(&app, "GET", "/kv/default/get/shared", "", 200, "from kv").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let app = load_on(dir.path());
    // 256 open stores per instance, then Spin's `store-table-full`.
    expect(
        &app,
        "GET",
        "/kv/default/open-many/300",
        "",
        200,
        "256 store-table-full",
    )
    .await;
    // Keys longer than 255 bytes are refused, saying why.
    let long = "k".repeat(256);
    let r = send(&app, "POST", &format!("/kv/default/set/{long}"), "v").await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.body.contains("at most 255 bytes"), "{}", r.body);
    let fits = "k".repeat(255);
    expect(
        &app,
        "POST",
        &format!("/kv/default/set/{fits}"),
        "v",
        200,
        "ok",
    )
    .await;
}

#[test]
fn a_declared_label_without_a_store_fails_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        "spin_manifest_version = 2\n[application]\nname='kv'\n\
         [[trigger.http]]\nroute='/...'\ncomponent='kv'\n\
         [component.kv]\nsource='kv.wasm'\nkey_value_stores=['default', 'cache']\n",
    )
    .unwrap();
    let config = HostConfig {
        data_dir: dir.path().join("data"),
        ..HostConfig::default()
    };
    let err = SpinApp::load(&manifest, config).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::Component { .. }), "{msg}");
    assert!(
        msg.contains("unknown key_value_stores label \"cache\"") && msg.contains("spin up"),
        "{msg}"
    );
}

/// A manifest in `dir` running the kv component with `stores` granted.
fn manifest_in(dir: &Path, stores: &str) -> std::path::PathBuf {
    let wasm = crate_path("../../target/wasm32-wasip2/release/kv.wasm");
    require_wasm(&wasm);
    let manifest = dir.join("spin.toml");
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[application]\nname='kv'\n\
             [[trigger.http]]\nroute='/kv/...'\ncomponent='kv'\n\
             [component.kv]\nsource='{}'\nkey_value_stores={stores}\n",
            wasm.display()
        ),
    )
    .unwrap();
    manifest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_config_gives_a_label_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_in(dir.path(), "['default', 'cache']");
    let runtime_config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &runtime_config,
        "[key_value_store.cache]\ntype = \"spin\"\npath = \"stores/cache.db\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("stores")).unwrap();
    let config = HostConfig {
        data_dir: dir.path().join("data"),
        runtime_config_file: Some(runtime_config),
        ..HostConfig::default()
    };
    let app = SpinApp::load(&manifest, config).unwrap_or_else(|e| panic!("load failed: {e}"));
    expect(&app, "POST", "/kv/cache/set/k", "cached", 200, "ok").await;
    expect(&app, "GET", "/kv/cache/get/k", "", 200, "cached").await;
    expect(&app, "GET", "/kv/default/get/k", "", 404, "absent").await;
    // In the file the runtime config names, relative to its directory.
    let conn = rusqlite::Connection::open(dir.path().join("stores/cache.db")).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM spin_key_value WHERE store = 'cache' AND key = 'k'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn a_runtime_config_the_host_cannot_honour_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_in(dir.path(), "['default']");
    let runtime_config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &runtime_config,
        "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://localhost\"\n",
    )
    .unwrap();
    let config = HostConfig {
        data_dir: dir.path().join("data"),
        runtime_config_file: Some(runtime_config),
        ..HostConfig::default()
    };
    let err = SpinApp::load(&manifest, config).unwrap_err().to_string();
    assert!(
        err.contains("type = \"redis\"")
            && err.contains("external mode")
            && err.contains("spin up"),
        "{err}"
    );
}
