//! Events as written (`EventData`) and as read back (`RecordedEvent`).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::json_check::{JsonKind, check_json};
use crate::stream::{Position, Revision};

/// Metadata key holding the correlation id (the conversation an event belongs to).
pub const CORRELATION_ID_KEY: &str = "correlation_id";
/// Metadata key holding the causation id (the message that caused an event).
pub const CAUSATION_ID_KEY: &str = "causation_id";
/// Metadata key marking an event's personal values: `{"subject", "fields"?}` (the
/// privacy layer of eventfold-privacy seals them; the framework writes the marking).
pub const PERSONAL_KEY: &str = "$personal";
/// The key of what a forgotten subject's personal value reads as: `{"$redacted": true}`.
pub const REDACTED_KEY: &str = "$redacted";

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

    /// An event whose data is the given JSON text, checked as appends check it (see
    /// [`EventData::validate`]).
    pub fn from_json_bytes(event_type: impl Into<String>, data: impl Into<Bytes>) -> Result<Self> {
        let data = data.into();
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

    /// Checks what every backend requires of an event, whoever writes it: a type name
    /// (at most 256 bytes, no control characters), a version from 1, an id that is not
    /// the nil UUID, `data` that is one JSON document and `metadata` that is one JSON
    /// object. JSON is judged as readers parse it (serde_json: valid UTF-8, no lone
    /// surrogate escape such as `"\ud800"`, numbers in range, at most 127 levels of
    /// nesting), so every stored event can be read back; the check builds no value (a
    /// quick scan of its own passes what is certainly readable, serde_json judges the
    /// rest). Appends run it for every event (`plan::check_writes`).
    ///
    /// ```
    /// use eventfold_core::EventData;
    /// let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
    /// let err = EventData::from_json_bytes("Nested", nested).unwrap_err();
    /// assert!(err.to_string().contains("recursion limit"), "{err}");
    /// assert!(EventData::from_json_bytes("Text", r#""\ud800""#).is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        let reason = if self.event_type.is_empty() {
            "event type is empty".to_string()
        } else if self.event_type.len() > EVENT_TYPE_BYTES_MAX {
            format!("event type is longer than {EVENT_TYPE_BYTES_MAX} bytes")
        } else if self.event_type.chars().any(char::is_control) {
            "event type contains a control character".to_string()
        } else if self.version == 0 {
            "schema version must be 1 or more".to_string()
        } else if self.id.is_some_and(|id| id.is_nil()) {
            "event id must not be the nil UUID (00000000-0000-0000-0000-000000000000)".to_string()
        } else if let Err(e) = check_json(&self.data) {
            format!("data is not valid JSON: {e}")
        } else {
            match check_json(&self.metadata) {
                Ok(JsonKind::Object) => return Ok(()),
                Ok(JsonKind::Other) => "metadata must be a JSON object".to_string(),
                Err(e) => format!("metadata is not valid JSON: {e}"),
            }
        };
        Err(Error::InvalidEvent { reason })
    }
}

fn metadata_uuid(metadata: &[u8], key: &str) -> Option<Uuid> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(metadata).ok()?;
    map.get(key)?.as_str()?.parse().ok()
}

/// An event as stored, with its place in its stream and in the global log. Its JSON
/// form on the wire belongs to the `eventfold-wire` crate (`eventfold_wire::Event`,
/// `eventfold_wire::event_json_line`).
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

    /// Checks that `data` is one JSON document and `metadata` one JSON object, as
    /// [`EventData::validate`] requires of every append. An event stored before that
    /// check existed, or damaged below it, can fail it; whoever must hand the event on
    /// as JSON (a consumer group, a conversion) checks it first.
    pub fn check_json(&self) -> Result<()> {
        let reason = match (check_json(&self.data), check_json(&self.metadata)) {
            (Err(e), _) => format!("data is not valid JSON: {e}"),
            (Ok(_), Err(e)) => format!("metadata is not valid JSON: {e}"),
            (Ok(_), Ok(JsonKind::Other)) => "metadata is not a JSON object".to_string(),
            (Ok(_), Ok(JsonKind::Object)) => return Ok(()),
        };
        Err(Error::InvalidEvent {
            reason: format!(
                "event {} at position {} ({}): {reason}",
                self.id, self.position, self.event_type
            ),
        })
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
    fn data_a_reader_cannot_parse_is_refused_naming_the_problem() {
        for (data, problem) in [
            (r#"{"text":"\ud800"}"#.to_string(), "escape"),
            (
                format!("{}{}", "[".repeat(129), "]".repeat(129)),
                "recursion limit",
            ),
            ("[1e400]".to_string(), "out of range"),
        ] {
            let err = EventData::from_json_bytes("Thing", data).unwrap_err();
            assert!(err.to_string().contains(problem), "{err}");
            assert!(err.to_string().contains("data is not valid JSON"), "{err}");
        }
        let mut event = EventData::json("Thing", &1).unwrap();
        event.metadata = Bytes::from_static(br#"{"note":"\udfff"}"#);
        let err = event.validate().unwrap_err();
        assert!(
            err.to_string().contains("metadata is not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn the_nil_uuid_is_no_event_id() {
        let event = EventData::json("Thing", &1).unwrap().with_id(Uuid::nil());
        let err = event.validate().unwrap_err();
        assert!(err.to_string().contains("nil UUID"), "{err}");
    }

    #[test]
    fn a_stored_event_reports_which_part_is_not_json() {
        let mut event = RecordedEvent {
            stream: "s".into(),
            revision: Revision(0),
            position: Position(3),
            id: Uuid::nil(),
            event_type: "T".into(),
            version: 1,
            data: Bytes::from_static(b"{}"),
            metadata: Bytes::from_static(b"{}"),
            recorded_at: DateTime::from_timestamp_micros(0).unwrap(),
        };
        assert!(event.check_json().is_ok());
        event.metadata = Bytes::from_static(b"[]");
        let err = event.check_json().unwrap_err();
        assert!(
            err.to_string().contains("metadata is not a JSON object"),
            "{err}"
        );
        event.data = Bytes::from_static(br#""\ud800""#);
        let err = event.check_json().unwrap_err();
        assert!(err.to_string().contains("data is not valid JSON"), "{err}");
        assert!(err.to_string().contains("position 3"), "{err}");
    }

    #[test]
    fn metadata_must_be_an_object() {
        let event = EventData::json("A", &1).unwrap();
        assert!(event.with_metadata(&serde_json::json!([1])).is_err());
    }
}
