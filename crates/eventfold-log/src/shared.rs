//! The state the writer thread, the scrub and the readers share: the index, the
//! storage, the head, the poison flag and the counters. It lives apart from `store.rs`
//! so that the writer and the scrub depend on it, not on the store that starts them.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use crate::index::Index;
use crate::io::Storage;

/// State shared by the writer thread and the readers.
pub(crate) struct Shared {
    pub storage: Arc<dyn Storage>,
    pub segments_dir: PathBuf,
    pub index: RwLock<Index>,
    /// Set when a write or fsync failed: the store accepts no more writes.
    pub poisoned: Mutex<Option<String>>,
    pub stats: Counters,
    /// The position the next event gets, sent after every publish.
    pub head: tokio::sync::watch::Sender<u64>,
    /// Set when the store closes, for background work to stop early.
    pub closing: std::sync::atomic::AtomicBool,
    /// Damage the scrub found in sealed segments.
    pub damage_found: Mutex<Vec<String>>,
    /// Held by a running scavenge (and while a segment's local copy is dropped): one
    /// at a time.
    pub scavenging: Mutex<()>,
    /// Fetching and caching segments kept in the archive.
    pub cold: Arc<crate::cold::ColdShared>,
}

/// Counters kept by the writer.
#[derive(Default)]
pub(crate) struct Counters {
    pub commits: AtomicU64,
    pub appends: AtomicU64,
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    pub sync_nanos: AtomicU64,
    pub scrubbed_segments: AtomicU64,
    pub scavenged_segments: AtomicU64,
    pub scavenged_bytes_before: AtomicU64,
    pub scavenged_bytes_reclaimed: AtomicU64,
    pub scavenged_events: AtomicU64,
    /// Time spent in scavenges, in nanoseconds.
    pub scavenge_nanos: AtomicU64,
}

impl Counters {
    /// Counts a segment a scavenge rewrote.
    pub(crate) fn record_scavenged(&self, segment: &crate::scavenge::SegmentScavenge) {
        use std::sync::atomic::Ordering::Relaxed;
        self.scavenged_segments.fetch_add(1, Relaxed);
        self.scavenged_bytes_before
            .fetch_add(segment.bytes_before, Relaxed);
        self.scavenged_bytes_reclaimed.fetch_add(
            segment.bytes_before.saturating_sub(segment.bytes_after),
            Relaxed,
        );
        self.scavenged_events
            .fetch_add(segment.events_removed, Relaxed);
    }
}

/// What the writer has done since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Group commits (one write and one fsync each).
    pub commits: u64,
    /// Appends acknowledged.
    pub appends: u64,
    /// Events written.
    pub events: u64,
    /// Record bytes written.
    pub bytes: u64,
    /// Time spent in fsync, in nanoseconds.
    pub sync_nanos: u64,
}

impl Shared {
    pub(crate) fn index(&self) -> RwLockReadGuard<'_, Index> {
        // The index is only changed by the writer between consistent states; a panic
        // elsewhere while reading cannot leave it half-changed.
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn poisoned(&self) -> Option<String> {
        self.poisoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn poison(&self, reason: String) {
        tracing::error!(%reason, "the store stops accepting writes");
        let mut poisoned = self.poisoned.lock().unwrap_or_else(|p| p.into_inner());
        poisoned.get_or_insert(reason);
    }
}
