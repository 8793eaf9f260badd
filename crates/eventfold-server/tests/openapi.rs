//! The OpenAPI document served at `/openapi.json` describes the router exactly: every
//! route in the code is in the document, and every operation in the document is
//! answered by a handler (not by the router's fallback).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use eventfold_core::InMemoryStore;
use eventfold_server::{OPENAPI, ServerConfig, router};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

fn document() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
}

#[test]
fn every_route_of_the_router_is_documented() {
    let doc = document();
    let paths = doc["paths"].as_object().expect("paths");
    let source = include_str!("../src/routes.rs");
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

#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let doc = document();
    let app = router(Arc::new(InMemoryStore::new()), ServerConfig::default())
        .await
        .expect("router");
    for (path, operations) in doc["paths"].as_object().unwrap() {
        let uri = path
            .replace("{stream}", "order-1")
            .replace("{revision}", "0")
            .replace("{group}", "g1")
            .replace("{type}", "OrderPlaced")
            .replace("{version}", "1")
            // A group's `next` would wait for deliveries.
            .replace("/next", "/next?wait_ms=0");
        for method in operations.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let request = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            // SSE answers stream forever; their status is enough.
            if path.starts_with("/subscribe/") {
                assert_eq!(status, StatusCode::OK, "{method} {uri}");
                continue;
            }
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            assert!(
                !(status == StatusCode::NOT_FOUND && body.is_empty()),
                "{method} {uri} fell through to the router's fallback"
            );
        }
    }
}
