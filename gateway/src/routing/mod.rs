//! Public route matching: method + path to one configured route.
#![deny(missing_docs)]
//!
//! The table is rebuilt from the config on every reload (it is part of the
//! runtime snapshot a request starts with), so it is a plain `matchit`
//! router (the matcher inside Axum) rather than an Axum `Router`, which
//! cannot change once serving.
//!
//! Captured path parameters are percent-decoded and checked by [`params`]:
//! a value that would change the backend path's meaning (`..`, `/`, `\`,
//! NUL) resolves to [`Match::InvalidParam`] and is never forwarded.

pub mod params;

use http::Method;
use matchit::Router;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The routes declared for one path, by method.
#[derive(Clone, Debug, Default)]
struct PathRoutes {
    by_method: Vec<(Method, usize)>,
}

/// What a request path and method resolve to.
#[derive(Debug, PartialEq, Eq)]
pub enum Match {
    /// A route: its index in the config and the captured path parameters
    /// (percent-decoded).
    Route {
        /// Index into the config's route list.
        index: usize,
        /// `{name}` captures, in path order.
        params: Vec<(String, String)>,
    },
    /// A route matched, but a captured parameter is unsafe to forward; the
    /// caller answers 400 (see [`crate::problem::invalid_path_param`]).
    InvalidParam {
        /// Index into the config's route list (for metrics and spans).
        index: usize,
        /// The parameter's name in the route path.
        name: String,
        /// What is wrong with its value.
        reason: params::Unsafe,
    },
    /// The path is known but not with this method; `allow` lists the
    /// methods that are (for the `Allow` header).
    MethodNotAllowed {
        /// Comma-separated methods for `Allow`.
        allow: String,
    },
    /// No route has this path.
    NotFound,
}

/// A matcher over a set of `(method, path)` routes.
#[derive(Clone)]
pub struct RouteTable {
    router: Router<PathRoutes>,
}

impl RouteTable {
    /// Builds the table. Paths use `{param}` segments, as the config does;
    /// `(method, path)` pairs are already unique (the config checks that).
    pub fn new<'a>(
        routes: impl IntoIterator<Item = (&'a Method, &'a str)>,
    ) -> Result<Self, String> {
        let mut grouped: Vec<(String, PathRoutes)> = Vec::new();
        for (index, (method, path)) in routes.into_iter().enumerate() {
            match grouped.iter_mut().find(|(p, _)| p == path) {
                Some((_, routes)) => routes.by_method.push((method.clone(), index)),
                None => grouped.push((
                    path.to_string(),
                    PathRoutes {
                        by_method: vec![(method.clone(), index)],
                    },
                )),
            }
        }
        let mut router = Router::new();
        for (path, routes) in grouped {
            router
                .insert(path.clone(), routes)
                .map_err(|e| format!("route path `{path}`: {e}"))?;
        }
        Ok(RouteTable { router })
    }

    /// Resolves a request. `HEAD` is served by a `GET` route, as HTTP allows.
    pub fn resolve(&self, method: &Method, path: &str) -> Match {
        let Ok(found) = self.router.at(path) else {
            return Match::NotFound;
        };
        let routes = found.value;
        let wanted = |m: &Method| m == method || (method == Method::HEAD && m == Method::GET);
        match routes.by_method.iter().find(|(m, _)| wanted(m)) {
            Some((_, index)) => {
                let mut decoded = Vec::with_capacity(found.params.len());
                for (name, raw) in found.params.iter() {
                    let value = percent_decode_str(raw)
                        .decode_utf8()
                        .map_err(|_| params::Unsafe::NotUtf8)
                        .and_then(|v| params::check(&v).map(|()| v));
                    match value {
                        Ok(value) => decoded.push((name.to_string(), value.into_owned())),
                        Err(reason) => {
                            return Match::InvalidParam {
                                index: *index,
                                name: name.to_string(),
                                reason,
                            };
                        }
                    }
                }
                Match::Route {
                    index: *index,
                    params: decoded,
                }
            }
            None => {
                let mut allow: Vec<&str> =
                    routes.by_method.iter().map(|(m, _)| m.as_str()).collect();
                if allow.contains(&"GET") {
                    allow.push("HEAD");
                }
                Match::MethodNotAllowed {
                    allow: allow.join(", "),
                }
            }
        }
    }
}

