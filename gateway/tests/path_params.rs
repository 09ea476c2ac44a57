//! Path parameters that would change the backend path's meaning once
//! decoded (`..`, `/`, `\`, NUL) are refused with a 400 problem and never
//! reach Spin.

mod common;

use std::time::Duration;

use common::fake_spin::{self, Mode};
use common::{Options, start_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(upstream: &str) -> String {
    format!(
        r#"
[spin]
mode = "external"
upstream = "{upstream}"

[[route]]
name = "get"
match = {{ method = "GET", path = "/items/{{id}}" }}
spin_path = "/list/{{id}}"
"#
    )
}

/// One raw HTTP/1.1 exchange: client libraries normalise `..` and `%2e%2e`
/// away before sending, which is exactly what must be tested here.
async fn raw_get(base: &str, path: &str) -> (u16, String, String) {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out))
        .await
        .expect("the gateway answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn unsafe_path_parameters_are_refused_before_spin() {
    let fake = fake_spin::start(Mode::Ok).await;
    let gw = start_with(Options {
        config: Some(config(&fake.served.base)),
        manifest: None,
        ..Options::default()
    })
    .await;

    for path in [
        "/items/..",
        "/items/.",
        "/items/%2e%2e",
        "/items/%2E.",
        "/items/a%2Fb",
        "/items/%2F",
        "/items/a%5Cb",
        "/items/a%00b",
        "/items/%C0%AE",
    ] {
        let (status, head, body) = raw_get(&gw.base, path).await;
        assert_eq!(status, 400, "{path}: {head}\n{body}");
        assert!(
            head.contains("content-type: application/problem+json"),
            "{path}: {head}"
        );
        let problem: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: a JSON problem ({e}): {body}"));
        assert_eq!(problem["status"], 400, "{problem}");
        assert_eq!(problem["parameter"], "id", "{problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("`id`"),
            "the detail names the parameter: {detail}"
        );
    }
    assert_eq!(fake.hits(), 0, "nothing unsafe was forwarded");

    // Ordinary values (dots included) still go through, re-encoded.
    let (status, _, body) = raw_get(&gw.base, "/items/...").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.last_path(), "/list/...");
    let (status, _, body) = raw_get(&gw.base, "/items/a%20b").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.last_path(), "/list/a%20b");
    assert_eq!(fake.hits(), 2);
}
