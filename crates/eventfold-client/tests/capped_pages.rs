//! A server caps its read pages in bytes: the client reads on from `next` until the
//! server says the stream or the log ended, so a short page never cuts a read short.

use std::sync::Arc;

use eventfold_client::HttpStore;
use eventfold_core::{EventData, EventStore, ExpectedVersion, Position, ReadAll, ReadStream};
use eventfold_log::{LogOptions, LogStore};
use eventfold_server::ServerConfig;

#[tokio::test]
async fn reads_go_on_past_pages_cut_by_the_byte_cap() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), LogOptions::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = ServerConfig {
        // Two of the events below fit in a page, a third does not.
        read_bytes_max: 25_000,
        ..ServerConfig::default()
    };
    let server = tokio::spawn(eventfold_server::serve(
        Arc::new(store),
        config,
        listener,
        std::future::pending(),
    ));
    let client = HttpStore::new(&format!("http://{address}")).unwrap();
    let blob = "x".repeat(10_000);
    let events: Vec<EventData> = (0..9)
        .map(|n| EventData::json("Scanned", &(n, &blob)).unwrap())
        .collect();
    client
        .append("scan-1", ExpectedVersion::NoStream, events)
        .await
        .unwrap();

    let forward = client
        .read_stream("scan-1", ReadStream::forward())
        .await
        .unwrap();
    let revisions: Vec<u64> = forward.iter().map(|e| e.revision.get()).collect();
    assert_eq!(revisions, (0..9).collect::<Vec<_>>());
    let backward = client
        .read_stream("scan-1", ReadStream::backward().limit(5))
        .await
        .unwrap();
    let revisions: Vec<u64> = backward.iter().map(|e| e.revision.get()).collect();
    assert_eq!(revisions, [8, 7, 6, 5, 4]);
    let all = client
        .read_all(ReadAll::from(Position(0), 100))
        .await
        .unwrap();
    assert_eq!(all.events.len(), 9);
    assert!(all.end_of_log);
    server.abort();
}
