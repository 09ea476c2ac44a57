//! Failure isolation with the repo's `misbehave` component: a trap, an
//! endless loop and a memory hog each fail only their own request.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use spin_host::SpinApp;

// Generous: the memory hog must hit the memory cap, not the deadline, even on a busy machine.
const TIMEOUT: Duration = Duration::from_millis(2000);
const MAX_MEMORY: usize = 64 * 1024 * 1024;

/// Compiling is slow in debug builds, so all tests share one app.
fn app() -> &'static SpinApp {
    static APP: OnceLock<SpinApp> = OnceLock::new();
    APP.get_or_init(|| {
        require_wasm(&crate_path(
            "../../target/wasm32-wasip2/release/misbehave.wasm",
        ));
        load(
            &crate_path("tests/fixtures/misbehave.toml"),
            TIMEOUT,
            MAX_MEMORY,
        )
    })
}

async fn assert_ok(app: &SpinApp) {
    let r = get(app, "/ok").await;
    assert_eq!(r.status, 200, "next request must succeed: {}", r.body);
    assert!(r.body_error.is_none(), "{:?}", r.body_error);
}

fn assert_problem(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "body: {}", r.body);
    assert_eq!(r.content_type, "application/problem+json");
    let v = r.json();
    assert_eq!(v["status"], status);
    assert_eq!(v["type"], "about:blank");
    assert!(
        v["detail"].as_str().unwrap_or("").contains("misbehave"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ok_route_serves_200_with_served_extension() {
    let app = app();
    let r = get(app, "/ok").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let served = r.served.expect("Served extension");
    assert_eq!(served.component, "misbehave");
    eprintln!("instantiate took {:?}", served.instantiate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_is_500_problem_and_next_request_succeeds() {
    let app = app();
    let r = get(app, "/trap").await;
    assert_problem(&r, 500);
    assert_eq!(r.json()["title"], "Component failed");
    assert!(r.served.is_some());
    assert_ok(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_is_504_problem_and_next_request_succeeds() {
    let app = app();
    // An endless loop ends only because the deadline interrupts it: the 504
    // is the proof (no wall-clock assertion).
    let r = get(app, "/loop").await;
    assert_problem(&r, 504);
    assert_ok(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_is_500_problem_and_next_request_succeeds() {
    let app = app();
    let r = get(app, "/hog").await;
    assert_problem(&r, 500);
    // The memory cap stopped it, not the deadline or some other trap.
    let detail = r.json()["detail"].as_str().unwrap_or("").to_string();
    assert!(detail.contains("memory limit"), "{detail}");
    assert_ok(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_404_problem() {
    let app = app();
    let r = get(app, "/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.content_type, "application/problem+json");
    assert!(r.served.is_none());
}
