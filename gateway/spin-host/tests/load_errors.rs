//! `SpinApp::load` fails early with actionable messages.

mod common;

use std::time::Duration;

use common::*;
use spin_host::{HostConfig, LoadError, SpinApp};

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn unsupported_import_is_named_and_spin_up_suggested() {
    let dir = tempfile::tempdir().unwrap();
    // A component importing an interface the host does not provide.
    let wasm = wat::parse_str(
        r#"(component
             (import "fermyon:spin/mqtt@2.0.0" (instance
               (export "get" (func (param "key" string) (result string))))))"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("mqtt.wasm"), wasm).unwrap();
    let manifest = write(
        dir.path(),
        "spin.toml",
        "spin_manifest_version = 2\n[application]\nname='mqtt'\n\
         [[trigger.http]]\nroute='/...'\ncomponent='mqtt'\n\
         [component.mqtt]\nsource='mqtt.wasm'\n",
    );
    let config = HostConfig {
        data_dir: dir.path().join("data"),
        ..HostConfig::default()
    };
    let err = SpinApp::load(&manifest, config).unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, LoadError::Component { .. }), "{msg}");
    assert!(msg.contains("`fermyon:spin/mqtt@2.0.0`"), "{msg}");
    assert!(msg.contains("spin up"), "{msg}");
    // What the host does provide is listed, key-value included.
    assert!(msg.contains("fermyon:spin/key-value@2.0.0"), "{msg}");
}

#[test]
fn missing_wasm_mentions_build() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "spin.toml",
        "spin_manifest_version = 2\n[[trigger.http]]\nroute='/'\ncomponent='c'\n[component.c]\nsource='missing.wasm'\n",
    );
    let err = SpinApp::load(
        &manifest,
        HostConfig {
            data_dir: dir.path().join("data"),
            ..HostConfig::default()
        },
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("missing.wasm") && msg.contains("cargo xtask build"),
        "{msg}"
    );
}

#[test]
fn missing_required_variable_fails_load() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "spin.toml",
        "spin_manifest_version = 2\n[variables]\nspin_host_test_token = { required = true }\n",
    );
    let err = SpinApp::load(
        &manifest,
        HostConfig {
            data_dir: dir.path().join("data"),
            request_timeout: Duration::from_secs(1),
            ..HostConfig::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::Variables(_)), "{err}");
    assert!(
        err.to_string()
            .contains("SPIN_VARIABLE_SPIN_HOST_TEST_TOKEN"),
        "{err}"
    );
}

#[test]
fn missing_manifest_is_a_manifest_error() {
    let err = SpinApp::load(
        std::path::Path::new("/nonexistent/spin.toml"),
        HostConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::Manifest { .. }), "{err}");
}

#[tokio::test]
async fn empty_app_answers_404_problem() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(dir.path(), "spin.toml", "spin_manifest_version = 2\n");
    let app = SpinApp::load(
        &manifest,
        HostConfig {
            data_dir: dir.path().join("data"),
            ..HostConfig::default()
        },
    )
    .unwrap();
    let r = get(&app, "/anything").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["title"], "Not Found");
}
