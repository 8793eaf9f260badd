//! What an archiver needs of the engine: the committed bytes of each segment, read
//! while the store keeps running, and a way to lay archived segments down again in a
//! new data directory.
//!
//! A [`SegmentSnapshot`] holds the segment's file as the index knew it when the
//! snapshot was taken: when a scavenge swaps a rewritten file in afterwards, the
//! snapshot still reads the old one (its open descriptor keeps it alive), so the bytes
//! it hands out always belong to one version of the segment.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eventfold_core::{Error, Result};

use crate::io::{OpenMode, OsStorage, Storage, StorageFile};
use crate::segment::{list_segments_dir, parse_name, read_bytes, segment_path};
use crate::shared::Shared;

/// One segment as it stands: its place in the log and its committed bytes.
#[derive(Clone)]
pub struct SegmentSnapshot {
    /// The segment's number (`segments/<number>.seg`).
    pub number: u64,
    /// The global position of the first event the segment holds.
    pub first_position: u64,
    /// The position after the last one the segment holds.
    pub end_position: u64,
    /// Committed bytes, the 32-byte header included: everything below is durable and
    /// never changes while this snapshot lives.
    pub len: u64,
    /// Whether the segment is sealed (no more appends go to it).
    pub sealed: bool,
    /// Whether its local copy was dropped because an archive holds it: reads fetch it.
    pub cold: bool,
    name: String,
    file: Arc<dyn StorageFile>,
}

impl std::fmt::Debug for SegmentSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentSnapshot")
            .field("number", &self.number)
            .field("first_position", &self.first_position)
            .field("end_position", &self.end_position)
            .field("len", &self.len)
            .field("sealed", &self.sealed)
            .finish_non_exhaustive()
    }
}

impl SegmentSnapshot {
    /// Reads the committed bytes `offset..offset + len` of the segment.
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let end = offset.saturating_add(len as u64);
        if end > self.len {
            return Err(Error::Backend(format!(
                "{}: bytes {offset}..{end} asked, only {} are committed",
                self.name, self.len
            )));
        }
        Ok(read_bytes(self.file.as_ref(), offset, len, &self.name)?.to_vec())
    }

    /// Whether the snapshot reads this version of the segment's file.
    pub(crate) fn holds_file(&self, file: &Arc<dyn StorageFile>) -> bool {
        Arc::ptr_eq(&self.file, file)
    }
}

/// Snapshots of every segment, oldest first; the last one is the active segment.
pub(crate) fn segment_snapshots(shared: &Shared) -> Vec<SegmentSnapshot> {
    let index = shared.index();
    let count = index.segments.len();
    index
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| SegmentSnapshot {
            number: s.number,
            first_position: s.first_position,
            end_position: s.first_position + s.offsets.len() as u64,
            len: s.len,
            sealed: i + 1 < count,
            cold: s.cold,
            name: s.name.clone(),
            file: s.file.clone(),
        })
        .collect()
}

/// Writes one segment file into a data directory that is being rebuilt (by a restore
/// from an archive): bytes go to a temporary file beside the segment, which becomes
/// `segments/<number>.seg` only once complete and durable. The store must not be open.
pub struct SegmentFileWriter {
    storage: Arc<dyn Storage>,
    segments_dir: PathBuf,
    tmp: PathBuf,
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    written: u64,
}

impl SegmentFileWriter {
    /// Starts segment `number` in the data directory `dir` (created if needed) on the
    /// real file system.
    pub fn create(dir: &Path, number: u64) -> Result<Self> {
        Self::create_with(Arc::new(OsStorage), dir, number)
    }

    /// [`SegmentFileWriter::create`] on the given storage. A temporary file left by a
    /// restore that died is replaced.
    pub fn create_with(storage: Arc<dyn Storage>, dir: &Path, number: u64) -> Result<Self> {
        let segments_dir = dir.join("segments");
        storage
            .create_dir_all(&segments_dir)
            .map_err(|e| Error::io(format!("creating {}", segments_dir.display()), e))?;
        let path = segment_path(&segments_dir, number);
        let tmp = path.with_extension("seg.restore.tmp");
        match storage.remove(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", tmp.display()), e)),
        }
        let file = storage
            .open(&tmp, OpenMode::CreateNew)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        Ok(SegmentFileWriter {
            storage,
            segments_dir,
            tmp,
            path,
            file,
            written: 0,
        })
    }

    /// Appends bytes to the segment.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all_at(bytes, self.written)
            .map_err(|e| Error::io(format!("writing {}", self.tmp.display()), e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Makes the segment durable under its own name.
    pub fn finish(self) -> Result<PathBuf> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(format!("syncing {}", self.tmp.display()), e))?;
        self.storage
            .rename(&self.tmp, &self.path)
            .map_err(|e| Error::io(format!("renaming {}", self.tmp.display()), e))?;
        self.storage
            .sync_dir(&self.segments_dir)
            .map_err(|e| Error::io(format!("syncing {}", self.segments_dir.display()), e))?;
        Ok(self.path)
    }
}

/// Whether `dir` already holds segments of a store (on the real file system).
pub fn holds_segments(dir: &Path) -> bool {
    list_segments_dir(&OsStorage, dir)
        .is_ok_and(|names| names.iter().any(|n| parse_name(n, "seg").is_some()))
}
