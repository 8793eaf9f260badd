//! Concurrent writers: optimistic concurrency on one stream, independent streams, and
//! multi-stream appends racing each other. The tasks run on several worker threads
//! and start together behind a barrier.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use eventfold_core::{
    AppendResult, Error, EventStore, ExpectedVersion, Position, RecordedEvent, Revision,
    StreamWrite,
};
use tokio::sync::Barrier;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::support::{assert_fresh, event, event_with_id, n_of, ok, read_whole_log};
use eventfold_wire::ErrorCode;

/// Writers in each concurrency case.
pub(crate) const TASKS: u64 = 16;
/// How long one append may keep losing races before the case gives up on the store.
/// A count of attempts would not do: a writer that re-reads the committed revision
/// spins while the winner's fsync is in flight, and a slow disk makes that many spins.
pub(crate) const LOSING_STREAK_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits for every task, re-raising the first task panic with its own message.
pub(crate) async fn join_all<T>(tasks: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(result) => results.push(result),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a writer task did not finish: {e}"),
        }
    }
    results
}

/// 16 tasks append to one stream at once, each reading the stream's revision and
/// appending with that exact expected version, retrying on `WrongExpectedVersion`.
/// Every append lands exactly once: the stream ends with gap-free revisions, no
/// duplicate and no lost event, each writer's events in its own order.
pub async fn concurrent_appends_to_one_stream_with_retries_are_serialized<
    S: EventStore + ?Sized + 'static,
>(
    store: Arc<S>,
) {
    const APPENDS_PER_TASK: u64 = 4;
    assert_fresh(&*store).await;
    ok(
        "create the stream",
        store
            .append(
                "counter-1",
                ExpectedVersion::NoStream,
                vec![event("Opened", 0)],
            )
            .await,
    );
    let barrier = Arc::new(Barrier::new(TASKS as usize));
    let tasks = (0..TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                let mut written: Vec<(Uuid, AppendResult)> = Vec::new();
                for k in 0..APPENDS_PER_TASK {
                    let id = Uuid::new_v4();
                    let n = 1000 * (task + 1) + k;
                    let losing_since = std::time::Instant::now();
                    loop {
                        let current =
                            ok("stream_revision", store.stream_revision("counter-1").await)
                                .expect("the stream exists");
                        let expected = ExpectedVersion::Exact(current);
                        let events = vec![event_with_id("Incremented", n, id)];
                        match store.append("counter-1", expected, events).await {
                            Ok(result) => {
                                assert_eq!(
                                    (result.first_revision, result.last_revision),
                                    (current.next(), current.next()),
                                    "an append expecting {current} lands right after it"
                                );
                                written.push((id, result));
                                break;
                            }
                            Err(Error::WrongExpectedVersion { .. }) => {
                                assert!(
                                    losing_since.elapsed() < LOSING_STREAK_MAX,
                                    "task {task} lost every race for {LOSING_STREAK_MAX:?}"
                                );
                                tokio::task::yield_now().await;
                            }
                            Err(e) => panic!(
                                "task {task}: concurrent append failed with `{}`: {e}",
                                ErrorCode::of(&e)
                            ),
                        }
                    }
                }
                written
            })
        })
        .collect();
    let written: Vec<(Uuid, AppendResult)> = join_all(tasks).await.into_iter().flatten().collect();

    let total = 1 + TASKS * APPENDS_PER_TASK;
    let events = crate::support::read_whole_stream(&*store, "counter-1").await;
    let revisions: Vec<u64> = events.iter().map(|e| e.revision.get()).collect();
    assert_eq!(
        revisions,
        (0..total).collect::<Vec<_>>(),
        "the stream holds every append once, with gap-free revisions"
    );
    let by_id: HashMap<Uuid, &RecordedEvent> = events.iter().map(|e| (e.id, e)).collect();
    assert_eq!(by_id.len(), events.len(), "no event id appears twice");
    let mut results_seen = HashSet::new();
    for (id, result) in &written {
        let stored = by_id
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged event {id} is not in the stream"));
        assert_eq!(
            (stored.revision, stored.position),
            (result.last_revision, result.position),
            "the acknowledged revision and position of event {id}"
        );
        assert!(
            results_seen.insert(result.last_revision),
            "two appends were acknowledged at revision {}",
            result.last_revision
        );
    }
    for task in 0..TASKS {
        let ns: Vec<u64> = events
            .iter()
            .map(n_of)
            .filter(|n| n / 1000 == task + 1)
            .collect();
        let want: Vec<u64> = (0..APPENDS_PER_TASK)
            .map(|k| 1000 * (task + 1) + k)
            .collect();
        assert_eq!(ns, want, "task {task}'s events, in its order");
    }
    let positions: Vec<u64> = events.iter().map(|e| e.position.get()).collect();
    assert_eq!(positions, revisions, "positions are gap-free too");
}

