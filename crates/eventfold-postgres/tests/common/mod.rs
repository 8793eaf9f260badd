//! What the PostgreSQL tests share: the database URL (or a loud skip), a fresh schema
//! per test that is dropped afterwards, and bounded waits.

#![allow(dead_code, reason = "each test file uses a part of this module")]

pub mod proxy;

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use eventfold_core::{EventStore, InMemoryStore, LayerExt, Layered};
use eventfold_metadata::MetadataLayer;
use eventfold_postgres::{PostgresOptions, PostgresStore};
pub use eventfold_testsupport::postgres::database_url;

/// Longest a test waits for something that should happen at once.
pub const WAIT_MAX: Duration = Duration::from_secs(20);

/// A fresh schema for a PostgresStore, dropped (with everything in it) when the guard
/// is dropped (`url` and `name` are the shared guard's).
#[derive(Debug)]
pub struct TestSchema(eventfold_testsupport::postgres::TestSchema);

impl std::ops::Deref for TestSchema {
    type Target = eventfold_testsupport::postgres::TestSchema;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl TestSchema {
    pub fn new(url: &str) -> Self {
        TestSchema(eventfold_testsupport::postgres::TestSchema::new(
            url, "ef_test",
        ))
    }

    /// Options for a store in this schema, with a small pool (tests run side by side).
    pub fn options(&self) -> PostgresOptions {
        PostgresOptions {
            schema: self.name.clone(),
            pool_connections_max: 4,
            ..PostgresOptions::default()
        }
    }

    pub async fn store(&self) -> PostgresStore {
        self.store_with(self.options()).await
    }

    pub async fn store_with(&self, options: PostgresOptions) -> PostgresStore {
        PostgresStore::connect(&self.url, options)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.url))
    }

    /// A plain connection for checks behind the store's back.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connecting to the test database");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

/// The store a conformance case gets: PostgreSQL, or, when the test is skipped (no
/// database), the in-memory model so that the case has something to run against
/// (the skip was announced on stderr); under the metadata layer either way.
pub type TestStore = Layered<MetadataLayer, Arc<dyn EventStore>>;

/// A conformance fixture: the store, then its schema (dropped after the store).
pub async fn conformance_fixture() -> (TestStore, Option<TestSchema>) {
    let (store, schema): (Arc<dyn EventStore>, _) = match database_url() {
        Some(url) => {
            let schema = TestSchema::new(&url);
            (Arc::new(schema.store().await), Some(schema))
        }
        None => (Arc::new(InMemoryStore::new()), None),
    };
    (store.layer(MetadataLayer), schema)
}

/// Awaits `future`, failing the test if it takes longer than [`WAIT_MAX`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT_MAX, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {WAIT_MAX:?}"))
}

/// Polls `check` until it returns `Some`, failing the test after [`WAIT_MAX`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(what, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A multi-thread runtime for a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
