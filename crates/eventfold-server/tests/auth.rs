//! Tokens, roles and ACLs on every endpoint, without sockets (`tower` oneshot).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use eventfold_log::{LogOptions, LogStore};
use eventfold_server::{AuthConfig, ServerConfig, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-token-0123456789";
const WRITER: &str = "writer-token-0123456789";
const READER: &str = "reader-token-0123456789";
const AUDITOR: &str = "auditor-token-0123456789";
const SCRAPER: &str = "scraper-token-0123456789";

struct Api {
    app: Router,
    _dir: tempfile::TempDir,
}

async fn api() -> Api {
    let config = AuthConfig::from_toml(&format!(
        r#"
[[users]]
name = "root"
token = "{ADMIN}"
roles = ["admin"]

[[users]]
name = "billing"
token = "{WRITER}"
roles = ["writers"]

[[users]]
name = "dashboard"
token = "{READER}"
roles = ["readers"]

[[users]]
name = "audit"
token = "{AUDITOR}"
roles = ["auditors"]

[[users]]
name = "prometheus"
token = "{SCRAPER}"
roles = ["metrics"]

[acl]
read = ["$all"]
write = ["writers"]
"#
    ))
    .expect("auth config");
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), LogOptions::default()).unwrap();
    let config = ServerConfig {
        auth: Some(config),
        subject_keys: Some(Arc::new(eventfold_privacy::MemoryKeyStore::new())),
        ..ServerConfig::default()
    };
    Api {
        app: router(Arc::new(store), config).await.unwrap(),
        _dir: dir,
    }
}

impl Api {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(
                response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
                "Bearer"
            );
        }
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    async fn status(&self, method: Method, uri: &str, token: &str, body: Option<Value>) -> u16 {
        self.call(method, uri, Some(token), body).await.0.as_u16()
    }
}

