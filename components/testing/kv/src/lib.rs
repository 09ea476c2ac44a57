//! A component that exposes Spin's key-value interface
//! (`fermyon:spin/key-value@2.0.0`) over HTTP, so a host's key-value
//! support can be tested end to end with a real spin-sdk guest. Paths are
//! `/<prefix>/<label>/<operation>[/<key>]`; the prefix is whatever route the
//! manifest mounts it on, and `<label>` is the store to open:
//!
//! * `get/<key>` — 200 with the value, 404 when the key is absent;
//! * `set/<key>` — stores the request body, 200 `ok`;
//! * `delete/<key>` — 200 `ok` (also when the key was absent);
//! * `exists/<key>` — 200 `true` or `false`;
//! * `keys` — 200 with the keys, sorted, one per line;
//! * `open-many/<n>` — opens the store `n` times, keeping every handle
//!   open, and answers with how many opened before the first error.
//!
//! An error from the host is answered with its variant name as the body:
//! 403 `access-denied`, 404 `no-such-store`, 503 `store-table-full`, 500
//! `other: <message>`.
//!
//! Not in `spin.toml`: it is never deployed.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::{Error, Store};

#[http_component]
fn handle(req: Request) -> Response {
    let parts: Vec<&str> = req.path().split('/').filter(|s| !s.is_empty()).collect();
    match parts.as_slice() {
        [_, label, op, rest @ ..] => match run(label, op, rest.first().copied(), req.body()) {
            Ok(resp) => resp,
            Err(e) => error(&e),
        },
        _ => text(400, "use /<prefix>/<label>/<operation>[/<key>]"),
    }
}

fn run(label: &str, op: &str, key: Option<&str>, body: &[u8]) -> Result<Response, Error> {
    if op == "open-many" {
        return Ok(open_many(
            label,
            key.and_then(|n| n.parse().ok()).unwrap_or(1),
        ));
    }
    let store = Store::open(label)?;
    let key = key.unwrap_or_default();
    Ok(match op {
        "get" => match store.get(key)? {
            Some(value) => Response::builder()
                .status(200)
                .header("content-type", "application/octet-stream")
                .body(value)
                .build(),
            None => text(404, "absent"),
        },
        "set" => {
            store.set(key, body)?;
            text(200, "ok")
        }
        "delete" => {
            store.delete(key)?;
            text(200, "ok")
        }
        "exists" => text(200, &store.exists(key)?.to_string()),
        "keys" => {
            let mut keys = store.get_keys()?;
            keys.sort();
            text(200, &keys.join("\n"))
        }
        other => text(400, &format!("unknown operation {other:?}")),
    })
}

fn open_many(label: &str, n: usize) -> Response {
    let mut open = Vec::new();
    for _ in 0..n {
        match Store::open(label) {
            Ok(store) => open.push(store),
            Err(e) => {
                let (_, name) = describe(&e);
                return text(200, &format!("{} {name}", open.len()));
            }
        }
    }
    text(200, &format!("{} ok", open.len()))
}

fn describe(e: &Error) -> (u16, String) {
    match e {
        Error::AccessDenied => (403, "access-denied".into()),
        Error::NoSuchStore => (404, "no-such-store".into()),
        Error::StoreTableFull => (503, "store-table-full".into()),
        Error::Other(msg) => (500, format!("other: {msg}")),
    }
}

fn error(e: &Error) -> Response {
    let (status, body) = describe(e);
    text(status, &body)
}

fn text(status: u16, body: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(body.to_owned())
        .build()
}
