//! What a process manager is to write: the [`ProcessManager`] trait, what it answers
//! after each step ([`Next`]), and the [`Context`] a step publishes through.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::event::DomainEvent;

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
    /// migrated ([`ProcessManager::migrate_state`]) or rebuilt from every message the
    /// instance saw.
    fn on_takeover(&mut self, ctx: &mut Context<Self::Output>) -> Next;

    /// A newer version takes this instance over: the last step of this version, live,
    /// just before the newer one's [`ProcessManager::on_takeover`] (their outputs are
    /// recorded and published together). Publish what winds this version's work down:
    /// release what it reserved, cancel a request the newer version makes its own way.
    /// By default it publishes nothing.
    fn on_takeover_requested(&mut self, ctx: &mut Context<Self::Output>) {
        let _ = ctx;
    }

    /// This version's state as JSON, for a newer version's
    /// [`ProcessManager::migrate_state`]; recorded with the takeover. By default `None`:
    /// the newer version rebuilds its state from the instance's messages.
    fn export_state(&self) -> Option<serde_json::Value> {
        None
    }

    /// This version's state built from the state version `from` exported (after its
    /// [`ProcessManager::on_takeover_requested`]), instead of replaying the instance's
    /// messages through this version: for a state whose shape changed, or messages this
    /// version no longer reads. `None` (the default) replays. It must be a pure
    /// function: a replay of the instance runs it again on the recorded state.
    fn migrate_state(from: u32, state: &serde_json::Value) -> Option<Self> {
        let _ = (from, state);
        None
    }
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

/// The deadline of a wait of `timeout` from `time` (saturating).
pub(crate) fn deadline(time: DateTime<Utc>, timeout: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(timeout)
        .ok()
        .and_then(|delta| time.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
