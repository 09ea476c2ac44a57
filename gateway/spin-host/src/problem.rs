//! Minimal RFC 9457 `application/problem+json` responses.
//!
//! Host-generated errors (no route, trap, deadline) use the same shape as the
//! gateway's own errors, so clients see one error format. Kept local to avoid
//! depending on other workspace crates.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::HostBody;

/// Content type of problem responses.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// Builds a problem+json response with `type: about:blank`.
pub(crate) fn response(status: StatusCode, title: &str, detail: &str) -> http::Response<HostBody> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    let bytes = Bytes::from(body.to_string());
    let mut resp = http::Response::new(Full::new(bytes).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_JSON),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_problem_json() {
        let resp = response(StatusCode::GATEWAY_TIMEOUT, "Deadline exceeded", "too slow");
        assert_eq!(resp.status(), 504);
        assert_eq!(resp.headers()["content-type"], PROBLEM_JSON);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["status"], 504);
        assert_eq!(v["title"], "Deadline exceeded");
        assert_eq!(v["detail"], "too slow");
    }
}
