//! An error the server answers comes back from `HttpStore` as the error the store had:
//! the same kind, with the same fields and message (the wire carries them all).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use eventfold_client::HttpStore;
use eventfold_core::{
    AllSlice, AppendResult, Error, EventStore, InMemoryStore, Position, ReadAll, ReadStream,
    RecordedEvent, Result, Revision, StreamWrite,
};
use eventfold_server::ServerConfig;
use eventfold_wire::ErrorCode;

/// A store that answers a stream's head of `broken` with the error it is given.
struct Failing {
    inner: InMemoryStore,
    error: Mutex<Option<Error>>,
}

impl Failing {
    fn fail_with(&self, error: Error) {
        *self.error.lock().unwrap() = Some(error);
    }
}

#[async_trait]
impl EventStore for Failing {
    async fn append_multi(&self, writes: Vec<StreamWrite>) -> Result<Vec<AppendResult>> {
        self.inner.append_multi(writes).await
    }

    async fn read_stream_raw(
        &self,
        stream: &str,
        options: ReadStream,
    ) -> Result<Vec<RecordedEvent>> {
        self.inner.read_stream_raw(stream, options).await
    }

    async fn read_all(&self, options: ReadAll) -> Result<AllSlice> {
        self.inner.read_all(options).await
    }

    async fn stream_revision(&self, stream: &str) -> Result<Option<Revision>> {
        if stream == "broken"
            && let Some(error) = self.error.lock().unwrap().clone()
        {
            return Err(error);
        }
        self.inner.stream_revision(stream).await
    }

    async fn head_position(&self) -> Result<Option<Position>> {
        self.inner.head_position().await
    }

    async fn wait_for(&self, position: Position) -> Result<()> {
        self.inner.wait_for(position).await
    }
}

#[tokio::test]
async fn every_store_error_comes_back_from_the_server_as_the_same_error() {
    let store = Arc::new(Failing {
        inner: InMemoryStore::new(),
        error: Mutex::new(None),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(eventfold_server::serve(
        store.clone(),
        ServerConfig::default(),
        listener,
        std::future::pending(),
    ));
    let client = HttpStore::new(&format!("http://{address}")).unwrap();
    assert_eq!(client.stream_revision("broken").await.unwrap(), None);
    for error in eventfold_wire::error::examples() {
        store.fail_with(error.clone());
        let back = client.stream_revision("broken").await.unwrap_err();
        assert_eq!(ErrorCode::of(&back), ErrorCode::of(&error), "{back}");
        match (&error, &back) {
            // Its reason is a text of core's own: the name comes back.
            (
                Error::InvalidStreamName { name, .. },
                Error::InvalidStreamName { name: back, .. },
            ) => assert_eq!(back, name),
            _ => assert_eq!(back.to_string(), error.to_string()),
        }
    }
    server.abort();
}
