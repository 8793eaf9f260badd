//! The OpenAPI document served at `/openapi.json` describes the router exactly: every
//! route in the code is in the document, every operation in the document is answered
//! by a handler (not by the router's fallback), and every status an operation answers
//! to good and bad requests alike is documented for it, with the documented body.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use eventfold_server::{AuthConfig, OPENAPI, ServerConfig, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-token-0123456789";
const NOBODY: &str = "nobody-token-0123456789";
const BODY_BYTES_MAX: usize = 16 * 1024;

fn document() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
}

/// Follows a `$ref` within the document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(pointer) => doc
            .pointer(pointer.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {pointer}")),
        None => value,
    }
}

#[test]
fn every_route_of_the_router_is_documented() {
    let doc = document();
    let paths = doc["paths"].as_object().expect("paths");
    let source = include_str!("../src/routes/mod.rs");
    let mut count = 0;
    for piece in source.split(".route(").skip(1) {
        let path = piece
            .trim_start()
            .strip_prefix('"')
            .and_then(|rest| rest.split('"').next())
            .expect("a route path literal");
        count += 1;
        assert!(
            paths.contains_key(path),
            "route {path} is missing from openapi.json"
        );
    }
    assert!(
        count >= 20,
        "found only {count} routes; did the parsing break?"
    );
}

/// A request to send to every operation, and what it is meant to provoke.
struct Probe {
    /// Path parameters replaced by these values (others keep the good ones).
    path: &'static [(&'static str, &'static str)],
    query: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// `None`: a good body for the operation.
    body: Option<Body>,
    /// `None`: no `Authorization`.
    token: Option<&'static str>,
}

impl Probe {
    fn good() -> Self {
        Probe {
            path: &[],
            query: "",
            headers: &[],
            body: None,
            token: Some(ADMIN),
        }
    }
}

/// Requests good and bad in every way the API knows: each is sent to every operation.
fn probes() -> Vec<Probe> {
    let bad_path: [&'static [(&str, &str)]; 9] = [
        &[("stream", "nope")],
        &[("stream", "$all")],
        &[("stream", "$ce-order")],
        &[("stream", "order%00-1")],
        &[("revision", "x"), ("version", "x"), ("page", "x")],
        &[("revision", "99"), ("version", "99"), ("page", "99")],
        &[("version", "0")],
        &[("group", "nope"), ("type", "Nope")],
        &[("group", "a%01b")],
    ];
    let bad_query = [
        "?limit=x",
        "?from=-1",
        "?direction=sideways",
        "?versions=OrderPlaced:0",
        "?versions=OrderPlaced:7",
        "?hard=maybe",
        "?count=x&wait_ms=x",
        "?colour=red",
        "?limit=0",
        "?direction=backward&from=0",
    ];
    let bad_headers: [&'static [(&str, &str)]; 5] = [
        &[("expected-version", "soon")],
        &[("expected-version", "7")],
        &[("expected-version", "no_stream")],
        &[("accept", "application/vnd.eventfold.vX+json")],
        &[
            ("accept", "application/vnd.eventfold.v9+json"),
            ("last-event-id", "x"),
        ],
    ];
    let bad_bodies = [
        "",
        "not json",
        "[]",
        "{}",
        "null",
        "[[]]",
        r#"[{"type":"A","data":1,"colour":"red"}]"#,
        r#"[{"stream":"order-1","expected":"soon","events":[{"type":"A","data":1}]}]"#,
        r#"{"positions":[5]}"#,
        r#"{"positions":"x"}"#,
        r#"{"upcast":"def f: f; f ("}"#,
        r#"{"max_count":-1}"#,
    ];
    let mut probes = vec![
        Probe::good(),
        Probe {
            token: None,
            ..Probe::good()
        },
        Probe {
            token: Some(NOBODY),
            ..Probe::good()
        },
        Probe {
            body: Some(Body::from(vec![b'['; BODY_BYTES_MAX + 1])),
            ..Probe::good()
        },
    ];
    probes.extend(bad_path.into_iter().map(|path| Probe {
        path,
        ..Probe::good()
    }));
    probes.extend(bad_query.into_iter().map(|query| Probe {
        query,
        ..Probe::good()
    }));
    probes.extend(bad_headers.into_iter().map(|headers| Probe {
        headers,
        ..Probe::good()
    }));
    probes.extend(bad_bodies.into_iter().map(|body| Probe {
        body: Some(Body::from(body)),
        ..Probe::good()
    }));
    probes
}

