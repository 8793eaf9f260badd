//! API errors as HTTP responses, in one place: codes, statuses and bodies come from
//! `eventfold-wire`'s table; store and schema errors, and axum's rejections of a path,
//! a query or a body, become answers here.

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use eventfold_core::Error;
use eventfold_schema::SchemaError;
use eventfold_wire::{ErrorBody, ErrorCode};

/// An error answered with a status and a JSON [`ErrorBody`]
/// `{"error": code, "message": …}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    /// Boxed: a body has a field for every detail an error may name.
    body: Box<ErrorBody>,
    header: Option<(HeaderName, &'static str)>,
}

impl ApiError {
    /// An answer of `code`, with the status of the code's table.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::with_body(ErrorBody::new(code, message))
    }

    fn with_body(body: ErrorBody) -> Self {
        ApiError {
            status: body.error.status(),
            body: Box::new(body),
            header: None,
        }
    }

    /// The same error answered with another status (where the request makes another
    /// one clearer than the table's, see [`ErrorCode::status`]).
    pub fn with_status_code(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// A `409 idempotency_conflict` on `stream` that says nothing of where the event
    /// ids were used before (that may be a stream the caller may not read).
    pub(crate) fn idempotency_conflict(stream: &str) -> Self {
        Self::with_body(ErrorBody::of(&Error::IdempotencyConflict {
            stream: stream.to_string(),
            reason: "event ids of this append were written before, but not as exactly \
                     this append (in another stream, or at other revisions or with other \
                     events of this one); nothing was written"
                .to_string(),
        }))
    }

    /// Adds a response header (`WWW-Authenticate` on a 401).
    pub fn with_header(mut self, name: HeaderName, value: &'static str) -> Self {
        self.header = Some((name, value));
        self
    }

    /// The status answered.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body answered.
    pub fn body(&self) -> &ErrorBody {
        &self.body
    }

    fn logged(self, what: &str) -> Self {
        if self.status.is_server_error() {
            tracing::error!(message = %self.body.message, "{what}");
        }
        self
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self::with_body(ErrorBody::of(&error)).logged("request failed")
    }
}

impl From<SchemaError> for ApiError {
    fn from(error: SchemaError) -> Self {
        let mut body = ErrorBody::new(error.code(), error.to_string());
        match error {
            SchemaError::Store(inner) => return inner.into(),
            SchemaError::Incompatible { event, data, .. } => {
                body.event = Some(event);
                body.data = Some(data);
            }
            // The request is sound, but the events it asks for cannot be converted
            // within the limits (reading them as stored still works).
            SchemaError::ConverterLimit { limit, event, .. } => {
                body.limit = Some(limit.name().to_string());
                body.event = event;
            }
            _ => {}
        }
        Self::with_body(body).logged("conversion failed")
    }
}

/// A path parameter of the wrong type.
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::new(ErrorCode::InvalidPath, rejection.body_text())
    }
}

/// A query parameter unknown or of the wrong type.
impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::new(ErrorCode::InvalidQuery, rejection.body_text())
    }
}

/// A body over the limit (`413 too_large`) or one that could not be read.
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::TooLarge
        } else {
            ErrorCode::InvalidBody
        };
        ApiError::new(code, rejection.body_text()).with_status_code(status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(*self.body)).into_response();
        if let Some((name, value)) = self.header {
            response
                .headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        response
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
        assert_eq!(corrupted.body.error, ErrorCode::Corrupted);
    }

    #[test]
    fn a_redacted_idempotency_conflict_names_only_the_stream_written() {
        let answer = ApiError::idempotency_conflict("order-1");
        assert_eq!(answer.status, StatusCode::CONFLICT);
        assert_eq!(answer.body.stream.as_deref(), Some("order-1"));
        assert!(
            answer
                .body
                .message
                .starts_with("idempotency conflict in stream 'order-1': event ids")
        );
    }
}
