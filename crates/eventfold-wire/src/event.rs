//! The public JSON form of a recorded event, declared once: the server writes it in
//! pages, subscriptions and deliveries, the CLI in `read`, `tail` and `export`; the
//! client and `import` read it back.

use std::borrow::Cow;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use eventfold_core::{Position, RecordedEvent, Revision};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use uuid::Uuid;

/// An event as it travels:
/// `{"stream", "revision", "position", "id", "type", "version", "data", "metadata",
/// "recorded_at"}`, in that order. `data` and `metadata` are the stored JSON text,
/// never re-encoded; `recorded_at` is RFC 3339 in UTC with microseconds.
///
/// Borrowed from a [`RecordedEvent`] to write it ([`Event::of`]), owned when read
/// ([`Event::into_recorded`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event<'a> {
    /// The stream the event belongs to.
    pub stream: Cow<'a, str>,
    /// Its index in the stream.
    pub revision: u64,
    /// Its place in the global log.
    pub position: u64,
    /// Its unique id.
    pub id: Uuid,
    /// Its type name.
    #[serde(rename = "type")]
    pub event_type: Cow<'a, str>,
    /// The schema version of `data`.
    pub version: u32,
    /// The payload, any JSON value.
    pub data: Cow<'a, RawValue>,
    /// The metadata, a JSON object.
    pub metadata: Cow<'a, RawValue>,
    /// When the store recorded it.
    #[serde(with = "timestamp")]
    pub recorded_at: DateTime<Utc>,
}

impl<'a> Event<'a> {
    /// The wire form of `event`, borrowing its text. Fails only when the stored `data`
    /// or `metadata` is not JSON, which every entry point checks on append.
    pub fn of(event: &'a RecordedEvent) -> Result<Self, serde_json::Error> {
        Ok(Event {
            stream: Cow::Borrowed(&event.stream),
            revision: event.revision.get(),
            position: event.position.get(),
            id: event.id,
            event_type: Cow::Borrowed(&event.event_type),
            version: event.version,
            data: Cow::Borrowed(raw(&event.data)?),
            metadata: Cow::Borrowed(raw(&event.metadata)?),
            recorded_at: event.recorded_at,
        })
    }

    /// The event as the store's type, keeping `data` and `metadata` as sent.
    pub fn into_recorded(self) -> RecordedEvent {
        RecordedEvent {
            stream: self.stream.into_owned(),
            revision: Revision(self.revision),
            position: Position(self.position),
            id: self.id,
            event_type: self.event_type.into_owned(),
            version: self.version,
            data: raw_bytes(self.data),
            metadata: raw_bytes(self.metadata),
            recorded_at: self.recorded_at,
        }
    }
}

/// The JSON text of a stored document, checked to be one JSON value.
fn raw(bytes: &[u8]) -> Result<&RawValue, serde_json::Error> {
    let text = std::str::from_utf8(bytes).map_err(serde_json::Error::custom)?;
    serde_json::from_str::<&RawValue>(text)
}

fn raw_bytes(value: Cow<'_, RawValue>) -> Bytes {
    let text: Box<str> = value.into_owned().into();
    Bytes::from(String::from(text))
}

/// One event in its wire form, as one line of JSON (what `eventfold read`, `tail`
/// and `export` print, and what an SSE message carries).
///
/// ```
/// use eventfold_core::{Position, RecordedEvent, Revision};
/// let event = RecordedEvent {
///     stream: "order-1".into(),
///     revision: Revision(0),
///     position: Position(17),
///     id: uuid::Uuid::nil(),
///     event_type: "OrderPlaced".into(),
///     version: 1,
///     data: r#"{"total":5}"#.into(),
///     metadata: "{}".into(),
///     recorded_at: chrono::DateTime::from_timestamp_micros(0).unwrap(),
/// };
/// assert_eq!(
///     eventfold_wire::event_json_line(&event),
///     r#"{"stream":"order-1","revision":0,"position":17,"id":"00000000-0000-0000-0000-000000000000","type":"OrderPlaced","version":1,"data":{"total":5},"metadata":{},"recorded_at":"1970-01-01T00:00:00.000000Z"}"#
/// );
/// ```
pub fn event_json_line(event: &RecordedEvent) -> String {
    serde_json::to_string(&Recorded(event)).unwrap_or_else(|e| {
        // Only reachable if stored bytes are not JSON, which every entry point checks.
        format!(
            "{{\"error\":\"event {} is not valid JSON: {e}\"}}",
            event.id
        )
    })
}

