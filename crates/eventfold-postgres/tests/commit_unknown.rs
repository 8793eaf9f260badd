//! A commit whose outcome the store cannot know: the connection is lost while `COMMIT`
//! is in flight. Every append of that transaction is answered with the "outcome
//! unknown" i/o error; a re-send with the same event ids is then written once if the
//! commit did not happen, and answered as already written if it did. Both sides are
//! forced deterministically:
//!
//! - not committed: a deferred trigger makes `COMMIT` wait for an advisory lock the
//!   test holds, and the test terminates the writer's backend while it waits there;
//! - committed: a proxy between the store and PostgreSQL closes the connection right
//!   after the server answered `COMMIT`, before the answer reaches the store.
//!
//! Needs `EVENTFOLD_TEST_POSTGRES_URL`.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use eventfold_core::{
    AppendResult, Error, EventData, EventStore, ExpectedVersion, Position, ReadAll, RecordedEvent,
    Revision, StreamWrite,
};
use eventfold_postgres::PostgresStore;
use uuid::Uuid;

use common::proxy::Proxy;
use common::{TestSchema, database_url, runtime, within};
use eventfold_wire::ErrorCode;

/// Words of the error every append of a transaction with an unknown outcome gets.
const UNKNOWN: &str = "may or may not have been written";

fn events(label: &str, count: usize) -> Vec<EventData> {
    (0..count)
        .map(|i| {
            EventData::json("Placed", &serde_json::json!({ "label": label, "i": i }))
                .expect("event")
                .with_id(Uuid::new_v4())
        })
        .collect()
}

/// `url` with `application_name` set, so the writer's backend can be found by name.
fn named(url: &str, application_name: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={application_name}")
}

fn assert_outcome_unknown(what: &str, outcome: Result<Vec<AppendResult>, Error>) {
    match outcome {
        Err(error) => {
            assert_eq!(ErrorCode::of(&error), "io_error", "{what}: {error}");
            assert!(error.to_string().contains(UNKNOWN), "{what}: {error}");
        }
        Ok(results) => panic!("{what}: acknowledged ({results:?}) although its commit was cut"),
    }
}

/// Every event of `$all`, checking that positions are exactly `0..` with no hole.
async fn whole_log(store: &PostgresStore) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut from = Position(0);
    loop {
        let page = store
            .read_all(ReadAll::from(from, 1000))
            .await
            .expect("read $all");
        events.extend(page.events);
        from = page.next;
        if page.end_of_log {
            break;
        }
    }
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.position, Position(i as u64), "a hole in the log");
    }
    let head = store.head_position().await.expect("head");
    assert_eq!(
        head,
        events.last().map(|e| e.position),
        "head and log agree"
    );
    events
}

/// Checks that each append's events sit where its result says, once each, and that
/// the log holds nothing else.
fn assert_log_holds_exactly(
    log: &[RecordedEvent],
    appends: &[(Vec<StreamWrite>, Vec<AppendResult>)],
) {
    let by_id: HashMap<Uuid, &RecordedEvent> = log.iter().map(|e| (e.id, e)).collect();
    assert_eq!(
        by_id.len(),
        log.len(),
        "an event id appears twice in the log"
    );
    let mut expected_events = 0;
    for (writes, results) in appends {
        assert_eq!(writes.len(), results.len());
        for (write, result) in writes.iter().zip(results) {
            for (i, event) in write.events.iter().enumerate() {
                let id = event.id.expect("test events carry ids");
                let stored = by_id.get(&id).unwrap_or_else(|| {
                    panic!("event {id} of '{}' is not in the log", write.stream)
                });
                assert_eq!(stored.stream, write.stream);
                assert_eq!(
                    stored.revision,
                    Revision(result.first_revision.get() + i as u64),
                    "revision of {id}"
                );
                expected_events += 1;
            }
            let last = by_id[&write.events.last().and_then(|e| e.id).expect("an id")];
            assert_eq!(last.revision, result.last_revision);
            assert_eq!(last.position, result.position);
        }
    }
    assert_eq!(
        log.len(),
        expected_events,
        "the log holds events no append wrote"
    );
}

async fn append(store: &PostgresStore, writes: &[StreamWrite]) -> Result<Vec<AppendResult>, Error> {
    store.append_multi(writes.to_vec()).await
}

