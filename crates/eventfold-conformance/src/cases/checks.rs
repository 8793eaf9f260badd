//! Checks: writes of no events in a multi-stream append, which make it hold only while
//! a stream the writer read (and does not write) is as it was read.

use std::collections::HashMap;
use std::sync::Arc;

use eventfold_core::{Error, EventStore, ExpectedVersion, Revision, StreamWrite};
use eventfold_metadata::{DeleteMode, StreamAdmin};
use tokio::sync::Barrier;
use uuid::Uuid;

use super::concurrency::{LOSING_STREAK_MAX, TASKS, join_all};
use crate::support::{
    assert_fresh, assert_unchanged, event, event_with_id, expect_code, expect_wrong_version, n_of,
    new_ids, ok, read_whole_log, read_whole_stream, snapshot,
};

/// A check writes nothing and has no result; the append happens when every check
/// holds (`no_stream`, `stream_exists`, an exact revision, wherever the check sits
/// among the writes) and is refused whole with `WrongExpectedVersion` naming the
/// checked stream when one does not. A check expecting `any`, an append of checks only
/// and a check of a stream the append also writes are refused; a check of a
/// hard-deleted stream fails with `StreamDeleted`.
pub async fn checks_hold_or_refuse_the_whole_append<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    ok(
        "create seats-1",
        store
            .append("seats-1", ExpectedVersion::NoStream, vec![event("Map", 0)])
            .await,
    );
    let results = ok(
        "an append with checks that hold",
        store
            .append_multi(vec![
                StreamWrite::check("seats-1", ExpectedVersion::Exact(Revision(0))),
                StreamWrite::new(
                    "booking-1",
                    ExpectedVersion::NoStream,
                    vec![event("A", 1), event("A", 2)],
                ),
                StreamWrite::check("seats-9", ExpectedVersion::NoStream),
                StreamWrite::new("booking-2", ExpectedVersion::Any, vec![event("B", 3)]),
                StreamWrite::check("seats-1-copy", ExpectedVersion::NoStream),
            ])
            .await,
    );
    assert_eq!(
        results.len(),
        2,
        "one result per write of events, none for a check: {results:?}"
    );
    assert_eq!(
        (results[0].first_revision, results[0].last_revision),
        (Revision(0), Revision(1)),
        "the first result is booking-1's"
    );
    assert_eq!(
        (results[1].first_revision, results[1].last_revision),
        (Revision(0), Revision(0)),
        "the second result is booking-2's"
    );
    assert!(
        results[0].position < results[1].position,
        "results follow the order of the writes"
    );
    for (stream, revision) in [("seats-1", Some(Revision(0))), ("seats-9", None)] {
        assert_eq!(
            ok("stream_revision", store.stream_revision(stream).await),
            revision,
            "a check writes nothing to {stream}"
        );
    }
    ok(
        "stream_exists holds for an existing stream",
        store
            .append_multi(vec![
                StreamWrite::new("booking-3", ExpectedVersion::Any, vec![event("C", 4)]),
                StreamWrite::check("seats-1", ExpectedVersion::StreamExists),
            ])
            .await,
    );

    let streams = ["seats-1", "seats-9", "booking-4"];
    let before = snapshot(store, &streams).await;
    let refused = [
        (
            "an exact revision the stream is not at",
            "seats-1",
            ExpectedVersion::Exact(Revision(5)),
            Some(0),
        ),
        (
            "no_stream for a stream that exists",
            "seats-1",
            ExpectedVersion::NoStream,
            Some(0),
        ),
        (
            "stream_exists for a stream that does not",
            "seats-9",
            ExpectedVersion::StreamExists,
            None,
        ),
        (
            "an exact revision of a stream that does not exist",
            "seats-9",
            ExpectedVersion::Exact(Revision(0)),
            None,
        ),
    ];
    for (what, checked, expected, actual) in refused {
        expect_wrong_version(
            &format!("a check of {what}"),
            store
                .append_multi(vec![
                    StreamWrite::new("booking-4", ExpectedVersion::Any, vec![event("D", 5)]),
                    StreamWrite::check(checked, expected),
                ])
                .await,
            checked,
            expected,
            actual,
        );
        assert_unchanged(store, &before, &streams, what).await;
    }
    expect_code(
        "a check expecting any",
        store
            .append_multi(vec![
                StreamWrite::new("booking-4", ExpectedVersion::Any, vec![event("D", 5)]),
                StreamWrite::check("seats-1", ExpectedVersion::Any),
            ])
            .await,
        "empty_append",
    );
    expect_code(
        "an append of checks only",
        store
            .append_multi(vec![
                StreamWrite::check("seats-1", ExpectedVersion::Exact(Revision(0))),
                StreamWrite::check("seats-9", ExpectedVersion::NoStream),
            ])
            .await,
        "empty_append",
    );
    expect_code(
        "a check of a stream the append writes",
        store
            .append_multi(vec![
                StreamWrite::new("booking-4", ExpectedVersion::Any, vec![event("D", 5)]),
                StreamWrite::check("booking-4", ExpectedVersion::NoStream),
            ])
            .await,
        "invalid_event",
    );
    assert_unchanged(store, &before, &streams, "refused checks").await;

    ok(
        "hard delete seats-1",
        store
            .delete_stream(
                "seats-1",
                ExpectedVersion::Exact(Revision(0)),
                DeleteMode::Hard,
            )
            .await,
    );
    let deleted_before = snapshot(store, &["booking-4"]).await;
    for expected in [ExpectedVersion::StreamExists, ExpectedVersion::NoStream] {
        expect_code(
            &format!("a check ({expected}) of a hard-deleted stream"),
            store
                .append_multi(vec![
                    StreamWrite::new("booking-4", ExpectedVersion::Any, vec![event("D", 5)]),
                    StreamWrite::check("seats-1", expected),
                ])
                .await,
            "stream_deleted",
        );
    }
    assert_unchanged(
        store,
        &deleted_before,
        &["booking-4"],
        "checks of a deleted stream",
    )
    .await;
}

