//! The routes of the HTTP API (details in `docs/http-api.md`), one module per part of
//! it. [`router`] only wires handlers to paths: it has no side effects, the state it
//! serves is built first ([`AppState::open`](crate::state::AppState::open)).

mod admin;
mod all;
mod console;
mod feeds;
pub(crate) mod groups;
mod ops;
mod projections;
mod request;
mod schemas;
pub(crate) mod streams;
mod subscribe;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use eventfold_wire::ErrorCode;

pub use ops::OPENAPI;

use crate::error::ApiError;
use crate::state::AppState;

/// The router of the whole API over `state`.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let body_bytes_max = state.config.body_bytes_max;
    Router::new()
        .route("/streams", get(admin::list_streams))
        .route(
            "/streams/{stream}",
            get(streams::read_stream)
                .post(streams::append)
                .delete(admin::delete_stream),
        )
        .route("/streams/{stream}/head", get(admin::stream_head))
        .route("/streams/{stream}/state", get(projections::state_of))
        .route(
            "/streams/{stream}/metadata",
            get(admin::read_metadata).put(admin::write_metadata),
        )
        .route("/transactions", post(streams::append_transaction))
        .route("/streams/{stream}/{revision}", get(streams::read_event))
        .route("/all", get(all::read_all))
        .route("/feed/all", get(feeds::all_head))
        .route("/feed/all/pages/{page}", get(feeds::all_page))
        .route("/feed/streams/{stream}", get(feeds::stream_head))
        .route(
            "/feed/streams/{stream}/pages/{page}",
            get(feeds::stream_page),
        )
        .route("/subscribe/all", get(subscribe::subscribe_all))
        .route(
            "/subscribe/streams/{stream}",
            get(subscribe::subscribe_stream),
        )
        .route("/schemas", get(schemas::list_types))
        .route("/schemas/{type}", get(schemas::list_versions))
        .route(
            "/schemas/{type}/{version}",
            get(schemas::read_version).put(schemas::register),
        )
        .route("/projections", get(projections::list))
        .route(
            "/projections/{name}",
            get(projections::read).put(projections::register),
        )
        .route(
            "/subscriptions/{group}",
            get(groups::status).put(groups::create),
        )
        .route("/subscriptions/{group}/next", get(groups::next))
        .route("/subscriptions/{group}/ack", post(groups::ack))
        .route("/subscriptions/{group}/nack", post(groups::nack))
        .route("/subscriptions/{group}/parked", get(groups::parked))
        .route(
            "/subscriptions/{group}/parked/replay",
            post(groups::replay_parked),
        )
        .route("/admin/scavenge", post(admin::scavenge))
        .route("/admin/archive", post(admin::archive))
        .route("/admin/surgery", post(admin::surgery))
        .route("/subjects/{subject}", delete(admin::forget_subject))
        .route("/", get(console::root))
        .route("/console", get(console::index))
        .route("/console/{asset}", get(console::file))
        .route("/openapi.json", get(ops::openapi))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .layer(axum::middleware::from_fn(log_request))
        .layer(tower::util::option_layer(cors(&state.config.cors_origins)))
        .with_state(state)
}

/// The CORS answers for browser clients of the configured origins: outermost, so a
/// preflight `OPTIONS` is answered before authentication. No origins: no CORS
/// headers at all (`option_layer` of `None` lets requests through untouched).
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Checked by `ServerConfig::validate`: every origin is a header value.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                header::IF_NONE_MATCH,
                HeaderName::from_static("expected-version"),
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([header::LOCATION, header::ETAG])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Any path no route matches.
async fn route_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::RouteNotFound,
        format!("no route for {}; see /openapi.json for the API", uri.path()),
    )
}

/// A route asked with a method it does not answer (axum adds the `Allow` header).
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} does not answer {method}; see /openapi.json for the API",
            uri.path()
        ),
    )
}

/// One structured log event per request (target `eventfold_server::request`, level
/// info; 5xx answers at warn): method, path, status and duration.
async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let micros = started.elapsed().as_micros() as u64;
    if response.status().is_server_error() {
        tracing::warn!(target: "eventfold_server::request", %method, %path, status, micros, "request failed");
    } else {
        tracing::info!(target: "eventfold_server::request", %method, %path, status, micros, "request");
    }
    response
}
