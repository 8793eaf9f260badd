//! Projection rebuild speed: events per second folded into SQLite read models, read
//! from the embedded engine.
//!
//! `cargo bench -p eventfold --bench projection_rebuild`
//! (EVENTFOLD_BENCH_EVENTS sets the number of events, default 200,000;
//! EVENTFOLD_BENCH_DIR puts the store and the SQLite file on a given disk).
//!
//! The group is the auction test domain: the questions (one insert or update per
//! event) and the unread count per seller (an upsert, a delete and an update), in
//! one SQLite file, 1,000 events per transaction. Three figures: the first build
//! over existing history, a rebuild beside the live generation until the swap, and
//! the same rebuild with 10,000 events per transaction.

#[path = "../tests/projection_support/mod.rs"]
mod projection_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventfold::projection::{ProjectionRunner, SqliteReadModel};
use eventfold::{DomainEvent, EventStore, ExpectedVersion, Position};
use eventfold_log::{LogOptions, LogStore};
use projection_support::{Faults, Questions, UnreadCount, workload};

const GROUP: &str = "auction";

fn main() {
    let events: usize = std::env::var("EVENTFOLD_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let base = std::env::var_os("EVENTFOLD_BENCH_DIR").map(std::path::PathBuf::from);
    let dir = match &base {
        Some(base) => tempfile::tempdir_in(base),
        None => tempfile::tempdir(),
    }
    .expect("a temporary directory");
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let store: Arc<dyn EventStore> = Arc::new(
            LogStore::open(dir.path().join("store"), LogOptions::default())
                .expect("the store opens"),
        );
        let head = fill(store.as_ref(), events).await;
        println!("projection rebuild into SQLite, {events} events in the store");

        let db = SqliteReadModel::open(dir.path().join("read.sqlite"))
            .await
            .expect("the read model opens");
        let started = Instant::now();
        let running = ProjectionRunner::new(store.clone(), db.clone(), GROUP)
            .with_projection(Questions::new(Faults::none()))
            .with_projection(UnreadCount { version: 1 })
            .start()
            .await
            .expect("the runner starts");
        running
            .wait_until_live_at(head)
            .await
            .expect("the first build");
        report(
            "first build (1,000 events per transaction)",
            events,
            started.elapsed(),
        );

        let started = Instant::now();
        running.rebuild().await.expect("the rebuild starts");
        running.wait_until_live_at(head).await.expect("the rebuild");
        report(
            "rebuild beside the live generation, then swap",
            events,
            started.elapsed(),
        );
        drop(running);

        let running = ProjectionRunner::new(store.clone(), db.clone(), GROUP)
            .with_projection(Questions::new(Faults::none()))
            .with_projection(UnreadCount { version: 1 })
            .with_batch_events(10_000)
            .start()
            .await
            .expect("the runner starts");
        let started = Instant::now();
        running.rebuild().await.expect("the rebuild starts");
        running.wait_until_live_at(head).await.expect("the rebuild");
        report(
            "rebuild, 10,000 events per transaction",
            events,
            started.elapsed(),
        );
    });
}

/// Appends `events` events of the auction workload, 1,000 per append (one stream per
/// append, so the batches are atomic appends).
async fn fill(store: &dyn EventStore, events: usize) -> Position {
    let mut head = Position(0);
    let workload = workload(0, events);
    for (i, chunk) in workload.chunks(1_000).enumerate() {
        let batch = chunk
            .iter()
            .map(|(_, event)| event.encode().expect("the event encodes"))
            .collect();
        head = store
            .append(&format!("auction-{i}"), ExpectedVersion::Any, batch)
            .await
            .expect("the append")
            .position;
    }
    head
}

fn report(what: &str, events: usize, elapsed: Duration) {
    let rate = events as f64 / elapsed.as_secs_f64();
    println!(
        "  {what}: {events} events in {:.2} s = {rate:.0} events/s",
        elapsed.as_secs_f64()
    );
}
