//! Events as written (`EventData`) and as read back (`RecordedEvent`).

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::stream::{Position, Revision};

/// Metadata key holding the correlation id (the conversation an event belongs to).
pub const CORRELATION_ID_KEY: &str = "correlation_id";
/// Metadata key holding the causation id (the message that caused an event).
pub const CAUSATION_ID_KEY: &str = "causation_id";

/// Longest event type name accepted, in bytes.
const EVENT_TYPE_BYTES_MAX: usize = 256;

/// An event to append. `data` and `metadata` are JSON documents kept as raw bytes;
/// `metadata` is a JSON object.
///
/// ```
/// use eventfold_core::EventData;
/// use uuid::Uuid;
/// let command = Uuid::now_v7();
/// let event = EventData::json("SeatReserved", &serde_json::json!({"seat": "12A"}))
///     .unwrap()
///     .with_correlation_id(command)
///     .with_causation_id(command);
/// assert_eq!(event.correlation_id(), Some(command));
/// assert_eq!(event.version, 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EventData {
    /// Unique id; the store assigns a UUID v7 when `None`. Re-sending an event with the
    /// same id is idempotent.
    pub id: Option<Uuid>,
    /// The event type, a past-tense name such as `OrderPlaced`.
    pub event_type: String,
    /// The schema version of `data`, from 1.
    pub version: u32,
    /// The payload, a JSON document.
    pub data: Bytes,
    /// The metadata, a JSON object (`{}` when empty).
    pub metadata: Bytes,
}

impl EventData {
    /// An event whose data is `value` serialized to JSON.
    pub fn json(event_type: impl Into<String>, value: &impl Serialize) -> Result<Self> {
        let data = serde_json::to_vec(value).map_err(|e| Error::InvalidEvent {
            reason: format!("data cannot be serialized to JSON: {e}"),
        })?;
        Self::from_json_bytes(event_type, data)
    }

    /// An event whose data is the given JSON text, checked to be valid JSON.
    pub fn from_json_bytes(event_type: impl Into<String>, data: impl Into<Bytes>) -> Result<Self> {
        let data = data.into();
        serde_json::from_slice::<serde::de::IgnoredAny>(&data).map_err(|e| {
            Error::InvalidEvent {
                reason: format!("data is not valid JSON: {e}"),
            }
        })?;
        let event = EventData {
            id: None,
            event_type: event_type.into(),
            version: 1,
            data,
            metadata: Bytes::from_static(b"{}"),
        };
        event.validate()?;
        Ok(event)
    }

    /// An event from JSON its caller has already parsed (a request body, an export
    /// line): `data` and `metadata` are kept as written, `version` defaults to 1 and
    /// `metadata` to `{}`. Nothing is checked here; appends check it.
    pub fn from_raw_json(
        id: Option<Uuid>,
        event_type: String,
        version: Option<u32>,
        data: &RawValue,
        metadata: Option<&RawValue>,
    ) -> Self {
        EventData {
            id,
            event_type,
            version: version.unwrap_or(1),
            data: Bytes::copy_from_slice(data.get().as_bytes()),
            metadata: metadata.map_or(Bytes::from_static(b"{}"), |m| {
                Bytes::copy_from_slice(m.get().as_bytes())
            }),
        }
    }

    /// Sets the event id (for idempotent re-sends).
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the schema version of the data.
    pub fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Replaces the metadata; it must be a JSON object.
    pub fn with_metadata(mut self, metadata: &serde_json::Value) -> Result<Self> {
        if !metadata.is_object() {
            return Err(Error::InvalidEvent {
                reason: "metadata must be a JSON object".into(),
            });
        }
        self.metadata = Bytes::from(metadata.to_string());
        Ok(self)
    }

    /// Records the correlation id in the metadata.
    pub fn with_correlation_id(self, id: Uuid) -> Self {
        self.with_metadata_key(CORRELATION_ID_KEY, id)
    }

    /// Records the causation id in the metadata.
    pub fn with_causation_id(self, id: Uuid) -> Self {
        self.with_metadata_key(CAUSATION_ID_KEY, id)
    }

    /// The correlation id recorded in the metadata, if any.
    pub fn correlation_id(&self) -> Option<Uuid> {
        metadata_uuid(&self.metadata, CORRELATION_ID_KEY)
    }

    /// The causation id recorded in the metadata, if any.
    pub fn causation_id(&self) -> Option<Uuid> {
        metadata_uuid(&self.metadata, CAUSATION_ID_KEY)
    }

