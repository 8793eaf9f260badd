//! Group commit, pipelined.
//!
//! The *writer* thread takes every append waiting in the queue, decides each against
//! the committed state plus everything written but not yet durable, encodes the batch
//! into one buffer and writes it with one `pwrite`, then queues it for syncing.
//! A few *sync workers* each run `fdatasync` on the active segment whenever something
//! was written that no fsync in flight covers. When an fsync returns, everything
//! written before it started is durable: the batches up to there are published to the
//! index and acknowledged, strictly in order. While fsyncs are in flight the writer
//! already prepares the next batches, and several fsyncs overlap (the disk and the
//! file system's journal serve them together). See "Transactions and the commit
//! protocol" in `docs/log-format.md`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use chrono::Utc;
use eventfold_core::plan::{
    AppendPlan, AppendView, CheckedWrites, EventLocation, PlannedWrite, StreamEnd, plan_append,
};
use eventfold_core::resend::Appended;
use eventfold_core::{AppendResult, Error, Position, Result, Revision};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::index::{FastMap, Index, SegmentState, read_events};
use crate::io::{OpenMode, Storage, StorageFile};
use crate::mark::{AckMark, MarkWriter};
use crate::options::LogOptions;
use crate::record::{RecordParts, encode};
use crate::segment::{ActiveSegment, create_segment, write_index};
use crate::segment::{IndexEntry, SEGMENT_HEADER_BYTES, index_path, segment_path};
use crate::shared::Shared;

/// An append waiting for the writer.
pub(crate) struct Request {
    pub writes: CheckedWrites,
    /// Encoded size of all its records.
    pub bytes: u64,
    pub reply: oneshot::Sender<Result<Appended>>,
}

/// What the writer thread is asked to do, in queue order.
pub(crate) enum Command {
    /// An append.
    Append(Request),
    /// Seal the active segment if it holds an event at or after `position`, then bring
    /// the acknowledged mark up to date (the start of a scavenge). Answered with the
    /// number of the active segment afterwards.
    Seal {
        position: Option<u64>,
        reply: oneshot::Sender<Result<u64>>,
    },
}

type Reply = (oneshot::Sender<Result<Appended>>, Result<Appended>);

/// An event encoded into the batch buffer, to be published after the fsync.
#[derive(Clone)]
struct Pending {
    stream: Arc<str>,
    revision: u64,
    position: u64,
    offset: u32,
    id: Uuid,
    /// Whether the appender gave the id (else the store made it, and no other append
    /// can name it before it is published).
    given_id: bool,
    /// Whether it may close its stream ([`StreamEnd::closes`]: a hard delete's
    /// tombstone or a surgery's move marker; what it says is in the [`EndCache`]).
    closes: bool,
}

/// Events written but not yet synced and published, oldest first. Together with the
/// committed index they are the state new appends are decided against.
#[derive(Default)]
struct Unsynced {
    events: VecDeque<Pending>,
    /// Id, position and closing flag of each stream's unsynced events.
    streams: FastMap<Arc<str>, VecDeque<(Uuid, u64, bool)>>,
    /// Stream, revision and position of each unsynced event id that its appender
    /// gave: an id the store made is known to nobody until it is published, so no
    /// append can repeat it while it is unsynced (and a batch of 1,000 such events
    /// costs no hash insert and removal each here).
    ids: FastMap<Uuid, (Arc<str>, u64, u64)>,
}

impl Unsynced {
    /// Adds the events of one append, the stream's list looked up once per run of
    /// events to the same stream.
    fn push(&mut self, events: &[Pending]) {
        for run in events.chunk_by(|a, b| Arc::ptr_eq(&a.stream, &b.stream)) {
            let list = self.streams.entry(run[0].stream.clone()).or_default();
            list.extend(run.iter().map(|e| (e.id, e.position, e.closes)));
        }
        for event in events {
            if event.given_id {
                self.ids.insert(
                    event.id,
                    (event.stream.clone(), event.revision, event.position),
                );
            }
            self.events.push_back(event.clone());
        }
    }

    /// Forgets events the index has published (positions below `committed`).
    fn prune(&mut self, committed: u64) {
        while self.events.front().is_some_and(|e| e.position < committed) {
            if let Some(event) = self.events.pop_front() {
                self.forget(&event, |list| list.pop_front());
            }
        }
    }

