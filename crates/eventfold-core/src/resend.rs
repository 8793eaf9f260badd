//! Re-sends must carry what was sent the first time.
//!
//! An append whose event ids were written before is answered as written (the
//! client lost the first answer and sent again): [`plan_append`](crate::plan::plan_append)
//! decides that by the ids. But an id names one event: the same id with other
//! content is a client bug (a reused id, a changed retry) that would otherwise keep
//! the old event silently. A backend whose append turned out to be a re-send
//! therefore reads the stored events back and compares them with what was sent
//! ([`ResendCheck`]): type, version, data and metadata, as JSON values (so a client
//! that serializes its keys in another order still matches). Re-sends are rare, so the
//! read-back costs nothing on the usual path.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::event::{EventData, RecordedEvent};
use crate::store::{AppendResult, EventStore, ReadStream, StreamWrite};

/// What a backend did with an append.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// The events were written now.
    Written(Vec<AppendResult>),
    /// Every event had been written before with these ids: the original results.
    Resent(Vec<AppendResult>),
}

/// The events of an append, kept to compare with the stored ones when the append
/// turns out to be a re-send.
#[derive(Debug, Clone)]
pub struct ResendCheck(Vec<(String, Vec<EventData>)>);

impl ResendCheck {
    /// The check for `writes`; `None` when no event names its id (without ids an
    /// append is never taken for a re-send, so there is nothing to keep). Checks of
    /// streams ([`StreamWrite::check`]) have no result and are left out, so the
    /// writes kept pair with the results.
    pub fn of(writes: &[StreamWrite]) -> Option<ResendCheck> {
        writes
            .iter()
            .any(|w| w.events.iter().any(|e| e.id.is_some()))
            .then(|| {
                ResendCheck(
                    writes
                        .iter()
                        .filter(|w| !w.is_check())
                        .map(|w| (w.stream.clone(), w.events.clone()))
                        .collect(),
                )
            })
    }

    /// The results of `appended`, after checking, for a re-send, that the stored
    /// events are the ones sent: [`Error::IdempotencyConflict`] naming the first
    /// event id whose content differs. `read` reads a stream as stored.
    pub fn confirm_with(
        check: Option<ResendCheck>,
        appended: Appended,
        mut read: impl FnMut(&str, ReadStream) -> Result<Vec<RecordedEvent>>,
    ) -> Result<Vec<AppendResult>> {
        let results = match appended {
            Appended::Written(results) => return Ok(results),
            Appended::Resent(results) => results,
        };
        if let Some(ResendCheck(writes)) = check {
            for ((stream, sent), result) in writes.iter().zip(&results) {
                let stored = read(stream, read_back(result, sent))?;
                compare(stream, sent, &stored)?;
            }
        }
        Ok(results)
    }

    /// [`ResendCheck::confirm_with`], reading through `store`'s own reads.
    pub async fn confirm(
        check: Option<ResendCheck>,
        appended: Appended,
        store: &(impl EventStore + ?Sized),
    ) -> Result<Vec<AppendResult>> {
        let (check, results) = match (check, appended) {
            (Some(check), Appended::Resent(results)) => (check, results),
            (_, Appended::Written(results) | Appended::Resent(results)) => return Ok(results),
        };
        for ((stream, sent), result) in check.0.iter().zip(&results) {
            let stored = store.read_stream(stream, read_back(result, sent)).await?;
            compare(stream, sent, &stored)?;
        }
        Ok(results)
    }
}

/// The read of the events an append wrote, or found written before.
fn read_back(result: &AppendResult, sent: &[EventData]) -> ReadStream {
    ReadStream::forward()
        .from(result.first_revision)
        .limit(sent.len() as u64)
}

