//! Process managers: long-running business processes that react to messages (events)
//! of one conversation (correlation id) by publishing new messages.
//!
//! - **Event-sourced.** Each instance records the messages it saw in its stream
//!   ([`streams::process`]); its state is rebuilt by replaying them through the same
//!   code with output muted, so nothing is published twice.
//! - **Versioned by start time.** [`ProcessVersions`] maps cut-off times to versions: an
//!   instance runs the version in force when it started, for its whole life.
//! - **Takeover.** [`ProcessRunner::take_over`] hands a running instance (same
//!   correlation id) to a newer version, which replays what the instance saw and then
//!   continues it.
//! - **Durable timeouts.** A process never waits without a deadline: every step answers
//!   [`Next::Wait`] with a timeout or [`Next::Done`]. Deadlines are events in the store
//!   ([`streams::timeouts`]), fired by [`ProcessRunner::fire_due_timeouts`] — after a
//!   restart too.
//!
//! Output is recorded before it is published (an outbox): a step's records and the
//! outputs it publishes are appended together, with the instance stream's expected
//! version; only once that append succeeded are the outputs published, and then marked
//! published. A step that loses a race (a concurrent runner, a takeover) thus publishes
//! nothing, and output computed from a stale state never leaves the runner. If the
//! process stops between the append and the mark, the outputs still pending are
//! published again, with the same ids (derived from the step's cause), by
//! [`ProcessRunner::publish_pending`] (which [`ProcessRunner::catch_up`] and
//! [`ProcessRunner::run`] call); receivers use the ids to drop duplicates — a
//! [`Repository`](crate::Repository) does when the output is a command whose command id
//! is the output's id. Delivery is thus at least once, effects once.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use eventfold_core::{
    AllFilter, EventData, EventStore, ExpectedVersion, Position, ReadAll, RecordedEvent, Revision,
    StreamWrite,
};
use eventfold_subscription::Subscription;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{DomainEvent, EventType, Upcaster, identity};
use crate::repository::read_from;
use crate::streams;

/// Events read per page while catching up.
const PAGE_EVENTS: u64 = 512;
/// Times a step is retried when the instance stream changed under it.
const ATTEMPTS_MAX: u32 = 4;

/// One version of a process manager. The type is the state of one instance;
/// [`Default`] is the state before its first message.
///
/// Every method answers what happens next, [`Next::Wait`] with a deadline or
/// [`Next::Done`]: there is no way to wait for ever. [`Context::time`] is the time of the
/// message being handled (never the wall clock), so a replay decides the same.
///
/// See [`testkit::ProcessScenario`](crate::testkit::ProcessScenario) for an example.
pub trait ProcessManager: Default + Send + Sync + 'static {
    /// This version's number, recorded in each instance it starts or takes over.
    const VERSION: u32;
    /// The messages it reacts to (other types are not delivered).
    type Message: DomainEvent;
    /// The messages it publishes.
    type Output: DomainEvent;

    /// Whether `message` starts a new instance when none runs for its correlation id
    /// (by default every message does).
    fn starts_with(message: &Self::Message) -> bool {
        let _ = message;
        true
    }

    /// Reacts to a message: update the state, publish through `ctx`, say what is next.
    fn handle(&mut self, message: &Self::Message, ctx: &mut Context<Self::Output>) -> Next;

    /// The deadline of the last [`Next::Wait`] passed without another message.
    fn on_timeout(&mut self, ctx: &mut Context<Self::Output>) -> Next;

    /// This version has just taken the instance over from an older one; the state was
    /// rebuilt from every message the instance saw.
    fn on_takeover(&mut self, ctx: &mut Context<Self::Output>) -> Next;
}

/// What a process does after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for the next message, at most this long after the time of this step; then
    /// [`ProcessManager::on_timeout`] runs.
    Wait(Duration),
    /// The process is complete; later messages of its correlation id are ignored.
    Done,
}

/// What a step of a process manager publishes, and when it happens.
#[derive(Debug)]
pub struct Context<O> {
    correlation_id: Uuid,
    time: DateTime<Utc>,
    outputs: Vec<O>,
}

impl<O> Context<O> {
    pub(crate) fn new(correlation_id: Uuid, time: DateTime<Utc>) -> Self {
        Context {
            correlation_id,
            time,
            outputs: Vec::new(),
        }
    }

    /// Publishes `message` (muted while the instance is replayed).
    pub fn publish(&mut self, message: O) {
        self.outputs.push(message);
    }

    /// The instance's correlation id.
    pub fn correlation_id(&self) -> Uuid {
        self.correlation_id
    }

    /// When the step happens: the time the message was recorded, or the deadline for a
    /// timeout, or the time of a takeover.
    pub fn time(&self) -> DateTime<Utc> {
        self.time
    }

    pub(crate) fn into_outputs(self) -> Vec<O> {
        self.outputs
    }
}

