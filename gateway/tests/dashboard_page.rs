//! The admin dashboard (`/dashboard`) in a real browser: headless Chromium
//! loads it from a real gateway whose validate route has been served by
//! both backends, runs its script (which polls `/admin/stats`), and the
//! rendered DOM shows a row per backend with numbers that go up as traffic
//! arrives. A screenshot lands in `target/dashboard.png`.
//!
//! Needs `chromium` on PATH (Debian: `apt-get install chromium`); the test
//! fails (never skips) when it is missing.

mod browser;
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use browser::{between, chromium_async, require_chromium};
use common::{TestGateway, client};

/// Sends validate batches, asserting which backend answered.
async fn validate(gw: &TestGateway, body: &[u8], backend: &str) {
    let response = client()
        .post(format!("{}/validate", gw.base))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("POST /validate");
    assert_eq!(response.status(), 200, "validate");
    let served_by = response
        .headers()
        .get("x-gateway-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(served_by, backend);
}

async fn drive(gw: &TestGateway, small: usize, big: usize) {
    let (small_body, big_body) = (common::small_batch(), common::big_batch(2_000));
    for _ in 0..small {
        validate(gw, &small_body, "spin-embedded").await;
    }
    for _ in 0..big {
        validate(gw, &big_body, "native").await;
    }
}

/// One backend row of a route section in the dumped DOM: class -> cell text.
type Row = BTreeMap<String, String>;

/// The `<section data-route="{route}">` of the dumped DOM: backend -> row.
fn route_rows(dom: &str, route: &str) -> Option<BTreeMap<String, Row>> {
    let section = between(dom, &format!("data-route=\"{route}\""), "</section>")?;
    let mut rows = BTreeMap::new();
    for chunk in section.split("<tr").skip(1) {
        let Some(backend) = between(chunk, "data-backend=\"", "\"") else {
            continue; // the header row
        };
        let row_html = chunk.split("</tr>").next().unwrap_or("");
        let mut cells = Row::new();
        for cell in row_html.split("<td").skip(1) {
            let open_tag = cell.split('>').next().unwrap_or("");
            let Some(class) = between(open_tag, "class=\"", "\"") else {
                continue;
            };
            let text = between(cell, ">", "</td>").unwrap_or("").trim().to_string();
            cells.insert(class.to_string(), text);
        }
        rows.insert(backend.to_string(), cells);
    }
    Some(rows)
}

fn number(rows: &BTreeMap<String, Row>, backend: &str, class: &str, dom: &str) -> f64 {
    let text = rows
        .get(backend)
        .and_then(|row| row.get(class))
        .unwrap_or_else(|| panic!("no {backend} row with a td.{class}: {rows:?}\nDOM:\n{dom}"));
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .unwrap_or_else(|| panic!("{backend} td.{class} is {text:?}, not a number: {rows:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_shows_both_backends_live() {
    let chromium = require_chromium();
    let gw = common::start().await;
    drive(&gw, 5, 3).await;
    let url = format!("{}/dashboard", gw.admin);

    // First load: both validate rows with numbers.
    let dom = chromium_async(&chromium, url.clone(), vec!["--dump-dom".into()])
        .await
        .stdout;
    let rows = route_rows(&dom, "validate")
        .unwrap_or_else(|| panic!("no validate section in the dashboard DOM:\n{dom}"));
    for backend in ["spin-embedded", "native"] {
        assert!(
            number(&rows, backend, "count", &dom) > 0.0,
            "{backend} count: {rows:?}"
        );
        for class in ["p50", "p95", "p99"] {
            assert!(
                number(&rows, backend, class, &dom) > 0.0,
                "{backend} {class}: {rows:?}"
            );
        }
    }
    assert_eq!(
        number(&rows, "spin-embedded", "count", &dom),
        5.0,
        "{rows:?}"
    );
    assert_eq!(number(&rows, "native", "count", &dom), 3.0, "{rows:?}");
    let fallbacks = between(&dom, "class=\"fallbacks\">", "</span>").unwrap_or("(none)");
    assert!(fallbacks.contains("size"), "fallbacks span: {fallbacks:?}");
    println!("first load: {rows:?}; fallbacks: {fallbacks}");

    // Live: traffic keeps arriving while the page is open. Under
    // --virtual-time-budget the page's one-second polls follow each other
    // as fast as /admin/stats answers, so the traffic is dense (several
    // senders, no pause) for the count to change between two polls.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut senders = Vec::new();
    for _ in 0..8 {
        let base = gw.base.clone();
        let stop_rx = stop_rx.clone();
        senders.push(tokio::spawn(async move {
            let http = client();
            let body = common::small_batch();
            let mut sent = 0usize;
            while !*stop_rx.borrow() {
                let response = http
                    .post(format!("{base}/validate"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("POST /validate");
                assert_eq!(response.status(), 200);
                sent += 1;
            }
            sent
        }));
    }
    // A page whose last render has a positive req/s saw the count change
    // between two of its own polls; retry the load a few times in case the
    // polls fell between two requests.
    let before = number(&rows, "spin-embedded", "count", &dom);
    let mut attempts = 0;
    let (dom2, rows2, rps) = loop {
        attempts += 1;
        let dom2 = chromium_async(&chromium, url.clone(), vec!["--dump-dom".into()])
            .await
            .stdout;
        let rows2 = route_rows(&dom2, "validate")
            .unwrap_or_else(|| panic!("no validate section in the second DOM:\n{dom2}"));
        let rps = number(&rows2, "spin-embedded", "rps", &dom2);
        if rps > 0.0 || attempts == 10 {
            break (dom2, rows2, rps);
        }
    };
    stop_tx.send_replace(true);
    let mut sent = 0;
    for sender in senders {
        sent += sender.await.expect("traffic task");
    }
    let after = number(&rows2, "spin-embedded", "count", &dom2);
    assert!(
        after > before,
        "the spin-embedded count did not grow ({before} -> {after}, {sent} sent meanwhile): {rows2:?}"
    );
    assert!(
        rps > 0.0,
        "after {attempts} page loads with traffic flowing, req/s never went above 0: the page \
         does not update live ({rows2:?})"
    );
    println!("second load (attempt {attempts}, {sent} requests sent meanwhile): {rows2:?}");

    // A screenshot for humans.
    let png = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard.png");
    let _ = std::fs::remove_file(&png);
    chromium_async(
        &chromium,
        url,
        vec![
            format!("--screenshot={}", png.display()),
            "--window-size=1280,900".into(),
            "--hide-scrollbars".into(),
        ],
    )
    .await;
    let size = std::fs::metadata(&png)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()))
        .len();
    let head = std::fs::read(&png).expect("read the screenshot");
    assert!(
        head.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        png.display()
    );
    assert!(size > 10 * 1024, "the screenshot is only {size} bytes");
    println!("screenshot: {} ({size} bytes)", png.display());
}
