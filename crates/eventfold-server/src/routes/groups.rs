//! Persistent subscriptions (consumer groups) over HTTP: competing consumers pull
//! deliveries and ack or nack them; the group lives in the store
//! (`eventfold_subscription::PersistentGroup`).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bytes::Bytes;
use eventfold_core::Error;
use eventfold_subscription::{GroupSettings, Nack, PersistentGroup};
use eventfold_wire::{Deliveries, Delivery, ErrorCode, NackBody, Positions, Replay};
use serde::Deserialize;

use super::request::{Shared, json_object};
use crate::auth::{Access, Principal};
use crate::error::ApiError;
use crate::state::{AppState, Group};

/// Longest a `next` request waits for a first delivery, in ms.
const WAIT_MS_MAX: u64 = 60_000;
/// Most deliveries one `next` request returns.
const COUNT_MAX: usize = 1_000;

/// The status of every group this node serves, for `/metrics`.
pub(crate) fn statuses(state: &AppState) -> Vec<eventfold_subscription::GroupStatus> {
    let mut statuses: Vec<_> = lock(state).values().map(|g| g.status()).collect();
    statuses.sort_by(|a, b| a.group.cmp(&b.group));
    statuses
}

/// The group, opened from the store on first use on this node.
async fn group(state: &AppState, name: &str) -> Result<Group, ApiError> {
    open_group(state, name).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::GroupNotFound,
            format!("no consumer group '{name}': create it with PUT /subscriptions/{name}"),
        )
    })
}

/// The group if it exists: served by this node already, or opened from the store.
pub(crate) async fn open_group(state: &AppState, name: &str) -> Result<Option<Group>, ApiError> {
    if let Some(group) = lock(state).get(name) {
        return Ok(Some(group.clone()));
    }
    let opened = match PersistentGroup::open(state.store.clone(), name).await {
        Ok(group) => Arc::new(group),
        Err(Error::StreamNotFound { .. }) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    Ok(Some(keep(state, name, opened)))
}

/// Two requests may open or create a group at once; the first one kept is used.
pub(crate) fn keep(state: &AppState, name: &str, group: Group) -> Group {
    lock(state).entry(name.to_string()).or_insert(group).clone()
}

pub(crate) fn lock(
    state: &AppState,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Group>> {
    state
        .groups
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `PUT /subscriptions/{group}`: creates the group (or answers the settings it has).
pub(super) async fn create(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Groups).await?;
    let Path(name) = path?;
    let settings: GroupSettings = json_object(
        &body?,
        "a JSON object of group settings (start_after, stream_prefix, category, event_types, \
         retries_max, ack_timeout_ms, in_flight_max, checkpoint_every_events)",
    )?;
    let (group, status) = match open_group(&state, &name).await? {
        Some(group) => (group, StatusCode::OK),
        None => {
            let created = PersistentGroup::create(state.store.clone(), &name, settings).await?;
            (keep(&state, &name, Arc::new(created)), StatusCode::CREATED)
        }
    };
    Ok((
        status,
        Json(serde_json::json!({"group": name, "settings": group.settings()})),
    ))
}

/// `GET /subscriptions/{group}`: checkpoint, deliveries in flight, retries, parked.
pub(super) async fn status(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Groups).await?;
    let Path(name) = path?;
    let group = group(&state, &name).await?;
    Ok(Json(serde_json::json!({
        "status": group.status(),
        "settings": group.settings(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NextQuery {
    count: Option<usize>,
    wait_ms: Option<u64>,
}

/// `GET /subscriptions/{group}/next?count=&wait_ms=`: waits up to `wait_ms` for a
/// first delivery, then takes what is ready, up to `count` (1 to 1,000).
pub(super) async fn next(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<NextQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Groups).await?;
    let Path(name) = path?;
    let Query(query) = query?;
    let count = query.count.unwrap_or(1);
    if !(1..=COUNT_MAX).contains(&count) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("count is {count}, outside the allowed range 1 to {COUNT_MAX}"),
        ));
    }
    let group = group(&state, &name).await?;
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(10_000).min(WAIT_MS_MAX));
    let mut deliveries: Vec<Delivery> = Vec::new();
    if let Ok(first) = tokio::time::timeout(wait, group.next()).await {
        let first = first?;
        deliveries.push(Delivery {
            event: first.event,
            attempt: first.attempt,
        });
    }
    while !deliveries.is_empty() && deliveries.len() < count {
        // Only what is ready now: a delivery taken but not sent would wait for its
        // ack timeout, so the poll is given no time to be cancelled half-way.
        match tokio::time::timeout(Duration::ZERO, group.next()).await {
            Ok(Ok(delivery)) => {
                let position = delivery.event.position;
                if let Some(earlier) = deliveries.iter_mut().find(|d| d.event.position == position)
                {
                    // Its ack timed out while this answer was gathered: the answer
                    // already holds it, and one ack answers both deliveries.
                    earlier.attempt = delivery.attempt;
                    break;
                }
                deliveries.push(Delivery {
                    event: delivery.event,
                    attempt: delivery.attempt,
                });
            }
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => break,
        }
    }
    Ok(Json(Deliveries { deliveries }))
}

/// `POST /subscriptions/{group}/ack` with `{"positions": [...]}`.
pub(super) async fn ack(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Groups).await?;
    let Path(name) = path?;
    let body: Positions = json_object(&body?, r#"{"positions": [<position>, ...]}"#)?;
    let group = group(&state, &name).await?;
    for position in body.positions {
        group.ack(position).await.map_err(unknown)?;
    }
    Ok(Json(serde_json::json!({"status": group.status()})))
}

/// `POST /subscriptions/{group}/nack` with `{"positions", "action"?: "retry" | "park" |
/// "skip", "reason"?}`.
pub(super) async fn nack(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Groups).await?;
    let Path(name) = path?;
    let body: NackBody = json_object(
        &body?,
        r#"{"positions": [...], "action"?: "retry" | "park" | "skip", "reason"?: "..."}"#,
    )?;
    let group = group(&state, &name).await?;
    let reason = body.reason.unwrap_or_default();
    for position in body.positions {
        group
            .nack(position, body.action.unwrap_or(Nack::Retry), &reason)
            .await
            .map_err(unknown)?;
    }
    Ok(Json(serde_json::json!({"status": group.status()})))
}

/// An ack or nack of nothing in flight is the client's mistake, not the store's.
fn unknown(error: Error) -> ApiError {
    match error {
        Error::InvalidEvent { reason } => ApiError::new(ErrorCode::NotInFlight, reason),
        other => other.into(),
    }
}

/// `GET /subscriptions/{group}/parked`: the parked events, with their reasons.
pub(super) async fn parked(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Groups).await?;
    let Path(name) = path?;
    let group = group(&state, &name).await?;
    Ok(Json(serde_json::json!({"parked": group.parked().await?})))
}

/// `POST /subscriptions/{group}/parked/replay` with `{"positions": [...]}` (all parked
/// events when the body is empty): delivers them again.
pub(super) async fn replay_parked(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Groups).await?;
    let Path(name) = path?;
    let body: Replay = json_object(&body?, r#"{"positions"?: [...]}"#)?;
    let group = group(&state, &name).await?;
    let positions = match body.positions {
        Some(positions) => positions,
        None => group.parked().await?.iter().map(|p| p.position).collect(),
    };
    let queued = group.replay_parked(&positions).await?;
    Ok(Json(serde_json::json!({"queued": queued})))
}