/// Where a process's output goes.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes `messages` (ids, correlation and causation ids filled in).
    async fn publish(&self, messages: Vec<EventData>) -> eventfold_core::Result<()>;
}

/// A [`Publisher`] that appends the messages to one stream of a store.
///
/// ```
/// use std::sync::Arc;
/// use eventfold::process::StreamPublisher;
/// let publisher = StreamPublisher::new(Arc::new(eventfold::InMemoryStore::new()), "shipping-commands");
/// # let _ = publisher;
/// ```
#[derive(Clone)]
pub struct StreamPublisher {
    store: Arc<dyn EventStore>,
    stream: String,
}

impl StreamPublisher {
    /// Publishes to `stream` of `store`.
    pub fn new(store: Arc<dyn EventStore>, stream: impl Into<String>) -> Self {
        StreamPublisher {
            store,
            stream: stream.into(),
        }
    }
}

impl std::fmt::Debug for StreamPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPublisher")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Publisher for StreamPublisher {
    async fn publish(&self, messages: Vec<EventData>) -> eventfold_core::Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        self.store
            .append(&self.stream, ExpectedVersion::Any, messages)
            .await
            .map(|_| ())
    }
}

/// The deadline of a wait of `timeout` from `time` (saturating).
pub(crate) fn deadline(time: DateTime<Utc>, timeout: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(timeout)
        .ok()
        .and_then(|delta| time.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The versions of one process manager, each with the cut-off from which new instances
/// start with it.
///
/// ```
/// # use std::time::Duration;
/// # use eventfold::{DomainEvent, EventType};
/// # use eventfold::process::{Context, Next, ProcessManager};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// # #[serde(tag = "type", content = "data")]
/// # enum In { OrderPlaced }
/// # impl DomainEvent for In { const TYPES: &'static [EventType] = &[EventType::new("OrderPlaced", 1)]; }
/// # macro_rules! version { ($name:ident, $v:expr) => {
/// # #[derive(Debug, Default)] struct $name;
/// # impl ProcessManager for $name {
/// #     const VERSION: u32 = $v;
/// #     type Message = In;
/// #     type Output = In;
/// #     fn handle(&mut self, _: &In, _: &mut Context<In>) -> Next { Next::Done }
/// #     fn on_timeout(&mut self, _: &mut Context<In>) -> Next { Next::Done }
/// #     fn on_takeover(&mut self, _: &mut Context<In>) -> Next { Next::Done }
/// # } } }
/// # version!(ShippingV1, 1);
/// # version!(ShippingV2, 2);
/// use eventfold::process::ProcessVersions;
///
/// let release = "2026-12-01T00:00:00Z".parse().unwrap();
/// let versions = ProcessVersions::new::<ShippingV1>().then::<ShippingV2>(release);
/// assert_eq!(versions.version_at("2026-11-30T23:59:59Z".parse().unwrap()), 1);
/// assert_eq!(versions.version_at(release), 2);
/// ```
#[derive(Clone)]
pub struct ProcessVersions {
    /// Sorted by cut-off; the first has none (it is in force from the beginning).
    versions: Vec<CutOff>,
}

/// A version with the start time from which new instances run it.
type CutOff = (Option<DateTime<Utc>>, Arc<dyn Version>);

impl std::fmt::Debug for ProcessVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.versions
                    .iter()
                    .map(|(cut_off, v)| (cut_off, v.number())),
            )
            .finish()
    }
}

impl ProcessVersions {
    /// `P` is the first version, in force for every instance started before the next
    /// version's cut-off.
    pub fn new<P: ProcessManager>() -> Self {
        ProcessVersions {
            versions: vec![(None, Arc::new(Typed::<P>(std::marker::PhantomData)))],
        }
    }

    /// Instances started at or after `cut_off` run `P`. Its version number must be
    /// larger than the previous ones' and `cut_off` later than theirs.
    ///
    /// # Panics
    ///
    /// When `P::VERSION` is not larger than every earlier version's number, or
    /// `cut_off` not later than every earlier cut-off: the versions are declared once,
    /// at start-up, and instances record version numbers, so a duplicate or a
    /// reordering would silently run the wrong code.
    pub fn then<P: ProcessManager>(mut self, cut_off: DateTime<Utc>) -> Self {
        // The list is kept in declaration order, which these checks make the order
        // of both cut-offs and numbers.
        if let Some((last_cut_off, last)) = self.versions.last() {
            assert!(
                P::VERSION > last.number(),
                "process version {} is declared after version {}: version numbers must be unique and increasing",
                P::VERSION,
                last.number()
            );
            assert!(
                last_cut_off.is_none_or(|last| cut_off > last),
                "the cut-off of process version {} ({cut_off}) is not later than the previous version's",
                P::VERSION
            );
        }
        self.versions.push((
            Some(cut_off),
            Arc::new(Typed::<P>(std::marker::PhantomData)),
        ));
        self
    }

