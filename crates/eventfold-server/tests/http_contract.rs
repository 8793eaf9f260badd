//! The HTTP contract, exercised without sockets (`tower::ServiceExt::oneshot`)
//! on the embedded log engine.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use eventfold_log::{LogOptions, LogStore};
use eventfold_server::{ServerConfig, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Api {
    app: Router,
    _dir: tempfile::TempDir,
}

async fn api() -> Api {
    api_with(ServerConfig::default()).await
}

async fn api_with(config: ServerConfig) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), LogOptions::default()).unwrap();
    Api {
        app: router(Arc::new(store), config).await.unwrap(),
        _dir: dir,
    }
}

impl Api {
    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    async fn post(&self, stream: &str, expected: Option<&str>, body: &str) -> (StatusCode, Value) {
        let mut request =
            Request::post(format!("/streams/{stream}")).header("content-type", "application/json");
        if let Some(expected) = expected {
            request = request.header("Expected-Version", expected);
        }
        self.send(request.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }
}

#[tokio::test]
async fn append_and_read_a_stream() {
    let api = api().await;
    let (status, body) = api
        .post("order-1", Some("no_stream"), r#"[{"type":"OrderPlaced","data":{"total":5}},{"type":"OrderPaid","data":{"amount":5},"metadata":{"correlation_id":"c-1"}}]"#)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body,
        json!({"first_revision": 0, "last_revision": 1, "position": 1})
    );

    let (status, body) = api.get("/streams/order-1").await;
    assert_eq!(status, StatusCode::OK);
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["stream"], "order-1");
    assert_eq!(events[0]["revision"], 0);
    assert_eq!(events[0]["position"], 0);
    assert_eq!(events[0]["type"], "OrderPlaced");
    assert_eq!(events[0]["version"], 1);
    assert_eq!(events[0]["data"], json!({"total": 5}));
    assert_eq!(events[0]["metadata"], json!({}));
    assert_eq!(events[1]["metadata"], json!({"correlation_id": "c-1"}));
    assert!(
        events[0]["id"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
    assert!(events[0]["recorded_at"].as_str().unwrap().ends_with('Z'));

    let (_, body) = api.get("/streams/order-1?direction=backward&limit=1").await;
    assert_eq!(body["events"][0]["revision"], 1);
    let (_, body) = api.get("/streams/order-1?from=1").await;
    assert_eq!(body["events"].as_array().unwrap().len(), 1);

    let (status, body) = api.get("/streams/order-1/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["type"], "OrderPaid");
    let (status, body) = api.get("/all?from=1&limit=10").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    assert_eq!(body["events"][0]["position"], 1);
}

#[tokio::test]
async fn a_wrong_expected_version_is_a_409_naming_both_versions() {
    let api = api().await;
    assert_eq!(
        api.post("order-1", None, r#"[{"type":"A","data":1}]"#)
            .await
            .0,
        StatusCode::CREATED
    );
    let (status, body) = api
        .post("order-1", Some("no_stream"), r#"[{"type":"A","data":2}]"#)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "wrong_expected_version");
    assert_eq!(body["expected"], "no_stream");
    assert_eq!(body["actual"], 0);
    let (status, body) = api
        .post("order-1", Some("5"), r#"[{"type":"A","data":2}]"#)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        (body["expected"].clone(), body["actual"].clone()),
        (json!(5), json!(0))
    );
    let (status, body) = api
        .post(
            "order-2",
            Some("stream_exists"),
            r#"[{"type":"A","data":2}]"#,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["actual"], Value::Null);
    // Nothing refused was written.
    let (_, body) = api.get("/all").await;
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn reposting_the_same_event_ids_does_not_write_twice() {
    let api = api().await;
    let body = r#"[{"id":"0192f1a8-0000-7000-8000-000000000001","type":"A","data":1},{"id":"0192f1a8-0000-7000-8000-000000000002","type":"B","data":2}]"#;
    let first = api.post("order-1", Some("no_stream"), body).await;
    let again = api.post("order-1", Some("no_stream"), body).await;
    assert_eq!(first.0, StatusCode::CREATED);
    assert_eq!(again, first);
    let (_, read) = api.get("/streams/order-1").await;
    assert_eq!(read["events"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_input_is_a_4xx_naming_the_problem() {
    let api = api_with(ServerConfig {
        body_bytes_max: 1024,
        ..ServerConfig::default()
    })
    .await;
    let cases = [
        (
            "order-1",
            None,
            "[{\"type\":\"A\",\"data\":",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "order-1",
            None,
            r#"{"type":"A","data":1}"#,
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "order-1",
            None,
            r#"[{"data":1}]"#,
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "order-1",
            None,
            r#"[{"type":"A","data":1,"colour":"red"}]"#,
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "order-1",
            None,
            "[]",
            StatusCode::BAD_REQUEST,
            "empty_append",
        ),
        (
            "order-1",
            Some("soon"),
            r#"[{"type":"A","data":1}]"#,
            StatusCode::BAD_REQUEST,
            "invalid_expected_version",
        ),
        (
            "order-1",
            None,
            r#"[{"type":"A","data":1,"metadata":[1]}]"#,
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "order-1",
            None,
            r#"[{"type":"","data":1}]"#,
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "order-1",
            None,
            r#"[{"type":"A","data":1,"version":0}]"#,
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "$system",
            None,
            r#"[{"type":"A","data":1}]"#,
            StatusCode::BAD_REQUEST,
            "invalid_stream_name",
        ),
    ];
    for (stream, expected, body, status, code) in cases {
        let (got, answer) = api.post(stream, expected, body).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
    }
    let big = format!(r#"[{{"type":"A","data":"{}"}}]"#, "x".repeat(2000));
    let (status, answer) = api.post("order-1", None, &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    let (_, all) = api.get("/all").await;
    assert_eq!(all["events"], json!([]), "nothing refused was written");

    assert_eq!(api.get("/streams/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        api.get("/streams/nope").await.1["error"],
        "stream_not_found"
    );
    assert_eq!(
        api.get("/streams/order-1?direction=sideways").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.get("/all?from=minus-one").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.get("/streams/order-1/x").await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn one_event_with_version_negotiation() {
    let api = api().await;
    api.post(
        "item-1",
        None,
        r#"[{"type":"InventoryItemDeactivated","version":2,"data":{"itemId":"1","reason":"x"}}]"#,
    )
    .await;
    let get = |accept: &'static str| {
        Request::get("/streams/item-1/0")
            .header("Accept", accept)
            .body(Body::empty())
            .unwrap()
    };
    let (status, body) = api.send(get("application/vnd.eventfold.v2+json")).await;
    assert_eq!(
        (status, body["version"].clone()),
        (StatusCode::OK, json!(2))
    );
    let (status, body) = api.send(get("application/vnd.eventfold.v1+json")).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{body}");
    assert_eq!(body["error"], "no_conversion_path");
    assert_eq!(api.send(get("application/json")).await.0, StatusCode::OK);
    let (status, body) = api.get("/streams/item-1/7").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("event_not_found"))
    );
}

#[tokio::test]
async fn health_and_metrics() {
    let api = api().await;
    api.post("order-1", None, r#"[{"type":"A","data":1}]"#)
        .await;
    let (status, body) = api.get("/health").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, body) = api.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    assert!(text.contains("eventfold_appends_total 1"), "{text}");
    assert!(text.contains("eventfold_head_position 0"), "{text}");
    // One append in the latency histogram, and the log engine's own figures.
    assert!(
        text.contains("eventfold_append_duration_seconds_bucket{le=\"+Inf\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("eventfold_append_duration_seconds_count 1"),
        "{text}"
    );
    assert!(
        text.contains("eventfold_log_events_written_total 1"),
        "{text}"
    );
    assert!(text.contains("eventfold_log_commits_total 1"), "{text}");
    assert!(
        text.contains("# TYPE eventfold_log_fsync_seconds_total counter"),
        "{text}"
    );

    // A consumer group's lag: the three positions after its (empty) checkpoint, the
    // group's own settings event included.
    api.post("order-1", None, r#"[{"type":"B","data":2}]"#)
        .await;
    let (status, body) = api
        .send_json("PUT", "/subscriptions/billing", json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = api.get("/metrics").await;
    let text = body.as_str().unwrap();
    assert!(
        text.contains("eventfold_group_lag_events{group=\"billing\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("eventfold_group_in_flight{group=\"billing\"} 0"),
        "{text}"
    );
}

/// Reads SSE messages from a streaming response until `count` events arrived.
async fn sse_events(response: axum::response::Response, count: usize) -> Vec<(String, Value)> {
    let mut body = response.into_body();
    let mut text = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(30), body.frame())
            .await
            .expect("an SSE message within 30 s")
            .expect("the stream stays open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = text.find("\n\n") {
            let message: String = text.drain(..end + 2).collect();
            let id = message
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .map(|s| s.trim().to_string());
            let data = message
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .map(str::trim);
            if let (Some(id), Some(data)) = (id, data) {
                events.push((id, serde_json::from_str(data).unwrap()));
            }
        }
    }
    events
}

#[tokio::test]
async fn subscriptions_catch_up_go_live_and_resume() {
    let api = api().await;
    for n in 0..3 {
        api.post(&format!("order-{n}"), None, r#"[{"type":"A","data":1}]"#)
            .await;
    }
    let request = Request::get("/subscribe/all?from=1")
        .body(Body::empty())
        .unwrap();
    let response = api.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let writer = {
        let api_app = api.app.clone();
        tokio::spawn(async move {
            let post = Request::post("/streams/order-9")
                .body(Body::from(r#"[{"type":"Live","data":1}]"#))
                .unwrap();
            api_app.oneshot(post).await.unwrap().status()
        })
    };
    let events = sse_events(response, 3).await;
    assert_eq!(writer.await.unwrap(), StatusCode::CREATED);
    let ids: Vec<&str> = events.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3"]);
    assert_eq!(events[2].1["type"], "Live");

    // Reconnecting with Last-Event-ID resumes right after it.
    let request = Request::get("/subscribe/all")
        .header("Last-Event-ID", "2")
        .body(Body::empty())
        .unwrap();
    let events = sse_events(api.app.clone().oneshot(request).await.unwrap(), 1).await;
    assert_eq!(events[0].0, "3");

    // One stream, by revision.
    let request = Request::get("/subscribe/streams/order-9?from=0")
        .body(Body::empty())
        .unwrap();
    let events = sse_events(api.app.clone().oneshot(request).await.unwrap(), 1).await;
    assert_eq!(
        (events[0].0.as_str(), events[0].1["stream"].as_str()),
        ("0", Some("order-9"))
    );
}

impl Api {
    async fn put_schema(&self, event_type: &str, version: u32, body: Value) -> (StatusCode, Value) {
        self.send(
            Request::put(format!("/schemas/{event_type}/{version}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    async fn get_accepting(&self, uri: &str, version: u32) -> (StatusCode, Value) {
        self.send(
            Request::get(uri)
                .header(
                    "Accept",
                    format!("application/vnd.eventfold.v{version}+json"),
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }
}

fn inventory_v2() -> Value {
    json!({
        "schema": {"type": "object", "required": ["itemId"],
                   "properties": {"itemId": {"type": "string"}, "reason": {"type": "string"}}},
        "upcast": "{itemId: .id, reason: \"not recorded\"}",
        "downcast": "{id: .itemId}"
    })
}

#[tokio::test]
async fn the_inventory_story_over_http_with_accept_negotiation() {
    let api = api().await;
    api.post(
        "item-1",
        None,
        r#"[{"type":"InventoryItemDeactivated","data":{"id":"item-1"}}]"#,
    )
    .await;
    let (status, body) = api
        .put_schema("InventoryItemDeactivated", 2, inventory_v2())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api
        .post("item-2", None, r#"[{"type":"InventoryItemDeactivated","version":2,"data":{"itemId":"item-2","reason":"recall"}}]"#)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A new consumer reads the v1 event as v2, an old one the v2 event as v1.
    let (status, body) = api.get_accepting("/streams/item-1/0", 2).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["version"].clone(), body["data"].clone()),
        (
            json!(2),
            json!({"itemId": "item-1", "reason": "not recorded"})
        )
    );
    let (status, body) = api.get_accepting("/streams/item-2/0", 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["version"].clone(), body["data"].clone()),
        (json!(1), json!({"id": "item-2"}))
    );
    // Without Accept, as stored; to a version nobody registered, 406.
    let (_, body) = api.get("/streams/item-1/0").await;
    assert_eq!(body["version"], 1);
    let (status, body) = api.get_accepting("/streams/item-1/0", 7).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{body}");
    assert_eq!(body["error"], "no_conversion_path");

    // Reads and subscriptions declare versions once with `versions=`.
    let (_, body) = api
        .get("/all?versions=InventoryItemDeactivated:1&type=InventoryItemDeactivated")
        .await;
    let datas: Vec<&Value> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["data"])
        .collect();
    assert_eq!(
        datas,
        vec![&json!({"id": "item-1"}), &json!({"id": "item-2"})]
    );
    let (_, body) = api.get("/streams/item-1?versions=newest").await;
    assert_eq!(body["events"][0]["version"], 2);
    let (status, body) = api.get("/streams/item-1?versions=Inventory:x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The registry lists what was registered.
    let (status, body) = api.get("/schemas/InventoryItemDeactivated").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["versions"][0]["version"], 2);
    assert_eq!(body["versions"][0]["upcast"], inventory_v2()["upcast"]);
    assert_eq!(
        body["newest"],
        json!({"type": "InventoryItemDeactivated", "version": 2})
    );
    let (_, body) = api.get("/schemas").await;
    assert_eq!(body["types"][0]["type"], "InventoryItemDeactivated");
    let (status, _) = api.get("/schemas/Unknown").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Registering the same thing again changes nothing.
    let (status, body) = api
        .put_schema("InventoryItemDeactivated", 2, inventory_v2())
        .await;
    assert_eq!(
        (status, body["result"].clone()),
        (StatusCode::OK, json!("unchanged"))
    );
}

/// `Accept` is negotiated by q-value with a fallback: the most wanted representation
/// the event has wins, a version no converter reaches falls through to the next range,
/// and an `Accept` that takes no JSON at all is `406 not_acceptable`. Every answer
/// says it varies with `Accept`.
#[tokio::test]
async fn accept_is_negotiated_by_q_value_with_a_fallback() {
    let api = api().await;
    api.post(
        "item-1",
        None,
        r#"[{"type":"InventoryItemDeactivated","data":{"id":"item-1"}}]"#,
    )
    .await;
    let (status, body) = api
        .put_schema("InventoryItemDeactivated", 2, inventory_v2())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let read = async |accept: &str| {
        let request = Request::get("/streams/item-1/0")
            .header("Accept", accept)
            .body(Body::empty())
            .unwrap();
        let response = api.app.clone().oneshot(request).await.unwrap();
        let vary = response
            .headers()
            .get("vary")
            .map(|v| v.to_str().unwrap().to_string());
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        (status, body, vary)
    };
    let v1 = "application/vnd.eventfold.v1+json";
    let v2 = "application/vnd.eventfold.v2+json";
    let v7 = "application/vnd.eventfold.v7+json";
    for (accept, version) in [
        (format!("{v1};q=0.2, {v2};q=0.8"), 2),
        (format!("{v1};q=0.8, {v2};q=0.2"), 1),
        (format!("{v2};q=0, application/json"), 1),
        (format!("application/json;q=0.9, {v2};q=0.95"), 2),
        (format!("*/*;q=0.5, {v2};q=0.5"), 2),
        (format!("{v7}, {v2};q=0.3"), 2),
        (format!("{v7}, application/*;q=0.1"), 1),
        ("text/html, application/xhtml+xml, */*;q=0.8".to_string(), 1),
    ] {
        let (status, body, vary) = read(&accept).await;
        assert_eq!(status, StatusCode::OK, "{accept}: {body}");
        assert_eq!(body["version"], version, "{accept}: {body}");
        assert_eq!(vary.as_deref(), Some("accept"), "{accept}");
    }
    for (accept, code, status) in [
        ("text/html", "not_acceptable", StatusCode::NOT_ACCEPTABLE),
        (
            "application/json;q=0",
            "not_acceptable",
            StatusCode::NOT_ACCEPTABLE,
        ),
        (v7, "no_conversion_path", StatusCode::NOT_ACCEPTABLE),
        (
            "application/json;q=2",
            "invalid_accept",
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/vnd.eventfold.vX+json",
            "invalid_accept",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (answered, body, _) = read(accept).await;
        assert_eq!(
            (answered, body["error"].as_str()),
            (status, Some(code)),
            "{accept}: {body}"
        );
    }
}

#[tokio::test]
async fn schema_registration_and_validation_errors_name_the_problem() {
    let api = api().await;
    api.post(
        "item-9",
        None,
        r#"[{"type":"InventoryItemDeactivated","data":{"sku":"legacy"}}]"#,
    )
    .await;
    // The stored event cannot be upcast into a valid v2: refused, event shown.
    let (status, body) = api
        .put_schema("InventoryItemDeactivated", 2, inventory_v2())
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "incompatible_schema");
    assert_eq!(body["data"], json!({"sku": "legacy"}));
    assert!(
        body["event"].as_str().unwrap().starts_with("0@item-9"),
        "{body}"
    );

    let cases = [
        (
            json!({"upcast": "{itemId: .id"}),
            "invalid_schema",
            "does not parse",
        ),
        (
            json!({"schema": {"type": 12}, "upcast": "."}),
            "invalid_schema",
            "JSON Schema",
        ),
        (json!({}), "invalid_schema", "needs an upcast"),
        (
            json!({"upcast": ".", "colour": "red"}),
            "invalid_json",
            "colour",
        ),
    ];
    for (definition, code, text) in cases {
        let (status, body) = api.put_schema("Other", 2, definition.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{definition}: {body}");
        assert_eq!(body["error"], code, "{definition}: {body}");
        assert!(body["message"].as_str().unwrap().contains(text), "{body}");
    }

    // Appends of a registered version are validated against its schema.
    let (status, _) = api
        .put_schema(
            "Shipped",
            1,
            json!({"schema": {"type": "object", "required": ["orderId"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = api
        .post(
            "order-1",
            None,
            r#"[{"type":"Shipped","data":{"order":"x"}}]"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "schema_violation");
    assert!(
        body["message"].as_str().unwrap().contains("orderId"),
        "{body}"
    );
    let (status, _) = api.get("/streams/order-1").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing of a refused append is written"
    );
    // Clients cannot write the registry's stream directly.
    let (status, body) = api
        .post("$schemas", None, r#"[{"type":"x","data":{}}]"#)
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_stream_name"))
    );
}

impl Api {
    async fn send_json(&self, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            Request::builder()
                .method(method)
                .uri(uri)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }
}

#[tokio::test]
async fn a_consumer_group_over_http_acks_retries_parks_and_replays() {
    let api = api().await;
    for n in 0..3 {
        api.post(
            "order-1",
            None,
            &format!(r#"[{{"type":"OrderPlaced","data":{n}}}]"#),
        )
        .await;
    }
    let (status, body) = api.get("/subscriptions/mailer").await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::NOT_FOUND, json!("group_not_found"))
    );
    let (status, body) = api
        .send_json(
            "PUT",
            "/subscriptions/mailer",
            json!({"retries_max": 2, "colour": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("colour"));
    let (status, body) = api
        .send_json("PUT", "/subscriptions/mailer", json!({"retries_max": 2}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["settings"]["retries_max"], 2);

    let (_, body) = api
        .get("/subscriptions/mailer/next?count=10&wait_ms=1000")
        .await;
    let deliveries = body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 3, "{body}");
    assert_eq!(deliveries[0]["attempt"], 1);
    let (status, body) = api
        .send_json(
            "POST",
            "/subscriptions/mailer/ack",
            json!({"positions": [0, 2]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for attempt in 1..=2 {
        if attempt == 2 {
            let (_, body) = api.get("/subscriptions/mailer/next?wait_ms=1000").await;
            assert_eq!(body["deliveries"][0]["attempt"], 2, "{body}");
        }
        let (status, body) = api
            .send_json(
                "POST",
                "/subscriptions/mailer/nack",
                json!({"positions": [1], "action": "retry", "reason": "smtp down"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (_, body) = api.get("/subscriptions/mailer/parked").await;
    assert_eq!(body["parked"][0]["position"], 1, "{body}");
    assert_eq!(body["parked"][0]["reason"], "smtp down");
    let (status, body) = api
        .send_json(
            "POST",
            "/subscriptions/mailer/ack",
            json!({"positions": [1]}),
        )
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::CONFLICT, json!("not_in_flight"))
    );

    let (_, body) = api
        .send_json("POST", "/subscriptions/mailer/parked/replay", json!({}))
        .await;
    assert_eq!(body["queued"], 1);
    let (_, body) = api.get("/subscriptions/mailer/next?wait_ms=1000").await;
    assert_eq!(body["deliveries"][0]["event"]["position"], 1, "{body}");
    api.send_json(
        "POST",
        "/subscriptions/mailer/ack",
        json!({"positions": [1]}),
    )
    .await;
    let (_, body) = api.get("/subscriptions/mailer").await;
    assert_eq!(body["status"]["in_flight"], 0, "{body}");
    // Nothing new: an empty answer after the wait.
    let (_, body) = api.get("/subscriptions/mailer/next?wait_ms=10").await;
    assert_eq!(body["deliveries"], json!([]));
}

#[tokio::test]
async fn index_streams_are_read_and_paged_by_position() {
    let api = api().await;
    for (stream, n) in [
        ("order-1", 0),
        ("cart-1", 1),
        ("order-2", 2),
        ("order-1", 3),
    ] {
        api.post(
            stream,
            None,
            &format!(r#"[{{"type":"Placed","data":{n}}}]"#),
        )
        .await;
    }
    let (status, body) = api.get("/streams/$ce-order?limit=2").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let positions: Vec<&Value> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["position"])
        .collect();
    assert_eq!(positions, vec![&json!(0), &json!(2)]);
    assert_eq!(body["events"][1]["stream"], "order-2");
    assert_eq!(
        body["next"], 3,
        "the next page starts after the last position"
    );
    let (_, body) = api.get("/streams/$ce-order?from=3").await;
    assert_eq!(body["events"][0]["revision"], 1);
    let (status, body) = api.get("/streams/$ce-invoice").await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::NOT_FOUND, json!("stream_not_found"))
    );
    let (status, _) = api
        .post("$ce-order", None, r#"[{"type":"X","data":1}]"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn call(
    api: &Api,
    method: &str,
    uri: &str,
    expected: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(expected) = expected {
        request = request.header("Expected-Version", expected);
    }
    api.send(request.body(Body::from(body.to_string())).unwrap())
        .await
}

#[tokio::test]
async fn soft_delete_answers_404_until_the_stream_is_written_again() {
    let api = api().await;
    api.post(
        "cart-1",
        None,
        r#"[{"type":"A","data":{}},{"type":"B","data":{}}]"#,
    )
    .await;
    let (status, body) = call(&api, "DELETE", "/streams/cart-1", Some("0"), "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = call(&api, "DELETE", "/streams/cart-1", Some("1"), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["last_revision"], 1);
    let (status, body) = api.get("/streams/cart-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "stream_not_found");
    let (_, head) = api.get("/streams/cart-1/head").await;
    assert_eq!(
        head["last_revision"], 1,
        "the head still counts deleted events"
    );
    let (status, body) = api
        .post("cart-1", Some("1"), r#"[{"type":"C","data":{}}]"#)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = api.get("/streams/cart-1").await;
    let types: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["C"]);
}

#[tokio::test]
async fn hard_delete_answers_404_on_reads_and_410_on_appends() {
    let api = api().await;
    api.post("account-1", None, r#"[{"type":"Opened","data":{}}]"#)
        .await;
    let (status, body) = call(&api, "DELETE", "/streams/account-1?hard=true", None, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.get("/streams/account-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "stream_deleted");
    let (status, body) = api
        .post("account-1", None, r#"[{"type":"Opened","data":{}}]"#)
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["error"], "stream_deleted");
    let (status, _) = call(&api, "DELETE", "/streams/account-1", None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&api, "DELETE", "/streams/never-written", None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(&api, "DELETE", "/streams/account-1?hard=maybe", None, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn metadata_sets_retention_and_refuses_bad_input() {
    let api = api().await;
    let events: Vec<Value> = (0..5)
        .map(|n| json!({"type": "Tick", "data": {"n": n}}))
        .collect();
    api.post("clock-1", None, &Value::Array(events).to_string())
        .await;
    let (status, body) = api.get("/streams/clock-1/metadata").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"revision": null, "metadata": {}}));
    let (status, body) = call(
        &api,
        "PUT",
        "/streams/clock-1/metadata",
        Some("no_stream"),
        r#"{"max_count": 2, "custom": {"owner": "ops"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = api.get("/streams/clock-1").await;
    let ns: Vec<u64> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, [3, 4]);
    let (_, body) = api.get("/streams/clock-1/metadata").await;
    assert_eq!(body["revision"], 0);
    assert_eq!(body["metadata"]["custom"]["owner"], "ops");

    let (status, body) = call(
        &api,
        "PUT",
        "/streams/clock-1/metadata",
        Some("no_stream"),
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = call(
        &api,
        "PUT",
        "/streams/clock-1/metadata",
        None,
        r#"{"max_cnt": 2}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("max_cnt"),
        "{body}"
    );
    let (status, _) = call(&api, "PUT", "/streams/$all/metadata", None, "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Serde would read an array as the fields in order: refused, naming the shape.
    for body in ["[]", "[2]", "null", "3", r#"{"acl": []}"#] {
        let (status, answer) = call(&api, "PUT", "/streams/clock-1/metadata", None, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"], "invalid_json");
        assert!(
            answer["message"].as_str().unwrap().contains("JSON object"),
            "{answer}"
        );
    }
    let (_, body) = api.get("/streams/clock-1/metadata").await;
    assert_eq!(body["revision"], 0, "nothing refused was written");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let api = api().await;
    let (status, body) = api.get("/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "route_not_found");
    assert!(
        body["message"].as_str().unwrap().contains("/nowhere"),
        "{body}"
    );
    let (status, body) = api.get("/streams/a/b/c").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("route_not_found"))
    );

    let response = api
        .app
        .clone()
        .oneshot(
            Request::patch("/streams/order-1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = response.headers()["allow"].to_str().unwrap().to_string();
    assert!(
        allow.contains("POST") && allow.contains("DELETE"),
        "{allow}"
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"], "method_not_allowed");
    assert!(
        body["message"].as_str().unwrap().contains("PATCH"),
        "{body}"
    );
}

#[tokio::test]
async fn streams_are_listed_in_name_order_page_by_page() {
    let api = api().await;
    for stream in ["order-2", "cart-1", "order-1", "order-3"] {
        api.post(stream, None, r#"[{"type":"A","data":{}}]"#).await;
    }
    let (status, body) = api.get("/streams?prefix=order-&limit=2").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names = |body: &Value| -> Vec<String> {
        body["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["stream"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&body), ["order-1", "order-2"]);
    assert_eq!(body["next"], "order-2");
    let (_, body) = api
        .get("/streams?prefix=order-&limit=2&after=order-2")
        .await;
    assert_eq!(names(&body), ["order-3"]);
    assert_eq!(body["next"], Value::Null);
    let (_, body) = api.get("/streams").await;
    assert_eq!(names(&body), ["cart-1", "order-1", "order-2", "order-3"]);
}
