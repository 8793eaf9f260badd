//! The in-memory index of a store: where each position lives, and which positions
//! make up each stream. Only the writer thread changes it, after an fsync, so
//! everything it contains is durable ("positions handed to readers are committed").

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use eventfold_core::{Error, RecordedEvent, Result};
use uuid::Uuid;

use crate::io::StorageFile;
use crate::positions::Positions;
use crate::record::decode_header;
use crate::segment::{NO_OFFSET, NO_STREAM, SegmentIndex, read_bytes};

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
    /// Whether the file was dropped from the local disk: `file` fetches it from the
    /// archive (see `cold.rs`).
    pub cold: bool,
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
    pub streams: FastMap<Arc<str>, Positions>,
    /// Recent event ids (the id window) and their positions.
    pub ids: FastMap<Uuid, u64>,
    /// Ids in the window, by segment, oldest first, for eviction.
    pub id_segments: VecDeque<(u64, Vec<Uuid>)>,
    /// The position the next event gets; every position below is committed.
    pub next_position: u64,
    /// Positions of runs whose events nobody can read any more (a repair gave them
    /// up), not yet claimed by a stream whose revisions jump over them.
    pub unclaimed: UnknownPositions,
}

/// Positions a gap record left without a known event, oldest first. When a stream's
/// revisions later jump (its event at the missing revisions was unreadable), the
/// jump claims that many of these positions, the latest ones before the event that
/// jumps, so that every revision still has a position and each stream's positions
/// stay in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct UnknownPositions {
    runs: Vec<(u64, u64)>,
}

impl UnknownPositions {
    /// Adds the positions `first..first + count`.
    pub(crate) fn add(&mut self, first: u64, count: u64) {
        self.runs.push((first, first + count));
    }

    /// Claims `count` positions between `after` (exclusive; `None`: the start) and
    /// `before` (exclusive), the latest first, returned in ascending order; `None`
    /// (and nothing claimed) when there are not enough.
    pub(crate) fn claim(
        &mut self,
        count: u64,
        after: Option<u64>,
        before: u64,
    ) -> Option<Vec<u64>> {
        let low = after.map_or(0, |a| a + 1);
        let available: u64 = self
            .runs
            .iter()
            .map(|&(a, b)| b.min(before).saturating_sub(a.max(low)))
            .sum();
        if available < count {
            return None;
        }
        let mut claimed = Vec::new();
        let mut i = self.runs.len();
        while (claimed.len() as u64) < count && i > 0 {
            i -= 1;
            let (a, b) = self.runs[i];
            let top = b.min(before);
            let bottom = a.max(low);
            if top <= bottom {
                continue;
            }
            let take = (count - claimed.len() as u64).min(top - bottom);
            claimed.extend((top - take..top).rev());
            // Split the run around what was taken.
            let mut rest = Vec::new();
            if a < top - take {
                rest.push((a, top - take));
            }
            if top < b {
                rest.push((top, b));
            }
            self.runs.splice(i..=i, rest);
        }
        claimed.reverse();
        Some(claimed)
    }
}

impl Index {
    /// Gives back the room the streams' lists kept for growth while the segments
    /// were loaded (a quarter of the index on average, since a list doubles when full).
    pub(crate) fn shrink_to_fit(&mut self) {
        for positions in self.streams.values_mut() {
            positions.shrink_to_fit();
        }
        self.streams.shrink_to_fit();
    }

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
        let mut positions: Vec<(Arc<str>, Positions)> = segment
            .streams
            .iter()
            .map(|name| {
                self.streams
                    .remove_entry(name.as_ref())
                    .unwrap_or_else(|| (name.clone(), Positions::default()))
            })
            .collect();
        let mut offsets = Vec::with_capacity(segment.entries.len());
        let mut ids = Vec::new();
        let mut result = Ok(());
        let mut position = segment.first_position;
        for entry in &segment.entries {
            if entry.stream == NO_STREAM {
                // A run of positions without events (a gap record's).
                let count = usize::try_from(entry.revision).unwrap_or(usize::MAX);
                offsets.resize(offsets.len().saturating_add(count), NO_OFFSET);
                self.unclaimed.add(position, entry.revision);
                position += entry.revision;
                continue;
            }
            let list = &mut positions[entry.stream as usize].1;
            if entry.revision > list.len() as u64 {
                // Revisions whose events were unreadable when a repair gave them up.
                let missing = entry.revision - list.len() as u64;
                if let Some(claimed) = self.unclaimed.claim(missing, list.last(), position) {
                    list.extend(claimed);
                }
            }
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
            // A lost event keeps its revision in the stream (so it is never handed out
            // again); its position locates nothing.
            list.push(position);
            offsets.push(entry.offset);
            if keep_ids && entry.is_event() {
                self.ids.insert(entry.id, position);
                ids.push(entry.id);
            }
            position += 1;
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
        self.next_position = position;
        self.segments.push(SegmentState {
            number,
            name,
            file,
            first_position: segment.first_position,
            offsets,
            len: segment.len,
            cold: false,
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

    /// Where the committed event at `position` lies; `None` past the end and for a
    /// position that holds no event (a gap).
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
        let offset = *segment.offsets.get(i)?;
        if offset == NO_OFFSET {
            return None;
        }
        // The record ends where the next one begins (a gap record may lie between).
        let end = segment.offsets[i + 1..]
            .iter()
            .find(|&&next| next != NO_OFFSET)
            .map_or(segment.len, |&next| u64::from(next));
        Some(Location {
            file: segment.file.clone(),
            segment: segment.number,
            name: segment.name.clone(),
            position,
            offset: u64::from(offset),
            end,
        })
    }

    /// Locations of the committed events at positions `from..to`, in order, and the
    /// position after the last one looked at (positions without events are skipped).
    pub(crate) fn locate_range(&self, from: u64, to: u64) -> (Vec<Location>, u64) {
        let end = to.min(self.next_position).max(from);
        ((from..end).filter_map(|p| self.locate(p)).collect(), end)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_take_the_latest_positions_between_the_bounds_in_order() {
        let mut pool = UnknownPositions::default();
        pool.add(10, 5); // 10..15
        pool.add(20, 2); // 20..22
        assert_eq!(pool.claim(3, Some(11), 21), Some(vec![13, 14, 20]));
        // 10, 11, 12 and 21 remain; 21 lies outside the next bounds.
        assert_eq!(pool.claim(4, None, 21), None, "only three are below 21");
        assert_eq!(pool.claim(2, Some(10), 30), Some(vec![12, 21]));
        assert_eq!(pool.claim(1, None, 100), Some(vec![11]));
        assert_eq!(pool.claim(1, None, 100), Some(vec![10]));
        assert_eq!(pool.claim(1, None, 100), None);
    }
}
