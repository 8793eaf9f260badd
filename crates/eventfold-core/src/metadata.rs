//! Stream metadata and deletion, written once over the trait so every backend behaves
//! alike.
//!
//! - A stream's metadata is the last `$metadata` event of its metadata stream
//!   `$$<stream>`: retention (`max_count`, `max_age`, `truncate_before`), an ACL the
//!   server checks, and free-form `custom` values. Setting it appends a new event, so
//!   its history is kept and a writer can expect a metadata revision.
//! - A read applies it ([`read_visible`], the provided `EventStore::read_stream`):
//!   events before the first visible revision are hidden, and a stream with no
//!   visible event reads as not found. Hidden events stay on disk (and in `$all`)
//!   until a scavenge reclaims them.
//! - A soft delete sets `truncate_before` past the last event: the stream reads as
//!   not found, and an append recreates it, continuing the revisions.
//! - A hard delete appends, in one atomic append, a tombstone (an event of type
//!   [`TOMBSTONE_EVENT_TYPE`]) to the stream with the caller's expected version, and
//!   metadata marked `tombstoned`. The shared append decision (`plan.rs`) refuses
//!   every later append to a stream whose last event is a tombstone; reads see the
//!   mark and answer [`Error::StreamDeleted`].
//!
//! Metadata events and tombstones are appended as system writes
//! ([`StreamWrite::system`]): their types start with `$`, which a client write cannot
//! carry, so no client can forge either. A tombstone is recognised by its type alone;
//! its id is an ordinary new one, so no id a client chose can ever collide with it.
//!
//! A stream without metadata costs a read one lookup of `$$<stream>`'s revision.

use crate::error::{Error, Result};
use crate::event::{EventData, RecordedEvent};
use crate::index_stream::IndexStream;
use crate::store::{AppendResult, Direction, EventStore, ReadStream, StreamWrite, append_system};
use crate::stream::{ExpectedVersion, Position, Revision};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The prefix of metadata streams: the metadata of `order-1` lives in `$$order-1`.
pub const METADATA_STREAM_PREFIX: &str = "$$";

/// The type of the events of a metadata stream.
pub const METADATA_EVENT_TYPE: &str = "$metadata";

/// The type of the event a hard delete writes at the end of a stream.
pub const TOMBSTONE_EVENT_TYPE: &str = "$stream-deleted";

/// The metadata stream of `stream`.
///
/// ```
/// assert_eq!(eventfold_core::metadata_stream("order-1"), "$$order-1");
/// ```
pub fn metadata_stream(stream: &str) -> String {
    format!("{METADATA_STREAM_PREFIX}{stream}")
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

/// Reads the metadata of `stream` (empty when none was set).
pub async fn read_metadata<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
) -> Result<MetadataRecord> {
    let events = match store
        .read_stream_raw(&metadata_stream(stream), ReadStream::backward().limit(1))
        .await
    {
        Ok(events) => events,
        Err(Error::StreamNotFound { .. }) => return Ok(MetadataRecord::default()),
        Err(e) => return Err(e),
    };
    let Some(event) = events.into_iter().next() else {
        return Ok(MetadataRecord::default());
    };
    let metadata = serde_json::from_slice(&event.data).map_err(|e| Error::Corrupted {
        file: metadata_stream(stream),
        offset: event.position.get(),
        reason: format!("stored stream metadata is not valid: {e}"),
    })?;
    Ok(MetadataRecord {
        revision: Some(event.revision),
        metadata,
    })
}

/// Sets the metadata of `stream`, if its metadata stream matches `expected`. With
/// `any` (or `stream_exists`) the write expects the metadata revision it read, and is
/// retried when another writer got in between, so a hard delete's mark is never lost.
pub async fn write_metadata<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    expected: ExpectedVersion,
    metadata: &StreamMetadata,
) -> Result<AppendResult> {
    crate::stream::validate_stream_name(stream)?;
    let mut metadata = metadata.clone();
    metadata.tombstoned = false;
    for _ in 0..METADATA_RETRIES {
        let current = read_metadata(store, stream).await?;
        if current.metadata.tombstoned {
            return Err(deleted(stream));
        }
        let exact = match (expected, current.revision) {
            (ExpectedVersion::Any, _) => current.expected(),
            (ExpectedVersion::StreamExists, Some(revision)) => ExpectedVersion::Exact(revision),
            (other, _) => other,
        };
        let event = metadata_event(&metadata)?;
        match append_system(store, &metadata_stream(stream), exact, vec![event]).await {
            // Another writer changed the metadata between the read and the write.
            Err(Error::WrongExpectedVersion { .. }) if exact != expected => continue,
            other => return other,
        }
    }
    Err(Error::Backend(format!(
        "metadata of '{stream}' kept changing under {METADATA_RETRIES} attempts"
    )))
}

