//! The routes of the HTTP API (contract in SPEC, details in `docs/http-api.md`).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use eventfold_core::StreamWrite;
use eventfold_core::{
    AllFilter, AppendResult, Direction, EventData, EventStore, ExpectedVersion, Position, ReadAll,
    ReadStream, RecordedEvent, Revision,
};
use eventfold_schema::{
    CheckOptions, Negotiated, Registered, Registry, SchemaError, SchemaStore, Target,
    VersionDefinition,
};
use eventfold_subscription::Subscription;
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::auth::{Access, Principal};
use crate::error::ApiError;
use crate::{AppState, ServerConfig};

pub(crate) type Shared = State<Arc<AppState>>;

/// How often a server picks up schema registrations made through other nodes.
const SCHEMA_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The router of the whole API over `store`, with the schema registry kept in it.
pub async fn router(
    store: Arc<dyn EventStore>,
    config: ServerConfig,
) -> Result<Router, SchemaError> {
    Ok(app(store, config).await?.0)
}

/// The router and the state its handlers share.
pub(crate) async fn app(
    store: Arc<dyn EventStore>,
    config: ServerConfig,
) -> Result<(Router, Arc<AppState>), SchemaError> {
    let store = crate::with_metadata(store);
    let body_bytes_max = config.body_bytes_max;
    let base = Registry::new().with_jq_limits(config.jq_limits);
    let schemas =
        Arc::new(SchemaStore::open_with(store.clone(), base, CheckOptions::default()).await?);
    spawn_schema_refresh(Arc::downgrade(&schemas));
    let state = Arc::new(AppState {
        store,
        schemas: schemas.clone(),
        config,
        metrics: Default::default(),
        groups: Default::default(),
        closing: tokio::sync::watch::channel(false).0,
    });
    let router = Router::new()
        .route("/streams", get(crate::admin::list_streams))
        .route(
            "/streams/{stream}",
            get(read_stream)
                .post(append)
                .delete(crate::admin::delete_stream),
        )
        .route("/streams/{stream}/head", get(crate::admin::stream_head))
        .route(
            "/streams/{stream}/metadata",
            get(crate::admin::read_metadata).put(crate::admin::write_metadata),
        )
        .route("/transactions", axum::routing::post(append_transaction))
        .route("/streams/{stream}/{revision}", get(read_event))
        .route("/all", get(read_all))
        .route("/subscribe/all", get(subscribe_all))
        .route("/subscribe/streams/{stream}", get(subscribe_stream))
        .route("/schemas", get(list_schema_types))
        .route("/schemas/{type}", get(list_schema_versions))
        .route(
            "/schemas/{type}/{version}",
            get(read_schema_version).put(register_schema),
        )
        .route(
            "/subscriptions/{group}",
            get(crate::groups::status).put(crate::groups::create),
        )
        .route("/subscriptions/{group}/next", get(crate::groups::next))
        .route(
            "/subscriptions/{group}/ack",
            axum::routing::post(crate::groups::ack),
        )
        .route(
            "/subscriptions/{group}/nack",
            axum::routing::post(crate::groups::nack),
        )
        .route("/subscriptions/{group}/parked", get(crate::groups::parked))
        .route(
            "/subscriptions/{group}/parked/replay",
            axum::routing::post(crate::groups::replay_parked),
        )
        .route("/openapi.json", get(openapi))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state.clone());
    Ok((router, state))
}

/// Any path no route matches.
async fn route_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::with_status(
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!("no route for {}; see /openapi.json for the API", uri.path()),
    )
}

/// A route asked with a method it does not answer (axum adds the `Allow` header).
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
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

/// Keeps the registry in step with `$schemas` while the server lives, so that a
/// registration made through another node on the same store is seen here.
fn spawn_schema_refresh(schemas: Weak<SchemaStore<dyn EventStore>>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(SCHEMA_REFRESH_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(schemas) = schemas.upgrade() else {
                return;
            };
            if let Err(error) = schemas.refresh().await {
                tracing::warn!(%error, "cannot refresh the schema registry");
            }
        }
    });
}

/// One event of a `POST /streams/{stream}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEvent {
    id: Option<Uuid>,
    #[serde(rename = "type")]
    event_type: String,
    version: Option<u32>,
    data: Box<RawValue>,
    metadata: Option<Box<RawValue>>,
}

impl NewEvent {
    fn into_event_data(self) -> EventData {
        EventData::from_raw_json(
            self.id,
            self.event_type,
            self.version,
            &self.data,
            self.metadata.as_deref(),
        )
    }
}

/// One stream's part of a `POST /transactions` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransactionWrite {
    stream: String,
    /// `"any"`, `"no_stream"`, `"stream_exists"` or a revision (number or string).
    expected: Option<serde_json::Value>,
    events: Vec<NewEvent>,
}

