//! Scavenging, as a capability a backend may have: giving back the storage of the
//! events that retention and deletion hide. Which events those are is the metadata
//! layer's decision (a *cut* per stream: the first revision to keep); how their bytes
//! leave the storage is the backend's. The server and the CLI reach a backend's
//! scavenge through [`Scavenger`], whatever the backend.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;

/// Per stream, the first revision to keep (0: keep every event).
pub type KeepFrom = Arc<dyn Fn(&str) -> u64 + Send + Sync>;

/// What a scavenge did, or in a dry run would do, whatever the backend.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScavengeSummary {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Storage files examined (segments of the embedded engine; 0 where the backend
    /// has no files of its own).
    pub files_examined: u64,
    /// Storage files rewritten.
    pub files_rewritten: u64,
    /// Events removed.
    pub events_removed: u64,
    /// Bytes of the rewritten storage before.
    pub bytes_before: u64,
    /// Bytes of the rewritten storage after.
    pub bytes_after: u64,
    /// How long it took.
    pub elapsed: Duration,
}

impl ScavengeSummary {
    /// Bytes given back (or, in a dry run, that would be).
    pub fn bytes_reclaimed(&self) -> u64 {
        self.bytes_before.saturating_sub(self.bytes_after)
    }
}

/// A backend that can remove from its storage the events below each stream's cut,
/// while it keeps serving appends and reads. Every other event keeps its position,
/// revision, id and `recorded_at`; readers pass over the removed positions.
#[async_trait]
pub trait Scavenger: Send + Sync + std::fmt::Debug {
    /// Removes every event below `keep_from(stream)`; with `dry_run`, only counts
    /// what would go. A second run after an interrupted one finishes the work.
    async fn scavenge(&self, keep_from: KeepFrom, dry_run: bool) -> Result<ScavengeSummary>;
}