fn one_event() -> Option<Value> {
    Some(json!([{"type": "Paid", "data": {"amount": 5}}]))
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused_except_health() {
    let api = api().await;
    let (status, body) = api.call(Method::GET, "/streams/order-1", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorized");
    let (status, _) = api
        .call(
            Method::GET,
            "/streams/order-1",
            Some("wrong-token-0123456789"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.call(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK, "health stays open for probes");
}

#[tokio::test]
async fn default_acl_lets_writers_write_and_everyone_read() {
    let api = api().await;
    assert_eq!(
        api.status(Method::POST, "/streams/order-1", WRITER, one_event())
            .await,
        201
    );
    let (status, body) = api
        .call(Method::POST, "/streams/order-1", Some(READER), one_event())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "access_denied");
    assert!(
        body["message"].as_str().unwrap().contains("dashboard"),
        "the refusal names the user: {body}"
    );
    assert_eq!(
        api.status(Method::GET, "/streams/order-1", READER, None)
            .await,
        200
    );
    assert_eq!(
        api.status(Method::GET, "/streams/order-1/0", READER, None)
            .await,
        200
    );
    // A transaction needs write access to every stream it touches.
    let transaction = json!([{"stream": "order-2", "events": [{"type": "Paid", "data": {}}]}]);
    assert_eq!(
        api.status(
            Method::POST,
            "/transactions",
            READER,
            Some(transaction.clone())
        )
        .await,
        403
    );
    assert_eq!(
        api.status(Method::POST, "/transactions", WRITER, Some(transaction))
            .await,
        201
    );
    // Deleting and metadata are the administrators' by default.
    assert_eq!(
        api.status(Method::DELETE, "/streams/order-1", WRITER, None)
            .await,
        403
    );
    assert_eq!(
        api.status(Method::GET, "/streams/order-1/metadata", WRITER, None)
            .await,
        403
    );
    assert_eq!(
        api.status(Method::DELETE, "/streams/order-1", ADMIN, None)
            .await,
        200
    );
}

#[tokio::test]
async fn a_stream_acl_in_its_metadata_overrides_the_defaults_on_every_endpoint() {
    let api = api().await;
    assert_eq!(
        api.status(Method::POST, "/streams/salary-1", WRITER, one_event())
            .await,
        201
    );
    let acl =
        json!({"acl": {"read": ["auditors"], "write": ["auditors"], "metadata": ["auditors"]}});
    assert_eq!(
        api.status(Method::PUT, "/streams/salary-1/metadata", ADMIN, Some(acl))
            .await,
        200
    );
    for uri in [
        "/streams/salary-1",
        "/streams/salary-1/0",
        "/streams/salary-1/head",
        "/subscribe/streams/salary-1",
    ] {
        assert_eq!(
            api.status(Method::GET, uri, READER, None).await,
            403,
            "{uri}"
        );
    }
    assert_eq!(
        api.status(Method::POST, "/streams/salary-1", WRITER, one_event())
            .await,
        403
    );
    assert_eq!(
        api.status(Method::GET, "/streams/salary-1", AUDITOR, None)
            .await,
        200
    );
    assert_eq!(
        api.status(Method::POST, "/streams/salary-1", AUDITOR, one_event())
            .await,
        201
    );
    assert_eq!(
        api.status(Method::GET, "/streams/salary-1/metadata", AUDITOR, None)
            .await,
        200
    );
    // Other streams keep the defaults.
    assert_eq!(
        api.status(Method::POST, "/streams/order-1", WRITER, one_event())
            .await,
        201
    );
}

#[tokio::test]
async fn all_index_streams_listing_schemas_and_groups_need_their_roles() {
    let api = api().await;
    assert_eq!(
        api.status(Method::POST, "/streams/order-1", WRITER, one_event())
            .await,
        201
    );
    for uri in [
        "/all",
        "/subscribe/all",
        "/streams",
        "/streams/$ce-order",
        "/subscriptions/g1",
    ] {
        assert_eq!(
            api.status(Method::GET, uri, WRITER, None).await,
            403,
            "{uri}"
        );
    }
    for uri in ["/all", "/streams", "/streams/$ce-order"] {
        assert_eq!(
            api.status(Method::GET, uri, ADMIN, None).await,
            200,
            "{uri}"
        );
    }
    let schema = json!({"schema": {"type": "object"}});
    assert_eq!(
        api.status(Method::PUT, "/schemas/Paid/1", WRITER, Some(schema.clone()))
            .await,
        403
    );
    assert_eq!(
        api.status(Method::PUT, "/schemas/Paid/1", ADMIN, Some(schema))
            .await,
        201
    );
    assert_eq!(
        api.status(Method::GET, "/schemas/Paid", READER, None).await,
        200
    );
    assert_eq!(
        api.status(Method::PUT, "/subscriptions/g1", WRITER, Some(json!({})))
            .await,
        403
    );
    assert_eq!(
        api.status(Method::PUT, "/subscriptions/g1", ADMIN, Some(json!({})))
            .await,
        201
    );
}

#[tokio::test]
async fn forgetting_a_subject_needs_the_admin_role() {
    let api = api().await;
    for token in [WRITER, READER, AUDITOR, SCRAPER] {
        let (status, body) = api
            .call(Method::DELETE, "/subjects/customer-1", Some(token), None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, body) = api
        .call(Method::DELETE, "/subjects/customer-1", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["subject"], "customer-1");
    let (status, body) = api
        .call(Method::GET, "/streams/$subjects", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"][0]["type"], "$subject-forgotten");
}

#[tokio::test]
async fn metrics_need_the_metrics_role() {
    let api = api().await;
    api.status(
        Method::PUT,
        "/subscriptions/billing-secret",
        ADMIN,
        Some(json!({})),
    )
    .await;
    for token in [WRITER, READER] {
        let (status, body) = api.call(Method::GET, "/metrics", Some(token), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("metrics"),
            "{body}"
        );
    }
    for token in [SCRAPER, ADMIN] {
        let request = Request::get("/metrics")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let response = api.app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&text).contains("group=\"billing-secret\""));
    }
}

#[tokio::test]
async fn an_idempotency_conflict_names_no_stream_the_caller_may_not_read() {
    let api = api().await;
    let id = "0192f1a8-0000-7000-8000-00000000c0de";
    let event = json!([{"id": id, "type": "Paid", "data": {}}]);
    assert_eq!(
        api.status(
            Method::POST,
            "/streams/salary-7",
            ADMIN,
            Some(event.clone())
        )
        .await,
        201
    );
    let acl = json!({"acl": {"read": ["auditors"]}});
    assert_eq!(
        api.status(Method::PUT, "/streams/salary-7/metadata", ADMIN, Some(acl))
            .await,
        200
    );
    // The writer may not read salary-7: the conflict says nothing of it.
    let (status, body) = api
        .call(
            Method::POST,
            "/streams/order-7",
            Some(WRITER),
            Some(event.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "idempotency_conflict");
    assert_eq!(body["stream"], "order-7");
    assert!(!body.to_string().contains("salary"), "{body}");
    // Nor through a transaction.
    let transaction = json!([{"stream": "order-8", "events": event}]);
    let (status, body) = api
        .call(
            Method::POST,
            "/transactions",
            Some(WRITER),
            Some(transaction),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(!body.to_string().contains("salary"), "{body}");
    // An administrator, who may read every stream, is told where the id is.
    let (status, body) = api
        .call(Method::POST, "/streams/order-7", Some(ADMIN), Some(event))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["message"].as_str().unwrap().contains("salary-7"),
        "{body}"
    );
}

/// A link reaches into the stream it points at, a compensation into the stream of the
/// event it fixes: neither gets round that stream's ACL, at write or at read.
#[tokio::test]
async fn links_and_compensations_need_the_rights_on_the_stream_they_point_into() {
    let api = api().await;
    assert_eq!(
        api.status(Method::POST, "/streams/salary-1", WRITER, one_event())
            .await,
        201
    );
    let link = Some(json!([{"type": "$link", "data": {"event": "0@salary-1"}}]));
    // Readable by everyone for now: the writer may link to it.
    assert_eq!(
        api.status(Method::POST, "/streams/picked-1", WRITER, link.clone())
            .await,
        201
    );
    let acl =
        json!({"acl": {"read": ["auditors"], "write": ["auditors"], "metadata": ["auditors"]}});
    assert_eq!(
        api.status(Method::PUT, "/streams/salary-1/metadata", ADMIN, Some(acl))
            .await,
        200
    );
    // The link written before does not show the original to a reader without rights.
    assert_eq!(
        api.status(Method::GET, "/streams/picked-1", READER, None)
            .await,
        403
    );
    let (status, page) = api
        .call(
            Method::GET,
            "/streams/picked-1?resolve_links=false",
            Some(READER),
            None,
        )
        .await;
    assert_eq!(status, 200, "the link itself stays readable");
    assert_eq!(page["events"][0]["type"], "$link");
    assert_eq!(
        api.status(Method::GET, "/streams/picked-1", AUDITOR, None)
            .await,
        200
    );
    // A new link, or a compensation, into it is refused to the writer.
    assert_eq!(
        api.status(Method::POST, "/streams/picked-2", WRITER, link)
            .await,
        403
    );
    let cancel = Some(json!([{"type": "$cancelled", "data": {"event": "0@salary-1"}}]));
    assert_eq!(
        api.status(Method::POST, "/streams/order-1", WRITER, cancel.clone())
            .await,
        403
    );
    assert_eq!(
        api.status(Method::POST, "/streams/salary-1", AUDITOR, cancel)
            .await,
        201
    );
}