/// 16 tasks append at once, each to its own stream, with exact expected versions and
/// one- and two-event appends. Every event is stored; positions are unique and
/// gap-free, every stream's revisions are gap-free, and each two-event append sits in
/// two adjacent positions.
pub async fn concurrent_appends_to_distinct_streams_are_all_stored<
    S: EventStore + ?Sized + 'static,
>(
    store: Arc<S>,
) {
    const APPENDS_PER_TASK: u64 = 6;
    assert_fresh(&*store).await;
    let barrier = Arc::new(Barrier::new(TASKS as usize));
    let tasks = (0..TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let stream = format!("account-{task}");
                barrier.wait().await;
                let mut last: Option<Revision> = None;
                let mut results = Vec::new();
                let mut n = 0;
                for k in 0..APPENDS_PER_TASK {
                    let count = 1 + k % 2;
                    let events = (0..count)
                        .map(|_| {
                            n += 1;
                            event("Deposited", n - 1)
                        })
                        .collect();
                    let expected = last.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                    let result = ok(
                        &format!("append to {stream} expecting {expected}"),
                        store.append(&stream, expected, events).await,
                    );
                    assert_eq!(
                        result.first_revision,
                        last.map_or(Revision(0), Revision::next),
                        "{stream}: the append lands after the last one"
                    );
                    last = Some(result.last_revision);
                    results.push((count, result));
                }
                (stream, results)
            })
        })
        .collect();
    let written = join_all(tasks).await;

    let events_per_stream: u64 = (0..APPENDS_PER_TASK).map(|k| 1 + k % 2).sum();
    let log = read_whole_log(&*store).await;
    let positions: Vec<u64> = log.iter().map(|e| e.position.get()).collect();
    assert_eq!(
        positions,
        (0..TASKS * events_per_stream).collect::<Vec<_>>(),
        "positions are unique and gap-free across concurrent streams"
    );
    assert_eq!(
        ok("head_position", store.head_position().await),
        Some(Position(TASKS * events_per_stream - 1))
    );
    let mut streams: BTreeMap<&str, Vec<&RecordedEvent>> = BTreeMap::new();
    for event in &log {
        streams
            .entry(event.stream.as_str())
            .or_default()
            .push(event);
    }
    assert_eq!(streams.len() as u64, TASKS, "every stream is present");
    for (stream, results) in &written {
        let events = &streams[stream.as_str()];
        let revisions: Vec<u64> = events.iter().map(|e| e.revision.get()).collect();
        assert_eq!(
            revisions,
            (0..events_per_stream).collect::<Vec<_>>(),
            "{stream}: revisions gap-free, in position order"
        );
        let ns: Vec<u64> = events.iter().map(|e| n_of(e)).collect();
        assert_eq!(
            ns,
            (0..events_per_stream).collect::<Vec<_>>(),
            "{stream}: order"
        );
        for (count, result) in results {
            let last = events[result.last_revision.get() as usize];
            assert_eq!(
                last.position, result.position,
                "{stream}: acknowledged position"
            );
            let first = events[result.first_revision.get() as usize];
            assert_eq!(
                first.position.get() + count - 1,
                last.position.get(),
                "{stream}: the events of one append sit in adjacent positions"
            );
        }
    }
}

