//! Compensating events through the repository: a cancelled event is left out of the
//! fold, a corrected one folded with its corrected data, also when a snapshot covers
//! the original; `cancel` and `correct` refuse what would be wrong; commands decide on
//! the corrected state.

mod common;

use std::sync::Arc;

use common::hooked::hooked;
use common::*;
use eventfold::compensation::Compensation;
use eventfold::{
    CommandError, Envelope, Error, EventStore, ExpectedVersion, InMemoryStore, ReadStream,
    RecordedEvent, Repository, Revision,
};
use eventfold_core::EventRef;
use eventfold_metadata::MetadataLayer;
use serde_json::{Value, json};

fn store() -> Arc<dyn EventStore> {
    // (`LayerExt::layer` by path: the hooked store's `layer()` is its hooks.)
    Arc::new(eventfold::LayerExt::layer(
        InMemoryStore::new(),
        MetadataLayer,
    ))
}

async fn events(store: &dyn EventStore, stream: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, ReadStream::forward())
        .await
        .unwrap_or_default()
}

fn data(event: &RecordedEvent) -> Value {
    serde_json::from_slice(&event.data).unwrap()
}

/// Opens `stream` and deposits each of `deposits` (revisions 1, 2, ...).
async fn account(repository: &Repository<Account>, stream: &str, deposits: &[u64]) {
    repository
        .handle(stream, Envelope::new(open("ada")))
        .await
        .unwrap();
    for cents in deposits {
        repository
            .handle(stream, Envelope::new(deposit(stream, *cents)))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_cancelled_event_is_left_out_and_a_corrected_one_folded_with_its_corrected_data() {
    let store = store();
    let repository = Repository::<Account>::new(store.clone());
    account(&repository, "account-1", &[100, 50, 20]).await;
    assert_eq!(
        repository.load("account-1").await.unwrap().state().balance,
        170
    );

    let cancelled = repository
        .cancel("account-1", Revision(2), "deposited twice")
        .await
        .unwrap();
    assert_eq!(cancelled.first_revision, Revision(4));
    repository
        .correct(
            "account-1",
            Revision(1),
            json!({"cents": 10}),
            "typed 100 for 10",
        )
        .await
        .unwrap();

    let loaded = repository.load("account-1").await.unwrap();
    assert_eq!(loaded.state().balance, 10 + 20);
    // Opened, the corrected deposit and the last one: neither the cancelled deposit
    // nor a compensation reached `evolve`.
    assert_eq!(loaded.state().events_seen, 3);
    assert_eq!(loaded.revision(), Some(Revision(5)));

    // The events stay in the stream as written, the compensations after them.
    let stream = events(store.as_ref(), "account-1").await;
    let types: Vec<&str> = stream.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "AccountOpened",
            "MoneyDeposited",
            "MoneyDeposited",
            "MoneyDeposited",
            "$cancelled",
            "$corrected"
        ]
    );
    assert_eq!(data(&stream[1])["cents"], 100);
    assert_eq!(data(&stream[2])["cents"], 50);
    assert_eq!(data(&stream[4])["event"], "2@account-1");
    assert_eq!(data(&stream[4])["reason"], "deposited twice");
    assert_eq!(data(&stream[5])["data"], json!({"cents": 10}));
}

#[tokio::test]
async fn corrections_of_one_event_apply_in_the_order_they_were_written() {
    let store = store();
    let repository = Repository::<Account>::new(store.clone());
    account(&repository, "account-1", &[100]).await;
    for cents in [7, 9] {
        repository
            .correct("account-1", Revision(1), json!({"cents": cents}), "again")
            .await
            .unwrap();
    }
    assert_eq!(
        repository.load("account-1").await.unwrap().state().balance,
        9
    );
    // A corrected event can still be cancelled; then nothing of it counts.
    repository
        .cancel("account-1", Revision(1), "no deposit at all")
        .await
        .unwrap();
    assert_eq!(
        repository.load("account-1").await.unwrap().state().balance,
        0
    );
}

