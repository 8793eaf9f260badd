//! Aggregates through the test kit and through the repository: optimistic concurrency,
//! retries that re-read only the new tail, idempotent commands, upcasting, two
//! aggregates on one stream, one aggregate over two streams.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::hooked::hooked;
use common::*;
use eventfold::testkit::Scenario;
use eventfold::{
    Aggregate, CommandError, Decision, DomainEvent, Envelope, Error, EventData, EventStore,
    EventType, ExpectedVersion, InMemoryStore, ReadStream, RecordedEvent, Repository, Revision,
};
use eventfold_metadata::{MetadataLayer, StreamAdmin, StreamMetadata};
use serde::{Deserialize, Serialize};

async fn events(store: &dyn EventStore, stream: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, ReadStream::forward())
        .await
        .unwrap_or_default()
}

async fn opened_account(
    store: Arc<dyn EventStore>,
    stream: &str,
    cents: u64,
) -> Repository<Account> {
    let repository = Repository::<Account>::new(store);
    repository
        .handle(stream, Envelope::new(open("ada")))
        .await
        .unwrap();
    if cents > 0 {
        repository
            .handle(stream, Envelope::new(deposit(stream, cents)))
            .await
            .unwrap();
    }
    repository
}

// ---- the test kit ----

#[test]
fn given_an_open_account_when_depositing_then_money_is_deposited() {
    Scenario::<Account>::given([opened("ada")])
        .when(deposit("a", 500))
        .then([deposited("a", 500)]);
}

#[test]
fn given_no_events_when_withdrawing_then_rejected_as_not_open() {
    Scenario::<Account>::given([])
        .when(withdraw("a", 1))
        .then_rejected(AccountRejection::NotOpen);
}

#[test]
fn given_a_balance_when_overdrawing_then_rejected_with_the_balance() {
    Scenario::<Account>::given([opened("ada"), deposited("a", 300), withdrawn("a", 100)])
        .when(withdraw("a", 250))
        .then_rejected(AccountRejection::InsufficientFunds {
            balance: 200,
            requested: 250,
        });
}

#[test]
fn given_balances_when_transferring_then_each_event_targets_its_stream() {
    Scenario::<Transfer>::given([deposited("account-a", 100)])
        .when(TransferMoney {
            from: "account-a".into(),
            to: "account-b".into(),
            cents: 60,
        })
        .then_decision(
            Decision::none()
                .emit_to("account-a", withdrawn("account-a", 60))
                .emit_to("account-b", deposited("account-b", 60)),
        );
}

#[test]
#[should_panic(expected = "decided events")]
fn the_test_kit_fails_on_other_events() {
    Scenario::<Account>::given([opened("ada")])
        .when(deposit("a", 500))
        .then([deposited("a", 499)]);
}

#[test]
#[should_panic(expected = "expected rejection")]
fn the_test_kit_fails_when_a_rejection_was_expected() {
    Scenario::<Account>::given([opened("ada")])
        .when(deposit("a", 5))
        .then_rejected(AccountRejection::NotOpen);
}

#[test]
#[should_panic(expected = "not listed in TYPES")]
fn the_test_kit_fails_on_an_event_type_missing_from_types() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", content = "data")]
    enum Forgotten {
        Listed,
        NotListed,
    }
    impl DomainEvent for Forgotten {
        const TYPES: &'static [EventType] = &[EventType::new("Listed", 1)];
    }
    #[derive(Default)]
    struct Agg;
    impl Aggregate for Agg {
        const NAME: &'static str = "agg";
        type Command = ();
        type Event = Forgotten;
        type Rejection = String;
        fn decide(&self, _: &()) -> Result<Decision<Forgotten>, String> {
            Ok(Decision::event(Forgotten::NotListed))
        }
        fn evolve(&mut self, _: &Forgotten) {}
    }
    Scenario::<Agg>::given([Forgotten::Listed])
        .when(())
        .then([Forgotten::NotListed]);
}

// ---- the repository ----