/// Tasks race multi-stream appends over overlapping streams with `any`. Each
/// multi-stream append is all there, in one contiguous block of positions, and every
/// stream's revisions stay gap-free.
pub async fn concurrent_multi_stream_appends_stay_atomic<S: EventStore + ?Sized + 'static>(
    store: Arc<S>,
) {
    const APPENDS_PER_TASK: u64 = 4;
    const STREAMS: u64 = 4;
    assert_fresh(&*store).await;
    let barrier = Arc::new(Barrier::new(TASKS as usize));
    let tasks = (0..TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                let mut written = Vec::new();
                for k in 0..APPENDS_PER_TASK {
                    let a = format!("ledger-{}", task % STREAMS);
                    let b = format!("ledger-{}", (task + 1 + k) % STREAMS);
                    let b = if a == b {
                        format!("ledger-{}", (task + 2) % STREAMS)
                    } else {
                        b
                    };
                    let ids = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
                    let writes = vec![
                        StreamWrite::new(
                            &a,
                            ExpectedVersion::Any,
                            vec![event_with_id("Debited", k, ids[0])],
                        ),
                        StreamWrite::new(
                            &b,
                            ExpectedVersion::Any,
                            vec![
                                event_with_id("Credited", k, ids[1]),
                                event_with_id("Noted", k, ids[2]),
                            ],
                        ),
                    ];
                    let results = ok("append_multi", store.append_multi(writes).await);
                    assert_eq!(results.len(), 2, "one result per write");
                    written.push(((a, b), ids, results));
                }
                written
            })
        })
        .collect();
    let written: Vec<_> = join_all(tasks).await.into_iter().flatten().collect();

    let log = read_whole_log(&*store).await;
    let total = TASKS * APPENDS_PER_TASK * 3;
    let positions: Vec<u64> = log.iter().map(|e| e.position.get()).collect();
    assert_eq!(
        positions,
        (0..total).collect::<Vec<_>>(),
        "positions are unique and gap-free"
    );
    let by_id: HashMap<Uuid, &RecordedEvent> = log.iter().map(|e| (e.id, e)).collect();
    assert_eq!(by_id.len(), log.len(), "no event id appears twice");
    for ((a, b), ids, results) in &written {
        let stored: Vec<&RecordedEvent> = ids
            .iter()
            .map(|id| {
                *by_id
                    .get(id)
                    .unwrap_or_else(|| panic!("acknowledged event {id} is missing"))
            })
            .collect();
        assert_eq!(
            (stored[0].stream.as_str(), stored[1].stream.as_str()),
            (a.as_str(), b.as_str())
        );
        assert_eq!(
            (stored[0].revision, stored[0].position),
            (results[0].last_revision, results[0].position),
            "acknowledged place of the first write"
        );
        assert_eq!(
            (stored[2].revision, stored[2].position),
            (results[1].last_revision, results[1].position),
            "acknowledged place of the second write"
        );
        let mut block: Vec<u64> = stored.iter().map(|e| e.position.get()).collect();
        block.sort_unstable();
        assert_eq!(
            block[2] - block[0],
            2,
            "the events of one multi-stream append sit in one block of positions: {block:?}"
        );
    }
    let mut streams: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for event in &log {
        streams
            .entry(event.stream.as_str())
            .or_default()
            .push(event.revision.get());
    }
    for (stream, revisions) in streams {
        assert_eq!(
            revisions,
            (0..revisions.len() as u64).collect::<Vec<_>>(),
            "{stream}: revisions gap-free, in position order"
        );
    }
}
