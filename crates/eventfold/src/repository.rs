//! The repository: load an aggregate (snapshot + tail), decide, append with expected
//! versions, retry on conflict, record the command's outcome, write snapshots.

use std::sync::Arc;

use eventfold_core::{
    AppendResult, EventData, EventRef, EventStore, ExpectedVersion, Position, ReadStream,
    RecordedEvent, Revision, StreamWrite,
};
use eventfold_metadata::{StreamAdmin, StreamMetadata};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::aggregate::Aggregate;
use crate::command::{Accepted, CommandError, CommandIds, CommandOutcome, Envelope, Written};
use crate::command_log::{self, CommandLog, CommandWindow, Settled};
use crate::compensation::{Compensation, Corrections};
use crate::error::{Error, Result};
use crate::event::{DomainEvent, Upcaster, identity, upcast_decode};
use crate::{PAGE_EVENTS, streams};

/// Times a command is decided before a conflict is reported, by default.
const ATTEMPTS_MAX_DEFAULT: u32 = 4;
/// Stored type of snapshot records.
const SNAPSHOT_TYPE: &str = "Snapshot";

/// Loads aggregates of type `A` from an [`EventStore`] and handles their commands.
///
/// Works on every backend. Handling a command:
/// 1. if the command id has an outcome recorded, answers with it (nothing is written);
/// 2. loads the state: the newest snapshot of the aggregate's snapshot version (if
///    snapshots are on), then the events after it, each passed through the
///    [`Upcaster`] and decoded (types the aggregate does not know are skipped), as
///    corrected by the compensations in the streams (see
///    [`cancel`](Repository::cancel) and [`correct`](Repository::correct));
/// 3. decides, and appends the events atomically with one expected version per
///    stream, together with the command's outcome (so a command id is handled once)
///    and a check of every stream it was loaded from but does not write (so the
///    decision cannot rest on a stale read of it);
/// 4. on a wrong expected version, reads only the new events and decides again, at
///    most [`with_attempts`](Repository::with_attempts) times;
/// 5. a rejection, or a decision of no event, is recorded as the command's outcome
///    too (no event is written), so a command id keeps one answer.
///
/// ```
/// # use eventfold::{Aggregate, Decision, DomainEvent, EventType};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// # #[serde(tag = "type", content = "data")]
/// # enum CounterEvent { Incremented { by: u32 } }
/// # impl DomainEvent for CounterEvent {
/// #     const TYPES: &'static [EventType] = &[EventType::new("Incremented", 1)];
/// # }
/// # #[derive(Debug, Default, Serialize, Deserialize)]
/// # struct Counter { value: u32 }
/// # impl Aggregate for Counter {
/// #     const NAME: &'static str = "counter";
/// #     type Command = u32;
/// #     type Event = CounterEvent;
/// #     type Rejection = String;
/// #     fn decide(&self, by: &u32) -> Result<Decision<CounterEvent>, String> {
/// #         Ok(Decision::event(CounterEvent::Incremented { by: *by }))
/// #     }
/// #     fn evolve(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += by }
/// # }
/// use std::sync::Arc;
/// use eventfold::{Envelope, InMemoryStore, Repository};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let repository = Repository::<Counter>::new(Arc::new(InMemoryStore::new())).with_snapshots(100);
/// let command = Envelope::new(5);
/// let accepted = repository.handle("counter-1", command.clone()).await.unwrap();
/// assert_eq!(accepted.revision.map(|r| r.get()), Some(0));
///
/// // Sent again (say, after a timeout): same answer, written once.
/// let again = repository.handle("counter-1", command).await.unwrap();
/// assert!(again.duplicate);
/// assert_eq!(repository.load("counter-1").await.unwrap().state().value, 5);
/// # });
/// ```
pub struct Repository<A: Aggregate> {
    store: Arc<dyn EventStore>,
    upcaster: Arc<dyn Upcaster>,
    snapshots: Option<SnapshotPolicy<A>>,
    attempts_max: u32,
    command_window: CommandWindow,
    /// How long a recorded rejection stands (the command window when `None`).
    rejection_window: Option<std::time::Duration>,
    /// Set once the command window was checked in the store (by this repository or a
    /// clone of it).
    window_checked: Arc<tokio::sync::OnceCell<()>>,
}

impl<A: Aggregate> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            upcaster: self.upcaster.clone(),
            snapshots: self.snapshots.clone(),
            attempts_max: self.attempts_max,
            command_window: self.command_window,
            rejection_window: self.rejection_window,
            window_checked: self.window_checked.clone(),
        }
    }
}

impl<A: Aggregate> std::fmt::Debug for Repository<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &A::NAME)
            .field("snapshots_every", &self.snapshots.as_ref().map(|s| s.every))
            .field("attempts_max", &self.attempts_max)
            .finish_non_exhaustive()
    }
}

/// When and how snapshots are written; the functions capture `A: Serialize +
/// DeserializeOwned`, which only aggregates with snapshots need.
struct SnapshotPolicy<A> {
    every: u64,
    /// Event types after which a snapshot is written whatever the count.
    after_types: &'static [&'static str],
    /// A snapshot is written when the newest one is older than this (and events came
    /// after it).
    older_than: Option<std::time::Duration>,
    lookback: u64,
    encode: fn(&A) -> serde_json::Result<Box<RawValue>>,
    decode: fn(&str) -> serde_json::Result<A>,
}

impl<A> Clone for SnapshotPolicy<A> {
    fn clone(&self) -> Self {
        SnapshotPolicy { ..*self }
    }
}

/// The stored form of a snapshot (type `Snapshot`, version `A::SNAPSHOT_VERSION`).
#[derive(Serialize, Deserialize)]
struct SnapshotRecord {
    aggregate: String,
    streams: Vec<Cursor>,
    state: Box<RawValue>,
}

/// How far a loaded aggregate has read one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    stream: String,
    revision: Option<Revision>,
}

