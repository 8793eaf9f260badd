//! PostgreSQL goes away and comes back while two nodes append and follow the log:
//! first a clean stop and start, then a crash (`immediate` restart, recovery from the
//! WAL). Appenders keep appending, each re-sending an append that failed with the same
//! ids and expected version until it is acknowledged. Afterwards every acknowledged
//! append is in the log exactly once where it was acknowledged, and nothing else is;
//! positions are gap-free; the stores reconnected by themselves; a live subscription on
//! each node saw every position once, in order; and every failure callers saw during
//! the outages was a retryable i/o error.
//!
//! Restarts a PostgreSQL cluster of its own, never the one other tests use: needs
//! `EVENTFOLD_TEST_POSTGRES_RESTART_CLUSTER` (`<version> <name>` of a Debian cluster
//! that `pg_ctlcluster` may stop and start) and `EVENTFOLD_TEST_POSTGRES_RESTART_URL`
//! (a database on it). `.ci/run` creates such a cluster.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventfold_core::{
    AllFilter, AppendResult, EventData, EventStore, ExpectedVersion, Position, ReadAll, Revision,
};
use eventfold_postgres::{PostgresOptions, PostgresStore};
use eventfold_subscription::Subscription;
use uuid::Uuid;

use common::{TestSchema, eventually, runtime};
use eventfold_wire::ErrorCode;

const CLUSTER_VARIABLE: &str = "EVENTFOLD_TEST_POSTGRES_RESTART_CLUSTER";
const URL_VARIABLE: &str = "EVENTFOLD_TEST_POSTGRES_RESTART_URL";

const WRITERS: usize = 6;
/// Acknowledged appends to wait for before and after each outage.
const PROGRESS: usize = 30;
/// Longest an appender keeps re-sending one append.
const RESEND_FOR_MAX: Duration = Duration::from_secs(40);

/// The restartable cluster and its URL, or `None` after saying loudly that the test
/// is skipped.
fn restartable() -> Option<(Cluster, String)> {
    let cluster = std::env::var(CLUSTER_VARIABLE).unwrap_or_default();
    let url = std::env::var(URL_VARIABLE).unwrap_or_default();
    let mut words = cluster.split_whitespace();
    match (words.next(), words.next(), url.is_empty()) {
        (Some(version), Some(name), false) => Some((
            Cluster {
                version: version.to_string(),
                name: name.to_string(),
            },
            url,
        )),
        _ => {
            eprintln!(
                "SKIPPED: {} needs {CLUSTER_VARIABLE} (`<version> <name>` of a PostgreSQL \
                 cluster of its own that it may restart with pg_ctlcluster, e.g. \"15 eftest\") \
                 and {URL_VARIABLE} (a database on it, e.g. \
                 postgres://postgres@127.0.0.1:5433/postgres); .ci/run sets both up",
                std::thread::current().name().unwrap_or("this test")
            );
            None
        }
    }
}

/// A Debian PostgreSQL cluster, controlled with `pg_ctlcluster`. Started again when
/// dropped, so that a failing test does not leave it down.
struct Cluster {
    version: String,
    name: String,
}

impl Cluster {
    fn command(&self, action: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new("pg_ctlcluster");
        command
            .arg("--skip-systemctl-redirect")
            .args([&self.version, &self.name])
            .args(action);
        command
    }

