//! Internal events and the contracts other services read: a [`Translator`] maps the
//! events a service keeps for itself to the events it publishes (or, the other way, a
//! contract it consumes to events of its own), and a [`Translation`] keeps a stream of
//! the translated events up to date.
//!
//! The internal model can then change freely: only the translator follows it, while
//! the published contract keeps its own names and versions ([`DomainEvent::TYPES`] of
//! the contract's type, upcast by its readers as any other event), in a stream of its
//! own (`contract-orders.v1`, say) that consumers read or a bridge forwards to a topic.
//!
//! A translation reads the source's `$all`, filtered to the source type's event types,
//! and appends what the translator makes of each event to its stream, in one append
//! per page. Every translated event records where it came from: its id derives from the
//! source event's id, its causation id is that id, its correlation id the source's,
//! and its metadata holds the source's position under [`SOURCE_POSITION_KEY`]. So a
//! translation resumes after the last source position its stream holds, translates
//! nothing twice, and two translations racing on one stream cannot both write a page
//! (each append expects the revision the page was translated after).

use std::sync::Arc;
use std::time::Duration;

use eventfold_core::{
    AllFilter, Error as StoreError, EventData, EventStore, ExpectedVersion, Position, ReadAll,
    RecordedEvent,
};
use uuid::Uuid;

use crate::PAGE_EVENTS;
use crate::error::{Error, Result};
use crate::event::DomainEvent;
use crate::repository::last_event;

/// The metadata key under which a translated event records its source's position.
pub const SOURCE_POSITION_KEY: &str = "$source_position";

/// Maps one model's events to another's: internal events to a published contract, or
/// a consumed contract to internal events.
pub trait Translator: Send + Sync + 'static {
    /// The events it reads.
    type From: DomainEvent;
    /// The events it writes.
    type To: DomainEvent;

    /// What `event` (recorded as `source`) becomes: nothing, one event, or several.
    /// Pure: translating the same event again must give the same events.
    fn translate(&self, event: &Self::From, source: &RecordedEvent) -> Vec<Self::To>;
}

/// Keeps `stream` in `target` up to date with what a [`Translator`] makes of the
/// events in `source`.
pub struct Translation<T: Translator> {
    source: Arc<dyn EventStore>,
    target: Arc<dyn EventStore>,
    stream: String,
    translator: T,
    /// Where the last catch-up ended: the stream's revision and the next source
    /// position (past source events that translated to nothing).
    resume_at: tokio::sync::Mutex<Option<(ExpectedVersion, Position)>>,
}

impl<T: Translator> Translation<T> {
    /// Translates events of `store` into its stream `stream` (a published contract).
    pub fn new(store: Arc<dyn EventStore>, stream: impl Into<String>, translator: T) -> Self {
        Self::between(store.clone(), store, stream, translator)
    }

    /// Translates events of `source` (another service's store, over HTTP for one) into
    /// stream `stream` of `target`.
    pub fn between(
        source: Arc<dyn EventStore>,
        target: Arc<dyn EventStore>,
        stream: impl Into<String>,
        translator: T,
    ) -> Self {
        Translation {
            source,
            target,
            stream: stream.into(),
            translator,
            resume_at: tokio::sync::Mutex::new(None),
        }
    }

    /// The stream written.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Translates every source event not translated yet; returns how many events it
    /// appended.
    pub async fn catch_up(&self) -> Result<usize> {
        let filter = AllFilter {
            event_types: T::From::TYPES.iter().map(|t| t.name.to_string()).collect(),
            ..AllFilter::default()
        };
        let mut appended = 0;
        let mut resume_at = self.resume_at.lock().await;
        let (mut expected, mut next) = match *resume_at {
            Some(at) => at,
            None => self.resume().await?,
        };
        loop {
            let page = self
                .source
                .read_all(ReadAll::from(next, PAGE_EVENTS).filtered(filter.clone()))
                .await?;
            let mut batch = Vec::new();
            for event in &page.events {
                batch.extend(self.translated(event)?);
            }
            if !batch.is_empty() {
                let count = batch.len();
                match self.target.append(&self.stream, expected, batch).await {
                    Ok(written) => {
                        expected = ExpectedVersion::Exact(written.last_revision);
                        appended += count;
                    }
                    // Another translation wrote meanwhile: go on after what it wrote.
                    Err(StoreError::WrongExpectedVersion { .. }) => {
                        (expected, next) = self.resume().await?;
                        continue;
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            next = page.next;
            if page.end_of_log {
                *resume_at = Some((expected, next));
                return Ok(appended);
            }
        }
    }

    /// Translates for ever: catches up every `poll`. Returns only on an error.
    pub async fn run(&self, poll: Duration) -> Error {
        loop {
            if let Err(error) = self.catch_up().await {
                return error;
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// What the stream expects next and the source position to read from: after the
    /// source position its last event records.
    async fn resume(&self) -> Result<(ExpectedVersion, Position)> {
        let Some(last) = last_event(self.target.as_ref(), &self.stream).await? else {
            return Ok((ExpectedVersion::NoStream, Position::START));
        };
        let metadata: serde_json::Value = serde_json::from_slice(&last.metadata)
            .map_err(|error| self.not_translated(&last, &error.to_string()))?;
        let position = metadata
            .get(SOURCE_POSITION_KEY)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| self.not_translated(&last, "it has no source position"))?;
        Ok((
            ExpectedVersion::Exact(last.revision),
            Position(position).next(),
        ))
    }

    fn not_translated(&self, event: &RecordedEvent, why: &str) -> Error {
        Error::Store(StoreError::InvalidEvent {
            reason: format!(
                "event {} of stream '{}' was not written by a translation ({why}): the \
                 stream must hold translated events only",
                event.revision, self.stream
            ),
        })
    }

    /// The events `source` becomes, with ids and metadata that say where they came from.
    fn translated(&self, source: &RecordedEvent) -> Result<Vec<EventData>> {
        let Some(event) = T::From::decode(source)? else {
            return Ok(Vec::new());
        };
        let correlation_id = source.correlation_id().unwrap_or(source.id);
        self.translator
            .translate(&event, source)
            .iter()
            .enumerate()
            .map(|(index, out)| {
                let id = Uuid::new_v5(
                    &source.id,
                    format!("translation:{}:{index}", self.stream).as_bytes(),
                );
                let data = out.encode()?;
                // Beside what the event's own encoding put there (a `$personal` mark).
                let mut metadata: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&data.metadata).unwrap_or_default();
                metadata.insert(SOURCE_POSITION_KEY.into(), source.position.get().into());
                Ok(data
                    .with_metadata(&serde_json::Value::Object(metadata))?
                    .with_id(id)
                    .with_causation_id(source.id)
                    .with_correlation_id(correlation_id))
            })
            .collect()
    }
}
