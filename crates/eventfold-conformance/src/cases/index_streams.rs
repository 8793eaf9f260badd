//! Index streams (`$ce-<category>`, `$et-<type>`, `$correlation-<id>`): read like any
//! stream, paged by global position, returning the events as written (their own
//! stream, revision and position), and never writable.

use eventfold_core::{
    EventStore, ExpectedVersion, ReadStream, RecordedEvent, Revision, StreamWrite,
};
use uuid::Uuid;

use crate::support::{assert_fresh, event, expect_code, ok};

fn places(events: &[RecordedEvent]) -> Vec<(String, u64, u64)> {
    events
        .iter()
        .map(|e| (e.stream.clone(), e.revision.get(), e.position.get()))
        .collect()
}

/// Reads of `$ce-`, `$et-` and `$correlation-` give the matching events in position
/// order, forward and backward, from a position, with a limit.
pub async fn index_streams_read_categories_types_and_correlations<S: EventStore + ?Sized>(
    store: &S,
) {
    assert_fresh(store).await;
    let conversation = Uuid::now_v7();
    let writes = [
        ("order-1", "OrderPlaced", false),
        ("cart-1", "ItemAdded", true),
        ("order-2", "OrderPlaced", true),
        ("order-1", "OrderShipped", false),
        ("cart-1", "OrderPlaced", false),
        ("order-2", "OrderShipped", true),
    ];
    for (n, (stream, event_type, correlated)) in writes.iter().enumerate() {
        let mut e = event(event_type, n as u64);
        if *correlated {
            e = e.with_correlation_id(conversation);
        }
        ok(
            "append",
            store.append(stream, ExpectedVersion::Any, vec![e]).await,
        );
    }
    let read = |name: &'static str, options: ReadStream| async move {
        places(&ok(name, store.read_stream(name, options).await))
    };
    let s = |stream: &str, revision: u64, position: u64| (stream.to_string(), revision, position);

    let orders = vec![
        s("order-1", 0, 0),
        s("order-2", 0, 2),
        s("order-1", 1, 3),
        s("order-2", 1, 5),
    ];
    assert_eq!(
        read("$ce-order", ReadStream::forward()).await,
        orders,
        "$ce-order forward"
    );
    let mut backward = orders.clone();
    backward.reverse();
    assert_eq!(
        read("$ce-order", ReadStream::backward()).await,
        backward,
        "$ce-order backward"
    );
    assert_eq!(
        read(
            "$ce-order",
            ReadStream::forward().from(Revision(1)).limit(2)
        )
        .await,
        orders[1..3].to_vec(),
        "$ce-order from position 1, 2 events: `from` is a position"
    );
    assert_eq!(
        read(
            "$ce-order",
            ReadStream::backward().from(Revision(4)).limit(2)
        )
        .await,
        vec![s("order-1", 1, 3), s("order-2", 0, 2)],
        "$ce-order backward from position 4"
    );
    assert_eq!(
        read("$et-OrderPlaced", ReadStream::forward()).await,
        vec![s("order-1", 0, 0), s("order-2", 0, 2), s("cart-1", 1, 4)],
        "$et-OrderPlaced"
    );
    let correlation = ok(
        "read the correlation",
        store
            .read_stream(
                &format!("$correlation-{conversation}"),
                ReadStream::forward(),
            )
            .await,
    );
    assert_eq!(
        places(&correlation),
        vec![s("cart-1", 0, 1), s("order-2", 0, 2), s("order-2", 1, 5)],
        "$correlation-<id>"
    );
    assert_eq!(
        read("$ce-order", ReadStream::forward().from(Revision(6))).await,
        vec![],
        "past the end"
    );
    expect_code(
        "an index stream without events",
        store
            .read_stream("$ce-invoice", ReadStream::forward())
            .await,
        "stream_not_found",
    );
}

/// Index streams are views: appending to one is refused and writes nothing.
pub async fn index_streams_cannot_be_written<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    ok(
        "append",
        store
            .append(
                "order-1",
                ExpectedVersion::Any,
                vec![event("OrderPlaced", 0)],
            )
            .await,
    );
    for name in ["$ce-order", "$et-OrderPlaced", "$correlation-abc"] {
        expect_code(
            &format!("append to {name}"),
            store
                .append(name, ExpectedVersion::Any, vec![event("Sneaky", 1)])
                .await,
            "invalid_stream_name",
        );
        expect_code(
            &format!("append_multi with {name}"),
            store
                .append_multi(vec![StreamWrite::new(
                    name,
                    ExpectedVersion::Any,
                    vec![event("Sneaky", 2)],
                )])
                .await,
            "invalid_stream_name",
        );
    }
    let orders = ok(
        "read $ce-order",
        store.read_stream("$ce-order", ReadStream::forward()).await,
    );
    assert_eq!(
        orders.len(),
        1,
        "nothing was written through an index stream"
    );
}

/// A subscription to an index stream catches up and follows it live, by position.
pub async fn index_streams_can_be_subscribed_to<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    let conversation = Uuid::now_v7();
    for (stream, correlated) in [("order-1", true), ("cart-1", true), ("order-2", false)] {
        let mut e = event("Placed", 0);
        if correlated {
            e = e.with_correlation_id(conversation);
        }
        ok(
            "append",
            store.append(stream, ExpectedVersion::Any, vec![e]).await,
        );
    }
    let mut orders = eventfold_subscription::Subscription::to_stream(store, "$ce-order", None);
    let mut correlated = eventfold_subscription::Subscription::to_stream(
        store,
        format!("$correlation-{conversation}"),
        None,
    );
    let wait = std::time::Duration::from_secs(30);
    let next = async |subscription: &mut eventfold_subscription::Subscription<&S>| {
        let next = tokio::time::timeout(wait, subscription.next()).await;
        ok(
            "index stream subscription",
            next.expect("an event within 30 s"),
        )
    };
    assert_eq!(next(&mut orders).await.position.get(), 0);
    assert_eq!(next(&mut orders).await.position.get(), 2);
    assert_eq!(next(&mut correlated).await.stream, "order-1");
    assert_eq!(next(&mut correlated).await.stream, "cart-1");
    ok(
        "append live",
        store
            .append("cart-2", ExpectedVersion::Any, vec![event("Placed", 1)])
            .await,
    );
    ok(
        "append live",
        store
            .append(
                "order-3",
                ExpectedVersion::Any,
                vec![event("Placed", 2).with_correlation_id(conversation)],
            )
            .await,
    );
    let live = next(&mut orders).await;
    assert_eq!((live.stream.as_str(), live.position.get()), ("order-3", 4));
    assert_eq!(orders.checkpoint(), Some(4), "the checkpoint is a position");
    assert_eq!(next(&mut correlated).await.stream, "order-3");
}
