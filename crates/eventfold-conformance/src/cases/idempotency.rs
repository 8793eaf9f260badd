//! Idempotent appends: re-sending events with the same ids (after a lost answer)
//! returns the original result and writes nothing; ids that match an earlier append
//! only in part are a conflict.

use eventfold_core::{EventData, EventStore, ExpectedVersion, Revision, StreamWrite};
use uuid::Uuid;

use crate::support::{
    assert_fresh, assert_unchanged, event, event_with_id, expect_code, new_ids, ok, snapshot,
};

fn events_with(ids: &[Uuid], first_n: u64) -> Vec<EventData> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| event_with_id("Happened", first_n + i as u64, *id))
        .collect()
}

/// Re-sending an append with the same ids and the same exact expected version returns
/// the original result and writes nothing, right away and after later appends.
pub async fn resend_with_same_exact_expected_version_is_idempotent<S: EventStore + ?Sized>(
    store: &S,
) {
    assert_fresh(store).await;
    ok(
        "create the stream",
        store
            .append("order-1", ExpectedVersion::NoStream, vec![event("A", 0)])
            .await,
    );
    let ids = new_ids(2);
    let expected = ExpectedVersion::Exact(Revision(0));
    let original = ok(
        "append with ids",
        store
            .append("order-1", expected, events_with(&ids, 1))
            .await,
    );
    let streams = ["order-1"];
    let before = snapshot(store, &streams).await;
    let again = ok(
        "immediate re-send",
        store
            .append("order-1", expected, events_with(&ids, 1))
            .await,
    );
    assert_eq!(again, original, "a re-send returns the original result");
    assert_unchanged(store, &before, &streams, "an immediate re-send").await;

    ok(
        "a later append",
        store
            .append(
                "order-1",
                ExpectedVersion::Exact(Revision(2)),
                vec![event("B", 3)],
            )
            .await,
    );
    let before = snapshot(store, &streams).await;
    let late = ok(
        "re-send after a later append",
        store
            .append("order-1", expected, events_with(&ids, 1))
            .await,
    );
    assert_eq!(late, original, "a late re-send returns the original result");
    assert_unchanged(store, &before, &streams, "a late re-send").await;
}

/// Re-sending a `no_stream` append with the same ids returns the original result and
/// writes nothing, even after the stream has grown.
pub async fn resend_with_no_stream_is_idempotent<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    let ids = new_ids(2);
    let original = ok(
        "create the stream with ids",
        store
            .append("order-1", ExpectedVersion::NoStream, events_with(&ids, 0))
            .await,
    );
    let streams = ["order-1"];
    let before = snapshot(store, &streams).await;
    let again = ok(
        "re-send no_stream",
        store
            .append("order-1", ExpectedVersion::NoStream, events_with(&ids, 0))
            .await,
    );
    assert_eq!(again, original, "a re-send returns the original result");
    assert_unchanged(store, &before, &streams, "a no_stream re-send").await;

    ok(
        "a later append",
        store
            .append("order-1", ExpectedVersion::Any, vec![event("B", 2)])
            .await,
    );
    let before = snapshot(store, &streams).await;
    let late = ok(
        "re-send no_stream after a later append",
        store
            .append("order-1", ExpectedVersion::NoStream, events_with(&ids, 0))
            .await,
    );
    assert_eq!(late, original, "a late re-send returns the original result");
    assert_unchanged(store, &before, &streams, "a late no_stream re-send").await;
}

/// Re-sending an `any` append with the same ids returns the original result and
/// writes nothing, whether it was the last append or an earlier one.
pub async fn resend_with_any_is_idempotent<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    let first_ids = new_ids(1);
    let second_ids = new_ids(2);
    let first = ok(
        "first append",
        store
            .append("order-1", ExpectedVersion::Any, events_with(&first_ids, 0))
            .await,
    );
    let second = ok(
        "second append",
        store
            .append("order-1", ExpectedVersion::Any, events_with(&second_ids, 1))
            .await,
    );
    ok(
        "an append to another stream",
        store
            .append("order-2", ExpectedVersion::Any, vec![event("C", 3)])
            .await,
    );
    let streams = ["order-1", "order-2"];
    let before = snapshot(store, &streams).await;
    let again = ok(
        "re-send the second append",
        store
            .append("order-1", ExpectedVersion::Any, events_with(&second_ids, 1))
            .await,
    );
    assert_eq!(again, second, "a re-send returns the original result");
    let again = ok(
        "re-send the first append",
        store
            .append("order-1", ExpectedVersion::Any, events_with(&first_ids, 0))
            .await,
    );
    assert_eq!(again, first, "a re-send returns the original result");
    assert_unchanged(store, &before, &streams, "re-sends with any").await;
}

