//! Persistent subscriptions (consumer groups): competing consumers share one
//! subscription to `$all`, each event goes to one of them, and the group keeps its
//! checkpoint, settings and parked events in the store itself.
//!
//! Written once over any [`EventStore`]. Events of system streams (names starting
//! with `$`) are not delivered. An event whose data or metadata is not JSON as appends
//! require ([`RecordedEvent::check_json`]: one stored before that check, or damaged)
//! is parked with the reason instead of delivered, and the group moves on. Delivery
//! is at least once: an event is
//! delivered again when it is nacked, when its ack is late, or after a restart if its
//! ack came after the last stored checkpoint. Ids and positions let consumers drop
//! duplicates.
//!
//! Streams: `$persistent-<group>` holds the group's settings, `$checkpoint-<group>`
//! its checkpoints (every event at or before one was acked or parked), and
//! `$parked-<group>` the events that failed `retries_max` times (or were parked by a
//! consumer), with the reason: they can be read like any stream and replayed. A
//! group's settings can be replaced ([`update_group`]); a deleted group
//! ([`delete_group`]) closes all three, so one created again under its name starts
//! afresh.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::{Deref, RangeInclusive};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use eventfold_core::{
    AllFilter, Error, EventData, EventStore, ExpectedVersion, Position, ReadStream, RecordedEvent,
    Result, Revision, append_system,
};

use crate::filter::{CompiledFilter, EventFilter};
use crate::subscription::Subscription;

/// The settings of a consumer group, stored in `$persistent-<group>`. In JSON every
/// field is optional (the defaults below).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupSettings {
    /// Where the group starts the first time: after this position (`None`: the start).
    #[serde(default)]
    pub start_after: Option<u64>,
    /// Only streams starting with this.
    #[serde(default)]
    pub stream_prefix: Option<String>,
    /// Only streams of this category.
    #[serde(default)]
    pub category: Option<String>,
    /// Only this one stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Only these event types (all when empty).
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Only the events this filter lets through (by stream name or type, by prefixes
    /// or a regular expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventFilter>,
    /// Deliveries of one event before it is parked.
    pub retries_max: u32,
    /// How long a consumer has to ack a delivery before it is delivered again, in ms.
    pub ack_timeout_ms: u64,
    /// Most deliveries not yet acked, across the group's consumers; a consumer asking
    /// for more waits (a slow group cannot grow memory).
    pub in_flight_max: usize,
    /// Acked events between two stored checkpoints.
    pub checkpoint_every_events: u64,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            start_after: None,
            stream_prefix: None,
            category: None,
            stream: None,
            event_types: Vec::new(),
            filter: None,
            retries_max: 5,
            ack_timeout_ms: 30_000,
            in_flight_max: 1_000,
            checkpoint_every_events: 100,
        }
    }
}

impl GroupSettings {
    /// The values `in_flight_max` may take: 0 would never deliver, and each delivery
    /// in flight holds its event in memory.
    pub const IN_FLIGHT_MAX_RANGE: RangeInclusive<usize> = 1..=100_000;

    /// The values `ack_timeout_ms` may take (100 ms to 24 hours): shorter would
    /// deliver an event again before any consumer could answer it.
    pub const ACK_TIMEOUT_MS_RANGE: RangeInclusive<u64> = 100..=86_400_000;

    /// Checks every setting against its allowed range; the error names the setting
    /// and the range.
    ///
    /// ```
    /// use eventfold_subscription::GroupSettings;
    /// assert!(GroupSettings::default().validate().is_ok());
    /// let never_delivers = GroupSettings { in_flight_max: 0, ..GroupSettings::default() };
    /// let err = never_delivers.validate().unwrap_err();
    /// assert!(err.to_string().contains("in_flight_max"), "{err}");
    /// ```
    pub fn validate(&self) -> Result<()> {
        fn within<T: PartialOrd + std::fmt::Display>(
            setting: &str,
            value: T,
            range: RangeInclusive<T>,
        ) -> Result<()> {
            if range.contains(&value) {
                return Ok(());
            }
            Err(Error::InvalidSetting {
                setting: setting.to_string(),
                reason: format!(
                    "{value} is outside the allowed range {} to {}",
                    range.start(),
                    range.end()
                ),
            })
        }
        within(
            "in_flight_max",
            self.in_flight_max,
            Self::IN_FLIGHT_MAX_RANGE,
        )?;
        within(
            "ack_timeout_ms",
            self.ack_timeout_ms,
            Self::ACK_TIMEOUT_MS_RANGE,
        )?;
        self.filter.as_ref().map(EventFilter::compile).transpose()?;
        Ok(())
    }