fn metadata_event(metadata: &StreamMetadata) -> Result<EventData> {
    EventData::json(METADATA_EVENT_TYPE, metadata).map_err(|e| Error::InvalidEvent {
        reason: format!("stream metadata cannot be encoded: {e}"),
    })
}

fn deleted(stream: &str) -> Error {
    Error::StreamDeleted {
        stream: stream.to_string(),
    }
}

/// Deletes `stream` if it matches `expected` (see the module documentation).
pub async fn delete<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    expected: ExpectedVersion,
    mode: DeleteMode,
) -> Result<DeleteResult> {
    crate::stream::validate_stream_name(stream)?;
    let Some(last) = store.stream_revision(stream).await? else {
        return Err(not_found(stream));
    };
    let mut record = read_metadata(store, stream).await?;
    if record.metadata.tombstoned {
        return Err(deleted(stream));
    }
    match mode {
        DeleteMode::Hard => {
            // One atomic append: the tombstone, checked against `expected` as the
            // stream is when it is written, and the mark reads look for. The mark's
            // write expects the metadata revision read, so a racing metadata write
            // makes the delete fail rather than lose the mark.
            record.metadata.tombstoned = true;
            let tombstone = EventData::from_json_bytes(TOMBSTONE_EVENT_TYPE, "{}")?;
            let written = store
                .append_multi(vec![
                    StreamWrite::system(stream, expected, vec![tombstone]),
                    StreamWrite::system(
                        metadata_stream(stream),
                        record.expected(),
                        vec![metadata_event(&record.metadata)?],
                    ),
                ])
                .await?;
            if written.len() != 2 {
                return Err(Error::Backend(format!(
                    "the store answered an append to two streams with {} results",
                    written.len()
                )));
            }
            Ok(DeleteResult {
                last_revision: Revision(written[0].first_revision.get().saturating_sub(1)),
                position: written[0].position,
            })
        }
        DeleteMode::Soft => {
            if !expected.is_satisfied_by(Some(last)) {
                return Err(Error::WrongExpectedVersion {
                    stream: stream.to_string(),
                    expected,
                    actual: Some(last),
                });
            }
            // Hides exactly what the deleter saw: an append racing with the delete
            // lands after `last` and stays visible, so nothing acknowledged vanishes
            // unseen.
            let mut metadata = record.metadata;
            metadata.truncate_before = Some(last.next());
            let written = write_metadata(store, stream, ExpectedVersion::Any, &metadata).await?;
            Ok(DeleteResult {
                last_revision: last,
                position: written.position,
            })
        }
    }
}

const METADATA_RETRIES: usize = 8;

fn not_found(stream: &str) -> Error {
    Error::StreamNotFound {
        stream: stream.to_string(),
    }
}

/// Reads `stream` as its metadata allows: the provided `EventStore::read_stream`.
///
/// Index streams and system streams are read as stored. A stream whose last event is
/// a tombstone fails with [`Error::StreamDeleted`]; one with no visible event fails
/// with [`Error::StreamNotFound`].
pub async fn read_visible<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    options: ReadStream,
) -> Result<Vec<RecordedEvent>> {
    if stream.starts_with('$') || IndexStream::parse(stream).is_some() {
        return store.read_stream_raw(stream, options).await;
    }
    if store
        .stream_revision(&metadata_stream(stream))
        .await?
        .is_none()
    {
        return store.read_stream_raw(stream, options).await;
    }
    let metadata = read_metadata(store, stream).await?.metadata;
    if metadata.tombstoned {
        return Err(deleted(stream));
    }
    let Some(last) = store.stream_revision(stream).await? else {
        return Err(not_found(stream));
    };
    let len = last.get() + 1;
    let first = first_visible(store, stream, &metadata, len, Utc::now()).await?;
    if first >= len {
        return Err(not_found(stream));
    }
    if first == 0 {
        return store.read_stream_raw(stream, options).await;
    }
    let clipped = match options.direction {
        // A forward read from a hidden revision starts at the first visible one.
        Direction::Forward => ReadStream {
            from: Some(Revision(options.from.map_or(0, Revision::get).max(first))),
            ..options
        },
        // A backward read stops at it.
        Direction::Backward => {
            let wanted = options.revisions(len);
            let range = wanted.start.max(first)..wanted.end;
            if range.is_empty() {
                return Ok(Vec::new());
            }
            ReadStream::backward()
                .from(Revision(range.end - 1))
                .limit(range.end - range.start)
        }
    };
    store.read_stream_raw(stream, clipped).await
}

