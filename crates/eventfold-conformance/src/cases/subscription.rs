//! Subscriptions (`eventfold_subscription::Subscription`) over the store: catch-up then live
//! with no gap and no duplicate under concurrent writers, resuming after a checkpoint,
//! filters, and one stream followed live. Every wait is bounded, so a store that never
//! wakes a subscriber fails the case instead of hanging it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use eventfold_core::{AllFilter, EventStore, ExpectedVersion, Position, RecordedEvent, Revision};
use eventfold_subscription::Subscription;
use uuid::Uuid;

use crate::support::{assert_fresh, event, ok};

/// Longest a subscriber waits for an event that was appended.
const WAIT_MAX: Duration = Duration::from_secs(30);

async fn next_event<S, T>(subscription: &mut Subscription<S>, what: &str) -> RecordedEvent
where
    S: std::ops::Deref<Target = T>,
    T: EventStore + ?Sized,
{
    match tokio::time::timeout(WAIT_MAX, subscription.next()).await {
        Ok(result) => ok(what, result),
        Err(_) => panic!("{what}: no event arrived within {WAIT_MAX:?} although one was appended"),
    }
}

/// A subscription from the start reads the 200 events already there, then the 200
/// that 4 concurrent writers append while it reads: every position exactly once, in
/// order, and exactly the events written.
pub async fn subscription_catches_up_then_goes_live_without_gap_or_duplicate<
    S: EventStore + ?Sized + 'static,
>(
    store: Arc<S>,
) {
    assert_fresh(&*store).await;
    let mut written = HashSet::new();
    for n in 0..200 {
        let id = Uuid::now_v7();
        written.insert(id);
        let e = event("Counted", n).with_id(id);
        ok(
            "append before subscribing",
            store
                .append(&format!("before-{}", n % 5), ExpectedVersion::Any, vec![e])
                .await,
        );
    }
    let mut subscription = Subscription::to_all(Arc::clone(&store), None, AllFilter::default());
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..50 {
                    let id = Uuid::now_v7();
                    ids.push(id);
                    let e = event("Counted", n).with_id(id);
                    ok(
                        "append while subscribed",
                        store
                            .append(&format!("live-{w}"), ExpectedVersion::Any, vec![e])
                            .await,
                    );
                }
                ids
            })
        })
        .collect();
    let mut seen = Vec::new();
    for i in 0..400u64 {
        let e = next_event(&mut subscription, "subscription to $all").await;
        assert_eq!(
            e.position,
            Position(i),
            "subscription skipped or repeated a position"
        );
        seen.push(e.id);
    }
    for writer in writers {
        written.extend(writer.await.expect("writer task"));
    }
    let seen: HashSet<Uuid> = seen.into_iter().collect();
    assert_eq!(
        seen, written,
        "the subscription delivered other events than were written"
    );
    assert_eq!(subscription.checkpoint(), Some(399));
}

/// A new subscription after a checkpoint continues exactly after it.
pub async fn subscription_resumes_after_its_checkpoint<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    for n in 0..10 {
        ok(
            "append",
            store
                .append("order-1", ExpectedVersion::Any, vec![event("Counted", n)])
                .await,
        );
    }
    let mut first = Subscription::to_all(store, None, AllFilter::default());
    for _ in 0..4 {
        next_event(&mut first, "first subscription").await;
    }
    let checkpoint = first.checkpoint().map(Position);
    assert_eq!(checkpoint, Some(Position(3)));
    let mut resumed = Subscription::to_all(store, checkpoint, AllFilter::default());
    let e = next_event(&mut resumed, "resumed subscription").await;
    assert_eq!(
        e.position,
        Position(4),
        "a resumed subscription must start right after its checkpoint"
    );
}

/// A filtered subscription returns matching events only, from the backlog and live.
pub async fn subscription_filters_by_category_and_event_type<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    for (stream, kind) in [
        ("order-1", "Placed"),
        ("invoice-1", "Placed"),
        ("order-2", "Shipped"),
        ("order-3", "Placed"),
    ] {
        ok(
            "append",
            store
                .append(stream, ExpectedVersion::Any, vec![event(kind, 1)])
                .await,
        );
    }
    let filter = AllFilter {
        category: Some("order".into()),
        event_types: vec!["Placed".into()],
        ..AllFilter::default()
    };
    let mut subscription = Subscription::to_all(store, None, filter);
    assert_eq!(
        next_event(&mut subscription, "backlog").await.stream,
        "order-1"
    );
    assert_eq!(
        next_event(&mut subscription, "backlog").await.stream,
        "order-3"
    );
    ok(
        "append",
        store
            .append("invoice-2", ExpectedVersion::Any, vec![event("Placed", 2)])
            .await,
    );
    ok(
        "append",
        store
            .append("order-4", ExpectedVersion::Any, vec![event("Shipped", 2)])
            .await,
    );
    ok(
        "append",
        store
            .append("order-5", ExpectedVersion::Any, vec![event("Placed", 2)])
            .await,
    );
    let live = next_event(&mut subscription, "live").await;
    assert_eq!(
        (live.stream.as_str(), live.position),
        ("order-5", Position(6))
    );
}

/// A subscription to a stream that does not exist yet waits for it, ignores other
/// streams, and then follows it revision by revision.
pub async fn stream_subscription_follows_one_stream_live<S: EventStore + ?Sized + 'static>(
    store: Arc<S>,
) {
    assert_fresh(&*store).await;
    let mut subscription = Subscription::to_stream(Arc::clone(&store), "cart-9", None);
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for n in 0..20 {
                ok(
                    "append elsewhere",
                    store
                        .append("cart-1", ExpectedVersion::Any, vec![event("Added", n)])
                        .await,
                );
                ok(
                    "append",
                    store
                        .append("cart-9", ExpectedVersion::Any, vec![event("Added", n)])
                        .await,
                );
            }
        })
    };
    for n in 0..20u64 {
        let e = next_event(&mut subscription, "stream subscription").await;
        assert_eq!((e.stream.as_str(), e.revision), ("cart-9", Revision(n)));
    }
    writer.await.expect("writer task");
    assert_eq!(subscription.checkpoint(), Some(19));
}