#[tokio::test]
async fn events_carry_ids_derived_from_the_command_and_its_correlation_and_causation() {
    let store = Arc::new(InMemoryStore::new());
    let repository = opened_account(store.clone(), "account-1", 0).await;
    let correlation = uuid::Uuid::now_v7();
    let command = Envelope::new(deposit("account-1", 70))
        .with_correlation_id(correlation)
        .with_metadata("user", "ada");

    let accepted = repository
        .handle("account-1", command.clone())
        .await
        .unwrap();

    assert_eq!(accepted.revision, Some(Revision(1)));
    assert_eq!(accepted.written.len(), 1);
    let stored = events(store.as_ref(), "account-1").await;
    let event = &stored[1];
    assert_eq!(event.id, command.event_id(0));
    assert_eq!(event.correlation_id(), Some(correlation));
    assert_eq!(event.causation_id(), Some(command.command_id()));
    let metadata: serde_json::Value = serde_json::from_slice(&event.metadata).unwrap();
    assert_eq!(metadata["user"], "ada");
    assert!(accepted.position.unwrap() >= event.position);
}

#[tokio::test]
async fn a_rejected_command_writes_no_event_only_its_outcome() {
    let store = Arc::new(InMemoryStore::new());
    let repository = opened_account(store.clone(), "account-1", 100).await;
    let before = events(store.as_ref(), "account-1").await.len();
    let command = Envelope::new(withdraw("account-1", 101));

    let error = repository
        .handle("account-1", command.clone())
        .await
        .unwrap_err();

    assert_eq!(
        error.rejection(),
        Some(&AccountRejection::InsufficientFunds {
            balance: 100,
            requested: 101
        })
    );
    assert_eq!(events(store.as_ref(), "account-1").await.len(), before);
    let outcome = events(
        store.as_ref(),
        &eventfold::streams::command(command.command_id()),
    )
    .await;
    assert_eq!(outcome.len(), 1);
    assert_eq!(outcome[0].event_type, "CommandRejected");
}

#[tokio::test]
async fn the_cause_of_a_command_is_kept_on_its_events_and_its_outcome() {
    let store = Arc::new(InMemoryStore::new());
    let repository = opened_account(store.clone(), "account-1", 0).await;
    let cause = uuid::Uuid::now_v7();
    let command = Envelope::new(deposit("account-1", 70)).with_causation_id(cause);
    let rejected = Envelope::new(withdraw("account-1", 500)).with_causation_id(cause);

    repository
        .handle("account-1", command.clone())
        .await
        .unwrap();
    repository
        .handle("account-1", rejected.clone())
        .await
        .unwrap_err();

    let command_cause = |event: &RecordedEvent| -> serde_json::Value {
        let metadata: serde_json::Value = serde_json::from_slice(&event.metadata).unwrap();
        metadata[eventfold::COMMAND_CAUSATION_ID_KEY].clone()
    };
    let expected = serde_json::Value::String(cause.to_string());
    let event = events(store.as_ref(), "account-1").await.remove(1);
    assert_eq!(event.causation_id(), Some(command.command_id()));
    assert_eq!(command_cause(&event), expected);
    for id in [command.command_id(), rejected.command_id()] {
        let outcome = events(store.as_ref(), &eventfold::streams::command(id)).await;
        assert_eq!(command_cause(&outcome[0]), expected, "outcome of {id}");
    }
    // Without a cause, no key.
    let first = events(store.as_ref(), "account-1").await.remove(0);
    assert_eq!(command_cause(&first), serde_json::Value::Null);
}

#[tokio::test]
async fn a_command_handled_twice_yields_its_events_once() {
    let store = Arc::new(InMemoryStore::new());
    let repository = opened_account(store.clone(), "account-1", 100).await;
    let command = Envelope::new(withdraw("account-1", 60));

    let first = repository
        .handle("account-1", command.clone())
        .await
        .unwrap();
    // The balance (40) would now refuse the withdrawal: the answer must be the recorded one.
    let second = repository.handle("account-1", command).await.unwrap();

    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(second.revision, first.revision);
    assert_eq!(second.written, first.written);
    assert_eq!(second.position, first.position);
    assert_eq!(events(store.as_ref(), "account-1").await.len(), 3);
    assert_eq!(
        repository.load("account-1").await.unwrap().state().balance,
        40
    );
}

