//! What the archive's tests share: small segments, and `$all` read whole.

use eventfold_core::{Position, ReadAll, RecordedEvent};
use eventfold_log::{LogOptions, LogStore};

/// Small segments, so a few hundred events span several of them.
pub fn options() -> LogOptions {
    LogOptions {
        segment_bytes_max: 16 * 1024,
        append_bytes_max: 12 * 1024,
        ..LogOptions::default()
    }
}

/// Every event of `$all`, as read.
pub fn all(store: &LogStore) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut from = Position(0);
    loop {
        let page = store
            .read_all_blocking(&ReadAll::from(from, 1_000))
            .unwrap();
        events.extend(page.events);
        from = page.next;
        if page.end_of_log {
            return events;
        }
    }
}
