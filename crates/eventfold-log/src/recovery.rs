//! Opening a data directory: load the sealed segments' index files, scan the active
//! segment, tell a torn tail (cut) from damage (refused). See "Opening a store and recovery" in
//! `docs/log-format.md` for what each crash point leaves and how it is handled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eventfold_core::{Error, Result};

use crate::cold::{ColdShared, Listed, marker_path};
use crate::identity::{ensure_store_id, read_store_id};
use crate::index::Index;
use crate::io::{OpenMode, Storage, StorageFile};
use crate::mark::{AckMark, MarkWriter, read_mark};
use crate::options::LogOptions;
use crate::record::Invalid;
use crate::segment::{
    ActiveSegment, SEGMENT_HEADER_BYTES, Scan, SegmentIndex, Stop, create_segment, cut_torn_tail,
    encode_segment_header, find_intact_after, has_valid_header, index_path, read_index_file,
    scan_segment, segment_path, write_index,
};

/// Whether an open may change the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Recovery may cut a torn tail, rebuild index files and write the mark.
    ReadWrite,
    /// Nothing is changed; a torn tail or damage is left where it is.
    ReadOnly,
}

pub(crate) struct Recovered {
    pub segments_dir: PathBuf,
    pub index: Index,
    pub active: ActiveSegment,
    /// The mark, kept up to date by the writer (read-write opens only).
    pub mark: Option<MarkWriter>,
    /// Damage in the active segment, found by a read-only open (a read-write open
    /// fails instead).
    pub damage: Option<TailDamage>,
    /// The store's id (made by a read-write open when the store had none).
    pub store_id: Option<uuid::Uuid>,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Damage in the active segment that is not a torn tail: acknowledged events would be
/// lost by cutting there, so the store does not open for writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailDamage {
    /// The segment file.
    pub file: String,
    /// Byte offset of the first damaged record.
    pub offset: u64,
    /// The position that record should hold.
    pub position: u64,
    /// What is wrong with it.
    pub reason: String,
    /// Intact records found after the damage.
    pub intact_after: u64,
    /// Positions of the first and last of them.
    pub intact_positions: Option<(u64, u64)>,
    /// Bytes of the segment acknowledged as durable, when the mark knows.
    pub acknowledged_len: Option<u64>,
}

impl std::fmt::Display for TailDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the record at position {} (offset {} of {}) is damaged: {}",
            self.position, self.offset, self.file, self.reason
        )?;
        match self.intact_positions {
            Some((first, last)) => write!(
                f,
                "; {} intact record(s) follow it (positions {first}..={last}), so this is not a torn tail",
                self.intact_after
            )?,
            None => {
                if let Some(len) = self.acknowledged_len {
                    write!(
                        f,
                        "; {len} bytes of the segment were acknowledged as durable, so this is not a torn tail"
                    )?;
                }
            }
        }
        f.write_str(
            ". Nothing was changed. Reading what is intact still works (open read-only); \
             `eventfold repair --data DIR --dry-run` shows what a repair would give up",
        )
    }
}

/// What the active segment holds past its last intact commit.
pub(crate) enum Tail {
    /// Nothing: the file ends with a committed transaction.
    Clean,
    /// Bytes of a write that was never acknowledged: recovery may cut them.
    Torn { committed: u64, file_len: u64 },
    /// Damage that is not a torn tail.
    Damaged(TailDamage),
}

