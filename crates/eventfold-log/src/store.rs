//! `LogStore`: opening (with recovery), reading, and the `EventStore` implementation.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use eventfold_core::resend::{Appended, ResendCheck};
use eventfold_core::{
    AllSlice, AppendResult, Direction, Error, EventStore, IndexStream, Position, ReadAll,
    ReadStream, RecordedEvent, Result, Revision, StreamWrite,
};
use tokio::sync::{mpsc, oneshot};

use crate::cold::ColdShared;
use crate::index::{Location, read_events};
use crate::io::{LockGuard, OsStorage, Storage};
use crate::options::LogOptions;
use crate::positions::Positions;
use crate::record::{RECORD_BYTES_MAX, encoded_len};
use crate::recovery::{Access, TailDamage, recover};
use crate::scavenge::{ScavengeOptions, ScavengeProgress, ScavengeReport};
use crate::segment::lock_data_dir;
use crate::shared::{Counters, LogStats, Shared};
use crate::writer::{Command, Request, Writer};

/// The embedded event store: a segmented, checksummed, group-committed log in a data
/// directory.
///
/// ```
/// use eventfold_core::{EventData, EventStore, ExpectedVersion, ReadStream};
/// use eventfold_log::{LogOptions, LogStore};
///
/// # let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
/// # rt.block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let store = LogStore::open(dir.path(), LogOptions::default()).unwrap();
/// let event = EventData::json("OrderPlaced", &serde_json::json!({"total": 5})).unwrap();
/// store.append("order-1", ExpectedVersion::NoStream, vec![event]).await.unwrap();
/// drop(store);
///
/// let store = LogStore::open(dir.path(), LogOptions::default()).unwrap();
/// let events = store.read_stream("order-1", ReadStream::forward()).await.unwrap();
/// assert_eq!(events[0].event_type, "OrderPlaced");
/// # });
/// ```
pub struct LogStore {
    shared: Arc<Shared>,
    options: LogOptions,
    requests: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    scrub: Option<JoinHandle<()>>,
    damage: Option<TailDamage>,
    store_id: Option<uuid::Uuid>,
    _lock: LockGuard,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("segments_dir", &self.shared.segments_dir)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (creating if needed) the store in `dir` on the real file system.
    ///
    /// Recovery cuts a torn tail (bytes of a write that was never acknowledged) and
    /// refuses, with [`Error::Corrupted`] and without changing any file, a store whose
    /// active segment is damaged in a way a torn write cannot explain: records intact
    /// after the damage, or damage below what was acknowledged. Such a store still opens
    /// with [`LogStore::open_read_only`], and `repair` decides what to give up.
    pub fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<Self> {
        Self::open_with(Arc::new(OsStorage), dir.as_ref(), options)
    }

    /// Says, in the data directory's lock file, what this process does with the store
    /// (`serving http://127.0.0.1:2113`, say), so that another process refused the
    /// store can tell its user where to reach it ([`Error::Locked`] carries it).
    pub fn announce(&self, doing: &str) {
        crate::io::describe_lock_holder(&self._lock, doing);
    }

    /// Opens the store in `dir` on the given storage (a simulated disk in tests).
    pub fn open_with(storage: Arc<dyn Storage>, dir: &Path, options: LogOptions) -> Result<Self> {
        Self::open_as(storage, dir, options, Access::ReadWrite)
    }

