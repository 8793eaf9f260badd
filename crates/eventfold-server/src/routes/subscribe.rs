//! Live subscriptions as Server-Sent Events: `GET /subscribe/all` and
//! `GET /subscribe/streams/{stream}` (messages as `eventfold_wire::subscription` says).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use eventfold_core::{EventStore, Position, RecordedEvent, Revision};
use eventfold_schema::Negotiated;
use eventfold_subscription::Subscription;
use eventfold_wire::ErrorCode;
use eventfold_wire::SubscriptionMessage;
use eventfold_wire::subscription::ERROR_EVENT;
use futures_util::stream::{self, Stream};
use serde::Deserialize;

use super::all::AllQuery;
use super::request::{Shared, target};
use crate::auth::{Access, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// Where a subscription resumes: after the `Last-Event-ID` a reconnecting SSE client
/// saw, else just before `from` (inclusive); `None` is the start.
fn resume_after(headers: &HeaderMap, from: Option<u64>) -> Result<Option<u64>, ApiError> {
    let seen = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidLastEventId,
                        "Last-Event-ID must be a number",
                    )
                })
        })
        .transpose()?;
    Ok(seen.or_else(|| from.and_then(|from| from.checked_sub(1))))
}

/// An open subscription as `/metrics` sees it (count and lag) while it lives.
struct Open {
    state: Arc<AppState>,
    id: u64,
    sent: Arc<std::sync::atomic::AtomicU64>,
}

impl Open {
    fn new(state: Arc<AppState>) -> Self {
        let (id, sent) = state.metrics.subscribe();
        Open { state, id, sent }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.state.metrics.unsubscribe(self.id);
    }
}

/// A wire message as an SSE event.
fn sse_event(message: SubscriptionMessage) -> Event {
    match message {
        SubscriptionMessage::Event { id, data } => Event::default().id(id.to_string()).data(data),
        SubscriptionMessage::Error { message } => Event::default().event(ERROR_EVENT).data(message),
    }
}

/// Turns a subscription into SSE messages, `id:` from `id_of`. A failure is sent as an
/// `error` event, and then the stream ends (the client reconnects with Last-Event-ID).
/// The stream also ends when the server shuts down, so that shutting down does not wait
/// for subscribers to leave.
fn sse_stream(
    subscription: Negotiated<Arc<dyn EventStore>, dyn EventStore>,
    open: Open,
    id_of: fn(&RecordedEvent) -> u64,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut closing = open.state.closing.subscribe();
    let closed = async move {
        let _ = closing.wait_for(|closing| *closing).await;
    };
    let messages = stream::unfold(Some((subscription, open)), move |state| async move {
        let (mut subscription, open) = state?;
        match subscription.next().await {
            Ok(event) => {
                open.sent.store(event.position.get(), Ordering::Relaxed);
                let message = SubscriptionMessage::event(id_of(&event), &event);
                Some((Ok(sse_event(message)), Some((subscription, open))))
            }
            Err(error) => {
                let message = SubscriptionMessage::error(&error);
                Some((Ok(sse_event(message)), None))
            }
        }
    });
    futures_util::StreamExt::take_until(messages, closed)
}

/// `GET /subscribe/all`: `$all` from `from` (or after `Last-Event-ID`), then live.
pub(super) async fn subscribe_all(
    State(state): Shared,
    who: Principal,
    query: Result<Query<AllQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::All).await?;
    let Query(query) = query?;
    let after = resume_after(&headers, query.from)?.map(Position);
    let target = target(query.versions.as_deref())?;
    let subscription = Negotiated::new(
        Subscription::to_all(state.store.clone(), after, query.filter())
            .page_bytes_max(state.config.read_bytes_max),
        state.schemas.clone(),
        target,
    );
    let stream = sse_stream(subscription, Open::new(state.clone()), |e| e.position.get());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Debug, Deserialize)]
pub(super) struct SubscribeStreamQuery {
    from: Option<u64>,
    /// The versions the subscriber understands, declared once for the whole stream.
    versions: Option<String>,
}

/// `GET /subscribe/streams/{stream}`: one stream from `from`, then live.
pub(super) async fn subscribe_stream(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<SubscribeStreamQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let Path(stream) = path?;
    state.authorize(&who, Access::Read(&stream)).await?;
    let Query(query) = query?;
    let after = resume_after(&headers, query.from)?.map(Revision);
    let target = target(query.versions.as_deref())?;
    // An index stream is followed through `$all`, so its ids are positions.
    let id_of: fn(&RecordedEvent) -> u64 = match eventfold_core::IndexStream::parse(&stream) {
        Some(_) => |e| e.position.get(),
        None => |e| e.revision.get(),
    };
    let subscription = Negotiated::new(
        Subscription::to_stream(state.store.clone(), stream, after)
            .page_bytes_max(state.config.read_bytes_max),
        state.schemas.clone(),
        target,
    );
    let stream = sse_stream(subscription, Open::new(state.clone()), id_of);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
