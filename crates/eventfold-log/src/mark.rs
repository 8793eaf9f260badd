//! The acknowledged mark: a durable lower bound of how many bytes of the active segment
//! were acknowledged to writers.
//!
//! Recovery needs it to tell a torn tail from damage. Bytes past the last intact commit
//! may be cut only if no writer was ever told they were durable; the mark proves, for
//! everything below it, that some writer was. It is rewritten when the store opens,
//! every `ack_mark_interval_ms` while appends go on, when a segment is sealed and when
//! the store closes, so it trails the real acknowledged end by at most one interval
//! (and not at all after a clean close).
//!
//! A mark can also be *exact*: once the store stopped writing after a failed sync (it
//! is poisoned), the writer records exactly how far it acknowledged, and that nothing
//! past it was or ever will be acknowledged (at the next append it refuses, the next
//! interval or the close, whichever comes first). Recovery may then cut whatever follows,
//! even intact records that a concurrent sync made durable after the failed one lost
//! the pages before them: no writer was told they were durable. The next open replaces
//! it with an ordinary mark.
//!
//! Layout (`segments/ack.mark`): two 40-byte slots at offsets 0 and 40, written in
//! turn, so that a write torn by a crash leaves the other slot intact. Each slot:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `EVFOLDAM` |
//! | 8 | 4 | kind: 1 = lower bound, 2 = exact end |
//! | 12 | 4 | CRC-32C of bytes 16..40 (kind 1); of bytes 8..12 then 16..40 (kind 2) |
//! | 16 | 8 | sequence number (the slot with the higher one wins) |
//! | 24 | 8 | segment number |
//! | 32 | 8 | acknowledged length of that segment in bytes (header included) |

use std::path::Path;
use std::sync::Arc;

use eventfold_core::{Error, Result};

use crate::io::{OpenMode, Storage, StorageFile};
use crate::segment::read_up_to;

/// File name of the mark, in the segments directory.
pub(crate) const MARK_FILE_NAME: &str = "ack.mark";

const MARK_MAGIC: &[u8; 8] = b"EVFOLDAM";
/// A lower bound of what was acknowledged (the only kind older versions write; they
/// ignore slots of the other kind and fall back to the other slot, which is safe).
const KIND_LOWER_BOUND: u32 = 1;
/// Exactly what was acknowledged; nothing past it ever will be.
const KIND_EXACT: u32 = 2;
const SLOT_BYTES: u64 = 40;
const SLOT_USED_BYTES: usize = 40;

/// How much of which segment was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckMark {
    pub segment: u64,
    pub len: u64,
    /// `len` is exactly the acknowledged end, and nothing past it ever will be
    /// acknowledged (written once the store is poisoned); otherwise a lower bound.
    pub exact: bool,
}

impl AckMark {
    /// At least `len` bytes of `segment` were acknowledged.
    pub(crate) fn lower_bound(segment: u64, len: u64) -> Self {
        Self {
            segment,
            len,
            exact: false,
        }
    }
}

/// The slot's checksum: a kind 2 slot covers its kind too, so that no flipped bit can
/// turn a lower bound into an exact end.
fn checksum(slot: &[u8], kind: u32) -> u32 {
    if kind == KIND_EXACT {
        crc32c::crc32c_append(crc32c::crc32c(&slot[8..12]), &slot[16..40])
    } else {
        crc32c::crc32c(&slot[16..40])
    }
}

fn encode(sequence: u64, mark: AckMark) -> [u8; SLOT_USED_BYTES] {
    let kind = if mark.exact {
        KIND_EXACT
    } else {
        KIND_LOWER_BOUND
    };
    let mut slot = [0u8; SLOT_USED_BYTES];
    slot[0..8].copy_from_slice(MARK_MAGIC);
    slot[8..12].copy_from_slice(&kind.to_le_bytes());
    slot[16..24].copy_from_slice(&sequence.to_le_bytes());
    slot[24..32].copy_from_slice(&mark.segment.to_le_bytes());
    slot[32..40].copy_from_slice(&mark.len.to_le_bytes());
    let crc = checksum(&slot, kind);
    slot[12..16].copy_from_slice(&crc.to_le_bytes());
    slot
}

fn decode(slot: &[u8]) -> Option<(u64, AckMark)> {
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&slot[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let u32_at = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&slot[at..at + 4]);
        u32::from_le_bytes(b)
    };
    let valid = slot.len() >= SLOT_USED_BYTES
        && &slot[0..8] == MARK_MAGIC
        && matches!(u32_at(8), KIND_LOWER_BOUND | KIND_EXACT)
        && u32_at(12) == checksum(slot, u32_at(8));
    valid.then(|| {
        (
            u64_at(16),
            AckMark {
                segment: u64_at(24),
                len: u64_at(32),
                exact: u32_at(8) == KIND_EXACT,
            },
        )
    })
}

/// Reads the mark; `None` when there is none (a store from before marks existed, or
/// one that never finished opening) or neither slot is intact.
pub(crate) fn read_mark(storage: &dyn Storage, segments_dir: &Path) -> Result<Option<AckMark>> {
    Ok(read_slots(storage, segments_dir)?.map(|(_, mark)| mark))
}

