//! Moved streams: a stream surgery ends a stream whose events it copied elsewhere with
//! a `$stream-moved-to` marker (a system write); from then on client appends to it
//! are refused, naming where the events went, while its history stays readable.
//!
//! A flip closes a whole store the same way: `$store-read-only` at the end of
//! `$store` makes it refuse every append (`read_only`) until it is undone.
//!
//! These cases write the marker with a system write, which only a store in this
//! process can take: over HTTP, the server's surgery writes it (`eventfold-surgery`).

use eventfold_core::{
    AppendResult, EventData, EventStore, ExpectedVersion, Revision, STORE_READ_ONLY_EVENT_TYPE,
    STORE_STREAM, STORE_WRITABLE_EVENT_TYPE, STREAM_MOVED_EVENT_TYPE, StreamWrite,
    TOMBSTONE_EVENT_TYPE, append_system,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::{assert_fresh, event, event_with_id, expect_code, ok, read_whole_log};

fn marker(to: &str) -> EventData {
    EventData::json(STREAM_MOVED_EVENT_TYPE, &json!({ "stream": to }))
        .expect("a JSON object is valid event data")
}

/// After its move marker, every client append to a stream is refused with
/// `stream_moved` naming the new stream (with any expected version, in a
/// multi-stream append, and as a check); nothing is written; reads still see the
/// history; a system write (a hard delete of the old stream) still passes.
pub async fn moved_streams_refuse_client_appends<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    ok(
        "create order-1",
        store
            .append(
                "order-1",
                ExpectedVersion::NoStream,
                vec![event("Placed", 0), event("Paid", 1)],
            )
            .await,
    );
    ok(
        "write the move marker",
        append_system(
            store,
            "order-1",
            ExpectedVersion::Exact(Revision(1)),
            vec![marker("order-1-fixed")],
        )
        .await,
    );
    let moved =
        |context: &str, result: eventfold_core::Result<Vec<eventfold_core::AppendResult>>| {
            match result {
                Err(eventfold_core::Error::StreamMoved { stream, moved_to }) => {
                    assert_eq!(stream, "order-1", "{context}: the error names the stream");
                    assert_eq!(
                        moved_to, "order-1-fixed",
                        "{context}: the error names where it went"
                    );
                }
                other => panic!("{context}: expected stream_moved, got {other:?}"),
            }
        };
    for expected in [
        ExpectedVersion::Any,
        ExpectedVersion::StreamExists,
        ExpectedVersion::Exact(Revision(2)),
    ] {
        moved(
            &format!("an append expecting {expected}"),
            store
                .append_multi(vec![StreamWrite::new(
                    "order-1",
                    expected,
                    vec![event("Shipped", 2)],
                )])
                .await,
        );
    }
    moved(
        "a multi-stream append",
        store
            .append_multi(vec![
                StreamWrite::new("order-2", ExpectedVersion::Any, vec![event("Placed", 0)]),
                StreamWrite::new("order-1", ExpectedVersion::Any, vec![event("Shipped", 2)]),
            ])
            .await,
    );
    moved(
        "a check of the moved stream",
        store
            .append_multi(vec![
                StreamWrite::new("order-2", ExpectedVersion::Any, vec![event("Placed", 0)]),
                StreamWrite::check("order-1", ExpectedVersion::Exact(Revision(2))),
            ])
            .await,
    );
    assert_eq!(
        ok("stream_revision", store.stream_revision("order-1").await),
        Some(Revision(2)),
        "refused appends wrote nothing"
    );
    assert!(
        !ok("order-2 exists?", store.stream_exists("order-2").await),
        "a refused multi-stream append wrote none of its streams"
    );
    let history = ok(
        "read the moved stream",
        store
            .read_stream("order-1", eventfold_core::ReadStream::forward())
            .await,
    );
    let types: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["Placed", "Paid", STREAM_MOVED_EVENT_TYPE],
        "the moved stream's history stays readable, ending with the marker"
    );
    // An event after the marker makes the stream an ordinary one again: the marker
    // only closes the stream while it is the last event.
    ok(
        "a system write after the marker (a tombstone)",
        append_system(
            store,
            "order-1",
            ExpectedVersion::Exact(Revision(2)),
            vec![EventData::json(TOMBSTONE_EVENT_TYPE, &json!({})).expect("event")],
        )
        .await,
    );
    expect_code(
        "an append after the hard delete",
        store
            .append("order-1", ExpectedVersion::Any, vec![event("Shipped", 2)])
            .await,
        "stream_deleted",
    );
    expect_code(
        "a client event of the marker's type",
        store
            .append("order-3", ExpectedVersion::Any, vec![marker("elsewhere")])
            .await,
        "invalid_event",
    );
}

