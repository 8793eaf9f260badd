//! Expected versions: `any`, `no_stream`, `stream_exists` and exact revisions, and
//! what a refused append leaves behind (nothing).

use eventfold_core::{
    EventData, EventStore, ExpectedVersion, Position, ReadAll, ReadStream, Revision, StreamWrite,
};

use crate::support::{
    assert_fresh, assert_unchanged, event, event_with_id, expect_code, expect_wrong_version,
    new_ids, ok, snapshot,
};

/// An empty store has no head, no streams, and an empty `$all` that is at its end.
pub async fn empty_store_has_no_head_and_no_streams<S: EventStore + ?Sized>(store: &S) {
    assert_eq!(
        ok("head_position", store.head_position().await),
        None,
        "an empty store has no head position"
    );
    assert_eq!(
        ok("stream_revision", store.stream_revision("order-1").await),
        None,
        "no stream has a revision in an empty store"
    );
    assert!(
        !ok("stream_exists", store.stream_exists("order-1").await),
        "no stream exists in an empty store"
    );
    expect_code(
        "read_stream on an empty store",
        store.read_stream("order-1", ReadStream::forward()).await,
        "stream_not_found",
    );
    let page = ok(
        "read_all",
        store.read_all(ReadAll::from(Position::START, 10)).await,
    );
    assert!(
        page.events.is_empty(),
        "an empty store's $all has no events"
    );
    assert!(page.end_of_log, "an empty store's $all is at its end");
    assert_eq!(
        page.next,
        Position::START,
        "an empty store's $all continues at position 0"
    );
}

/// `any` appends whatever the stream's state: to a new stream and to an existing one.
pub async fn expected_any_appends_to_new_and_existing_streams<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    let first = ok(
        "append any to a new stream",
        store
            .append(
                "order-1",
                ExpectedVersion::Any,
                vec![event("OrderPlaced", 0)],
            )
            .await,
    );
    assert_eq!(
        (first.first_revision, first.last_revision),
        (Revision(0), Revision(0))
    );
    let second = ok(
        "append any to an existing stream",
        store
            .append("order-1", ExpectedVersion::Any, vec![event("OrderPaid", 1)])
            .await,
    );
    assert_eq!(
        (second.first_revision, second.last_revision),
        (Revision(1), Revision(1))
    );
    let third = ok(
        "append two events with any",
        store
            .append(
                "order-1",
                ExpectedVersion::Any,
                vec![event("OrderPacked", 2), event("OrderShipped", 3)],
            )
            .await,
    );
    assert_eq!(
        (third.first_revision, third.last_revision),
        (Revision(2), Revision(3))
    );
    assert_eq!(
        ok("stream_revision", store.stream_revision("order-1").await),
        Some(Revision(3))
    );
}

/// `no_stream` creates a stream once; on an existing stream it fails and reports the
/// stream's last revision.
pub async fn expected_no_stream_creates_a_stream_once<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    let created = ok(
        "append no_stream to a new stream",
        store
            .append(
                "order-1",
                ExpectedVersion::NoStream,
                vec![event("OrderPlaced", 0), event("OrderPaid", 1)],
            )
            .await,
    );
    assert_eq!(
        (created.first_revision, created.last_revision),
        (Revision(0), Revision(1))
    );
    expect_wrong_version(
        "no_stream on an existing stream (events without ids)",
        store
            .append(
                "order-1",
                ExpectedVersion::NoStream,
                vec![event("OrderPlaced", 2)],
            )
            .await,
        "order-1",
        ExpectedVersion::NoStream,
        Some(1),
    );
    expect_wrong_version(
        "no_stream on an existing stream (events with new ids)",
        store
            .append(
                "order-1",
                ExpectedVersion::NoStream,
                vec![event_with_id("OrderPlaced", 2, new_ids(1)[0])],
            )
            .await,
        "order-1",
        ExpectedVersion::NoStream,
        Some(1),
    );
    // Another stream is not affected by the first one existing.
    ok(
        "append no_stream to a second new stream",
        store
            .append(
                "order-2",
                ExpectedVersion::NoStream,
                vec![event("OrderPlaced", 3)],
            )
            .await,
    );
}

/// `stream_exists` fails on a missing stream (actual: no stream) and succeeds once the
/// stream has an event.
pub async fn expected_stream_exists_requires_a_stream<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    expect_wrong_version(
        "stream_exists on a missing stream",
        store
            .append(
                "order-1",
                ExpectedVersion::StreamExists,
                vec![event("OrderPaid", 0)],
            )
            .await,
        "order-1",
        ExpectedVersion::StreamExists,
        None,
    );
    assert!(
        !ok("stream_exists", store.stream_exists("order-1").await),
        "a refused stream_exists append must not create the stream"
    );
    ok(
        "create the stream",
        store
            .append(
                "order-1",
                ExpectedVersion::NoStream,
                vec![event("OrderPlaced", 1)],
            )
            .await,
    );
    let written = ok(
        "stream_exists on an existing stream",
        store
            .append(
                "order-1",
                ExpectedVersion::StreamExists,
                vec![event("OrderPaid", 2), event("OrderShipped", 3)],
            )
            .await,
    );
    assert_eq!(
        (written.first_revision, written.last_revision),
        (Revision(1), Revision(2))
    );
}

