//! Index streams: read-only views of the log by category (`$ce-<category>`), event type
//! (`$et-<type>`) and correlation id (`$correlation-<id>`), read like any stream with
//! [`crate::EventStore::read_stream`]. Nothing is copied: the events come back as they
//! were written, with their own stream, revision and position.
//!
//! An index stream is paged by global position: `ReadStream::from` names a position
//! (inclusive), not a revision, and the next page starts after the last event's
//! position.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::store::{AllFilter, Direction, EventStore, ReadAll, ReadStream};
use crate::stream::{Position, category_of};

/// Events read per page where core walks the log over the trait (the generic reader
/// of index streams scans `$all` with it; the one page size of this crate). A page is held in memory whole, so a
/// thousand events of a few kilobytes stay a few megabytes; and a filtered scan that
/// matches little still moves through the log in few calls.
const PAGE_EVENTS: u64 = 1_000;

/// A read-only view of the log.
///
/// ```
/// use eventfold_core::IndexStream;
/// assert_eq!(IndexStream::parse("$ce-order"), Some(IndexStream::Category("order".into())));
/// assert_eq!(IndexStream::parse("$et-OrderPlaced"), Some(IndexStream::EventType("OrderPlaced".into())));
/// assert_eq!(IndexStream::parse("order-1"), None);
/// assert_eq!(IndexStream::parse("$ce-"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexStream {
    /// Every event of the streams of one category (see [`category_of`]).
    Category(String),
    /// Every event of one type.
    EventType(String),
    /// Every event whose metadata carries this correlation id.
    Correlation(String),
}

impl IndexStream {
    /// The index stream a name stands for, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        let (make, rest): (fn(String) -> Self, &str) = if let Some(rest) = name.strip_prefix("$ce-")
        {
            (IndexStream::Category, rest)
        } else if let Some(rest) = name.strip_prefix("$et-") {
            (IndexStream::EventType, rest)
        } else if let Some(rest) = name.strip_prefix("$correlation-") {
            (IndexStream::Correlation, rest)
        } else {
            return None;
        };
        (!rest.is_empty()).then(|| make(rest.to_string()))
    }

    /// Whether `event` belongs to the view.
    pub fn contains(&self, event: &RecordedEvent) -> bool {
        match self {
            IndexStream::Category(category) => category_of(&event.stream) == category,
            IndexStream::EventType(event_type) => event.event_type == *event_type,
            IndexStream::Correlation(id) => metadata_correlation(event).as_deref() == Some(id),
        }
    }

    /// The `$all` filter that selects the view (or a superset of it, for correlation).
    pub fn filter(&self) -> AllFilter {
        match self {
            IndexStream::Category(category) => AllFilter {
                category: Some(category.clone()),
                ..AllFilter::default()
            },
            IndexStream::EventType(event_type) => AllFilter {
                event_types: vec![event_type.clone()],
                ..AllFilter::default()
            },
            IndexStream::Correlation(_) => AllFilter::default(),
        }
    }
}

/// The correlation id in an event's metadata, as text (any string, not only UUIDs).
fn metadata_correlation(event: &RecordedEvent) -> Option<String> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&event.metadata).ok()?;
    map.get(crate::event::CORRELATION_ID_KEY)?
        .as_str()
        .map(String::from)
}

/// Reads an index stream of any store by scanning `$all` with its filter: the
/// generic way, used by backends that keep no index for the view. `options.from` is
/// a position. An index stream without any event is reported as not found.
pub async fn read_index_stream<S: EventStore + ?Sized>(
    store: &S,
    name: &str,
    index: &IndexStream,
    options: ReadStream,
) -> Result<Vec<RecordedEvent>> {
    let events = match options.direction {
        Direction::Forward => {
            let from = Position(options.from.map_or(0, |r| r.get()));
            scan_forward(store, index, from, options.limit).await?
        }
        Direction::Backward => {
            // The log is read forward only: keep the last `limit` events up to `from`.
            let filter = index.filter();
            let until = options.from.map_or(u64::MAX, |r| r.get());
            let keep = usize::try_from(options.limit).unwrap_or(usize::MAX);
            let mut last: VecDeque<RecordedEvent> = VecDeque::new();
            let mut next = Position::START;
            'pages: loop {
                let page = store
                    .read_all(ReadAll::from(next, PAGE_EVENTS).filtered(filter.clone()))
                    .await?;
                for event in page.events {
                    if event.position.get() > until {
                        break 'pages;
                    }
                    if index.contains(&event) && keep > 0 {
                        if last.len() == keep {
                            last.pop_front();
                        }
                        last.push_back(event);
                    }
                }
                if page.end_of_log || page.next <= next {
                    break;
                }
                next = page.next;
            }
            last.into_iter().rev().collect()
        }
    };
    // An empty answer is a missing view unless the view has events elsewhere (a
    // forward read from the start has already looked everywhere).
    let read_everything = options.direction == Direction::Forward
        && options.limit > 0
        && options.from.is_none_or(|r| r.get() == 0);
    if events.is_empty()
        && (read_everything
            || scan_forward(store, index, Position::START, 1)
                .await?
                .is_empty())
    {
        return Err(Error::StreamNotFound {
            stream: name.to_string(),
        });
    }
    Ok(events)
}

/// The first `limit` events of the view from position `from` on.
async fn scan_forward<S: EventStore + ?Sized>(
    store: &S,
    index: &IndexStream,
    from: Position,
    limit: u64,
) -> Result<Vec<RecordedEvent>> {
    let filter = index.filter();
    let mut events = Vec::new();
    let mut next = from;
    while (events.len() as u64) < limit {
        let page = store
            .read_all(ReadAll::from(next, PAGE_EVENTS).filtered(filter.clone()))
            .await?;
        let room = usize::try_from(limit - events.len() as u64).unwrap_or(usize::MAX);
        events.extend(
            page.events
                .into_iter()
                .filter(|e| index.contains(e))
                .take(room),
        );
        if page.end_of_log || page.next <= next {
            break;
        }
        next = page.next;
    }
    Ok(events)
}
