//! Request-size classes: the unit in which Wasm and native are compared.
//!
//! A route's `auto` size rule sends big bodies to native and small ones to
//! Spin, so a route's overall latency per backend compares different work:
//! native's figures are the big batches', Wasm's the small ones'. Every
//! request is therefore also recorded under the class of its body size, a
//! small fixed set of log-scaled buckets, and every comparison the gateway
//! shows is made within one class. Five values keep the `size_class` label
//! (and the per-class histograms of `/admin/stats`) bounded.

use std::fmt;

use axum::response::Response;
use http::HeaderMap;

use crate::backend::RequestBody;

/// The size class of a request body; boundaries are inclusive upper limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SizeClass {
    /// At most 1 KiB (and requests without a body).
    Le1KiB,
    /// 1 KiB + 1 byte to 16 KiB.
    Le16KiB,
    /// 16 KiB + 1 byte to 256 KiB.
    Le256KiB,
    /// 256 KiB + 1 byte to 4 MiB.
    Le4MiB,
    /// Over 4 MiB.
    Gt4MiB,
}

impl SizeClass {
    /// Every class, smallest first.
    pub const ALL: [SizeClass; 5] = [
        SizeClass::Le1KiB,
        SizeClass::Le16KiB,
        SizeClass::Le256KiB,
        SizeClass::Le4MiB,
        SizeClass::Gt4MiB,
    ];

    /// The class of a body of `body_bytes` bytes (0: no body).
    pub fn of(body_bytes: u64) -> SizeClass {
        Self::ALL
            .into_iter()
            .find(|class| class.upper_bytes().is_none_or(|upper| body_bytes <= upper))
            .unwrap_or(SizeClass::Gt4MiB)
    }

    /// The metric label value (`le_1KiB` ... `gt_4MiB`).
    pub fn as_str(self) -> &'static str {
        match self {
            SizeClass::Le1KiB => "le_1KiB",
            SizeClass::Le16KiB => "le_16KiB",
            SizeClass::Le256KiB => "le_256KiB",
            SizeClass::Le4MiB => "le_4MiB",
            SizeClass::Gt4MiB => "gt_4MiB",
        }
    }

    /// The text shown to people (`≤ 1 KiB` ... `> 4 MiB`).
    pub fn label(self) -> &'static str {
        match self {
            SizeClass::Le1KiB => "≤ 1 KiB",
            SizeClass::Le16KiB => "≤ 16 KiB",
            SizeClass::Le256KiB => "≤ 256 KiB",
            SizeClass::Le4MiB => "≤ 4 MiB",
            SizeClass::Gt4MiB => "> 4 MiB",
        }
    }

    /// The largest body in the class; `None` for the open-ended last one.
    pub fn upper_bytes(self) -> Option<u64> {
        match self {
            SizeClass::Le1KiB => Some(1 << 10),
            SizeClass::Le16KiB => Some(16 << 10),
            SizeClass::Le256KiB => Some(256 << 10),
            SizeClass::Le4MiB => Some(4 << 20),
            SizeClass::Gt4MiB => None,
        }
    }

    /// The class's position in [`SizeClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for SizeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The size of the request body a response answered, as a response
/// extension: set where the body was read (its real length), so the
/// server's records use the same number the backends saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodySize(pub u64);

impl BodySize {
    /// The declared `Content-Length`, for a body streamed without being
    /// read here (or refused before it was).
    pub fn declared(headers: &HeaderMap) -> Option<BodySize> {
        headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map(BodySize)
    }

    /// The length of a body read in full (`None` for one that streams).
    pub fn buffered(body: &RequestBody) -> Option<BodySize> {
        match body {
            RequestBody::Buffered(bytes) => Some(BodySize(bytes.len() as u64)),
            RequestBody::Streaming(_) => None,
        }
    }

