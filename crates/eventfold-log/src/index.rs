//! The in-memory index of a store: where each position lives, and which positions
//! make up each stream. Only the writer thread changes it, after an fsync, so
//! everything it contains is durable ("positions handed to readers are committed").

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use eventfold_core::{Error, RecordedEvent, Result};
use uuid::Uuid;

use crate::io::StorageFile;
use crate::record::decode_header;
use crate::segment::{SegmentIndex, read_bytes};

/// The hash map of the engine's hot paths. Keys include caller-chosen event ids and
/// stream names, so the hasher is seeded per process (foldhash), yet much cheaper than
/// the standard SipHash on the per-event inserts of a group commit.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// One segment as the index knows it.
pub(crate) struct SegmentState {
    pub number: u64,
    pub name: String,
    pub file: Arc<dyn StorageFile>,
    pub first_position: u64,
    /// Offset in the file of each event, by `position - first_position`.
    pub offsets: Vec<u32>,
    /// Committed length of the file in bytes.
    pub len: u64,
}

/// Where one event's record lies.
#[derive(Clone)]
pub(crate) struct Location {
    pub file: Arc<dyn StorageFile>,
    pub segment: u64,
    pub name: String,
    pub position: u64,
    pub offset: u64,
    pub end: u64,
}

#[derive(Default)]
pub(crate) struct Index {
    pub segments: Vec<SegmentState>,
    /// Positions of each stream's events, by revision.
    pub streams: FastMap<Arc<str>, Vec<u64>>,
    /// Recent event ids (the id window) and their positions.
    pub ids: FastMap<Uuid, u64>,
    /// Ids in the window, by segment, oldest first, for eviction.
    pub id_segments: VecDeque<(u64, Vec<Uuid>)>,
    /// The position the next event gets; every position below is committed.
    pub next_position: u64,
}

impl Index {
    /// Adds a sealed or recovered segment's events. Checks that positions continue
    /// and that each stream's revisions count up from 0.
    pub(crate) fn add_segment(
        &mut self,
        number: u64,
        name: String,
        file: Arc<dyn StorageFile>,
        segment: &SegmentIndex,
        keep_ids: bool,
    ) -> Result<()> {
        if segment.first_position != self.next_position {
            return Err(Error::Corrupted {
                file: name,
                offset: 0,
                reason: format!(
                    "segment starts at position {} but the previous one ended at {}",
                    segment.first_position, self.next_position
                ),
            });
        }
        // Take each stream's positions out of the map once per segment, not once per
        // event; they go back below, also when the segment turns out to be damaged.
        let mut positions: Vec<(Arc<str>, Vec<u64>)> = segment
            .streams
            .iter()
            .map(|name| {
                self.streams
                    .remove_entry(name.as_ref())
                    .unwrap_or_else(|| (name.clone(), Vec::new()))
            })
            .collect();
        let mut offsets = Vec::with_capacity(segment.entries.len());
        let mut ids = Vec::new();
        let mut result = Ok(());
        for (i, entry) in segment.entries.iter().enumerate() {
            let position = segment.first_position + i as u64;
            let list = &mut positions[entry.stream as usize].1;
            if entry.revision != list.len() as u64 {
                result = Err(Error::Corrupted {
                    file: name.clone(),
                    offset: u64::from(entry.offset),
                    reason: format!(
                        "stream '{}' has revision {} where {} was expected",
                        segment.streams[entry.stream as usize],
                        entry.revision,
                        list.len()
                    ),
                });
                break;
            }
            list.push(position);
            offsets.push(entry.offset);
            if keep_ids {
                self.ids.insert(entry.id, position);
                ids.push(entry.id);
            }
        }
        for (key, list) in positions {
            if !list.is_empty() {
                self.streams.insert(key, list);
            }
        }
        result?;
        if keep_ids {
            self.id_segments.push_back((number, ids));
        }
        self.next_position = segment.first_position + segment.entries.len() as u64;
        self.segments.push(SegmentState {
            number,
            name,
            file,
            first_position: segment.first_position,
            offsets,
            len: segment.len,
        });
        Ok(())
    }

