//! Surgery and the events that point at other events, on the embedded engine and on
//! PostgreSQL: the `$invalidated` notices copies leave for projections, split and
//! join by links, and compensations in the streams a surgery moves.

use eventfold_core::{
    CANCELLED_EVENT_TYPE, EventData, EventStore, INVALIDATED_EVENT_TYPE, INVALIDATIONS_STREAM,
    LINK_EVENT_TYPE, LINKED_EVENT_KEY, ReadStream,
};
use eventfold_surgery::{Operation, SplitTarget, perform};
use serde_json::json;

#[macro_use]
mod support;

use support::*;

on_every_backend!(
    copies_leave_an_invalidation_notice_for_each_source,
    split_by_links_leaves_the_events_in_place_and_reads_them_through_the_links,
    a_compensation_into_a_moved_stream_is_refused_one_pointing_elsewhere_is_copied,
);

async fn notices(store: &impl EventStore) -> Vec<serde_json::Value> {
    match store
        .read_stream(INVALIDATIONS_STREAM, ReadStream::forward())
        .await
    {
        Ok(events) => events
            .iter()
            .inspect(|e| assert_eq!(e.event_type, INVALIDATED_EVENT_TYPE))
            .map(|e| json_of(&e.data))
            .collect(),
        Err(eventfold_core::Error::StreamNotFound { .. }) => Vec::new(),
        Err(e) => panic!("read the notices: {e}"),
    }
}

async fn copies_leave_an_invalidation_notice_for_each_source(backend: Backend) {
    let Some((store, _guard)) = open(backend).await else {
        return;
    };
    fill(&store, "left-1", &["Seen", "Seen"]).await;
    fill(&store, "right-1", &["Seen"]).await;
    fill(&store, "cart-1", &["Added", "Added", "Added"]).await;
    let join = Operation::Join {
        sources: vec!["left-1".into(), "right-1".into()],
        into: "both-1".into(),
        link: false,
    };
    perform(&store, &join, &audit(), false, &mut |_, _| {})
        .await
        .expect("join");
    let in_place = Operation::CopyReplace {
        source: "cart-1".into(),
        to: "cart-1".into(),
        skip: vec![1],
        transform: None,
        in_place: true,
    };
    perform(&store, &in_place, &audit(), false, &mut |_, _| {})
        .await
        .expect("copy-replace in place");

    let written = notices(&store).await;
    assert_eq!(
        written,
        [
            json!({"stream": "left-1", "before": 2, "surgery": "join", "replaced_by": ["both-1"]}),
            json!({"stream": "right-1", "before": 1, "surgery": "join", "replaced_by": ["both-1"]}),
            // The copies start at revision 3, after the originals.
            json!({"stream": "cart-1", "before": 3, "surgery": "copy-replace", "replaced_by": ["cart-1"]}),
        ]
    );
    // A dry run leaves none.
    let dry = Operation::CopyReplace {
        source: "both-1".into(),
        to: "both-2".into(),
        skip: vec![],
        transform: None,
        in_place: false,
    };
    perform(&store, &dry, &audit(), true, &mut |_, _| {})
        .await
        .expect("dry run");
    assert_eq!(notices(&store).await.len(), 3);
}

async fn split_by_links_leaves_the_events_in_place_and_reads_them_through_the_links(
    backend: Backend,
) {
    let Some((store, _guard)) = open(backend).await else {
        return;
    };
    fill(&store, "account-1", &["Deposited", "Ordered", "Withdrawn"]).await;
    let originals = read(&store, "account-1").await;
    let split = Operation::Split {
        source: "account-1".into(),
        into: vec![
            SplitTarget {
                stream: "money-1".into(),
                filter: ".type != \"Ordered\"".into(),
            },
            SplitTarget {
                stream: "orders-1".into(),
                filter: ".type == \"Ordered\"".into(),
            },
        ],
        link: true,
    };
    let outcome = perform(&store, &split, &audit(), false, &mut |_, _| {})
        .await
        .expect("split");
    assert_eq!(outcome.targets["money-1"], 2);

    let money = read(&store, "money-1").await;
    assert_eq!(
        money.iter().map(|e| e.id).collect::<Vec<_>>(),
        [originals[0].id, originals[2].id],
        "the links read as the originals"
    );
    assert_eq!(
        money[1].revision.get(),
        1,
        "in the linking stream's revisions"
    );
    assert_eq!(json_of(&money[1].metadata)[LINKED_EVENT_KEY], "2@account-1");
    let as_written = store
        .read_stream("money-1", ReadStream::forward().links_as_written())
        .await
        .expect("read the links");
    assert!(as_written.iter().all(|e| e.event_type == LINK_EVENT_TYPE));
    assert_eq!(
        json_of(&as_written[0].data),
        json!({"event": "0@account-1"})
    );
    // The originals stay readable where they are; the source is closed.
    assert_eq!(read(&store, "account-1").await.len(), 4);
    assert!(matches!(
        store
            .append(
                "account-1",
                eventfold_core::ExpectedVersion::Any,
                vec![event("Deposited", 9)]
            )
            .await,
        Err(eventfold_core::Error::StreamMoved { .. })
    ));
    assert!(
        notices(&store).await.is_empty(),
        "links repeat no event in $all: nothing to invalidate"
    );
    // A link to a link is refused before anything is written.
    let join = Operation::Join {
        sources: vec!["money-1".into(), "orders-1".into()],
        into: "all-1".into(),
        link: true,
    };
    let err = perform(&store, &join, &audit(), false, &mut |_, _| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is a $link event") && err.contains("by copy"),
        "{err}"
    );
    assert!(!store.stream_exists("all-1").await.expect("exists"));
}

async fn a_compensation_into_a_moved_stream_is_refused_one_pointing_elsewhere_is_copied(
    backend: Backend,
) {
    let Some((store, _guard)) = open(backend).await else {
        return;
    };
    fill(&store, "order-1", &["Placed", "Paid"]).await;
    fill(&store, "ledger-1", &["Booked"]).await;
    let cancel = |at: &str| {
        EventData::json(
            CANCELLED_EVENT_TYPE,
            &json!({"event": at, "reason": "twice"}),
        )
        .expect("event")
    };
    store
        .append(
            "order-1",
            eventfold_core::ExpectedVersion::Any,
            vec![cancel("1@order-1")],
        )
        .await
        .expect("cancel in the same stream");
    store
        .append(
            "ledger-1",
            eventfold_core::ExpectedVersion::Any,
            vec![cancel("1@order-1")],
        )
        .await
        .expect("cancel from another stream");

    let copy = |source: &str, to: &str| Operation::CopyReplace {
        source: source.into(),
        to: to.into(),
        skip: vec![],
        transform: None,
        in_place: false,
    };
    let err = perform(
        &store,
        &copy("order-1", "order-2"),
        &audit(),
        false,
        &mut |_, _| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("2@order-1 is a $cancelled of 1@order-1") && err.contains("--skip"),
        "{err}"
    );
    perform(
        &store,
        &copy("ledger-1", "ledger-2"),
        &audit(),
        false,
        &mut |_, _| {},
    )
    .await
    .expect("a compensation of another stream's event moves as it is");
    let copied = read(&store, "ledger-2").await;
    assert_eq!(copied[1].event_type, CANCELLED_EVENT_TYPE);
    assert_eq!(json_of(&copied[1].data)["event"], "1@order-1");
}
