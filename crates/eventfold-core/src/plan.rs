//! The decision every backend makes for an append: check names, events and expected
//! versions, detect idempotent re-sends, and say what to write. Kept here, once, so
//! that all backends give the same answers.
//!
//! In two steps: [`check_writes`] looks at the append alone (names, types, JSON, who
//! may write what) and can run on the caller's thread before the append is queued;
//! [`plan_append`] decides the checked append against the backend's state.

use std::collections::HashSet;
use std::ops::Deref;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::EventData;
use crate::store::{AppendResult, StreamWrite};
use crate::stream::{
    ExpectedVersion, Position, Revision, STORE_READ_ONLY_EVENT_TYPE, STORE_STREAM,
    STREAM_MOVED_EVENT_TYPE, TOMBSTONE_EVENT_TYPE, validate_stored_stream_name,
    validate_stream_name,
};

/// Where an event was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLocation {
    /// Its stream.
    pub stream: String,
    /// Its revision in the stream.
    pub revision: Revision,
    /// Its global position.
    pub position: Position,
}

/// What a backend knows of its committed state (plus, for a group commit, the appends
/// already accepted into the same batch).
pub trait AppendView {
    /// The stream's last revision, `None` when it does not exist.
    fn last_revision(&self, stream: &str) -> Result<Option<Revision>>;

    /// Where the event with `id` was written, if the backend still remembers it (the
    /// embedded engine remembers a bounded window of recent ids).
    fn find_id(&self, id: &Uuid) -> Result<Option<EventLocation>>;

    /// The id and position of the event at `revision` of `stream`, if it exists.
    fn event_at(&self, stream: &str, revision: Revision) -> Result<Option<(Uuid, Position)>>;

    /// Whether the stream's last event, at `last`, closes it ([`StreamEnd::of`]: the
    /// tombstone of a hard delete, or a surgery's move marker; only a system write can
    /// carry either). A backend whose answer costs a read may answer from a cache.
    fn stream_end(&self, stream: &str, last: Revision) -> Result<StreamEnd>;

    /// Whether the whole store is read-only: the reason its last
    /// [`STORE_READ_ONLY_EVENT_TYPE`] event gives, or `None` while it is writable. By
    /// default, from the end of [`STORE_STREAM`]; a backend whose writers on other
    /// nodes must see it atomically keeps it where every append looks anyway.
    fn read_only(&self) -> Result<Option<String>> {
        let Some(last) = self.last_revision(STORE_STREAM)? else {
            return Ok(None);
        };
        Ok(self.stream_end(STORE_STREAM, last)?.into_read_only())
    }
}

/// What a stream's last event says about appends to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StreamEnd {
    /// An ordinary event: appends are decided by their expected versions.
    #[default]
    Open,
    /// A hard delete's tombstone ([`TOMBSTONE_EVENT_TYPE`]): every append is refused.
    Deleted,
    /// A surgery's move marker ([`STREAM_MOVED_EVENT_TYPE`]): client appends are
    /// refused, naming the stream the events went to; system writes (a hard delete of
    /// the old stream) still pass.
    Moved(String),
    /// The end of [`STORE_STREAM`] after a flip ([`STORE_READ_ONLY_EVENT_TYPE`]): the
    /// whole store is read-only, for this reason ([`AppendView::read_only`]).
    ReadOnly(String),
}

impl StreamEnd {
    /// Whether an event of `event_type` may close a stream: the types whose event
    /// [`StreamEnd::of`] reads (a backend keeps its data only for these).
    pub fn closes(event_type: &str) -> bool {
        event_type == TOMBSTONE_EVENT_TYPE
            || event_type == STREAM_MOVED_EVENT_TYPE
            || event_type == STORE_READ_ONLY_EVENT_TYPE
    }

