//! Consumer groups over HTTP (tower oneshot) refuse settings and requests that would
//! stall them, and park an event they cannot deliver instead of getting stuck on it.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use bytes::Bytes;
use eventfold_core::{AllSlice, InMemoryStore, LayerExt, RecordedEvent, Result, StoreLayer};
use eventfold_server::{ServerConfig, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A layer whose events of type `Tampered` read back with data no JSON reader
/// accepts: an event that reached the log below the append checks (written before
/// they existed, or damaged since).
struct Tampering;

fn tamper(mut event: RecordedEvent) -> RecordedEvent {
    if event.event_type == "Tampered" {
        event.data = Bytes::from_static(br#"{"text":"\ud800"}"#);
    }
    event
}

#[async_trait]
impl StoreLayer for Tampering {
    async fn after_read_stream(
        &self,
        _stream: &str,
        events: Vec<RecordedEvent>,
    ) -> Result<Vec<RecordedEvent>> {
        Ok(events.into_iter().map(tamper).collect())
    }

    async fn after_read_all(&self, mut page: AllSlice) -> Result<AllSlice> {
        page.events = page.events.into_iter().map(tamper).collect();
        Ok(page)
    }
}

struct Api {
    app: Router,
}

async fn api() -> Api {
    let store = InMemoryStore::new().layer(Tampering);
    Api {
        app: router(Arc::new(store), ServerConfig::default())
            .await
            .expect("router"),
    }
}

impl Api {
    async fn call(&self, method: Method, uri: &str, body: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let response = self.app.clone().oneshot(request).await.expect("answer");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    async fn append(&self, stream: &str, event_type: &str) {
        let body = json!([{"type": event_type, "data": {"n": 1}}]);
        let (status, answer) = self
            .call(
                Method::POST,
                &format!("/streams/{stream}"),
                &body.to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or("")
}

#[tokio::test]
async fn group_settings_outside_their_range_are_refused_naming_the_setting() {
    let api = api().await;
    for (settings, setting, range) in [
        (json!({"in_flight_max": 0}), "in_flight_max", "1 to 100000"),
        (
            json!({"in_flight_max": 100_001}),
            "in_flight_max",
            "1 to 100000",
        ),
        (
            json!({"ack_timeout_ms": 0}),
            "ack_timeout_ms",
            "100 to 86400000",
        ),
        (
            json!({"ack_timeout_ms": u64::MAX}),
            "ack_timeout_ms",
            "100 to 86400000",
        ),
    ] {
        let (status, body) = api
            .call(Method::PUT, "/subscriptions/mailer", &settings.to_string())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{settings}: {body}");
        assert_eq!(body["error"], "invalid_setting", "{body}");
        assert_eq!(body["setting"], setting, "{body}");
        assert!(message(&body).contains(range), "names the range: {body}");
    }
    for not_an_object in ["[]", "[5, 1000]", "\"x\"", "null"] {
        let (status, body) = api
            .call(Method::PUT, "/subscriptions/mailer", not_an_object)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{not_an_object}: {body}");
        assert_eq!(body["error"], "invalid_json", "{body}");
        assert!(message(&body).contains("JSON object"), "{body}");
    }
    let (status, body) = api.call(Method::GET, "/subscriptions/mailer", "").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no group was created: {body}"
    );
    let (status, body) = api
        .call(
            Method::PUT,
            "/subscriptions/mailer",
            r#"{"in_flight_max": 1}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn next_takes_a_count_from_1_to_1000() {
    let api = api().await;
    api.append("order-1", "Placed").await;
    let (status, body) = api.call(Method::PUT, "/subscriptions/mailer", "").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for count in [0, 1001] {
        let (status, body) = api
            .call(
                Method::GET,
                &format!("/subscriptions/mailer/next?count={count}&wait_ms=0"),
                "",
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "count={count}: {body}");
        assert_eq!(body["error"], "invalid_query", "{body}");
        assert!(message(&body).contains("1 to 1000"), "{body}");
    }
    let (status, body) = api
        .call(
            Method::GET,
            "/subscriptions/mailer/next?count=1000&wait_ms=1000",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["deliveries"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
}

#[tokio::test]
async fn an_event_that_cannot_be_delivered_is_parked_and_the_group_moves_on() {
    let api = api().await;
    api.append("order-1", "Placed").await;
    api.append("order-1", "Tampered").await;
    api.append("order-1", "Shipped").await;
    let (status, body) = api.call(Method::PUT, "/subscriptions/mailer", "").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        let (status, body) = api
            .call(Method::GET, "/subscriptions/mailer/next?wait_ms=5000", "")
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let event = &body["deliveries"][0]["event"];
        assert!(event.is_object(), "the group delivers again: {body}");
        delivered.push(event["type"].as_str().unwrap_or("").to_string());
        let (status, body) = api
            .call(
                Method::POST,
                "/subscriptions/mailer/ack",
                &json!({ "positions": [event["position"]] }).to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(delivered, ["Placed", "Shipped"]);
    let (status, body) = api
        .call(Method::GET, "/subscriptions/mailer/parked", "")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let parked = body["parked"].as_array().expect("parked");
    assert_eq!(parked.len(), 1, "{body}");
    assert_eq!(parked[0]["position"], 1);
    assert_eq!(parked[0]["stream"], "order-1");
    let reason = parked[0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("not delivered") && reason.contains("escape"),
        "the reason says why: {reason}"
    );

    let (status, body) = api.call(Method::GET, "/subscriptions/mailer", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["checkpoint"], 2, "past all three: {body}");
    assert_eq!(body["status"]["parked"], 1, "{body}");

    api.append("order-2", "Placed").await;
    let (status, body) = api
        .call(Method::GET, "/subscriptions/mailer/next?wait_ms=1000", "")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["deliveries"][0]["event"]["stream"], "order-2",
        "{body}"
    );
}
