//! One archive pass: every committed byte of the log not yet in the archive goes up, in
//! pieces, each verified by reading it back; then the manifest says so.
//!
//! A sealed segment never changes except when a scavenge or a repair replaces it
//! whole, and the active segment only grows, so what is in the archive stays valid
//! until the store rewrites a segment. A pass notices that (the segment is shorter than
//! its archived part, or its archived part's checksum no longer matches) and archives
//! the segment again as a new generation, removing the old one: the archive follows
//! the store, scavenged events included.

use eventfold_log::{LogStore, SegmentSnapshot};
use object_store::ObjectStoreExt;

use crate::error::{ArchiveError, Result, storage};
use crate::location::ArchiveLocation;
use crate::manifest::{Manifest, Piece, SegmentEntry};

/// Largest piece (object) of a segment: what one request carries and what a pass holds
/// in memory at a time.
pub const PIECE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// How far a pass has come, in bytes of segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveProgress {
    /// Bytes of segments in the archive so far (already there or uploaded).
    pub bytes_done: u64,
    /// Bytes of segments this pass archives in all.
    pub bytes_total: u64,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveReport {
    /// Pieces uploaded (and read back) by this pass.
    pub pieces_uploaded: u64,
    /// Pieces an interrupted pass had uploaded, found whole and taken as they are.
    pub pieces_adopted: u64,
    /// Bytes uploaded by this pass.
    pub bytes_uploaded: u64,
    /// Segments archived again because the store rewrote them.
    pub segments_rewritten: u64,
    /// Segments in the archive.
    pub segments: u64,
    /// The position after the last archived event.
    pub end_position: u64,
}

/// Archives `store` into `location` up to its head as the pass starts. Resumable: a
/// pass that stopped (a crash, a lost connection) left a manifest that names only
/// whole pieces, and the next pass takes the pieces it had uploaded since without
/// sending them again.
pub async fn archive(
    store: &LogStore,
    location: &ArchiveLocation,
    progress: &mut (dyn FnMut(ArchiveProgress) + Send),
) -> Result<ArchiveReport> {
    let snapshots = store.segments();
    let mut manifest = Manifest::load(location)
        .await?
        .unwrap_or_else(Manifest::empty);
    let store_id = store.store_id().map(|id| id.to_string());
    if let (Some(archived), Some(ours)) = (&manifest.store_id, &store_id)
        && archived != ours
    {
        return Err(ArchiveError::Manifest {
            key: location.path(crate::manifest::MANIFEST_KEY).to_string(),
            reason: format!(
                "it is the archive of store {archived}, this is store {ours}: it is another \
                 store's archive (one store per prefix)"
            ),
        });
    }
    // An archive made before stores had ids takes this one at its next write.
    let mut adopt_id = manifest.store_id.is_none() && store_id.is_some();
    if adopt_id {
        manifest.store_id = store_id;
    }
    if manifest.segments.len() > snapshots.len() {
        return Err(ArchiveError::Manifest {
            key: location.path(crate::manifest::MANIFEST_KEY).to_string(),
            reason: format!(
                "the archive holds {} segments, this store only {}: it is another store's \
                 archive (one store per prefix)",
                manifest.segments.len(),
                snapshots.len()
            ),
        });
    }
    let mut report = ArchiveReport::default();
    let bytes_total = snapshots.iter().map(|s| s.len).sum();
    let mut bytes_done = 0;
    for snapshot in &snapshots {
        let archived = manifest.segments.get(snapshot.number as usize).cloned();
        let (mut entry, superseded) = match archived {
            Some(entry) if entry.first_position != snapshot.first_position => {
                return Err(ArchiveError::Manifest {
                    key: location.path(crate::manifest::MANIFEST_KEY).to_string(),
                    reason: format!(
                        "segment {} starts at position {} in the archive and at {} in the \
                         store: it is another store's archive (one store per prefix)",
                        snapshot.number, entry.first_position, snapshot.first_position
                    ),
                });
            }
            Some(entry) if still_prefix(snapshot, &entry).await? => (entry, None),
            Some(entry) => {
                report.segments_rewritten += 1;
                let fresh = SegmentEntry::new(
                    snapshot.number,
                    entry.generation + 1,
                    snapshot.first_position,
                );
                (fresh, Some(entry))
            }
            None => (
                SegmentEntry::new(snapshot.number, 0, snapshot.first_position),
                None,
            ),
        };
        bytes_done += entry.len;
        progress(ArchiveProgress {
            bytes_done,
            bytes_total,
        });
        let grew = snapshot.len > entry.len || snapshot.sealed != entry.sealed;
        while entry.len < snapshot.len {
            let start = entry.len;
            let end = snapshot.len.min(start + PIECE_BYTES_MAX);
            let bytes = read(snapshot, start, end).await?;
            let crc = crc32c::crc32c(&bytes);
            let key = entry.piece_key(start, end);
            match put_piece(location, &key, bytes, crc).await? {
                Put::Uploaded => {
                    report.pieces_uploaded += 1;
                    report.bytes_uploaded += end - start;
                }
                Put::Adopted => report.pieces_adopted += 1,
            }
            entry.crc32c = crc32c::crc32c_combine(entry.crc32c, crc, (end - start) as usize);
            entry.len = end;
            entry.pieces.push(Piece {
                key,
                start,
                end,
                crc32c: crc,
            });
            bytes_done += end - start;
            progress(ArchiveProgress {
                bytes_done,
                bytes_total,
            });
        }
        if grew || superseded.is_some() || adopt_id {
            adopt_id = false;
            entry.end_position = snapshot.end_position;
            entry.sealed = snapshot.sealed;
            let at = snapshot.number as usize;
            if at < manifest.segments.len() {
                manifest.segments[at] = entry;
            } else {
                manifest.segments.push(entry);
            }
            manifest.save(location).await?;
        }
        if let Some(old) = superseded {
            for piece in &old.pieces {
                let path = location.path(&piece.key);
                match location.store().delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        tracing::warn!(object = %path, error = %e, "could not remove a piece of a rewritten segment's old archive");
                    }
                }
            }
        }
    }
    report.segments = manifest.segments.len() as u64;
    report.end_position = manifest.segments.last().map_or(0, |s| s.end_position);
    Ok(report)
}

