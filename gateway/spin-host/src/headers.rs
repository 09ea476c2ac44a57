//! The `spin-*` request headers Spin's HTTP trigger adds for components.
//!
//! spin-sdk components read routing information (`spin-path-info`,
//! `spin-path-match-<name>`, ...) from these headers, so the embedded host
//! must produce the same names and values as Spin's `trigger-http`.

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use crate::routes::RouteMatch;

/// Host used for `spin-full-url` when the request has no `Host` header.
pub(crate) const DEFAULT_HOST: &str = "127.0.0.1";

/// Computes the `spin-*` headers for a routed request, in Spin's order.
pub(crate) fn spin_headers(
    uri: &Uri,
    host: &str,
    m: &RouteMatch,
    client_addr: SocketAddr,
) -> Vec<(String, String)> {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let scheme = uri.scheme_str().unwrap_or("http");
    let mut out = vec![
        ("spin-path-info".to_string(), m.path_info.clone()),
        (
            "spin-full-url".to_string(),
            format!("{scheme}://{host}{path_and_query}"),
        ),
        ("spin-matched-route".to_string(), m.based_route.clone()),
        // Spin always reports "/" here, even with an application base.
        ("spin-base-path".to_string(), "/".to_string()),
        ("spin-raw-component-route".to_string(), m.raw_route.clone()),
        (
            "spin-component-route".to_string(),
            m.raw_route_or_prefix().to_string(),
        ),
        ("spin-client-addr".to_string(), client_addr.to_string()),
    ];
    // Spin builds `SPIN_PATH_MATCH_<NAME>` and turns it into a header name
    // by lowercasing it and replacing every `_` with `-`, so `:path_end`
    // arrives as `spin-path-match-path-end`.
    for (name, value) in &m.params {
        out.push((
            format!(
                "spin-path-match-{}",
                name.replace('_', "-").to_ascii_lowercase()
            ),
            value.clone(),
        ));
    }
    out
}

/// Replaces any client-supplied `spin-*` headers with the computed ones.
///
/// Removing the incoming ones first stops a client from spoofing e.g.
/// `spin-client-addr` or an extra `spin-path-match-*` the component trusts.
/// Headers whose value cannot be represented (never for well-formed paths)
/// are skipped rather than failing the request.
pub(crate) fn apply(headers: &mut HeaderMap, spin: Vec<(String, String)>) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for k in spoofed {
        headers.remove(&k);
    }
    for (k, v) in spin {
        match (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            (Ok(k), Ok(v)) => {
                headers.insert(k, v);
            }
            (k, _) => tracing::debug!(header = ?k.ok(), "skipping unrepresentable spin header"),
        }
    }
}

/// The host used in `spin-full-url`: the `Host` header, else the URI's
/// authority, else [`DEFAULT_HOST`].
pub(crate) fn request_host(uri: &Uri, headers: &HeaderMap) -> String {
    headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Router;

    fn get<'a>(h: &'a [(String, String)], k: &str) -> &'a str {
        h.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("missing {k}"))
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:8777".parse().unwrap()
    }

    #[test]
    fn wildcard_route_headers_match_spin() {
        let r = Router::build("/", [("/list/...", 0)]).unwrap();
        let m = r.route("/list/5").unwrap();
        let uri: Uri = "/list/5?x=1".parse().unwrap();
        let h = spin_headers(&uri, "localhost:3000", &m, addr());
        assert_eq!(get(&h, "spin-full-url"), "http://localhost:3000/list/5?x=1");
        assert_eq!(get(&h, "spin-path-info"), "/5");
        assert_eq!(get(&h, "spin-matched-route"), "/list/...");
        assert_eq!(get(&h, "spin-component-route"), "/list");
        assert_eq!(get(&h, "spin-raw-component-route"), "/list/...");
        assert_eq!(get(&h, "spin-base-path"), "/");
        assert_eq!(get(&h, "spin-client-addr"), "127.0.0.1:8777");
    }

    #[test]
    fn named_wildcards_and_absolute_uri() {
        let r = Router::build("/", [("/foo/:userid/...", 0)]).unwrap();
        let m = r.route("/foo/42/bar").unwrap();
        let uri: Uri = "https://fermyon.dev/foo/42/bar?key1=value1"
            .parse()
            .unwrap();
        let h = spin_headers(&uri, "fermyon.dev", &m, addr());
        assert_eq!(
            get(&h, "spin-full-url"),
            "https://fermyon.dev/foo/42/bar?key1=value1"
        );
        assert_eq!(get(&h, "spin-path-info"), "/bar");
        assert_eq!(get(&h, "spin-matched-route"), "/foo/:userid/...");
        assert_eq!(get(&h, "spin-component-route"), "/foo/:userid");
        assert_eq!(get(&h, "spin-path-match-userid"), "42");
    }

    #[test]
    fn underscores_in_parameter_names_become_hyphens_as_in_spin() {
        let r = Router::build("/", [("/base/:path_segment/:path_end/...", 0)]).unwrap();
        let m = r.route("/base/one/two/rest").unwrap();
        let uri: Uri = "/base/one/two/rest".parse().unwrap();
        let h = spin_headers(&uri, DEFAULT_HOST, &m, addr());
        assert_eq!(get(&h, "spin-path-match-path-segment"), "one");
        assert_eq!(get(&h, "spin-path-match-path-end"), "two");
        assert!(h.iter().all(|(n, _)| !n.contains('_')), "{h:?}");
    }

    #[test]
    fn exact_route_has_empty_path_info_and_base_in_matched_route() {
        let r = Router::build("/api", [("/items", 0)]).unwrap();
        let m = r.route("/api/items").unwrap();
        let uri: Uri = "/api/items".parse().unwrap();
        let h = spin_headers(&uri, DEFAULT_HOST, &m, addr());
        assert_eq!(get(&h, "spin-path-info"), "");
        assert_eq!(get(&h, "spin-matched-route"), "/api/items");
        assert_eq!(get(&h, "spin-raw-component-route"), "/items");
        assert_eq!(get(&h, "spin-full-url"), "http://127.0.0.1/api/items");
    }

    #[test]
    fn apply_overwrites_spoofed_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("spin-client-addr", HeaderValue::from_static("6.6.6.6:1"));
        headers.insert("spin-path-match-admin", HeaderValue::from_static("true"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        apply(
            &mut headers,
            vec![("spin-client-addr".into(), "127.0.0.1:1".into())],
        );
        assert_eq!(headers["spin-client-addr"], "127.0.0.1:1");
        assert!(headers.get("spin-path-match-admin").is_none());
        assert_eq!(headers["accept"], "*/*");
    }

    #[test]
    fn host_falls_back_to_authority_then_default() {
        let mut headers = HeaderMap::new();
        let origin: Uri = "/x".parse().unwrap();
        assert_eq!(request_host(&origin, &headers), DEFAULT_HOST);
        let abs: Uri = "http://example.com:8080/x".parse().unwrap();
        assert_eq!(request_host(&abs, &headers), "example.com:8080");
        headers.insert("host", HeaderValue::from_static("h.test"));
        assert_eq!(request_host(&abs, &headers), "h.test");
    }
}
