//! What the cases share: building events, checking errors, taking snapshots of a
//! store to prove that a refused append wrote nothing.

use std::fmt::Debug;

use eventfold_core::{
    AllFilter, EventData, EventStore, ExpectedVersion, Position, ReadAll, ReadStream,
    RecordedEvent, Result, Revision,
};
use eventfold_wire::ErrorCode;
use serde_json::{Value, json};
use uuid::Uuid;

/// Page size used when a case reads the whole log.
const PAGE_EVENTS_MAX: u64 = 100;

/// An event of `event_type` whose data is `{"n": n}`, without an id.
pub(crate) fn event(event_type: &str, n: u64) -> EventData {
    EventData::json(event_type, &json!({ "n": n })).expect("a JSON object is valid event data")
}

/// An event of `event_type` whose data is `{"n": n}`, with a given id.
pub(crate) fn event_with_id(event_type: &str, n: u64, id: Uuid) -> EventData {
    event(event_type, n).with_id(id)
}

/// `count` fresh ids (UUID v4, so that they cannot be mistaken for generated ones).
pub(crate) fn new_ids(count: usize) -> Vec<Uuid> {
    (0..count).map(|_| Uuid::new_v4()).collect()
}

/// The JSON value of raw JSON bytes. Backends may re-encode JSON (the HTTP client
/// does), so the cases compare values, not bytes.
pub(crate) fn json_value(what: &str, bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{what} read back is not valid JSON ({e}): {bytes:?}"))
}

/// The `n` field of an event written with [`event`].
pub(crate) fn n_of(event: &RecordedEvent) -> u64 {
    json_value("data", &event.data)["n"]
        .as_u64()
        .unwrap_or_else(|| panic!("event {event:?} has no numeric field n"))
}

/// Unwraps a result the case expects to be a success.
#[track_caller]
pub(crate) fn ok<T>(context: &str, result: Result<T>) -> T {
    result.unwrap_or_else(|e| {
        panic!(
            "{context}: expected success, got `{}`: {e}",
            ErrorCode::of(&e)
        )
    })
}

/// Checks that `result` failed with the error of `code` (see `Error::code`).
#[track_caller]
pub(crate) fn expect_code<T: Debug>(context: &str, result: Result<T>, code: &str) {
    match result {
        Ok(value) => panic!("{context}: expected error `{code}`, got success: {value:?}"),
        Err(e) if ErrorCode::of(&e) == code => {}
        Err(e) => panic!(
            "{context}: expected error `{code}`, got `{}`: {e}",
            ErrorCode::of(&e)
        ),
    }
}

/// Checks that `result` failed with `WrongExpectedVersion` naming `stream`,
/// `expected` and the stream's `actual` last revision.
#[track_caller]
pub(crate) fn expect_wrong_version<T: Debug>(
    context: &str,
    result: Result<T>,
    stream: &str,
    expected: ExpectedVersion,
    actual: Option<u64>,
) {
    match result {
        Err(eventfold_core::Error::WrongExpectedVersion {
            stream: s,
            expected: e,
            actual: a,
        }) => {
            assert_eq!(
                s, stream,
                "{context}: WrongExpectedVersion names the stream"
            );
            assert_eq!(
                e, expected,
                "{context}: WrongExpectedVersion echoes `expected`"
            );
            assert_eq!(
                a,
                actual.map(Revision),
                "{context}: WrongExpectedVersion reports the stream's actual last revision"
            );
        }
        Ok(value) => panic!("{context}: expected WrongExpectedVersion, got success: {value:?}"),
        Err(e) => panic!(
            "{context}: expected WrongExpectedVersion, got `{}`: {e}",
            ErrorCode::of(&e)
        ),
    }
}

/// Panics unless the store is empty: every case starts from a fresh store.
pub(crate) async fn assert_fresh<S: EventStore + ?Sized>(store: &S) {
    let head = ok("head_position", store.head_position().await);
    assert_eq!(
        head, None,
        "every conformance case needs a fresh, empty store; this one already has events"
    );
}

/// Every event of `$all`, read in pages.
pub(crate) async fn read_whole_log<S: EventStore + ?Sized>(store: &S) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut from = Position::START;
    loop {
        let page = ok(
            "read_all",
            store.read_all(ReadAll::from(from, PAGE_EVENTS_MAX)).await,
        );
        assert!(
            page.end_of_log || page.next > from,
            "read_all from {from} made no progress: next = {}, end_of_log = false",
            page.next
        );
        events.extend(page.events);
        if page.end_of_log {
            return events;
        }
        from = page.next;
    }
}

