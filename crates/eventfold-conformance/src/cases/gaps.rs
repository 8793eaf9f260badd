//! Reads across gaps: positions and revisions that hold no readable event. Every
//! backend has them once retention hides events (the metadata layer skips them); a
//! backend that reclaims space (the log engine's scavenge) has them on disk too. No
//! reader may stall on a gap (an empty page before the end) or take one for the end.

use eventfold_core::{
    AllFilter, EventStore, ExpectedVersion, Position, ReadAll, ReadStream, RecordedEvent, Revision,
};
use eventfold_metadata::{StreamAdmin, StreamMetadata};

use crate::support::{assert_fresh, event, n_of, ok};

/// What the cases compare of an event: position, revision and its `n`.
fn seen(events: &[RecordedEvent]) -> Vec<(u64, u64, u64)> {
    events
        .iter()
        .map(|e| (e.position.get(), e.revision.get(), n_of(e)))
        .collect()
}

/// Reads `stream` in pages of one event, forward or backward, following revisions.
async fn stream_in_pages<S: EventStore + ?Sized>(
    store: &S,
    stream: &str,
    forward: bool,
) -> Vec<RecordedEvent> {
    let mut events: Vec<RecordedEvent> = Vec::new();
    loop {
        let options = match (forward, events.last()) {
            (true, None) => ReadStream::forward(),
            (true, Some(e)) => ReadStream::forward().from(Revision(e.revision.get() + 1)),
            (false, None) => ReadStream::backward(),
            (false, Some(e)) => match e.revision.get().checked_sub(1) {
                Some(r) => ReadStream::backward().from(Revision(r)),
                None => return events,
            },
        };
        let page = ok(
            "read a page",
            store.read_stream(stream, options.limit(1)).await,
        );
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

/// Reads `$all` (filtered) in pages of one event, checking that no page before the
/// last one says it is the end.
async fn all_in_pages<S: EventStore + ?Sized>(store: &S, filter: AllFilter) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut from = Position(0);
    for _ in 0..10_000 {
        let page = ok(
            "read a page of $all",
            store
                .read_all(ReadAll::from(from, 1).filtered(filter.clone()))
                .await,
        );
        assert!(page.next >= from, "$all's next position went back");
        events.extend(page.events);
        if page.end_of_log {
            return events;
        }
        from = page.next;
    }
    panic!("$all read in pages of one never reached its end");
}

/// Reads and pages of streams, `$all` and `$ce-` pass over hidden events: a forward or
/// backward read in pages of one event returns exactly what one read returns, never
/// an empty page before the end, and `$all` never reports its end early.
pub async fn reads_pass_over_gaps<S: EventStore + ?Sized>(store: &S) {
    reads_pass_over_gaps_with(store, async || {}).await;
}

/// [`reads_pass_over_gaps`], with `reclaim` run after retention hid events: a backend
/// that can remove hidden events from its storage does so there, and every read must
/// still answer as before for what stays visible.
pub async fn reads_pass_over_gaps_with<S, R>(store: &S, reclaim: R)
where
    S: EventStore + ?Sized,
    R: AsyncFnOnce(),
{
    assert_fresh(store).await;
    for n in 0..6 {
        for stream in ["gap-a", "gap-b", "other-c"] {
            ok(
                "append",
                store
                    .append(stream, ExpectedVersion::Any, vec![event("Counted", n)])
                    .await,
            );
        }
    }
    let hide = async |stream: &str, metadata: StreamMetadata| {
        ok(
            "set metadata",
            store
                .set_stream_metadata(stream, ExpectedVersion::Any, metadata)
                .await,
        );
    };
    hide(
        "gap-a",
        StreamMetadata {
            max_count: Some(2),
            ..StreamMetadata::default()
        },
    )
    .await;
    hide(
        "gap-b",
        StreamMetadata {
            truncate_before: Some(Revision(3)),
            ..StreamMetadata::default()
        },
    )
    .await;
    let visible_a = ok(
        "read gap-a",
        store.read_stream("gap-a", ReadStream::forward()).await,
    );
    let visible_b = ok(
        "read gap-b",
        store.read_stream("gap-b", ReadStream::forward()).await,
    );
    assert_eq!(
        visible_a.iter().map(n_of).collect::<Vec<_>>(),
        [4, 5],
        "max_count 2 leaves the last two"
    );
    assert_eq!(
        visible_b.iter().map(n_of).collect::<Vec<_>>(),
        [3, 4, 5],
        "truncate_before 3 leaves revisions 3 and later"
    );
    let category_before = ok(
        "read $ce-gap",
        store.read_stream("$ce-gap", ReadStream::forward()).await,
    );

    reclaim().await;

    for (stream, visible) in [("gap-a", &visible_a), ("gap-b", &visible_b)] {
        let forward = stream_in_pages(store, stream, true).await;
        assert_eq!(
            seen(&forward),
            seen(visible),
            "{stream} read forward in pages of one"
        );
        let mut backward = stream_in_pages(store, stream, false).await;
        backward.reverse();
        assert_eq!(
            seen(&backward),
            seen(visible),
            "{stream} read backward in pages of one"
        );
        let first = ok(
            "read from revision 0",
            store
                .read_stream(stream, ReadStream::forward().from(Revision(0)).limit(1))
                .await,
        );
        assert_eq!(
            seen(&first),
            seen(&visible[..1]),
            "{stream}: a read from a hidden revision starts at the first visible one"
        );
    }
    let other = ok(
        "read other-c",
        store.read_stream("other-c", ReadStream::forward()).await,
    );
    assert_eq!(other.len(), 6, "a stream without retention loses nothing");

    let filter = AllFilter {
        stream_prefix: Some("gap-".into()),
        ..AllFilter::default()
    };
    let paged = all_in_pages(store, filter.clone()).await;
    let whole = ok(
        "read $all",
        store
            .read_all(ReadAll::from(Position(0), 1000).filtered(filter))
            .await,
    );
    assert!(whole.end_of_log);
    assert_eq!(
        seen(&paged),
        seen(&whole.events),
        "$all in pages of one and in one read"
    );
    assert!(
        paged.windows(2).all(|w| w[0].position < w[1].position),
        "$all is in position order"
    );
    for event in visible_a.iter().chain(&visible_b) {
        assert!(
            paged.iter().any(|e| e.id == event.id),
            "$all lost the visible event {} of {}",
            event.revision,
            event.stream
        );
    }

    let mut category = Vec::new();
    let mut from = 0;
    loop {
        let page = ok(
            "read a page of $ce-gap",
            store
                .read_stream(
                    "$ce-gap",
                    ReadStream::forward().from(Revision(from)).limit(1),
                )
                .await,
        );
        let Some(last) = page.last() else { break };
        from = last.position.get() + 1;
        category.extend(page);
    }
    let whole = ok(
        "read $ce-gap",
        store.read_stream("$ce-gap", ReadStream::forward()).await,
    );
    assert_eq!(
        seen(&category),
        seen(&whole),
        "$ce-gap in pages of one and in one read"
    );
    for event in &whole {
        assert!(
            category_before.iter().any(|e| e.id == event.id),
            "$ce-gap shows an event it did not hold"
        );
    }
    for event in visible_a.iter().chain(&visible_b) {
        assert!(
            whole.iter().any(|e| e.id == event.id),
            "$ce-gap lost a visible event"
        );
    }
}