    /// What a stream whose last event has `event_type` and `data` says. A move
    /// marker whose data names no stream (written by hand into a restored log) still
    /// closes the stream, naming no target.
    ///
    /// ```
    /// use eventfold_core::plan::StreamEnd;
    /// assert_eq!(StreamEnd::of("$stream-moved-to", br#"{"stream":"order-2"}"#), StreamEnd::Moved("order-2".into()));
    /// assert_eq!(StreamEnd::of("$stream-deleted", b"{}"), StreamEnd::Deleted);
    /// assert_eq!(StreamEnd::of("OrderPlaced", b"{}"), StreamEnd::Open);
    /// ```
    pub fn of(event_type: &str, data: &[u8]) -> StreamEnd {
        #[derive(serde::Deserialize)]
        struct Marker {
            stream: String,
        }
        #[derive(serde::Deserialize)]
        struct ReadOnly {
            reason: String,
        }
        match event_type {
            TOMBSTONE_EVENT_TYPE => StreamEnd::Deleted,
            STREAM_MOVED_EVENT_TYPE => StreamEnd::Moved(
                serde_json::from_slice::<Marker>(data)
                    .map(|m| m.stream)
                    .unwrap_or_default(),
            ),
            STORE_READ_ONLY_EVENT_TYPE => StreamEnd::ReadOnly(
                serde_json::from_slice::<ReadOnly>(data)
                    .map(|m| m.reason)
                    .unwrap_or_else(|_| "the store was made read-only".into()),
            ),
            _ => StreamEnd::Open,
        }
    }

    /// The reason the store is read-only, when this is the end of its `$store`
    /// stream after a flip; `None` for any other end (an undo among them).
    ///
    /// ```
    /// use eventfold_core::plan::StreamEnd;
    /// let flipped = StreamEnd::of("$store-read-only", br#"{"reason":"moved"}"#);
    /// assert_eq!(flipped.into_read_only().as_deref(), Some("moved"));
    /// assert_eq!(StreamEnd::of("$store-writable", b"{}").into_read_only(), None);
    /// ```
    pub fn into_read_only(self) -> Option<String> {
        match self {
            StreamEnd::ReadOnly(reason) => Some(reason),
            _ => None,
        }
    }

    /// The refusal of `write` to a stream ending so; `None` when it may be written.
    fn refuses(&self, write: &StreamWrite) -> Option<Error> {
        match self {
            // The store's own stream: [`plan_append`] decides read-only stores.
            StreamEnd::Open | StreamEnd::ReadOnly(_) => None,
            StreamEnd::Deleted => Some(Error::StreamDeleted {
                stream: write.stream.clone(),
            }),
            StreamEnd::Moved(_) if write.is_system() => None,
            StreamEnd::Moved(to) => Some(Error::StreamMoved {
                stream: write.stream.clone(),
                moved_to: to.clone(),
            }),
        }
    }
}

/// An append that passed [`check_writes`]: the only input [`plan_append`] takes, so
/// no backend can decide an append that was not checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedWrites(Vec<StreamWrite>);

impl Deref for CheckedWrites {
    type Target = [StreamWrite];

