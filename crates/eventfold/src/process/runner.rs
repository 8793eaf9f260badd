//! The [`ProcessRunner`]: feeds the events of the log to the instances of one
//! process manager, and records each step with its next move and its outputs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use eventfold_core::{
    AllFilter, EventData, EventStore, ExpectedVersion, Position, ReadAll, RecordedEvent, Revision,
    StreamWrite,
};
use eventfold_subscription::Subscription;
use uuid::Uuid;

use super::manager::{Context, Next, deadline};
use super::outbox::{Outbox, Publisher};
use super::records::{PendingOutput, Record, SeenMessage};
use super::replay::Replayed;
use super::timeouts::Timeouts;
use super::versions::ProcessVersions;
use crate::error::{Error, Result};
use crate::event::{DomainEvent, Upcaster, identity};
use crate::repository::read_from;
use crate::{PAGE_EVENTS, streams};

/// The event type of an instance's first record.
const PROCESS_STARTED: &str = "ProcessStarted";

/// Times a step is retried when the instance stream changed under it.
pub(super) const ATTEMPTS_MAX: u32 = 4;

/// Runs one process manager (all its versions) over a store: feeds it the events of
/// the log, records what each instance saw, publishes its output, fires its timeouts.
///
/// Instances are keyed by the correlation id of the messages (a message without one
/// is its own conversation: its id is used).
pub struct ProcessRunner {
    pub(super) name: String,
    pub(super) store: Arc<dyn EventStore>,
    pub(super) versions: ProcessVersions,
    pub(super) publisher: Arc<dyn Publisher>,
    pub(super) upcaster: Arc<dyn Upcaster>,
    pub(super) timeouts: Mutex<Timeouts>,
    pub(super) outbox: Mutex<Outbox>,
}

impl std::fmt::Debug for ProcessRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRunner")
            .field("name", &self.name)
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
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
            timeouts: Mutex::new(Timeouts::new()),
            outbox: Mutex::new(Outbox::new()),
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

    /// Hands the instance of `correlation_id` over to version `to`: the new version's
    /// state is rebuilt from every message the instance saw, then it continues with
    /// [`ProcessManager::on_takeover`](super::ProcessManager::on_takeover). Taking over to a version the instance already
    /// runs (or an older one) does nothing.
    pub async fn take_over(&self, correlation_id: Uuid, to: u32) -> Result<()> {
        self.take_over_instance(correlation_id, to)
            .await
            .map(|_| ())
    }

    /// Hands every running instance of an older version over to version `to`, one
    /// after the other as [`ProcessRunner::take_over`] does; returns how many were
    /// taken over (completed instances and those already at `to` or later are left).
    /// The instances are found through the `$ce-_process` category stream.
    pub async fn take_over_all(&self, to: u32) -> Result<usize> {
        let prefix = format!("{}process-{}-", streams::PREFIX, self.name);
        let category = format!("$ce-{}process", streams::PREFIX);
        let mut instances = Vec::new();
        let mut from = Revision(0);
        loop {
            let page = read_from(self.store.as_ref(), &category, from, PAGE_EVENTS).await?;
            for event in &page {
                if event.event_type == PROCESS_STARTED
                    && let Some(id) = event.stream.strip_prefix(&prefix)
                    && let Ok(id) = Uuid::parse_str(id)
                {
                    instances.push(id);
                }
            }
            match page.last() {
                Some(last) if page.len() as u64 == PAGE_EVENTS => from = last.revision.next(),
                _ => break,
            }
        }
        let mut taken = 0;
        for correlation_id in instances {
            if self.take_over_instance(correlation_id, to).await? {
                taken += 1;
            }
        }
        Ok(taken)
    }

    /// [`ProcessRunner::take_over`], saying whether the instance was taken over.
    async fn take_over_instance(&self, correlation_id: Uuid, to: u32) -> Result<bool> {
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
                return Ok(false);
            }
            let at = Utc::now();
            let from = replayed.version;
            let mut ctx = Context::new(correlation_id, at);
            // The old version winds down, then hands its state over (or the new one
            // replays the messages); both steps' outputs go out with the takeover.
            replayed.state.on_takeover_requested(&mut ctx)?;
            let state = replayed.state.export_state();
            self.hand_over(&mut replayed, version.as_ref(), state.as_ref())?;
            let next = replayed.state.on_takeover(&mut ctx)?;
            let records = vec![Record::ProcessTakenOver {
                from,
                to,
                at,
                state,
            }];
            let cause = Uuid::new_v5(&correlation_id, format!("takeover-{to}").as_bytes());
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

    /// The version number the instance of `correlation_id` runs, `None` when there is
    /// no instance.
    pub async fn instance_version(&self, correlation_id: Uuid) -> Result<Option<u32>> {
        let stream = streams::process(&self.name, correlation_id);
        Ok(self.replay(&stream).await?.map(|r| r.version))
    }

    /// Records the step, its next move and its outputs (pending), then publishes the
    /// outputs and marks them published. Returns false when the instance stream
    /// changed meanwhile (the step is to be redone): nothing was recorded or published.
    pub(super) async fn commit(
        &self,
        stream: &str,
        replayed: &mut Replayed,
        mut records: Vec<Record>,
        next: Next,
        ctx: Context<EventData>,
        cause: Uuid,
    ) -> Result<bool> {
        let correlation_id = ctx.correlation_id();
        let time = ctx.time();
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
}
