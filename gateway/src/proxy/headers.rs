//! Header hygiene for proxying (RFC 9110 §7.6.1, RFC 7239).
//!
//! Hop-by-hop headers describe one connection and must not be forwarded;
//! `Forwarded` / `X-Forwarded-*` tell the upstream who the client really
//! was, since the upstream only sees the gateway's connection.
//!
//! Two header namespaces belong to one side only, so neither side may send
//! them across: `spin-*` request headers are Spin's (its trigger adds
//! `spin-path-info`, `spin-client-addr`, ... and *appends* to a client's, so
//! a component reading the first value would trust the client's), and
//! `x-gateway-*` headers are the gateway's (`x-gateway-backend`,
//! `x-gateway-fallback` feed the gateway's metrics and tell the client who
//! answered; an upstream must not be able to forge them, and a client must
//! not be able to make a component believe the gateway said something).

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that are hop-by-hop by definition (RFC 9110 §7.6.1), plus the
/// legacy ones proxies still see in the wild.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including every header named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The prefix of the request headers Spin's HTTP trigger sets for components.
pub const SPIN_PREFIX: &str = "spin-";
/// The prefix of the headers only the gateway may set.
pub const GATEWAY_PREFIX: &str = "x-gateway-";

/// Removes every header whose (lower-case) name starts with `prefix`.
pub fn remove_prefixed(headers: &mut HeaderMap, prefix: &str) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(prefix))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Cleans a client's request headers before they go to Spin: no `spin-*`
/// (Spin's own), no `x-gateway-*` (the gateway's own).
pub fn remove_reserved_request(headers: &mut HeaderMap) {
    remove_prefixed(headers, SPIN_PREFIX);
    remove_prefixed(headers, GATEWAY_PREFIX);
}

/// Cleans an upstream's response headers before the gateway adds its own:
/// no `x-gateway-*`.
pub fn remove_reserved_response(headers: &mut HeaderMap) {
    remove_prefixed(headers, GATEWAY_PREFIX);
}

/// Adds `Forwarded` and the de-facto `X-Forwarded-For/-Host/-Proto`,
/// appending to what an earlier proxy set.
pub fn add_forwarded(headers: &mut HeaderMap, client: SocketAddr, proto: &str) {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let for_node = match client {
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => format!("\"[{}]\"", v6.ip()),
    };
    let mut forwarded = format!("for={for_node};proto={proto}");
    if let Some(host) = &host {
        forwarded.push_str(&format!(";host=\"{host}\""));
    }
    append_list(headers, HeaderName::from_static("forwarded"), &forwarded);
    append_list(
        headers,
        HeaderName::from_static("x-forwarded-for"),
        &client.ip().to_string(),
    );
    if let Some(host) = host
        && let Ok(v) = HeaderValue::from_str(&host)
    {
        headers.insert(HeaderName::from_static("x-forwarded-host"), v);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(if proto == "https" { "https" } else { "http" }),
    );
}

/// Appends `value` to a comma-separated list header.
fn append_list(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let combined = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.is_empty() => format!("{existing}, {value}"),
        _ => value.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&combined) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn reserved_request_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("spin-path-info", HeaderValue::from_static("/../admin"));
        h.append("spin-path-info", HeaderValue::from_static("/again"));
        h.insert("spin-client-addr", HeaderValue::from_static("10.0.0.1:1"));
        h.insert("spin-path-match-id", HeaderValue::from_static("7"));
        h.insert("x-gateway-backend", HeaderValue::from_static("native"));
        h.insert("spinach", HeaderValue::from_static("kept"));
        h.insert("x-gateway", HeaderValue::from_static("kept"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        remove_reserved_request(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "spinach", "x-gateway"]);
    }

    #[test]
    fn reserved_response_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("x-gateway-fallback", HeaderValue::from_static("forged"));
        h.insert("x-gateway-backend", HeaderValue::from_static("forged"));
        h.insert("spin-anything", HeaderValue::from_static("kept"));
        remove_reserved_response(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("spin-anything"));
    }

    #[test]
    fn forwarded_headers_append_to_earlier_proxies() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("api.example"));
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        add_forwarded(&mut h, "10.0.0.7:5555".parse().unwrap(), "http");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.7");
        assert_eq!(h["x-forwarded-host"], "api.example");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(
            h["forwarded"],
            "for=10.0.0.7;proto=http;host=\"api.example\""
        );
    }

    #[test]
    fn ipv6_clients_are_quoted_in_forwarded() {
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, "[::1]:80".parse().unwrap(), "http");
        assert_eq!(h["forwarded"], "for=\"[::1]\";proto=http");
    }
}
