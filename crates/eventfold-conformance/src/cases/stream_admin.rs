//! Stream metadata and deletion: retention hides events from reads, a soft delete
//! hides a stream until it is written again, a hard delete ends it for good. These
//! cases need the store under test as users get it: under the metadata layer
//! (`eventfold-metadata`), which applies metadata to reads.

use eventfold_core::{
    EventStore, ExpectedVersion, ReadAll, ReadStream, RecordedEvent, Revision, StreamWrite,
    TOMBSTONE_EVENT_TYPE,
};
use eventfold_metadata::{DeleteMode, StreamAdmin, StreamMetadata};
use uuid::Uuid;

use crate::support::{
    assert_fresh, event, event_with_id, expect_code, expect_wrong_version, n_of, ok,
};

fn ns(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(n_of).collect()
}

async fn stream_of<S: EventStore + ?Sized>(store: &S, stream: &str, from: u64, to: u64) {
    let events = (from..to).map(|n| event("Counted", n)).collect();
    ok(
        "append",
        store.append(stream, ExpectedVersion::Any, events).await,
    );
}

/// Metadata round-trips with its revision, and a write with a stale expected
/// version is refused.
pub async fn stream_metadata_round_trips_with_expected_versions<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    stream_of(store, "meta-1", 0, 3).await;
    let none = ok("read metadata", store.stream_metadata("meta-1").await);
    assert_eq!(none.revision, None, "a stream starts without metadata");
    assert_eq!(none.metadata, StreamMetadata::default());

    let mut metadata = StreamMetadata {
        max_count: Some(10),
        ..StreamMetadata::default()
    };
    metadata
        .custom
        .insert("owner".into(), serde_json::json!("team-a"));
    ok(
        "set metadata",
        store
            .set_stream_metadata("meta-1", ExpectedVersion::NoStream, metadata.clone())
            .await,
    );
    let read = ok("read metadata", store.stream_metadata("meta-1").await);
    assert_eq!(read.revision, Some(Revision(0)));
    assert_eq!(read.metadata, metadata, "metadata reads back as written");

    expect_wrong_version(
        "a second metadata write expecting no metadata",
        store
            .set_stream_metadata("meta-1", ExpectedVersion::NoStream, metadata.clone())
            .await,
        "$$meta-1",
        ExpectedVersion::NoStream,
        Some(0),
    );
    ok(
        "metadata write expecting revision 0",
        store
            .set_stream_metadata("meta-1", ExpectedVersion::Exact(Revision(0)), metadata)
            .await,
    );
    let events = ok(
        "read",
        store.read_stream("meta-1", ReadStream::forward()).await,
    );
    assert_eq!(ns(&events), vec![0, 1, 2], "metadata writes add no events");
}

/// `max_count` and `truncate_before` hide the oldest events from every kind of read;
/// positions and revisions of what is visible are unchanged.
pub async fn retention_metadata_hides_old_events<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    stream_of(store, "kept-1", 0, 10).await;
    let metadata = StreamMetadata {
        max_count: Some(4),
        ..StreamMetadata::default()
    };
    ok(
        "set max_count",
        store
            .set_stream_metadata("kept-1", ExpectedVersion::Any, metadata)
            .await,
    );
    let read = |options: ReadStream| async move {
        ns(&ok("read", store.read_stream("kept-1", options).await))
    };
    assert_eq!(read(ReadStream::forward()).await, vec![6, 7, 8, 9]);
    assert_eq!(
        read(ReadStream::backward().limit(3)).await,
        vec![9, 8, 7],
        "backward with a limit"
    );
    assert_eq!(
        read(ReadStream::forward().from(Revision(1)).limit(2)).await,
        vec![6, 7],
        "forward from a hidden revision starts at the first visible one"
    );
    assert!(
        read(ReadStream::backward().from(Revision(5)))
            .await
            .is_empty(),
        "backward from a hidden revision finds nothing"
    );
    stream_of(store, "kept-1", 10, 12).await;
    assert_eq!(
        read(ReadStream::forward()).await,
        vec![8, 9, 10, 11],
        "max_count follows new events"
    );

    let truncate = StreamMetadata {
        truncate_before: Some(Revision(11)),
        ..StreamMetadata::default()
    };
    ok(
        "set truncate_before",
        store
            .set_stream_metadata("kept-1", ExpectedVersion::Any, truncate)
            .await,
    );
    let visible = ok(
        "read",
        store.read_stream("kept-1", ReadStream::forward()).await,
    );
    assert_eq!(ns(&visible), vec![11]);
    assert_eq!(visible[0].revision, Revision(11), "revisions are unchanged");
    assert_eq!(
        ok("revision", store.stream_revision("kept-1").await),
        Some(Revision(11)),
        "the stream's revision still counts hidden events"
    );
}

