//! Subscriptions: read everything from a starting point, then follow the log live.
//!
//! Written once, over any [`EventStore`]: a subscription reads pages of committed
//! events and, when it has read everything, waits with [`EventStore::wait_for`] for the
//! next position. Catch-up and live are the same loop, so the switch between them can
//! neither skip nor repeat an event, and a subscription never passes a position that
//! is not committed (reads only return committed events). It is pulled by its
//! consumer: nothing is read ahead of what the consumer asks for but one page, so a
//! slow consumer holds memory for one page at most.

use std::collections::VecDeque;
use std::ops::Deref;

use eventfold_core::{
    AllFilter, Error, EventStore, IndexStream, Position, ReadAll, ReadStream, RecordedEvent,
    Result, Revision,
};

/// Events read per page while catching up.
const PAGE_EVENTS: u64 = 512;

/// Bytes read per page while catching up, unless set with
/// [`Subscription::page_bytes_max`].
const PAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// What a subscription follows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// The global log, filtered (and, for an index stream, checked event by event).
    All {
        next: Position,
        filter: AllFilter,
        view: Option<IndexStream>,
    },
    /// One stream.
    Stream { stream: String, next: Revision },
}

/// A subscription to the global log or to one stream, catch-up then live.
///
/// ```
/// use std::sync::Arc;
/// use eventfold_core::{AllFilter, EventData, EventStore, ExpectedVersion, InMemoryStore};
/// use eventfold_subscription::Subscription;
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let store = Arc::new(InMemoryStore::new());
/// let placed = EventData::json("OrderPlaced", &1).unwrap();
/// store.append("order-1", ExpectedVersion::Any, vec![placed.clone()]).await.unwrap();
///
/// let mut orders = Subscription::to_all(store.clone(), None, AllFilter::default());
/// assert_eq!(orders.next().await.unwrap().stream, "order-1"); // caught up
/// store.append("order-2", ExpectedVersion::Any, vec![placed]).await.unwrap();
/// assert_eq!(orders.next().await.unwrap().stream, "order-2"); // live
/// # });
/// ```
#[derive(Debug)]
pub struct Subscription<S> {
    store: S,
    source: Source,
    buffer: VecDeque<RecordedEvent>,
    checkpoint: Option<u64>,
    page_bytes_max: usize,
}

impl<S, T> Subscription<S>
where
    S: Deref<Target = T>,
    T: EventStore + ?Sized,
{
    /// Follows the global log from just after `after` (from the start when `None`),
    /// returning only the events that pass `filter`.
    pub fn to_all(store: S, after: Option<Position>, filter: AllFilter) -> Self {
        let next = after.map_or(Position::START, Position::next);
        Subscription {
            store,
            source: Source::All {
                next,
                filter,
                view: None,
            },
            buffer: VecDeque::new(),
            checkpoint: after.map(Position::get),
            page_bytes_max: PAGE_BYTES_MAX,
        }
    }

    /// Follows one stream from just after `after` (from its start when `None`). The
    /// stream need not exist yet. An index stream (`$ce-`, `$et-`, `$correlation-`)
    /// is followed through `$all`: `after` and the checkpoint are then positions.
    pub fn to_stream(store: S, stream: impl Into<String>, after: Option<Revision>) -> Self {
        let stream = stream.into();
        if let Some(view) = IndexStream::parse(&stream) {
            let after = after.map(|r| Position(r.get()));
            return Subscription {
                store,
                source: Source::All {
                    next: after.map_or(Position::START, Position::next),
                    filter: view.filter(),
                    view: Some(view),
                },
                buffer: VecDeque::new(),
                checkpoint: after.map(Position::get),
                page_bytes_max: PAGE_BYTES_MAX,
            };
        }
        let next = after.map_or(Revision::FIRST, Revision::next);
        Subscription {
            store,
            source: Source::Stream { stream, next },
            buffer: VecDeque::new(),
            checkpoint: after.map(Revision::get),
            page_bytes_max: PAGE_BYTES_MAX,
        }
    }

    /// The next event, waiting for it to be appended if need be. An error (the store
    /// failed, or was closed) is returned as such, never swallowed; the subscription
    /// can be asked again and resumes where it was.
    pub async fn next(&mut self) -> Result<RecordedEvent> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.checkpoint = Some(match self.source {
                    Source::All { .. } => event.position.get(),
                    Source::Stream { .. } => event.revision.get(),
                });
                return Ok(event);
            }
            self.fill().await?;
        }
    }

    /// Caps a catch-up page at about `bytes` (as [`crate::page::event_bytes`] counts
    /// them; a larger event comes in a page of its own).
    pub fn page_bytes_max(mut self, bytes: usize) -> Self {
        self.page_bytes_max = bytes;
        self
    }

    /// Events read ahead and not yet returned: at most one page (512 events, and 4 MiB
    /// unless set with [`Subscription::page_bytes_max`]), whatever the backlog, so a
    /// slow consumer holds bounded memory.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The checkpoint to resume from: the position (for `$all`) or revision (for a
    /// stream) of the last event [`Subscription::next`] returned, if any. Pass it as
    /// `after` to a new subscription to continue exactly after that event.
    pub fn checkpoint(&self) -> Option<u64> {
        self.checkpoint
    }

    /// Reads the next page into the buffer, or waits until there is something to read.
    async fn fill(&mut self) -> Result<()> {
        match &mut self.source {
            Source::All { next, filter, view } => {
                let read = ReadAll::from(*next, PAGE_EVENTS).filtered(filter.clone());
                let mut page =
                    crate::page::read_all_page(&*self.store, read, self.page_bytes_max).await?;
                if let Some(view) = view {
                    page.events.retain(|e| view.contains(e));
                }
                *next = page.next;
                self.buffer.extend(page.events);
                if self.buffer.is_empty() && page.end_of_log {
                    self.store.wait_for(*next).await?;
                }
            }
            Source::Stream { stream, next } => {
                // The head is read first: an event appended after it wakes the wait.
                let head = self.store.head_position().await?;
                let read = ReadStream::forward().from(*next).limit(PAGE_EVENTS);
                let page =
                    crate::page::read_stream_page(&*self.store, stream, read, self.page_bytes_max);
                let events = match page.await {
                    Ok(page) => page.events,
                    Err(Error::StreamNotFound { .. }) => Vec::new(),
                    Err(error) => return Err(error),
                };
                if let Some(last) = events.last() {
                    *next = last.revision.next();
                }
                self.buffer.extend(events);
                if self.buffer.is_empty() {
                    let after = head.map_or(Position::START, Position::next);
                    self.store.wait_for(after).await?;
                }
            }
        }
        Ok(())
    }
}
