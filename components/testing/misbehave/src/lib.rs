//! A component that misbehaves on purpose, so the host's containment (trap
//! handling, CPU deadline / fuel, memory limit) can be tested against a real
//! component. Route `/...`; the last path segment picks the behaviour:
//!
//! * `/ok`   — 200 `ok` (the control case: the host still works afterwards);
//! * `/trap` — panics, which traps the instance;
//! * `/loop` — never returns (a busy loop the optimizer cannot remove);
//! * `/hog`  — allocates 1 MiB chunks until allocation fails (and traps);
//! * `/count` — 200 with how many requests this instance has served,
//!   including this one: always `1` with Spin's fresh instance per request,
//!   more when the host reuses instances (the state reuse makes visible).
//! * `/headers` — 200 with the request headers the component received, one
//!   `name: value` per line (what a host or gateway let through).
//! * `/empty` — 200 with an empty body;
//! * `/no-content` — 204, `/not-modified` — 304, both without a body;
//! * `/sized` — 200 `sized`, with the `content-length: 5` the component
//!   declares itself.
//! * `/burn` — burns CPU in proportion to the request body: `x-burn-rounds`
//!   (default 1, at most 1,000,000) rounds of arithmetic per body byte,
//!   then 200 with how many bytes it read (a Wasm cost that grows with
//!   body size, for the learned routing's tests).
//!
//! Not in `spin.toml`: it is never deployed.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use spin_sdk::http::{IncomingRequest, Response};
use spin_sdk::http_component;

/// Requests this instance has served.
static SERVED: AtomicU64 = AtomicU64::new(0);

#[http_component]
fn handle(req: IncomingRequest) -> Response {
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    let path = req.path_with_query().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    match path.rsplit('/').next().unwrap_or_default() {
        "ok" => text(200, "ok"),
        "trap" => panic!("misbehave: trapping on purpose"),
        "loop" => spin(),
        "hog" => hog(),
        "count" => text(200, &served.to_string()),
        "headers" => {
            let lines: Vec<String> = req
                .headers()
                .entries()
                .into_iter()
                .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(&value)))
                .collect();
            text(200, &lines.join("\n"))
        }
        "empty" => Response::builder().status(200).body(Vec::new()).build(),
        "no-content" => Response::builder().status(204).body(Vec::new()).build(),
        "not-modified" => Response::builder().status(304).body(Vec::new()).build(),
        "burn" => {
            let rounds = http_util::header(&req, "x-burn-rounds")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1)
                .min(1_000_000);
            match http_util::read_body(req, 64 << 20) {
                Ok(body) => text(
                    200,
                    &format!("burned {} bytes, {:x}", body.len(), burn(&body, rounds)),
                ),
                Err(_) => text(400, "the body could not be read"),
            }
        }
        "sized" => Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .header("content-length", "5")
            .body("sized")
            .build(),
        other => text(
            404,
            &format!(
                "unknown behaviour {other:?}; try ok, trap, loop, hog, count, headers, empty, no-content, not-modified or sized"
            ),
        ),
    }
}

fn text(status: u16, body: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(body.to_owned())
        .build()
}

/// `rounds` rounds of mixing per byte of `body`; the result is returned so
/// the work cannot be optimised away.
fn burn(body: &[u8], rounds: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in body {
        for _ in 0..rounds {
            h = black_box((h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
        }
    }
    h
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn hog() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // Written to, so the pages are really used, and kept alive in `chunks`.
        let chunk = black_box(vec![0xA5_u8; 1 << 20]);
        chunks.push(chunk);
        black_box(&chunks);
    }
}
