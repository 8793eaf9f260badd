//! Cold segments: sealed segments whose file was dropped from the local disk because
//! an archive holds them, fetched back whole (and cached in memory) when a read
//! reaches them. The hot tail stays on disk; history lives in the archive.
//!
//! Dropping a segment's file ([`drop_local_copy`]) first writes a marker
//! (`<number>.cold`) naming the archive and the segment's length and CRC-32C, then
//! removes the `.seg` file; its index file stays, so opening the store never needs the
//! archive. A crash between the two steps leaves both files, and the local one wins.
//! Every fetched segment is checked against the marker's length and checksum before a
//! byte of it is read, so a wrong or damaged archive is refused, never served.
//!
//! The engine knows nothing of object storage: a [`SegmentFetcher`], given to the store
//! by the program that opens it, does the fetching (the archive crate provides one).

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use eventfold_core::{Error, Result};

use crate::io::{OpenMode, Storage, StorageFile};
use crate::segment::{checked_body, read_bytes, replace_durably, with_check_line};

/// Fetches sealed segments back from the archive that holds them.
pub trait SegmentFetcher: Send + Sync + 'static {
    /// Returns the first `len` bytes of segment `number` as archived at `archive` (the
    /// URL given to [`crate::LogStore::drop_local_copy`]). Called from blocking threads.
    fn fetch(&self, archive: &str, number: u64, len: u64) -> std::result::Result<Vec<u8>, String>;
}

/// What the marker of a cold segment records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColdMarker {
    /// Where the segment is archived.
    pub archive: String,
    /// Its committed length in bytes.
    pub len: u64,
    /// CRC-32C of those bytes.
    pub crc32c: u32,
}

const MARKER_FORMAT: &str = "eventfold cold segment 1";

pub(crate) fn marker_path(segments_dir: &Path, number: u64) -> PathBuf {
    segments_dir.join(format!("{number:010}.cold"))
}

impl ColdMarker {
    /// Four lines, then a fifth with the CRC-32C of the four: a marker cut short or
    /// changed is refused, not read as another archive or length.
    fn encode(&self) -> String {
        with_check_line(&format!(
            "{MARKER_FORMAT}\nlen {}\ncrc32c {:08x}\narchive {}\n",
            self.len, self.crc32c, self.archive
        ))
    }

    fn decode(text: &str) -> Option<ColdMarker> {
        let mut lines = checked_body(text)?.lines();
        if lines.next()? != MARKER_FORMAT {
            return None;
        }
        let len = lines.next()?.strip_prefix("len ")?.parse().ok()?;
        let crc32c = u32::from_str_radix(lines.next()?.strip_prefix("crc32c ")?, 16).ok()?;
        let archive = lines.next()?.strip_prefix("archive ")?.to_string();
        (lines.next().is_none() && !archive.is_empty()).then_some(ColdMarker {
            archive,
            len,
            crc32c,
        })
    }

    /// Reads the marker of segment `number`; a damaged marker is an error naming it.
    pub(crate) fn read(
        storage: &dyn Storage,
        segments_dir: &Path,
        number: u64,
    ) -> Result<ColdMarker> {
        let path = marker_path(segments_dir, number);
        let name = format!("segments/{number:010}.cold");
        let file = storage
            .open(&path, OpenMode::Read)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let len = file
            .len()
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let bytes = read_bytes(file.as_ref(), 0, len.min(64 * 1024) as usize, &name)?;
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(ColdMarker::decode)
            .ok_or_else(|| Error::Corrupted {
                file: name,
                offset: 0,
                reason: "the marker of a segment kept in the archive is damaged; it should \
                         name the archive, the segment's length and its CRC-32C"
                    .into(),
            })
    }

    /// Writes the marker durably (temporary file, fsync, rename, directory fsync).
    fn write(&self, storage: &dyn Storage, segments_dir: &Path, number: u64) -> Result<()> {
        let name = format!("{number:010}.cold");
        replace_durably(storage, segments_dir, &name, self.encode().as_bytes())
    }
}

/// The segments a data directory's listing names: `.seg` files and `.cold` markers.
pub(crate) struct Listed {
    /// Every segment number, local or cold, ascending.
    pub numbers: Vec<u64>,
    /// Numbers with a marker and no local file.
    pub cold: std::collections::BTreeSet<u64>,
    /// Numbers with both: a drop that crashed before it removed the file (the file
    /// wins), or a cold segment a scavenge brought back.
    pub stale_markers: Vec<u64>,
}

impl Listed {
    pub(crate) fn of(names: &[String]) -> Listed {
        use crate::segment::parse_name;
        let local: std::collections::BTreeSet<u64> =
            names.iter().filter_map(|n| parse_name(n, "seg")).collect();
        let markers: std::collections::BTreeSet<u64> =
            names.iter().filter_map(|n| parse_name(n, "cold")).collect();
        Listed {
            numbers: local.union(&markers).copied().collect(),
            cold: markers.difference(&local).copied().collect(),
            stale_markers: markers.intersection(&local).copied().collect(),
        }
    }

