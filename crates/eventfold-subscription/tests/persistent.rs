//! Consumer groups: competing consumers, ack/nack, retries, parking, replay of parked
//! events, late acks, a bounded number of deliveries in flight, and checkpoints kept
//! in the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use eventfold_core::{EventData, EventStore, ExpectedVersion, InMemoryStore};
use eventfold_subscription::{
    GroupSettings, Nack, PersistentGroup, delete_group, list_groups, update_group,
};

fn event(n: u64) -> EventData {
    EventData::json("Happened", &n).unwrap()
}

async fn append(store: &InMemoryStore, count: u64) {
    for n in 0..count {
        store
            .append(
                &format!("thing-{}", n % 7),
                ExpectedVersion::Any,
                vec![event(n)],
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_consumers_share_the_events_each_delivered_once() {
    let store = Arc::new(InMemoryStore::new());
    append(&store, 50).await;
    let group = Arc::new(
        PersistentGroup::create(store.clone(), "workers", GroupSettings::default())
            .await
            .unwrap(),
    );
    let total = 300usize;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 50..total as u64 {
                store
                    .append("thing-x", ExpectedVersion::Any, vec![event(n)])
                    .await
                    .unwrap();
            }
        })
    };
    let delivered = Arc::new(std::sync::Mutex::new(BTreeMap::<u64, Vec<usize>>::new()));
    let all_delivered = Arc::new(tokio::sync::Notify::new());
    // Acks counted apart from deliveries: the checkpoint is checked once every
    // delivered event was acked, whichever consumer acks last.
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut consumers = Vec::new();
    for consumer in 0..3usize {
        let group = group.clone();
        let delivered = delivered.clone();
        let all_delivered = all_delivered.clone();
        let acked = acked.clone();
        consumers.push(tokio::spawn(async move {
            loop {
                let next = group.next().await.unwrap();
                let position = next.event.position.get();
                delivered
                    .lock()
                    .unwrap()
                    .entry(position)
                    .or_default()
                    .push(consumer);
                group.ack(position).await.unwrap();
                if acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == total {
                    all_delivered.notify_one();
                }
            }
        }));
    }
    writer.await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), all_delivered.notified())
        .await
        .expect("every event delivered within 20 s");
    for consumer in &consumers {
        consumer.abort();
    }
    let delivered = delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), total, "every event was delivered");
    assert!(
        delivered.values().all(|consumers| consumers.len() == 1),
        "no event went to two consumers"
    );
    let last = *delivered.keys().next_back().unwrap();
    assert!(
        group.status().checkpoint >= Some(last),
        "{:?}",
        group.status()
    );
    assert_eq!(group.status().in_flight, 0);
}

#[tokio::test]
async fn a_failing_event_is_retried_then_parked_and_can_be_replayed() {
    let store = Arc::new(InMemoryStore::new());
    append(&store, 3).await;
    let settings = GroupSettings {
        retries_max: 3,
        ..GroupSettings::default()
    };
    let group = PersistentGroup::create(store.clone(), "emails", settings)
        .await
        .unwrap();
    let mut attempts = Vec::new();
    loop {
        let delivery = group.next().await.unwrap();
        let position = delivery.event.position.get();
        if position == 1 {
            attempts.push(delivery.attempt);
            group
                .nack(position, Nack::Retry, "smtp refused")
                .await
                .unwrap();
        } else {
            group.ack(position).await.unwrap();
            if position == 2 {
                break;
            }
        }
    }
    // Retried in order with the others, parked at the third failure.
    let delivery_after_parking =
        tokio::time::timeout(Duration::from_millis(100), group.next()).await;
    assert!(
        delivery_after_parking.is_err(),
        "a parked event is not delivered again"
    );
    assert_eq!(attempts, vec![1, 2, 3]);
    let parked = group.parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].position, parked[0].attempts), (1, 3));
    assert_eq!(parked[0].reason, "smtp refused");
    // The head is the `$parked-emails` entry: system events are passed over.
    let head = store.head_position().await.unwrap().map(|p| p.get());
    assert_eq!(
        group.status().checkpoint,
        head,
        "a parked event does not hold the group back"
    );

    assert_eq!(group.replay_parked(&[1]).await.unwrap(), 1);
    let again = group.next().await.unwrap();
    assert_eq!((again.event.position.get(), again.attempt), (1, 1));
    group.ack(1).await.unwrap();
    assert_eq!(group.status().checkpoint, head);
    assert!(
        group.ack(1).await.is_err(),
        "an ack of nothing in flight is an error"
    );
}

#[tokio::test]
async fn a_late_ack_delivers_the_event_again_and_in_flight_is_bounded() {
    let store = Arc::new(InMemoryStore::new());
    append(&store, 4).await;
    let settings = GroupSettings {
        ack_timeout_ms: 100,
        in_flight_max: 2,
        ..GroupSettings::default()
    };
    let group = PersistentGroup::create(store.clone(), "slow", settings)
        .await
        .unwrap();
    let first = group.next().await.unwrap();
    let second = group.next().await.unwrap();
    assert_eq!(group.status().in_flight, 2);
    // Nothing is acked: the group waits for the first late ack, then delivers again.
    let third = group.next().await.unwrap();
    assert_eq!(
        (third.event.position, third.attempt),
        (first.event.position, 2),
        "a late event comes back before any new one"
    );
    assert!(group.status().in_flight <= 2);
    group.ack(first.event.position.get()).await.unwrap();
    group.ack(second.event.position.get()).await.unwrap();
    let fourth = group.next().await.unwrap();
    assert_eq!(fourth.event.position.get(), 2);
}