#[tokio::test]
async fn an_aggregate_over_several_streams_folds_compensations_between_them() {
    let store = store();
    let accounts = Repository::<Account>::new(store.clone());
    account(&accounts, "account-a", &[100, 30]).await;
    account(&accounts, "account-b", &[5]).await;
    // A compensation in account-b of an event of account-a (written by hand: the
    // repository writes one into the event's own stream), and one of account-c's,
    // which the transfer does not read.
    account(&accounts, "account-c", &[1]).await;
    for (stream, at) in [
        ("account-b", EventRef::new("account-a", Revision(1))),
        ("account-b", EventRef::new("account-c", Revision(1))),
    ] {
        let event = Compensation::cancel(at, "wrong account")
            .to_event()
            .unwrap();
        store
            .append(stream, ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
    }

    let transfers = Repository::<Transfer>::new(store.clone());
    let loaded = transfers
        .load_streams(&["account-a", "account-b"])
        .await
        .unwrap();
    assert_eq!(loaded.state().balances["account-a"], 30);
    assert_eq!(loaded.state().balances["account-b"], 5);
    assert_eq!(loaded.state().order, ["account-a", "account-b"]);
    // account-c's own load is not touched by a compensation written elsewhere.
    assert_eq!(accounts.load("account-c").await.unwrap().state().balance, 1);
}

#[tokio::test]
async fn a_compensation_after_a_snapshot_of_its_event_refolds_the_history() {
    let store = store();
    let repository = Repository::<Account>::new(store.clone()).with_snapshots(3);
    account(&repository, "account-1", &[100, 1, 1, 1, 1]).await;
    let loaded = repository.load("account-1").await.unwrap();
    assert!(
        loaded.from_snapshot(),
        "a snapshot covers the deposit of 100"
    );
    assert_eq!(loaded.state().balance, 104);
    assert!(loaded.events_since_snapshot() < 3);

    repository
        .correct("account-1", Revision(1), json!({"cents": 10}), "typo")
        .await
        .unwrap();
    let loaded = repository.load("account-1").await.unwrap();
    assert!(
        !loaded.from_snapshot(),
        "the snapshot's state misses the correction"
    );
    assert_eq!(loaded.state().balance, 14);
    assert_eq!(loaded.state().events_seen, 6);

    // That load wrote a snapshot of the corrected state: the next one starts there.
    let loaded = repository.load("account-1").await.unwrap();
    assert!(loaded.from_snapshot());
    assert_eq!(loaded.events_since_snapshot(), 0);
    assert_eq!(loaded.state().balance, 14);

    // A cancellation after that snapshot too.
    repository
        .cancel("account-1", Revision(2), "never came")
        .await
        .unwrap();
    let loaded = repository.load("account-1").await.unwrap();
    assert!(!loaded.from_snapshot());
    assert_eq!(loaded.state().balance, 13);
    // A repository without snapshots agrees.
    let plain = Repository::<Account>::new(store.clone());
    assert_eq!(plain.load("account-1").await.unwrap().state().balance, 13);
}

fn refused(error: Error) -> (EventRef, String) {
    match error {
        Error::Compensation { event, reason } => (event, reason),
        other => panic!("expected a refused compensation, got {other:?}"),
    }
}

#[tokio::test]
async fn a_correction_that_would_not_decode_is_refused_and_writes_nothing() {
    let store = store();
    let repository = Repository::<Account>::new(store.clone());
    account(&repository, "account-1", &[100]).await;

    for patch in [json!({"cents": "ten"}), json!({"cents": null}), json!(42)] {
        let error = repository
            .correct("account-1", Revision(1), patch.clone(), "bad")
            .await
            .unwrap_err();
        let message = error.to_string();
        let (event, reason) = refused(error);
        assert_eq!(event, EventRef::new("account-1", Revision(1)), "{patch}");
        assert!(reason.contains("would not decode"), "{patch}: {reason}");
        assert!(message.contains("1@account-1"), "{message}");
    }
    assert_eq!(events(store.as_ref(), "account-1").await.len(), 2);
    assert_eq!(
        repository.load("account-1").await.unwrap().state().balance,
        100
    );
}

#[tokio::test]
async fn cancelling_what_does_not_exist_or_twice_or_a_compensation_is_refused() {
    let store = store();
    let repository = Repository::<Account>::new(store.clone());
    account(&repository, "account-1", &[100, 50]).await;

    let error = repository
        .cancel("account-1", Revision(9), "no such event")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("9@account-1"), "{error}");
    assert!(refused(error).1.contains("does not exist"));
    let error = repository
        .cancel("account-2", Revision(0), "no such stream")
        .await
        .unwrap_err();
    assert!(refused(error).1.contains("does not exist"));

    repository
        .cancel("account-1", Revision(2), "deposited twice")
        .await
        .unwrap();
    let error = repository
        .cancel("account-1", Revision(2), "once more")
        .await
        .unwrap_err();
    assert!(refused(error).1.contains("cancelled already"));
    let error = repository
        .correct("account-1", Revision(2), json!({"cents": 1}), "fix it")
        .await
        .unwrap_err();
    assert!(refused(error).1.contains("cancelled already"));
    // The compensation is eventfold's own event, not one to compensate.
    let error = repository
        .cancel("account-1", Revision(3), "undo the undo")
        .await
        .unwrap_err();
    assert!(refused(error).1.contains("$cancelled"));

    assert_eq!(events(store.as_ref(), "account-1").await.len(), 4);
    assert_eq!(
        repository.load("account-1").await.unwrap().state().balance,
        100
    );
}