pub(crate) fn body_error(rejection: BytesRejection) -> ApiError {
    let status = rejection.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else {
        "invalid_body"
    };
    ApiError::with_status(status, code, rejection.body_text())
}

pub(crate) fn path_error(rejection: PathRejection) -> ApiError {
    ApiError::bad_request("invalid_path", rejection.body_text())
}

pub(crate) fn query_error(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", rejection.body_text())
}

/// The `Expected-Version` header; `any` when absent.
pub(crate) fn expected_version(headers: &HeaderMap) -> Result<ExpectedVersion, ApiError> {
    match headers.get("expected-version") {
        None => Ok(ExpectedVersion::Any),
        Some(value) => Ok(value
            .to_str()
            .map_err(|_| {
                ApiError::bad_request("invalid_expected_version", "Expected-Version is not text")
            })?
            .parse()?),
    }
}

async fn append(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AppendResult>), ApiError> {
    let Path(stream) = path.map_err(path_error)?;
    state.authorize(&who, Access::Write(&stream)).await?;
    let body = body.map_err(body_error)?;
    let expected = expected_version(&headers)?;
    let events: Vec<NewEvent> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body must be a JSON array of events {{\"type\", \"data\", \"id\"?, \"version\"?, \"metadata\"?}}: {e}"),
        )
    })?;
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
    for write in &writes {
        // System streams (`$schemas`, ...) are written by eventfold itself, never by
        // a client.
        eventfold_core::validate_stream_name(&write.stream)?;
    }
    let count: usize = writes.iter().map(|w| w.events.len()).sum();
    if count > state.config.append_events_max {
        return Err(ApiError::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "{count} events in one append, more than the limit of {}",
                state.config.append_events_max
            ),
        ));
    }
    let registry = state.schemas.registry();
    for event in writes.iter().flat_map(|w| &w.events) {
        registry.validate(&event.event_type, event.version, &event.data)?;
    }
    let started = Instant::now();
    let metrics = &state.metrics;
    match state.store.append_multi(writes).await {
        Ok(results) => {
            metrics.appended(count as u64, started.elapsed());
            Ok(results)
        }
        Err(error) => {
            metrics.append_errors.fetch_add(1, Ordering::Relaxed);
            match error {
                // Writing to a hard-deleted stream: gone for good.
                eventfold_core::Error::StreamDeleted { .. } => {
                    Err(ApiError::from(error).with_status_code(StatusCode::GONE))
                }
                // The store's reason may name another stream holding one of the ids,
                // and where: only an administrator (who may read every stream) sees it.
                eventfold_core::Error::IdempotencyConflict { stream, .. } if !who.is_admin() => {
                    Err(ApiError::idempotency_conflict(&stream))
                }
                error => Err(error.into()),
            }
        }
    }
}

#[derive(Serialize)]
struct TransactionResults {
    results: Vec<AppendResult>,
}

/// Appends to several streams atomically, each with its own expected version.
async fn append_transaction(
    State(state): Shared,
    who: Principal,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<TransactionResults>), ApiError> {
    let body = body.map_err(body_error)?;
    let writes: Vec<TransactionWrite> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!(
                "the body must be a JSON array of {{\"stream\", \"expected\"?, \"events\"}}: {e}"
            ),
        )
    })?;
    let mut stream_writes = Vec::with_capacity(writes.len());
    for write in writes {
        let expected = match write.expected {
            None => ExpectedVersion::Any,
            Some(serde_json::Value::Number(n)) => n.to_string().parse()?,
            Some(serde_json::Value::String(s)) => s.parse()?,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "invalid_expected_version",
                    format!("expected must be a string or a number, not {other}"),
                ));
            }
        };
        let events = write
            .events
            .into_iter()
            .map(NewEvent::into_event_data)
            .collect();
        state.authorize(&who, Access::Write(&write.stream)).await?;
        stream_writes.push(StreamWrite::new(write.stream, expected, events));
    }
    let results = store_writes(&state, &who, stream_writes).await?;
    Ok((StatusCode::CREATED, Json(TransactionResults { results })))
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    from: Option<u64>,
    limit: Option<u64>,
    direction: Option<String>,
    /// The versions the reader understands (`Type:N,...`, `newest`, `stored`).
    versions: Option<String>,
}

/// The conversion a reader asked for with `versions=`; as stored by default.
fn target(versions: Option<&str>) -> Result<Target, ApiError> {
    versions.map_or(Ok(Target::Stored), |text| {
        Target::parse(text)
            .map_err(|reason| ApiError::bad_request("invalid_query", format!("versions: {reason}")))
    })
}

