//! Appends: revisions and positions, what an append reports, atomic multi-event
//! appends, ids, and round-tripping every field of an event.

use bytes::Bytes;
use eventfold_core::{
    EventData, EventStore, ExpectedVersion, Position, ReadStream, Revision, STREAM_NAME_BYTES_MAX,
    StreamWrite,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::{
    assert_fresh, assert_unchanged, event, event_with_id, expect_code, json_value, n_of, new_ids,
    ok, read_whole_log, read_whole_stream, snapshot,
};

/// Revisions count from 0 in each stream; positions are global: one sequence from 0,
/// gap-free and increasing across all streams, in the order appends were made.
pub async fn revisions_count_per_stream_and_positions_are_global<S: EventStore + ?Sized>(
    store: &S,
) {
    assert_fresh(store).await;
    let appends: [(&str, u64); 5] = [
        ("order-1", 1),
        ("order-2", 2),
        ("order-1", 1),
        ("invoice-1", 3),
        ("order-2", 1),
    ];
    let mut n = 0;
    for (stream, count) in appends {
        let events = (0..count)
            .map(|_| {
                n += 1;
                event("Happened", n - 1)
            })
            .collect();
        ok(
            "append",
            store.append(stream, ExpectedVersion::Any, events).await,
        );
    }
    let log = read_whole_log(store).await;
    assert_eq!(log.len(), 8, "$all holds every event written");
    let expected: [(&str, u64); 8] = [
        ("order-1", 0),
        ("order-2", 0),
        ("order-2", 1),
        ("order-1", 1),
        ("invoice-1", 0),
        ("invoice-1", 1),
        ("invoice-1", 2),
        ("order-2", 2),
    ];
    for (i, (event, (stream, revision))) in log.iter().zip(expected).enumerate() {
        assert_eq!(
            event.position,
            Position(i as u64),
            "positions are gap-free from 0"
        );
        assert_eq!(
            (event.stream.as_str(), event.revision),
            (stream, Revision(revision)),
            "event at position {i}"
        );
        assert_eq!(n_of(event), i as u64, "events keep their append order");
    }
    for stream in ["order-1", "order-2", "invoice-1"] {
        let events = read_whole_stream(store, stream).await;
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.stream, stream);
            assert_eq!(event.revision, Revision(i as u64), "{stream} counts from 0");
            let in_log = &log[event.position.get() as usize];
            assert_eq!(
                (in_log.stream.as_str(), in_log.revision, in_log.id),
                (stream, event.revision, event.id),
                "read_stream and read_all agree on where each event is"
            );
        }
    }
}

/// An append reports the revisions of its first and last event and the position of
/// its last event; after it, that position is the head.
pub async fn append_result_describes_what_was_written<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    let plan: [(&str, ExpectedVersion, u64); 4] = [
        ("order-1", ExpectedVersion::NoStream, 3),
        ("order-2", ExpectedVersion::Any, 1),
        ("order-1", ExpectedVersion::Exact(Revision(2)), 2),
        ("order-1", ExpectedVersion::StreamExists, 1),
    ];
    for (stream, expected, count) in plan {
        let before = ok("stream_revision", store.stream_revision(stream).await);
        let ids = new_ids(count as usize);
        let events = ids
            .iter()
            .enumerate()
            .map(|(i, id)| event_with_id("Happened", i as u64, *id))
            .collect();
        let result = ok("append", store.append(stream, expected, events).await);
        let first = before.map_or(Revision(0), Revision::next);
        assert_eq!(
            result.first_revision, first,
            "first_revision of an append to {stream}"
        );
        assert_eq!(
            result.last_revision,
            Revision(first.get() + count - 1),
            "last_revision of an append of {count} events to {stream}"
        );
        assert_eq!(
            ok("head_position", store.head_position().await),
            Some(result.position),
            "after an append its position is the head"
        );
        let stored = ok(
            "read_stream",
            store
                .read_stream(stream, ReadStream::forward().from(first))
                .await,
        );
        let stored_ids: Vec<Uuid> = stored.iter().map(|e| e.id).collect();
        assert_eq!(stored_ids, ids, "the appended events follow the old end");
        assert_eq!(
            stored.last().map(|e| (e.revision, e.position)),
            Some((result.last_revision, result.position)),
            "position is the position of the last event written"
        );
    }
}

