//! Stream administration over HTTP: listing streams, a stream's head, its metadata
//! (retention and ACL) and deletion. The rules live in `eventfold-metadata`;
//! this module only speaks HTTP.

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use bytes::Bytes;
use eventfold_metadata::{DeleteMode, StreamAdmin, StreamMetadata};
use serde::Deserialize;

use eventfold_wire::{
    ArchiveRequest, ErrorCode, ScavengeAnswer, StreamHead, StreamsPage, SubjectForgotten,
    SurgeryRequest,
};

use super::request::{Shared, expected_version, invalid_json, json_kind, json_object, limit};
use crate::ArchiveFailure;
use crate::auth::{Access, Principal};
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Only names starting with this (system streams only with a `$` prefix).
    prefix: Option<String>,
    /// Names after this one (the `next` of the previous page).
    after: Option<String>,
    limit: Option<u64>,
}

/// `GET /streams?prefix=&after=&limit=`: stream names in order, with their last revision.
pub(super) async fn list_streams(
    State(state): Shared,
    who: Principal,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::All).await?;
    let Query(query) = query?;
    let limit = limit(&state.config, query.limit) as usize;
    let streams = state
        .store
        .list_streams(
            query.prefix.as_deref().unwrap_or(""),
            query.after.as_deref(),
            limit,
        )
        .await?;
    let next = (streams.len() == limit)
        .then(|| streams.last().map(|s| s.stream.clone()))
        .flatten();
    Ok(Json(StreamsPage { next, streams }))
}

/// `GET /streams/{stream}/head`: the stream's last revision (counting hidden and
/// deleted events, as expected versions do), `null` when it was never written.
pub(super) async fn stream_head(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(stream) = path?;
    state.authorize(&who, Access::Read(&stream)).await?;
    let last = state.store.stream_revision(&stream).await?;
    Ok(Json(StreamHead {
        last_revision: last,
        stream,
    }))
}

/// `GET /streams/{stream}/metadata`: `{"revision", "metadata"}`.
pub(super) async fn read_metadata(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(stream) = path?;
    eventfold_metadata::validate_metadata_target(&stream)?;
    state.authorize(&who, Access::Metadata(&stream)).await?;
    Ok(Json(state.store.stream_metadata(&stream).await?))
}

/// `PUT /streams/{stream}/metadata` with the metadata as JSON and `Expected-Version`
/// naming the metadata's revision.
pub(super) async fn write_metadata(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(stream) = path?;
    eventfold_metadata::validate_metadata_target(&stream)?;
    state.authorize(&who, Access::Metadata(&stream)).await?;
    let expected = expected_version(&headers)?;
    let body = body?;
    let invalid = |reason: String| {
        invalid_json(
            r#"stream metadata, a JSON object {"max_count"?, "max_age"?, "truncate_before"?, "acl"?: {"read"?, "write"?, "delete"?, "metadata"?}, "custom"?}"#,
            reason,
        )
    };
    // Parsed as a JSON value first: serde would take an array for the fields in order.
    let metadata: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
    if !metadata.is_object() {
        return Err(invalid(format!("it is {}", json_kind(&metadata))));
    }
    if let Some(acl) = metadata
        .get("acl")
        .filter(|acl| !acl.is_object() && !acl.is_null())
    {
        return Err(invalid(format!("acl is {}", json_kind(acl))));
    }
    let metadata: StreamMetadata =
        serde_json::from_value(metadata).map_err(|e| invalid(e.to_string()))?;
    let written = state
        .store
        .set_stream_metadata(&stream, expected, metadata)
        .await?;
    Ok(Json(written))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteQuery {
    /// `true`: a tombstone (the stream can never be written again).
    hard: Option<bool>,
}

/// `DELETE /streams/{stream}[?hard=true]` with an optional `Expected-Version`.
pub(super) async fn delete_stream(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let Path(stream) = path?;
    eventfold_core::validate_stream_name(&stream)?;
    state.authorize(&who, Access::Delete(&stream)).await?;
    let Query(query) = query?;
    let mode = if query.hard.unwrap_or(false) {
        DeleteMode::Hard
    } else {
        DeleteMode::Soft
    };
    let expected = expected_version(&headers)?;
    let deleted = state.store.delete_stream(&stream, expected, mode).await?;
    tracing::info!(%stream, ?mode, user = %who.name, "stream deleted");
    Ok(Json(deleted))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScavengeQuery {
    /// Count what would go, change nothing.
    dry_run: Option<bool>,
}

/// `POST /admin/scavenge[?dry_run=true]`: an online scavenge. The events that stream
/// metadata hides (as it is now) leave the storage while appends, reads and
/// subscriptions go on; the answer says what was (or would be) removed. One runs at a
/// time; another request waits for it. Administrators only.
pub(super) async fn scavenge(
    State(state): Shared,
    who: Principal,
    query: Result<Query<ScavengeQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Admin).await?;
    let Query(query) = query?;
    let Some(scavenger) = state.config.scavenger.clone() else {
        return Err(ApiError::new(
            ErrorCode::NotSupported,
            "this server was given no scavenger for its store (`eventfold serve` gives \
             its embedded or PostgreSQL store one; a program embedding the server sets \
             ServerConfig::scavenger)",
        ));
    };
    let dry_run = query.dry_run.unwrap_or(false);
    let summary =
        eventfold_metadata::scavenge(state.store.as_ref(), scavenger.as_ref(), dry_run).await?;
    tracing::info!(
        user = %who.name,
        dry_run,
        events_removed = summary.events_removed,
        bytes_reclaimed = summary.bytes_reclaimed(),
        files_rewritten = summary.files_rewritten,
        "scavenge"
    );
    Ok(Json(ScavengeAnswer::from(summary)))
}

/// `POST /admin/surgery` with a [`SurgeryRequest`]: one stream surgery (copy-replace,
/// split, join) on the server's store while it keeps serving, checked before any write;
/// the audit record names the authenticated user. Administrators only.
pub(super) async fn surgery(
    State(state): Shared,
    who: Principal,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Admin).await?;
    let request: SurgeryRequest = json_object(
        &body?,
        r#"a JSON object {"operation": "copy-replace" | "split" | "join", ..., "reason", "dry_run"?}"#,
    )?;
    let audit = eventfold_surgery::Audit {
        reason: request.reason,
        who: who.name.clone(),
    };
    let outcome = eventfold_surgery::perform(
        state.store.as_ref(),
        &request.operation,
        &audit,
        request.dry_run,
        &mut |_, _| {},
    )
    .await?;
    tracing::info!(
        user = %who.name,
        operation = outcome.operation,
        dry_run = outcome.dry_run,
        "surgery"
    );
    Ok(Json(outcome))
}

