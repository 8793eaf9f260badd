//! Snapshots: every N events, loaded with only the tail after them; a snapshot of
//! another schema version or an unreadable one rebuilds from events and writes a fresh
//! one; older snapshots stay for a downgrade.

mod common;

use std::sync::Arc;

use common::hooked::hooked;
use common::*;
use eventfold::{
    Aggregate, Decision, Envelope, EventData, EventStore, ExpectedVersion, InMemoryStore,
    ReadStream, RecordedEvent, Repository, Revision,
};
use serde::{Deserialize, Serialize};

const SNAPSHOTS: &str = "_snapshot-account-account-1";

async fn snapshots(store: &dyn EventStore) -> Vec<RecordedEvent> {
    store
        .read_stream(SNAPSHOTS, ReadStream::forward())
        .await
        .unwrap_or_default()
}

/// Opens account-1 and deposits 1 cent `deposits` times.
async fn account_with(repository: &Repository<Account>, deposits: u64) {
    repository
        .handle("account-1", Envelope::new(open("ada")))
        .await
        .unwrap();
    for _ in 0..deposits {
        repository
            .handle("account-1", Envelope::new(deposit("account-1", 1)))
            .await
            .unwrap();
    }
}

/// The account's next snapshot schema: the same aggregate, stored in another shape.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AccountV2 {
    v2: Account,
}

impl Aggregate for AccountV2 {
    const NAME: &'static str = "account";
    const SNAPSHOT_VERSION: u32 = 2;
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Rejection = AccountRejection;
    fn decide(&self, command: &AccountCommand) -> Result<Decision<AccountEvent>, AccountRejection> {
        self.v2.decide(command)
    }
    fn evolve(&mut self, event: &AccountEvent) {
        self.v2.evolve(event)
    }
}

#[tokio::test]
async fn a_snapshot_is_written_every_n_events_and_loading_reads_only_the_tail() {
    let store = hooked();
    let repository = Repository::<Account>::new(store.clone()).with_snapshots(3);

    account_with(&repository, 4).await;
    store.layer().reads.lock().unwrap().clear();
    let loaded = repository.load("account-1").await.unwrap();

    let written = snapshots(store.inner().as_ref()).await;
    assert_eq!(written.len(), 1);
    assert_eq!(
        (written[0].event_type.as_str(), written[0].version),
        ("Snapshot", 1)
    );
    assert!(loaded.from_snapshot());
    assert_eq!(loaded.events_since_snapshot(), 2);
    assert_eq!(store.layer().reads_of("account-1"), vec![Some(Revision(3))]);
    assert_eq!(loaded.state().balance, 4);
    assert_eq!(loaded.revision(), Some(Revision(4)));
}

#[tokio::test]
async fn a_snapshot_of_another_version_rebuilds_from_events_and_writes_a_fresh_one() {
    let store = Arc::new(InMemoryStore::new());
    let v1 = Repository::<Account>::new(store.clone()).with_snapshots(2);
    account_with(&v1, 2).await;
    assert_eq!(snapshots(store.as_ref()).await.len(), 1);

    let v2 = Repository::<AccountV2>::new(store.clone()).with_snapshots(100);
    let rebuilt = v2.load("account-1").await.unwrap();
    let again = v2.load("account-1").await.unwrap();

    assert!(!rebuilt.from_snapshot());
    assert_eq!(rebuilt.state().v2.balance, 2);
    let versions: Vec<u32> = snapshots(store.as_ref())
        .await
        .iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(versions, [1, 2]);
    assert!(again.from_snapshot());
    assert_eq!(again.state().v2.balance, 2);
}

#[tokio::test]
async fn after_a_downgrade_the_old_code_uses_its_own_older_snapshot() {
    let store = Arc::new(InMemoryStore::new());
    let v1 = Repository::<Account>::new(store.clone()).with_snapshots(2);
    account_with(&v1, 2).await;
    // The new version runs for a while and writes its own snapshots.
    let v2 = Repository::<AccountV2>::new(store.clone()).with_snapshots(1);
    v2.handle("account-1", Envelope::new(deposit("account-1", 10)))
        .await
        .unwrap();
    let before: Vec<u32> = snapshots(store.as_ref())
        .await
        .iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(before.last(), Some(&2));

    // Downgrade: the newest snapshot is v2, unreadable to v1.
    let loaded = v1.load("account-1").await.unwrap();

    assert!(loaded.from_snapshot(), "the older v1 snapshot is used");
    assert_eq!(loaded.state().balance, 12);
    // It wrote a fresh v1 snapshot covering every event.
    let after = snapshots(store.as_ref()).await;
    assert_eq!(after.len(), before.len() + 1);
    let fresh = after.last().unwrap();
    assert_eq!(fresh.version, 1);
    let fresh: serde_json::Value = fresh.data_as().unwrap();
    assert_eq!(fresh["streams"][0]["revision"], 3);
}