    async fn run(&self, action: &[&str]) {
        let mut command = tokio::process::Command::from(self.command(action));
        let output = command.output().await.expect("run pg_ctlcluster");
        assert!(
            output.status.success(),
            "pg_ctlcluster {} {} {action:?}: {}{}",
            self.version,
            self.name,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // "already running" is fine here.
        let _ = self.command(&["start"]).output();
    }
}

/// What the appenders and followers report.
#[derive(Default)]
struct Tally {
    acknowledged: AtomicUsize,
    /// Appends answered with an error (then re-sent).
    failed: AtomicUsize,
    /// Of those, the ones whose commit had an unknown outcome.
    unknown: AtomicUsize,
    /// Anything that breaks the contract, said in words.
    problems: Mutex<Vec<String>>,
}

impl Tally {
    fn problem(&self, problem: String) {
        self.problems.lock().expect("problems").push(problem);
    }
}

/// One acknowledged append of an appender.
struct Acknowledged {
    ids: Vec<Uuid>,
    result: AppendResult,
}

/// Appends 1 to 3 events at a time to a stream of its own, expecting the revision it
/// last wrote, until `stop`; re-sends each failed append unchanged.
async fn appender(
    store: Arc<PostgresStore>,
    writer: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<Acknowledged> {
    let stream = format!("writer-{writer}");
    let mut acknowledged = Vec::new();
    let mut last: Option<Revision> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let events: Vec<EventData> = (0..1 + (n + writer as u64) % 3)
            .map(|i| {
                EventData::json("Counted", &serde_json::json!({ "n": n, "i": i }))
                    .expect("event")
                    .with_id(Uuid::new_v4())
            })
            .collect();
        let ids: Vec<Uuid> = events.iter().filter_map(|e| e.id).collect();
        let expected = last.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let started = Instant::now();
        loop {
            match store.append(&stream, expected, events.clone()).await {
                Ok(result) => {
                    tally.acknowledged.fetch_add(1, Ordering::SeqCst);
                    last = Some(result.last_revision);
                    acknowledged.push(Acknowledged { ids, result });
                    break;
                }
                Err(error) if ErrorCode::of(&error) == "io_error" => {
                    tally.failed.fetch_add(1, Ordering::SeqCst);
                    if error
                        .to_string()
                        .contains("may or may not have been written")
                    {
                        tally.unknown.fetch_add(1, Ordering::SeqCst);
                    }
                    if started.elapsed() > RESEND_FOR_MAX {
                        tally.problem(format!(
                            "{stream}: append {n} still failing after {RESEND_FOR_MAX:?}: {error}"
                        ));
                        return acknowledged;
                    }
                    // Not a wait for a condition: a pause between re-sends, so that
                    // six appenders do not spin while the database is away.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => {
                    tally.problem(format!(
                        "{stream}: append {n} failed with a non-retryable {} error: {error}",
                        ErrorCode::of(&error)
                    ));
                    return acknowledged;
                }
            }
        }
        n += 1;
    }
    acknowledged
}

/// Follows `$all` live, asking again after each error; `seen` is the next position
/// it expects.
async fn follower(
    store: Arc<PostgresStore>,
    node: &'static str,
    seen: Arc<AtomicU64>,
    tally: Arc<Tally>,
) {
    let mut subscription = Subscription::to_all(store, None, AllFilter::default());
    loop {
        match subscription.next().await {
            Ok(event) => {
                let expected = seen.load(Ordering::SeqCst);
                if event.position.get() != expected {
                    tally.problem(format!(
                        "node {node}'s subscription got position {} where {expected} was due",
                        event.position.get()
                    ));
                    return;
                }
                seen.store(expected + 1, Ordering::SeqCst);
            }
            Err(error) if ErrorCode::of(&error) == "io_error" => {
                // A pause before asking again, as a consumer would.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => {
                tally.problem(format!(
                    "node {node}'s subscription failed with a non-retryable {} error: {error}",
                    ErrorCode::of(&error)
                ));
                return;
            }
        }
    }
}

impl Tally {
    /// Waits until `done` holds, failing at once on any problem reported meanwhile.
    async fn wait(&self, what: &str, done: impl Fn(&Tally) -> bool) {
        eventually(what, || async {
            let problems = self.problems.lock().expect("problems").clone();
            assert!(problems.is_empty(), "{problems:#?}");
            done(self).then_some(())
        })
        .await;
    }

