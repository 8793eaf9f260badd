//! Scavenge on PostgreSQL: the rows of the events that metadata hides are deleted (a
//! stream whose every event is hidden keeps its last row, hollowed), the rest keep
//! their positions, revisions and ids, revisions continue after a soft delete, a hard
//! delete still refuses appends, and a second run finds nothing. Needs
//! `EVENTFOLD_TEST_POSTGRES_URL`.

mod common;

use eventfold_core::{
    EventData, EventStore, ExpectedVersion, LayerExt, Position, ReadAll, ReadStream, Revision,
};
use eventfold_metadata::{DeleteMode, MetadataLayer, StreamAdmin, StreamMetadata};

use common::{TestSchema, database_url, runtime};

fn marked(marker: &str, n: u64) -> EventData {
    EventData::json(
        "Marked",
        &serde_json::json!({"marker": format!("{marker}-{n}")}),
    )
    .expect("event")
}

#[test]
fn scavenge_deletes_exactly_the_hidden_rows() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let store = std::sync::Arc::new(schema.store().await);
        for (stream, marker) in [
            ("trimmed-1", "trim"),
            ("soft-1", "soft"),
            ("hard-1", "hard"),
            ("kept-1", "kept"),
        ] {
            let events = (0..5).map(|n| marked(marker, n)).collect();
            store
                .append(stream, ExpectedVersion::NoStream, events)
                .await
                .expect("append");
        }
        let metadata = StreamMetadata {
            max_count: Some(2),
            ..StreamMetadata::default()
        };
        store
            .set_stream_metadata("trimmed-1", ExpectedVersion::Any, metadata)
            .await
            .expect("metadata");
        store
            .delete_stream("soft-1", ExpectedVersion::Any, DeleteMode::Soft)
            .await
            .expect("soft delete");
        store
            .delete_stream("hard-1", ExpectedVersion::Any, DeleteMode::Hard)
            .await
            .expect("hard delete");
        let before = store
            .read_all(ReadAll::from(Position(0), 1_000))
            .await
            .expect("read $all");

        let dry = eventfold_metadata::scavenge(store.as_ref(), store.as_ref(), true)
            .await
            .expect("dry run");
        // trimmed-1: revisions 0..3; soft-1: 0..4 deleted and 4 hollowed; hard-1:
        // its five events (the tombstone at 5 stays).
        assert_eq!(dry.events_removed, 3 + 5 + 5, "{dry:?}");
        let unchanged = store
            .read_all(ReadAll::from(Position(0), 1_000))
            .await
            .expect("read $all");
        assert_eq!(unchanged.events.len(), before.events.len(), "a dry run changes nothing");

        let done = eventfold_metadata::scavenge(store.as_ref(), store.as_ref(), false)
            .await
            .expect("scavenge");
        assert_eq!(done.events_removed, dry.events_removed, "{done:?}");
        assert!(done.bytes_reclaimed() > 0, "{done:?}");

        // No removed marker is left in any row.
        let client = schema.client().await;
        for marker in ["trim-0", "trim-1", "trim-2", "soft-0", "soft-4", "hard-0", "hard-4"] {
            let rows: i64 = client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {}.events WHERE strpos(convert_from(data, 'UTF8'), $1) > 0",
                        schema.name
                    ),
                    &[&marker],
                )
                .await
                .expect("search")
                .get(0);
            assert_eq!(rows, 0, "{marker} is gone");
        }
        let nothing = eventfold_metadata::scavenge(store.as_ref(), store.as_ref(), false)
            .await
            .expect("a run with nothing left");
        assert_eq!(nothing.events_removed, 0, "{nothing:?}");
        // The survivors keep their positions, revisions and ids.
        let after = store
            .read_all(ReadAll::from(Position(0), 1_000))
            .await
            .expect("read $all");
        for event in &after.events {
            let original = before
                .events
                .iter()
                .find(|e| e.position == event.position)
                .expect("a survivor was there before");
            assert_eq!((&original.stream, original.revision, original.id), (&event.stream, event.revision, event.id));
        }
        let layered = store.clone().layer(MetadataLayer);
        let trimmed = layered
            .read_stream("trimmed-1", ReadStream::forward())
            .await
            .expect("read");
        assert_eq!(
            trimmed.iter().map(|e| e.revision.get()).collect::<Vec<_>>(),
            vec![3, 4]
        );
        let kept = store.read_stream("kept-1", ReadStream::forward()).await.expect("read");
        assert_eq!(kept.len(), 5);
        // The soft-deleted stream continues at its next revision; the hard-deleted one
        // still refuses appends.
        assert_eq!(
            store.stream_revision("soft-1").await.expect("revision"),
            Some(Revision(4))
        );
        let next = store
            .append("soft-1", ExpectedVersion::Exact(Revision(4)), vec![marked("soft", 5)])
            .await
            .expect("append after a soft delete");
        assert_eq!(next.first_revision, Revision(5));
        assert!(
            store
                .append("hard-1", ExpectedVersion::Any, vec![marked("hard", 9)])
                .await
                .is_err(),
            "a hard-deleted stream stays deleted"
        );
        // The hollowed row kept soft-1's revision while it was its last; now that the
        // stream goes on, it goes too, and then nothing is left to remove.
        let again = eventfold_metadata::scavenge(store.as_ref(), store.as_ref(), false)
            .await
            .expect("second run");
        assert_eq!(again.events_removed, 1, "{again:?}");
        let last = eventfold_metadata::scavenge(store.as_ref(), store.as_ref(), false)
            .await
            .expect("third run");
        assert_eq!(last.events_removed, 0, "{last:?}");
    });
}