/// An aggregate's state as loaded, with the revision of each stream it was read from.
#[derive(Debug)]
pub struct Loaded<A> {
    state: A,
    cursors: Vec<Cursor>,
    since_snapshot: u64,
    /// Events that count towards this version's next snapshot: those after its last
    /// snapshot (`snapshot_floor` when that one was not usable).
    snapshot_due: u64,
    /// Position of this version's newest snapshot record when it was not usable:
    /// only events after it count towards the next snapshot.
    snapshot_floor: Option<Position>,
    snapshot_stale: bool,
    from_snapshot: bool,
    /// When the snapshot the load started from was written.
    snapshot_at: Option<chrono::DateTime<chrono::Utc>>,
    /// An event of one of the policy's `after_types` came after that snapshot.
    snapshot_marked: bool,
    /// The streams a surgery moved, followed on the way (old name, new name).
    moved: Vec<(String, String)>,
    /// The compensations ([`Compensation`]) of events of the loaded streams that this
    /// load knows: those it read, or all of them when it folded from scratch because
    /// of one (a snapshot covers the ones before it).
    corrections: Corrections,
}

impl<A> Loaded<A> {
    /// The state.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// The state, owned.
    pub fn into_state(self) -> A {
        self.state
    }

    /// The revision of the aggregate's own stream (the first it was loaded from), `None`
    /// when that stream has no events.
    pub fn revision(&self) -> Option<Revision> {
        self.cursors.first().and_then(|c| c.revision)
    }

    /// The revision of `stream`, one of the streams it was loaded from (by its old
    /// name too, when a surgery moved it).
    pub fn revision_of(&self, stream: &str) -> Option<Revision> {
        let stream = self.current_name(stream);
        self.cursors
            .iter()
            .find(|c| c.stream == stream)
            .and_then(|c| c.revision)
    }

    /// The aggregate's own stream as loaded: the stream asked for, or, when a stream
    /// surgery moved it (its last event is `$stream-moved-to`), the stream its events
    /// went to, which the repository read and writes instead.
    pub fn stream(&self) -> &str {
        self.cursors.first().map_or("", |c| c.stream.as_str())
    }

    /// `stream` after the moves followed while loading.
    fn current_name<'s>(&'s self, mut stream: &'s str) -> &'s str {
        while let Some((_, to)) = self.moved.iter().find(|(from, _)| from == stream) {
            stream = to;
        }
        stream
    }

    fn stream_names(&self) -> Vec<String> {
        self.cursors.iter().map(|c| c.stream.clone()).collect()
    }

    /// Whether the load started from a snapshot.
    pub fn from_snapshot(&self) -> bool {
        self.from_snapshot
    }

    /// Events read since the snapshot (all of them without one).
    pub fn events_since_snapshot(&self) -> u64 {
        self.since_snapshot
    }
}

impl<A: Aggregate> Repository<A> {
    /// A repository over `store`, with no upcasting, no snapshots and 4 attempts per
    /// command.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Repository {
            store,
            upcaster: identity(),
            snapshots: None,
            attempts_max: ATTEMPTS_MAX_DEFAULT,
            command_window: CommandWindow::Default,
            rejection_window: None,
            window_checked: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// Keeps the record of a handled command (its stream `_command-<id>`) for
    /// `window`: a command sent again within it gets the first answer; past it, the
    /// record is hidden (and a scavenge reclaims it) and the command is handled anew.
    /// The window is the default retention of the `_command` category, in the store:
    /// without this call a repository sets 30 days when no window is set yet, and
    /// leaves one that is; with it, it sets `window` whatever was set before.
    pub fn with_command_window(mut self, window: std::time::Duration) -> Self {
        self.command_window = CommandWindow::Given(window);
        self.window_checked = Arc::new(tokio::sync::OnceCell::new());
        self
    }

    /// Lets a recorded *rejection* stand for `window` only (the "error cache"): the
    /// same command sent again within it gets the same answer; past it, the command is
    /// decided anew on the state then (the account was topped up, the item is back in
    /// stock), and the new outcome is recorded after the old one. Acceptances stand
    /// for the whole command window, as idempotency needs.
    pub fn with_rejection_window(mut self, window: std::time::Duration) -> Self {
        self.rejection_window = Some(window);
        self
    }

    /// Passes every stored event through `upcaster` before decoding it.
    pub fn with_upcaster(mut self, upcaster: Arc<dyn Upcaster>) -> Self {
        self.upcaster = upcaster;
        self
    }

    /// Decides a command at most `attempts` times (at least once) when the streams
    /// change under it.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts_max = attempts.max(1);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Loads the aggregate from one stream.
    pub async fn load(&self, stream: &str) -> Result<Loaded<A>> {
        self.load_streams(&[stream]).await
    }

    /// Loads the aggregate from several streams, their events merged in global order.
    /// The first stream is the aggregate's own. With snapshots on, writes a snapshot
    /// when none of this version is among the last few, or when `every` events passed
    /// since this version's last one.
    ///
    /// A stream that a surgery moved (it ends with `$stream-moved-to`) is followed:
    /// the aggregate is loaded from the stream its events went to, and
    /// [`Loaded::stream`] names it; commands write there too.
    pub async fn load_streams(&self, streams: &[&str]) -> Result<Loaded<A>> {
        let mut loaded = self.load_inner(streams).await?;
        let names = loaded.stream_names();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.maybe_snapshot(&mut loaded, &names).await;
        Ok(loaded)
    }

    /// Handles `command` against the aggregate of `stream`; its events go to `stream`.
    pub async fn handle(
        &self,
        stream: &str,
        command: Envelope<A::Command>,
    ) -> Result<Accepted, CommandError<A::Rejection>> {
        self.handle_streams(&[stream], command).await
    }