#[tokio::test]
async fn the_group_resumes_after_its_stored_checkpoint_with_its_settings() {
    let store = Arc::new(InMemoryStore::new());
    append(&store, 20).await;
    let settings = GroupSettings {
        checkpoint_every_events: 5,
        event_types: vec!["Happened".into()],
        ..GroupSettings::default()
    };
    {
        let group = PersistentGroup::create(store.clone(), "reports", settings.clone())
            .await
            .unwrap();
        for _ in 0..12 {
            let delivery = group.next().await.unwrap();
            group.ack(delivery.event.position.get()).await.unwrap();
        }
    }
    // Stopped without a final checkpoint: resumes after the tenth ack (at least once).
    let group = PersistentGroup::open(store.clone(), "reports")
        .await
        .unwrap();
    assert_eq!(group.settings(), &settings);
    assert_eq!(group.next().await.unwrap().event.position.get(), 10);

    // A second process serving the same group is refused when it stores a checkpoint.
    let other = PersistentGroup::open(store.clone(), "reports")
        .await
        .unwrap();
    let delivery = other.next().await.unwrap();
    other.ack(delivery.event.position.get()).await.unwrap();
    group.ack(10).await.unwrap();
    group.store_checkpoint().await.unwrap();
    let err = other.store_checkpoint().await.unwrap_err();
    assert!(
        matches!(err, eventfold_core::Error::WrongExpectedVersion { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_group_starting_after_the_last_possible_position_opens_and_waits() {
    // Found by Schemathesis: `start_after` of u64::MAX made opening the group add past
    // the largest position (a panic in debug builds, a wrap to the start in release).
    let store = Arc::new(InMemoryStore::new());
    append(&store, 3).await;
    let settings = GroupSettings {
        start_after: Some(u64::MAX),
        ..GroupSettings::default()
    };
    drop(
        PersistentGroup::create(store.clone(), "far", settings.clone())
            .await
            .unwrap(),
    );
    let group = PersistentGroup::open(store.clone(), "far").await.unwrap();
    assert_eq!(group.settings(), &settings);
    let next = tokio::time::timeout(Duration::from_millis(200), group.next()).await;
    assert!(
        next.is_err(),
        "nothing lies after the last position: {next:?}"
    );
}

#[tokio::test]
async fn a_one_stream_group_delivers_that_stream_only() {
    let store = Arc::new(InMemoryStore::new());
    for stream in ["order-1", "order-10", "order-1", "order-2"] {
        store
            .append(stream, ExpectedVersion::Any, vec![event(0)])
            .await
            .unwrap();
    }
    let settings = GroupSettings {
        stream: Some("order-1".into()),
        ..GroupSettings::default()
    };
    let group = PersistentGroup::create(store.clone(), "one", settings)
        .await
        .unwrap();
    for revision in 0..2 {
        let delivery = group.next().await.unwrap();
        assert_eq!(
            (
                delivery.event.stream.as_str(),
                delivery.event.revision.get()
            ),
            ("order-1", revision)
        );
        group.ack(delivery.event.position.get()).await.unwrap();
    }
    let none = tokio::time::timeout(Duration::from_millis(50), group.next()).await;
    assert!(
        none.is_err(),
        "order-10 and order-2 are not order-1's: {none:?}"
    );
}

#[tokio::test]
async fn groups_are_updated_listed_and_deleted_and_a_new_one_starts_afresh() {
    let store = Arc::new(InMemoryStore::new());
    append(&store, 3).await;
    let group = PersistentGroup::create(store.clone(), "mailer", GroupSettings::default())
        .await
        .unwrap();
    PersistentGroup::create(store.clone(), "other", GroupSettings::default())
        .await
        .unwrap();
    let first = group.next().await.unwrap();
    group
        .nack(first.event.position.get(), Nack::Park, "bounced")
        .await
        .unwrap();
    let second = group.next().await.unwrap();
    group.ack(second.event.position.get()).await.unwrap();
    group.store_checkpoint().await.unwrap();

    let slower = GroupSettings {
        retries_max: 9,
        ..GroupSettings::default()
    };
    update_group(&*store, "mailer", slower.clone())
        .await
        .unwrap();
    let reopened = PersistentGroup::open(store.clone(), "mailer")
        .await
        .unwrap();
    assert_eq!(reopened.settings(), &slower);
    assert_eq!(
        reopened.status().checkpoint,
        Some(1),
        "an update keeps the progress"
    );
    assert_eq!(reopened.parked().await.unwrap().len(), 1);
    assert_eq!(list_groups(&*store).await.unwrap(), ["mailer", "other"]);

    delete_group(&*store, "mailer").await.unwrap();
    assert!(matches!(
        PersistentGroup::open(store.clone(), "mailer").await,
        Err(eventfold_core::Error::StreamNotFound { .. })
    ));
    assert_eq!(list_groups(&*store).await.unwrap(), ["other"]);
    for refused in [
        update_group(&*store, "mailer", GroupSettings::default()).await,
        delete_group(&*store, "mailer").await,
    ] {
        assert!(matches!(
            refused,
            Err(eventfold_core::Error::StreamNotFound { .. })
        ));
    }
    // The instance opened before the delete may not write its progress any more.
    let late = reopened.next().await.unwrap();
    reopened.ack(late.event.position.get()).await.unwrap();
    assert!(reopened.store_checkpoint().await.is_err());

    // Created again: from the start, with nothing parked.
    let again = PersistentGroup::create(store.clone(), "mailer", GroupSettings::default())
        .await
        .unwrap();
    assert_eq!(again.status().checkpoint, None);
    assert!(again.parked().await.unwrap().is_empty());
    assert_eq!(again.next().await.unwrap().event.position.get(), 0);
}