/// A good body for each operation that takes one.
fn good_body(path: &str, method: &Method) -> Value {
    match (path, method.as_str()) {
        ("/streams/{stream}", "POST") => json!([{"type": "OrderPlaced", "data": {"total": 1}}]),
        ("/transactions", _) => {
            json!([{"stream": "order-2", "events": [{"type": "OrderPlaced", "data": {}}]}])
        }
        ("/streams/{stream}/metadata", _) => json!({"max_count": 10}),
        ("/schemas/{type}/{version}", _) => json!({"schema": {"type": "object"}}),
        ("/projections/{name}", _) => {
            json!({"init": 0, "handlers": {"OrderPlaced": ".state + 1"}})
        }
        ("/subscriptions/{group}/ack" | "/subscriptions/{group}/nack", _) => {
            json!({"positions": []})
        }
        ("/admin/surgery", _) => json!({
            "operation": "copy-replace", "source": "order-1", "to": "order-1-fixed",
            "reason": "a probe", "dry_run": true
        }),
        _ => json!({}),
    }
}

/// An archiver that archives nothing: this test checks the router against its
/// document (archiving itself is tested in eventfold-archive and the CLI's tests).
#[derive(Debug)]
struct AnsweringArchiver;

#[async_trait::async_trait]
impl eventfold_server::Archiver for AnsweringArchiver {
    fn default_url(&self) -> Option<String> {
        Some("s3://bucket/archive".into())
    }

    async fn archive(
        &self,
        url: &str,
    ) -> Result<eventfold_wire::ArchiveAnswer, eventfold_server::ArchiveFailure> {
        if !url.starts_with("s3://") {
            return Err(eventfold_server::ArchiveFailure::InvalidUrl(format!(
                "{url}: not s3://"
            )));
        }
        Ok(eventfold_wire::ArchiveAnswer {
            url: url.to_string(),
            end_position: 1,
            segments: 1,
            pieces_uploaded: 1,
            pieces_adopted: 0,
            bytes_uploaded: 100,
            segments_rewritten: 0,
            seconds: 0.0,
        })
    }
}

/// A server with users, holding a stream, a schema and a consumer group.
async fn app() -> Router {
    let auth = AuthConfig::from_toml(&format!(
        "[[users]]\nname = \"root\"\ntoken = \"{ADMIN}\"\nroles = [\"admin\"]\n\n\
         [[users]]\nname = \"nobody\"\ntoken = \"{NOBODY}\"\nroles = []\n\n\
         [acl]\nread = []\nwrite = []\n"
    ))
    .unwrap();
    // The embedded engine on a simulated disk: every operation works on it, the
    // online scavenge included, and nothing is left on the real disk.
    let store = Arc::new(
        eventfold_log::LogStore::open_with(
            Arc::new(eventfold_log::sim::SimStorage::new()),
            std::path::Path::new("/data"),
            eventfold_log::LogOptions::default(),
        )
        .unwrap(),
    );
    let config = ServerConfig {
        auth: Some(auth),
        body_bytes_max: BODY_BYTES_MAX,
        scavenger: Some(store.clone()),
        subject_keys: Some(Arc::new(eventfold_privacy::MemoryKeyStore::new())),
        archiver: Some(Arc::new(AnsweringArchiver)),
        ..ServerConfig::default()
    };
    let app = router(store, config).await.unwrap();
    for (method, uri, body) in [
        (
            "POST",
            "/streams/order-1",
            json!([{"type": "OrderPlaced", "data": {"total": 1}}]),
        ),
        ("PUT", "/schemas/OrderPlaced/1", json!({})),
        ("PUT", "/subscriptions/g1", json!({})),
        (
            "PUT",
            "/projections/orders-placed",
            json!({"init": 0, "handlers": {"OrderPlaced": ".state + 1"}}),
        ),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        let status = app.clone().oneshot(request).await.unwrap().status();
        assert!(status.is_success(), "{method} {uri}: {status}");
    }
    app
}

