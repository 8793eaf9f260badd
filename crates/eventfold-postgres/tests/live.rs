//! Live subscriptions across nodes: a subscription on store A wakes for appends made
//! through store B (LISTEN/NOTIFY), for a commit whose notification never came (the
//! poll), across a killed listener connection (the reconnect), and across a listener
//! connection gone silent without being closed (the poll times out, then the
//! reconnect), never missing or repeating an event. Needs
//! `EVENTFOLD_TEST_POSTGRES_URL`.

mod common;

use std::sync::Arc;

use eventfold_core::{AllFilter, EventData, EventStore, ExpectedVersion, Position, RecordedEvent};
use eventfold_postgres::{PostgresOptions, PostgresStore};
use eventfold_subscription::Subscription;
use tokio::sync::mpsc;

use common::proxy::Proxy;
use common::{TestSchema, database_url, eventually, runtime, within};

/// A poll interval no test outlives: only a notification (or the poll right after a
/// reconnect) can wake a waiter of a store with it.
const POLL_NEVER_MS: u64 = 3_600_000;

fn event(n: u64) -> EventData {
    EventData::json("Ticked", &serde_json::json!({ "n": n })).expect("event")
}

fn options(schema: &TestSchema, poll_interval_ms: u64) -> PostgresOptions {
    PostgresOptions {
        poll_interval_ms,
        ..schema.options()
    }
}

/// Store A: named `node-a` (its listener is `node-a-listener <schema>`), polling
/// every `poll_interval_ms`.
async fn node_a(schema: &TestSchema, poll_interval_ms: u64) -> Arc<PostgresStore> {
    let separator = if schema.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}application_name=node-a", schema.url);
    let store = PostgresStore::connect(&url, options(schema, poll_interval_ms))
        .await
        .expect("connect node A");
    Arc::new(store)
}

/// The process id of node A's listener backend once it listens (its last statement
/// is the head poll that follows LISTEN), other than `not`.
async fn listener_pid(
    schema: &TestSchema,
    client: &tokio_postgres::Client,
    not: Option<i32>,
) -> i32 {
    let name = format!("node-a-listener {}", schema.name);
    let name = &name;
    eventually("the listener to listen", || async move {
        let rows = client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE '%next_position%'",
                &[name],
            )
            .await
            .expect("query pg_stat_activity");
        rows.iter()
            .map(|row| row.get::<_, i32>(0))
            .find(|pid| Some(*pid) != not)
    })
    .await
}

/// Follows `$all` of `store` on a task of its own; events arrive on the channel.
fn follow(store: Arc<PostgresStore>) -> mpsc::UnboundedReceiver<RecordedEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut subscription = Subscription::to_all(store, None, AllFilter::default());
        loop {
            match subscription.next().await {
                Ok(event) => {
                    if tx.send(event).is_err() {
                        return;
                    }
                }
                Err(e) => panic!("the subscription failed: {e}"),
            }
        }
    });
    rx
}

async fn expect_position(events: &mut mpsc::UnboundedReceiver<RecordedEvent>, position: u64) {
    let event = within(&format!("event at position {position}"), events.recv())
        .await
        .expect("the subscription task ended");
    assert_eq!(
        event.position,
        Position(position),
        "the subscription skipped or repeated a position"
    );
}

#[test]
fn a_subscription_on_one_node_wakes_for_appends_through_another() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let a = node_a(&schema, POLL_NEVER_MS).await;
        let b = schema.store().await;
        let client = schema.client().await;
        listener_pid(&schema, &client, None).await;

        let mut events = follow(a.clone());
        for n in 0..10 {
            b.append("ticks-1", ExpectedVersion::Any, vec![event(n)])
                .await
                .expect("append through B");
            expect_position(&mut events, n).await;
        }
        // And A's own waiters: a wait for a position not yet written completes when
        // B writes it.
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { a.wait_for(Position(12)).await }
        });
        b.append(
            "ticks-1",
            ExpectedVersion::Any,
            vec![event(10), event(11), event(12)],
        )
        .await
        .expect("append through B");
        within("A's wait_for(12)", waiting)
            .await
            .expect("waiting task")
            .expect("wait_for");
    });
}

