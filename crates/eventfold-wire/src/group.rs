//! Consumer groups on the wire: the deliveries `next` answers, and the bodies of
//! `ack`, `nack` and `parked/replay`.

use eventfold_core::RecordedEvent;
use eventfold_subscription::Nack;
use serde::{Deserialize, Serialize};

/// One delivery of a consumer group: the event, and how many times it was delivered
/// (this one included, from 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The event, in its wire form.
    #[serde(with = "crate::event::one")]
    pub event: RecordedEvent,
    /// The attempt, from 1.
    pub attempt: u32,
}

/// What `GET /subscriptions/{group}/next` answers. Stored events travel as the raw
/// JSON they are, never through a `serde_json::Value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deliveries {
    /// The deliveries, oldest first.
    pub deliveries: Vec<Delivery>,
}

/// The body of `POST /subscriptions/{group}/ack`: `{"positions": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Positions {
    /// The positions of the deliveries handled.
    pub positions: Vec<u64>,
}

/// The body of `POST /subscriptions/{group}/nack`: `{"positions", "action"?:
/// "retry" | "park" | "skip", "reason"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NackBody {
    /// The positions of the deliveries not handled.
    pub positions: Vec<u64>,
    /// What to do with them; `retry` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Nack>,
    /// Why, kept with a parked event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The body of `POST /subscriptions/{group}/parked/replay`: `{"positions"?: [...]}`
/// (every parked event when absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// The parked positions to deliver again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<Vec<u64>>,
}