    /// The version number an instance started at `started_at` runs.
    pub fn version_at(&self, started_at: DateTime<Utc>) -> u32 {
        self.at(started_at).number()
    }

    fn at(&self, started_at: DateTime<Utc>) -> &Arc<dyn Version> {
        let mut chosen = &self.versions[0].1;
        for (cut_off, version) in &self.versions {
            if cut_off.is_none_or(|c| c <= started_at) {
                chosen = version;
            }
        }
        chosen
    }

    fn get(&self, number: u32) -> Option<&Arc<dyn Version>> {
        self.versions
            .iter()
            .map(|(_, v)| v)
            .find(|v| v.number() == number)
    }

    fn message_types(&self) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        for (_, version) in &self.versions {
            for t in version.message_types() {
                if !types.iter().any(|known| known == t.name) {
                    types.push(t.name.to_string());
                }
            }
        }
        types
    }
}

/// One version, with its types erased so that versions can differ in state and
/// message types.
trait Version: Send + Sync {
    fn number(&self) -> u32;
    fn message_types(&self) -> &'static [EventType];
    fn starts_with(&self, upcaster: &dyn Upcaster, message: &RecordedEvent) -> Result<bool>;
    fn instance(&self) -> Box<dyn Instance>;
}

/// A running instance of one version.
trait Instance: Send {
    /// Handles the message; `None` when this version does not know its type.
    fn handle(
        &mut self,
        upcaster: &dyn Upcaster,
        message: &RecordedEvent,
        ctx: &mut Context<EventData>,
    ) -> Result<Option<Next>>;
    fn on_timeout(&mut self, ctx: &mut Context<EventData>) -> Result<Next>;
    fn on_takeover(&mut self, ctx: &mut Context<EventData>) -> Result<Next>;
}

struct Typed<P>(std::marker::PhantomData<fn() -> P>);

impl<P: ProcessManager> Version for Typed<P> {
    fn number(&self) -> u32 {
        P::VERSION
    }

    fn message_types(&self) -> &'static [EventType] {
        P::Message::TYPES
    }

    fn starts_with(&self, upcaster: &dyn Upcaster, message: &RecordedEvent) -> Result<bool> {
        let mut starts = false;
        for event in upcaster.upcast(message.clone())? {
            if let Some(message) = P::Message::decode(&event)? {
                starts |= P::starts_with(&message);
            }
        }
        Ok(starts)
    }

    fn instance(&self) -> Box<dyn Instance> {
        Box::new(State(P::default()))
    }
}

struct State<P>(P);

impl<P: ProcessManager> State<P> {
    fn step(
        &mut self,
        ctx: &mut Context<EventData>,
        f: impl FnOnce(&mut P, &mut Context<P::Output>) -> Next,
    ) -> Result<Next> {
        let mut typed = Context::new(ctx.correlation_id, ctx.time);
        let next = f(&mut self.0, &mut typed);
        for output in typed.into_outputs() {
            ctx.publish(output.encode()?);
        }
        Ok(next)
    }
}

impl<P: ProcessManager> Instance for State<P> {
    fn handle(
        &mut self,
        upcaster: &dyn Upcaster,
        message: &RecordedEvent,
        ctx: &mut Context<EventData>,
    ) -> Result<Option<Next>> {
        let mut next = None;
        for event in upcaster.upcast(message.clone())? {
            if let Some(message) = P::Message::decode(&event)? {
                next = Some(self.step(ctx, |p, ctx| p.handle(&message, ctx))?);
            }
        }
        Ok(next)
    }

    fn on_timeout(&mut self, ctx: &mut Context<EventData>) -> Result<Next> {
        self.step(ctx, |p, ctx| p.on_timeout(ctx))
    }

    fn on_takeover(&mut self, ctx: &mut Context<EventData>) -> Result<Next> {
        self.step(ctx, |p, ctx| p.on_takeover(ctx))
    }
}

/// A message as an instance records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SeenMessage {
    id: Uuid,
    stream: String,
    revision: Revision,
    position: Position,
    #[serde(rename = "type")]
    event_type: String,
    version: u32,
    data: Box<RawValue>,
    metadata: Box<RawValue>,
    recorded_at: DateTime<Utc>,
}

impl SeenMessage {
    fn from_event(event: &RecordedEvent) -> Result<Self> {
        let raw = |bytes: &[u8]| {
            std::str::from_utf8(bytes)
                .map_err(|e| e.to_string())
                .and_then(|text| RawValue::from_string(text.to_string()).map_err(|e| e.to_string()))
                .map_err(|reason| Error::Decode {
                    stream: event.stream.clone(),
                    revision: event.revision,
                    event_type: event.event_type.clone(),
                    version: event.version,
                    reason,
                })
        };
        Ok(SeenMessage {
            id: event.id,
            stream: event.stream.clone(),
            revision: event.revision,
            position: event.position,
            event_type: event.event_type.clone(),
            version: event.version,
            data: raw(&event.data)?,
            metadata: raw(&event.metadata)?,
            recorded_at: event.recorded_at,
        })
    }

