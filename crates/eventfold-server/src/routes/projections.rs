//! Registered folds and the state of a stream as of a revision:
//! `GET /projections`, `GET` and `PUT /projections/{name}`, and
//! `GET /streams/{stream}/state?projection=&revision=`.

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bytes::Bytes;
use eventfold_core::Revision;
use eventfold_schema::{FoldDefinition, Registered};
use eventfold_wire::ErrorCode;
use serde::Deserialize;
use serde_json::json;

use super::request::{Shared, json};
use crate::auth::{Access, Principal};
use crate::error::ApiError;

/// `GET /projections`: every registered fold, by name.
pub(super) async fn list(
    State(state): Shared,
    _who: Principal,
) -> Result<impl IntoResponse, ApiError> {
    let folds = state.schemas.folds().await?;
    let projections: Vec<_> = folds
        .into_iter()
        .map(|(name, definition)| json!({"name": name, "init": definition.init, "handlers": definition.handlers}))
        .collect();
    Ok(Json(json!({ "projections": projections })))
}

/// `GET /projections/{name}`: one registered fold.
pub(super) async fn read(
    State(state): Shared,
    _who: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(name) = path?;
    let fold = state.schemas.fold(&name).await?;
    let definition = fold.definition();
    Ok(Json(
        json!({"name": name, "init": definition.init, "handlers": definition.handlers}),
    ))
}

/// `PUT /projections/{name}`: registers a fold once every handler compiles. Folds are
/// code the server runs, so registering one takes the access registering schemas does.
pub(super) async fn register(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Schemas).await?;
    let Path(name) = path?;
    let body = body?;
    let definition: FoldDefinition = json(
        &body,
        r#"a JSON object {"init", "handlers": {"<EventType>": "<jq program>"}}"#,
    )?;
    let registered = state.schemas.register_fold(&name, &definition).await?;
    let status = if registered == Registered::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let result = registered.as_str();
    Ok((status, Json(json!({"name": name, "result": result}))))
}

/// The query of `GET /streams/{stream}/state`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StateQuery {
    projection: String,
    revision: Option<u64>,
}

/// `GET /streams/{stream}/state?projection=NAME[&revision=N]`: `{"state", "revision"}`,
/// the fold run over the stream up to revision N (its last event by default).
pub(super) async fn state_of(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<StateQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(stream) = path?;
    state.authorize(&who, Access::Read(&stream)).await?;
    if eventfold_core::IndexStream::parse(&stream).is_some() {
        return Err(ApiError::new(
            ErrorCode::InvalidStreamName,
            format!(
                "'{stream}' is an index stream, whose events belong to other streams: it has no state"
            ),
        ));
    }
    let Query(query) = query?;
    let fold = state.schemas.fold(&query.projection).await?;
    let folded = state
        .schemas
        .state_of(&stream, &fold, query.revision.map(Revision))
        .await?;
    Ok(Json(folded))
}
