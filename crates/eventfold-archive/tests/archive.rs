//! Archives in a local directory (`file://`): a restore rebuilds the same `$all`; a
//! second pass uploads only what is new; an interrupted pass resumes without uploading
//! again; a scavenged segment is archived again; damaged or foreign archives are
//! refused. (The same against a real S3 server: `s3.rs`.)

use std::path::Path;

use eventfold_archive::{ArchiveError, ArchiveLocation, MANIFEST_KEY, archive, restore};
use eventfold_core::{EventData, EventStore, ExpectedVersion, RecordedEvent};
use eventfold_log::{LogStore, ScavengeOptions};
use eventfold_testsupport::dirs::{holds_bytes, temp_dir};

mod common;
use common::{all, options};

/// Appends `count` events of about 300 bytes to `stream`, at most 10 per append.
async fn append(store: &LogStore, stream: &str, count: usize, tag: &str) {
    let events: Vec<EventData> = (0..count)
        .map(|n| {
            EventData::json(
                "Noted",
                &serde_json::json!({"n": n, "tag": tag, "padding": "x".repeat(200)}),
            )
            .unwrap()
        })
        .collect();
    for batch in events.chunks(10) {
        store
            .append(stream, ExpectedVersion::Any, batch.to_vec())
            .await
            .unwrap();
    }
}

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

async fn restored_all(location: &ArchiveLocation, dir: &Path) -> Vec<RecordedEvent> {
    restore(location, dir, &mut |_| {}).await.unwrap();
    let store = LogStore::open(dir, options()).unwrap();
    let events = all(&store);
    store.close();
    events
}

#[tokio::test]
async fn a_restore_rebuilds_the_same_all_from_sealed_and_active_segments() {
    let (data, bucket, target) = (temp_dir(), temp_dir(), temp_dir());
    let store = LogStore::open(data.path(), options()).unwrap();
    for i in 0..40 {
        append(&store, &format!("order-{}", i % 7), 10, "first").await;
    }
    let segments = store.segments();
    assert!(segments.len() > 3, "the test needs sealed segments");
    assert!(!segments.last().unwrap().sealed);
    let location = ArchiveLocation::parse(&file_url(bucket.path())).unwrap();
    let mut seen = Vec::new();
    let report = archive(&store, &location, &mut |p| seen.push(p))
        .await
        .unwrap();
    assert_eq!(report.end_position, 400);
    assert_eq!(report.segments, segments.len() as u64);
    assert_eq!(report.pieces_adopted, 0);
    let last = seen.last().unwrap();
    assert_eq!(
        last.bytes_done, last.bytes_total,
        "progress ends at the total"
    );
    let expected = all(&store);
    store.close();

    let restored = restored_all(&location, &target.join("data")).await;
    assert_eq!(restored.len(), 400);
    assert_eq!(
        restored, expected,
        "ids, positions, revisions, data, recorded_at"
    );
}

#[tokio::test]
async fn a_second_pass_uploads_only_what_was_written_since() {
    let (data, bucket, target) = (temp_dir(), temp_dir(), temp_dir());
    let store = LogStore::open(data.path(), options()).unwrap();
    append(&store, "cart-1", 30, "before").await;
    let location = ArchiveLocation::parse(&file_url(bucket.path())).unwrap();
    let first = archive(&store, &location, &mut |_| {}).await.unwrap();
    let archived_bytes: u64 = store.segments().iter().map(|s| s.len).sum();
    assert_eq!(first.bytes_uploaded, archived_bytes);

    let again = archive(&store, &location, &mut |_| {}).await.unwrap();
    assert_eq!(
        (again.pieces_uploaded, again.bytes_uploaded),
        (0, 0),
        "nothing new"
    );

    append(&store, "cart-2", 300, "after").await;
    let total: u64 = store.segments().iter().map(|s| s.len).sum();
    let second = archive(&store, &location, &mut |_| {}).await.unwrap();
    assert_eq!(
        second.bytes_uploaded,
        total - archived_bytes,
        "only the bytes written since the first pass"
    );
    assert_eq!(second.end_position, 330);
    let expected = all(&store);
    store.close();
    assert_eq!(
        restored_all(&location, &target.join("data")).await,
        expected
    );
}

