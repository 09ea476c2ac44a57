//! A component that traps or never returns must not take the gateway down:
//! the request gets a problem+json 500/504 and the next request is served.

mod common;

use std::time::Duration;

use common::{client, expect_problem, start_misbehave};

#[tokio::test]
async fn traps_and_endless_loops_are_contained() {
    let mut routes = String::new();
    for name in ["ok", "trap", "loop", "hog"] {
        routes.push_str(&format!(
            "[[route]]\nname = \"{name}\"\nmatch = {{ method = \"GET\", path = \"/{name}\" }}\n\
             spin_path = \"/{name}\"\ntimeout_ms = 10000\n"
        ));
    }
    let gw = start_misbehave(
        "component_timeout_ms = 2000\ncomponent_memory_mib = 64",
        &routes,
    )
    .await;
    let http = client();
    let get = |path: &str| http.get(format!("{}{path}", gw.base)).send();

    assert_eq!(get("/ok").await.unwrap().status(), 200);
    let trap = expect_problem(get("/trap").await.unwrap(), 500).await;
    assert!(
        trap["detail"].as_str().unwrap().contains("misbehave"),
        "{trap}"
    );
    assert_eq!(get("/ok").await.unwrap().status(), 200);
    expect_problem(get("/loop").await.unwrap(), 504).await;
    assert_eq!(get("/ok").await.unwrap().status(), 200);
    expect_problem(get("/hog").await.unwrap(), 500).await;
    let ok = get("/ok").await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "ok");

    // Endless loops running at the same time do not starve a healthy
    // request, even on this single-threaded runtime that also runs the
    // gateway: guests yield at every epoch tick. `/ok` must be answered
    // while the loops still run (they end only at their 2 s deadline).
    let loops: Vec<_> = (0..4).map(|_| tokio::spawn(get("/loop"))).collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get("/ok").await.unwrap().status(), 200);
    assert!(
        loops.iter().all(|h| !h.is_finished()),
        "/ok was only served after the loops hit their deadline"
    );
    for handle in loops {
        assert_eq!(handle.await.unwrap().unwrap().status(), 504);
    }
}

/// The route's timeout, shorter than the host's, ends the guest too: with a
/// single instance slot, the next request gets it right away instead of
/// waiting for the component's own (60 s) deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_timeout_aborts_the_guest_and_frees_its_slot() {
    let gw = start_misbehave(
        "component_timeout_ms = 60000\nmax_instances = 1",
        "[[route]]\nname = \"loop\"\nmatch = { method = \"GET\", path = \"/loop\" }\nspin_path = \"/loop\"\ntimeout_ms = 300\n\
         [[route]]\nname = \"ok\"\nmatch = { method = \"GET\", path = \"/ok\" }\nspin_path = \"/ok\"\n",
    )
    .await;
    let http = client();
    let looped = tokio::spawn(http.get(format!("{}/loop", gw.base)).send());
    // While the guest runs, the pool gauge shows its slot busy.
    let mut seen = String::new();
    for _ in 0..100 {
        seen = pool_series(&gw.admin).await;
        if seen.contains("state=\"busy\"} 1") || looped.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen.contains("state=\"busy\"} 1"), "{seen}");
    assert!(seen.contains("state=\"capacity\"} 1"), "{seen}");
    assert!(
        seen.contains("gateway_in_flight_requests{backend=\"spin-embedded\"} 1"),
        "{seen}"
    );
    expect_problem(looped.await.unwrap().unwrap(), 504).await;
    // The abort is asynchronous (the guest stops at its next epoch tick):
    // poll, bounded far below the 60 s the guest would otherwise run.
    let mut last = 0;
    for _ in 0..100 {
        last = http
            .get(format!("{}/ok", gw.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if last == 200 {
            let seen = pool_series(&gw.admin).await;
            assert!(seen.contains("state=\"busy\"} 0"), "{seen}");
            assert!(
                seen.contains("gateway_in_flight_requests{backend=\"spin-embedded\"} 0"),
                "{seen}"
            );
            return;
        }
        assert_eq!(last, 503, "only a full pool may answer /ok");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/ok still gets {last}: the timed-out guest kept its slot");
}

/// The `gateway_wasm_instances` and `gateway_in_flight_requests` lines of
/// the admin `/metrics`.
async fn pool_series(admin: &str) -> String {
    let text = common::admin_metrics(admin).await;
    text.lines()
        .filter(|l| {
            l.starts_with("gateway_wasm_instances") || l.starts_with("gateway_in_flight_requests")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