/// An exact revision must be the stream's last revision: right succeeds, too low and
/// too high fail with the actual revision, and any exact revision fails on a missing
/// stream.
pub async fn expected_exact_revision_must_match<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    expect_wrong_version(
        "exact 0 on a missing stream",
        store
            .append(
                "order-1",
                ExpectedVersion::Exact(Revision(0)),
                vec![event("OrderPlaced", 0)],
            )
            .await,
        "order-1",
        ExpectedVersion::Exact(Revision(0)),
        None,
    );
    ok(
        "create the stream with three events",
        store
            .append(
                "order-1",
                ExpectedVersion::NoStream,
                vec![event("A", 0), event("B", 1), event("C", 2)],
            )
            .await,
    );
    let right = ok(
        "exact 2 on a stream at 2",
        store
            .append(
                "order-1",
                ExpectedVersion::Exact(Revision(2)),
                vec![event("D", 3)],
            )
            .await,
    );
    assert_eq!(
        (right.first_revision, right.last_revision),
        (Revision(3), Revision(3))
    );
    let again = ok(
        "exact 3 on a stream at 3",
        store
            .append(
                "order-1",
                ExpectedVersion::Exact(Revision(3)),
                vec![event("E", 4), event("F", 5)],
            )
            .await,
    );
    assert_eq!(
        (again.first_revision, again.last_revision),
        (Revision(4), Revision(5))
    );
    for (what, expected) in [
        ("too low (the old revision)", 3),
        ("too low (0)", 0),
        ("too high by one", 6),
        ("too high", 100),
    ] {
        let expected = ExpectedVersion::Exact(Revision(expected));
        expect_wrong_version(
            &format!("exact revision {what}"),
            store.append("order-1", expected, vec![event("G", 6)]).await,
            "order-1",
            expected,
            Some(5),
        );
    }
    assert_eq!(
        ok("stream_revision", store.stream_revision("order-1").await),
        Some(Revision(5)),
        "refused appends must not move the stream's revision"
    );
}

/// A refused append writes nothing: neither the stream's revision nor the head moves,
/// the log is unchanged, and the next accepted append takes the very next revision and
/// position (a refused append must not burn a position).
pub async fn failed_append_writes_nothing<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    ok(
        "create order-1",
        store
            .append(
                "order-1",
                ExpectedVersion::NoStream,
                vec![event("OrderPlaced", 0), event("OrderPaid", 1)],
            )
            .await,
    );
    ok(
        "create invoice-1",
        store
            .append(
                "invoice-1",
                ExpectedVersion::NoStream,
                vec![event("InvoiceIssued", 2)],
            )
            .await,
    );
    let streams = ["order-1", "invoice-1", "order-2"];
    let before = snapshot(store, &streams).await;

    let refused: Vec<(&str, &str, ExpectedVersion, Vec<EventData>, &str)> = vec![
        (
            "no_stream on an existing stream",
            "order-1",
            ExpectedVersion::NoStream,
            vec![event("X", 9), event("Y", 9)],
            "wrong_expected_version",
        ),
        (
            "stream_exists on a missing stream",
            "order-2",
            ExpectedVersion::StreamExists,
            vec![event("X", 9)],
            "wrong_expected_version",
        ),
        (
            "exact revision too low",
            "order-1",
            ExpectedVersion::Exact(Revision(0)),
            vec![event("X", 9)],
            "wrong_expected_version",
        ),
        (
            "exact revision too high",
            "order-1",
            ExpectedVersion::Exact(Revision(7)),
            vec![event("X", 9), event("Y", 9), event("Z", 9)],
            "wrong_expected_version",
        ),
        (
            "exact revision on a missing stream",
            "order-2",
            ExpectedVersion::Exact(Revision(0)),
            vec![event("X", 9)],
            "wrong_expected_version",
        ),
        (
            "a system stream name",
            "$order-2",
            ExpectedVersion::Any,
            vec![event("X", 9)],
            "invalid_stream_name",
        ),
        (
            "an empty append",
            "order-1",
            ExpectedVersion::Any,
            vec![],
            "empty_append",
        ),
        (
            "an event id twice",
            "order-2",
            ExpectedVersion::Any,
            {
                let id = new_ids(1)[0];
                vec![event_with_id("X", 9, id), event_with_id("Y", 9, id)]
            },
            "invalid_event",
        ),
    ];
    for (what, stream, expected, events, code) in refused {
        expect_code(what, store.append(stream, expected, events).await, code);
        assert_unchanged(store, &before, &streams, what).await;
    }
    expect_code(
        "append_multi with one wrong expected version",
        store
            .append_multi(vec![
                StreamWrite::new("order-2", ExpectedVersion::NoStream, vec![event("X", 9)]),
                StreamWrite::new("invoice-1", ExpectedVersion::NoStream, vec![event("Y", 9)]),
            ])
            .await,
        "wrong_expected_version",
    );
    assert_unchanged(
        store,
        &before,
        &streams,
        "append_multi with one wrong expected version",
    )
    .await;

    let next = ok(
        "append after refused appends",
        store
            .append(
                "order-1",
                ExpectedVersion::Any,
                vec![event("OrderShipped", 3)],
            )
            .await,
    );
    assert_eq!(
        next.first_revision,
        Revision(2),
        "refused appends must not use up revisions"
    );
    assert_eq!(
        next.position,
        Position(3),
        "refused appends must not use up positions"
    );
}
