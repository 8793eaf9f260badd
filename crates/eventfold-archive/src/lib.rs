//! Archives of the embedded log in object storage, and restores from them.
//!
//! An archive is a copy of the log's segment files, cut into pieces (objects of at
//! most [`PIECE_BYTES_MAX`]) under a prefix of a bucket (`s3://BUCKET/PREFIX`) or a
//! directory (`file:///path`), with a manifest (`manifest.json`) naming each piece
//! and its CRC-32C. The records in the pieces are the log's own, byte for byte, so a
//! restore rebuilds a store whose `$all` is the archived one exactly: ids, positions,
//! revisions, types, versions, data, metadata and `recorded_at`.
//!
//! - [`archive`] copies what the archive lacks, up to the head as the pass starts: the
//!   sealed segments whole, the active one up to its last commit. A later pass adds
//!   only the bytes written since (the active segment's tail grows piece by piece), so
//!   nothing is uploaded twice, and a pass that was interrupted resumes.
//! - [`restore`] downloads every piece, checks its checksum, writes the segments into a
//!   new data directory, opens and verifies the store before it reports success.
//! - [`keep_local`] and [`ArchiveFetcher`] make the archive a tier of the store: the
//!   oldest sealed segments the archive holds whole leave the local disk, and reads
//!   that reach them fetch them back.
//!
//! Personal data's keys (`DIR/keys`) are not in the archive: the log holds personal
//! values sealed, and a forgotten subject stays forgotten in every archive. The keys
//! are backed up on their own (the operations guide says how).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod archive;
mod error;
mod location;
mod manifest;
mod restore;
mod tiered;

pub use archive::{ArchiveProgress, ArchiveReport, PIECE_BYTES_MAX, archive};
pub use error::{ArchiveError, Result};
pub use location::ArchiveLocation;
pub use manifest::{MANIFEST_KEY, Manifest, Piece, SegmentEntry};
pub use restore::{RestoreProgress, RestoreReport, restore};
pub use tiered::{ArchiveFetcher, KeepLocalReport, keep_local};
