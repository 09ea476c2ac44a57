//! Limits on the size of a request head, answered `431` in problem+json.
//!
//! Hyper bounds a head only coarsely (its read buffer, about 400 KiB, and a
//! header count), and answers a head past those bounds with a bare `431`
//! and no body. Proxies bound heads much tighter, and per header field; the
//! limits here follow their defaults:
//!
//! * nginx reads each request line and header line into one of
//!   `large_client_header_buffers 4 8k`: a field over 8 KiB is refused.
//! * Envoy refuses heads over `max_request_headers_kb` (60 KiB) or with
//!   more than `max_request_headers_count` (100) fields, with `431`.
//!
//! So a header field (name and value) may have at most
//! [`MAX_FIELD_BYTES`], all fields together at most [`MAX_SECTION_BYTES`],
//! and there may be at most [`MAX_FIELDS`] of them. [`HeaderLimitsLayer`]
//! checks them on every request before it is routed and answers a head
//! over any of them with a `431` whose `detail` and `limit` member name the
//! limit. Hyper's own count limit is set to twice ours
//! ([`HeaderLimits::parser_max_fields`]), so the layer sees (and explains) every count up to there; beyond
//! it, or beyond hyper's read buffer, hyper's bare `431` remains the
//! backstop.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Request, header};
use tower::{Layer, Service};

use crate::problem::{Problem, ProblemResponse};

/// The most bytes one header field may have, its name and value together
/// (nginx: one `large_client_header_buffers` buffer, 8 KiB).
pub const MAX_FIELD_BYTES: usize = 8 * 1024;
/// The most bytes all header fields of a request may have together, names
/// and values (Envoy: `max_request_headers_kb`, 60 KiB; rounded up).
pub const MAX_SECTION_BYTES: usize = 64 * 1024;
/// The most header fields a request may have (Envoy:
/// `max_request_headers_count`).
pub const MAX_FIELDS: usize = 100;

/// The problem type of a `431`.
const PROBLEM_TYPE: &str = "https://items.example/problems/header-fields-too-large";
/// How much of a header name a `detail` quotes.
const NAME_SHOWN: usize = 64;

/// The three limits of a request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderLimits {
    /// Bytes of one header field (name and value).
    pub max_field_bytes: usize,
    /// Bytes of all header fields together (names and values).
    pub max_section_bytes: usize,
    /// Number of header fields.
    pub max_fields: usize,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        HeaderLimits {
            max_field_bytes: MAX_FIELD_BYTES,
            max_section_bytes: MAX_SECTION_BYTES,
            max_fields: MAX_FIELDS,
        }
    }
}

impl HeaderLimits {
    /// Hyper's own field count limit (`http1::Builder::max_headers`),
    /// twice [`HeaderLimits::max_fields`]: up to it the layer explains a
    /// refusal; beyond it hyper refuses the head itself, with a bare `431`.
    pub fn parser_max_fields(&self) -> usize {
        self.max_fields.saturating_mul(2)
    }

    /// The problem for `headers` if they are over a limit: the field count
    /// first, then the first field over its limit, then the total.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Problem> {
        if headers.len() > self.max_fields {
            return Err(too_large(
                format!(
                    "the request has {} header fields; at most {} are accepted",
                    headers.len(),
                    self.max_fields
                ),
                "header-count",
                self.max_fields,
            ));
        }
        let mut section = 0;
        for (name, value) in headers {
            let field = name.as_str().len() + value.len();
            if field > self.max_field_bytes {
                let shown: String = name.as_str().chars().take(NAME_SHOWN).collect();
                return Err(too_large(
                    format!(
                        "the request header field `{shown}` is {field} bytes (name and value); \
                         at most {} bytes are accepted per header field",
                        self.max_field_bytes
                    ),
                    "header-field-bytes",
                    self.max_field_bytes,
                ));
            }
            section += field;
        }
        if section > self.max_section_bytes {
            return Err(too_large(
                format!(
                    "the request's header fields are {section} bytes together (names and values); \
                     at most {} bytes are accepted",
                    self.max_section_bytes
                ),
                "header-section-bytes",
                self.max_section_bytes,
            ));
        }
        Ok(())
    }
}

fn too_large(detail: String, limit: &str, max: usize) -> Problem {
    Problem::new(431, "Request Header Fields Too Large", detail)
        .with_type(PROBLEM_TYPE)
        .with("limit", serde_json::json!(limit))
        .with("max", serde_json::json!(max))
}

/// The `431` for `problem`, from the gateway, closing the connection (the
/// request's body, if any, is never read).
fn refusal(problem: Problem) -> Response {
    let mut response = ProblemResponse(problem).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(
        crate::fallback::BACKEND_HEADER,
        HeaderValue::from_static("gateway"),
    );
    response
}

/// Applies [`HeaderLimits`] in front of a service.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeaderLimitsLayer {
    limits: HeaderLimits,
}

impl HeaderLimitsLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: HeaderLimits) -> Self {
        HeaderLimitsLayer { limits }
    }
}

impl<S> Layer<S> for HeaderLimitsLayer {
    type Service = HeaderLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeaderLimited {
            inner,
            limits: self.limits,
        }
    }
}

/// A service whose requests are refused with `431` when their head is
/// over the [`HeaderLimits`]; the others reach `inner` unchanged.
#[derive(Clone, Debug)]
pub struct HeaderLimited<S> {
    inner: S,
    limits: HeaderLimits,
}

impl<S, B> Service<Request<B>> for HeaderLimited<S>
where
    S: Service<Request<B>, Response = Response>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.limits.check(request.headers()) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(problem) => {
                let response = refusal(problem);
                Box::pin(std::future::ready(Ok(response)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    fn headers(fields: &[(&str, usize)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value_len) in fields {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(&"v".repeat(*value_len)).unwrap(),
            );
        }
        map
    }

    fn limit_hit(map: &HeaderMap) -> Option<String> {
        HeaderLimits::default()
            .check(map)
            .err()
            .map(|p| p.to_json())
            .map(|json| String::from_utf8_lossy(&json).into_owned())
    }

    #[test]
    fn each_limit_is_inclusive_and_named_when_passed() {
        // Exactly at every limit: accepted.
        assert_eq!(limit_hit(&headers(&[("x-a", MAX_FIELD_BYTES - 3)])), None);
        let at_total: Vec<(&str, usize)> = (0..8).map(|_| ("x-b", MAX_FIELD_BYTES - 3)).collect();
        assert_eq!(limit_hit(&headers(&at_total)), None);
        let at_count: Vec<(&str, usize)> = (0..MAX_FIELDS).map(|_| ("x-c", 1)).collect();
        assert_eq!(limit_hit(&headers(&at_count)), None);

        let field = limit_hit(&headers(&[("x-a", MAX_FIELD_BYTES - 2)])).unwrap();
        assert!(field.contains("header-field-bytes"), "{field}");
        assert!(field.contains("`x-a` is 8193 bytes"), "{field}");
        let mut over_total = at_total.clone();
        over_total.push(("x", 0));
        let total = limit_hit(&headers(&over_total)).unwrap();
        assert!(total.contains("header-section-bytes"), "{total}");
        assert!(total.contains("65537 bytes together"), "{total}");
        let mut over_count = at_count.clone();
        over_count.push(("x-c", 1));
        let count = limit_hit(&headers(&over_count)).unwrap();
        assert!(count.contains("header-count"), "{count}");
        assert!(count.contains("101 header fields"), "{count}");
    }
}