    fn filter(&self) -> AllFilter {
        AllFilter {
            // One stream is read as the streams starting with its name; the others
            // are passed over (`PersistentGroup::next`).
            stream_prefix: self.stream.clone().or_else(|| self.stream_prefix.clone()),
            category: self.category.clone(),
            event_types: self.event_types.clone(),
        }
    }
}

/// One event handed to a consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The event.
    pub event: RecordedEvent,
    /// How many times it was delivered, this one included (from 1).
    pub attempt: u32,
}

/// What a consumer says of an event it could not handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nack {
    /// Deliver it again later (parked once `retries_max` is reached).
    Retry,
    /// Park it now.
    Park,
    /// Drop it: count it as handled.
    Skip,
}

/// An event parked by a group, as stored in `$parked-<group>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    /// Its position in the global log.
    pub position: u64,
    /// Its stream and revision.
    pub stream: String,
    /// Its revision in that stream.
    pub revision: u64,
    /// Deliveries before it was parked.
    pub attempts: u32,
    /// Why: the last consumer's reason.
    pub reason: String,
}

/// What the group looks like now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStatus {
    /// The group.
    pub group: String,
    /// Every event at or before this position was acked or parked.
    pub checkpoint: Option<u64>,
    /// Deliveries not yet acked.
    pub in_flight: usize,
    /// Events waiting to be delivered again.
    pub retrying: usize,
    /// Events parked since the group started in this process.
    pub parked: u64,
}

#[derive(Debug)]
struct Outstanding {
    event: RecordedEvent,
    attempts: u32,
    /// `None` while waiting in the retry queue.
    deadline: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    /// Delivered or waiting to be, by position.
    outstanding: BTreeMap<u64, Outstanding>,
    retry: VecDeque<u64>,
    /// The last position read from the log.
    read_upto: Option<u64>,
    /// The checkpoint stored last, and the revision of `$checkpoint-<group>` it is at.
    stored_checkpoint: Option<u64>,
    checkpoint_revision: Option<Revision>,
    acked_since_store: u64,
    parked: u64,
    /// Parked positions being replayed: delivered again before new events.
    replaying: BTreeSet<u64>,
}

impl State {
    /// Every event at or before it is acked or parked. Parked events being replayed
    /// lie behind it and do not hold it back.
    fn checkpoint(&self) -> Option<u64> {
        match self
            .outstanding
            .keys()
            .find(|position| !self.replaying.contains(position))
        {
            Some(&first) => first.checked_sub(1),
            None => self.read_upto,
        }
    }
}

/// Longest group name, in bytes.
const GROUP_NAME_BYTES_MAX: usize = 200;
/// The event type of a group's settings in `$persistent-<group>`.
const SETTINGS: &str = "$group-settings";
/// The event type that closes a deleted group's `$persistent-<group>`.
const DELETED: &str = "$group-deleted";
/// The event type after which `$parked-<group>` starts again (the group was deleted).
const PARKED_CLEARED: &str = "$parked-cleared";
/// Streams listed at a time when the groups are listed.
const LIST_PAGE: usize = 500;

