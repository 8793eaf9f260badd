//! Appends on the wire: the events of a `POST /streams/{stream}` body, the writes of a
//! `POST /transactions` body, and what they answer.

use eventfold_core::{Error, EventData, ExpectedVersion, StreamWrite};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

pub use eventfold_core::AppendResult;

/// One event to append: `{"type", "data", "id"?, "version"?, "metadata"?}`. Unknown
/// fields are refused; `data` and `metadata` keep the text they were sent as.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// Makes a re-send idempotent; the store assigns one when absent or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The schema version of `data`; 1 when absent or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The payload, any JSON value.
    pub data: Box<RawValue>,
    /// The metadata, a JSON object; `{}` when absent or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Box<RawValue>>,
}

impl NewEvent {
    /// The event to append, as sent (appends check it).
    pub fn into_event_data(self) -> EventData {
        EventData::from_raw_json(
            self.id,
            self.event_type,
            self.version,
            &self.data,
            self.metadata.as_deref(),
        )
    }

    /// The wire form of an event to send; `InvalidEvent` when its data or metadata is
    /// not one JSON document.
    pub fn from_event_data(event: EventData) -> Result<Self, Error> {
        let raw = |bytes: bytes::Bytes, what: &str| {
            let invalid = |reason: String| Error::InvalidEvent {
                reason: format!("{what} is not valid JSON: {reason}"),
            };
            let text = String::from_utf8(bytes.to_vec()).map_err(|e| invalid(e.to_string()))?;
            RawValue::from_string(text).map_err(|e| invalid(e.to_string()))
        };
        Ok(NewEvent {
            id: event.id,
            event_type: event.event_type,
            version: Some(event.version),
            data: raw(event.data, "data")?,
            metadata: Some(raw(event.metadata, "metadata")?),
        })
    }
}

/// The body of `POST /streams/{stream}`: a JSON array of [`NewEvent`]s.
pub type NewEvents = Vec<NewEvent>;

/// One stream's part of a `POST /transactions` body: `{"stream", "expected"?,
/// "events"?}`. A write of no events (`events` absent or `[]`) is a check: the
/// transaction happens only while the stream is as `expected` says, and the answer has
/// no result for it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionWrite {
    /// The stream written.
    pub stream: String,
    /// `"any"` (the default), `"no_stream"`, `"stream_exists"` or a revision, as a
    /// number or a string. Kept as sent: [`TransactionWrite::expected_version`] reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<serde_json::Value>,
    /// The events, as in a single append; none for a check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<NewEvent>,
}

impl TransactionWrite {
    /// The wire form of one write of a transaction.
    pub fn from_stream_write(write: StreamWrite) -> Result<Self, Error> {
        Ok(TransactionWrite {
            stream: write.stream,
            expected: Some(serde_json::Value::String(write.expected.to_string())),
            events: write
                .events
                .into_iter()
                .map(NewEvent::from_event_data)
                .collect::<Result<_, _>>()?,
        })
    }

    /// What `expected` says; `InvalidExpectedVersion` for a value that is no expected
    /// version.
    pub fn expected_version(&self) -> Result<ExpectedVersion, Error> {
        match &self.expected {
            None => Ok(ExpectedVersion::Any),
            Some(serde_json::Value::Number(n)) => n.to_string().parse(),
            Some(serde_json::Value::String(s)) => s.parse(),
            Some(other) => Err(Error::InvalidExpectedVersion {
                value: other.to_string(),
            }),
        }
    }
}

/// What `POST /transactions` answers: one result per write of events, in the order of
/// the body (checks have none).
#[derive(Debug, Serialize, Deserialize)]
pub struct TransactionResults {
    /// The result of each write.
    pub results: Vec<AppendResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_travels_with_its_text_unchanged() {
        let event = EventData::from_json_bytes("Placed", &br#"{ "total" : 5 }"#[..])
            .unwrap()
            .with_version(3);
        let wire = NewEvent::from_event_data(event.clone()).unwrap();
        let text = serde_json::to_string(&wire).unwrap();
        assert_eq!(
            text,
            r#"{"type":"Placed","version":3,"data":{ "total" : 5 },"metadata":{}}"#
        );
        let back: NewEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back.into_event_data(), event);
    }

    #[test]
    fn data_that_is_not_json_is_refused_before_sending() {
        let mut event = EventData::json("Placed", &1).unwrap();
        event.data = bytes::Bytes::from_static(b"{nope");
        let err = NewEvent::from_event_data(event).unwrap_err();
        assert!(err.to_string().contains("data is not valid JSON"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<NewEvent>(r#"{"type":"A","data":1,"colour":"red"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn a_transaction_expects_a_number_or_a_string() {
        let write = |expected: serde_json::Value| TransactionWrite {
            stream: "s".into(),
            expected: Some(expected),
            events: Vec::new(),
        };
        let exact = write(serde_json::json!(4)).expected_version().unwrap();
        assert_eq!(exact, ExpectedVersion::Exact(eventfold_core::Revision(4)));
        let none = write(serde_json::json!("no_stream")).expected_version();
        assert_eq!(none.unwrap(), ExpectedVersion::NoStream);
        let err = write(serde_json::json!([1]))
            .expected_version()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidExpectedVersion { .. }), "{err}");
    }
}
