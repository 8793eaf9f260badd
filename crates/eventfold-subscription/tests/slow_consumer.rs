//! A slow consumer behind a large backlog holds one page of events at most: the
//! subscription reads only as the consumer asks.

use std::sync::Arc;

use eventfold_core::{AllFilter, EventData, EventStore, ExpectedVersion, InMemoryStore};
use eventfold_subscription::Subscription;

#[tokio::test]
async fn a_slow_consumer_keeps_memory_bounded_by_one_page() {
    let store = Arc::new(InMemoryStore::new());
    for chunk in 0..50u64 {
        let events = (0..100)
            .map(|n| EventData::json("Counted", &(chunk * 100 + n)).unwrap())
            .collect();
        store
            .append(
                &format!("counter-{}", chunk % 5),
                ExpectedVersion::Any,
                events,
            )
            .await
            .unwrap();
    }
    let mut all = Subscription::to_all(store.clone(), None, AllFilter::default());
    let mut one = Subscription::to_stream(store.clone(), "counter-0", None);
    let mut most_buffered = 0;
    for expected in 0..5000u64 {
        let event = all.next().await.unwrap();
        assert_eq!(event.position.get(), expected);
        most_buffered = most_buffered.max(all.buffered());
        if expected < 1000 {
            one.next().await.unwrap();
            most_buffered = most_buffered.max(one.buffered());
        }
    }
    assert!(most_buffered > 0, "the subscription reads ahead by pages");
    assert!(
        most_buffered <= 512,
        "read ahead {most_buffered} events, more than a page"
    );
}