/// A consumer group over `$all`: share it (it is `Sync`) between competing consumers.
///
/// ```
/// use std::sync::Arc;
/// use eventfold_core::{EventData, EventStore, ExpectedVersion, InMemoryStore};
/// use eventfold_subscription::{GroupSettings, Nack, PersistentGroup};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let store = Arc::new(InMemoryStore::new());
/// store.append("order-1", ExpectedVersion::Any, vec![EventData::json("OrderPlaced", &1).unwrap()]).await.unwrap();
/// let group = PersistentGroup::create(store.clone(), "emails", GroupSettings::default()).await.unwrap();
/// let first = group.next().await.unwrap();
/// group.nack(first.event.position.get(), Nack::Retry, "smtp down").await.unwrap();
/// let again = group.next().await.unwrap();
/// assert_eq!(again.attempt, 2);
/// group.ack(again.event.position.get()).await.unwrap();
/// assert_eq!(group.status().checkpoint, Some(0));
/// # });
/// ```
pub struct PersistentGroup<S> {
    store: S,
    name: String,
    settings: GroupSettings,
    filter: Option<CompiledFilter>,
    source: tokio::sync::Mutex<Subscription<S>>,
    state: Mutex<State>,
    /// Wakes consumers waiting for a retry or for room in flight.
    changed: tokio::sync::Notify,
}

