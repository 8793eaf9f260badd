//! The suite must fail on stores that break the contract: each test here runs a case
//! (or the model check) against `InMemoryStore` with one deliberate fault and expects
//! the case to panic with the rule it broke. This keeps the cases from passing
//! vacuously.

use async_trait::async_trait;
use eventfold_conformance::model::Backend;
use eventfold_core::{
    AllSlice, AppendResult, Direction, EventData, EventStore, ExpectedVersion, InMemoryStore,
    LayerExt, Layered, Position, ReadAll, ReadStream, RecordedEvent, Result, Revision, StoreLayer,
    StreamWrite,
};
use uuid::Uuid;

/// One deliberate contract violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `append_multi` appends stream by stream, so a failing write leaves the earlier
    /// ones written.
    MultiNotAtomic,
    /// `read_all` says `end_of_log` only on an empty page.
    EndOfLogLate,
    /// A category filter is applied as a stream prefix.
    CategoryAsPrefix,
    /// With a filter, `next` stays right after the last returned event.
    NextNotPastSkipped,
    /// Missing ids are filled with UUID v4.
    IdsV4,
    /// Metadata is lost on read.
    MetadataLost,
    /// Given ids are dropped, so re-sends are written again.
    IdsDropped,
    /// Backward reads from past the end return nothing.
    BackwardPastEndEmpty,
    /// `stream_revision` is one too low.
    RevisionOffByOne,
    /// Checks (writes of no events) are dropped from multi-stream appends.
    ChecksDropped,
}

/// `InMemoryStore` with one fault, injected by a layer.
type Faulty = Layered<Fault, InMemoryStore>;

fn faulty(fault: Fault) -> Faulty {
    InMemoryStore::new().layer(fault)
}

impl Fault {
    fn on_read(self, mut events: Vec<RecordedEvent>) -> Vec<RecordedEvent> {
        if self == Fault::MetadataLost {
            for event in &mut events {
                event.metadata = bytes::Bytes::from_static(b"{}");
            }
        }
        events
    }
}

#[async_trait]
impl StoreLayer for Fault {
    async fn append_multi<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        mut writes: Vec<StreamWrite>,
    ) -> Result<Vec<AppendResult>> {
        let events = writes.iter_mut().flat_map(|w| w.events.iter_mut());
        match self {
            Fault::MultiNotAtomic => {
                let mut results = Vec::new();
                for write in writes {
                    results.push(
                        inner
                            .append(&write.stream, write.expected, write.events)
                            .await?,
                    );
                }
                return Ok(results);
            }
            Fault::IdsV4 => events
                .filter(|e| e.id.is_none())
                .for_each(|e| e.id = Some(Uuid::new_v4())),
            Fault::IdsDropped => events.for_each(|e| e.id = None),
            Fault::ChecksDropped => writes.retain(|w| !w.is_check()),
            _ => {}
        }
        inner.append_multi(writes).await
    }

    async fn read_stream<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        stream: &str,
        options: ReadStream,
    ) -> Result<Vec<RecordedEvent>> {
        if *self == Fault::BackwardPastEndEmpty
            && options.direction == Direction::Backward
            && let (Some(from), Some(last)) = (options.from, inner.stream_revision(stream).await?)
            && from > last
        {
            return Ok(Vec::new());
        }
        let events = inner.read_stream(stream, options).await?;
        Ok(self.on_read(events))
    }

    async fn read_all<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        mut options: ReadAll,
    ) -> Result<AllSlice> {
        if *self == Fault::CategoryAsPrefix
            && let Some(category) = options.filter.category.take()
        {
            options.filter.stream_prefix = Some(category);
        }
        let mut page = inner.read_all(options.clone()).await?;
        match self {
            Fault::EndOfLogLate => page.end_of_log = page.events.is_empty(),
            Fault::NextNotPastSkipped if !options.filter.is_empty() => {
                page.next = page
                    .events
                    .last()
                    .map_or(options.from, |e| e.position.next());
            }
            _ => {}
        }
        page.events = self.on_read(page.events);
        Ok(page)
    }

    async fn stream_revision<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        stream: &str,
    ) -> Result<Option<Revision>> {
        let revision = inner.stream_revision(stream).await?;
        if *self == Fault::RevisionOffByOne {
            return Ok(revision.map(|r| Revision(r.get().saturating_sub(1))));
        }
        Ok(revision)
    }
}

