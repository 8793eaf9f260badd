//! The writer thread: group commit.
//!
//! One thread owns the active segment. It takes every append waiting in the queue,
//! decides each against the committed state plus the appends before it in the same
//! batch, encodes them into one buffer, writes it with one `pwrite`, makes it durable
//! with one `fdatasync`, publishes the new events to the index, and only then answers
//! the appends. See "Transactions and the commit protocol" in `docs/log-format.md`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use eventfold_core::plan::{AppendPlan, AppendView, EventLocation, PlannedWrite, plan_append};
use eventfold_core::{AppendResult, Error, Position, Result, Revision, StreamWrite};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::index::{Index, read_events};
use crate::options::LogOptions;
use crate::record::{RecordParts, encode};
use crate::recovery::{ActiveSegment, create_segment, write_index};
use crate::segment::{IndexEntry, SEGMENT_HEADER_BYTES};
use crate::store::Shared;

/// An append waiting for the writer.
pub(crate) struct Request {
    pub writes: Vec<StreamWrite>,
    /// Encoded size of all its records.
    pub bytes: u64,
    pub reply: oneshot::Sender<Result<Vec<AppendResult>>>,
}

type Reply = (
    oneshot::Sender<Result<Vec<AppendResult>>>,
    Result<Vec<AppendResult>>,
);

/// An event encoded into the batch buffer, to be published after the fsync.
struct Pending {
    stream: Arc<str>,
    revision: u64,
    position: u64,
    offset: u32,
    id: Uuid,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    options: LogOptions,
    active: ActiveSegment,
    requests: mpsc::Receiver<Request>,
    buffer: Vec<u8>,
}

/// The committed index seen through the appends already accepted into this batch.
struct Overlay<'a> {
    index: &'a Index,
    /// Ids and positions of pending events, by stream, in revision order.
    streams: HashMap<Arc<str>, Vec<(Uuid, u64)>>,
    ids: HashMap<Uuid, EventLocation>,
    next_position: u64,
}

impl Overlay<'_> {
    fn committed_len(&self, stream: &str) -> u64 {
        self.index.streams.get(stream).map_or(0, |p| p.len() as u64)
    }

    fn read_committed(&self, position: u64) -> Result<Option<eventfold_core::RecordedEvent>> {
        let Some(location) = self.index.locate(position) else {
            return Ok(None);
        };
        Ok(read_events(&[location], |_, _| true)?.pop())
    }
}

