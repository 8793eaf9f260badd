//! Scenario: sealed segments that an archive holds have their local copy dropped; reads
//! that reach them fetch them back (checked against the checksum recorded when they
//! were dropped), across restarts, a scavenge, `verify` and a drop that crashed half
//! way. The archive here is a map of the bytes each segment had when it was archived.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use eventfold_core::{EventStore, ExpectedVersion, ReadStream, RecordedEvent};
use eventfold_log::{LogStore, ScavengeOptions, SegmentFetcher, SegmentSnapshot};

const ARCHIVE: &str = "file:///path/on/the/disk/archive";

/// An archive in memory: the bytes of each archived segment, and what was fetched.
#[derive(Default)]
struct MapArchive {
    segments: Mutex<HashMap<u64, Vec<u8>>>,
    fetched: Mutex<Vec<u64>>,
    /// Flips a byte of what is served, as a damaged object would.
    damaged: std::sync::atomic::AtomicBool,
}

impl MapArchive {
    fn keep(&self, snapshot: &SegmentSnapshot) -> u32 {
        let bytes = snapshot
            .read(0, snapshot.len as usize)
            .expect("read segment");
        let crc = crc32c::crc32c(&bytes);
        self.segments
            .lock()
            .expect("lock")
            .insert(snapshot.number, bytes);
        crc
    }

    fn fetched(&self) -> Vec<u64> {
        self.fetched.lock().expect("lock").clone()
    }
}

impl SegmentFetcher for MapArchive {
    fn fetch(&self, archive: &str, number: u64, len: u64) -> Result<Vec<u8>, String> {
        assert_eq!(
            archive, ARCHIVE,
            "the marker names the archive it was dropped for"
        );
        self.fetched.lock().expect("lock").push(number);
        let mut bytes = self
            .segments
            .lock()
            .expect("lock")
            .get(&number)
            .cloned()
            .ok_or_else(|| format!("segment {number} is not archived"))?;
        assert_eq!(bytes.len() as u64, len);
        if self.damaged.load(std::sync::atomic::Ordering::Relaxed) {
            bytes[100] ^= 1;
        }
        Ok(bytes)
    }
}

async fn fill(store: &LogStore, events: u64) {
    for n in 0..events {
        let stream = format!("order-{}", n % 5);
        append_one(store, &stream, n).await.expect("append");
    }
}

/// Archives and drops every sealed segment but the last `keep` ones; returns their
/// numbers.
fn drop_old_segments(store: &LogStore, archive: &MapArchive, keep: usize) -> Vec<u64> {
    let snapshots = store.segments();
    let sealed: Vec<&SegmentSnapshot> = snapshots.iter().filter(|s| s.sealed).collect();
    let mut dropped = Vec::new();
    for snapshot in &sealed[..sealed.len().saturating_sub(keep)] {
        let crc = archive.keep(snapshot);
        let freed = store
            .drop_local_copy(snapshot, ARCHIVE, crc)
            .expect("drop the local copy");
        assert_eq!(freed, snapshot.len);
        dropped.push(snapshot.number);
    }
    dropped
}

fn segment_file(dir: &Path, number: u64, extension: &str) -> std::path::PathBuf {
    dir.join("segments")
        .join(format!("{number:010}.{extension}"))
}

async fn stream(store: &LogStore, name: &str, options: ReadStream) -> Vec<RecordedEvent> {
    store.read_stream(name, options).await.expect("read stream")
}

#[tokio::test]
async fn dropped_segments_are_fetched_back_by_reads_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = Arc::new(MapArchive::default());
    let store = LogStore::open(dir.path(), small_segments()).expect("open");
    fill(&store, 300).await;
    let before = all_events(&store).await;
    let order_1 = stream(&store, "order-1", ReadStream::forward()).await;
    let order_1_back = stream(&store, "order-1", ReadStream::backward()).await;

    let dropped = drop_old_segments(&store, &archive, 1);
    assert!(
        dropped.len() >= 3,
        "the scenario needs several cold segments"
    );
    for &number in &dropped {
        assert!(!segment_file(dir.path(), number, "seg").exists());
        assert!(segment_file(dir.path(), number, "cold").exists());
        assert!(segment_file(dir.path(), number, "idx").exists());
    }
    assert!(store.segments().iter().filter(|s| s.cold).count() == dropped.len());

    // Without a fetcher, a read that reaches history names the archive.
    let error = store
        .read_stream("order-1", ReadStream::forward())
        .await
        .expect_err("no fetcher");
    let message = error.to_string();
    assert!(
        message.contains(ARCHIVE) && message.contains("no way to fetch"),
        "{message}"
    );

    store.set_segment_fetcher(archive.clone());
    assert_eq!(
        stream(&store, "order-1", ReadStream::forward()).await,
        order_1
    );
    assert_eq!(
        stream(&store, "order-1", ReadStream::backward()).await,
        order_1_back
    );
    assert_eq!(
        all_events(&store).await,
        before,
        "reads across the boundary"
    );
    let mut fetched = archive.fetched();
    fetched.sort_unstable();
    assert_eq!(
        fetched, dropped,
        "each cold segment fetched once, then cached"
    );

    // Appends go on; a restart opens from the index files alone.
    append_one(&store, "order-1", 300).await.expect("append");
    let before = all_events(&store).await;
    store.close();
    let store = LogStore::open(dir.path(), small_segments()).expect("reopen");
    assert!(
        archive.fetched().len() == dropped.len(),
        "opening fetches nothing"
    );
    store.set_segment_fetcher(archive.clone());
    assert_eq!(all_events(&store).await, before);
    store.close();

    let report = eventfold_log::verify(dir.path()).expect("verify");
    assert!(report.is_intact(), "{:?}", report.damage);
    assert_eq!(report.cold, dropped.len() as u64);
    assert_eq!(report.events, before.len() as u64);
}