    fn deref(&self) -> &[StreamWrite] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a CheckedWrites {
    type Item = &'a StreamWrite;
    type IntoIter = std::slice::Iter<'a, StreamWrite>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Checks what can be checked of an append without the store: at least one event in
/// the append, every write of no events a check (an expected version other than
/// `any`, see [`StreamWrite::check`]), each stream once, names a writer of this kind
/// may use, every event valid ([`EventData::validate`]: its JSON is read through, so
/// backends call this on the caller's thread rather than in a single writer), no
/// event id twice, and no event type starting with `$` in a client write.
pub fn check_writes(writes: Vec<StreamWrite>) -> Result<CheckedWrites> {
    if writes.iter().all(|w| w.is_check())
        || writes
            .iter()
            .any(|w| w.is_check() && w.expected == ExpectedVersion::Any)
    {
        return Err(Error::EmptyAppend);
    }
    let mut streams = HashSet::new();
    let mut ids = HashSet::new();
    for write in &writes {
        if write.is_system() {
            validate_stored_stream_name(&write.stream)?;
        } else {
            validate_stream_name(&write.stream)?;
        }
        if !streams.insert(write.stream.as_str()) {
            return Err(Error::InvalidEvent {
                reason: format!(
                    "stream '{}' appears twice in one multi-stream append",
                    write.stream
                ),
            });
        }
        if let Some(times) = write.recorded_at()
            && times.len() != write.events.len()
        {
            return Err(Error::InvalidEvent {
                reason: format!(
                    "the write to '{}' gives {} recorded times for {} events",
                    write.stream,
                    times.len(),
                    write.events.len()
                ),
            });
        }
        for event in &write.events {
            // Compensations and links are the `$` types a client may write; their
            // data must point at an event (whether it exists is the metadata layer's
            // check, which can read the store).
            crate::reference::referenced_event(&event.event_type, &event.data)?;
            if !write.is_system()
                && event.event_type.starts_with('$')
                && !crate::reference::CLIENT_SYSTEM_EVENT_TYPES.contains(&event.event_type.as_str())
            {
                return Err(Error::InvalidEvent {
                    reason: format!(
                        "event type '{}' starts with '$', which is reserved for eventfold's own events",
                        event.event_type.chars().take(80).collect::<String>()
                    ),
                });
            }
            event.validate()?;
            if let Some(id) = event.id
                && !ids.insert(id)
            {
                return Err(Error::InvalidEvent {
                    reason: format!("event id {id} appears twice in one append"),
                });
            }
        }
    }
    Ok(CheckedWrites(writes))
}

/// What to do with an append.
#[derive(Debug, Clone, PartialEq)]
pub enum AppendPlan {
    /// Write these streams' events; every event has its id filled in.
    Write(Vec<PlannedWrite>),
    /// Every event was written before exactly like this: answer with these results.
    AlreadyWritten(Vec<AppendResult>),
}

/// One stream's events to write, starting at `first_revision`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedWrite {
    /// The stream.
    pub stream: String,
    /// Revision the first event gets.
    pub first_revision: Revision,
    /// The events, ids filled in.
    pub events: Vec<PlannedEvent>,
}

/// An event with its id decided.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEvent {
    /// The event id (given or generated).
    pub id: Uuid,
    /// The event as given.
    pub event: EventData,
    /// When another store recorded it (an import); `None`: the time of this append.
    pub recorded_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Decides, against `view`, whether to write the checked `writes`, answer them as
/// already written, or refuse them.
///
/// Checks (writes of no events) are decided last and only for an append that writes:
/// a re-send of an append whose events are all written is answered as written
/// whatever its checked streams did since, as its own expected versions are (its
/// checks held when it was written, or it would not have been). Neither plan has an
/// entry for a check.
pub fn plan_append(view: &impl AppendView, writes: CheckedWrites) -> Result<AppendPlan> {
    let CheckedWrites(writes) = writes;
    let mut planned = Vec::with_capacity(writes.len());
    let mut replayed = Vec::with_capacity(writes.len());
    let mut checks = Vec::new();
    for write in writes {
        if write.is_check() {
            checks.push(write);
            continue;
        }
        match plan_one(view, write)? {
            One::Write(w) => planned.push(w),
            One::Replay(r) => replayed.push(r),
        }
    }
    // A read-only store (flipped to another) refuses anything new; re-sends of what
    // it wrote before are still answered. Only an append that writes the store's own
    // stream (the undo of a flip: a system write, as no client may name it) passes.
    if !planned.is_empty()
        && let Some(reason) = view.read_only()?
        && !planned.iter().any(|w| w.stream == STORE_STREAM)
    {
        return Err(Error::ReadOnly { reason });
    }
    match (planned.is_empty(), replayed.is_empty()) {
        (_, true) => {
            for check in checks {
                check_one(view, check)?;
            }
            Ok(AppendPlan::Write(planned))
        }
        (true, false) => Ok(AppendPlan::AlreadyWritten(replayed)),
        (false, false) => Err(Error::IdempotencyConflict {
            stream: planned[0].stream.clone(),
            reason: "some streams of this multi-stream append were written before with these event ids and others were not".into(),
        }),
    }
}

enum One {
    Write(PlannedWrite),
    Replay(AppendResult),
}

/// A check: the stream is as expected and not deleted or moved, or the append is
/// refused.
fn check_one(view: &impl AppendView, check: StreamWrite) -> Result<()> {
    let actual = view.last_revision(&check.stream)?;
    if let Some(last) = actual
        && let Some(refusal) = view.stream_end(&check.stream, last)?.refuses(&check)
    {
        return Err(refusal);
    }
    if !check.expected.is_satisfied_by(actual) {
        return Err(Error::WrongExpectedVersion {
            stream: check.stream,
            expected: check.expected,
            actual,
        });
    }
    Ok(())
}

fn plan_one(view: &impl AppendView, write: StreamWrite) -> Result<One> {
    let actual = view.last_revision(&write.stream)?;
    if let Some(last) = actual
        && let Some(refusal) = view.stream_end(&write.stream, last)?.refuses(&write)
    {
        return Err(refusal);
    }
    let times = write.recorded_at().map(<[_]>::to_vec);
    let StreamWrite {
        stream,
        expected,
        events,
        ..
    } = write;

    if !expected.is_satisfied_by(actual) {
        // A re-send after a lost answer: the events already sit right after the
        // revision the writer expected.
        let after = match expected {
            ExpectedVersion::NoStream => Some(Revision(0)),
            ExpectedVersion::Exact(r) => r.get().checked_add(1).map(Revision),
            ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
        };
        if let Some(first) = after
            && let Some(result) = replay_at(view, &stream, first, &events)?
        {
            return Ok(One::Replay(result));
        }
        return Err(Error::WrongExpectedVersion {
            stream,
            expected,
            actual,
        });
    }

    match expected {
        // With an exact expectation that holds, a re-send is impossible (it would
        // expect the revision before its events); a known id is a reused id.
        ExpectedVersion::NoStream | ExpectedVersion::Exact(_) => {
            refuse_known_ids(view, &stream, &events)?;
        }
        ExpectedVersion::Any | ExpectedVersion::StreamExists => {
            if let Some(result) = replay_by_ids(view, &stream, &events)? {
                return Ok(One::Replay(result));
            }
        }
    }
    let first_revision = actual.map_or(Revision(0), Revision::next);
    let mut new_ids = NewIds::for_events(events.len());
    let events = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| PlannedEvent {
            id: event.id.unwrap_or_else(|| new_ids.next()),
            recorded_at: times.as_ref().and_then(|t| t.get(i).copied()),
            event,
        })
        .collect();
    Ok(One::Write(PlannedWrite {
        stream,
        first_revision,
        events,
    }))
}

