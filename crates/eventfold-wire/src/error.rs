//! Every error code the HTTP API answers, with its status, in one table; the error
//! body; and the way between a body and [`eventfold_core::Error`] in both directions:
//! the server writes a store error as a body, the client reads the same error kind
//! back.

use std::fmt;
use std::str::FromStr;

use eventfold_core::{Error, ExpectedVersion, Revision};
use http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares [`ErrorCode`] from one table: variant, code on the wire, default status.
macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = $code:literal => $status:ident, )*) => {
        /// A machine-readable error code of the HTTP API (the `error` of an error
        /// body). Each has the status it is answered with ([`ErrorCode::status`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in the order of the table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as written on the wire (`wrong_expected_version`, ...).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The status the code is answered with. Two are answered otherwise where
            /// the request makes it clearer: `stream_deleted` is 410 to an append (a
            /// read answers 404), and `converter_limit` is 400 to a schema
            /// registration (the definition is what is wrong; a read answers 422).
            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }
        }
    };
}

error_codes! {
    // The store's errors (`eventfold_core::Error`).
    /// The stream was not at the expected version; nothing was written.
    WrongExpectedVersion = "wrong_expected_version" => CONFLICT,
    /// The stream has no events.
    StreamNotFound = "stream_not_found" => NOT_FOUND,
    /// The stream was hard-deleted.
    StreamDeleted = "stream_deleted" => NOT_FOUND,
    /// A stream surgery moved the stream's events elsewhere (`moved_to`): append there.
    StreamMoved = "stream_moved" => CONFLICT,
    /// The stream name cannot be used.
    InvalidStreamName = "invalid_stream_name" => BAD_REQUEST,
    /// No expected version: not `any`, `no_stream`, `stream_exists` or a number.
    InvalidExpectedVersion = "invalid_expected_version" => BAD_REQUEST,
    /// An event that cannot be stored as given.
    InvalidEvent = "invalid_event" => BAD_REQUEST,
    /// A setting outside its range.
    InvalidSetting = "invalid_setting" => BAD_REQUEST,
    /// An append of no events.
    EmptyAppend = "empty_append" => BAD_REQUEST,
    /// An event, an append or a request body over its limit.
    TooLarge = "too_large" => PAYLOAD_TOO_LARGE,
    /// Event ids used before, but not by exactly this append.
    IdempotencyConflict = "idempotency_conflict" => CONFLICT,
    /// The disk is full; nothing was written.
    StorageFull = "storage_full" => SERVICE_UNAVAILABLE,
    /// The disk or the database failed mid-way: the outcome is unknown.
    IoError = "io_error" => SERVICE_UNAVAILABLE,
    /// Stored data failed a check.
    Corrupted = "corrupted" => INTERNAL_SERVER_ERROR,
    /// The store stopped taking writes after a fatal i/o error.
    StorePoisoned = "store_poisoned" => SERVICE_UNAVAILABLE,
    /// Another process holds the data directory.
    Locked = "locked" => INTERNAL_SERVER_ERROR,
    /// The store is closed.
    Closed = "closed" => SERVICE_UNAVAILABLE,
    /// The store refuses writes.
    ReadOnly = "read_only" => SERVICE_UNAVAILABLE,
    /// A backend failure of no other kind.
    BackendError = "backend_error" => INTERNAL_SERVER_ERROR,
    // The schema registry's errors (`eventfold_schema::SchemaError`).
    /// A schema definition that cannot be registered.
    InvalidSchema = "invalid_schema" => BAD_REQUEST,
    /// A converter failed on a stored event, or its output breaks the schema.
    IncompatibleSchema = "incompatible_schema" => CONFLICT,
    /// Event data does not match its registered JSON Schema.
    SchemaViolation = "schema_violation" => BAD_REQUEST,
    /// No registered converters lead to the version asked for.
    NoConversionPath = "no_conversion_path" => NOT_ACCEPTABLE,
    /// A converter failed on an event being read.
    ConversionFailed = "conversion_failed" => INTERNAL_SERVER_ERROR,
    /// Converted data does not decode into the type asked for.
    DecodeFailed = "decode_failed" => INTERNAL_SERVER_ERROR,
    /// A converter went over one of its limits.
    ConverterLimit = "converter_limit" => UNPROCESSABLE_ENTITY,
    /// The server is shutting down; conversions under way were stopped.
    ShuttingDown = "shutting_down" => SERVICE_UNAVAILABLE,
    /// A converter crashed.
    ConverterCrashed = "converter_crashed" => INTERNAL_SERVER_ERROR,
    /// A projection (a registered fold) that cannot be registered as given.
    InvalidProjection = "invalid_projection" => BAD_REQUEST,
    /// A projection's handler failed on an event, or went over a jq limit.
    ProjectionFailed = "projection_failed" => UNPROCESSABLE_ENTITY,
    // Requests the API cannot take.
    /// The body is not the JSON the operation takes.
    InvalidJson = "invalid_json" => BAD_REQUEST,
    /// The body could not be read.
    InvalidBody = "invalid_body" => BAD_REQUEST,
    /// A path parameter of the wrong type.
    InvalidPath = "invalid_path" => BAD_REQUEST,
    /// A query parameter that is unknown or of the wrong type.
    InvalidQuery = "invalid_query" => BAD_REQUEST,
    /// An `Accept` media type naming no schema version.
    InvalidAccept = "invalid_accept" => BAD_REQUEST,
    /// A `Last-Event-ID` that is not a number.
    InvalidLastEventId = "invalid_last_event_id" => BAD_REQUEST,
    /// No route has this path.
    RouteNotFound = "route_not_found" => NOT_FOUND,
    /// The path does not answer this method.
    MethodNotAllowed = "method_not_allowed" => METHOD_NOT_ALLOWED,
    /// The stream has no event at this revision.
    EventNotFound = "event_not_found" => NOT_FOUND,
    /// A feed page past the feed's head.
    PageNotFound = "page_not_found" => NOT_FOUND,
    /// `Accept` names no representation the resource has.
    NotAcceptable = "not_acceptable" => NOT_ACCEPTABLE,
    /// No schema is registered for this type or version.
    SchemaNotFound = "schema_not_found" => NOT_FOUND,
    /// No projection (registered fold) has this name.
    ProjectionNotFound = "projection_not_found" => NOT_FOUND,
    /// No consumer group has this name.
    GroupNotFound = "group_not_found" => NOT_FOUND,
    /// An ack or nack of a position not delivered.
    NotInFlight = "not_in_flight" => CONFLICT,
    /// The store's backend cannot do this (a scavenge, on a backend without one).
    NotSupported = "not_supported" => NOT_IMPLEMENTED,
    /// An archive URL the server cannot archive to (unknown scheme, no credentials, a
    /// local path that is not the server's own archive).
    InvalidArchiveUrl = "invalid_archive_url" => BAD_REQUEST,
    /// The object storage refused or failed the archive; what was uploaded stays and
    /// the next pass resumes.
    ArchiveFailed = "archive_failed" => BAD_GATEWAY,
    // Authentication and authorization.
    /// No token, or an unknown one.
    Unauthorized = "unauthorized" => UNAUTHORIZED,
    /// The user's roles do not allow the request.
    AccessDenied = "access_denied" => FORBIDDEN,
    // Connections refused before a request is read.
    /// The request line is too long.
    UriTooLong = "uri_too_long" => URI_TOO_LONG,
    /// The request head is too large or has too many headers.
    HeadersTooLarge = "headers_too_large" => REQUEST_HEADER_FIELDS_TOO_LARGE,
}

