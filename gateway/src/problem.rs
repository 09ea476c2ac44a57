//! RFC 9457 problem responses produced by the gateway itself.
//!
//! The components answer with problem+json for their own errors; the
//! gateway must speak the same language for what it decides alone (no such
//! route, wrong method, body too large, backend unavailable) so a client has
//! one error format to parse.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
pub use items_core::Problem;

/// Wraps [`Problem`] so handlers can return it directly.
pub struct ProblemResponse(pub Problem);

impl From<Problem> for ProblemResponse {
    fn from(p: Problem) -> Self {
        ProblemResponse(p)
    }
}

impl IntoResponse for ProblemResponse {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = Response::new(Body::from(self.0.to_json()));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(Problem::CONTENT_TYPE),
        );
        response
    }
}

/// `404` for paths no route declares.
pub fn not_found(path: &str) -> Problem {
    Problem::new(
        404,
        "Not Found",
        format!("no route matches the path `{path}`"),
    )
}

/// `405` for a known path with a method no route declares for it.
pub fn method_not_allowed(method: &str, path: &str, allow: &str) -> Problem {
    Problem::new(
        405,
        "Method Not Allowed",
        format!("`{method} {path}` is not served; allowed methods: {allow}"),
    )
}

/// [`method_not_allowed`] as a response, with its `Allow` header.
pub fn method_not_allowed_response(method: &str, path: &str, allow: &str) -> Response {
    let mut response = ProblemResponse(method_not_allowed(method, path, allow)).into_response();
    if let Ok(value) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// `413` when a body is larger than the route accepts.
pub fn payload_too_large(route: &str, limit: usize) -> Problem {
    Problem::new(
        413,
        "Payload Too Large",
        format!("the request body exceeds the {limit} bytes route `{route}` accepts"),
    )
    .with("limit_bytes", serde_json::json!(limit))
}

/// `400` for a path parameter whose value is unsafe to forward (see
/// [`crate::routing::params`]); names the parameter and the rule.
pub fn invalid_path_param(name: &str, reason: crate::routing::params::Unsafe) -> Problem {
    Problem::new(
        400,
        "Invalid path parameter",
        format!("path parameter `{name}` {reason}, which is not allowed in a path segment"),
    )
    .with_type("https://items.example/problems/invalid-path-parameter")
    .with("parameter", serde_json::json!(name))
}

/// An error and its sources on one line, for a problem's `detail` (hyper's
/// top-level message alone says little: "client error (Connect)").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
