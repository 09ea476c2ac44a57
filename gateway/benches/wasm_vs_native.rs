//! The same batch validated by the core natively and by the validate
//! component in the embedded host, side by side in one run, in-process (no
//! HTTP): `cargo bench -p gateway --bench wasm_vs_native`.
//!
//! A micro-benchmark for working on the host. `cargo xtask bench` measures
//! the same comparison end to end over HTTP with wrk (and more); its report
//! is the one the README quotes.

// `criterion_group!` defines an undocumented `pub fn`; a bench binary has
// no API to document, and the workspace's `missing_docs = "deny"` would
// otherwise stop `cargo bench` from compiling it.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use items_core::TrustedKeys;
use serde_json::json;
use spin_host::{HostConfig, SpinApp};

fn batch(n: usize) -> Vec<u8> {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let items: Vec<_> = (0..n)
        .map(|i| {
            let mut item = json!({
                "id": i,
                "name": format!("item {i}"),
                "tags": ["bench", "batch"],
                "price": {"amount_cents": 100 + i, "currency": "EUR"},
            });
            // Every item signed, as in `cargo xtask bench`.
            let _ = items_core::sign_item(&mut item, &key);
            item
        })
        .collect();
    serde_json::to_vec(&json!({ "items": items })).unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let app = SpinApp::load(
        &root.join("spin.toml"),
        HostConfig {
            data_dir: data.path().to_path_buf(),
            ..HostConfig::default()
        },
    )
    .unwrap_or_else(|e| panic!("load spin.toml (run `cargo xtask build`): {e}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let client: SocketAddr = "127.0.0.1:1".parse().unwrap_or_else(|e| panic!("{e}"));
    let trusted = TrustedKeys::any();

    let mut group = c.benchmark_group("validate");
    group.sample_size(20);
    for n in [1usize, 100, 1000] {
        let body = Bytes::from(batch(n));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("native", n), &body, |b, body| {
            b.iter(|| items_core::validate_batch(body, &trusted).map(|v| v.to_json()))
        });
        group.bench_with_input(BenchmarkId::new("wasm-embedded", n), &body, |b, body| {
            b.iter(|| {
                runtime.block_on(async {
                    let request = http::Request::post("/validate")
                        .header("content-type", "application/json")
                        .body(Full::new(body.clone()))
                        .unwrap_or_else(|e| panic!("{e}"));
                    let response = app.handle(request, client).await;
                    assert_eq!(response.status(), 200);
                    response
                        .into_body()
                        .collect()
                        .await
                        .map(|c| c.to_bytes().len())
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
