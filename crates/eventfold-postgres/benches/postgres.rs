//! PostgreSQL backend beside the embedded engine, in one run: batched appends (1,000
//! events of 200 bytes per call), single appends (one writer, and 64 concurrent
//! writers), and a full replay of `$all`.
//!
//! ```sh
//! EVENTFOLD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench -p eventfold-postgres --bench postgres
//! ```
//!
//! `EVENTFOLD_BENCH_POSTGRES_URL` takes precedence over `EVENTFOLD_TEST_POSTGRES_URL`.
//! The PostgreSQL figures use a schema of their own, dropped at the end; the embedded
//! engine a temporary directory (set `EVENTFOLD_BENCH_DIR` to put it on another disk).
//! `EVENTFOLD_BENCH_SECONDS` (default 4) is how long each timed figure runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventfold_core::{EventData, EventStore, ExpectedVersion, Position, ReadAll};
use eventfold_log::{LogOptions, LogStore};
use eventfold_postgres::{PostgresOptions, PostgresStore};

const EVENT_DATA_BYTES: usize = 200;
const BATCH_EVENTS: usize = 1_000;
const CONCURRENT_WRITERS: usize = 64;
const BATCH_WRITERS: usize = 4;
const REPLAY_PAGE_EVENTS: u64 = 4_096;

/// An event whose JSON data is exactly 200 bytes.
fn event(n: u64) -> EventData {
    let prefix = format!("{{\"n\":{n},\"pad\":\"");
    let pad = EVENT_DATA_BYTES - prefix.len() - 2;
    let data = format!("{prefix}{}\"}}", "x".repeat(pad));
    debug_assert_eq!(data.len(), EVENT_DATA_BYTES);
    EventData::from_json_bytes("Measured", data).expect("valid JSON")
}

/// Runs `writers` tasks appending for `seconds`, each append made by `append(writer,
/// i)` and returning how many events it wrote; returns events per second.
async fn timed<S, F, Fut>(store: &Arc<S>, writers: usize, seconds: Duration, append: F) -> f64
where
    S: EventStore + 'static,
    F: Fn(Arc<S>, usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let append = append.clone();
            tokio::spawn(async move {
                let mut events = 0;
                let mut i = 0;
                while start.elapsed() < seconds {
                    events += append(store.clone(), w, i).await;
                    i += 1;
                }
                events
            })
        })
        .collect();
    let mut events = 0;
    for task in tasks {
        events += task.await.expect("writer task");
    }
    events as f64 / start.elapsed().as_secs_f64()
}

/// Appends of 1,000 events, each to a new stream, from `writers` tasks.
async fn batch<S: EventStore + 'static>(store: &Arc<S>, writers: usize, seconds: Duration) -> f64 {
    timed(store, writers, seconds, |store, w, i| async move {
        let events = (0..BATCH_EVENTS as u64).map(event).collect();
        store
            .append(&format!("batch-{w}-{i}"), ExpectedVersion::Any, events)
            .await
            .expect("batch append");
        BATCH_EVENTS as u64
    })
    .await
}

/// Appends of one event, each writer to its own stream.
async fn single<S: EventStore + 'static>(store: &Arc<S>, writers: usize, seconds: Duration) -> f64 {
    timed(store, writers, seconds, |store, w, i| async move {
        store
            .append(&format!("single-{w}"), ExpectedVersion::Any, vec![event(i)])
            .await
            .expect("single append");
        1
    })
    .await
}

/// Reads all of `$all` in pages; returns events per second and the count.
async fn replay<S: EventStore + 'static>(store: &Arc<S>) -> (f64, u64) {
    let start = Instant::now();
    let mut next = Position::START;
    let mut replayed = 0u64;
    loop {
        let page = store
            .read_all(ReadAll::from(next, REPLAY_PAGE_EVENTS))
            .await
            .expect("read $all");
        replayed += page.events.len() as u64;
        next = page.next;
        if page.end_of_log {
            break;
        }
    }
    (replayed as f64 / start.elapsed().as_secs_f64(), replayed)
}

fn main() {
    let Some(url) = std::env::var("EVENTFOLD_BENCH_POSTGRES_URL")
        .ok()
        .or_else(|| std::env::var("EVENTFOLD_TEST_POSTGRES_URL").ok())
        .filter(|url| !url.is_empty())
    else {
        eprintln!(
            "SKIPPED: the PostgreSQL benchmark needs EVENTFOLD_BENCH_POSTGRES_URL or EVENTFOLD_TEST_POSTGRES_URL"
        );
        return;
    };
    let seconds = Duration::from_secs_f64(
        std::env::var("EVENTFOLD_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(4.0),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = match std::env::var_os("EVENTFOLD_BENCH_DIR") {
            Some(base) => tempfile::tempdir_in(base),
            None => tempfile::tempdir(),
        }
        .expect("temporary directory");
        let log = Arc::new(LogStore::open(dir.path(), LogOptions::default()).expect("open log"));
        let schema = format!("eventfold_bench_{}", std::process::id());
        let options = PostgresOptions {
            schema: schema.clone(),
            ..PostgresOptions::default()
        };
        let pg = Arc::new(
            PostgresStore::connect(&url, options)
                .await
                .expect("connect to PostgreSQL"),
        );
        eprintln!(
            "embedded engine in {}, PostgreSQL in schema {schema}; {seconds:?} per figure and backend",
            dir.path().display()
        );
        // Figure by figure, the embedded engine then PostgreSQL, so both meet the
        // machine in the same state.
        let mut rows: Vec<(String, f64, f64)> = Vec::new();
        for writers in [1, BATCH_WRITERS] {
            let name = format!("batch append, 1,000 events per call, {writers} writer(s)");
            eprintln!("{name}");
            let e = batch(&log, writers, seconds).await;
            let p = batch(&pg, writers, seconds).await;
            rows.push((name, e, p));
        }
        for writers in [1, CONCURRENT_WRITERS] {
            let name = format!("single appends, {writers} concurrent writer(s)");
            eprintln!("{name}");
            let e = single(&log, writers, seconds).await;
            let p = single(&pg, writers, seconds).await;
            rows.push((name, e, p));
        }
        let mut counts = (0, 0);
        for pass in ["first", "second"] {
            let name = format!("full replay of $all, {pass} pass");
            eprintln!("{name}");
            let (e, e_count) = replay(&log).await;
            let (p, p_count) = replay(&pg).await;
            counts = (e_count, p_count);
            rows.push((name, e, p));
        }
        drop(log);
        drop(pg);
        drop_schema(&url, &schema).await;

        println!();
        println!("200-byte events; events per second");
        println!("| figure | embedded (LogStore) | PostgreSQL | PostgreSQL / embedded |");
        println!("|---|---:|---:|---:|");
        for (name, e, p) in rows {
            println!("| {name} | {e:.0} | {p:.0} | {:.2} |", p / e);
        }
        println!(
            "(the replays read {} events from the embedded engine, {} from PostgreSQL)",
            counts.0, counts.1
        );
    });
}

async fn drop_schema(url: &str, schema: &str) {
    match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            if let Err(e) = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await
            {
                eprintln!("could not drop schema {schema}: {e}");
            }
        }
        Err(e) => eprintln!("could not drop schema {schema}: {e}"),
    }
}