/// Looks at what follows the last intact commit of the active segment, given the
/// acknowledged mark when it names this segment.
pub(crate) fn classify_tail(
    file: &dyn StorageFile,
    name: &str,
    scan: &Scan,
    mark: Option<AckMark>,
) -> Result<Tail> {
    let committed = scan.index.len;
    let acknowledged_len = mark.map(|m| m.len);
    let acknowledged_beyond = acknowledged_len.is_some_and(|len| len > committed);
    if committed == scan.file_len && !acknowledged_beyond {
        return Ok(Tail::Clean);
    }
    if mark.is_some_and(|m| m.exact) && !acknowledged_beyond {
        // The store stopped after a failed sync and recorded exactly what it had
        // acknowledged: whatever follows the last commit, intact records included,
        // was never acknowledged.
        return Ok(Tail::Torn {
            committed,
            file_len: scan.file_len,
        });
    }
    let stop = scan.stop.clone().unwrap_or(Stop {
        offset: scan.file_len,
        position: scan.index.end_position(),
        why: Invalid::Truncated,
    });
    let mut intact_after = 0u64;
    let mut positions: Option<(u64, u64)> = None;
    find_intact_after(file, name, stop.offset, stop.position, |p| {
        intact_after += 1;
        positions = Some(positions.map_or((p, p), |(first, _)| (first, p)));
        true
    })?;
    if intact_after == 0 && !acknowledged_beyond {
        return Ok(Tail::Torn {
            committed,
            file_len: scan.file_len,
        });
    }
    let reason = if stop.offset >= scan.file_len {
        format!(
            "the segment's records end at byte {}, before the end of what was acknowledged",
            scan.file_len
        )
    } else {
        stop.why.to_string()
    };
    Ok(Tail::Damaged(TailDamage {
        file: name.to_string(),
        offset: stop.offset,
        position: stop.position,
        reason,
        intact_after,
        intact_positions: positions,
        acknowledged_len,
    }))
}

