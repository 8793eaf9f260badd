//! `repair`: the one explicit, audited way to give up damaged data.
//!
//! Opening a store never cuts damage (only a torn tail, which was never
//! acknowledged). When a segment is damaged, `repair` rewrites it: every intact
//! committed transaction is kept byte for byte, and each damaged stretch becomes a gap
//! record that keeps the positions it covered from ever being handed out again and
//! names the events known to have been there (so their streams' revisions are never
//! reused either). A transaction with one damaged record is given up whole, so a
//! repair never leaves half an atomic append. The original file is copied to
//! `quarantine/` first, and the gap record carries who repaired, when and why: the
//! audit trail lives in the log itself. A dry run reports the same and changes nothing.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use eventfold_core::{Error, RecordedEvent, Result};
use uuid::Uuid;

use crate::index::FastMap;
use crate::io::{OpenMode, OsStorage, Storage, StorageFile};
use crate::mark::{AckMark, MarkWriter, read_mark};
use crate::record::{
    Gap, LostEvent, RECORD_BYTES_MIN, decode_header, plausible_len, unchecked_header_fields,
};
use crate::recovery::{Tail, classify_tail};
use crate::segment::{
    NO_STREAM, SEGMENT_HEADER_BYTES, SegmentIndex, decode_segment_header, encode_segment_header,
    index_path, scan_segment, segment_path,
};
use crate::segment::{
    list_segments_dir, lock_data_dir, read_index_file, scan_written, write_index,
};

/// What a repair is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RepairOptions {
    /// Report what would be given up; change nothing.
    pub dry_run: bool,
    /// Who repairs and why: kept in the log, in each gap record, as the audit trail.
    pub reason: String,
}

/// What a repair gave up (or, in a dry run, would give up).
#[derive(Debug, Clone, Default)]
pub struct RepairReport {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Each damaged segment and what became of it.
    pub segments: Vec<SegmentRepair>,
}

impl RepairReport {
    /// Whether no damage was found (a torn tail is not damage: opening cuts it).
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

/// The repair of one segment.
#[derive(Debug, Clone)]
pub struct SegmentRepair {
    /// The segment file, relative to the data directory.
    pub file: String,
    /// Where the damage lies.
    pub damage: Vec<DamagedSpan>,
    /// Positions given up, as half-open ranges: no event will ever hold them.
    pub gaps: Vec<std::ops::Range<u64>>,
    /// The events given up, as far as they are known.
    pub given_up: Vec<GivenUp>,
    /// Records that had one flipped bit, found and undone: nothing of them is lost.
    pub corrected: Vec<Correction>,
    /// The copy of the damaged file, relative to the data directory (not in a dry run).
    pub quarantined: Option<String>,
}

/// A single flipped bit a repair found and undid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    /// Byte of the segment that held the flipped bit.
    pub offset: u64,
    /// Which bit of it (0 is the least significant).
    pub bit: u8,
    /// Position of the event whose record it was.
    pub position: u64,
}

/// A stretch of a segment that holds no intact record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedSpan {
    /// First damaged byte.
    pub offset: u64,
    /// The byte after the damage (where the next intact record starts, or the end).
    pub end: u64,
    /// What is wrong at `offset`.
    pub reason: String,
}

/// An event given up by a repair.
#[derive(Debug, Clone, PartialEq)]
pub enum GivenUp {
    /// An intact event, given up because its transaction lost a record; its JSON can
    /// be written somewhere safe before the repair.
    Intact(RecordedEvent),
    /// An event whose record is unreadable; what the segment's index file knew of it.
    Unreadable {
        /// Its position.
        position: u64,
        /// Its stream and revision, if known.
        stream: Option<(String, u64)>,
        /// Its id, if known.
        id: Option<Uuid>,
    },
    /// Positions in the damaged bytes about which nothing is known: at most this many
    /// events were there (a bound computed from the damaged bytes).
    Unknown {
        /// The positions.
        positions: std::ops::Range<u64>,
    },
}

