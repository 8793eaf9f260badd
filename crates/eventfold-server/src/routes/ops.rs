//! What operators and tools read: `GET /health`, `GET /metrics` and
//! `GET /openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use eventfold_core::Position;
use eventfold_wire::Health;

use super::groups;
use super::request::Shared;
use crate::auth::{Access, Principal};
use crate::error::ApiError;

/// The OpenAPI 3.1 document of this API (checked against the router and the wire
/// types by tests).
pub const OPENAPI: &str = include_str!("../openapi.json");

pub(super) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// `GET /health`: `ok` with the log's head position, or the store's error.
pub(super) async fn health(State(state): Shared) -> Result<impl IntoResponse, ApiError> {
    let head = state.store.head_position().await?;
    Ok(Json(Health::ok(head)))
}

/// Metrics name consumer groups and show the server's load: they need the `metrics`
/// access (roles `[acl] metrics`, `admin` always).
pub(super) async fn metrics(
    State(state): Shared,
    who: Principal,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Metrics).await?;
    let head = state.store.head_position().await?.map(Position::get);
    let groups = groups::statuses(&state);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state
            .metrics
            .render(head, &state.store.storage_metrics(), &groups),
    ))
}
