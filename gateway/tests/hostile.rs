//! Hostile input over raw TCP, in both Spin modes: embedded (components
//! in-process) and external (the gateway proxying to `gateway serve-spin`,
//! the stand-in for `spin up`).
//!
//! Every case writes bytes no well-behaved client library would send, then
//! reads the raw answer under a deadline, so a hang fails the test instead
//! of stalling it. Each case must get a clear 4xx (problem+json where the
//! gateway or a component answers; for protocol errors hyper's own status
//! line and a closed connection), and must leave nothing stored.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Options, Served, client, require_app_wasm, start_spin_standin};
use gateway::runtime::{Gateway, Overrides};
use gateway::server;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// How long any single exchange may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(20);
/// The short timeouts the hostile gateway runs with.
const HEADER_TIMEOUT_MS: u64 = 1000;
const BODY_TIMEOUT_MS: u64 = 1000;

#[derive(Clone, Copy, Debug)]
enum Mode {
    Embedded,
    External,
}

/// A gateway on a real listener (the one `main` uses, with `[server]`
/// settings applied), plus the stand-in Spin in external mode.
struct Hostile {
    addr: SocketAddr,
    base: String,
    admin: String,
    mode: Mode,
    _gateway: Arc<Gateway>,
    _dir: TempDir,
    _spin: Option<(Served, TempDir)>,
    _admin: Served,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The built-in routes with short header and body timeouts, and `extra`
/// appended to `[server]`.
fn config(extra: &str) -> String {
    gateway::config::BUILTIN.replacen(
        "[server]\n",
        &format!(
            "[server]\nheader_read_timeout_ms = {HEADER_TIMEOUT_MS}\nbody_read_timeout_ms = {BODY_TIMEOUT_MS}\n{extra}\n"
        ),
        1,
    )
}

async fn start(mode: Mode) -> Hostile {
    start_with(mode, config("")).await
}

async fn start_with(mode: Mode, config_text: String) -> Hostile {
    require_app_wasm();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config_text).expect("write config");
    let spin = match mode {
        Mode::Embedded => None,
        Mode::External => {
            let data = tempfile::tempdir().expect("temp dir");
            let served = start_spin_standin(data.path()).await;
            Some((served, data))
        }
    };
    let options = Options::default();
    let overrides = Overrides {
        manifest: match mode {
            Mode::Embedded => options.manifest.clone(),
            Mode::External => None,
        },
        upstream: spin
            .as_ref()
            .map(|(s, _)| s.base.parse().expect("upstream URL")),
        data_dir: Some(dir.path().join("db")),
        ..Overrides::default()
    };
    let gateway = tokio::task::spawn_blocking(move || Gateway::start(Some(path), overrides))
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("the gateway starts: {e:#}"));
    let gateway = Arc::new(gateway);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = gateway.current().config.server.clone();
    let router = server::public_router(gateway.clone());
    tokio::spawn(async move {
        let _ = server::serve_with(listener, router, &limits, async {
            let _ = stopped.await;
        })
        .await;
    });
    let admin = common::serve(server::admin::admin_router(gateway.clone())).await;
    Hostile {
        addr,
        base: format!("http://{addr}"),
        admin: admin.base.clone(),
        mode,
        _gateway: gateway,
        _dir: dir,
        _spin: spin,
        _admin: admin,
        stop: Some(stop),
    }
}

impl Hostile {
    /// A client that declares a `declared`-byte JSON body for `POST path`
    /// and sends only its head and `sent` (what it does next is the test's).
    async fn partial_post(&self, path: &str, declared: usize, sent: &str) -> TcpStream {
        let mut stream = self.connect().await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: {declared}\r\n\r\n{sent}"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        stream
    }

    /// A client that declares a `declared`-byte JSON body for `POST path`,
    /// sends one byte of it and stalls, holding whatever the request was
    /// admitted with until the body timeout answers it `408`.
    async fn stalled_upload(&self, path: &str, declared: usize) -> TcpStream {
        self.partial_post(path, declared, "{").await
    }

