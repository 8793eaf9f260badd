//! Scenario: write across many segments, reopen, and find everything where it was,
//! with index files used when intact and rebuilt when missing or damaged.

mod common;

use common::*;
use eventfold_core::{EventStore, ExpectedVersion, ReadStream, Revision};
use eventfold_log::sim::{SimStorage, Unsynced};
use std::path::Path;

async fn write_many(storage: &SimStorage) -> Vec<eventfold_core::RecordedEvent> {
    let store = open_sim(storage, small_segments()).unwrap();
    for n in 0..200u64 {
        let stream = format!("counter-{}", n % 7);
        store
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![event(n), event(n + 1000)],
            )
            .await
            .unwrap();
    }
    let events = all_events(&store).await;
    assert_eq!(events.len(), 400);
    events
}

fn segment_files(storage: &SimStorage, ext: &str) -> Vec<String> {
    use eventfold_log::io::Storage;
    let mut names: Vec<String> = storage
        .list(Path::new("/data/segments"))
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(ext))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn everything_written_is_there_after_reopen() {
    let storage = SimStorage::new();
    let before = write_many(&storage).await;
    let segments = segment_files(&storage, ".seg");
    assert!(
        segments.len() > 5,
        "expected many segments, got {segments:?}"
    );
    assert_eq!(segment_files(&storage, ".idx").len(), segments.len() - 1);

    // Power loss right after: everything acknowledged was synced.
    let after_crash = storage.power_loss(Unsynced::Lost);
    let store = open_sim(&after_crash, small_segments()).unwrap();
    assert_eq!(all_events(&store).await, before);
    let stream = store
        .read_stream("counter-3", ReadStream::forward())
        .await
        .unwrap();
    assert!(
        stream
            .iter()
            .enumerate()
            .all(|(i, e)| e.revision == Revision(i as u64))
    );
    assert_eq!(
        store.stream_revision("counter-3").await.unwrap(),
        Some(Revision(stream.len() as u64 - 1))
    );
    // And appending continues with the right revisions and positions.
    let result = store
        .append(
            "counter-3",
            ExpectedVersion::Exact(Revision(stream.len() as u64 - 1)),
            vec![event(9)],
        )
        .await
        .unwrap();
    assert_eq!(result.position.get(), 400);
}

#[tokio::test]
async fn a_missing_or_damaged_index_file_is_rebuilt() {
    let storage = SimStorage::new();
    let before = write_many(&storage).await;
    let idx = segment_files(&storage, ".idx");
    let damaged = Path::new("/data/segments").join(&idx[2]);
    let mut bytes = storage.read_file(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    storage.write_file(&damaged, bytes);
    {
        use eventfold_log::io::Storage;
        storage
            .remove(&Path::new("/data/segments").join(&idx[5]))
            .unwrap();
    }
    let store = open_sim(&storage, small_segments()).unwrap();
    assert_eq!(all_events(&store).await, before);
    drop(store);
    assert_eq!(
        segment_files(&storage, ".idx"),
        idx,
        "rebuilt index files are written again"
    );
    let report = eventfold_log::verify_with(&storage, Path::new("/data")).unwrap();
    assert!(report.is_intact(), "{:?}", report.damage);
}

#[tokio::test]
async fn a_second_writer_is_refused_while_the_first_holds_the_directory() {
    let storage = SimStorage::new();
    let first = open_sim(&storage, small_segments()).unwrap();
    let second = open_sim(&storage, small_segments()).unwrap_err();
    assert!(
        matches!(second, eventfold_core::Error::Locked { .. }),
        "{second}"
    );
    drop(first);
    open_sim(&storage, small_segments()).expect("the lock is released on close");
}

#[test]
fn two_processes_cannot_open_one_directory_on_a_real_disk() {
    let dir = tempfile::tempdir().unwrap();
    let first = eventfold_log::LogStore::open(dir.path(), Default::default()).unwrap();
    let err = eventfold_log::LogStore::open(dir.path(), Default::default()).unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
    drop(first);
}

#[tokio::test]
async fn imported_events_keep_their_recorded_times_across_a_reopen() {
    use chrono::TimeZone;
    let storage = SimStorage::new();
    let then = chrono::Utc.timestamp_micros(1_600_000_000_123_456).unwrap();
    let later = chrono::Utc.timestamp_micros(1_600_000_001_000_001).unwrap();
    {
        let store = open_sim(&storage, small_segments()).unwrap();
        let imported = eventfold_core::StreamWrite::new(
            "old-1",
            ExpectedVersion::NoStream,
            vec![event(0), event(1)],
        )
        .with_recorded_at(vec![then, later]);
        store.append_multi(vec![imported]).await.unwrap();
        // As many times as events, or refused.
        let short = eventfold_core::StreamWrite::new("old-2", ExpectedVersion::Any, vec![event(2)])
            .with_recorded_at(vec![then, later]);
        let refused = store.append_multi(vec![short]).await.unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("2 recorded times for 1 events"),
            "{refused}"
        );
        store.close();
    }
    let store = open_sim(&storage, small_segments()).unwrap();
    let events = store
        .read_stream("old-1", ReadStream::forward())
        .await
        .unwrap();
    assert_eq!(
        events.iter().map(|e| e.recorded_at).collect::<Vec<_>>(),
        [then, later]
    );
}

/// On the real file system: the active segment is allocated ahead of the writes with
/// `fallocate`, sealed segments end with their last record, and a reopen keeps the
/// room without taking it for a torn tail.
#[tokio::test]
async fn segments_are_allocated_ahead_and_sealed_to_their_records_on_a_real_disk() {
    let dir = tempfile::tempdir().unwrap();
    let options = eventfold_log::LogOptions {
        segment_bytes_max: 64 * 1024,
        append_bytes_max: 4096,
        preallocate_bytes: 16 * 1024,
        ..eventfold_log::LogOptions::default()
    };
    let written = {
        let store = eventfold_log::LogStore::open(dir.path(), options.clone()).unwrap();
        for n in 0..2500u64 {
            append_one(&store, &format!("s-{}", n % 5), n)
                .await
                .unwrap();
        }
        all_events(&store).await
    };
    let segments = dir.path().join("segments");
    let mut names: Vec<_> = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    assert!(names.len() > 2, "{names:?}");
    let (active, sealed) = names.split_last().unwrap();
    for name in sealed {
        let bytes = std::fs::read(segments.join(name)).unwrap();
        assert_eq!(
            bytes.last(),
            Some(&b'}'),
            "{name} ends with its last record"
        );
        assert!(bytes.len() < 64 * 1024, "{name}: {}", bytes.len());
    }
    let active_len = std::fs::metadata(segments.join(active)).unwrap().len();
    assert_eq!(
        active_len % (16 * 1024),
        0,
        "the active segment is allocated in steps"
    );
    let active_bytes = std::fs::read(segments.join(active)).unwrap();
    assert_eq!(active_bytes.last(), Some(&0), "room follows the records");

    let store = eventfold_log::LogStore::open(dir.path(), options).unwrap();
    assert_eq!(all_events(&store).await, written);
    assert!(
        !dir.path().join("quarantine").exists(),
        "the room was taken for a torn tail"
    );
    assert_eq!(
        std::fs::metadata(segments.join(active)).unwrap().len(),
        active_len,
        "the open kept the room"
    );
    append_one(&store, "s-0", 5000).await.unwrap();
    drop(store);
    assert!(eventfold_log::verify(dir.path()).unwrap().is_intact());
}