#[tokio::test]
async fn a_cancellation_covered_by_a_snapshot_is_still_known_to_cancel() {
    let store = store();
    let repository = Repository::<Account>::new(store.clone()).with_snapshots(2);
    account(&repository, "account-1", &[100, 50]).await;
    repository
        .cancel("account-1", Revision(2), "deposited twice")
        .await
        .unwrap();
    // This load refolds and writes a snapshot past the cancellation.
    repository.load("account-1").await.unwrap();
    assert!(repository.load("account-1").await.unwrap().from_snapshot());

    let error = repository
        .cancel("account-1", Revision(2), "once more")
        .await
        .unwrap_err();
    assert!(refused(error).1.contains("cancelled already"));
}

#[tokio::test]
async fn a_command_after_a_compensation_decides_on_the_corrected_state() {
    let store = store();
    let repository = Repository::<Account>::new(store.clone()).with_snapshots(2);
    account(&repository, "account-1", &[100, 5]).await;
    repository
        .correct("account-1", Revision(1), json!({"cents": 10}), "typo")
        .await
        .unwrap();

    let error = repository
        .handle("account-1", Envelope::new(withdraw("account-1", 50)))
        .await
        .unwrap_err();
    assert_eq!(
        error.rejection(),
        Some(&AccountRejection::InsufficientFunds {
            balance: 15,
            requested: 50
        })
    );
    let accepted = repository
        .handle("account-1", Envelope::new(withdraw("account-1", 15)))
        .await
        .unwrap();
    assert_eq!(accepted.revision, Some(Revision(4)));
    assert_eq!(
        repository.load("account-1").await.unwrap().state().balance,
        0
    );
}

#[tokio::test]
async fn a_compensation_written_while_a_command_is_decided_is_seen_on_the_retry() {
    let store = hooked();
    let repository = Repository::<Account>::new(store.clone());
    account(&repository, "account-1", &[100]).await;
    // Another writer corrects the deposit between our read and our append.
    let other = Repository::<Account>::new(store.inner().clone());
    store.layer().before_next_append(async move {
        other
            .correct("account-1", Revision(1), json!({"cents": 50}), "typo")
            .await
            .unwrap();
    });

    let error = repository
        .handle("account-1", Envelope::new(withdraw("account-1", 80)))
        .await
        .unwrap_err();
    match &error {
        CommandError::Rejected { reason } => assert_eq!(
            reason,
            &AccountRejection::InsufficientFunds {
                balance: 50,
                requested: 80
            }
        ),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_compensation_is_tried_again_when_the_stream_changes_under_it() {
    let store = hooked();
    let repository = Repository::<Account>::new(store.clone());
    account(&repository, "account-1", &[100]).await;
    let other = Repository::<Account>::new(store.inner().clone());
    store.layer().before_next_append(async move {
        other
            .handle("account-1", Envelope::new(deposit("account-1", 5)))
            .await
            .unwrap();
    });

    let written = repository
        .cancel("account-1", Revision(1), "wrong account")
        .await
        .unwrap();
    assert_eq!(written.first_revision, Revision(3));
    assert_eq!(
        repository.load("account-1").await.unwrap().state().balance,
        5
    );
}