impl<S, T> PersistentGroup<S>
where
    S: Deref<Target = T> + Clone + Send + Sync,
    T: EventStore + ?Sized,
{
    /// Creates the group with `settings` (checked with [`GroupSettings::validate`]), or
    /// opens it with the settings it was created with if it exists; it resumes after
    /// its stored checkpoint.
    pub async fn create(store: S, name: &str, settings: GroupSettings) -> Result<Self> {
        validate_group_name(name)?;
        settings.validate()?;
        let settings_stream = format!("$persistent-{name}");
        let stored = last_event(&*store, &settings_stream).await?;
        let settings = match stored {
            Some(event) if event.event_type != DELETED => event.data_as::<GroupSettings>()?,
            stored => {
                let expected = stored.map_or(ExpectedVersion::NoStream, |deleted| {
                    ExpectedVersion::Exact(deleted.revision)
                });
                let event = EventData::json(SETTINGS, &settings)?;
                append_system(&*store, &settings_stream, expected, vec![event]).await?;
                settings
            }
        };
        Self::start(store, name, settings).await
    }

    /// Opens an existing group with its stored settings (`StreamNotFound` when there
    /// is none, or it was deleted).
    pub async fn open(store: S, name: &str) -> Result<Self> {
        let settings =
            group_settings(&*store, name)
                .await?
                .ok_or_else(|| Error::StreamNotFound {
                    stream: format!("$persistent-{name}"),
                })?;
        Self::start(store, name, settings).await
    }

    async fn start(store: S, name: &str, settings: GroupSettings) -> Result<Self> {
        let checkpoint_stream = format!("$checkpoint-{name}");
        let last = last_event(&*store, &checkpoint_stream).await?;
        let (stored_checkpoint, checkpoint_revision) = match &last {
            Some(event) => (
                event.data_as::<CheckpointData>()?.position,
                Some(event.revision),
            ),
            None => (settings.start_after, None),
        };
        let source = Subscription::to_all(
            store.clone(),
            stored_checkpoint.map(Position),
            settings.filter(),
        );
        let filter = settings
            .filter
            .as_ref()
            .map(EventFilter::compile)
            .transpose()?;
        Ok(PersistentGroup {
            store,
            name: name.to_string(),
            filter,
            settings,
            source: tokio::sync::Mutex::new(source),
            state: Mutex::new(State {
                read_upto: stored_checkpoint,
                stored_checkpoint,
                checkpoint_revision,
                ..State::default()
            }),
            changed: tokio::sync::Notify::new(),
        })
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The group's settings.
    pub fn settings(&self) -> &GroupSettings {
        &self.settings
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next event for this consumer: one to retry first, else the next one of the
    /// log, waiting for it when caught up. An event whose ack is late is delivered
    /// again here. An event that cannot be handed on as JSON is parked instead (see
    /// the module documentation).
    pub async fn next(&self) -> Result<Delivery> {
        loop {
            let delivery = self.next_candidate().await?;
            match delivery.event.check_json() {
                Ok(()) => return Ok(delivery),
                Err(error) => {
                    let reason = format!("not delivered: {error}");
                    self.nack(delivery.event.position.get(), Nack::Park, &reason)
                        .await?;
                }
            }
        }
    }

    async fn next_candidate(&self) -> Result<Delivery> {
        loop {
            // Registered before the state is looked at, so no wake-up is missed.
            let wake = self.changed.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            let (deadline, full) = {
                let mut state = self.state();
                let now = Instant::now();
                let late: Vec<u64> = state
                    .outstanding
                    .iter()
                    .filter(|(_, o)| o.deadline.is_some_and(|d| d <= now))
                    .map(|(p, _)| *p)
                    .collect();
                for position in late {
                    if let Some(o) = state.outstanding.get_mut(&position) {
                        o.deadline = None;
                    }
                    state.retry.push_back(position);
                }
                if let Some(delivery) = self.take_retry(&mut state, now) {
                    return Ok(delivery);
                }
                let deadline = state.outstanding.values().filter_map(|o| o.deadline).min();
                (
                    deadline,
                    state.outstanding.len() >= self.settings.in_flight_max,
                )
            };
            let sleep = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(sleep);
            if full {
                tokio::select! {
                    () = &mut wake => {}
                    () = &mut sleep => {}
                }
                continue;
            }
            let event = {
                let mut source = tokio::select! {
                    source = self.source.lock() => source,
                    () = &mut wake => continue,
                    () = &mut sleep => continue,
                };
                // The subscription's `next` is cancel-safe: a wake-up loses no event.
                tokio::select! {
                    event = source.next() => event?,
                    () = &mut wake => continue,
                    () = &mut sleep => continue,
                }
            };
            let mut state = self.state();
            let position = event.position.get();
            state.read_upto = Some(position);
            if event.stream.starts_with('$')
                || self
                    .settings
                    .stream
                    .as_ref()
                    .is_some_and(|stream| *stream != event.stream)
                || self
                    .filter
                    .as_ref()
                    .is_some_and(|f| !f.matches(&event.stream, &event.event_type))
            {
                // System events (registries, checkpoints, parked lists) are not for
                // consumers, nor other streams than a one-stream group's, nor what
                // the group's filter leaves out.
                continue;
            }
            state.outstanding.insert(
                position,
                Outstanding {
                    event: event.clone(),
                    attempts: 1,
                    deadline: Some(Instant::now() + self.ack_timeout()),
                },
            );
            return Ok(Delivery { event, attempt: 1 });
        }
    }

    fn ack_timeout(&self) -> Duration {
        // Settings stored before they were checked may hold any timeout; clamped, a
        // deadline always fits in an `Instant`.
        let range = GroupSettings::ACK_TIMEOUT_MS_RANGE;
        Duration::from_millis(
            self.settings
                .ack_timeout_ms
                .clamp(*range.start(), *range.end()),
        )
    }

    fn take_retry(&self, state: &mut State, now: Instant) -> Option<Delivery> {
        while let Some(position) = state.retry.pop_front() {
            if let Some(outstanding) = state.outstanding.get_mut(&position) {
                outstanding.attempts += 1;
                outstanding.deadline = Some(now + self.ack_timeout());
                return Some(Delivery {
                    event: outstanding.event.clone(),
                    attempt: outstanding.attempts,
                });
            }
        }
        None
    }

    /// The event at `position` was handled. Stores a checkpoint every
    /// `checkpoint_every_events` acks.
    pub async fn ack(&self, position: u64) -> Result<()> {
        {
            let mut state = self.state();
            if state.outstanding.remove(&position).is_none() {
                return Err(unknown_delivery(&self.name, position));
            }
            state.replaying.remove(&position);
            state.acked_since_store += 1;
        }
        self.changed.notify_waiters();
        if self.state().acked_since_store >= self.settings.checkpoint_every_events {
            self.store_checkpoint().await?;
        }
        Ok(())
    }

    /// The event at `position` could not be handled.
    pub async fn nack(&self, position: u64, action: Nack, reason: &str) -> Result<()> {
        let park = {
            let mut state = self.state();
            let Some(outstanding) = state.outstanding.get_mut(&position) else {
                return Err(unknown_delivery(&self.name, position));
            };
            match action {
                Nack::Skip => {
                    state.outstanding.remove(&position);
                    None
                }
                Nack::Retry if outstanding.attempts < self.settings.retries_max => {
                    outstanding.deadline = None;
                    state.retry.push_back(position);
                    None
                }
                Nack::Retry | Nack::Park => state.outstanding.remove(&position),
            }
        };
        if let Some(outstanding) = park {
            let parked = Parked {
                position,
                stream: outstanding.event.stream.clone(),
                revision: outstanding.event.revision.get(),
                attempts: outstanding.attempts,
                reason: reason.to_string(),
            };
            let write = append_system(
                &*self.store,
                &format!("$parked-{}", self.name),
                ExpectedVersion::Any,
                vec![EventData::json("$parked", &parked)?],
            )
            .await;
            if let Err(error) = write {
                // Not parked after all: it stays to be delivered again.
                let mut state = self.state();
                state.outstanding.insert(position, outstanding);
                state.retry.push_back(position);
                return Err(error);
            }
            self.state().parked += 1;
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Stores the checkpoint now (the group does it every `checkpoint_every_events`
    /// acks; call this before a planned stop).
    pub async fn store_checkpoint(&self) -> Result<()> {
        let (checkpoint, expected) = {
            let state = self.state();
            let checkpoint = state.checkpoint();
            if checkpoint == state.stored_checkpoint || checkpoint.is_none() {
                return Ok(());
            }
            (
                checkpoint,
                state
                    .checkpoint_revision
                    .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
            )
        };
        let event = EventData::json(
            "$checkpoint",
            &CheckpointData {
                position: checkpoint,
            },
        )?;
        // The expected version makes two processes serving one group fail loudly
        // instead of overwriting each other's progress.
        let written = append_system(
            &*self.store,
            &format!("$checkpoint-{}", self.name),
            expected,
            vec![event],
        )
        .await?;
        let mut state = self.state();
        state.stored_checkpoint = checkpoint;
        state.checkpoint_revision = Some(written.last_revision);
        state.acked_since_store = 0;
        Ok(())
    }

    /// The events parked so far (since the group was created under its name), oldest
    /// first.
    pub async fn parked(&self) -> Result<Vec<Parked>> {
        let mut events = match self
            .store
            .read_stream(&format!("$parked-{}", self.name), ReadStream::forward())
            .await
        {
            Ok(events) => events,
            Err(Error::StreamNotFound { .. }) => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        if let Some(cleared) = events.iter().rposition(|e| e.event_type == PARKED_CLEARED) {
            events.drain(..=cleared);
        }
        events.iter().map(|e| e.data_as::<Parked>()).collect()
    }

    /// Delivers the parked events at `positions` again, before new events, with their
    /// attempts counted from zero. Returns how many were queued.
    pub async fn replay_parked(&self, positions: &[u64]) -> Result<usize> {
        let parked = self.parked().await?;
        let mut queued = 0;
        for entry in parked.iter().filter(|p| positions.contains(&p.position)) {
            if self.state().outstanding.contains_key(&entry.position) {
                continue;
            }
            let events = self
                .store
                .read_stream(
                    &entry.stream,
                    ReadStream::forward()
                        .from(Revision(entry.revision))
                        .limit(1),
                )
                .await?;
            let Some(event) = events.into_iter().next() else {
                continue;
            };
            let mut state = self.state();
            state.outstanding.insert(
                entry.position,
                Outstanding {
                    event,
                    attempts: 0,
                    deadline: None,
                },
            );
            state.retry.push_back(entry.position);
            state.replaying.insert(entry.position);
            queued += 1;
        }
        self.changed.notify_waiters();
        Ok(queued)
    }

    /// The group's progress.
    pub fn status(&self) -> GroupStatus {
        let state = self.state();
        GroupStatus {
            group: self.name.clone(),
            checkpoint: state.checkpoint(),
            in_flight: state.outstanding.len().saturating_sub(state.retry.len()),
            retrying: state.retry.len(),
            parked: state.parked,
        }
    }
}

/// The settings of the group `name`, if it exists (and was not deleted).
pub async fn group_settings<T: EventStore + ?Sized>(
    store: &T,
    name: &str,
) -> Result<Option<GroupSettings>> {
    validate_group_name(name)?;
    match last_event(store, &format!("$persistent-{name}")).await? {
        Some(event) if event.event_type != DELETED => Ok(Some(event.data_as()?)),
        _ => Ok(None),
    }
}

/// Replaces the settings of the existing group `name` (checked with
/// [`GroupSettings::validate`]); the group keeps its checkpoint and parked
/// events. Instances opened before serve the old settings: reopen them.
pub async fn update_group<T: EventStore + ?Sized>(
    store: &T,
    name: &str,
    settings: GroupSettings,
) -> Result<()> {
    settings.validate()?;
    let settings_stream = format!("$persistent-{name}");
    let current = live_settings(store, &settings_stream).await?;
    let event = EventData::json(SETTINGS, &settings)?;
    append_system(
        store,
        &settings_stream,
        ExpectedVersion::Exact(current.revision),
        vec![event],
    )
    .await?;
    Ok(())
}

/// Deletes the group `name`: its settings, checkpoint and parked list are closed,
/// so that a group created later under the name starts afresh. Instances opened
/// before must be dropped: their next checkpoint is refused.
pub async fn delete_group<T: EventStore + ?Sized>(store: &T, name: &str) -> Result<()> {
    let settings_stream = format!("$persistent-{name}");
    let current = live_settings(store, &settings_stream).await?;
    let checkpoint = EventData::json("$checkpoint", &CheckpointData { position: None })?;
    append_system(
        store,
        &format!("$checkpoint-{name}"),
        ExpectedVersion::Any,
        vec![checkpoint],
    )
    .await?;
    let cleared = EventData::from_json_bytes(PARKED_CLEARED, "{}")?;
    append_system(
        store,
        &format!("$parked-{name}"),
        ExpectedVersion::Any,
        vec![cleared],
    )
    .await?;
    let deleted = EventData::from_json_bytes(DELETED, "{}")?;
    append_system(
        store,
        &settings_stream,
        ExpectedVersion::Exact(current.revision),
        vec![deleted],
    )
    .await?;
    Ok(())
}

/// The last settings event of a group that exists (and was not deleted), or
/// `StreamNotFound`.
async fn live_settings<T: EventStore + ?Sized>(
    store: &T,
    settings_stream: &str,
) -> Result<RecordedEvent> {
    match last_event(store, settings_stream).await? {
        Some(event) if event.event_type != DELETED => Ok(event),
        _ => Err(Error::StreamNotFound {
            stream: settings_stream.to_string(),
        }),
    }
}

/// The names of the groups that exist, in order.
pub async fn list_groups<T: EventStore + ?Sized>(store: &T) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_streams("$persistent-", after.as_deref(), LIST_PAGE)
            .await?;
        for summary in &page {
            let name = &summary.stream["$persistent-".len()..];
            if group_settings(store, name).await.ok().flatten().is_some() {
                names.push(name.to_string());
            }
        }
        if page.len() < LIST_PAGE {
            return Ok(names);
        }
        after = page.last().map(|s| s.stream.clone());
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointData {
    position: Option<u64>,
}

fn unknown_delivery(group: &str, position: u64) -> Error {
    Error::InvalidEvent {
        reason: format!(
            "group '{group}' has no delivery at position {position} waiting for an answer \
             (already acked, or never delivered)"
        ),
    }
}

fn validate_group_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > GROUP_NAME_BYTES_MAX
        || name.chars().any(|c| c.is_control() || c == '/')
    {
        return Err(Error::InvalidStreamName {
            name: name.chars().take(80).collect(),
            reason: "is not a usable group name (1 to 200 bytes, no control characters or '/')",
        });
    }
    Ok(())
}

async fn last_event<T: EventStore + ?Sized>(
    store: &T,
    stream: &str,
) -> Result<Option<RecordedEvent>> {
    match store
        .read_stream(stream, ReadStream::backward().limit(1))
        .await
    {
        Ok(events) => Ok(events.into_iter().next()),
        Err(Error::StreamNotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}