/// The events of one append are stored together or not at all: contiguous revisions
/// and positions in the given order, and an append with one invalid event writes none.
pub async fn multi_event_append_is_atomic_and_contiguous<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    ok(
        "append to another stream first",
        store
            .append("invoice-1", ExpectedVersion::Any, vec![event("A", 100)])
            .await,
    );
    ok(
        "start the stream",
        store
            .append("order-1", ExpectedVersion::Any, vec![event("A", 101)])
            .await,
    );
    let events: Vec<EventData> = (0..5).map(|n| event("Happened", n)).collect();
    let result = ok(
        "append five events",
        store
            .append("order-1", ExpectedVersion::Exact(Revision(0)), events)
            .await,
    );
    assert_eq!(
        (result.first_revision, result.last_revision, result.position),
        (Revision(1), Revision(5), Position(6))
    );
    let stored = ok(
        "read_stream",
        store
            .read_stream("order-1", ReadStream::forward().from(Revision(1)))
            .await,
    );
    assert_eq!(stored.len(), 5);
    for (i, event) in stored.iter().enumerate() {
        assert_eq!(
            n_of(event),
            i as u64,
            "events keep their order in the append"
        );
        assert_eq!(
            event.revision,
            Revision(1 + i as u64),
            "revisions are contiguous"
        );
        assert_eq!(
            event.position,
            Position(2 + i as u64),
            "positions are contiguous"
        );
    }

    let streams = ["order-1"];
    let before = snapshot(store, &streams).await;
    let mut broken = event("Happened", 7);
    broken.version = 0;
    expect_code(
        "an append whose third event is invalid",
        store
            .append(
                "order-1",
                ExpectedVersion::Any,
                vec![event("Happened", 5), event("Happened", 6), broken],
            )
            .await,
        "invalid_event",
    );
    assert_unchanged(store, &before, &streams, "an append with an invalid event").await;
}

/// The store fills missing ids with UUID v7, all distinct; ids the writer gives are
/// kept as given.
pub async fn generated_ids_are_uuid_v7_and_given_ids_are_kept<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    let given = Uuid::new_v4();
    ok(
        "append with and without ids",
        store
            .append(
                "order-1",
                ExpectedVersion::NoStream,
                vec![
                    event("A", 0),
                    event("B", 1),
                    event_with_id("C", 2, given),
                    event("D", 3),
                ],
            )
            .await,
    );
    ok(
        "append without ids",
        store
            .append("order-1", ExpectedVersion::Any, vec![event("E", 4)])
            .await,
    );
    let stored = read_whole_stream(store, "order-1").await;
    assert_eq!(stored.len(), 5);
    assert_eq!(stored[2].id, given, "a given id is kept");
    let mut seen = std::collections::HashSet::new();
    for event in &stored {
        assert!(seen.insert(event.id), "event id {} appears twice", event.id);
        if event.id != given {
            assert_eq!(
                event.id.get_version_num(),
                7,
                "generated id {} of {} is not a UUID v7",
                event.id,
                event.event_type
            );
        }
    }
    let log = read_whole_log(store).await;
    let log_ids: Vec<Uuid> = log.iter().map(|e| e.id).collect();
    let stream_ids: Vec<Uuid> = stored.iter().map(|e| e.id).collect();
    assert_eq!(
        log_ids, stream_ids,
        "read_all returns the same ids as read_stream"
    );
}

