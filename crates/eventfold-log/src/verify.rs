//! `verify`: reads every segment and index file of a data directory and checks every
//! checksum, length, position and revision, naming the first damage in each file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use eventfold_core::{Error, Result};

use crate::cold::{ColdMarker, Listed};
use crate::identity::read_store_id;
use crate::index::UnknownPositions;
use crate::io::{OpenMode, OsStorage, Storage};
use crate::mark::{MARK_FILE_NAME, damaged_slots, read_mark};
use crate::recovery::{Tail, classify_tail};
use crate::segment::{NO_STREAM, SegmentIndex, index_path, scan_segment, segment_path};
use crate::segment::{list_segments_dir, lock_data_dir, read_index_file};

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
    /// Positions that hold no event because a repair gave them up (gap records).
    pub lost: u64,
    /// Segments whose local copy was dropped because an archive holds them: their
    /// index files were checked, their records are checked when they are fetched.
    pub cold: u64,
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
    let names = list_segments_dir(storage, dir)?;
    let _lock = lock_data_dir(storage, dir)?;
    let mut report_missing = None;
    let listed = Listed::of(&names);
    let numbers = &listed.numbers;
    let mark = read_mark(storage, &segments_dir)?;
    if let Some(mark) = mark
        && numbers.last().is_none_or(|&last| mark.segment > last)
    {
        report_missing = Some(Damage {
            file: format!("segments/{:010}.seg", mark.segment),
            offset: 0,
            reason: "segment holds acknowledged events but is missing".into(),
        });
    }
    let mut report = VerifyReport::default();
    report.damage.extend(report_missing);
    let mut next_position = 0u64;
    // Per stream: the next revision expected, and the position of the last one.
    let mut revisions: HashMap<Arc<str>, (u64, Option<u64>)> = HashMap::new();
    let mut unclaimed = UnknownPositions::default();
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
        report.segments += 1;
        if listed.cold.contains(&number) && !last {
            match cold_index(storage, &segments_dir, number) {
                Ok(index) => {
                    report.cold += 1;
                    check_positions(&mut report, &seg_name, &index, next_position);
                    account(
                        &mut report,
                        &mut revisions,
                        &mut unclaimed,
                        &seg_name,
                        &index,
                    );
                    next_position = index.end_position();
                }
                Err(damage) => report.damage.push(damage),
            }
            continue;
        }
        let path = segment_path(&segments_dir, number);
        let file = storage
            .open(&path, OpenMode::Read)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
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
        check_positions(&mut report, &seg_name, &scan.index, next_position);
        if last {
            // The active segment: the same judgement as recovery's.
            let segment_mark = mark.filter(|m| m.segment == number);
            match classify_tail(file.as_ref(), &seg_name, &scan, segment_mark)? {
                Tail::Clean => {}
                Tail::Torn { committed, .. } => report.damage.push(Damage {
                    file: seg_name.clone(),
                    offset: committed,
                    reason: format!(
                        "{} (a torn tail of writes that were never acknowledged: opening the store moves it to quarantine/)",
                        scan.stop
                            .as_ref()
                            .map_or_else(|| "the segment ends inside a transaction".to_string(), |s| s.why.to_string())
                    ),
                }),
                Tail::Damaged(damage) => report.damage.push(Damage {
                    file: seg_name.clone(),
                    offset: damage.offset,
                    reason: damage.to_string(),
                }),
            }
        } else if let Some(stop) = &scan.stop {
            report.damage.push(Damage {
                file: seg_name.clone(),
                offset: stop.offset,
                reason: format!("record at position {}: {}", stop.position, stop.why),
            });
        } else if scan.index.len < scan.file_len {
            report.damage.push(Damage {
                file: seg_name.clone(),
                offset: scan.index.len,
                reason: "the segment ends with a transaction that has no commit record".into(),
            });
        }
        account(
            &mut report,
            &mut revisions,
            &mut unclaimed,
            &seg_name,
            &scan.index,
        );
        next_position = scan.index.end_position();

        let idx_name = format!("segments/{number:010}.idx");
        let idx_path = index_path(&segments_dir, number);
        if storage.open(&idx_path, OpenMode::Read).is_ok() {
            let check = match read_index_file(storage, &idx_path, number) {
                None => Err("index file is damaged"),
                Some(idx) if idx != scan.index => Err("index file does not match its segment"),
                Some(_) => Ok(()),
            };
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
    if let Err(error) = read_store_id(storage, &segments_dir) {
        report.damage.push(Damage {
            file: "segments/store.id".into(),
            offset: 0,
            reason: format!(
                "{error}; its archive's manifest names the id (`store_id`): write it back, or \
                 remove the file (the next open makes a new id, and archives then need a new \
                 prefix)"
            ),
        });
    }
    for offset in damaged_slots(storage, &segments_dir)? {
        report.damage.push(Damage {
            file: format!("segments/{MARK_FILE_NAME}"),
            offset,
            reason: "a slot of the acknowledged mark is damaged (or torn by a crash); the store \
                     uses the other slot and rewrites this one at the next update"
                .into(),
        });
    }
    report.streams = revisions.len() as u64;
    Ok(report)
}