    /// Opens segment `number`: its local file, or (cold) a file that fetches it.
    pub(crate) fn open(
        &self,
        storage: &dyn Storage,
        segments_dir: &Path,
        number: u64,
        cold: &Arc<ColdShared>,
    ) -> Result<Arc<dyn StorageFile>> {
        if self.cold.contains(&number) {
            let marker = ColdMarker::read(storage, segments_dir, number)?;
            return Ok(Arc::new(ColdFile::new(number, marker, cold.clone())));
        }
        let path = crate::segment::segment_path(segments_dir, number);
        storage
            .open(&path, OpenMode::Read)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))
    }
}

/// What cold segments of one store share: the fetcher, the cache and the counters.
pub(crate) struct ColdShared {
    fetcher: RwLock<Option<Arc<dyn SegmentFetcher>>>,
    cache: Mutex<Cache>,
    /// Held while a segment is fetched: one fetch at a time, and a segment that several
    /// readers want at once is fetched once.
    fetching: Mutex<()>,
    pub fetches: AtomicU64,
    pub fetched_bytes: AtomicU64,
}

/// Fetched segments, least recently used first.
struct Cache {
    bytes_max: u64,
    bytes: u64,
    entries: VecDeque<(CacheKey, Bytes)>,
}

/// A segment's number and checksum: a segment rewritten and dropped again is another
/// entry.
type CacheKey = (u64, u32);

impl Cache {
    fn get(&mut self, key: CacheKey) -> Option<Bytes> {
        let at = self.entries.iter().position(|(k, _)| *k == key)?;
        let entry = self.entries.remove(at)?;
        let bytes = entry.1.clone();
        self.entries.push_back(entry);
        Some(bytes)
    }

    /// Forgets the least recently used entries until `len` more bytes fit (all of
    /// them when `len` alone exceeds the bound): done before a fetch, so that memory
    /// never holds the bound and a whole fetched segment besides.
    fn make_room(&mut self, len: u64) {
        while self.bytes + len > self.bytes_max {
            match self.entries.pop_front() {
                Some((_, old)) => self.bytes -= old.len() as u64,
                None => return,
            }
        }
    }

    /// Adds an entry; it stays even when it alone exceeds the bound (the read that
    /// fetched it needs it).
    fn insert(&mut self, key: CacheKey, bytes: Bytes) {
        self.make_room(bytes.len() as u64);
        self.bytes += bytes.len() as u64;
        self.entries.push_back((key, bytes));
    }
}

impl ColdShared {
    pub(crate) fn new(cache_bytes_max: u64) -> Self {
        ColdShared {
            fetcher: RwLock::new(None),
            cache: Mutex::new(Cache {
                bytes_max: cache_bytes_max,
                bytes: 0,
                entries: VecDeque::new(),
            }),
            fetching: Mutex::new(()),
            fetches: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_fetcher(&self, fetcher: Arc<dyn SegmentFetcher>) {
        *self.fetcher.write().unwrap_or_else(|p| p.into_inner()) = Some(fetcher);
    }

    fn cached(&self, key: CacheKey) -> Option<Bytes> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
    }

    /// The whole segment, from the cache or fetched and checked.
    fn segment(&self, number: u64, marker: &ColdMarker) -> io::Result<Bytes> {
        let key = (number, marker.crc32c);
        if let Some(bytes) = self.cached(key) {
            return Ok(bytes);
        }
        let _fetching = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bytes) = self.cached(key) {
            return Ok(bytes);
        }
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .make_room(marker.len);
        let fetcher = self
            .fetcher
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                io::Error::other(format!(
                    "segment {number} is kept in the archive {} and this process was given no \
                     way to fetch it",
                    marker.archive
                ))
            })?;
        let bytes = fetcher
            .fetch(&marker.archive, number, marker.len)
            .map_err(|reason| {
                io::Error::other(format!(
                    "fetching segment {number} from the archive {}: {reason}",
                    marker.archive
                ))
            })?;
        let crc = crc32c::crc32c(&bytes);
        if bytes.len() as u64 != marker.len || crc != marker.crc32c {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "segment {number} fetched from the archive {} is {} bytes with CRC-32C \
                     {crc:08x}; it was {} bytes with {:08x} when its local copy was dropped",
                    marker.archive,
                    bytes.len(),
                    marker.len,
                    marker.crc32c
                ),
            ));
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.fetched_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let bytes = Bytes::from(bytes);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, bytes.clone());
        Ok(bytes)
    }
}

/// A cold segment seen as a read-only file: the first read fetches it.
pub(crate) struct ColdFile {
    number: u64,
    marker: ColdMarker,
    shared: Arc<ColdShared>,
}

impl ColdFile {
    pub(crate) fn new(number: u64, marker: ColdMarker, shared: Arc<ColdShared>) -> Self {
        ColdFile {
            number,
            marker,
            shared,
        }
    }
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "a segment kept in the archive is never written",
    )
}