/// Ids for the events of one write that came without one: UUID v7 (time-ordered) made
/// from one clock reading and one random draw per write and then counted up, the
/// "monotonic random" method of RFC 9562 (section 6.2). A clock reading and a random
/// draw per event cost a batch of 1,000 events about a seventh of the writer's
/// instructions (docs/performance.md, "Instruction counts").
///
/// ```
/// use eventfold_core::plan::NewIds;
/// let mut ids = NewIds::for_events(3);
/// let (a, b) = (ids.next(), ids.next());
/// assert!(a < b && a.get_version_num() == 7);
/// ```
#[derive(Debug)]
pub struct NewIds {
    next: u128,
    /// Ids left before the counter would reach the bits that stay random.
    left: u64,
}

impl NewIds {
    /// Room for `count` ids: only as many low bits of the random part become a counter
    /// as `count` needs, so that a lone event's id keeps all 74 random bits.
    pub fn for_events(count: usize) -> Self {
        let bits = (usize::BITS - count.saturating_sub(1).leading_zeros()).min(32);
        let counter_mask = (1u128 << bits) - 1;
        NewIds {
            next: Uuid::now_v7().as_u128() & !counter_mask,
            left: 1 << bits,
        }
    }

    /// The next id (a fresh run of ids when more than announced are asked for).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Uuid {
        if self.left == 0 {
            // More ids were asked for than announced: start afresh.
            *self = NewIds::for_events(1);
        }
        let id = Uuid::from_u128(self.next);
        self.next += 1;
        self.left -= 1;
        id
    }
}