    fn into_event(self) -> RecordedEvent {
        RecordedEvent {
            stream: self.stream,
            revision: self.revision,
            position: self.position,
            id: self.id,
            event_type: self.event_type,
            version: self.version,
            data: self.data.get().to_string().into(),
            metadata: self.metadata.get().to_string().into(),
            recorded_at: self.recorded_at,
        }
    }
}

/// What an instance stream (and the timeouts stream) records.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum Record {
    /// The instance started, running `version`.
    ProcessStarted {
        version: u32,
        started_at: DateTime<Utc>,
    },
    /// The instance saw this message.
    MessageReceived { message: SeenMessage },
    /// The instance waits until `deadline` (in the timeouts stream too).
    TimeoutScheduled {
        correlation_id: Uuid,
        timeout_id: Uuid,
        deadline: DateTime<Utc>,
    },
    /// The deadline passed.
    TimeoutFired {
        timeout_id: Uuid,
        deadline: DateTime<Utc>,
    },
    /// A newer version took the instance over.
    ProcessTakenOver {
        from: u32,
        to: u32,
        at: DateTime<Utc>,
    },
    /// The instance is complete.
    ProcessCompleted,
    /// A step's outputs, recorded with the step, to publish once the step is recorded
    /// (instance stream).
    OutputsPending {
        /// The step's cause (message id, timeout id, takeover id): names the batch.
        cause: Uuid,
        outputs: Vec<PendingOutput>,
    },
    /// An instance has outputs pending (outbox stream: what a restarted runner checks).
    OutputsQueued { correlation_id: Uuid, cause: Uuid },
    /// The outputs of step `cause` were published (instance and outbox streams).
    OutputsPublished { correlation_id: Uuid, cause: Uuid },
}

/// An output as an instance records it before publishing it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingOutput {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    version: u32,
    data: Box<RawValue>,
    metadata: Box<RawValue>,
}

impl PendingOutput {
    fn from_data(data: &EventData, id: Uuid) -> Result<Self> {
        let raw = |bytes: &[u8]| {
            std::str::from_utf8(bytes)
                .map_err(|e| e.to_string())
                .and_then(|text| RawValue::from_string(text.to_string()).map_err(|e| e.to_string()))
                .map_err(|reason| Error::Encode { reason })
        };
        Ok(PendingOutput {
            id,
            event_type: data.event_type.clone(),
            version: data.version,
            data: raw(&data.data)?,
            metadata: raw(&data.metadata)?,
        })
    }

    fn into_data(self) -> EventData {
        EventData::from_raw_json(
            Some(self.id),
            self.event_type,
            Some(self.version),
            &self.data,
            Some(&self.metadata),
        )
    }
}

impl DomainEvent for Record {
    const TYPES: &'static [EventType] = &[
        EventType::new("ProcessStarted", 1),
        EventType::new("MessageReceived", 1),
        EventType::new("TimeoutScheduled", 1),
        EventType::new("TimeoutFired", 1),
        EventType::new("ProcessTakenOver", 1),
        EventType::new("ProcessCompleted", 1),
        EventType::new("OutputsPending", 1),
        EventType::new("OutputsQueued", 1),
        EventType::new("OutputsPublished", 1),
    ];
}

/// An input an instance's state is built from, kept for a takeover's replay.
enum Input {
    Message(RecordedEvent),
    Timeout(DateTime<Utc>),
}

/// An instance rebuilt from its stream.
struct Replayed {
    version: u32,
    state: Box<dyn Instance>,
    inputs: Vec<Input>,
    seen: HashSet<Uuid>,
    /// The pending timeout: id and deadline.
    waiting: Option<(Uuid, DateTime<Utc>)>,
    completed: bool,
    revision: Option<Revision>,
    /// Outputs recorded but not yet marked published, by step cause, oldest first.
    pending: Vec<(Uuid, Vec<EventData>)>,
}

/// Runs one process manager (all its versions) over a store: feeds it the events of
/// the log, records what each instance saw, publishes its output, fires its timeouts.
///
/// Instances are keyed by the correlation id of the messages (a message without one
/// is its own conversation: its id is used).
pub struct ProcessRunner {
    name: String,
    store: Arc<dyn EventStore>,
    versions: ProcessVersions,
    publisher: Arc<dyn Publisher>,
    upcaster: Arc<dyn Upcaster>,
    timeouts: Mutex<Timeouts>,
    outbox: Mutex<Outbox>,
}

impl std::fmt::Debug for ProcessRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRunner")
            .field("name", &self.name)
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
}

/// The scheduled timeouts read so far from the timeouts stream.
struct Timeouts {
    /// The next revision of the timeouts stream to read.
    next: Revision,
    /// Pending: timeout id → (deadline, correlation id).
    pending: BTreeMap<Uuid, (DateTime<Utc>, Uuid)>,
}

