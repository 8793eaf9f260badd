//! The `EventStore` trait and its request/response types.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::event::{EventData, RecordedEvent};
use crate::remote::RemoteAdmin;
use crate::stream::{ExpectedVersion, Position, Revision, category_of};

/// What an append wrote: the revisions of its first and last event in the stream, and
/// the global position of its last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppendResult {
    /// Revision of the first event written.
    pub first_revision: Revision,
    /// Revision of the last event written.
    pub last_revision: Revision,
    /// Global position of the last event written.
    pub position: Position,
}

/// One stream's part of an atomic append across several streams.
///
/// A write is a *client write* ([`StreamWrite::new`]) or a *system write*
/// ([`StreamWrite::system`]). Client writes carry what applications write: user
/// streams only, and no event type starting with `$`. System writes are built only by
/// eventfold's own layers (stream metadata and deletion, consumer groups, the schema
/// registry, an import into a data directory) for the system streams and events they
/// keep; no wire format carries the difference, so nothing a client sends through the
/// HTTP API or the CLI can become one.
///
/// ```
/// use eventfold_core::{EventData, ExpectedVersion, StreamWrite};
/// let placed = EventData::json("OrderPlaced", &serde_json::json!({"total": 5})).unwrap();
/// let write = StreamWrite::new("order-1", ExpectedVersion::NoStream, vec![placed]);
/// assert!(!write.is_system());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StreamWrite {
    /// The stream to append to.
    pub stream: String,
    /// What the writer expects of that stream.
    pub expected: ExpectedVersion,
    /// The events to append, in order.
    pub events: Vec<EventData>,
    system: bool,
    /// When set (an import), each event's `recorded_at` as another store recorded it.
    recorded_at: Option<Vec<DateTime<Utc>>>,
}

impl StreamWrite {
    /// A client write of `events` to `stream` expecting `expected`.
    pub fn new(
        stream: impl Into<String>,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Self {
        StreamWrite {
            stream: stream.into(),
            expected,
            events,
            system: false,
            recorded_at: None,
        }
    }

    /// The same write, its events keeping the times another store recorded them at
    /// (one per event, in order) instead of the time of this append: what an import of
    /// an export into a data directory writes. A backend that stamps times itself (a
    /// server behind [`EventStore`] over HTTP) records the time of the append. Entry
    /// points must never take these times from a client.
    pub fn with_recorded_at(mut self, times: Vec<DateTime<Utc>>) -> Self {
        self.recorded_at = Some(times);
        self
    }

    /// The times [`StreamWrite::with_recorded_at`] gave, if any.
    pub fn recorded_at(&self) -> Option<&[DateTime<Utc>]> {
        self.recorded_at.as_deref()
    }

    /// A system write: it may target the system streams of
    /// [`SYSTEM_STREAM_PREFIXES`](crate::SYSTEM_STREAM_PREFIXES) and carry events whose
    /// type starts with `$` (`$metadata`, the tombstone `$stream-deleted`, ...).
    /// Only eventfold's own layers build these; an entry point must never build one
    /// from what a client sent.
    pub fn system(
        stream: impl Into<String>,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Self {
        StreamWrite {
            system: true,
            ..Self::new(stream, expected, events)
        }
    }

    /// A check: a write of no events that makes the append it is part of hold only
    /// while `stream` is as `expected` says (`no_stream`, `stream_exists` or an exact
    /// revision; `any` checks nothing and is refused). For a decision that rests on a
    /// stream it does not write: the revision read goes with the events written, in
    /// the same atomic [`EventStore::append_multi`], and a write to the read stream in
    /// between refuses the whole append with a wrong expected version naming it.
    ///
    /// A check writes nothing and has no entry in the results of the append. An
    /// append needs at least one write with events.
    ///
    /// ```
    /// use eventfold_core::{EventData, ExpectedVersion, Revision, StreamWrite};
    /// let reserved = EventData::json("SeatReserved", &serde_json::json!({"seat": "4F"})).unwrap();
    /// let writes = vec![
    ///     StreamWrite::new("booking-7", ExpectedVersion::NoStream, vec![reserved]),
    ///     // The flight's seat map was read at revision 41.
    ///     StreamWrite::check("flight-LH400", ExpectedVersion::Exact(Revision(41))),
    /// ];
    /// assert!(writes[1].is_check());
    /// ```
    pub fn check(stream: impl Into<String>, expected: ExpectedVersion) -> Self {
        Self::new(stream, expected, Vec::new())
    }

    /// Whether this is a system write.
    pub fn is_system(&self) -> bool {
        self.system
    }

    /// Whether this is a check ([`StreamWrite::check`]): a write of no events.
    pub fn is_check(&self) -> bool {
        self.events.is_empty()
    }
}

/// Appends `events` to `stream` as a system write: what eventfold's own layers
/// (stream metadata and deletion, consumer groups) use for their `$` streams and
/// events. Never call it with what a client sent.
pub async fn append_system<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<EventData>,
) -> Result<AppendResult> {
    one_result(
        store
            .append_multi(vec![StreamWrite::system(stream, expected, events)])
            .await?,
    )
}

/// Reading direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// From older to newer.
    #[default]
    Forward,
    /// From newer to older.
    Backward,
}

