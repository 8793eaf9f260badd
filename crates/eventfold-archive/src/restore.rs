//! Restoring a data directory from an archive: every piece downloaded and checked
//! against the manifest's checksum, the segments laid down, then the store opened
//! (which checks every record again and rebuilds the indexes) and verified from end to
//! end before the restore says it is done.

use std::path::Path;

use eventfold_log::{LogOptions, LogStore, SegmentFileWriter};

use crate::archive::get;
use crate::error::{ArchiveError, Result};
use crate::location::ArchiveLocation;
use crate::manifest::{MANIFEST_KEY, Manifest, SegmentEntry};

/// How far a restore has come, in bytes of segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreProgress {
    /// Bytes of segments downloaded, checked and written so far.
    pub bytes_done: u64,
    /// Bytes of segments in the archive.
    pub bytes_total: u64,
}

/// What a restore rebuilt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Segments written.
    pub segments: u64,
    /// Bytes of segments written.
    pub bytes: u64,
    /// The position after the last restored event (the archive's end).
    pub end_position: u64,
    /// Events in the restored store (positions in gaps left by scavenges not counted).
    pub events: u64,
}

/// Rebuilds the store archived at `location` in `dir`, which must hold no store. On
/// any failure the segments written so far are removed again, so a half-restored
/// directory is never left to be opened as if it were whole.
pub async fn restore(
    location: &ArchiveLocation,
    dir: &Path,
    progress: &mut (dyn FnMut(RestoreProgress) + Send),
) -> Result<RestoreReport> {
    if eventfold_log::holds_segments(dir) {
        return Err(ArchiveError::Target {
            dir: dir.display().to_string(),
            reason: "it holds a store already (restore into a new directory)".into(),
        });
    }
    let manifest = Manifest::load_existing(location).await?;
    if manifest.segments.is_empty() {
        return Err(ArchiveError::Manifest {
            key: location.path(MANIFEST_KEY).to_string(),
            reason: "the archive holds no segment".into(),
        });
    }
    let result = lay_down(location, &manifest, dir, progress).await;
    // The restored store is the archived one: it keeps its id, so that it may go on
    // archiving to the same place.
    let result = match (result, &manifest.store_id) {
        (Ok(bytes), Some(id)) => restore_id(dir, id).map(|()| bytes),
        (result, _) => result,
    };
    let result = match result {
        Ok(bytes) => check(dir, &manifest, bytes).await,
        Err(e) => Err(e),
    };
    if result.is_err() {
        let segments = dir.join("segments");
        if let Err(e) = std::fs::remove_dir_all(&segments) {
            tracing::warn!(dir = %segments.display(), error = %e, "could not remove a failed restore's segments");
        }
    }
    result
}

/// Downloads every segment of the manifest into `dir`; returns the bytes written.
async fn lay_down(
    location: &ArchiveLocation,
    manifest: &Manifest,
    dir: &Path,
    progress: &mut (dyn FnMut(RestoreProgress) + Send),
) -> Result<u64> {
    let bytes_total = manifest.segments.iter().map(|s| s.len).sum();
    let mut bytes_done = 0;
    for segment in &manifest.segments {
        let mut file = SegmentFileWriter::create(dir, segment.number)?;
        download_segment(location, segment, &mut |bytes| {
            file.write(bytes)?;
            bytes_done += bytes.len() as u64;
            progress(RestoreProgress {
                bytes_done,
                bytes_total,
            });
            Ok(())
        })
        .await?;
        file.finish()?;
    }
    Ok(bytes_done)
}

/// Downloads the pieces of an archived segment in order, each checked against the
/// manifest's checksum before `sink` gets it, and the whole against the segment's.
pub(crate) async fn download_segment(
    location: &ArchiveLocation,
    segment: &SegmentEntry,
    sink: &mut (dyn FnMut(&[u8]) -> Result<()> + Send),
) -> Result<()> {
    let mut crc = 0;
    for piece in &segment.pieces {
        let bytes = get(location, &piece.key).await?;
        let len = piece.end - piece.start;
        let got = crc32c::crc32c(&bytes);
        if bytes.len() as u64 != len || got != piece.crc32c {
            return Err(ArchiveError::Corrupted {
                key: location.path(&piece.key).to_string(),
                reason: format!(
                    "{} bytes with CRC-32C {got:08x}; the manifest says {len} bytes with \
                     {:08x}",
                    bytes.len(),
                    piece.crc32c
                ),
            });
        }
        crc = crc32c::crc32c_combine(crc, got, bytes.len());
        sink(&bytes)?;
    }
    if crc != segment.crc32c {
        return Err(ArchiveError::Corrupted {
            key: format!("segment {}", segment.number),
            reason: format!(
                "its pieces add up to CRC-32C {crc:08x}, the manifest says {:08x}",
                segment.crc32c
            ),
        });
    }
    Ok(())
}

/// Opens what was laid down (recovery checks every record of the last segment and
/// rebuilds the index of the others by scanning them), checks that it ends where the
/// archive does, and verifies the whole directory.
async fn check(dir: &Path, manifest: &Manifest, bytes: u64) -> Result<RestoreReport> {
    let dir_owned = dir.to_path_buf();
    let end_position = tokio::task::spawn_blocking(move || {
        let store = LogStore::open(&dir_owned, LogOptions::default())?;
        let end = store.event_count();
        store.close();
        Ok::<_, eventfold_core::Error>(end)
    })
    .await
    .map_err(|e| eventfold_core::Error::Backend(format!("opening the restored store: {e}")))??;
    if end_position != manifest.end_position {
        return Err(ArchiveError::Mismatch(format!(
            "it ends at position {end_position}, the archive at {}",
            manifest.end_position
        )));
    }
    let dir_owned = dir.to_path_buf();
    let verified = tokio::task::spawn_blocking(move || eventfold_log::verify(&dir_owned))
        .await
        .map_err(|e| {
            eventfold_core::Error::Backend(format!("verifying the restored store: {e}"))
        })??;
    if !verified.is_intact() {
        let damage: Vec<String> = verified.damage.iter().map(ToString::to_string).collect();
        return Err(ArchiveError::Mismatch(format!(
            "verify found damage: {}",
            damage.join("; ")
        )));
    }
    Ok(RestoreReport {
        segments: manifest.segments.len() as u64,
        bytes,
        end_position,
        events: verified.events,
    })
}

fn restore_id(dir: &Path, id: &str) -> Result<()> {
    let id = uuid::Uuid::parse_str(id).map_err(|e| ArchiveError::Manifest {
        key: MANIFEST_KEY.into(),
        reason: format!("store_id {id:?} is not a UUID: {e}"),
    })?;
    Ok(eventfold_log::restore_store_id(dir, id)?)
}
