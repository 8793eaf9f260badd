//! Events that point at other events: links resolved on read, and the check that a
//! compensation or a link points at an event that exists.

use eventfold_core::{
    EventStore, LINK_EVENT_TYPE, LINKED_EVENT_KEY, ReadStream, RecordedEvent, Result, StreamWrite,
    referenced_event,
};

use crate::layer::read_visible;

/// `events` (a read of one stream) with each link replaced by the event it points at,
/// as a read of the original's stream shows it (retention, deletion, personal values
/// as the layers below apply them). A link whose original is no longer visible
/// (truncated, deleted, scavenged) is returned as written, so the reader sees where
/// it pointed.
pub(crate) async fn resolve_links<S: EventStore + ?Sized>(
    store: &S,
    events: Vec<RecordedEvent>,
) -> Result<Vec<RecordedEvent>> {
    let mut resolved = Vec::with_capacity(events.len());
    for event in events {
        if event.event_type != LINK_EVENT_TYPE {
            resolved.push(event);
            continue;
        }
        let original = match referenced_event(&event.event_type, &event.data) {
            Ok(Some(at)) => original_of(store, &at).await?,
            // A link written before its data was checked is shown as written.
            Ok(None) | Err(_) => None,
        };
        resolved.push(match original {
            Some(original) => in_place_of(&event, original),
            None => event,
        });
    }
    Ok(resolved)
}

