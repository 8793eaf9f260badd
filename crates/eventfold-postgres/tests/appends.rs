//! The writer's group commit: appends that are refused do not fail the appends they
//! share a transaction with, sizes are limited, and a store reopened on the schema
//! continues the log. Needs `EVENTFOLD_TEST_POSTGRES_URL`.

mod common;

use std::sync::Arc;

use eventfold_core::{
    Error, EventData, EventStore, ExpectedVersion, Position, ReadStream, Revision,
};
use eventfold_postgres::PostgresOptions;

use common::{TestSchema, database_url, runtime, within};

fn event(n: u64) -> EventData {
    EventData::json("Counted", &serde_json::json!({ "n": n })).expect("event")
}

#[test]
fn refused_appends_do_not_fail_their_neighbours_in_a_group_commit() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let store = Arc::new(schema.store().await);
        for s in 0..64 {
            store
                .append(&format!("s-{s}"), ExpectedVersion::NoStream, vec![event(0)])
                .await
                .expect("create the stream");
        }
        // 64 appends at once, every other one expecting a revision its stream never had.
        let appends: Vec<_> = (0..64u64)
            .map(|s| {
                let store = store.clone();
                tokio::spawn(async move {
                    let expected = if s % 2 == 0 { Revision(0) } else { Revision(7) };
                    store
                        .append(
                            &format!("s-{s}"),
                            ExpectedVersion::Exact(expected),
                            vec![event(1)],
                        )
                        .await
                })
            })
            .collect();
        for (s, append) in appends.into_iter().enumerate() {
            let outcome = within("an append", append).await.expect("append task");
            if s % 2 == 0 {
                let written = outcome.unwrap_or_else(|e| panic!("s-{s}: {e}"));
                assert_eq!(written.first_revision, Revision(1));
            } else {
                assert!(
                    matches!(
                        outcome,
                        Err(Error::WrongExpectedVersion {
                            actual: Some(Revision(0)),
                            ..
                        })
                    ),
                    "s-{s}: {outcome:?}"
                );
            }
        }
        assert_eq!(
            store.head_position().await.expect("head"),
            Some(Position(64 + 32 - 1))
        );
    });
}

#[test]
fn oversized_events_and_appends_are_refused_and_nothing_is_written() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let store = schema
            .store_with(PostgresOptions {
                event_bytes_max: 1_000,
                append_bytes_max: 3_000,
                ..schema.options()
            })
            .await;
        let big = EventData::json("Big", &"x".repeat(2_000)).expect("event");
        let refused = store.append("big-1", ExpectedVersion::Any, vec![big]).await;
        assert!(
            matches!(refused, Err(Error::TooLarge { what: "event", .. })),
            "{refused:?}"
        );
        let many: Vec<_> = (0..5)
            .map(|_| EventData::json("Mid", &"y".repeat(800)).expect("event"))
            .collect();
        let refused = store.append("big-1", ExpectedVersion::Any, many).await;
        assert!(
            matches!(refused, Err(Error::TooLarge { what: "append", .. })),
            "{refused:?}"
        );
        assert_eq!(store.head_position().await.expect("head"), None);
    });
}

#[test]
fn a_reopened_store_continues_the_log_and_keeps_every_field() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let written = {
            let store = schema.store().await;
            let e = event(1)
                .with_version(u32::MAX)
                .with_metadata(&serde_json::json!({"correlation_id": "c-1", "k": [1, 2]}))
                .expect("metadata");
            store
                .append("order-1", ExpectedVersion::NoStream, vec![e])
                .await
                .expect("append");
            store
                .read_stream("order-1", ReadStream::forward())
                .await
                .expect("read")
        };
        let store = schema.store().await;
        let read = store
            .read_stream("order-1", ReadStream::forward())
            .await
            .expect("read");
        assert_eq!(
            read, written,
            "a reopened store reads what was written, bit for bit"
        );
        assert_eq!(read[0].version, u32::MAX);
        let correlated = store
            .read_stream("$correlation-c-1", ReadStream::forward())
            .await
            .expect("read the correlation index stream");
        assert_eq!(correlated, written);
        let next = store
            .append(
                "order-1",
                ExpectedVersion::Exact(Revision(0)),
                vec![event(2)],
            )
            .await
            .expect("append after reopening");
        assert_eq!(
            (next.first_revision, next.position),
            (Revision(1), Position(1))
        );
    });
}