    /// Handles `command` against the aggregate loaded from `streams` (the first is its
    /// own); its events go to the streams its decision names, in one atomic append
    /// with one expected version per stream. The streams it read and does not write
    /// are checked in the same append ([`StreamWrite::check`]): if one of them moved
    /// since the load, the new events are read and the command decided again.
    pub async fn handle_streams(
        &self,
        streams: &[&str],
        command: Envelope<A::Command>,
    ) -> Result<Accepted, CommandError<A::Rejection>> {
        let ids = CommandIds::from(&command);
        self.window_checked
            .get_or_init(|| command_log::keep_for(self.store.as_ref(), self.command_window))
            .await;
        let mut log = CommandLog::new(self.store.as_ref(), ids, self.attempts_max)
            .with_rejection_window(self.rejection_window);
        if let Some(settled) = log.settled().await? {
            return answer(&command, settled);
        }
        let mut loaded = self.load_inner(streams).await?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let decision = match loaded.state.decide(command.command()) {
                Ok(decision) => decision,
                Err(reason) => {
                    return match log.settle_rejected(reason.to_string()).await? {
                        Settled::Accepted(accepted) => Ok(accepted),
                        // Recorded, or another handler recorded a rejection: either way
                        // the command is rejected; ours is the typed reason.
                        Settled::Rejected(_) => Err(CommandError::Rejected { reason }),
                    };
                }
            };
            if decision.is_empty() {
                let settled = log.settle_unchanged(loaded.revision()).await?;
                return answer(&command, settled);
            }
            let planned = plan(&loaded, &command, decision.into_targets(), log.after())?;
            let outcome = CommandOutcome::Accepted {
                revision: planned.home_revision,
                written: planned.written.clone(),
                position: None,
            };
            let mut writes = planned.writes;
            writes.extend(read_checks(&loaded, &writes));
            let after_types = self.snapshots.as_ref().map_or(&[][..], |p| p.after_types);
            let marks_snapshot = writes
                .iter()
                .flat_map(|w| &w.events)
                .any(|e| after_types.contains(&e.event_type.as_str()));
            writes.push(log.write(&outcome)?);
            let error = match self.store.append_multi(writes).await {
                Ok(results) => {
                    let position = results.last().map(|r| r.position);
                    for event in &planned.events {
                        loaded.state.evolve(event);
                    }
                    for written in &planned.written {
                        if let Some(cursor) = loaded
                            .cursors
                            .iter_mut()
                            .find(|c| c.stream == written.stream)
                        {
                            cursor.revision = Some(written.last_revision);
                        }
                    }
                    let appended = planned.events.len() as u64;
                    loaded.since_snapshot += appended;
                    loaded.snapshot_due += appended;
                    loaded.snapshot_marked |= marks_snapshot;
                    let names = loaded.stream_names();
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    self.maybe_snapshot(&mut loaded, &names).await;
                    return Ok(Accepted {
                        command_id: command.command_id(),
                        revision: planned.home_revision,
                        written: planned.written,
                        position,
                        duplicate: false,
                    });
                }
                Err(error) => error,
            };
            // Did another handler of the same command id get there first?
            if let Some(settled) = log.after_failed_append(&error).await? {
                return answer(&command, settled);
            }
            let stream = match error {
                eventfold_core::Error::WrongExpectedVersion { stream, .. }
                | eventfold_core::Error::StreamMoved { stream, .. } => stream,
                error => return Err(error.into()),
            };
            if attempts >= self.attempts_max {
                return Err(Error::Conflict { stream, attempts }.into());
            }
            // New events, or a surgery moved a stream since the load: read on, and
            // follow the move (loading again from where the events went). A new
            // compensation of an event folded already: fold again from scratch.
            let compensated = match self.catch_up(&mut loaded).await? {
                CaughtUp::Done => continue,
                CaughtUp::Moved(..) => false,
                CaughtUp::Compensated => true,
            };
            let moved = std::mem::take(&mut loaded.moved);
            let names: Vec<String> = streams.iter().map(|s| s.to_string()).collect();
            loaded = self.load_following(names, moved, compensated).await?;
        }
    }

    /// Cancels the event at `revision` of the aggregate's `stream` (a full reversal):
    /// appends a `$cancelled` event pointing at it, and from then on loads leave it
    /// out of the fold. The event itself stays in the stream.
    ///
    /// Refused ([`Error::Compensation`], nothing written) when the event does not
    /// exist, is one of eventfold's own (`$`) events, or is cancelled already. The
    /// compensation is appended at the stream's revision as loaded: when the stream
    /// changes in between, it is checked and tried again, at most
    /// [`with_attempts`](Repository::with_attempts) times ([`Error::Conflict`]). A
    /// stream a surgery moved is followed: `revision` is then one of the stream its
    /// events went to.
    ///
    /// ```
    /// # use eventfold::{Aggregate, Decision, DomainEvent, EventType};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// # #[serde(tag = "type", content = "data")]
    /// # enum CounterEvent { Incremented { by: u32 } }
    /// # impl DomainEvent for CounterEvent {
    /// #     const TYPES: &'static [EventType] = &[EventType::new("Incremented", 1)];
    /// # }
    /// # #[derive(Debug, Default, Serialize, Deserialize)]
    /// # struct Counter { value: u32 }
    /// # impl Aggregate for Counter {
    /// #     const NAME: &'static str = "counter";
    /// #     type Command = u32;
    /// #     type Event = CounterEvent;
    /// #     type Rejection = String;
    /// #     fn decide(&self, by: &u32) -> Result<Decision<CounterEvent>, String> {
    /// #         Ok(Decision::event(CounterEvent::Incremented { by: *by }))
    /// #     }
    /// #     fn evolve(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += by }
    /// # }
    /// use std::sync::Arc;
    /// use eventfold::{Envelope, InMemoryStore, LayerExt, Repository, Revision};
    /// use eventfold_metadata::MetadataLayer;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = Arc::new(InMemoryStore::new().layer(MetadataLayer));
    /// let repository = Repository::<Counter>::new(store);
    /// repository.handle("counter-1", Envelope::new(5)).await.unwrap();
    /// repository.handle("counter-1", Envelope::new(5)).await.unwrap(); // sent twice
    ///
    /// repository.cancel("counter-1", Revision(1), "sent twice").await.unwrap();
    /// assert_eq!(repository.load("counter-1").await.unwrap().state().value, 5);
    /// // Once is enough.
    /// assert!(repository.cancel("counter-1", Revision(1), "again").await.is_err());
    /// # });
    /// ```
    pub async fn cancel(
        &self,
        stream: &str,
        revision: Revision,
        reason: &str,
    ) -> Result<AppendResult> {
        self.compensate(stream, revision, |at| Compensation::cancel(at, reason))
            .await
    }

    /// Corrects the event at `revision` of the aggregate's `stream` (a partial
    /// reversal): appends a `$corrected` event holding `patch`, a JSON merge patch
    /// (RFC 7386) of the event's data as stored, and from then on loads fold the event
    /// with the patch merged in (after the corrections written before it). The event
    /// itself stays in the stream.
    ///
    /// Refused ([`Error::Compensation`], nothing written) when the event does not
    /// exist, is one of eventfold's own (`$`) events, or is cancelled, and when the
    /// corrected event would no longer decode as an event of the aggregate (through the
    /// repository's [`Upcaster`]): a correction never makes the stream unreadable.
    /// Conflicts and moved streams as in [`cancel`](Repository::cancel).
    ///
    /// ```
    /// # use eventfold::{Aggregate, Decision, DomainEvent, EventType};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// # #[serde(tag = "type", content = "data")]
    /// # enum CounterEvent { Incremented { by: u32 } }
    /// # impl DomainEvent for CounterEvent {
    /// #     const TYPES: &'static [EventType] = &[EventType::new("Incremented", 1)];
    /// # }
    /// # #[derive(Debug, Default, Serialize, Deserialize)]
    /// # struct Counter { value: u32 }
    /// # impl Aggregate for Counter {
    /// #     const NAME: &'static str = "counter";
    /// #     type Command = u32;
    /// #     type Event = CounterEvent;
    /// #     type Rejection = String;
    /// #     fn decide(&self, by: &u32) -> Result<Decision<CounterEvent>, String> {
    /// #         Ok(Decision::event(CounterEvent::Incremented { by: *by }))
    /// #     }
    /// #     fn evolve(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += by }
    /// # }
    /// use std::sync::Arc;
    /// use eventfold::{Envelope, InMemoryStore, LayerExt, Repository, Revision};
    /// use eventfold_metadata::MetadataLayer;
    /// use serde_json::json;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = Arc::new(InMemoryStore::new().layer(MetadataLayer));
    /// let repository = Repository::<Counter>::new(store);
    /// repository.handle("counter-1", Envelope::new(50)).await.unwrap(); // meant 5
    ///
    /// repository.correct("counter-1", Revision(0), json!({"by": 5}), "typo").await.unwrap();
    /// assert_eq!(repository.load("counter-1").await.unwrap().state().value, 5);
    /// // `by` is a number: a patch that makes it text would break the stream.
    /// let refused = repository.correct("counter-1", Revision(0), json!({"by": "five"}), "?").await;
    /// assert!(refused.is_err());
    /// # });
    /// ```
    pub async fn correct(
        &self,
        stream: &str,
        revision: Revision,
        patch: serde_json::Value,
        reason: &str,
    ) -> Result<AppendResult> {
        self.compensate(stream, revision, |at| {
            Compensation::correct(at, patch.clone(), reason)
        })
        .await
    }

    /// Appends the compensation `fix` makes of the event at `revision` of the
    /// aggregate's `stream` (as loaded: following moves), once it is checked.
    async fn compensate(
        &self,
        stream: &str,
        revision: Revision,
        fix: impl Fn(EventRef) -> Compensation,
    ) -> Result<AppendResult> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let loaded = self.load_inner(&[stream]).await?;
            let stream = loaded.stream().to_string();
            let at = EventRef::new(stream.clone(), revision);
            let refused = |reason: String| Error::Compensation {
                event: at.clone(),
                reason,
            };
            let read = ReadStream::forward()
                .from(revision)
                .limit(1)
                .links_as_written();
            let target = match self.store.read_stream(&stream, read).await {
                Ok(events) => events.into_iter().find(|e| e.revision == revision),
                Err(eventfold_core::Error::StreamNotFound { .. }) => None,
                Err(error) => return Err(error.into()),
            };
            let Some(target) = target else {
                return Err(refused("it does not exist".into()));
            };
            if target.event_type.starts_with('$') {
                return Err(refused(format!(
                    "it is a {} event: only an application's own events are cancelled or corrected",
                    target.event_type
                )));
            }
            // Every compensation of the stream: the load knows only those after its
            // snapshot.
            let mut corrections = self.compensations_of(&[&stream]).await?;
            let not_json =
                |error: eventfold_core::Error| refused(format!("its data is not JSON: {error}"));
            if corrections
                .apply(target.clone())
                .map_err(not_json)?
                .is_none()
            {
                return Err(refused("it is cancelled already".into()));
            }
            let compensation = fix(at.clone());
            if let Compensation::Corrected { .. } = compensation {
                corrections.insert(uuid::Uuid::nil(), compensation.clone());
                // `apply` keeps it: it is not cancelled.
                if let Some(corrected) = corrections.apply(target.clone()).map_err(not_json)? {
                    upcast_decode::<A::Event>(self.upcaster.as_ref(), corrected, |_| {}).map_err(
                        |error| match error {
                            Error::Decode { .. }
                            | Error::UnsupportedVersion { .. }
                            | Error::Store(eventfold_core::Error::InvalidEvent { .. }) => {
                                refused(format!(
                                    "corrected, it would not decode as an event of '{}': {error}",
                                    A::NAME
                                ))
                            }
                            error => error,
                        },
                    )?;
                }
            }
            let expected = loaded
                .revision()
                .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            let event = personal_like(compensation.to_event()?, &target)?;
            match self.store.append(&stream, expected, vec![event]).await {
                Ok(result) => return Ok(result),
                Err(
                    eventfold_core::Error::WrongExpectedVersion { stream, .. }
                    | eventfold_core::Error::StreamMoved { stream, .. },
                ) => {
                    if attempts >= self.attempts_max {
                        return Err(Error::Conflict { stream, attempts });
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Counts an event a load folded towards the next snapshot.
    fn count(&self, loaded: &mut Loaded<A>, event: &RecordedEvent) {
        let after_types = self.snapshots.as_ref().map_or(&[][..], |p| p.after_types);
        count(loaded, event, after_types);
    }

    /// Loads without writing a snapshot, following streams that a surgery moved.
    async fn load_inner(&self, streams: &[&str]) -> Result<Loaded<A>> {
        check_streams(streams)?;
        let names = streams.iter().map(|s| s.to_string()).collect();
        self.load_following(names, Vec::new(), false).await
    }

    /// Loads from `names`, each renamed by `moved` first; a move marker met while
    /// reading renames its stream and starts the load again. A compensation met while
    /// reading, of an event already folded (the snapshot's, or one read before it),
    /// starts the load again too: from scratch, with every compensation of the
    /// streams known before the first event is folded. So does `compensated`.
    async fn load_following(
        &self,
        names: Vec<String>,
        mut moved: Vec<(String, String)>,
        mut compensated: bool,
    ) -> Result<Loaded<A>> {
        let mut refolds = 0;
        loop {
            let mut current = names.clone();
            for name in &mut current {
                while let Some((_, to)) = moved.iter().find(|(from, _)| from == name) {
                    *name = to.clone();
                }
            }
            let refs: Vec<&str> = current.iter().map(String::as_str).collect();
            check_streams(&refs)?;
            let corrections = if compensated {
                Some(self.compensations_of(&refs).await?)
            } else {
                None
            };
            let mut loaded = self.load_once(&refs, corrections).await?;
            match self.catch_up(&mut loaded).await? {
                CaughtUp::Done => {
                    loaded.moved = moved;
                    return Ok(loaded);
                }
                CaughtUp::Moved(from, to) => {
                    if moved.iter().any(|(old, _)| *old == to) || to.is_empty() {
                        return Err(Error::InvalidStreams {
                            reason: format!(
                                "stream '{from}' was moved to '{to}', which was moved back: a cycle of moves"
                            ),
                        });
                    }
                    if moved.len() >= MOVES_MAX {
                        return Err(Error::InvalidStreams {
                            reason: format!("more than {MOVES_MAX} moves to follow from {names:?}"),
                        });
                    }
                    moved.push((from, to));
                    // The compensations of the streams moved to are read when met.
                    compensated = false;
                }
                CaughtUp::Compensated => {
                    // Each time, a compensation was written between the collection
                    // and the fold.
                    refolds += 1;
                    if refolds > REFOLDS_MAX {
                        return Err(Error::Conflict {
                            stream: current[0].clone(),
                            attempts: refolds,
                        });
                    }
                    compensated = true;
                }
            }
        }
    }

    /// Every compensation in `streams` of an event of `streams`: each stream is read
    /// whole (links as written: a link is no compensation).
    async fn compensations_of(&self, streams: &[&str]) -> Result<Corrections> {
        let mut corrections = Corrections::new();
        for stream in streams {
            let mut from = Revision(0);
            loop {
                let read = ReadStream::forward()
                    .from(from)
                    .limit(PAGE_EVENTS)
                    .links_as_written();
                let page = match self.store.read_stream(stream, read).await {
                    Ok(page) => page,
                    Err(eventfold_core::Error::StreamNotFound { .. }) => Vec::new(),
                    Err(error) => return Err(error.into()),
                };
                for event in &page {
                    if let Some(compensation) = Compensation::of(event)?
                        && streams.contains(&compensation.target().stream.as_str())
                    {
                        corrections.insert(event.id, compensation);
                    }
                }
                match page.last() {
                    Some(last) if page.len() as u64 == PAGE_EVENTS => from = last.revision.next(),
                    _ => break,
                }
            }
        }
        Ok(corrections)
    }

    /// Loads from `streams` as they are (the snapshot, if any), not caught up yet.
    /// With `corrections` (every compensation of the streams), from scratch instead:
    /// a snapshot's state was folded without some of them, so none is read, and the
    /// one written next (the snapshot is stale) is folded with them.
    async fn load_once(
        &self,
        streams: &[&str],
        corrections: Option<Corrections>,
    ) -> Result<Loaded<A>> {
        let mut loaded = Loaded {
            state: A::default(),
            cursors: streams
                .iter()
                .map(|s| Cursor {
                    stream: s.to_string(),
                    revision: None,
                })
                .collect(),
            since_snapshot: 0,
            snapshot_due: 0,
            snapshot_floor: None,
            snapshot_stale: false,
            from_snapshot: false,
            snapshot_at: None,
            snapshot_marked: false,
            moved: Vec::new(),
            corrections: Corrections::new(),
        };
        if let Some(corrections) = corrections {
            loaded.corrections = corrections;
            loaded.snapshot_stale = self.snapshots.is_some();
            return Ok(loaded);
        }
        if let Some(policy) = &self.snapshots {
            match self.read_snapshot(policy, streams).await? {
                SnapshotFound::Usable(state, cursors, at) => {
                    loaded.state = state;
                    loaded.cursors = cursors;
                    loaded.from_snapshot = true;
                    loaded.snapshot_at = Some(at);
                }
                // This version wrote a snapshot it cannot use now (its state does
                // not decode): another build of the same version, as in a rolling
                // deploy. Rewriting it on every load would make the two builds
                // overwrite each other for ever; wait for `every` new events.
                SnapshotFound::Unusable {
                    own: Some(position),
                } => {
                    loaded.snapshot_floor = Some(position);
                }
                // None of this version among the last few: write one now.
                SnapshotFound::Unusable { own: None } => loaded.snapshot_stale = true,
                SnapshotFound::None => {}
            }
        }
        Ok(loaded)
    }

    /// Reads and folds the events after each stream's cursor, merged in global order.
    /// Stops at a move marker (`$stream-moved-to`), answering its stream and where
    /// the events went; the caller loads again from there. Stops at a compensation
    /// new to the load too (its event was folded as it was): the caller folds again
    /// from scratch.
    async fn catch_up(&self, loaded: &mut Loaded<A>) -> Result<CaughtUp> {
        if loaded.cursors.len() == 1 {
            // One stream: fold page by page, holding one page in memory.
            loop {
                let cursor = &mut loaded.cursors[0];
                let from = cursor.revision.map_or(Revision(0), Revision::next);
                let page =
                    read_from(self.store.as_ref(), &cursor.stream, from, PAGE_EVENTS).await?;
                let full = page.len() as u64 == PAGE_EVENTS;
                if let Some(last) = page.last() {
                    cursor.revision = Some(last.revision);
                }
                for event in page {
                    if let Some(to) = moved_to(&event) {
                        return Ok(CaughtUp::Moved(event.stream, to));
                    }
                    if self.fold(loaded, event)? {
                        return Ok(CaughtUp::Compensated);
                    }
                }
                if !full {
                    return Ok(CaughtUp::Done);
                }
            }
        }
        // Several streams are read one after another: an event committed to a stream
        // already read, before a later one is read, would be missed now and folded
        // after the later stream's events next time. Reading only up to the head
        // taken first makes the merge a consistent cut of the log.
        let Some(head) = self.store.head_position().await? else {
            return Ok(CaughtUp::Done);
        };
        let mut merged = Vec::new();
        for cursor in &mut loaded.cursors {
            let from = cursor.revision.map_or(Revision(0), Revision::next);
            let mut events = read_from(self.store.as_ref(), &cursor.stream, from, u64::MAX).await?;
            // A stream's events are in position order.
            let kept = events.partition_point(|e| e.position <= head);
            events.truncate(kept);
            if let Some(last) = events.last() {
                cursor.revision = Some(last.revision);
            }
            merged.extend(events);
        }
        merged.sort_by_key(|e| e.position);
        if let Some(marker) = merged.iter().find(|e| moved_to(e).is_some()) {
            let to = moved_to(marker).unwrap_or_default();
            return Ok(CaughtUp::Moved(marker.stream.clone(), to));
        }
        for event in merged {
            if self.fold(loaded, event)? {
                return Ok(CaughtUp::Compensated);
            }
        }
        Ok(CaughtUp::Done)
    }

    /// Folds one event a load read, as corrected by the compensations it knows: a
    /// cancelled event is left out, a corrected one is folded with its corrected data,
    /// a compensation is never folded. `true` when the event is a compensation, new to
    /// the load, of an event of one of its streams: the load must fold again.
    fn fold(&self, loaded: &mut Loaded<A>, event: RecordedEvent) -> Result<bool> {
        self.count(loaded, &event);
        if let Some(compensation) = Compensation::of(&event)? {
            let target = &compensation.target().stream;
            let ours = loaded.cursors.iter().any(|c| c.stream == *target);
            return Ok(ours && loaded.corrections.insert(event.id, compensation));
        }
        let event = if loaded.corrections.is_empty() {
            event
        } else {
            match loaded.corrections.apply(event)? {
                Some(event) => event,
                None => return Ok(false),
            }
        };
        let state = &mut loaded.state;
        upcast_decode(self.upcaster.as_ref(), event, |e| state.evolve(&e))?;
        Ok(false)
    }

    /// The newest usable snapshot (own version, readable, same streams), looking back
    /// through older ones when the newest is not.
    async fn read_snapshot(
        &self,
        policy: &SnapshotPolicy<A>,
        streams: &[&str],
    ) -> Result<SnapshotFound<A>> {
        let name = streams::snapshot(A::NAME, streams);
        let Some(newest) = last_event(self.store.as_ref(), &name).await? else {
            return Ok(SnapshotFound::None);
        };
        let mut own = None;
        match usable_snapshot(policy, &newest, streams) {
            Candidate::Usable(state, cursors) => {
                return Ok(SnapshotFound::Usable(state, cursors, newest.recorded_at));
            }
            Candidate::Own => own = Some(newest.position),
            Candidate::Other => {}
        }
        // The newest is of another version (an upgrade or a downgrade happened) or
        // unreadable: an older one of this version still saves most of the replay.
        let Some(before) = newest.revision.get().checked_sub(1) else {
            return Ok(SnapshotFound::Unusable { own });
        };
        let older = self
            .store
            .read_stream(
                &name,
                ReadStream::backward()
                    .from(Revision(before))
                    .limit(policy.lookback.saturating_sub(1)),
            )
            .await?;
        for event in &older {
            match usable_snapshot(policy, event, streams) {
                Candidate::Usable(state, cursors) => {
                    return Ok(SnapshotFound::Usable(state, cursors, event.recorded_at));
                }
                Candidate::Own => own = own.or(Some(event.position)),
                Candidate::Other => {}
            }
        }
        Ok(SnapshotFound::Unusable { own })
    }

    /// Writes a snapshot when none of this version was found or enough events passed. A failed
    /// snapshot write does not fail the load or the command: the events are the truth.
    async fn maybe_snapshot(&self, loaded: &mut Loaded<A>, streams: &[&str]) {
        let Some(policy) = &self.snapshots else {
            return;
        };
        // At most one snapshot per `every` events per version: two versions running
        // side by side (a rolling deploy) each keep their own, never rewriting the
        // other's on every load. The other triggers need new events too.
        let due = loaded.snapshot_due;
        let marked = loaded.snapshot_marked && due > 0;
        let old = policy.older_than.is_some_and(|age| {
            due > 0
                && loaded
                    .snapshot_at
                    .is_none_or(|at| (chrono::Utc::now() - at).to_std().unwrap_or_default() >= age)
        });
        if !loaded.snapshot_stale && due < policy.every && !marked && !old {
            return;
        }
        if loaded.cursors.iter().all(|c| c.revision.is_none()) {
            return;
        }
        let name = streams::snapshot(A::NAME, streams);
        let record = (policy.encode)(&loaded.state).map(|state| SnapshotRecord {
            aggregate: A::NAME.to_string(),
            streams: loaded.cursors.clone(),
            state,
        });
        let event = match record {
            Ok(record) => {
                EventData::json(SNAPSHOT_TYPE, &record).map(|e| e.with_version(A::SNAPSHOT_VERSION))
            }
            Err(e) => Err(eventfold_core::Error::InvalidEvent {
                reason: e.to_string(),
            }),
        };
        let written = match event {
            Ok(event) => self
                .store
                .append(&name, ExpectedVersion::Any, vec![event])
                .await
                .map(|result| result.first_revision == Revision::FIRST),
            Err(e) => Err(e),
        };
        // A new snapshot stream gets its retention: the newest `lookback` snapshots
        // (all a load looks at), so that older ones are hidden and a scavenge
        // reclaims them instead of the stream growing for ever.
        if let Ok(true) = written {
            let retention = StreamMetadata {
                max_count: Some(policy.lookback),
                ..StreamMetadata::default()
            };
            if let Err(error) = self
                .store
                .set_stream_metadata(&name, ExpectedVersion::NoStream, retention)
                .await
            {
                tracing::warn!(%error, stream = %name, "snapshot retention not set");
            }
        }
        let written = written.map(|_| ());
        match written {
            Ok(()) => {
                loaded.since_snapshot = 0;
                loaded.snapshot_due = 0;
                loaded.snapshot_floor = None;
                loaded.snapshot_stale = false;
                loaded.snapshot_marked = false;
                loaded.snapshot_at = Some(chrono::Utc::now());
            }
            Err(error) => tracing::warn!(%error, stream = %name, "snapshot not written"),
        }
    }
}

impl<A: Aggregate + Serialize + DeserializeOwned> Repository<A> {
    /// Writes a snapshot of the state every `every` events (at least 1), into the
    /// aggregate's snapshot stream, with [`Aggregate::SNAPSHOT_VERSION`]. Older snapshots
    /// are kept: after a downgrade, the code finds the newest one of its own version
    /// among the last 16. The snapshot stream's metadata keeps those 16 (`max_count`,
    /// set when the stream is created), so a scavenge reclaims the older ones.
    pub fn with_snapshots(mut self, every: u64) -> Self {
        self.snapshot_policy().every = every.max(1);
        self
    }

    /// Also writes a snapshot after any event of `event_types` (a period closed, an
    /// order shipped: where later loads will start), whatever the count. Turns
    /// snapshots on when [`with_snapshots`](Repository::with_snapshots) did not.
    pub fn with_snapshots_after(mut self, event_types: &'static [&'static str]) -> Self {
        self.snapshot_policy().after_types = event_types;
        self
    }

    /// Also writes a snapshot when the newest is older than `age` and events came
    /// after it (checked when the aggregate is loaded or handles a command), so a
    /// rarely changed aggregate does not replay a long tail for ever. Turns snapshots
    /// on when [`with_snapshots`](Repository::with_snapshots) did not.
    pub fn with_snapshots_older_than(mut self, age: std::time::Duration) -> Self {
        self.snapshot_policy().older_than = Some(age);
        self
    }

    /// The snapshot policy, made (with no count trigger) when there is none.
    fn snapshot_policy(&mut self) -> &mut SnapshotPolicy<A> {
        self.snapshots.get_or_insert(SnapshotPolicy {
            every: u64::MAX,
            after_types: &[],
            older_than: None,
            lookback: 16,
            encode: |state| serde_json::value::to_raw_value(state),
            decode: |text| serde_json::from_str(text),
        })
    }
}

/// What the snapshot stream offers a load.
enum SnapshotFound<A> {
    /// No snapshot at all.
    None,
    /// A usable snapshot of this version: the state, the cursors it covers, and when
    /// it was written.
    Usable(A, Vec<Cursor>, chrono::DateTime<chrono::Utc>),
    /// None usable among the last few; `own` is the position of the newest one this
    /// version wrote (its record reads, its state does not decode), if any.
    Unusable { own: Option<Position> },
}

/// One snapshot record, as this version sees it.
enum Candidate<A> {
    Usable(A, Vec<Cursor>),
    /// Of this version and these streams, but its state does not decode.
    Own,
    /// Of another version, or unreadable.
    Other,
}

/// Counts a folded event towards the snapshot rules.
/// Counts an event a load folded towards the next snapshot.
fn count<A>(loaded: &mut Loaded<A>, event: &RecordedEvent, after_types: &[&str]) {
    loaded.since_snapshot += 1;
    if loaded
        .snapshot_floor
        .is_none_or(|floor| event.position > floor)
    {
        loaded.snapshot_due += 1;
        if after_types.contains(&event.event_type.as_str()) {
            loaded.snapshot_marked = true;
        }
    }
}

fn usable_snapshot<A>(
    policy: &SnapshotPolicy<A>,
    event: &RecordedEvent,
    streams: &[&str],
) -> Candidate<A>
where
    A: Aggregate,
{
    if event.event_type != SNAPSHOT_TYPE || event.version != A::SNAPSHOT_VERSION {
        return Candidate::Other;
    }
    let record: SnapshotRecord = match serde_json::from_slice(&event.data) {
        Ok(record) => record,
        Err(error) => {
            tracing::warn!(%error, stream = %event.stream, revision = %event.revision, "unreadable snapshot");
            return Candidate::Other;
        }
    };
    let same_streams = record.aggregate == A::NAME
        && record.streams.len() == streams.len()
        && record
            .streams
            .iter()
            .zip(streams)
            .all(|(c, s)| c.stream == *s);
    if !same_streams {
        return Candidate::Other;
    }
    match (policy.decode)(record.state.get()) {
        Ok(state) => Candidate::Usable(state, record.streams),
        Err(error) => {
            tracing::warn!(%error, stream = %event.stream, revision = %event.revision, "snapshot state does not decode");
            Candidate::Own
        }
    }
}

/// The writes of a decision and what they will produce.
struct Planned<E> {
    writes: Vec<StreamWrite>,
    written: Vec<Written>,
    /// The events in the order they are stored (grouped by stream).
    events: Vec<E>,
    home_revision: Option<Revision>,
}

fn plan<A: Aggregate>(
    loaded: &Loaded<A>,
    command: &Envelope<A::Command>,
    targets: Vec<(Option<String>, A::Event)>,
    after: Option<Revision>,
) -> Result<Planned<A::Event>> {
    // Group by stream, in the order of each stream's first event.
    // (index of the stream's cursor, [(index of the event in the decision, event)])
    type Group<E> = (usize, Vec<(usize, E)>);
    let mut groups: Vec<Group<A::Event>> = Vec::new();
    for (index, (target, event)) in targets.into_iter().enumerate() {
        let cursor = match &target {
            None => 0,
            Some(stream) => loaded
                .cursors
                .iter()
                .position(|c| c.stream == loaded.current_name(stream))
                .ok_or_else(|| Error::TargetNotLoaded {
                    stream: stream.clone(),
                })?,
        };
        match groups.iter_mut().find(|(c, _)| *c == cursor) {
            Some((_, events)) => events.push((index, event)),
            None => groups.push((cursor, vec![(index, event)])),
        }
    }
    let mut planned = Planned {
        writes: Vec::with_capacity(groups.len()),
        written: Vec::with_capacity(groups.len()),
        events: Vec::new(),
        home_revision: loaded.revision(),
    };
    for (cursor, events) in groups {
        let Cursor { stream, revision } = &loaded.cursors[cursor];
        let expected = revision.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let first = revision.map_or(Revision(0), Revision::next);
        let last = Revision(first.get() + events.len() as u64 - 1);
        let mut data = Vec::with_capacity(events.len());
        for (index, event) in events {
            data.push(command.stamp(event.encode()?, index, after)?);
            planned.events.push(event);
        }
        if cursor == 0 {
            planned.home_revision = Some(last);
        }
        planned
            .writes
            .push(StreamWrite::new(stream.clone(), expected, data));
        planned.written.push(Written {
            stream: stream.clone(),
            first_revision: first,
            last_revision: last,
        });
    }
    Ok(planned)
}

/// Checks of the streams the aggregate was loaded from that the decision does not
/// write: their revisions as read go with the events written, so that a decision never
/// rests on a stale read (a write to one of them in between refuses the append, and
/// the command is decided again on the new events). Index streams (`$ce-...`) are
/// views of the log, with no revision of their own to check.
fn read_checks<A>(loaded: &Loaded<A>, writes: &[StreamWrite]) -> Vec<StreamWrite> {
    loaded
        .cursors
        .iter()
        .filter(|c| !c.stream.starts_with('$') && !writes.iter().any(|w| w.stream == c.stream))
        .map(|c| {
            let expected = c
                .revision
                .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            StreamWrite::check(c.stream.clone(), expected)
        })
        .collect()
}

/// The answer to a command the command log holds a final outcome for: its acceptance,
/// or its rejection recorded before (as text: the typed reason was not kept).
fn answer<C, R>(command: &Envelope<C>, settled: Settled) -> Result<Accepted, CommandError<R>> {
    match settled {
        Settled::Accepted(accepted) => Ok(accepted),
        Settled::Rejected(reason) => Err(CommandError::Failed(Error::AlreadyRejected {
            command_id: command.command_id(),
            reason,
        })),
    }
}

/// `correction` marked personal where `original` is: a corrected value of a personal
/// field is as personal as the value it replaces, so the privacy layer seals it too.
/// The original's pointers are into its data; the correction holds the patch under
/// `/data` (a pointer the patch does not have is skipped when sealing).
fn personal_like(correction: EventData, original: &RecordedEvent) -> Result<EventData> {
    if correction.event_type != eventfold_core::CORRECTED_EVENT_TYPE {
        return Ok(correction);
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&original.metadata).unwrap_or_default();
    let Some(personal) = metadata.get(eventfold_core::PERSONAL_KEY) else {
        return Ok(correction);
    };
    let fields: Vec<String> = match personal.get("fields").and_then(|f| f.as_array()) {
        Some(fields) => fields
            .iter()
            .filter_map(|f| f.as_str())
            .map(|f| format!("/data{f}"))
            .collect(),
        None => vec!["/data".to_string()],
    };
    let marking = serde_json::json!({ eventfold_core::PERSONAL_KEY: {
        "subject": personal.get("subject").cloned().unwrap_or_default(),
        "fields": fields,
    }});
    Ok(correction.with_metadata(&marking)?)
}

/// Moves followed in one load, at most (a longer chain is surely a mistake).
const MOVES_MAX: usize = 16;
/// Folds from scratch in one load because compensations kept arriving, at most.
const REFOLDS_MAX: u32 = 8;

/// How a catch-up ended.
enum CaughtUp {
    /// Every event read was folded.
    Done,
    /// A surgery moved a stream (its old name, the new one): load again from there.
    Moved(String, String),
    /// A compensation of an event folded already: fold again from scratch.
    Compensated,
}

/// Where a surgery's move marker says the stream's events went.
fn moved_to(event: &RecordedEvent) -> Option<String> {
    if event.event_type != eventfold_core::STREAM_MOVED_EVENT_TYPE {
        return None;
    }
    match eventfold_core::plan::StreamEnd::of(&event.event_type, &event.data) {
        eventfold_core::plan::StreamEnd::Moved(to) => Some(to),
        _ => None,
    }
}

fn check_streams(streams: &[&str]) -> Result<()> {
    if streams.is_empty() {
        return Err(Error::InvalidStreams {
            reason: "no stream given".into(),
        });
    }
    for (i, stream) in streams.iter().enumerate() {
        if streams[..i].contains(stream) {
            return Err(Error::InvalidStreams {
                reason: format!("stream '{stream}' is given twice"),
            });
        }
    }
    Ok(())
}

/// Events of `stream` from `from` on (at most `limit`); none when it does not exist.
pub(crate) async fn read_from(
    store: &dyn EventStore,
    stream: &str,
    from: Revision,
    limit: u64,
) -> Result<Vec<RecordedEvent>> {
    match store
        .read_stream(stream, ReadStream::forward().from(from).limit(limit))
        .await
    {
        Ok(events) => Ok(events),
        Err(eventfold_core::Error::StreamNotFound { .. }) => Ok(Vec::new()),
        Err(error) => Err(error.into()),
    }
}

/// The last event of `stream`, if it exists.
pub(crate) async fn last_event(
    store: &dyn EventStore,
    stream: &str,
) -> Result<Option<RecordedEvent>> {
    match store
        .read_stream(stream, ReadStream::backward().limit(1))
        .await
    {
        Ok(mut events) => Ok(events.pop()),
        Err(eventfold_core::Error::StreamNotFound { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}
