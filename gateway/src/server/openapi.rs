//! The public API's OpenAPI 3.1 description, answered by the gateway
//! itself (no Spin call), so it is there even when Spin is not.
//!
//! The document is `schemas/openapi.json`, compiled in byte for byte. It
//! refers to the item schema by the relative reference `item.schema.json`,
//! which resolves next to it both in the repository (`schemas/`) and here
//! (`/item.schema.json` beside `/openapi.json`).

use axum::response::{IntoResponse, Response};
use http::{HeaderName, header};

/// Answered by the gateway, as `x-gateway-backend` says.
const BACKEND: HeaderName = HeaderName::from_static(crate::fallback::BACKEND_HEADER);

/// `schemas/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../schemas/openapi.json");
/// `schemas/item.schema.json`.
pub const ITEM_SCHEMA: &str = include_str!("../../../schemas/item.schema.json");

/// `GET /openapi.json`.
pub async fn document() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (BACKEND, "gateway"),
        ],
        OPENAPI,
    )
        .into_response()
}

/// `GET /item.schema.json`: what the document's `$ref`s point at.
pub async fn item_schema() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/schema+json"),
            (BACKEND, "gateway"),
        ],
        ITEM_SCHEMA,
    )
        .into_response()
}