impl ErrorCode {
    /// The code of a store error.
    pub fn of(error: &Error) -> ErrorCode {
        match error {
            Error::WrongExpectedVersion { .. } => ErrorCode::WrongExpectedVersion,
            Error::StreamNotFound { .. } => ErrorCode::StreamNotFound,
            Error::StreamDeleted { .. } => ErrorCode::StreamDeleted,
            Error::StreamMoved { .. } => ErrorCode::StreamMoved,
            Error::InvalidStreamName { .. } => ErrorCode::InvalidStreamName,
            Error::InvalidExpectedVersion { .. } => ErrorCode::InvalidExpectedVersion,
            Error::InvalidEvent { .. } => ErrorCode::InvalidEvent,
            Error::InvalidSetting { .. } => ErrorCode::InvalidSetting,
            Error::EmptyAppend => ErrorCode::EmptyAppend,
            Error::TooLarge { .. } => ErrorCode::TooLarge,
            Error::IdempotencyConflict { .. } => ErrorCode::IdempotencyConflict,
            Error::StorageFull { .. } => ErrorCode::StorageFull,
            Error::Io { .. } => ErrorCode::IoError,
            Error::Corrupted { .. } => ErrorCode::Corrupted,
            Error::Poisoned { .. } => ErrorCode::StorePoisoned,
            Error::Locked { .. } => ErrorCode::Locked,
            Error::Closed => ErrorCode::Closed,
            Error::ReadOnly { .. } => ErrorCode::ReadOnly,
            Error::Backend(_) => ErrorCode::BackendError,
            // A kind added to core and not yet here is still an answer.
            _ => ErrorCode::BackendError,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is no [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownErrorCode(pub String);

impl fmt::Display for UnknownErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' is no error code of the eventfold API", self.0)
    }
}

impl std::error::Error for UnknownErrorCode {}

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|code| code.as_str() == text)
            .ok_or_else(|| UnknownErrorCode(text.to_string()))
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The body of every error answer: `{"error": <code>, "message": <for people>}` and,
/// per code, the fields that say what the error is about. Fields are written in
/// alphabetical order, absent ones left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `wrong_expected_version`: the stream's last revision (`null`: no stream).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub actual: Option<Option<u64>>,
    /// `io_error`, `storage_full`: what was being done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// `incompatible_schema`: the data of the stored event a converter failed on.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub data: Option<serde_json::Value>,
    /// The code.
    pub error: ErrorCode,
    /// `incompatible_schema`, `converter_limit`: the stored event, as
    /// `revision@stream (id)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// `wrong_expected_version`: the expected version asked for.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "expected_version"
    )]
    pub expected: Option<ExpectedVersion>,
    /// `corrupted`: the damaged file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `converter_limit`: the limit a converter went over (`jq_steps_max`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// What is wrong, for people.
    pub message: String,
    /// `stream_moved`: the stream the events were moved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<String>,
    /// `corrupted`: the byte offset of the damage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// `locked`: the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The cause in the error's own words, without the frame of `message` (what is
    /// wrong with an event, a setting, stored data; why the store refuses writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `invalid_setting`: the setting, by its JSON name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    /// `too_large`: the size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `too_large`: the limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_max: Option<u64>,
    /// The stream the error is about, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// `invalid_expected_version`: the value given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `too_large`: what was too large (`event`, `append`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub what: Option<String>,
}

