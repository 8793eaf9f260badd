//! What the process streams record: an instance's stream (messages seen, timeouts,
//! takeovers, outputs pending and published), the timeouts stream and the outbox
//! stream share one record type, stored as ordinary events.

use chrono::{DateTime, Utc};
use eventfold_core::{EventData, Position, RecordedEvent, Revision};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{DomainEvent, EventType};

/// A message as an instance records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SeenMessage {
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
    pub(super) fn from_event(event: &RecordedEvent) -> Result<Self> {
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

    pub(super) fn into_event(self) -> RecordedEvent {
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
pub(super) enum Record {
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
        /// What the old version exported for the new one's `migrate_state`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<serde_json::Value>,
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
pub(super) struct PendingOutput {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    version: u32,
    data: Box<RawValue>,
    metadata: Box<RawValue>,
}

impl PendingOutput {
    pub(super) fn from_data(data: &EventData, id: Uuid) -> Result<Self> {
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

    pub(super) fn into_data(self) -> EventData {
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

/// Decodes a record of a process stream; a record that does not decode is an error
/// naming its stream and revision.
pub(super) fn decode_record(event: &RecordedEvent) -> Result<Option<Record>> {
    Record::decode(event).map_err(|e| Error::Record {
        stream: event.stream.clone(),
        revision: event.revision,
        reason: e.to_string(),
    })
}
