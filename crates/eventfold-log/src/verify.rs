//! `verify`: reads every segment and index file of a data directory and checks every
//! checksum, length, position and revision, naming the first damage in each file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use eventfold_core::{Error, Result};

use crate::io::{OpenMode, OsStorage, Storage};
use crate::segment::{SegmentIndex, index_path, parse_name, scan_segment, segment_path};

/// One problem found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The damaged file, relative to the data directory.
    pub file: String,
    /// Byte offset of the damage.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {}: {}",
            self.file, self.offset, self.reason
        )
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segments read.
    pub segments: u64,
    /// Events whose records are intact.
    pub events: u64,
    /// Distinct streams seen.
    pub streams: u64,
    /// Every problem found; empty when the store is intact.
    pub damage: Vec<Damage>,
}

impl VerifyReport {
    /// Whether no damage was found.
    pub fn is_intact(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Verifies the store in `dir` on the real file system. Takes the store's lock, so it
/// fails with [`Error::Locked`] while another process has the store open.
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    verify_with(&OsStorage, dir)
}

/// Verifies the store in `dir` on the given storage.
pub fn verify_with(storage: &dyn Storage, dir: &Path) -> Result<VerifyReport> {
    let segments_dir = dir.join("segments");
    let names = storage.list(&segments_dir).map_err(|e| {
        Error::io(
            format!(
                "listing {} (is this an eventfold data directory?)",
                segments_dir.display()
            ),
            e,
        )
    })?;
    let _lock = storage.lock(&dir.join("LOCK")).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Error::Locked {
                path: dir.display().to_string(),
            }
        } else {
            Error::io("locking the data directory", e)
        }
    })?;
    let mut numbers: Vec<u64> = names.iter().filter_map(|n| parse_name(n, "seg")).collect();
    numbers.sort_unstable();
    let mut report = VerifyReport::default();
    let mut next_position = 0u64;
    let mut revisions: HashMap<Arc<str>, u64> = HashMap::new();
    for (i, &number) in numbers.iter().enumerate() {
        let last = i + 1 == numbers.len();
        let seg_name = format!("segments/{number:010}.seg");
        if number != i as u64 {
            report.damage.push(Damage {
                file: seg_name.clone(),
                offset: 0,
                reason: format!("segment {i} is missing"),
            });
        }
        let path = segment_path(&segments_dir, number);
        let file = storage
            .open(&path, OpenMode::Read)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        report.segments += 1;
        let scan = match scan_segment(file.as_ref(), &seg_name, number, |_, _| {}) {
            Ok(scan) => scan,
            Err(Error::Corrupted { offset, reason, .. }) => {
                report.damage.push(Damage {
                    file: seg_name,
                    offset,
                    reason,
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        if scan.first_position != next_position {
            report.damage.push(Damage {
                file: seg_name.clone(),
                offset: 0,
                reason: format!(
                    "segment starts at position {} but the previous one ended at {next_position}",
                    scan.first_position
                ),
            });
        }
        if let Some((offset, why)) = &scan.stop {
            let hint = if last {
                " (if the store crashed, this may be a torn tail of unacknowledged writes, which opening the store moves to quarantine/)"
            } else {
                ""
            };
            report.damage.push(Damage {
                file: seg_name.clone(),
                offset: *offset,
                reason: format!("{why}{hint}"),
            });
        } else if scan.index.len < scan.file_len {
            report.damage.push(Damage {
                file: seg_name.clone(),
                offset: scan.index.len,
                reason: "the segment ends with a transaction that has no commit record".into(),
            });
        }
        for entry in &scan.index.entries {
            let stream = &scan.index.streams[entry.stream as usize];
            let expected = revisions.entry(stream.clone()).or_insert(0);
            if entry.revision != *expected {
                report.damage.push(Damage {
                    file: seg_name.clone(),
                    offset: u64::from(entry.offset),
                    reason: format!(
                        "stream '{stream}' has revision {} where {expected} was expected",
                        entry.revision
                    ),
                });
            }
            *expected = entry.revision + 1;
        }
        report.events += scan.index.entries.len() as u64;
        next_position = scan.first_position + scan.index.entries.len() as u64;

        let idx_name = format!("segments/{number:010}.idx");
        let idx_path = index_path(&segments_dir, number);
        if let Ok(idx_file) = storage.open(&idx_path, OpenMode::Read) {
            let len = idx_file.len().unwrap_or(0) as usize;
            let mut bytes = vec![0u8; len];
            let check = idx_file
                .read_exact_at(&mut bytes, 0)
                .map_err(|e| e.to_string())
                .and_then(|()| SegmentIndex::decode(&bytes, number))
                .and_then(|idx| {
                    if idx == scan.index {
                        Ok(())
                    } else {
                        Err("index file does not match its segment".into())
                    }
                });
            if let Err(reason) = check {
                report.damage.push(Damage {
                    file: idx_name,
                    offset: 0,
                    reason: format!("{reason} (opening the store rebuilds it)"),
                });
            }
        } else if !last {
            report.damage.push(Damage {
                file: idx_name,
                offset: 0,
                reason: "index file of a sealed segment is missing (opening the store rebuilds it)"
                    .into(),
            });
        }
    }
    report.streams = revisions.len() as u64;
    Ok(report)
}
