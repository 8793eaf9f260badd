//! Segment files and their index files (layout in `docs/log-format.md`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use eventfold_core::{Error, Result};
use uuid::Uuid;

use crate::index::FastMap;
use crate::io::{LockGuard, OpenMode, Storage, StorageFile};
use crate::record::{Gap, Invalid, RECORD_BYTES_MIN, RecordHeader, decode_header, plausible_len};

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"EVFOLDSG";
pub(crate) const INDEX_MAGIC: &[u8; 8] = b"EVFOLDIX";
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 32;
const INDEX_HEADER_BYTES: usize = 48;
const INDEX_ENTRY_BYTES: usize = 32;

/// Takes the data directory's lock (the `LOCK` file): `Error::Locked` when another
/// process (or another open store) holds it.
pub(crate) fn lock_data_dir(storage: &dyn Storage, dir: &Path) -> Result<LockGuard> {
    let path = dir.join("LOCK");
    storage.lock(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Error::Locked {
                path: dir.display().to_string(),
                holder: lock_holder_of(storage, &path),
            }
        } else {
            Error::io(format!("locking {}", dir.display()), e)
        }
    })
}

/// What the holder of a lock file wrote in it (a line naming its process), if
/// anything readable.
fn lock_holder_of(storage: &dyn Storage, path: &Path) -> Option<String> {
    let file = storage.open(path, OpenMode::Read).ok()?;
    let mut text = vec![0; 512];
    let read = file.read_at(&mut text, 0).ok()?;
    text.truncate(read);
    let text = String::from_utf8(text).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// The names in a data directory's `segments/`, for the tools that read an existing
/// store (a missing directory means `dir` holds no store).
pub(crate) fn list_segments_dir(storage: &dyn Storage, dir: &Path) -> Result<Vec<String>> {
    let segments_dir = dir.join("segments");
    storage.list(&segments_dir).map_err(|e| {
        Error::io(
            format!(
                "listing {} (is this an eventfold data directory?)",
                segments_dir.display()
            ),
            e,
        )
    })
}

pub(crate) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:010}.seg"))
}

pub(crate) fn index_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:010}.idx"))
}

