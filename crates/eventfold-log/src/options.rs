//! Limits and tuning of a log store. Every limit names its unit last.

use eventfold_core::{Error, Result};

use crate::segment::SEGMENT_HEADER_BYTES;

/// Options of [`crate::LogStore`].
///
/// ```
/// let options = eventfold_log::LogOptions { segment_bytes_max: 64 << 20, ..Default::default() };
/// assert!(options.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// A segment is sealed before it would grow past this size.
    pub segment_bytes_max: u64,
    /// The active segment's file is extended this many bytes at a time ahead of the
    /// writes (`fallocate`), so that an `fdatasync` after an append journals no change
    /// of the file's size (0: the file grows with every write). The zeros past the
    /// last record are not a torn tail: an open keeps them, and sealing a segment cuts
    /// them off.
    pub preallocate_bytes: u64,
    /// The largest append (all its records) accepted.
    pub append_bytes_max: u64,
    /// The most bytes one group commit writes before its fsync.
    pub batch_bytes_max: u64,
    /// Appends waiting for the writer; further appends wait for room (back-pressure).
    pub queue_appends_max: usize,
    /// Fsyncs that may run at once; each covers everything written before it started.
    pub fsyncs_in_flight_max: usize,
    /// Sealed segments whose event ids stay in memory for idempotency checks with
    /// `any` / `stream_exists` (the active segment's ids always do).
    pub id_window_segments: usize,
    /// How often the acknowledged mark is brought up to date while appends go on
    /// (0: only when the store opens and closes). Recovery treats damage below the
    /// mark as corruption, never as a torn tail; see `docs/log-format.md`.
    pub ack_mark_interval_ms: u64,
    /// Whether a thread reads and checks every sealed segment once after the store
    /// opens, reporting damage at once instead of when a read reaches it (the server
    /// turns it on; short-lived commands leave it off).
    pub scrub_sealed_segments: bool,
    /// How fast a scavenge through the store-wide `Scavenger` (the server's online
    /// scavenge) reads the old segments, in bytes per second (0: as fast as the disk
    /// goes); see [`ScavengeOptions`](crate::ScavengeOptions).
    pub scavenge_bytes_per_second_max: u64,
    /// Segments fetched back from the archive (their local copy was dropped) stay in
    /// memory up to this many bytes, least recently used out first.
    pub cold_cache_bytes_max: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes_max: 128 * 1024 * 1024,
            preallocate_bytes: 32 * 1024 * 1024,
            append_bytes_max: 16 * 1024 * 1024,
            batch_bytes_max: 8 * 1024 * 1024,
            queue_appends_max: 4096,
            fsyncs_in_flight_max: 4,
            id_window_segments: 2,
            ack_mark_interval_ms: 1000,
            scrub_sealed_segments: false,
            scavenge_bytes_per_second_max: 0,
            cold_cache_bytes_max: 256 * 1024 * 1024,
        }
    }
}

impl LogOptions {
    /// Checks that the limits fit together.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::Backend(format!("invalid log options: {reason}")));
        if self.segment_bytes_max > u64::from(u32::MAX) {
            return bad("segment_bytes_max must fit in 32 bits (offsets are u32)".into());
        }
        if self.append_bytes_max < 256 {
            return bad("append_bytes_max must be at least 256 bytes".into());
        }
        if self.append_bytes_max + SEGMENT_HEADER_BYTES > self.segment_bytes_max {
            return bad(
                "append_bytes_max must leave room for a segment header within segment_bytes_max"
                    .into(),
            );
        }
        if self.fsyncs_in_flight_max == 0 {
            return bad("fsyncs_in_flight_max must be at least 1".into());
        }
        if self.queue_appends_max == 0 {
            return bad("queue_appends_max must be at least 1".into());
        }
        Ok(())
    }
}