/// Opens the data directory's segments: loads the sealed segments' index files, scans
/// the active segment and classifies what follows its last commit. Everything is read
/// and decided before anything is changed, so a store that refuses to open (damage)
/// is left exactly as it was. With [`Access::ReadWrite`], it then removes leftovers of
/// interrupted operations, rebuilds missing index files, cuts a torn tail and writes
/// the mark.
pub(crate) fn recover(
    storage: &dyn Storage,
    dir: &Path,
    options: &LogOptions,
    access: Access,
    cold: &Arc<ColdShared>,
) -> Result<Recovered> {
    let segments_dir = dir.join("segments");
    let writable = access == Access::ReadWrite;
    if writable {
        storage
            .create_dir_all(&segments_dir)
            .map_err(io_err(format!("creating {}", segments_dir.display())))?;
    }
    let names = storage.list(&segments_dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Backend(format!(
                "{} holds no eventfold store (no segments directory)",
                dir.display()
            ))
        } else {
            Error::io(format!("listing {}", segments_dir.display()), e)
        }
    })?;
    let listed = Listed::of(&names);
    let numbers = &listed.numbers;
    for (i, &n) in numbers.iter().enumerate() {
        if n != i as u64 {
            return Err(Error::Corrupted {
                file: file_name(&segment_path(&segments_dir, i as u64)),
                offset: 0,
                reason: format!("segment {i} is missing (found segment {n} instead)"),
            });
        }
    }
    let mark = read_mark(storage, &segments_dir)?;
    let last_number = numbers.last().copied().unwrap_or(0);
    if let Some(mark) = mark
        && mark.segment > last_number
    {
        return Err(Error::Corrupted {
            file: file_name(&segment_path(&segments_dir, mark.segment)),
            offset: 0,
            reason: format!(
                "segment {} holds acknowledged events but is missing ({} is the last segment found)",
                mark.segment, last_number
            ),
        });
    }

    let mut index = Index::default();
    let Some((&last, sealed)) = numbers.split_last() else {
        if !writable {
            return Err(Error::Backend(format!(
                "{} holds no eventfold store (no segments)",
                dir.display()
            )));
        }
        let active = create_segment(storage, &segments_dir, 0, 0)?;
        let name = file_name(&segment_path(&segments_dir, 0));
        index.add_segment(0, name, active.file.clone(), &active.index, true)?;
        let mut mark = MarkWriter::open(storage, &segments_dir)?;
        mark.write(AckMark::lower_bound(0, active.index.len))?;
        let store_id = Some(ensure_store_id(storage, &segments_dir)?);
        return Ok(Recovered {
            segments_dir,
            index,
            active,
            mark: Some(mark),
            damage: None,
            store_id,
        });
    };

    // Sealed segments: their index files, or a scan when one is missing or damaged.
    let window_from = sealed.len().saturating_sub(options.id_window_segments);
    let mut rebuilt = Vec::new();
    for (i, &number) in sealed.iter().enumerate() {
        let path = segment_path(&segments_dir, number);
        let file = listed.open(storage, &segments_dir, number, cold)?;
        let (segment_index, was_rebuilt) =
            load_or_scan_index(storage, &segments_dir, number, file.as_ref())?;
        if let Some(mark) = mark
            && mark.segment == number
            && mark.len > segment_index.len
        {
            return Err(Error::Corrupted {
                file: file_name(&path),
                offset: segment_index.len,
                reason: format!(
                    "the sealed segment holds {} bytes but {} were acknowledged",
                    segment_index.len, mark.len
                ),
            });
        }
        index.add_segment(
            number,
            file_name(&path),
            file,
            &segment_index,
            i >= window_from,
        )?;
        if let Some(segment) = index.segments.last_mut() {
            segment.cold = listed.cold.contains(&number);
        }
        if was_rebuilt {
            rebuilt.push((number, segment_index));
        }
    }

    // The last segment is the active one.
    let path = segment_path(&segments_dir, last);
    if listed.cold.contains(&last) {
        return Err(Error::Corrupted {
            file: file_name(&path),
            offset: 0,
            reason: "the active segment is missing (only the marker of an archived copy is \
                     here, and the active segment is never dropped)"
                .into(),
        });
    }
    let name = file_name(&path);
    let mode = if writable {
        OpenMode::ReadWrite
    } else {
        OpenMode::Read
    };
    let file = storage
        .open(&path, mode)
        .map_err(io_err(format!("opening {}", path.display())))?;
    let len = file
        .len()
        .map_err(io_err(format!("reading {}", path.display())))?;
    let mark = mark.filter(|m| m.segment == last);
    let acknowledged_len = mark.map(|m| m.len);
    let header_lost = len <= SEGMENT_HEADER_BYTES
        && acknowledged_len.is_none_or(|l| l <= SEGMENT_HEADER_BYTES)
        && !has_valid_header(file.as_ref(), last, &path)?;
    let (scan, tail) = if header_lost {
        // Created but its header never became durable: an empty segment.
        let scan = Scan {
            index: SegmentIndex {
                first_position: index.next_position,
                len: SEGMENT_HEADER_BYTES,
                ..SegmentIndex::default()
            },
            file_len: len,
            stop: None,
        };
        (scan, Tail::Clean)
    } else {
        let scan = scan_segment(file.as_ref(), &name, last, |_, _| {})?;
        let tail = classify_tail(file.as_ref(), &name, &scan, mark)?;
        (scan, tail)
    };
    let (damage, torn) = match tail {
        Tail::Damaged(damage) if writable => {
            return Err(Error::Corrupted {
                file: damage.file.clone(),
                offset: damage.offset,
                reason: damage.to_string(),
            });
        }
        Tail::Damaged(damage) => (Some(damage), None),
        Tail::Torn {
            committed,
            file_len,
        } => (None, Some((committed, file_len))),
        Tail::Clean => (None, None),
    };

    if writable {
        for name in names.iter().filter(|n| n.ends_with(".tmp")) {
            // A half-written file from a crash during sealing or a repair.
            let path = segments_dir.join(name);
            storage
                .remove(&path)
                .map_err(io_err(format!("removing {}", path.display())))?;
        }
        // An index file for the active segment means a crash came after sealing it
        // and before its successor existed: it stays active instead.
        let stale = index_path(&segments_dir, last);
        if names.contains(&file_name(&stale)) {
            storage
                .remove(&stale)
                .map_err(io_err(format!("removing {}", stale.display())))?;
            storage
                .sync_dir(&segments_dir)
                .map_err(io_err(format!("syncing {}", segments_dir.display())))?;
        }
        for &number in &listed.stale_markers {
            // The local file is whole: the marker is what remains of a drop that
            // crashed, or of a cold segment a scavenge rewrote.
            let marker = marker_path(&segments_dir, number);
            storage
                .remove(&marker)
                .map_err(io_err(format!("removing {}", marker.display())))?;
        }
        for (number, segment_index) in &rebuilt {
            write_index(storage, &segments_dir, *number, segment_index)?;
        }
        if header_lost {
            let header = encode_segment_header(last, index.next_position);
            file.set_len(0)
                .map_err(io_err(format!("truncating {}", path.display())))?;
            file.write_all_at(&header, 0)
                .and_then(|()| file.sync_data())
                .map_err(io_err(format!("writing {}", path.display())))?;
        }
        if let Some((committed, file_len)) = torn {
            if let Some(stop) = &scan.stop {
                tracing::warn!(segment = %path.display(), offset = stop.offset, why = %stop.why, "recovery stopped at an invalid record past the last commit");
            }
            cut_torn_tail(storage, dir, &path, file.as_ref(), committed, file_len)?;
        }
    } else if let Some(damage) = &damage {
        tracing::error!(%damage, "the store is damaged; opened read-only");
    }
    index.add_segment(last, name, file.clone(), &scan.index, true)?;
    index.trim_id_window(options.id_window_segments + 1);
    index.shrink_to_fit();
    let mark = if writable {
        // What recovery read may still be only in the page cache (a process that died
        // without a power loss leaves it there): make it durable before anyone reads
        // it, and before the mark says it was acknowledged.
        file.sync_data()
            .map_err(io_err(format!("syncing {}", path.display())))?;
        let mut mark = MarkWriter::open(storage, &segments_dir)?;
        mark.write(AckMark::lower_bound(last, scan.index.len))?;
        Some(mark)
    } else {
        None
    };
    let store_id = if writable {
        Some(ensure_store_id(storage, &segments_dir)?)
    } else {
        read_store_id(storage, &segments_dir)?
    };
    Ok(Recovered {
        segments_dir,
        index,
        active: ActiveSegment::new(last, file, scan.index),
        mark,
        damage,
        store_id,
    })
}