#[test]
fn a_large_append_written_with_copy_reads_back_like_a_small_one() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let store = schema.store().await;
        // The writer switches from INSERT to COPY at a few hundred events; this append
        // is well past it, and every field varies.
        let events: Vec<EventData> = (0..1_500u64)
            .map(|n| {
                let mut e = EventData::json(
                    format!("Type{}", n % 3),
                    &serde_json::json!({"n": n, "s": "é\u{1F600}"}),
                )
                .expect("event")
                .with_version((n % 4) as u32 + 1)
                .with_id(uuid::Uuid::new_v4());
                if n % 2 == 0 {
                    e = e
                        .with_metadata(
                            &serde_json::json!({"correlation_id": format!("c-{}", n % 5)}),
                        )
                        .expect("metadata");
                }
                e
            })
            .collect();
        let written = store
            .append("bulk-1", ExpectedVersion::NoStream, events.clone())
            .await
            .expect("a large append");
        assert_eq!(written.last_revision, Revision(1_499));
        let read = store
            .read_stream("bulk-1", ReadStream::forward())
            .await
            .expect("read");
        assert_eq!(read.len(), events.len());
        for (n, (given, stored)) in events.iter().zip(&read).enumerate() {
            assert_eq!(stored.revision, Revision(n as u64));
            assert_eq!(stored.position, Position(n as u64));
            assert_eq!(Some(stored.id), given.id);
            assert_eq!(stored.event_type, given.event_type);
            assert_eq!(stored.version, given.version);
            assert_eq!(stored.data, given.data);
            assert_eq!(stored.metadata, given.metadata);
        }
        let correlated = store
            .read_stream("$correlation-c-3", ReadStream::forward())
            .await
            .expect("the correlation index stream");
        let expected: Vec<u64> = (0..1_500).filter(|n| n % 2 == 0 && n % 5 == 3).collect();
        assert_eq!(
            correlated
                .iter()
                .map(|e| e.position.get())
                .collect::<Vec<_>>(),
            expected
        );
        let typed = store
            .read_stream("$et-Type1", ReadStream::backward().limit(2))
            .await
            .expect("the event type index stream");
        assert_eq!(
            typed.iter().map(|e| e.position.get()).collect::<Vec<_>>(),
            vec![1_498, 1_495]
        );
        // Re-sent after a lost answer: the same result, nothing written twice.
        let again = store
            .append("bulk-1", ExpectedVersion::NoStream, events)
            .await
            .expect("the re-send");
        assert_eq!(again, written);
        assert_eq!(
            store.head_position().await.expect("head"),
            Some(Position(1_499))
        );
    });
}

#[test]
fn imported_events_keep_their_recorded_times_and_restored_rows_their_positions() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        use chrono::TimeZone;
        let schema = TestSchema::new(&url);
        let store = schema.store().await;
        let then = chrono::Utc.timestamp_micros(1_600_000_000_123_456).unwrap();
        let later = chrono::Utc.timestamp_micros(1_600_000_001_000_001).unwrap();
        let imported = eventfold_core::StreamWrite::new(
            "old-1",
            ExpectedVersion::NoStream,
            vec![event(0), event(1)],
        )
        .with_recorded_at(vec![then, later]);
        let fresh =
            eventfold_core::StreamWrite::new("new-1", ExpectedVersion::NoStream, vec![event(0)]);
        let before = chrono::Utc::now();
        store
            .append_multi(vec![imported, fresh])
            .await
            .expect("append");
        let old = store
            .read_stream("old-1", ReadStream::forward())
            .await
            .expect("read");
        assert_eq!(
            old.iter().map(|e| e.recorded_at).collect::<Vec<_>>(),
            [then, later]
        );
        let new = store
            .read_stream("new-1", ReadStream::forward())
            .await
            .expect("read");
        assert!(new[0].recorded_at >= before - chrono::Duration::seconds(5));

        // Rows as another store recorded them, with a gap and a trailing gap: kept.
        let other = TestSchema::new(&url);
        let restored = other.store().await;
        let mut events = store
            .read_all(eventfold_core::ReadAll::from(Position(0), 10))
            .await
            .expect("read all")
            .events;
        events[1].position = Position(5);
        events[2].position = Position(6);
        restored
            .write_recorded(&events[..1], 1)
            .await
            .expect("first page");
        restored
            .write_recorded(&events[1..], 9)
            .await
            .expect("second page");
        assert_eq!(
            restored.head_position().await.expect("head"),
            Some(Position(8))
        );
        let back = restored
            .read_all(eventfold_core::ReadAll::from(Position(0), 10))
            .await
            .expect("read all")
            .events;
        assert_eq!(back, events);
        // Over what the schema holds: refused.
        let refused = restored.write_recorded(&events[..1], 1).await.unwrap_err();
        assert!(refused.to_string().contains("already holds"), "{refused}");
    });
}
