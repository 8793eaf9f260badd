//! An online scavenge through a real server (`POST /admin/scavenge`, `eventfold
//! scavenge --server`) while clients keep appending, and a `kill -9` of the server in
//! the middle of it: after each restart every acknowledged append is found at its
//! revision with its id, retention still hides what it hid, and a last scavenge
//! finishes the work with `verify` intact.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventfold_client::HttpStore;
use eventfold_core::{EventData, EventStore, ExpectedVersion, ReadStream, Revision};
use eventfold_metadata::{StreamAdmin, StreamMetadata};
use eventfold_testsupport::cli::{Cli, Served, text};
use eventfold_testsupport::dirs::temp_dir;
use uuid::Uuid;

const TRIMMED_STREAMS: usize = 8;
const EVENTS_PER_TRIMMED_STREAM: usize = 400;
const KEPT_PER_TRIMMED_STREAM: u64 = 10;
const APPENDERS: usize = 4;

fn cli() -> Cli {
    Cli::new(env!("CARGO_BIN_EXE_eventfold"))
}

fn serve(data: &str) -> Served {
    cli().serve(&["--data", data, "--listen", "127.0.0.1:0"])
}

fn client(server: &Served) -> Arc<HttpStore> {
    Arc::new(HttpStore::new(server.address()).expect("a client"))
}

fn padded(n: usize) -> EventData {
    EventData::json(
        "Counted",
        &serde_json::json!({"n": n, "padding": "x".repeat(900)}),
    )
    .expect("valid event")
}

/// Streams trimmed by `max_count`, so that a scavenge has most of their events to
/// remove.
async fn fill(store: &HttpStore) {
    for s in 0..TRIMMED_STREAMS {
        let stream = format!("trimmed-{s}");
        for batch in 0..EVENTS_PER_TRIMMED_STREAM / 100 {
            let events = (0..100).map(|n| padded(batch * 100 + n)).collect();
            store
                .append(&stream, ExpectedVersion::Any, events)
                .await
                .expect("fill");
        }
        let metadata = StreamMetadata {
            max_count: Some(KEPT_PER_TRIMMED_STREAM),
            ..StreamMetadata::default()
        };
        store
            .set_stream_metadata(&stream, ExpectedVersion::Any, metadata)
            .await
            .expect("metadata");
    }
}

/// Appends one event at a time to `live-<n>` until `stop`, returning what was
/// acknowledged: (revision, id). A failed append (the server was killed) ends it.
async fn appender(store: Arc<HttpStore>, n: usize, stop: Arc<AtomicBool>) -> Vec<(u64, Uuid)> {
    let mut acknowledged = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let id = Uuid::new_v4();
        let event = padded(acknowledged.len()).with_id(id);
        match store
            .append(&format!("live-{n}"), ExpectedVersion::Any, vec![event])
            .await
        {
            Ok(result) => acknowledged.push((result.first_revision.get(), id)),
            Err(_) => break,
        }
    }
    acknowledged
}

async fn check(store: &HttpStore, acknowledged: &[Vec<(u64, Uuid)>]) {
    for (n, appended) in acknowledged.iter().enumerate() {
        let stream = format!("live-{n}");
        for (revision, id) in appended {
            let found = store
                .read_stream(
                    &stream,
                    ReadStream::forward().from(Revision(*revision)).limit(1),
                )
                .await
                .unwrap_or_else(|e| panic!("reading {stream}@{revision}: {e}"));
            assert_eq!(
                found.first().map(|e| (e.revision.get(), e.id)),
                Some((*revision, *id)),
                "the acknowledged append {stream}@{revision} is there with its id"
            );
        }
    }
    for s in 0..TRIMMED_STREAMS {
        let stream = format!("trimmed-{s}");
        let visible = store
            .read_stream(&stream, ReadStream::forward())
            .await
            .expect("read a trimmed stream");
        assert_eq!(visible.len() as u64, KEPT_PER_TRIMMED_STREAM, "{stream}");
        assert_eq!(
            visible[0].revision.get(),
            (EVENTS_PER_TRIMMED_STREAM as u64) - KEPT_PER_TRIMMED_STREAM,
            "{stream} keeps its newest events at their revisions"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_during_an_online_scavenge_loses_no_acknowledged_append() {
    let dir = temp_dir();
    let data = dir.join("data");
    let data = data.to_str().expect("a UTF-8 path").to_string();
    let mut acknowledged: Vec<Vec<(u64, Uuid)>> = vec![Vec::new(); APPENDERS];
    // The kill lands at a different moment of each round: before, during and after
    // the rewrite, as the scavenge of about 3 MB of segments takes tens of ms.
    for (round, kill_after_ms) in [5u64, 30, 120].into_iter().enumerate() {
        let mut server = serve(&data);
        let store = client(&server);
        if round == 0 {
            fill(&store).await;
        } else {
            check(&store, &acknowledged).await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let appenders: Vec<_> = (0..APPENDERS)
            .map(|n| tokio::spawn(appender(store.clone(), n, stop.clone())))
            .collect();
        let scavenge = {
            let store = store.clone();
            tokio::spawn(async move { store.scavenge(false).await })
        };
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for (n, task) in appenders.into_iter().enumerate() {
            acknowledged[n].extend(task.await.expect("an appender"));
        }
        // The scavenge either finished before the kill or was cut off by it.
        let _ = scavenge.await.expect("the scavenge task");
    }
    assert!(
        acknowledged.iter().map(Vec::len).sum::<usize>() > 0,
        "the appenders got answers before the kills"
    );

    // A last scavenge through the CLI finishes what the killed ones left.
    let server = serve(&data);
    let store = client(&server);
    check(&store, &acknowledged).await;
    let url = format!("http://{}", server.address());
    let output = cli().run(&["scavenge", "--server", &url]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("events removed"),
        "{}",
        text(&output.stdout)
    );
    let again = cli().run(&["scavenge", "--server", &url, "--dry-run"]);
    assert!(
        text(&again.stdout).contains("events removed: 0"),
        "nothing is left to remove: {}",
        text(&again.stdout)
    );
    check(&store, &acknowledged).await;
    server.stop();
    let verified = cli().run(&["verify", "--data", &data]);
    assert!(verified.status.success(), "{}", text(&verified.stdout));
}