#[tokio::test]
async fn an_unreadable_snapshot_rebuilds_from_events_and_writes_a_fresh_one() {
    let store = Arc::new(InMemoryStore::new());
    let repository = Repository::<Account>::new(store.clone()).with_snapshots(100);
    account_with(&repository, 3).await;
    let garbage = EventData::json("Snapshot", &serde_json::json!({"nonsense": true})).unwrap();
    store
        .append(SNAPSHOTS, ExpectedVersion::Any, vec![garbage])
        .await
        .unwrap();

    let rebuilt = repository.load("account-1").await.unwrap();
    let again = repository.load("account-1").await.unwrap();

    assert!(!rebuilt.from_snapshot());
    assert_eq!(rebuilt.state().balance, 3);
    assert_eq!(snapshots(store.as_ref()).await.len(), 2);
    assert!(again.from_snapshot());
    assert_eq!(again.state().balance, 3);
    assert_eq!(again.events_since_snapshot(), 0);
}

#[tokio::test]
async fn snapshots_of_two_aggregates_on_one_stream_are_kept_apart() {
    let store = Arc::new(InMemoryStore::new());
    let accounts = Repository::<Account>::new(store.clone()).with_snapshots(1);
    let limits = Repository::<Limits>::new(store.clone()).with_snapshots(1);
    account_with(&accounts, 1).await;
    limits.handle("account-1", Envelope::new(9)).await.unwrap();

    let account = accounts.load("account-1").await.unwrap();
    let limit = limits.load("account-1").await.unwrap();

    assert_eq!(account.state().balance, 1);
    assert_eq!(limit.state().daily, Some(9));
    assert!(limit.from_snapshot());
    assert!(
        store
            .stream_exists("_snapshot-limits-account-1")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn two_versions_running_side_by_side_do_not_rewrite_snapshots_on_every_load() {
    let store = Arc::new(InMemoryStore::new());
    let v1 = Repository::<Account>::new(store.clone()).with_snapshots(2);
    account_with(&v1, 2).await;
    let v2 = Repository::<AccountV2>::new(store.clone()).with_snapshots(2);

    // A rolling deploy: both versions load the account again and again.
    for _ in 0..3 {
        v2.load("account-1").await.unwrap();
        v1.load("account-1").await.unwrap();
    }

    // v1's own snapshot, and the one v2 wrote when it found none of its own.
    let versions: Vec<u32> = snapshots(store.as_ref())
        .await
        .iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(versions, [1, 2]);
}

#[tokio::test]
async fn each_version_writes_at_most_one_snapshot_per_n_events() {
    let store = Arc::new(InMemoryStore::new());
    let v1 = Repository::<Account>::new(store.clone()).with_snapshots(4);
    let v2 = Repository::<AccountV2>::new(store.clone()).with_snapshots(4);
    account_with(&v1, 0).await;

    // The two versions take turns handling commands: 8 deposits, 4 each.
    for i in 0..8 {
        let command = Envelope::new(deposit("account-1", 1));
        if i % 2 == 0 {
            v1.handle("account-1", command).await.unwrap();
        } else {
            v2.handle("account-1", command).await.unwrap();
        }
    }

    let written = snapshots(store.as_ref()).await;
    let of = |version| written.iter().filter(|s| s.version == version).count();
    // 9 events: v1 one per 4 events (2), v2 its first, then one 4 events later.
    assert!(of(1) <= 2, "v1 wrote {}", of(1));
    assert!(of(2) <= 3, "v2 wrote {}", of(2));
    assert_eq!(v1.load("account-1").await.unwrap().state().balance, 8);
}

#[tokio::test]
async fn a_snapshot_of_this_version_that_does_not_decode_is_not_rewritten_on_every_load() {
    let store = Arc::new(InMemoryStore::new());
    let repository = Repository::<Account>::new(store.clone()).with_snapshots(100);
    account_with(&repository, 3).await;
    // Another build of the same snapshot version (its state has another shape).
    let other_build = serde_json::json!({
        "aggregate": "account",
        "streams": [{"stream": "account-1", "revision": 3}],
        "state": {"shape": "other"},
    });
    let snapshot = EventData::json("Snapshot", &other_build).unwrap();
    store
        .append(SNAPSHOTS, ExpectedVersion::Any, vec![snapshot])
        .await
        .unwrap();

    let first = repository.load("account-1").await.unwrap();
    let second = repository.load("account-1").await.unwrap();

    assert!(!first.from_snapshot());
    assert_eq!(second.state().balance, 3);
    assert_eq!(snapshots(store.as_ref()).await.len(), 1);
}

#[tokio::test]
async fn a_snapshot_stream_keeps_the_snapshots_a_load_looks_at_and_scavenge_may_take_the_rest() {
    let store = Arc::new(InMemoryStore::new());
    let repository = Repository::<Account>::new(store.clone()).with_snapshots(1);
    account_with(&repository, 20).await;
    let written = snapshots(store.as_ref()).await.len() as u64;
    assert!(written > 16, "{written} snapshots written");

    use eventfold_metadata::StreamAdmin;
    let record = store.stream_metadata(SNAPSHOTS).await.unwrap();
    assert_eq!(record.metadata.max_count, Some(16));
    let cuts = eventfold_metadata::retention_cuts(store.as_ref(), chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(cuts.keep_from(SNAPSHOTS), written - 16);
    assert_eq!(
        cuts.keep_from("account-1"),
        0,
        "the events themselves are kept"
    );
    // Loading still finds the newest snapshot.
    let loaded = repository.load("account-1").await.unwrap();
    assert!(loaded.from_snapshot());
    assert_eq!(loaded.state().balance, 20);
}

#[tokio::test]
async fn a_snapshot_is_written_after_an_event_of_a_type_that_asks_for_one() {
    let store = Arc::new(InMemoryStore::new());
    // No count: only withdrawals are worth a snapshot here.
    let repository =
        Repository::<Account>::new(store.clone()).with_snapshots_after(&["MoneyWithdrawn"]);
    account_with(&repository, 3).await;
    assert!(
        snapshots(store.as_ref()).await.is_empty(),
        "no withdrawal yet"
    );

    repository
        .handle("account-1", Envelope::new(withdraw("account-1", 1)))
        .await
        .unwrap();
    let written = snapshots(store.as_ref()).await;
    assert_eq!(written.len(), 1, "one snapshot, right after the withdrawal");
    let loaded = repository.load("account-1").await.unwrap();
    assert!(loaded.from_snapshot());
    assert_eq!(loaded.events_since_snapshot(), 0);
    assert_eq!(loaded.state().balance, 2);

    // More deposits ask for none; a withdrawal written by another handler (seen by a
    // load, not by this repository's own append) does.
    account_deposits(&repository, 2).await;
    assert_eq!(snapshots(store.as_ref()).await.len(), 1);
    let other = Repository::<Account>::new(store.clone());
    other
        .handle("account-1", Envelope::new(withdraw("account-1", 1)))
        .await
        .unwrap();
    repository.load("account-1").await.unwrap();
    assert_eq!(snapshots(store.as_ref()).await.len(), 2);
}

#[tokio::test]
async fn a_snapshot_older_than_its_age_is_replaced_once_events_came_after_it() {
    let store = Arc::new(InMemoryStore::new());
    let repository = Repository::<Account>::new(store.clone())
        .with_snapshots(1_000)
        .with_snapshots_older_than(std::time::Duration::ZERO);
    // With no snapshot yet, the first events are old enough.
    account_with(&repository, 0).await;
    assert_eq!(snapshots(store.as_ref()).await.len(), 1);
    // Loading without new events writes none, however old the snapshot.
    repository.load("account-1").await.unwrap();
    assert_eq!(snapshots(store.as_ref()).await.len(), 1);
    account_deposits(&repository, 1).await;
    assert_eq!(snapshots(store.as_ref()).await.len(), 2);

    // With an age not reached, the count decides (1,000 events: none).
    let patient = Repository::<Account>::new(store.clone())
        .with_snapshots(1_000)
        .with_snapshots_older_than(std::time::Duration::from_secs(3_600));
    account_deposits(&patient, 3).await;
    assert_eq!(snapshots(store.as_ref()).await.len(), 2);
}

/// Deposits 1 cent `n` times into account-1.
async fn account_deposits(repository: &Repository<Account>, n: u64) {
    for _ in 0..n {
        repository
            .handle("account-1", Envelope::new(deposit("account-1", 1)))
            .await
            .unwrap();
    }
}