/// A field that may be `null`: present (even as `null`) is `Some`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// An expected version as written: a number, or `any`, `no_stream`, `stream_exists`.
fn expected_version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ExpectedVersion>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64().map(|n| ExpectedVersion::Exact(Revision(n))),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    })
}

impl ErrorBody {
    /// A body with only a code and a message.
    pub fn new(error: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            actual: None,
            context: None,
            data: None,
            error,
            event: None,
            expected: None,
            file: None,
            limit: None,
            message: message.into(),
            moved_to: None,
            offset: None,
            path: None,
            reason: None,
            setting: None,
            size: None,
            size_max: None,
            stream: None,
            value: None,
            what: None,
        }
    }

    /// The body of a store error: its code, its message, and every field of it, so
    /// that [`ErrorBody::into_error`] gives the same error back.
    pub fn of(error: &Error) -> Self {
        let mut body = ErrorBody::new(ErrorCode::of(error), error.to_string());
        match error {
            Error::WrongExpectedVersion {
                stream,
                expected,
                actual,
            } => {
                body.stream = Some(stream.clone());
                body.expected = Some(*expected);
                body.actual = Some(actual.map(Revision::get));
            }
            Error::StreamNotFound { stream } | Error::StreamDeleted { stream } => {
                body.stream = Some(stream.clone());
            }
            Error::StreamMoved { stream, moved_to } => {
                body.stream = Some(stream.clone());
                body.moved_to = Some(moved_to.clone());
            }
            Error::InvalidStreamName { name, reason } => {
                body.stream = Some(name.clone());
                body.reason = Some(reason.to_string());
            }
            Error::InvalidExpectedVersion { value } => body.value = Some(value.clone()),
            Error::InvalidEvent { reason }
            | Error::Poisoned { reason }
            | Error::ReadOnly { reason }
            | Error::Backend(reason) => body.reason = Some(reason.clone()),
            Error::InvalidSetting { setting, reason } => {
                body.setting = Some(setting.clone());
                body.reason = Some(reason.clone());
            }
            Error::TooLarge {
                what,
                actual,
                limit,
            } => {
                body.what = Some(what.to_string());
                body.size = Some(*actual);
                body.size_max = Some(*limit);
            }
            Error::IdempotencyConflict { stream, reason } => {
                body.stream = Some(stream.clone());
                body.reason = Some(reason.clone());
            }
            Error::StorageFull { context } => body.context = Some(context.clone()),
            Error::Io { context, source } => {
                body.context = Some(context.clone());
                body.reason = Some(source.to_string());
            }
            Error::Corrupted {
                file,
                offset,
                reason,
            } => {
                body.file = Some(file.clone());
                body.offset = Some(*offset);
                body.reason = Some(reason.clone());
            }
            Error::Locked { path, holder } => {
                body.path = Some(path.clone());
                body.reason.clone_from(holder);
            }
            _ => {}
        }
        body
    }

    /// The store error this body stands for: the same kind the server had, with the
    /// fields the body carries (`stream` names the stream when the body does not).
    /// A code that is no store error becomes [`Error::Backend`] naming the status,
    /// code and message; `invalid_json` is an [`Error::InvalidEvent`] (the events
    /// sent were not what the API takes).
    pub fn into_error(self, status: StatusCode, stream: &str) -> Error {
        let stream = self.stream.unwrap_or_else(|| stream.to_string());
        let message = self.message;
        // A locked store's holder travels as its reason, and is absent when unknown.
        let holder = self.reason.clone();
        let reason = self.reason.unwrap_or_else(|| message.clone());
        match self.error {
            ErrorCode::WrongExpectedVersion => Error::WrongExpectedVersion {
                stream,
                expected: self.expected.unwrap_or_default(),
                actual: self.actual.flatten().map(Revision),
            },
            ErrorCode::StreamNotFound => Error::StreamNotFound { stream },
            ErrorCode::StreamDeleted => Error::StreamDeleted { stream },
            ErrorCode::StreamMoved => Error::StreamMoved {
                stream,
                moved_to: self.moved_to.unwrap_or_default(),
            },
            ErrorCode::InvalidStreamName => Error::InvalidStreamName {
                name: stream,
                reason: "was refused by the server",
            },
            ErrorCode::InvalidExpectedVersion => Error::InvalidExpectedVersion {
                value: self.value.unwrap_or(message),
            },
            ErrorCode::InvalidEvent | ErrorCode::InvalidJson => Error::InvalidEvent { reason },
            ErrorCode::InvalidSetting => Error::InvalidSetting {
                setting: self.setting.unwrap_or_default(),
                reason,
            },
            ErrorCode::EmptyAppend => Error::EmptyAppend,
            ErrorCode::TooLarge => Error::TooLarge {
                what: match self.what.as_deref() {
                    Some("event") => "event",
                    Some("append") => "append",
                    _ => "request",
                },
                actual: self.size.unwrap_or(0),
                limit: self.size_max.unwrap_or(0),
            },
            ErrorCode::IdempotencyConflict => Error::IdempotencyConflict { stream, reason },
            ErrorCode::StorageFull => Error::StorageFull {
                context: self.context.unwrap_or(message),
            },
            ErrorCode::IoError => Error::io(
                self.context
                    .unwrap_or_else(|| "serving the request".to_string()),
                std::io::Error::other(reason),
            ),
            ErrorCode::Corrupted => Error::Corrupted {
                file: self.file.unwrap_or_default(),
                offset: self.offset.unwrap_or(0),
                reason,
            },
            ErrorCode::StorePoisoned => Error::Poisoned { reason },
            ErrorCode::Locked => Error::Locked {
                path: self.path.unwrap_or(message),
                holder,
            },
            ErrorCode::Closed => Error::Closed,
            ErrorCode::ReadOnly => Error::ReadOnly { reason },
            ErrorCode::BackendError => Error::Backend(reason),
            code => Error::Backend(format!("server answered {status} {code}: {message}")),
        }
    }
}