fn read_slots(storage: &dyn Storage, segments_dir: &Path) -> Result<Option<(u64, AckMark)>> {
    let path = segments_dir.join(MARK_FILE_NAME);
    let file = match storage.open(&path, OpenMode::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let mut bytes = [0u8; 2 * SLOT_BYTES as usize];
    let n = read_up_to(file.as_ref(), &mut bytes, 0, MARK_FILE_NAME)?;
    let slots = [
        &bytes[..n.min(SLOT_BYTES as usize)],
        &bytes[SLOT_BYTES as usize..n.max(SLOT_BYTES as usize)],
    ];
    Ok(slots
        .into_iter()
        .filter_map(decode)
        .max_by_key(|(sequence, _)| *sequence))
}

/// Slots that hold something other than a mark (never written slots are all zeros),
/// by offset, for `verify`.
pub(crate) fn damaged_slots(storage: &dyn Storage, segments_dir: &Path) -> Result<Vec<u64>> {
    let path = segments_dir.join(MARK_FILE_NAME);
    let file = match storage.open(&path, OpenMode::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let mut bytes = [0u8; 2 * SLOT_BYTES as usize];
    let n = read_up_to(file.as_ref(), &mut bytes, 0, MARK_FILE_NAME)?;
    let len = file
        .len()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut damaged: Vec<u64> = [0, SLOT_BYTES]
        .into_iter()
        .filter(|&at| {
            let slot = &bytes[at as usize..(at as usize + SLOT_USED_BYTES).min(n).max(at as usize)];
            !slot.iter().all(|&b| b == 0) && decode(slot).is_none()
        })
        .collect();
    if len > 2 * SLOT_BYTES {
        damaged.push(2 * SLOT_BYTES);
    }
    Ok(damaged)
}

/// Keeps the mark up to date (only the process holding the store's lock has one).
pub(crate) struct MarkWriter {
    file: Arc<dyn StorageFile>,
    sequence: u64,
    last: Option<AckMark>,
}

impl MarkWriter {
    /// Opens the mark file, creating it (durably) when it does not exist.
    pub(crate) fn open(storage: &dyn Storage, segments_dir: &Path) -> Result<Self> {
        let current = read_slots(storage, segments_dir)?;
        let path = segments_dir.join(MARK_FILE_NAME);
        let file = match storage.open(&path, OpenMode::ReadWrite) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let file = storage
                    .open(&path, OpenMode::CreateNew)
                    .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
                storage
                    .sync_dir(segments_dir)
                    .map_err(|e| Error::io(format!("syncing {}", segments_dir.display()), e))?;
                file
            }
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        Ok(MarkWriter {
            file,
            sequence: current.map_or(0, |(sequence, _)| sequence),
            last: current.map(|(_, mark)| mark),
        })
    }

    /// The mark this writer wrote last (or found when it opened).
    pub(crate) fn last(&self) -> Option<AckMark> {
        self.last
    }

    /// Makes `mark` durable, unless it is the one already written.
    pub(crate) fn write(&mut self, mark: AckMark) -> Result<()> {
        if self.last == Some(mark) {
            return Ok(());
        }
        let sequence = self.sequence + 1;
        let slot = sequence % 2 * SLOT_BYTES;
        self.file
            .write_all_at(&encode(sequence, mark), slot)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(format!("writing {MARK_FILE_NAME}"), e))?;
        self.sequence = sequence;
        self.last = Some(mark);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimStorage;

    #[test]
    fn the_newest_intact_slot_wins_and_a_torn_slot_falls_back() {
        let storage = SimStorage::new();
        let dir = Path::new("/d/segments");
        storage.create_dir_all(dir).unwrap();
        assert_eq!(read_mark(&storage, dir).unwrap(), None);
        let mut writer = MarkWriter::open(&storage, dir).unwrap();
        writer.write(AckMark::lower_bound(0, 100)).unwrap();
        writer.write(AckMark::lower_bound(0, 200)).unwrap();
        assert_eq!(
            read_mark(&storage, dir).unwrap(),
            Some(AckMark::lower_bound(0, 200))
        );
        // Damage the newest slot (sequence 2 lives in slot 0): the older one answers.
        let path = dir.join(MARK_FILE_NAME);
        let mut bytes = storage.read_file(&path).unwrap();
        bytes[20] ^= 1;
        storage.write_file(&path, bytes);
        assert_eq!(
            read_mark(&storage, dir).unwrap(),
            Some(AckMark::lower_bound(0, 100))
        );
        // A writer reopened continues after the highest intact sequence.
        let mut writer = MarkWriter::open(&storage, dir).unwrap();
        writer.write(AckMark::lower_bound(1, 32)).unwrap();
        assert_eq!(
            read_mark(&storage, dir).unwrap(),
            Some(AckMark::lower_bound(1, 32))
        );
    }

    #[test]
    fn an_exact_end_reads_back_exact_and_no_flipped_bit_makes_a_lower_bound_exact() {
        let storage = SimStorage::new();
        let dir = Path::new("/d/segments");
        storage.create_dir_all(dir).unwrap();
        let mut writer = MarkWriter::open(&storage, dir).unwrap();
        writer.write(AckMark::lower_bound(3, 100)).unwrap();
        let exact = AckMark {
            exact: true,
            ..AckMark::lower_bound(3, 164)
        };
        writer.write(exact).unwrap();
        assert_eq!(read_mark(&storage, dir).unwrap(), Some(exact));

        // The lower bound (sequence 1) lives in slot 1. Flipping bits of its kind never
        // yields a valid exact slot: the checksum of kind 2 covers the kind.
        let path = dir.join(MARK_FILE_NAME);
        let bytes = storage.read_file(&path).unwrap();
        for byte in 8..12 {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[SLOT_BYTES as usize + byte] ^= 1 << bit;
                let slot = &flipped[SLOT_BYTES as usize..2 * SLOT_BYTES as usize];
                assert!(
                    decode(slot).is_none_or(|(_, mark)| !mark.exact),
                    "byte {byte} bit {bit} turned a lower bound into an exact end"
                );
            }
        }
    }
}
