//! Traces reach a real OTLP collector (rotel, started here on loopback):
//! spans for the Wasm and native paths with their attributes and the right
//! parent/child links; `traceparent` is continued, created when absent and
//! forwarded upstream; a collector that is down costs requests nothing.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fake_spin::{self, Mode};
use common::{client, repo_root, require_app_wasm};
use serde_json::json;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The `rotel-agent` binary from the PyPI wheel `cargo xtask setup` installs.
fn rotel_agent() -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output()
        .expect("python3 runs");
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        out.status.success() && path.is_file(),
        "the rotel OTLP collector is not installed: run `cargo xtask setup` (pip install rotel)"
    );
    path
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A collector printing every received span to `log`.
fn start_collector(grpc: u16, http: u16, log: &std::path::Path) -> Killed {
    let file = std::fs::File::create(log).unwrap();
    let child = Command::new(rotel_agent())
        .args([
            "start",
            "--otlp-grpc-endpoint",
            &format!("127.0.0.1:{grpc}"),
            "--otlp-http-endpoint",
            &format!("127.0.0.1:{http}"),
            "--exporter",
            "blackhole",
            "--debug-log",
            "traces",
            "--debug-log",
            "metrics",
            "--debug-log-verbosity",
            "detailed",
            "--pid-file",
            &log.with_extension("pid").to_string_lossy(),
        ])
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("rotel-agent starts");
    let collector = Killed(child);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", grpc)).is_ok() {
            return collector;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("the collector did not open its port");
}

/// One span as the collector printed it.
#[derive(Debug, Clone)]
struct Span {
    trace: String,
    parent: String,
    id: String,
    name: String,
    kind: String,
    attrs: HashMap<String, String>,
}

/// Parses rotel's `--debug-log-verbosity detailed` output.
fn parse_spans(text: &str) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut current: Option<Span> = None;
    let mut in_attrs = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Span #") {
            spans.extend(current.take());
            current = Some(Span {
                trace: String::new(),
                parent: String::new(),
                id: String::new(),
                name: String::new(),
                kind: String::new(),
                attrs: HashMap::new(),
            });
            in_attrs = false;
            continue;
        }
        if t.starts_with("ResourceSpans #")
            || t.starts_with("ScopeSpans #")
            || t.starts_with("ResourceMetrics #")
            || t.starts_with("Metric #")
        {
            spans.extend(current.take());
            continue;
        }
        let Some(span) = current.as_mut() else {
            continue;
        };
        let field = |prefix: &str| {
            t.strip_prefix(prefix)
                .map(|v| v.trim_start())
                .and_then(|v| v.strip_prefix(":"))
                .map(|v| v.trim().to_string())
        };
        if let Some(v) = field("Trace ID") {
            span.trace = v;
        } else if let Some(v) = field("Parent ID") {
            span.parent = v;
        } else if let Some(v) = field("ID") {
            span.id = v;
        } else if let Some(v) = field("Name") {
            span.name = v;
        } else if let Some(v) = field("Kind") {
            span.kind = v;
        } else if t.starts_with("Attributes:") {
            in_attrs = true;
        } else if in_attrs && t.starts_with("-> ") {
            if let Some((k, v)) = t[3..].split_once(": ") {
                // Str(x) / Int(5) / Bool(true) → x / 5 / true
                let v = v
                    .split_once('(')
                    .map_or(v, |(_, rest)| rest.trim_end_matches(')'));
                span.attrs.insert(k.to_string(), v.to_string());
            }
        } else if !t.starts_with("-> ") {
            in_attrs = false;
        }
    }
    spans.extend(current);
    spans
}

struct Gateway {
    child: Option<Child>,
    public: String,
    admin: String,
}

