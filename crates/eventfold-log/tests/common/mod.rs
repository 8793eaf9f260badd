//! Helpers shared by the engine's scenario tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use eventfold_core::{EventData, EventStore, ExpectedVersion, ReadAll, RecordedEvent};
use eventfold_log::sim::{SimStorage, Unsynced};
use eventfold_log::{LogOptions, LogStore};

/// Options with tiny segments, so that a few events exercise sealing and index files.
/// The power losses a crash test replays after each crash point: what was not synced
/// is lost, torn at half, kept whole, or torn with its last byte flipped.
pub fn power_losses() -> [Unsynced; 4] {
    [
        Unsynced::Lost,
        Unsynced::TornPrefix {
            percent: 50,
            flip_last: false,
        },
        Unsynced::TornPrefix {
            percent: 100,
            flip_last: false,
        },
        Unsynced::TornPrefix {
            percent: 70,
            flip_last: true,
        },
    ]
}

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

/// Streams of the retention scenario and the first revision each keeps.
pub const RETENTION_CUTS: [(&str, u64); 5] = [
    ("keep-1", 0),
    ("trunc-1", 10),
    ("count-1", 5),
    ("hard-1", 8),
    ("soft-1", 8),
];

/// The marker in the data of `stream`'s event `n`: found in the files as long as the
/// event's bytes are there.
pub fn marker(stream: &str, n: u64) -> String {
    format!("MARK-{stream}-{n}-END")
}

pub fn marked_event(stream: &str, n: u64) -> EventData {
    EventData::json(
        "Marked",
        &serde_json::json!({ "marker": marker(stream, n), "pad": "x".repeat(40) }),
    )
    .expect("valid event")
}

/// Writes events that retention hides in every way but `max_age`: eight rounds over
/// five streams (so each segment mixes them), an atomic append whose kept record is
/// followed by removed ones, then metadata: `truncate_before`, `max_count`, a hard
/// and a soft delete. `RETENTION_CUTS` is what each stream keeps afterwards.
pub async fn write_retention_scenario(store: &impl EventStore) {
    use eventfold_core::{Revision, StreamWrite};
    use eventfold_metadata::{DeleteMode, StreamAdmin, StreamMetadata};
    for n in 0..8 {
        for (stream, _) in RETENTION_CUTS {
            store
                .append(stream, ExpectedVersion::Any, vec![marked_event(stream, n)])
                .await
                .expect("append");
        }
    }
    store
        .append_multi(vec![
            StreamWrite::new(
                "keep-1",
                ExpectedVersion::Any,
                vec![marked_event("keep-1", 8)],
            ),
            StreamWrite::new(
                "trunc-1",
                ExpectedVersion::Any,
                vec![marked_event("trunc-1", 8), marked_event("trunc-1", 9)],
            ),
        ])
        .await
        .expect("atomic append");
    store
        .append(
            "trunc-1",
            ExpectedVersion::Any,
            vec![marked_event("trunc-1", 10)],
        )
        .await
        .expect("append");
    let set = |stream: &'static str, metadata: StreamMetadata| async move {
        store
            .set_stream_metadata(stream, ExpectedVersion::Any, metadata)
            .await
            .expect("set metadata");
    };
    set(
        "trunc-1",
        StreamMetadata {
            truncate_before: Some(Revision(10)),
            ..StreamMetadata::default()
        },
    )
    .await;
    set(
        "count-1",
        StreamMetadata {
            max_count: Some(3),
            ..StreamMetadata::default()
        },
    )
    .await;
    store
        .delete_stream("hard-1", ExpectedVersion::Any, DeleteMode::Hard)
        .await
        .expect("hard delete");
    store
        .delete_stream("soft-1", ExpectedVersion::Any, DeleteMode::Soft)
        .await
        .expect("soft delete");
}

/// The first revision of `stream` the retention scenario keeps.
pub fn scenario_cut(stream: &str) -> u64 {
    RETENTION_CUTS
        .iter()
        .find(|(s, _)| *s == stream)
        .map_or(0, |(_, cut)| *cut)
}

/// Whether `event` survives a scavenge of the retention scenario.
pub fn survives(event: &RecordedEvent) -> bool {
    event.revision.get() >= scenario_cut(&event.stream)
}

/// The fields a scavenge must keep, for comparing events.
pub fn identity(event: &RecordedEvent) -> (u64, String, u64, uuid::Uuid, i64, Vec<u8>) {
    (
        event.position.get(),
        event.stream.clone(),
        event.revision.get(),
        event.id,
        event.recorded_at.timestamp_micros(),
        event.data.to_vec(),
    )
}
