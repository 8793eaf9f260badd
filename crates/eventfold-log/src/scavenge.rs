//! Scavenge: rewriting sealed segments without the events below their stream's cut,
//! while the store keeps appending and reading (layout and crash points in
//! `docs/log-format.md`, "Scavenge").
//!
//! The engine does not know why an event may go: it is given, per stream, the first
//! revision to keep (the metadata layer computes it from retention and deletion). Every
//! other record is copied byte for byte; each run of removed positions becomes one gap
//! record naming the removed events, so revisions, expected versions and tombstones
//! answer as before. A segment is written beside the old one, read back, then swapped
//! in; the memory held is one segment's index and two buffers of a few MiB.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventfold_core::{Error, Result};
use uuid::Uuid;

use crate::index::FastMap;
use crate::io::{OpenMode, Storage, StorageFile};
use crate::record::{FRAME_BYTES, Gap, LostEvent, decode_header, set_commit};
use crate::segment::{
    NO_OFFSET, NO_STREAM, SEGMENT_HEADER_BYTES, SegmentIndex, encode_segment_header, index_path,
    read_index_file, read_up_to, scan_segment, scan_written, segment_path,
};
use crate::shared::Shared;

/// What a scavenge is asked to do.
#[derive(Debug, Clone, Default)]
pub struct ScavengeOptions {
    /// Compute the report, change nothing.
    pub dry_run: bool,
    /// Read the old segments at most this fast, in bytes per second (`None`: as fast
    /// as the disk goes), leaving the disk's time to the appends that go on meanwhile.
    pub rewrite_bytes_per_second_max: Option<u64>,
    /// While this holds `true`, the scavenge waits before its next read (within a
    /// window of one MiB): a benchmark alternates it to compare appends beside the
    /// scavenge with appends beside nothing, moments apart.
    pub paused: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// How far a scavenge is, reported after each segment it examined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScavengeProgress {
    /// Segments examined so far.
    pub segments_done: u64,
    /// Segments the scavenge will examine.
    pub segments_total: u64,
    /// Bytes of the segments rewritten so far, before their rewrite.
    pub bytes_rewritten: u64,
    /// Bytes given back so far (in a dry run: that would be).
    pub bytes_reclaimed: u64,
}

/// One segment a scavenge rewrote (or, in a dry run, would rewrite).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScavenge {
    /// The segment's number.
    pub segment: u64,
    /// Its size before, in bytes.
    pub bytes_before: u64,
    /// Its size after, in bytes.
    pub bytes_after: u64,
    /// Events removed from it.
    pub events_removed: u64,
}

/// What a scavenge did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScavengeReport {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Sealed segments whose index was read to look for removable events.
    pub segments_examined: u64,
    /// The segments rewritten, oldest first.
    pub segments: Vec<SegmentScavenge>,
    /// Time the scavenge took.
    pub elapsed: Duration,
}

impl ScavengeReport {
    /// Segments rewritten.
    pub fn segments_rewritten(&self) -> u64 {
        self.segments.len() as u64
    }

    /// Events removed.
    pub fn events_removed(&self) -> u64 {
        self.segments.iter().map(|s| s.events_removed).sum()
    }

    /// Bytes of the rewritten segments before the scavenge.
    pub fn bytes_before(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes_before).sum()
    }

    /// Bytes of the rewritten segments after it.
    pub fn bytes_after(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes_after).sum()
    }

    /// Bytes given back to the file system.
    pub fn bytes_reclaimed(&self) -> u64 {
        self.bytes_before().saturating_sub(self.bytes_after())
    }

    /// The report in the terms every backend's scavenge uses.
    pub fn summary(&self) -> eventfold_core::ScavengeSummary {
        eventfold_core::ScavengeSummary {
            dry_run: self.dry_run,
            files_examined: self.segments_examined,
            files_rewritten: self.segments_rewritten(),
            events_removed: self.events_removed(),
            bytes_before: self.bytes_before(),
            bytes_after: self.bytes_after(),
            elapsed: self.elapsed,
        }
    }

    /// Bytes of segments rewritten per second.
    pub fn rewrite_bytes_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.bytes_before() as f64 / seconds
        } else {
            0.0
        }
    }
}

