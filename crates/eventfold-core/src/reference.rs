//! Events that point at another event by `<revision>@<stream>`: the compensations
//! `$cancelled` and `$corrected`, the link `$link`, and the `$migrated_from` of a
//! surgery's copies.
//!
//! Compensations and links are the only event types starting with `$` that a client
//! may write (see [`CLIENT_SYSTEM_EVENT_TYPES`]): the shared append decision checks
//! their data here, so every backend refuses a malformed one alike.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::stream::Revision;

/// The type of the event that cancels an earlier one (a full reversal): data
/// `{"event": "<revision>@<stream>", "reason"?: "..."}`. The event stays in its stream;
/// the framework folds the stream as if it had not happened.
pub const CANCELLED_EVENT_TYPE: &str = "$cancelled";

/// The type of the event that corrects an earlier one (a partial reversal): data
/// `{"event": "<revision>@<stream>", "data": PATCH, "reason"?: "..."}`, where `PATCH`
/// is a JSON merge patch (RFC 7386) of the original's data: the fields it names are
/// replaced (`null` removes one), the others kept.
pub const CORRECTED_EVENT_TYPE: &str = "$corrected";

/// The type of a link: data `{"event": "<revision>@<stream>"}`. A read of a stream
/// returns the event it points at in its place (see
/// [`ReadStream::links_as_written`](crate::ReadStream::links_as_written)); `$all`
/// holds the link itself.
pub const LINK_EVENT_TYPE: &str = "$link";

/// The metadata key of an event a read returns in place of a link: the
/// `"<revision>@<stream>"` of the original event. Its stream, revision and position
/// are the link's (where the read found it); its id, type, version, data, the rest of
/// its metadata and its `recorded_at` are the original's.
pub const LINKED_EVENT_KEY: &str = "$linked_event";

/// The event types starting with `$` that a client may write: each points at an
/// earlier event, and its data is checked by [`referenced_event`].
pub const CLIENT_SYSTEM_EVENT_TYPES: &[&str] =
    &[CANCELLED_EVENT_TYPE, CORRECTED_EVENT_TYPE, LINK_EVENT_TYPE];

/// The system stream of the notices a stream surgery writes for projections.
pub const INVALIDATIONS_STREAM: &str = "$invalidations";

/// The type of the notice that events of a stream are no longer part of the truth:
/// data `{"stream": "...", "before": REVISION, "surgery": "<operation>"}`. The events
/// of `stream` below revision `before` were replaced (copied elsewhere, or copied in
/// place after them); a projection that folded them rebuilds without them.
pub const INVALIDATED_EVENT_TYPE: &str = "$invalidated";

/// An event named by its stream and revision, written `<revision>@<stream>`.
///
/// ```
/// use eventfold_core::{EventRef, Revision};
/// let at: EventRef = "3@order-1".parse().unwrap();
/// assert_eq!(at, EventRef::new("order-1", Revision(3)));
/// assert_eq!(at.to_string(), "3@order-1");
/// assert!("order-1".parse::<EventRef>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventRef {
    /// The stream the event is in.
    pub stream: String,
    /// Its revision there.
    pub revision: Revision,
}

impl EventRef {
    /// The event at `revision` of `stream`.
    pub fn new(stream: impl Into<String>, revision: Revision) -> Self {
        EventRef {
            stream: stream.into(),
            revision,
        }
    }
}

impl fmt::Display for EventRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.revision.get(), self.stream)
    }
}

impl FromStr for EventRef {
    type Err = Error;

