//! The scrub: reads every sealed segment once after the store opens and checks every
//! record, so that damage in old data is reported within moments of starting, not when
//! a read happens to reach it years later.
//!
//! Opening does not read sealed segments (their index files make restart time
//! independent of the store's size); the scrub runs beside the store on its own thread,
//! one segment at a time, and stops early when the store closes. What it finds is
//! logged as an error, counted in the store's metrics and listed by
//! [`crate::LogStore::damage_found`]. Writes go on: a damaged sealed record is never
//! rewritten and no new position depends on it. `verify` checks the same offline and
//! `repair` decides what to give up.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::segment::{NO_OFFSET, scan_segment};
use crate::shared::Shared;

/// Checks each sealed segment the index holds now, until done or the store closes.
pub(crate) fn scrub(shared: Arc<Shared>) {
    let sealed: Vec<_> = {
        let index = shared.index();
        let count = index.segments.len().saturating_sub(1);
        // Cold segments were checked when archived and are checked at every fetch.
        index.segments[..count]
            .iter()
            .filter(|s| !s.cold)
            .map(|s| {
                let offsets: Vec<u32> = s
                    .offsets
                    .iter()
                    .copied()
                    .filter(|&o| o != NO_OFFSET)
                    .collect();
                (s.number, s.name.clone(), s.file.clone(), s.len, offsets)
            })
            .collect()
    };
    for (number, name, file, len, offsets) in sealed {
        if shared.closing.load(Ordering::Relaxed) {
            return;
        }
        let problem = match scan_segment(file.as_ref(), &name, number, |_, _| {}) {
            Err(error) => Some(error.to_string()),
            Ok(scan) => match &scan.stop {
                Some(stop) => Some(format!(
                    "{name} at offset {}: record at position {}: {}",
                    stop.offset, stop.position, stop.why
                )),
                None if scan.index.len != len || scan.file_len != len => Some(format!(
                    "{name} holds {} bytes ({} in intact records) where its index says {len}",
                    scan.file_len, scan.index.len
                )),
                None => {
                    let scanned: Vec<u32> = scan
                        .index
                        .entries
                        .iter()
                        .filter(|e| e.is_event())
                        .map(|e| e.offset)
                        .collect();
                    (scanned != offsets).then(|| format!("{name} does not match its index file"))
                }
            },
        };
        shared
            .stats
            .scrubbed_segments
            .fetch_add(1, Ordering::Relaxed);
        if let Some(problem) = problem {
            tracing::error!(segment = %name, %problem, "the scrub found damage in a sealed segment; run `eventfold verify` and `eventfold repair`");
            shared
                .damage_found
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(problem);
        }
    }
}
