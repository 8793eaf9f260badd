//! Answers that page: events of a stream or of `$all`, stream names; and the small
//! answers the client reads (a stream's head, health).

use eventfold_core::{Position, RecordedEvent, Revision, StreamSummary};
use serde::{Deserialize, Serialize};

/// A page of events: `GET /streams/{stream}` (with `end_of_stream`) and `GET /all`
/// (with `end_of_log`). A page stops at the event limit or at about the server's byte
/// cap, whichever comes first; `next` says where the following one starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsPage {
    /// The events, in their wire form.
    #[serde(with = "crate::event::many")]
    pub events: Vec<RecordedEvent>,
    /// Where the following page starts (`from`): a revision, or a position for index
    /// streams and `$all`. Absent on an empty stream page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
    /// Stream reads: whether the page reached the end of the stream in its direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_stream: Option<bool>,
    /// `$all` reads: whether the page reached the end of the committed log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_log: Option<bool>,
}

/// `GET /streams`: stream names in order; `next` (always written, `null` on the last
/// page) is the `after` of the following page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamsPage {
    /// The name to list after, for the following page.
    pub next: Option<String>,
    /// The streams, with their last revision.
    pub streams: Vec<StreamSummary>,
}

/// `GET /streams/{stream}/head`: the stream's last revision, `null` when it was never
/// written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamHead {
    /// The last revision, hidden and deleted events counted.
    pub last_revision: Option<Revision>,
    /// The stream asked for.
    pub stream: String,
}

/// `GET /health`: `{"head_position", "status": "ok"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// The position of the last event of the log, `null` when it is empty.
    pub head_position: Option<Position>,
    /// Always `ok` (an unhealthy server answers an error).
    pub status: String,
}

impl Health {
    /// A healthy answer.
    pub fn ok(head_position: Option<Position>) -> Self {
        Health {
            head_position,
            status: "ok".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_page_fields_are_left_out_and_a_last_page_says_null() {
        let page = EventsPage {
            events: Vec::new(),
            next: None,
            end_of_stream: Some(true),
            end_of_log: None,
        };
        assert_eq!(
            serde_json::to_string(&page).unwrap(),
            r#"{"events":[],"end_of_stream":true}"#
        );
        let streams = StreamsPage {
            next: None,
            streams: Vec::new(),
        };
        assert_eq!(
            serde_json::to_string(&streams).unwrap(),
            r#"{"next":null,"streams":[]}"#
        );
        assert_eq!(
            serde_json::to_string(&Health::ok(Some(Position(3)))).unwrap(),
            r#"{"head_position":3,"status":"ok"}"#
        );
    }
}