/// A re-send of an append with checks, after its answer was lost, gets the original
/// results even when a checked stream moved since (its checks held when it was
/// written) and writes nothing; new events with a stale check are refused.
pub async fn checks_do_not_stop_a_resend<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    ok(
        "create seats-1",
        store
            .append("seats-1", ExpectedVersion::NoStream, vec![event("Map", 0)])
            .await,
    );
    let ids = new_ids(4);
    let writes = |ids: &[Uuid]| {
        vec![
            StreamWrite::new(
                "booking-1",
                ExpectedVersion::Any,
                vec![event_with_id("A", 1, ids[0]), event_with_id("A", 2, ids[1])],
            ),
            StreamWrite::check("seats-1", ExpectedVersion::Exact(Revision(0))),
        ]
    };
    let original = ok("the first send", store.append_multi(writes(&ids)).await);
    ok(
        "seats-1 moves on",
        store
            .append("seats-1", ExpectedVersion::Any, vec![event("Map", 1)])
            .await,
    );
    let streams = ["seats-1", "booking-1"];
    let before = snapshot(store, &streams).await;
    let again = ok("the re-send", store.append_multi(writes(&ids)).await);
    assert_eq!(again, original, "a re-send returns the original results");
    assert_unchanged(store, &before, &streams, "a re-send with checks").await;
    expect_wrong_version(
        "new events with a stale check",
        store.append_multi(writes(&ids[2..4])).await,
        "seats-1",
        ExpectedVersion::Exact(Revision(0)),
        Some(1),
    );
    assert_unchanged(store, &before, &streams, "new events with a stale check").await;
}

/// 16 tasks decide on a price they read and write orders checked against its
/// revision, while another task keeps changing the price. Every order that was
/// acknowledged rests on the price as it was when the order was written: the last
/// `price-1` event before the order in the log is the revision the task read.
pub async fn concurrent_checks_never_pass_a_stale_read<S: EventStore + ?Sized + 'static>(
    store: Arc<S>,
) {
    const ORDERS_PER_TASK: u64 = 4;
    const PRICE_CHANGES: u64 = 40;
    assert_fresh(&*store).await;
    ok(
        "create price-1",
        store
            .append("price-1", ExpectedVersion::NoStream, vec![event("Set", 0)])
            .await,
    );
    let barrier = Arc::new(Barrier::new(TASKS as usize + 1));
    let changer = {
        let store = Arc::clone(&store);
        let barrier = Arc::clone(&barrier);
        tokio::spawn(async move {
            barrier.wait().await;
            for n in 1..=PRICE_CHANGES {
                ok(
                    "change the price",
                    store
                        .append("price-1", ExpectedVersion::Any, vec![event("Set", n)])
                        .await,
                );
            }
        })
    };
    let tasks = (0..TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                let mut refused = 0u64;
                for k in 0..ORDERS_PER_TASK {
                    let started = std::time::Instant::now();
                    loop {
                        let read = ok("read the price", store.stream_revision("price-1").await)
                            .expect("price-1 exists");
                        let writes = vec![
                            StreamWrite::new(
                                format!("order-{task}"),
                                ExpectedVersion::Any,
                                vec![event("Ordered", read.get()).with_id(Uuid::new_v4())],
                            ),
                            StreamWrite::check("price-1", ExpectedVersion::Exact(read)),
                        ];
                        match store.append_multi(writes).await {
                            Ok(results) => {
                                assert_eq!(results.len(), 1, "no result for the check");
                                break;
                            }
                            Err(Error::WrongExpectedVersion { stream, .. })
                                if stream == "price-1" =>
                            {
                                refused += 1;
                                assert!(
                                    started.elapsed() < LOSING_STREAK_MAX,
                                    "order {k} of task {task} lost every race for {:?}",
                                    LOSING_STREAK_MAX
                                );
                            }
                            Err(e) => panic!("append of an order: {e}"),
                        }
                    }
                }
                refused
            })
        })
        .collect();
    let refused: u64 = join_all(tasks).await.into_iter().sum();
    join_all(vec![changer]).await;

    let log = read_whole_log(&*store).await;
    let mut price_revision = None;
    let mut orders: HashMap<String, u64> = HashMap::new();
    for event in &log {
        if event.stream == "price-1" {
            price_revision = Some(event.revision.get());
        } else if event.stream.starts_with("order-") {
            let read = n_of(event);
            assert_eq!(
                Some(read),
                price_revision,
                "order {} at position {} was decided on price revision {read}, but the price was at {:?} when it was written (refused stale decisions: {refused})",
                event.stream,
                event.position,
                price_revision
            );
            *orders.entry(event.stream.clone()).or_default() += 1;
        }
    }
    assert_eq!(orders.len() as u64, TASKS, "every task wrote its orders");
    assert!(
        orders.values().all(|&n| n == ORDERS_PER_TASK),
        "every acknowledged order is stored once: {orders:?}"
    );
    assert_eq!(
        read_whole_stream(&*store, "price-1").await.len() as u64,
        PRICE_CHANGES + 1,
        "a check writes nothing to the checked stream"
    );
}
