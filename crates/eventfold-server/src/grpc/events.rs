//! Events between the protocol's messages and the store's.
//!
//! - A JSON event (`content-type: application/json`) is stored as it came: its data as
//!   the event's data, its custom metadata (a JSON object, or nothing) as the event's
//!   metadata.
//! - Any other event (binary data, or custom metadata that is not a JSON object) is
//!   stored with its data as a Base64 JSON string, and its content type and custom
//!   metadata under `$content_type` and `$custom_metadata` in the metadata. A gRPC
//!   read gives back the bytes that were sent; an HTTP read shows the stored form.
//! - Positions: the protocol's commit position of an event is its `$all` position
//!   plus one, so that 0 stays "before every event" as clients expect of it.

use base64::Engine as _;
use bytes::Bytes;
use eventfold_core::{EventData, Position, RecordedEvent};
use uuid::Uuid;

use super::proto;
use super::proto::streams::read_resp::read_event::RecordedEvent as WireEvent;

/// The content type of JSON events.
pub(super) const JSON: &str = "application/json";
/// The metadata key holding the content type of an event that is not JSON.
const CONTENT_TYPE_KEY: &str = "$content_type";
/// The metadata key holding the custom metadata (Base64) of an event that is not JSON.
const CUSTOM_METADATA_KEY: &str = "$custom_metadata";

/// An event as a client proposed it, in any of the protocol's append messages.
pub(super) struct Proposed {
    pub id: Option<proto::Uuid>,
    pub metadata: std::collections::HashMap<String, String>,
    pub custom_metadata: Vec<u8>,
    pub data: Vec<u8>,
}

impl From<proto::streams::append_req::ProposedMessage> for Proposed {
    fn from(m: proto::streams::append_req::ProposedMessage) -> Self {
        Proposed {
            id: m.id,
            metadata: m.metadata,
            custom_metadata: m.custom_metadata,
            data: m.data,
        }
    }
}

impl From<proto::streams::batch_append_req::ProposedMessage> for Proposed {
    fn from(m: proto::streams::batch_append_req::ProposedMessage) -> Self {
        Proposed {
            id: m.id,
            metadata: m.metadata,
            custom_metadata: m.custom_metadata,
            data: m.data,
        }
    }
}

/// The event to store for a proposed one, or why it cannot be one.
pub(super) fn event_data(proposed: Proposed) -> Result<EventData, String> {
    let id = proposed
        .id
        .as_ref()
        .map(uuid_of)
        .transpose()?
        .ok_or("an event has no id")?;
    let event_type = proposed
        .metadata
        .get("type")
        .filter(|t| !t.is_empty())
        .ok_or("an event has no type (the 'type' entry of its metadata)")?
        .clone();
    let content_type = proposed
        .metadata
        .get("content-type")
        .map_or(JSON, String::as_str);
    let custom = proposed.custom_metadata;
    let custom_is_object = custom.is_empty()
        || serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&custom).is_ok();
    let (data, metadata) = if content_type == JSON && custom_is_object {
        let metadata = if custom.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            Bytes::from(custom)
        };
        (Bytes::from(proposed.data), metadata)
    } else {
        let base64 = base64::engine::general_purpose::STANDARD;
        let data = serde_json::Value::String(base64.encode(&proposed.data));
        let metadata = serde_json::json!({
            CONTENT_TYPE_KEY: content_type,
            CUSTOM_METADATA_KEY: base64.encode(&custom),
        });
        (
            Bytes::from(data.to_string()),
            Bytes::from(metadata.to_string()),
        )
    };
    Ok(EventData {
        id: Some(id),
        event_type,
        version: 1,
        data,
        metadata,
    })
}

/// The UUID of either of the protocol's forms.
pub(super) fn uuid_of(id: &proto::Uuid) -> Result<Uuid, String> {
    match &id.value {
        Some(proto::uuid::Value::String(text)) => text
            .parse()
            .map_err(|e| format!("event id '{text}' is not a UUID: {e}")),
        Some(proto::uuid::Value::Structured(s)) => Ok(Uuid::from_u64_pair(
            s.most_significant_bits as u64,
            s.least_significant_bits as u64,
        )),
        None => Err("an event id is empty".to_string()),
    }
}

/// The protocol's form of `id`, as the reader asked for it.
pub(super) fn wire_uuid(id: Uuid, structured: bool) -> proto::Uuid {
    let value = if structured {
        let (most, least) = id.as_u64_pair();
        proto::uuid::Value::Structured(proto::uuid::Structured {
            most_significant_bits: most as i64,
            least_significant_bits: least as i64,
        })
    } else {
        proto::uuid::Value::String(id.to_string())
    };
    proto::Uuid { value: Some(value) }
}

/// The protocol's commit position of the event at `position`.
pub(super) fn wire_position(position: Position) -> u64 {
    position.get().saturating_add(1)
}

/// The `$all` position of the event whose commit position is `commit`, if any.
pub(super) fn store_position(commit: u64) -> Option<Position> {
    commit.checked_sub(1).map(Position)
}

/// A stream name of the protocol (UTF-8 bytes).
pub(super) fn stream_name(id: Option<&proto::StreamIdentifier>) -> Result<String, tonic::Status> {
    let id = id.ok_or_else(|| tonic::Status::invalid_argument("no stream was named"))?;
    String::from_utf8(id.stream_name.clone())
        .map_err(|_| tonic::Status::invalid_argument("the stream name is not UTF-8"))
}