/// Re-sending a `stream_exists` append with the same ids returns the original result.
pub async fn resend_with_stream_exists_is_idempotent<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    ok(
        "create the stream",
        store
            .append("order-1", ExpectedVersion::NoStream, vec![event("A", 0)])
            .await,
    );
    let ids = new_ids(3);
    let original = ok(
        "append with stream_exists",
        store
            .append(
                "order-1",
                ExpectedVersion::StreamExists,
                events_with(&ids, 1),
            )
            .await,
    );
    let streams = ["order-1"];
    let before = snapshot(store, &streams).await;
    let again = ok(
        "re-send with stream_exists",
        store
            .append(
                "order-1",
                ExpectedVersion::StreamExists,
                events_with(&ids, 1),
            )
            .await,
    );
    assert_eq!(again, original, "a re-send returns the original result");
    assert_unchanged(store, &before, &streams, "a stream_exists re-send").await;
}

/// A re-send that matches an earlier append only in part (extra events, a new event
/// before a known one, a known event followed by one without an id, events out of
/// order) is an `IdempotencyConflict` and writes nothing.
pub async fn resend_with_partial_overlap_is_an_idempotency_conflict<S: EventStore + ?Sized>(
    store: &S,
) {
    assert_fresh(store).await;
    let ids = new_ids(2);
    let (a, b) = (ids[0], ids[1]);
    let c = new_ids(1)[0];
    ok(
        "the original append",
        store
            .append("order-1", ExpectedVersion::NoStream, events_with(&ids, 0))
            .await,
    );
    let streams = ["order-1"];
    let before = snapshot(store, &streams).await;
    let current = ExpectedVersion::Exact(Revision(1));
    let overlapping: [(&str, ExpectedVersion, Vec<EventData>); 6] = [
        (
            "the original events plus a new one, with any",
            ExpectedVersion::Any,
            events_with(&[a, b, c], 0),
        ),
        (
            "the original events plus a new one, with stream_exists",
            ExpectedVersion::StreamExists,
            events_with(&[a, b, c], 0),
        ),
        (
            "the last original event plus a new one, at the current revision",
            current,
            events_with(&[b, c], 1),
        ),
        (
            "a new event before an original one",
            ExpectedVersion::Any,
            events_with(&[c, a], 0),
        ),
        (
            "an original event followed by one without id",
            ExpectedVersion::Any,
            vec![event_with_id("Happened", 0, a), event("Happened", 1)],
        ),
        (
            "the original events swapped",
            ExpectedVersion::Any,
            events_with(&[b, a], 0),
        ),
    ];
    for (what, expected, events) in overlapping {
        expect_code(
            what,
            store.append("order-1", expected, events).await,
            "idempotency_conflict",
        );
        assert_unchanged(store, &before, &streams, what).await;
    }
}

/// Ids already written to another stream cannot be written again: an
/// `IdempotencyConflict`, and the target stream stays as it was.
pub async fn ids_written_to_another_stream_are_an_idempotency_conflict<S: EventStore + ?Sized>(
    store: &S,
) {
    assert_fresh(store).await;
    let ids = new_ids(2);
    ok(
        "write the ids to order-1",
        store
            .append("order-1", ExpectedVersion::NoStream, events_with(&ids, 0))
            .await,
    );
    ok(
        "create order-3",
        store
            .append("order-3", ExpectedVersion::NoStream, vec![event("A", 5)])
            .await,
    );
    let streams = ["order-1", "order-2", "order-3"];
    let before = snapshot(store, &streams).await;
    let fresh = new_ids(1)[0];
    let attempts: [(&str, &str, ExpectedVersion, Vec<EventData>); 5] = [
        (
            "the same events to a new stream with no_stream",
            "order-2",
            ExpectedVersion::NoStream,
            events_with(&ids, 0),
        ),
        (
            "the same events to a new stream with any",
            "order-2",
            ExpectedVersion::Any,
            events_with(&ids, 0),
        ),
        (
            "one of them after a new event",
            "order-2",
            ExpectedVersion::Any,
            events_with(&[fresh, ids[1]], 0),
        ),
        (
            "one of them to an existing stream at its revision",
            "order-3",
            ExpectedVersion::Exact(Revision(0)),
            events_with(&ids[..1], 0),
        ),
        (
            "the same events to an existing stream with stream_exists",
            "order-3",
            ExpectedVersion::StreamExists,
            events_with(&ids, 0),
        ),
    ];
    for (what, stream, expected, events) in attempts {
        expect_code(
            what,
            store.append(stream, expected, events).await,
            "idempotency_conflict",
        );
        assert_unchanged(store, &before, &streams, what).await;
    }
    expect_code(
        "a multi-stream append that writes one of the ids to another stream",
        store
            .append_multi(vec![
                StreamWrite::new("order-4", ExpectedVersion::NoStream, vec![event("B", 6)]),
                StreamWrite::new("order-2", ExpectedVersion::NoStream, events_with(&ids, 0)),
            ])
            .await,
        "idempotency_conflict",
    );
    assert!(
        !ok("stream_exists", store.stream_exists("order-4").await),
        "a refused multi-stream append must not write its other streams"
    );
    assert_unchanged(store, &before, &streams, "the refused multi-stream append").await;
}