    /// Opens an existing store for reading only: nothing in `dir` is changed (a torn
    /// tail is left in place and ignored), appends are refused, and a damaged active
    /// segment is read up to its last intact commit ([`LogStore::damage`] says what
    /// was found). Takes the store's lock like a writer.
    ///
    /// ```
    /// use eventfold_core::{EventData, EventStore, ExpectedVersion};
    /// use eventfold_log::{LogOptions, LogStore};
    ///
    /// # let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    /// # rt.block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = LogStore::open(dir.path(), LogOptions::default()).unwrap();
    /// let event = EventData::json("OrderPlaced", &serde_json::json!({"total": 5})).unwrap();
    /// store.append("order-1", ExpectedVersion::NoStream, vec![event.clone()]).await.unwrap();
    /// drop(store);
    ///
    /// let reader = LogStore::open_read_only(dir.path()).unwrap();
    /// assert_eq!(reader.event_count(), 1);
    /// assert!(reader.append("order-1", ExpectedVersion::Any, vec![event]).await.is_err());
    /// # });
    /// ```
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_read_only_with(Arc::new(OsStorage), dir.as_ref())
    }

    /// [`LogStore::open_read_only`] on the given storage.
    pub fn open_read_only_with(storage: Arc<dyn Storage>, dir: &Path) -> Result<Self> {
        Self::open_as(storage, dir, LogOptions::default(), Access::ReadOnly)
    }

    fn open_as(
        storage: Arc<dyn Storage>,
        dir: &Path,
        options: LogOptions,
        access: Access,
    ) -> Result<Self> {
        options.validate()?;
        if access == Access::ReadOnly && !storage_has_store(storage.as_ref(), dir) {
            return Err(Error::Backend(format!(
                "{} holds no eventfold store",
                dir.display()
            )));
        }
        if access == Access::ReadWrite {
            storage
                .create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating data directory {}", dir.display()), e))?;
        }
        let lock = lock_data_dir(storage.as_ref(), dir)?;
        let cold = Arc::new(ColdShared::new(options.cold_cache_bytes_max));
        let recovered = recover(storage.as_ref(), dir, &options, access, &cold)?;
        let head = tokio::sync::watch::Sender::new(recovered.index.next_position);
        let shared = Arc::new(Shared {
            storage,
            segments_dir: recovered.segments_dir.clone(),
            index: RwLock::new(recovered.index),
            poisoned: Mutex::new(None),
            stats: Counters::default(),
            head,
            closing: std::sync::atomic::AtomicBool::new(false),
            damage_found: Mutex::new(Vec::new()),
            scavenging: Mutex::new(()),
            cold,
        });
        let scrub = if options.scrub_sealed_segments {
            let shared = shared.clone();
            Some(
                std::thread::Builder::new()
                    .name("eventfold-scrub".into())
                    .spawn(move || crate::scrub::scrub(shared))
                    .map_err(|e| Error::io("starting the scrub thread", e))?,
            )
        } else {
            None
        };
        let damage = recovered.damage;
        let store_id = recovered.store_id;
        if access == Access::ReadOnly {
            return Ok(LogStore {
                shared,
                options,
                requests: None,
                writer: None,
                scrub,
                damage,
                store_id,
                _lock: lock,
            });
        }
        let (tx, rx) = mpsc::channel(options.queue_appends_max);
        let writer = Writer::start(
            shared.clone(),
            options.clone(),
            recovered.active,
            recovered.mark,
            rx,
        )?;
        let handle = std::thread::Builder::new()
            .name("eventfold-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::io("starting the writer thread", e))?;
        Ok(LogStore {
            shared,
            options,
            requests: Some(tx),
            writer: Some(handle),
            scrub,
            damage,
            store_id,
            _lock: lock,
        })
    }

    /// Damage a read-only open found in the active segment (a read-write open refuses
    /// such a store instead).
    pub fn damage(&self) -> Option<&TailDamage> {
        self.damage.as_ref()
    }

    /// Whether the store was opened for reading only.
    pub fn is_read_only(&self) -> bool {
        self.requests.is_none() && self.writer.is_none()
    }

    /// Waits until the scrub has checked every sealed segment (at once when it does
    /// not run), then returns the damage it found.
    pub fn wait_for_scrub(&mut self) -> Vec<String> {
        if let Some(handle) = self.scrub.take()
            && handle.join().is_err()
        {
            tracing::error!("the scrub thread panicked");
        }
        self.damage_found()
    }

    /// Stops the writer after it has finished the appends already queued.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.requests.take();
        if let Some(handle) = self.writer.take()
            && handle.join().is_err()
        {
            tracing::error!("the writer thread panicked");
        }
        if let Some(handle) = self.scrub.take()
            && handle.join().is_err()
        {
            tracing::error!("the scrub thread panicked");
        }
    }

    /// Damage the scrub has found in sealed segments so far (see
    /// [`LogOptions::scrub_sealed_segments`]).
    pub fn damage_found(&self) -> Vec<String> {
        self.shared
            .damage_found
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the scrub has checked every sealed segment it set out to check.
    pub fn scrub_finished(&self) -> bool {
        self.scrub.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Checks sizes before an append reaches the writer, so an oversized append is
    /// refused without delaying anyone else's.
    fn check_sizes(&self, writes: &[StreamWrite]) -> Result<u64> {
        let mut total = 0u64;
        for write in writes {
            for event in &write.events {
                let len = encoded_len(
                    &write.stream,
                    &event.event_type,
                    &event.metadata,
                    &event.data,
                );
                if len > RECORD_BYTES_MAX {
                    return Err(Error::TooLarge {
                        what: "event",
                        actual: len as u64,
                        limit: RECORD_BYTES_MAX as u64,
                    });
                }
                total += len as u64;
            }
        }
        if total > self.options.append_bytes_max {
            return Err(Error::TooLarge {
                what: "append",
                actual: total,
                limit: self.options.append_bytes_max,
            });
        }
        Ok(total)
    }

    fn request(
        &self,
        writes: Vec<StreamWrite>,
    ) -> Result<(Request, oneshot::Receiver<Result<Appended>>)> {
        if self.is_read_only() {
            return Err(Error::ReadOnly {
                reason: format!(
                    "the store in {} was opened for reading only",
                    self.shared
                        .segments_dir
                        .parent()
                        .unwrap_or(&self.shared.segments_dir)
                        .display()
                ),
            });
        }
        if let Some(reason) = self.shared.poisoned() {
            return Err(Error::Poisoned { reason });
        }
        // Checked here, on the caller's thread: the writer thread only decides.
        let writes = eventfold_core::plan::check_writes(writes)?;
        let bytes = self.check_sizes(&writes)?;
        let (reply, answer) = oneshot::channel();
        Ok((
            Request {
                writes,
                bytes,
                reply,
            },
            answer,
        ))
    }

    /// Appends atomically to several streams, blocking the calling thread (for code
    /// outside an async runtime).
    pub fn append_multi_blocking(&self, writes: Vec<StreamWrite>) -> Result<Vec<AppendResult>> {
        let check = ResendCheck::of(&writes);
        let (request, answer) = self.request(writes)?;
        let sender = self.requests.as_ref().ok_or(Error::Closed)?;
        sender
            .blocking_send(Command::Append(request))
            .map_err(|_| Error::Closed)?;
        let appended = answer.blocking_recv().map_err(|_| Error::Closed)??;
        ResendCheck::confirm_with(check, appended, |stream, options| {
            read_stream(&self.shared, stream, options)
        })
    }

    /// Reads one stream, blocking the calling thread.
    pub fn read_stream_blocking(
        &self,
        stream: &str,
        options: ReadStream,
    ) -> Result<Vec<RecordedEvent>> {
        read_stream(&self.shared, stream, options)
    }

    /// Reads a page of the global log, blocking the calling thread.
    pub fn read_all_blocking(&self, options: &ReadAll) -> Result<AllSlice> {
        read_all(&self.shared, options)
    }

    /// Every segment as it stands now, oldest first (the last is the active one): what
    /// an archiver copies. Each snapshot reads its segment's committed bytes even while
    /// appends go on or a scavenge swaps the file.
    pub fn segments(&self) -> Vec<crate::SegmentSnapshot> {
        crate::snapshot::segment_snapshots(&self.shared)
    }

    /// Gives the store a way to fetch the segments whose local copy was dropped
    /// ([`LogStore::drop_local_copy`]); without one, a read that reaches such a
    /// segment fails with an error naming its archive.
    pub fn set_segment_fetcher(&self, fetcher: Arc<dyn crate::SegmentFetcher>) {
        self.shared.cold.set_fetcher(fetcher);
    }

    /// Drops the local file of a sealed segment that the archive at `archive` holds
    /// whole, with CRC-32C `crc32c` (as the archive's manifest says): the local bytes
    /// are checked against it first, a marker naming the archive replaces the file,
    /// and reads that reach the segment fetch it back (see
    /// [`LogStore::set_segment_fetcher`]). Refused for the active segment and for a
    /// segment rewritten since `snapshot` was taken. Returns the bytes freed (0 when
    /// the segment was cold already). Blocks the calling thread.
    pub fn drop_local_copy(
        &self,
        snapshot: &crate::SegmentSnapshot,
        archive: &str,
        crc32c: u32,
    ) -> Result<u64> {
        if self.requests.is_none() {
            return Err(Error::ReadOnly {
                reason: "dropping a segment's local copy needs the store opened for writing".into(),
            });
        }
        crate::cold::drop_local_copy(&self.shared, snapshot, archive, crc32c)
    }

    /// The store's id (`segments/store.id`), made the first time the store was opened
    /// for writing and kept by a restore from its archive: what an archive checks to
    /// tell its store from another. `None` only on a read-only open of a store made
    /// by a release before ids that was not opened for writing since.
    pub fn store_id(&self) -> Option<uuid::Uuid> {
        self.store_id
    }

    /// Number of events in the store.
    pub fn event_count(&self) -> u64 {
        self.shared.index().next_position
    }

    /// Counters of the writer since the store was opened.
    pub fn stats(&self) -> LogStats {
        let c = &self.shared.stats;
        LogStats {
            commits: c.commits.load(Ordering::Relaxed),
            appends: c.appends.load(Ordering::Relaxed),
            events: c.events.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            sync_nanos: c.sync_nanos.load(Ordering::Relaxed),
        }
    }

    /// Removes from the disk every event below its stream's cut: `keep_from(stream)`
    /// is the first revision of `stream` to keep (0 keeps everything). Sealed segments
    /// holding such events are rewritten beside the old files and swapped in, the
    /// active one sealed first when it holds one; appends and reads go on meanwhile.
    /// Every surviving event keeps its position, revision, id and `recorded_at`; the
    /// removed ones leave gaps that reads pass over. `progress` is called after each
    /// segment examined. Blocks the calling thread: call it outside an async task (or
    /// use [`LogStore::scavenge`]).
    ///
    /// The cut of a stream is normally what its metadata hides
    /// (`eventfold_metadata::retention_cuts`); a cut above what readers may lose
    /// removes visible events, so the caller must hold to that rule.
    ///
    /// ```
    /// use eventfold_core::{EventData, EventStore, ExpectedVersion, ReadStream};
    /// use eventfold_log::{LogOptions, LogStore, ScavengeOptions};
    ///
    /// # let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = LogStore::open(dir.path(), LogOptions::default()).unwrap();
    /// let events = (0..3)
    ///     .map(|n| EventData::json("Counted", &serde_json::json!({"n": n})).unwrap())
    ///     .collect();
    /// store.append("counter-1", ExpectedVersion::NoStream, events).await.unwrap();
    ///
    /// // Keep revisions 2 and later of counter-1.
    /// let keep_from = |stream: &str| if stream == "counter-1" { 2 } else { 0 };
    /// let report = store.scavenge(keep_from, ScavengeOptions::default()).await.unwrap();
    /// assert_eq!(report.events_removed(), 2);
    /// let left = store.read_stream("counter-1", ReadStream::forward()).await.unwrap();
    /// assert_eq!(left.len(), 1);
    /// assert_eq!(left[0].revision.get(), 2);
    /// # });
    /// ```
    pub fn scavenge_blocking(
        &self,
        keep_from: &dyn Fn(&str) -> u64,
        options: &ScavengeOptions,
        progress: &mut dyn FnMut(&ScavengeProgress),
    ) -> Result<ScavengeReport> {
        let sender = match &self.requests {
            Some(sender) => sender.clone(),
            None => {
                return Err(Error::ReadOnly {
                    reason: "a scavenge needs the store opened for writing".into(),
                });
            }
        };
        scavenge_with(&self.shared, sender, keep_from, options, progress)
    }

    /// [`LogStore::scavenge_blocking`] from an async task: runs on a blocking thread.
    pub async fn scavenge(
        &self,
        keep_from: impl Fn(&str) -> u64 + Send + 'static,
        options: ScavengeOptions,
    ) -> Result<ScavengeReport> {
        let sender = self.requests.clone().ok_or_else(|| Error::ReadOnly {
            reason: "a scavenge needs the store opened for writing".into(),
        })?;
        let shared = self.shared.clone();
        blocking(move || scavenge_with(&shared, sender, &keep_from, &options, &mut |_| {})).await
    }

    /// Number of streams in the store.
    pub fn stream_count(&self) -> usize {
        self.shared.index().streams.len()
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Events examined per `read_all` call when a filter skips most of them, so that one
/// call's work stays bounded.
const READ_ALL_SCAN_EVENTS_MAX: u64 = 1_000_000;
/// Events located per chunk while reading.
const READ_CHUNK_EVENTS: u64 = 4096;

/// Revisions a read of a stream looks at per hold of the index's read lock, so that
/// walking past a long run of removed events never holds up the writer's publishing.
const WALK_REVISIONS_PER_LOCK: usize = if cfg!(test) { 3 } else { 65_536 };

fn read_stream(shared: &Shared, stream: &str, options: ReadStream) -> Result<Vec<RecordedEvent>> {
    // A page is filled past revisions whose events a scavenge removed (they locate
    // nothing), so that a gap is never taken for the end of the stream.
    let limit = usize::try_from(options.limit).unwrap_or(usize::MAX);
    let forward = options.direction == Direction::Forward;
    let mut locations: Vec<Location> = Vec::new();
    // Forward: the next revision to look at; backward: the one after it.
    let mut next: Option<usize> = None;
    loop {
        let index = shared.index();
        let positions = index
            .streams
            .get(stream)
            .ok_or_else(|| Error::StreamNotFound {
                stream: stream.to_string(),
            })?;
        let len = positions.len();
        let at = match next {
            Some(at) => at,
            None if len == 0 || limit == 0 => break,
            None if forward => options.from.map_or(0, |r| r.get()).min(len as u64) as usize,
            None => options
                .from
                .map_or(len, |r| r.get().min(len as u64 - 1) as usize + 1),
        };
        if forward {
            let stop = len.min(at.saturating_add(WALK_REVISIONS_PER_LOCK));
            let mut revision = at;
            while revision < stop && locations.len() < limit {
                locations.extend(index.locate(positions.at(revision)));
                revision += 1;
            }
            next = Some(revision);
            if revision >= len || locations.len() >= limit {
                break;
            }
        } else {
            let stop = at.saturating_sub(WALK_REVISIONS_PER_LOCK);
            let mut end = at;
            while end > stop && locations.len() < limit {
                end -= 1;
                locations.extend(index.locate(positions.at(end)));
            }
            next = Some(end);
            if end == 0 || locations.len() >= limit {
                break;
            }
        }
    }
    if !forward {
        locations.reverse();
    }
    let mut events = read_events(&locations, |_, _| true)?;
    if options.direction == Direction::Backward {
        events.reverse();
    }
    Ok(events)
}

/// `$ce-<category>` from the index: the position lists of the category's streams,
/// merged in position order, from `options.from` (a position) on.
fn read_category(
    shared: &Shared,
    name: &str,
    category: &str,
    options: ReadStream,
) -> Result<Vec<RecordedEvent>> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let locations: Vec<Location> = {
        let index = shared.index();
        let lists: Vec<&Positions> = index
            .streams
            .iter()
            .filter(|(stream, _)| eventfold_core::category_of(stream) == category)
            .map(|(_, positions)| positions)
            .collect();
        if lists.is_empty() {
            return Err(Error::StreamNotFound {
                stream: name.to_string(),
            });
        }
        let limit = usize::try_from(options.limit).unwrap_or(usize::MAX);
        let mut positions = Vec::new();
        match options.direction {
            Direction::Forward => {
                let from = options.from.map_or(0, |r| r.get());
                let mut heap: BinaryHeap<Reverse<(u64, usize, usize)>> = lists
                    .iter()
                    .enumerate()
                    .filter_map(|(l, list)| {
                        let i = list.partition_point(|p| p < from);
                        list.get(i).map(|p| Reverse((p, l, i)))
                    })
                    .collect();
                while positions.len() < limit {
                    let Some(Reverse((p, l, i))) = heap.pop() else {
                        break;
                    };
                    // Positions whose events a scavenge removed hold nothing to read.
                    positions.extend(index.locate(p));
                    if let Some(next) = lists[l].get(i + 1) {
                        heap.push(Reverse((next, l, i + 1)));
                    }
                }
            }
            Direction::Backward => {
                let until = options.from.map_or(u64::MAX, |r| r.get());
                let mut heap: BinaryHeap<(u64, usize, usize)> = lists
                    .iter()
                    .enumerate()
                    .filter_map(|(l, list)| {
                        let end = list.partition_point(|p| p <= until);
                        end.checked_sub(1).map(|i| (list.at(i), l, i))
                    })
                    .collect();
                while positions.len() < limit {
                    let Some((p, l, i)) = heap.pop() else { break };
                    positions.extend(index.locate(p));
                    if let Some(before) = i.checked_sub(1) {
                        heap.push((lists[l].at(before), l, before));
                    }
                }
                positions.reverse();
            }
        }
        positions
    };
    let mut events = read_events(&locations, |_, _| true)?;
    if options.direction == Direction::Backward {
        events.reverse();
    }
    Ok(events)
}

fn read_all(shared: &Shared, options: &ReadAll) -> Result<AllSlice> {
    let mut events = Vec::new();
    let mut next = options.from.get();
    let filter = &options.filter;
    let mut scanned = 0;
    loop {
        let ((locations, covered), head) = {
            let index = shared.index();
            let want = (options.limit - events.len() as u64).min(READ_CHUNK_EVENTS);
            let chunk = if filter.is_empty() {
                want
            } else {
                READ_CHUNK_EVENTS
            };
            (
                index.locate_range(next, next.saturating_add(chunk)),
                index.next_position,
            )
        };
        // Positions without events (gaps) are passed over, never taken for the end.
        if covered == next || events.len() as u64 >= options.limit {
            return Ok(AllSlice {
                events,
                next: Position(next),
                end_of_log: next >= head,
            });
        }
        let chunk = read_events(&locations, |stream, event_type| {
            filter.matches(stream, event_type)
        })?;
        // Stop exactly after the event that fills the page, so `next` resumes right.
        let room = (options.limit - events.len() as u64) as usize;
        if chunk.len() >= room {
            let last = chunk[room - 1].position.get();
            events.extend(chunk.into_iter().take(room));
            return Ok(AllSlice {
                events,
                next: Position(last + 1),
                end_of_log: last + 1 >= head,
            });
        }
        events.extend(chunk);
        scanned += covered - next;
        next = covered;
        if scanned >= READ_ALL_SCAN_EVENTS_MAX {
            return Ok(AllSlice {
                events,
                next: Position(next),
                end_of_log: next >= head,
            });
        }
    }
}

#[async_trait]
impl eventfold_core::Scavenger for LogStore {
    async fn scavenge(
        &self,
        keep_from: eventfold_core::KeepFrom,
        dry_run: bool,
    ) -> Result<eventfold_core::ScavengeSummary> {
        let report = LogStore::scavenge(
            self,
            move |stream: &str| keep_from(stream),
            ScavengeOptions {
                dry_run,
                rewrite_bytes_per_second_max: Some(self.options.scavenge_bytes_per_second_max),
                paused: None,
            },
        )
        .await?;
        Ok(report.summary())
    }
}

#[async_trait]
impl EventStore for LogStore {
    async fn append_multi(&self, writes: Vec<StreamWrite>) -> Result<Vec<AppendResult>> {
        let check = ResendCheck::of(&writes);
        let (request, answer) = self.request(writes)?;
        let sender = self.requests.as_ref().ok_or(Error::Closed)?;
        sender
            .send(Command::Append(request))
            .await
            .map_err(|_| Error::Closed)?;
        let appended = answer.await.map_err(|_| Error::Closed)??;
        ResendCheck::confirm(check, appended, self).await
    }

    async fn read_stream(&self, stream: &str, options: ReadStream) -> Result<Vec<RecordedEvent>> {
        match IndexStream::parse(stream) {
            None => {
                let shared = self.shared.clone();
                let stream = stream.to_string();
                blocking(move || read_stream(&shared, &stream, options)).await
            }
            Some(IndexStream::Category(category)) => {
                let shared = self.shared.clone();
                let stream = stream.to_string();
                blocking(move || read_category(&shared, &stream, &category, options)).await
            }
            // No per-type or per-correlation index yet: a filtered scan of the log,
            // which copies nothing but reads every record header (and, for a
            // correlation, every record's metadata).
            Some(index) => eventfold_core::read_index_stream(self, stream, &index, options).await,
        }
    }

    async fn read_all(&self, options: ReadAll) -> Result<AllSlice> {
        let shared = self.shared.clone();
        blocking(move || read_all(&shared, &options)).await
    }

    async fn stream_revision(&self, stream: &str) -> Result<Option<Revision>> {
        let index = self.shared.index();
        Ok(index
            .streams
            .get(stream)
            .map(|positions| Revision(positions.len() as u64 - 1)))
    }

    fn storage_metrics(&self) -> Vec<eventfold_core::StoreMetric> {
        use eventfold_core::{MetricKind::Counter, StoreMetric};
        let stats = self.stats();
        let metric = |name, help, value: u64| StoreMetric {
            name,
            help,
            kind: Counter,
            value: value as f64,
        };
        vec![
            metric(
                "eventfold_log_commits_total",
                "Group commits: one write and one fsync each (events / commits is the mean batch size).",
                stats.commits,
            ),
            metric(
                "eventfold_log_appends_committed_total",
                "Appends made durable by the group commits.",
                stats.appends,
            ),
            metric(
                "eventfold_log_events_written_total",
                "Events written to the log.",
                stats.events,
            ),
            metric(
                "eventfold_log_bytes_written_total",
                "Record bytes written to the log.",
                stats.bytes,
            ),
            metric(
                "eventfold_log_scrubbed_segments_total",
                "Sealed segments the scrub has read and checked since the store opened.",
                self.shared.stats.scrubbed_segments.load(Ordering::Relaxed),
            ),
            StoreMetric {
                name: "eventfold_log_damaged_segments",
                help: "Sealed segments in which the scrub found damage (see `eventfold verify`).",
                kind: eventfold_core::MetricKind::Gauge,
                value: self.damage_found().len() as f64,
            },
            metric(
                "eventfold_log_scavenged_segments_total",
                "Segments a scavenge rewrote since the store opened.",
                self.shared.stats.scavenged_segments.load(Ordering::Relaxed),
            ),
            metric(
                "eventfold_log_scavenged_bytes_total",
                "Bytes of the segments a scavenge rewrote, before their rewrite (divide by eventfold_log_scavenge_seconds_total for the rewrite rate).",
                self.shared
                    .stats
                    .scavenged_bytes_before
                    .load(Ordering::Relaxed),
            ),
            metric(
                "eventfold_log_scavenge_reclaimed_bytes_total",
                "Bytes a scavenge gave back to the file system.",
                self.shared
                    .stats
                    .scavenged_bytes_reclaimed
                    .load(Ordering::Relaxed),
            ),
            metric(
                "eventfold_log_scavenged_events_total",
                "Events a scavenge removed from the disk.",
                self.shared.stats.scavenged_events.load(Ordering::Relaxed),
            ),
            StoreMetric {
                name: "eventfold_log_scavenge_seconds_total",
                help: "Time spent in scavenges.",
                kind: Counter,
                value: self.shared.stats.scavenge_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            },
            metric(
                "eventfold_log_archive_fetches_total",
                "Segments fetched back from the archive because a read reached a segment whose local copy was dropped.",
                self.shared.cold.fetches.load(Ordering::Relaxed),
            ),
            metric(
                "eventfold_log_archive_fetched_bytes_total",
                "Bytes of segments fetched back from the archive.",
                self.shared.cold.fetched_bytes.load(Ordering::Relaxed),
            ),
            StoreMetric {
                name: "eventfold_log_fsync_seconds_total",
                help: "Time spent in fsync (divide by commits for the mean fsync time).",
                kind: Counter,
                value: stats.sync_nanos as f64 / 1e9,
            },
        ]
    }

    async fn list_streams(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<eventfold_core::StreamSummary>> {
        let index = self.shared.index();
        let streams = index
            .streams
            .iter()
            .filter(|(stream, _)| stream.starts_with(prefix))
            .map(|(stream, positions)| eventfold_core::StreamSummary {
                stream: stream.to_string(),
                last_revision: Revision(positions.len() as u64 - 1),
            });
        Ok(eventfold_core::select_streams(
            streams, prefix, after, limit,
        ))
    }

    async fn head_position(&self) -> Result<Option<Position>> {
        Ok(self
            .shared
            .index()
            .next_position
            .checked_sub(1)
            .map(Position))
    }

    async fn wait_for(&self, position: Position) -> Result<()> {
        eventfold_core::wait_for_head(&self.shared.head, position).await
    }
}

fn scavenge_with(
    shared: &Shared,
    sender: mpsc::Sender<Command>,
    keep_from: &dyn Fn(&str) -> u64,
    options: &ScavengeOptions,
    progress: &mut dyn FnMut(&ScavengeProgress),
) -> Result<ScavengeReport> {
    let _one_at_a_time = shared.scavenging.lock().unwrap_or_else(|p| p.into_inner());
    let seal = |position: Option<u64>| {
        let (reply, answer) = oneshot::channel();
        sender
            .blocking_send(Command::Seal { position, reply })
            .map_err(|_| Error::Closed)?;
        answer.blocking_recv().map_err(|_| Error::Closed)?
    };
    let report = crate::scavenge::scavenge(shared, seal, keep_from, options, progress)?;
    if !options.dry_run {
        shared
            .stats
            .scavenge_nanos
            .fetch_add(report.elapsed.as_nanos() as u64, Ordering::Relaxed);
    }
    Ok(report)
}

/// Whether `dir` holds a store (its segments directory), checked before a read-only
/// open takes the lock, which would create a file.
fn storage_has_store(storage: &dyn Storage, dir: &Path) -> bool {
    storage.list(&dir.join("segments")).is_ok()
}

/// Runs disk reads off the async runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Backend(format!("read task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use eventfold_core::{EventData, ExpectedVersion, StreamWrite};

    use super::*;

    fn counted(n: u64) -> EventData {
        EventData::json("Counted", &serde_json::json!({ "n": n })).unwrap()
    }

    /// Reads fill their page past removed revisions, forward and backward, taking the
    /// index's lock several times on the way (three revisions per hold in tests).
    #[test]
    fn reads_walk_past_a_long_gap_in_several_holds_of_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), LogOptions::default()).unwrap();
        let events = (0..10).map(counted).collect();
        store
            .append_multi_blocking(vec![StreamWrite::new(
                "long-1",
                ExpectedVersion::NoStream,
                events,
            )])
            .unwrap();
        store
            .scavenge_blocking(
                &|s| if s == "long-1" { 8 } else { 0 },
                &ScavengeOptions::default(),
                &mut |_| {},
            )
            .unwrap();
        let revisions = |options: ReadStream| -> Vec<u64> {
            store
                .read_stream_blocking("long-1", options)
                .unwrap()
                .iter()
                .map(|e| e.revision.get())
                .collect()
        };
        assert_eq!(revisions(ReadStream::forward().limit(1)), [8]);
        assert_eq!(
            revisions(ReadStream::forward().from(Revision(2)).limit(5)),
            [8, 9]
        );
        assert_eq!(revisions(ReadStream::backward().limit(3)), [9, 8]);
        assert_eq!(
            revisions(ReadStream::backward().from(Revision(8)).limit(3)),
            [8]
        );
        assert!(revisions(ReadStream::backward().from(Revision(7))).is_empty());
        assert!(revisions(ReadStream::forward().from(Revision(10))).is_empty());
    }

    /// A reader that located its records before a scavenge swapped their segment keeps
    /// reading them from the old file, removed events included; a new read sees the new
    /// file.
    #[test]
    fn a_reader_holding_the_old_segment_reads_it_after_the_swap() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), LogOptions::default()).unwrap();
        let events = (0..4).map(counted).collect();
        store
            .append_multi_blocking(vec![StreamWrite::new(
                "doomed-1",
                ExpectedVersion::NoStream,
                events,
            )])
            .unwrap();
        let (held, _) = store.shared.index().locate_range(0, 4);
        let report = store
            .scavenge_blocking(
                &|s| if s == "doomed-1" { 3 } else { 0 },
                &ScavengeOptions::default(),
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(report.events_removed(), 3);
        let old = read_events(&held, |_, _| true).unwrap();
        let positions: Vec<u64> = old.iter().map(|e| e.position.get()).collect();
        assert_eq!(
            positions,
            [0, 1, 2, 3],
            "the old file is still there for its reader"
        );
        let (now, _) = store.shared.index().locate_range(0, 4);
        let positions: Vec<u64> = read_events(&now, |_, _| true)
            .unwrap()
            .iter()
            .map(|e| e.position.get())
            .collect();
        assert_eq!(positions, [3], "a new read sees the rewritten segment");
    }
}
