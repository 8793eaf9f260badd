//! A writer without the `delete` role tries to delete, forge or wedge what it may
//! only append to, over HTTP (tower oneshot, on the embedded log engine): every
//! attempt is a 400 naming the problem, and the streams keep working.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use eventfold_log::{LogOptions, LogStore};
use eventfold_server::{AuthConfig, ServerConfig, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

const ADMIN: &str = "admin-token-0123456789";
const WRITER: &str = "writer-token-0123456789";

struct Api {
    app: Router,
    _dir: tempfile::TempDir,
}

async fn api() -> Api {
    let auth = AuthConfig::from_toml(&format!(
        r#"
[[users]]
name = "root"
token = "{ADMIN}"
roles = ["admin"]

[[users]]
name = "billing"
token = "{WRITER}"
roles = ["writers"]

[acl]
read = ["$all"]
write = ["writers"]
"#
    ))
    .expect("auth config");
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path(), LogOptions::default()).expect("open the store");
    let config = ServerConfig {
        auth: Some(auth),
        ..ServerConfig::default()
    };
    Api {
        app: router(Arc::new(store), config).await.expect("router"),
        _dir: dir,
    }
}

impl Api {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
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

    async fn append(&self, stream: &str, body: &str) -> (StatusCode, Value) {
        self.call(Method::POST, &format!("/streams/{stream}"), WRITER, body)
            .await
    }

    async fn stream_types(&self, stream: &str) -> Vec<String> {
        let (status, body) = self
            .call(Method::GET, &format!("/streams/{stream}"), ADMIN, "")
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["type"].as_str().expect("type").to_string())
            .collect()
    }
}

/// The id a tombstone of `stream` had while tombstones were recognised by id.
fn predictable_tombstone_id(stream: &str) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x5f1c_2b0e_6d4a_4e7b_9a51_0c3e_8f27_d6b4);
    Uuid::new_v5(&NAMESPACE, format!("tombstone:{stream}").as_bytes())
}

#[tokio::test]
async fn a_writer_cannot_delete_a_stream_by_forging_its_tombstone() {
    let api = api().await;
    let opened = r#"[{"type":"Opened","data":{}}]"#;
    assert_eq!(api.append("account-1", opened).await.0, StatusCode::CREATED);

    let (status, body) = api
        .append("account-1", r#"[{"type":"$stream-deleted","data":{}}]"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_event");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("$stream-deleted"),
        "the message names the type: {body}"
    );

    let forged =
        json!([{"id": predictable_tombstone_id("account-1"), "type": "Closed", "data": {}}]);
    let (status, body) = api.append("account-1", &forged.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api.append("account-1", opened).await;
    assert_eq!(status, StatusCode::CREATED, "still writable: {body}");
    assert_eq!(
        api.stream_types("account-1").await,
        ["Opened", "Closed", "Opened"]
    );

    // The id a hard delete of account-2 once used, written elsewhere first, no longer
    // makes the real hard delete fail.
    assert_eq!(api.append("account-2", opened).await.0, StatusCode::CREATED);
    let decoy =
        json!([{"id": predictable_tombstone_id("account-2"), "type": "Opened", "data": {}}]);
    assert_eq!(
        api.append("decoy-1", &decoy.to_string()).await.0,
        StatusCode::CREATED
    );
    let (status, body) = api
        .call(Method::DELETE, "/streams/account-2?hard=true", WRITER, "")
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a writer may not delete: {body}"
    );
    let (status, body) = api
        .call(Method::DELETE, "/streams/account-2?hard=true", ADMIN, "")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.append("account-2", opened).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
}

#[tokio::test]
async fn system_event_types_are_refused_in_every_append() {
    let api = api().await;
    for event_type in [
        "$metadata",
        "$stream-deleted",
        "$checkpoint",
        "$parked",
        "$schema-registered",
    ] {
        let body = json!([{"type": "Opened", "data": {}}, {"type": event_type, "data": {}}]);
        let (status, answer) = api.append("order-1", &body.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{event_type}: {answer}");
        assert_eq!(answer["error"], "invalid_event", "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap_or("")
                .contains(event_type),
            "the message names {event_type}: {answer}"
        );
        let transaction = json!([
            {"stream": "order-2", "events": [{"type": "Opened", "data": {}}]},
            {"stream": "order-3", "events": [{"type": event_type, "data": {}}]},
        ]);
        let (status, answer) = api
            .call(
                Method::POST,
                "/transactions",
                WRITER,
                &transaction.to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{event_type}: {answer}");
    }
    let (status, body) = api.call(Method::GET, "/all", ADMIN, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["events"], json!([]), "nothing was written");
}

#[tokio::test]
async fn data_a_reader_would_refuse_is_refused_at_append() {
    let api = api().await;
    let deep = format!("{}{}", "[".repeat(128), "]".repeat(128));
    let cases = [
        (
            r#"[{"type":"Said","data":{"text":"\ud800"}}]"#.to_string(),
            "escape",
        ),
        (
            format!(r#"[{{"type":"Said","data":{deep}}}]"#),
            "recursion limit",
        ),
        (
            r#"[{"type":"Said","data":[1e400]}]"#.to_string(),
            "out of range",
        ),
        (
            r#"[{"type":"Said","data":{},"metadata":{"note":"\udc00"}}]"#.to_string(),
            "metadata",
        ),
        (
            r#"[{"id":"00000000-0000-0000-0000-000000000000","type":"Said","data":{}}]"#
                .to_string(),
            "nil UUID",
        ),
    ];
    for (body, problem) in cases {
        let (status, answer) = api.append("chat-1", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}: {answer}");
        assert_eq!(answer["error"], "invalid_event", "{answer}");
        assert!(
            answer["message"].as_str().unwrap_or("").contains(problem),
            "the message names the problem ({problem}): {answer}"
        );
    }
    let (status, _) = api.call(Method::GET, "/streams/chat-1", ADMIN, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was written");
    let nested_127 = format!("{}{}", "[".repeat(127), "]".repeat(127));
    let (status, answer) = api
        .append(
            "chat-1",
            &format!(r#"[{{"type":"Said","data":{nested_127}}}]"#),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "127 levels are allowed: {answer}"
    );
}
