//! Command envelopes, what handling a command answers, and the recorded outcomes.

use eventfold_core::{
    CAUSATION_ID_KEY, CORRELATION_ID_KEY, EventData, Position, RecordedEvent, Revision,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{DomainEvent, EventType};

/// The metadata key under which the events a command writes, and its outcome record,
/// keep the command's own causation id (the message that caused the command, see
/// [`Envelope::with_causation_id`]). Their `causation_id` is the command id: the command
/// caused the events; this key keeps the link one step further back.
///
/// ```
/// assert_eq!(eventfold::COMMAND_CAUSATION_ID_KEY, "command_causation_id");
/// ```
pub const COMMAND_CAUSATION_ID_KEY: &str = "command_causation_id";

/// A command with the ids that make it traceable and idempotent.
///
/// - the **command id** identifies the command: sending it again (after a timeout, a
///   crash, a retry) yields its events once;
/// - the **correlation id** names the conversation; every event the command writes
///   carries it (by default it is the command id itself);
/// - the **causation id** names the message that caused the command, if any; the
///   events written carry the command id as their causation id, and this one under
///   [`COMMAND_CAUSATION_ID_KEY`] (so does the command's outcome record).
///
/// ```
/// use eventfold::Envelope;
/// use uuid::Uuid;
///
/// let order = Uuid::now_v7();
/// let command = Envelope::new("PlaceOrder").with_correlation_id(order).with_metadata("user", "ada");
/// assert_eq!(command.correlation_id(), order);
/// assert_ne!(command.command_id(), order);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<C> {
    command: C,
    command_id: Uuid,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    metadata: serde_json::Map<String, serde_json::Value>,
}

impl<C> Envelope<C> {
    /// Wraps `command` with a fresh command id (UUID v7).
    pub fn new(command: C) -> Self {
        Envelope {
            command,
            command_id: Uuid::now_v7(),
            correlation_id: None,
            causation_id: None,
            metadata: serde_json::Map::new(),
        }
    }

    /// Sets the command id; a client that may re-send a command chooses it up front.
    pub fn with_command_id(mut self, id: Uuid) -> Self {
        self.command_id = id;
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Marks the command as caused by `event`: it joins the event's conversation
    /// (correlation id, or the event's id when it has none) and names it as its cause.
    pub fn caused_by(self, event: &RecordedEvent) -> Self {
        let correlation = event.correlation_id().unwrap_or(event.id);
        self.with_correlation_id(correlation)
            .with_causation_id(event.id)
    }

    /// Adds a metadata entry copied onto every event the command writes.
    pub fn with_metadata(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The command.
    pub fn command(&self) -> &C {
        &self.command
    }

    /// The command id.
    pub fn command_id(&self) -> Uuid {
        self.command_id
    }

    /// The correlation id: the one set, else the command id.
    pub fn correlation_id(&self) -> Uuid {
        self.correlation_id.unwrap_or(self.command_id)
    }

    /// The causation id, if set.
    pub fn causation_id(&self) -> Option<Uuid> {
        self.causation_id
    }

    /// The id of the `index`-th event the command writes: derived from the command id
    /// (UUID v5), so a re-sent command writes the same ids and the store recognises it.
    pub fn event_id(&self, index: usize) -> Uuid {
        Uuid::new_v5(&self.command_id, index.to_string().as_bytes())
    }

    /// Stamps a stored event with the `index`-th event id and the metadata every
    /// event of this command carries. `after`: the revision of the command's last
    /// record when it is decided again after earlier records (a failure, or records
    /// past the command window): its ids then differ from those of earlier decisions,
    /// so the store does not take them for re-sends of events written before.
    pub(crate) fn stamp(
        &self,
        event: EventData,
        index: usize,
        after: Option<Revision>,
    ) -> Result<EventData> {
        // What the event carries of its own (its `$personal` marking) is kept; the
        // command's keys are added to it.
        let mut metadata = match serde_json::from_slice(&event.metadata) {
            Ok(serde_json::Value::Object(own)) => own,
            _ => serde_json::Map::new(),
        };
        metadata.extend(self.metadata.clone());
        let ids = [
            (CORRELATION_ID_KEY, self.correlation_id()),
            (CAUSATION_ID_KEY, self.command_id),
        ];
        for (key, id) in ids {
            metadata.insert(key.into(), serde_json::Value::String(id.to_string()));
        }
        if let Some(cause) = self.causation_id {
            metadata.insert(
                COMMAND_CAUSATION_ID_KEY.into(),
                serde_json::Value::String(cause.to_string()),
            );
        }
        let id = match after {
            None => self.event_id(index),
            Some(after) => Uuid::new_v5(&self.command_id, format!("{index}@{after}").as_bytes()),
        };
        Ok(event
            .with_id(id)
            .with_metadata(&serde_json::Value::Object(metadata))?)
    }
}

/// The ids of a command that its outcome record carries, kept apart from the command
/// so that an outcome can be recorded after the command was moved or lost (a panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommandIds {
    pub(crate) command_id: Uuid,
    pub(crate) correlation_id: Uuid,
    pub(crate) causation_id: Option<Uuid>,
}

impl<C> From<&Envelope<C>> for CommandIds {
    fn from(command: &Envelope<C>) -> Self {
        CommandIds {
            command_id: command.command_id(),
            correlation_id: command.correlation_id(),
            causation_id: command.causation_id(),
        }
    }
}

impl CommandIds {
    /// The stored outcome record, written after the record at revision `after` of the
    /// command's log (`None`: the first). A final outcome (accepted, rejected) has an
    /// id derived from the command id, its kind and `after`, so a re-sent record is
    /// recognised by the store, one kind is never mistaken for a re-send of another,
    /// and a command decided again past its window writes a record of its own; a
    /// failure (which a retry may follow) gets a fresh id.
    pub(crate) fn outcome_record(
        &self,
        outcome: &CommandOutcome,
        after: Option<Revision>,
    ) -> Result<EventData> {
        let kind = match outcome {
            CommandOutcome::Accepted { written, .. } if written.is_empty() => {
                Some("outcome-unchanged")
            }
            CommandOutcome::Accepted { .. } => Some("outcome"),
            CommandOutcome::Rejected { .. } => Some("outcome-rejected"),
            CommandOutcome::Failed { .. } => None,
        };
        let id = match (kind, after) {
            (None, _) => Uuid::now_v7(),
            (Some(kind), None) => Uuid::new_v5(&self.command_id, kind.as_bytes()),
            (Some(kind), Some(after)) => {
                Uuid::new_v5(&self.command_id, format!("{kind}@{after}").as_bytes())
            }
        };
        let mut metadata = serde_json::Map::new();
        let ids = [
            (CORRELATION_ID_KEY, Some(self.correlation_id)),
            (CAUSATION_ID_KEY, Some(self.command_id)),
            (COMMAND_CAUSATION_ID_KEY, self.causation_id),
        ];
        for (key, id) in ids {
            if let Some(id) = id {
                metadata.insert(key.into(), serde_json::Value::String(id.to_string()));
            }
        }
        Ok(outcome
            .encode()?
            .with_id(id)
            .with_metadata(&serde_json::Value::Object(metadata))?)
    }
}

/// A command was accepted: its events are in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The command's id.
    pub command_id: Uuid,
    /// The revision of the aggregate's own stream after the command (`None`: the
    /// stream still has no event, the command decided nothing).
    pub revision: Option<Revision>,
    /// What was written, per stream (empty when the command decided no events).
    pub written: Vec<Written>,
    /// A global position by which all the command's events are in the log (the
    /// position of its outcome record, which a command deciding no event writes too).
    pub position: Option<Position>,
    /// True when the command log showed the command handled before: nothing was
    /// written this time, and the answer is the one recorded then. (A re-send the store
    /// itself recognises, by the event ids derived from the command id, also writes
    /// nothing but is answered like a first write.)
    pub duplicate: bool,
}

