//! Compensating events: the cheapest fix of a wrong event. The wrong event stays in
//! its stream; a `$cancelled` (full reversal) or `$corrected` (partial reversal: a
//! JSON merge patch of its data) event written after it points at it by
//! `<revision>@<stream>`, and the framework folds the history *as corrected*:
//!
//! - the [`Repository`](crate::Repository) leaves a cancelled event out of an
//!   aggregate's fold and folds a corrected one with its corrected data (see
//!   [`Repository::cancel`](crate::Repository::cancel) and
//!   [`Repository::correct`](crate::Repository::correct));
//! - the projection runner does the same when it builds a read model, and hands a
//!   compensation that arrives after its original to
//!   [`Projection::compensate`](crate::projection::Projection::compensate).
//!
//! ```
//! use eventfold::compensation::Compensation;
//! use eventfold_core::{EventRef, Revision};
//! let fix = Compensation::correct(
//!     EventRef::new("order-1", Revision(2)),
//!     serde_json::json!({"amount": 10}),
//!     "typed 1000 for 10",
//! );
//! let event = fix.to_event().unwrap();
//! assert_eq!(event.event_type, "$corrected");
//! ```

use std::collections::HashMap;

use eventfold_core::{
    CANCELLED_EVENT_TYPE, CORRECTED_EVENT_TYPE, EventData, EventRef, RecordedEvent, merge_patch,
};
use serde_json::{Value, json};

/// A compensation of one earlier event.
#[derive(Debug, Clone, PartialEq)]
pub enum Compensation {
    /// The event is cancelled: folds leave it out.
    Cancelled {
        /// The cancelled event.
        event: EventRef,
        /// Why.
        reason: Option<String>,
    },
    /// The event is corrected: folds see its data with `patch` merged in.
    Corrected {
        /// The corrected event.
        event: EventRef,
        /// A JSON merge patch (RFC 7386) of its data as stored.
        patch: Value,
        /// Why.
        reason: Option<String>,
    },
}

impl Compensation {
    /// Cancels `event` (a full reversal).
    pub fn cancel(event: EventRef, reason: impl Into<String>) -> Self {
        Compensation::Cancelled {
            event,
            reason: Some(reason.into()),
        }
    }

    /// Corrects `event` by the merge patch `patch` of its data (a partial reversal).
    pub fn correct(event: EventRef, patch: Value, reason: impl Into<String>) -> Self {
        Compensation::Corrected {
            event,
            patch,
            reason: Some(reason.into()),
        }
    }

    /// The compensation `recorded` is, if it is one.
    pub fn of(recorded: &RecordedEvent) -> eventfold_core::Result<Option<Self>> {
        let Some(event) = eventfold_core::referenced_event(&recorded.event_type, &recorded.data)?
        else {
            return Ok(None);
        };
        let data: Value = recorded.data_as()?;
        let reason = data["reason"].as_str().map(str::to_string);
        Ok(match recorded.event_type.as_str() {
            CANCELLED_EVENT_TYPE => Some(Compensation::Cancelled { event, reason }),
            CORRECTED_EVENT_TYPE => Some(Compensation::Corrected {
                event,
                patch: data["data"].clone(),
                reason,
            }),
            // A link points at an event too, but changes nothing about it.
            _ => None,
        })
    }

    /// The event it compensates.
    pub fn target(&self) -> &EventRef {
        match self {
            Compensation::Cancelled { event, .. } | Compensation::Corrected { event, .. } => event,
        }
    }

    /// The event to append.
    pub fn to_event(&self) -> eventfold_core::Result<EventData> {
        let (event_type, mut data) = match self {
            Compensation::Cancelled { event, .. } => {
                (CANCELLED_EVENT_TYPE, json!({ "event": event.to_string() }))
            }
            Compensation::Corrected { event, patch, .. } => (
                CORRECTED_EVENT_TYPE,
                json!({ "event": event.to_string(), "data": patch }),
            ),
        };
        if let Compensation::Cancelled {
            reason: Some(reason),
            ..
        }
        | Compensation::Corrected {
            reason: Some(reason),
            ..
        } = self
        {
            data["reason"] = reason.clone().into();
        }
        EventData::json(event_type, &data)
    }
}