/// A soft delete makes the stream read as not found, refuses a wrong expected
/// version, and an append recreates the stream, continuing its revisions.
pub async fn soft_delete_hides_the_stream_until_it_is_written_again<S: EventStore + ?Sized>(
    store: &S,
) {
    assert_fresh(store).await;
    stream_of(store, "cart-1", 0, 3).await;
    expect_wrong_version(
        "soft delete expecting revision 1",
        store
            .delete_stream(
                "cart-1",
                ExpectedVersion::Exact(Revision(1)),
                DeleteMode::Soft,
            )
            .await,
        "cart-1",
        ExpectedVersion::Exact(Revision(1)),
        Some(2),
    );
    ok(
        "read after a refused delete",
        store.read_stream("cart-1", ReadStream::forward()).await,
    );
    let deleted = ok(
        "soft delete",
        store
            .delete_stream(
                "cart-1",
                ExpectedVersion::Exact(Revision(2)),
                DeleteMode::Soft,
            )
            .await,
    );
    assert_eq!(deleted.last_revision, Revision(2));
    expect_code(
        "read after a soft delete",
        store.read_stream("cart-1", ReadStream::forward()).await,
        "stream_not_found",
    );
    expect_code(
        "delete of a stream that does not exist",
        store
            .delete_stream("cart-404", ExpectedVersion::Any, DeleteMode::Soft)
            .await,
        "stream_not_found",
    );

    let again = ok(
        "append after a soft delete",
        store
            .append(
                "cart-1",
                ExpectedVersion::Exact(Revision(2)),
                vec![event("Counted", 3)],
            )
            .await,
    );
    assert_eq!(again.first_revision, Revision(3), "revisions continue");
    let visible = ok(
        "read the recreated stream",
        store.read_stream("cart-1", ReadStream::forward()).await,
    );
    assert_eq!(
        ns(&visible),
        vec![3],
        "only events after the delete are seen"
    );
}

/// A hard delete writes a tombstone: reads answer `stream_deleted`, and no append,
/// metadata write or second delete is ever accepted again.
pub async fn hard_delete_is_final<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    stream_of(store, "account-1", 0, 2).await;
    stream_of(store, "account-2", 0, 1).await;
    expect_wrong_version(
        "hard delete with a wrong expected version",
        store
            .delete_stream("account-1", ExpectedVersion::NoStream, DeleteMode::Hard)
            .await,
        "account-1",
        ExpectedVersion::NoStream,
        Some(1),
    );
    ok(
        "hard delete",
        store
            .delete_stream(
                "account-1",
                ExpectedVersion::Exact(Revision(1)),
                DeleteMode::Hard,
            )
            .await,
    );
    expect_code(
        "read after a hard delete",
        store.read_stream("account-1", ReadStream::forward()).await,
        "stream_deleted",
    );
    for expected in [
        ExpectedVersion::Any,
        ExpectedVersion::NoStream,
        ExpectedVersion::StreamExists,
        ExpectedVersion::Exact(Revision(2)),
    ] {
        expect_code(
            &format!("append expecting {expected} after a hard delete"),
            store
                .append("account-1", expected, vec![event("Counted", 9)])
                .await,
            "stream_deleted",
        );
    }
    expect_code(
        "soft delete after a hard delete",
        store
            .delete_stream("account-1", ExpectedVersion::Any, DeleteMode::Soft)
            .await,
        "stream_deleted",
    );
    expect_code(
        "metadata write after a hard delete",
        store
            .set_stream_metadata("account-1", ExpectedVersion::Any, StreamMetadata::default())
            .await,
        "stream_deleted",
    );
    let other = ok(
        "another stream is untouched",
        store.read_stream("account-2", ReadStream::forward()).await,
    );
    assert_eq!(ns(&other), vec![0]);
}

/// `list_streams` gives names in order with their last revision, by prefix, page by
/// page, and shows system streams only for a `$` prefix.
pub async fn list_streams_pages_names_in_order<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    for (stream, count) in [
        ("order-2", 1),
        ("cart-1", 1),
        ("order-1", 3),
        ("order-10", 1),
    ] {
        stream_of(store, stream, 0, count).await;
    }
    ok(
        "metadata",
        store
            .set_stream_metadata("cart-1", ExpectedVersion::Any, StreamMetadata::default())
            .await,
    );
    let names = |list: Vec<eventfold_core::StreamSummary>| {
        list.into_iter()
            .map(|s| (s.stream, s.last_revision.get()))
            .collect::<Vec<_>>()
    };
    let all = ok("list", store.list_streams("", None, 100).await);
    assert_eq!(
        names(all),
        vec![
            ("cart-1".to_string(), 0),
            ("order-1".to_string(), 2),
            ("order-10".to_string(), 0),
            ("order-2".to_string(), 0),
        ],
        "user streams in name order, without system streams"
    );
    let first = ok("list a page", store.list_streams("order-", None, 2).await);
    assert_eq!(
        names(first),
        vec![("order-1".to_string(), 2), ("order-10".to_string(), 0)]
    );
    let rest = ok(
        "list the next page",
        store.list_streams("order-", Some("order-10"), 2).await,
    );
    assert_eq!(names(rest), vec![("order-2".to_string(), 0)]);
    let system = ok(
        "list system streams",
        store.list_streams("$$", None, 10).await,
    );
    assert_eq!(names(system), vec![("$$cart-1".to_string(), 0)]);
}