/// `POST /admin/archive` with `{"to": URL}` (or `{}`: the server's own `--archive`):
/// one archive pass of the log up to its head, to object storage; the answer says what
/// was uploaded. Passes run one at a time. Administrators only.
pub(super) async fn archive(
    State(state): Shared,
    who: Principal,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Admin).await?;
    let request: ArchiveRequest =
        json_object(&body?, r#"a JSON object {"to"?: "s3://BUCKET/PREFIX"}"#)?;
    let Some(archiver) = state.config.archiver.clone() else {
        return Err(ApiError::new(
            ErrorCode::NotSupported,
            "this server archives nothing: its store has no archiver (`eventfold serve` \
             gives its embedded store one; on PostgreSQL, back the database up instead)",
        ));
    };
    let url = match (request.to, archiver.default_url()) {
        (Some(to), _) => to,
        (None, Some(own)) => own,
        (None, None) => {
            return Err(ApiError::new(
                ErrorCode::InvalidArchiveUrl,
                "no archive named: send {\"to\": \"s3://BUCKET/PREFIX\"}, or start the \
                 server with --archive",
            ));
        }
    };
    let answer = archiver
        .archive(&url)
        .await
        .map_err(|failure| match failure {
            ArchiveFailure::InvalidUrl(message) => {
                ApiError::new(ErrorCode::InvalidArchiveUrl, message)
            }
            ArchiveFailure::Failed(message) => ApiError::new(ErrorCode::ArchiveFailed, message),
        })?;
    tracing::info!(
        user = %who.name,
        url = %answer.url,
        end_position = answer.end_position,
        bytes_uploaded = answer.bytes_uploaded,
        "archive"
    );
    Ok(Json(answer))
}

/// `DELETE /subjects/{subject}`: forgets a subject of personal data. Its key is
/// destroyed, so its values read as `{"$redacted": true}` from now on, and a
/// `$subject-forgotten` event tells consumers in `$subjects`. Administrators only.
pub(super) async fn forget_subject(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Admin).await?;
    let Path(subject) = path?;
    let Some(keys) = state.config.subject_keys.clone() else {
        return Err(ApiError::new(
            ErrorCode::NotSupported,
            "this server was given no key store for personal data (`eventfold serve` \
             gives its store one; a program embedding the server sets \
             ServerConfig::subject_keys)",
        ));
    };
    let written = eventfold_privacy::forget(state.store.as_ref(), keys.as_ref(), &subject).await?;
    // A subject id is not personal data itself (see docs/privacy.md), so it is logged.
    tracing::info!(user = %who.name, %subject, "subject forgotten");
    Ok(Json(SubjectForgotten {
        subject,
        position: written.position.0,
    }))
}