    /// Forgets the ids of the oldest segments so that at most `segments` stay.
    pub(crate) fn trim_id_window(&mut self, segments: usize) {
        while self.id_segments.len() > segments {
            if let Some((_, ids)) = self.id_segments.pop_front() {
                for id in ids {
                    self.ids.remove(&id);
                }
            }
        }
    }

    /// Where the committed event at `position` lies.
    pub(crate) fn locate(&self, position: u64) -> Option<Location> {
        if position >= self.next_position {
            return None;
        }
        let at = self
            .segments
            .partition_point(|s| s.first_position <= position)
            .checked_sub(1)?;
        let segment = &self.segments[at];
        let i = (position - segment.first_position) as usize;
        let offset = u64::from(*segment.offsets.get(i)?);
        let end = segment
            .offsets
            .get(i + 1)
            .map_or(segment.len, |&next| u64::from(next));
        Some(Location {
            file: segment.file.clone(),
            segment: segment.number,
            name: segment.name.clone(),
            position,
            offset,
            end,
        })
    }

    /// Locations of the committed positions `from..to`, in order.
    pub(crate) fn locate_range(&self, from: u64, to: u64) -> Vec<Location> {
        (from..to.min(self.next_position))
            .filter_map(|p| self.locate(p))
            .collect()
    }
}

/// Largest single read when several records are read together.
const READ_SPAN_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Records further apart than this are read separately.
const READ_GAP_BYTES_MAX: u64 = 64 * 1024;

/// Reads the events at `locations` (in ascending position order), reading neighbouring
/// records with one read, and checking each record right after reading it.
pub(crate) fn read_events(
    locations: &[Location],
    mut keep: impl FnMut(&str, &str) -> bool,
) -> Result<Vec<RecordedEvent>> {
    let mut events = Vec::with_capacity(locations.len());
    let mut i = 0;
    while i < locations.len() {
        let first = &locations[i];
        let mut j = i + 1;
        while j < locations.len() {
            let next = &locations[j];
            let previous = &locations[j - 1];
            if next.segment != first.segment
                || next.offset < previous.end
                || next.offset - previous.end > READ_GAP_BYTES_MAX
                || next.end - first.offset > READ_SPAN_BYTES_MAX
            {
                break;
            }
            j += 1;
        }
        let span_end = locations[j - 1].end;
        let buffer = read_bytes(
            first.file.as_ref(),
            first.offset,
            (span_end - first.offset) as usize,
            &first.name,
        )?;
        for location in &locations[i..j] {
            let at = (location.offset - first.offset) as usize;
            if let Some(event) = decode_at(&buffer, at, location, &mut keep)? {
                events.push(event);
            }
        }
        i = j;
    }
    Ok(events)
}

fn decode_at(
    buffer: &Bytes,
    at: usize,
    location: &Location,
    keep: &mut impl FnMut(&str, &str) -> bool,
) -> Result<Option<RecordedEvent>> {
    let corrupted = |reason: String| Error::Corrupted {
        file: location.name.clone(),
        offset: location.offset,
        reason,
    };
    let header = decode_header(&buffer[at..]).map_err(|e| corrupted(e.to_string()))?;
    if header.position != location.position {
        return Err(corrupted(format!(
            "record holds position {} where {} was expected",
            header.position, location.position
        )));
    }
    let record = &buffer[at..at + header.len];
    let (stream, event_type) = header
        .stream(record)
        .and_then(|s| Ok((s, header.event_type(record)?)))
        .map_err(|e| corrupted(e.to_string()))?;
    if !keep(stream, event_type) {
        return Ok(None);
    }
    header
        .to_event(buffer, at)
        .map(Some)
        .map_err(|e| corrupted(e.to_string()))
}
