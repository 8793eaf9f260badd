//! Reading the global log: `GET /all`, and the filter `$all` subscriptions share.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use eventfold_core::{AllFilter, Position, ReadAll};
use eventfold_wire::EventsPage;
use serde::Deserialize;

use super::request::{Shared, limit, target};
use crate::auth::{Access, Principal};
use crate::error::ApiError;

/// The query of `GET /all` and `GET /subscribe/all`.
#[derive(Debug, Deserialize)]
pub(super) struct AllQuery {
    pub(super) from: Option<u64>,
    limit: Option<u64>,
    stream_prefix: Option<String>,
    category: Option<String>,
    /// Event types, comma separated.
    #[serde(rename = "type")]
    event_types: Option<String>,
    /// The versions the reader understands (`Type:N,...`, `newest`, `stored`).
    pub(super) versions: Option<String>,
}

impl AllQuery {
    /// The events the reader asked for.
    pub(super) fn filter(&self) -> AllFilter {
        AllFilter {
            stream_prefix: self.stream_prefix.clone(),
            category: self.category.clone(),
            event_types: self
                .event_types
                .as_deref()
                .map(|t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// `GET /all`: a page of the global log (see [`EventsPage`]).
pub(super) async fn read_all(
    State(state): Shared,
    who: Principal,
    query: Result<Query<AllQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::All).await?;
    let Query(query) = query?;
    let read = ReadAll::from(
        Position(query.from.unwrap_or(0)),
        limit(&state.config, query.limit),
    )
    .filtered(query.filter());
    let target = target(query.versions.as_deref())?;
    let page = eventfold_subscription::page::read_all_page(
        state.store.as_ref(),
        read,
        state.config.read_bytes_max,
    )
    .await?;
    state.metrics.reads.fetch_add(1, Ordering::Relaxed);
    Ok(Json(EventsPage {
        events: state.schemas.convert(page.events, &target).await?,
        next: Some(page.next.get()),
        end_of_stream: None,
        end_of_log: Some(page.end_of_log),
    }))
}