/// Commits one event to `stream` the way the writer does, but without `pg_notify`: a
/// commit whose notification is lost. `before` runs first in the same transaction.
async fn commit_quietly(
    client: &tokio_postgres::Client,
    schema: &TestSchema,
    stream: &str,
    before: &str,
) {
    client
        .batch_execute(&format!(
            "BEGIN;
             {before}
             INSERT INTO \"{s}\".events
                 (position, revision, id, recorded_at, version, stream, event_type,
                  category, correlation, data, metadata)
             SELECT next_position, 0, gen_random_uuid(), now(), 1, '{stream}', 'Ticked',
                    'quiet', NULL, convert_to('{{\"n\":0}}', 'UTF8'), convert_to('{{}}', 'UTF8')
             FROM \"{s}\".head FOR UPDATE;
             UPDATE \"{s}\".head SET next_position = next_position + 1;
             COMMIT;",
            s = schema.name
        ))
        .await
        .expect("a commit behind the store's back");
}

#[test]
fn a_commit_whose_notification_never_came_is_found_by_the_poll() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let a = node_a(&schema, 100).await;
        let client = schema.client().await;
        listener_pid(&schema, &client, None).await;
        let mut events = follow(a.clone());
        commit_quietly(&client, &schema, "quiet-1", "").await;
        expect_position(&mut events, 0).await;
    });
}

#[test]
fn a_killed_listener_reconnects_without_missing_an_event() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let a = node_a(&schema, POLL_NEVER_MS).await;
        let b = schema.store().await;
        let client = schema.client().await;
        let mut events = follow(a.clone());

        let mut next = 0;
        let mut pid = listener_pid(&schema, &client, None).await;
        for round in 0..3 {
            // The listener works (from the second round on: the new one): an append
            // through B wakes A.
            b.append("ticks-1", ExpectedVersion::Any, vec![event(next)])
                .await
                .expect("append through B");
            expect_position(&mut events, next).await;
            next += 1;

            // Kill it, and commit an event without a notification in the same
            // transaction. The head table is locked until the commit, so the new
            // listener's first read of the head comes after it: only that read can
            // tell A of the event (A polls once an hour).
            commit_quietly(
                &client,
                &schema,
                &format!("quiet-{round}"),
                &format!(
                    "LOCK TABLE \"{}\".head IN ACCESS EXCLUSIVE MODE;
                     DO $$ BEGIN
                         IF NOT pg_terminate_backend({pid}) THEN
                             RAISE EXCEPTION 'the listener backend {pid} is gone';
                         END IF;
                     END $$;",
                    schema.name
                ),
            )
            .await;
            // Nothing else is written until A has it: a later notification would
            // carry a head past it and hide a missing read.
            expect_position(&mut events, next).await;
            next += 1;
            let new_pid = listener_pid(&schema, &client, Some(pid)).await;
            assert_ne!(new_pid, pid, "round {round}: the listener reconnected");
            pid = new_pid;
        }
    });
}

#[test]
fn a_listener_connection_gone_silent_is_replaced_without_missing_an_event() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        // Node A reaches the database through a proxy that can silence a connection
        // without closing it, as a lost network does; its listener's head poll gives
        // up after `connect_timeout_ms`.
        let proxy = Proxy::start(&url).await;
        let options = PostgresOptions {
            connect_timeout_ms: 2_000,
            ..options(&schema, 100)
        };
        let a = Arc::new(
            PostgresStore::connect(&proxy.url("node-a"), options)
                .await
                .expect("connect node A through the proxy"),
        );
        let b = schema.store().await;
        let client = schema.client().await;
        let silenced = listener_pid(&schema, &client, None).await;
        let mut events = follow(a.clone());

        b.append("ticks-1", ExpectedVersion::Any, vec![event(0)])
            .await
            .expect("append through B");
        expect_position(&mut events, 0).await;

        assert_eq!(
            proxy.freeze("node-a-listener"),
            1,
            "one listener connection"
        );
        // Neither its notification nor a poll over the silent connection reaches A:
        // only a new listener connection, reading the head after its LISTEN, can.
        b.append("ticks-1", ExpectedVersion::Any, vec![event(1)])
            .await
            .expect("append through B");
        expect_position(&mut events, 1).await;
        listener_pid(&schema, &client, Some(silenced)).await;

        // And the new connection is notified as the old one was.
        b.append("ticks-1", ExpectedVersion::Any, vec![event(2)])
            .await
            .expect("append through B");
        expect_position(&mut events, 2).await;
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(300), events.recv())
                .await
                .is_err(),
            "an event was delivered twice"
        );
    });
}
