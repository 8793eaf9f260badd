//! Helpers shared by the engine's scenario tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use eventfold_core::{EventData, EventStore, ExpectedVersion, ReadAll, RecordedEvent};
use eventfold_log::sim::SimStorage;
use eventfold_log::{LogOptions, LogStore};

/// Options with tiny segments, so that a few events exercise sealing and index files.
pub fn small_segments() -> LogOptions {
    LogOptions {
        segment_bytes_max: 4096,
        append_bytes_max: 2048,
        batch_bytes_max: 4096,
        ..LogOptions::default()
    }
}

pub fn event(n: u64) -> EventData {
    EventData::json("Counted", &serde_json::json!({ "n": n })).expect("valid event")
}

pub fn open_sim(storage: &SimStorage, options: LogOptions) -> eventfold_core::Result<LogStore> {
    LogStore::open_with(Arc::new(storage.clone()), Path::new("/data"), options)
}

pub async fn all_events(store: &impl EventStore) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut from = eventfold_core::Position(0);
    loop {
        let page = store
            .read_all(ReadAll::from(from, 1000))
            .await
            .expect("read $all");
        events.extend(page.events);
        from = page.next;
        if page.end_of_log {
            return events;
        }
    }
}

pub async fn append_one(
    store: &impl EventStore,
    stream: &str,
    n: u64,
) -> eventfold_core::Result<()> {
    store
        .append(stream, ExpectedVersion::Any, vec![event(n)])
        .await
        .map(|_| ())
}