    /// Waits for [`PROGRESS`] more acknowledged appends.
    async fn progress(&self, what: &str) {
        let target = self.acknowledged.load(Ordering::SeqCst) + PROGRESS;
        self.wait(what, |t| t.acknowledged.load(Ordering::SeqCst) >= target)
            .await;
    }
}

#[test]
fn appends_and_subscriptions_survive_the_database_restarting_and_crashing() {
    let Some((cluster, url)) = restartable() else {
        return;
    };
    runtime().block_on(async {
        // The cluster may have been left down by an earlier run.
        let _ = cluster.command(&["start"]).output();
        let schema = TestSchema::new(&url);
        let options = PostgresOptions {
            poll_interval_ms: 100,
            connect_timeout_ms: 2_000,
            ..schema.options()
        };
        let nodes = [
            Arc::new(
                PostgresStore::connect(&url, options.clone())
                    .await
                    .expect("node A"),
            ),
            Arc::new(
                PostgresStore::connect(&url, options.clone())
                    .await
                    .expect("node B"),
            ),
        ];
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let seen = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
        let followers: Vec<_> = ["A", "B"]
            .into_iter()
            .zip(nodes.iter().zip(&seen))
            .map(|(node, (store, seen))| {
                tokio::spawn(follower(store.clone(), node, seen.clone(), tally.clone()))
            })
            .collect();
        let appenders: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(appender(
                    nodes[w % 2].clone(),
                    w,
                    stop.clone(),
                    tally.clone(),
                ))
            })
            .collect();

        tally.progress("appends before the restart").await;

        // A clean shutdown (in-flight statements are terminated), a pause long enough
        // for appenders to see it, and a start.
        cluster.run(&["stop", "-m", "fast"]).await;
        let failed = tally.failed.load(Ordering::SeqCst);
        tally
            .wait("appenders to see the database gone", |t| {
                t.failed.load(Ordering::SeqCst) >= failed + WRITERS
            })
            .await;
        cluster.run(&["start"]).await;
        tally.progress("appends after the restart").await;

        // A crash: the server stops without a checkpoint and recovers from the WAL.
        cluster.run(&["restart", "-m", "immediate"]).await;
        tally.progress("appends after the crash").await;

        stop.store(true, Ordering::SeqCst);
        let mut acknowledged = Vec::new();
        for (w, appender) in appenders.into_iter().enumerate() {
            acknowledged.push((w, appender.await.expect("appender")));
        }
        let problems = tally.problems.lock().expect("problems").clone();
        assert!(problems.is_empty(), "{problems:#?}");
        eprintln!(
            "{} appends acknowledged; {} answered with an error and re-sent, {} of them \
             with an unknown outcome",
            tally.acknowledged.load(Ordering::SeqCst),
            tally.failed.load(Ordering::SeqCst),
            tally.unknown.load(Ordering::SeqCst)
        );
        assert!(
            tally.failed.load(Ordering::SeqCst) > 0,
            "no append ever failed: the outages were not seen"
        );

        // The log: gap-free, each acknowledged append once where it was acknowledged,
        // and nothing unacknowledged.
        let reader = &nodes[0];
        let mut log = Vec::new();
        let mut from = Position(0);
        loop {
            let page = reader
                .read_all(ReadAll::from(from, 1000))
                .await
                .expect("read $all after the restarts");
            log.extend(page.events);
            from = page.next;
            if page.end_of_log {
                break;
            }
        }
        for (i, event) in log.iter().enumerate() {
            assert_eq!(event.position, Position(i as u64), "a hole in the log");
        }
        let ids: HashSet<Uuid> = log.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), log.len(), "an event id appears twice");
        let by_id: HashMap<Uuid, _> = log.iter().map(|e| (e.id, e)).collect();
        let mut acknowledged_events = 0;
        for (w, appends) in &acknowledged {
            let stream = format!("writer-{w}");
            let mut revision = 0;
            for append in appends {
                assert_eq!(append.result.first_revision, Revision(revision), "{stream}");
                for id in &append.ids {
                    let event = by_id
                        .get(id)
                        .unwrap_or_else(|| panic!("acknowledged event {id} of {stream} is lost"));
                    assert_eq!(
                        (&event.stream, event.revision),
                        (&stream, Revision(revision))
                    );
                    revision += 1;
                    acknowledged_events += 1;
                }
                assert_eq!(
                    by_id[append.ids.last().expect("an id")].position,
                    append.result.position,
                    "{stream}: the acknowledged position"
                );
            }
        }
        assert_eq!(
            log.len(),
            acknowledged_events,
            "the log holds unacknowledged events"
        );

        // Each node's subscription reaches the head having seen every position once.
        let head = log.len() as u64;
        for (node, seen) in ["A", "B"].iter().zip(&seen) {
            eventually(
                &format!("node {node}'s subscription to reach {head}"),
                || async {
                    let problems = tally.problems.lock().expect("problems").clone();
                    assert!(problems.is_empty(), "{problems:#?}");
                    (seen.load(Ordering::SeqCst) == head).then_some(())
                },
            )
            .await;
        }
        for follower in followers {
            follower.abort();
        }
    });
}
