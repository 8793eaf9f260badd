//! CORS: only the configured origins get the headers that let a browser page of
//! another origin call the API; a preflight is answered before authentication (it
//! carries no token); without origins configured no CORS header is sent at all.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use eventfold_core::InMemoryStore;
use eventfold_server::{AuthConfig, ServerConfig, router};
use tower::ServiceExt;

const CONSOLE: &str = "https://console.example.com";

async fn app(cors_origins: &[&str]) -> axum::Router {
    let auth = AuthConfig::from_toml(
        "[[users]]\nname = \"ops\"\ntoken = \"a-long-random-secret-for-ops\"\nroles = [\"admin\"]\n",
    )
    .unwrap();
    let config = ServerConfig {
        auth: Some(auth),
        cors_origins: cors_origins.iter().map(|o| o.to_string()).collect(),
        ..ServerConfig::default()
    };
    router(Arc::new(InMemoryStore::new()), config)
        .await
        .unwrap()
}

fn preflight(origin: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/streams/order-1")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type,expected-version",
        )
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_configured_origin_passes_the_preflight_without_a_token() {
    let app = app(&[CONSOLE]).await;
    let answer = app.clone().oneshot(preflight(CONSOLE)).await.unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    let headers = answer.headers();
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], CONSOLE);
    let methods = headers[header::ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .unwrap()
        .to_string();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("expected-version"),
        "{allowed}"
    );

    // The real request still needs its token, and its answer carries the header.
    let request = |token: Option<&str>| {
        let mut builder = Request::builder()
            .uri("/streams/order-1")
            .header(header::ORIGIN, CONSOLE);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        builder.body(Body::empty()).unwrap()
    };
    let refused = app.clone().oneshot(request(None)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let answered = app
        .oneshot(request(Some("a-long-random-secret-for-ops")))
        .await
        .unwrap();
    assert_eq!(
        answered.status(),
        StatusCode::NOT_FOUND,
        "no such stream yet"
    );
    assert_eq!(
        answered.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        CONSOLE
    );
}

#[tokio::test]
async fn another_origin_gets_no_cors_headers() {
    let answer = app(&[CONSOLE])
        .await
        .oneshot(preflight("https://evil.example"))
        .await
        .unwrap();
    assert!(
        !answer
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        "{:?}",
        answer.headers()
    );
}

#[tokio::test]
async fn without_origins_no_cors_header_is_sent() {
    let answer = app(&[]).await.oneshot(preflight(CONSOLE)).await.unwrap();
    assert!(
        !answer
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );
    // The preflight is then an ordinary request, which the API does not answer.
    assert!(answer.status().is_client_error(), "{}", answer.status());
}

#[tokio::test]
async fn any_origin_with_a_star_and_bad_origins_are_refused() {
    let answer = app(&["*"])
        .await
        .oneshot(preflight("https://anyone.example"))
        .await
        .unwrap();
    assert_eq!(answer.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    for bad in ["console.example.com", "https://console.example.com/"] {
        let config = ServerConfig {
            cors_origins: vec![bad.to_string()],
            ..ServerConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains(bad), "{error}");
    }
}
