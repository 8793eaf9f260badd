//! Store errors and bad requests as HTTP responses, in one place.

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use eventfold_core::Error;
use serde_json::json;

/// An error answered with a status and a JSON body `{"error": code, "message": …}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: serde_json::Value,
    header: Option<(HeaderName, &'static str)>,
}

impl ApiError {
    /// A 400 with a machine-readable `code` and a message naming the problem.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::with_status(StatusCode::BAD_REQUEST, code, message)
    }

    /// Any status with a code and message.
    pub fn with_status(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: json!({"error": code, "message": message.into()}),
            header: None,
        }
    }

    /// The same error answered with another status.
    pub fn with_status_code(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// A `409 idempotency_conflict` on `stream` that says nothing of where the event
    /// ids were used before (that may be a stream the caller may not read).
    pub(crate) fn idempotency_conflict(stream: &str) -> Self {
        let mut answer = Self::with_status(
            StatusCode::CONFLICT,
            "idempotency_conflict",
            format!(
                "idempotency conflict in stream '{stream}': event ids of this append were \
                 written before, but not as exactly this append (in another stream, or at \
                 other revisions or with other events of this one); nothing was written"
            ),
        );
        answer.body["stream"] = json!(stream);
        answer
    }

    /// Adds a response header (`WWW-Authenticate` on a 401).
    pub fn with_header(mut self, name: HeaderName, value: &'static str) -> Self {
        self.header = Some((name, value));
        self
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        let status = match &error {
            Error::WrongExpectedVersion {
                stream,
                expected,
                actual,
            } => {
                return ApiError {
                    status: StatusCode::CONFLICT,
                    body: json!({
                        "error": "wrong_expected_version",
                        "stream": stream,
                        "expected": expected,
                        "actual": actual,
                        "message": message,
                    }),
                    header: None,
                };
            }
            // A read of a deleted stream is a 404; an append to it is a 410.
            Error::StreamNotFound { .. } | Error::StreamDeleted { .. } => StatusCode::NOT_FOUND,
            Error::IdempotencyConflict { .. } => StatusCode::CONFLICT,
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::InvalidStreamName { .. }
            | Error::InvalidExpectedVersion { .. }
            | Error::InvalidEvent { .. }
            | Error::InvalidSetting { .. }
            | Error::EmptyAppend => StatusCode::BAD_REQUEST,
            // Worth retrying later: a full disk, a store being reopened, read-only, or an
            // i/o failure whose outcome may be unknown (re-send with the same ids).
            Error::StorageFull { .. }
            | Error::Poisoned { .. }
            | Error::Closed
            | Error::ReadOnly { .. }
            | Error::Io { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(%message, "request failed");
        }
        let mut answer = ApiError::with_status(status, error.code(), message);
        if let Error::InvalidSetting { setting, .. } = &error {
            answer.body["setting"] = json!(setting);
        }
        if let Error::StreamNotFound { stream }
        | Error::StreamDeleted { stream }
        | Error::IdempotencyConflict { stream, .. } = &error
        {
            answer.body["stream"] = json!(stream);
        }
        answer
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some((name, value)) = self.header {
            response
                .headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        response
    }
}

impl From<eventfold_schema::SchemaError> for ApiError {
    fn from(error: eventfold_schema::SchemaError) -> Self {
        use eventfold_schema::SchemaError;
        let message = error.to_string();
        let status = match &error {
            SchemaError::Store(_) => {
                let SchemaError::Store(inner) = error else {
                    unreachable!("matched just above")
                };
                return inner.into();
            }
            SchemaError::Incompatible { event, data, .. } => {
                return ApiError {
                    status: StatusCode::CONFLICT,
                    body: json!({
                        "error": error.code(),
                        "message": message,
                        "event": event,
                        "data": data,
                    }),
                    header: None,
                };
            }
            SchemaError::ConverterLimit { limit, event, .. } => {
                // The request is sound, but the events it asks for cannot be
                // converted within the limits (reading them as stored still works).
                let mut body = json!({
                    "error": error.code(),
                    "message": message,
                    "limit": limit.name(),
                });
                if let Some(event) = event {
                    body["event"] = json!(event);
                }
                return ApiError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    body,
                    header: None,
                };
            }
            SchemaError::Interrupted => StatusCode::SERVICE_UNAVAILABLE,
            SchemaError::InvalidDefinition { .. } | SchemaError::SchemaViolation { .. } => {
                StatusCode::BAD_REQUEST
            }
            SchemaError::NoConversionPath { .. } => StatusCode::NOT_ACCEPTABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(%message, "conversion failed");
        }
        ApiError::with_status(status, error.code(), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_worth_retrying_answer_503_and_client_mistakes_4xx() {
        let status = |error: Error| ApiError::from(error).status;
        let read_only = Error::ReadOnly {
            reason: "damage found".into(),
        };
        assert_eq!(status(read_only), StatusCode::SERVICE_UNAVAILABLE);
        let io = Error::io("appending", std::io::Error::other("disk gone"));
        assert_eq!(status(io), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(Error::Closed), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(Error::EmptyAppend), StatusCode::BAD_REQUEST);
        let corrupted = ApiError::from(Error::Corrupted {
            file: "segments/3.seg".into(),
            offset: 64,
            reason: "checksum mismatch".into(),
        });
        assert_eq!(corrupted.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(corrupted.body["error"], "corrupted");
    }
}