/// Whether the archived bytes of a segment are still the first bytes of the segment
/// as it stands (a scavenge or a repair may have rewritten it since). A sealed segment
/// archived whole is taken as unchanged when its length is (a rewrite that removes
/// events shrinks it); a partly archived one is read back and compared by checksum.
async fn still_prefix(snapshot: &SegmentSnapshot, entry: &SegmentEntry) -> Result<bool> {
    if snapshot.len < entry.len {
        return Ok(false);
    }
    if entry.sealed {
        return Ok(snapshot.len == entry.len && snapshot.end_position == entry.end_position);
    }
    let mut crc = 0;
    let mut offset = 0;
    while offset < entry.len {
        let end = entry.len.min(offset + PIECE_BYTES_MAX);
        let bytes = read(snapshot, offset, end).await?;
        crc = crc32c::crc32c_append(crc, &bytes);
        offset = end;
    }
    Ok(crc == entry.crc32c)
}

/// Reads bytes `start..end` of a segment on a blocking thread.
async fn read(snapshot: &SegmentSnapshot, start: u64, end: u64) -> Result<Vec<u8>> {
    let snapshot = snapshot.clone();
    let len = (end - start) as usize;
    tokio::task::spawn_blocking(move || snapshot.read(start, len))
        .await
        .map_err(|e| eventfold_core::Error::Backend(format!("reading a segment: {e}")))?
        .map_err(ArchiveError::from)
}

enum Put {
    Uploaded,
    Adopted,
}

/// Puts one piece, unless an interrupted pass left it there whole already; either way
/// the object is read back and must hold exactly these bytes.
async fn put_piece(location: &ArchiveLocation, key: &str, bytes: Vec<u8>, crc: u32) -> Result<Put> {
    let path = location.path(key);
    let len = bytes.len() as u64;
    if let Ok(meta) = location.store().head(&path).await
        && meta.size == len
        && read_back(location, key)
            .await
            .is_ok_and(|(l, c)| l == len && c == crc)
    {
        return Ok(Put::Adopted);
    }
    location
        .store()
        .put(&path, bytes.into())
        .await
        .map_err(storage(format!("uploading {path}")))?;
    let (got_len, got_crc) = read_back(location, key).await?;
    if got_len != len || got_crc != crc {
        return Err(ArchiveError::Corrupted {
            key: path.to_string(),
            reason: format!(
                "read back after upload: {got_len} bytes with CRC-32C {got_crc:08x}, \
                 {len} bytes with {crc:08x} were sent"
            ),
        });
    }
    Ok(Put::Uploaded)
}

/// The length and CRC-32C of an object.
async fn read_back(location: &ArchiveLocation, key: &str) -> Result<(u64, u32)> {
    let bytes = get(location, key).await?;
    Ok((bytes.len() as u64, crc32c::crc32c(&bytes)))
}

pub(crate) async fn get(location: &ArchiveLocation, key: &str) -> Result<bytes::Bytes> {
    let path = location.path(key);
    location
        .store()
        .get(&path)
        .await
        .map_err(storage(format!("reading {path}")))?
        .bytes()
        .await
        .map_err(storage(format!("reading {path}")))
}