impl AppendView for Overlay<'_> {
    fn last_revision(&self, stream: &str) -> Result<Option<Revision>> {
        let len =
            self.committed_len(stream) + self.streams.get(stream).map_or(0, |p| p.len() as u64);
        Ok(len.checked_sub(1).map(Revision))
    }

    fn find_id(&self, id: &Uuid) -> Result<Option<EventLocation>> {
        if let Some(location) = self.ids.get(id) {
            return Ok(Some(location.clone()));
        }
        let Some(&position) = self.index.ids.get(id) else {
            return Ok(None);
        };
        Ok(self.read_committed(position)?.map(|e| EventLocation {
            stream: e.stream,
            revision: e.revision,
            position: e.position,
        }))
    }

    fn event_at(&self, stream: &str, revision: Revision) -> Result<Option<(Uuid, Position)>> {
        let committed = self.committed_len(stream);
        if revision.get() >= committed {
            let i = (revision.get() - committed) as usize;
            return Ok(self
                .streams
                .get(stream)
                .and_then(|p| p.get(i))
                .map(|&(id, pos)| (id, Position(pos))));
        }
        let position = self.index.streams[stream][revision.get() as usize];
        Ok(self.read_committed(position)?.map(|e| (e.id, e.position)))
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        options: LogOptions,
        active: ActiveSegment,
        requests: mpsc::Receiver<Request>,
    ) -> Self {
        Writer {
            shared,
            options,
            active,
            requests,
            buffer: Vec::new(),
        }
    }

    pub(crate) fn run(mut self) {
        while let Some(first) = self.requests.blocking_recv() {
            let mut batch = VecDeque::from([first]);
            let mut bytes = batch[0].bytes;
            while bytes < self.options.batch_bytes_max {
                match self.requests.try_recv() {
                    Ok(request) => {
                        bytes += request.bytes;
                        batch.push_back(request);
                    }
                    Err(_) => break,
                }
            }
            self.process(batch);
        }
    }

    fn process(&mut self, mut batch: VecDeque<Request>) {
        while !batch.is_empty() {
            if let Some(reason) = self.shared.poisoned() {
                fail_all(batch, || Error::Poisoned {
                    reason: reason.clone(),
                });
                return;
            }
            let (replies, pending, roll) = self.encode_batch(&mut batch);
            let outcome = if self.buffer.is_empty() {
                Ok(())
            } else {
                self.commit(pending)
            };
            match outcome {
                Ok(()) => {
                    let acked = replies.iter().filter(|(_, r)| r.is_ok()).count() as u64;
                    self.shared
                        .stats
                        .appends
                        .fetch_add(acked, Ordering::Relaxed);
                    for (reply, result) in replies {
                        let _ = reply.send(result);
                    }
                }
                Err(error) => {
                    for (reply, _) in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                    // The batch's later appends were decided against state that is not
                    // on disk; refuse them too rather than decide them again.
                    fail_all(batch, || error.clone());
                    return;
                }
            }
            if roll && let Err(error) = self.roll() {
                fail_all(batch, || error.clone());
                return;
            }
        }
    }

    /// Decides and encodes appends from the front of `batch` into `self.buffer` until
    /// the batch is done, the buffer is full, or the segment is. Returns the answers
    /// to send once the buffer is durable, the events to publish, and whether the
    /// segment must be sealed first for the rest.
    fn encode_batch(&mut self, batch: &mut VecDeque<Request>) -> (Vec<Reply>, Vec<Pending>, bool) {
        self.buffer.clear();
        let shared = self.shared.clone();
        let index = shared.index();
        let mut overlay = Overlay {
            index: &index,
            streams: HashMap::new(),
            ids: HashMap::new(),
            next_position: index.next_position,
        };
        let mut replies = Vec::new();
        let mut pending = Vec::new();
        let segment_len = self.active.index.len;
        let recorded_at = Utc::now().timestamp_micros();
        while let Some(request) = batch.front() {
            let used = segment_len + self.buffer.len() as u64;
            if used + request.bytes > self.options.segment_bytes_max && used > SEGMENT_HEADER_BYTES
            {
                return (replies, pending, true);
            }
            if !self.buffer.is_empty()
                && self.buffer.len() as u64 + request.bytes > self.options.batch_bytes_max
            {
                break;
            }
            let Some(request) = batch.pop_front() else {
                break;
            };
            match plan_append(&overlay, request.writes) {
                Err(error) => {
                    let _ = request.reply.send(Err(error));
                }
                Ok(AppendPlan::AlreadyWritten(results)) => {
                    replies.push((request.reply, Ok(results)))
                }
                Ok(AppendPlan::Write(planned)) => {
                    let results = self.encode_writes(
                        planned,
                        &mut overlay,
                        &mut pending,
                        segment_len,
                        recorded_at,
                    );
                    replies.push((request.reply, Ok(results)));
                }
            }
        }
        (replies, pending, false)
    }

    fn encode_writes(
        &mut self,
        planned: Vec<PlannedWrite>,
        overlay: &mut Overlay<'_>,
        pending: &mut Vec<Pending>,
        segment_len: u64,
        recorded_at_micros: i64,
    ) -> Vec<AppendResult> {
        let total: usize = planned.iter().map(|w| w.events.len()).sum();
        let mut written = 0;
        let mut results = Vec::with_capacity(planned.len());
        for write in planned {
            let stream: Arc<str> = match overlay.index.streams.get_key_value(write.stream.as_str())
            {
                Some((key, _)) => key.clone(),
                None => Arc::from(write.stream.as_str()),
            };
            let first_revision = write.first_revision;
            let mut position = overlay.next_position;
            for (i, event) in write.events.iter().enumerate() {
                written += 1;
                position = overlay.next_position;
                overlay.next_position += 1;
                let revision = first_revision.get() + i as u64;
                let offset = segment_len + self.buffer.len() as u64;
                encode(
                    &RecordParts {
                        position,
                        revision,
                        recorded_at_micros,
                        id: event.id,
                        version: event.event.version,
                        commit: written == total,
                        stream: &stream,
                        event_type: &event.event.event_type,
                        metadata: &event.event.metadata,
                        data: &event.event.data,
                    },
                    &mut self.buffer,
                );
                overlay
                    .streams
                    .entry(stream.clone())
                    .or_default()
                    .push((event.id, position));
                overlay.ids.insert(
                    event.id,
                    EventLocation {
                        stream: write.stream.clone(),
                        revision: Revision(revision),
                        position: Position(position),
                    },
                );
                pending.push(Pending {
                    stream: stream.clone(),
                    revision,
                    position,
                    offset: offset as u32,
                    id: event.id,
                });
            }
            results.push(AppendResult {
                first_revision,
                last_revision: Revision(first_revision.get() + write.events.len() as u64 - 1),
                position: Position(position),
            });
        }
        results
    }

    /// Writes the buffer, makes it durable, and publishes its events.
    fn commit(&mut self, pending: Vec<Pending>) -> Result<()> {
        let offset = self.active.index.len;
        let file = self.active.file.clone();
        if let Err(e) = file.write_all_at(&self.buffer, offset) {
            if is_disk_full(&e) {
                // Undo the partial write so the segment ends at its last commit; the
                // store stays usable once space is freed.
                if let Err(undo) = file.set_len(offset) {
                    self.shared
                        .poison(format!("could not undo a write on a full disk: {undo}"));
                }
                return Err(Error::StorageFull {
                    context: format!("appending to segment {}", self.active.number),
                });
            }
            let reason = format!("write to segment {} failed: {e}", self.active.number);
            self.shared.poison(reason.clone());
            return Err(Error::Poisoned { reason });
        }
        let sync_started = std::time::Instant::now();
        let synced = file.sync_data();
        let stats = &self.shared.stats;
        stats
            .sync_nanos
            .fetch_add(sync_started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if let Err(e) = synced {
            // Never retried: after a failed fsync the kernel may have dropped the
            // dirty pages, and a second fsync could report success for lost data.
            let reason = format!("fsync of segment {} failed: {e}", self.active.number);
            self.shared.poison(reason.clone());
            return Err(Error::Poisoned { reason });
        }
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats
            .events
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        stats
            .bytes
            .fetch_add(self.buffer.len() as u64, Ordering::Relaxed);
        self.publish(pending, offset + self.buffer.len() as u64);
        Ok(())
    }

    fn publish(&mut self, pending: Vec<Pending>, new_len: u64) {
        let mut index = self.shared.index.write().unwrap_or_else(|p| p.into_inner());
        let index = &mut *index;
        let Some(segment) = index.segments.last_mut() else {
            unreachable!("the index always holds the active segment");
        };
        for event in &pending {
            segment.offsets.push(event.offset);
            match index.streams.get_mut(&event.stream) {
                Some(positions) => positions.push(event.position),
                None => {
                    index
                        .streams
                        .insert(event.stream.clone(), vec![event.position]);
                }
            }
            index.ids.insert(event.id, event.position);
            if let Some((_, ids)) = index.id_segments.back_mut() {
                ids.push(event.id);
            }
            let next = self.active.stream_numbers.len() as u32;
            let stream = *self
                .active
                .stream_numbers
                .entry(event.stream.clone())
                .or_insert_with_key(|name| {
                    self.active.index.streams.push(name.clone());
                    next
                });
            self.active.index.entries.push(IndexEntry {
                offset: event.offset,
                stream,
                revision: event.revision,
                id: event.id,
            });
        }
        segment.len = new_len;
        index.next_position += pending.len() as u64;
        self.active.index.len = new_len;
    }

    /// Seals the active segment (writes its index file) and starts the next one.
    fn roll(&mut self) -> Result<()> {
        let shared = self.shared.clone();
        let storage = shared.storage.as_ref();
        let dir = &shared.segments_dir;
        let result =
            write_index(storage, dir, self.active.number, &self.active.index).and_then(|()| {
                create_segment(
                    storage,
                    dir,
                    self.active.number + 1,
                    self.active.index.first_position + self.active.index.entries.len() as u64,
                )
            });
        let next = match result {
            Ok(next) => next,
            Err(Error::Io { context, source }) if is_disk_full(&source) => {
                return Err(Error::StorageFull { context });
            }
            Err(error) => {
                self.shared.poison(error.to_string());
                return Err(error);
            }
        };
        let mut index = self.shared.index.write().unwrap_or_else(|p| p.into_inner());
        index.segments.push(crate::index::SegmentState {
            number: next.number,
            name: format!("{:010}.seg", next.number),
            file: next.file.clone(),
            first_position: next.index.first_position,
            offsets: Vec::new(),
            len: next.index.len,
        });
        index.id_segments.push_back((next.number, Vec::new()));
        index.trim_id_window(self.options.id_window_segments + 1);
        drop(index);
        self.active = next;
        Ok(())
    }
}

fn fail_all(batch: VecDeque<Request>, error: impl Fn() -> Error) {
    for request in batch {
        let _ = request.reply.send(Err(error()));
    }
}
