//! Response framing and routing headers, compared with `spin up`.
//!
//! hyper frames a response from its body: one that `is_end_stream()` when
//! the head is written gets `content-length: 0` (none for HEAD, 204 and
//! 304), one with an exact `size_hint` gets that `content-length`, anything
//! else is chunked. Spin answers a component's empty response with
//! `content-length: 0`, so the host's body must say it is empty before the
//! head goes out.

mod common;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use spin_host::{HostBody, SpinApp};

fn app() -> &'static SpinApp {
    static APP: OnceLock<SpinApp> = OnceLock::new();
    APP.get_or_init(|| {
        require_wasm(&crate_path(
            "../../target/wasm32-wasip2/release/misbehave.wasm",
        ));
        load(
            &crate_path("tests/fixtures/misbehave.toml"),
            Duration::from_secs(10),
            64 << 20,
        )
    })
}

async fn raw(method: &str, uri: &str) -> http::Response<HostBody> {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "test.local:3000")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let addr: SocketAddr = "127.0.0.1:4242".parse().expect("addr");
    app().handle(req, addr).await
}

/// What hyper sees when it writes the head: (status, end of stream, exact size).
async fn framing(method: &str, uri: &str) -> (u16, bool, Option<u64>, http::Response<HostBody>) {
    let resp = raw(method, uri).await;
    let body = resp.body();
    (
        resp.status().as_u16(),
        body.is_end_stream(),
        body.size_hint().exact(),
        resp,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_response_is_known_empty_before_the_head_is_sent() {
    let (status, end, size, resp) = framing("GET", "/empty").await;
    assert_eq!((status, end, size), (200, true, Some(0)));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_content_and_not_modified_carry_no_body() {
    for (uri, want) in [("/no-content", 204), ("/not-modified", 304)] {
        let (status, end, size, _) = framing("GET", uri).await;
        assert_eq!((status, end, size), (want, true, Some(0)), "{uri}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_is_the_exact_size() {
    let (status, end, size, resp) = framing("GET", "/sized").await;
    assert_eq!((status, end, size), (200, false, Some(5)));
    assert_eq!(resp.headers()["content-length"], "5");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"sized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_unknown_length_streams_whole() {
    let (status, end, size, resp) = framing("GET", "/ok").await;
    assert_eq!((status, end, size), (200, false, None));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_gets_the_head_of_the_get() {
    let (status, _, _, resp) = framing("HEAD", "/sized").await;
    assert_eq!(status, 200);
    assert_eq!(resp.headers()["content-length"], "5");
    let (status, end, size, _) = framing("HEAD", "/empty").await;
    assert_eq!((status, end, size), (200, true, Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_with_underscores_arrive_under_spins_header_names() {
    let r = get(app(), "/base/one/two/headers").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let lines: Vec<&str> = r.body.lines().collect();
    assert!(
        lines.contains(&"spin-path-match-path-segment: one"),
        "{}",
        r.body
    );
    assert!(
        lines.contains(&"spin-path-match-path-end: two"),
        "{}",
        r.body
    );
    // The route itself keeps its `:path_segment` (Spin reports it as
    // written); only header names change.
    let names: Vec<&str> = lines.iter().filter_map(|l| l.split(':').next()).collect();
    assert!(names.iter().all(|n| !n.contains('_')), "{}", r.body);
}