/// Replaces the small file `dir/name` with `bytes` durably: a temporary file beside it
/// (`name.tmp`, removed by a read-write open if a crash leaves it), fsync, rename,
/// directory fsync. A crash leaves the old file or the new one, whole.
pub(crate) fn replace_durably(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let _ = storage.remove(&tmp);
    let file = storage
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    file.write_all_at(bytes, 0)
        .and_then(|()| file.sync_data())
        .and_then(|()| storage.rename(&tmp, &path))
        .and_then(|()| storage.sync_dir(dir))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// A small text file's body followed by `check <CRC-32C of the body>`: a file cut
/// short or with a flipped bit is refused instead of read as other content.
pub(crate) fn with_check_line(body: &str) -> String {
    format!("{body}check {:08x}\n", crc32c::crc32c(body.as_bytes()))
}

/// The body of a text written by [`with_check_line`], when its check line matches
/// (compared as written: a flipped case bit of the hexadecimal is damage too).
pub(crate) fn checked_body(text: &str) -> Option<&str> {
    let at = text.strip_suffix('\n')?.rfind('\n')? + 1;
    let (body, check) = text.split_at(at);
    (check == format!("check {:08x}\n", crc32c::crc32c(body.as_bytes()))).then_some(body)
}

/// Parses `0000000012.seg` into 12.
pub(crate) fn parse_name(name: &str, extension: &str) -> Option<u64> {
    let stem = name.strip_suffix(extension)?.strip_suffix('.')?;
    (stem.len() == 10 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

pub(crate) fn encode_segment_header(number: u64, first_position: u64) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&number.to_le_bytes());
    h[24..32].copy_from_slice(&first_position.to_le_bytes());
    let crc = crc32c::crc32c(&h[16..32]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Returns the first position recorded in a segment header.
pub(crate) fn decode_segment_header(h: &[u8], number: u64) -> std::result::Result<u64, String> {
    if h.len() < SEGMENT_HEADER_BYTES as usize {
        return Err("segment header is incomplete".into());
    }
    if &h[0..8] != SEGMENT_MAGIC {
        return Err("not an eventfold segment (bad magic)".into());
    }
    let version = u32::from_le_bytes(h[8..12].try_into().unwrap_or_default());
    if version != FORMAT_VERSION {
        return Err(format!("unsupported segment format version {version}"));
    }
    if u32::from_le_bytes(h[12..16].try_into().unwrap_or_default()) != crc32c::crc32c(&h[16..32]) {
        return Err("segment header checksum mismatch".into());
    }
    let recorded = u64::from_le_bytes(h[16..24].try_into().unwrap_or_default());
    if recorded != number {
        return Err(format!("segment header names segment {recorded}"));
    }
    Ok(u64::from_le_bytes(h[24..32].try_into().unwrap_or_default()))
}

/// Offset of an index entry whose position holds no readable event.
pub(crate) const NO_OFFSET: u32 = u32::MAX;
/// Stream number of an index entry that covers a run of positions nobody knows.
pub(crate) const NO_STREAM: u32 = u32::MAX;

/// Index of one event of a segment, or of positions a gap record left empty:
/// - an event: `offset` of its record, its `stream` number, `revision` and `id`;
/// - a lost event (a repair gave it up): `offset` is [`NO_OFFSET`], `stream` and
///   `revision` are what it held, so the stream's revisions still count it;
/// - a run of unknown positions: `offset` [`NO_OFFSET`], `stream` [`NO_STREAM`], and
///   `revision` holds how many positions the run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub offset: u32,
    pub stream: u32,
    pub revision: u64,
    pub id: Uuid,
}

impl IndexEntry {
    /// A run of `count` positions that hold no event of any known stream.
    pub(crate) fn unknown_run(count: u64) -> Self {
        IndexEntry {
            offset: NO_OFFSET,
            stream: NO_STREAM,
            revision: count,
            id: Uuid::nil(),
        }
    }

    /// Whether the entry points at an event's record.
    pub(crate) fn is_event(&self) -> bool {
        self.offset != NO_OFFSET
    }

    /// The positions the entry accounts for.
    pub(crate) fn positions(&self) -> u64 {
        if self.stream == NO_STREAM {
            self.revision
        } else {
            1
        }
    }
}

/// Index of a whole segment: what `open` needs without reading the segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SegmentIndex {
    pub first_position: u64,
    /// Bytes of the segment covered (header and records).
    pub len: u64,
    pub streams: Vec<Arc<str>>,
    pub entries: Vec<IndexEntry>,
}

impl SegmentIndex {
    /// The position after the last one the segment accounts for.
    pub(crate) fn end_position(&self) -> u64 {
        self.first_position + self.entries.iter().map(IndexEntry::positions).sum::<u64>()
    }

    /// The number of a stream in the segment's table, adding the name if it is new.
    pub(crate) fn stream_number(
        &mut self,
        numbers: &mut FastMap<Arc<str>, u32>,
        name: &str,
    ) -> u32 {
        if let Some(&n) = numbers.get(name) {
            return n;
        }
        let n = self.streams.len() as u32;
        let name: Arc<str> = Arc::from(name);
        self.streams.push(name.clone());
        numbers.insert(name, n);
        n
    }

    pub(crate) fn encode(&self, number: u64) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(INDEX_HEADER_BYTES + self.entries.len() * INDEX_ENTRY_BYTES);
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // CRC of everything after the first 16 bytes
        out.extend_from_slice(&number.to_le_bytes());
        out.extend_from_slice(&self.first_position.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&(self.streams.len() as u32).to_le_bytes());
        for name in &self.streams {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        for e in &self.entries {
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.stream.to_le_bytes());
            out.extend_from_slice(&e.revision.to_le_bytes());
            out.extend_from_slice(e.id.as_bytes());
        }
        let crc = crc32c::crc32c(&out[16..]);
        out[12..16].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes an index file; any inconsistency is an error (the caller rebuilds).
    pub(crate) fn decode(b: &[u8], number: u64) -> std::result::Result<Self, String> {
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default());
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default());
        if b.len() < INDEX_HEADER_BYTES + 4 || &b[0..8] != INDEX_MAGIC {
            return Err("not an eventfold index file".into());
        }
        if u32_at(8) != FORMAT_VERSION {
            return Err("unsupported index format version".into());
        }
        if u32_at(12) != crc32c::crc32c(&b[16..]) {
            return Err("index checksum mismatch".into());
        }
        if u64_at(16) != number {
            return Err("index names another segment".into());
        }
        let first_position = u64_at(24);
        let count = u64_at(32) as usize;
        let len = u64_at(40);
        let stream_count = u32_at(48) as usize;
        let mut at = INDEX_HEADER_BYTES + 4;
        let mut streams = Vec::with_capacity(stream_count.min(b.len()));
        for _ in 0..stream_count {
            if at + 2 > b.len() {
                return Err("index stream table is cut short".into());
            }
            let n = u16::from_le_bytes([b[at], b[at + 1]]) as usize;
            at += 2;
            let name = b
                .get(at..at + n)
                .and_then(|s| std::str::from_utf8(s).ok())
                .ok_or("index stream name is damaged")?;
            streams.push(Arc::from(name));
            at += n;
        }
        if Some(b.len() - at) != count.checked_mul(INDEX_ENTRY_BYTES) {
            return Err("index entry table has the wrong size".into());
        }
        let mut entries = Vec::with_capacity(count);
        for chunk in b[at..].chunks_exact(INDEX_ENTRY_BYTES) {
            let mut id = [0; 16];
            id.copy_from_slice(&chunk[16..32]);
            let entry = IndexEntry {
                offset: u32::from_le_bytes(chunk[0..4].try_into().unwrap_or_default()),
                stream: u32::from_le_bytes(chunk[4..8].try_into().unwrap_or_default()),
                revision: u64::from_le_bytes(chunk[8..16].try_into().unwrap_or_default()),
                id: Uuid::from_bytes(id),
            };
            let run = entry.stream == NO_STREAM && !entry.is_event() && entry.revision > 0;
            if !run && entry.stream as usize >= streams.len() {
                return Err("index entry names an unknown stream".into());
            }
            entries.push(entry);
        }
        Ok(SegmentIndex {
            first_position,
            len,
            streams,
            entries,
        })
    }
}