impl Gateway {
    async fn spawn(args: &[&str], env: &[(&str, String)]) -> Gateway {
        let public = format!("127.0.0.1:{}", common::free_port());
        let admin = format!("127.0.0.1:{}", common::free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.args(args)
            .args(["--listen", &public, "--admin-listen", &admin])
            .current_dir(repo_root())
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let gateway = Gateway {
            child: Some(cmd.spawn().expect("gateway starts")),
            public: format!("http://{public}"),
            admin: format!("http://{admin}"),
        };
        assert!(
            common::comes_up(&gateway.admin, 600).await,
            "gateway did not come up"
        );
        gateway
    }

    /// SIGTERM, then wait: the gateway flushes its spans on the way out.
    async fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        for _ in 0..600 {
            if child.try_wait().unwrap().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        panic!("gateway did not exit after SIGTERM");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn post_batch(gw: &Gateway, body: Vec<u8>, traceparent: Option<&str>) -> reqwest::Response {
    let mut request = client()
        .post(format!("{}/validate", gw.public))
        .header("content-type", "application/json")
        .body(body);
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    request.send().await.unwrap()
}

fn child_of<'a>(spans: &'a [Span], parent: &Span, name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.parent == parent.id && s.name == name && s.trace == parent.trace)
        .unwrap_or_else(|| panic!("no `{name}` child of `{}` in {spans:#?}", parent.name))
}

async fn spans_for_both_paths(protocol: &str) {
    require_app_wasm();
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (common::free_port(), common::free_port());
    let log = dir.path().join("collector.log");
    let _collector = start_collector(grpc, http, &log);
    let endpoint = if protocol == "grpc" {
        format!("http://127.0.0.1:{grpc}")
    } else {
        format!("http://127.0.0.1:{http}")
    };
    let gw = Gateway::spawn(
        &[
            "--manifest",
            "spin.toml",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
            ("OTEL_SERVICE_NAME", "gateway-under-test".to_string()),
        ],
    )
    .await;

    // Wasm path, continuing the client's trace.
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let small = serde_json::to_vec(&json!({"items": [{"id": 1, "name": "Item1"}]})).unwrap();
    let wasm = post_batch(&gw, small, Some(&traceparent)).await;
    assert_eq!(wasm.headers()["x-gateway-backend"], "spin-embedded");
    // Native path by the size rule, in a new trace.
    let big = common::big_batch(2_000);
    assert!(big.len() > 262_144);
    let big_len = big.len();
    let native = post_batch(&gw, big, None).await;
    assert_eq!(native.headers()["x-gateway-backend"], "native");
    gw.stop().await;

    // The collector writes what it receives in its own time: wait (up to
    // 10 s) until every span and metric checked below is in its log, not
    // merely some of them (the readiness probe's span counts as a server
    // span too, so a count of them is not enough).
    let metrics = [
        "gateway.request.duration",
        "gateway.wasm.instantiate.duration",
        "gateway.native.compute.duration",
        "gateway.fallbacks",
    ];
    let complete = |spans: &[Span], text: &str| {
        let named = |name: &str| spans.iter().any(|s| s.name == name);
        spans
            .iter()
            .any(|s| s.kind == "SPAN_KIND_SERVER" && s.trace == CLIENT_TRACE)
            && spans.iter().any(|s| {
                s.kind == "SPAN_KIND_SERVER"
                    && s.attrs.get("gateway.backend").map(String::as_str) == Some("native")
            })
            && [
                "spin",
                "native",
                "wasm.instantiate",
                "wasm.handle",
                "native.queue",
                "native.compute",
            ]
            .into_iter()
            .all(named)
            && metrics
                .iter()
                .all(|m| text.contains(&format!("Name: {m}\n")))
    };
    let mut spans = Vec::new();
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap();
        spans = parse_spans(&text);
        if complete(&spans, &text) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        text.contains("service.name: Str(gateway-under-test)"),
        "OTEL_SERVICE_NAME is the resource"
    );

    // The Wasm request: server span continues the client's trace.
    let server = spans
        .iter()
        .find(|s| s.kind == "SPAN_KIND_SERVER" && s.trace == CLIENT_TRACE)
        .unwrap_or_else(|| panic!("no server span in the client's trace: {spans:#?}"));
    assert_eq!(server.parent, CLIENT_SPAN, "continues the client's span");
    assert_eq!(server.name, "POST /validate");
    for (k, v) in [
        ("http.request.method", "POST"),
        ("http.route", "/validate"),
        ("url.path", "/validate"),
        ("http.response.status_code", "200"),
        ("gateway.route", "validate"),
        ("gateway.backend", "spin-embedded"),
        ("gateway.size_class", "le_1KiB"),
        ("client.address", "127.0.0.1"),
    ] {
        assert_eq!(
            server.attrs.get(k).map(String::as_str),
            Some(v),
            "{k} on {server:#?}"
        );
    }
    assert!(server.attrs.contains_key("server.address"), "{server:#?}");
    assert!(
        server.attrs.contains_key("http.request.body.size"),
        "{server:#?}"
    );
    let spin = child_of(&spans, server, "spin");
    assert_eq!(spin.attrs["gateway.size_class"], "le_1KiB");
    assert_eq!(spin.attrs["gateway.backend"], "spin-embedded");
    assert_eq!(spin.attrs["gateway.route"], "validate");
    assert_eq!(spin.attrs["http.response.status_code"], "200");
    assert!(spin.attrs.contains_key("http.request.body.size"));
    assert_eq!(
        spin.attrs["validate.items"], "1",
        "read from the streamed verdict"
    );
    let instantiate = child_of(&spans, spin, "wasm.instantiate");
    assert_eq!(instantiate.attrs["wasm.component"], "validate");
    child_of(&spans, spin, "wasm.handle");

