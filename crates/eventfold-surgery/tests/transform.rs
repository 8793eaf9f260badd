//! Copy-Transform of a whole store and the Big Flip: from the embedded engine into
//! the embedded engine, into PostgreSQL, and from PostgreSQL; resumed runs, a copy
//! that follows its source live until the flip, and refusals.

use std::time::Duration;

use eventfold_core::{
    Error, EventData, EventStore, ExpectedVersion, LayerExt, MIGRATED_FROM_KEY, ReadStream,
    Revision, STORE_CAUGHT_UP_EVENT_TYPE, STORE_STREAM, StreamWrite,
};
use eventfold_metadata::{StreamAdmin, StreamMetadata};
use eventfold_surgery::SURGERY_STREAM;
use eventfold_surgery::transform::{
    CopyOptions, CopyOutcome, SOURCE_POSITION_KEY, Transform, copy_store,
};
use serde_json::json;

#[macro_use]
mod support;

use support::*;

/// Fixes an event type and drops noise, as a Copy-Transform of a real store would.
const PROGRAM: &str = r#"if .type == "Noise" then empty
    elif .type == "Paid" then {type: "PaymentReceived", data: .data, version: 2}
    else . end"#;

async fn copy(
    source: &impl EventStore,
    target: &impl EventStore,
    follow: bool,
    dry_run: bool,
) -> eventfold_core::Result<CopyOutcome> {
    let transform = Transform::jq(Some(PROGRAM)).expect("the program compiles");
    let options = CopyOptions {
        follow,
        dry_run,
        arguments: json!({ "program": PROGRAM }),
    };
    copy_store(
        source,
        target,
        &transform,
        &options,
        &audit(),
        &mut |_, _| {},
    )
    .await
}

