//! Spin's HTTP route matching, re-implemented without Spin's crates.
//!
//! Components are written against Spin's routing rules (and read the
//! `spin-*` headers derived from the match), so the embedded host must pick
//! the same component and compute the same route strings as `spin up`:
//!
//! * `/a/b` matches exactly that path (a single trailing slash is ignored);
//! * `:name` matches one non-empty segment and is exposed as
//!   `spin-path-match-<name>`;
//! * a trailing `/...` (or `/*`) matches the prefix and anything below it;
//! * the most specific route wins: segment by segment, an exact segment beats a
//!   `:param`, which beats the wildcard; an exact end beats a wildcard that
//!   would match nothing. So exact routes beat wildcards and longer prefixes
//!   beat shorter ones;
//! * the application `base` is prefixed to every route; duplicate routes keep
//!   the last declaration, as Spin does.

#[cfg(test)]
use std::collections::HashMap;

/// The routing table of an application.
#[derive(Debug, Clone, Default)]
pub(crate) struct Router {
    routes: Vec<Route>,
}

/// A parsed route pattern and what it maps to.
#[derive(Debug, Clone)]
struct Route {
    /// Index of the component (in the caller's component list).
    component: usize,
    /// The route including the base (`/api/items/...`), Spin's "based route".
    based_route: String,
    /// The route as written in the manifest, Spin's "raw route".
    raw_route: String,
    /// Segments of the based route without the wildcard.
    segments: Vec<Segment>,
    /// Whether the route ends in a trailing wildcard.
    wildcard: bool,
}

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Must equal the path segment.
    Exact(String),
    /// Matches any non-empty segment, captured under this name.
    Param(String),
}

/// The result of routing one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteMatch {
    /// Index of the component that handles the request.
    pub component: usize,
    /// The route with the base, as Spin reports in `spin-matched-route`.
    pub based_route: String,
    /// The route as written in the manifest (`spin-raw-component-route`).
    pub raw_route: String,
    /// `:name` captures, in route order.
    pub params: Vec<(String, String)>,
    /// The part of the path matched by the trailing wildcard
    /// (`spin-path-info`); empty for exact routes.
    pub path_info: String,
}

impl RouteMatch {
    /// The raw route without its trailing `/...` (`spin-component-route`).
    pub fn raw_route_or_prefix(&self) -> &str {
        self.raw_route
            .strip_suffix("/...")
            .unwrap_or(&self.raw_route)
    }

    /// The `:name` captures as a map (used in tests and headers).
    #[cfg(test)]
    pub fn params_map(&self) -> HashMap<&str, &str> {
        self.params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// A route that matched a path, before the most specific one is chosen.
struct Candidate<'r> {
    /// Specificity key, compared lexicographically.
    rank: Vec<Rank>,
    route: &'r Route,
    params: Vec<(String, String)>,
    /// Number of path segments consumed before the wildcard.
    consumed: usize,
}

/// Specificity rank of a position in a route; higher is more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Wildcard = 1,
    Param = 2,
    Exact = 3,
    End = 4,
}

impl Router {
    /// Builds the router from `(route, component index)` pairs in manifest
    /// order. Fails on a malformed route (empty `:` name, `...` in the middle).
    pub fn build<'a>(
        base: &str,
        routes: impl IntoIterator<Item = (&'a str, usize)>,
    ) -> Result<Router, String> {
        let mut out: Vec<Route> = Vec::new();
        for (raw, component) in routes {
            let based = with_base(base, raw);
            let (pattern, wildcard) = if let Some(p) = based.strip_suffix("/...") {
                (p, true)
            } else if let Some(p) = based.strip_suffix("/*") {
                (p, true)
            } else {
                (based.as_str(), false)
            };
            let mut segments = Vec::new();
            for seg in split_path(pattern) {
                if seg == "..." || seg == "*" {
                    return Err(format!(
                        "route '{raw}': a wildcard is only allowed at the end (`/...`)"
                    ));
                }
                if let Some(name) = seg.strip_prefix(':') {
                    if name.is_empty() {
                        return Err(format!("route '{raw}': `:` must be followed by a name"));
                    }
                    segments.push(Segment::Param(name.to_string()));
                } else {
                    segments.push(Segment::Exact(seg.to_string()));
                }
            }
            let route = Route {
                component,
                based_route: if based.is_empty() { "/".into() } else { based },
                raw_route: raw.to_string(),
                segments,
                wildcard,
            };
            // Spin: a duplicate route replaces the earlier one in place.
            if let Some(existing) = out.iter_mut().find(|r| r.raw_route == route.raw_route) {
                *existing = route;
            } else {
                out.push(route);
            }
        }
        Ok(Router { routes: out })
    }

