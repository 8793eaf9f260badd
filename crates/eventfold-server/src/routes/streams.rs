//! Appending and reading streams: `POST /streams/{stream}`, `POST /transactions`,
//! `GET /streams/{stream}` and `GET /streams/{stream}/{revision}`.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use eventfold_core::{AppendResult, Direction, ReadStream, RecordedEvent, Revision, StreamWrite};
use eventfold_schema::Target;
use eventfold_wire::{
    ErrorCode, EventsPage, NewEvent, NewEvents, Recorded, TransactionResults, TransactionWrite,
};
use serde::Deserialize;

use super::request::{Shared, expected_version, json, limit, target};
use crate::auth::{Access, Principal};
use crate::error::ApiError;
use crate::state::AppState;

pub(super) async fn append(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AppendResult>), ApiError> {
    let Path(stream) = path?;
    state.authorize(&who, Access::Write(&stream)).await?;
    let body = body?;
    let expected = expected_version(&headers)?;
    let events: NewEvents = json(
        &body,
        r#"a JSON array of events {"type", "data", "id"?, "version"?, "metadata"?}"#,
    )?;
    let events = events
        .into_iter()
        .map(NewEvent::into_event_data)
        .collect::<Vec<_>>();
    let mut results = store_writes(
        &state,
        &who,
        vec![StreamWrite::new(stream, expected, events)],
    )
    .await?;
    Ok((StatusCode::CREATED, Json(results.remove(0))))
}

/// Appends through the store with the server's limits and metrics: the one path both
/// `POST /streams/{stream}` and `POST /transactions` take.
async fn store_writes(
    state: &AppState,
    who: &Principal,
    writes: Vec<StreamWrite>,
) -> Result<Vec<AppendResult>, ApiError> {
    let writes = check_writes(state, who, writes).await?;
    match append_checked(state, writes).await {
        Ok(results) => Ok(results),
        // Writing to a hard-deleted stream: gone for good.
        Err(error @ eventfold_core::Error::StreamDeleted { .. }) => {
            Err(ApiError::from(error).with_status_code(StatusCode::GONE))
        }
        // The store's reason may name another stream holding one of the ids, and
        // where: only an administrator (who may read every stream) sees it.
        Err(eventfold_core::Error::IdempotencyConflict { stream, .. }) if !who.is_admin() => {
            Err(ApiError::idempotency_conflict(&stream))
        }
        Err(error) => Err(error.into()),
    }
}

/// What the server checks of an append before the store sees it, whichever protocol
/// brought it (HTTP here, gRPC in `crate::grpc`): client stream names, the event count
/// limit, the rights an event pointing at another needs, the schemas; personal values
/// a schema declares are marked for the privacy layer to seal.
pub(crate) async fn check_writes(
    state: &AppState,
    who: &Principal,
    mut writes: Vec<StreamWrite>,
) -> Result<Vec<StreamWrite>, ApiError> {
    for write in &writes {
        // System streams (`$schemas`, ...) are written by eventfold itself, never by
        // a client.
        eventfold_core::validate_stream_name(&write.stream)?;
    }
    let count: usize = writes.iter().map(|w| w.events.len()).sum();
    if count > state.config.append_events_max {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "{count} events in one append, more than the limit of {}",
                state.config.append_events_max
            ),
        ));
    }
    // An event that points at another (a link, a compensation) reaches into the
    // stream it names: a link needs the right to read it, a compensation the right
    // to write it, as if the writer read or wrote it there.
    for event in writes.iter().flat_map(|w| &w.events) {
        if let Some(at) = eventfold_core::referenced_event(&event.event_type, &event.data)? {
            let access = if event.event_type == eventfold_core::LINK_EVENT_TYPE {
                Access::Read(&at.stream)
            } else {
                Access::Write(&at.stream)
            };
            state.authorize(who, access).await?;
        }
    }
    let registry = state.schemas.registry();
    for event in writes.iter_mut().flat_map(|w| &mut w.events) {
        registry.validate(&event.event_type, event.version, &event.data)?;
        // Personal values a schema declares are marked here, for the store's privacy
        // layer to seal.
        registry.mark_personal(event)?;
    }
    Ok(writes)
}