#[test]
fn a_writer_terminated_inside_commit_answers_outcome_unknown_and_a_resend_is_written_once() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let store = Arc::new(
            PostgresStore::connect(&named(&url, "commit-held"), schema.options())
                .await
                .expect("connect"),
        );
        let admin = schema.client().await;
        let holder = schema.client().await;

        // Every transaction writing events waits in COMMIT (deferred triggers run
        // there) until the holder lets go of the lock.
        let key = Uuid::new_v4().as_u64_pair().0 as i64;
        admin
            .batch_execute(&format!(
                "CREATE FUNCTION \"{s}\".hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN PERFORM pg_advisory_xact_lock_shared({key}); RETURN NULL; END $$;
                 CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON \"{s}\".events
                     DEFERRABLE INITIALLY DEFERRED
                     FOR EACH ROW EXECUTE FUNCTION \"{s}\".hold_commit();",
                s = schema.name
            ))
            .await
            .expect("install the trigger that holds commits");
        holder
            .execute("SELECT pg_advisory_lock($1)", &[&key])
            .await
            .expect("take the lock");

        // Single-stream and multi-stream appends, with and without expected versions;
        // the writer takes them in one or several batches, each stopped in COMMIT.
        let appends: Vec<Vec<StreamWrite>> = vec![
            vec![StreamWrite::new(
                "order-1",
                ExpectedVersion::NoStream,
                events("a", 3),
            )],
            vec![StreamWrite::new(
                "order-2",
                ExpectedVersion::Any,
                events("b", 1),
            )],
            vec![
                StreamWrite::new("order-3", ExpectedVersion::NoStream, events("c", 2)),
                StreamWrite::new("stock-3", ExpectedVersion::Any, events("d", 1)),
            ],
            vec![StreamWrite::new(
                "order-4",
                ExpectedVersion::NoStream,
                events("e", 1),
            )],
        ];
        let tasks: Vec<_> = appends
            .iter()
            .map(|writes| {
                let store = store.clone();
                let writes = writes.clone();
                tokio::spawn(async move { store.append_multi(writes).await })
            })
            .collect();

        // Terminate the writer's backend each time it waits in COMMIT, until every
        // append is answered.
        let writer = format!("commit-held-writer {}", schema.name);
        let mut terminated = 0;
        within("every held append to be answered", async {
            while !tasks.iter().all(|t| t.is_finished()) {
                let held = admin
                    .query(
                        "SELECT pid FROM pg_stat_activity
                         WHERE application_name = $1 AND query = 'COMMIT'
                           AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
                        &[&writer],
                    )
                    .await
                    .expect("query pg_stat_activity");
                for row in held {
                    let pid: i32 = row.get(0);
                    admin
                        .execute("SELECT pg_terminate_backend($1)", &[&pid])
                        .await
                        .expect("terminate the writer");
                    terminated += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(terminated >= 1, "no commit was ever held");
        for (i, task) in tasks.into_iter().enumerate() {
            assert_outcome_unknown(&format!("append {i}"), task.await.expect("append task"));
        }

        // Terminated before its commit record: nothing of it is in the log.
        assert!(
            whole_log(&store).await.is_empty(),
            "a terminated commit wrote events"
        );

        // Let commits through: each re-send is written, once.
        holder
            .execute("SELECT pg_advisory_unlock($1)", &[&key])
            .await
            .expect("release the lock");
        let mut written = Vec::new();
        for writes in &appends {
            let results = append(&store, writes).await.expect("re-send");
            written.push((writes.clone(), results));
        }
        let log = whole_log(&store).await;
        assert_log_holds_exactly(&log, &written);

        // And a second re-send is answered as already written, writing nothing.
        for (writes, results) in &written {
            assert_eq!(
                &append(&store, writes).await.expect("second re-send"),
                results
            );
        }
        assert_eq!(whole_log(&store).await.len(), log.len());
    });
}

#[test]
fn a_commit_whose_answer_is_lost_answers_outcome_unknown_and_a_resend_is_not_written_again() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let proxy = Proxy::start(&url).await;
        let store = Arc::new(
            PostgresStore::connect(&proxy.url("commit-cut"), schema.options())
                .await
                .expect("connect through the proxy"),
        );
        let opened = vec![StreamWrite::new(
            "account-1",
            ExpectedVersion::NoStream,
            events("opened", 2),
        )];
        let opened_results = append(&store, &opened).await.expect("first append");

        // From now on every COMMIT commits, and its answer never arrives.
        proxy.cut_commits(true);
        let appends: Vec<Vec<StreamWrite>> = vec![
            vec![StreamWrite::new(
                "account-1",
                ExpectedVersion::Exact(Revision(1)),
                events("a", 2),
            )],
            vec![StreamWrite::new(
                "order-1",
                ExpectedVersion::NoStream,
                events("b", 3),
            )],
            vec![StreamWrite::new(
                "audit",
                ExpectedVersion::Any,
                events("c", 1),
            )],
            vec![
                StreamWrite::new("order-2", ExpectedVersion::NoStream, events("d", 1)),
                StreamWrite::new("audit", ExpectedVersion::Any, events("e", 2)),
            ],
        ];
        let tasks: Vec<_> = appends
            .iter()
            .map(|writes| {
                let store = store.clone();
                let writes = writes.clone();
                tokio::spawn(async move { store.append_multi(writes).await })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let outcome = within("a cut append to be answered", task)
                .await
                .expect("append task");
            assert_outcome_unknown(&format!("append {i}"), outcome);
        }
        assert!(proxy.commits_cut() >= 1);
        proxy.cut_commits(false);

        // Every one of them did commit; the re-sends say where, and write nothing.
        let log = whole_log(&store).await;
        let mut written = vec![(opened, opened_results)];
        for writes in &appends {
            let results = append(&store, writes).await.expect("re-send");
            for result in &results {
                assert!(
                    result.position.get() < log.len() as u64,
                    "a re-send was written again: {result:?}"
                );
            }
            written.push((writes.clone(), results));
        }
        assert_eq!(
            whole_log(&store).await.len(),
            log.len(),
            "a re-send wrote events"
        );
        assert_log_holds_exactly(&log, &written);

        // The store goes on normally.
        let after = vec![StreamWrite::new(
            "order-1",
            ExpectedVersion::Exact(Revision(2)),
            events("f", 1),
        )];
        let result = append(&store, &after).await.expect("append after the cuts");
        assert_eq!(result[0].position, Position(log.len() as u64));
    });
}