/// Repairs the store in `dir` on the real file system (the store must be closed).
pub fn repair(dir: &Path, options: &RepairOptions) -> Result<RepairReport> {
    repair_with(&OsStorage, dir, options)
}

/// Repairs the store in `dir` on the given storage.
pub fn repair_with(
    storage: &dyn Storage,
    dir: &Path,
    options: &RepairOptions,
) -> Result<RepairReport> {
    let segments_dir = dir.join("segments");
    let names = list_segments_dir(storage, dir)?;
    let _lock = lock_data_dir(storage, dir)?;
    let listed = crate::cold::Listed::of(&names);
    let numbers = &listed.numbers;
    for (i, &n) in numbers.iter().enumerate() {
        if n != i as u64 {
            return Err(Error::Corrupted {
                file: format!("segments/{:010}.seg", i),
                offset: 0,
                reason: format!(
                    "segment {i} is missing; a repair cannot make it up: restore it from a backup"
                ),
            });
        }
    }
    let mark = read_mark(storage, &segments_dir)?;
    let mut report = RepairReport {
        dry_run: options.dry_run,
        segments: Vec::new(),
    };
    // The position where the previous segment ended: where this one must begin.
    let mut expected_first = 0u64;
    let mut revisions = Revisions::new();
    for (i, &number) in numbers.iter().enumerate() {
        let last = i + 1 == numbers.len();
        let path = segment_path(&segments_dir, number);
        let name = format!("segments/{number:010}.seg");
        if listed.cold.contains(&number) && !last {
            // Kept in the archive, checked when fetched: its index file says what it
            // holds (a damaged one is `verify`'s to report, and a restore's to mend).
            let index = read_index_file(storage, &index_path(&segments_dir, number), number)
                .ok_or_else(|| Error::Corrupted {
                    file: format!("segments/{number:010}.idx"),
                    offset: 0,
                    reason: "the index file of a segment kept in the archive is missing or \
                             damaged: restore the store from the archive"
                        .into(),
                })?;
            for entry in index.entries.iter().filter(|e| e.stream != NO_STREAM) {
                let stream = index.streams[entry.stream as usize].to_string();
                count_revision(&mut revisions, &Some((stream, entry.revision)));
            }
            expected_first = index.end_position();
            continue;
        }
        let file = storage
            .open(&path, OpenMode::Read)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let segment_mark = mark.filter(|m| m.segment == number);
        let acknowledged = segment_mark.map(|m| m.len);
        let scan = scan_segment(file.as_ref(), &name, number, |_, _| {});
        let damaged = match &scan {
            Err(Error::Corrupted { .. }) => true,
            Err(other) => return Err(other.clone()),
            Ok(scan) if last => matches!(
                classify_tail(file.as_ref(), &name, scan, segment_mark)?,
                Tail::Damaged(_)
            ),
            Ok(scan) => scan.stop.is_some() || scan.index.len < scan.file_len,
        };
        if let (false, Ok(scan)) = (damaged, &scan) {
            for entry in scan.index.entries.iter().filter(|e| e.stream != NO_STREAM) {
                let stream = scan.index.streams[entry.stream as usize].to_string();
                count_revision(&mut revisions, &Some((stream, entry.revision)));
            }
            expected_first = scan.index.end_position();
            continue;
        }
        // Where the positions of this segment must end: the next segment's start.
        let end_position = if last {
            None
        } else {
            Some(first_position_of(storage, &segments_dir, number + 1)?)
        };
        let known = read_index_file(storage, &index_path(&segments_dir, number), number);
        let bytes = read_whole(file.as_ref(), &name)?;
        let salvage = salvage(
            bytes.clone(),
            &mut revisions,
            number,
            expected_first,
            end_position,
            acknowledged,
            known,
        )?;
        let mut repaired = SegmentRepair {
            file: name.clone(),
            damage: salvage.damage.clone(),
            gaps: salvage
                .gaps
                .iter()
                .map(|g| g.first..g.first + g.count)
                .collect(),
            given_up: salvage.given_up.clone(),
            corrected: salvage.corrected.clone(),
            quarantined: None,
        };
        expected_first = salvage.end_position;
        if !options.dry_run {
            repaired.quarantined = Some(rewrite(
                storage,
                dir,
                &segments_dir,
                number,
                last,
                &bytes,
                &salvage,
                &options.reason,
            )?);
        }
        report.segments.push(repaired);
    }
    Ok(report)
}