/// Loads a sealed segment's index file, or rebuilds it by scanning the segment (which
/// must then be intact from end to end). Returns whether it was rebuilt (the caller
/// writes it again when it may change files).
fn load_or_scan_index(
    storage: &dyn Storage,
    segments_dir: &Path,
    number: u64,
    file: &dyn StorageFile,
) -> Result<(SegmentIndex, bool)> {
    let path = index_path(segments_dir, number);
    let seg_len = file
        .len()
        .map_err(io_err(format!("reading segment {number}")))?;
    let loaded = read_index_file(storage, &path, number).filter(|index| index.len == seg_len);
    if let Some(index) = loaded {
        return Ok((index, false));
    }
    tracing::warn!(
        segment = number,
        "segment index missing or damaged; rebuilding it"
    );
    let seg_name = file_name(&segment_path(segments_dir, number));
    let scan = scan_segment(file, &seg_name, number, |_, _| {})?;
    if let Some(stop) = scan.stop {
        return Err(Error::Corrupted {
            file: seg_name,
            offset: stop.offset,
            reason: format!(
                "sealed segment is damaged at position {}: {}",
                stop.position, stop.why
            ),
        });
    }
    if scan.index.len != scan.file_len {
        return Err(Error::Corrupted {
            file: seg_name,
            offset: scan.index.len,
            reason: "sealed segment ends with an uncommitted transaction".into(),
        });
    }
    Ok((scan.index, true))
}