/// The event at `at` as a read of its stream shows it, if that read shows it.
async fn original_of<S: EventStore + ?Sized>(
    store: &S,
    at: &eventfold_core::EventRef,
) -> Result<Option<RecordedEvent>> {
    let read = ReadStream::forward()
        .from(at.revision)
        .limit(1)
        .links_as_written();
    match read_visible(store, &at.stream, read).await {
        Ok(events) => Ok(events.into_iter().find(|e| e.revision == at.revision)),
        Err(
            eventfold_core::Error::StreamNotFound { .. }
            | eventfold_core::Error::StreamDeleted { .. },
        ) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `original` standing where `link` was read: the link's stream, revision and
/// position (so a reader pages on as through any read), the original's everything
/// else, with [`LINKED_EVENT_KEY`] naming where the original is.
fn in_place_of(link: &RecordedEvent, original: RecordedEvent) -> RecordedEvent {
    let mut metadata = if original.metadata.is_empty() {
        serde_json::Map::new()
    } else {
        serde_json::from_slice(&original.metadata).unwrap_or_default()
    };
    metadata.insert(
        LINKED_EVENT_KEY.into(),
        format!("{}@{}", original.revision.get(), original.stream).into(),
    );
    RecordedEvent {
        stream: link.stream.clone(),
        revision: link.revision,
        position: link.position,
        metadata: serde_json::Value::Object(metadata)
            .to_string()
            .into_bytes()
            .into(),
        ..original
    }
}

/// Refuses an append holding a compensation or a link that points at an event that
/// does not exist, or at one of eventfold's own events (a link, a compensation, a
/// marker): only an application's events are cancelled, corrected or linked.
pub(crate) async fn check_references<S: EventStore + ?Sized>(
    store: &S,
    writes: &[StreamWrite],
) -> Result<()> {
    for event in writes.iter().flat_map(|w| &w.events) {
        let Some(at) = referenced_event(&event.event_type, &event.data)? else {
            continue;
        };
        let read = ReadStream::forward()
            .from(at.revision)
            .limit(1)
            .links_as_written();
        let target = match store.read_stream(&at.stream, read).await {
            Ok(events) => events.into_iter().find(|e| e.revision == at.revision),
            Err(eventfold_core::Error::StreamNotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let problem = match target {
            None => "which does not exist".to_string(),
            Some(target) if target.event_type.starts_with('$') => format!(
                "which is a {} event: only an application's own events are cancelled, corrected or linked",
                target.event_type
            ),
            Some(_) => continue,
        };
        return Err(eventfold_core::Error::InvalidEvent {
            reason: format!("the {} event points at {at}, {problem}", event.event_type),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MetadataLayer, StreamAdmin, StreamMetadata};
    use eventfold_core::{
        CANCELLED_EVENT_TYPE, EventData, ExpectedVersion, InMemoryStore, LayerExt, Revision,
    };
    use serde_json::json;

    fn pointing(kind: &str, at: &str) -> EventData {
        EventData::json(kind, &json!({ "event": at })).expect("event")
    }

    async fn append(store: &impl EventStore, stream: &str, events: Vec<EventData>) {
        store
            .append(stream, ExpectedVersion::Any, events)
            .await
            .expect("append");
    }

    #[tokio::test]
    async fn a_read_returns_the_original_in_place_of_its_link_unless_asked_for_the_link() {
        let store = InMemoryStore::new().layer(MetadataLayer);
        let placed = EventData::json("Placed", &json!({"total": 5})).expect("event");
        append(&store, "order-1", vec![placed.clone(), placed]).await;
        append(
            &store,
            "all-orders",
            vec![pointing(LINK_EVENT_TYPE, "1@order-1")],
        )
        .await;

        let read = store
            .read_stream("all-orders", ReadStream::forward())
            .await
            .expect("read");
        let original = &store
            .read_stream("order-1", ReadStream::forward())
            .await
            .expect("read")[1];
        assert_eq!(read.len(), 1);
        let resolved = &read[0];
        assert_eq!(
            (resolved.stream.as_str(), resolved.revision),
            ("all-orders", Revision(0))
        );
        assert_eq!(resolved.event_type, "Placed");
        assert_eq!(resolved.id, original.id);
        assert_eq!(resolved.data, original.data);
        let metadata: serde_json::Value =
            serde_json::from_slice(&resolved.metadata).expect("metadata");
        assert_eq!(metadata[LINKED_EVENT_KEY], "1@order-1");

        let as_written = store
            .read_stream("all-orders", ReadStream::forward().links_as_written())
            .await
            .expect("read");
        assert_eq!(as_written[0].event_type, LINK_EVENT_TYPE);
    }

    #[tokio::test]
    async fn a_link_to_a_hidden_event_reads_as_the_link() {
        let store = InMemoryStore::new().layer(MetadataLayer);
        let noted = EventData::json("Noted", &json!({})).expect("event");
        append(&store, "notes", vec![noted.clone(), noted]).await;
        append(&store, "picked", vec![pointing(LINK_EVENT_TYPE, "0@notes")]).await;
        let hide_first = StreamMetadata {
            truncate_before: Some(Revision(1)),
            ..StreamMetadata::default()
        };
        store
            .set_stream_metadata("notes", ExpectedVersion::NoStream, hide_first)
            .await
            .expect("metadata");
        let read = store
            .read_stream("picked", ReadStream::forward())
            .await
            .expect("read");
        assert_eq!(read[0].event_type, LINK_EVENT_TYPE, "{read:?}");
    }

    #[tokio::test]
    async fn compensations_and_links_must_point_at_an_application_event_that_exists() {
        let store = InMemoryStore::new().layer(MetadataLayer);
        let noted = EventData::json("Noted", &json!({})).expect("event");
        append(&store, "notes", vec![noted]).await;
        append(
            &store,
            "notes",
            vec![pointing(CANCELLED_EVENT_TYPE, "0@notes")],
        )
        .await;

        for (event, problem) in [
            (
                pointing(CANCELLED_EVENT_TYPE, "5@notes"),
                "5@notes, which does not exist",
            ),
            (
                pointing(LINK_EVENT_TYPE, "0@nowhere"),
                "0@nowhere, which does not exist",
            ),
            (
                pointing(LINK_EVENT_TYPE, "1@notes"),
                "which is a $cancelled event",
            ),
        ] {
            let err = store
                .append("other", ExpectedVersion::Any, vec![event])
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(problem), "{err}");
        }
        assert!(!store.stream_exists("other").await.expect("exists"));
        // Other `$` types stay eventfold's own.
        let err = store
            .append(
                "other",
                ExpectedVersion::Any,
                vec![pointing("$stream-moved-to", "0@notes")],
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
    }
}
