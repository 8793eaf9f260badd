//! Atomic appends across several streams, each with its own expected version.

use std::collections::BTreeSet;

use eventfold_core::{EventStore, ExpectedVersion, Position, Revision, StreamWrite};

use crate::support::{
    assert_fresh, assert_unchanged, event, event_with_id, expect_code, expect_wrong_version,
    new_ids, ok, read_whole_log, read_whole_stream, snapshot,
};

/// A multi-stream append writes every stream, returns one result per write in the
/// order of the writes, and its events take one contiguous block of positions.
pub async fn append_multi_writes_every_stream_in_order<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    ok(
        "create order-1",
        store
            .append("order-1", ExpectedVersion::NoStream, vec![event("A", 0)])
            .await,
    );
    let results = ok(
        "append_multi",
        store
            .append_multi(vec![
                StreamWrite::new(
                    "order-2",
                    ExpectedVersion::NoStream,
                    vec![event("B", 1), event("B", 2)],
                ),
                StreamWrite::new(
                    "order-1",
                    ExpectedVersion::Exact(Revision(0)),
                    vec![event("C", 3)],
                ),
                StreamWrite::new(
                    "invoice-1",
                    ExpectedVersion::Any,
                    vec![event("D", 4), event("D", 5), event("D", 6)],
                ),
            ])
            .await,
    );
    assert_eq!(results.len(), 3, "one result per write");
    let expected_revisions = [
        ("order-2", 0, 1, vec![1, 2]),
        ("order-1", 1, 1, vec![3]),
        ("invoice-1", 0, 2, vec![4, 5, 6]),
    ];
    let mut positions = BTreeSet::new();
    for (result, (stream, first, last, ns)) in results.iter().zip(expected_revisions) {
        assert_eq!(
            (result.first_revision, result.last_revision),
            (Revision(first), Revision(last)),
            "result for {stream} (results come in the order of the writes)"
        );
        let events = read_whole_stream(store, stream).await;
        let written = &events[first as usize..];
        let written_ns: Vec<u64> = written.iter().map(crate::support::n_of).collect();
        assert_eq!(written_ns, ns, "{stream} holds its events in order");
        for pair in written.windows(2) {
            assert!(
                pair[0].position < pair[1].position,
                "{stream}: positions increase"
            );
        }
        assert_eq!(
            written.last().map(|e| e.position),
            Some(result.position),
            "{stream}: position is that of its last event"
        );
        positions.extend(written.iter().map(|e| e.position.get()));
    }
    assert_eq!(
        positions.into_iter().collect::<Vec<_>>(),
        (1..7).collect::<Vec<_>>(),
        "the events of one multi-stream append take a contiguous block of positions"
    );
    assert_eq!(
        ok("head_position", store.head_position().await),
        Some(Position(6))
    );
    assert_eq!(read_whole_log(store).await.len(), 7);
}

/// When one write of a multi-stream append fails its expected version, none of the
/// streams is written, wherever the failing write stands in the list.
pub async fn append_multi_is_all_or_nothing<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    ok(
        "create order-1",
        store
            .append("order-1", ExpectedVersion::NoStream, vec![event("A", 0)])
            .await,
    );
    let streams = ["order-1", "order-2", "invoice-1"];
    let before = snapshot(store, &streams).await;
    let wrong = StreamWrite::new(
        "order-1",
        ExpectedVersion::Exact(Revision(5)),
        vec![event("B", 1)],
    );
    let good = [
        StreamWrite::new("order-2", ExpectedVersion::NoStream, vec![event("C", 2)]),
        StreamWrite::new(
            "invoice-1",
            ExpectedVersion::Any,
            vec![event("D", 3), event("D", 4)],
        ),
    ];
    for wrong_at in 0..=good.len() {
        let mut writes = good.to_vec();
        writes.insert(wrong_at, wrong.clone());
        let what = format!("append_multi with the wrong write at index {wrong_at}");
        expect_wrong_version(
            &what,
            store.append_multi(writes).await,
            "order-1",
            ExpectedVersion::Exact(Revision(5)),
            Some(0),
        );
        assert_unchanged(store, &before, &streams, &what).await;
    }
    let mut writes = good.to_vec();
    writes.push(StreamWrite::new(
        "order-1",
        ExpectedVersion::NoStream,
        vec![event("E", 5)],
    ));
    expect_wrong_version(
        "append_multi whose last write expects no_stream of an existing stream",
        store.append_multi(writes).await,
        "order-1",
        ExpectedVersion::NoStream,
        Some(0),
    );
    assert_unchanged(
        store,
        &before,
        &streams,
        "append_multi with no_stream wrong",
    )
    .await;

    let results = ok(
        "the same writes with the right expected version",
        store
            .append_multi(vec![
                good[0].clone(),
                StreamWrite::new(
                    "order-1",
                    ExpectedVersion::Exact(Revision(0)),
                    vec![event("B", 1)],
                ),
                good[1].clone(),
            ])
            .await,
    );
    assert_eq!(
        results
            .iter()
            .map(|r| (r.first_revision.get(), r.last_revision.get()))
            .collect::<Vec<_>>(),
        vec![(0, 0), (1, 1), (0, 1)]
    );
    assert_eq!(
        ok("head_position", store.head_position().await),
        Some(Position(4)),
        "refused multi-stream appends must not use up positions"
    );
}

/// A multi-stream append that names the same stream twice is refused
/// (`InvalidEvent`); nothing is written.
pub async fn append_multi_refuses_the_same_stream_twice<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    let streams = ["order-1", "order-2"];
    let before = snapshot(store, &streams).await;
    expect_code(
        "the same stream twice",
        store
            .append_multi(vec![
                StreamWrite::new("order-1", ExpectedVersion::NoStream, vec![event("A", 0)]),
                StreamWrite::new("order-2", ExpectedVersion::Any, vec![event("B", 1)]),
                StreamWrite::new("order-1", ExpectedVersion::Any, vec![event("C", 2)]),
            ])
            .await,
        "invalid_event",
    );
    assert_unchanged(store, &before, &streams, "the same stream twice").await;
}

/// Re-sending a multi-stream append with the same ids returns the original results
/// and writes nothing; a re-send where one stream's part is new is an
/// `IdempotencyConflict` and writes nothing.
pub async fn append_multi_resend_is_idempotent<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    let ids = new_ids(4);
    let writes = || {
        vec![
            StreamWrite::new(
                "order-1",
                ExpectedVersion::NoStream,
                vec![event_with_id("A", 0, ids[0])],
            ),
            StreamWrite::new(
                "order-2",
                ExpectedVersion::NoStream,
                vec![event_with_id("B", 1, ids[1]), event_with_id("B", 2, ids[2])],
            ),
        ]
    };
    let original = ok("append_multi", store.append_multi(writes()).await);
    ok(
        "a later append",
        store
            .append("order-1", ExpectedVersion::Any, vec![event("C", 3)])
            .await,
    );
    let streams = ["order-1", "order-2", "order-3"];
    let before = snapshot(store, &streams).await;
    let again = ok("re-send append_multi", store.append_multi(writes()).await);
    assert_eq!(again, original, "a re-send returns the original results");
    assert_unchanged(store, &before, &streams, "a multi-stream re-send").await;

    let mut partly_new = writes();
    partly_new.push(StreamWrite::new(
        "order-3",
        ExpectedVersion::NoStream,
        vec![event_with_id("D", 4, ids[3])],
    ));
    expect_code(
        "a re-send with one new stream",
        store.append_multi(partly_new).await,
        "idempotency_conflict",
    );
    assert_unchanged(store, &before, &streams, "a re-send with one new stream").await;
}
