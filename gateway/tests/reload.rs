//! Hot reload: a new file is validated before it replaces the running one;
//! a bad file changes nothing; requests in flight finish on the config they
//! started with.

mod common;

use std::time::Duration;

use common::fake_spin::{self, Mode};
use common::{Options, client, expect_problem, start_with};

fn config(upstream: &str, validate_backend: &str, extra_route: bool) -> String {
    let mut text = format!(
        r#"
[spin]
mode = "external"
upstream = "{upstream}"

[[route]]
name = "validate"
match = {{ method = "POST", path = "/validate" }}
backend = "{validate_backend}"
spin_path = "/validate"
native = "validate"
"#
    );
    if extra_route {
        text.push_str(
            r#"
[[route]]
name = "slow"
match = { method = "GET", path = "/slow" }
spin_path = "/slow"
timeout_ms = 60000
"#,
        );
    }
    text
}

#[tokio::test]
async fn reload_applies_good_files_and_keeps_running_on_bad_ones() {
    let fake = fake_spin::start(Mode::Ok).await;
    let gw = start_with(Options {
        config: Some(config(&fake.served.base, "spin", true)),
        manifest: None,
        ..Options::default()
    })
    .await;
    let path = gw.data_dir.path().join("gateway.toml");
    let http = client();
    let validate = || {
        http.post(format!("{}/validate", gw.base))
            .header("content-type", "application/json")
            .body(r#"{"items": []}"#)
            .send()
    };
    assert_eq!(
        validate().await.unwrap().headers()["x-gateway-backend"],
        "spin-external"
    );

    // A request in flight on the old config...
    fake.set_mode(Mode::Hang);
    let slow = tokio::spawn(http.get(format!("{}/slow", gw.base)).send());
    for _ in 0..200 {
        if fake.hits() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // ...while a new file switches validate to native and drops /slow.
    std::fs::write(&path, config(&fake.served.base, "native", false)).unwrap();
    let reloaded = http
        .post(format!("{}/admin/config/reload", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(reloaded.status(), 200);
    let report: serde_json::Value = reloaded.json().await.unwrap();
    assert_eq!(report["report"]["routes"], serde_json::json!(["validate"]));
    assert_eq!(
        validate().await.unwrap().headers()["x-gateway-backend"],
        "native"
    );
    let gone = http.get(format!("{}/slow", gw.base)).send().await.unwrap();
    expect_problem(gone, 404).await;

    // The in-flight request completes on the route it started with.
    fake.open_gate();
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status(), 200);
    assert_eq!(slow.headers()["x-gateway-backend"], "spin-external");

    // A bad file: refused with file, line and field; the running config stays.
    std::fs::write(
        &path,
        config(&fake.served.base, "native", false)
            .replace("native = \"validate\"", "native = \"validat\""),
    )
    .unwrap();
    let refused = http
        .post(format!("{}/admin/config/reload", gw.admin))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(refused, 422).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("gateway.toml:11:"),
        "file and line: {detail}"
    );
    assert!(detail.contains("route[0].native"), "field: {detail}");
    assert!(detail.contains("unchanged"), "{detail}");
    assert_eq!(
        validate().await.unwrap().headers()["x-gateway-backend"],
        "native"
    );

    // The admin view shows what runs.
    let shown: serde_json::Value = common::get_json(&format!("{}/admin/config", gw.admin)).await;
    assert_eq!(shown["routes"][0]["backend"], "native");
    assert_eq!(shown["spin"]["mode"], "external");
}
