//! Scenarios: failed writes and fsyncs stop the store; short writes are completed; a
//! full disk refuses appends cleanly and the store works again once space is freed.

mod common;

use common::*;
use eventfold_core::{Error, EventStore, ExpectedVersion, ReadStream};
use eventfold_log::sim::{Faults, SimStorage, Unsynced};

const APPENDS: u64 = 40;

/// Appends `APPENDS` single events to stream `s`, returning which were acknowledged
/// and the errors of the others.
async fn append_all(storage: &SimStorage) -> (Vec<u64>, Vec<Error>) {
    let store = open_sim(storage, small_segments()).unwrap();
    let mut acked = Vec::new();
    let mut errors = Vec::new();
    for n in 0..APPENDS {
        match append_one(&store, "s", n).await {
            Ok(()) => acked.push(n),
            Err(e) => errors.push(e),
        }
    }
    (acked, errors)
}

async fn values_after_restart(storage: &SimStorage) -> Vec<u64> {
    let store = open_sim(storage, small_segments()).unwrap();
    match store.read_stream("s", ReadStream::forward()).await {
        Ok(events) => events
            .iter()
            .map(|e| {
                e.data_as::<serde_json::Value>().unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect(),
        Err(Error::StreamNotFound { .. }) => Vec::new(),
        Err(e) => panic!("reading after restart: {e}"),
    }
}

#[tokio::test]
async fn a_failed_fsync_stops_writes_and_loses_nothing_acknowledged() {
    let clean = SimStorage::new();
    let opened = {
        let s = open_sim(&clean, small_segments()).unwrap();
        drop(s);
        clean.ops()
    };
    append_all(&clean).await;
    let total = clean.ops();
    for fail_at in opened + 1..=total {
        let storage = SimStorage::new();
        storage.set_faults(Faults {
            fail_sync_at_op: Some(fail_at),
            ..Faults::default()
        });
        let (acked, errors) = append_all(&storage).await;
        if errors.is_empty() {
            continue; // that op was not an fsync
        }
        // Everything after the failure is refused: no retry that pretends.
        assert_eq!(
            acked,
            (0..acked.len() as u64).collect::<Vec<_>>(),
            "op {fail_at}"
        );
        assert!(
            errors.iter().all(|e| matches!(e, Error::Poisoned { .. })),
            "op {fail_at}: {errors:?}"
        );
        // A restart (same disk, no power loss) recovers from the log.
        storage.set_faults(Faults::default());
        let values = values_after_restart(&storage).await;
        assert_eq!(
            values, acked,
            "op {fail_at}: restart must show exactly the acknowledged events"
        );
    }
}

#[tokio::test]
async fn a_failed_write_stops_writes_and_loses_nothing_acknowledged() {
    let clean = SimStorage::new();
    append_all(&clean).await;
    let total = clean.ops();
    let mut failures_seen = 0;
    for fail_at in 1..=total {
        let storage = SimStorage::new();
        storage.set_faults(Faults {
            fail_write_at_op: Some(fail_at),
            ..Faults::default()
        });
        let store = match open_sim(&storage, small_segments()) {
            Ok(store) => store,
            Err(e) => {
                // The failure hit opening itself, which reports it.
                assert!(e.to_string().contains("write"), "op {fail_at}: {e}");
                continue;
            }
        };
        drop(store);
        let (acked, errors) = append_all(&storage).await;
        if errors.is_empty() {
            continue;
        }
        failures_seen += 1;
        assert!(
            errors.iter().all(|e| matches!(e, Error::Poisoned { .. })),
            "{errors:?}"
        );
        storage.set_faults(Faults::default());
        let after_restart = storage.power_loss(Unsynced::Lost);
        assert_eq!(
            values_after_restart(&after_restart).await,
            acked,
            "op {fail_at}"
        );
    }
    assert!(
        failures_seen > 10,
        "the faults must hit appends ({failures_seen})"
    );
}

#[tokio::test]
async fn short_writes_are_completed() {
    let clean = SimStorage::new();
    append_all(&clean).await;
    for short_at in 1..=clean.ops() {
        let storage = SimStorage::new();
        storage.set_faults(Faults {
            short_write_at_op: Some(short_at),
            ..Faults::default()
        });
        let (acked, errors) = append_all(&storage).await;
        assert!(errors.is_empty(), "op {short_at}: {errors:?}");
        let disk = storage.power_loss(Unsynced::Lost);
        assert_eq!(values_after_restart(&disk).await, acked, "op {short_at}");
    }
}

#[tokio::test]
async fn a_full_disk_refuses_appends_and_the_store_recovers_when_space_is_freed() {
    for room in [300u64, 2_000, 5_000, 9_000] {
        let storage = SimStorage::new();
        let store = open_sim(&storage, small_segments()).unwrap();
        append_one(&store, "s", 0).await.unwrap();
        let used: u64 = {
            use eventfold_log::io::Storage;
            let dir = std::path::Path::new("/data/segments");
            storage
                .list(dir)
                .unwrap()
                .iter()
                .map(|n| storage.read_file(&dir.join(n)).unwrap().len() as u64)
                .sum()
        };
        storage.set_faults(Faults {
            disk_bytes_max: Some(used + room),
            ..Faults::default()
        });
        let mut acked = vec![0];
        let mut refused = 0;
        for n in 1..200 {
            match append_one(&store, "s", n).await {
                Ok(()) => acked.push(n),
                Err(Error::StorageFull { .. }) => {
                    refused += 1;
                    if refused == 3 {
                        break;
                    }
                }
                Err(e) => panic!("room {room}: a full disk must be refused cleanly, got {e}"),
            }
        }
        assert_eq!(refused, 3, "room {room}: the disk never filled");
        // Still readable while full.
        let events = store.read_stream("s", ReadStream::forward()).await.unwrap();
        assert_eq!(events.len(), acked.len(), "room {room}");
        // Space is freed: the same store accepts writes again.
        storage.set_faults(Faults::default());
        append_one(&store, "s", 1000).await.unwrap();
        acked.push(1000);
        store
            .append(
                "s",
                ExpectedVersion::Exact(eventfold_core::Revision(acked.len() as u64 - 1)),
                vec![event(1001)],
            )
            .await
            .unwrap();
        acked.push(1001);
        drop(store);
        let disk = storage.power_loss(Unsynced::Lost);
        assert_eq!(values_after_restart(&disk).await, acked, "room {room}");
        let report = eventfold_log::verify_with(&disk, std::path::Path::new("/data")).unwrap();
        assert!(report.is_intact(), "room {room}: {:?}", report.damage);
    }
}