    /// The size recorded on `response`, else `fallback` (the declared
    /// length); `None` when neither is known (a chunked body streamed to
    /// Spin, counted in the smallest class).
    pub fn of(response: &Response, fallback: Option<BodySize>) -> Option<BodySize> {
        response
            .extensions()
            .get::<BodySize>()
            .copied()
            .or(fallback)
    }

    /// Marks `response` as the answer to a body of `size`.
    pub fn tag(mut response: Response, size: Option<BodySize>) -> Response {
        if let Some(size) = size {
            response.extensions_mut().insert(size);
        }
        response
    }

    /// Its class (unknown: no body, the smallest class).
    pub fn class(size: Option<BodySize>) -> SizeClass {
        SizeClass::of(size.map_or(0, |s| s.0))
    }

    /// Records `gateway.size_class` and, when there is a body,
    /// `http.request.body.size` on `span`.
    pub fn record(span: &tracing::Span, size: Option<BodySize>) -> SizeClass {
        let class = Self::class(size);
        span.record("gateway.size_class", class.as_str());
        if let Some(BodySize(bytes)) = size.filter(|s| s.0 > 0) {
            span.record(
                "http.request.body.size",
                i64::try_from(bytes).unwrap_or(i64::MAX),
            );
        }
        class
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_inclusive_upper_limits() {
        let cases = [
            (0, SizeClass::Le1KiB),
            (1, SizeClass::Le1KiB),
            (1024, SizeClass::Le1KiB),
            (1025, SizeClass::Le16KiB),
            (16 * 1024, SizeClass::Le16KiB),
            (16 * 1024 + 1, SizeClass::Le256KiB),
            (256 * 1024, SizeClass::Le256KiB),
            (256 * 1024 + 1, SizeClass::Le4MiB),
            (4 * 1024 * 1024, SizeClass::Le4MiB),
            (4 * 1024 * 1024 + 1, SizeClass::Gt4MiB),
            (u64::MAX, SizeClass::Gt4MiB),
        ];
        for (bytes, class) in cases {
            assert_eq!(SizeClass::of(bytes), class, "{bytes} bytes");
        }
    }

    #[test]
    fn labels_and_values_in_size_order() {
        let values: Vec<_> = SizeClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            values,
            ["le_1KiB", "le_16KiB", "le_256KiB", "le_4MiB", "gt_4MiB"]
        );
        let labels: Vec<_> = SizeClass::ALL.iter().map(|c| c.label()).collect();
        assert_eq!(
            labels,
            ["≤ 1 KiB", "≤ 16 KiB", "≤ 256 KiB", "≤ 4 MiB", "> 4 MiB"]
        );
        for (i, class) in SizeClass::ALL.into_iter().enumerate() {
            assert_eq!(class.index(), i);
            // Each class's upper limit is in it; one byte more is not.
            if let Some(upper) = class.upper_bytes() {
                assert_eq!(SizeClass::of(upper), class);
                assert_eq!(SizeClass::of(upper + 1), SizeClass::ALL[i + 1]);
            }
        }
        assert_eq!(SizeClass::Gt4MiB.upper_bytes(), None);
    }

    #[test]
    fn a_body_read_here_wins_over_the_declared_length() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from_static("70000"),
        );
        let declared = BodySize::declared(&headers);
        assert_eq!(declared, Some(BodySize(70_000)));
        let untagged = Response::new(axum::body::Body::empty());
        assert_eq!(BodySize::of(&untagged, declared), declared);
        let body = RequestBody::Buffered(bytes::Bytes::from_static(b"12345"));
        let size = BodySize::buffered(&body);
        let tagged = BodySize::tag(Response::new(axum::body::Body::empty()), size);
        assert_eq!(BodySize::of(&tagged, declared), Some(BodySize(5)));
        assert_eq!(BodySize::class(None), SizeClass::Le1KiB);
        assert_eq!(BodySize::class(declared), SizeClass::Le256KiB);
    }
}
