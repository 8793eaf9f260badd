//! What a stream's metadata says, and the names of the streams and events that hold it.

use eventfold_core::{Error, ExpectedVersion, IndexStream, Position, Result, Revision};
use serde::{Deserialize, Serialize};

/// The prefix of metadata streams: the metadata of `order-1` lives in `$$order-1`.
pub const METADATA_STREAM_PREFIX: &str = "$$";

/// The type of the events of a metadata stream.
pub const METADATA_EVENT_TYPE: &str = "$metadata";

/// The metadata stream of `stream`.
///
/// ```
/// assert_eq!(eventfold_metadata::metadata_stream("order-1"), "$$order-1");
/// ```
pub fn metadata_stream(stream: &str) -> String {
    format!("{METADATA_STREAM_PREFIX}{stream}")
}

/// The category whose default retention `stream` holds, when `stream` is the category
/// stream `$ce-<category>`: its metadata (`max_count`, `max_age` only) applies to every
/// stream of the category that has no metadata of its own.
///
/// ```
/// assert_eq!(eventfold_metadata::defaults_category("$ce-_command"), Some("_command"));
/// assert_eq!(eventfold_metadata::defaults_category("order-1"), None);
/// ```
pub fn defaults_category(stream: &str) -> Option<&str> {
    match IndexStream::parse(stream) {
        Some(IndexStream::Category(_)) => stream.strip_prefix("$ce-"),
        _ => None,
    }
}

/// Refuses a name whose metadata cannot be set: metadata belongs to a user stream, or
/// to a category stream `$ce-<category>` (the category's defaults).
///
/// ```
/// use eventfold_metadata::validate_metadata_target;
/// assert!(validate_metadata_target("order-1").is_ok());
/// assert!(validate_metadata_target("$ce-order").is_ok());
/// assert!(validate_metadata_target("$ce-order-1").is_err());
/// assert!(validate_metadata_target("$et-OrderPlaced").is_err());
/// ```
pub fn validate_metadata_target(stream: &str) -> Result<()> {
    let Some(category) = defaults_category(stream) else {
        return eventfold_core::validate_stream_name(stream);
    };
    eventfold_core::validate_stream_name(category)?;
    if category.contains('-') {
        return Err(Error::InvalidStreamName {
            name: stream.chars().take(80).collect(),
            reason: "names no category: a stream's category is its name up to the first '-'",
        });
    }
    Ok(())
}

/// What a stream's metadata says. Every field is optional; an empty metadata changes
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamMetadata {
    /// Keep only the newest `max_count` events visible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
    /// Hide events recorded more than `max_age` seconds ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    /// Hide events before this revision (a soft delete sets it past the last event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_before: Option<Revision>,
    /// Who may do what with the stream; `None` leaves the server's default ACL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<StreamAcl>,
    /// Values of the user's own, kept as given.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub custom: serde_json::Map<String, serde_json::Value>,
    /// Set by a hard delete, and kept by every later metadata write whatever it says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tombstoned: bool,
}

impl StreamMetadata {
    /// Refuses, naming them, the fields that a category's defaults cannot carry: a
    /// category stream sets the retention of its streams (`max_count`, `max_age`), not
    /// their revisions, their access or values of their own.
    pub(crate) fn check_category_defaults(&self, category: &str) -> Result<()> {
        let refused: Vec<&str> = [
            ("truncate_before", self.truncate_before.is_some()),
            ("acl", self.acl.is_some()),
            ("custom", !self.custom.is_empty()),
        ]
        .into_iter()
        .filter_map(|(field, set)| set.then_some(field))
        .collect();
        if refused.is_empty() {
            return Ok(());
        }
        Err(Error::InvalidEvent {
            reason: format!(
                "the metadata of $ce-{category} is the default retention of the category's \
                 streams: only max_count and max_age are allowed, not {}",
                refused.join(", ")
            ),
        })
    }
}

/// The roles allowed each kind of access to a stream. A missing entry falls back to
/// the server's default for that access; `"$all"` in a list lets every authenticated
/// user in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamAcl {
    /// Who may read the stream's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<Vec<String>>,
    /// Who may append to the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<Vec<String>>,
    /// Who may delete the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<Vec<String>>,
    /// Who may read and change the stream's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Vec<String>>,
}

/// A stream's metadata with the revision of the metadata stream it was read at
/// (`None`: no metadata was ever set, and `metadata` is empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataRecord {
    /// Revision of the `$metadata` event in `$$<stream>`.
    pub revision: Option<Revision>,
    /// The metadata.
    pub metadata: StreamMetadata,
}

impl MetadataRecord {
    /// The expected version that holds for the metadata stream as read.
    pub fn expected(&self) -> ExpectedVersion {
        self.revision
            .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact)
    }
}

/// Soft delete (the stream can be recreated) or hard delete (a tombstone: never again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// Hide every event; a later append recreates the stream.
    #[default]
    Soft,
    /// Write a tombstone; the stream can never be written again.
    Hard,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResult {
    /// The stream's last revision before the delete (a hard delete's tombstone comes
    /// right after it).
    pub last_revision: Revision,
    /// Global position of the event the delete wrote (metadata or tombstone).
    pub position: Position,
}