/// Type, schema version, data and metadata come back as written, through both
/// `read_stream` and `read_all`. JSON is compared as values, not bytes.
pub async fn event_fields_round_trip<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    let big = "x".repeat(64 * 1024);
    let payloads = [
        json!({"total": 42, "lines": [{"sku": "A-1", "qty": 2}], "note": null, "paid": false}),
        json!([1, 2.5, "three", {"four": [4]}]),
        json!("Grüße, 世界 \"quoted\" \\ back\\slash \n newline \t tab \u{1F600}"),
        json!(-17),
        json!(null),
        json!(true),
        json!({"big": big}),
    ];
    let metadata = json!({"user": "ada", "nested": {"trace": [1, 2]}, "unicode": "ñ"});
    let mut written = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        let event = EventData::json(format!("Thing Happened ü{i}"), payload)
            .expect("valid JSON")
            .with_version(i as u32 + 1)
            .with_metadata(&metadata)
            .expect("metadata is an object");
        written.push(event);
    }
    let mut plain = event("Plain", 0);
    plain.data = Bytes::from_static(b"  { \"spaced\" :  1 }  ");
    written.push(plain);
    ok(
        "append",
        store
            .append("thing-1", ExpectedVersion::NoStream, written.clone())
            .await,
    );
    let by_stream = read_whole_stream(store, "thing-1").await;
    let by_log = read_whole_log(store).await;
    assert_eq!(by_stream.len(), written.len());
    assert_eq!(by_log.len(), written.len());
    for ((given, stored), logged) in written.iter().zip(&by_stream).zip(&by_log) {
        for (how, read) in [("read_stream", stored), ("read_all", logged)] {
            assert_eq!(read.stream, "thing-1", "{how}: stream");
            assert_eq!(read.event_type, given.event_type, "{how}: type");
            assert_eq!(read.version, given.version, "{how}: schema version");
            assert_eq!(
                json_value("data", &read.data),
                json_value("data", &given.data),
                "{how}: data of {}",
                given.event_type
            );
            assert_eq!(
                json_value("metadata", &read.metadata),
                json_value("metadata", &given.metadata),
                "{how}: metadata of {}",
                given.event_type
            );
        }
        assert_eq!(
            (stored.id, stored.revision, stored.position),
            (logged.id, logged.revision, logged.position),
            "read_stream and read_all agree"
        );
    }
    assert_eq!(
        json_value("metadata", &by_stream[by_stream.len() - 1].metadata),
        json!({}),
        "default metadata is an empty object"
    );
    assert_eq!(by_stream[by_stream.len() - 1].version, 1, "default version");
}

/// Stream names with spaces, slashes, query characters, non-ASCII letters, and the
/// longest allowed name all work (a backend that puts names in URLs or file names must
/// encode them).
pub async fn unusual_stream_names_round_trip<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    let longest = "n".repeat(STREAM_NAME_BYTES_MAX);
    let names = [
        "order with spaces-1",
        "a/b/../c",
        "x?y=1&z#frag",
        "100%-sure",
        "Bestellung-Größe-ü",
        "注文-1",
        "dots.and:colons-1",
        longest.as_str(),
    ];
    for (i, name) in names.iter().enumerate() {
        let result = ok(
            &format!("append to {name:?}"),
            store
                .append(
                    name,
                    ExpectedVersion::NoStream,
                    vec![event("Named", i as u64)],
                )
                .await,
        );
        assert_eq!(result.position, Position(i as u64));
    }
    for (i, name) in names.iter().enumerate() {
        let events = ok(
            &format!("read_stream {name:?}"),
            store.read_stream(name, ReadStream::forward()).await,
        );
        assert_eq!(events.len(), 1, "stream {name:?} has one event");
        assert_eq!(events[0].stream, *name);
        assert_eq!(
            n_of(&events[0]),
            i as u64,
            "stream {name:?} has its own event"
        );
        assert_eq!(
            ok("stream_revision", store.stream_revision(name).await),
            Some(Revision(0))
        );
    }
    let log = read_whole_log(store).await;
    let log_names: Vec<&str> = log.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(
        log_names, names,
        "read_all reports each stream name as written"
    );
}

