//! Over a store that forwards to a server (`EventStore::remote_admin`), the metadata
//! layer leaves reads to the server and `StreamAdmin` calls the server's admin calls
//! instead of writing system events, which cannot cross the wire.

use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use eventfold_core::{
    AllSlice, AppendResult, EventData, EventStore, ExpectedVersion, InMemoryStore, LayerExt,
    Position, ReadAll, ReadStream, RecordedEvent, RemoteAdmin, RemoteDeleted, RemoteMetadata,
    Result, Revision, StoreMetric, StreamSummary, StreamWrite,
};
use eventfold_metadata::{DeleteMode, MetadataLayer, StreamAdmin, StreamMetadata};

/// A stand-in for a server: its events live in an in-memory store, and it records the
/// admin calls it gets. Its reads answer every event: whatever the metadata stream of
/// the store says, only the server would apply it.
struct FakeServer {
    events: InMemoryStore,
    admin_calls: Mutex<Vec<String>>,
}

impl FakeServer {
    fn record(&self, call: String) {
        self.admin_calls
            .lock()
            .expect("the call log is never poisoned")
            .push(call);
    }
}

#[async_trait]
impl EventStore for FakeServer {
    async fn append_multi(&self, writes: Vec<StreamWrite>) -> Result<Vec<AppendResult>> {
        assert!(
            writes.iter().all(|w| !w.is_system()),
            "a system write was sent to a server: {writes:?}"
        );
        self.events.append_multi(writes).await
    }

    async fn read_stream(&self, stream: &str, options: ReadStream) -> Result<Vec<RecordedEvent>> {
        self.events.read_stream(stream, options).await
    }

    async fn read_all(&self, options: ReadAll) -> Result<AllSlice> {
        self.events.read_all(options).await
    }

    async fn stream_revision(&self, stream: &str) -> Result<Option<Revision>> {
        self.events.stream_revision(stream).await
    }

    async fn list_streams(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamSummary>> {
        self.events.list_streams(prefix, after, limit).await
    }

    fn storage_metrics(&self) -> Vec<StoreMetric> {
        Vec::new()
    }

    async fn head_position(&self) -> Result<Option<Position>> {
        self.events.head_position().await
    }

    async fn wait_for(&self, position: Position) -> Result<()> {
        self.events.wait_for(position).await
    }

    fn remote_admin(&self) -> Option<&dyn RemoteAdmin> {
        Some(self)
    }
}

#[async_trait]
impl RemoteAdmin for FakeServer {
    async fn metadata(&self, stream: &str) -> Result<RemoteMetadata> {
        self.record(format!("metadata {stream}"));
        Ok(RemoteMetadata {
            revision: Some(Revision(4)),
            document: Bytes::from_static(br#"{"max_count":1}"#),
        })
    }

    async fn set_metadata(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        document: Bytes,
    ) -> Result<AppendResult> {
        let document = String::from_utf8_lossy(&document).into_owned();
        self.record(format!("set_metadata {stream} {expected} {document}"));
        Ok(AppendResult {
            first_revision: Revision(5),
            last_revision: Revision(5),
            position: Position(9),
        })
    }

    async fn delete(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        hard: bool,
    ) -> Result<RemoteDeleted> {
        self.record(format!("delete {stream} {expected} hard={hard}"));
        Ok(RemoteDeleted {
            last_revision: Revision(2),
            position: Position(10),
        })
    }
}

fn counted(n: u64) -> EventData {
    EventData::json("Counted", &n).expect("event")
}

#[tokio::test]
async fn reads_pass_through_and_admin_calls_go_to_the_server() {
    let server = FakeServer {
        events: InMemoryStore::new(),
        admin_calls: Mutex::new(Vec::new()),
    };
    let events = (0..3).map(counted).collect();
    server
        .events
        .append("count-1", ExpectedVersion::NoStream, events)
        .await
        .expect("append");
    // Metadata the layer would apply if the store held its own events: keep one.
    let keep_one =
        EventData::json("$metadata", &serde_json::json!({"max_count": 1})).expect("metadata event");
    server
        .events
        .append_multi(vec![StreamWrite::system(
            "$$count-1",
            ExpectedVersion::NoStream,
            vec![keep_one],
        )])
        .await
        .expect("metadata");
    let store = server.layer(MetadataLayer);

    let read = store
        .read_stream("count-1", ReadStream::forward())
        .await
        .expect("read");
    assert_eq!(read.len(), 3, "the layer applied metadata the server owns");

    let record = store.stream_metadata("count-1").await.expect("metadata");
    assert_eq!(record.revision, Some(Revision(4)));
    assert_eq!(record.metadata.max_count, Some(1));
    let written = store
        .set_stream_metadata(
            "count-1",
            ExpectedVersion::Exact(Revision(4)),
            StreamMetadata {
                max_age: Some(60),
                ..StreamMetadata::default()
            },
        )
        .await
        .expect("set metadata");
    assert_eq!(written.position, Position(9));
    let deleted = store
        .delete_stream("count-1", ExpectedVersion::Any, DeleteMode::Hard)
        .await
        .expect("delete");
    assert_eq!(
        (deleted.last_revision, deleted.position),
        (Revision(2), Position(10))
    );
    assert_eq!(
        *store
            .inner()
            .admin_calls
            .lock()
            .expect("the call log is never poisoned"),
        [
            "metadata count-1",
            r#"set_metadata count-1 4 {"max_age":60}"#,
            "delete count-1 any hard=true",
        ]
    );
}
