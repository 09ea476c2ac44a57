//! HTTP chores shared by the item components.
//!
//! Everything a component answers that is not a success is an RFC 9457
//! problem built with [`items_core::Problem`], so a client sees the same error
//! shape whether the gateway or a component refused it. Nothing here panics:
//! every failure becomes a response.

pub mod store;

use items_core::{Problem, TrustedKeys};
use serde_json::json;
use spin_sdk::http::{IncomingRequest, Method, Response};
use wasi::io::streams::StreamError;

/// The media type of JSON bodies.
pub const JSON: &str = items_core::http::JSON;

/// A JSON response with the given status and body bytes (sent as they are).
pub fn json(status: u16, body: Vec<u8>) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", JSON)
        .body(body)
        .build()
}

/// The response for a problem: its status, `application/problem+json`, its JSON.
pub fn problem(problem: &Problem) -> Response {
    Response::builder()
        .status(problem.status())
        .header("content-type", Problem::CONTENT_TYPE)
        .body(problem.to_json())
        .build()
}

/// 404 for a path the component does not serve.
pub fn not_found(detail: impl Into<String>) -> Response {
    problem(&Problem::new(404, "Not Found", detail))
}

/// 405 with the `Allow` header listing what the resource does accept.
pub fn method_not_allowed(method: &Method, allow: &str) -> Response {
    let p = Problem::new(
        405,
        "Method Not Allowed",
        format!("{method} is not supported here; allowed: {allow}"),
    )
    .with("allow", json!(allow));
    let mut response = problem(&p);
    response.set_header("allow", allow);
    response
}

/// 500 for a failure of the platform (database, configuration), logged to
/// stderr with the internal detail while the client gets `detail`.
pub fn internal_error(detail: &str, internal: &dyn std::fmt::Display) -> Response {
    eprintln!("{detail}: {internal}");
    problem(&Problem::new(500, "Internal Server Error", detail))
}

/// The request's path (without the query) and its query string (without `?`).
pub fn path_and_query(req: &IncomingRequest) -> (String, String) {
    let full = req.path_with_query().unwrap_or_default();
    match full.split_once('?') {
        Some((path, query)) => (path.to_owned(), query.to_owned()),
        None => (full, String::new()),
    }
}

/// The part of the path below the component's route, e.g. `/7` for
/// `/list/7` on route `/list/...`.
///
/// Spin sends it as `spin-path-info`; a host that does not is handled by
/// stripping `base` from the path.
pub fn path_info(req: &IncomingRequest, base: &str) -> String {
    if let Some(info) = header(req, "spin-path-info") {
        return info;
    }
    let (path, _) = path_and_query(req);
    match path.strip_prefix(base) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.to_owned(),
        _ => path,
    }
}

/// The first value of a header, if present and UTF-8.
pub fn header(req: &IncomingRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8(v).ok())
}

/// `Ok` when the request says its body is JSON; otherwise the 415. The
/// rule lives in `items_core::http` so the gateway's native twin refuses
/// exactly the same requests.
pub fn require_json(req: &IncomingRequest) -> Result<(), Response> {
    items_core::http::require_json(header(req, "content-type").as_deref()).map_err(|p| {
        let mut response = problem(&p);
        response.set_header("accept-post", JSON);
        response
    })
}

/// Why a body could not be read.
pub enum BodyError {
    /// More than the limit: the bytes seen so far (a lower bound) or the
    /// declared `Content-Length`.
    TooLarge(usize),
    /// The stream failed (client went away, host error).
    Read(String),
}

/// Reads the whole body, refusing (without buffering it) one larger than
/// `limit` bytes: a declared `Content-Length` above the limit is refused
/// before reading, and reading stops as soon as the limit is passed.
pub fn read_body(req: IncomingRequest, limit: usize) -> Result<Vec<u8>, BodyError> {
    let declared = header(&req, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&n| n > limit as u64) {
        return Err(BodyError::TooLarge(
            usize::try_from(declared).unwrap_or(usize::MAX),
        ));
    }
    let incoming = req
        .consume()
        .map_err(|()| BodyError::Read("the body was already consumed".into()))?;
    let stream = incoming
        .stream()
        .map_err(|()| BodyError::Read("the body stream is unavailable".into()))?;
    let mut body = Vec::new();
    loop {
        // Ask for at most one byte past the limit: enough to know it was passed.
        let want = (limit + 1 - body.len()).min(64 * 1024) as u64;
        match stream.blocking_read(want) {
            Ok(chunk) => {
                body.extend_from_slice(&chunk);
                if body.len() > limit {
                    return Err(BodyError::TooLarge(body.len()));
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(BodyError::Read(e.to_debug_string()));
            }
        }
    }
    drop(stream);
    // Dropping the body after its stream ends the read; the trailers are not needed.
    drop(incoming);
    Ok(body)
}

/// The allow-list of signing keys from the Spin variable `trusted_keys`
/// (comma-separated standard base64; empty means any well-formed key).
///
/// A value that does not parse, or a missing variable, is a deployment
/// mistake: 500 naming the variable, rather than silently trusting everyone.
pub fn trusted_keys() -> Result<TrustedKeys, Response> {
    const NAME: &str = "trusted_keys";
    let raw = spin_sdk::variables::get(NAME).map_err(|e| {
        internal_error(
            &format!("the server is misconfigured: the variable {NAME} cannot be read"),
            &e,
        )
    })?;
    TrustedKeys::parse(&raw).map_err(|e| {
        internal_error(
            &format!("the server is misconfigured: the variable {NAME} is not a valid key list"),
            &e,
        )
    })
}

/// 400 for a body whose stream failed part-way (the client went away or sent
/// a broken chunked encoding).
pub fn unreadable_body(reason: &str) -> Response {
    eprintln!("reading the request body failed: {reason}");
    problem(&Problem::new(
        400,
        "Bad Request",
        "the request body could not be read completely",
    ))
}
