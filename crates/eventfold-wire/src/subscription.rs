//! Live subscriptions (`GET /subscribe/...`) as Server-Sent Events: each event is a
//! message whose `id:` is where to resume (`Last-Event-ID`) and whose `data:` is the
//! event in its wire form on one line; a failure is a message named `error` whose data
//! is the reason, and ends the subscription.

use eventfold_core::RecordedEvent;

/// The `event:` name of the message that reports a failure.
pub const ERROR_EVENT: &str = "error";

/// One message of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionMessage {
    /// An event: `id:` the revision (stream subscriptions) or the position (`$all` and
    /// index streams), `data:` the event as one JSON line.
    Event {
        /// The id a reconnecting client sends back as `Last-Event-ID`.
        id: u64,
        /// The event, as [`crate::event_json_line`] writes it.
        data: String,
    },
    /// The subscription failed and ends: `event: error`, `data:` the reason.
    Error {
        /// What went wrong.
        message: String,
    },
}

impl SubscriptionMessage {
    /// The message of `event`, resumable at `id`.
    pub fn event(id: u64, event: &RecordedEvent) -> Self {
        SubscriptionMessage::Event {
            id,
            data: crate::event_json_line(event),
        }
    }

    /// The message that ends a subscription with `error`.
    pub fn error(error: &impl std::fmt::Display) -> Self {
        SubscriptionMessage::Error {
            message: error.to_string(),
        }
    }

    /// Whether a line of the SSE text stream carries an event's id, that is, whether
    /// an event was received.
    pub fn is_id_line(line: &str) -> bool {
        line.starts_with("id:")
    }
}
