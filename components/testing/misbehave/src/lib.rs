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
