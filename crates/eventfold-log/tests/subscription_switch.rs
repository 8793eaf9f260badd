//! Property: a subscription that starts behind a backlog and turns live while several
//! writers append concurrently (group commit batching their appends) delivers exactly
//! the committed log, in order, with neither a gap nor a duplicate at the switch, for
//! `$all`, a filtered `$all` and one stream.

mod common;

use std::sync::Arc;
use std::time::Duration;

use eventfold_core::{
    AllFilter, EventData, EventStore, ExpectedVersion, ReadStream, RecordedEvent,
};
use eventfold_log::{LogOptions, LogStore};
use eventfold_subscription::Subscription;
use proptest::prelude::*;

fn event(event_type: &str, n: u64) -> EventData {
    EventData::json(event_type, &n).expect("valid event")
}

#[derive(Debug, Clone)]
struct Scenario {
    backlog: u64,
    writers: usize,
    appends_per_writer: u64,
    batch: u64,
    segment_bytes_max: u64,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        0u64..120,
        1usize..5,
        1u64..40,
        1u64..4,
        prop_oneof![Just(4096u64), Just(1 << 20)],
    )
        .prop_map(
            |(backlog, writers, appends_per_writer, batch, segment_bytes_max)| Scenario {
                backlog,
                writers,
                appends_per_writer,
                batch,
                segment_bytes_max,
            },
        )
}

async fn drain<S, T>(subscription: &mut Subscription<S>, count: usize) -> Vec<RecordedEvent>
where
    S: std::ops::Deref<Target = T>,
    T: EventStore + ?Sized,
{
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("the subscription delivers every committed event within 10 s")
            .expect("read");
        seen.push(next);
    }
    seen
}

fn ids(events: &[RecordedEvent]) -> Vec<(u64, uuid::Uuid)> {
    events.iter().map(|e| (e.position.get(), e.id)).collect()
}

async fn run(scenario: Scenario) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = LogOptions {
        segment_bytes_max: scenario.segment_bytes_max,
        ..common::small_segments()
    };
    let store = Arc::new(LogStore::open(dir.path(), options).expect("open"));
    for n in 0..scenario.backlog {
        let (stream, kind) = if n.is_multiple_of(3) {
            ("order-1", "Placed")
        } else {
            ("cart-2", "Added")
        };
        store
            .append(stream, ExpectedVersion::Any, vec![event(kind, n)])
            .await
            .expect("backlog append");
    }
    let mut all = Subscription::to_all(store.clone(), None, AllFilter::default());
    let orders = AllFilter {
        category: Some("order".into()),
        ..AllFilter::default()
    };
    let mut filtered = Subscription::to_all(store.clone(), None, orders.clone());
    let mut one_stream = Subscription::to_stream(store.clone(), "order-1", None);

    let mut writers = Vec::new();
    for w in 0..scenario.writers {
        let store = store.clone();
        let (appends, batch) = (scenario.appends_per_writer, scenario.batch);
        writers.push(tokio::spawn(async move {
            for a in 0..appends {
                let stream = if (w as u64 + a).is_multiple_of(2) {
                    "order-1".to_string()
                } else {
                    format!("cart-{w}")
                };
                let events = (0..batch).map(|b| event("Live", a * 10 + b)).collect();
                store
                    .append(&stream, ExpectedVersion::Any, events)
                    .await
                    .expect("live append");
            }
        }));
    }
    let total = (scenario.backlog
        + scenario.writers as u64 * scenario.appends_per_writer * scenario.batch)
        as usize;
    // Readers run while the writers write: the switch to live happens mid-stream.
    let seen_all = drain(&mut all, total).await;
    for writer in writers {
        writer.await.expect("writer");
    }
    let committed = common::all_events(&*store).await;
    assert_eq!(
        ids(&seen_all),
        ids(&committed),
        "$all subscription differs from the log"
    );

    let expected_orders: Vec<RecordedEvent> = committed
        .iter()
        .filter(|e| orders.matches(&e.stream, &e.event_type))
        .cloned()
        .collect();
    let seen_orders = drain(&mut filtered, expected_orders.len()).await;
    assert_eq!(
        ids(&seen_orders),
        ids(&expected_orders),
        "filtered subscription differs"
    );

    let stream = store
        .read_stream("order-1", ReadStream::forward())
        .await
        .unwrap_or_default();
    let seen_stream = drain(&mut one_stream, stream.len()).await;
    assert_eq!(
        ids(&seen_stream),
        ids(&stream),
        "stream subscription differs"
    );
    // Nothing more was delivered than was written.
    assert!(
        tokio::time::timeout(Duration::from_millis(20), all.next())
            .await
            .is_err(),
        "a subscription delivered an event that was never written"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn catch_up_turns_live_without_gap_or_duplicate(scenario in scenario()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run(scenario));
    }
}