/// What the compensations known so far do to the events they point at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Corrections {
    /// The ids of the compensation events recorded.
    seen: std::collections::HashSet<uuid::Uuid>,
    cancelled: std::collections::HashSet<EventRef>,
    corrected: HashMap<EventRef, Vec<Value>>,
}

impl Corrections {
    /// No compensation known.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `compensation`, the event with id `id`; `false` when that event was
    /// known already. Two corrections with the same patch are two corrections (a
    /// value corrected, corrected again, then back).
    pub fn insert(&mut self, id: uuid::Uuid, compensation: Compensation) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        match compensation {
            Compensation::Cancelled { event, .. } => {
                self.cancelled.insert(event);
            }
            Compensation::Corrected { event, patch, .. } => {
                self.corrected.entry(event).or_default().push(patch);
            }
        }
        true
    }

    /// Whether no compensation is known.
    pub fn is_empty(&self) -> bool {
        self.cancelled.is_empty() && self.corrected.is_empty()
    }

    /// `event` as corrected: `None` when it is cancelled, its data with every known
    /// correction merged in (in the order they were written) when it is corrected,
    /// else as it is.
    pub fn apply(&self, mut event: RecordedEvent) -> eventfold_core::Result<Option<RecordedEvent>> {
        let at = EventRef::new(event.stream.clone(), event.revision);
        if self.cancelled.contains(&at) {
            return Ok(None);
        }
        if let Some(patches) = self.corrected.get(&at) {
            let mut data: Value = event.data_as()?;
            for patch in patches {
                merge_patch(&mut data, patch);
            }
            event.data = data.to_string().into_bytes().into();
        }
        Ok(Some(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventfold_core::{Position, Revision};

    fn recorded(stream: &str, revision: u64, event: &EventData) -> RecordedEvent {
        RecordedEvent {
            stream: stream.into(),
            revision: Revision(revision),
            position: Position(revision),
            id: uuid::Uuid::new_v4(),
            event_type: event.event_type.clone(),
            version: 1,
            data: event.data.clone(),
            metadata: b"{}".to_vec().into(),
            recorded_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_compensation_reads_back_as_it_was_written() {
        let at = EventRef::new("order-1", Revision(1));
        for fix in [
            Compensation::cancel(at.clone(), "sent twice"),
            Compensation::correct(at.clone(), json!({"amount": 10}), "typo"),
        ] {
            let event = recorded("order-1", 5, &fix.to_event().expect("event"));
            assert_eq!(Compensation::of(&event).expect("parse"), Some(fix));
        }
        let placed = EventData::json("Placed", &json!({})).expect("event");
        assert_eq!(
            Compensation::of(&recorded("order-1", 0, &placed)).expect("parse"),
            None
        );
    }

    #[test]
    fn corrections_leave_out_the_cancelled_and_patch_the_corrected_in_order() {
        let paid =
            EventData::json("Paid", &json!({"amount": 1000, "currency": "EUR"})).expect("event");
        let mut corrections = Corrections::new();
        let id = |n: u128| uuid::Uuid::from_u128(n);
        let to = |amount: i64| {
            Compensation::correct(
                EventRef::new("order-1", Revision(1)),
                json!({ "amount": amount }),
                "typo",
            )
        };
        // 1000 → 10, then 10 → 100, then back to 10: the last one counts.
        assert!(corrections.insert(id(1), to(10)));
        assert!(corrections.insert(id(2), to(100)));
        assert!(corrections.insert(id(3), to(10)));
        assert!(!corrections.insert(id(3), to(10)), "the same event twice");
        assert!(corrections.insert(
            id(4),
            Compensation::cancel(EventRef::new("order-1", Revision(2)), "sent twice"),
        ));
        let fixed = corrections
            .apply(recorded("order-1", 1, &paid))
            .expect("apply")
            .expect("kept");
        let data: Value = serde_json::from_slice(&fixed.data).expect("JSON");
        assert_eq!(data, json!({"amount": 10, "currency": "EUR"}));
        assert!(
            corrections
                .apply(recorded("order-1", 2, &paid))
                .expect("apply")
                .is_none()
        );
        let other = corrections
            .apply(recorded("order-2", 1, &paid))
            .expect("apply")
            .expect("kept");
        assert_eq!(other.data, paid.data);
    }
}