/// The steps with outputs pending, read so far from the outbox stream.
struct Outbox {
    /// The next revision of the outbox stream to read.
    next: Revision,
    /// Pending: (step cause, correlation id), oldest first.
    pending: Vec<(Uuid, Uuid)>,
}

impl ProcessRunner {
    /// A runner of the process manager `name` (part of its stream names; never
    /// renamed) with its `versions`, publishing through `publisher`.
    pub fn new(
        name: impl Into<String>,
        store: Arc<dyn EventStore>,
        versions: ProcessVersions,
        publisher: Arc<dyn Publisher>,
    ) -> Self {
        ProcessRunner {
            name: name.into(),
            store,
            versions,
            publisher,
            upcaster: identity(),
            timeouts: Mutex::new(Timeouts {
                next: Revision::FIRST,
                pending: BTreeMap::new(),
            }),
            outbox: Mutex::new(Outbox {
                next: Revision::FIRST,
                pending: Vec::new(),
            }),
        }
    }

    /// Passes every message through `upcaster` before decoding it.
    pub fn with_upcaster(mut self, upcaster: Arc<dyn Upcaster>) -> Self {
        self.upcaster = upcaster;
        self
    }

    /// Publishes outputs still pending (see [`publish_pending`](Self::publish_pending)),
    /// then handles every event of the log from `from` that is there now; returns the
    /// position to continue from. Handling an event twice is harmless (each instance
    /// remembers the messages it saw), so resuming from an older position is safe.
    pub async fn catch_up(&self, from: Position) -> Result<Position> {
        self.publish_pending().await?;
        let filter = AllFilter {
            event_types: self.versions.message_types(),
            ..AllFilter::default()
        };
        let mut next = from;
        loop {
            let page = self
                .store
                .read_all(ReadAll::from(next, PAGE_EVENTS).filtered(filter.clone()))
                .await?;
            for event in &page.events {
                self.handle_event(event).await?;
            }
            next = page.next;
            if page.end_of_log {
                return Ok(next);
            }
        }
    }

    /// Follows the log from `from` for ever: handles each event as it is appended, and
    /// every `tick` fires due timeouts and publishes outputs still pending (a publisher
    /// that failed is tried again). Returns only on an error.
    pub async fn run(&self, from: Position, tick: Duration) -> Result<()> {
        let filter = AllFilter {
            event_types: self.versions.message_types(),
            ..AllFilter::default()
        };
        // The backlog is handled before any timeout fires: a message that arrived
        // before its deadline must win over the timeout, even after downtime.
        let next = self.catch_up(from).await?;
        let after = next.get().checked_sub(1).map(Position);
        let mut events = Subscription::to_all(self.store.clone(), after, filter);
        let mut ticks = tokio::time::interval(tick);
        loop {
            tokio::select! {
                // Events that are ready go before a tick, for the same reason.
                biased;
                event = events.next() => { self.handle_event(&event?).await?; }
                _ = ticks.tick() => {
                    self.fire_due_timeouts(Utc::now()).await?;
                    self.publish_pending().await?;
                }
            }
        }
    }

    /// Delivers one event to its instance (starting one if the event starts the
    /// process). Returns whether an instance took it.
    pub async fn handle_event(&self, event: &RecordedEvent) -> Result<bool> {
        if streams::is_framework(&event.stream) {
            return Ok(false);
        }
        let correlation_id = event.correlation_id().unwrap_or(event.id);
        let stream = streams::process(&self.name, correlation_id);
        for _ in 0..ATTEMPTS_MAX {
            let (mut replayed, mut records) = match self.replay(&stream).await? {
                Some(replayed) => (replayed, Vec::new()),
                None => {
                    let version = self.versions.at(event.recorded_at);
                    if !version.starts_with(self.upcaster.as_ref(), event)? {
                        return Ok(false);
                    }
                    let started = Record::ProcessStarted {
                        version: version.number(),
                        started_at: event.recorded_at,
                    };
                    (self.fresh(version.as_ref()), vec![started])
                }
            };
            if replayed.completed || replayed.seen.contains(&event.id) {
                return Ok(false);
            }
            let mut ctx = Context::new(correlation_id, event.recorded_at);
            let Some(next) = replayed
                .state
                .handle(self.upcaster.as_ref(), event, &mut ctx)?
            else {
                return Ok(false);
            };
            records.push(Record::MessageReceived {
                message: SeenMessage::from_event(event)?,
            });
            let cause = event.id;
            if self
                .commit(&stream, &mut replayed, records, next, ctx, cause)
                .await?
            {
                return Ok(true);
            }
        }
        Err(Error::Conflict {
            stream,
            attempts: ATTEMPTS_MAX,
        })
    }

