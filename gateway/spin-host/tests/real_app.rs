//! The repository's real `spin.toml` loads in the embedded host.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_manifest_loads_and_unknown_routes_are_404() {
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
    let app = load(&manifest, Duration::from_secs(30), 128 * 1024 * 1024);
    assert!(!app.component_ids().is_empty());
    let r = get(&app, "/definitely/not/a/route/xyz").await;
    assert!(
        r.status == 404 || r.status < 500,
        "status {}: {}",
        r.status,
        r.body
    );
}