/// The default retention of the `_command` category, as the store holds it.
async fn command_window(store: &dyn EventStore) -> eventfold_metadata::MetadataRecord {
    store
        .stream_metadata(&format!("$ce-{}", eventfold::streams::COMMAND_CATEGORY))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_repository_keeps_command_records_for_a_window_it_sets_in_the_store() {
    let store = Arc::new(eventfold_core::LayerExt::layer(
        InMemoryStore::new(),
        MetadataLayer,
    ));
    assert_eq!(command_window(store.as_ref()).await.revision, None);
    let repository = opened_account(store.clone(), "account-1", 100).await;
    let set = command_window(store.as_ref()).await;
    assert_eq!(set.metadata.max_age, Some(30 * 86_400));

    // A window set in the store stays as it is for repositories that name none...
    store
        .set_stream_metadata(
            "$ce-_command",
            ExpectedVersion::Any,
            StreamMetadata {
                max_age: Some(7 * 86_400),
                ..StreamMetadata::default()
            },
        )
        .await
        .unwrap();
    let other = Repository::<Account>::new(store.clone());
    other
        .handle("account-1", Envelope::new(deposit("account-1", 1)))
        .await
        .unwrap();
    assert_eq!(
        command_window(store.as_ref()).await.metadata.max_age,
        Some(7 * 86_400)
    );
    // ...and one that names a window sets it.
    repository
        .with_command_window(std::time::Duration::from_secs(3_600))
        .handle("account-1", Envelope::new(deposit("account-1", 1)))
        .await
        .unwrap();
    assert_eq!(
        command_window(store.as_ref()).await.metadata.max_age,
        Some(3_600)
    );
    // The window hides a command's record and nothing else: the account's own events
    // stay visible, and the category's retention says so for a scavenge too.
    let later = chrono::Utc::now() + chrono::Duration::seconds(3_601);
    let cuts = eventfold_metadata::retention_cuts(store.inner(), later)
        .await
        .unwrap();
    assert_eq!(cuts.keep_from("account-1"), 0);
    assert!(cuts.len() >= 4, "every command record expires: {cuts:?}");
    assert!(
        cuts.iter()
            .all(|(stream, cut)| stream.starts_with("_command-") && cut == 1),
        "{cuts:?}"
    );
}

#[tokio::test]
async fn past_the_window_a_command_is_handled_anew_after_its_expired_record() {
    let store = Arc::new(eventfold_core::LayerExt::layer(
        InMemoryStore::new(),
        MetadataLayer,
    ));
    // A window that has always passed: every record is hidden as soon as it is written.
    store
        .set_stream_metadata(
            "$ce-_command",
            ExpectedVersion::NoStream,
            StreamMetadata {
                max_count: Some(0),
                ..StreamMetadata::default()
            },
        )
        .await
        .unwrap();
    let repository = opened_account(store.clone(), "account-1", 100).await;
    let command = Envelope::new(withdraw("account-1", 60));

    let first = repository
        .handle("account-1", command.clone())
        .await
        .unwrap();
    // The record is gone from sight: the command is decided again, and the balance (40)
    // refuses it now.
    let second = repository.handle("account-1", command.clone()).await;

    assert!(!first.duplicate);
    assert!(
        matches!(second, Err(CommandError::Rejected { .. })),
        "{second:?}"
    );
    let records = events(
        store.inner(),
        &eventfold::streams::command(command.command_id()),
    )
    .await;
    assert_eq!(records.len(), 2, "the second record follows the first");
    assert_eq!(
        repository.load("account-1").await.unwrap().state().balance,
        40
    );
    // Decided anew again, the same rejection and the same acceptance are written as
    // records and events of their own (not taken for re-sends of the expired ones).
    let third = repository.handle("account-1", command.clone()).await;
    assert!(
        matches!(third, Err(CommandError::Rejected { .. })),
        "{third:?}"
    );
    let top_up = Envelope::new(deposit("account-1", 100));
    for _ in 0..2 {
        let deposited = repository
            .handle("account-1", top_up.clone())
            .await
            .unwrap();
        assert!(!deposited.duplicate);
    }
    assert_eq!(
        repository.load("account-1").await.unwrap().state().balance,
        240
    );
}

#[tokio::test]
async fn a_rejection_stands_for_its_window_and_an_acceptance_for_the_command_window() {
    let store = Arc::new(InMemoryStore::new());
    // Without a rejection window, the same command keeps its first answer.
    let account = opened_account(store.clone(), "account-1", 10).await;
    let small = Envelope::new(withdraw("account-1", 50));
    let first = account.handle("account-1", small.clone()).await;
    assert!(
        matches!(first, Err(CommandError::Rejected { .. })),
        "{first:?}"
    );
    account
        .handle("account-1", Envelope::new(deposit("account-1", 100)))
        .await
        .unwrap();
    let again = account.handle("account-1", small).await;
    assert!(
        matches!(
            again,
            Err(CommandError::Failed(Error::AlreadyRejected { .. }))
        ),
        "{again:?}"
    );

    // With a window that has always passed, a rejection stands no longer: sent
    // again, the command is decided on today's balance (210) and accepted.
    let cache =
        Repository::<Account>::new(store.clone()).with_rejection_window(std::time::Duration::ZERO);
    let large = Envelope::new(withdraw("account-1", 200));
    let rejected = cache.handle("account-1", large.clone()).await;
    assert!(
        matches!(rejected, Err(CommandError::Rejected { .. })),
        "{rejected:?}"
    );
    cache
        .handle("account-1", Envelope::new(deposit("account-1", 100)))
        .await
        .unwrap();
    let accepted = cache.handle("account-1", large.clone()).await.unwrap();
    assert!(!accepted.duplicate);
    // An acceptance stands: sent again, it is the same answer, written once.
    let resent = cache.handle("account-1", large).await.unwrap();
    assert!(resent.duplicate);
    assert_eq!(cache.load("account-1").await.unwrap().state().balance, 10);
}

#[tokio::test]
async fn a_conflict_rereads_only_the_new_tail_and_decides_again() {
    let store = hooked();
    let repository = opened_account(store.clone(), "account-1", 100).await;
    // Another writer withdraws 50 between our read and our append.
    let other = Repository::<Account>::new(store.inner().clone());
    store.layer().before_next_append(async move {
        other
            .handle("account-1", Envelope::new(withdraw("account-1", 50)))
            .await
            .unwrap();
    });
    store.layer().reads.lock().unwrap().clear();

    let error = repository
        .handle("account-1", Envelope::new(withdraw("account-1", 80)))
        .await
        .unwrap_err();

    assert_eq!(
        error.rejection(),
        Some(&AccountRejection::InsufficientFunds {
            balance: 50,
            requested: 80
        })
    );
    // First load from the start, then only from the revision after what it had.
    assert_eq!(
        store.layer().reads_of("account-1"),
        vec![Some(Revision(0)), Some(Revision(2))]
    );
}

#[tokio::test]
async fn a_conflict_retry_succeeds_at_the_new_revision() {
    let store = hooked();
    let repository = opened_account(store.clone(), "account-1", 100).await;
    let other = Repository::<Account>::new(store.inner().clone());
    store.layer().before_next_append(async move {
        other
            .handle("account-1", Envelope::new(deposit("account-1", 5)))
            .await
            .unwrap();
    });

    let accepted = repository
        .handle("account-1", Envelope::new(withdraw("account-1", 80)))
        .await
        .unwrap();

    assert_eq!(accepted.revision, Some(Revision(3)));
    assert_eq!(
        repository.load("account-1").await.unwrap().state().balance,
        25
    );
}

#[tokio::test]
async fn conflict_retries_are_bounded() {
    let store = hooked();
    let repository = opened_account(store.clone(), "account-1", 100)
        .await
        .with_attempts(3);
    let inner = store.inner().clone();
    *store.layer().always.lock().unwrap() = Some(Box::new(move || {
        let inner = inner.clone();
        Box::pin(async move {
            let noise = EventData::json("NoteAdded", &"noise").unwrap();
            inner
                .append("account-1", ExpectedVersion::Any, vec![noise])
                .await
                .unwrap();
        })
    }));
    let appends_before = store.layer().appends.load(Ordering::SeqCst);

    let error = repository
        .handle("account-1", Envelope::new(withdraw("account-1", 1)))
        .await
        .unwrap_err();

    match error {
        CommandError::Failed(Error::Conflict { stream, attempts }) => {
            assert_eq!((stream.as_str(), attempts), ("account-1", 3));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        store.layer().appends.load(Ordering::SeqCst) - appends_before,
        3
    );
    let stored = events(store.inner().as_ref(), "account-1").await;
    assert!(stored.iter().all(|e| e.event_type != "MoneyWithdrawn"));
}

#[tokio::test]
async fn the_same_command_handled_concurrently_yields_its_events_once() {
    let store = hooked();
    let repository = opened_account(store.clone(), "account-1", 100).await;
    let command = Envelope::new(withdraw("account-1", 30));
    // A second handler of the very same command commits between our read and append.
    let other = Repository::<Account>::new(store.inner().clone());
    let same = command.clone();
    store.layer().before_next_append(async move {
        other.handle("account-1", same).await.unwrap();
    });

    let accepted = repository.handle("account-1", command).await.unwrap();

    // Our append re-sent the same event ids where the other handler wrote them: the
    // store answers it as already written.
    assert_eq!(accepted.revision, Some(Revision(2)));
    let withdrawals = events(store.inner().as_ref(), "account-1")
        .await
        .into_iter()
        .filter(|e| e.event_type == "MoneyWithdrawn")
        .count();
    assert_eq!(withdrawals, 1);
}

#[tokio::test]
async fn a_command_resent_after_a_lost_answer_yields_its_events_once() {
    let store = hooked();
    let repository = opened_account(store.clone(), "account-1", 100).await;
    let command = Envelope::new(withdraw("account-1", 30));
    store.layer().lose_next_answer.store(true, Ordering::SeqCst);

    let lost = repository
        .handle("account-1", command.clone())
        .await
        .unwrap_err();
    let resent = repository.handle("account-1", command).await.unwrap();

    assert!(
        matches!(lost, CommandError::Failed(Error::Store(_))),
        "{lost:?}"
    );
    assert!(resent.duplicate);
    assert_eq!(resent.revision, Some(Revision(2)));
    assert_eq!(
        repository.load("account-1").await.unwrap().state().balance,
        70
    );
}

// ---- upcasting ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum ThermometerEvent {
    /// v2: tenths of a degree (v1 stored whole degrees as `celsius`).
    TemperatureRecorded { tenths: i64 },
}

impl DomainEvent for ThermometerEvent {
    const TYPES: &'static [EventType] = &[EventType::new("TemperatureRecorded", 2)];
}

#[derive(Debug, Default)]
struct Thermometer {
    readings: Vec<i64>,
}

impl Aggregate for Thermometer {
    const NAME: &'static str = "thermometer";
    type Command = ();
    type Event = ThermometerEvent;
    type Rejection = String;
    fn decide(&self, _: &()) -> Result<Decision<ThermometerEvent>, String> {
        Ok(Decision::none())
    }
    fn evolve(&mut self, ThermometerEvent::TemperatureRecorded { tenths }: &ThermometerEvent) {
        self.readings.push(*tenths);
    }
}

/// v1 → v2, and the legacy batch event split into one reading each.
fn thermometer_upcaster(mut event: RecordedEvent) -> eventfold_core::Result<Vec<RecordedEvent>> {
    match (event.event_type.as_str(), event.version) {
        ("TemperatureRecorded", 1) => {
            let v1: serde_json::Value = event.data_as()?;
            let tenths = v1["celsius"].as_i64().unwrap_or(0) * 10;
            event.data = serde_json::json!({ "tenths": tenths }).to_string().into();
            event.version = 2;
            Ok(vec![event])
        }
        ("ReadingsRecorded", 1) => {
            let batch: Vec<i64> = event.data_as()?;
            Ok(batch
                .into_iter()
                .map(|celsius| RecordedEvent {
                    event_type: "TemperatureRecorded".into(),
                    version: 2,
                    data: serde_json::json!({ "tenths": celsius * 10 })
                        .to_string()
                        .into(),
                    ..event.clone()
                })
                .collect())
        }
        _ => Ok(vec![event]),
    }
}

async fn legacy_thermometer(store: &InMemoryStore) {
    let v1 = EventData::json("TemperatureRecorded", &serde_json::json!({"celsius": 21})).unwrap();
    let v2 = EventData::json("TemperatureRecorded", &serde_json::json!({"tenths": 215}))
        .unwrap()
        .with_version(2);
    let batch = EventData::json("ReadingsRecorded", &[19, 18]).unwrap();
    store
        .append(
            "thermometer-1",
            ExpectedVersion::NoStream,
            vec![v1, v2, batch],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn stored_events_are_upcast_before_they_are_decoded() {
    let store = Arc::new(InMemoryStore::new());
    legacy_thermometer(&store).await;
    let repository =
        Repository::<Thermometer>::new(store).with_upcaster(Arc::new(thermometer_upcaster));

    let loaded = repository.load("thermometer-1").await.unwrap();

    assert_eq!(loaded.state().readings, vec![210, 215, 190, 180]);
    assert_eq!(loaded.revision(), Some(Revision(2)));
}

#[tokio::test]
async fn an_old_version_without_an_upcaster_is_an_error_naming_it() {
    let store = Arc::new(InMemoryStore::new());
    legacy_thermometer(&store).await;
    let repository = Repository::<Thermometer>::new(store);

    let error = repository.load("thermometer-1").await.unwrap_err();

    match error {
        Error::UnsupportedVersion {
            event_type,
            stored,
            expected,
            revision,
            ..
        } => assert_eq!(
            (event_type.as_str(), stored, expected, revision),
            ("TemperatureRecorded", 1, 2, Revision(0))
        ),
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

// ---- streams and aggregates decoupled ----

#[tokio::test]
async fn two_aggregates_share_one_stream_each_ignoring_the_others_events() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let accounts = opened_account(store.clone(), "account-1", 100).await;
    let limits = Repository::<Limits>::new(store.clone());

    let set = limits
        .handle("account-1", Envelope::new(500))
        .await
        .unwrap();
    let withdrawn = accounts
        .handle("account-1", Envelope::new(withdraw("account-1", 10)))
        .await
        .unwrap();

    assert_eq!(set.revision, Some(Revision(2)));
    assert_eq!(withdrawn.revision, Some(Revision(3)));
    let account = accounts.load("account-1").await.unwrap();
    assert_eq!(
        (account.state().balance, account.state().events_seen),
        (90, 3)
    );
    let limit = limits.load("account-1").await.unwrap();
    assert_eq!(
        (limit.state().daily, limit.state().events_seen),
        (Some(500), 1)
    );
    assert_eq!(limit.revision(), Some(Revision(3)));
}

#[tokio::test]
async fn one_aggregate_over_two_streams_sees_them_merged_in_global_order() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let a = opened_account(store.clone(), "account-a", 100).await;
    let b = opened_account(store.clone(), "account-b", 10).await;
    a.handle("account-a", Envelope::new(deposit("account-a", 1)))
        .await
        .unwrap();
    let transfers = Repository::<Transfer>::new(store.clone());

    let loaded = transfers
        .load_streams(&["account-a", "account-b"])
        .await
        .unwrap();
    assert_eq!(
        loaded.state().order,
        ["account-a", "account-b", "account-a"]
    );

    let accepted = transfers
        .handle_streams(
            &["account-a", "account-b"],
            Envelope::new(TransferMoney {
                from: "account-a".into(),
                to: "account-b".into(),
                cents: 60,
            }),
        )
        .await
        .unwrap();

    let revisions: Vec<(&str, u64)> = accepted
        .written
        .iter()
        .map(|w| (w.stream.as_str(), w.last_revision.get()))
        .collect();
    assert_eq!(revisions, [("account-a", 3), ("account-b", 2)]);
    assert_eq!(a.load("account-a").await.unwrap().state().balance, 41);
    assert_eq!(b.load("account-b").await.unwrap().state().balance, 70);
}

#[tokio::test]
async fn a_merge_of_two_streams_is_a_consistent_cut_of_the_log() {
    let store = hooked();
    opened_account(store.clone(), "account-a", 100).await;
    opened_account(store.clone(), "account-b", 100).await;
    // After account-a was read and before account-b is: a deposit to a, then one to b.
    let other = Repository::<Account>::new(store.inner().clone());
    store.layer().before_next_read_of("account-b", async move {
        for stream in ["account-a", "account-b"] {
            other
                .handle(stream, Envelope::new(deposit(stream, 1)))
                .await
                .unwrap();
        }
    });
    let transfers = Repository::<Transfer>::new(store.clone()).with_snapshots(1);

    let first = transfers
        .load_streams(&["account-a", "account-b"])
        .await
        .unwrap();
    // The snapshot written by that load, then the tails after it.
    let second = transfers
        .load_streams(&["account-a", "account-b"])
        .await
        .unwrap();

    // The load saw neither late deposit (b's is after the head it read up to)...
    assert_eq!(first.state().order, ["account-a", "account-b"]);
    assert_eq!(first.revision_of("account-b"), Some(Revision(1)));
    // ...so the next one folds both, in the order they were committed.
    assert!(second.from_snapshot());
    assert_eq!(
        second.state().order,
        ["account-a", "account-b", "account-a", "account-b"]
    );
}

#[tokio::test]
async fn a_multi_stream_append_checks_each_streams_expected_version() {
    let store = hooked();
    opened_account(store.clone(), "account-a", 100).await;
    opened_account(store.clone(), "account-b", 0).await;
    // Someone deposits to b (the second stream) between our read and our append.
    let other = Repository::<Account>::new(store.inner().clone());
    store.layer().before_next_append(async move {
        other
            .handle("account-b", Envelope::new(deposit("account-b", 7)))
            .await
            .unwrap();
    });
    store.layer().reads.lock().unwrap().clear();
    let transfers = Repository::<Transfer>::new(store.clone());

    transfers
        .handle_streams(
            &["account-a", "account-b"],
            Envelope::new(TransferMoney {
                from: "account-a".into(),
                to: "account-b".into(),
                cents: 60,
            }),
        )
        .await
        .unwrap();

    // Retried after reading the tails only (b had a new event; a had none).
    assert_eq!(
        store.layer().reads_of("account-b"),
        vec![Some(Revision(0)), Some(Revision(1))]
    );
    assert_eq!(
        store.layer().reads_of("account-a"),
        vec![Some(Revision(0)), Some(Revision(2))]
    );
    let b = Repository::<Account>::new(store.inner().clone());
    assert_eq!(b.load("account-b").await.unwrap().state().balance, 67);
}

/// A card spends from its own stream only while the account behind it, which it reads
/// and never writes, covers the amount.
#[derive(Debug, Default)]
struct Card {
    /// The balance of the account behind the card (its second stream).
    covered: u64,
}

impl Aggregate for Card {
    const NAME: &'static str = "card";
    type Command = u64;
    type Event = AccountEvent;
    type Rejection = AccountRejection;

    fn decide(&self, cents: &u64) -> Result<Decision<AccountEvent>, AccountRejection> {
        if self.covered < *cents {
            return Err(AccountRejection::InsufficientFunds {
                balance: self.covered,
                requested: *cents,
            });
        }
        Ok(Decision::event(withdrawn("card-1", *cents)))
    }

    fn evolve(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::MoneyDeposited { account, cents } if account == "account-b" => {
                self.covered += cents
            }
            AccountEvent::MoneyWithdrawn { account, cents } if account == "account-b" => {
                self.covered -= cents
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_decision_never_rests_on_a_stale_read_of_a_stream_it_does_not_write() {
    let store = hooked();
    opened_account(store.clone(), "account-b", 100).await;
    // Between the card's read of account-b and its append, 80 leave account-b.
    let other = Repository::<Account>::new(store.inner().clone());
    store.layer().before_next_append(async move {
        other
            .handle("account-b", Envelope::new(withdraw("account-b", 80)))
            .await
            .unwrap();
    });
    store.layer().reads.lock().unwrap().clear();
    let cards = Repository::<Card>::new(store.clone());

    let error = cards
        .handle_streams(&["card-1", "account-b"], Envelope::new(50))
        .await
        .unwrap_err();

    // The append was refused on account-b's check; the retry read its new event and
    // decided on the balance that is really there.
    assert_eq!(
        error.rejection(),
        Some(&AccountRejection::InsufficientFunds {
            balance: 20,
            requested: 50
        })
    );
    assert_eq!(
        store.layer().reads_of("account-b"),
        vec![Some(Revision(0)), Some(Revision(2))]
    );
    assert!(events(store.inner().as_ref(), "card-1").await.is_empty());
    assert_eq!(events(store.inner().as_ref(), "account-b").await.len(), 3);

    // With account-b left alone, the card spends in one append that writes nothing
    // to account-b.
    let appends = store.layer().appends.load(Ordering::SeqCst);
    let accepted = cards
        .handle_streams(&["card-1", "account-b"], Envelope::new(15))
        .await
        .unwrap();
    assert_eq!(store.layer().appends.load(Ordering::SeqCst) - appends, 1);
    let written: Vec<&str> = accepted.written.iter().map(|w| w.stream.as_str()).collect();
    assert_eq!(written, ["card-1"]);
    assert_eq!(events(store.inner().as_ref(), "account-b").await.len(), 3);
}

#[tokio::test]
async fn a_decision_may_only_target_streams_the_aggregate_was_loaded_from() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    opened_account(store.clone(), "account-a", 100).await;
    let transfers = Repository::<Transfer>::new(store.clone());

    let error = transfers
        .handle(
            "account-a",
            Envelope::new(TransferMoney {
                from: "account-a".into(),
                to: "account-z".into(),
                cents: 1,
            }),
        )
        .await
        .unwrap_err();

    assert!(
        matches!(&error, CommandError::Failed(Error::TargetNotLoaded { stream }) if stream == "account-z"),
        "{error:?}"
    );
    assert!(events(store.as_ref(), "account-z").await.is_empty());
}

#[tokio::test]
async fn the_schema_registry_kept_in_the_store_is_the_upcaster() {
    use eventfold_schema::{EventVersion, SchemaStore, VersionDefinition};
    let store = Arc::new(InMemoryStore::new());
    legacy_thermometer(&store).await;
    let schemas = SchemaStore::open(store.clone()).await.unwrap();
    schemas
        .register(
            "TemperatureRecorded",
            2,
            VersionDefinition {
                upcast: Some("{tenths: (.celsius * 10)}".into()),
                downcast: Some("{celsius: (.tenths / 10 | floor)}".into()),
                ..VersionDefinition::default()
            },
        )
        .await
        .unwrap();
    // The legacy batch event is split into single readings, one per element.
    let batch = VersionDefinition {
        previous: Some(EventVersion::new("ReadingsRecorded", 1)),
        upcast: Some(
            ".[] | {\"$type\": \"TemperatureRecorded\", \"$version\": 2, tenths: (. * 10)}".into(),
        ),
        ..VersionDefinition::default()
    };
    schemas.register("ReadingsSplit", 1, batch).await.unwrap();
    let repository = Repository::<Thermometer>::new(store).with_upcaster(Arc::new(schemas));

    let loaded = repository.load("thermometer-1").await.unwrap();

    assert_eq!(loaded.state().readings, vec![210, 215, 190, 180]);
}

// ---- streams moved by a surgery ----

async fn move_stream<S: EventStore + ?Sized>(store: &S, from: &str, to: &str) {
    eventfold_surgery::perform(
        store,
        &eventfold_surgery::Operation::CopyReplace {
            source: from.into(),
            to: to.into(),
            skip: Vec::new(),
            transform: None,
            in_place: false,
        },
        &eventfold_surgery::Audit {
            reason: "a test".into(),
            who: "tests".into(),
        },
        false,
        &mut |_, _| {},
    )
    .await
    .expect("move the stream");
}

#[tokio::test]
async fn a_moved_stream_is_followed_on_load_and_commands_write_where_it_went() {
    let store = Arc::new(InMemoryStore::new());
    let repository = opened_account(store.clone(), "account-1", 100).await;
    move_stream(store.as_ref(), "account-1", "account-1b").await;

    let loaded = repository.load("account-1").await.expect("load");
    assert_eq!(loaded.stream(), "account-1b", "the load followed the move");
    assert_eq!(loaded.state().balance, 100);
    assert_eq!(loaded.revision_of("account-1"), Some(Revision(1)));

    let accepted = repository
        .handle("account-1", Envelope::new(deposit("account-1", 5)))
        .await
        .expect("a command on the old name");
    assert_eq!(accepted.written[0].stream, "account-1b");
    assert_eq!(events(store.as_ref(), "account-1b").await.len(), 3);
    assert_eq!(
        events(store.as_ref(), "account-1").await.len(),
        3,
        "the old stream keeps its history and its marker, nothing more"
    );
    assert_eq!(
        repository.load("account-1").await.unwrap().state().balance,
        105
    );
}

/// Moves the stream right before the first append that writes it: a command that
/// loaded the old stream finds it moved when it writes.
struct MoveBeforeAppend {
    armed: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl eventfold_core::StoreLayer for MoveBeforeAppend {
    async fn before_append<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        writes: Vec<eventfold_core::StreamWrite>,
    ) -> eventfold_core::Result<Vec<eventfold_core::StreamWrite>> {
        if writes.iter().any(|w| w.stream == "account-2")
            && self.armed.swap(false, Ordering::SeqCst)
        {
            move_stream(inner, "account-2", "account-2b").await;
        }
        Ok(writes)
    }
}

#[tokio::test]
async fn a_command_racing_a_surgery_follows_the_move_and_loses_nothing() {
    use eventfold_core::LayerExt;
    let inner = Arc::new(InMemoryStore::new());
    opened_account(inner.clone(), "account-2", 50).await;
    let store = Arc::new(inner.clone().layer(MoveBeforeAppend {
        armed: std::sync::atomic::AtomicBool::new(true),
    }));
    let repository = Repository::<Account>::new(store);
    let accepted = repository
        .handle("account-2", Envelope::new(withdraw("account-2", 20)))
        .await
        .expect("the command is decided again on the new stream");
    assert_eq!(accepted.written[0].stream, "account-2b");
    assert_eq!(
        repository.load("account-2").await.unwrap().state().balance,
        30
    );
    let moved = events(inner.as_ref(), "account-2").await;
    assert_eq!(
        moved.last().map(|e| e.event_type.as_str()),
        Some(eventfold_core::STREAM_MOVED_EVENT_TYPE),
        "nothing was written to the old stream after its marker"
    );
}
