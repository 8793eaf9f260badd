//! Pages of events bounded in bytes as well as in events.
//!
//! A read of `limit` events can hold gigabytes when events are large. These readers ask
//! the store for small chunks, sized by the largest event seen so far, and stop the page
//! once `bytes_max` is reached: a page holds events whose [`event_bytes`] add up to at
//! most `bytes_max`, or exactly one event when that one alone is larger (so a page
//! always makes progress). The caller continues where the page stopped, as with any
//! short page. Written once over the trait, for every backend.

use eventfold_core::{
    AllSlice, Direction, Error, EventStore, IndexStream, ReadAll, ReadStream, RecordedEvent,
    Result, Revision,
};

/// What an event's JSON form adds to its data, metadata, stream name and type: keys,
/// id, numbers and timestamp.
const ENVELOPE_BYTES: usize = 160;

/// Events asked for by a page's first read, before any event size is known: one, so
/// that a page of one large event reads nothing it does not return.
const FIRST_CHUNK_EVENTS: u64 = 1;

/// Events asked for by any one read of a page.
const CHUNK_EVENTS_MAX: u64 = 1024;

/// How many bytes an event counts for against a byte cap: about the size of its JSON
/// form.
///
/// ```
/// use eventfold_core::{EventData, EventStore, ExpectedVersion, InMemoryStore, ReadStream};
/// use eventfold_subscription::page;
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let store = InMemoryStore::new();
/// let event = EventData::json("Noted", &"x".repeat(1000)).unwrap();
/// store.append("notes-1", ExpectedVersion::Any, vec![event]).await.unwrap();
/// let stored = store.read_stream("notes-1", ReadStream::forward()).await.unwrap();
/// assert!(page::event_bytes(&stored[0]) > 1000);
/// # });
/// ```
pub fn event_bytes(event: &RecordedEvent) -> usize {
    event.data.len()
        + event.metadata.len()
        + event.stream.len()
        + event.event_type.len()
        + ENVELOPE_BYTES
}

/// A page of one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamPage {
    /// The events, in the direction of the read.
    pub events: Vec<RecordedEvent>,
    /// True when the page reached the end of the stream in the direction of the read
    /// (its last event forward, its first backward). False when the page was cut by
    /// its event limit or byte cap: more may follow.
    pub end_of_stream: bool,
}

/// The events of a page and the bytes they hold.
struct Budget {
    bytes_max: usize,
    used: usize,
    largest: usize,
    events_left: u64,
    first: bool,
}

impl Budget {
    fn new(limit: u64, bytes_max: usize) -> Self {
        Budget {
            bytes_max,
            used: 0,
            largest: 0,
            events_left: limit,
            first: true,
        }
    }

    /// Events to ask for next: as many as fit if none is larger than the largest seen.
    fn next_chunk(&mut self) -> u64 {
        let fitting = if std::mem::take(&mut self.first) {
            FIRST_CHUNK_EVENTS
        } else {
            (self.bytes_max.saturating_sub(self.used) / self.largest.max(1)).max(1) as u64
        };
        fitting.min(CHUNK_EVENTS_MAX).min(self.events_left)
    }

    /// Takes `event` into the page, unless the page holds something and `event` would
    /// take it past the cap.
    fn admit(&mut self, event: &RecordedEvent) -> bool {
        let bytes = event_bytes(event);
        if self.used > 0 && self.used.saturating_add(bytes) > self.bytes_max {
            return false;
        }
        self.used = self.used.saturating_add(bytes);
        self.largest = self.largest.max(bytes);
        self.events_left -= 1;
        true
    }

    /// No further event can join the page.
    fn full(&self) -> bool {
        self.events_left == 0 || self.used >= self.bytes_max
    }
}