    /// Fires every pending timeout whose deadline is at or before `now`, reading newly
    /// scheduled ones from the store first. Returns how many fired. A timeout whose
    /// instance got another message (a newer wait) or completed meanwhile is dropped.
    pub async fn fire_due_timeouts(&self, now: DateTime<Utc>) -> Result<usize> {
        let timeouts_stream = streams::timeouts(&self.name);
        let next = self.lock_timeouts().next;
        let scheduled = read_from(self.store.as_ref(), &timeouts_stream, next, u64::MAX).await?;
        let due: Vec<(Uuid, DateTime<Utc>, Uuid)> = {
            let mut timeouts = self.lock_timeouts();
            for event in scheduled {
                // Decoded before the cursor moves past it: a record that does not
                // decode stops the runner here, every time, rather than being skipped
                // (and its timeout never firing).
                let record = decode_record(&event)?;
                timeouts.next = event.revision.next();
                if let Some(Record::TimeoutScheduled {
                    correlation_id,
                    timeout_id,
                    deadline,
                }) = record
                {
                    timeouts
                        .pending
                        .insert(timeout_id, (deadline, correlation_id));
                }
            }
            timeouts
                .pending
                .iter()
                .filter(|(_, (deadline, _))| *deadline <= now)
                .map(|(id, (deadline, correlation))| (*id, *deadline, *correlation))
                .collect()
        };
        let mut fired = 0;
        for (timeout_id, deadline, correlation_id) in due {
            if self.fire(timeout_id, deadline, correlation_id).await? {
                fired += 1;
            }
            self.lock_timeouts().pending.remove(&timeout_id);
        }
        Ok(fired)
    }

    /// Hands the instance of `correlation_id` over to version `to`: the new version's
    /// state is rebuilt from every message the instance saw, then it continues with
    /// [`ProcessManager::on_takeover`]. Taking over to a version the instance already
    /// runs (or an older one) does nothing.
    pub async fn take_over(&self, correlation_id: Uuid, to: u32) -> Result<()> {
        let stream = streams::process(&self.name, correlation_id);
        let version = self
            .versions
            .get(to)
            .ok_or_else(|| Error::UnknownProcessVersion {
                name: self.name.clone(),
                version: to,
            })?
            .clone();
        for _ in 0..ATTEMPTS_MAX {
            let Some(mut replayed) = self.replay(&stream).await? else {
                return Err(Error::ProcessNotFound {
                    name: self.name.clone(),
                    correlation_id,
                });
            };
            if replayed.completed || replayed.version >= to {
                return Ok(());
            }
            let at = Utc::now();
            let from = replayed.version;
            self.switch(&mut replayed, version.as_ref())?;
            let mut ctx = Context::new(correlation_id, at);
            let next = replayed.state.on_takeover(&mut ctx)?;
            let records = vec![Record::ProcessTakenOver { from, to, at }];
            let cause = Uuid::new_v5(&correlation_id, format!("takeover-{to}").as_bytes());
            if self
                .commit(&stream, &mut replayed, records, next, ctx, cause)
                .await?
            {
                return Ok(());
            }
        }
        Err(Error::Conflict {
            stream,
            attempts: ATTEMPTS_MAX,
        })
    }

    /// Publishes the outputs of every step that was recorded but whose outputs were not
    /// marked published (the process stopped, or the publisher failed, in between),
    /// reading newly queued ones from the store first; returns how many steps' outputs
    /// were published. Outputs keep their ids, so receivers drop what they already had.
    pub async fn publish_pending(&self) -> Result<usize> {
        let outbox_stream = streams::outbox(&self.name);
        let next = self.lock_outbox().next;
        let queued = read_from(self.store.as_ref(), &outbox_stream, next, u64::MAX).await?;
        let pending: Vec<(Uuid, Uuid)> = {
            let mut outbox = self.lock_outbox();
            for event in queued {
                // Decoded before the cursor moves past it, as for timeouts.
                let record = decode_record(&event)?;
                outbox.next = event.revision.next();
                match record {
                    Some(Record::OutputsQueued {
                        correlation_id,
                        cause,
                    }) => outbox.pending.push((cause, correlation_id)),
                    Some(Record::OutputsPublished { cause, .. }) => {
                        outbox.pending.retain(|(c, _)| *c != cause);
                    }
                    _ => {}
                }
            }
            outbox.pending.clone()
        };
        let mut published = 0;
        for (cause, correlation_id) in pending {
            let stream = streams::process(&self.name, correlation_id);
            let outputs = self.replay(&stream).await?.and_then(|mut replayed| {
                let at = replayed.pending.iter().position(|(c, _)| *c == cause)?;
                Some(replayed.pending.remove(at).1)
            });
            // None: marked published in the instance (the mark in the outbox is
            // written with it, and read next time).
            if let Some(outputs) = outputs {
                self.publish_and_mark(&stream, correlation_id, cause, outputs)
                    .await?;
                published += 1;
            }
            self.lock_outbox().pending.retain(|(c, _)| *c != cause);
        }
        Ok(published)
    }

