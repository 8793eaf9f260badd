//! Tiered storage: the hot tail of the log on the local disk, its history in the
//! archive. [`keep_local`] drops the local copy of the oldest sealed segments that the
//! archive holds whole until the segments on disk fit a bound; an [`ArchiveFetcher`]
//! given to the store fetches such a segment back (checked piece by piece against the
//! manifest, then whole against what the store recorded when it dropped it) when a read
//! reaches it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use eventfold_log::{LogStore, SegmentFetcher};

use crate::error::{ArchiveError, Result};
use crate::location::ArchiveLocation;
use crate::manifest::{MANIFEST_KEY, Manifest};
use crate::restore::download_segment;

/// What a [`keep_local`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepLocalReport {
    /// Segments whose local copy was dropped by this pass.
    pub segments_dropped: u64,
    /// Bytes those copies took on the disk.
    pub bytes_freed: u64,
    /// Bytes of segments still on the local disk (the active one included).
    pub local_bytes: u64,
    /// Segments kept only in the archive, this pass's included.
    pub cold_segments: u64,
}

/// Drops the local copy of the oldest sealed segments that `location` holds whole
/// (the manifest names them sealed, with their current length and checksum) until the
/// segments on the local disk take at most `keep_local_bytes`. The active segment, and
/// any segment the archive does not hold whole yet, stay whatever the bound: archive
/// first, then call this. The store checks each segment's bytes against the
/// manifest's checksum before it lets the file go.
pub async fn keep_local(
    store: &Arc<LogStore>,
    location: &ArchiveLocation,
    keep_local_bytes: u64,
) -> Result<KeepLocalReport> {
    let snapshots = store.segments();
    let mut report = KeepLocalReport {
        local_bytes: snapshots.iter().filter(|s| !s.cold).map(|s| s.len).sum(),
        cold_segments: snapshots.iter().filter(|s| s.cold).count() as u64,
        ..KeepLocalReport::default()
    };
    let candidates = snapshots.iter().any(|s| s.sealed && !s.cold);
    if report.local_bytes <= keep_local_bytes || !candidates {
        return Ok(report);
    }
    // Nothing leaves the disk before an archive holds it.
    let manifest = Manifest::load_existing(location).await?;
    for snapshot in snapshots.iter().filter(|s| s.sealed && !s.cold) {
        if report.local_bytes <= keep_local_bytes {
            break;
        }
        let Some(entry) = manifest.segments.get(snapshot.number as usize) else {
            break;
        };
        let archived_whole = entry.sealed
            && entry.len == snapshot.len
            && entry.first_position == snapshot.first_position
            && entry.end_position == snapshot.end_position;
        if !archived_whole {
            // Segments go in order: a later one is not dropped before this one.
            break;
        }
        let (store, snapshot, url, crc) = (
            store.clone(),
            snapshot.clone(),
            location.url().to_string(),
            entry.crc32c,
        );
        let freed =
            tokio::task::spawn_blocking(move || store.drop_local_copy(&snapshot, &url, crc))
                .await
                .map_err(|e| {
                    eventfold_core::Error::Backend(format!("dropping a segment's local copy: {e}"))
                })??;
        report.segments_dropped += 1;
        report.cold_segments += 1;
        report.bytes_freed += freed;
        report.local_bytes -= freed;
    }
    Ok(report)
}

/// Fetches segments back from the archives their markers name, for a store whose
/// history lives in an archive ([`LogStore::set_segment_fetcher`]). It runs the object
/// storage requests on a small runtime of its own, so that the store's blocking reads
/// can wait for them from any thread.
pub struct ArchiveFetcher {
    runtime: Option<tokio::runtime::Runtime>,
    locations: Mutex<HashMap<String, ArchiveLocation>>,
}

impl ArchiveFetcher {
    /// A fetcher that opens each archive (`s3://…`, `file://…`) the first time a
    /// segment is fetched from it, with the same settings as `archive` and `restore`.
    pub fn new() -> Result<Arc<Self>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("eventfold-archive-fetch")
            .enable_all()
            .build()
            .map_err(|e| eventfold_core::Error::io("starting the archive fetcher", e))?;
        Ok(Arc::new(ArchiveFetcher {
            runtime: Some(runtime),
            locations: Mutex::new(HashMap::new()),
        }))
    }

    /// A fetcher that reads the archive at `location` for its URL (an in-memory or
    /// otherwise configured object store).
    pub fn with_location(location: ArchiveLocation) -> Result<Arc<Self>> {
        let fetcher = Self::new()?;
        fetcher
            .locations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(location.url().to_string(), location);
        Ok(fetcher)
    }

    fn location(&self, url: &str) -> Result<ArchiveLocation> {
        let mut locations = self.locations.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(location) = locations.get(url) {
            return Ok(location.clone());
        }
        let location = ArchiveLocation::parse(url)?;
        locations.insert(url.to_string(), location.clone());
        Ok(location)
    }
}

impl Drop for ArchiveFetcher {
    fn drop(&mut self) {
        // May be dropped inside an async task: a runtime cannot be shut down by
        // blocking there.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl SegmentFetcher for ArchiveFetcher {
    fn fetch(&self, archive: &str, number: u64, len: u64) -> std::result::Result<Vec<u8>, String> {
        let location = self.location(archive).map_err(|e| e.to_string())?;
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| "the archive fetcher has stopped".to_string())?;
        let (answer, answered) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let _ = answer.send(fetch_segment(&location, number, len).await);
        });
        answered
            .recv()
            .map_err(|_| "the archive fetcher stopped during the fetch".to_string())?
            .map_err(|e| e.to_string())
    }
}

/// The first `len` bytes of segment `number`, which the archive must hold whole.
async fn fetch_segment(location: &ArchiveLocation, number: u64, len: u64) -> Result<Vec<u8>> {
    let manifest = Manifest::load_existing(location).await?;
    let entry = manifest
        .segments
        .get(number as usize)
        .filter(|e| e.number == number && e.len == len)
        .ok_or_else(|| ArchiveError::Manifest {
            key: location.path(MANIFEST_KEY).to_string(),
            reason: format!("it does not hold segment {number} whole ({len} bytes)"),
        })?;
    let mut bytes = Vec::with_capacity(len as usize);
    download_segment(location, entry, &mut |piece| {
        bytes.extend_from_slice(piece);
        Ok(())
    })
    .await?;
    Ok(bytes)
}