/// Appends writes that passed [`check_writes`], counting them in the metrics.
pub(crate) async fn append_checked(
    state: &AppState,
    writes: Vec<StreamWrite>,
) -> eventfold_core::Result<Vec<AppendResult>> {
    let count: usize = writes.iter().map(|w| w.events.len()).sum();
    let started = Instant::now();
    let metrics = &state.metrics;
    let appended = state.store.append_multi(writes).await;
    match &appended {
        Ok(_) => metrics.appended(count as u64, started.elapsed()),
        Err(_) => {
            metrics.append_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    appended
}

/// Appends to several streams atomically, each with its own expected version.
pub(super) async fn append_transaction(
    State(state): Shared,
    who: Principal,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<TransactionResults>), ApiError> {
    let body = body?;
    let writes: Vec<TransactionWrite> = json(
        &body,
        r#"a JSON array of {"stream", "expected"?, "events"?}"#,
    )?;
    let mut stream_writes = Vec::with_capacity(writes.len());
    for write in writes {
        let expected = write.expected_version()?;
        let events = write
            .events
            .into_iter()
            .map(NewEvent::into_event_data)
            .collect();
        let write = StreamWrite::new(write.stream, expected, events);
        // A check writes nothing, but its answer tells the stream's revision.
        let access = if write.is_check() {
            Access::Read(&write.stream)
        } else {
            Access::Write(&write.stream)
        };
        state.authorize(&who, access).await?;
        stream_writes.push(write);
    }
    let results = store_writes(&state, &who, stream_writes).await?;
    Ok((StatusCode::CREATED, Json(TransactionResults { results })))
}

#[derive(Debug, Deserialize)]
pub(super) struct StreamQuery {
    from: Option<u64>,
    limit: Option<u64>,
    direction: Option<String>,
    /// The versions the reader understands (`Type:N,...`, `newest`, `stored`).
    versions: Option<String>,
    /// `false`: links as written instead of the events they point at.
    resolve_links: Option<bool>,
}

/// `GET /streams/{stream}`: a page of events (see [`EventsPage`]).
pub(super) async fn read_stream(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(stream) = path?;
    state.authorize(&who, Access::Read(&stream)).await?;
    let Query(query) = query?;
    let mut options = match query.direction.as_deref() {
        None | Some("forward") => ReadStream::forward(),
        Some("backward") => ReadStream::backward(),
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("direction must be forward or backward, not '{other}'"),
            ));
        }
    };
    options = options.limit(limit(&state.config, query.limit));
    if let Some(from) = query.from {
        options = options.from(Revision(from));
    }
    if query.resolve_links == Some(false) {
        options = options.links_as_written();
    }
    let target = target(query.versions.as_deref())?;
    let page = eventfold_subscription::page::read_stream_page(
        state.store.as_ref(),
        &stream,
        options,
        state.config.read_bytes_max,
    )
    .await?;
    // A link stands for its original: the reader must be allowed to read its stream
    // too (the rights may have changed since the link was written).
    for event in &page.events {
        if let Some(original) = linked_stream(event) {
            state.authorize(&who, Access::Read(&original)).await?;
        }
    }
    state.metrics.reads.fetch_add(1, Ordering::Relaxed);
    // Paging follows the stored events, whatever conversion drops or splits; index
    // streams page by global position.
    let place = |e: &RecordedEvent| match eventfold_core::IndexStream::parse(&stream) {
        Some(_) => e.position.get(),
        None => e.revision.get(),
    };
    let next = match options.direction {
        Direction::Forward => page.events.last().map(|e| place(e) + 1),
        Direction::Backward => page.events.last().and_then(|e| place(e).checked_sub(1)),
    };
    let events = state.schemas.convert(page.events, &target).await?;
    Ok(Json(EventsPage {
        events,
        next,
        end_of_stream: Some(page.end_of_stream),
        end_of_log: None,
    }))
}

/// The stream of the original a read returned in place of a link, if `event` is one.
pub(crate) fn linked_stream(event: &RecordedEvent) -> Option<String> {
    let key = eventfold_core::LINKED_EVENT_KEY.as_bytes();
    if !event.metadata.windows(key.len()).any(|w| w == key) {
        return None;
    }
    let metadata: serde_json::Value = serde_json::from_slice(&event.metadata).ok()?;
    let at: eventfold_core::EventRef = metadata
        .get(eventfold_core::LINKED_EVENT_KEY)?
        .as_str()?
        .parse()
        .ok()?;
    Some(at.stream)
}

/// A representation of an event a reader accepts: as stored, or converted to one
/// schema version of its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Stored,
    Version(u32),
}