/// The outcome of reading a segment's records from the start.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Index of every event up to the last intact `COMMIT` record.
    pub index: SegmentIndex,
    /// Where the file's bytes end, not counting zeros that follow the last record
    /// readable to the file's end: room allocated ahead of the writes (see
    /// [`LogOptions::preallocate_bytes`](crate::LogOptions::preallocate_bytes)), never
    /// a torn write.
    pub file_len: u64,
    /// Why scanning stopped before the end of the file, if it did, and the position the
    /// record there should have held.
    pub stop: Option<Stop>,
}

/// Where and why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stop {
    pub offset: u64,
    /// The position the next record was expected to hold.
    pub position: u64,
    pub why: Invalid,
}

/// Bytes read at a time while scanning.
const SCAN_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Scans a segment file just written beside a live one (a repair's or a scavenge's
/// `*.tmp`), as an open will read it, before it replaces anything.
pub(crate) fn scan_written(storage: &dyn Storage, tmp: &Path, number: u64) -> Result<Scan> {
    let written = storage
        .open(tmp, OpenMode::Read)
        .map_err(|e| Error::io(format!("opening {}", tmp.display()), e))?;
    scan_segment(
        written.as_ref(),
        &tmp.display().to_string(),
        number,
        |_, _| {},
    )
}

/// Reads a segment from its header to the end of its valid records, calling
/// `on_record` for each record that belongs to a committed transaction (gap records
/// included: their header says `gap`).
pub(crate) fn scan_segment(
    file: &dyn StorageFile,
    file_name: &str,
    number: u64,
    mut on_record: impl FnMut(&RecordHeader, &str),
) -> Result<Scan> {
    let file_len = file
        .len()
        .map_err(|e| Error::io(format!("reading {file_name}"), e))?;
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    let read = read_up_to(file, &mut header, 0, file_name)?;
    let first_position =
        decode_segment_header(&header[..read], number).map_err(|reason| Error::Corrupted {
            file: file_name.to_string(),
            offset: 0,
            reason,
        })?;

    let mut index = SegmentIndex {
        first_position,
        len: SEGMENT_HEADER_BYTES,
        ..SegmentIndex::default()
    };
    let mut stream_numbers: FastMap<Arc<str>, u32> = FastMap::default();
    // Records of the transaction being read, kept until its COMMIT record arrives.
    let mut pending: Vec<(RecordHeader, String, u64, Option<Gap>)> = Vec::new();
    let mut next_position = first_position;
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut buffer: Vec<u8> = Vec::new();
    let mut buffer_start = offset;
    let mut stop = None;
    loop {
        let at = (offset - buffer_start) as usize;
        let stopped = |why| {
            Some(Stop {
                offset,
                position: next_position,
                why,
            })
        };
        let decoded = decode_header(&buffer[at..]);
        let header = match decoded {
            Ok(h) => h,
            Err(Invalid::Truncated) if buffer_start + (buffer.len() as u64) < file_len => {
                // Need more bytes: keep the unread part and read the next chunk.
                buffer.drain(..at);
                buffer_start = offset;
                let want = SCAN_CHUNK_BYTES.max(buffer.len() * 2);
                let old = buffer.len();
                buffer.resize(old + want, 0);
                let n = read_up_to(file, &mut buffer[old..], offset + old as u64, file_name)?;
                buffer.truncate(old + n);
                continue;
            }
            Err(Invalid::Truncated) => {
                if offset < file_len {
                    stop = stopped(Invalid::Truncated);
                }
                break;
            }
            Err(damaged) => {
                stop = stopped(damaged);
                break;
            }
        };
        if header.position != next_position {
            stop = stopped(Invalid::Damaged(format!(
                "record holds position {} where {} was expected",
                header.position, next_position
            )));
            break;
        }
        let record = &buffer[at..at + header.len];
        let gap = if header.gap {
            if !pending.is_empty() {
                stop = stopped(Invalid::Damaged("a gap record inside a transaction".into()));
                break;
            }
            match Gap::decode(&header, record) {
                Ok(gap) => Some(gap),
                Err(damaged) => {
                    stop = stopped(damaged);
                    break;
                }
            }
        } else {
            None
        };
        let stream = match header.stream(record) {
            Ok(name) => name.to_string(),
            Err(damaged) => {
                stop = stopped(damaged);
                break;
            }
        };
        next_position += header.count();
        let commit = header.commit;
        let len = header.len as u64;
        pending.push((header, stream, offset, gap));
        offset += len;
        if commit {
            for (h, name, at, gap) in pending.drain(..) {
                match &gap {
                    Some(gap) => index_gap(&mut index, &mut stream_numbers, gap),
                    None => {
                        let stream = index.stream_number(&mut stream_numbers, &name);
                        index.entries.push(IndexEntry {
                            offset: at as u32,
                            stream,
                            revision: h.revision,
                            id: h.id,
                        });
                    }
                }
                on_record(&h, &name);
            }
            index.len = offset;
        }
    }
    let mut file_len = file_len;
    if let Some(at) = stop.as_ref().map(|s| s.offset)
        && only_zeros(file, at, file_len, file_name)?
    {
        file_len = at;
        stop = None;
    }
    Ok(Scan {
        file_len,
        stop,
        index,
    })
}

/// Whether every byte is zero, 64 at a time (a byte-by-byte test took a reopen about
/// 5 instructions per byte of allocated room).
pub(crate) fn all_zero(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(64);
    blocks
        .by_ref()
        .all(|block| block.iter().fold(0u8, |any, &b| any | b) == 0)
        && blocks.remainder().iter().all(|&b| b == 0)
}

/// Whether every byte of the file from `from` to `to` is zero.
fn only_zeros(file: &dyn StorageFile, from: u64, to: u64, file_name: &str) -> Result<bool> {
    let mut chunk = vec![0u8; SCAN_CHUNK_BYTES.min(to.saturating_sub(from) as usize)];
    let mut at = from;
    while at < to {
        let n = chunk.len().min((to - at) as usize);
        let read = read_up_to(file, &mut chunk[..n], at, file_name)?;
        if read == 0 {
            break;
        }
        if !all_zero(&chunk[..read]) {
            return Ok(false);
        }
        at += read as u64;
    }
    Ok(true)
}

/// Adds a gap's positions to a segment index: an entry per lost event, and runs for
/// the positions between them.
pub(crate) fn index_gap(index: &mut SegmentIndex, numbers: &mut FastMap<Arc<str>, u32>, gap: &Gap) {
    let mut next = gap.first;
    for lost in &gap.lost {
        if lost.position > next {
            index
                .entries
                .push(IndexEntry::unknown_run(lost.position - next));
        }
        let stream = index.stream_number(numbers, &lost.stream);
        index.entries.push(IndexEntry {
            offset: NO_OFFSET,
            stream,
            revision: lost.revision,
            id: Uuid::nil(),
        });
        next = lost.position + 1;
    }
    let end = gap.first + gap.count;
    if end > next {
        index.entries.push(IndexEntry::unknown_run(end - next));
    }
}

/// Looks, from `from` to the end of the file, for intact records (checksum right) that
/// hold a position of at least `position_min`: proof that the bytes at `from` are
/// damage inside the log rather than the torn end of the last write. Calls `on_found`
/// with the position of each, in file order, and stops when it returns false. Offsets that cannot start a
/// record are skipped with a few byte comparisons, so a long run of zeros or noise
/// costs about one pass over it.
pub(crate) fn find_intact_after(
    file: &dyn StorageFile,
    file_name: &str,
    from: u64,
    position_min: u64,
    mut on_found: impl FnMut(u64) -> bool,
) -> Result<()> {
    let file_len = file
        .len()
        .map_err(|e| Error::io(format!("reading {file_name}"), e))?;
    let mut buffer_start = from;
    let mut buffer = vec![0u8; SCAN_CHUNK_BYTES.min((file_len.saturating_sub(from)) as usize)];
    let n = read_up_to(file, &mut buffer, buffer_start, file_name)?;
    buffer.truncate(n);
    let mut offset = from;
    while offset + RECORD_BYTES_MIN as u64 <= file_len {
        let mut at = (offset - buffer_start) as usize;
        if at + RECORD_BYTES_MIN > buffer.len() {
            buffer_start = offset;
            buffer.resize(SCAN_CHUNK_BYTES, 0);
            let n = read_up_to(file, &mut buffer, buffer_start, file_name)?;
            buffer.truncate(n);
            at = 0;
            if buffer.len() < RECORD_BYTES_MIN {
                break;
            }
        }
        let Some(len) = plausible_len(&buffer[at..]) else {
            offset += 1;
            continue;
        };
        if offset + len as u64 > file_len {
            offset += 1;
            continue;
        }
        let owned;
        let record: &[u8] = if at + len <= buffer.len() {
            &buffer[at..at + len]
        } else {
            owned = read_bytes(file, offset, len, file_name)?;
            &owned
        };
        match decode_header(record) {
            Ok(header)
                if header.position >= position_min
                    && header.stream(record).is_ok()
                    && header.event_type(record).is_ok() =>
            {
                if !on_found(header.position) {
                    return Ok(());
                }
                offset += header.len as u64;
            }
            _ => offset += 1,
        }
    }
    Ok(())
}

/// Reads as many bytes as the file has, up to `buf.len()`.
pub(crate) fn read_up_to(
    file: &dyn StorageFile,
    buf: &mut [u8],
    offset: u64,
    file_name: &str,
) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(format!("reading {file_name}"), e)),
        }
    }
    Ok(done)
}