    /// Nothing was stored by whatever the test sent.
    async fn assert_nothing_stored(&self) {
        let listed = client()
            .get(format!("{}/items", self.base))
            .send()
            .await
            .expect("GET /items");
        assert_eq!(listed.status(), 200, "{:?}: GET /items", self.mode);
        let items: Value = listed.json().await.expect("JSON");
        assert_eq!(
            items,
            serde_json::json!([]),
            "{:?}: nothing stored",
            self.mode
        );
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.expect("connect")
    }

    /// Sends `raw` on a fresh connection and reads the answer to the end.
    async fn exchange(&self, raw: &[u8]) -> Raw {
        let mut stream = self.connect().await;
        stream.write_all(raw).await.expect("write");
        read_response(&mut stream).await
    }
}

/// A raw HTTP/1.1 answer.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
    /// The server closed the connection after the answer.
    closed: bool,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// Asserts a problem+json answer with `status`; returns its body.
    fn problem(&self, status: u16, case: &str) -> Value {
        assert_eq!(self.status, status, "{case}: {}", self.describe());
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/problem+json"),
            "{case}: expected problem+json, got {content_type:?}: {}",
            self.describe()
        );
        let body: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{case}: problem body is JSON ({e}): {}", self.describe()));
        assert_eq!(body["status"], status, "{case}: {body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{case}: a useful detail: {body}"
        );
        body
    }

    fn describe(&self) -> String {
        format!(
            "{}\n\n{}",
            self.head,
            String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
        )
    }
}

/// Reads one response (head, then a body framed by Content-Length or
/// chunked), then whether the server closes the connection right after.
/// Panics on a hang.
async fn read_response(stream: &mut TcpStream) -> Raw {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        let n = read_some(stream, &mut buf).await;
        assert!(
            n > 0,
            "the connection closed without a response; got {:?}",
            String::from_utf8_lossy(&buf)
        );
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut rest = buf[head_end + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head:?}"));
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_ascii_lowercase())
        })
    };
    let body = if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < len {
            let n = read_some(stream, &mut rest).await;
            assert!(n > 0, "body cut short: {head}");
        }
        rest.drain(..len).collect()
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(end) = find(&rest, b"\r\n") {
                    break end;
                }
                let n = read_some(stream, &mut rest).await;
                assert!(n > 0, "chunked body cut short: {head}");
            };
            let size_text = String::from_utf8_lossy(&rest[..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("a chunk size: {size_text:?}"));
            while rest.len() < line_end + 2 + size + 2 {
                let n = read_some(stream, &mut rest).await;
                assert!(n > 0, "chunk cut short: {head}");
            }
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break body;
            }
        }
    } else {
        // Framed by close.
        while read_some(stream, &mut rest).await > 0 {}
        std::mem::take(&mut rest)
    };
    let closed = closes(stream).await;
    Raw {
        status,
        head,
        body,
        closed,
    }
}

async fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 16 * 1024];
    match tokio::time::timeout(HANG, stream.read(&mut chunk)).await {
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            n
        }
        // A reset after the answer is a close too.
        Ok(Err(_)) => 0,
        Err(_) => panic!(
            "no answer within {HANG:?} (a hang); so far: {:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

/// Whether the server closes the connection (EOF or reset) within a few
/// seconds, with no further bytes.
async fn closes(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 1024];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A complete request with a body and `Connection: close`.
fn request(method: &str, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Runs a case in both modes, each on its own gateway, then checks that
/// nothing was stored.
macro_rules! both_modes {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn embedded() {
                let gw = start(Mode::Embedded).await;
                super::$name(&gw).await;
                gw.assert_nothing_stored().await;
            }
            #[tokio::test]
            async fn external() {
                let gw = start(Mode::External).await;
                super::$name(&gw).await;
                gw.assert_nothing_stored().await;
            }
        }
    };
}