impl StorageFile for ColdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.marker.len {
            return Ok(0);
        }
        let bytes = self.shared.segment(self.number, &self.marker)?;
        let start = offset as usize;
        let n = buf.len().min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        Ok(n)
    }
    fn write_at(&self, _: &[u8], _: u64) -> io::Result<usize> {
        Err(read_only())
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn set_len(&self, _: u64) -> io::Result<()> {
        Err(read_only())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.marker.len)
    }
}

/// Drops the local file of a sealed segment that `archive` holds whole: checks that
/// the local bytes are the archived ones (`crc32c`), writes the marker, points the
/// index at the archive, then removes the file. Returns the bytes freed.
pub(crate) fn drop_local_copy(
    shared: &crate::shared::Shared,
    snapshot: &crate::SegmentSnapshot,
    archive: &str,
    crc32c: u32,
) -> Result<u64> {
    // No scavenge may swap the segment while it is dropped.
    let _scavenging = shared.scavenging.lock().unwrap_or_else(|p| p.into_inner());
    let number = snapshot.number;
    let file = {
        let index = shared.index();
        let count = index.segments.len();
        let Some(at) = index.segments.iter().position(|s| s.number == number) else {
            return Err(Error::Backend(format!(
                "segment {number} is not in the store"
            )));
        };
        let segment = &index.segments[at];
        if at + 1 == count {
            return Err(Error::Backend(format!(
                "segment {number} is the active segment; only sealed segments are dropped"
            )));
        }
        if segment.cold {
            return Ok(0);
        }
        if !snapshot.holds_file(&segment.file) || segment.len != snapshot.len {
            return Err(Error::Backend(format!(
                "segment {number} was rewritten since it was archived; archive it again first"
            )));
        }
        segment.file.clone()
    };
    let name = format!("{number:010}.seg");
    let mut crc = 0u32;
    let mut offset = 0u64;
    while offset < snapshot.len {
        let n = (snapshot.len - offset).min(8 << 20);
        let bytes = read_bytes(file.as_ref(), offset, n as usize, &name)?;
        crc = crc32c::crc32c_append(crc, &bytes);
        offset += n;
    }
    if crc != crc32c {
        return Err(Error::Backend(format!(
            "segment {number} on disk has CRC-32C {crc:08x} but the archive holds {crc32c:08x}; \
             the local copy is kept"
        )));
    }
    let marker = ColdMarker {
        archive: archive.to_string(),
        len: snapshot.len,
        crc32c,
    };
    let storage = shared.storage.as_ref();
    marker.write(storage, &shared.segments_dir, number)?;
    {
        let mut index = shared.index.write().unwrap_or_else(|p| p.into_inner());
        if let Some(segment) = index.segments.iter_mut().find(|s| s.number == number) {
            segment.file = Arc::new(ColdFile::new(number, marker, shared.cold.clone()));
            segment.cold = true;
        }
    }
    // Readers that located an event before the swap keep the file open: removing its
    // name is safe under them.
    let path = crate::segment::segment_path(&shared.segments_dir, number);
    storage
        .remove(&path)
        .and_then(|()| storage.sync_dir(&shared.segments_dir))
        .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
    tracing::info!(
        segment = number,
        archive,
        bytes = snapshot.len,
        "dropped the local copy of an archived segment"
    );
    Ok(snapshot.len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_back_what_was_written_and_refuses_damage() {
        let marker = ColdMarker {
            archive: "s3://bucket/prefix".into(),
            len: 4096,
            crc32c: 0xdead_beef,
        };
        assert_eq!(ColdMarker::decode(&marker.encode()), Some(marker.clone()));
        let text = marker.encode();
        assert_eq!(
            ColdMarker::decode(&text.replace("len 4096", "len 40x6")),
            None
        );
        assert_eq!(ColdMarker::decode(&text.replace("crc32c", "crc")), None);
        assert_eq!(ColdMarker::decode(&text[..text.len() - 10]), None);
        assert_eq!(ColdMarker::decode(&format!("{text}extra\n")), None);
        assert_eq!(ColdMarker::decode(&text.replace("bucket", "bucket2")), None);
    }

    #[test]
    fn the_cache_keeps_the_most_recently_used_segments_within_its_bound() {
        let mut cache = Cache {
            bytes_max: 10,
            bytes: 0,
            entries: VecDeque::new(),
        };
        cache.insert((0, 0), Bytes::from(vec![0u8; 4]));
        cache.insert((1, 0), Bytes::from(vec![1u8; 4]));
        assert!(cache.get((0, 0)).is_some());
        cache.insert((2, 0), Bytes::from(vec![2u8; 4]));
        assert!(
            cache.get((1, 0)).is_none(),
            "the least recently used one goes"
        );
        assert!(cache.get((0, 0)).is_some());
        assert!(cache.get((2, 0)).is_some());
        assert_eq!(cache.bytes, 8);
        cache.insert((3, 0), Bytes::from(vec![3u8; 20]));
        assert_eq!(
            cache.entries.len(),
            1,
            "an entry above the bound stays alone"
        );
        assert!(cache.get((3, 0)).is_some());
    }
}
