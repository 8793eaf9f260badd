//! What handlers read from a request beyond axum's extractors: the `Expected-Version`
//! header, read limits, the conversion asked for, and JSON bodies parsed with an
//! answer that names the shape the operation takes.
//!
//! Handlers take axum's `Path`, `Query` and body extractors as `Result`s and turn a
//! rejection into an API error with `?` (the conversions live in `crate::error`), so
//! that each handler checks access before it looks at what a client may not send.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use eventfold_core::ExpectedVersion;
use eventfold_schema::Target;
use eventfold_wire::ErrorCode;
use serde::de::DeserializeOwned;

use crate::ServerConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// The state, as handlers extract it.
pub(crate) type Shared = State<Arc<AppState>>;

/// Events per read when the request names no `limit`.
const READ_EVENTS_DEFAULT: u64 = 100;

/// The events (or names) one read returns: `asked`, 100 by default, cut to the
/// server's `read_events_max`.
pub(crate) fn limit(config: &ServerConfig, asked: Option<u64>) -> u64 {
    asked
        .unwrap_or(READ_EVENTS_DEFAULT)
        .min(config.read_events_max)
}

/// The `Expected-Version` header; `any` when absent.
pub(crate) fn expected_version(headers: &HeaderMap) -> Result<ExpectedVersion, ApiError> {
    match headers.get("expected-version") {
        None => Ok(ExpectedVersion::Any),
        Some(value) => Ok(value
            .to_str()
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidExpectedVersion,
                    "Expected-Version is not text",
                )
            })?
            .parse()?),
    }
}

/// The conversion a reader asked for with `versions=`; as stored by default.
pub(crate) fn target(versions: Option<&str>) -> Result<Target, ApiError> {
    versions.map_or(Ok(Target::Stored), |text| {
        Target::parse(text)
            .map_err(|reason| ApiError::new(ErrorCode::InvalidQuery, format!("versions: {reason}")))
    })
}

/// `400 invalid_json`: the body is not `shape`.
pub(crate) fn invalid_json(shape: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidJson,
        format!("the body must be {shape}: {reason}"),
    )
}

/// A JSON body of `shape`.
pub(crate) fn json<T: DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| invalid_json(shape, e))
}

/// A JSON object body of `shape` (an empty body is `{}`). Only an object: serde would
/// also read a struct from an array of its fields in order, so `[]` would pass as
/// defaults.
pub(crate) fn json_object<T: DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, ApiError> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    let object: serde_json::Map<String, serde_json::Value> = json(body, shape)?;
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| invalid_json(shape, e))
}

/// What a JSON value is, for error messages.
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