/// How to read one stream.
///
/// ```
/// use eventfold_core::{ReadStream, Revision};
/// let last_ten = ReadStream::backward().limit(10);
/// let from_five = ReadStream::forward().from(Revision(5));
/// assert_eq!(from_five.from, Some(Revision(5)));
/// # let _ = last_ten;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadStream {
    /// First revision to return; `None` is the start (forward) or the end (backward).
    pub from: Option<Revision>,
    /// Direction of the read.
    pub direction: Direction,
    /// At most this many events.
    pub limit: u64,
    /// Return the event a link (`$link`) points at in its place (the default), or the
    /// link itself. The metadata layer resolves links; a backend read alone returns
    /// them as written.
    pub resolve_links: bool,
}

impl ReadStream {
    /// Every event of the stream, oldest first.
    pub fn forward() -> Self {
        ReadStream {
            from: None,
            direction: Direction::Forward,
            limit: u64::MAX,
            resolve_links: true,
        }
    }

    /// Every event of the stream, newest first.
    pub fn backward() -> Self {
        ReadStream {
            direction: Direction::Backward,
            ..Self::forward()
        }
    }

    /// Starts at `revision` (inclusive).
    pub fn from(mut self, revision: Revision) -> Self {
        self.from = Some(revision);
        self
    }

    /// Returns at most `limit` events.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// Returns links (`$link` events) as they were written instead of the events they
    /// point at: what a copy of the stream or an audit wants.
    pub fn links_as_written(mut self) -> Self {
        self.resolve_links = false;
        self
    }

    /// The revisions this read returns from a stream of `len` events, as the half-open
    /// range `from..to` in ascending order (a backward read returns it reversed).
    /// Forward from past the end is empty; backward from past the end starts at the
    /// last event. Every backend uses this, so all agree.
    ///
    /// ```
    /// use eventfold_core::{ReadStream, Revision};
    /// assert_eq!(ReadStream::forward().from(Revision(3)).limit(10).revisions(5), 3..5);
    /// assert_eq!(ReadStream::backward().limit(2).revisions(5), 3..5);
    /// assert_eq!(ReadStream::backward().from(Revision(9)).revisions(5), 0..5);
    /// assert_eq!(ReadStream::forward().from(Revision(9)).revisions(5), 5..5);
    /// ```
    pub fn revisions(&self, len: u64) -> std::ops::Range<u64> {
        if len == 0 {
            return 0..0;
        }
        match self.direction {
            Direction::Forward => {
                let from = self.from.map_or(0, Revision::get).min(len);
                from..from.saturating_add(self.limit).min(len)
            }
            Direction::Backward => {
                let last = self.from.map_or(len - 1, |r| r.get().min(len - 1));
                (last + 1).saturating_sub(self.limit)..last + 1
            }
        }
    }
}

/// Which events of `$all` to return. Every criterion that is set must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllFilter {
    /// Only streams whose name starts with this.
    pub stream_prefix: Option<String>,
    /// Only streams of this category (see [`category_of`]).
    pub category: Option<String>,
    /// Only events of one of these types (all types when empty).
    pub event_types: Vec<String>,
}

