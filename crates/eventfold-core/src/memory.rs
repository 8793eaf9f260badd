//! An in-memory `EventStore`: the reference model for property tests and a fast
//! store for unit tests of code written against the trait. Nothing is durable.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::Utc;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::plan::{AppendPlan, AppendView, EventLocation, StreamEnd, check_writes, plan_append};
use crate::resend::{Appended, ResendCheck};
use crate::store::{
    AllSlice, AppendResult, Direction, EventStore, ReadAll, ReadStream, StreamWrite,
};
use crate::stream::{Position, Revision};

/// An event store held in memory, with the same semantics as the durable backends.
#[derive(Debug)]
pub struct InMemoryStore {
    state: Mutex<State>,
    /// The position the next event gets, for subscriptions waiting at the end.
    head: tokio::sync::watch::Sender<u64>,
}

impl Default for InMemoryStore {
    fn default() -> Self {
        InMemoryStore {
            state: Mutex::default(),
            head: tokio::sync::watch::Sender::new(0),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    log: Vec<RecordedEvent>,
    streams: HashMap<String, Vec<usize>>,
    ids: HashMap<Uuid, usize>,
}

impl AppendView for State {
    fn last_revision(&self, stream: &str) -> Result<Option<Revision>> {
        Ok(self
            .streams
            .get(stream)
            .map(|events| Revision(events.len() as u64 - 1)))
    }

    fn find_id(&self, id: &Uuid) -> Result<Option<EventLocation>> {
        Ok(self.ids.get(id).map(|&i| {
            let e = &self.log[i];
            EventLocation {
                stream: e.stream.clone(),
                revision: e.revision,
                position: e.position,
            }
        }))
    }

    fn event_at(&self, stream: &str, revision: Revision) -> Result<Option<(Uuid, Position)>> {
        Ok(self
            .streams
            .get(stream)
            .and_then(|events| events.get(revision.0 as usize))
            .map(|&i| (self.log[i].id, self.log[i].position)))
    }

    fn stream_end(&self, stream: &str, last: Revision) -> Result<StreamEnd> {
        Ok(self
            .streams
            .get(stream)
            .and_then(|events| events.get(last.0 as usize))
            .map_or(StreamEnd::Open, |&i| {
                StreamEnd::of(&self.log[i].event_type, &self.log[i].data)
            }))
    }
}

/// Waits until `head` (the position the next event gets) has passed `position`. Shared
/// by the backends that publish their head through a watch channel.
pub async fn wait_for_head(
    head: &tokio::sync::watch::Sender<u64>,
    position: Position,
) -> Result<()> {
    head.subscribe()
        .wait_for(|&next| next > position.get())
        .await
        .map(|_| ())
        .map_err(|_| Error::Closed)
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that
        // matters for a test model, so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl InMemoryStore {
    /// Decides and writes an append under the lock.
    fn append_locked(&self, writes: Vec<StreamWrite>) -> Result<Appended> {
        let writes = check_writes(writes)?;
        let mut state = self.state();
        let planned = match plan_append(&*state, writes)? {
            AppendPlan::AlreadyWritten(results) => return Ok(Appended::Resent(results)),
            AppendPlan::Write(planned) => planned,
        };
        let recorded_at = Utc::now();
        let mut results = Vec::with_capacity(planned.len());
        for write in planned {
            let count = write.events.len() as u64;
            for (i, planned_event) in write.events.into_iter().enumerate() {
                let index = state.log.len();
                state.log.push(RecordedEvent {
                    stream: write.stream.clone(),
                    revision: Revision(write.first_revision.0 + i as u64),
                    position: Position(index as u64),
                    id: planned_event.id,
                    event_type: planned_event.event.event_type,
                    version: planned_event.event.version,
                    data: planned_event.event.data,
                    metadata: planned_event.event.metadata,
                    recorded_at: planned_event.recorded_at.unwrap_or(recorded_at),
                });
                state
                    .streams
                    .entry(write.stream.clone())
                    .or_default()
                    .push(index);
                state.ids.insert(planned_event.id, index);
            }
            results.push(AppendResult {
                first_revision: write.first_revision,
                last_revision: Revision(write.first_revision.0 + count - 1),
                position: Position(state.log.len() as u64 - 1),
            });
        }
        self.head.send_replace(state.log.len() as u64);
        Ok(Appended::Written(results))
    }
}

#[async_trait]
impl EventStore for InMemoryStore {
    async fn append_multi(&self, writes: Vec<StreamWrite>) -> Result<Vec<AppendResult>> {
        let check = ResendCheck::of(&writes);
        let appended = self.append_locked(writes)?;
        ResendCheck::confirm(check, appended, self).await
    }

    async fn read_stream(&self, stream: &str, options: ReadStream) -> Result<Vec<RecordedEvent>> {
        if let Some(index) = crate::IndexStream::parse(stream) {
            return crate::read_index_stream(self, stream, &index, options).await;
        }
        let state = self.state();
        let indexes = state
            .streams
            .get(stream)
            .ok_or_else(|| Error::StreamNotFound {
                stream: stream.to_string(),
            })?;
        let range = options.revisions(indexes.len() as u64);
        let mut events: Vec<RecordedEvent> = indexes[range.start as usize..range.end as usize]
            .iter()
            .map(|&i| state.log[i].clone())
            .collect();
        if options.direction == Direction::Backward {
            events.reverse();
        }
        Ok(events)
    }

    async fn read_all(&self, options: ReadAll) -> Result<AllSlice> {
        let state = self.state();
        let mut events = Vec::new();
        let mut next = options.from.0 as usize;
        while next < state.log.len() && (events.len() as u64) < options.limit {
            let event = &state.log[next];
            if options.filter.matches(&event.stream, &event.event_type) {
                events.push(event.clone());
            }
            next += 1;
        }
        Ok(AllSlice {
            events,
            next: Position(next as u64),
            end_of_log: next >= state.log.len(),
        })
    }

    async fn stream_revision(&self, stream: &str) -> Result<Option<Revision>> {
        self.state().last_revision(stream)
    }

    async fn list_streams(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::StreamSummary>> {
        let state = self.state();
        let streams = state
            .streams
            .iter()
            .map(|(stream, indexes)| crate::StreamSummary {
                stream: stream.clone(),
                last_revision: Revision(indexes.len() as u64 - 1),
            });
        Ok(crate::select_streams(streams, prefix, after, limit))
    }

    fn storage_metrics(&self) -> Vec<crate::StoreMetric> {
        Vec::new()
    }

    async fn head_position(&self) -> Result<Option<Position>> {
        let len = self.state().log.len() as u64;
        Ok(len.checked_sub(1).map(Position))
    }

    async fn wait_for(&self, position: Position) -> Result<()> {
        wait_for_head(&self.head, position).await
    }
}