/// Reads a page of one stream (as [`EventStore::read_stream`] of the store given:
/// through a metadata layer, with the stream's metadata applied) holding at most `options.limit` events and about `bytes_max`
/// bytes. An index stream is paged by position, like `read_stream` does.
///
/// ```
/// use eventfold_core::{EventData, EventStore, ExpectedVersion, InMemoryStore, ReadStream};
/// use eventfold_subscription::page;
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let store = InMemoryStore::new();
/// let big = EventData::json("Scanned", &"x".repeat(10_000)).unwrap();
/// store.append("scan-1", ExpectedVersion::Any, vec![big.clone(), big.clone(), big]).await.unwrap();
/// let first = page::read_stream_page(&store, "scan-1", ReadStream::forward(), 25_000).await.unwrap();
/// assert_eq!(first.events.len(), 2);
/// assert!(!first.end_of_stream);
/// # });
/// ```
pub async fn read_stream_page<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    options: ReadStream,
    bytes_max: usize,
) -> Result<StreamPage> {
    if options.limit == 0 {
        let events = store.read_stream(stream, options).await?;
        return Ok(StreamPage {
            events,
            end_of_stream: false,
        });
    }
    let by_position = IndexStream::parse(stream).is_some();
    let place = |event: &RecordedEvent| {
        if by_position {
            event.position.get()
        } else {
            event.revision.get()
        }
    };
    let mut budget = Budget::new(options.limit, bytes_max);
    let mut events = Vec::new();
    let mut from = options.from;
    let mut first = true;
    loop {
        let asked = budget.next_chunk();
        let read = ReadStream {
            from,
            direction: options.direction,
            limit: asked,
            resolve_links: options.resolve_links,
        };
        let chunk = match store.read_stream(stream, read).await {
            Ok(chunk) => chunk,
            // Deleted between two reads of this page: the page ends where it got to.
            Err(Error::StreamNotFound { .. }) if !first => Vec::new(),
            Err(error) => return Err(error),
        };
        first = false;
        let got = chunk.len() as u64;
        let last = chunk.last().map(place);
        for event in chunk {
            if !budget.admit(&event) {
                return Ok(StreamPage {
                    events,
                    end_of_stream: false,
                });
            }
            events.push(event);
        }
        let Some(last) = last.filter(|_| got == asked) else {
            return Ok(StreamPage {
                events,
                end_of_stream: true,
            });
        };
        let after = match options.direction {
            Direction::Forward => last.checked_add(1),
            Direction::Backward => last.checked_sub(1),
        };
        let Some(after) = after else {
            // Read backward down to 0: nothing comes before.
            return Ok(StreamPage {
                events,
                end_of_stream: true,
            });
        };
        if budget.full() {
            return Ok(StreamPage {
                events,
                end_of_stream: false,
            });
        }
        from = Some(Revision(after));
    }
}

