//! A component that traps or never returns must not take the gateway down:
//! the request gets a problem+json 500/504 and the next request is served.

mod common;

use std::time::Duration;

use common::{Options, client, expect_problem, repo_root, require_wasm, start_with};

#[tokio::test]
async fn traps_and_endless_loops_are_contained() {
    require_wasm("misbehave.wasm");
    let manifest = repo_root().join("gateway/spin-host/tests/fixtures/misbehave.toml");
    let mut config = format!(
        "[spin]\nmode = \"embedded\"\nmanifest = {manifest:?}\ncomponent_timeout_ms = 2000\ncomponent_memory_mib = 64\n"
    );
    for name in ["ok", "trap", "loop", "hog"] {
        config.push_str(&format!(
            "[[route]]\nname = \"{name}\"\nmatch = {{ method = \"GET\", path = \"/{name}\" }}\n\
             spin_path = \"/{name}\"\ntimeout_ms = 10000\n"
        ));
    }
    let gw = start_with(Options {
        config: Some(config),
        manifest: None,
        ..Options::default()
    })
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

    // Endless loops running at the same time do not starve a healthy request.
    let loops: Vec<_> = (0..4).map(|_| tokio::spawn(get("/loop"))).collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get("/ok").await.unwrap().status(), 200);
    for handle in loops {
        assert_eq!(handle.await.unwrap().unwrap().status(), 504);
    }
}
