//! Keeping the timeouts and outbox streams from growing for ever: a runner reads each
//! from its start when it starts, but needs only what follows the oldest entry still
//! pending. Now and then it sets the stream's `truncate_before` there, so reads skip
//! what is done and a scavenge reclaims it. The projections' effect ledger
//! (`projection/ledger.rs`) is trimmed the same way, up to its newest mark.

use eventfold_core::{EventStore, ExpectedVersion, Revision};
use eventfold_metadata::StreamAdmin;

/// Revisions a stream's needed start must move past its last trim before it is
/// trimmed again: each trim is one metadata event, kept for good.
pub(crate) const TRIM_EVERY: u64 = 256;

/// Where a stream was last trimmed.
#[derive(Debug, Default)]
pub(crate) struct Trim {
    trimmed: u64,
}

impl Trim {
    /// The revision to trim at, when the first one still `needed` has moved far
    /// enough past the last trim (which it then becomes).
    pub(crate) fn due(&mut self, needed: Revision) -> Option<Revision> {
        if needed.get() < self.trimmed + TRIM_EVERY {
            return None;
        }
        self.trimmed = needed.get();
        Some(needed)
    }
}

/// Hides the revisions of `stream` before `needed` (its other metadata kept). A
/// failure is logged, not returned: the stream is only read from further back.
pub(crate) async fn trim(store: &dyn EventStore, stream: &str, needed: Revision) {
    let result = async {
        let current = store.stream_metadata(stream).await?;
        if current.metadata.truncate_before >= Some(needed) {
            return Ok(());
        }
        let mut metadata = current.metadata;
        metadata.truncate_before = Some(needed);
        store
            .set_stream_metadata(stream, ExpectedVersion::Any, metadata)
            .await
            .map(|_| ())
    }
    .await;
    if let Err(error) = result {
        tracing::warn!(%error, %stream, "the stream's finished entries were not trimmed");
    }
}
