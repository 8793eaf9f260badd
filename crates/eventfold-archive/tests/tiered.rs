//! Tiered storage on a `file://` archive: the oldest sealed segments leave the local
//! disk once archived whole, reads across the boundary fetch them back, a restart and
//! a later archive pass need nothing re-uploaded, a restore still rebuilds every
//! segment, and an archive that lost a piece is refused rather than served.

use std::path::Path;
use std::sync::Arc;

use eventfold_archive::{ArchiveFetcher, ArchiveLocation, archive, keep_local, restore};
use eventfold_core::{EventData, EventStore, ExpectedVersion, ReadStream};
use eventfold_log::LogStore;
use eventfold_testsupport::dirs::temp_dir;

mod common;
use common::{all, options};

async fn fill(store: &LogStore, appends: usize, tag: &str) {
    for i in 0..appends {
        let events: Vec<EventData> = (0..10)
            .map(|n| {
                EventData::json(
                    "Noted",
                    &serde_json::json!({"n": n, "tag": tag, "padding": "y".repeat(200)}),
                )
                .unwrap()
            })
            .collect();
        store
            .append(&format!("order-{}", i % 7), ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
}

fn local_segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".seg")
        })
        .count()
}

#[tokio::test]
async fn history_lives_in_the_archive_and_reads_fetch_it_back() {
    let (data, bucket, target) = (temp_dir(), temp_dir(), temp_dir());
    let url = format!("file://{}", bucket.path().display());
    let location = ArchiveLocation::parse(&url).unwrap();
    let store = Arc::new(LogStore::open(data.path(), options()).unwrap());
    fill(&store, 60, "first").await;
    let segments = store.segments().len();
    assert!(segments > 4, "the test needs several sealed segments");

    // Nothing leaves the disk before the archive holds it.
    let error = keep_local(&store, &location, 0).await.unwrap_err();
    assert!(error.to_string().contains("no archive"), "{error}");
    archive(&store, &location, &mut |_| {}).await.unwrap();
    let report = keep_local(&store, &location, 0).await.unwrap();
    assert_eq!(
        report.segments_dropped,
        segments as u64 - 1,
        "all but the active one"
    );
    assert_eq!(local_segment_files(data.path()), 1);
    assert_eq!(report.local_bytes, store.segments().last().unwrap().len);

    store.set_segment_fetcher(ArchiveFetcher::new().unwrap());
    let expected_stream = store
        .read_stream("order-3", ReadStream::backward())
        .await
        .unwrap();
    assert_eq!(expected_stream.len(), 90);
    let everything = all(&store);
    assert_eq!(everything.len(), 600);

    // The log goes on; a later pass archives only what is new, and the bound keeps
    // about one segment's worth on disk.
    fill(&store, 30, "second").await;
    let pass = archive(&store, &location, &mut |_| {}).await.unwrap();
    assert_eq!(pass.segments_rewritten, 0);
    let bound = options().segment_bytes_max;
    let report = keep_local(&store, &location, bound).await.unwrap();
    assert!(report.segments_dropped > 0);
    assert!(report.local_bytes <= bound, "{report:?}");
    let everything = all(&store);
    assert_eq!(everything.len(), 900);
    Arc::into_inner(store).unwrap().close();

    // A restart: the index files open the store without the archive, the fetcher
    // serves history.
    let store = LogStore::open(data.path(), options()).unwrap();
    store.set_segment_fetcher(ArchiveFetcher::new().unwrap());
    assert_eq!(all(&store), everything);
    store.close();
    let report = eventfold_log::verify(data.path()).unwrap();
    assert!(report.is_intact(), "{:?}", report.damage);
    assert!(report.cold > 0);

    // A restore brings every segment back to a disk.
    restore(&location, &target.join("data"), &mut |_| {})
        .await
        .unwrap();
    let restored = LogStore::open(target.join("data"), options()).unwrap();
    assert_eq!(all(&restored), everything);
}

#[tokio::test]
async fn a_damaged_archive_is_refused_when_history_is_read() {
    let (data, bucket) = (temp_dir(), temp_dir());
    let url = format!("file://{}", bucket.path().display());
    let location = ArchiveLocation::parse(&url).unwrap();
    let store = Arc::new(LogStore::open(data.path(), options()).unwrap());
    fill(&store, 40, "first").await;
    archive(&store, &location, &mut |_| {}).await.unwrap();
    keep_local(&store, &location, 0).await.unwrap();
    // Flip one byte of segment 0's first piece in the bucket.
    let piece = walk(bucket.path())
        .into_iter()
        .find(|p| p.to_string_lossy().contains("0000000000/g0/"))
        .unwrap();
    let mut bytes = std::fs::read(&piece).unwrap();
    bytes[200] ^= 0x10;
    std::fs::write(&piece, bytes).unwrap();

    store.set_segment_fetcher(ArchiveFetcher::new().unwrap());
    let error = store
        .read_stream("order-0", ReadStream::forward())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("segment 0") && error.contains("damaged"),
        "{error}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
