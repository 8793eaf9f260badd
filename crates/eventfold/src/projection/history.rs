//! The history as corrected, as a track of the runner reads it: the compensations
//! (`$cancelled`, `$corrected`) and the surgery notices (`$invalidated`) written up to
//! the generation's horizon are applied as the events they point at go by; those
//! written after it reach the projections' hooks when the track meets them.
//!
//! The horizon is the generation's `replay_until` (the live generation's checkpoint
//! when a rebuild started, or the head a first generation replays to): fixed for the
//! generation's life, so a track that stops and starts again treats every event the
//! same way.

use std::collections::HashMap;

use eventfold_core::{
    CANCELLED_EVENT_TYPE, CORRECTED_EVENT_TYPE, EventStore, INVALIDATED_EVENT_TYPE,
    INVALIDATIONS_STREAM, Position, ReadStream, RecordedEvent, Revision,
};
use serde::Deserialize;

use crate::compensation::{Compensation, Corrections};

/// A compensation written after the horizon, with the event it compensates as it was
/// stored.
#[derive(Debug, Clone)]
pub struct Compensated {
    /// The compensation.
    pub compensation: Compensation,
    /// The compensated event as the generation applied it: as stored, with the
    /// compensations known when its build started (`None` when it was not applied:
    /// cancelled before, or no longer readable).
    pub original: Option<RecordedEvent>,
}

impl Compensated {
    /// The original as corrected: `None` when cancelled (or unreadable), its data with
    /// the patch merged in when corrected.
    pub fn corrected(&self) -> Option<RecordedEvent> {
        let mut corrections = Corrections::new();
        corrections.insert(uuid::Uuid::nil(), self.compensation.clone());
        corrections.apply(self.original.clone()?).ok().flatten()
    }
}

/// A surgery's notice that the events of `stream` below revision `before` were
/// replaced (copied elsewhere, or copied in place after them).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Invalidation {
    /// The stream whose events were replaced.
    pub stream: String,
    /// Its events below this revision are no longer part of the history.
    pub before: u64,
    /// The surgery (`copy-replace`, `split`, `join`).
    #[serde(default)]
    pub surgery: String,
    /// Where the events went.
    #[serde(default)]
    pub replaced_by: Vec<String>,
}

/// A notice for the projections' hooks.
#[derive(Debug, Clone)]
pub(crate) enum Notice {
    Compensated(Compensated),
    Invalidated(Invalidation),
}

/// What a track does with an event of `$all`.
pub(crate) enum Seen {
    /// Nothing: a cancelled or replaced event, or a notice applied already.
    Skip,
    /// A notice written after the horizon (the event that carries it): to the hooks.
    Notice(Box<Notice>, RecordedEvent),
    /// An event to apply, as corrected.
    Event(RecordedEvent),
}

/// The compensations and notices up to a horizon.
#[derive(Debug, Default)]
pub(crate) struct History {
    horizon: Option<Position>,
    corrections: Corrections,
    /// Per stream, the revision below which its events were replaced.
    replaced: HashMap<String, u64>,
}

impl History {
    /// Reads every compensation and notice at or before `horizon`.
    pub(crate) async fn load(
        store: &dyn EventStore,
        horizon: Option<Position>,
    ) -> eventfold_core::Result<Self> {
        let mut history = History {
            horizon,
            ..History::default()
        };
        let Some(horizon) = horizon else {
            return Ok(history);
        };
        for event_type in [CANCELLED_EVENT_TYPE, CORRECTED_EVENT_TYPE] {
            let index = format!("$et-{event_type}");
            for event in read_up_to(store, &index, horizon).await? {
                if let Some(compensation) = Compensation::of(&event)? {
                    history.corrections.insert(event.id, compensation);
                }
            }
        }
        for event in read_up_to(store, INVALIDATIONS_STREAM, horizon).await? {
            history.note(invalidation(&event)?);
        }
        Ok(history)
    }

    fn note(&mut self, invalidation: Invalidation) {
        let before = self.replaced.entry(invalidation.stream).or_default();
        *before = (*before).max(invalidation.before);
    }

    /// What to do with `event`; a notice after the horizon reads the event it
    /// points at from `store`.
    pub(crate) async fn see(
        &self,
        store: &dyn EventStore,
        event: RecordedEvent,
    ) -> eventfold_core::Result<Seen> {
        let after_horizon = self.horizon.is_none_or(|h| event.position > h);
        if let Some(compensation) = Compensation::of(&event)? {
            if !after_horizon {
                return Ok(Seen::Skip);
            }
            let at = compensation.target();
            let read = ReadStream::forward()
                .from(at.revision)
                .limit(1)
                .links_as_written();
            let stored = match store.read_stream(&at.stream, read).await {
                Ok(events) => events.into_iter().find(|e| e.revision == at.revision),
                Err(eventfold_core::Error::StreamNotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            // As this generation applied it: with the compensations it knew.
            let original = match stored {
                Some(stored) => self.corrections.apply(stored)?,
                None => None,
            };
            let notice = Notice::Compensated(Compensated {
                compensation,
                original,
            });
            return Ok(Seen::Notice(Box::new(notice), event));
        }
        if event.stream == INVALIDATIONS_STREAM && event.event_type == INVALIDATED_EVENT_TYPE {
            if !after_horizon {
                return Ok(Seen::Skip);
            }
            let notice = Notice::Invalidated(invalidation(&event)?);
            return Ok(Seen::Notice(Box::new(notice), event));
        }
        if self
            .replaced
            .get(&event.stream)
            .is_some_and(|before| event.revision < Revision(*before))
        {
            return Ok(Seen::Skip);
        }
        Ok(match self.corrections.apply(event)? {
            Some(event) => Seen::Event(event),
            None => Seen::Skip,
        })
    }
}

fn invalidation(event: &RecordedEvent) -> eventfold_core::Result<Invalidation> {
    event.data_as()
}

/// The events of `stream` at or before `horizon` (none when it does not exist).
async fn read_up_to(
    store: &dyn EventStore,
    stream: &str,
    horizon: Position,
) -> eventfold_core::Result<Vec<RecordedEvent>> {
    match store
        .read_stream(stream, ReadStream::forward().links_as_written())
        .await
    {
        Ok(mut events) => {
            events.retain(|e| e.position <= horizon);
            Ok(events)
        }
        Err(eventfold_core::Error::StreamNotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