/// A page of events. A page stops at the event limit or at about
/// `read_bytes_max` bytes, whichever comes first; `next` says where the following one
/// starts, and `end_of_stream` / `end_of_log` whether there is more to read.
#[derive(Serialize)]
struct Events {
    events: Vec<RecordedEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_of_stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_of_log: Option<bool>,
}

/// Events per read when the request names no `limit`.
const READ_EVENTS_DEFAULT: u64 = 100;

pub(crate) fn limit(config: &ServerConfig, asked: Option<u64>) -> u64 {
    asked
        .unwrap_or(READ_EVENTS_DEFAULT)
        .min(config.read_events_max)
}

async fn read_stream(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(stream) = path.map_err(path_error)?;
    state.authorize(&who, Access::Read(&stream)).await?;
    let Query(query) = query.map_err(query_error)?;
    let mut options = match query.direction.as_deref() {
        None | Some("forward") => ReadStream::forward(),
        Some("backward") => ReadStream::backward(),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("direction must be forward or backward, not '{other}'"),
            ));
        }
    };
    options = options.limit(limit(&state.config, query.limit));
    if let Some(from) = query.from {
        options = options.from(Revision(from));
    }
    let target = target(query.versions.as_deref())?;
    let page = eventfold_subscription::page::read_stream_page(
        state.store.as_ref(),
        &stream,
        options,
        state.config.read_bytes_max,
    )
    .await?;
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
    Ok(Json(Events {
        events,
        next,
        end_of_stream: Some(page.end_of_stream),
        end_of_log: None,
    }))
}

/// The schema version asked for with `Accept: application/vnd.eventfold.v<N>+json`.
fn accepted_version(headers: &HeaderMap) -> Result<Option<u32>, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    for media in accept
        .split(',')
        .map(|m| m.split(';').next().unwrap_or("").trim())
    {
        if let Some(version) = media
            .strip_prefix("application/vnd.eventfold.v")
            .and_then(|rest| rest.strip_suffix("+json"))
        {
            return version.parse().map(Some).map_err(|_| {
                ApiError::bad_request(
                    "invalid_accept",
                    format!("'{media}' names no schema version"),
                )
            });
        }
    }
    Ok(None)
}

async fn read_event(
    State(state): Shared,
    who: Principal,
    path: Result<Path<(String, u64)>, PathRejection>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let Path((stream, revision)) = path.map_err(path_error)?;
    state.authorize(&who, Access::Read(&stream)).await?;
    let wanted = accepted_version(&headers)?;
    let read = ReadStream::forward().from(Revision(revision)).limit(1);
    let event = state
        .store
        .read_stream(&stream, read)
        .await?
        .into_iter()
        .next()
        .filter(|e| e.revision == Revision(revision))
        .ok_or_else(|| {
            ApiError::with_status(
                StatusCode::NOT_FOUND,
                "event_not_found",
                format!("stream '{stream}' has no event at revision {revision}"),
            )
        })?;
    state.metrics.reads.fetch_add(1, Ordering::Relaxed);
    let Some(version) = wanted.filter(|v| *v != event.version) else {
        return Ok(Json(event));
    };
    let (event_type, stored) = (event.event_type.clone(), event.version);
    let target = Target::version(event_type.clone(), version);
    let converted = state.schemas.convert(vec![event], &target).await?;
    match <[RecordedEvent; 1]>::try_from(converted) {
        Ok([one]) if one.event_type == event_type && one.version == version => Ok(Json(one)),
        Ok(_) | Err(_) => Err(ApiError::with_status(
            StatusCode::NOT_ACCEPTABLE,
            "no_conversion_path",
            format!(
                "version {stored} of {event_type} does not convert into exactly one event of \
                 version {version} (a registered converter drops, splits or renames it)"
            ),
        )),
    }
}

#[derive(Debug, Deserialize)]
struct AllQuery {
    from: Option<u64>,
    limit: Option<u64>,
    stream_prefix: Option<String>,
    category: Option<String>,
    /// Event types, comma separated.
    #[serde(rename = "type")]
    event_types: Option<String>,
    /// The versions the reader understands (`Type:N,...`, `newest`, `stored`).
    versions: Option<String>,
}

impl AllQuery {
    fn filter(&self) -> AllFilter {
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

async fn read_all(
    State(state): Shared,
    who: Principal,
    query: Result<Query<AllQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::All).await?;
    let Query(query) = query.map_err(query_error)?;
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
    Ok(Json(Events {
        events: state.schemas.convert(page.events, &target).await?,
        next: Some(page.next.get()),
        end_of_stream: None,
        end_of_log: Some(page.end_of_log),
    }))
}

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
                    ApiError::bad_request("invalid_last_event_id", "Last-Event-ID must be a number")
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
                let message = Event::default()
                    .id(id_of(&event).to_string())
                    .data(event.to_json_line());
                Some((Ok(message), Some((subscription, open))))
            }
            Err(error) => {
                let message = Event::default().event("error").data(error.to_string());
                Some((Ok(message), None))
            }
        }
    });
    futures_util::StreamExt::take_until(messages, closed)
}