/// The first position of segment `number`, from its header or else its index file.
fn first_position_of(storage: &dyn Storage, segments_dir: &Path, number: u64) -> Result<u64> {
    let path = segment_path(segments_dir, number);
    match storage.open(&path, OpenMode::Read) {
        Ok(file) => {
            let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
            let n = crate::segment::read_up_to(
                file.as_ref(),
                &mut header,
                0,
                &path.display().to_string(),
            )?;
            if let Ok(first) = decode_segment_header(&header[..n], number) {
                return Ok(first);
            }
        }
        // A segment kept in the archive: its index file knows.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    }
    read_index_file(storage, &index_path(segments_dir, number), number)
        .map(|index| index.first_position)
        .ok_or_else(|| Error::Corrupted {
            file: format!("segments/{number:010}.seg"),
            offset: 0,
            reason: "the header of the next segment is damaged too, and it has no index file: \
                     the end of the damaged segment cannot be known"
                .into(),
        })
}

/// Segments larger than this are not read whole into memory by a repair.
const REPAIR_SEGMENT_BYTES_MAX: u64 = 4 << 30;

fn read_whole(file: &dyn StorageFile, name: &str) -> Result<Vec<u8>> {
    let len = file
        .len()
        .map_err(|e| Error::io(format!("reading {name}"), e))?;
    if len > REPAIR_SEGMENT_BYTES_MAX {
        return Err(Error::Corrupted {
            file: name.to_string(),
            offset: 0,
            reason: format!("the segment is {len} bytes, more than a segment can be"),
        });
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| Error::io(format!("reading {name}"), e))?;
    Ok(bytes)
}

/// A damaged segment taken apart: what to keep, what to give up.
struct Salvage {
    /// The segment's bytes with single flipped bits undone.
    bytes: Vec<u8>,
    corrected: Vec<Correction>,
    first_position: u64,
    /// Byte ranges of intact committed records to keep, and gaps, in order.
    pieces: Vec<Piece>,
    gaps: Vec<Gap>,
    damage: Vec<DamagedSpan>,
    given_up: Vec<GivenUp>,
    end_position: u64,
}

enum Piece {
    Keep(std::ops::Range<usize>),
    /// Index into `Salvage::gaps`.
    Gap(usize),
}

impl Salvage {
    /// Gives up the positions `first..end` (nothing when the range is empty: damaged
    /// bytes that held no position, such as garbage after the last record).
    fn push_gap(&mut self, first: u64, end: u64) {
        if end > first {
            self.gaps.push(Gap {
                first,
                count: end - first,
                recorded_at_micros: 0,
                reason: String::new(),
                lost: Vec::new(),
            });
            self.pieces.push(Piece::Gap(self.gaps.len() - 1));
        }
    }
}

/// An intact record met while taking a segment apart.
struct Met {
    offset: usize,
    len: usize,
    position: u64,
    count: u64,
    commit: bool,
    /// An event's stream and revision (none for a gap record).
    event: Option<(String, u64)>,
}

/// Decodes the record at `offset` if it is intact and holds `position`.
fn intact_at(bytes: &[u8], offset: usize, position: u64) -> std::result::Result<Met, String> {
    let header = decode_header(&bytes[offset..]).map_err(|e| e.to_string())?;
    if header.position != position {
        return Err(format!(
            "record holds position {} where {position} was expected",
            header.position
        ));
    }
    let record = &bytes[offset..offset + header.len];
    let event = if header.gap {
        Gap::decode(&header, record).map_err(|e| e.to_string())?;
        None
    } else {
        let stream = header.stream(record).map_err(|e| e.to_string())?;
        header.event_type(record).map_err(|e| e.to_string())?;
        Some((stream.to_string(), header.revision))
    };
    Ok(Met {
        offset,
        len: header.len,
        position,
        count: header.count(),
        commit: header.commit,
        event,
    })
}

/// Next revision of each stream, as far as the log has been read.
type Revisions = std::collections::HashMap<String, u64>;

fn count_revision(revisions: &mut Revisions, event: &Option<(String, u64)>) {
    if let Some((stream, revision)) = event {
        let next = revisions.entry(stream.clone()).or_insert(0);
        *next = (*next).max(revision + 1);
    }
}

/// What a damaged record at `offset` held, when its unchecked header names a known
/// stream at exactly that stream's next revision (anything else could be noise).
fn guess_damaged(
    bytes: &[u8],
    offset: usize,
    position: u64,
    revisions: &Revisions,
) -> Option<(String, u64)> {
    let (at, revision, stream) = unchecked_header_fields(bytes.get(offset..)?)?;
    (at == position && revisions.get(stream) == Some(&revision))
        .then(|| (stream.to_string(), revision))
}

/// The next offset from `from` where an intact record holding a position of at least
/// `position_min` starts.
fn next_intact(bytes: &[u8], from: usize, position_min: u64) -> Option<(usize, u64)> {
    (from..bytes.len()).find_map(|offset| {
        let len = plausible_len(&bytes[offset..])?;
        if offset + len > bytes.len() {
            return None;
        }
        let header = decode_header(&bytes[offset..offset + len]).ok()?;
        (header.position >= position_min).then_some((offset, header.position))
    })
}

fn salvage(
    mut bytes: Vec<u8>,
    revisions: &mut Revisions,
    number: u64,
    first_position: u64,
    end_position: Option<u64>,
    acknowledged_len: Option<u64>,
    known: Option<SegmentIndex>,
) -> Result<Salvage> {
    let name = format!("segments/{number:010}.seg");
    let header_ok =
        decode_segment_header(&bytes, number).is_ok_and(|first| first == first_position);
    let mut out = Salvage {
        bytes: Vec::new(),
        corrected: Vec::new(),
        first_position,
        pieces: Vec::new(),
        gaps: Vec::new(),
        damage: Vec::new(),
        given_up: Vec::new(),
        end_position: first_position,
    };
    if !header_ok {
        out.damage.push(DamagedSpan {
            offset: 0,
            end: SEGMENT_HEADER_BYTES.min(bytes.len() as u64),
            reason: "segment header is damaged (it is written again)".into(),
        });
    }
    // What the segment's index file knew of each position, for unreadable records.
    let mut known_at: FastMap<u64, (String, u64, Uuid)> = FastMap::default();
    if let Some(known) = known.filter(|k| k.first_position == first_position) {
        let mut position = known.first_position;
        for entry in &known.entries {
            if entry.is_event() {
                let stream = known.streams[entry.stream as usize].to_string();
                known_at.insert(position, (stream, entry.revision, entry.id));
            }
            position += entry.positions();
        }
    }
    let mut offset = SEGMENT_HEADER_BYTES as usize;
    let mut position = first_position;
    // Records of the transaction being read, until its commit.
    let mut pending: Vec<Met> = Vec::new();
    // Whether a gap already reaches past the end of the damaged bytes.
    let mut gap_to_end = false;
    while offset < bytes.len() {
        let mut read = intact_at(&bytes, offset, position);
        if read.is_err()
            && let Some((byte, bit)) = correct_single_bit(&mut bytes, offset, position)
        {
            // One flipped bit, found and undone: the record is whole again.
            out.corrected.push(Correction {
                offset: byte as u64,
                bit,
                position,
            });
            read = intact_at(&bytes, offset, position);
        }
        match read {
            Ok(met) => {
                count_revision(revisions, &met.event);
                offset += met.len;
                position += met.count;
                let commit = met.commit;
                pending.push(met);
                if commit {
                    let start = pending[0].offset;
                    let end = offset;
                    pending.clear();
                    out.pieces.push(Piece::Keep(start..end));
                }
            }
            Err(_) if end_position.is_none() && crate::segment::all_zero(&bytes[offset..]) => {
                // Zeros to the end of the active segment: room allocated ahead of the
                // writes, not records.
                bytes.truncate(offset);
                break;
            }
            Err(reason) => {
                // What the damaged record held, if the index file or its own header
                // can tell.
                if !known_at.contains_key(&position)
                    && let Some((stream, revision)) =
                        guess_damaged(&bytes, offset, position, revisions)
                {
                    known_at.insert(position, (stream, revision, Uuid::nil()));
                }
                if let Some((stream, revision, _)) = known_at.get(&position) {
                    count_revision(revisions, &Some((stream.clone(), *revision)));
                }
                // Damage: the pending transaction is given up with it.
                let gap_first = pending.first().map_or(position, |m| m.position);
                for met in pending.drain(..) {
                    out.given_up.push(intact_given_up(&bytes, met.offset)?);
                }
                let resume = next_intact(&bytes, offset + 1, position);
                let damage_end = resume.map_or(bytes.len(), |(at, _)| at);
                out.damage.push(DamagedSpan {
                    offset: offset as u64,
                    end: damage_end as u64,
                    reason,
                });
                let (gap_end, next_offset) = match resume {
                    Some((at, first_after)) => {
                        // Give up the unreadable positions, then every record up to the
                        // first commit: they may belong to the damaged transaction.
                        unreadable(&mut out.given_up, &known_at, position..first_after);
                        let mut walk = at;
                        let mut walk_position = first_after;
                        let mut ended = None;
                        while walk < bytes.len() {
                            match intact_at(&bytes, walk, walk_position) {
                                Ok(met) => {
                                    count_revision(revisions, &met.event);
                                    out.given_up.push(intact_given_up(&bytes, met.offset)?);
                                    walk += met.len;
                                    walk_position += met.count;
                                    if met.commit {
                                        ended = Some((walk_position, walk));
                                        break;
                                    }
                                }
                                Err(_) => break,
                            }
                        }
                        match ended {
                            Some(end) => end,
                            // More damage before a commit: carry on from there.
                            None => {
                                position = walk_position;
                                offset = walk;
                                out.push_gap(gap_first, walk_position);
                                continue;
                            }
                        }
                    }
                    None => {
                        let end = match end_position {
                            Some(end) => end,
                            None => {
                                // The active segment: nothing says how many events the
                                // damaged bytes held; no more than fit in them.
                                // Zeros after the last written byte are allocated room.
                                let written =
                                    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                                let damaged_bytes = acknowledged_len
                                    .unwrap_or(0)
                                    .max(written as u64)
                                    .saturating_sub(offset as u64);
                                position + damaged_bytes / RECORD_BYTES_MIN as u64 + 1
                            }
                        };
                        if end < position {
                            return Err(Error::Corrupted {
                                file: name,
                                offset: offset as u64,
                                reason: format!(
                                    "the segment holds positions up to {position}, but the next segment starts at {end}"
                                ),
                            });
                        }
                        unreadable(&mut out.given_up, &known_at, position..end);
                        gap_to_end = true;
                        (end, bytes.len())
                    }
                };
                out.push_gap(gap_first, gap_end);
                position = gap_end;
                offset = next_offset;
            }
        }
    }
    if !pending.is_empty() {
        // The segment ends inside a transaction (a sealed segment, or an acknowledged
        // length the file no longer has): give it up.
        let gap_first = pending[0].position;
        for met in pending.drain(..) {
            out.given_up.push(intact_given_up(&bytes, met.offset)?);
        }
        out.damage.push(DamagedSpan {
            offset: bytes.len() as u64,
            end: bytes.len() as u64,
            reason: "the segment ends inside a transaction".into(),
        });
        out.push_gap(gap_first, position);
    }
    if end_position.is_none()
        && !gap_to_end
        && let Some(acknowledged) = acknowledged_len
        && acknowledged > bytes.len() as u64
    {
        // Acknowledged bytes the file no longer has: no more events than fit in them.
        let end = position + (acknowledged - bytes.len() as u64) / RECORD_BYTES_MIN as u64 + 1;
        out.damage.push(DamagedSpan {
            offset: bytes.len() as u64,
            end: acknowledged,
            reason: format!(
                "the segment ends at byte {} but {acknowledged} bytes were acknowledged",
                bytes.len()
            ),
        });
        unreadable(&mut out.given_up, &known_at, position..end);
        out.push_gap(position, end);
        position = end;
    }
    if let Some(end) = end_position
        && end != position
    {
        if end < position {
            return Err(Error::Corrupted {
                file: name,
                offset: bytes.len() as u64,
                reason: format!(
                    "the segment holds positions up to {position}, but the next segment starts at {end}"
                ),
            });
        }
        unreadable(&mut out.given_up, &known_at, position..end);
        out.damage.push(DamagedSpan {
            offset: bytes.len() as u64,
            end: bytes.len() as u64,
            reason: format!("positions {position}..{end} are missing from the end of the segment"),
        });
        out.push_gap(position, end);
        position = end;
    }
    out.end_position = position;
    // Each gap names the events known to have held its positions.
    for gap in &mut out.gaps {
        let range = gap.first..gap.first + gap.count;
        gap.lost = out
            .given_up
            .iter()
            .filter_map(|g| match g {
                GivenUp::Intact(e) if range.contains(&e.position.get()) => Some(LostEvent {
                    position: e.position.get(),
                    stream: e.stream.clone(),
                    revision: e.revision.get(),
                }),
                GivenUp::Unreadable {
                    position,
                    stream: Some((stream, revision)),
                    ..
                } if range.contains(position) => Some(LostEvent {
                    position: *position,
                    stream: stream.clone(),
                    revision: *revision,
                }),
                _ => None,
            })
            .collect();
        gap.lost.sort_by_key(|l| l.position);
    }
    out.bytes = bytes;
    Ok(out)
}

/// Records up to this size are searched bit by bit for a single flipped bit.
const CORRECT_RECORD_BYTES_MAX: usize = 4096;

/// Looks for the one bit whose flip makes the record at `offset` intact again (with
/// the right position and every check passing), and undoes it in `bytes`. CRC-32C
/// tells single-bit errors apart in records far larger than this bound, so at most
/// one bit can fit; when more than one does (damage of another kind that happens to
/// fit) nothing is changed.
fn correct_single_bit(bytes: &mut [u8], offset: usize, position: u64) -> Option<(usize, u8)> {
    let declared = 8 + u32::from_le_bytes(bytes.get(offset..offset + 4)?.try_into().ok()?) as usize;
    // A length past the bound is itself the damage, if anything is: try its bits only.
    let end = if declared <= CORRECT_RECORD_BYTES_MAX {
        offset + declared
    } else {
        offset + 4
    }
    .min(bytes.len());
    let mut found = None;
    for byte in offset..end {
        for bit in 0..8u8 {
            bytes[byte] ^= 1 << bit;
            let fits = intact_at(bytes, offset, position)
                .is_ok_and(|met| met.len <= CORRECT_RECORD_BYTES_MAX);
            bytes[byte] ^= 1 << bit;
            if fits {
                if found.is_some() {
                    return None;
                }
                found = Some((byte, bit));
            }
        }
    }
    let (byte, bit) = found?;
    bytes[byte] ^= 1 << bit;
    Some((byte, bit))
}

/// Records the positions `range` of unreadable records: known ones one by one, the
/// rest as runs.
fn unreadable(
    given_up: &mut Vec<GivenUp>,
    known_at: &FastMap<u64, (String, u64, Uuid)>,
    range: std::ops::Range<u64>,
) {
    let mut unknown_from = None;
    for position in range.clone() {
        match known_at.get(&position) {
            Some((stream, revision, id)) => {
                if let Some(from) = unknown_from.take() {
                    given_up.push(GivenUp::Unknown {
                        positions: from..position,
                    });
                }
                given_up.push(GivenUp::Unreadable {
                    position,
                    stream: Some((stream.clone(), *revision)),
                    id: (!id.is_nil()).then_some(*id),
                });
            }
            None => {
                unknown_from.get_or_insert(position);
            }
        }
    }
    if let Some(from) = unknown_from {
        given_up.push(GivenUp::Unknown {
            positions: from..range.end,
        });
    }
}

fn intact_given_up(bytes: &[u8], offset: usize) -> Result<GivenUp> {
    let header = decode_header(&bytes[offset..]).map_err(|e| Error::Backend(e.to_string()))?;
    let buffer = Bytes::copy_from_slice(&bytes[offset..offset + header.len]);
    let offset = 0;
    if header.gap {
        // An earlier repair's gap record: its positions stay given up.
        return Ok(GivenUp::Unknown {
            positions: header.position..header.position + header.count(),
        });
    }
    header
        .to_event(&buffer, offset)
        .map(GivenUp::Intact)
        .map_err(|e| Error::Backend(e.to_string()))
}

/// Writes the repaired segment beside the damaged one and swaps it in: the original
/// is first copied to `quarantine/`, the new file is synced before the rename and the
/// directory after it. Returns the quarantined copy's path relative to `dir`.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the arguments are the repair's state"
)]
fn rewrite(
    storage: &dyn Storage,
    dir: &Path,
    segments_dir: &Path,
    number: u64,
    active: bool,
    original: &[u8],
    salvage: &Salvage,
    reason: &str,
) -> Result<String> {
    let now = chrono::Utc::now();
    let quarantine = dir.join("quarantine");
    storage
        .create_dir_all(&quarantine)
        .map_err(|e| Error::io(format!("creating {}", quarantine.display()), e))?;
    let saved_name = format!(
        "{number:010}.seg.{}.damaged",
        now.format("%Y%m%dT%H%M%S%.6fZ")
    );
    let saved = quarantine.join(&saved_name);
    write_new_file(storage, &saved, original)?;
    storage
        .sync_dir(&quarantine)
        .map_err(|e| Error::io(format!("syncing {}", quarantine.display()), e))?;

    let audit = format!(
        "repaired at {} ({}); damaged bytes kept in quarantine/{saved_name}",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        if reason.is_empty() {
            "no reason given"
        } else {
            reason
        }
    );
    let mut bytes = encode_segment_header(number, salvage.first_position).to_vec();
    let mut index = SegmentIndex {
        first_position: salvage.first_position,
        ..SegmentIndex::default()
    };
    for piece in &salvage.pieces {
        match piece {
            Piece::Keep(range) => bytes.extend_from_slice(&salvage.bytes[range.clone()]),
            Piece::Gap(i) => {
                let mut gap = salvage.gaps[*i].clone();
                gap.recorded_at_micros = now.timestamp_micros();
                gap.reason = audit.clone();
                gap.encode(&mut bytes);
            }
        }
    }
    // Check the new file as recovery will read it, before it replaces anything.
    let tmp = segment_path(segments_dir, number).with_extension("seg.repair.tmp");
    let _ = storage.remove(&tmp);
    write_new_file(storage, &tmp, &bytes)?;
    let scan = scan_written(storage, &tmp, number)?;
    if scan.stop.is_some() || scan.index.len != bytes.len() as u64 {
        return Err(Error::Backend(format!(
            "the repaired segment {number} does not read back intact; nothing was replaced"
        )));
    }
    index.len = scan.index.len;
    index.streams = scan.index.streams;
    index.entries = scan.index.entries;
    if active || read_mark(storage, segments_dir)?.is_some_and(|m| m.segment == number) {
        // The mark must not claim more than the new file holds.
        let mut mark = MarkWriter::open(storage, segments_dir)?;
        mark.write(AckMark::lower_bound(number, bytes.len() as u64))?;
    }
    let path = segment_path(segments_dir, number);
    storage
        .rename(&tmp, &path)
        .map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
    storage
        .sync_dir(segments_dir)
        .map_err(|e| Error::io(format!("syncing {}", segments_dir.display()), e))?;
    if !active {
        write_index(storage, segments_dir, number, &index)?;
    }
    Ok(format!("quarantine/{saved_name}"))
}

fn write_new_file(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> Result<()> {
    let file: Arc<dyn StorageFile> = storage
        .open(path, OpenMode::CreateNew)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    file.write_all_at(bytes, 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
