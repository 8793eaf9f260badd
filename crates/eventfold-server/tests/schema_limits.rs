//! Schema registrations and conversions that must be refused or bounded: runaway jq
//! converters (at registration and at read), and malformed registrations. Through
//! the router without sockets (`tower::ServiceExt::oneshot`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use eventfold_core::InMemoryStore;
use eventfold_schema::JqLimits;
use eventfold_server::{ServerConfig, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Small enough that a runaway converter is stopped within a few milliseconds.
const STEPS_MAX: u64 = 20_000;

async fn api() -> Router {
    let config = ServerConfig {
        jq_limits: JqLimits {
            steps_max: STEPS_MAX,
            ..JqLimits::default()
        },
        ..ServerConfig::default()
    };
    router(Arc::new(InMemoryStore::new()), config)
        .await
        .unwrap()
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

async fn put_schema(app: &Router, path: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::put(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(app, request).await
}

async fn append(app: &Router, stream: &str, body: Value) {
    let request = Request::post(format!("/streams/{stream}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, body) = send(app, request).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn get(app: &Router, uri: &str, accept: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::get(uri);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    send(app, request.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn a_converter_that_never_answers_is_refused_naming_the_stored_event() {
    let app = api().await;
    append(
        &app,
        "item-1",
        json!([{"type": "Looped", "data": {"id": 1}}]),
    )
    .await;

    let (status, body) =
        put_schema(&app, "/schemas/Looped/2", r#"{"upcast": "def f: f; f"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "converter_limit");
    assert_eq!(body["limit"], "jq_steps_max");
    let event = body["event"].as_str().unwrap();
    assert!(event.starts_with("0@item-1 ("), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("jq_steps_max (20000 steps)"), "{message}");
    assert!(message.contains("Looped v1 to v2"), "{message}");

    // Nothing was registered, and registrations go on.
    let (status, _) = get(&app, "/schemas/Looped", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = put_schema(&app, "/schemas/Looped/2", r#"{"upcast": "{id}"}"#).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_converter_that_grows_without_end_is_refused() {
    let app = api().await;
    append(
        &app,
        "item-1",
        json!([{"type": "Grown", "data": {"id": 1}}]),
    )
    .await;
    let (status, body) = put_schema(&app, "/schemas/Grown/2", r#"{"upcast": "[repeat(.)]"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "converter_limit");
}

#[tokio::test]
async fn a_read_whose_converter_exceeds_a_limit_names_the_converter_and_the_limit() {
    let app = api().await;
    // No stored v1 event yet: the check has nothing to run the converter on.
    let (status, body) = put_schema(
        &app,
        "/schemas/Counted/2",
        r#"{"upcast": "{id, n: ([range(.id)] | length)}"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    append(
        &app,
        "count-1",
        json!([{"type": "Counted", "data": {"id": 3}}]),
    )
    .await;
    append(
        &app,
        "count-1",
        json!([{"type": "Counted", "data": {"id": 1_000_000}}]),
    )
    .await;

    let (status, body) = get(&app, "/streams/count-1?versions=newest&limit=1", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"][0]["data"], json!({"id": 3, "n": 3}));

    let (status, body) = get(&app, "/streams/count-1?versions=newest", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"], "converter_limit");
    assert_eq!(body["limit"], "jq_steps_max");
    assert!(
        body["event"].as_str().unwrap().starts_with("1@count-1 ("),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("Counted v1 to v2"), "{message}");

    let accept = Some("application/vnd.eventfold.v2+json");
    let (status, body) = get(&app, "/streams/count-1/1", accept).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"], "converter_limit");
    let (status, body) = get(&app, "/all?versions=Counted:2", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // As stored, the same events read fine.
    let (status, body) = get(&app, "/streams/count-1", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_schema_body_must_be_an_object() {
    let app = api().await;
    for body in ["[]", "[null]", "\"upcast\"", "1"] {
        let (status, answer) = put_schema(&app, "/schemas/Shaped/1", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"], "invalid_json", "{body}: {answer}");
    }
    let (status, _) = get(&app, "/schemas/Shaped", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn versions_follow_each_other_without_a_gap() {
    let app = api().await;
    let (status, body) = put_schema(&app, "/schemas/Stepped/4294967295", "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_schema");
    assert!(body["message"].as_str().unwrap().contains("gap"), "{body}");

    let (status, body) = put_schema(&app, "/schemas/Stepped/1", "{}").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = put_schema(&app, "/schemas/Stepped/2", r#"{"upcast": "."}"#).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) =
        put_schema(&app, "/schemas/Stepped/4294967295", r#"{"upcast": "."}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("the next one is 3"), "{message}");
    let (status, body) = put_schema(&app, "/schemas/Stepped/3", r#"{"upcast": "."}"#).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A new type may start at 2: version 1 is what events are without saying.
    let (status, body) = put_schema(&app, "/schemas/Fresh/2", r#"{"upcast": "."}"#).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = put_schema(&app, "/schemas/Other/3", r#"{"upcast": "."}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_schema_type_name_has_the_limit_of_an_event_type() {
    let app = api().await;
    let long = "T".repeat(10 * 1024);
    let (status, body) = put_schema(&app, &format!("/schemas/{long}/1"), "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_event");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("event type is longer than 256 bytes"),
        "{body}"
    );
    // The same error as an append of an event of that type.
    let request = Request::post("/streams/s-1")
        .header("content-type", "application/json")
        .body(Body::from(json!([{"type": long, "data": {}}]).to_string()))
        .unwrap();
    let (status, append) = send(&app, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(append["error"], body["error"]);

    let longest = "T".repeat(256);
    let (status, body) = put_schema(&app, &format!("/schemas/{longest}/1"), "{}").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