fn types(events: &[eventfold_core::RecordedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

/// A source with user events, noise, a truncated stream and consumer-group state.
async fn fill_source(source: &impl EventStore) {
    fill(source, "order-1", &["Placed", "Noise", "Paid"]).await;
    fill(source, "order-2", &["Placed", "Cancelled"]).await;
    source
        .set_stream_metadata(
            "order-2",
            ExpectedVersion::NoStream,
            StreamMetadata {
                truncate_before: Some(Revision(1)),
                ..StreamMetadata::default()
            },
        )
        .await
        .expect("truncate order-2");
    source
        .append_multi(vec![StreamWrite::system(
            "$checkpoint-billing",
            ExpectedVersion::Any,
            vec![EventData::json("$checkpoint", &json!({"position": 3})).expect("event")],
        )])
        .await
        .expect("a consumer group's checkpoint");
}

/// The whole path: a first copy, a second run that resumes, the flip, the run that
/// catches up, and a run after it that has nothing left to do.
async fn copy_then_flip(source_backend: Backend, target_backend: Backend) {
    let Some((source, _s)) = open(source_backend).await else {
        return;
    };
    let Some((target, _t)) = open(target_backend).await else {
        return;
    };
    fill_source(&source).await;

    let dry = copy(&source, &target, false, true).await.expect("dry run");
    assert!(dry.dry_run);
    assert_eq!(head(&target).await, None, "a dry run writes nothing");

    let first = copy(&source, &target, false, false).await.expect("copy");
    assert_eq!(
        (first.copied, first.dropped, first.left_out, first.caught_up),
        (dry.copied, dry.dropped, dry.left_out, None),
        "the dry run counted what the copy wrote"
    );
    assert_eq!(first.dropped, 1, "the noise was dropped");
    assert_eq!(first.left_out, 1, "the checkpoint was left out");

    let order_1 = read(&target, "order-1").await;
    assert_eq!(types(&order_1), ["Placed", "PaymentReceived"]);
    assert_eq!(order_1[1].version, 2, "the transform's version is kept");
    let originals = read(&source, "order-1").await;
    assert_eq!(
        order_1[0].id, originals[0].id,
        "a copy keeps its event's id"
    );
    assert_eq!(
        order_1[1].recorded_at, originals[2].recorded_at,
        "a copy keeps when its event was recorded"
    );
    let metadata = json_of(&order_1[1].metadata);
    assert_eq!(metadata[MIGRATED_FROM_KEY], "2@order-1");
    assert_eq!(metadata[SOURCE_POSITION_KEY], originals[2].position.get());
    assert_eq!(
        types(&read(&target, "order-2").await),
        ["Cancelled"],
        "the truncation still hides what it hid"
    );
    assert!(
        !target
            .stream_exists("$checkpoint-billing")
            .await
            .expect("exists"),
        "consumer-group state is not copied"
    );
    let trail = read(&target, SURGERY_STREAM).await;
    assert_eq!(
        json_of(&trail[0].data)["operation"],
        "transform",
        "the run left its audit record in the new store"
    );

    // Live writes, then a second run: it starts after the copies already written.
    source
        .append(
            "order-1",
            ExpectedVersion::Exact(Revision(2)),
            vec![event("Shipped", 3)],
        )
        .await
        .expect("a live write");
    let second = copy(&source, &target, false, false).await.expect("resume");
    assert_eq!(second.copied, 1, "only the new event is copied");
    assert!(second.started_at > first.started_at);
    assert_eq!(
        types(&read(&target, "order-1").await),
        ["Placed", "PaymentReceived", "Shipped"]
    );

    // The flip: the old store refuses writes; the next run catches up and says so.
    flip(&source, Some("the new cluster")).await;
    match source
        .append("order-1", ExpectedVersion::Any, vec![event("Late", 4)])
        .await
    {
        Err(Error::ReadOnly { reason }) => assert!(reason.contains("the new cluster"), "{reason}"),
        other => panic!("an append after the flip: expected read_only, got {other:?}"),
    }
    let flip_position = head(&source).await.expect("head").get();
    let third = copy(&source, &target, false, false)
        .await
        .expect("catch up");
    assert_eq!(third.caught_up, Some(flip_position));
    let store = read(&target, STORE_STREAM).await;
    assert_eq!(types(&store), [STORE_CAUGHT_UP_EVENT_TYPE]);
    assert_eq!(json_of(&store[0].data)["source_position"], flip_position);
    let trail = read(&target, SURGERY_STREAM).await;
    assert!(
        trail
            .iter()
            .any(|e| json_of(&e.data)["operation"] == "flip"),
        "the flip's audit record was copied"
    );
    target
        .append("order-1", ExpectedVersion::Any, vec![event("Delivered", 5)])
        .await
        .expect("the new store takes writes");

    let again = copy(&source, &target, false, false)
        .await
        .expect("after the flip");
    assert_eq!(
        (again.copied, again.caught_up),
        (0, Some(flip_position)),
        "a run after the catch-up finds nothing left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_to_log_copies_resumes_and_catches_up_after_the_flip() {
    copy_then_flip(Backend::Log, Backend::Log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_to_postgres_copies_resumes_and_catches_up_after_the_flip() {
    copy_then_flip(Backend::Log, Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_log_copies_resumes_and_catches_up_after_the_flip() {
    copy_then_flip(Backend::Postgres, Backend::Log).await;
}

on_every_backend!(
    a_copy_following_its_source_ends_at_the_flip_with_nothing_lost,
    a_copy_stopped_mid_way_resumes_without_writing_twice,
);

/// A copy that stops half-way (its fifth append fails) leaves whole appends only;
/// run again, it starts after them, and the target ends up holding every event
/// once, ids kept.
async fn a_copy_stopped_mid_way_resumes_without_writing_twice(backend: Backend) {
    let Some((source, _s)) = open(Backend::Log).await else {
        return;
    };
    let Some((target, _t)) = open(backend).await else {
        return;
    };
    let target = target.layer(CrashAt::new(5));
    let mut n = 0;
    for _round in 0..10 {
        for cart in 0..3 {
            let events = (0..50).map(|i| event("ItemAdded", n + i)).collect();
            n += 50;
            source
                .append(&format!("cart-{cart}"), ExpectedVersion::Any, events)
                .await
                .expect("fill");
        }
    }
    let stopped = copy(&source, &target, false, false).await;
    assert!(
        matches!(&stopped, Err(e) if e.to_string().contains("crash")),
        "the copy stopped at the crash: {stopped:?}"
    );
    let partial: usize = {
        let mut total = 0;
        for cart in 0..3 {
            total += match target
                .read_stream(&format!("cart-{cart}"), ReadStream::forward())
                .await
            {
                Ok(events) => events.len(),
                Err(Error::StreamNotFound { .. }) => 0,
                Err(e) => panic!("read: {e}"),
            };
        }
        total
    };
    assert!(
        partial > 0 && partial < 1500,
        "the crash came mid-way ({partial} copied)"
    );
    let resumed = copy(&source, &target, false, false).await.expect("resume");
    assert_eq!(
        resumed.copied as usize,
        1500 - partial,
        "the second run copies only what the first did not"
    );
    for cart in 0..3 {
        let name = format!("cart-{cart}");
        let originals = read(&source, &name).await;
        let copies = read(&target, &name).await;
        assert_eq!(
            ns(&copies),
            ns(&originals),
            "{name}: every event once, in order"
        );
        let ids = |events: &[eventfold_core::RecordedEvent]| {
            events.iter().map(|e| e.id).collect::<Vec<_>>()
        };
        assert_eq!(ids(&copies), ids(&originals), "{name}: ids kept");
    }
}

/// A copy that follows its source while writers keep appending ends by itself at the
/// flip, and holds every event the source acknowledged.
async fn a_copy_following_its_source_ends_at_the_flip_with_nothing_lost(backend: Backend) {
    let Some((source, _s)) = open(backend).await else {
        return;
    };
    let Some((target, _t)) = open(Backend::Log).await else {
        return;
    };
    let source = std::sync::Arc::new(source);
    let target = std::sync::Arc::new(target);
    let follower = {
        let (source, target) = (source.clone(), target.clone());
        tokio::spawn(async move { copy(source.as_ref(), target.as_ref(), true, false).await })
    };
    let mut written = 0u64;
    for n in 0..200u64 {
        let stream = format!("cart-{}", n % 7);
        source
            .append(&stream, ExpectedVersion::Any, vec![event("ItemAdded", n)])
            .await
            .expect("a live write");
        written += 1;
        if n % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    flip(source.as_ref(), None).await;
    let outcome = tokio::time::timeout(Duration::from_secs(60), follower)
        .await
        .expect("the follower ends at the flip")
        .expect("the follower task")
        .expect("the follower's copy");
    assert!(outcome.caught_up.is_some(), "it ended caught up");
    let mut copied = 0;
    for cart in 0..7 {
        let name = format!("cart-{cart}");
        let originals = read(source.as_ref(), &name).await;
        let copies = read(target.as_ref(), &name).await;
        assert_eq!(ns(&copies), ns(&originals), "{name} is whole and in order");
        copied += copies.len() as u64;
    }
    assert_eq!(copied, written);
}

/// A target that holds events of its own, and an invalid program, are refused
/// before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_in_use_and_an_invalid_program_are_refused() {
    let (source, _s) = open(Backend::Log).await.expect("log store");
    let (target, _t) = open(Backend::Log).await.expect("log store");
    fill(&source, "order-1", &["Placed"]).await;
    fill(&target, "mine", &["Kept"]).await;
    let error = copy(&source, &target, false, false)
        .await
        .expect_err("a target in use");
    assert!(error.to_string().contains("new, empty store"), "{error}");
    assert_eq!(
        read(&target, "mine").await.len(),
        1,
        "the target was left as it was"
    );
    assert!(
        !target.stream_exists("order-1").await.expect("exists"),
        "nothing was copied"
    );
    let Err(error) = Transform::jq(Some("{type: ")) else {
        panic!("an invalid program compiled");
    };
    assert!(
        error.to_string().contains("not a valid jq program"),
        "{error}"
    );
    assert!(
        source
            .read_stream("order-1", ReadStream::forward())
            .await
            .is_ok()
    );
}