/// The events a command wrote to one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// The stream.
    pub stream: String,
    /// Revision of the first event written.
    pub first_revision: Revision,
    /// Revision of the last event written.
    pub last_revision: Revision,
}

/// Why a command was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<R> {
    /// The aggregate refused the command; nothing was written.
    #[error("command rejected: {reason}")]
    Rejected {
        /// The aggregate's reason.
        reason: R,
    },
    /// The command could not be handled (store failure, conflict retries exhausted,
    /// an undecodable event); nothing was written, and it may be sent again with the
    /// same command id.
    #[error(transparent)]
    Failed(#[from] Error),
}

impl<R> CommandError<R> {
    /// The rejection, if the aggregate refused the command.
    pub fn rejection(&self) -> Option<&R> {
        match self {
            CommandError::Rejected { reason } => Some(reason),
            CommandError::Failed(_) => None,
        }
    }
}

impl<R> From<eventfold_core::Error> for CommandError<R> {
    fn from(error: eventfold_core::Error) -> Self {
        CommandError::Failed(error.into())
    }
}

/// The recorded outcome of a command, kept in the store under its command id and
/// queryable with [`outcome`](crate::outcome).
///
/// ```
/// use eventfold::CommandOutcome;
/// let outcome = CommandOutcome::Rejected { reason: "insufficient funds".into() };
/// assert!(!outcome.is_accepted());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
#[non_exhaustive]
pub enum CommandOutcome {
    /// The command was accepted.
    #[serde(rename = "CommandAccepted")]
    Accepted {
        /// Revision of the aggregate's own stream after the command.
        revision: Option<Revision>,
        /// What was written, per stream.
        written: Vec<Written>,
        /// The position of the outcome record (filled in when read back).
        #[serde(default, skip_serializing)]
        position: Option<Position>,
    },
    /// The aggregate refused the command.
    #[serde(rename = "CommandRejected")]
    Rejected {
        /// The rejection, as text.
        reason: String,
    },
    /// Handling failed; the command may be sent again with the same id.
    #[serde(rename = "CommandFailed")]
    Failed {
        /// The error, as text.
        error: String,
    },
}

impl CommandOutcome {
    /// Whether the command was accepted.
    pub fn is_accepted(&self) -> bool {
        matches!(self, CommandOutcome::Accepted { .. })
    }

    /// Reads a recorded outcome.
    pub(crate) fn from_record(event: &RecordedEvent) -> Result<Self> {
        let outcome = Self::decode(event).map_err(|e| Error::Record {
            stream: event.stream.clone(),
            revision: event.revision,
            reason: e.to_string(),
        })?;
        match outcome {
            Some(CommandOutcome::Accepted {
                revision, written, ..
            }) => Ok(CommandOutcome::Accepted {
                revision,
                written,
                position: Some(event.position),
            }),
            Some(other) => Ok(other),
            None => Err(Error::Record {
                stream: event.stream.clone(),
                revision: event.revision,
                reason: format!("'{}' is not a command outcome", event.event_type),
            }),
        }
    }
}

impl DomainEvent for CommandOutcome {
    const TYPES: &'static [EventType] = &[
        EventType::new("CommandAccepted", 1),
        EventType::new("CommandRejected", 1),
        EventType::new("CommandFailed", 1),
    ];
}
