//! `validate`: checks a batch of items without storing anything.
//!
//! Route `/validate/...`; the public `POST /validate` lands on `/validate`.
//! The CPU-heavy part (schema and signature checks of up to 10 000 items) is
//! all in [`items_core::validate_batch`]; this component only moves bytes.

use http_util::BodyError;
use items_core::{BatchError, MAX_BATCH_BYTES, validate_batch};
use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(req: IncomingRequest) -> Response {
    let info = http_util::path_info(&req, "/validate");
    if !(info.is_empty() || info == "/") {
        return http_util::not_found(format!("no resource at /validate{info}"));
    }
    if req.method() != Method::Post {
        return http_util::method_not_allowed(&req.method(), "POST");
    }
    if let Err(response) = http_util::require_json(&req) {
        return response;
    }
    // Read the keys before the body: a misconfigured server says so at once.
    let trusted = match http_util::trusted_keys() {
        Ok(keys) => keys,
        Err(response) => return response,
    };
    let body = match http_util::read_body(req, MAX_BATCH_BYTES) {
        Ok(body) => body,
        Err(BodyError::TooLarge(bytes)) => {
            return http_util::problem(&BatchError::TooLarge { bytes }.to_problem());
        }
        Err(BodyError::Read(e)) => return http_util::unreadable_body(&e),
    };
    match validate_batch(&body, &trusted) {
        // The verdict's own bytes, unchanged: the gateway's native path
        // produces the same bytes, and a client cannot tell which answered.
        Ok(verdict) => http_util::json(200, verdict.to_json()),
        Err(e) => http_util::problem(&e.to_problem()),
    }
}
