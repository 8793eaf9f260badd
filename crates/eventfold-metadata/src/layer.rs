//! The metadata layer: reads of a stream as its metadata allows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use eventfold_core::{
    Direction, EventStore, LINK_EVENT_TYPE, ReadStream, RecordedEvent, Result, Revision,
    StoreLayer, StreamWrite, category_of,
};

use crate::admin::{deleted, not_found, read_metadata};
use crate::links::{check_references, resolve_links};
use crate::types::{StreamMetadata, metadata_stream};

/// Applies each stream's metadata to reads of it, and resolves links: events before the first visible
/// revision (`truncate_before`, `max_count`, `max_age`; for a stream with no metadata of
/// its own, its category's default retention) are hidden, a stream with no
/// visible event reads as not found, and a hard-deleted one as deleted. System streams
/// and index streams are read as stored. Over a store that forwards to a server
/// ([`EventStore::remote_admin`]) reads pass through: the server applies the metadata.
///
/// Put it right over the backend: `LogStore::open(..)?.layer(MetadataLayer)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetadataLayer;

#[async_trait]
impl StoreLayer for MetadataLayer {
    async fn read_stream<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        stream: &str,
        options: ReadStream,
    ) -> Result<Vec<RecordedEvent>> {
        if inner.remote_admin().is_some() {
            return inner.read_stream(stream, options).await;
        }
        let events = read_visible(inner, stream, options).await?;
        // Index streams hold the links and their originals both: shown as stored.
        if !options.resolve_links
            || stream.starts_with('$')
            || !events.iter().any(|e| e.event_type == LINK_EVENT_TYPE)
        {
            return Ok(events);
        }
        resolve_links(inner, events).await
    }

    async fn before_append<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        writes: Vec<StreamWrite>,
    ) -> Result<Vec<StreamWrite>> {
        if inner.remote_admin().is_none() {
            check_references(inner, &writes).await?;
        }
        Ok(writes)
    }
}

/// Reads `stream` of `store` (as stored) as its metadata allows.
///
/// Index streams and system streams are read as stored. A stream whose last event is
/// a tombstone fails with [`eventfold_core::Error::StreamDeleted`]; one with no visible event fails
/// with [`eventfold_core::Error::StreamNotFound`].
pub(crate) async fn read_visible<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    options: ReadStream,
) -> Result<Vec<RecordedEvent>> {
    if stream.starts_with('$') || eventfold_core::IndexStream::parse(stream).is_some() {
        return store.read_stream(stream, options).await;
    }
    let metadata = if store
        .stream_revision(&metadata_stream(stream))
        .await?
        .is_some()
    {
        read_metadata(store, stream).await?.metadata
    } else {
        match category_defaults(store, stream).await? {
            Some(defaults) => defaults,
            None => return store.read_stream(stream, options).await,
        }
    };
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
        return store.read_stream(stream, options).await;
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
    store.read_stream(stream, clipped).await
}

/// The default retention of `stream`'s category (the metadata of `$ce-<category>`),
/// when one was set.
async fn category_defaults<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
) -> Result<Option<StreamMetadata>> {
    let category_stream = format!("$ce-{}", category_of(stream));
    if store
        .stream_revision(&metadata_stream(&category_stream))
        .await?
        .is_none()
    {
        return Ok(None);
    }
    Ok(Some(read_metadata(store, &category_stream).await?.metadata))
}

/// The first revision the metadata leaves visible in a stream of `len` events.
pub(crate) async fn first_visible<S: EventStore + ?Sized>(
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
                .read_stream(stream, ReadStream::forward().from(Revision(mid)).limit(1))
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
    use crate::StreamAdmin;
    use eventfold_core::{EventData, ExpectedVersion, InMemoryStore, LayerExt};

    fn event(n: u64) -> EventData {
        EventData::json("Counted", &serde_json::json!({ "n": n })).expect("event")
    }

    async fn stream_of(store: &impl EventStore, stream: &str, count: u64) {
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
            .read_stream("s", ReadStream::forward())
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
        let store = InMemoryStore::new().layer(MetadataLayer);
        stream_of(&store, "s", 10).await;
        let metadata = StreamMetadata {
            max_count: Some(4),
            truncate_before: Some(Revision(3)),
            ..StreamMetadata::default()
        };
        store
            .set_stream_metadata("s", ExpectedVersion::NoStream, metadata)
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

    #[tokio::test]
    async fn a_category_default_keeps_the_newest_events_of_streams_without_metadata() {
        let store = InMemoryStore::new().layer(MetadataLayer);
        for stream in ["log", "log-1", "log-2", "logger-1"] {
            stream_of(&store, stream, 5).await;
        }
        let keep_two = StreamMetadata {
            max_count: Some(2),
            ..StreamMetadata::default()
        };
        store
            .set_stream_metadata("$ce-log", ExpectedVersion::NoStream, keep_two)
            .await
            .expect("category metadata");
        // log-2 has metadata of its own, which replaces the defaults whole.
        let own = StreamMetadata {
            custom: serde_json::Map::from_iter([("owner".into(), "ops".into())]),
            ..StreamMetadata::default()
        };
        store
            .set_stream_metadata("log-2", ExpectedVersion::NoStream, own)
            .await
            .expect("own metadata");

        let read = |stream: &'static str| {
            let store = &store;
            async move {
                revisions(
                    &store
                        .read_stream(stream, ReadStream::forward())
                        .await
                        .expect("read"),
                )
            }
        };
        assert_eq!(read("log").await, vec![3, 4]);
        assert_eq!(read("log-1").await, vec![3, 4]);
        assert_eq!(read("log-2").await, vec![0, 1, 2, 3, 4]);
        assert_eq!(
            read("logger-1").await,
            vec![0, 1, 2, 3, 4],
            "another category"
        );

        let cuts = crate::retention_cuts(store.inner(), Utc::now())
            .await
            .expect("cuts");
        let mut listed: Vec<(&str, u64)> = cuts.iter().collect();
        listed.sort_unstable();
        assert_eq!(listed, vec![("log", 3), ("log-1", 3)]);
    }

    #[tokio::test]
    async fn a_category_default_carries_retention_only_and_names_a_category() {
        let store = InMemoryStore::new().layer(MetadataLayer);
        let acl = StreamMetadata {
            max_age: Some(60),
            truncate_before: Some(Revision(1)),
            acl: Some(crate::StreamAcl::default()),
            ..StreamMetadata::default()
        };
        let error = store
            .set_stream_metadata("$ce-log", ExpectedVersion::Any, acl)
            .await
            .expect_err("refused");
        let message = error.to_string();
        assert!(
            message.contains("only max_count and max_age")
                && message.contains("truncate_before, acl"),
            "{message}"
        );
        for name in ["$ce-log-1", "$et-Counted", "$ce-$x"] {
            let error = store
                .set_stream_metadata(name, ExpectedVersion::Any, StreamMetadata::default())
                .await
                .expect_err(name);
            assert!(
                matches!(error, eventfold_core::Error::InvalidStreamName { .. }),
                "{name}: {error}"
            );
        }
    }
}