    /// Publishes the recorded outputs of step `cause`, then marks them published in
    /// the instance stream and the outbox stream. The marks have ids derived from the
    /// cause, so two runners marking the same step write them once.
    async fn publish_and_mark(
        &self,
        stream: &str,
        correlation_id: Uuid,
        cause: Uuid,
        outputs: Vec<EventData>,
    ) -> Result<()> {
        if !outputs.is_empty() {
            self.publisher.publish(outputs).await?;
        }
        let mark = Record::OutputsPublished {
            correlation_id,
            cause,
        };
        let encoded = |id: &[u8]| -> Result<EventData> {
            Ok(mark
                .encode()?
                .with_id(Uuid::new_v5(&cause, id))
                .with_correlation_id(correlation_id)
                .with_causation_id(cause))
        };
        self.store
            .append_multi(vec![
                StreamWrite::new(
                    stream,
                    ExpectedVersion::Any,
                    vec![encoded(b"outputs-published")?],
                ),
                StreamWrite::new(
                    streams::outbox(&self.name),
                    ExpectedVersion::Any,
                    vec![encoded(b"outputs-published-outbox")?],
                ),
            ])
            .await?;
        Ok(())
    }

    /// The version number the instance of `correlation_id` runs, `None` when there is
    /// no instance.
    pub async fn instance_version(&self, correlation_id: Uuid) -> Result<Option<u32>> {
        let stream = streams::process(&self.name, correlation_id);
        Ok(self.replay(&stream).await?.map(|r| r.version))
    }

    async fn fire(
        &self,
        timeout_id: Uuid,
        deadline: DateTime<Utc>,
        correlation_id: Uuid,
    ) -> Result<bool> {
        let stream = streams::process(&self.name, correlation_id);
        for _ in 0..ATTEMPTS_MAX {
            let Some(mut replayed) = self.replay(&stream).await? else {
                return Ok(false);
            };
            if replayed.completed || replayed.waiting.map(|(id, _)| id) != Some(timeout_id) {
                return Ok(false);
            }
            let mut ctx = Context::new(correlation_id, deadline);
            let next = replayed.state.on_timeout(&mut ctx)?;
            let records = vec![Record::TimeoutFired {
                timeout_id,
                deadline,
            }];
            if self
                .commit(&stream, &mut replayed, records, next, ctx, timeout_id)
                .await?
            {
                return Ok(true);
            }
        }
        Err(Error::Conflict {
            stream,
            attempts: ATTEMPTS_MAX,
        })
    }

    /// Records the step, its next move and its outputs (pending), then publishes the
    /// outputs and marks them published. Returns false when the instance stream
    /// changed meanwhile (the step is to be redone): nothing was recorded or published.
    async fn commit(
        &self,
        stream: &str,
        replayed: &mut Replayed,
        mut records: Vec<Record>,
        next: Next,
        ctx: Context<EventData>,
        cause: Uuid,
    ) -> Result<bool> {
        let correlation_id = ctx.correlation_id;
        let time = ctx.time;
        let outputs: Vec<EventData> = ctx
            .into_outputs()
            .into_iter()
            .enumerate()
            .map(|(i, data)| {
                data.with_id(Uuid::new_v5(&cause, format!("output-{i}").as_bytes()))
                    .with_correlation_id(correlation_id)
                    .with_causation_id(cause)
            })
            .collect();
        if !outputs.is_empty() {
            let pending = outputs
                .iter()
                .map(|o| PendingOutput::from_data(o, o.id.unwrap_or(cause)))
                .collect::<Result<Vec<_>>>()?;
            records.push(Record::OutputsPending {
                cause,
                outputs: pending,
            });
        }
        let mut scheduled = None;
        match next {
            Next::Wait(timeout) => {
                let timeout_id = Uuid::new_v5(&cause, b"timeout");
                let record = Record::TimeoutScheduled {
                    correlation_id,
                    timeout_id,
                    deadline: deadline(time, timeout),
                };
                scheduled = Some(record.clone());
                records.push(record);
            }
            Next::Done => records.push(Record::ProcessCompleted),
        }
        let encode = |records: Vec<Record>| -> Result<Vec<EventData>> {
            records
                .iter()
                .map(|r| {
                    Ok(r.encode()?
                        .with_correlation_id(correlation_id)
                        .with_causation_id(cause))
                })
                .collect()
        };
        let expected = replayed
            .revision
            .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let mut writes = vec![StreamWrite::new(stream, expected, encode(records)?)];
        if let Some(record) = scheduled {
            writes.push(StreamWrite::new(
                streams::timeouts(&self.name),
                ExpectedVersion::Any,
                encode(vec![record])?,
            ));
        }
        if !outputs.is_empty() {
            // Tells a restarted runner which instance has outputs to publish.
            writes.push(StreamWrite::new(
                streams::outbox(&self.name),
                ExpectedVersion::Any,
                encode(vec![Record::OutputsQueued {
                    correlation_id,
                    cause,
                }])?,
            ));
        }
        match self.store.append_multi(writes).await {
            Ok(_) => {}
            Err(eventfold_core::Error::WrongExpectedVersion { stream: s, .. }) if s == stream => {
                return Ok(false);
            }
            Err(error) => return Err(error.into()),
        }
        // Recorded: only now may the outputs leave. If this fails, they stay pending
        // and `publish_pending` publishes them.
        if !outputs.is_empty() {
            self.publish_and_mark(stream, correlation_id, cause, outputs)
                .await?;
        }
        Ok(true)
    }

