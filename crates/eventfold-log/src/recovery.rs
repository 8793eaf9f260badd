//! Opening a data directory: load the sealed segments' index files, scan the active
//! segment, cut off a torn tail. See "Opening a store and recovery" in
//! `docs/log-format.md` for what each crash point leaves and how it is handled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eventfold_core::{Error, Result};

use crate::index::{FastMap, Index};
use crate::io::{OpenMode, Storage, StorageFile};
use crate::options::LogOptions;
use crate::segment::{
    SEGMENT_HEADER_BYTES, SegmentIndex, encode_segment_header, index_path, parse_name, read_up_to,
    scan_segment, segment_path,
};

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

pub(crate) struct Recovered {
    pub segments_dir: PathBuf,
    pub index: Index,
    pub active: ActiveSegment,
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

pub(crate) fn recover(
    storage: &dyn Storage,
    dir: &Path,
    options: &LogOptions,
) -> Result<Recovered> {
    let segments_dir = dir.join("segments");
    storage
        .create_dir_all(&segments_dir)
        .map_err(io_err(format!("creating {}", segments_dir.display())))?;
    let names = storage
        .list(&segments_dir)
        .map_err(io_err(format!("listing {}", segments_dir.display())))?;
    let mut numbers: Vec<u64> = names.iter().filter_map(|n| parse_name(n, "seg")).collect();
    numbers.sort_unstable();
    for name in names.iter().filter(|n| n.ends_with(".tmp")) {
        // A half-written index file from a crash during sealing; it is rewritten.
        let path = segments_dir.join(name);
        storage
            .remove(&path)
            .map_err(io_err(format!("removing {}", path.display())))?;
    }
    for (i, &n) in numbers.iter().enumerate() {
        if n != i as u64 {
            return Err(Error::Corrupted {
                file: file_name(&segment_path(&segments_dir, i as u64)),
                offset: 0,
                reason: format!("segment {i} is missing (found segment {n} instead)"),
            });
        }
    }

    let mut index = Index::default();
    let Some((&last, sealed)) = numbers.split_last() else {
        let active = create_segment(storage, &segments_dir, 0, 0)?;
        let name = file_name(&segment_path(&segments_dir, 0));
        index.add_segment(0, name, active.file.clone(), &active.index, true)?;
        return Ok(Recovered {
            segments_dir,
            index,
            active,
        });
    };

    let window_from = sealed.len().saturating_sub(options.id_window_segments);
    for (i, &number) in sealed.iter().enumerate() {
        let path = segment_path(&segments_dir, number);
        let file = storage
            .open(&path, OpenMode::Read)
            .map_err(io_err(format!("opening {}", path.display())))?;
        let segment_index = load_or_rebuild_index(storage, &segments_dir, number, file.as_ref())?;
        index.add_segment(
            number,
            file_name(&path),
            file,
            &segment_index,
            i >= window_from,
        )?;
    }

    // The last segment is the active one. An index file for it means a crash came
    // after sealing it and before its successor existed: it stays active instead.
    let stale = index_path(&segments_dir, last);
    if names.contains(&file_name(&stale)) {
        storage
            .remove(&stale)
            .map_err(io_err(format!("removing {}", stale.display())))?;
        storage
            .sync_dir(&segments_dir)
            .map_err(io_err(format!("syncing {}", segments_dir.display())))?;
    }
    let path = segment_path(&segments_dir, last);
    let file = storage
        .open(&path, OpenMode::ReadWrite)
        .map_err(io_err(format!("opening {}", path.display())))?;
    let len = file
        .len()
        .map_err(io_err(format!("reading {}", path.display())))?;
    if len <= SEGMENT_HEADER_BYTES && !has_valid_header(file.as_ref(), last, &path)? {
        // Created but its header never became durable: write the header again.
        let header = encode_segment_header(last, index.next_position);
        file.set_len(0)
            .map_err(io_err(format!("truncating {}", path.display())))?;
        file.write_all_at(&header, 0)
            .and_then(|()| file.sync_data())
            .map_err(io_err(format!("writing {}", path.display())))?;
    }
    let scan = scan_segment(file.as_ref(), &file_name(&path), last, |_, _| {})?;
    if scan.index.len < scan.file_len {
        cut_torn_tail(
            storage,
            dir,
            &path,
            file.as_ref(),
            scan.index.len,
            scan.file_len,
        )?;
        if let Some((offset, why)) = &scan.stop {
            tracing::warn!(segment = %path.display(), offset, %why, "recovery stopped at an invalid record");
        }
    }
    index.add_segment(last, file_name(&path), file.clone(), &scan.index, true)?;
    index.trim_id_window(options.id_window_segments + 1);
    Ok(Recovered {
        segments_dir,
        index,
        active: ActiveSegment::new(last, file, scan.index),
    })
}

fn has_valid_header(file: &dyn StorageFile, number: u64, path: &Path) -> Result<bool> {
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    let n = read_up_to(file, &mut header, 0, &file_name(path))?;
    Ok(crate::segment::decode_segment_header(&header[..n], number).is_ok())
}

/// Loads a sealed segment's index file, or rebuilds it by scanning the segment (which
/// must then be intact from end to end) and writes it again.
fn load_or_rebuild_index(
    storage: &dyn Storage,
    segments_dir: &Path,
    number: u64,
    file: &dyn StorageFile,
) -> Result<SegmentIndex> {
    let path = index_path(segments_dir, number);
    let seg_len = file
        .len()
        .map_err(io_err(format!("reading segment {number}")))?;
    let loaded = storage
        .open(&path, OpenMode::Read)
        .ok()
        .and_then(|f| {
            let len = f.len().ok()? as usize;
            let mut bytes = vec![0u8; len];
            f.read_exact_at(&mut bytes, 0).ok()?;
            SegmentIndex::decode(&bytes, number).ok()
        })
        .filter(|index| index.len == seg_len);
    if let Some(index) = loaded {
        return Ok(index);
    }
    tracing::warn!(
        segment = number,
        "segment index missing or damaged; rebuilding it"
    );
    let seg_name = file_name(&segment_path(segments_dir, number));
    let scan = scan_segment(file, &seg_name, number, |_, _| {})?;
    if let Some((offset, why)) = scan.stop {
        return Err(Error::Corrupted {
            file: seg_name,
            offset,
            reason: format!("sealed segment is damaged: {why}"),
        });
    }
    if scan.index.len != scan.file_len {
        return Err(Error::Corrupted {
            file: seg_name,
            offset: scan.index.len,
            reason: "sealed segment ends with an uncommitted transaction".into(),
        });
    }
    write_index(storage, segments_dir, number, &scan.index)?;
    Ok(scan.index)
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
fn cut_torn_tail(
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
    let mut tail = vec![0u8; (file_len - committed) as usize];
    file.read_exact_at(&mut tail, committed)
        .map_err(io_err(format!("reading {}", path.display())))?;
    let quarantine = dir.join("quarantine");
    storage
        .create_dir_all(&quarantine)
        .map_err(io_err(format!("creating {}", quarantine.display())))?;
    let saved = quarantine.join(format!("{}-{committed}.tail", file_name(path)));
    let _ = storage.remove(&saved);
    let out = storage
        .open(&saved, OpenMode::CreateNew)
        .map_err(io_err(format!("creating {}", saved.display())))?;
    out.write_all_at(&tail, 0)
        .and_then(|()| out.sync_data())
        .and_then(|()| storage.sync_dir(&quarantine))
        .map_err(io_err(format!("writing {}", saved.display())))?;
    file.set_len(committed)
        .and_then(|()| file.sync_data())
        .map_err(io_err(format!("truncating {}", path.display())))
}
