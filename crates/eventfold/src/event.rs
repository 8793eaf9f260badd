//! Typed events: a stable name and schema version per type, encoding to and decoding
//! from stored events, and the upcasting hook that runs before decoding.

use std::sync::Arc;

use eventfold_core::{EventData, RecordedEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The stable name and schema version of one event type, as stored in the event's
/// `type` and `version`.
///
/// ```
/// use eventfold::EventType;
/// const DEPOSITED: EventType = EventType::new("MoneyDeposited", 2);
/// assert_eq!((DEPOSITED.name, DEPOSITED.version), ("MoneyDeposited", 2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventType {
    /// The type name: past tense, one fact (`MoneyDeposited`). Never renamed.
    pub name: &'static str,
    /// The schema version this code writes and reads, from 1.
    pub version: u32,
}

impl EventType {
    /// Type `name` at schema version `version`.
    pub const fn new(name: &'static str, version: u32) -> Self {
        EventType { name, version }
    }
}

/// A family of typed events (usually an enum, one variant per event type) that the
/// framework stores and reads back.
///
/// The provided [`encode`](DomainEvent::encode) and [`decode`](DomainEvent::decode)
/// expect serde's adjacently tagged form, `#[serde(tag = "type", content = "data")]`:
/// the variant name is the stored type, its fields the stored data. Override both for
/// any other representation.
///
/// ```
/// use eventfold::{DomainEvent, EventType};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// #[serde(tag = "type", content = "data")]
/// enum AccountEvent {
///     AccountOpened { owner: String },
///     MoneyDeposited { cents: u64 },
///     AccountClosed,
/// }
///
/// impl DomainEvent for AccountEvent {
///     const TYPES: &'static [EventType] = &[
///         EventType::new("AccountOpened", 1),
///         EventType::new("MoneyDeposited", 1),
///         EventType::new("AccountClosed", 1),
///     ];
/// }
///
/// let stored = AccountEvent::MoneyDeposited { cents: 500 }.encode().unwrap();
/// assert_eq!(stored.event_type, "MoneyDeposited");
/// assert_eq!(&stored.data[..], br#"{"cents":500}"#);
/// ```
pub trait DomainEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Every event type of the family with the schema version the code reads. Stored
    /// events of other types are not this family's: [`decode`](DomainEvent::decode)
    /// returns `None` for them, so an aggregate ignores them.
    const TYPES: &'static [EventType];

    /// Which of this event's values belong to a person, if any: they are marked
    /// `$personal` in its metadata when it is encoded, so the store's privacy layer
    /// seals them and `forget` can shred them. Decode such values as
    /// [`Personal`](crate::Personal), which reads the redaction marker after `forget`.
    fn personal(&self) -> Option<crate::PersonalData> {
        None
    }

    /// The stored form of the event: its data, and its metadata when it has personal
    /// values ([`personal`](DomainEvent::personal)); its id and the rest of its
    /// metadata are filled in by whoever writes it.
    fn encode(&self) -> Result<EventData> {
        let encode_error = |reason: String| Error::Encode { reason };
        let value = serde_json::to_value(self).map_err(|e| encode_error(e.to_string()))?;
        let serde_json::Value::Object(mut map) = value else {
            return Err(encode_error(
                "expected an object {\"type\", \"data\"}: use #[serde(tag = \"type\", content = \"data\")] or override encode".into(),
            ));
        };
        let Some(serde_json::Value::String(name)) = map.remove("type") else {
            return Err(encode_error(
                "the serialized event has no \"type\": use #[serde(tag = \"type\", content = \"data\")] or override encode".into(),
            ));
        };
        let event_type = Self::TYPES
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| encode_error(format!("event type '{name}' is not listed in TYPES")))?;
        let data = map.remove("data").unwrap_or(serde_json::Value::Null);
        let event = EventData::json(event_type.name, &data)?.with_version(event_type.version);
        match self.personal() {
            None => Ok(event),
            Some(personal) => Ok(event.with_metadata(&serde_json::json!({
                crate::personal::PERSONAL_KEY: personal.to_metadata()
            }))?),
        }
    }

    /// The typed event stored as `event`, or `None` when its type is not in
    /// [`TYPES`](DomainEvent::TYPES). A known type stored at another schema version is
    /// an error: upcasters run before decoding so that stored events reach the version
    /// the code reads.
    fn decode(event: &RecordedEvent) -> Result<Option<Self>> {
        let Some(event_type) = Self::TYPES.iter().find(|t| t.name == event.event_type) else {
            return Ok(None);
        };
        if event.version != event_type.version {
            return Err(Error::UnsupportedVersion {
                stream: event.stream.clone(),
                revision: event.revision,
                event_type: event.event_type.clone(),
                stored: event.version,
                expected: event_type.version,
            });
        }
        let decode_error = |reason: String| Error::Decode {
            stream: event.stream.clone(),
            revision: event.revision,
            event_type: event.event_type.clone(),
            version: event.version,
            reason,
        };
        // The adjacently tagged form, built around the stored bytes without parsing them
        // twice. A unit variant is stored with `null` data and has no "data" key.
        let mut json = Vec::with_capacity(event.data.len() + event_type.name.len() + 20);
        json.extend_from_slice(b"{\"type\":");
        serde_json::to_writer(&mut json, event_type.name)
            .map_err(|e| decode_error(e.to_string()))?;
        if event.data.trim_ascii() != b"null" {
            json.extend_from_slice(b",\"data\":");
            json.extend_from_slice(&event.data);
        }
        json.push(b'}');
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| decode_error(e.to_string()))
    }
}