    // The native request: its own trace, with queue and compute apart.
    let server = spans
        .iter()
        .find(|s| {
            s.kind == "SPAN_KIND_SERVER"
                && s.attrs.get("gateway.backend").map(String::as_str) == Some("native")
        })
        .unwrap_or_else(|| panic!("no native server span: {spans:#?}"));
    assert_ne!(server.trace, CLIENT_TRACE);
    assert_eq!(server.attrs["gateway.fallback.reason"], "size");
    // The big batch's class, on the server span and the backend's.
    assert_eq!(server.attrs["gateway.size_class"], "le_4MiB");
    assert_eq!(
        server.attrs["http.request.body.size"],
        big_len.to_string(),
        "{server:#?}"
    );
    let native = child_of(&spans, server, "native");
    assert_eq!(native.attrs["gateway.size_class"], "le_4MiB");
    assert_eq!(native.attrs["gateway.backend"], "native");
    assert_eq!(native.attrs["gateway.fallback.reason"], "size");
    assert_eq!(native.attrs["validate.items"], "2000");
    child_of(&spans, native, "native.queue");
    child_of(&spans, native, "native.compute");

    // Metrics went over OTLP too (flushed at shutdown).
    for metric in metrics {
        assert!(
            text.contains(&format!("Name: {metric}\n")),
            "metric {metric} exported over OTLP"
        );
    }
}

#[tokio::test]
async fn spans_for_both_paths_reach_a_collector_over_grpc() {
    spans_for_both_paths("grpc").await;
}

#[tokio::test]
async fn spans_for_both_paths_reach_a_collector_over_http_protobuf() {
    spans_for_both_paths("http/protobuf").await;
}

#[tokio::test]
async fn a_collector_that_is_down_costs_requests_nothing() {
    require_app_wasm();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::spawn(
        &[
            "--manifest",
            "spin.toml",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", common::free_port()),
        )],
    )
    .await;
    for _ in 0..20 {
        let small = serde_json::to_vec(&json!({"items": [{"id": 1, "name": "Item1"}]})).unwrap();
        let response = post_batch(&gw, small, None).await;
        assert_eq!(response.status(), 200);
        let listed = client()
            .get(format!("{}/items", gw.public))
            .send()
            .await
            .unwrap();
        assert_eq!(listed.status(), 200);
    }
    // The spans lost to the unreachable collector are counted, not silently gone.
    let failed = |text: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("gateway_telemetry_spans_total") && l.contains("result=\"failed\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let mut seen = 0.0;
    for _ in 0..300 {
        let text = common::admin_metrics(&gw.admin).await;
        seen = failed(&text);
        if seen > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen > 0.0,
        "spans lost to the unreachable collector are counted"
    );
    gw.stop().await;
}

#[tokio::test]
async fn traceparent_is_continued_or_created_and_forwarded_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (common::free_port(), common::free_port());
    let log = dir.path().join("collector.log");
    let _collector = start_collector(grpc, http, &log);
    let fake = fake_spin::start(Mode::Ok).await;
    let gw = Gateway::spawn(
        &["--upstream", &fake.served.base],
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{grpc}"),
        )],
    )
    .await;

    // Absent: one is created and forwarded.
    let response = client()
        .get(format!("{}/items", gw.public))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let created = fake.last_headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    let parts: Vec<&str> = created.split('-').collect();
    assert_eq!(parts.len(), 4, "{created}");
    assert_eq!(
        (parts[0], parts[1].len(), parts[2].len(), parts[3]),
        ("00", 32, 16, "01"),
        "{created}"
    );

    // Present: same trace, the gateway's client span as the new parent.
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let response = client()
        .get(format!("{}/items", gw.public))
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let forwarded = fake.last_headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        forwarded.starts_with(&format!("00-{CLIENT_TRACE}-")),
        "{forwarded}"
    );
    let forwarded_parent = forwarded.split('-').nth(2).unwrap().to_string();
    assert_ne!(forwarded_parent, CLIENT_SPAN);
    gw.stop().await;

    // The forwarded parent is the gateway's `spin` client span, child of
    // the server span that continued the client's.
    let mut spans = Vec::new();
    for _ in 0..100 {
        spans = parse_spans(&std::fs::read_to_string(&log).unwrap());
        if spans.iter().any(|s| s.id == forwarded_parent) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spin = spans
        .iter()
        .find(|s| s.id == forwarded_parent)
        .unwrap_or_else(|| panic!("span {forwarded_parent} not exported: {spans:#?}"));
    assert_eq!(spin.name, "spin");
    assert_eq!(spin.kind, "SPAN_KIND_CLIENT");
    assert_eq!(spin.attrs["gateway.backend"], "spin-external");
    let server = spans
        .iter()
        .find(|s| s.id == spin.parent)
        .expect("server span");
    assert_eq!(server.kind, "SPAN_KIND_SERVER");
    assert_eq!(server.parent, CLIENT_SPAN);
}