/// Correlation and causation ids set with `EventData::with_correlation_id` and
/// `with_causation_id` come back through `RecordedEvent::correlation_id()` and
/// `causation_id()`, beside the other metadata.
pub async fn correlation_and_causation_ids_round_trip<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    let correlation = Uuid::now_v7();
    let causation = Uuid::new_v4();
    let traced = event("OrderPlaced", 0)
        .with_metadata(&json!({"user": "ada"}))
        .expect("metadata is an object")
        .with_correlation_id(correlation)
        .with_causation_id(causation);
    let untraced = event("OrderPaid", 1);
    ok(
        "append",
        store
            .append("order-1", ExpectedVersion::NoStream, vec![traced, untraced])
            .await,
    );
    let stored = read_whole_stream(store, "order-1").await;
    assert_eq!(
        stored[0].correlation_id(),
        Some(correlation),
        "correlation id"
    );
    assert_eq!(stored[0].causation_id(), Some(causation), "causation id");
    assert_eq!(
        json_value("metadata", &stored[0].metadata)["user"],
        json!("ada"),
        "other metadata is kept beside the ids"
    );
    assert_eq!(stored[1].correlation_id(), None);
    assert_eq!(stored[1].causation_id(), None);
}

/// Empty names and names starting with `$` (reserved for system streams), names with
/// control characters and names longer than the limit are refused with
/// `InvalidStreamName`, whatever the expected version; nothing is written.
pub async fn invalid_stream_names_are_refused<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    ok(
        "append to a valid stream",
        store
            .append("order-1", ExpectedVersion::Any, vec![event("A", 0)])
            .await,
    );
    let too_long = "n".repeat(STREAM_NAME_BYTES_MAX + 1);
    let names = ["", "$all", "$ce-order", "$", "line\nbreak", &too_long];
    let before = snapshot(store, &["order-1"]).await;
    for name in names {
        for expected in [
            ExpectedVersion::Any,
            ExpectedVersion::NoStream,
            ExpectedVersion::StreamExists,
            ExpectedVersion::Exact(Revision(0)),
        ] {
            expect_code(
                &format!("append to {name:?} expecting {expected}"),
                store.append(name, expected, vec![event("B", 1)]).await,
                "invalid_stream_name",
            );
        }
        expect_code(
            &format!("append_multi with {name:?} second"),
            store
                .append_multi(vec![
                    StreamWrite::new("order-2", ExpectedVersion::Any, vec![event("C", 2)]),
                    StreamWrite::new(name, ExpectedVersion::Any, vec![event("D", 3)]),
                ])
                .await,
            "invalid_stream_name",
        );
    }
    assert_unchanged(store, &before, &["order-1"], "appends to invalid streams").await;
}