both_modes!(malformed_bodies_are_400_problems);
async fn malformed_bodies_are_400_problems(gw: &Hostile) {
    {
        let cases: &[(&str, &str, &[u8])] = &[
            (
                "create, truncated JSON",
                "/items",
                br#"{"id": 5, "name": "x"#,
            ),
            (
                "create, malformed JSON",
                "/items",
                br#"{"id": 5 "name": "x"}"#,
            ),
            (
                "create, trailing garbage",
                "/items",
                br#"{"id": 5, "name": "x"} x"#,
            ),
            ("create, empty body", "/items", b""),
            ("create, array", "/items", br#"[{"id": 5, "name": "x"}]"#),
            ("create, string", "/items", br#""item""#),
            ("create, number", "/items", b"42"),
            ("create, null", "/items", b"null"),
            (
                "create, invalid UTF-8",
                "/items",
                b"{\"id\": 5, \"name\": \"\xff\xfe\"}",
            ),
            (
                "create, invalid UTF-8 key",
                "/items",
                b"{\"\xc3\x28\": 1, \"name\": \"x\"}",
            ),
            (
                "validate, truncated JSON",
                "/validate",
                br#"{"items": [{"id": 1"#,
            ),
            (
                "validate, array",
                "/validate",
                br#"[{"id": 1, "name": "x"}]"#,
            ),
            (
                "validate, items not an array",
                "/validate",
                br#"{"items": {"id": 1}}"#,
            ),
            (
                "validate, invalid UTF-8",
                "/validate",
                b"{\"items\": [\"\xff\"]}",
            ),
        ];
        for (case, path, body) in cases {
            let answer = gw
                .exchange(&request("POST", path, "application/json", body))
                .await;
            answer.problem(400, &format!("{:?} {case}", gw.mode));
        }
    }
}

both_modes!(oversized_bodies_are_refused_from_content_length_alone);
async fn oversized_bodies_are_refused_from_content_length_alone(gw: &Hostile) {
    {
        for path in ["/items", "/validate"] {
            // Only the head: the 413 must come without a byte of the body.
            let mut stream = gw.partial_post(path, 100_000_000, "").await;
            let answer = read_response(&mut stream).await;
            let problem = answer.problem(413, &format!("{:?} POST {path}", gw.mode));
            assert_eq!(
                answer.header("x-gateway-backend").as_deref(),
                Some("gateway")
            );
            assert!(problem["limit_bytes"].is_u64(), "{problem}");
        }
    }
}

both_modes!(ambiguous_lengths_are_400_and_close);
async fn ambiguous_lengths_are_400_and_close(gw: &Hostile) {
    {
        let body = br#"{"id": 7, "name": "smuggled"}"#;
        // Content-Length and Transfer-Encoding together, in both orders.
        for (case, headers) in [
            (
                "CL then TE",
                format!(
                    "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                    body.len()
                ),
            ),
            (
                "TE then CL",
                format!(
                    "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                    body.len()
                ),
            ),
        ] {
            let mut raw = format!(
                "POST /items HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{headers}\r\n{:x}\r\n",
                body.len()
            )
            .into_bytes();
            raw.extend_from_slice(body);
            raw.extend_from_slice(b"\r\n0\r\n\r\n");
            let answer = gw.exchange(&raw).await;
            answer.problem(400, &format!("{:?} {case}", gw.mode));
            assert!(answer.closed, "{case}: the connection is closed");
        }
        // Two different Content-Lengths: hyper refuses the head itself.
        let mut raw = b"POST /items HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
            Content-Length: 29\r\nContent-Length: 5\r\n\r\n"
            .to_vec();
        raw.extend_from_slice(body);
        let answer = gw.exchange(&raw).await;
        assert_eq!(
            answer.status,
            400,
            "two Content-Lengths: {}",
            answer.describe()
        );
        assert!(
            answer.closed,
            "two Content-Lengths: the connection is closed"
        );
    }
}

both_modes!(bad_chunk_sizes_are_400);
async fn bad_chunk_sizes_are_400(gw: &Hostile) {
    {
        for (case, chunks) in [
            ("not hex", "zz\r\n{}\r\n0\r\n\r\n"),
            (
                "overflowing size",
                "fffffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
            ),
            (
                "size larger than the data, then garbage",
                "5\r\n{}\r\nxyz\r\n",
            ),
        ] {
            for path in ["/items", "/validate"] {
                let raw = format!(
                    "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                     Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunks}"
                );
                let mut stream = gw.connect().await;
                stream.write_all(raw.as_bytes()).await.unwrap();
                let answer = read_response(&mut stream).await;
                answer.problem(400, &format!("{:?} {case} on {path}", gw.mode));
            }
        }
    }
}

both_modes!(huge_or_too_many_headers_are_431);
async fn huge_or_too_many_headers_are_431(gw: &Hostile) {
    {
        let huge = format!(
            "GET /items HTTP/1.1\r\nHost: test\r\nX-Huge: {}\r\n\r\n",
            "a".repeat(1 << 20)
        );
        let answer = gw.exchange(huge.as_bytes()).await;
        assert_eq!(answer.status, 431, "huge header: {}", answer.head);
        assert!(answer.closed, "huge header: the connection is closed");

        let mut many = String::from("GET /items HTTP/1.1\r\nHost: test\r\n");
        for i in 0..200 {
            many.push_str(&format!("X-Header-{i}: {i}\r\n"));
        }
        many.push_str("\r\n");
        let answer = gw.exchange(many.as_bytes()).await;
        assert_eq!(answer.status, 431, "200 headers: {}", answer.head);
        assert!(answer.closed, "200 headers: the connection is closed");
    }
}

both_modes!(slowloris_headers_are_cut_off);
async fn slowloris_headers_are_cut_off(gw: &Hostile) {
    {
        let mut stream = gw.connect().await;
        let started = std::time::Instant::now();
        stream
            .write_all(b"GET /items HTTP/1.1\r\nHost: test\r\n")
            .await
            .unwrap();
        // One header line every 300 ms: never a complete head.
        let mut closed = false;
        for i in 0..60 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let line = format!("X-Slow-{i}: {i}\r\n");
            if stream.write_all(line.as_bytes()).await.is_err() {
                closed = true;
                break;
            }
            let mut probe = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                // Hyper may answer 408 before closing; either way it ends.
                Ok(Ok(_)) => {}
                Err(_) => {}
            }
        }
        assert!(
            closed,
            "{:?}: a head trickled over 18 s was never cut off",
            gw.mode
        );
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(15),
            "cut off after the header read timeout ({HEADER_TIMEOUT_MS} ms), not {took:?}"
        );
    }
}