async fn subscribe_all(
    State(state): Shared,
    who: Principal,
    query: Result<Query<AllQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::All).await?;
    let Query(query) = query.map_err(query_error)?;
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
struct SubscribeStreamQuery {
    from: Option<u64>,
    /// The versions the subscriber understands, declared once for the whole stream.
    versions: Option<String>,
}

async fn subscribe_stream(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<SubscribeStreamQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let Path(stream) = path.map_err(path_error)?;
    state.authorize(&who, Access::Read(&stream)).await?;
    let Query(query) = query.map_err(query_error)?;
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

/// The OpenAPI 3.1 document of this API (checked against the router by a test).
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn health(State(state): Shared) -> Result<impl IntoResponse, ApiError> {
    let head = state.store.head_position().await?;
    Ok(Json(
        serde_json::json!({"status": "ok", "head_position": head}),
    ))
}

/// Metrics name consumer groups and show the server's load: they need the `metrics`
/// access (roles `[acl] metrics`, `admin` always).
async fn metrics(State(state): Shared, who: Principal) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Metrics).await?;
    let head = state.store.head_position().await?.map(Position::get);
    let groups = crate::groups::statuses(&state);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state
            .metrics
            .render(head, &state.store.storage_metrics(), &groups),
    ))
}

fn schema_not_found(event_type: &str, version: Option<u32>) -> ApiError {
    let what = version.map_or_else(
        || format!("no schema is registered for {event_type}"),
        |v| format!("version {v} of {event_type} is not registered"),
    );
    ApiError::with_status(StatusCode::NOT_FOUND, "schema_not_found", what)
}

/// `GET /schemas`: every registered type with its versions and where it upcasts to.
async fn list_schema_types(
    State(state): Shared,
    _who: Principal,
) -> Result<impl IntoResponse, ApiError> {
    state.schemas.refresh().await?;
    let types = state.schemas.registry().summaries();
    Ok(Json(serde_json::json!({ "types": types })))
}

/// `GET /schemas/{type}`: the registered versions of one type, oldest first.
async fn list_schema_versions(
    State(state): Shared,
    _who: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(event_type) = path.map_err(path_error)?;
    state.schemas.refresh().await?;
    let versions = state
        .schemas
        .registry()
        .type_versions(&event_type)
        .ok_or_else(|| schema_not_found(&event_type, None))?;
    Ok(Json(versions))
}

/// `GET /schemas/{type}/{version}`: one registered version.
async fn read_schema_version(
    State(state): Shared,
    _who: Principal,
    path: Result<Path<(String, u32)>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path((event_type, version)) = path.map_err(path_error)?;
    state.schemas.refresh().await?;
    let registry = state.schemas.registry();
    let definition = registry
        .definition(&event_type, version)
        .ok_or_else(|| schema_not_found(&event_type, Some(version)))?;
    Ok(Json(serde_json::json!({
        "type": event_type,
        "version": version,
        "definition": definition,
    }))
    .into_response())
}

/// `PUT /schemas/{type}/{version}`: registers a version after the compatibility check.
async fn register_schema(
    State(state): Shared,
    who: Principal,
    path: Result<Path<(String, u32)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Schemas).await?;
    let Path((event_type, version)) = path.map_err(path_error)?;
    let body = body.map_err(body_error)?;
    let definition: VersionDefinition = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!(
                "the body must be a JSON object {{\"schema\"?, \"upcast\"?, \"downcast\"?, \"previous\"?, \"skip_upcasts\"?, \"lossless\"?}}: {e}"
            ),
        )
    })?;
    let registered = state
        .schemas
        .register(&event_type, version, definition)
        .await
        .map_err(|error| match error {
            // The definition is what is wrong: its converter is too costly for a
            // stored event.
            SchemaError::ConverterLimit { .. } => {
                ApiError::from(error).with_status_code(StatusCode::BAD_REQUEST)
            }
            other => other.into(),
        })?;
    let (status, result) = match registered {
        Registered::Created => (StatusCode::CREATED, "created"),
        Registered::Replaced => (StatusCode::OK, "replaced"),
        Registered::Unchanged => (StatusCode::OK, "unchanged"),
    };
    Ok((
        status,
        Json(serde_json::json!({"type": event_type, "version": version, "result": result})),
    ))
}
