//! The schema registry over HTTP: `GET /schemas`, `GET /schemas/{type}`,
//! `GET` and `PUT /schemas/{type}/{version}`.

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bytes::Bytes;
use eventfold_schema::{Registered, SchemaError, VersionDefinition};
use eventfold_wire::ErrorCode;

use super::request::{Shared, json};
use crate::auth::{Access, Principal};
use crate::error::ApiError;

fn schema_not_found(event_type: &str, version: Option<u32>) -> ApiError {
    let what = version.map_or_else(
        || format!("no schema is registered for {event_type}"),
        |v| format!("version {v} of {event_type} is not registered"),
    );
    ApiError::new(ErrorCode::SchemaNotFound, what)
}

/// `GET /schemas`: every registered type with its versions and where it upcasts to.
pub(super) async fn list_types(
    State(state): Shared,
    _who: Principal,
) -> Result<impl IntoResponse, ApiError> {
    state.schemas.refresh().await?;
    let types = state.schemas.registry().summaries();
    Ok(Json(serde_json::json!({ "types": types })))
}

/// `GET /schemas/{type}`: the registered versions of one type, oldest first.
pub(super) async fn list_versions(
    State(state): Shared,
    _who: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(event_type) = path?;
    state.schemas.refresh().await?;
    let versions = state
        .schemas
        .registry()
        .type_versions(&event_type)
        .ok_or_else(|| schema_not_found(&event_type, None))?;
    Ok(Json(versions))
}

/// `GET /schemas/{type}/{version}`: one registered version.
pub(super) async fn read_version(
    State(state): Shared,
    _who: Principal,
    path: Result<Path<(String, u32)>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path((event_type, version)) = path?;
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
pub(super) async fn register(
    State(state): Shared,
    who: Principal,
    path: Result<Path<(String, u32)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize(&who, Access::Schemas).await?;
    let Path((event_type, version)) = path?;
    let body = body?;
    let definition: VersionDefinition = json(
        &body,
        r#"a JSON object {"schema"?, "upcast"?, "downcast"?, "previous"?, "skip_upcasts"?, "lossless"?}"#,
    )?;
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
    let status = if registered == Registered::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let result = registered.as_str();
    Ok((
        status,
        Json(serde_json::json!({"type": event_type, "version": version, "result": result})),
    ))
}
