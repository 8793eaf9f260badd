//! Streams, revisions, positions and expected versions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest stream name accepted, in bytes.
pub const STREAM_NAME_BYTES_MAX: usize = 1024;

/// The index of an event within its stream, counting from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(pub u64);

impl Revision {
    /// The first revision of every stream.
    pub const FIRST: Revision = Revision(0);

    /// The revision as a plain number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The revision after this one. The last possible revision is its own next: no
    /// stream holds that many events, and a number a client sends (an expected version,
    /// a start) must neither panic nor wrap around to the first revision.
    pub fn next(self) -> Revision {
        Revision(self.0.saturating_add(1))
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The place of an event in the global log (`$all`), counting from 0, gap-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(pub u64);

impl Position {
    /// The position of the first event ever written.
    pub const START: Position = Position(0);

    /// The position as a plain number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The position after this one. The last possible position is its own next: no
    /// log holds that many events, and a number a client sends (a checkpoint, a
    /// consumer group's `start_after`) must neither panic nor wrap around to the start.
    pub fn next(self) -> Position {
        Position(self.0.saturating_add(1))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the writer believes about a stream's current state; the append fails with
/// [`Error::WrongExpectedVersion`] when the belief is wrong.
///
/// ```
/// use eventfold_core::{ExpectedVersion, Revision};
/// assert_eq!("any".parse::<ExpectedVersion>().unwrap(), ExpectedVersion::Any);
/// assert_eq!("4".parse::<ExpectedVersion>().unwrap(), ExpectedVersion::Exact(Revision(4)));
/// assert_eq!(ExpectedVersion::NoStream.to_string(), "no_stream");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ExpectedVersion {
    /// Append whatever the stream's state.
    #[default]
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist (hold at least one event).
    StreamExists,
    /// The stream's last event must have exactly this revision.
    Exact(Revision),
}

impl ExpectedVersion {
    /// Whether a stream whose last revision is `actual` (`None`: no stream) satisfies
    /// this expectation.
    pub fn is_satisfied_by(self, actual: Option<Revision>) -> bool {
        match (self, actual) {
            (ExpectedVersion::Any, _) => true,
            (ExpectedVersion::NoStream, None) => true,
            (ExpectedVersion::StreamExists, Some(_)) => true,
            (ExpectedVersion::Exact(want), Some(have)) => want == have,
            _ => false,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no_stream"),
            ExpectedVersion::StreamExists => f.write_str("stream_exists"),
            ExpectedVersion::Exact(r) => r.fmt(f),
        }
    }
}

impl FromStr for ExpectedVersion {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "any" => Ok(ExpectedVersion::Any),
            "no_stream" => Ok(ExpectedVersion::NoStream),
            "stream_exists" => Ok(ExpectedVersion::StreamExists),
            other => other
                .parse::<u64>()
                .map(|n| ExpectedVersion::Exact(Revision(n)))
                .map_err(|_| Error::InvalidExpectedVersion {
                    value: other.to_string(),
                }),
        }
    }
}

impl Serialize for ExpectedVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ExpectedVersion::Exact(r) => s.serialize_u64(r.0),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

/// The category of a stream: the part of its name before the first `-`
/// (`order-17` is in category `order`); a name without `-` is its own category.
///
/// ```
/// assert_eq!(eventfold_core::category_of("order-17-a"), "order");
/// assert_eq!(eventfold_core::category_of("settings"), "settings");
/// ```
pub fn category_of(stream: &str) -> &str {
    stream
        .split_once('-')
        .map_or(stream, |(category, _)| category)
}

/// The system streams eventfold's own components write, by prefix, with system writes
/// ([`StreamWrite::system`](crate::StreamWrite::system)). Every other name starting
/// with `$` stays reserved (`$all` and the index streams are read-only views). A
/// client write ([`StreamWrite::new`](crate::StreamWrite::new)) must name a user
/// stream ([`validate_stream_name`]).
pub const SYSTEM_STREAM_PREFIXES: &[&str] = &[
    // The schema registry's history (eventfold-schema).
    "$schemas",
    // Consumer groups: settings, checkpoints, parked events (eventfold-subscription).
    "$persistent-",
    "$checkpoint-",
    "$parked-",
    // Stream metadata: `$$<stream>` (eventfold-metadata).
    "$$",
    // Registered folds, the state of a stream as of a revision (eventfold-schema).
    "$projections",
    // The audit trail of `eventfold repair` (eventfold-cli).
    "$repairs",
    // Notifications about subjects of personal data: `$subject-forgotten`
    // (eventfold-privacy).
    "$subjects",
    // The audit trail of stream surgery (eventfold-surgery).
    "$surgery",
    // The store's own state: read-only after a flip, and the marker of a copy that
    // caught up with its source (eventfold-surgery).
    "$store",
    // Notices of surgeries to projections: `$invalidated` (eventfold-surgery).
    "$invalidations",
];

/// The type of the event a hard delete writes at the end of a stream (the metadata
/// layer of `eventfold-metadata` writes it). The shared append decision (`plan.rs`)
/// refuses every append to a stream whose last event has this type, so backends know
/// it; a client write cannot carry it (its type starts with `$`).
pub const TOMBSTONE_EVENT_TYPE: &str = "$stream-deleted";

/// The type of the event a stream surgery writes at the end of a stream whose events
/// it moved elsewhere: data `{"stream": "<where they went>"}`. The shared append
/// decision (`plan.rs`) refuses every client append to a stream whose last event has
/// this type with [`Error::StreamMoved`](crate::Error::StreamMoved), naming the new
/// stream, so writers follow it; reads of the old stream still see its history.
pub const STREAM_MOVED_EVENT_TYPE: &str = "$stream-moved-to";

/// The system stream of the store's own state: [`STORE_READ_ONLY_EVENT_TYPE`] and
/// [`STORE_WRITABLE_EVENT_TYPE`] (a flip and its undo), and, in a store copied from
/// another, [`STORE_CAUGHT_UP_EVENT_TYPE`].
pub const STORE_STREAM: &str = "$store";

/// The type of the event that makes a whole store read-only (a flip to another
/// store): data `{"reason": "..."}`. The shared append decision (`plan.rs`) refuses
/// every append after it with [`Error::ReadOnly`](crate::Error::ReadOnly) and that
/// reason, except an append that writes [`STORE_STREAM`] itself (the undo).
pub const STORE_READ_ONLY_EVENT_TYPE: &str = "$store-read-only";

/// The type of the event that makes a read-only store writable again.
pub const STORE_WRITABLE_EVENT_TYPE: &str = "$store-writable";

/// The type of the event a store copy writes into the new store once it has copied
/// everything up to its source's read-only marker: the proof that the new store
/// caught up and traffic may switch.
pub const STORE_CAUGHT_UP_EVENT_TYPE: &str = "$store-caught-up";

/// The metadata key a surgery's copy of an event carries: `"<revision>@<stream>"` of
/// the event it was copied from.
pub const MIGRATED_FROM_KEY: &str = "$migrated_from";

/// The system stream of notifications about subjects of personal data.
pub const SUBJECTS_STREAM: &str = "$subjects";

/// The type of the event that `forget` (eventfold-privacy) appends to
/// [`SUBJECTS_STREAM`] once a subject's key is destroyed: data `{"subject": "..."}`.
/// Consumers that keep copies of personal values drop that subject's copies when they
/// see it (the framework's projection runner calls `Projection::forget`).
pub const SUBJECT_FORGOTTEN_EVENT_TYPE: &str = "$subject-forgotten";

/// Checks a name a system write may use: a user stream name (see
/// [`validate_stream_name`]) or a system stream of [`SYSTEM_STREAM_PREFIXES`].
///
/// ```
/// use eventfold_core::validate_stored_stream_name;
/// assert!(validate_stored_stream_name("$schemas").is_ok());
/// assert!(validate_stored_stream_name("$all").is_err());
/// assert!(validate_stored_stream_name("order-1").is_ok());
/// ```
pub fn validate_stored_stream_name(name: &str) -> Result<()> {
    if SYSTEM_STREAM_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
        && name.len() <= STREAM_NAME_BYTES_MAX
        && !name.chars().any(char::is_control)
    {
        return Ok(());
    }
    validate_stream_name(name)
}

/// Checks that a user may write to `name`: not empty, at most
/// [`STREAM_NAME_BYTES_MAX`] bytes, no control characters, and not a system name
/// (names starting with `$` are reserved for eventfold).
pub fn validate_stream_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "is empty"
    } else if name.len() > STREAM_NAME_BYTES_MAX {
        "is longer than 1024 bytes"
    } else if name.starts_with('$') {
        "starts with '$', which is reserved for system streams"
    } else if name.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(Error::InvalidStreamName {
        name: name.chars().take(80).collect(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_version_parsing_names_the_bad_value() {
        let err = "later".parse::<ExpectedVersion>().unwrap_err();
        assert!(err.to_string().contains("later"), "{err}");
        assert_eq!(
            " stream_exists ".parse::<ExpectedVersion>().unwrap(),
            ExpectedVersion::StreamExists
        );
    }

    #[test]
    fn expected_version_satisfaction() {
        use ExpectedVersion::*;
        assert!(NoStream.is_satisfied_by(None));
        assert!(!NoStream.is_satisfied_by(Some(Revision(0))));
        assert!(!StreamExists.is_satisfied_by(None));
        assert!(StreamExists.is_satisfied_by(Some(Revision(3))));
        assert!(Exact(Revision(3)).is_satisfied_by(Some(Revision(3))));
        assert!(!Exact(Revision(3)).is_satisfied_by(Some(Revision(2))));
        assert!(!Exact(Revision(0)).is_satisfied_by(None));
        assert!(Any.is_satisfied_by(None));
    }

    #[test]
    fn stream_names_are_checked() {
        assert!(validate_stream_name("order-1").is_ok());
        assert!(validate_stream_name("").is_err());
        assert!(validate_stream_name("$all").is_err());
        assert!(validate_stream_name("a\nb").is_err());
        assert!(validate_stream_name(&"x".repeat(1025)).is_err());
    }
}