/// Whether `events` sit, with the same ids, at `first..` in `stream`.
fn replay_at(
    view: &impl AppendView,
    stream: &str,
    first: Revision,
    events: &[EventData],
) -> Result<Option<AppendResult>> {
    let mut position = Position(0);
    for (i, event) in events.iter().enumerate() {
        let Some(id) = event.id else { return Ok(None) };
        match view.event_at(stream, Revision(first.0 + i as u64))? {
            Some((stored, at)) if stored == id => position = at,
            _ => return Ok(None),
        }
    }
    Ok(Some(AppendResult {
        first_revision: first,
        last_revision: Revision(first.0 + events.len() as u64 - 1),
        position,
    }))
}

fn refuse_known_ids(view: &impl AppendView, stream: &str, events: &[EventData]) -> Result<()> {
    for id in events.iter().filter_map(|e| e.id) {
        if let Some(location) = view.find_id(&id)? {
            return Err(Error::IdempotencyConflict {
                stream: stream.to_string(),
                reason: format!(
                    "event id {id} was already written at revision {} of stream '{}'",
                    location.revision, location.stream
                ),
            });
        }
    }
    Ok(())
}

/// With `any` or `stream_exists`: if the given ids were seen before, the events must
/// sit, in this order, at consecutive revisions of this stream (a re-send of an
/// earlier append, or of its tail); the original result is returned. The ids decide
/// here; that the content is the same too is checked by the backend after
/// ([`crate::resend`]).
fn replay_by_ids(
    view: &impl AppendView,
    stream: &str,
    events: &[EventData],
) -> Result<Option<AppendResult>> {
    let mut first_known = None;
    for event in events {
        if let Some(id) = event.id
            && let Some(location) = view.find_id(&id)?
        {
            first_known = Some((id, location));
            break;
        }
    }
    let Some((id, location)) = first_known else {
        return Ok(None);
    };
    if location.stream != stream {
        return Err(Error::IdempotencyConflict {
            stream: stream.to_string(),
            reason: format!(
                "event id {id} was already written to stream '{}'",
                location.stream
            ),
        });
    }
    let offset = events.iter().position(|e| e.id == Some(id)).unwrap_or(0) as u64;
    let conflict = || Error::IdempotencyConflict {
        stream: stream.to_string(),
        reason: format!(
            "event id {id} was already written at revision {}, but the other events of this append do not match what follows it",
            location.revision
        ),
    };
    let Some(first) = location.revision.0.checked_sub(offset) else {
        return Err(conflict());
    };
    replay_at(view, stream, Revision(first), events)?
        .map(Some)
        .ok_or_else(conflict)
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_ids_are_distinct_v7_ids_counted_up_within_a_write() {
        for count in [1usize, 2, 3, 1000, 1024, 1025] {
            let mut ids = super::NewIds::for_events(count);
            let made: Vec<uuid::Uuid> = (0..count).map(|_| ids.next()).collect();
            for id in &made {
                assert_eq!(id.get_version_num(), 7, "{id}");
                assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
            }
            for pair in made.windows(2) {
                assert_eq!(pair[1].as_u128(), pair[0].as_u128() + 1, "{count}");
            }
            // One more than announced: a fresh id, still valid.
            let extra = ids.next();
            assert_eq!(extra.get_version_num(), 7);
            assert!(!made.contains(&extra));
        }
        // A lone event's id keeps its random bits: two are never equal.
        let a = super::NewIds::for_events(1).next();
        let b = super::NewIds::for_events(1).next();
        assert_ne!(a, b);
    }
}
