//! Proxy hygiene in external mode: hop-by-hop headers dropped, forwarding
//! headers set, request ids and trace context carried, bodies streamed both
//! ways without being held whole. And the same reserved-header rule for the
//! embedded host: a component sees the host's `spin-*` headers only.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use common::fake_spin::{self, Mode};
use common::{Options, client, start_with};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const MIB: usize = 1 << 20;

fn config(upstream: &str) -> String {
    format!(
        r#"
[spin]
mode = "external"
upstream = "{upstream}"

[[route]]
name = "echo"
match = {{ method = "GET", path = "/echo" }}
spin_path = "/echo"

[[route]]
name = "upload"
match = {{ method = "POST", path = "/upload" }}
spin_path = "/upload"
max_body_bytes = 134217728
timeout_ms = 60000

[[route]]
name = "download"
match = {{ method = "GET", path = "/download" }}
spin_path = "/download"
timeout_ms = 60000
"#
    )
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_and_forwarding_headers_set() {
    let fake = fake_spin::start(Mode::Ok).await;
    let gw = start_with(Options {
        config: Some(config(&fake.served.base)),
        manifest: None,
        ..Options::default()
    })
    .await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // Raw HTTP/1.1, so nothing in a client library filters the headers.
    let request = format!(
        "GET /echo?x=1 HTTP/1.1\r\nHost: api.example\r\nConnection: close, x-hop\r\n\
         x-hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
         Proxy-Authorization: Basic Zm9vOmJhcg==\r\nUpgrade: h2c\r\n\
         traceparent: {traceparent}\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n"
    );
    let raw = raw_exchange(&gw.base, &request).await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");

    let seen = fake.last_headers();
    for dropped in [
        "x-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            !seen.contains_key(dropped),
            "`{dropped}` must not be forwarded: {seen:?}"
        );
    }
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-host"], "api.example");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(
        seen["forwarded"],
        "for=127.0.0.1;proto=http;host=\"api.example\""
    );
    assert_eq!(seen["host"], fake.served.addr.to_string().as_str());
    assert_eq!(seen["traceparent"], traceparent);
    assert_eq!(fake.last_path(), "/echo?x=1");

    // A request id was generated, forwarded and echoed.
    let id = seen["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert!(
        raw.to_ascii_lowercase()
            .contains(&format!("x-request-id: {id}")),
        "echoed to the client: {raw}"
    );

    // A client's own id is kept.
    let response = client()
        .get(format!("{}/echo", gw.base))
        .header("x-request-id", "client-id-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-id-42");
    assert_eq!(fake.last_headers()["x-request-id"], "client-id-42");
}

/// Spin appends its own `spin-*` headers after the client's, so a client's
/// `spin-path-info` would be the one a component reads; and an upstream
/// must not be able to set the gateway's `x-gateway-*` headers.
#[tokio::test]
async fn reserved_headers_do_not_cross_the_proxy() {
    let fake = fake_spin::start(Mode::Ok).await;
    fake.add_response_header("x-gateway-fallback", "forged-reason");
    fake.add_response_header("x-gateway-backend", "native");
    fake.add_response_header("x-gateway-anything", "forged");
    let gw = start_with(Options {
        config: Some(config(&fake.served.base)),
        manifest: None,
        ..Options::default()
    })
    .await;
    let response = get_with_forged_headers(&format!("{}/echo", gw.base)).await;
    assert_eq!(response.status(), 200);

    let seen = fake.last_headers();
    let reserved: Vec<&str> = seen
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("spin-") || k.starts_with("x-gateway-"))
        .collect();
    assert!(reserved.is_empty(), "forwarded to Spin: {reserved:?}");
    assert_eq!(seen["spinach"], "not reserved");

    let headers = response.headers().clone();
    assert_eq!(headers["x-gateway-backend"], "spin-external");
    assert_eq!(
        headers.get_all("x-gateway-backend").iter().count(),
        1,
        "{headers:?}"
    );
    assert!(!headers.contains_key("x-gateway-fallback"), "{headers:?}");
    assert!(!headers.contains_key("x-gateway-anything"), "{headers:?}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["path_info"], "/fake",
        "the component sees Spin's own: {body}"
    );

    // A forged fallback reason must not reach the metrics either.
    let metrics = common::admin_metrics(&gw.admin).await;
    assert!(!metrics.contains("forged-reason"), "{metrics}");
}

