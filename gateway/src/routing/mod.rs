//! Public route matching: method + path to one configured route.
#![deny(missing_docs)]
//!
//! The table is rebuilt from the config on every reload (it is part of the
//! runtime snapshot a request starts with), so it is a plain `matchit`
//! router (the matcher inside Axum) rather than an Axum `Router`, which
//! cannot change once serving.

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
            Some((_, index)) => Match::Route {
                index: *index,
                params: found
                    .params
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            percent_decode_str(v).decode_utf8_lossy().into_owned(),
                        )
                    })
                    .collect(),
            },
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
    fn templates_are_filled_with_encoded_segments() {
        let p = vec![("id".to_string(), "a/b c".to_string())];
        assert_eq!(fill_template("/list/{id}", &p), "/list/a%2Fb%20c");
        assert_eq!(fill_template("/list", &p), "/list");
    }
}