/// One store error of every kind, each field set: what tests of the wire send through
/// it (the round trip of a body, the schemas of `openapi.json`), so that a kind added to
/// core is added here once and checked everywhere.
pub fn examples() -> Vec<Error> {
    vec![
        Error::WrongExpectedVersion {
            stream: "order-1".into(),
            expected: ExpectedVersion::Exact(Revision(4)),
            actual: Some(Revision(6)),
        },
        Error::WrongExpectedVersion {
            stream: "order-1".into(),
            expected: ExpectedVersion::StreamExists,
            actual: None,
        },
        Error::StreamNotFound {
            stream: "order-2".into(),
        },
        Error::StreamDeleted {
            stream: "order-3".into(),
        },
        Error::StreamMoved {
            stream: "order-3".into(),
            moved_to: "order-3-fixed".into(),
        },
        Error::InvalidStreamName {
            name: "$nope".into(),
            reason: "starts with '$', which is reserved",
        },
        Error::InvalidExpectedVersion {
            value: "soon".into(),
        },
        Error::InvalidEvent {
            reason: "event type is empty".into(),
        },
        Error::InvalidSetting {
            setting: "in_flight_max".into(),
            reason: "0 is outside 1 to 100000".into(),
        },
        Error::EmptyAppend,
        Error::TooLarge {
            what: "event",
            actual: 17_000_000,
            limit: 16_777_216,
        },
        Error::TooLarge {
            what: "append",
            actual: 9,
            limit: 8,
        },
        Error::IdempotencyConflict {
            stream: "order-4".into(),
            reason: "ids used in order-5".into(),
        },
        Error::StorageFull {
            context: "appending to segment 3".into(),
        },
        Error::io("syncing segment 3", std::io::Error::other("disk gone")),
        Error::Corrupted {
            file: "segments/3.seg".into(),
            offset: 64,
            reason: "checksum mismatch".into(),
        },
        Error::Poisoned {
            reason: "fsync failed".into(),
        },
        Error::Locked {
            path: "/path/on/the/disk".into(),
            holder: Some("process 42 (eventfold serve)".into()),
        },
        Error::Closed,
        Error::ReadOnly {
            reason: "damage found".into(),
        },
        Error::Backend("the database said no".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_store_error_comes_back_from_its_body_as_the_same_error() {
        let errors = examples();
        for error in &errors {
            let code = ErrorCode::of(error);
            let text = serde_json::to_string(&ErrorBody::of(error)).unwrap();
            let body: ErrorBody = serde_json::from_str(&text).unwrap();
            assert_eq!(body.error, code, "{text}");
            let back = body.into_error(code.status(), "elsewhere");
            assert_eq!(ErrorCode::of(&back), code, "{text}");
            match (error, &back) {
                // Its reason is a text of core's own (`&'static str`): the name comes
                // back, the reason is in the body for people.
                (
                    Error::InvalidStreamName { name, .. },
                    Error::InvalidStreamName { name: back, .. },
                ) => {
                    assert_eq!(back, name);
                    assert!(text.contains(r#""reason":"starts with '$', which is reserved""#));
                }
                _ => assert_eq!(back.to_string(), error.to_string(), "{text}"),
            }
        }
        // Every store code is covered above.
        let covered: std::collections::BTreeSet<_> = errors.iter().map(ErrorCode::of).collect();
        assert_eq!(covered.len(), 19);
    }

    #[test]
    fn the_body_writes_fields_in_order_and_keeps_a_null_actual() {
        let error = Error::WrongExpectedVersion {
            stream: "s".into(),
            expected: ExpectedVersion::NoStream,
            actual: None,
        };
        assert_eq!(
            serde_json::to_string(&ErrorBody::of(&error)).unwrap(),
            r#"{"actual":null,"error":"wrong_expected_version","expected":"no_stream","message":"wrong expected version for stream 's': expected no_stream, actual no stream","stream":"s"}"#
        );
        let plain = ErrorBody::new(ErrorCode::RouteNotFound, "no route for /x");
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"error":"route_not_found","message":"no route for /x"}"#
        );
    }

    #[test]
    fn every_code_reads_back_from_its_text_and_has_an_error_status() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(*code));
            let status = code.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code}"
            );
        }
        assert!("nope".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn a_code_that_is_no_store_error_names_status_code_and_message() {
        let body = ErrorBody::new(ErrorCode::AccessDenied, "user 'a' may not read 's'");
        let error = body.into_error(StatusCode::FORBIDDEN, "s");
        assert_eq!(
            error.to_string(),
            "server answered 403 Forbidden access_denied: user 'a' may not read 's'"
        );
    }

    #[test]
    fn statuses_follow_the_table() {
        assert_eq!(
            ErrorCode::ReadOnly.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(ErrorCode::IoError.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ErrorCode::Closed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ErrorCode::EmptyAppend.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            ErrorCode::Corrupted.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(ErrorCode::TooLarge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