/// Events without a type, with schema version 0, with metadata that is not a JSON
/// object, with a control character in the type, with the nil UUID as id, or with
/// data or metadata a JSON reader refuses (a lone surrogate escape, nesting deeper
/// than 127 levels, a number out of range) are refused with `InvalidEvent`.
pub async fn invalid_events_are_refused<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    ok(
        "append a valid event",
        store
            .append("order-1", ExpectedVersion::Any, vec![event("A", 0)])
            .await,
    );
    let before = snapshot(store, &["order-1"]).await;
    let valid = event("Valid", 1);
    let nested = format!("{}{}", "[".repeat(128), "]".repeat(128));
    let broken: [(&str, EventData); 10] = [
        (
            "an empty type",
            EventData {
                event_type: String::new(),
                ..valid.clone()
            },
        ),
        (
            "schema version 0",
            EventData {
                version: 0,
                ..valid.clone()
            },
        ),
        (
            "metadata that is an array",
            EventData {
                metadata: Bytes::from_static(b"[1]"),
                ..valid.clone()
            },
        ),
        (
            "a control character in the type",
            EventData {
                event_type: "Order\u{0}Placed".into(),
                ..valid.clone()
            },
        ),
        (
            "a type longer than 256 bytes",
            EventData {
                event_type: "T".repeat(257),
                ..valid.clone()
            },
        ),
        ("the nil UUID as its id", valid.clone().with_id(Uuid::nil())),
        (
            "data holding a lone surrogate escape",
            EventData {
                data: Bytes::from_static(br#"{"text":"\ud800"}"#),
                ..valid.clone()
            },
        ),
        (
            "data nested 128 levels deep",
            EventData {
                data: Bytes::from(nested),
                ..valid.clone()
            },
        ),
        (
            "a number out of range",
            EventData {
                data: Bytes::from_static(b"[1e400]"),
                ..valid.clone()
            },
        ),
        (
            "metadata holding a lone surrogate escape",
            EventData {
                metadata: Bytes::from_static(br#"{"note":"\udc00"}"#),
                ..valid.clone()
            },
        ),
    ];
    for (what, bad) in broken {
        expect_code(
            &format!("an event with {what}"),
            store
                .append("order-1", ExpectedVersion::Any, vec![valid.clone(), bad])
                .await,
            "invalid_event",
        );
    }
    assert_unchanged(store, &before, &["order-1"], "appends of invalid events").await;
}

/// An append of no events is refused with `EmptyAppend`, as is a multi-stream append
/// with no writes or with one write that has no events.
pub async fn empty_append_is_refused<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    expect_code(
        "append of no events to a new stream",
        store.append("order-1", ExpectedVersion::Any, vec![]).await,
        "empty_append",
    );
    assert!(
        !ok("stream_exists", store.stream_exists("order-1").await),
        "an empty append must not create the stream"
    );
    ok(
        "append an event",
        store
            .append("order-1", ExpectedVersion::Any, vec![event("A", 0)])
            .await,
    );
    let before = snapshot(store, &["order-1", "order-2"]).await;
    expect_code(
        "append of no events to an existing stream",
        store
            .append("order-1", ExpectedVersion::Exact(Revision(0)), vec![])
            .await,
        "empty_append",
    );
    expect_code(
        "append_multi of no writes",
        store.append_multi(vec![]).await,
        "empty_append",
    );
    expect_code(
        "append_multi where one write has no events",
        store
            .append_multi(vec![
                StreamWrite::new("order-2", ExpectedVersion::Any, vec![event("B", 1)]),
                StreamWrite::new("order-1", ExpectedVersion::Any, vec![]),
            ])
            .await,
        "empty_append",
    );
    assert_unchanged(store, &before, &["order-1", "order-2"], "empty appends").await;
}

/// `stream_revision`, `stream_exists` and `head_position` follow every append, and a
/// stream's revision moves only with appends to that stream.
pub async fn stream_revision_and_exists_track_appends<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    let streams = ["order-1", "order-2"];
    for stream in streams {
        assert_eq!(
            ok("stream_revision", store.stream_revision(stream).await),
            None
        );
        assert!(!ok("stream_exists", store.stream_exists(stream).await));
    }
    let plan: [(&str, u64); 4] = [
        ("order-1", 2),
        ("order-2", 1),
        ("order-1", 1),
        ("order-2", 3),
    ];
    let mut last = [None, None];
    for (stream, count) in plan {
        let events = (0..count).map(|n| event("Happened", n)).collect();
        let result = ok(
            "append",
            store.append(stream, ExpectedVersion::Any, events).await,
        );
        let index = streams.iter().position(|s| *s == stream).unwrap_or(0);
        last[index] = Some(result.last_revision);
        for (other, revision) in streams.iter().zip(last) {
            assert_eq!(
                ok("stream_revision", store.stream_revision(other).await),
                revision,
                "stream_revision({other}) after an append to {stream}"
            );
            assert_eq!(
                ok("stream_exists", store.stream_exists(other).await),
                revision.is_some(),
                "stream_exists({other}) after an append to {stream}"
            );
        }
        assert_eq!(
            ok("head_position", store.head_position().await),
            Some(result.position)
        );
    }
    assert_eq!(last, [Some(Revision(2)), Some(Revision(3))]);
    assert_eq!(
        ok("head_position", store.head_position().await),
        Some(Position(6))
    );
}