    fn fresh(&self, version: &dyn Version) -> Replayed {
        Replayed {
            version: version.number(),
            state: version.instance(),
            inputs: Vec::new(),
            seen: HashSet::new(),
            waiting: None,
            completed: false,
            revision: None,
            pending: Vec::new(),
        }
    }

    /// Switches a replayed instance to `version`: a new state rebuilt, muted, from every
    /// input the instance saw.
    fn switch(&self, replayed: &mut Replayed, version: &dyn Version) -> Result<()> {
        let mut state = version.instance();
        for input in &replayed.inputs {
            match input {
                Input::Message(message) => {
                    let mut muted = Context::new(Uuid::nil(), message.recorded_at);
                    state.handle(self.upcaster.as_ref(), message, &mut muted)?;
                }
                Input::Timeout(deadline) => {
                    state.on_timeout(&mut Context::new(Uuid::nil(), *deadline))?;
                }
            }
        }
        replayed.state = state;
        replayed.version = version.number();
        Ok(())
    }

    /// Rebuilds the instance recorded in `stream`, output muted; `None` when the
    /// instance does not exist.
    async fn replay(&self, stream: &str) -> Result<Option<Replayed>> {
        let records = read_from(self.store.as_ref(), stream, Revision(0), u64::MAX).await?;
        let mut replayed: Option<Replayed> = None;
        for event in records {
            let Some(record) = decode_record(&event)? else {
                continue;
            };
            if let Record::ProcessStarted { version, .. } = &record {
                let version = self.version(*version)?;
                replayed = Some(self.fresh(version.as_ref()));
            }
            let Some(instance) = replayed.as_mut() else {
                return Err(Error::Record {
                    stream: stream.to_string(),
                    revision: event.revision,
                    reason: "the instance stream does not begin with ProcessStarted".into(),
                });
            };
            instance.revision = Some(event.revision);
            // Output of a replay is muted: the contexts are dropped.
            match record {
                Record::ProcessStarted { .. } => {}
                Record::MessageReceived { message } => {
                    let message = message.into_event();
                    let mut muted = Context::new(Uuid::nil(), message.recorded_at);
                    instance
                        .state
                        .handle(self.upcaster.as_ref(), &message, &mut muted)?;
                    instance.seen.insert(message.id);
                    instance.inputs.push(Input::Message(message));
                    instance.waiting = None;
                }
                Record::TimeoutScheduled {
                    timeout_id,
                    deadline,
                    ..
                } => instance.waiting = Some((timeout_id, deadline)),
                Record::TimeoutFired { deadline, .. } => {
                    instance
                        .state
                        .on_timeout(&mut Context::new(Uuid::nil(), deadline))?;
                    instance.inputs.push(Input::Timeout(deadline));
                    instance.waiting = None;
                }
                Record::ProcessTakenOver { to, at, .. } => {
                    let version = self.version(to)?;
                    self.switch(instance, version.as_ref())?;
                    instance
                        .state
                        .on_takeover(&mut Context::new(Uuid::nil(), at))?;
                    instance.waiting = None;
                }
                Record::ProcessCompleted => {
                    instance.completed = true;
                    instance.waiting = None;
                }
                // Outputs are not published by a replay: they are kept to be
                // published by `publish_pending` until marked published.
                Record::OutputsPending { cause, outputs } => {
                    let outputs = outputs.into_iter().map(PendingOutput::into_data).collect();
                    instance.pending.push((cause, outputs));
                }
                Record::OutputsPublished { cause, .. } => {
                    instance.pending.retain(|(c, _)| *c != cause);
                }
                // Only in the outbox stream.
                Record::OutputsQueued { .. } => {}
            }
        }
        Ok(replayed)
    }

    fn version(&self, number: u32) -> Result<Arc<dyn Version>> {
        self.versions
            .get(number)
            .cloned()
            .ok_or_else(|| Error::UnknownProcessVersion {
                name: self.name.clone(),
                version: number,
            })
    }

    fn lock_outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        // As for the timeouts: consistent between statements.
        self.outbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_timeouts(&self) -> std::sync::MutexGuard<'_, Timeouts> {
        // The map stays consistent between statements, so a poisoned lock is usable.
        self.timeouts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn decode_record(event: &RecordedEvent) -> Result<Option<Record>> {
    Record::decode(event).map_err(|e| Error::Record {
        stream: event.stream.clone(),
        revision: event.revision,
        reason: e.to_string(),
    })
}
