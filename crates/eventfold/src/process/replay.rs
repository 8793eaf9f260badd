//! Rebuilding an instance from its stream, output muted, and switching a rebuilt
//! instance to another version (a takeover).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventfold_core::{EventData, RecordedEvent, Revision};
use uuid::Uuid;

use super::manager::Context;
use super::records::{PendingOutput, Record, decode_record};
use super::runner::ProcessRunner;
use super::versions::{Instance, Version};
use crate::error::{Error, Result};
use crate::repository::read_from;

/// An input an instance's state is built from, kept for a takeover's replay.
pub(super) enum Input {
    Message(RecordedEvent),
    Timeout(DateTime<Utc>),
}

/// An instance rebuilt from its stream.
pub(super) struct Replayed {
    pub(super) version: u32,
    pub(super) state: Box<dyn Instance>,
    pub(super) inputs: Vec<Input>,
    pub(super) seen: HashSet<Uuid>,
    /// The pending timeout: id and deadline.
    pub(super) waiting: Option<(Uuid, DateTime<Utc>)>,
    pub(super) completed: bool,
    pub(super) revision: Option<Revision>,
    /// Outputs recorded but not yet marked published, by step cause, oldest first.
    pub(super) pending: Vec<(Uuid, Vec<EventData>)>,
}

impl ProcessRunner {
    pub(super) fn fresh(&self, version: &dyn Version) -> Replayed {
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

    /// Hands a replayed instance to `version`: its state migrated from what the old
    /// version `exported` when the new version can, else rebuilt by [`Self::switch`].
    pub(super) fn hand_over(
        &self,
        replayed: &mut Replayed,
        version: &dyn Version,
        exported: Option<&serde_json::Value>,
    ) -> Result<()> {
        match exported.and_then(|state| version.migrate(replayed.version, state)) {
            Some(state) => {
                replayed.state = state;
                replayed.version = version.number();
                Ok(())
            }
            None => self.switch(replayed, version),
        }
    }

    /// Switches a replayed instance to `version`: a new state rebuilt, muted, from every
    /// input the instance saw.
    pub(super) fn switch(&self, replayed: &mut Replayed, version: &dyn Version) -> Result<()> {
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
    pub(super) async fn replay(&self, stream: &str) -> Result<Option<Replayed>> {
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
                Record::ProcessTakenOver { to, at, state, .. } => {
                    let version = self.version(to)?;
                    let mut muted = Context::new(Uuid::nil(), at);
                    instance.state.on_takeover_requested(&mut muted)?;
                    self.hand_over(instance, version.as_ref(), state.as_ref())?;
                    instance.state.on_takeover(&mut muted)?;
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

    pub(super) fn version(&self, number: u32) -> Result<Arc<dyn Version>> {
        self.versions
            .get(number)
            .cloned()
            .ok_or_else(|| Error::UnknownProcessVersion {
                name: self.name.clone(),
                version: number,
            })
    }
}
