//! The archive's manifest (`manifest.json` under the prefix): which bytes of which
//! segments are safely in the archive, piece by piece, with their checksums. It is
//! written after each segment's new pieces are uploaded and verified, so it never names
//! an object that is not there and whole.

use serde::{Deserialize, Serialize};

use crate::error::{ArchiveError, Result};
use crate::location::ArchiveLocation;

/// The manifest's object name under the archive prefix.
pub const MANIFEST_KEY: &str = "manifest.json";
/// What the manifest's `format` field says.
const FORMAT: &str = "eventfold-archive";
/// The layout this code writes and reads.
const VERSION: u32 = 1;

/// What the archive holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Always `eventfold-archive`.
    pub format: String,
    /// The layout's version (1).
    pub version: u32,
    /// When it was last written (RFC 3339).
    pub updated_at: String,
    /// The id of the store archived here (`LogStore::store_id`): a pass of another
    /// store is refused, a restore gives the new store this id. Absent in archives of
    /// stores made before ids, until their next pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_id: Option<String>,
    /// The position after the last archived event: `$all` from 0 up to here is in the
    /// archive.
    pub end_position: u64,
    /// Archived segments, by number, from 0 without a hole.
    pub segments: Vec<SegmentEntry>,
}

/// One archived segment: its first `len` bytes, in pieces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SegmentEntry {
    /// The segment's number.
    pub number: u64,
    /// Raised when the store rewrote the segment (a scavenge, a repair) after part of it
    /// was archived: the new version is archived under new names, the old one removed.
    pub generation: u32,
    /// The global position of the segment's first event.
    pub first_position: u64,
    /// The position after the last event in the archived bytes.
    pub end_position: u64,
    /// Bytes archived, the segment header included.
    pub len: u64,
    /// CRC-32C of those bytes.
    pub crc32c: u32,
    /// Whether the segment was sealed when its last piece was archived (it is then
    /// archived whole).
    pub sealed: bool,
    /// Consecutive byte ranges `[start, end)` covering `0..len`.
    pub pieces: Vec<Piece>,
}

/// One object of the archive: bytes `start..end` of a segment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Piece {
    /// The object's name under the archive prefix.
    pub key: String,
    /// The first byte of the segment it holds.
    pub start: u64,
    /// The byte after the last one it holds.
    pub end: u64,
    /// CRC-32C of its bytes.
    pub crc32c: u32,
}

impl SegmentEntry {
    /// A segment not archived yet.
    pub(crate) fn new(number: u64, generation: u32, first_position: u64) -> Self {
        SegmentEntry {
            number,
            generation,
            first_position,
            end_position: first_position,
            len: 0,
            crc32c: 0,
            sealed: false,
            pieces: Vec::new(),
        }
    }

    /// The object name of the piece `start..end` of this segment's generation.
    pub(crate) fn piece_key(&self, start: u64, end: u64) -> String {
        format!(
            "segments/{:010}/g{}/{start:012}-{end:012}",
            self.number, self.generation
        )
    }
}

impl Manifest {
    pub(crate) fn empty() -> Self {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            updated_at: now(),
            store_id: None,
            end_position: 0,
            segments: Vec::new(),
        }
    }

    /// Reads the manifest; `None` when the prefix holds no archive yet.
    pub async fn load(location: &ArchiveLocation) -> Result<Option<Manifest>> {
        use object_store::ObjectStoreExt;
        let path = location.path(MANIFEST_KEY);
        let bytes = match location.store().get(&path).await {
            Ok(got) => got
                .bytes()
                .await
                .map_err(crate::error::storage(format!("reading {path}")))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(crate::error::storage(format!("reading {path}"))(e)),
        };
        let bad = |reason: String| ArchiveError::Manifest {
            key: path.to_string(),
            reason,
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a manifest: {e}")))?;
        if manifest.format != FORMAT || manifest.version != VERSION {
            return Err(bad(format!(
                "format {} version {} (this eventfold reads {FORMAT} version {VERSION})",
                manifest.format, manifest.version
            )));
        }
        manifest.check().map_err(bad)?;
        Ok(Some(manifest))
    }

    /// Reads the manifest of an archive that must exist: a prefix without one is an
    /// error naming it.
    pub async fn load_existing(location: &ArchiveLocation) -> Result<Manifest> {
        Self::load(location)
            .await?
            .ok_or_else(|| ArchiveError::Manifest {
                key: location.path(MANIFEST_KEY).to_string(),
                reason: format!("no archive at {} (the manifest is missing)", location.url()),
            })
    }

    /// Writes the manifest (one PUT: readers see the old one or the new one).
    pub(crate) async fn save(&mut self, location: &ArchiveLocation) -> Result<()> {
        use object_store::ObjectStoreExt;
        self.updated_at = now();
        self.end_position = self.segments.last().map_or(0, |s| s.end_position);
        let path = location.path(MANIFEST_KEY);
        let body = serde_json::to_vec_pretty(self).map_err(|e| ArchiveError::Manifest {
            key: path.to_string(),
            reason: e.to_string(),
        })?;
        location
            .store()
            .put(&path, body.into())
            .await
            .map_err(crate::error::storage(format!("writing {path}")))?;
        Ok(())
    }

    /// The manifest describes a log: segments numbered from 0, each covered by
    /// consecutive pieces, positions continuing from one segment to the next.
    fn check(&self) -> std::result::Result<(), String> {
        let mut position = 0;
        for (i, segment) in self.segments.iter().enumerate() {
            if segment.number != i as u64 {
                return Err(format!("segment {i} is missing (found {})", segment.number));
            }
            if segment.first_position != position {
                return Err(format!(
                    "segment {} starts at position {}, the one before ends at {position}",
                    segment.number, segment.first_position
                ));
            }
            let mut offset = 0;
            for piece in &segment.pieces {
                if piece.start != offset || piece.end <= piece.start {
                    return Err(format!(
                        "segment {}: piece {} does not continue at byte {offset}",
                        segment.number, piece.key
                    ));
                }
                offset = piece.end;
            }
            if offset != segment.len {
                return Err(format!(
                    "segment {}: pieces cover {offset} bytes of {}",
                    segment.number, segment.len
                ));
            }
            position = segment.end_position;
        }
        Ok(())
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