/// Where a segment must start: where the previous one ended.
fn check_positions(report: &mut VerifyReport, seg_name: &str, index: &SegmentIndex, next: u64) {
    if index.first_position != next {
        report.damage.push(Damage {
            file: seg_name.to_string(),
            offset: 0,
            reason: format!(
                "segment starts at position {} but the previous one ended at {next}",
                index.first_position
            ),
        });
    }
}

/// Counts a segment's events and checks that each stream's revisions go on from where
/// the previous segments left them.
fn account(
    report: &mut VerifyReport,
    revisions: &mut HashMap<Arc<str>, (u64, Option<u64>)>,
    unclaimed: &mut UnknownPositions,
    seg_name: &str,
    index: &SegmentIndex,
) {
    let mut position = index.first_position;
    for entry in &index.entries {
        let here = position;
        position += entry.positions();
        if entry.stream == NO_STREAM {
            unclaimed.add(here, entry.revision);
            continue;
        }
        let stream = &index.streams[entry.stream as usize];
        let (expected, last) = revisions.entry(stream.clone()).or_insert((0, None));
        if entry.revision > *expected
            && let Some(claimed) = unclaimed.claim(entry.revision - *expected, *last, here)
        {
            // Revisions of events a repair found unreadable.
            *expected += claimed.len() as u64;
        }
        *last = Some(here);
        if entry.revision != *expected {
            report.damage.push(Damage {
                file: seg_name.to_string(),
                offset: u64::from(entry.offset),
                reason: format!(
                    "stream '{stream}' has revision {} where {expected} was expected",
                    entry.revision
                ),
            });
        }
        *expected = entry.revision + 1;
    }
    report.events += index.entries.iter().filter(|e| e.is_event()).count() as u64;
    report.lost += index
        .entries
        .iter()
        .filter(|e| !e.is_event())
        .map(|e| e.positions())
        .sum::<u64>();
}

/// The index of a cold segment (its marker and index file must agree), or the damage
/// that stands in the way.
fn cold_index(
    storage: &dyn Storage,
    segments_dir: &Path,
    number: u64,
) -> std::result::Result<SegmentIndex, Damage> {
    let marker = ColdMarker::read(storage, segments_dir, number).map_err(|e| Damage {
        file: format!("segments/{number:010}.cold"),
        offset: 0,
        reason: e.to_string(),
    })?;
    let damage = |reason: &str| Damage {
        file: format!("segments/{number:010}.idx"),
        offset: 0,
        reason: format!(
            "{reason}; the segment itself is kept in the archive {} (restore the store from \
             the archive to rebuild it)",
            marker.archive
        ),
    };
    match read_index_file(storage, &index_path(segments_dir, number), number) {
        None => Err(damage(
            "the index file of a segment kept in the archive is missing or damaged",
        )),
        Some(index) if index.len != marker.len => Err(damage(&format!(
            "the index file covers {} bytes where the archived segment holds {}",
            index.len, marker.len
        ))),
        Some(index) => Ok(index),
    }
}