#[tokio::test]
async fn an_interrupted_pass_resumes_and_takes_the_pieces_already_uploaded() {
    let (data, bucket) = (temp_dir(), temp_dir());
    let store = LogStore::open(data.path(), options()).unwrap();
    append(&store, "ledger-1", 200, "x").await;
    let location = ArchiveLocation::parse(&file_url(bucket.path())).unwrap();
    let first = archive(&store, &location, &mut |_| {}).await.unwrap();
    // A pass that died after uploading its pieces and before writing the manifest.
    std::fs::remove_file(bucket.join(MANIFEST_KEY)).unwrap();
    let resumed = archive(&store, &location, &mut |_| {}).await.unwrap();
    assert_eq!(resumed.pieces_uploaded, 0, "no piece goes up twice");
    assert_eq!(resumed.pieces_adopted, first.pieces_uploaded);
    assert_eq!(resumed.end_position, 200);
    store.close();
}

#[tokio::test]
async fn a_segment_rewritten_by_a_scavenge_is_archived_again_without_the_removed_events() {
    let (data, bucket, target) = (temp_dir(), temp_dir(), temp_dir());
    let store = LogStore::open(data.path(), options()).unwrap();
    let secret = "forget-me-please";
    for i in 0..10 {
        let tag = if i < 8 { secret } else { "late" };
        append(&store, "doomed-1", 5, tag).await;
        append(&store, &format!("kept-{i}"), 20, "kept").await;
    }
    let location = ArchiveLocation::parse(&file_url(bucket.path())).unwrap();
    archive(&store, &location, &mut |_| {}).await.unwrap();
    let keep_from = |stream: &str| if stream == "doomed-1" { 40 } else { 0 };
    let scavenged = store
        .scavenge(keep_from, ScavengeOptions::default())
        .await
        .unwrap();
    assert_eq!(scavenged.events_removed(), 40);
    let report = archive(&store, &location, &mut |_| {}).await.unwrap();
    assert!(report.segments_rewritten > 0, "{report:?}");
    let expected = all(&store);
    store.close();
    let doomed: Vec<u64> = expected
        .iter()
        .filter(|e| e.stream == "doomed-1")
        .map(|e| e.revision.get())
        .collect();
    assert_eq!(doomed, (40..50).collect::<Vec<_>>());

    let restored = restored_all(&location, &target.join("data")).await;
    assert_eq!(restored, expected);
    for dir in [bucket.path(), &target.join("data")] {
        assert!(
            !holds_bytes(dir, secret.as_bytes()),
            "the removed events' bytes are gone from {}",
            dir.display()
        );
    }
}

#[tokio::test]
async fn a_damaged_piece_is_refused_and_the_half_restored_directory_removed() {
    let (data, bucket, target) = (temp_dir(), temp_dir(), temp_dir());
    let store = LogStore::open(data.path(), options()).unwrap();
    append(&store, "order-1", 100, "x").await;
    let location = ArchiveLocation::parse(&file_url(bucket.path())).unwrap();
    archive(&store, &location, &mut |_| {}).await.unwrap();
    store.close();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bucket.join(MANIFEST_KEY)).unwrap()).unwrap();
    let key = manifest["segments"][1]["pieces"][0]["key"]
        .as_str()
        .unwrap();
    let piece = bucket.join(key);
    let mut bytes = std::fs::read(&piece).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&piece, bytes).unwrap();

    let dir = target.join("data");
    let error = restore(&location, &dir, &mut |_| {}).await.unwrap_err();
    match &error {
        ArchiveError::Corrupted { key: named, .. } => assert!(named.ends_with(key), "{error}"),
        other => panic!("expected a damaged piece, got {other}"),
    }
    assert!(
        !eventfold_log::holds_segments(&dir),
        "no half-restored store is left"
    );
}