/// Reads `len` bytes at `offset` into a shared buffer.
pub(crate) fn read_bytes(
    file: &dyn StorageFile,
    offset: u64,
    len: usize,
    file_name: &str,
) -> Result<Bytes> {
    let mut buf = vec![0u8; len];
    let n = read_up_to(file, &mut buf, offset, file_name)?;
    if n < len {
        return Err(Error::Corrupted {
            file: file_name.to_string(),
            offset: offset + n as u64,
            reason: "file ends before a committed record".into(),
        });
    }
    Ok(Bytes::from(buf))
}

// Segment files: creating, sealing (index files), cutting a torn tail.

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Bytes copied at a time when a tail is moved to `quarantine/`.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// The segment being appended to.
pub(crate) struct ActiveSegment {
    pub number: u64,
    pub file: Arc<dyn StorageFile>,
    /// Index of the segment so far, written out when it is sealed.
    pub index: SegmentIndex,
    pub stream_numbers: FastMap<Arc<str>, u32>,
}

impl ActiveSegment {
    pub(crate) fn new(number: u64, file: Arc<dyn StorageFile>, index: SegmentIndex) -> Self {
        let stream_numbers = index
            .streams
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        ActiveSegment {
            number,
            file,
            index,
            stream_numbers,
        }
    }
}