/// Runs `case` against a store with `fault`.
fn run_with<C>(fault: Fault, case: C)
where
    C: AsyncFnOnce(&Faulty),
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = faulty(fault);
        case(&store).await;
    });
}

#[test]
#[should_panic(expected = "was refused, but the store changed")]
fn non_atomic_multi_stream_append_is_caught() {
    run_with(Fault::MultiNotAtomic, async |s| {
        eventfold_conformance::append_multi_is_all_or_nothing(s).await
    });
}

#[test]
#[should_panic(expected = "end_of_log")]
fn late_end_of_log_is_caught() {
    run_with(Fault::EndOfLogLate, async |s| {
        eventfold_conformance::read_all_pages_until_end_of_log(s).await
    });
}

#[test]
#[should_panic(expected = "category: Some(\"order\")")]
fn category_applied_as_prefix_is_caught() {
    run_with(Fault::CategoryAsPrefix, async |s| {
        eventfold_conformance::read_all_filters_by_category(s).await
    });
}

#[test]
#[should_panic(expected = "next must be just past the head")]
fn next_stuck_before_skipped_events_is_caught() {
    run_with(Fault::NextNotPastSkipped, async |s| {
        eventfold_conformance::read_all_next_advances_past_skipped_events(s).await
    });
}

#[test]
#[should_panic(expected = "is not a UUID v7")]
fn generated_v4_ids_are_caught() {
    run_with(Fault::IdsV4, async |s| {
        eventfold_conformance::generated_ids_are_uuid_v7_and_given_ids_are_kept(s).await
    });
}

#[test]
#[should_panic(expected = "correlation id")]
fn lost_metadata_is_caught() {
    run_with(Fault::MetadataLost, async |s| {
        eventfold_conformance::correlation_and_causation_ids_round_trip(s).await
    });
}

#[test]
#[should_panic(expected = "a re-send returns the original result")]
fn duplicated_resend_is_caught() {
    run_with(Fault::IdsDropped, async |s| {
        eventfold_conformance::resend_with_any_is_idempotent(s).await
    });
}

#[test]
#[should_panic(expected = "revisions returned by read_stream")]
fn empty_backward_read_past_the_end_is_caught() {
    run_with(Fault::BackwardPastEndEmpty, async |s| {
        eventfold_conformance::read_stream_past_the_end(s).await
    });
}

#[test]
#[should_panic(expected = "stream_revision(order-1) after an append")]
fn wrong_stream_revision_is_caught() {
    run_with(Fault::RevisionOffByOne, async |s| {
        eventfold_conformance::stream_revision_and_exists_track_appends(s).await
    });
}

#[test]
#[should_panic(
    expected = "a check of an exact revision the stream is not at: expected WrongExpectedVersion, got success"
)]
fn dropped_checks_are_caught() {
    run_with(Fault::ChecksDropped, async |s| {
        eventfold_conformance::checks_hold_or_refuse_the_whole_append(s).await
    });
}

#[test]
#[should_panic(expected = "backend differs from the model")]
fn model_check_catches_a_wrong_stream_revision() {
    struct Off(Faulty);
    impl Backend for Off {
        type Store = Faulty;
        fn store(&self) -> &Faulty {
            &self.0
        }
        async fn reopen(&mut self) {}
    }
    eventfold_conformance::model::run_model_test(async || Off(faulty(Fault::RevisionOffByOne)));
}

/// A backend whose reopen loses the last acknowledged event (it rebuilds the store
/// from its log minus the tail), as a store that acknowledged before fsync would.
struct LosesTail(InMemoryStore);

impl Backend for LosesTail {
    type Store = InMemoryStore;

    fn store(&self) -> &InMemoryStore {
        &self.0
    }

    async fn reopen(&mut self) {
        let page = self
            .0
            .read_all(ReadAll::from(Position::START, u64::MAX))
            .await
            .expect("read the log");
        let mut events = page.events;
        events.pop();
        let rebuilt = InMemoryStore::new();
        for e in events {
            let event = EventData {
                id: Some(e.id),
                event_type: e.event_type,
                version: e.version,
                data: e.data,
                metadata: e.metadata,
            };
            rebuilt
                .append(&e.stream, ExpectedVersion::Any, vec![event])
                .await
                .expect("replay the log");
        }
        self.0 = rebuilt;
    }
}

#[test]
#[should_panic(expected = "after reopen")]
fn model_check_catches_a_reopen_that_loses_a_write() {
    eventfold_conformance::model::run_model_test(async || LosesTail(InMemoryStore::new()));
}
