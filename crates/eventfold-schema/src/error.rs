//! Errors of the schema registry and of conversion.

use eventfold_wire::ErrorCode;

/// What went wrong in the registry, in a conversion, or in a validation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A registration that cannot be accepted as given (a malformed jq program or
    /// JSON Schema, a missing upcast, a bad version number).
    #[error("invalid registration of {event_type} v{version}: {reason}")]
    InvalidDefinition {
        /// The event type being registered.
        event_type: String,
        /// The version being registered.
        version: u32,
        /// What is wrong with it.
        reason: String,
    },
    /// The compatibility check failed: a converter did not accept a stored event, or
    /// its result did not validate against the new schema. Nothing was registered.
    #[error("{event_type} v{version} is not compatible with stored events: event {event} {reason}")]
    Incompatible {
        /// The event type being registered.
        event_type: String,
        /// The version being registered.
        version: u32,
        /// The failing stored event, as `revision@stream (id)`.
        event: String,
        /// The failing event's data, for the user to see.
        data: serde_json::Value,
        /// What failed.
        reason: String,
    },
    /// Event data does not match the registered JSON Schema of its type and version.
    #[error("{event_type} v{version} does not match its schema: {reason}")]
    SchemaViolation {
        /// The event type.
        event_type: String,
        /// The event's schema version.
        version: u32,
        /// Each failed rule, with the JSON path of the value that broke it.
        reason: String,
    },
    /// No chain of converters leads from the stored version to the one asked for.
    #[error("no conversion of {event_type} v{from} to {to}")]
    NoConversionPath {
        /// The stored event type.
        event_type: String,
        /// The stored version.
        from: u32,
        /// What was asked for (`v3`, `the newest version`, ...).
        to: String,
    },
    /// A converter failed on an event.
    #[error("converting {event_type} v{from} to v{to} failed: {reason}")]
    ConversionFailed {
        /// The event type converted.
        event_type: String,
        /// The version converted from.
        from: u32,
        /// The version converted to.
        to: u32,
        /// What the converter said.
        reason: String,
    },
    /// A jq converter was stopped by one of its limits (see [`crate::JqLimits`]).
    #[error("the jq converter of {event_type} v{from} to v{to} exceeded {limit}{}",
        event.as_ref().map_or_else(String::new, |e| format!(" on event {e}")))]
    ConverterLimit {
        /// The event type converted.
        event_type: String,
        /// The version converted from.
        from: u32,
        /// The version converted to.
        to: u32,
        /// The limit, with its configured value.
        limit: crate::JqLimit,
        /// The stored event it ran on, as `revision@stream (id)`, when known.
        event: Option<String>,
    },
    /// Conversions were interrupted because the registry is shutting down.
    #[error("conversion interrupted: the server is shutting down")]
    Interrupted,
    /// The threads running jq converters failed (they could not start, or a run
    /// panicked).
    #[error("the jq converter could not run: {reason}")]
    ConverterCrashed {
        /// What happened.
        reason: String,
    },
    /// Converted data does not decode into the Rust type asked for.
    #[error("{event_type} v{version} does not decode: {reason}")]
    Decode {
        /// The event type.
        event_type: String,
        /// The schema version decoded.
        version: u32,
        /// The field and the problem, e.g. `reason: missing field`.
        reason: String,
    },
    /// A fold that cannot be registered as given (a bad name, a handler that does not
    /// compile), or a stored registration that does not read.
    #[error("invalid projection {name}: {reason}")]
    InvalidProjection {
        /// The fold's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No fold of this name is registered.
    #[error("no projection named '{name}' is registered")]
    ProjectionNotFound {
        /// The name asked for.
        name: String,
    },
    /// A fold's handler failed on an event: it raised an error, went over a limit, or
    /// did not give exactly one new state.
    #[error("projection {name} failed on event {event}: {reason}")]
    ProjectionFailed {
        /// The fold's name.
        name: String,
        /// The event, as `revision@stream (id)`.
        event: String,
        /// What happened.
        reason: String,
    },
    /// A state was asked for as of a revision the stream has not reached.
    #[error("stream '{stream}' has no revision {asked}: its last event is at revision {last}")]
    RevisionNotReached {
        /// The stream.
        stream: String,
        /// The revision asked for.
        asked: eventfold_core::Revision,
        /// The stream's last revision.
        last: eventfold_core::Revision,
    },
    /// The store holding the registry failed.
    #[error(transparent)]
    Store(#[from] eventfold_core::Error),
}

impl SchemaError {
    /// The error's code in the HTTP API (its status comes from the same table).
    pub fn code(&self) -> ErrorCode {
        match self {
            SchemaError::InvalidDefinition { .. } => ErrorCode::InvalidSchema,
            SchemaError::Incompatible { .. } => ErrorCode::IncompatibleSchema,
            SchemaError::SchemaViolation { .. } => ErrorCode::SchemaViolation,
            SchemaError::NoConversionPath { .. } => ErrorCode::NoConversionPath,
            SchemaError::ConversionFailed { .. } => ErrorCode::ConversionFailed,
            SchemaError::Decode { .. } => ErrorCode::DecodeFailed,
            SchemaError::ConverterLimit { .. } => ErrorCode::ConverterLimit,
            SchemaError::Interrupted => ErrorCode::ShuttingDown,
            SchemaError::ConverterCrashed { .. } => ErrorCode::ConverterCrashed,
            SchemaError::InvalidProjection { .. } => ErrorCode::InvalidProjection,
            SchemaError::ProjectionNotFound { .. } => ErrorCode::ProjectionNotFound,
            SchemaError::ProjectionFailed { .. } => ErrorCode::ProjectionFailed,
            SchemaError::RevisionNotReached { .. } => ErrorCode::EventNotFound,
            SchemaError::Store(e) => ErrorCode::of(e),
        }
    }
}

/// Results of this crate.
pub type Result<T, E = SchemaError> = std::result::Result<T, E>;