    /// Finds the most specific route for a request path (no query string).
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let segs: Vec<&str> = split_path(path).collect();
        let mut best: Option<Candidate<'_>> = None;
        for route in &self.routes {
            let Some(c) = route.matches(&segs) else {
                continue;
            };
            // Strictly greater: on a tie the earlier route wins.
            if best.as_ref().is_none_or(|b| c.rank > b.rank) {
                best = Some(c);
            }
        }
        let Candidate {
            route,
            params,
            consumed,
            ..
        } = best?;
        let path_info = if route.wildcard {
            let rest = segs[consumed..].join("/");
            match (rest.is_empty(), path.ends_with('/')) {
                (true, false) => String::new(),
                (true, true) => "/".to_string(),
                (false, false) => format!("/{rest}"),
                (false, true) => format!("/{rest}/"),
            }
        } else {
            String::new()
        };
        Some(RouteMatch {
            component: route.component,
            based_route: route.based_route.clone(),
            raw_route: route.raw_route.clone(),
            params,
            path_info,
        })
    }
}

impl Route {
    /// Returns the match (specificity key, captures, consumed segments) if
    /// this route matches the path segments.
    fn matches(&self, segs: &[&str]) -> Option<Candidate<'_>> {
        if segs.len() < self.segments.len() || (!self.wildcard && segs.len() != self.segments.len())
        {
            return None;
        }
        let mut rank = Vec::with_capacity(self.segments.len() + 1);
        let mut params = Vec::new();
        for (pattern, seg) in self.segments.iter().zip(segs) {
            match pattern {
                Segment::Exact(s) if s == seg => rank.push(Rank::Exact),
                Segment::Exact(_) => return None,
                Segment::Param(_) if seg.is_empty() => return None,
                Segment::Param(name) => {
                    rank.push(Rank::Param);
                    params.push((name.clone(), (*seg).to_string()));
                }
            }
        }
        rank.push(if self.wildcard {
            Rank::Wildcard
        } else {
            Rank::End
        });
        Some(Candidate {
            rank,
            route: self,
            params,
            consumed: self.segments.len(),
        })
    }
}

/// Splits a path into segments, ignoring the leading and one trailing slash
/// (routefinder, which Spin uses, treats `/a/` like `/a`).
fn split_path(path: &str) -> impl Iterator<Item = &str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let p = p.strip_suffix('/').unwrap_or(p);
    p.split('/').filter(move |_| !p.is_empty())
}