    fn with_metadata_key(mut self, key: &str, id: Uuid) -> Self {
        let mut map =
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&self.metadata)
                .unwrap_or_default();
        map.insert(key.to_string(), serde_json::Value::String(id.to_string()));
        self.metadata = Bytes::from(serde_json::Value::Object(map).to_string());
        self
    }

    /// Checks the parts every backend requires: a type name, a version from 1, and
    /// metadata that is a JSON object. (The data's JSON validity is checked where it
    /// enters: the constructors, the HTTP API and the CLI.)
    pub fn validate(&self) -> Result<()> {
        let reason = if self.event_type.is_empty() {
            "event type is empty".to_string()
        } else if self.event_type.len() > EVENT_TYPE_BYTES_MAX {
            format!("event type is longer than {EVENT_TYPE_BYTES_MAX} bytes")
        } else if self.event_type.chars().any(char::is_control) {
            "event type contains a control character".to_string()
        } else if self.version == 0 {
            "schema version must be 1 or more".to_string()
        } else if !is_json_object(&self.metadata) {
            "metadata must be a JSON object".to_string()
        } else {
            return Ok(());
        };
        Err(Error::InvalidEvent { reason })
    }
}

fn is_json_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

fn metadata_uuid(metadata: &[u8], key: &str) -> Option<Uuid> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(metadata).ok()?;
    map.get(key)?.as_str()?.parse().ok()
}

/// An event as stored, with its place in its stream and in the global log.
///
/// Serializes to the public JSON form:
/// `{"stream", "revision", "position", "id", "type", "version", "data", "metadata", "recorded_at"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// The stream the event belongs to.
    pub stream: String,
    /// Its index in the stream, from 0.
    pub revision: Revision,
    /// Its place in the global log.
    pub position: Position,
    /// Its unique id.
    pub id: Uuid,
    /// Its type name.
    pub event_type: String,
    /// The schema version of `data`.
    pub version: u32,
    /// The payload, raw JSON bytes.
    pub data: Bytes,
    /// The metadata, a raw JSON object.
    pub metadata: Bytes,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// The correlation id recorded in the metadata, if any.
    pub fn correlation_id(&self) -> Option<Uuid> {
        metadata_uuid(&self.metadata, CORRELATION_ID_KEY)
    }

    /// The causation id recorded in the metadata, if any.
    pub fn causation_id(&self) -> Option<Uuid> {
        metadata_uuid(&self.metadata, CAUSATION_ID_KEY)
    }

    /// Decodes the data into a Rust type.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.data).map_err(|e| Error::InvalidEvent {
            reason: format!(
                "data of event {} ({}) does not decode: {e}",
                self.id, self.event_type
            ),
        })
    }

    /// The public JSON form of the event, as one line.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            // Only reachable if stored bytes are not JSON, which every entry point checks.
            format!("{{\"error\":\"event {} is not valid JSON: {e}\"}}", self.id)
        })
    }
}

impl Serialize for RecordedEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        fn raw<E: serde::ser::Error>(bytes: &[u8]) -> std::result::Result<&RawValue, E> {
            let text = std::str::from_utf8(bytes).map_err(E::custom)?;
            serde_json::from_str::<&RawValue>(text).map_err(E::custom)
        }
        let mut map = serializer.serialize_map(Some(9))?;
        map.serialize_entry("stream", &self.stream)?;
        map.serialize_entry("revision", &self.revision)?;
        map.serialize_entry("position", &self.position)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("type", &self.event_type)?;
        map.serialize_entry("version", &self.version)?;
        map.serialize_entry("data", raw(&self.data)?)?;
        map.serialize_entry("metadata", raw(&self.metadata)?)?;
        map.serialize_entry(
            "recorded_at",
            &self
                .recorded_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
        )?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_json_data_is_refused_with_the_reason() {
        let err = EventData::from_json_bytes("Thing", &b"{nope"[..]).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
    }

    #[test]
    fn recorded_event_serializes_to_the_public_form() {
        let event = RecordedEvent {
            stream: "order-1".into(),
            revision: Revision(0),
            position: Position(17),
            id: Uuid::nil(),
            event_type: "OrderPlaced".into(),
            version: 1,
            data: Bytes::from_static(br#"{"total":5}"#),
            metadata: Bytes::from_static(b"{}"),
            recorded_at: DateTime::from_timestamp_micros(0).unwrap(),
        };
        let value: serde_json::Value = serde_json::from_str(&event.to_json_line()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "stream": "order-1", "revision": 0, "position": 17,
                "id": "00000000-0000-0000-0000-000000000000", "type": "OrderPlaced",
                "version": 1, "data": {"total": 5}, "metadata": {},
                "recorded_at": "1970-01-01T00:00:00.000000Z"
            })
        );
    }

    #[test]
    fn metadata_must_be_an_object() {
        let event = EventData::json("A", &1).unwrap();
        assert!(event.with_metadata(&serde_json::json!([1])).is_err());
    }
}
