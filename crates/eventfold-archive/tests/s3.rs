//! Archives in a real S3-compatible server (SeaweedFS, started by the test; a run
//! without `EVENTFOLD_TEST_SEAWEEDFS` says loudly that it skipped): a restore from the
//! bucket rebuilds the same `$all`; the server killed in the middle of a pass and
//! started again, the pass still completes; a pass cancelled in the middle resumes
//! without uploading again; a damaged object is refused; wrong credentials get a clear
//! error (missing ones: the CLI's `tests/archive.rs`); segments dropped from the disk
//! (tiered storage) are read back from the bucket. One server per test function (SeaweedFS takes seconds to start),
//! so the scenarios share it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use eventfold_archive::{ArchiveError, ArchiveLocation, archive, restore};
use eventfold_core::{EventData, EventStore, ExpectedVersion, RecordedEvent};
use eventfold_log::LogStore;
use eventfold_testsupport::dirs::temp_dir;

mod common;
use common::{all, options};
use eventfold_testsupport::s3::S3Server;

async fn fill(store: &LogStore, batches: usize) {
    for b in 0..batches {
        let events = (0..10)
            .map(|n| {
                EventData::json(
                    "Noted",
                    &serde_json::json!({"batch": b, "n": n, "padding": "y".repeat(300)}),
                )
                .unwrap()
            })
            .collect();
        store
            .append(&format!("ledger-{}", b % 5), ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
}

fn location(server: &S3Server, prefix: &str) -> ArchiveLocation {
    ArchiveLocation::parse_with(
        &format!("s3://eventfold-test/{prefix}"),
        &server
            .environment()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect::<Vec<_>>(),
    )
    .unwrap()
}

async fn restored(location: &ArchiveLocation) -> Vec<RecordedEvent> {
    let target = temp_dir();
    let dir = target.join("data");
    restore(location, &dir, &mut |_| {}).await.unwrap();
    let store = LogStore::open(&dir, options()).unwrap();
    let events = all(&store);
    store.close();
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_survive_a_killed_server_and_a_cancelled_pass_and_restore_identically() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let server = Arc::new(std::sync::Mutex::new(server));
    let data = temp_dir();
    let store = LogStore::open(data.path(), options()).unwrap();
    fill(&store, 200).await;
    let pieces = store.segments().len() as u64;
    assert!(pieces > 20, "the test needs many pieces, has {pieces}");
    let expected = all(&store);

    // The server is killed after a few pieces and started again a moment later: the
    // pass retries its requests and completes.
    let here = location(&server.lock().unwrap(), "killed");
    let (tx, rx) = mpsc::channel::<()>();
    let restarter = {
        let server = server.clone();
        std::thread::spawn(move || {
            if rx.recv().is_ok() {
                let mut server = server.lock().unwrap();
                server.kill();
                std::thread::sleep(std::time::Duration::from_millis(500));
                server.restart();
            }
        })
    };
    let done = AtomicU64::new(0);
    let mut tx = Some(tx);
    let report = archive(&store, &here, &mut |p| {
        if done.fetch_add(1, Ordering::Relaxed) == 5
            && let Some(tx) = tx.take()
        {
            let _ = tx.send(());
            // Let the kill happen while the pass goes on.
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = p;
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the pass did not survive the restart: {e}; log: {}",
            server.lock().unwrap().log()
        )
    });
    restarter.join().unwrap();
    assert_eq!(report.end_position, expected.len() as u64);
    assert_eq!(restored(&here).await, expected);

    // A pass cancelled after a few pieces (its process died, say): the next pass
    // uploads only what the first did not.
    let there = location(&server.lock().unwrap(), "cancelled");
    let uploaded = AtomicU64::new(0);
    let mut count = |_| {
        uploaded.fetch_add(1, Ordering::Relaxed);
    };
    let cancelled = tokio::select! {
        _ = archive(&store, &there, &mut count) => false,
        () = async {
            while uploaded.load(Ordering::Relaxed) < 8 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        } => true,
    };
    assert!(cancelled, "the pass ended before it could be cancelled");
    let resumed = archive(&store, &there, &mut |_| {}).await.unwrap();
    assert!(
        resumed.pieces_uploaded < pieces,
        "the resumed pass uploaded {} pieces of {pieces}: the first pass's were taken ({resumed:?})",
        resumed.pieces_uploaded
    );
    assert_eq!(restored(&there).await, expected);

    // A damaged object: a restore refuses it, naming it.
    let manifest = eventfold_archive::Manifest::load(&there)
        .await
        .unwrap()
        .unwrap();
    let key = manifest.segments[3].pieces[0].key.clone();
    {
        use object_store::ObjectStoreExt;
        let raw = raw_store(&server.lock().unwrap());
        let path = object_store::path::Path::from(format!("cancelled/{key}"));
        let mut bytes = raw
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        bytes[100] ^= 1;
        raw.put(&path, bytes.into()).await.unwrap();
    }
    let target = temp_dir();
    let error = restore(&there, &target.join("data"), &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ArchiveError::Corrupted { key: k, .. } if k.ends_with(&key)),
        "{error}"
    );

    // Wrong credentials: the server's refusal, named.
    let mut wrong: Vec<(&str, String)> = server.lock().unwrap().environment();
    for (k, v) in &mut wrong {
        if *k == "AWS_SECRET_ACCESS_KEY" {
            *v = "not-the-secret".into();
        }
    }
    let denied = ArchiveLocation::parse_with("s3://eventfold-test/denied", &wrong).unwrap();
    let error = archive(&store, &denied, &mut |_| {}).await.unwrap_err();
    assert!(matches!(error, ArchiveError::Storage { .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains("manifest.json"), "{text}");
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_dropped_from_the_disk_is_read_back_from_the_bucket() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let data = temp_dir();
    let store = Arc::new(LogStore::open(data.path(), options()).unwrap());
    fill(&store, 100).await;
    let expected = all(&store);
    let here = location(&server, "tiered");
    archive(&store, &here, &mut |_| {}).await.unwrap();
    let report = eventfold_archive::keep_local(&store, &here, 0)
        .await
        .unwrap();
    let sealed = store.segments().len() as u64 - 1;
    assert_eq!(report.segments_dropped, sealed);
    assert!(sealed > 5, "the test needs several cold segments");
    store.set_segment_fetcher(eventfold_archive::ArchiveFetcher::with_location(here).unwrap());
    // Read on a blocking thread, as the server's reads are.
    let reader = store.clone();
    let read = tokio::task::spawn_blocking(move || all(&reader))
        .await
        .unwrap();
    assert_eq!(read, expected);
    let fetched = store
        .storage_metrics()
        .into_iter()
        .find(|m| m.name == "eventfold_log_archive_fetches_total")
        .unwrap()
        .value;
    assert_eq!(fetched as u64, sealed, "each cold segment fetched once");
}

/// The bucket itself, to damage an object behind the archive's back.
fn raw_store(server: &S3Server) -> object_store::aws::AmazonS3 {
    let mut builder = object_store::aws::AmazonS3Builder::new().with_bucket_name("eventfold-test");
    for (key, value) in server.environment() {
        builder = builder.with_config(key.to_ascii_lowercase().parse().unwrap(), value);
    }
    builder.build().unwrap()
}
