//! Scenario: many tasks append at once, so batches are written while earlier ones are
//! still being synced; the process dies at every I/O step, then the power goes out.
//! Every acknowledged append must survive, each stream must be a gap-free prefix of
//! what its task sent, and positions must stay gap-free.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use eventfold_core::{EventStore, ExpectedVersion, Revision};
use eventfold_log::sim::{Faults, SimStorage, Unsynced};
use tokio::sync::Mutex;
use uuid::Uuid;

const TASKS: u64 = 8;
const APPENDS: u64 = 40;

fn id(task: u64, n: u64) -> Uuid {
    Uuid::from_u128((u128::from(task) << 64) | (u128::from(n) + 1))
}

/// Runs the tasks; returns, per task, how many of its appends were acknowledged.
async fn run(storage: &SimStorage) -> HashMap<u64, u64> {
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let Ok(store) = open_sim(storage, small_segments()) else {
        return HashMap::new();
    };
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..APPENDS {
                let events = vec![event(n).with_id(id(task, n))];
                let expected = match n {
                    0 => ExpectedVersion::NoStream,
                    n => ExpectedVersion::Exact(Revision(n - 1)),
                };
                if store
                    .append(&format!("task-{task}"), expected, events)
                    .await
                    .is_err()
                {
                    return;
                }
                acked.lock().await.insert(task, n + 1);
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    acked.lock().await.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_under_concurrent_writers_keeps_every_acknowledged_append() {
    let clean = SimStorage::new();
    let acked = run(&clean).await;
    assert_eq!(acked.values().sum::<u64>(), TASKS * APPENDS);
    let total_ops = clean.ops();
    assert!(
        total_ops > 100,
        "workload too small to be interesting: {total_ops} ops"
    );

    for crash_at in 1..=total_ops + 5 {
        let storage = SimStorage::new();
        storage.set_faults(Faults {
            crash_at_op: Some(crash_at),
            ..Faults::default()
        });
        let acked = run(&storage).await;
        for unsynced in [
            Unsynced::Lost,
            Unsynced::TornPrefix {
                percent: 60,
                flip_last: true,
            },
        ] {
            let context = format!("crash at op {crash_at}, {unsynced:?}");
            let disk = storage.power_loss(unsynced);
            let store = open_sim(&disk, small_segments())
                .unwrap_or_else(|e| panic!("{context}: reopening failed: {e}"));
            let events = all_events(&store).await;
            for (i, event) in events.iter().enumerate() {
                assert_eq!(
                    event.position.get(),
                    i as u64,
                    "{context}: positions have a gap"
                );
            }
            for task in 0..TASKS {
                let stream: Vec<Uuid> = events
                    .iter()
                    .filter(|e| e.stream == format!("task-{task}"))
                    .map(|e| e.id)
                    .collect();
                let sent: Vec<Uuid> = (0..stream.len() as u64).map(|n| id(task, n)).collect();
                assert_eq!(
                    stream, sent,
                    "{context}: task {task}'s stream is not a prefix of what it sent"
                );
                let must = acked.get(&task).copied().unwrap_or(0);
                assert!(
                    stream.len() as u64 >= must,
                    "{context}: task {task} had {must} appends acknowledged, {} survive",
                    stream.len()
                );
            }
        }
    }
}

/// A failed fsync while other fsyncs are in flight: nothing that was not durable may
/// be acknowledged, even when a concurrent fsync of the same file succeeds afterwards
/// (the simulated disk drops unsynced data on a failed fsync, as Linux may).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_among_concurrent_ones_acknowledges_nothing_lost() {
    let clean = SimStorage::new();
    run(&clean).await;
    let total_ops = clean.ops();
    let mut failures_seen = 0;
    for fail_at in 1..=total_ops {
        let storage = SimStorage::new();
        storage.set_faults(Faults {
            fail_sync_at_op: Some(fail_at),
            ..Faults::default()
        });
        let acked = run(&storage).await;
        if acked.values().sum::<u64>() < TASKS * APPENDS {
            failures_seen += 1;
        }
        storage.set_faults(Faults::default());
        let disk = storage.power_loss(Unsynced::Lost);
        let store = open_sim(&disk, small_segments())
            .unwrap_or_else(|e| panic!("fsync failing at op {fail_at}: reopening failed: {e}"));
        let events = all_events(&store).await;
        for task in 0..TASKS {
            let survived = events
                .iter()
                .filter(|e| e.stream == format!("task-{task}"))
                .count() as u64;
            let must = acked.get(&task).copied().unwrap_or(0);
            assert!(
                survived >= must,
                "fsync failing at op {fail_at}: task {task} had {must} appends acknowledged, {survived} survive"
            );
        }
    }
    assert!(
        failures_seen > 5,
        "the failing fsyncs must hit appends ({failures_seen})"
    );
}