/// Converts stored events to the schema versions the code reads, before they are
/// decoded. One stored event may become zero, one or several events (a split).
///
/// The versioning registry implements it; any `Fn(RecordedEvent) -> Result<Vec<_>>`
/// does too, and [`IdentityUpcaster`] (the default) passes events through.
///
/// ```
/// use std::sync::Arc;
/// use eventfold::Upcaster;
/// use eventfold_core::RecordedEvent;
///
/// // v1 of `MoneyDeposited` stored whole units; v2 stores cents.
/// let to_v2 = |mut event: RecordedEvent| -> eventfold_core::Result<Vec<RecordedEvent>> {
///     if event.event_type == "MoneyDeposited" && event.version == 1 {
///         let v1: serde_json::Value = event.data_as()?;
///         let cents = v1["amount"].as_u64().unwrap_or(0) * 100;
///         event.data = serde_json::json!({ "cents": cents }).to_string().into();
///         event.version = 2;
///     }
///     Ok(vec![event])
/// };
/// let upcaster: Arc<dyn Upcaster> = Arc::new(to_v2);
/// # let _ = upcaster;
/// ```
pub trait Upcaster: Send + Sync {
    /// The events `event` stands for at the versions the code reads.
    fn upcast(&self, event: RecordedEvent) -> eventfold_core::Result<Vec<RecordedEvent>>;
}

/// The upcaster that changes nothing: events are read as stored.
///
/// ```
/// use eventfold::{IdentityUpcaster, Upcaster};
/// # use eventfold_core::{Position, RecordedEvent, Revision};
/// # let event = RecordedEvent { stream: "a".into(), revision: Revision(0), position: Position(0),
/// #     id: uuid::Uuid::nil(), event_type: "A".into(), version: 1, data: "1".into(),
/// #     metadata: "{}".into(), recorded_at: chrono::Utc::now() };
/// assert_eq!(IdentityUpcaster.upcast(event.clone()).unwrap(), vec![event]);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdentityUpcaster;

impl Upcaster for IdentityUpcaster {
    fn upcast(&self, event: RecordedEvent) -> eventfold_core::Result<Vec<RecordedEvent>> {
        Ok(vec![event])
    }
}

impl<F> Upcaster for F
where
    F: Fn(RecordedEvent) -> eventfold_core::Result<Vec<RecordedEvent>> + Send + Sync,
{
    fn upcast(&self, event: RecordedEvent) -> eventfold_core::Result<Vec<RecordedEvent>> {
        self(event)
    }
}

/// The default upcaster, shared.
pub(crate) fn identity() -> Arc<dyn Upcaster> {
    Arc::new(IdentityUpcaster)
}

/// Upcasts `event` and decodes every resulting event of family `E`, in order, into
/// `out` (events of other families are skipped).
pub(crate) fn upcast_decode<E: DomainEvent>(
    upcaster: &dyn Upcaster,
    event: RecordedEvent,
    mut out: impl FnMut(E),
) -> Result<()> {
    for event in upcaster.upcast(event)? {
        if let Some(decoded) = E::decode(&event)? {
            out(decoded);
        }
    }
    Ok(())
}

fn schema_error(error: eventfold_schema::SchemaError) -> eventfold_core::Error {
    match error {
        eventfold_schema::SchemaError::Store(error) => error,
        other => eventfold_core::Error::InvalidEvent {
            reason: other.to_string(),
        },
    }
}

/// The schema registry as the framework's upcaster: every stored event is brought to
/// the newest registered version of its type (following renames, splits and drops).
impl Upcaster for eventfold_schema::Registry {
    fn upcast(&self, event: RecordedEvent) -> eventfold_core::Result<Vec<RecordedEvent>> {
        self.convert(event, &eventfold_schema::Target::Newest)
            .map_err(schema_error)
    }
}

/// The registry kept in the store, as it is when each event is read, so versions
/// registered while the program runs are used at once.
impl<S: eventfold_core::EventStore + ?Sized> Upcaster for eventfold_schema::SchemaStore<S> {
    fn upcast(&self, event: RecordedEvent) -> eventfold_core::Result<Vec<RecordedEvent>> {
        self.registry().upcast(event)
    }
}