    /// Parses `<revision>@<stream>`; the stream may itself hold `@`.
    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidEvent {
            reason: format!(
                "'{}' is not an event reference <revision>@<stream>: {why}",
                text.chars().take(80).collect::<String>()
            ),
        };
        let (revision, stream) = text.split_once('@').ok_or_else(|| bad("no '@'"))?;
        let revision = revision
            .parse::<u64>()
            .map_err(|_| bad("the revision is not a whole number"))?;
        if stream.is_empty() {
            return Err(bad("the stream is empty"));
        }
        Ok(EventRef::new(stream, Revision(revision)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pointer {
    event: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

/// The event that an event of `event_type` with `data` points at, when the type is
/// one of [`CLIENT_SYSTEM_EVENT_TYPES`]; `None` for every other type. Fails, naming
/// the problem, when the data is not what the type asks for.
///
/// ```
/// use eventfold_core::{referenced_event, CANCELLED_EVENT_TYPE};
/// let data = br#"{"event": "2@order-1", "reason": "typed twice"}"#;
/// let at = referenced_event(CANCELLED_EVENT_TYPE, data).unwrap().unwrap();
/// assert_eq!(at.to_string(), "2@order-1");
/// assert!(referenced_event(CANCELLED_EVENT_TYPE, br#"{"reason": "x"}"#).is_err());
/// assert!(referenced_event("OrderPlaced", b"{}").unwrap().is_none());
/// ```
pub fn referenced_event(event_type: &str, data: &[u8]) -> Result<Option<EventRef>> {
    if !CLIENT_SYSTEM_EVENT_TYPES.contains(&event_type) {
        return Ok(None);
    }
    let bad = |why: String| Error::InvalidEvent {
        reason: format!("a {event_type} event {why}"),
    };
    let pointer: Pointer = serde_json::from_slice(data).map_err(|e| {
        bad(format!(
            "needs data {{\"event\": \"<revision>@<stream>\"{}}}: {e}",
            match event_type {
                CORRECTED_EVENT_TYPE => ", \"data\": <merge patch>, \"reason\"?",
                CANCELLED_EVENT_TYPE => ", \"reason\"?",
                _ => "",
            }
        ))
    })?;
    let at: EventRef = pointer.event.parse()?;
    match event_type {
        CORRECTED_EVENT_TYPE if pointer.data.is_none() => {
            return Err(bad(
                "needs \"data\": the merge patch that corrects the original's data".into(),
            ));
        }
        CANCELLED_EVENT_TYPE if pointer.data.is_some() => {
            return Err(bad(
                "takes no \"data\" (a correction is a $corrected event)".into(),
            ));
        }
        LINK_EVENT_TYPE if pointer.reason.is_some() || pointer.data.is_some() => {
            return Err(bad("takes only \"event\"".into()));
        }
        _ => {}
    }
    crate::stream::validate_stream_name(&at.stream)?;
    Ok(Some(at))
}

/// Applies the JSON merge patch `patch` (RFC 7386) to `target`: an object patch sets
/// each of its fields (recursively; `null` removes the field), any other patch
/// replaces the whole value. What a `$corrected` event does to its original's data.
///
/// ```
/// use eventfold_core::merge_patch;
/// use serde_json::json;
/// let mut data = json!({"amount": 1000, "currency": "EUR", "note": "x"});
/// merge_patch(&mut data, &json!({"amount": 10, "note": null}));
/// assert_eq!(data, json!({"amount": 10, "currency": "EUR"}));
/// ```
// Written here rather than taken from a crate: it is a dozen lines, and the crates
// that offer it (json-patch) bring a whole JSON Patch implementation we do not need.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    let serde_json::Value::Object(object) = target else {
        return;
    };
    for (key, value) in fields {
        if value.is_null() {
            object.remove(key);
        } else {
            merge_patch(
                object.entry(key.clone()).or_insert(serde_json::Value::Null),
                value,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_what_is_wrong_with_them() {
        for (text, why) in [
            ("order-1", "no '@'"),
            ("x@order-1", "whole number"),
            ("3@", "stream is empty"),
        ] {
            let err = text.parse::<EventRef>().unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert_eq!(
            "7@a@b".parse::<EventRef>().unwrap(),
            EventRef::new("a@b", Revision(7))
        );
    }

    #[test]
    fn each_pointing_type_takes_only_its_own_fields() {
        let ok = [
            (CANCELLED_EVENT_TYPE, r#"{"event": "1@s"}"#),
            (
                CORRECTED_EVENT_TYPE,
                r#"{"event": "1@s", "data": {"a": 1}}"#,
            ),
            (LINK_EVENT_TYPE, r#"{"event": "0@s"}"#),
        ];
        for (kind, data) in ok {
            assert!(referenced_event(kind, data.as_bytes()).unwrap().is_some());
        }
        let refused = [
            (
                CANCELLED_EVENT_TYPE,
                r#"{"event": "1@s", "data": {}}"#,
                "no \"data\"",
            ),
            (CORRECTED_EVENT_TYPE, r#"{"event": "1@s"}"#, "merge patch"),
            (
                LINK_EVENT_TYPE,
                r#"{"event": "0@s", "reason": "r"}"#,
                "only",
            ),
            (LINK_EVENT_TYPE, r#"{"event": "0@$schemas"}"#, "reserved"),
            (CANCELLED_EVENT_TYPE, r#"{"evnt": "1@s"}"#, "unknown field"),
            (CANCELLED_EVENT_TYPE, r#"[]"#, "needs data"),
        ];
        for (kind, data, why) in refused {
            let err = referenced_event(kind, data.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{kind} {data}: {err}");
        }
    }

    #[test]
    fn a_merge_patch_replaces_non_objects_and_nests_into_objects() {
        use serde_json::json;
        let mut data = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge_patch(&mut data, &json!({"a": {"c": null, "e": 3}, "d": [2]}));
        assert_eq!(data, json!({"a": {"b": 1, "e": 3}, "d": [2]}));
        let mut scalar = json!(5);
        merge_patch(&mut scalar, &json!({"x": 1}));
        assert_eq!(scalar, json!({"x": 1}));
    }
}
