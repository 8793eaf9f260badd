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

/// The variable naming the test database.
pub const URL_VARIABLE: &str = "EVENTFOLD_TEST_POSTGRES_URL";

/// Longest a test waits for something that should happen at once.
pub const WAIT_MAX: Duration = Duration::from_secs(20);

/// The test database's URL, or `None` after saying loudly on stderr that the running
/// test is skipped.
pub fn database_url() -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let test = std::thread::current()
                .name()
                .unwrap_or("this test")
                .to_string();
            eprintln!(
                "SKIPPED: {test} needs {URL_VARIABLE} (a PostgreSQL database where it may create \
                 and drop schemas, e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// A fresh schema, dropped (with everything in it) when the guard is dropped.
#[derive(Debug)]
pub struct TestSchema {
    pub url: String,
    pub name: String,
}

impl TestSchema {
    pub fn new(url: &str) -> Self {
        TestSchema {
            url: url.to_string(),
            name: format!("ef_test_{}", uuid::Uuid::new_v4().simple()),
        }
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

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Dropped inside a runtime (often while unwinding): clean up from a thread of
        // its own with a runtime of its own.
        let url = self.url.clone();
        let name = self.name.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test schema");
            runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client
                    .batch_execute(&format!(
                        "SET lock_timeout = '20s'; DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
                    ))
                    .await
            })
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test schema {}: {e}", self.name),
            Err(_) => eprintln!("could not drop test schema {}: cleanup panicked", self.name),
        }
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
