//! Scenario: a projection registered over HTTP folds a stream into its state as of any
//! revision; handlers see events at the newest version of their type; bad handlers are
//! refused at registration or named with the event they fail on; registrations live in
//! the store, so a server started again on it still has them.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use eventfold_log::{LogOptions, LogStore};
use eventfold_server::{ServerConfig, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn send(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

fn cart_total() -> Value {
    json!({
        "init": {"total": 0, "items": []},
        "handlers": {
            "ItemAdded": "{total: (.state.total + .event.data.price), items: (.state.items + [.event.data.sku])}",
            "ItemRemoved": "{total: (.state.total - .event.data.price), items: (.state.items - [.event.data.sku])}"
        }
    })
}

#[tokio::test]
async fn a_registered_projection_folds_a_stream_as_of_any_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LogStore::open(dir.path(), LogOptions::default()).unwrap());
    let app = router(store.clone(), ServerConfig::default())
        .await
        .unwrap();
    // Version 1 of ItemAdded says `cost`; version 2 says `price`, upcast by jq.
    let events = json!([
        {"type": "ItemAdded", "data": {"sku": "a", "cost": 30}},
        {"type": "CartViewed", "data": {}},
        {"type": "ItemAdded", "version": 2, "data": {"sku": "b", "price": 12}},
        {"type": "ItemRemoved", "data": {"sku": "a", "price": 30}}
    ]);
    let (status, body) = send(
        &app,
        "PUT",
        "/schemas/ItemAdded/2",
        Some(json!({"upcast": "{sku, price: .cost}"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = send(&app, "POST", "/streams/cart-1", Some(events)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, body) = send(&app, "PUT", "/projections/cart-total", Some(cart_total())).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (StatusCode::CREATED, Some("created")),
        "{body}"
    );
    let (status, body) = send(&app, "PUT", "/projections/cart-total", Some(cart_total())).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (StatusCode::OK, Some("unchanged")),
        "{body}"
    );

    let state = async |query: &str| {
        let (status, body) =
            send(&app, "GET", &format!("/streams/cart-1/state?{query}"), None).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        body
    };
    for (revision, expected) in [
        (0, json!({"total": 30, "items": ["a"]})),
        (1, json!({"total": 30, "items": ["a"]})),
        (2, json!({"total": 42, "items": ["a", "b"]})),
        (3, json!({"total": 12, "items": ["b"]})),
    ] {
        let body = state(&format!("projection=cart-total&revision={revision}")).await;
        assert_eq!(body, json!({"state": expected, "revision": revision}));
    }
    assert_eq!(
        state("projection=cart-total").await,
        json!({"state": {"total": 12, "items": ["b"]}, "revision": 3}),
        "without a revision, the state after the last event"
    );

    for (uri, status, code) in [
        (
            "/streams/cart-1/state?projection=nope",
            StatusCode::NOT_FOUND,
            "projection_not_found",
        ),
        (
            "/streams/cart-9/state?projection=cart-total",
            StatusCode::NOT_FOUND,
            "stream_not_found",
        ),
        (
            "/streams/cart-1/state?projection=cart-total&revision=4",
            StatusCode::NOT_FOUND,
            "event_not_found",
        ),
        (
            "/streams/cart-1/state",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/streams/$ce-cart/state?projection=cart-total",
            StatusCode::BAD_REQUEST,
            "invalid_stream_name",
        ),
    ] {
        let (answered, body) = send(&app, "GET", uri, None).await;
        assert_eq!(
            (answered, body["error"].as_str()),
            (status, Some(code)),
            "{uri}: {body}"
        );
    }

    // A handler that does not compile is refused, and nothing is kept.
    let (status, body) = send(
        &app,
        "PUT",
        "/projections/broken",
        Some(json!({"init": 0, "handlers": {"ItemAdded": ".state +"}})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_projection")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("ItemAdded"),
        "{body}"
    );
    let (_, listed) = send(&app, "GET", "/projections", None).await;
    let names: Vec<&str> = listed["projections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cart-total"]);

    // Handlers that fail on an event, or give other than one state, name the event.
    for (name, handler, needle) in [
        ("raises", r#"error("no price")"#, "no price"),
        ("splits", ".state, .state", "2 values"),
        ("drops", "empty", "0 values"),
        ("loops", "def f: f; f", "jq_steps_max"),
    ] {
        let definition = json!({"init": 0, "handlers": {"ItemRemoved": handler}});
        let (status, body) = send(
            &app,
            "PUT",
            &format!("/projections/{name}"),
            Some(definition),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        let (status, body) = send(
            &app,
            "GET",
            &format!("/streams/cart-1/state?projection={name}"),
            None,
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("projection_failed")),
            "{name}: {body}"
        );
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("3@cart-1") && message.contains(needle),
            "{name}: {message}"
        );
        // Before the failing event the fold still works.
        let (status, body) = send(
            &app,
            "GET",
            &format!("/streams/cart-1/state?projection={name}&revision=2"),
            None,
        )
        .await;
        assert_eq!(
            (status, &body),
            (StatusCode::OK, &json!({"state": 0, "revision": 2}))
        );
    }

    // A new definition replaces the old one; a server started again on the store
    // still has it.
    let mut counting = cart_total();
    counting["init"] = json!({"total": 100, "items": []});
    let (status, body) = send(
        &app,
        "PUT",
        "/projections/cart-total",
        Some(counting.clone()),
    )
    .await;
    assert_eq!(
        (status, body["result"].as_str()),
        (StatusCode::OK, Some("replaced")),
        "{body}"
    );
    drop(app);
    let again = router(store, ServerConfig::default()).await.unwrap();
    let (status, body) = send(&again, "GET", "/projections/cart-total", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["init"], &body["handlers"]),
        (&counting["init"], &counting["handlers"])
    );
    let (_, body) = send(
        &again,
        "GET",
        "/streams/cart-1/state?projection=cart-total",
        None,
    )
    .await;
    assert_eq!(body["state"]["total"], 112);
}