    /// Forgets the newest events until `len` remain (a batch that was not written).
    fn truncate(&mut self, len: usize) {
        while self.events.len() > len {
            if let Some(event) = self.events.pop_back() {
                self.forget(&event, |list| list.pop_back());
            }
        }
    }

    fn forget(
        &mut self,
        event: &Pending,
        pop: impl FnOnce(&mut VecDeque<(Uuid, u64, bool)>) -> Option<(Uuid, u64, bool)>,
    ) {
        if let Some(list) = self.streams.get_mut(&event.stream) {
            pop(list);
            if list.is_empty() {
                self.streams.remove(&event.stream);
            }
        }
        if event.given_id {
            self.ids.remove(&event.id);
        }
    }
}

/// The committed index seen through the unsynced events.
struct View<'a> {
    index: &'a Index,
    unsynced: &'a Unsynced,
    ends: &'a EndCache,
}

/// For each stream the writer appended to: its committed last revision when it was
/// checked, and what the event there says about appends ([`StreamEnd`]); also each
/// unsynced closing event's, put here when it is encoded. Without it,
/// every append to an existing stream would read its last record from disk.
#[derive(Default)]
struct EndCache(std::cell::RefCell<HashMap<Arc<str>, (u64, StreamEnd)>>);

impl View<'_> {
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