/// Characters escaped inside one path segment: everything but RFC 3986
/// `pchar`, so a parameter value can never add a `/`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// Fills `{param}`s of a backend path template with captured values,
/// re-encoding each as a single segment.
pub fn fill_template(template: &str, params: &[(String, String)]) -> String {
    let mut out = template.to_string();
    for (name, value) in params {
        out = out.replace(
            &format!("{{{name}}}"),
            &utf8_percent_encode(value, SEGMENT).to_string(),
        );
    }
    out
}

/// The backend path for a request: `path` plus the public request's query
/// string, unchanged (both Spin modes route by it).
pub fn with_query(path: &str, uri: &http::Uri) -> String {
    match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let routes = [
            (Method::GET, "/items"),
            (Method::POST, "/items"),
            (Method::GET, "/items/{id}"),
            (Method::POST, "/validate"),
        ];
        RouteTable::new(routes.iter().map(|(m, p)| (m, *p))).unwrap()
    }

    #[test]
    fn method_and_path_pick_one_route() {
        let t = table();
        assert_eq!(
            t.resolve(&Method::GET, "/items"),
            Match::Route {
                index: 0,
                params: vec![]
            }
        );
        assert_eq!(
            t.resolve(&Method::POST, "/items"),
            Match::Route {
                index: 1,
                params: vec![]
            }
        );
        assert_eq!(
            t.resolve(&Method::HEAD, "/items"),
            Match::Route {
                index: 0,
                params: vec![]
            }
        );
        assert_eq!(
            t.resolve(&Method::GET, "/items/4%202"),
            Match::Route {
                index: 2,
                params: vec![("id".into(), "4 2".into())]
            }
        );
    }

    #[test]
    fn wrong_method_lists_the_allowed_ones() {
        let t = table();
        assert_eq!(
            t.resolve(&Method::DELETE, "/items"),
            Match::MethodNotAllowed {
                allow: "GET, POST, HEAD".into()
            }
        );
        assert_eq!(
            t.resolve(&Method::GET, "/validate"),
            Match::MethodNotAllowed {
                allow: "POST".into()
            }
        );
    }

    #[test]
    fn unknown_paths_are_not_found() {
        let t = table();
        assert_eq!(t.resolve(&Method::GET, "/nope"), Match::NotFound);
        assert_eq!(t.resolve(&Method::GET, "/items/1/extra"), Match::NotFound);
    }

    #[test]
    fn unsafe_parameters_are_refused_after_decoding() {
        let t = table();
        let refused = |path: &str| match t.resolve(&Method::GET, path) {
            Match::InvalidParam {
                index: 2,
                name,
                reason,
            } if name == "id" => reason,
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(refused("/items/.."), params::Unsafe::DotSegment);
        assert_eq!(refused("/items/."), params::Unsafe::DotSegment);
        assert_eq!(refused("/items/%2e%2E"), params::Unsafe::DotSegment);
        assert_eq!(refused("/items/.%2e"), params::Unsafe::DotSegment);
        assert_eq!(refused("/items/%2E"), params::Unsafe::DotSegment);
        assert_eq!(refused("/items/a%2Fb"), params::Unsafe::Slash);
        assert_eq!(refused("/items/%2f"), params::Unsafe::Slash);
        assert_eq!(refused("/items/a%5Cb"), params::Unsafe::Backslash);
        assert_eq!(refused("/items/a\\b"), params::Unsafe::Backslash);
        assert_eq!(refused("/items/a%00"), params::Unsafe::Nul);
        assert_eq!(refused("/items/%FF"), params::Unsafe::NotUtf8);
        // Harmless dots and encodings still match.
        for ok in [
            "/items/...",
            "/items/.well",
            "/items/%2e%2e%2e",
            "/items/a%20b",
        ] {
            assert!(
                matches!(t.resolve(&Method::GET, ok), Match::Route { index: 2, .. }),
                "{ok}"
            );
        }
    }

    #[test]
    fn templates_are_filled_with_encoded_segments() {
        let p = vec![("id".to_string(), "a/b c".to_string())];
        assert_eq!(fill_template("/list/{id}", &p), "/list/a%2Fb%20c");
        assert_eq!(fill_template("/list", &p), "/list");
    }
}