#[tokio::test]
async fn restores_refuse_a_directory_with_a_store_and_a_prefix_without_an_archive() {
    let (data, bucket, empty) = (temp_dir(), temp_dir(), temp_dir());
    let store = LogStore::open(data.path(), options()).unwrap();
    append(&store, "order-1", 3, "x").await;
    let location = ArchiveLocation::parse(&file_url(bucket.path())).unwrap();
    archive(&store, &location, &mut |_| {}).await.unwrap();
    store.close();
    let error = restore(&location, data.path(), &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, ArchiveError::Target { .. }), "{error}");
    assert!(
        error.to_string().contains("holds a store already"),
        "{error}"
    );

    let nothing = ArchiveLocation::parse(&file_url(empty.path())).unwrap();
    let error = restore(&nothing, &empty.join("data"), &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("the manifest is missing"),
        "{error}"
    );
}

#[tokio::test]
async fn a_prefix_holding_another_stores_archive_is_refused() {
    let (first, second, bucket) = (temp_dir(), temp_dir(), temp_dir());
    let location = ArchiveLocation::parse(&file_url(bucket.path())).unwrap();
    let big = LogStore::open(first.path(), options()).unwrap();
    append(&big, "order-1", 400, "x").await;
    archive(&big, &location, &mut |_| {}).await.unwrap();
    big.close();
    let small = LogStore::open(second.path(), options()).unwrap();
    append(&small, "order-1", 3, "x").await;
    let error = archive(&small, &location, &mut |_| {}).await.unwrap_err();
    assert!(
        error.to_string().contains("another store's archive"),
        "{error}"
    );
    small.close();
}

#[tokio::test]
async fn two_young_stores_on_one_prefix_are_told_apart_and_a_restored_store_goes_on() {
    let (first, second, bucket, target) = (temp_dir(), temp_dir(), temp_dir(), temp_dir());
    let location = ArchiveLocation::parse(&file_url(bucket.path())).unwrap();
    // Two stores of the same shape: positions and lengths cannot tell them apart.
    let one = LogStore::open(first.path(), options()).unwrap();
    append(&one, "order-1", 30, "x").await;
    archive(&one, &location, &mut |_| {}).await.unwrap();
    let two = LogStore::open(second.path(), options()).unwrap();
    append(&two, "order-1", 40, "x").await;
    let error = archive(&two, &location, &mut |_| {}).await.unwrap_err();
    assert!(
        error.to_string().contains("another store's archive"),
        "{error}"
    );
    two.close();
    let id = one.store_id().expect("a writable open makes an id");
    one.close();
    let reopened = LogStore::open_read_only(first.path()).unwrap();
    assert_eq!(reopened.store_id(), Some(id), "the id is kept");
    reopened.close();

    // The lost store's restore keeps its id and archives on to the same prefix.
    let dir = target.join("data");
    restore(&location, &dir, &mut |_| {}).await.unwrap();
    let restored = LogStore::open(&dir, options()).unwrap();
    assert_eq!(restored.store_id(), Some(id));
    append(&restored, "order-2", 20, "after").await;
    let pass = archive(&restored, &location, &mut |_| {}).await.unwrap();
    assert_eq!(pass.segments_rewritten, 0, "nothing archived is replaced");
    assert!(pass.pieces_uploaded > 0);

    // An archive made before stores had ids takes the store's id at its next pass.
    let manifest_path = bucket.join(MANIFEST_KEY);
    let read_manifest = || {
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&manifest_path).unwrap())
            .unwrap()
    };
    let mut manifest = read_manifest();
    assert_eq!(manifest["store_id"], id.to_string());
    manifest.as_object_mut().unwrap().remove("store_id");
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    archive(&restored, &location, &mut |_| {}).await.unwrap();
    assert_eq!(read_manifest()["store_id"], id.to_string());
    restored.close();
}

#[test]
fn archive_urls_are_checked() {
    for (url, says) in [
        ("ftp://host/x", "unsupported scheme"),
        ("s3:///prefix", "no bucket"),
        ("not a url", "relative URL"),
    ] {
        let error = ArchiveLocation::parse(url).unwrap_err();
        assert!(error.to_string().contains(says), "{url}: {error}");
    }
}