/// A [`RecordedEvent`] written in its wire form (for a field of a larger answer).
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a>(pub &'a RecordedEvent);

impl Serialize for Recorded<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Event::of(self.0)
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

/// `#[serde(with = "eventfold_wire::event::one")]` on a [`RecordedEvent`] field.
pub mod one {
    use super::*;

    /// Writes the event in its wire form.
    pub fn serialize<S: Serializer>(event: &RecordedEvent, s: S) -> Result<S::Ok, S::Error> {
        Recorded(event).serialize(s)
    }

    /// Reads an event in its wire form.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RecordedEvent, D::Error> {
        Event::deserialize(d).map(Event::into_recorded)
    }
}

/// `#[serde(with = "eventfold_wire::event::many")]` on a `Vec<RecordedEvent>` field.
pub mod many {
    use super::*;

    /// Writes the events in their wire form, in order.
    pub fn serialize<S: Serializer>(events: &[RecordedEvent], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(events.iter().map(Recorded))
    }

    /// Reads a JSON array of events in their wire form.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RecordedEvent>, D::Error> {
        let events = Vec::<Event<'static>>::deserialize(d)?;
        Ok(events.into_iter().map(Event::into_recorded).collect())
    }
}

/// `recorded_at` as RFC 3339 in UTC with microseconds (`2026-01-02T03:04:05.000006Z`).
mod timestamp {
    use super::*;

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = Cow::<str>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|e| D::Error::custom(format!("recorded_at '{text}' is not RFC 3339: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordedEvent {
        RecordedEvent {
            stream: "order-1".into(),
            revision: Revision(3),
            position: Position(17),
            id: Uuid::nil(),
            event_type: "OrderPlaced".into(),
            version: 2,
            data: Bytes::from_static(br#"{"total": 5, "lines":[1,2]}"#),
            metadata: Bytes::from_static(br#"{"correlation_id":"x"}"#),
            recorded_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
        }
    }

    #[test]
    fn an_event_is_written_with_its_stored_text_and_read_back_unchanged() {
        let event = sample();
        let line = event_json_line(&event);
        assert_eq!(
            line,
            r#"{"stream":"order-1","revision":3,"position":17,"id":"00000000-0000-0000-0000-000000000000","type":"OrderPlaced","version":2,"data":{"total": 5, "lines":[1,2]},"metadata":{"correlation_id":"x"},"recorded_at":"2023-11-14T22:13:20.123456Z"}"#
        );
        let back = Event::deserialize(&mut serde_json::Deserializer::from_str(&line))
            .unwrap()
            .into_recorded();
        assert_eq!(back, event);
    }

    #[test]
    fn stored_bytes_that_are_not_json_cannot_be_written() {
        let mut event = sample();
        event.data = Bytes::from_static(b"{nope");
        assert!(Event::of(&event).is_err());
        assert!(event_json_line(&event).starts_with(r#"{"error":"event 00000000"#));
    }

    #[test]
    fn a_bad_timestamp_is_refused_naming_it() {
        let line = event_json_line(&sample()).replace("2023-11-14T22:13:20.123456Z", "soon");
        let err = serde_json::from_str::<Event<'_>>(&line).unwrap_err();
        assert!(err.to_string().contains("recorded_at 'soon'"), "{err}");
    }
}
