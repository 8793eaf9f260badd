//! An error the server answers comes back from `HttpStore` as the error the store had:
//! the same kind, with the same fields and message (the wire carries them all).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use eventfold_client::HttpStore;
use eventfold_core::{
    Error, EventStore, InMemoryStore, LayerExt, Layered, Result, Revision, StoreLayer,
};
use eventfold_server::ServerConfig;
use eventfold_wire::ErrorCode;

/// A layer that answers a stream's head of `broken` with the error it is given.
#[derive(Default)]
struct Failing {
    error: Mutex<Option<Error>>,
}

impl Failing {
    fn fail_with(&self, error: Error) {
        *self.error.lock().unwrap() = Some(error);
    }
}

#[async_trait]
impl StoreLayer for Failing {
    async fn stream_revision<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        stream: &str,
    ) -> Result<Option<Revision>> {
        let error = self.error.lock().unwrap().clone();
        if stream == "broken"
            && let Some(error) = error
        {
            return Err(error);
        }
        inner.stream_revision(stream).await
    }
}

#[tokio::test]
async fn every_store_error_comes_back_from_the_server_as_the_same_error() {
    let store = Arc::new(InMemoryStore::new().layer(Failing::default()));
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
        Layered::layer(&*store).fail_with(error.clone());
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