impl AllFilter {
    /// Whether the filter lets every event through.
    pub fn is_empty(&self) -> bool {
        self.stream_prefix.is_none() && self.category.is_none() && self.event_types.is_empty()
    }

    /// Whether an event of `event_type` in `stream` passes the filter.
    pub fn matches(&self, stream: &str, event_type: &str) -> bool {
        self.stream_prefix
            .as_deref()
            .is_none_or(|prefix| stream.starts_with(prefix))
            && self
                .category
                .as_deref()
                .is_none_or(|category| category_of(stream) == category)
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
    }
}

/// How to read the global log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAll {
    /// First position to look at (inclusive).
    pub from: Position,
    /// At most this many events.
    pub limit: u64,
    /// Which events to return.
    pub filter: AllFilter,
}

impl ReadAll {
    /// Every event from `from` on, at most `limit` of them.
    pub fn from(from: Position, limit: u64) -> Self {
        ReadAll {
            from,
            limit,
            filter: AllFilter::default(),
        }
    }

    /// Returns only events that pass `filter`.
    pub fn filtered(mut self, filter: AllFilter) -> Self {
        self.filter = filter;
        self
    }
}

/// A page of `$all`.
#[derive(Debug, Clone, PartialEq)]
pub struct AllSlice {
    /// The events, in position order.
    pub events: Vec<RecordedEvent>,
    /// Where the next page starts. With a filter this may lie past the last returned
    /// event, because events that did not match were skipped.
    pub next: Position,
    /// True when the page reached the end of the committed log.
    pub end_of_log: bool,
}

/// A stream and its last revision, as listed by [`EventStore::list_streams`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamSummary {
    /// The stream's name.
    pub stream: String,
    /// The revision of its last event (hidden or not).
    pub last_revision: Revision,
}

/// The page `list_streams` returns from `streams`, given in any order: the ones
/// matching `prefix` (system streams only for a `$` prefix) after `after`, sorted by
/// name, at most `limit`. Every backend uses it, so all agree.
pub fn select_streams(
    streams: impl IntoIterator<Item = StreamSummary>,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Vec<StreamSummary> {
    let mut selected: Vec<StreamSummary> = streams
        .into_iter()
        .filter(|s| {
            s.stream.starts_with(prefix)
                && (prefix.starts_with('$') || !s.stream.starts_with('$'))
                && after.is_none_or(|after| s.stream.as_str() > after)
        })
        .collect();
    selected.sort_unstable_by(|a, b| a.stream.cmp(&b.stream));
    selected.truncate(limit);
    selected
}

/// Whether a [`StoreMetric`] only grows or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows (reset when the process starts).
    Counter,
    /// A value now.
    Gauge,
}

/// One figure a backend reports about its storage (`/metrics` exports it).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreMetric {
    /// Prometheus name, `eventfold_<backend>_...`.
    pub name: &'static str,
    /// One sentence saying what it counts.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// The value.
    pub value: f64,
}

