//! Instance reuse, the instance pool, deadlines that yield, and guests
//! aborted when nobody waits for them, against the real `misbehave`
//! component (whose `/count` answers how many requests its instance served).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use spin_host::{HostConfig, PoolFull, ReusePolicy, SpinApp};

const MISBEHAVE_WASM: &str = "../../target/wasm32-wasip2/release/misbehave.wasm";

/// The misbehave app with `reuse` for its one component (None: Spin's
/// fresh instance per request).
fn misbehave(reuse: Option<ReusePolicy>, timeout: Duration, slots: u32) -> Arc<SpinApp> {
    require_wasm(&crate_path(MISBEHAVE_WASM));
    let config = HostConfig {
        data_dir: tempfile::tempdir().expect("tempdir").keep(),
        request_timeout: timeout,
        max_memory_bytes: 64 << 20,
        max_concurrent_instances: slots,
        reuse: reuse
            .map(|r| HashMap::from([("misbehave".to_string(), r)]))
            .unwrap_or_default(),
        ..HostConfig::default()
    };
    let app = SpinApp::load(&crate_path("tests/fixtures/misbehave.toml"), config)
        .unwrap_or_else(|e| panic!("load failed: {e}"));
    Arc::new(app)
}

fn reuse(max_requests: u32) -> Option<ReusePolicy> {
    Some(ReusePolicy {
        max_requests,
        idle: Duration::from_secs(600),
    })
}

async fn count(app: &SpinApp) -> (String, u32) {
    let r = get(app, "/count").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let served = r.served.expect("Served extension");
    (r.body, served.instance_request)
}

fn request(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .uri(path)
        .header("host", "test.local:3000")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

fn client() -> SocketAddr {
    "127.0.0.1:4242".parse().expect("addr")
}

/// Waits (bounded: a hang fails the test) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_instance_per_request_is_the_default() {
    let app = misbehave(None, Duration::from_secs(10), 4);
    for _ in 0..3 {
        assert_eq!(count(&app).await, ("1".to_string(), 1));
    }
    assert_eq!(app.pool_stats().idle, 0, "nothing is kept without reuse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_serves_requests_serially_and_recycles_after_max_requests() {
    let app = misbehave(reuse(3), Duration::from_secs(10), 4);
    let mut seen = Vec::new();
    for _ in 0..7 {
        let (body, nth) = count(&app).await;
        assert_eq!(body, nth.to_string(), "the host and the guest agree");
        seen.push(nth);
    }
    assert_eq!(seen, [1, 2, 3, 1, 2, 3, 1]);
    assert_eq!(app.pool_stats().idle, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_recycles_the_instance_and_the_next_request_succeeds() {
    let app = misbehave(reuse(100), Duration::from_secs(10), 4);
    assert_eq!(count(&app).await.1, 1);
    assert_eq!(count(&app).await.1, 2);
    let trapped = get(&app, "/trap").await;
    assert_eq!(trapped.status, 500, "{}", trapped.body);
    assert_eq!(
        trapped.served.expect("served").instance_request,
        3,
        "the trap ran on the warm instance"
    );
    assert_eq!(count(&app).await, ("1".to_string(), 1), "a new instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_recycles_the_instance() {
    let app = misbehave(reuse(100), Duration::from_millis(300), 4);
    assert_eq!(count(&app).await.1, 1);
    let r = get(&app, "/loop").await;
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(count(&app).await, ("1".to_string(), 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_is_recycled_after_idle_time() {
    let app = misbehave(
        Some(ReusePolicy {
            max_requests: 100,
            idle: Duration::from_millis(50),
        }),
        Duration::from_secs(10),
        4,
    );
    assert_eq!(count(&app).await.1, 1);
    assert_eq!(count(&app).await.1, 2);
    // The sweeper thread gives the slot back without a request asking.
    eventually("the idle instance is swept", || app.pool_stats().idle == 0).await;
    assert_eq!(count(&app).await.1, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_each_get_their_own_instance() {
    let app = misbehave(reuse(1000), Duration::from_secs(30), 16);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move { count(&app).await }));
    }
    for t in tasks {
        let (body, nth) = t.await.expect("join");
        assert_eq!(body, nth.to_string());
    }
    let stats = app.pool_stats();
    assert_eq!(stats.busy, 0);
    assert!(stats.idle >= 1 && stats.idle <= 16, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_is_a_typed_503_and_a_dropped_request_aborts_its_guest() {
    // One slot, a deadline far longer than the test may take.
    let app = misbehave(None, Duration::from_secs(600), 1);
    let looping = {
        let app = app.clone();
        tokio::spawn(async move { app.handle(request("/loop"), client()).await })
    };
    eventually("the loop occupies the only slot", || {
        app.pool_stats().busy == 1
    })
    .await;

    let full = app.handle(request("/ok"), client()).await;
    assert_eq!(full.status(), 503);
    assert_eq!(full.headers()["retry-after"], "1");
    assert_eq!(full.headers()["content-type"], "application/problem+json");
    let marker = full.extensions().get::<PoolFull>().expect("typed PoolFull");
    assert_eq!(marker.component, "misbehave");
    assert_eq!(marker.capacity, 1);

    // The client gives up: the guest must stop and free its slot long
    // before its 600 s deadline.
    looping.abort();
    eventually("the aborted guest frees its slot", || {
        app.pool_stats().busy == 0
    })
    .await;
    assert_eq!(get(&app, "/ok").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_shorter_deadline_interrupts_the_guest() {
    let app = misbehave(None, Duration::from_secs(600), 2);
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        app.handle_within(request("/loop"), client(), Duration::from_millis(200)),
    )
    .await
    .expect("the caller's 200 ms deadline applies, not the host's 600 s");
    assert_eq!(r.status(), 504);
}

/// On a single-threaded runtime a guest spinning in a loop must still let
/// other requests run: it yields at every epoch tick.
#[tokio::test(flavor = "current_thread")]
async fn a_cpu_bound_guest_does_not_block_the_runtime() {
    let app = misbehave(None, Duration::from_secs(5), 4);
    let looping = {
        let app = app.clone();
        tokio::spawn(async move { app.handle(request("/loop"), client()).await })
    };
    eventually("the loop is running", || app.pool_stats().busy == 1).await;
    let ok = get(&app, "/ok").await;
    assert_eq!(ok.status, 200);
    assert!(
        !looping.is_finished(),
        "/ok must be served while the loop still runs, not after its deadline"
    );
    let looped = looping.await.expect("join");
    assert_eq!(looped.status(), 504);
}