impl AppendView for View<'_> {
    fn last_revision(&self, stream: &str) -> Result<Option<Revision>> {
        let unsynced = self
            .unsynced
            .streams
            .get(stream)
            .map_or(0, |p| p.len() as u64);
        Ok((self.committed_len(stream) + unsynced)
            .checked_sub(1)
            .map(Revision))
    }

    fn find_id(&self, id: &Uuid) -> Result<Option<EventLocation>> {
        if let Some((stream, revision, position)) = self.unsynced.ids.get(id) {
            return Ok(Some(EventLocation {
                stream: stream.to_string(),
                revision: Revision(*revision),
                position: Position(*position),
            }));
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

    fn stream_end(&self, stream: &str, last: Revision) -> Result<StreamEnd> {
        // An unsynced last event's flag is in memory (and a closing one's answer in
        // the cache since it was encoded); a committed one's type is on disk, so its
        // answer is cached until the stream's committed end moves.
        let committed_len = self.committed_len(stream);
        let cached = || {
            self.ends
                .0
                .borrow()
                .get(stream)
                .filter(|(revision, _)| *revision == last.get())
                .map(|(_, end)| end.clone())
        };
        if last.get() >= committed_len {
            let i = (last.get() - committed_len) as usize;
            let closes = self
                .unsynced
                .streams
                .get(stream)
                .and_then(|p| p.get(i))
                .is_some_and(|&(_, _, closes)| closes);
            return Ok(if closes {
                cached().unwrap_or(StreamEnd::Deleted)
            } else {
                StreamEnd::Open
            });
        }
        if let Some(end) = cached() {
            return Ok(end);
        }
        let Some((key, positions)) = self.index.streams.get_key_value(stream) else {
            return Ok(StreamEnd::Open);
        };
        let Some(position) = positions.get(last.get() as usize) else {
            return Ok(StreamEnd::Open);
        };
        let end = self
            .read_committed(position)?
            .map_or(StreamEnd::Open, |e| StreamEnd::of(&e.event_type, &e.data));
        self.ends
            .0
            .borrow_mut()
            .insert(key.clone(), (last.get(), end.clone()));
        Ok(end)
    }

    fn event_at(&self, stream: &str, revision: Revision) -> Result<Option<(Uuid, Position)>> {
        let committed = self.committed_len(stream);
        if revision.get() >= committed {
            let i = (revision.get() - committed) as usize;
            return Ok(self
                .unsynced
                .streams
                .get(stream)
                .and_then(|p| p.get(i))
                .map(|&(id, pos, _)| (id, Position(pos))));
        }
        let position = self.index.streams[stream].at(revision.get() as usize);
        Ok(self.read_committed(position)?.map(|e| (e.id, e.position)))
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    options: LogOptions,
    requests: mpsc::Receiver<Command>,
    durability: Arc<Durability>,
    workers: Vec<JoinHandle<()>>,
    file: Arc<dyn StorageFile>,
    segment: u64,
    /// End of everything written to the active segment, synced or not.
    written: u64,
    /// The active segment's file is allocated up to here (see
    /// [`LogOptions::preallocate_bytes`]).
    allocated: u64,
    next_position: u64,
    unsynced: Unsynced,
    ends: EndCache,
    buffer: Vec<u8>,
}

impl Writer {
    /// Starts the sync workers and returns the writer, to be run on its own thread.
    pub(crate) fn start(
        shared: Arc<Shared>,
        options: LogOptions,
        active: ActiveSegment,
        mark: Option<MarkWriter>,
        requests: mpsc::Receiver<Command>,
    ) -> Result<Self> {
        let file = active.file.clone();
        let segment = active.number;
        let written = active.index.len;
        // An open keeps the zeros an earlier run allocated past the last record.
        let allocated = active.file.len().unwrap_or(written);
        let next_position = shared.index().next_position;
        let sync_files = open_sync_files(&shared, active.number, options.fsyncs_in_flight_max + 1)?;
        let durability = Arc::new(Durability {
            shared: shared.clone(),
            options: options.clone(),
            state: Mutex::new(DurabilityState {
                queue: VecDeque::new(),
                written,
                covered: written,
                durable: written,
                in_flight: 0,
                next_sync: 0,
                reported: 0,
                finished: BTreeMap::new(),
                closed: false,
                active,
                sync_files,
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
            closing: Condvar::new(),
            mark: Mutex::new(mark),
        });
        let mut workers = Vec::new();
        for n in 0..options.fsyncs_in_flight_max {
            let durability = durability.clone();
            let worker = std::thread::Builder::new()
                .name(format!("eventfold-sync-{n}"))
                .spawn(move || durability.work(n))
                .map_err(|e| Error::io("starting a sync worker thread", e))?;
            workers.push(worker);
        }
        if options.ack_mark_interval_ms > 0 {
            let durability = durability.clone();
            let interval = std::time::Duration::from_millis(options.ack_mark_interval_ms);
            let marker = std::thread::Builder::new()
                .name("eventfold-mark".into())
                .spawn(move || durability.mark_periodically(interval))
                .map_err(|e| Error::io("starting the mark thread", e))?;
            workers.push(marker);
        }
        Ok(Writer {
            shared,
            options,
            requests,
            durability,
            workers,
            file,
            segment,
            written,
            allocated,
            next_position,
            unsynced: Unsynced::default(),
            ends: EndCache::default(),
            buffer: Vec::new(),
        })
    }

    pub(crate) fn run(mut self) {
        while let Some(first) = self.requests.blocking_recv() {
            let first = match first {
                Command::Append(request) => request,
                Command::Seal { position, reply } => {
                    let _ = reply.send(self.seal(position));
                    continue;
                }
            };
            let mut batch = VecDeque::from([first]);
            let mut bytes = batch[0].bytes;
            let mut seal = None;
            while bytes < self.options.batch_bytes_max {
                match self.requests.try_recv() {
                    Ok(Command::Append(request)) => {
                        bytes += request.bytes;
                        batch.push_back(request);
                    }
                    Ok(Command::Seal { position, reply }) => {
                        seal = Some((position, reply));
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.process(batch);
            if let Some((position, reply)) = seal {
                let _ = reply.send(self.seal(position));
            }
        }
        // Let the sync workers make durable what was written, then stop them.
        self.durability.close();
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                tracing::error!("a sync worker thread panicked");
            }
        }
        // After a clean close the mark covers every acknowledged byte.
        self.durability.mark_now();
    }

    fn process(&mut self, mut batch: VecDeque<Request>) {
        while !batch.is_empty() {
            if let Some(reason) = self.shared.poisoned() {
                fail_all(batch, || Error::Poisoned {
                    reason: reason.clone(),
                });
                return;
            }
            let (replies, events, roll) = self.encode_batch(&mut batch);
            if let Err(error) = self.write() {
                // A poisoned store syncs nothing more: fail what waits for a sync.
                self.durability.fail_if_poisoned();
                // Nothing of this batch exists: forget its events and positions.
                self.unsynced
                    .truncate(self.unsynced.events.len() - events.len());
                self.next_position -= events.len() as u64;
                // Closing events of the batch were put in the cache when encoded; their
                // revisions will be written by other events now.
                if events.iter().any(|e| e.closes) {
                    self.ends.0.borrow_mut().clear();
                }
                for (reply, _) in replies {
                    let _ = reply.send(Err(error.clone()));
                }
                // The batch's later appends were decided against what was just
                // refused; refuse them too rather than decide them again.
                fail_all(batch, || error.clone());
                return;
            }
            if !replies.is_empty() {
                let idle = batch.is_empty() && self.requests.is_empty();
                let written = Written {
                    replies,
                    events,
                    end: self.written,
                    bytes: self.buffer.len() as u64,
                };
                self.durability.enqueue(written, idle);
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
        self.unsynced.prune(index.next_position);
        let mut replies = Vec::new();
        let mut events = Vec::new();
        let recorded_at = Utc::now().timestamp_micros();
        while let Some(request) = batch.front() {
            let used = self.written + self.buffer.len() as u64;
            if used + request.bytes > self.options.segment_bytes_max && used > SEGMENT_HEADER_BYTES
            {
                return (replies, events, true);
            }
            if !self.buffer.is_empty()
                && self.buffer.len() as u64 + request.bytes > self.options.batch_bytes_max
            {
                break;
            }
            let Some(request) = batch.pop_front() else {
                break;
            };
            let view = View {
                index: &index,
                unsynced: &self.unsynced,
                ends: &self.ends,
            };
            match plan_append(&view, request.writes) {
                Err(error) => {
                    let _ = request.reply.send(Err(error));
                }
                Ok(AppendPlan::AlreadyWritten(results)) => {
                    replies.push((request.reply, Ok(Appended::Resent(results))))
                }
                Ok(AppendPlan::Write(planned)) => {
                    let first = events.len();
                    let results = self.encode_writes(&index, planned, &mut events, recorded_at);
                    self.unsynced.push(&events[first..]);
                    replies.push((request.reply, Ok(Appended::Written(results))));
                }
            }
        }
        (replies, events, false)
    }

    fn encode_writes(
        &mut self,
        index: &Index,
        planned: Vec<PlannedWrite>,
        events: &mut Vec<Pending>,
        recorded_at_micros: i64,
    ) -> Vec<AppendResult> {
        let total: usize = planned.iter().map(|w| w.events.len()).sum();
        let mut written = 0;
        let mut results = Vec::with_capacity(planned.len());
        for write in planned {
            let stream: Arc<str> = match index.streams.get_key_value(write.stream.as_str()) {
                Some((key, _)) => key.clone(),
                None => match self.unsynced.streams.get_key_value(write.stream.as_str()) {
                    Some((key, _)) => key.clone(),
                    None => Arc::from(write.stream.as_str()),
                },
            };
            let first_revision = write.first_revision;
            let mut position = self.next_position;
            for (i, event) in write.events.iter().enumerate() {
                written += 1;
                position = self.next_position;
                self.next_position += 1;
                let revision = first_revision.get() + i as u64;
                let offset = self.written + self.buffer.len() as u64;
                encode(
                    &RecordParts {
                        position,
                        revision,
                        recorded_at_micros: event
                            .recorded_at
                            .map_or(recorded_at_micros, |t| t.timestamp_micros()),
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
                let closes = StreamEnd::closes(&event.event.event_type);
                if closes {
                    self.ends.0.borrow_mut().insert(
                        stream.clone(),
                        (
                            revision,
                            StreamEnd::of(&event.event.event_type, &event.event.data),
                        ),
                    );
                }
                events.push(Pending {
                    stream: stream.clone(),
                    revision,
                    position,
                    offset: offset as u32,
                    id: event.id,
                    given_id: event.event.id.is_some(),
                    closes,
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

    /// Writes the buffer at the end of the active segment (not yet durable).
    fn write(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if let Some(reason) = self.shared.poisoned() {
            return Err(Error::Poisoned { reason });
        }
        let end = self.written + self.buffer.len() as u64;
        if end > self.allocated {
            self.preallocate(end);
        }
        match self.file.write_all_at(&self.buffer, self.written) {
            Ok(()) => {
                self.written += self.buffer.len() as u64;
                Ok(())
            }
            Err(e) if is_disk_full(&e) => {
                // Undo the partial write so the segment ends where the written batches
                // end; the store stays usable once space is freed.
                // Synced, so that a power loss cannot bring the refused batch back.
                let undone = self
                    .file
                    .set_len(self.written)
                    .and_then(|()| self.file.sync_data());
                self.allocated = self.written;
                if let Err(undo) = undone {
                    self.shared
                        .poison(format!("could not undo a write on a full disk: {undo}"));
                }
                Err(Error::StorageFull {
                    context: format!("appending to segment {}", self.segment),
                })
            }
            Err(e) => {
                let reason = format!("write to segment {} failed: {e}", self.segment);
                self.shared.poison(reason.clone());
                Err(Error::Poisoned { reason })
            }
        }
    }

    /// Extends the active segment's file past `end` by whole steps of
    /// [`LogOptions::preallocate_bytes`] (up to the segment's largest size). A failure
    /// only costs speed: the write that follows grows the file itself, and reports a
    /// full disk as it always does.
    fn preallocate(&mut self, end: u64) {
        let step = self.options.preallocate_bytes;
        if step == 0 {
            return;
        }
        let target = end
            .div_ceil(step)
            .saturating_mul(step)
            .min(self.options.segment_bytes_max)
            .max(end);
        match self.file.allocate(target) {
            Ok(()) => self.allocated = target,
            Err(e) => {
                tracing::debug!(segment = self.segment, error = %e, "segment not preallocated; it grows with each write");
                // Not asked again for this segment.
                self.allocated = self.options.segment_bytes_max;
            }
        }
    }

    /// Seals the active segment if it holds an event at or after `position` (`None`:
    /// never), then writes the acknowledged mark, so that it names the active segment
    /// and no sealed one. Returns the active segment's number.
    fn seal(&mut self, position: Option<u64>) -> Result<u64> {
        if let Some(reason) = self.shared.poisoned() {
            return Err(Error::Poisoned { reason });
        }
        let first = self
            .shared
            .index()
            .segments
            .last()
            .map(|s| s.first_position);
        if let (Some(position), Some(first)) = (position, first)
            && position < self.next_position
            && self.written > SEGMENT_HEADER_BYTES
            && position >= first
        {
            self.roll()?;
        }
        self.durability.mark_now();
        Ok(self.segment)
    }

    /// Seals the active segment once everything written is durable, and continues in
    /// the new segment.
    fn roll(&mut self) -> Result<()> {
        let (file, number) = self.durability.roll()?;
        self.file = file;
        self.segment = number;
        self.written = SEGMENT_HEADER_BYTES;
        self.allocated = SEGMENT_HEADER_BYTES;
        Ok(())
    }
}

impl Drop for Writer {
    /// Also when the writer thread panics: the sync workers finish and stop, so no
    /// append waits for ever.
    fn drop(&mut self) {
        self.durability.close();
    }
}

/// A batch written to the active segment, ending at `end`, waiting to be durable.
struct Written {
    replies: Vec<Reply>,
    events: Vec<Pending>,
    end: u64,
    bytes: u64,
}

/// The second stage: fsyncs, publishing, acknowledging; and sealing segments.
struct Durability {
    shared: Arc<Shared>,
    options: LogOptions,
    state: Mutex<DurabilityState>,
    /// Signalled when something is written, or on close.
    work: Condvar,
    /// Signalled when batches are published or an fsync ends.
    idle: Condvar,
    /// Signalled on close, for the mark thread.
    closing: Condvar,
    /// The acknowledged mark (absent on stores opened without one, in some tests).
    mark: Mutex<Option<MarkWriter>>,
}

/// Offsets are in the active segment; they start over when it is sealed, which only
/// happens when nothing is queued or in flight.
struct DurabilityState {
    /// Written batches not yet published, in order.
    queue: VecDeque<Written>,
    /// End of everything written.
    written: u64,
    /// End of what the fsyncs started so far cover.
    covered: u64,
    /// End of what a returned fsync made durable.
    durable: u64,
    in_flight: usize,
    /// Sequence number the next fsync gets.
    next_sync: u64,
    /// Every fsync numbered below this has reported, and its result was applied.
    reported: u64,
    /// Results of fsyncs that returned before an earlier one: (target, error).
    finished: BTreeMap<u64, (u64, Option<String>)>,
    closed: bool,
    active: ActiveSegment,
    /// One descriptor of the active segment per sync slot (each worker, and the
    /// writer's inline syncs). Linux reports a writeback error to every open file
    /// description once, but to only one of several fsyncs sharing a descriptor: with
    /// one each, every fsync whose data was lost sees the error.
    sync_files: Vec<Arc<dyn StorageFile>>,
}

impl DurabilityState {
    /// The invariants of the counters, checked (in debug builds) at the end of every
    /// transition, before the lock is released: each fsync started is either in flight
    /// or has finished and waits for an earlier one; `durable ≤ covered ≤ written`;
    /// queued batches end in write order, within what was written; and, once
    /// published, no queued batch is durable (unless the store is poisoned and the
    /// queue is about to be failed).
    fn check(&self, fsyncs_in_flight_max: usize, poisoned: bool) {
        debug_assert!(
            self.durable <= self.covered,
            "durable {} > covered {}",
            self.durable,
            self.covered
        );
        debug_assert!(
            self.covered <= self.written,
            "covered {} > written {}",
            self.covered,
            self.written
        );
        debug_assert_eq!(
            self.next_sync - self.reported,
            (self.in_flight + self.finished.len()) as u64,
            "fsyncs started but neither in flight nor finished"
        );
        debug_assert!(
            self.in_flight <= fsyncs_in_flight_max + 1,
            "{} fsyncs in flight",
            self.in_flight
        );
        debug_assert!(
            self.finished
                .keys()
                .all(|&n| n >= self.reported && n < self.next_sync),
            "a finished fsync outside the window of unreported ones"
        );
        debug_assert!(
            self.queue
                .iter()
                .zip(self.queue.iter().skip(1))
                .all(|(a, b)| a.end <= b.end)
                && self.queue.back().is_none_or(|b| b.end <= self.written),
            "queued batches out of write order"
        );
        debug_assert!(
            poisoned || self.queue.front().is_none_or(|b| b.end > self.durable),
            "a durable batch left unpublished"
        );
    }
}

impl Durability {
    fn state(&self) -> MutexGuard<'_, DurabilityState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a written batch. With `inline`, when no fsync is in flight, the calling
    /// thread syncs it itself: under light load that saves handing the batch to a
    /// sync worker and waking it, which costs a good part of one fsync on small VMs.
    fn enqueue(&self, batch: Written, inline: bool) {
        let mut state = self.state();
        state.written = state.written.max(batch.end);
        state.queue.push_back(batch);
        // A batch of re-sends only (no bytes) may be answerable right away.
        self.publish_ready(&mut state);
        state.check(
            self.options.fsyncs_in_flight_max,
            self.shared.poisoned().is_some(),
        );
        if inline && state.in_flight == 0 && state.written > state.covered {
            let slot = self.options.fsyncs_in_flight_max;
            drop(self.sync_written(state, slot));
        } else {
            drop(state);
            self.work.notify_one();
        }
    }

    /// Answers every queued batch with the poisoning error, once the store is poisoned.
    fn fail_if_poisoned(&self) {
        let mut state = self.state();
        if self.shared.poisoned().is_some() {
            self.publish_ready(&mut state);
            self.idle.notify_all();
            let mark = self.current_mark(&state);
            self.write_mark(mark);
        }
    }

    fn close(&self) {
        self.state().closed = true;
        self.work.notify_all();
        self.closing.notify_all();
    }

    /// Brings the acknowledged mark up to what is durable now (see [`Self::current_mark`]).
    fn mark_now(&self) {
        let mark = self.current_mark(&self.state());
        self.write_mark(mark);
    }

    /// What the mark should say. Everything durable in the active segment was
    /// acknowledged (batches are answered as soon as an fsync covers them), so the
    /// durable end is a lower bound. Once the store is poisoned nothing more is
    /// published: what was published is then exactly what was acknowledged, and the
    /// mark says so, so that recovery may cut what a later fsync made durable behind
    /// the pages a failed one lost.
    fn current_mark(&self, state: &DurabilityState) -> AckMark {
        if self.shared.poisoned().is_some() {
            AckMark {
                exact: true,
                ..AckMark::lower_bound(state.active.number, state.active.index.len)
            }
        } else {
            AckMark::lower_bound(state.active.number, state.durable)
        }
    }

    fn write_mark(&self, mark: AckMark) {
        let mut writer = self.mark.lock().unwrap_or_else(|p| p.into_inner());
        let Some(writer) = writer.as_mut() else {
            return;
        };
        // A lower bound computed before the store was poisoned must not replace the
        // exact end written since (poisoning is for good).
        if writer.last().is_some_and(|last| last.exact) && !mark.exact {
            return;
        }
        if let Err(error) = writer.write(mark) {
            // The mark on disk stays an older, still true, lower bound.
            tracing::warn!(%error, "cannot bring the acknowledged mark up to date");
        }
    }

    /// The mark thread: brings the mark up to date every `interval` until close.
    fn mark_periodically(&self, interval: std::time::Duration) {
        let mut state = self.state();
        while !state.closed {
            state = self
                .closing
                .wait_timeout(state, interval)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            if state.closed {
                break;
            }
            drop(state);
            self.mark_now();
            state = self.state();
        }
    }

    /// A sync worker: fsync whatever is written and not yet covered, then publish.
    fn work(&self, slot: usize) {
        let mut state = self.state();
        loop {
            // After a failure nothing more is synced: no retry that could succeed
            // over lost data.
            if state.written > state.covered && self.shared.poisoned().is_none() {
                state = self.sync_written(state, slot);
            } else if state.closed {
                return;
            } else {
                state = self.work.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    /// Runs one fsync covering everything written so far, then publishes what it made
    /// durable. Takes and returns the state lock, which is released during the fsync.
    fn sync_written<'a>(
        &'a self,
        mut state: MutexGuard<'a, DurabilityState>,
        slot: usize,
    ) -> MutexGuard<'a, DurabilityState> {
        let target = state.written;
        state.covered = target;
        state.in_flight += 1;
        let sequence = state.next_sync;
        state.next_sync += 1;
        let file = state.sync_files[slot].clone();
        let number = state.active.number;
        state.check(
            self.options.fsyncs_in_flight_max,
            self.shared.poisoned().is_some(),
        );
        drop(state);
        let started = std::time::Instant::now();
        let synced = file.sync_data();
        let stats = &self.shared.stats;
        stats
            .sync_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats.commits.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        state.in_flight -= 1;
        let error = synced
            .err()
            .map(|e| format!("fsync of segment {number} failed: {e}"));
        state.finished.insert(sequence, (target, error));
        // Results count in the order the fsyncs started: a later fsync's success must
        // not publish anything before an earlier one has reported.
        loop {
            let next = state.reported;
            let Some((target, error)) = state.finished.remove(&next) else {
                break;
            };
            state.reported += 1;
            match error {
                None => state.durable = state.durable.max(target),
                // Never retried: after a failed fsync the kernel may have dropped the
                // dirty pages, and a later fsync could report success for lost data.
                // Nothing unpublished is acknowledged from now on.
                Some(reason) => self.shared.poison(reason),
            }
        }
        self.publish_ready(&mut state);
        state.check(
            self.options.fsyncs_in_flight_max,
            self.shared.poisoned().is_some(),
        );
        self.idle.notify_all();
        state
    }

    /// Publishes and acknowledges, in order, the queued batches that are durable; fails
    /// them all once the store is poisoned.
    fn publish_ready(&self, state: &mut DurabilityState) {
        if let Some(reason) = self.shared.poisoned() {
            for batch in state.queue.drain(..) {
                for (reply, _) in batch.replies {
                    let _ = reply.send(Err(Error::Poisoned {
                        reason: reason.clone(),
                    }));
                }
            }
            return;
        }
        let stats = &self.shared.stats;
        while state.queue.front().is_some_and(|b| b.end <= state.durable) {
            let Some(batch) = state.queue.pop_front() else {
                break;
            };
            stats
                .events
                .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
            stats.bytes.fetch_add(batch.bytes, Ordering::Relaxed);
            self.publish(&mut state.active, &batch.events, batch.end);
            let mut appends = 0;
            for (reply, result) in batch.replies {
                appends += u64::from(result.is_ok());
                let _ = reply.send(result);
            }
            stats.appends.fetch_add(appends, Ordering::Relaxed);
        }
    }

    fn publish(&self, active: &mut ActiveSegment, events: &[Pending], end: u64) {
        let mut index = self.shared.index.write().unwrap_or_else(|p| p.into_inner());
        let index = &mut *index;
        let Some(segment) = index.segments.last_mut() else {
            unreachable!("the index always holds the active segment");
        };
        // Each stream is looked up once per run of its events (an append of 1,000
        // events is one run), not once per event, while readers wait for the lock.
        for run in events.chunk_by(|a, b| Arc::ptr_eq(&a.stream, &b.stream)) {
            let name = &run[0].stream;
            let positions = index.streams.entry(name.clone()).or_default();
            positions.extend(run.iter().map(|e| e.position));
            let next = active.stream_numbers.len() as u32;
            let stream = *active
                .stream_numbers
                .entry(name.clone())
                .or_insert_with_key(|name| {
                    active.index.streams.push(name.clone());
                    next
                });
            for event in run {
                segment.offsets.push(event.offset);
                index.ids.insert(event.id, event.position);
                active.index.entries.push(IndexEntry {
                    offset: event.offset,
                    stream,
                    revision: event.revision,
                    id: event.id,
                });
            }
            if let Some((_, ids)) = index.id_segments.back_mut() {
                ids.extend(run.iter().map(|e| e.id));
            }
        }
        segment.len = end.max(segment.len);
        index.next_position += events.len() as u64;
        active.index.len = segment.len;
        self.shared.head.send_replace(index.next_position);
    }

    /// Waits until everything written is durable and published, then seals the active
    /// segment (writes its index file) and starts the next one.
    fn roll(&self) -> Result<(Arc<dyn StorageFile>, u64)> {
        let mut state = self.state();
        while !state.queue.is_empty() || state.in_flight > 0 || state.written > state.durable {
            if self.shared.poisoned().is_some() && state.in_flight == 0 {
                break;
            }
            self.work.notify_one();
            state = self.idle.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(reason) = self.shared.poisoned() {
            return Err(Error::Poisoned { reason });
        }
        let storage = self.shared.storage.as_ref();
        let dir = &self.shared.segments_dir;
        let active = &state.active;
        let number = active.number;
        let first_position = active.index.end_position();
        // A sealed segment ends with its last record: the zeros allocated ahead of
        // the writes are cut off (and the cut made durable) before its index file
        // says it is sealed.
        let result = active
            .file
            .set_len(active.index.len)
            .and_then(|()| active.file.sync_data())
            .map_err(|e| Error::io(format!("truncating segment {number} to its records"), e))
            .and_then(|()| write_index(storage, dir, number, &active.index))
            .and_then(|()| create_segment(storage, dir, number + 1, first_position))
            .and_then(|next| {
                let count = self.options.fsyncs_in_flight_max + 1;
                let files = open_sync_files(&self.shared, next.number, count)?;
                Ok((next, files))
            });
        let (next, sync_files) = match result {
            Ok(next) => next,
            Err(error) => {
                // Undo the half-done seal, so the segment stays the active one and no
                // batch is ever written to a segment whose index file exists.
                let undo = undo_roll(storage, dir, number);
                return Err(match (error, undo) {
                    (Error::Io { context, source }, Ok(())) if is_disk_full(&source) => {
                        Error::StorageFull { context }
                    }
                    (error, undo) => {
                        let reason = match undo {
                            Ok(()) => error.to_string(),
                            Err(undo) => format!("{error}; undoing the seal failed too: {undo}"),
                        };
                        self.shared.poison(reason);
                        error
                    }
                });
            }
        };
        let mut index = self.shared.index.write().unwrap_or_else(|p| p.into_inner());
        index.segments.push(SegmentState {
            number: next.number,
            name: format!("{:010}.seg", next.number),
            file: next.file.clone(),
            first_position,
            offsets: Vec::new(),
            len: next.index.len,
            cold: false,
        });
        index.id_segments.push_back((next.number, Vec::new()));
        index.trim_id_window(self.options.id_window_segments + 1);
        drop(index);
        let answer = (next.file.clone(), next.number);
        state.written = next.index.len;
        state.covered = next.index.len;
        state.durable = next.index.len;
        state.active = next;
        state.sync_files = sync_files;
        state.check(
            self.options.fsyncs_in_flight_max,
            self.shared.poisoned().is_some(),
        );
        Ok(answer)
    }
}

/// Opens `count` descriptors of segment `number` for fsyncs (see `sync_files`).
fn open_sync_files(
    shared: &Shared,
    number: u64,
    count: usize,
) -> Result<Vec<Arc<dyn StorageFile>>> {
    let path = segment_path(&shared.segments_dir, number);
    (0..count)
        .map(|_| {
            shared
                .storage
                .open(&path, OpenMode::ReadWrite)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))
        })
        .collect()
}

/// Removes what a failed seal of segment `number` left: the next segment's file and
/// this segment's index file, then syncs the directory.
fn undo_roll(storage: &dyn Storage, dir: &std::path::Path, number: u64) -> Result<()> {
    for path in [segment_path(dir, number + 1), index_path(dir, number)] {
        match storage.remove(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }
    storage
        .sync_dir(dir)
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

fn fail_all(batch: VecDeque<Request>, error: impl Fn() -> Error) {
    for request in batch {
        let _ = request.reply.send(Err(error()));
    }
}