pub(crate) fn has_valid_header(file: &dyn StorageFile, number: u64, path: &Path) -> Result<bool> {
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    let n = read_up_to(file, &mut header, 0, &file_name(path))?;
    Ok(crate::segment::decode_segment_header(&header[..n], number).is_ok())
}

/// The largest index file read: far more than a segment of the largest size can need
/// (a 4 GiB segment of the smallest records), so a garbage length is an error rather
/// than an allocation of whatever the file claims.
const INDEX_FILE_BYTES_MAX: u64 = 4 << 30;

/// Reads and decodes an index file; `None` when it is missing, too large or damaged.
pub(crate) fn read_index_file(
    storage: &dyn Storage,
    path: &Path,
    number: u64,
) -> Option<SegmentIndex> {
    let file = storage.open(path, OpenMode::Read).ok()?;
    let len = file.len().ok()?;
    if len > INDEX_FILE_BYTES_MAX {
        tracing::warn!(file = %path.display(), len, "index file is impossibly large; ignored");
        return None;
    }
    let mut bytes = vec![0u8; usize::try_from(len).ok()?];
    file.read_exact_at(&mut bytes, 0).ok()?;
    SegmentIndex::decode(&bytes, number).ok()
}

/// Writes a segment's index file durably: temporary file, fsync, rename, directory fsync.
pub(crate) fn write_index(
    storage: &dyn Storage,
    segments_dir: &Path,
    number: u64,
    index: &SegmentIndex,
) -> Result<()> {
    let path = index_path(segments_dir, number);
    let tmp = path.with_extension("idx.tmp");
    let _ = storage.remove(&tmp);
    let bytes = index.encode(number);
    let file = storage
        .open(&tmp, OpenMode::CreateNew)
        .map_err(io_err(format!("creating {}", tmp.display())))?;
    file.write_all_at(&bytes, 0)
        .and_then(|()| file.sync_data())
        .map_err(io_err(format!("writing {}", tmp.display())))?;
    storage
        .rename(&tmp, &path)
        .map_err(io_err(format!("renaming {}", tmp.display())))?;
    storage
        .sync_dir(segments_dir)
        .map_err(io_err(format!("syncing {}", segments_dir.display())))
}