/// A flip makes the whole store read-only: after a `$store-read-only` event ends
/// `$store`, every append is refused with `read_only` giving its reason (a lone
/// append, a multi-stream append, a system write), while a re-send of an append the
/// store took before is still answered as written and every read still works. An
/// append that writes `$store` again (the undo) passes, and the store takes appends
/// again.
pub async fn read_only_stores_refuse_appends_until_undone<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    let placed = event_with_id("Placed", 0, Uuid::now_v7());
    let first = ok(
        "create order-1",
        store
            .append("order-1", ExpectedVersion::NoStream, vec![placed.clone()])
            .await,
    );
    ok(
        "make the store read-only",
        append_system(
            store,
            STORE_STREAM,
            ExpectedVersion::Any,
            vec![
                EventData::json(
                    STORE_READ_ONLY_EVENT_TYPE,
                    &json!({ "reason": "flipped to the new cluster" }),
                )
                .expect("event"),
            ],
        )
        .await,
    );
    let read_only = |context: &str, result: eventfold_core::Result<Vec<AppendResult>>| match result
    {
        Err(eventfold_core::Error::ReadOnly { reason }) => assert!(
            reason.contains("flipped to the new cluster"),
            "{context}: the refusal gives the flip's reason, got {reason:?}"
        ),
        other => panic!("{context}: expected read_only, got {other:?}"),
    };
    read_only(
        "a lone append to an existing stream",
        store
            .append_multi(vec![StreamWrite::new(
                "order-1",
                ExpectedVersion::Exact(Revision(0)),
                vec![event("Paid", 1)],
            )])
            .await,
    );
    read_only(
        "a lone append to a new stream",
        store
            .append_multi(vec![StreamWrite::new(
                "order-2",
                ExpectedVersion::Any,
                vec![event("Placed", 0)],
            )])
            .await,
    );
    read_only(
        "a multi-stream append",
        store
            .append_multi(vec![
                StreamWrite::new("order-2", ExpectedVersion::Any, vec![event("Placed", 0)]),
                StreamWrite::new("order-3", ExpectedVersion::Any, vec![event("Placed", 0)]),
            ])
            .await,
    );
    read_only(
        "a system write to another stream",
        append_system(
            store,
            "$$order-1",
            ExpectedVersion::Any,
            vec![EventData::json("$metadata", &json!({})).expect("event")],
        )
        .await
        .map(|r| vec![r]),
    );
    assert_eq!(
        ok(
            "a re-send of an append written before the flip",
            store
                .append("order-1", ExpectedVersion::NoStream, vec![placed])
                .await
        ),
        first,
        "a re-send is answered as written, not refused"
    );
    assert_eq!(
        ok("stream_revision", store.stream_revision("order-1").await),
        Some(Revision(0)),
        "refused appends wrote nothing"
    );
    assert!(
        !ok("order-2 exists?", store.stream_exists("order-2").await),
        "refused appends created no stream"
    );
    ok(
        "make the store writable again",
        append_system(
            store,
            STORE_STREAM,
            ExpectedVersion::Exact(Revision(0)),
            vec![EventData::json(STORE_WRITABLE_EVENT_TYPE, &json!({})).expect("event")],
        )
        .await,
    );
    ok(
        "an append after the undo",
        store
            .append(
                "order-1",
                ExpectedVersion::Exact(Revision(0)),
                vec![event("Paid", 1)],
            )
            .await,
    );
    let types: Vec<String> = read_whole_log(store)
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "Placed",
            STORE_READ_ONLY_EVENT_TYPE,
            STORE_WRITABLE_EVENT_TYPE,
            "Paid"
        ],
        "the log holds the flip, its undo, and nothing refused"
    );
}