/// The same id twice in one append (or in two streams of one multi-stream append) is
/// an `InvalidEvent`; nothing is written.
pub async fn duplicate_id_within_one_append_is_invalid<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    let id = new_ids(1)[0];
    let streams = ["order-1", "order-2"];
    let before = snapshot(store, &streams).await;
    expect_code(
        "one id twice in one append",
        store
            .append(
                "order-1",
                ExpectedVersion::NoStream,
                vec![
                    event_with_id("A", 0, id),
                    event("B", 1),
                    event_with_id("C", 2, id),
                ],
            )
            .await,
        "invalid_event",
    );
    assert_unchanged(store, &before, &streams, "one id twice in one append").await;
    expect_code(
        "one id in two streams of one multi-stream append",
        store
            .append_multi(vec![
                StreamWrite::new(
                    "order-1",
                    ExpectedVersion::NoStream,
                    vec![event_with_id("A", 0, id)],
                ),
                StreamWrite::new(
                    "order-2",
                    ExpectedVersion::NoStream,
                    vec![event_with_id("B", 1, id)],
                ),
            ])
            .await,
        "invalid_event",
    );
    assert_unchanged(
        store,
        &before,
        &streams,
        "one id in two streams of one multi-stream append",
    )
    .await;
    ok(
        "the id alone is accepted afterwards",
        store
            .append(
                "order-1",
                ExpectedVersion::NoStream,
                vec![event_with_id("A", 0, id)],
            )
            .await,
    );
}

/// An id names one event: re-sending a known id with other content (data, type,
/// version or metadata) is an idempotency conflict naming the id, with any expected
/// version, and writes nothing; the same content with its JSON keys in another order
/// is still the same event.
pub async fn resend_with_other_content_is_an_idempotency_conflict<S: EventStore + ?Sized>(
    store: &S,
) {
    assert_fresh(store).await;
    let id = new_ids(1)[0];
    let original = EventData::from_json_bytes("Happened", br#"{"n":1,"m":2}"#.to_vec())
        .expect("valid event")
        .with_id(id);
    let first = ok(
        "first append",
        store
            .append("order-1", ExpectedVersion::NoStream, vec![original.clone()])
            .await,
    );
    let streams = ["order-1"];
    let before = snapshot(store, &streams).await;
    let reordered = EventData::from_json_bytes("Happened", br#"{ "m": 2, "n": 1 }"#.to_vec())
        .expect("valid event")
        .with_id(id);
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Any] {
        let again = ok(
            "re-send the same content, keys reordered",
            store
                .append("order-1", expected, vec![reordered.clone()])
                .await,
        );
        assert_eq!(again, first, "a re-send returns the original result");
    }
    let mut other_data = original.clone();
    other_data.data = bytes::Bytes::from_static(br#"{"n":1,"m":3}"#);
    let mut other_type = original.clone();
    other_type.event_type = "Changed".into();
    let other_version = original.clone().with_version(2);
    for (what, changed) in [
        ("data", other_data),
        ("type", other_type),
        ("version", other_version),
    ] {
        for expected in [ExpectedVersion::NoStream, ExpectedVersion::Any] {
            let result = store
                .append("order-1", expected, vec![changed.clone()])
                .await;
            let context = format!("re-send of id {id} with other {what} ({expected:?})");
            match &result {
                Err(e) => assert!(
                    e.to_string().contains(&id.to_string()),
                    "{context}: the error names the id: {e}"
                ),
                Ok(_) => panic!("{context}: expected a conflict, got {result:?}"),
            }
            expect_code(&context, result, "idempotency_conflict");
        }
    }
    assert_unchanged(store, &before, &streams, "re-sends with other content").await;
}