both_modes!(slow_uploads_get_408);
async fn slow_uploads_get_408(gw: &Hostile) {
    {
        for path in ["/items", "/validate"] {
            let mut stream = gw.partial_post(path, 100, r#"{"id": 9,"#).await;
            // ...and the rest never comes.
            let answer = read_response(&mut stream).await;
            answer.problem(408, &format!("{:?} slow upload to {path}", gw.mode));
        }
    }
}

both_modes!(a_client_that_aborts_mid_body_stores_nothing);
async fn a_client_that_aborts_mid_body_stores_nothing(gw: &Hostile) {
    {
        let stream = gw
            .partial_post("/items", 100, r#"{"id": 10, "name": "gone"}"#)
            .await;
        drop(stream);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The gateway still serves (checked with the store below).
    }
}

both_modes!(unknown_methods_are_405_or_404_problems);
async fn unknown_methods_are_405_or_404_problems(gw: &Hostile) {
    {
        let answer = gw
            .exchange(b"BREW /items HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await;
        answer.problem(405, "BREW /items");
        let allow = answer.header("allow").unwrap_or_default();
        assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
        let answer = gw
            .exchange(&request("PUT", "/items/1", "application/json", b"{}"))
            .await;
        answer.problem(405, "PUT /items/1");
        let answer = gw.exchange(&get("/nowhere")).await;
        answer.problem(404, "GET /nowhere");
        let answer = gw
            .exchange(b"FOO /nowhere HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await;
        answer.problem(404, "FOO /nowhere");
    }
}

both_modes!(internal_spin_routes_are_not_public);
async fn internal_spin_routes_are_not_public(gw: &Hostile) {
    {
        for raw in [
            get("/list"),
            get("/list/1"),
            request(
                "POST",
                "/create",
                "application/json",
                br#"{"id": 11, "name": "x"}"#,
            ),
            request(
                "POST",
                "/validate/",
                "application/json",
                br#"{"items": []}"#,
            ),
            get("/create"),
        ] {
            let line =
                String::from_utf8_lossy(&raw[..raw.iter().position(|&b| b == b'\r').unwrap_or(0)])
                    .to_string();
            let answer = gw.exchange(&raw).await;
            answer.problem(404, &line);
        }
        // `/validate` is public, but only for POST.
        let answer = gw.exchange(&get("/validate")).await;
        answer.problem(405, "GET /validate");
    }
}

both_modes!(query_parameters_out_of_range_are_400);
async fn query_parameters_out_of_range_are_400(gw: &Hostile) {
    {
        for query in [
            "limit=0",
            "limit=1001",
            "limit=abc",
            "limit=-1",
            "after=-1",
            "after=abc",
            "after=4294967296",
            "limit=10&limit=20",
            "tag=NOT_A_TAG",
        ] {
            let answer = gw.exchange(&get(&format!("/items?{query}"))).await;
            let problem = answer.problem(400, query);
            let name = query.split('=').next().unwrap_or_default();
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(name),
                "the problem names `{name}`: {problem}"
            );
        }
    }
}

// Core parser cases (deep nesting, duplicate keys, lone surrogates): fixed
// in the core crate; these check the fix holds end to end, in both modes.

both_modes!(deeply_nested_bodies_are_400);
async fn deeply_nested_bodies_are_400(gw: &Hostile) {
    {
        let depth = 100_000;
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let create = format!(r#"{{"id": 12, "name": "deep", "description": {deep}}}"#);
        let validate = format!(r#"{{"items": [{deep}]}}"#);
        for (path, body) in [("/items", create), ("/validate", validate)] {
            let answer = gw
                .exchange(&request("POST", path, "application/json", body.as_bytes()))
                .await;
            answer.problem(400, &format!("{:?} 100,000 levels to {path}", gw.mode));
        }
    }
}

both_modes!(duplicate_keys_are_400);
async fn duplicate_keys_are_400(gw: &Hostile) {
    {
        let cases: [(&str, &[u8]); 3] = [
            ("/items", br#"{"id": 13, "name": "a", "name": "b"}"#),
            ("/items", br#"{"id": 13, "name": "a", "price": {"amount_cents": 1, "currency": "EUR", "currency": "USD"}}"#),
            ("/validate", br#"{"items": [], "items": [{"id": 1, "name": "x"}]}"#),
        ];
        for (path, body) in cases {
            let answer = gw
                .exchange(&request("POST", path, "application/json", body))
                .await;
            answer.problem(
                400,
                &format!(
                    "{:?} duplicate keys to {path}: {}",
                    gw.mode,
                    String::from_utf8_lossy(body)
                ),
            );
        }
    }
}

both_modes!(lone_surrogates_are_400);
async fn lone_surrogates_are_400(gw: &Hostile) {
    {
        let cases: [(&str, &[u8]); 3] = [
            ("/items", br#"{"id": 14, "name": "a\ud800b"}"#),
            (
                "/items",
                br#"{"id": 14, "name": "x", "description": "\udc00"}"#,
            ),
            ("/validate", br#"{"items": [{"id": 1, "name": "\ud83d"}]}"#),
        ];
        for (path, body) in cases {
            let answer = gw
                .exchange(&request("POST", path, "application/json", body))
                .await;
            // A batch with a bad item is still a verdict unless the body as
            // a whole is refused; a lone surrogate is not valid JSON text
            // for an I-JSON API, so the whole body is refused.
            answer.problem(
                400,
                &format!(
                    "{:?} lone surrogate to {path}: {}",
                    gw.mode,
                    String::from_utf8_lossy(body)
                ),
            );
        }
    }
}

/// Client-caused failures while a body streams to an external Spin (slow,
/// oversized) are 4xx for the client and never open the circuit.
#[tokio::test]
async fn client_errors_while_streaming_do_not_open_the_circuit() {
    let text = config("").replace(
        "[[route]]\nname = \"create\"\nmatch = { method = \"POST\", path = \"/items\" }\nbackend = \"spin\"\nspin_path = \"/create\"\ntimeout_ms = 5000\nmax_body_bytes = 1048576\n",
        "[[route]]\nname = \"create\"\nmatch = { method = \"POST\", path = \"/items\" }\nbackend = \"spin\"\nspin_path = \"/create\"\ntimeout_ms = 5000\nmax_body_bytes = 1024\ncircuit = { consecutive_failures = 2, min_requests = 2, failure_rate = 0.5, open_ms = 60000 }\n",
    );
    assert!(
        text.contains("max_body_bytes = 1024\n"),
        "the create route was rewritten"
    );
    let gw = start_with(Mode::External, text).await;
    for i in 0..5 {
        // Slow: the head and part of the body, then nothing.
        let mut stream = gw.partial_post("/items", 100, r#"{"id": 20,"#).await;
        let answer = read_response(&mut stream).await;
        answer.problem(408, &format!("slow upload {i}"));

        // Oversized, chunked (no Content-Length to refuse it by).
        let mut raw = b"POST /items HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
            Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
        for _ in 0..4 {
            raw.extend_from_slice(format!("200\r\n{}\r\n", " ".repeat(0x200)).as_bytes());
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        let answer = gw.exchange(&raw).await;
        answer.problem(413, &format!("oversized upload {i}"));
    }
    let ready: Value = common::get_json(&format!("{}/readyz", gw.admin)).await;
    let create = ready["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["route"] == "create"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(create["circuit"], "closed", "{ready}");
    let created = client()
        .post(format!("{}/items", gw.base))
        .header("content-type", "application/json")
        .body(r#"{"id": 21, "name": "after"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "Spin still takes requests");
    assert_eq!(created.headers()["x-gateway-backend"], "spin-external");
}

/// Past `max_in_flight`, requests get 503 + Retry-After at once.
#[tokio::test]
async fn the_in_flight_limit_sheds_with_503() {
    let gw = start_with(Mode::Embedded, config("max_in_flight = 1")).await;
    // One request in flight: a slow upload holding its slot.
    let mut holder = gw.stalled_upload("/items", 100).await;
    let answer = until_status(&gw, &get("/items"), 503).await;
    let problem = answer.problem(503, "second request");
    assert_eq!(answer.header("retry-after").as_deref(), Some("1"));
    assert_eq!(
        answer.header("x-gateway-backend").as_deref(),
        Some("gateway")
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("1 requests"),
        "{problem}"
    );
    // The holder times out (408) and frees the slot.
    read_response(&mut holder).await.problem(408, "holder");
    let answer = gw.exchange(&get("/items")).await;
    assert_eq!(answer.status, 200, "{}", answer.describe());
}

/// Bodies the gateway buffers count against `max_buffered_bytes`: a
/// declared length over it is refused before reading, a chunked one when
/// it passes it.
#[tokio::test]
async fn the_buffered_bytes_budget_sheds_with_503() {
    let gw = start_with(Mode::Embedded, config("max_buffered_bytes = 4096")).await;
    let mut stream = gw.connect().await;
    stream
        .write_all(
            b"POST /validate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
              Content-Length: 5000\r\n\r\n",
        )
        .await
        .unwrap();
    let answer = read_response(&mut stream).await;
    answer.problem(503, "declared over budget");
    assert_eq!(answer.header("retry-after").as_deref(), Some("1"));

    let mut raw = b"POST /validate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    for _ in 0..10 {
        raw.extend_from_slice(format!("200\r\n{}\r\n", " ".repeat(0x200)).as_bytes());
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let answer = gw.exchange(&raw).await;
    answer.problem(503, "chunked over budget");

    // Within budget, the same route works, and the budget was given back.
    let ok = client()
        .post(format!("{}/validate", gw.base))
        .header("content-type", "application/json")
        .body(r#"{"items": [{"id": 1, "name": "x"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

/// The built-in config with `lines` added to the `validate` route.
fn validate_route_with(lines: &str) -> String {
    config("").replacen(
        "concurrency = 64\n",
        &format!("concurrency = 64\n{lines}\n"),
        1,
    )
}

/// Sends `raw` until the answer has `status` (the holder's request may
/// still be on its way in); the last answer otherwise.
async fn until_status(gw: &Hostile, raw: &[u8], status: u16) -> Raw {
    let mut answer = gw.exchange(raw).await;
    for _ in 0..100 {
        if answer.status == status {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        answer = gw.exchange(raw).await;
    }
    answer
}

/// A route's `max_in_flight` sheds that route alone: a slow upload holding
/// the only `validate` slot gets the next `validate` a 503 naming the
/// route, while `GET /items` is still served.
#[tokio::test]
async fn a_route_in_flight_limit_sheds_that_route_only() {
    let gw = start_with(Mode::Embedded, validate_route_with("max_in_flight = 1")).await;
    let mut holder = gw.stalled_upload("/validate", 100).await;
    let second = request(
        "POST",
        "/validate",
        "application/json",
        br#"{"items": [{"id": 1, "name": "x"}]}"#,
    );
    let answer = until_status(&gw, &second, 503).await;
    let problem = answer.problem(503, "second validate");
    assert_eq!(answer.header("retry-after").as_deref(), Some("1"));
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("route `validate` already serves 1 requests"),
        "{problem}"
    );
    // Other routes are not affected.
    let listed = gw.exchange(&get("/items")).await;
    assert_eq!(listed.status, 200, "{}", listed.describe());
    // The holder times out (408) and gives its slot back.
    read_response(&mut holder).await.problem(408, "holder");
    let answer = gw.exchange(&second).await;
    assert_eq!(answer.status, 200, "{}", answer.describe());
}

/// A route's `max_buffered_bytes` is its share of the gateway's buffer: a
/// slow upload that declared 3,000 bytes to `validate` leaves no room for
/// another 2,000 there, but `create` still buffers its 2,000.
#[tokio::test]
async fn a_route_byte_budget_sheds_that_route_only() {
    let gw = start_with(
        Mode::Embedded,
        validate_route_with("max_buffered_bytes = 4096"),
    )
    .await;
    let mut holder = gw.stalled_upload("/validate", 3000).await;
    let padded = |prefix: &str, suffix: &str| {
        let mut body = prefix.to_string();
        body.push_str(&" ".repeat(2000 - prefix.len() - suffix.len()));
        body.push_str(suffix);
        body.into_bytes()
    };
    let validate = request(
        "POST",
        "/validate",
        "application/json",
        &padded(r#"{"items": [{"id": 1, "name": "x"}]"#, "}"),
    );
    let answer = until_status(&gw, &validate, 503).await;
    let problem = answer.problem(503, "validate over its route budget");
    assert_eq!(answer.header("retry-after").as_deref(), Some("1"));
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("route `validate` already holds its limit of 4096 buffered request bytes"),
        "{problem}"
    );
    let create = request(
        "POST",
        "/items",
        "application/json",
        &padded(r#"{"id": 77, "name": "room left""#, "}"),
    );
    let created = gw.exchange(&create).await;
    assert_eq!(created.status, 201, "{}", created.describe());
    // The holder times out and its reservation is given back.
    read_response(&mut holder).await.problem(408, "holder");
    let answer = gw.exchange(&validate).await;
    assert_eq!(answer.status, 200, "{}", answer.describe());
}

/// `GET /items` with `Host: test`, `Connection: close` and `fields`.
fn get_with_fields(fields: &[(String, String)]) -> Vec<u8> {
    let mut raw = String::from("GET /items HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in fields {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    raw.into_bytes()
}

/// The header fields of [`get_with_fields`] besides `fields`, as
/// (count, bytes of names and values).
const FIXED_FIELDS: (usize, usize) = (2, "host".len() + 4 + "connection".len() + 5);

/// Header fields that, with [`FIXED_FIELDS`], are exactly `count` fields
/// of exactly `bytes` (names and values), the first seven of them of the
/// largest size a field may have.
fn fields_totalling(count: usize, bytes: usize) -> Vec<(String, String)> {
    let big = server::header_limits::MAX_FIELD_BYTES;
    let mut fields: Vec<(String, String)> = (0..7)
        .map(|i| {
            let name = format!("x-big-{i}");
            let value = "b".repeat(big - name.len());
            (name, value)
        })
        .collect();
    let fillers = count - FIXED_FIELDS.0 - fields.len();
    let mut left = bytes - FIXED_FIELDS.1 - fields.len() * big;
    for i in 0..fillers {
        let name = format!("x-f-{i:02}");
        let share = if i + 1 == fillers {
            left - name.len()
        } else {
            (left / (fillers - i)).min(left) - name.len()
        };
        left -= name.len() + share;
        fields.push((name, "f".repeat(share)));
    }
    fields
}

fn limit_problem(answer: &Raw, case: &str, limit: &str, says: &[&str]) {
    let problem = answer.problem(431, case);
    assert_eq!(problem["limit"], limit, "{case}: {problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    for words in says {
        assert!(detail.contains(words), "{case}: {detail:?} says {words:?}");
    }
    assert_eq!(
        answer.header("x-gateway-backend").as_deref(),
        Some("gateway"),
        "{case}"
    );
    assert!(answer.closed, "{case}: the connection is closed");
}

#[tokio::test]
async fn a_header_field_over_8_kib_is_431_naming_the_limit() {
    let gw = start(Mode::Embedded).await;
    let fields = [("X-Big".to_string(), "a".repeat(9 * 1024))];
    let answer = gw.exchange(&get_with_fields(&fields)).await;
    limit_problem(
        &answer,
        "one 9 KiB header",
        "header-field-bytes",
        &["`x-big` is 9221 bytes", "at most 8192 bytes"],
    );
}

#[tokio::test]
async fn header_fields_over_64_kib_together_are_431_naming_the_limit() {
    let gw = start(Mode::Embedded).await;
    // Nine fields of 8,000 bytes: each under the field limit, 72,000 in all.
    let fields: Vec<(String, String)> = (0..9)
        .map(|i| (format!("x-part-{i}"), "p".repeat(8000 - 8)))
        .collect();
    let answer = gw.exchange(&get_with_fields(&fields)).await;
    limit_problem(
        &answer,
        "nine 8,000-byte headers",
        "header-section-bytes",
        &["72023 bytes together", "at most 65536 bytes"],
    );
}

#[tokio::test]
async fn a_head_at_every_limit_is_served_and_one_byte_more_is_not() {
    let gw = start(Mode::Embedded).await;
    let limits = server::header_limits::HeaderLimits::default();
    let fields = fields_totalling(limits.max_fields, limits.max_section_bytes);
    let sizes: Vec<usize> = fields.iter().map(|(n, v)| n.len() + v.len()).collect();
    assert_eq!(fields.len() + FIXED_FIELDS.0, 100);
    assert_eq!(sizes.iter().sum::<usize>() + FIXED_FIELDS.1, 65536);
    assert_eq!(sizes.iter().max(), Some(&8192));
    let answer = gw.exchange(&get_with_fields(&fields)).await;
    assert_eq!(answer.status, 200, "at the limits: {}", answer.describe());

    let mut over = fields.clone();
    if let Some((_, value)) = over.last_mut() {
        value.push('f');
    }
    let answer = gw.exchange(&get_with_fields(&over)).await;
    limit_problem(
        &answer,
        "one byte over",
        "header-section-bytes",
        &["65537 bytes together"],
    );
}

#[tokio::test]
async fn more_than_100_header_fields_are_431() {
    let gw = start(Mode::Embedded).await;
    let fields = |n: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("x-header-{i}"), i.to_string()))
            .collect()
    };
    let answer = gw.exchange(&get_with_fields(&fields(99))).await;
    limit_problem(
        &answer,
        "101 header fields",
        "header-count",
        &["101 header fields", "at most 100"],
    );
    // Far past the limit the HTTP parser refuses the head itself.
    let answer = gw.exchange(&get_with_fields(&fields(1000))).await;
    assert_eq!(answer.status, 431, "1,000 headers: {}", answer.head);
    assert!(answer.closed, "1,000 headers: the connection is closed");
}