/// Creates segment `number` durably: file with header, fsync, directory fsync.
pub(crate) fn create_segment(
    storage: &dyn Storage,
    segments_dir: &Path,
    number: u64,
    first_position: u64,
) -> Result<ActiveSegment> {
    let path = segment_path(segments_dir, number);
    let _ = storage.remove(&path); // left over by an earlier failed attempt
    let file = storage
        .open(&path, OpenMode::CreateNew)
        .map_err(io_err(format!("creating {}", path.display())))?;
    file.write_all_at(&encode_segment_header(number, first_position), 0)
        .and_then(|()| file.sync_data())
        .map_err(io_err(format!("writing {}", path.display())))?;
    storage
        .sync_dir(segments_dir)
        .map_err(io_err(format!("syncing {}", segments_dir.display())))?;
    Ok(ActiveSegment::new(
        number,
        file,
        SegmentIndex {
            first_position,
            len: SEGMENT_HEADER_BYTES,
            ..SegmentIndex::default()
        },
    ))
}

/// Copies the bytes after the last committed record to `quarantine/`, then truncates
/// the segment there. Nothing in the tail was ever acknowledged, but it is kept for
/// inspection rather than destroyed.
pub(crate) fn cut_torn_tail(
    storage: &dyn Storage,
    dir: &Path,
    path: &Path,
    file: &dyn StorageFile,
    committed: u64,
    file_len: u64,
) -> Result<()> {
    tracing::warn!(
        segment = %path.display(),
        bytes = file_len - committed,
        offset = committed,
        "cutting off a torn tail (writes that were never acknowledged)"
    );
    let quarantine = dir.join("quarantine");
    storage
        .create_dir_all(&quarantine)
        .map_err(io_err(format!("creating {}", quarantine.display())))?;
    let saved = quarantine.join(format!("{}-{committed}.tail", file_name(path)));
    let _ = storage.remove(&saved);
    let out = storage
        .open(&saved, OpenMode::CreateNew)
        .map_err(io_err(format!("creating {}", saved.display())))?;
    // Copied a chunk at a time: the tail can be as large as the segment.
    let mut chunk = vec![0u8; COPY_CHUNK_BYTES.min((file_len - committed) as usize)];
    let mut at = committed;
    while at < file_len {
        let n = chunk.len().min((file_len - at) as usize);
        file.read_exact_at(&mut chunk[..n], at)
            .map_err(io_err(format!("reading {}", path.display())))?;
        out.write_all_at(&chunk[..n], at - committed)
            .map_err(io_err(format!("writing {}", saved.display())))?;
        at += n as u64;
    }
    out.sync_data()
        .and_then(|()| storage.sync_dir(&quarantine))
        .map_err(io_err(format!("writing {}", saved.display())))?;
    file.set_len(committed)
        .and_then(|()| file.sync_data())
        .map_err(io_err(format!("truncating {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_parse() {
        assert_eq!(parse_name("0000000012.seg", "seg"), Some(12));
        assert_eq!(parse_name("0000000012.idx", "seg"), None);
        assert_eq!(parse_name("12.seg", "seg"), None);
        assert_eq!(parse_name("000000001x.seg", "seg"), None);
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = encode_segment_header(3, 99);
        assert_eq!(decode_segment_header(&h, 3), Ok(99));
        assert!(decode_segment_header(&h, 4).is_err());
        for byte in 0..32 {
            let mut bad = h;
            bad[byte] ^= 0x10;
            assert!(decode_segment_header(&bad, 3).is_err(), "byte {byte}");
        }
    }

    #[test]
    fn index_round_trips_and_rejects_damage() {
        let index = SegmentIndex {
            first_position: 10,
            len: 500,
            streams: vec![Arc::from("a"), Arc::from("b-1")],
            entries: vec![
                IndexEntry {
                    offset: 32,
                    stream: 0,
                    revision: 0,
                    id: Uuid::from_u128(1),
                },
                IndexEntry {
                    offset: 100,
                    stream: 1,
                    revision: 4,
                    id: Uuid::from_u128(2),
                },
            ],
        };
        let bytes = index.encode(7);
        assert_eq!(SegmentIndex::decode(&bytes, 7), Ok(index));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(SegmentIndex::decode(&bad, 7).is_err(), "byte {i}");
        }
        assert!(SegmentIndex::decode(&bytes[..bytes.len() - 1], 7).is_err());
    }
}
