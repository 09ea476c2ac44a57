//! The OpenAPI 3.1 document (`schemas/openapi.json`, served at
//! `GET /openapi.json`) against the running API: every answer to a success
//! or error case of every operation must be documented for that operation
//! (status code and content type) and its body must validate against the
//! documented schema, with the item schema's `$ref` resolved locally.
//! The document itself must validate against the OpenAPI 3.1 schema.

mod common;

use std::time::Duration;

use common::{Options, client, repo_root, start, start_with};
use jsonschema::{Draft, Registry};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where the document's relative `$ref`s resolve: next to the item
/// schema's own `$id` (`https://items.example/schemas/item.schema.json`).
const DOC_URI: &str = "https://items.example/schemas/openapi.json";
const ITEM_URI: &str = "https://items.example/schemas/item.schema.json";

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join(path)).expect("readable");
    serde_json::from_str(&text).expect("JSON")
}

/// JSON Pointer escaping of one reference token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A JSON Pointer as a URI fragment (RFC 6901 §6): `{`, `}` and the like
/// percent-encoded.
fn fragment(pointer: &str) -> String {
    pointer
        .replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace(' ', "%20")
}

struct Spec {
    doc: Value,
    item: Value,
}

impl Spec {
    fn new(doc: Value) -> Self {
        let item = load("schemas/item.schema.json");
        assert_eq!(item["$id"], ITEM_URI, "the item schema's $id");
        Spec { doc, item }
    }

