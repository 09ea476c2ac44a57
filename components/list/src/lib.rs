//! `list`: reads stored items.
//!
//! Route `/list/...`; the gateway maps the public `GET /items` to `/list`
//! and `GET /items/{id}` to `/list/{id}`, so links this component writes use
//! the public `/items` paths.
//!
//! * `GET /list?limit=&after=&tag=` — items ordered by id, one page at a time
//!   (keyset paging on `after`, the last id seen), with a `Link: rel="next"`
//!   header while there is more.
//! * `GET /list/{id}` — one item, or 404.

use http_util::store;
use items_core::Problem;
use serde_json::json;
use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;
use spin_sdk::sqlite::Value;

/// Page size when `limit` is absent.
const DEFAULT_LIMIT: u32 = 100;
/// Largest page a client may ask for.
const MAX_LIMIT: u32 = 1000;
const ALLOW: &str = "GET, HEAD";

#[http_component]
fn handle(req: IncomingRequest) -> Response {
    let method = req.method();
    if !matches!(method, Method::Get | Method::Head) {
        return http_util::method_not_allowed(&method, ALLOW);
    }
    let info = http_util::path_info(&req, "/list");
    let (_, query) = http_util::path_and_query(&req);
    let mut response = match info.as_str() {
        "" | "/" => match Page::parse(&query) {
            Ok(page) => list(&page),
            Err(problem) => http_util::problem(&problem),
        },
        rest => match rest.strip_prefix('/').and_then(parse_id) {
            Some(id) => get(id),
            None => http_util::not_found(format!("no resource at /items{rest}")),
        },
    };
    if method == Method::Head {
        response.body_mut().clear();
    }
    response
}

/// A decimal u32 without sign, spaces or other decoration.
fn parse_id(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The query parameters of a list request.
struct Page {
    limit: u32,
    after: Option<u32>,
    tag: Option<String>,
}

impl Page {
    /// Parses the query; unknown parameters are ignored, bad known ones are a
    /// 400 problem naming the parameter.
    fn parse(query: &str) -> Result<Self, Problem> {
        let mut page = Page {
            limit: DEFAULT_LIMIT,
            after: None,
            tag: None,
        };
        let mut seen: Vec<&'static str> = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let name: &'static str = match key.as_ref() {
                "limit" => "limit",
                "after" => "after",
                "tag" => "tag",
                _ => continue,
            };
            if seen.contains(&name) {
                return Err(bad_parameter(name, &value, "may be given only once"));
            }
            seen.push(name);
            match name {
                "limit" => {
                    page.limit = parse_id(&value)
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            bad_parameter(
                                name,
                                &value,
                                &format!("must be an integer from 1 to {MAX_LIMIT}"),
                            )
                        })?;
                }
                "after" => {
                    page.after = Some(parse_id(&value).ok_or_else(|| {
                        bad_parameter(
                            name,
                            &value,
                            "must be an item id (an integer from 0 to 4294967295)",
                        )
                    })?);
                }
                _ => {
                    if !is_tag(&value) {
                        return Err(bad_parameter(
                            name,
                            &value,
                            "must be a tag: 1 to 32 of a-z, 0-9 and -",
                        ));
                    }
                    page.tag = Some(value.into_owned());
                }
            }
        }
        Ok(page)
    }

    /// The public URL of the page after the one ending at `last_id`.
    fn next_link(&self, last_id: u32) -> String {
        let mut url = format!("/items?after={last_id}&limit={}", self.limit);
        if let Some(tag) = &self.tag {
            // Tags are [a-z0-9-] only: nothing to percent-encode.
            url.push_str("&tag=");
            url.push_str(tag);
        }
        format!("<{url}>; rel=\"next\"")
    }
}

/// Same rule as the item schema's tags, so a filter that can never match is
/// reported instead of silently returning nothing.
fn is_tag(text: &str) -> bool {
    (1..=32).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn bad_parameter(name: &str, value: &str, rule: &str) -> Problem {
    Problem::new(
        400,
        "Invalid query parameter",
        format!("query parameter {name} {rule} (got {value:?})"),
    )
    .with("parameter", json!(name))
}

/// One page of items, as a JSON array.
fn list(page: &Page) -> Response {
    let db = match store::open() {
        Ok(db) => db,
        Err(e) => return http_util::internal_error("the item store is unavailable", &e),
    };
    // One row more than the page: its presence says whether a next page exists.
    let mut sql = String::from("SELECT id, doc FROM items WHERE id > ?");
    let mut params = vec![Value::Integer(page.after.map_or(-1, i64::from))];
    if let Some(tag) = &page.tag {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM json_each(items.doc, '$.tags') AS t WHERE t.value = ?)",
        );
        params.push(Value::Text(tag.clone()));
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    params.push(Value::Integer(i64::from(page.limit) + 1));

    let rows = match db.execute(&sql, &params) {
        Ok(result) => result.rows,
        Err(e) => return http_util::internal_error("the items could not be read", &e),
    };
    let more = rows.len() > page.limit as usize;
    let mut body = Vec::with_capacity(rows.len() * 128 + 2);
    body.push(b'[');
    let mut last_id = None;
    for (i, row) in rows.iter().take(page.limit as usize).enumerate() {
        let (id, json) = match row_item(&row.values) {
            Ok(item) => item,
            Err(e) => return http_util::internal_error("a stored item is corrupt", &e),
        };
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&json);
        last_id = Some(id);
    }
    body.push(b']');

    let mut response = http_util::json(200, body);
    if let (true, Some(last_id)) = (more, last_id) {
        response.set_header("link", page.next_link(last_id));
    }
    response
}

/// One item by id.
fn get(id: u32) -> Response {
    let db = match store::open() {
        Ok(db) => db,
        Err(e) => return http_util::internal_error("the item store is unavailable", &e),
    };
    let rows = match db.execute(
        "SELECT id, doc FROM items WHERE id = ?",
        &[Value::Integer(i64::from(id))],
    ) {
        Ok(result) => result.rows,
        Err(e) => return http_util::internal_error("the item could not be read", &e),
    };
    match rows.first() {
        Some(row) => match row_item(&row.values) {
            Ok((_, json)) => http_util::json(200, json),
            Err(e) => http_util::internal_error("a stored item is corrupt", &e),
        },
        None => http_util::problem(
            &Problem::new(404, "Not Found", format!("no item with id {id}")).with("id", json!(id)),
        ),
    }
}

fn row_item(values: &[Value]) -> Result<(u32, Vec<u8>), String> {
    match values {
        [id, doc] => store::item_json(id, doc),
        _ => Err(format!("expected 2 columns, got {}", values.len())),
    }
}