#[tokio::test]
async fn a_fetched_segment_that_differs_from_the_dropped_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = Arc::new(MapArchive::default());
    let store = LogStore::open(dir.path(), small_segments()).expect("open");
    fill(&store, 200).await;
    drop_old_segments(&store, &archive, 1);
    archive
        .damaged
        .store(true, std::sync::atomic::Ordering::Relaxed);
    store.set_segment_fetcher(archive.clone());
    let error = store
        .read_stream("order-1", ReadStream::forward())
        .await
        .expect_err("damaged archive");
    let message = error.to_string();
    assert!(
        message.contains("CRC-32C") && message.contains("segment 0"),
        "{message}"
    );
}

#[tokio::test]
async fn a_drop_refuses_the_active_segment_a_rewritten_one_and_a_wrong_checksum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = MapArchive::default();
    let store = LogStore::open(dir.path(), small_segments()).expect("open");
    fill(&store, 200).await;
    let snapshots = store.segments();
    let active = snapshots.last().expect("active");
    let error = store
        .drop_local_copy(active, ARCHIVE, 0)
        .expect_err("active");
    assert!(error.to_string().contains("active segment"), "{error}");

    let first = &snapshots[0];
    let crc = archive.keep(first);
    let error = store
        .drop_local_copy(first, ARCHIVE, crc ^ 1)
        .expect_err("wrong checksum");
    assert!(error.to_string().contains("local copy is kept"), "{error}");
    assert!(segment_file(dir.path(), 0, "seg").exists());
    assert!(!segment_file(dir.path(), 0, "cold").exists());

    // A scavenge rewrites segment 0: the old snapshot no longer describes it.
    store
        .append("order-0", ExpectedVersion::Any, vec![event(1)])
        .await
        .expect("append");
    let report = store
        .scavenge(
            |s: &str| if s == "order-0" { 3 } else { 0 },
            ScavengeOptions::default(),
        )
        .await
        .expect("scavenge");
    assert!(report.events_removed() > 0);
    let error = store
        .drop_local_copy(first, ARCHIVE, crc)
        .expect_err("rewritten");
    assert!(error.to_string().contains("rewritten"), "{error}");
}

#[tokio::test]
async fn a_scavenge_brings_a_cold_segment_back_to_the_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = Arc::new(MapArchive::default());
    let store = LogStore::open(dir.path(), small_segments()).expect("open");
    fill(&store, 300).await;
    let dropped = drop_old_segments(&store, &archive, 1);
    store.set_segment_fetcher(archive.clone());
    let report = store
        .scavenge(
            |s: &str| if s == "order-2" { 30 } else { 0 },
            ScavengeOptions::default(),
        )
        .await
        .expect("scavenge");
    assert_eq!(report.events_removed(), 30);
    let rewritten: Vec<u64> = report.segments.iter().map(|s| s.segment).collect();
    assert!(rewritten.iter().any(|n| dropped.contains(n)));
    for number in &rewritten {
        assert!(segment_file(dir.path(), *number, "seg").exists());
        assert!(!segment_file(dir.path(), *number, "cold").exists());
    }
    let after = all_events(&store).await;
    assert!(
        after
            .iter()
            .all(|e| e.stream != "order-2" || e.revision.get() >= 30)
    );
    store.close();
    let store = LogStore::open(dir.path(), small_segments()).expect("reopen");
    store.set_segment_fetcher(archive.clone());
    assert_eq!(all_events(&store).await, after);
}

#[tokio::test]
async fn a_drop_that_crashed_before_removing_the_file_keeps_the_local_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = MapArchive::default();
    let store = LogStore::open(dir.path(), small_segments()).expect("open");
    fill(&store, 200).await;
    let before = all_events(&store).await;
    let dropped = drop_old_segments(&store, &archive, 1);
    store.close();
    // The crash: the marker was written, the file not yet removed.
    let bytes = archive.segments.lock().expect("lock")[&dropped[0]].clone();
    std::fs::write(segment_file(dir.path(), dropped[0], "seg"), bytes).expect("put back");
    let store = LogStore::open(dir.path(), small_segments()).expect("reopen");
    assert!(
        !segment_file(dir.path(), dropped[0], "cold").exists(),
        "the stale marker goes"
    );
    let snapshots = store.segments();
    assert!(!snapshots[dropped[0] as usize].cold);
    assert!(snapshots[dropped[1] as usize].cold);
    let first_page = store
        .read_stream("order-0", ReadStream::forward().limit(1))
        .await
        .expect("read from the local copy, without a fetcher");
    assert_eq!(first_page[0], before[0]);
}
