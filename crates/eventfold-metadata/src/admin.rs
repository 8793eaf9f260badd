//! Reading and changing a stream's metadata, and deleting streams, on any store: the
//! [`StreamAdmin`] extension trait. On a store that holds its events, the calls write
//! system events (`$metadata` in `$$<stream>`, the tombstone) through the store
//! itself; on a store that forwards to a server ([`EventStore::remote_admin`]), they
//! are the server's own admin calls, and the server's metadata layer writes them.

use async_trait::async_trait;
use bytes::Bytes;
use eventfold_core::{
    AppendResult, Error, EventData, EventStore, ExpectedVersion, ReadStream, RemoteAdmin, Result,
    Revision, StreamWrite, TOMBSTONE_EVENT_TYPE, append_system,
};

use crate::types::{
    DeleteMode, DeleteResult, METADATA_EVENT_TYPE, MetadataRecord, StreamMetadata,
    defaults_category, metadata_stream, validate_metadata_target,
};

/// Stream metadata and deletion, for every store (`use eventfold_metadata::StreamAdmin`
/// and call them on any `EventStore`). Reads of a stream apply what its metadata says
/// only through the [`MetadataLayer`](crate::MetadataLayer).
///
/// ```
/// use eventfold_core::{EventData, EventStore, ExpectedVersion, InMemoryStore, LayerExt, ReadStream};
/// use eventfold_metadata::{DeleteMode, MetadataLayer, StreamAdmin, StreamMetadata};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = InMemoryStore::new().layer(MetadataLayer);
/// let events = (0..5).map(|n| EventData::json("Counted", &n).unwrap()).collect();
/// store.append("count-1", ExpectedVersion::Any, events).await.unwrap();
/// let keep_two = StreamMetadata { max_count: Some(2), ..StreamMetadata::default() };
/// store.set_stream_metadata("count-1", ExpectedVersion::NoStream, keep_two).await.unwrap();
/// assert_eq!(store.read_stream("count-1", ReadStream::forward()).await.unwrap().len(), 2);
///
/// store.delete_stream("count-1", ExpectedVersion::Any, DeleteMode::Soft).await.unwrap();
/// assert!(store.read_stream("count-1", ReadStream::forward()).await.is_err());
/// # });
/// ```
#[async_trait]
pub trait StreamAdmin: EventStore {
    /// The stream's metadata (empty when none was set).
    async fn stream_metadata(&self, stream: &str) -> Result<MetadataRecord> {
        match self.remote_admin() {
            Some(remote) => remote_metadata(remote, stream).await,
            None => read_metadata(self, stream).await,
        }
    }

    /// Replaces the stream's metadata, if its metadata revision matches `expected`.
    /// With `any` (or `stream_exists`) the write expects the metadata revision it read,
    /// and is retried when another writer got in between, so a hard delete's mark is
    /// never lost.
    async fn set_stream_metadata(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        metadata: StreamMetadata,
    ) -> Result<AppendResult> {
        match self.remote_admin() {
            Some(remote) => {
                let document = serde_json::to_vec(&metadata).map_err(|e| Error::InvalidEvent {
                    reason: format!("stream metadata cannot be encoded: {e}"),
                })?;
                remote
                    .set_metadata(stream, expected, Bytes::from(document))
                    .await
            }
            None => write_metadata(self, stream, expected, &metadata).await,
        }
    }

    /// Deletes the stream if it matches `expected`: a soft delete hides its events (an
    /// append recreates it), a hard delete writes a tombstone (no append ever again).
    async fn delete_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        mode: DeleteMode,
    ) -> Result<DeleteResult> {
        match self.remote_admin() {
            Some(remote) => {
                let deleted = remote
                    .delete(stream, expected, mode == DeleteMode::Hard)
                    .await?;
                Ok(DeleteResult {
                    last_revision: deleted.last_revision,
                    position: deleted.position,
                })
            }
            None => delete(self, stream, expected, mode).await,
        }
    }
}

impl<S: EventStore + ?Sized> StreamAdmin for S {}

/// The metadata a server holds, read through its admin call.
async fn remote_metadata(remote: &dyn RemoteAdmin, stream: &str) -> Result<MetadataRecord> {
    let held = remote.metadata(stream).await?;
    let metadata = serde_json::from_slice(&held.document).map_err(|e| {
        Error::Backend(format!(
            "the server sent metadata of '{stream}' that is not valid: {e}"
        ))
    })?;
    Ok(MetadataRecord {
        revision: held.revision,
        metadata,
    })
}

/// Reads the metadata of `stream` (empty when none was set).
pub(crate) async fn read_metadata<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
) -> Result<MetadataRecord> {
    let events = match store
        .read_stream(&metadata_stream(stream), ReadStream::backward().limit(1))
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
async fn write_metadata<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    expected: ExpectedVersion,
    metadata: &StreamMetadata,
) -> Result<AppendResult> {
    validate_metadata_target(stream)?;
    if let Some(category) = defaults_category(stream) {
        metadata.check_category_defaults(category)?;
    }
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

pub(crate) fn deleted(stream: &str) -> Error {
    Error::StreamDeleted {
        stream: stream.to_string(),
    }
}

/// Deletes `stream` if it matches `expected` (see the crate documentation).
async fn delete<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    expected: ExpectedVersion,
    mode: DeleteMode,
) -> Result<DeleteResult> {
    eventfold_core::validate_stream_name(stream)?;
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

pub(crate) fn not_found(stream: &str) -> Error {
    Error::StreamNotFound {
        stream: stream.to_string(),
    }
}
