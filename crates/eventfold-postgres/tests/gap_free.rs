//! Positions are gap-free in commit order as readers see them: while many writers on
//! two nodes commit, readers poll the log and must never see a position before every
//! lower one is visible. One reader goes through `read_all`; the other reads the
//! events table directly, without the head as an upper bound, so that a writer
//! committing out of position order would be caught even if `read_all` hid it.
//! Needs `EVENTFOLD_TEST_POSTGRES_URL`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use eventfold_core::{EventData, EventStore, ExpectedVersion, Position, ReadAll, StreamWrite};

use common::{TestSchema, database_url, runtime, within};

const WRITERS: usize = 12;
const APPENDS_PER_WRITER: u64 = 40;

fn event(writer: usize, n: u64) -> EventData {
    EventData::json("Counted", &serde_json::json!({ "writer": writer, "n": n })).expect("event")
}

#[test]
fn readers_never_see_a_position_before_every_lower_one() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let nodes = [Arc::new(schema.store().await), Arc::new(schema.store().await)];
        let done = Arc::new(AtomicBool::new(false));

        // Writers: single events, batches of 1 to 5, and two-stream appends, so that
        // transactions of different sizes interleave.
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = nodes[w % 2].clone();
                tokio::spawn(async move {
                    let mut written = 0u64;
                    for n in 0..APPENDS_PER_WRITER {
                        let size = 1 + (n + w as u64) % 5;
                        let events: Vec<_> = (0..size).map(|i| event(w, n * 10 + i)).collect();
                        written += size;
                        if n % 7 == 3 {
                            let other = vec![event(w, n * 10 + 9)];
                            written += 1;
                            store
                                .append_multi(vec![
                                    StreamWrite::new(format!("w{w}-a"), ExpectedVersion::Any, events),
                                    StreamWrite::new(format!("w{w}-b"), ExpectedVersion::Any, other),
                                ])
                                .await
                                .expect("multi-stream append");
                        } else {
                            store
                                .append(&format!("w{w}-a"), ExpectedVersion::Any, events)
                                .await
                                .expect("append");
                        }
                    }
                    written
                })
            })
            .collect();

        // Reader 1: read_all through the first node.
        let through_store = {
            let store = nodes[0].clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut next = 0u64;
                let mut pages_with_events = 0u64;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let page = store
                        .read_all(ReadAll::from(Position(next), 64))
                        .await
                        .expect("read $all");
                    if !page.events.is_empty() {
                        pages_with_events += 1;
                    }
                    for e in &page.events {
                        assert_eq!(
                            e.position.get(),
                            next,
                            "read_all showed position {} before {next}",
                            e.position
                        );
                        next += 1;
                    }
                    if finished && page.end_of_log {
                        return (next, pages_with_events);
                    }
                    tokio::task::yield_now().await;
                }
            })
        };

        // Reader 2: the table itself, no head bound.
        let through_sql = {
            let client = schema.client().await;
            let sql = format!(
                "SELECT position FROM \"{}\".events WHERE position >= $1 ORDER BY position LIMIT 64",
                schema.name
            );
            let done = done.clone();
            tokio::spawn(async move {
                let statement = client.prepare(&sql).await.expect("prepare");
                let mut next = 0i64;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let rows = client.query(&statement, &[&next]).await.expect("query");
                    for row in &rows {
                        let position: i64 = row.get(0);
                        assert_eq!(
                            position, next,
                            "the events table showed position {position} before {next}"
                        );
                        next += 1;
                    }
                    if finished && rows.is_empty() {
                        return next;
                    }
                    tokio::task::yield_now().await;
                }
            })
        };

        let mut total = 0;
        for writer in writers {
            total += within("a writer to finish", writer).await.expect("writer task");
        }
        done.store(true, Ordering::Release);
        let (seen, pages) = within("the read_all reader", through_store).await.expect("reader");
        let seen_sql = within("the SQL reader", through_sql).await.expect("reader");
        assert_eq!(seen, total, "read_all saw every event");
        assert_eq!(seen_sql as u64, total, "the SQL reader saw every event");
        assert!(
            pages > 1,
            "the reader never overlapped the writers; the test proves nothing"
        );
        assert_eq!(
            nodes[1].head_position().await.expect("head"),
            Some(Position(total - 1))
        );
    });
}
