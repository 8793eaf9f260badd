//! A subscription behind a backlog of large events reads ahead one page capped in
//! bytes, not 512 events: a slow consumer of 100 KB events holds a few of them at most.

use std::sync::Arc;

use eventfold_core::{AllFilter, EventData, EventStore, ExpectedVersion, InMemoryStore};
use eventfold_subscription::{Subscription, page};

#[tokio::test]
async fn a_subscription_reads_ahead_one_byte_capped_page() {
    let store = Arc::new(InMemoryStore::new());
    let blob = "x".repeat(100_000);
    for n in 0..40u64 {
        let event = EventData::json("Scanned", &(n, &blob)).unwrap();
        store
            .append("scan-1", ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
    }
    let cap = 350_000;
    let mut all =
        Subscription::to_all(store.clone(), None, AllFilter::default()).page_bytes_max(cap);
    let mut one = Subscription::to_stream(store.clone(), "scan-1", None).page_bytes_max(cap);
    for subscription in [&mut all, &mut one] {
        let mut most_buffered = 0;
        for expected in 0..40u64 {
            let event = subscription.next().await.unwrap();
            assert_eq!(event.revision.get(), expected);
            let (n, _): (u64, String) = event.data_as().unwrap();
            assert_eq!(n, expected);
            most_buffered = most_buffered.max(subscription.buffered() + 1);
            assert!(page::event_bytes(&event) > 100_000);
        }
        // Three events of 100 KB fit in 350 KB, a fourth does not.
        assert_eq!(most_buffered, 3, "read ahead more than a capped page");
    }
}
