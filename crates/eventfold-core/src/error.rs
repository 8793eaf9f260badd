//! The errors every backend reports, so callers handle them once.

use std::sync::Arc;

use crate::stream::{ExpectedVersion, Revision};

/// Result of the store's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in an event store operation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream was not in the state the writer expected; nothing was written.
    #[error("wrong expected version for stream '{stream}': expected {expected}, actual {}", actual.map_or_else(|| "no stream".to_string(), |r| r.to_string()))]
    WrongExpectedVersion {
        /// The stream whose state differed.
        stream: String,
        /// What the writer expected.
        expected: ExpectedVersion,
        /// The stream's last revision (`None`: the stream does not exist).
        actual: Option<Revision>,
    },
    /// The stream does not exist (no event was ever written to it).
    #[error("stream '{stream}' not found")]
    StreamNotFound {
        /// The stream asked for.
        stream: String,
    },
    /// The stream was hard-deleted: it can be neither read nor written again.
    #[error("stream '{stream}' was deleted for good (hard delete); it cannot be written again")]
    StreamDeleted {
        /// The stream asked for.
        stream: String,
    },
    /// A stream surgery moved the stream's events to another stream and closed it:
    /// nothing was written, and appends belong to `moved_to` now.
    #[error(
        "stream '{stream}' was moved to '{moved_to}' by a stream surgery; append to '{moved_to}' instead"
    )]
    StreamMoved {
        /// The stream written to.
        stream: String,
        /// Where its events went.
        moved_to: String,
    },
    /// The stream name cannot be used.
    #[error("invalid stream name '{name}': it {reason}")]
    InvalidStreamName {
        /// The name given (cut to 80 characters).
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An expected version that is none of `any`, `no_stream`, `stream_exists` or a number.
    #[error(
        "invalid expected version '{value}': use any, no_stream, stream_exists or a revision number"
    )]
    InvalidExpectedVersion {
        /// The text given.
        value: String,
    },
    /// An event that cannot be stored as given.
    #[error("invalid event: {reason}")]
    InvalidEvent {
        /// What is wrong with it.
        reason: String,
    },
    /// A setting outside the range it allows.
    #[error("invalid {setting}: {reason}")]
    InvalidSetting {
        /// The setting, by the name it has in JSON (`in_flight_max`, ...).
        setting: String,
        /// What is wrong with its value, with the allowed range.
        reason: String,
    },
    /// An append of no events at all, or with a write of no events that checks
    /// nothing (expects `any`).
    #[error(
        "an append must carry at least one event, and a write of no events is a check that needs an expected version other than any"
    )]
    EmptyAppend,
    /// An event or an append larger than the store accepts.
    #[error("{what} is {actual} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// What was too large ("event", "append").
        what: &'static str,
        /// Its size in bytes.
        actual: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// Some of the event ids were written before, but not as exactly this append
    /// (different stream, revisions or partial overlap); nothing was written.
    #[error("idempotency conflict in stream '{stream}': {reason}")]
    IdempotencyConflict {
        /// The stream appended to.
        stream: String,
        /// How the ids conflict.
        reason: String,
    },
    /// The disk is full; nothing of the append was written and the store keeps working.
    #[error("storage full: {context}; free some space and retry")]
    StorageFull {
        /// What was being written.
        context: String,
    },
    /// An I/O operation failed.
    #[error("i/o error while {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// Stored data failed a check (checksum, length, order).
    #[error("corrupted data in {file} at offset {offset}: {reason}")]
    Corrupted {
        /// The damaged file.
        file: String,
        /// Byte offset of the damage in the file.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// A previous write or fsync failed; the store accepts no more writes until it is
    /// opened again (recovery then reads what the disk really holds).
    #[error(
        "store stopped accepting writes after a fatal i/o error ({reason}); reopen it to recover"
    )]
    Poisoned {
        /// The failure that stopped it.
        reason: String,
    },
    /// Another process holds the data directory open.
    #[error(
        "data directory {path} is locked: it is in use by {}",
        holder.as_deref().unwrap_or("another process")
    )]
    Locked {
        /// The data directory.
        path: String,
        /// Who holds it, as that process described itself (its PID, its command,
        /// and the URL it serves the store at, if it does), when known.
        holder: Option<String>,
    },
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// The store was opened for reading only (or was made read-only on purpose):
    /// appends are refused.
    #[error("the store is read-only: {reason}")]
    ReadOnly {
        /// Why, and what to do instead.
        reason: String,
    },
    /// A backend-specific failure that fits no other kind.
    #[error("{0}")]
    Backend(String),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }
}
