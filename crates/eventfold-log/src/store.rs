//! `LogStore`: opening (with recovery), reading, and the `EventStore` implementation.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use eventfold_core::{
    AllSlice, AppendResult, Direction, Error, EventStore, IndexStream, Position, ReadAll,
    ReadStream, RecordedEvent, Result, Revision, StreamWrite,
};
use tokio::sync::{mpsc, oneshot};

use crate::index::{Location, read_events};
use crate::io::{LockGuard, OsStorage, Storage};
use crate::options::LogOptions;
use crate::record::{RECORD_BYTES_MAX, encoded_len};
use crate::recovery::{Access, TailDamage, recover};
use crate::segment::lock_data_dir;
use crate::shared::{Counters, LogStats, Shared};
use crate::writer::{Request, Writer};

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
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    scrub: Option<JoinHandle<()>>,
    damage: Option<TailDamage>,
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
        let recovered = recover(storage.as_ref(), dir, &options, access)?;
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
        if access == Access::ReadOnly {
            return Ok(LogStore {
                shared,
                options,
                requests: None,
                writer: None,
                scrub,
                damage,
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
    ) -> Result<(Request, oneshot::Receiver<Result<Vec<AppendResult>>>)> {
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
        let (request, answer) = self.request(writes)?;
        let sender = self.requests.as_ref().ok_or(Error::Closed)?;
        sender.blocking_send(request).map_err(|_| Error::Closed)?;
        answer.blocking_recv().map_err(|_| Error::Closed)?
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

fn read_stream(shared: &Shared, stream: &str, options: ReadStream) -> Result<Vec<RecordedEvent>> {
    let locations: Vec<Location> = {
        let index = shared.index();
        let positions = index
            .streams
            .get(stream)
            .ok_or_else(|| Error::StreamNotFound {
                stream: stream.to_string(),
            })?;
        let range = options.revisions(positions.len() as u64);
        positions[range.start as usize..range.end as usize]
            .iter()
            .filter_map(|&p| index.locate(p))
            .collect()
    };
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
        let lists: Vec<&Vec<u64>> = index
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
                        let i = list.partition_point(|&p| p < from);
                        list.get(i).map(|&p| Reverse((p, l, i)))
                    })
                    .collect();
                while positions.len() < limit {
                    let Some(Reverse((p, l, i))) = heap.pop() else {
                        break;
                    };
                    positions.push(p);
                    if let Some(&next) = lists[l].get(i + 1) {
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
                        let end = list.partition_point(|&p| p <= until);
                        end.checked_sub(1).map(|i| (list[i], l, i))
                    })
                    .collect();
                while positions.len() < limit {
                    let Some((p, l, i)) = heap.pop() else { break };
                    positions.push(p);
                    if let Some(before) = i.checked_sub(1) {
                        heap.push((lists[l][before], l, before));
                    }
                }
                positions.reverse();
            }
        }
        positions.iter().filter_map(|&p| index.locate(p)).collect()
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
impl EventStore for LogStore {
    async fn append_multi(&self, writes: Vec<StreamWrite>) -> Result<Vec<AppendResult>> {
        let (request, answer) = self.request(writes)?;
        let sender = self.requests.as_ref().ok_or(Error::Closed)?;
        sender.send(request).await.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
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