fn uri_of(path: &str, probe: &Probe) -> String {
    let mut values = vec![
        ("stream", "order-1"),
        ("revision", "0"),
        ("group", "g1"),
        ("type", "OrderPlaced"),
        ("version", "1"),
        ("subject", "customer-1"),
        ("page", "0"),
        ("name", "orders-placed"),
        ("asset", "console.js"),
    ];
    for (name, value) in probe.path {
        if let Some(slot) = values.iter_mut().find(|(n, _)| n == name) {
            slot.1 = value;
        }
    }
    let mut uri = path.to_string();
    for (name, value) in values {
        uri = uri.replace(&format!("{{{name}}}"), value);
    }
    // A state names the projection to fold with.
    let query = if uri.ends_with("/state") {
        if probe.query.is_empty() {
            "?projection=orders-placed".to_string()
        } else {
            format!("{}&projection=orders-placed", probe.query)
        }
    // A group's `next` would wait for deliveries.
    } else if uri.ends_with("/next") && !probe.query.contains("wait_ms") {
        if probe.query.is_empty() {
            "?wait_ms=0".to_string()
        } else {
            format!("{}&wait_ms=0", probe.query)
        }
    } else {
        probe.query.to_string()
    };
    format!("{uri}{query}")
}

#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let doc = document();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            // A fresh server each time: a delete does not change what the next sees.
            let app = app().await;
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let uri = uri_of(path, &Probe::good());
            let request = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
                .body(Body::from(good_body(path, &method).to_string()))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            // `/` leads to the console.
            let answered = status.is_success() || (path == "/" && status.is_redirection());
            assert!(answered, "{method} {uri}: {status}");
        }
    }
}

#[tokio::test]
async fn every_status_an_operation_answers_is_documented_with_its_body() {
    let doc = document();
    let mut seen = BTreeSet::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let documented = operation["responses"].as_object().unwrap();
            // A fresh server for each operation: probes that change state (deletes)
            // do not change what the next operation sees.
            let app = app().await;
            for probe in probes() {
                let uri = uri_of(path, &probe);
                let mut request = Request::builder()
                    .method(method.clone())
                    .uri(&uri)
                    .header(header::CONTENT_TYPE, "application/json");
                for (name, value) in probe.headers {
                    request = request.header(*name, *value);
                }
                if let Some(token) = probe.token {
                    request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
                }
                let body = probe
                    .body
                    .unwrap_or_else(|| Body::from(good_body(path, &method).to_string()));
                let response = app
                    .clone()
                    .oneshot(request.body(body).unwrap())
                    .await
                    .unwrap();
                let status = response.status();
                let what = format!("{method} {uri} ({:?})", probe.headers);
                let Some(answer) = documented.get(status.as_str()) else {
                    panic!("{what} answered {status}, which openapi.json does not document");
                };
                seen.insert((path.clone(), method.to_string(), status.as_u16()));
                let answer = resolve(&doc, answer);
                let Some(content_type) = response.headers().get(header::CONTENT_TYPE) else {
                    assert!(
                        answer.get("content").is_none(),
                        "{what} answered {status} without a body, which openapi.json documents: {answer}"
                    );
                    continue;
                };
                let content_type = content_type.to_str().unwrap().to_string();
                let media = content_type.split(';').next().unwrap();
                assert!(
                    answer["content"].get(media).is_some(),
                    "{what} answered {status} as {media}, not as documented: {answer}"
                );
                if media == "text/event-stream" {
                    continue; // Streams for ever.
                }
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                if status.is_client_error() || status.is_server_error() {
                    let body: Value = serde_json::from_slice(&bytes)
                        .unwrap_or_else(|_| panic!("{what}: {status} without a JSON body"));
                    assert!(
                        body["error"].is_string() && body["message"].is_string(),
                        "{what}: {body}"
                    );
                }
            }
        }
    }
    // The probes do provoke the errors they are for.
    for expected in [
        ("/streams/{stream}", "POST", 400),
        ("/streams/{stream}", "POST", 401),
        ("/streams/{stream}", "POST", 403),
        ("/streams/{stream}", "POST", 409),
        ("/streams/{stream}", "POST", 413),
        ("/streams/{stream}", "GET", 404),
        ("/streams/{stream}", "GET", 406),
        ("/streams/{stream}/{revision}", "GET", 400),
        ("/streams/{stream}/metadata", "PUT", 400),
        ("/subscriptions/{group}/ack", "POST", 409),
        ("/schemas/{type}/{version}", "GET", 404),
        ("/feed/streams/{stream}/pages/{page}", "GET", 404),
        ("/feed/all/pages/{page}", "GET", 400),
        ("/projections/{name}", "PUT", 400),
        ("/streams/{stream}/state", "GET", 404),
    ] {
        let key = (expected.0.to_string(), expected.1.to_string(), expected.2);
        assert!(seen.contains(&key), "no probe answered {expected:?}");
    }
}
