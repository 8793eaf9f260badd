//! The outbox: a step's outputs are recorded with the step, published through a
//! [`Publisher`] only once recorded, then marked published; outputs still pending
//! after a stop are published again with the same ids.

use std::sync::Arc;

use async_trait::async_trait;
use eventfold_core::{EventData, EventStore, ExpectedVersion, Revision, StreamWrite};
use uuid::Uuid;

use super::records::{Record, decode_record};
use super::runner::ProcessRunner;
use super::trim::{Trim, trim};
use crate::error::Result;
use crate::event::DomainEvent;
use crate::repository::read_from;
use crate::streams;

/// Where a process's output goes.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes `messages` (ids, correlation and causation ids filled in).
    async fn publish(&self, messages: Vec<EventData>) -> eventfold_core::Result<()>;
}

/// A [`Publisher`] that appends the messages to one stream of a store.
///
/// ```
/// use std::sync::Arc;
/// use eventfold::process::StreamPublisher;
/// let publisher = StreamPublisher::new(Arc::new(eventfold::InMemoryStore::new()), "shipping-commands");
/// # let _ = publisher;
/// ```
#[derive(Clone)]
pub struct StreamPublisher {
    store: Arc<dyn EventStore>,
    stream: String,
}

impl StreamPublisher {
    /// Publishes to `stream` of `store`.
    pub fn new(store: Arc<dyn EventStore>, stream: impl Into<String>) -> Self {
        StreamPublisher {
            store,
            stream: stream.into(),
        }
    }
}

impl std::fmt::Debug for StreamPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPublisher")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Publisher for StreamPublisher {
    async fn publish(&self, messages: Vec<EventData>) -> eventfold_core::Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        self.store
            .append(&self.stream, ExpectedVersion::Any, messages)
            .await
            .map(|_| ())
    }
}

/// The steps with outputs pending, read so far from the outbox stream.
pub(super) struct Outbox {
    /// The next revision of the outbox stream to read.
    next: Revision,
    /// Pending: (step cause, correlation id, revision that queued it), oldest first.
    pending: Vec<(Uuid, Uuid, Revision)>,
    /// How much of the stream is no longer needed (see [`Trim`]).
    trim: Trim,
}

impl Outbox {
    /// Nothing read yet: the outbox stream is read from its start.
    pub(super) fn new() -> Self {
        Outbox {
            next: Revision::FIRST,
            pending: Vec::new(),
            trim: Trim::default(),
        }
    }
}

impl ProcessRunner {
    /// Publishes the outputs of every step that was recorded but whose outputs were not
    /// marked published (the process stopped, or the publisher failed, in between),
    /// reading newly queued ones from the store first; returns how many steps' outputs
    /// were published. Outputs keep their ids, so receivers drop what they already had.
    pub async fn publish_pending(&self) -> Result<usize> {
        let outbox_stream = streams::outbox(&self.name);
        let next = self.lock_outbox().next;
        let queued = read_from(self.store.as_ref(), &outbox_stream, next, u64::MAX).await?;
        let pending: Vec<(Uuid, Uuid, Revision)> = {
            let mut outbox = self.lock_outbox();
            for event in queued {
                // Decoded before the cursor moves past it, as for timeouts.
                let record = decode_record(&event)?;
                outbox.next = event.revision.next();
                match record {
                    Some(Record::OutputsQueued {
                        correlation_id,
                        cause,
                    }) => outbox.pending.push((cause, correlation_id, event.revision)),
                    Some(Record::OutputsPublished { cause, .. }) => {
                        outbox.pending.retain(|(c, _, _)| *c != cause);
                    }
                    _ => {}
                }
            }
            outbox.pending.clone()
        };
        let mut published = 0;
        for (cause, correlation_id, _) in pending {
            let stream = streams::process(&self.name, correlation_id);
            let outputs = self.replay(&stream).await?.and_then(|mut replayed| {
                let at = replayed.pending.iter().position(|(c, _)| *c == cause)?;
                Some(replayed.pending.remove(at).1)
            });
            // None: marked published in the instance (the mark in the outbox is
            // written with it, and read next time).
            if let Some(outputs) = outputs {
                self.publish_and_mark(&stream, correlation_id, cause, outputs)
                    .await?;
                published += 1;
            }
            self.lock_outbox().pending.retain(|(c, _, _)| *c != cause);
        }
        let due_trim = {
            let mut outbox = self.lock_outbox();
            let needed = outbox
                .pending
                .iter()
                .map(|(_, _, revision)| *revision)
                .min()
                .unwrap_or(outbox.next);
            outbox.trim.due(needed)
        };
        if let Some(needed) = due_trim {
            trim(self.store.as_ref(), &outbox_stream, needed).await;
        }
        Ok(published)
    }

    /// Publishes the recorded outputs of step `cause`, then marks them published in
    /// the instance stream and the outbox stream. The marks have ids derived from the
    /// cause, so two runners marking the same step write them once.
    pub(super) async fn publish_and_mark(
        &self,
        stream: &str,
        correlation_id: Uuid,
        cause: Uuid,
        outputs: Vec<EventData>,
    ) -> Result<()> {
        if !outputs.is_empty() {
            self.publisher.publish(outputs).await?;
        }
        let mark = Record::OutputsPublished {
            correlation_id,
            cause,
        };
        let encoded = |id: &[u8]| -> Result<EventData> {
            Ok(mark
                .encode()?
                .with_id(Uuid::new_v5(&cause, id))
                .with_correlation_id(correlation_id)
                .with_causation_id(cause))
        };
        self.store
            .append_multi(vec![
                StreamWrite::new(
                    stream,
                    ExpectedVersion::Any,
                    vec![encoded(b"outputs-published")?],
                ),
                StreamWrite::new(
                    streams::outbox(&self.name),
                    ExpectedVersion::Any,
                    vec![encoded(b"outputs-published-outbox")?],
                ),
            ])
            .await?;
        Ok(())
    }

    fn lock_outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        // As for the timeouts: consistent between statements.
        self.outbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
