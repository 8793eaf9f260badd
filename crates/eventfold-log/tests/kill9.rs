//! Scenario: a real process appending from many tasks is killed with SIGKILL, three
//! times in a row on the same directory. Every append it reported as acknowledged
//! must be in the store, at the stream and revision it was acknowledged with.
//!
//! The test runs its own binary again as the writer child (selected by an environment
//! variable), so no extra program is needed.

use std::time::{Duration, Instant};

use eventfold_core::{EventData, EventStore, ExpectedVersion, ReadStream, Revision};
use eventfold_log::{LogOptions, LogStore};
use eventfold_testsupport::crash::SelfChild;
use uuid::Uuid;

/// This test, run again as the writer child with the data directory in the variable.
const WRITER: SelfChild = SelfChild::new(
    "sigkill_while_appending_loses_no_acknowledged_event",
    "EVENTFOLD_KILL9_CHILD_DIR",
);

fn options() -> LogOptions {
    // Small segments so that kills also land during sealing.
    LogOptions {
        segment_bytes_max: 256 * 1024,
        append_bytes_max: 64 * 1024,
        ..LogOptions::default()
    }
}

/// The child: append forever from 16 tasks, printing each acknowledgement.
fn child(dir: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = std::sync::Arc::new(LogStore::open(dir, options()).expect("open"));
        let mut tasks = Vec::new();
        for task in 0..16u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let id = Uuid::now_v7();
                    let stream = format!("writer-{}", task % 5);
                    let size = (id.as_u128() % 3) as usize + 1;
                    let events = (0..size)
                        .map(|i| {
                            EventData::json("Written", &serde_json::json!({"task": task, "i": i}))
                                .unwrap()
                                .with_id(if i == 0 { id } else { Uuid::now_v7() })
                        })
                        .collect();
                    let result = store
                        .append(&stream, ExpectedVersion::Any, events)
                        .await
                        .expect("append");
                    println!("ACK {stream} {} {id}", result.first_revision);
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

#[test]
fn sigkill_while_appending_loses_no_acknowledged_event() {
    if let Some(dir) = WRITER.role() {
        child(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(String, u64, Uuid)> = Vec::new();
    for round in 0..3 {
        let mut process = WRITER.spawn(dir.path());
        let started = Instant::now();
        let mut this_round = 0;
        let target = 1500 + round * 700;
        while this_round < target && started.elapsed() < Duration::from_secs(60) {
            match process.next_line() {
                Some(line) if line.starts_with("ACK ") => {
                    acked.push(parse(&line));
                    this_round += 1;
                }
                Some(_) => {}
                None => break,
            }
        }
        // SIGKILL; acknowledgements printed before the kill are still in the pipe.
        for line in process.kill() {
            if line.starts_with("ACK ") {
                acked.push(parse(&line));
            }
        }
        assert!(
            this_round >= target,
            "round {round}: the child stopped acknowledging early"
        );
        check(dir.path(), &acked);
    }
    let report = eventfold_log::verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{:?}", report.damage);
}

fn parse(line: &str) -> (String, u64, Uuid) {
    let parts: Vec<&str> = line.split(' ').collect();
    (
        parts[1].to_string(),
        parts[2].parse().unwrap(),
        parts[3].parse().unwrap(),
    )
}

fn check(dir: &std::path::Path, acked: &[(String, u64, Uuid)]) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = LogStore::open(dir, options()).expect("reopen after SIGKILL");
        for (stream, revision, id) in acked {
            let found = store
                .read_stream(
                    stream,
                    ReadStream::forward().from(Revision(*revision)).limit(1),
                )
                .await
                .unwrap_or_else(|e| panic!("acknowledged event {id} of {stream}: {e}"));
            assert_eq!(
                found.first().map(|e| e.id),
                Some(*id),
                "{stream}@{revision} lost"
            );
        }
    });
}
