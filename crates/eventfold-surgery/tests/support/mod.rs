//! What the surgery tests share: a fresh store on each backend under the metadata
//! layer, the macro that runs a case on every backend, and small fixtures.
#![allow(dead_code, reason = "each test binary uses part of it")]

use std::sync::Arc;

use eventfold_core::{
    EventData, EventStore, ExpectedVersion, LayerExt, Layered, Position, ReadStream, RecordedEvent,
};
use eventfold_log::{LogOptions, LogStore};
use eventfold_metadata::MetadataLayer;
use eventfold_postgres::{PostgresOptions, PostgresStore};
use eventfold_surgery::Audit;
use eventfold_testsupport::postgres::{TestSchema, database_url};
use serde_json::{Value, json};

/// Where a case runs.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Log,
    Postgres,
}

/// What keeps a store's storage alive for one case (its directory, or its PostgreSQL
/// schema, dropped afterwards).
pub enum Guard {
    Dir(#[allow(dead_code, reason = "held for its Drop")] tempfile::TempDir),
    Schema(#[allow(dead_code, reason = "held for its Drop")] TestSchema),
}

/// A fresh store on `backend` under the metadata layer (as the CLI and the server
/// open one); `None` (after a loud skip) when PostgreSQL is asked for and no test
/// database is named.
pub async fn open(
    backend: Backend,
) -> Option<(Layered<MetadataLayer, Arc<dyn EventStore>>, Guard)> {
    let (store, guard): (Arc<dyn EventStore>, Guard) = match backend {
        Backend::Log => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let store = LogStore::open(dir.path(), LogOptions::default()).expect("open the store");
            (Arc::new(store), Guard::Dir(dir))
        }
        Backend::Postgres => {
            let url = database_url()?;
            let schema = TestSchema::new(&url, "ef_surgery");
            let options = PostgresOptions {
                schema: schema.name.clone(),
                pool_connections_max: 4,
                ..PostgresOptions::default()
            };
            let store = PostgresStore::connect(&url, options)
                .await
                .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
            (Arc::new(store), Guard::Schema(schema))
        }
    };
    Some((store.layer(MetadataLayer), guard))
}

/// Every case, on the embedded engine and on PostgreSQL.
#[macro_export]
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod log_engine {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::support::Backend::Log).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::support::Backend::Postgres).await;
                }
            )*
        }
    };
}

pub fn event(event_type: &str, n: u64) -> EventData {
    EventData::json(event_type, &json!({ "n": n })).expect("event")
}

pub fn audit() -> Audit {
    Audit {
        reason: "wrong prices in October".into(),
        who: "ops".into(),
    }
}

pub async fn read(store: &impl EventStore, stream: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, ReadStream::forward())
        .await
        .unwrap_or_else(|e| panic!("read {stream}: {e}"))
}

pub fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

pub fn ns(events: &[RecordedEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|e| json_of(&e.data)["n"].as_u64().expect("n"))
        .collect()
}

pub async fn fill(store: &impl EventStore, stream: &str, types: &[&str]) {
    let events = types
        .iter()
        .enumerate()
        .map(|(n, t)| event(t, n as u64))
        .collect();
    store
        .append(stream, ExpectedVersion::NoStream, events)
        .await
        .expect("fill");
}

pub async fn head(store: &impl EventStore) -> Option<Position> {
    store.head_position().await.expect("head")
}

/// Flips `store` read-only, naming `to`.
pub async fn flip(store: &(impl EventStore + ?Sized), to: Option<&str>) {
    eventfold_surgery::perform(
        store,
        &eventfold_surgery::Operation::Flip {
            to: to.map(str::to_string),
            undo: false,
        },
        &audit(),
        false,
        &mut |_, _| {},
    )
    .await
    .expect("flip");
}

/// Fails a store's `n`th append (counting from 1) once, as a crash would stop a
/// copy there.
pub struct CrashAt {
    appends: std::sync::atomic::AtomicUsize,
    at: usize,
}

impl CrashAt {
    pub fn new(at: usize) -> Self {
        CrashAt {
            appends: std::sync::atomic::AtomicUsize::new(0),
            at,
        }
    }
}

#[async_trait::async_trait]
impl eventfold_core::StoreLayer for CrashAt {
    async fn append_multi<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        writes: Vec<eventfold_core::StreamWrite>,
    ) -> eventfold_core::Result<Vec<eventfold_core::AppendResult>> {
        let n = self
            .appends
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        if n == self.at {
            return Err(eventfold_core::Error::io(
                "a copy",
                std::io::Error::other("crash"),
            ));
        }
        inner.append_multi(writes).await
    }
}