/// Bytes read from the old segment at a time.
const READ_CHUNK_BYTES: usize = 1024 * 1024;
/// Bytes gathered before they are written to the new segment.
const WRITE_CHUNK_BYTES: usize = 256 * 1024;
/// Bytes of the new segment written between two fsyncs of it.
const SYNC_EVERY_BYTES: u64 = 256 * 1024;
/// The largest list of removed events one gap record carries; a longer run is split.
const GAP_LIST_BYTES_MAX: usize = 1024 * 1024;

/// Runs a scavenge over the segments of `shared`. `seal(latest)` asks the writer to
/// seal the active segment if it holds position `latest`, brings the mark up to date,
/// and answers the number of the active segment.
pub(crate) fn scavenge(
    shared: &Shared,
    seal: impl FnOnce(Option<u64>) -> Result<u64>,
    keep_from: &dyn Fn(&str) -> u64,
    options: &ScavengeOptions,
    progress: &mut dyn FnMut(&ScavengeProgress),
) -> Result<ScavengeReport> {
    let started = Instant::now();
    let (candidates, latest) = candidates(shared, keep_from);
    // A dry run changes nothing, the active segment included: it reads that one up to
    // its committed length as if it were sealed.
    let active = if options.dry_run {
        shared.index().segments.last().map_or(0, |s| s.number + 1)
    } else {
        seal(latest)?
    };
    let segments: Vec<u64> = candidates.into_iter().filter(|&n| n < active).collect();
    let mut report = ScavengeReport {
        dry_run: options.dry_run,
        ..ScavengeReport::default()
    };
    let mut done = ScavengeProgress {
        segments_total: segments.len() as u64,
        ..ScavengeProgress::default()
    };
    let mut pass = Pass {
        keep_from,
        dry_run: options.dry_run,
        audit: format!(
            "scavenged at {}: below the retention cut",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        pacer: Pacer::new(options),
    };
    for number in segments {
        if shared.closing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let Some((file, len)) = segment_file(shared, number) else {
            continue;
        };
        report.segments_examined += 1;
        let rewritten = scavenge_segment(shared, number, &file, len, &mut pass)?;
        done.segments_done += 1;
        if let Some(segment) = rewritten {
            done.bytes_rewritten += segment.bytes_before;
            done.bytes_reclaimed += segment.bytes_before.saturating_sub(segment.bytes_after);
            if !options.dry_run {
                shared.stats.record_scavenged(&segment);
            }
            report.segments.push(segment);
        }
        progress(&done);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The segments that may hold an event below its stream's cut (each stream's removable
/// revisions span from its first event to the one before its cut), and the latest
/// such position.
fn candidates(shared: &Shared, keep_from: &dyn Fn(&str) -> u64) -> (Vec<u64>, Option<u64>) {
    let index = shared.index();
    let firsts: Vec<u64> = index.segments.iter().map(|s| s.first_position).collect();
    let segment_of = |position: u64| firsts.partition_point(|&f| f <= position).saturating_sub(1);
    // +1 where a span starts, -1 after it ends: one pass marks every covered segment.
    let mut spans = vec![0i64; firsts.len() + 1];
    let mut latest: Option<u64> = None;
    for (stream, positions) in &index.streams {
        let cut = keep_from(stream).min(positions.len() as u64) as usize;
        if cut == 0 {
            continue;
        }
        let (first, last) = (positions.at(0), positions.at(cut - 1));
        spans[segment_of(first)] += 1;
        spans[segment_of(last) + 1] -= 1;
        latest = latest.max(Some(last));
    }
    let mut covered = 0;
    let mut segments = Vec::new();
    for (i, segment) in index.segments.iter().enumerate() {
        covered += spans[i];
        if covered > 0 {
            segments.push(segment.number);
        }
    }
    (segments, latest)
}

fn segment_file(shared: &Shared, number: u64) -> Option<(Arc<dyn StorageFile>, u64)> {
    let index = shared.index();
    index
        .segments
        .iter()
        .find(|s| s.number == number)
        .map(|s| (s.file.clone(), s.len))
}

fn corrupted(file: &str, offset: u64, reason: impl Into<String>) -> Error {
    Error::Corrupted {
        file: file.to_string(),
        offset,
        reason: reason.into(),
    }
}

/// Rewrites one sealed segment if it holds an event below its stream's cut; `None`
/// when there is nothing to remove.
fn scavenge_segment(
    shared: &Shared,
    number: u64,
    file: &Arc<dyn StorageFile>,
    len: u64,
    pass: &mut Pass<'_>,
) -> Result<Option<SegmentScavenge>> {
    let Pass {
        keep_from,
        dry_run,
        audit,
        pacer,
    } = pass;
    let (keep_from, dry_run, audit) = (*keep_from, *dry_run, audit.as_str());
    let storage = shared.storage.as_ref();
    let dir = &shared.segments_dir;
    let name = format!("{number:010}.seg");
    let old = load_index(storage, dir, number, file.as_ref(), &name, len)?;
    let cuts: Vec<u64> = old.streams.iter().map(|s| keep_from(s)).collect();
    let removable =
        |stream: u32, revision: u64| cuts.get(stream as usize).is_some_and(|&cut| revision < cut);
    if !old
        .entries
        .iter()
        .any(|e| e.is_event() && removable(e.stream, e.revision))
    {
        return Ok(None);
    }

    let tmp = segment_path(dir, number).with_extension("seg.scavenge.tmp");
    let out_file = if dry_run {
        None
    } else {
        let _ = storage.remove(&tmp);
        Some(
            storage
                .open(&tmp, OpenMode::CreateNew)
                .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?,
        )
    };
    let mut out = Output::new(out_file, tmp.display().to_string());
    out.push_committed(&encode_segment_header(number, old.first_position))?;
    let mut reader = Reader::new(file.as_ref(), &name, len, pacer);
    let mut run: Option<Gap> = None;
    let mut removed: FastMap<Uuid, u64> = FastMap::default();
    let mut cursor = SEGMENT_HEADER_BYTES;
    let mut position = old.first_position;
    for entry in &old.entries {
        if !entry.is_event() {
            // An earlier gap's position: its record lies between two events' records
            // and is copied with the bytes there.
            position += entry.positions();
            continue;
        }
        let offset = u64::from(entry.offset);
        if offset > cursor {
            out.gap(run.take(), audit)?;
            copy_between(&mut reader, &mut out, cursor, offset)?;
        }
        let record = reader.record(offset)?;
        let header = decode_header(record).map_err(|e| corrupted(&name, offset, e.to_string()))?;
        if header.position != position || header.revision != entry.revision || header.gap {
            return Err(corrupted(
                &name,
                offset,
                format!("the record does not match its index entry (position {position})"),
            ));
        }
        let record_len = record.len() as u64;
        if removable(entry.stream, entry.revision) {
            let stream = old.streams[entry.stream as usize].to_string();
            let extends = run.as_ref().is_some_and(|g| {
                g.first + g.count == position && list_bytes(g) < GAP_LIST_BYTES_MAX
            });
            if !extends {
                out.gap(run.take(), audit)?;
            }
            let gap = run.get_or_insert_with(|| Gap {
                first: position,
                count: 0,
                recorded_at_micros: 0,
                reason: String::new(),
                lost: Vec::new(),
            });
            gap.count += 1;
            gap.lost.push(LostEvent {
                position,
                stream,
                revision: entry.revision,
            });
            removed.insert(entry.id, position);
        } else {
            out.gap(run.take(), audit)?;
            let commit = header.commit;
            out.push_record(record, commit)?;
        }
        cursor = offset + record_len;
        position += 1;
    }
    if len > cursor {
        out.gap(run.take(), audit)?;
        copy_between(&mut reader, &mut out, cursor, len)?;
    }
    out.gap(run.take(), audit)?;
    let bytes_after = out.len();
    let report = SegmentScavenge {
        segment: number,
        bytes_before: len,
        bytes_after,
        events_removed: removed.len() as u64,
    };
    let Some(new_file) = out.finish()? else {
        return Ok(Some(report));
    };
    drop(new_file);

    // Read the new file back as an open will, before it replaces anything.
    let scan = scan_written(storage, &tmp, number)?;
    if scan.stop.is_some()
        || scan.index.len != bytes_after
        || scan.file_len != bytes_after
        || scan.index.end_position() != old.end_position()
    {
        return Err(Error::Backend(format!(
            "the scavenged segment {number} does not read back intact; nothing was replaced"
        )));
    }
    let new_index = scan.index;
    let index_tmp = index_path(dir, number).with_extension("idx.scavenge.tmp");
    let _ = storage.remove(&index_tmp);
    write_synced(storage, &index_tmp, &new_index.encode(number))?;
    sync_dir(storage, dir)?;

    // The swap: from here on, a failure leaves the directory in a state only an open
    // sorts out, so the store stops writing.
    let swapped = swap(storage, dir, number, &tmp, &index_tmp);
    let new_file = match swapped {
        Ok(file) => file,
        Err(error) => {
            shared.poison(format!("scavenge of segment {number} failed: {error}"));
            return Err(error);
        }
    };
    install(shared, number, new_file, &new_index, &removed)?;
    Ok(Some(report))
}

/// Bytes of the list of removed events a gap record would carry.
fn list_bytes(gap: &Gap) -> usize {
    gap.lost.iter().map(|l| 18 + l.stream.len()).sum()
}

/// Removes the old index, renames the new segment and then the new index into place,
/// syncing the directory after each step; returns the new segment opened for reading.
fn swap(
    storage: &dyn Storage,
    dir: &Path,
    number: u64,
    segment_tmp: &Path,
    index_tmp: &Path,
) -> Result<Arc<dyn StorageFile>> {
    let index = index_path(dir, number);
    match storage.remove(&index) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", index.display()), e)),
    }
    sync_dir(storage, dir)?;
    let segment = segment_path(dir, number);
    storage
        .rename(segment_tmp, &segment)
        .map_err(|e| Error::io(format!("renaming {}", segment_tmp.display()), e))?;
    sync_dir(storage, dir)?;
    // A cold segment is local again: its marker goes (opening the store would remove
    // it too, since the local file wins).
    let marker = crate::cold::marker_path(dir, number);
    match storage.remove(&marker) {
        Ok(()) => sync_dir(storage, dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", marker.display()), e)),
    }
    storage
        .rename(index_tmp, &index)
        .map_err(|e| Error::io(format!("renaming {}", index_tmp.display()), e))?;
    sync_dir(storage, dir)?;
    storage
        .open(&segment, OpenMode::Read)
        .map_err(|e| Error::io(format!("opening {}", segment.display()), e))
}

/// Points the in-memory index at the new segment and takes the removed events' ids
/// out of the idempotency window.
fn install(
    shared: &Shared,
    number: u64,
    file: Arc<dyn StorageFile>,
    new_index: &SegmentIndex,
    removed: &FastMap<Uuid, u64>,
) -> Result<()> {
    let mut offsets = Vec::new();
    for entry in &new_index.entries {
        match entry.stream {
            NO_STREAM if !entry.is_event() => {
                let count = usize::try_from(entry.revision).unwrap_or(usize::MAX);
                offsets.resize(offsets.len().saturating_add(count), NO_OFFSET);
            }
            _ => offsets.push(entry.offset),
        }
    }
    let mut index = shared.index.write().unwrap_or_else(|p| p.into_inner());
    let index = &mut *index;
    let Some(segment) = index.segments.iter_mut().find(|s| s.number == number) else {
        return Err(Error::Backend(format!(
            "segment {number} left the index during its scavenge"
        )));
    };
    if segment.offsets.len() != offsets.len() {
        let reason = format!(
            "the scavenged segment {number} accounts for {} positions where the index has {}",
            offsets.len(),
            segment.offsets.len()
        );
        shared.poison(reason.clone());
        return Err(Error::Backend(reason));
    }
    segment.file = file;
    segment.cold = false;
    segment.offsets = offsets;
    segment.len = new_index.len;
    for (id, position) in removed {
        if index.ids.get(id) == Some(position) {
            index.ids.remove(id);
        }
    }
    if let Some((_, ids)) = index.id_segments.iter_mut().find(|(n, _)| *n == number) {
        ids.retain(|id| !removed.contains_key(id));
    }
    Ok(())
}

/// A sealed segment's index: its file, or a scan when the file is missing or stale.
fn load_index(
    storage: &dyn Storage,
    dir: &Path,
    number: u64,
    file: &dyn StorageFile,
    name: &str,
    len: u64,
) -> Result<SegmentIndex> {
    if let Some(index) =
        read_index_file(storage, &index_path(dir, number), number).filter(|i| i.len == len)
    {
        return Ok(index);
    }
    let committed = CommittedPrefix { file, len };
    let scan = scan_segment(&committed, name, number, |_, _| {})?;
    match scan.stop {
        Some(stop) => Err(corrupted(name, stop.offset, stop.why.to_string())),
        None if scan.index.len != len => Err(corrupted(
            name,
            scan.index.len,
            "the sealed segment does not end with a commit",
        )),
        None => Ok(scan.index),
    }
}

fn copy_between(reader: &mut Reader<'_>, out: &mut Output, from: u64, to: u64) -> Result<()> {
    let mut at = from;
    while at < to {
        let n = (to - at).min(READ_CHUNK_BYTES as u64) as usize;
        let bytes = reader.bytes(at, n)?;
        out.push_committed(bytes)?;
        at += n as u64;
    }
    Ok(())
}

fn sync_dir(storage: &dyn Storage, dir: &Path) -> Result<()> {
    storage
        .sync_dir(dir)
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

fn write_synced(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> Result<()> {
    let file = storage
        .open(path, OpenMode::CreateNew)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    file.write_all_at(bytes, 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The committed part of a segment, read-only: the active segment may hold written
/// bytes past what was published, which a dry run must not count.
struct CommittedPrefix<'a> {
    file: &'a dyn StorageFile,
    len: u64,
}

impl StorageFile for CommittedPrefix<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let room = self.len.saturating_sub(offset).min(buf.len() as u64) as usize;
        if room == 0 {
            return Ok(0);
        }
        self.file.read_at(&mut buf[..room], offset)
    }

    fn write_at(&self, _: &[u8], _: u64) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    fn set_len(&self, _: u64) -> std::io::Result<()> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    fn len(&self) -> std::io::Result<u64> {
        Ok(self.len)
    }
}

/// What every segment of one scavenge is rewritten with.
struct Pass<'a> {
    keep_from: &'a dyn Fn(&str) -> u64,
    dry_run: bool,
    /// The reason the gap records of this scavenge give.
    audit: String,
    pacer: Pacer,
}

/// Keeps a scavenge's reading at or below a rate: after each window read, it sleeps
/// until the bytes read so far are due at that rate (counted from the scavenge's
/// start, so a slow stretch is not paid back with a burst beyond the pace).
struct Pacer {
    bytes_per_second: Option<u64>,
    paused: Option<Arc<std::sync::atomic::AtomicBool>>,
    started: Instant,
    bytes: u64,
}

impl Pacer {
    fn new(options: &ScavengeOptions) -> Self {
        Pacer {
            bytes_per_second: options
                .rewrite_bytes_per_second_max
                .filter(|&rate| rate > 0),
            paused: options.paused.clone(),
            started: Instant::now(),
            bytes: 0,
        }
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(paused) = &self.paused
            && paused.load(std::sync::atomic::Ordering::Relaxed)
        {
            while paused.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            // The pause is not time the pace may make up.
            self.started = Instant::now();
            self.bytes = 0;
        }
        let Some(rate) = self.bytes_per_second else {
            return;
        };
        self.bytes += bytes;
        let due = std::time::Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        } else {
            // Behind the pace: start counting again from here, so that the time lost
            // is not made up with a burst.
            self.started = Instant::now();
            self.bytes = 0;
        }
    }
}

/// Reads the old segment forward through a window of a few MiB.
struct Reader<'a> {
    file: &'a dyn StorageFile,
    name: &'a str,
    len: u64,
    buffer: Vec<u8>,
    start: u64,
    pacer: &'a mut Pacer,
}

impl<'a> Reader<'a> {
    fn new(file: &'a dyn StorageFile, name: &'a str, len: u64, pacer: &'a mut Pacer) -> Self {
        Reader {
            file,
            name,
            len,
            buffer: Vec::new(),
            start: 0,
            pacer,
        }
    }

    /// The `n` bytes at `offset`, which must lie within the committed length.
    fn bytes(&mut self, offset: u64, n: usize) -> Result<&[u8]> {
        let end = offset + n as u64;
        if end > self.len {
            return Err(corrupted(
                self.name,
                offset,
                "a record runs past the segment's end",
            ));
        }
        let inside = offset >= self.start && end <= self.start + self.buffer.len() as u64;
        if !inside {
            let want = n.max(READ_CHUNK_BYTES).min((self.len - offset) as usize);
            self.buffer.resize(want, 0);
            let read = read_up_to(self.file, &mut self.buffer, offset, self.name)?;
            self.buffer.truncate(read);
            self.start = offset;
            self.pacer.advance(read as u64);
            if read < n {
                return Err(corrupted(
                    self.name,
                    offset + read as u64,
                    "file ends before a committed record",
                ));
            }
        }
        let at = (offset - self.start) as usize;
        Ok(&self.buffer[at..at + n])
    }

    /// The whole record at `offset`.
    fn record(&mut self, offset: u64) -> Result<&[u8]> {
        let frame = self.bytes(offset, FRAME_BYTES)?;
        let body_len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        self.bytes(offset, FRAME_BYTES + body_len)
    }
}

/// The new segment being written (or, in a dry run, only measured).
struct Output {
    file: Option<Arc<dyn StorageFile>>,
    name: String,
    buffer: Vec<u8>,
    flushed: u64,
    /// Where in `buffer` the last record starts when it is an event without `COMMIT`
    /// (a transaction goes on): a gap record after it must end the transaction there.
    open_record: Option<usize>,
}

impl Output {
    fn new(file: Option<Arc<dyn StorageFile>>, name: String) -> Self {
        Output {
            file,
            name,
            buffer: Vec::with_capacity(WRITE_CHUNK_BYTES),
            flushed: 0,
            open_record: None,
        }
    }

    fn len(&self) -> u64 {
        self.flushed + self.buffer.len() as u64
    }

    fn push_record(&mut self, record: &[u8], commit: bool) -> Result<()> {
        self.open_record = (!commit).then_some(self.buffer.len());
        self.buffer.extend_from_slice(record);
        if commit {
            self.flush_if_full()?;
        }
        Ok(())
    }

    /// Bytes that end with a complete transaction (a header, gap records).
    fn push_committed(&mut self, bytes: &[u8]) -> Result<()> {
        self.open_record = None;
        self.buffer.extend_from_slice(bytes);
        self.flush_if_full()
    }

    /// Writes `gap` (if any) as a gap record, ending an open transaction first.
    fn gap(&mut self, gap: Option<Gap>, audit: &str) -> Result<()> {
        let Some(mut gap) = gap else {
            return Ok(());
        };
        if let Some(at) = self.open_record.take() {
            set_commit(&mut self.buffer[at..]);
        }
        gap.recorded_at_micros = chrono::Utc::now().timestamp_micros();
        gap.reason = audit.to_string();
        gap.encode(&mut self.buffer);
        self.flush_if_full()
    }

    fn flush_if_full(&mut self) -> Result<()> {
        if self.buffer.len() >= WRITE_CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if let Some(file) = &self.file {
            file.write_all_at(&self.buffer, self.flushed)
                .map_err(|e| Error::io(format!("writing {}", self.name), e))?;
            let synced_before = self.flushed / SYNC_EVERY_BYTES;
            let synced_after = (self.flushed + self.buffer.len() as u64) / SYNC_EVERY_BYTES;
            if synced_after > synced_before {
                // Written back a little at a time, so that the final fsync is short and
                // the appenders' fsyncs never queue behind a whole segment's.
                file.sync_data()
                    .map_err(|e| Error::io(format!("syncing {}", self.name), e))?;
            }
        }
        self.flushed += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Writes what is left and syncs the file; `None` in a dry run.
    fn finish(mut self) -> Result<Option<Arc<dyn StorageFile>>> {
        if self.open_record.is_some() {
            return Err(Error::Backend(format!(
                "{} would end inside a transaction",
                self.name
            )));
        }
        self.flush()?;
        let Some(file) = self.file.take() else {
            return Ok(None);
        };
        file.sync_data()
            .map_err(|e| Error::io(format!("syncing {}", self.name), e))?;
        Ok(Some(file))
    }
}