/// How tombstones were once recognised: an id derived from the stream name (UUID v5
/// in a fixed namespace), which any writer could compute and write.
fn predictable_tombstone_id(stream: &str) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x5f1c_2b0e_6d4a_4e7b_9a51_0c3e_8f27_d6b4);
    Uuid::new_v5(&NAMESPACE, format!("tombstone:{stream}").as_bytes())
}

/// Nothing a client writes makes a tombstone: not an event of the tombstone's type
/// (refused), not an event with the id tombstones once had (an ordinary event), and
/// such an id written elsewhere first does not stop a real hard delete.
pub async fn clients_cannot_forge_a_tombstone<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    stream_of(store, "victim-1", 0, 1).await;
    expect_code(
        "a client event of the tombstone's type",
        store
            .append(
                "victim-1",
                ExpectedVersion::Any,
                vec![event(TOMBSTONE_EVENT_TYPE, 1)],
            )
            .await,
        "invalid_event",
    );
    ok(
        "a client event with the id tombstones once had",
        store
            .append(
                "victim-1",
                ExpectedVersion::Any,
                vec![event_with_id(
                    "Counted",
                    1,
                    predictable_tombstone_id("victim-1"),
                )],
            )
            .await,
    );
    ok(
        "an append after that event: the stream was not deleted",
        store
            .append("victim-1", ExpectedVersion::Any, vec![event("Counted", 2)])
            .await,
    );
    let events = ok(
        "read the stream",
        store.read_stream("victim-1", ReadStream::forward()).await,
    );
    assert_eq!(ns(&events), vec![0, 1, 2]);

    stream_of(store, "target-1", 0, 1).await;
    ok(
        "the id tombstones once had, written to another stream",
        store
            .append(
                "decoy-1",
                ExpectedVersion::Any,
                vec![event_with_id(
                    "Counted",
                    0,
                    predictable_tombstone_id("target-1"),
                )],
            )
            .await,
    );
    ok(
        "hard delete of the stream that id was derived from",
        store
            .delete_stream("target-1", ExpectedVersion::Any, DeleteMode::Hard)
            .await,
    );
    expect_code(
        "append after that hard delete",
        store
            .append("target-1", ExpectedVersion::Any, vec![event("Counted", 1)])
            .await,
        "stream_deleted",
    );
    let tail = ok(
        "read $all",
        store
            .read_all(ReadAll::from(eventfold_core::Position(0), 100))
            .await,
    );
    let tombstones: Vec<_> = tail
        .events
        .iter()
        .filter(|e| e.event_type == TOMBSTONE_EVENT_TYPE)
        .collect();
    assert_eq!(tombstones.len(), 1, "one tombstone in $all: {tombstones:?}");
    assert_eq!(tombstones[0].stream, "target-1");
    assert_ne!(
        tombstones[0].id,
        predictable_tombstone_id("target-1"),
        "a tombstone's id is not derived from its stream"
    );
}

/// A client write can neither reach a system stream nor carry eventfold's own event
/// types (`$...`), even to a user stream; the store's own layers still write both.
pub async fn clients_cannot_write_system_events<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    for event_type in [
        "$metadata",
        "$stream-deleted",
        "$checkpoint",
        "$parked",
        "$x",
    ] {
        expect_code(
            &format!("a client event of type {event_type}"),
            store
                .append("order-1", ExpectedVersion::Any, vec![event(event_type, 0)])
                .await,
            "invalid_event",
        );
        expect_code(
            &format!("a client event of type {event_type} in a multi-stream append"),
            store
                .append_multi(vec![
                    StreamWrite::new("order-2", ExpectedVersion::Any, vec![event("A", 0)]),
                    StreamWrite::new("order-3", ExpectedVersion::Any, vec![event(event_type, 0)]),
                ])
                .await,
            "invalid_event",
        );
    }
    for stream in [
        "$$order-1",
        "$schemas",
        "$checkpoint-g",
        "$parked-g",
        "$persistent-g",
    ] {
        expect_code(
            &format!("a client write to {stream}"),
            store
                .append(stream, ExpectedVersion::Any, vec![event("A", 0)])
                .await,
            "invalid_stream_name",
        );
    }
    assert_eq!(
        ok("head", store.head_position().await),
        None,
        "nothing was written"
    );
    stream_of(store, "order-1", 0, 1).await;
    ok(
        "metadata, written by the store as a system event",
        store
            .set_stream_metadata("order-1", ExpectedVersion::Any, StreamMetadata::default())
            .await,
    );
    let metadata = ok(
        "read the metadata stream",
        store.read_stream("$$order-1", ReadStream::forward()).await,
    );
    assert_eq!(metadata.len(), 1);
    assert_eq!(metadata[0].event_type, "$metadata");
}
