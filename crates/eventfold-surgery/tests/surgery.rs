//! Stream surgery on the embedded engine and on PostgreSQL, under the metadata layer
//! (as the CLI and the server open a store): copy-replace (also in place), split and
//! join, their refusals before any write, a live writer during the surgery, and a
//! surgery stopped before its last append.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use eventfold_core::{
    AppendResult, Error, EventData, EventStore, ExpectedVersion, LayerExt, Result, Revision,
    STREAM_MOVED_EVENT_TYPE, StoreLayer, StreamWrite,
};
use eventfold_surgery::{Audit, Operation, SURGERY_STREAM, SplitTarget, perform};
use serde_json::{Value, json};

#[macro_use]
mod support;

use support::*;

on_every_backend!(
    copy_replace_skips_moves_and_leaves_an_audit_record,
    copy_replace_transforms_with_jq,
    split_routes_each_event_to_the_one_filter_it_matches,
    join_keeps_the_order_of_all_and_moves_every_source,
    bad_input_is_refused_before_any_write,
    a_live_writer_during_the_surgery_loses_nothing,
    a_surgery_stopped_before_its_last_append_shows_nothing_moved_and_resumes,
    copy_replace_in_place_hides_the_originals_in_one_append,
);

async fn copy_replace_skips_moves_and_leaves_an_audit_record(backend: Backend) {
    let Some((store, _guard)) = open(backend).await else {
        return;
    };
    fill(&store, "order-1", &["Placed", "PricedWrongly", "Paid"]).await;
    let operation = Operation::CopyReplace {
        source: "order-1".into(),
        to: "order-1-fixed".into(),
        skip: vec![1],
        transform: None,
        in_place: false,
    };

    let before = head(&store).await;
    let dry = perform(&store, &operation, &audit(), true, &mut |_, _| {})
        .await
        .unwrap();
    assert!(dry.dry_run);
    assert_eq!(
        dry.targets["order-1-fixed"], 2,
        "a dry run says what it would copy"
    );
    assert_eq!(dry.dropped, 1);
    assert_eq!(head(&store).await, before, "a dry run writes nothing");

    let outcome = perform(&store, &operation, &audit(), false, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(outcome.targets["order-1-fixed"], 2);
    let copies = read(&store, "order-1-fixed").await;
    assert_eq!(ns(&copies), [0, 2]);
    let from: Vec<Value> = copies
        .iter()
        .map(|e| json_of(&e.metadata)["$migrated_from"].clone())
        .collect();
    assert_eq!(from, [json!("0@order-1"), json!("2@order-1")]);

    let old = read(&store, "order-1").await;
    assert_eq!(old.len(), 4, "the old stream keeps its history");
    assert_eq!(old[3].event_type, STREAM_MOVED_EVENT_TYPE);
    assert_eq!(json_of(&old[3].data), json!({"stream": "order-1-fixed"}));
    match store
        .append("order-1", ExpectedVersion::Any, vec![event("Shipped", 9)])
        .await
    {
        Err(Error::StreamMoved { moved_to, .. }) => assert_eq!(moved_to, "order-1-fixed"),
        other => panic!("an append to the moved stream: {other:?}"),
    }

    let log = eventfold_surgery::log(&store).await.unwrap();
    assert_eq!(log.len(), 1);
    let record = json_of(&log[0].data);
    assert_eq!(record["operation"], "copy-replace");
    assert_eq!(record["reason"], "wrong prices in October");
    assert_eq!(record["who"], "ops");
    assert_eq!(record["arguments"]["skip"], json!([1]));
    assert!(
        record["at"].as_str().is_some_and(|t| t.contains('T')),
        "{record}"
    );
    assert_eq!(outcome.audit_position, Some(log[0].position.get()));

    // The same surgery again: the source is moved now.
    assert!(matches!(
        perform(&store, &operation, &audit(), false, &mut |_, _| {}).await,
        Err(Error::StreamMoved { .. })
    ));
}

async fn copy_replace_transforms_with_jq(backend: Backend) {
    let Some((store, _guard)) = open(backend).await else {
        return;
    };
    fill(&store, "cart-1", &["Added", "Added", "Removed"]).await;
    // Doubles every n, drops the removals, renames the adds.
    let transform = r#"if .type == "Removed" then empty else {type: "ItemAdded", data: {n: (.data.n * 10)}} end"#;
    let operation = Operation::CopyReplace {
        source: "cart-1".into(),
        to: "cart-1-v2".into(),
        skip: vec![],
        transform: Some(transform.into()),
        in_place: false,
    };
    let outcome = perform(&store, &operation, &audit(), false, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(outcome.dropped, 1);
    let copies = read(&store, "cart-1-v2").await;
    assert_eq!(ns(&copies), [0, 10]);
    assert!(copies.iter().all(|e| e.event_type == "ItemAdded"));
}

async fn split_routes_each_event_to_the_one_filter_it_matches(backend: Backend) {
    let Some((store, _guard)) = open(backend).await else {
        return;
    };
    fill(
        &store,
        "account-1",
        &["Deposited", "Ordered", "Withdrawn", "Shipped"],
    )
    .await;
    let split = |filters: &[(&str, &str)]| Operation::Split {
        source: "account-1".into(),
        into: filters
            .iter()
            .map(|(s, f)| SplitTarget {
                stream: s.to_string(),
                filter: f.to_string(),
            })
            .collect(),
        link: false,
    };

    let before = head(&store).await;
    for (filters, says) in [
        (
            vec![
                ("money-1", r#".type | test("Deposited|Withdrawn")"#),
                ("orders-1", r#".type == "Ordered""#),
            ],
            "no split filter matches 3@account-1",
        ),
        (
            vec![("money-1", "true"), ("orders-1", r#".type == "Ordered""#)],
            "all match",
        ),
        (
            vec![("money-1", "true"), ("orders-1", ".type ==")],
            "not a valid jq program",
        ),
    ] {
        let error = perform(&store, &split(&filters), &audit(), false, &mut |_, _| {})
            .await
            .expect_err("a bad split is refused");
        assert!(error.to_string().contains(says), "{error}");
        assert_eq!(head(&store).await, before, "a refused split writes nothing");
    }

    let good = split(&[
        ("money-1", r#".type | test("Deposited|Withdrawn")"#),
        ("orders-1", r#".type | test("Ordered|Shipped")"#),
    ]);
    perform(&store, &good, &audit(), false, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(ns(&read(&store, "money-1").await), [0, 2]);
    assert_eq!(ns(&read(&store, "orders-1").await), [1, 3]);
    let marker = read(&store, "account-1").await.pop().unwrap();
    assert_eq!(
        json_of(&marker.data),
        json!({"stream": "money-1", "streams": ["money-1", "orders-1"]})
    );
}

async fn join_keeps_the_order_of_all_and_moves_every_source(backend: Backend) {
    let Some((store, _guard)) = open(backend).await else {
        return;
    };
    for n in 0..6u64 {
        let stream = if n % 2 == 0 { "left-1" } else { "right-1" };
        store
            .append(stream, ExpectedVersion::Any, vec![event("Seen", n)])
            .await
            .unwrap();
    }
    let operation = Operation::Join {
        sources: vec!["right-1".into(), "left-1".into()],
        into: "both-1".into(),
        link: false,
    };
    perform(&store, &operation, &audit(), false, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(ns(&read(&store, "both-1").await), [0, 1, 2, 3, 4, 5]);
    for source in ["left-1", "right-1"] {
        assert!(matches!(
            store.append(source, ExpectedVersion::Any, vec![event("Seen", 9)]).await,
            Err(Error::StreamMoved { moved_to, .. }) if moved_to == "both-1"
        ));
    }
}

async fn bad_input_is_refused_before_any_write(backend: Backend) {
    let Some((store, _guard)) = open(backend).await else {
        return;
    };
    fill(&store, "order-1", &["Placed"]).await;
    fill(&store, "order-2", &["Placed"]).await;
    let copy =
        |source: &str, to: &str, skip: Vec<u64>, transform: Option<&str>| Operation::CopyReplace {
            source: source.into(),
            to: to.into(),
            skip,
            transform: transform.map(str::to_string),
            in_place: false,
        };
    let before = head(&store).await;
    for (operation, reason, says) in [
        (copy("order-9", "x-1", vec![], None), "r", "not found"),
        (
            copy("order-1", "order-2", vec![], None),
            "r",
            "target stream 'order-2' exists",
        ),
        (
            copy("order-1", "x-1", vec![5], None),
            "r",
            "has no revision 5",
        ),
        (
            copy("order-1", "x-1", vec![], Some("{")),
            "r",
            "not a valid jq program",
        ),
        (copy("order-1", "order-1", vec![], None), "r", "named twice"),
        (copy("order-1", "x-1", vec![], None), " ", "needs a reason"),
        (
            copy("order-1", "$x", vec![], None),
            "r",
            "invalid stream name",
        ),
    ] {
        let audit = Audit {
            reason: reason.into(),
            who: "ops".into(),
        };
        let error = perform(&store, &operation, &audit, false, &mut |_, _| {})
            .await
            .expect_err("refused");
        assert!(error.to_string().contains(says), "{operation:?}: {error}");
    }
    assert_eq!(head(&store).await, before, "nothing was written");
}

/// Appends one client event to `source` just before the surgery's last append reaches
/// the store, the first `times` times: a live writer in the worst moment.
struct LiveWriter {
    source: &'static str,
    times: AtomicUsize,
}

#[async_trait]
impl StoreLayer for LiveWriter {
    async fn before_append<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        writes: Vec<StreamWrite>,
    ) -> Result<Vec<StreamWrite>> {
        let last_append = writes.iter().any(|w| w.stream == SURGERY_STREAM);
        if last_append && self.times.load(Ordering::SeqCst) > 0 {
            let n = 100 + self.times.fetch_sub(1, Ordering::SeqCst) as u64;
            inner
                .append(self.source, ExpectedVersion::Any, vec![event("Late", n)])
                .await?;
        }
        Ok(writes)
    }
}

async fn a_live_writer_during_the_surgery_loses_nothing(backend: Backend) {
    let Some((store, _guard)) = open(backend).await else {
        return;
    };
    let store = store.layer(LiveWriter {
        source: "order-1",
        times: AtomicUsize::new(3),
    });
    fill(&store, "order-1", &["Placed", "Paid"]).await;
    let operation = Operation::CopyReplace {
        source: "order-1".into(),
        to: "order-1-fixed".into(),
        skip: vec![],
        transform: None,
        in_place: false,
    };
    perform(&store, &operation, &audit(), false, &mut |_, _| {})
        .await
        .unwrap();
    // Every event the live writer got acknowledged is in the new stream.
    assert_eq!(
        ns(&read(&store, "order-1-fixed").await),
        [0, 1, 103, 102, 101]
    );
    let old = read(&store, "order-1").await;
    assert_eq!(old.len(), 6);
    assert_eq!(old[5].event_type, STREAM_MOVED_EVENT_TYPE);
}

/// Fails the surgery's last append once, as a crash would stop it there.
struct FailLastAppend(AtomicBool);

#[async_trait]
impl StoreLayer for FailLastAppend {
    async fn append_multi<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        writes: Vec<StreamWrite>,
    ) -> Result<Vec<AppendResult>> {
        if writes.iter().any(|w| w.stream == SURGERY_STREAM) && self.0.swap(false, Ordering::SeqCst)
        {
            return Err(Error::io("the last append", std::io::Error::other("crash")));
        }
        inner.append_multi(writes).await
    }
}

async fn a_surgery_stopped_before_its_last_append_shows_nothing_moved_and_resumes(
    backend: Backend,
) {
    let Some((store, _guard)) = open(backend).await else {
        return;
    };
    let store = store.layer(FailLastAppend(AtomicBool::new(true)));
    let events = eventfold_surgery::CHUNK_EVENTS as u64 * 2 + 500;
    let batch: Vec<EventData> = (0..events).map(|n| event("Counted", n)).collect();
    store
        .append("big-1", ExpectedVersion::NoStream, batch)
        .await
        .unwrap();
    let operation = Operation::CopyReplace {
        source: "big-1".into(),
        to: "big-1-fixed".into(),
        skip: vec![],
        transform: None,
        in_place: false,
    };
    let mut seen = Vec::new();
    perform(&store, &operation, &audit(), false, &mut |done, total| {
        seen.push((done, total))
    })
    .await
    .expect_err("the last append fails");
    assert_eq!(
        seen,
        [(1_000, events), (2_000, events)],
        "progress of the chunks"
    );
    // Readers see the source as it was: no marker, no audit record.
    assert_eq!(
        store.stream_revision("big-1").await.unwrap(),
        Some(Revision(events - 1))
    );
    assert!(eventfold_surgery::log(&store).await.unwrap().is_empty());
    assert!(
        store
            .append(
                "big-1",
                ExpectedVersion::Any,
                vec![event("Counted", events)]
            )
            .await
            .is_ok()
    );

    let outcome = perform(&store, &operation, &audit(), false, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(
        outcome.resumed, 2_000,
        "the chunks written before are not written again"
    );
    let copies = read(&store, "big-1-fixed").await;
    assert_eq!(ns(&copies), (0..=events).collect::<Vec<_>>());
    assert_eq!(eventfold_surgery::log(&store).await.unwrap().len(), 1);
}

async fn copy_replace_in_place_hides_the_originals_in_one_append(backend: Backend) {
    let Some((store, _guard)) = open(backend).await else {
        return;
    };
    let store = store.layer(LiveWriter {
        source: "order-1",
        times: AtomicUsize::new(1),
    });
    fill(&store, "order-1", &["Placed", "PricedWrongly", "Paid"]).await;
    let operation = Operation::CopyReplace {
        source: "order-1".into(),
        to: "order-1".into(),
        skip: vec![1],
        transform: None,
        in_place: true,
    };
    let outcome = perform(&store, &operation, &audit(), false, &mut |_, _| {})
        .await
        .unwrap();
    assert!(
        outcome.moved.is_empty(),
        "nothing moved: the stream keeps its name"
    );
    // The live writer's event (101, at revision 3) was copied too; the originals
    // (revisions 0 to 3) are hidden by truncate_before, the copies follow them.
    let visible = read(&store, "order-1").await;
    assert_eq!(ns(&visible), [0, 2, 101]);
    assert_eq!(visible[0].revision, Revision(4));
    let from: Vec<Value> = visible
        .iter()
        .map(|e| json_of(&e.metadata)["$migrated_from"].clone())
        .collect();
    assert_eq!(
        from,
        [json!("0@order-1"), json!("2@order-1"), json!("3@order-1")]
    );
    // The stream is not closed: writers keep appending to it.
    store
        .append(
            "order-1",
            ExpectedVersion::Exact(Revision(6)),
            vec![event("Shipped", 7)],
        )
        .await
        .unwrap();
    assert_eq!(eventfold_surgery::log(&store).await.unwrap().len(), 1);

    let wrong_target = Operation::CopyReplace {
        source: "order-1".into(),
        to: "order-2".into(),
        skip: vec![],
        transform: None,
        in_place: true,
    };
    let error = perform(&store, &wrong_target, &audit(), false, &mut |_, _| {})
        .await
        .expect_err("an in-place copy names its source as target");
    assert!(
        error.to_string().contains("writes back to its source"),
        "{error}"
    );
}