/// The representations `Accept` asks for, most wanted first: `application/vnd.eventfold.
/// v<N>+json` is version N, `application/json`, `application/*` and `*/*` take the event
/// as stored. Ranked by q-value (a range with `q=0` is refused), a version before plain
/// JSON before a wildcard at the same q. No `Accept`: as stored. An `Accept` naming
/// nothing of these: `406 not_acceptable`.
fn accepted(headers: &HeaderMap) -> Result<Vec<Wanted>, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(vec![Wanted::Stored]);
    };
    let accept = accept
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::InvalidAccept, "Accept is not text"))?;
    // (q in thousandths, specificity, order in the header, what)
    let mut ranked: Vec<(u16, u8, usize, Wanted)> = Vec::new();
    for (order, range) in accept.split(',').enumerate() {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1000u16;
        for parameter in parts {
            let Some((name, value)) = parameter.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("q") {
                q = quality(value.trim()).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidAccept,
                        format!(
                            "'{}' is not a q-value (0 to 1, three decimals at most)",
                            value.trim()
                        ),
                    )
                })?;
            }
        }
        let wanted = if let Some(rest) = media.strip_prefix("application/vnd.eventfold.v") {
            let version = rest
                .strip_suffix("+json")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidAccept,
                        format!("'{media}' names no schema version"),
                    )
                })?;
            (2, Wanted::Version(version))
        } else {
            match media.as_str() {
                "application/json" => (1, Wanted::Stored),
                "application/*" | "*/*" => (0, Wanted::Stored),
                _ => continue,
            }
        };
        if q > 0 {
            ranked.push((q, wanted.0, order, wanted.1));
        }
    }
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    let mut wanted: Vec<Wanted> = Vec::new();
    for (_, _, _, w) in ranked {
        if !wanted.contains(&w) {
            wanted.push(w);
        }
    }
    if wanted.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NotAcceptable,
            format!(
                "Accept '{accept}' takes neither application/json nor \
                 application/vnd.eventfold.v<N>+json, the representations of an event"
            ),
        ));
    }
    Ok(wanted)
}

/// A q-value (RFC 9110, 12.4.2) in thousandths: `0` to `1` with three decimals at most.
fn quality(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// `GET /streams/{stream}/{revision}`: one event, converted to the version `Accept`
/// names.
pub(super) async fn read_event(
    State(state): Shared,
    who: Principal,
    path: Result<Path<(String, u64)>, PathRejection>,
    headers: HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    let Path((stream, revision)) = path?;
    state.authorize(&who, Access::Read(&stream)).await?;
    let wanted = accepted(&headers)?;
    let read = ReadStream::forward().from(Revision(revision)).limit(1);
    let event = state
        .store
        .read_stream(&stream, read)
        .await?
        .into_iter()
        .next()
        .filter(|e| e.revision == Revision(revision))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::EventNotFound,
                format!("stream '{stream}' has no event at revision {revision}"),
            )
        })?;
    state.metrics.reads.fetch_add(1, Ordering::Relaxed);
    // The first representation the event has, in the reader's order: a version no
    // converter reaches falls through to the next one the reader takes.
    let mut refused = None;
    for choice in wanted {
        let version = match choice {
            Wanted::Version(version) if version != event.version => version,
            Wanted::Version(_) | Wanted::Stored => return Ok(negotiated(&event)),
        };
        match converted(&state, &event, version).await {
            Ok(one) => return Ok(negotiated(&one)),
            Err(error) if error.body().error == ErrorCode::NoConversionPath => {
                refused = Some(error);
            }
            // A converter that fails is not a version the event lacks.
            Err(error) => return Err(error),
        }
    }
    Err(refused.unwrap_or_else(|| {
        ApiError::new(
            ErrorCode::NotAcceptable,
            "Accept takes no representation of this event",
        )
    }))
}

/// An event answered as the representation `Accept` chose (which varies with it).
fn negotiated(event: &RecordedEvent) -> axum::response::Response {
    let mut response = Json(Recorded(event)).into_response();
    response
        .headers_mut()
        .insert(header::VARY, header::HeaderValue::from_static("accept"));
    response
}

/// `event` converted to `version` of its type: exactly one event of that version, or
/// `406 no_conversion_path`.
async fn converted(
    state: &AppState,
    event: &RecordedEvent,
    version: u32,
) -> Result<RecordedEvent, ApiError> {
    let (event_type, stored) = (event.event_type.clone(), event.version);
    let target = Target::version(event_type.clone(), version);
    let converted = state.schemas.convert(vec![event.clone()], &target).await?;
    match <[RecordedEvent; 1]>::try_from(converted) {
        Ok([one]) if one.event_type == event_type && one.version == version => Ok(one),
        Ok(_) | Err(_) => Err(ApiError::new(
            ErrorCode::NoConversionPath,
            format!(
                "version {stored} of {event_type} does not convert into exactly one event of \
                 version {version} (a registered converter drops, splits or renames it)"
            ),
        )),
    }
}