/// An event store: append with expected versions, read streams and the global log.
///
/// This is the small trait a backend implements (the embedded log, PostgreSQL, the HTTP
/// client, the in-memory model): it stores and reads events as they are, with no policy.
/// Policy (stream metadata and retention, schema validation, ...) is added by layers
/// ([`crate::layer`]): a [`Layered`](crate::Layered) store is again an `EventStore`,
/// so code written against the trait runs on a bare backend or on a stack alike.
///
/// Every backend passes the same conformance suite (`eventfold-conformance`).
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends `events` to `stream` atomically, if the stream matches `expected`.
    ///
    /// Event ids the caller leaves out are filled with UUID v7. Re-sending events whose
    /// ids were already written to this stream, where the expected version points,
    /// returns the original result and writes nothing.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Result<AppendResult> {
        one_result(
            self.append_multi(vec![StreamWrite::new(stream, expected, events)])
                .await?,
        )
    }

    /// Appends to several streams atomically: either every write happens or none does.
    /// Each write has its own expected version; results come back in the same order,
    /// one per write of events. A write of no events is a check
    /// ([`StreamWrite::check`]): it writes nothing and has no result, and the append
    /// happens only if the checked stream is as it expects.
    async fn append_multi(&self, writes: Vec<StreamWrite>) -> Result<Vec<AppendResult>>;

    /// Reads events of one stream as this store presents them: a backend returns them
    /// as stored; a layer may hide some (the metadata layer of `eventfold-metadata`
    /// applies retention and deletion). Fails with `StreamNotFound` when the stream has
    /// no event to show. An index stream (`$ce-`, `$et-`, `$correlation-`) is read as
    /// a view of the log, paged by position (see [`crate::IndexStream`]).
    async fn read_stream(&self, stream: &str, options: ReadStream) -> Result<Vec<RecordedEvent>>;

    /// Reads a page of the global log in position order.
    async fn read_all(&self, options: ReadAll) -> Result<AllSlice>;

    /// The revision of the stream's last event (hidden or not), or `None` when it does
    /// not exist.
    async fn stream_revision(&self, stream: &str) -> Result<Option<Revision>>;

    /// Whether the stream exists (holds an event, hidden or not).
    async fn stream_exists(&self, stream: &str) -> Result<bool> {
        Ok(self.stream_revision(stream).await?.is_some())
    }

    /// Streams whose name starts with `prefix`, in name order, after `after`, at most
    /// `limit`; system streams (`$...`) only when `prefix` starts with `$`
    /// ([`select_streams`] says which).
    async fn list_streams(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamSummary>>;

    /// Figures about the backend's storage for monitoring (may be empty).
    fn storage_metrics(&self) -> Vec<StoreMetric>;

    /// The position of the last committed event, or `None` for an empty store.
    async fn head_position(&self) -> Result<Option<Position>>;

    /// Completes once the committed log holds an event at `position` (at once if it
    /// already does). Subscriptions wait on it when they have read everything.
    async fn wait_for(&self, position: Position) -> Result<()>;

    /// The server's own admin calls, when this store forwards to a server that keeps
    /// stream metadata and deletion itself (the HTTP client): such a store cannot carry
    /// the system writes the metadata layer would make. `None` for a store that holds
    /// its events (every local backend). Layers pass the inner store's answer on.
    fn remote_admin(&self) -> Option<&dyn RemoteAdmin> {
        None
    }
}

/// The one result of an append to one stream.
fn one_result(mut written: Vec<AppendResult>) -> Result<AppendResult> {
    match written.len() {
        1 => Ok(written.remove(0)),
        count => Err(crate::Error::Backend(format!(
            "the store answered an append to one stream with {count} results"
        ))),
    }
}

/// A store shared through an `Arc` is the store: what servers and subscriptions hold.
#[async_trait]
impl<S: EventStore + ?Sized> EventStore for std::sync::Arc<S> {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Result<AppendResult> {
        (**self).append(stream, expected, events).await
    }

    async fn append_multi(&self, writes: Vec<StreamWrite>) -> Result<Vec<AppendResult>> {
        (**self).append_multi(writes).await
    }

    async fn read_stream(&self, stream: &str, options: ReadStream) -> Result<Vec<RecordedEvent>> {
        (**self).read_stream(stream, options).await
    }

    async fn read_all(&self, options: ReadAll) -> Result<AllSlice> {
        (**self).read_all(options).await
    }

    async fn stream_revision(&self, stream: &str) -> Result<Option<Revision>> {
        (**self).stream_revision(stream).await
    }

    async fn stream_exists(&self, stream: &str) -> Result<bool> {
        (**self).stream_exists(stream).await
    }

    async fn list_streams(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamSummary>> {
        (**self).list_streams(prefix, after, limit).await
    }

    fn storage_metrics(&self) -> Vec<StoreMetric> {
        (**self).storage_metrics()
    }

    async fn head_position(&self) -> Result<Option<Position>> {
        (**self).head_position().await
    }

    async fn wait_for(&self, position: Position) -> Result<()> {
        (**self).wait_for(position).await
    }

    fn remote_admin(&self) -> Option<&dyn RemoteAdmin> {
        (**self).remote_admin()
    }
}
