//! Asynchronous command feedback: submit answers with the command id at once; the
//! outcome (accepted with revisions, rejected with a reason, failed) is recorded in the
//! store and can be queried by anyone reading it.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::hooked::Hooked;
use common::*;
use eventfold::{
    CommandError, CommandOutcome, CommandQueue, Envelope, Error, EventStore, InMemoryStore,
    Repository, Revision, Written,
};

async fn open_account(store: Arc<dyn EventStore>) {
    Repository::<Account>::new(store)
        .handle("account-1", Envelope::new(open("ada")))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_accepted_command_is_queryable_by_its_id_from_another_reader() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    open_account(store.clone()).await;
    let queue = CommandQueue::new(Repository::<Account>::new(store.clone()));

    let id = queue.submit("account-1", Envelope::new(deposit("account-1", 40)));
    let waited = queue.wait_for_outcome(id).await.unwrap();
    let queried = eventfold::outcome(store.as_ref(), id).await.unwrap();

    let CommandOutcome::Accepted {
        revision,
        written,
        position,
    } = waited.clone()
    else {
        panic!("expected acceptance, got {waited:?}");
    };
    assert_eq!(revision, Some(Revision(1)));
    assert_eq!(
        written,
        [Written {
            stream: "account-1".into(),
            first_revision: Revision(1),
            last_revision: Revision(1)
        }]
    );
    assert!(position.is_some());
    assert_eq!(queried, Some(waited));
}

#[tokio::test]
async fn a_rejected_command_records_its_reason_and_keeps_it() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    open_account(store.clone()).await;
    let repository = Repository::<Account>::new(store.clone());
    let queue = CommandQueue::new(repository.clone());
    let command = Envelope::new(withdraw("account-1", 5));

    let id = queue.submit("account-1", command.clone());
    let outcome = queue.wait_for_outcome(id).await.unwrap();
    // Money arrives; the same command id sent again keeps its one outcome.
    repository
        .handle("account-1", Envelope::new(deposit("account-1", 50)))
        .await
        .unwrap();
    let again = repository.handle("account-1", command).await.unwrap_err();

    assert_eq!(
        outcome,
        CommandOutcome::Rejected {
            reason: "insufficient funds: balance 0, requested 5".into()
        }
    );
    assert!(
        matches!(again, CommandError::Failed(Error::AlreadyRejected { command_id, .. }) if command_id == id),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_failed_command_records_the_failure() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    open_account(store.clone()).await;
    let queue = CommandQueue::new(Repository::<Transfer>::new(store.clone()));

    let id = queue.submit(
        "account-1",
        Envelope::new(TransferMoney {
            from: "account-1".into(),
            to: "account-9".into(),
            cents: 0,
        }),
    );
    let outcome = queue.wait_for_outcome(id).await.unwrap();

    match outcome {
        CommandOutcome::Failed { error } => assert!(error.contains("account-9"), "{error}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_command_deciding_nothing_is_recorded_as_accepted() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let limits = Repository::<Limits>::new(store.clone());
    limits.handle("account-1", Envelope::new(7)).await.unwrap();
    let queue = CommandQueue::new(limits);

    let id = queue.submit("account-1", Envelope::new(7));
    let outcome = queue.wait_for_outcome(id).await.unwrap();

    match outcome {
        CommandOutcome::Accepted {
            revision, written, ..
        } => assert_eq!((revision, written), (Some(Revision(0)), Vec::new())),
        other => panic!("expected acceptance, got {other:?}"),
    }
}

#[tokio::test]
async fn an_outcome_is_known_even_when_the_answer_to_the_append_was_lost() {
    let store = Hooked::new();
    open_account(store.clone()).await;
    let repository = Repository::<Account>::new(store.clone());
    let command = Envelope::new(deposit("account-1", 3));
    store.lose_next_answer.store(true, Ordering::SeqCst);

    let lost = repository.handle("account-1", command.clone()).await;
    let recorded = eventfold::outcome(store.as_ref(), command.command_id())
        .await
        .unwrap();

    assert!(lost.is_err());
    assert!(recorded.is_some_and(|o| o.is_accepted()));
}