/// Every event of one stream, oldest first; empty when it does not exist.
pub(crate) async fn read_whole_stream<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
) -> Vec<RecordedEvent> {
    match store.read_stream(stream, ReadStream::forward()).await {
        Ok(events) => events,
        Err(e) if ErrorCode::of(&e) == "stream_not_found" => Vec::new(),
        Err(e) => panic!("read_stream({stream}) failed: {e}"),
    }
}

/// What a refused append must leave untouched.
#[derive(Debug, PartialEq)]
pub(crate) struct Snapshot {
    head: Option<Position>,
    revisions: Vec<(String, Option<Revision>)>,
    log: Vec<(String, Revision, Position, Uuid)>,
}

/// Takes a snapshot of the head, of the revisions of `streams` and of the whole log.
pub(crate) async fn snapshot<S: EventStore + ?Sized>(store: &S, streams: &[&str]) -> Snapshot {
    let head = ok("head_position", store.head_position().await);
    let mut revisions = Vec::new();
    for stream in streams {
        let revision = ok("stream_revision", store.stream_revision(stream).await);
        let exists = ok("stream_exists", store.stream_exists(stream).await);
        assert_eq!(
            exists,
            revision.is_some(),
            "stream_exists({stream}) disagrees with stream_revision = {revision:?}"
        );
        revisions.push((stream.to_string(), revision));
    }
    let log = read_whole_log(store)
        .await
        .into_iter()
        .map(|e| (e.stream, e.revision, e.position, e.id))
        .collect();
    Snapshot {
        head,
        revisions,
        log,
    }
}

/// Checks that the store still matches `before`: the refused `what` wrote nothing.
pub(crate) async fn assert_unchanged<S: EventStore + ?Sized>(
    store: &S,
    before: &Snapshot,
    streams: &[&str],
    what: &str,
) {
    let after = snapshot(store, streams).await;
    assert_eq!(
        &after, before,
        "{what} was refused, but the store changed (left: after, right: before)"
    );
}

/// Reads `$all` with `filter` in pages of `page_events` and checks every page against
/// `expected`, the positions of all matching events in order: no page holds more than
/// asked, holds only expected events, and never moves `next` past a matching event it
/// did not return.
pub(crate) async fn read_filtered<S: EventStore + ?Sized>(
    store: &S,
    filter: &AllFilter,
    page_events: u64,
    expected: &[u64],
) -> Vec<RecordedEvent> {
    let head = ok("head_position", store.head_position().await);
    let end = head.map_or(0, |p| p.get() + 1);
    let mut from = Position::START;
    let mut seen: Vec<RecordedEvent> = Vec::new();
    // Each page either returns an event or advances `next`, so one page per
    // position (plus one) is enough; more means the backend is looping.
    for _ in 0..=end + 1 {
        let page = ok(
            "read_all",
            store
                .read_all(ReadAll::from(from, page_events).filtered(filter.clone()))
                .await,
        );
        let context = format!("read_all from {from} limit {page_events} with {filter:?}");
        assert!(
            page.events.len() as u64 <= page_events,
            "{context}: returned {} events, more than the limit",
            page.events.len()
        );
        for event in &page.events {
            assert!(
                event.position >= from,
                "{context}: returned position {} before `from`",
                event.position
            );
            assert!(
                event.position < page.next,
                "{context}: returned position {} but next = {}",
                event.position,
                page.next
            );
        }
        seen.extend(page.events);
        let positions: Vec<u64> = seen.iter().map(|e| e.position.get()).collect();
        assert!(
            expected.starts_with(&positions),
            "{context}: events so far at positions {positions:?}, expected {expected:?}"
        );
        if let Some(&missed) = expected.get(positions.len()) {
            assert!(
                page.next.get() <= missed,
                "{context}: next = {} skips the matching event at position {missed}",
                page.next
            );
        }
        if page.end_of_log {
            assert_eq!(
                positions, expected,
                "{context}: end_of_log before every matching event was returned"
            );
            assert_eq!(
                page.next.get(),
                end,
                "{context}: at end_of_log, next must be just past the head"
            );
            return seen;
        }
        assert!(
            page.next > from,
            "{context}: page made no progress (next = from, not end_of_log)"
        );
        from = page.next;
    }
    panic!("read_all with {filter:?} never reached end_of_log after {end} pages");
}