/// Reads a page of the global log (as [`EventStore::read_all`]) holding at most
/// `options.limit` events and about `bytes_max` bytes. When the cap cuts the page,
/// `next` is the position of the first event left out and `end_of_log` is false.
///
/// ```
/// use eventfold_core::{EventData, EventStore, ExpectedVersion, InMemoryStore, Position, ReadAll};
/// use eventfold_subscription::page;
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let store = InMemoryStore::new();
/// let big = EventData::json("Scanned", &"x".repeat(10_000)).unwrap();
/// store.append("scan-1", ExpectedVersion::Any, vec![big.clone(), big.clone(), big]).await.unwrap();
/// let first = page::read_all_page(&store, ReadAll::from(Position(0), 100), 25_000).await.unwrap();
/// assert_eq!((first.events.len(), first.next, first.end_of_log), (2, Position(2), false));
/// # });
/// ```
pub async fn read_all_page<S: EventStore + ?Sized>(
    store: &S,
    options: ReadAll,
    bytes_max: usize,
) -> Result<AllSlice> {
    if options.limit == 0 {
        return store.read_all(options).await;
    }
    let mut budget = Budget::new(options.limit, bytes_max);
    let mut events = Vec::new();
    let mut from = options.from;
    loop {
        let read = ReadAll {
            from,
            limit: budget.next_chunk(),
            filter: options.filter.clone(),
        };
        let slice = store.read_all(read).await?;
        for event in slice.events {
            if !budget.admit(&event) {
                return Ok(AllSlice {
                    next: event.position,
                    events,
                    end_of_log: false,
                });
            }
            events.push(event);
        }
        // A slice that did not move on (a backend bug) ends the page rather than loop.
        if slice.end_of_log || budget.full() || slice.next <= from {
            return Ok(AllSlice {
                events,
                next: slice.next,
                end_of_log: slice.end_of_log,
            });
        }
        from = slice.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventfold_core::{AllFilter, EventData, ExpectedVersion, InMemoryStore, Position};

    /// A stream `s` of events whose data are `sizes` bytes long (JSON strings).
    async fn store_with(sizes: &[usize]) -> InMemoryStore {
        let store = InMemoryStore::new();
        for (i, size) in sizes.iter().enumerate() {
            let event = EventData::json("Sized", &"x".repeat(size.saturating_sub(2))).unwrap();
            let stream = if i % 2 == 0 { "s-even" } else { "s-odd" };
            store
                .append(stream, ExpectedVersion::Any, vec![event.clone()])
                .await
                .unwrap();
            store
                .append("s", ExpectedVersion::Any, vec![event])
                .await
                .unwrap();
        }
        store
    }

    /// Pages through `s` forward or backward and returns the revisions of each page.
    async fn stream_pages(
        store: &InMemoryStore,
        direction: Direction,
        limit: u64,
        bytes_max: usize,
    ) -> Vec<Vec<u64>> {
        let mut pages = Vec::new();
        let mut from = None;
        loop {
            let read = ReadStream {
                from,
                direction,
                limit,
                resolve_links: true,
            };
            let page = read_stream_page(store, "s", read, bytes_max).await.unwrap();
            let revisions: Vec<u64> = page.events.iter().map(|e| e.revision.get()).collect();
            let bytes: usize = page.events.iter().map(event_bytes).sum();
            assert!(
                revisions.len() == 1 || bytes <= bytes_max,
                "a page of {bytes} bytes over the cap of {bytes_max}: {revisions:?}"
            );
            assert!(revisions.len() as u64 <= limit);
            let Some(&last) = revisions.last() else {
                assert!(page.end_of_stream);
                return pages;
            };
            let ended = page.end_of_stream;
            pages.push(revisions);
            if ended {
                return pages;
            }
            from = match direction {
                Direction::Forward => Some(Revision(last + 1)),
                Direction::Backward => Some(Revision(last - 1)),
            };
        }
    }

    #[tokio::test]
    async fn stream_pages_stop_at_the_byte_cap_and_continue_without_gap_or_repeat() {
        let sizes = [100, 5_000, 100, 100, 20_000, 100, 3_000, 3_000, 3_000, 100];
        let store = store_with(&sizes).await;
        for direction in [Direction::Forward, Direction::Backward] {
            for (limit, bytes_max) in [(100, 4_000), (3, 8_000), (100, 1), (100, 1 << 20)] {
                let pages = stream_pages(&store, direction, limit, bytes_max).await;
                let mut seen: Vec<u64> = pages.concat();
                if direction == Direction::Backward {
                    seen.reverse();
                }
                assert_eq!(
                    seen,
                    (0..sizes.len() as u64).collect::<Vec<_>>(),
                    "{direction:?}, limit {limit}, cap {bytes_max}: {pages:?}"
                );
            }
        }
        // The 20 KB event comes alone; smaller neighbours share pages up to the cap.
        let pages = stream_pages(&store, Direction::Forward, 100, 4_000).await;
        assert!(pages.contains(&vec![4]), "{pages:?}");
        assert_eq!(pages[0], vec![0]);
        // Without a binding cap, one page holds everything and says so.
        let page = read_stream_page(&store, "s", ReadStream::forward(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(page.events.len(), sizes.len());
        assert!(page.end_of_stream);
    }

    #[tokio::test]
    async fn a_full_page_does_not_claim_the_end() {
        let store = store_with(&[10, 10, 10]).await;
        let page = read_stream_page(&store, "s", ReadStream::forward().limit(3), 1 << 20)
            .await
            .unwrap();
        assert_eq!(page.events.len(), 3);
        assert!(!page.end_of_stream);
        let page = read_stream_page(&store, "s", ReadStream::forward().limit(4), 1 << 20)
            .await
            .unwrap();
        assert!(page.end_of_stream);
        let missing = read_stream_page(&store, "nothing", ReadStream::forward(), 1 << 20).await;
        assert!(matches!(missing, Err(Error::StreamNotFound { .. })));
    }

    #[tokio::test]
    async fn all_pages_stop_at_the_byte_cap_and_continue_without_gap_or_repeat() {
        let sizes = [100, 5_000, 100, 100, 20_000, 100, 3_000, 3_000, 3_000, 100];
        let store = store_with(&sizes).await;
        for filter in [
            AllFilter::default(),
            AllFilter {
                stream_prefix: Some("s-".into()),
                ..AllFilter::default()
            },
        ] {
            let mut from = Position(0);
            let mut seen = Vec::new();
            loop {
                let read = ReadAll::from(from, 100).filtered(filter.clone());
                let page = read_all_page(&store, read, 6_000).await.unwrap();
                let bytes: usize = page.events.iter().map(event_bytes).sum();
                assert!(page.events.len() == 1 || bytes <= 6_000);
                seen.extend(page.events.iter().map(|e| e.position.get()));
                assert!(
                    page.end_of_log || page.next > from,
                    "no progress at {from:?}"
                );
                from = page.next;
                if page.end_of_log {
                    break;
                }
            }
            let everything = read_all_page(
                &store,
                ReadAll::from(Position(0), 1000).filtered(filter),
                usize::MAX,
            )
            .await
            .unwrap();
            let expected: Vec<u64> = everything.events.iter().map(|e| e.position.get()).collect();
            assert_eq!(seen, expected);
            assert!(everything.end_of_log);
        }
    }
}