    /// Follows a local `$ref` (`#/...`) to the pointer it names.
    fn deref(&self, pointer: String) -> String {
        match self.doc.pointer(&pointer).and_then(|v| v["$ref"].as_str()) {
            Some(target) => {
                let local = target
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("only local refs here: {target}"));
                self.deref(local.to_string())
            }
            None => pointer,
        }
    }

    /// A validator for the schema at `pointer` in the document.
    fn validator(&self, what: &str, pointer: &str) -> jsonschema::Validator {
        let registry = Registry::new()
            .draft(Draft::Draft202012)
            .add(DOC_URI, self.doc.clone())
            .and_then(|r| r.add(ITEM_URI, self.item.clone()))
            .and_then(|r| r.prepare())
            .expect("the registry builds");
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_registry(&registry)
            .should_validate_formats(true)
            .build(&json!({ "$ref": format!("{DOC_URI}#{}", fragment(pointer)) }))
            .unwrap_or_else(|e| panic!("{what}: the documented schema compiles: {e}"))
    }

    /// Asserts that the headers the response at `response` documents as
    /// required are there, and that every documented one present has a
    /// value its schema allows.
    fn check_headers(&self, what: &str, response: &str, headers: &[(String, String)]) {
        let documented = self
            .doc
            .pointer(&format!("{response}/headers"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for name in documented.keys() {
            let header = self.deref(format!("{response}/headers/{}", escape(name)));
            let spec = self.doc.pointer(&header).expect("the header resolves");
            let value = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v);
            let Some(value) = value else {
                assert!(
                    spec["required"] != true,
                    "{what}: the required header {name} is missing; got {headers:?}"
                );
                continue;
            };
            let schema = spec["schema"].clone();
            let instance = if schema["type"] == "integer" {
                value
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or(json!(value))
            } else {
                json!(value)
            };
            let validator = self.validator(what, &format!("{header}/schema"));
            assert!(
                validator.is_valid(&instance),
                "{what}: header {name}: {value:?} does not match {schema}"
            );
        }
    }

    /// Asserts that an answer to `method template` is documented and
    /// conforms (status, content type, headers, body); `what` names the
    /// case in failures.
    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        what: &str,
        method: &str,
        template: &str,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) {
        let content_type = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        let operation = format!("/paths/{}/{}", escape(template), method.to_lowercase());
        assert!(
            self.doc.pointer(&operation).is_some(),
            "{what}: {method} {template} is not in the document"
        );
        let response = self.deref(format!("{operation}/responses/{status}"));
        let Some(documented) = self.doc.pointer(&response) else {
            panic!(
                "{what}: status {status} is not documented for {method} {template}; body: {}",
                String::from_utf8_lossy(body)
            );
        };
        self.check_headers(what, &response, headers);
        let Some(content) = documented.get("content").and_then(Value::as_object) else {
            assert!(body.is_empty(), "{what}: {status} documents no body");
            return;
        };
        let media = content_type.split(';').next().unwrap_or_default().trim();
        assert!(
            content.contains_key(media),
            "{what}: {method} {template} {status} answered {media:?}; documented: {:?}",
            content.keys().collect::<Vec<_>>()
        );
        let instance: Value = serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("{what}: the body is JSON ({e})"));
        let schema_pointer = format!("{response}/content/{}/schema", escape(media));
        let validator = self.validator(what, &schema_pointer);
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: {method} {template} {status} body does not match the document: {errors:#?}\n{instance}"
        );
    }

    async fn request(
        &self,
        what: &str,
        base: &str,
        method: &str,
        path: &str,
        template: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> (u16, Value) {
        let http = client();
        let mut request = http.request(method.parse().expect("method"), format!("{base}{path}"));
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().await.expect("sent");
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).to_string(),
                )
            })
            .collect();
        let bytes = response.bytes().await.expect("body");
        self.check(what, method, template, status, &headers, &bytes);
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let doc = load("schemas/openapi.json");
    let oas = load("gateway/tests/fixtures/openapi-3.1.schema.json");
    let validator = jsonschema::options()
        .with_draft(Draft::Draft202012)
        .build(&oas)
        .expect("the OpenAPI 3.1 schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(doc["openapi"], "3.1.0");

    // A broken document is caught (the check is not vacuous).
    let mut broken = doc.clone();
    broken["paths"]["/items"]["get"]["responses"]["200"]
        .as_object_mut()
        .expect("an object")
        .remove("description");
    assert!(
        !validator.is_valid(&broken),
        "a response without description is invalid"
    );

    // Every operation the gateway serves publicly is described, and
    // every error response is problem+json.
    for (path, method) in [
        ("/items", "get"),
        ("/items", "post"),
        ("/items/{id}", "get"),
        ("/validate", "post"),
    ] {
        let responses = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is documented"));
        for status in ["431", "500", "503", "504"] {
            assert!(
                responses.contains_key(status),
                "{method} {path} documents {status}: any request can get it"
            );
        }
        let spec = Spec::new(doc.clone());
        for (status, _) in responses {
            let pointer = spec.deref(format!(
                "/paths/{}/{method}/responses/{status}",
                escape(path)
            ));
            let response = doc.pointer(&pointer).expect("resolves");
            if status.starts_with('4') || status.starts_with('5') {
                assert!(
                    response["content"]["application/problem+json"]["schema"].is_object(),
                    "{method} {path} {status} is problem+json"
                );
            }
        }
    }
    // Creation has its own request schema: the item's members, each by
    // reference, less the server-assigned `created_at`; and a batch has
    // nothing beside `items`. (The server refuses both with 400.)
    let item = load("schemas/item.schema.json");
    let new_item = &doc["components"]["schemas"]["NewItem"];
    let members: serde_json::Map<String, Value> = item["properties"]
        .as_object()
        .expect("the item has properties")
        .keys()
        .filter(|name| name.as_str() != "created_at")
        .map(|name| {
            let reference = format!("item.schema.json#/properties/{name}");
            (name.clone(), json!({ "$ref": reference }))
        })
        .collect();
    assert_eq!(new_item["properties"], Value::Object(members));
    assert_eq!(new_item["required"], item["required"]);
    assert_eq!(new_item["additionalProperties"], false);
    assert_eq!(
        doc["paths"]["/items"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/NewItem"
    );
    assert_eq!(
        doc["components"]["schemas"]["Batch"]["additionalProperties"],
        false
    );

    // The item schema is referenced, not copied.
    let text = std::fs::read_to_string(repo_root().join("schemas/openapi.json")).unwrap();
    assert!(text.contains("\"$ref\": \"item.schema.json\""));
    assert!(
        !text.contains("amount_cents"),
        "the item schema is not duplicated"
    );
}

#[tokio::test]
async fn every_operation_answers_as_documented() {
    let gw = start().await;
    let http = client();

    // Served by the gateway itself, identical to the committed file.
    let served = http
        .get(format!("{}/openapi.json", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "application/json");
    assert_eq!(served.headers()["x-gateway-backend"], "gateway");
    let doc: Value = served.json().await.unwrap();
    assert_eq!(doc, load("schemas/openapi.json"));
    let item = http
        .get(format!("{}/item.schema.json", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(item.status(), 200);
    assert_eq!(
        item.json::<Value>().await.unwrap(),
        load("schemas/item.schema.json")
    );

    let spec = Spec::new(doc);
    let base = gw.base.as_str();
    let json_body = |v: Value| Some(("application/json", serde_json::to_vec(&v).unwrap()));

    // POST /items
    let (status, _) = spec
        .request("create", base, "POST", "/items", "/items", json_body(json!({"id": 1, "name": "Item1", "tags": ["a"], "price": {"amount_cents": 100, "currency": "EUR"}})))
        .await;
    assert_eq!(status, 201);
    let (status, _) = spec
        .request(
            "create, server id",
            base,
            "POST",
            "/items",
            "/items",
            json_body(json!({"name": "Item2"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = spec
        .request(
            "create, duplicate",
            base,
            "POST",
            "/items",
            "/items",
            json_body(json!({"id": 1, "name": "Again"})),
        )
        .await;
    assert_eq!(status, 409);
    let (status, problem) = spec
        .request(
            "create, invalid",
            base,
            "POST",
            "/items",
            "/items",
            json_body(json!({"id": 3, "name": ""})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(problem["errors"].is_array(), "{problem}");
    let (status, _) = spec
        .request(
            "create, malformed",
            base,
            "POST",
            "/items",
            "/items",
            Some(("application/json", b"{".to_vec())),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = spec
        .request(
            "create, text/plain",
            base,
            "POST",
            "/items",
            "/items",
            Some(("text/plain", b"hi".to_vec())),
        )
        .await;
    assert_eq!(status, 415);
    let (status, _) = spec
        .request(
            "create, too large",
            base,
            "POST",
            "/items",
            "/items",
            Some(("application/json", vec![b' '; 2 << 20])),
        )
        .await;
    assert_eq!(status, 413);

    // GET /items
    let (status, list) = spec
        .request("list", base, "GET", "/items", "/items", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    let (status, _) = spec
        .request(
            "list, page",
            base,
            "GET",
            "/items?limit=1&after=1",
            "/items",
            None,
        )
        .await;
    assert_eq!(status, 200);
    for bad in ["limit=0", "limit=1001", "after=-1", "tag=UPPER"] {
        let (status, _) = spec
            .request(
                &format!("list, {bad}"),
                base,
                "GET",
                &format!("/items?{bad}"),
                "/items",
                None,
            )
            .await;
        assert_eq!(status, 400);
    }

    // GET /items/{id}
    let (status, _) = spec
        .request("get", base, "GET", "/items/1", "/items/{id}", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = spec
        .request(
            "get, missing",
            base,
            "GET",
            "/items/999",
            "/items/{id}",
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = spec
        .request(
            "get, not an id",
            base,
            "GET",
            "/items/abc",
            "/items/{id}",
            None,
        )
        .await;
    assert!(status == 400 || status == 404, "{status}");

    // POST /validate
    let (status, verdict) = spec
        .request(
            "validate",
            base,
            "POST",
            "/validate",
            "/validate",
            json_body(json!({"items": [{"id": 1, "name": "ok"}, {"id": 1, "name": ""}, 7]})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(verdict["invalid"], 2, "{verdict}");
    let (status, _) = spec
        .request(
            "validate, big batch (native)",
            base,
            "POST",
            "/validate",
            "/validate",
            Some(("application/json", common::big_batch(2000))),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = spec
        .request(
            "validate, malformed",
            base,
            "POST",
            "/validate",
            "/validate",
            json_body(json!({"items": 1})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = spec
        .request(
            "validate, text/plain",
            base,
            "POST",
            "/validate",
            "/validate",
            Some(("text/plain", b"{}".to_vec())),
        )
        .await;
    assert_eq!(status, 415);
    // 413 from the declared length alone (raw: the body is never sent).
    let addr = gw.base.trim_start_matches("http://");
    let (status, headers, body) = raw_exchange(
        addr,
        b"POST /validate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n",
    )
    .await;
    assert_eq!(status, 413);
    spec.check(
        "validate, too large",
        "POST",
        "/validate",
        status,
        &headers,
        &body,
    );
    // 413 for more items than a batch may have.
    let (status, problem) = spec
        .request(
            "validate, 10,001 items",
            base,
            "POST",
            "/validate",
            "/validate",
            Some(("application/json", common::big_batch(10_001))),
        )
        .await;
    assert_eq!(status, 413);
    assert_eq!(problem["max_items"], 10_000, "{problem}");
    // 400 for what the document forbids: a member beside `items`, and a
    // client's `created_at` on create.
    let (status, problem) = spec
        .request(
            "validate, extra member",
            base,
            "POST",
            "/validate",
            "/validate",
            json_body(json!({"items": [], "extra": 1})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("unexpected member")),
        "{problem}"
    );
    let (status, problem) = spec
        .request(
            "create, created_at",
            base,
            "POST",
            "/items",
            "/items",
            json_body(json!({"name": "stamped", "created_at": "2025-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["code"], "server-assigned", "{problem}");

    // 431 for a head over a limit, on every operation.
    for (method, path, template) in [
        ("GET", "/items", "/items"),
        ("POST", "/items", "/items"),
        ("GET", "/items/1", "/items/{id}"),
        ("POST", "/validate", "/validate"),
    ] {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nX-Big: {}\r\n\r\n",
            "b".repeat(9 * 1024)
        );
        let (status, headers, body) = raw_exchange(addr, head.as_bytes()).await;
        assert_eq!(status, 431, "{method} {path}");
        spec.check("a 9 KiB header", method, template, status, &headers, &body);
    }
}

/// Sends `request` on a fresh connection and reads the answer to the end
/// (the gateway closes after each of these answers): status, headers,
/// body.
async fn raw_exchange(addr: &str, request: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("no hang")
        .expect("read");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            Some((name.trim().to_string(), value.trim().to_string()))
        })
        .collect();
    (status, headers, raw[end + 4..].to_vec())
}

#[tokio::test]
async fn backend_failures_answer_as_documented() {
    let closed = common::fake_spin::closed_port().await;
    let upstream = closed.url.clone();
    let gw = start_with(Options {
        manifest: None,
        upstream: Some(upstream),
        ..Options::default()
    })
    .await;
    let spec = Spec::new(load("schemas/openapi.json"));
    let base = gw.base.as_str();
    let json = |v: Value| Some(("application/json", serde_json::to_vec(&v).unwrap()));
    let (status, _) = spec
        .request("list, no Spin", base, "GET", "/items", "/items", None)
        .await;
    assert_eq!(status, 503);
    let (status, _) = spec
        .request("get, no Spin", base, "GET", "/items/1", "/items/{id}", None)
        .await;
    assert_eq!(status, 503);
    let (status, _) = spec
        .request(
            "create, no Spin",
            base,
            "POST",
            "/items",
            "/items",
            json(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, 503);
    let (status, _) = spec
        .request(
            "validate, no Spin (native)",
            base,
            "POST",
            "/validate",
            "/validate",
            json(json!({"items": []})),
        )
        .await;
    assert_eq!(status, 200);
}

/// The gateway's own fixed routes (the documents, the health checks, the
/// admin pages) answer a wrong method with a `405` problem naming the
/// allowed ones, and the admin listener an unknown path with a `404`
/// problem: never axum's empty bodies.
#[tokio::test]
async fn fixed_routes_answer_wrong_methods_and_unknown_paths_in_problem_json() {
    let gw = start_with(Options {
        config: Some(
            r#"
[[route]]
name = "validate"
match = { method = "POST", path = "/validate" }
backend = "native"
native = "validate"
"#
            .into(),
        ),
        ..Options::default()
    })
    .await;
    let http = client();
    let cases = [
        (&gw.base, "DELETE", "/openapi.json", "GET, HEAD"),
        (&gw.base, "POST", "/item.schema.json", "GET, HEAD"),
        (&gw.base, "PUT", "/healthz", "GET, HEAD"),
        (&gw.admin, "POST", "/healthz", "GET, HEAD"),
        (&gw.admin, "POST", "/metrics", "GET, HEAD"),
        (&gw.admin, "DELETE", "/admin/traces", "GET, HEAD"),
        (&gw.admin, "GET", "/admin/config/reload", "POST"),
    ];
    for (base, method, path, allow) in cases {
        let response = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        let problem = common::expect_problem(response, 405).await;
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(&format!("`{method} {path}`")) && detail.contains(allow),
            "{method} {path}: {problem}"
        );
    }
    let response = http
        .get(format!("{}/admin/nothing-here", gw.admin))
        .send()
        .await
        .unwrap();
    let problem = common::expect_problem(response, 404).await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("/admin/nothing-here")),
        "{problem}"
    );
}