pub(super) fn stream_identifier(stream: &str) -> proto::StreamIdentifier {
    proto::StreamIdentifier {
        stream_name: stream.as_bytes().to_vec(),
    }
}

/// A stored event in the protocol's form: the bytes a client sent back, with its
/// type, content type and creation time in the metadata entries.
pub(super) fn wire_event(event: &RecordedEvent, structured_ids: bool) -> WireEvent {
    let (content_type, data, custom) = match stored_as_other(event) {
        Some(other) => other,
        None => {
            let custom = if event.metadata.as_ref() == b"{}" {
                Vec::new()
            } else {
                event.metadata.to_vec()
            };
            (JSON.to_string(), event.data.to_vec(), custom)
        }
    };
    let created = event
        .recorded_at
        .timestamp_nanos_opt()
        .map_or(0, |nanos| nanos / 100);
    let metadata = [
        ("type".to_string(), event.event_type.clone()),
        ("content-type".to_string(), content_type),
        ("created".to_string(), created.to_string()),
    ]
    .into_iter()
    .collect();
    let position = wire_position(event.position);
    WireEvent {
        id: Some(wire_uuid(event.id, structured_ids)),
        stream_identifier: Some(stream_identifier(&event.stream)),
        stream_revision: event.revision.get(),
        prepare_position: position,
        commit_position: position,
        metadata,
        custom_metadata: custom,
        data,
    }
}

/// The content type, data and custom metadata of an event stored in the form of an
/// event that is not JSON, if it is one.
fn stored_as_other(event: &RecordedEvent) -> Option<(String, Vec<u8>, Vec<u8>)> {
    if !event
        .metadata
        .windows(CUSTOM_METADATA_KEY.len())
        .any(|w| w == CUSTOM_METADATA_KEY.as_bytes())
    {
        return None;
    }
    let metadata: serde_json::Value = serde_json::from_slice(&event.metadata).ok()?;
    let base64 = base64::engine::general_purpose::STANDARD;
    let custom = base64
        .decode(metadata.get(CUSTOM_METADATA_KEY)?.as_str()?)
        .ok()?;
    let content_type = metadata.get(CONTENT_TYPE_KEY)?.as_str()?.to_string();
    let data: String = serde_json::from_slice(&event.data).ok()?;
    let data = base64.decode(data).ok()?;
    Some((content_type, data, custom))
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventfold_core::Revision;

    fn proposed(content_type: &str, data: &[u8], custom: &[u8]) -> Proposed {
        Proposed {
            id: Some(wire_uuid(Uuid::now_v7(), false)),
            metadata: [
                ("type".to_string(), "Tested".to_string()),
                ("content-type".to_string(), content_type.to_string()),
            ]
            .into_iter()
            .collect(),
            custom_metadata: custom.to_vec(),
            data: data.to_vec(),
        }
    }

    fn stored(data: EventData) -> RecordedEvent {
        RecordedEvent {
            stream: "s".into(),
            revision: Revision(0),
            position: Position(41),
            id: data.id.unwrap(),
            event_type: data.event_type,
            version: 1,
            data: data.data,
            metadata: data.metadata,
            recorded_at: Default::default(),
        }
    }

    #[test]
    fn json_events_are_stored_as_they_came_and_come_back_the_same() {
        let event = event_data(proposed(JSON, br#"{"a":1}"#, b"")).unwrap();
        assert_eq!(event.data.as_ref(), br#"{"a":1}"#);
        assert_eq!(event.metadata.as_ref(), b"{}");
        let wire = wire_event(&stored(event), false);
        assert_eq!(wire.data, br#"{"a":1}"#);
        assert!(wire.custom_metadata.is_empty());
        assert_eq!(wire.metadata["content-type"], JSON);
        assert_eq!(wire.metadata["type"], "Tested");
        assert_eq!(
            wire.commit_position, 42,
            "positions count from 1 on the wire"
        );

        let event = event_data(proposed(JSON, b"[]", br#"{"who":"me"}"#)).unwrap();
        assert_eq!(event.metadata.as_ref(), br#"{"who":"me"}"#);
        assert_eq!(
            wire_event(&stored(event), false).custom_metadata,
            br#"{"who":"me"}"#
        );
    }

    #[test]
    fn other_events_come_back_byte_for_byte() {
        for (content_type, data, custom) in [
            (
                "application/octet-stream",
                &b"\x00\xffbinary"[..],
                &b"\x01"[..],
            ),
            (JSON, br#"{"a":1}"#, b"not json"),
            ("text/plain", b"", b""),
        ] {
            let event = event_data(proposed(content_type, data, custom)).unwrap();
            event.validate().unwrap();
            let wire = wire_event(&stored(event), true);
            assert_eq!(wire.data, data);
            assert_eq!(wire.custom_metadata, custom);
            assert_eq!(wire.metadata["content-type"], content_type);
        }
    }

    #[test]
    fn both_id_forms_name_the_same_event() {
        let id = Uuid::now_v7();
        assert_eq!(uuid_of(&wire_uuid(id, true)).unwrap(), id);
        assert_eq!(uuid_of(&wire_uuid(id, false)).unwrap(), id);
        assert!(uuid_of(&proto::Uuid { value: None }).is_err());
        let mut nameless = proposed(JSON, b"1", b"");
        nameless.metadata.remove("type");
        assert!(event_data(nameless).unwrap_err().contains("no type"));
    }
}
