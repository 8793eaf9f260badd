//! Re-sends that reach the writer while the first send is written but not yet
//! durable: the writer decides them against its unsynced events (ids the appender
//! gave), so every given id is written once, whichever send wins.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use eventfold_core::{EventData, EventStore, ExpectedVersion, ReadStream};
use eventfold_log::{LogOptions, LogStore};

use common::event;

const ROUNDS: u64 = 20;
const COPIES: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_append_sent_at_once_write_its_event_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Arc::new(LogStore::open(dir.path(), LogOptions::default()).expect("open"));
    for round in 0..ROUNDS {
        let event = EventData {
            id: Some(uuid::Uuid::now_v7()),
            ..event(round)
        };
        // Sent together, the copies reach the writer in one or two groups: the first
        // is still unsynced when the others are decided.
        let sends: Vec<_> = (0..COPIES)
            .map(|_| {
                let (store, event) = (store.clone(), event.clone());
                tokio::spawn(async move {
                    store
                        .append("order-1", ExpectedVersion::Any, vec![event])
                        .await
                })
            })
            .collect();
        let mut answers = HashSet::new();
        for send in sends {
            let answer = send.await.expect("task").expect("append");
            answers.insert((answer.position, answer.first_revision));
        }
        assert_eq!(answers.len(), 1, "round {round}: {answers:?}");
    }
    // Beside them, appends whose ids the store makes are each written.
    let sends: Vec<_> = (0..COPIES as u64)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append("order-2", ExpectedVersion::Any, vec![event(n)])
                    .await
            })
        })
        .collect();
    for send in sends {
        send.await.expect("task").expect("append");
    }
    for (stream, expected) in [("order-1", ROUNDS), ("order-2", COPIES as u64)] {
        let events = store
            .read_stream(stream, ReadStream::forward())
            .await
            .expect("read");
        let ids: HashSet<_> = events.iter().map(|e| e.id).collect();
        assert_eq!(events.len() as u64, expected, "{stream}");
        assert_eq!(ids.len() as u64, expected, "{stream}: an id written twice");
    }
}