/// Refuses the first sent event whose stored twin (same position in the append)
/// differs. A stored event that is gone (scavenged) is not compared.
fn compare(stream: &str, sent: &[EventData], stored: &[RecordedEvent]) -> Result<()> {
    for (sent, stored) in sent.iter().zip(stored) {
        let mut differs = Vec::new();
        if sent.event_type != stored.event_type {
            differs.push("type");
        }
        if sent.version != stored.version {
            differs.push("version");
        }
        if json(&sent.data) != json(&stored.data) {
            differs.push("data");
        }
        if json_object(&sent.metadata) != json_object(&stored.metadata) {
            differs.push("metadata");
        }
        if !differs.is_empty() {
            return Err(Error::IdempotencyConflict {
                stream: stream.to_string(),
                reason: format!(
                    "event id {} was already written at revision {} of stream '{stream}' with \
                     other content (its {} differ); an id names one event: send new content \
                     with a new id",
                    stored.id,
                    stored.revision,
                    differs.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// The JSON value of `bytes` (the bytes themselves, as a string, when not JSON: then
/// only identical bytes match).
fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Metadata as a JSON value, where none (empty bytes) is the empty object.
fn json_object(bytes: &[u8]) -> Value {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(serde_json::Map::new())
    } else {
        json(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{Position, Revision};
    use bytes::Bytes;
    use uuid::Uuid;

    fn stored(sent: &EventData, revision: u64) -> RecordedEvent {
        RecordedEvent {
            stream: "order-1".into(),
            revision: Revision(revision),
            position: Position(revision),
            id: sent.id.unwrap_or_else(Uuid::now_v7),
            event_type: sent.event_type.clone(),
            version: sent.version,
            data: sent.data.clone(),
            metadata: sent.metadata.clone(),
            recorded_at: chrono::Utc::now(),
        }
    }

    fn event(data: &str) -> EventData {
        EventData::from_json_bytes("OrderPlaced", data.as_bytes().to_vec())
            .unwrap()
            .with_id(Uuid::now_v7())
    }

    #[test]
    fn the_same_content_in_another_key_order_is_the_same_event() {
        let sent = event(r#"{"a":1,"b":2}"#);
        let mut kept = stored(&sent, 0);
        kept.data = Bytes::from_static(br#"{ "b": 2, "a": 1 }"#);
        assert!(compare("order-1", &[sent], &[kept]).is_ok());
    }

    #[test]
    fn other_data_under_a_known_id_is_a_conflict_naming_the_id() {
        let first = event(r#"{"total":5}"#);
        let kept = stored(&first, 3);
        let mut changed = first.clone();
        changed.data = Bytes::from_static(br#"{"total":6}"#);
        let error = compare("order-1", &[changed], &[kept]).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, Error::IdempotencyConflict { .. }), "{text}");
        assert!(text.contains(&first.id.unwrap().to_string()), "{text}");
        assert!(
            text.contains("revision 3") && text.contains("data"),
            "{text}"
        );
    }

    #[test]
    fn a_changed_type_version_or_metadata_is_a_conflict_too() {
        let first = event("{}");
        let kept = stored(&first, 0);
        let mut retyped = first.clone();
        retyped.event_type = "OrderCancelled".into();
        let reversioned = first.clone().with_version(2);
        let remarked = first
            .clone()
            .with_metadata(&serde_json::json!({"by": "someone else"}))
            .unwrap();
        for (changed, what) in [
            (retyped, "type"),
            (reversioned, "version"),
            (remarked, "metadata"),
        ] {
            let error = compare("order-1", &[changed], std::slice::from_ref(&kept)).unwrap_err();
            assert!(error.to_string().contains(what), "{what}: {error}");
        }
    }

    #[test]
    fn only_a_resend_is_read_back() {
        let sent = event("{}");
        let writes = vec![StreamWrite::new(
            "order-1",
            crate::ExpectedVersion::Any,
            vec![sent.clone()],
        )];
        let result = AppendResult {
            first_revision: Revision(0),
            last_revision: Revision(0),
            position: Position(0),
        };
        let mut reads = 0;
        let written = ResendCheck::confirm_with(
            ResendCheck::of(&writes),
            Appended::Written(vec![result]),
            |_, _| {
                reads += 1;
                Ok(vec![])
            },
        )
        .unwrap();
        assert_eq!((written, reads), (vec![result], 0));
        let mut changed = sent.clone();
        changed.data = Bytes::from_static(b"[1]");
        let resent = ResendCheck::confirm_with(
            ResendCheck::of(&writes),
            Appended::Resent(vec![result]),
            |_, _| {
                let mut kept = stored(&changed, 0);
                kept.id = sent.id.unwrap();
                Ok(vec![kept])
            },
        );
        assert!(matches!(resent, Err(Error::IdempotencyConflict { .. })));
    }
}