/// `GET url` with a client's attempt at Spin's and the gateway's reserved
/// headers (mixed case included), and one harmless look-alike.
async fn get_with_forged_headers(url: &str) -> reqwest::Response {
    client()
        .get(url)
        .header("spin-path-info", "/../admin")
        .header("Spin-Client-Addr", "10.9.8.7:1")
        .header("spin-path-match-id", "7")
        .header("spin-full-url", "http://evil.example/")
        .header("x-gateway-backend", "native")
        .header("x-gateway-debug", "1")
        .header("spinach", "not reserved")
        .send()
        .await
        .unwrap()
}

async fn raw_exchange(base: &str, request: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out))
        .await
        .expect("the gateway closes the connection after Connection: close")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Signals between the test and the streaming upstream.
struct Signals {
    /// Set by the upstream when the first MiB of an upload arrived.
    upload_started: watch::Sender<bool>,
    /// Set by the test when the first MiB of a download arrived.
    download_started: watch::Sender<bool>,
}

async fn upload(State(s): State<Arc<Signals>>, request: Request) -> Response {
    let mut body = request.into_body();
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            received += data.len();
            if received >= MIB {
                s.upload_started.send_replace(true);
            }
        }
    }
    Response::new(Body::from(format!("{{\"received\": {received}}}")))
}

async fn download(State(s): State<Arc<Signals>>) -> Response {
    let mut started = s.download_started.subscribe();
    let stream = async_stream(move |tx| async move {
        let _ = tx.send(Ok(Bytes::from(vec![b'a'; MIB]))).await;
        // The rest only once the client holds the first MiB: a gateway that
        // buffered the whole response would wait here forever.
        let _ = started.wait_for(|s| *s).await;
        for _ in 0..63 {
            if tx.send(Ok(Bytes::from(vec![b'b'; MIB]))).await.is_err() {
                return;
            }
        }
    });
    Response::new(Body::from_stream(stream))
}

/// A body stream fed by a task.
fn async_stream<F, Fut>(
    producer: F,
) -> tokio_stream::wrappers::ReceiverStream<Result<Bytes, std::io::Error>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(producer(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[tokio::test]
async fn large_uploads_and_downloads_stream_through() {
    let signals = Arc::new(Signals {
        upload_started: watch::channel(false).0,
        download_started: watch::channel(false).0,
    });
    let upstream = common::serve(
        axum::Router::new()
            .route("/upload", axum::routing::post(upload))
            .route("/download", axum::routing::get(download))
            .with_state(signals.clone()),
    )
    .await;
    let gw = start_with(Options {
        config: Some(config(&upstream.base)),
        manifest: None,
        ..Options::default()
    })
    .await;

    // Upload 64 MiB; the last 63 only after the upstream saw the first one.
    let mut upload_started = signals.upload_started.subscribe();
    let body = async_stream(move |tx| async move {
        let _ = tx.send(Ok(Bytes::from(vec![b'u'; MIB]))).await;
        let _ = upload_started.wait_for(|s| *s).await;
        for _ in 0..63 {
            if tx.send(Ok(Bytes::from(vec![b'v'; MIB]))).await.is_err() {
                return;
            }
        }
    });
    let response = tokio::time::timeout(
        Duration::from_secs(60),
        client()
            .post(format!("{}/upload", gw.base))
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    )
    .await
    .expect("upload streams: the upstream saw the first MiB before the client sent the rest")
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        format!("{{\"received\": {}}}", 64 * MIB)
    );

    // Download 64 MiB; the upstream sends the rest only once the client has
    // the first MiB.
    let mut response = client()
        .get(format!("{}/download", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut total = 0usize;
    let read_all = async {
        while let Some(chunk) = response.chunk().await.unwrap() {
            total += chunk.len();
            if total >= MIB {
                signals.download_started.send_replace(true);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_all)
        .await
        .expect("download streams: the first MiB arrived before the upstream finished");
    assert_eq!(total, 64 * MIB);
}

/// In embedded mode too, a component reads only the host's own `spin-*`
/// headers and never the client's `x-gateway-*` (the gateway's).
#[tokio::test]
async fn reserved_headers_never_reach_an_embedded_component() {
    let gw = common::start_misbehave(
        "",
        "[[route]]\nname = \"headers\"\nmatch = { method = \"GET\", path = \"/headers\" }\n\
         spin_path = \"/headers\"\n",
    )
    .await;
    let response = get_with_forged_headers(&format!("{}/headers", gw.base)).await;
    assert_eq!(response.status(), 200);
    let seen = response.text().await.unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    assert!(lines.contains(&"spinach: not reserved"), "{seen}");
    assert!(
        lines.contains(&"spin-path-info: "),
        "the host's own: {seen}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("x-gateway-")),
        "the client's x-gateway-* reached the component: {seen}"
    );
    assert!(
        !seen.contains("10.9.8.7") && !seen.contains("/../admin"),
        "{seen}"
    );
}