/// Spin's `sanitize_with_base`: absolutize the route, strip one trailing slash
/// from base and route, and concatenate.
fn with_base(base: &str, route: &str) -> String {
    let route = if route.starts_with('/') {
        route.to_string()
    } else {
        format!("/{route}")
    };
    let base = if base.starts_with('/') || base.is_empty() {
        base.to_string()
    } else {
        format!("/{base}")
    };
    let base = base.strip_suffix('/').unwrap_or(&base);
    let route = route.strip_suffix('/').unwrap_or(&route);
    format!("{base}{route}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(base: &str, routes: &[&str]) -> Router {
        Router::build(base, routes.iter().enumerate().map(|(i, r)| (*r, i))).unwrap()
    }

    fn comp(r: &Router, path: &str) -> Option<usize> {
        r.route(path).map(|m| m.component)
    }

    #[test]
    fn exact_routes() {
        let r = router("/", &["/foo", "/foo/bar"]);
        assert_eq!(comp(&r, "/foo"), Some(0));
        assert_eq!(comp(&r, "/foo/bar"), Some(1));
        assert_eq!(comp(&r, "/foo/"), Some(0), "one trailing slash is ignored");
        assert_eq!(comp(&r, "/foo/baz"), None);
        assert_eq!(comp(&r, "/"), None);
        assert_eq!(comp(&r, "/fo"), None);
    }

    #[test]
    fn root_route_matches_only_root() {
        let r = router("/", &["/"]);
        assert_eq!(comp(&r, "/"), Some(0));
        assert_eq!(comp(&r, "/x"), None);
        let m = r.route("/").unwrap();
        assert_eq!(m.based_route, "/");
        assert_eq!(m.path_info, "");
    }

    #[test]
    fn wildcard_matches_everything_below() {
        let r = router("/", &["/..."]);
        for p in ["/", "/foo/bar", "/abc/", "/this/should/be/captured"] {
            assert_eq!(comp(&r, p), Some(0), "{p}");
        }
        assert_eq!(r.route("/1/2/3").unwrap().path_info, "/1/2/3");
    }

    #[test]
    fn exact_beats_wildcard() {
        let r = router("/", &["/...", "/one"]);
        assert_eq!(comp(&r, "/one"), Some(1));
        assert_eq!(comp(&r, "/two"), Some(0));
        let r = router("/", &["/one/...", "/one"]);
        assert_eq!(comp(&r, "/one"), Some(1), "exact end beats empty wildcard");
        assert_eq!(comp(&r, "/one/x"), Some(0));
    }

    #[test]
    fn longest_prefix_wins_regardless_of_order() {
        let routes = ["/one/...", "/one/two/...", "/one/two/three/..."];
        let r = router("/", &routes);
        assert_eq!(comp(&r, "/one/two/three/four"), Some(2));
        assert_eq!(comp(&r, "/one/two/x"), Some(1));
        assert_eq!(comp(&r, "/one/x"), Some(0));
        let rev: Vec<&str> = routes.iter().rev().copied().collect();
        let r = router("/", &rev);
        assert_eq!(comp(&r, "/one/two/three/four"), Some(0));
    }

    #[test]
    fn exact_segment_beats_param_beats_wildcard() {
        let r = router("/", &["/items/...", "/items/:id", "/items/new"]);
        assert_eq!(comp(&r, "/items/new"), Some(2));
        assert_eq!(comp(&r, "/items/42"), Some(1));
        assert_eq!(comp(&r, "/items/42/x"), Some(0));
        assert_eq!(comp(&r, "/items"), Some(0));
    }

    #[test]
    fn params_are_captured() {
        let r = router("/", &["/1/:two/3"]);
        let m = r.route("/1/2/3").unwrap();
        assert_eq!(m.params_map()["two"], "2");
        assert_eq!(m.path_info, "");
        assert!(
            r.route("/1//3").is_none(),
            "params never match empty segments"
        );

        let r = router("/", &["/users/:userid/..."]);
        let m = r.route("/users/42/bar").unwrap();
        assert_eq!(m.params, vec![("userid".to_string(), "42".to_string())]);
        assert_eq!(m.path_info, "/bar");
        assert_eq!(m.raw_route_or_prefix(), "/users/:userid");
    }

    #[test]
    fn trailing_wildcard_respects_trailing_slash() {
        let r = router("/", &["/test/..."]);
        assert_eq!(r.route("/test").unwrap().path_info, "");
        assert_eq!(r.route("/test/").unwrap().path_info, "/");
        assert_eq!(r.route("/test/hello").unwrap().path_info, "/hello");
        assert_eq!(r.route("/test/hello/").unwrap().path_info, "/hello/");
        assert_eq!(comp(&r, "/testing"), None);
    }

    #[test]
    fn star_suffix_is_a_wildcard_too() {
        let r = router("/", &["/static/*"]);
        assert_eq!(r.route("/static/a/b").unwrap().path_info, "/a/b");
    }

    #[test]
    fn base_is_prefixed() {
        let r = router("/base", &["/foo", "/foo/bar", "/list/..."]);
        assert_eq!(comp(&r, "/base/foo"), Some(0));
        assert_eq!(comp(&r, "/base/foo/bar"), Some(1));
        assert_eq!(comp(&r, "/foo"), None);
        let m = r.route("/base/list/5").unwrap();
        assert_eq!(m.based_route, "/base/list/...");
        assert_eq!(m.raw_route, "/list/...");
        assert_eq!(m.path_info, "/5");
        let r = router("/base/", &["foo"]);
        assert_eq!(r.route("/base/foo").unwrap().based_route, "/base/foo");
    }

    #[test]
    fn spin_route_strings_for_list_wildcard() {
        let r = router("/", &["/list/..."]);
        let m = r.route("/list/5").unwrap();
        assert_eq!(m.based_route, "/list/...");
        assert_eq!(m.raw_route, "/list/...");
        assert_eq!(m.raw_route_or_prefix(), "/list");
        assert_eq!(m.path_info, "/5");
    }

    #[test]
    fn duplicates_keep_the_last_declaration() {
        let r = router("/", &["/", "/foo", "/foo", "/whee/..."]);
        assert_eq!(comp(&r, "/foo"), Some(2));
        assert_eq!(r.routes.len(), 3);
    }

    #[test]
    fn ties_go_to_the_first_route() {
        let r = router("/", &["/:a", "/:b"]);
        assert_eq!(comp(&r, "/x"), Some(0));
    }

    #[test]
    fn malformed_routes_are_rejected() {
        assert!(Router::build("/", [("/a/.../b", 0)]).is_err());
        assert!(Router::build("/", [("/a/:", 0)]).is_err());
    }

    #[test]
    fn with_base_matches_spin_sanitize() {
        assert_eq!(with_base("/", "/foo"), "/foo");
        assert_eq!(with_base("/", "/"), "");
        assert_eq!(with_base("/api/", "items/..."), "/api/items/...");
        assert_eq!(with_base("/api", "/"), "/api");
    }
}