/// The first revision the metadata leaves visible in a stream of `len` events.
async fn first_visible<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    metadata: &StreamMetadata,
    len: u64,
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut first = metadata.truncate_before.map_or(0, Revision::get).min(len);
    if let Some(max_count) = metadata.max_count {
        first = first.max(len.saturating_sub(max_count));
    }
    if let Some(max_age) = metadata.max_age
        && first < len
    {
        let cutoff = now - chrono::Duration::seconds(i64::try_from(max_age).unwrap_or(i64::MAX));
        let mut low = first;
        let mut high = len;
        // Events are recorded in time order within a stream: the first one recorded
        // at or after the cutoff is found by bisection, one event read per step.
        while low < high {
            let mid = low + (high - low) / 2;
            let event = store
                .read_stream_raw(stream, ReadStream::forward().from(Revision(mid)).limit(1))
                .await?;
            match event.first() {
                Some(event) if event.recorded_at < cutoff => low = mid + 1,
                _ => high = mid,
            }
        }
        first = low;
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InMemoryStore;

    fn event(n: u64) -> EventData {
        EventData::json("Counted", &serde_json::json!({ "n": n })).expect("event")
    }

    async fn stream_of(store: &InMemoryStore, stream: &str, count: u64) {
        let events = (0..count).map(event).collect();
        store
            .append(stream, ExpectedVersion::Any, events)
            .await
            .expect("append");
    }

    fn revisions(events: &[RecordedEvent]) -> Vec<u64> {
        events.iter().map(|e| e.revision.get()).collect()
    }

    #[tokio::test]
    async fn max_age_hides_exactly_the_events_recorded_before_the_cutoff() {
        let store = InMemoryStore::new();
        stream_of(&store, "s", 5).await;
        let metadata = StreamMetadata {
            max_age: Some(60),
            ..StreamMetadata::default()
        };
        let recorded = store
            .read_stream_raw("s", ReadStream::forward())
            .await
            .expect("read");
        let at = recorded[0].recorded_at;
        // Seen from a minute after the append, nothing has expired yet...
        let fresh = first_visible(
            &store,
            "s",
            &metadata,
            5,
            at + chrono::Duration::seconds(59),
        );
        assert_eq!(fresh.await.expect("first visible"), 0);
        // ...and seen from later, everything has.
        let stale = first_visible(
            &store,
            "s",
            &metadata,
            5,
            at + chrono::Duration::seconds(61),
        );
        assert_eq!(stale.await.expect("first visible"), 5);
    }

    #[tokio::test]
    async fn max_count_and_truncate_before_combine_by_hiding_the_most() {
        let store = InMemoryStore::new();
        stream_of(&store, "s", 10).await;
        let metadata = StreamMetadata {
            max_count: Some(4),
            truncate_before: Some(Revision(3)),
            ..StreamMetadata::default()
        };
        write_metadata(&store, "s", ExpectedVersion::NoStream, &metadata)
            .await
            .expect("metadata");
        let forward = store
            .read_stream("s", ReadStream::forward())
            .await
            .expect("read");
        assert_eq!(revisions(&forward), vec![6, 7, 8, 9]);
        let backward = store
            .read_stream("s", ReadStream::backward().limit(10))
            .await
            .expect("read");
        assert_eq!(revisions(&backward), vec![9, 8, 7, 6]);
        let from_two = store
            .read_stream("s", ReadStream::forward().from(Revision(2)).limit(2))
            .await
            .expect("read");
        assert_eq!(revisions(&from_two), vec![6, 7]);
        let backward_from_five = store
            .read_stream("s", ReadStream::backward().from(Revision(5)))
            .await
            .expect("read");
        assert!(backward_from_five.is_empty(), "{backward_from_five:?}");
    }
}
