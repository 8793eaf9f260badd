//! Asynchronous command feedback: submit answers with the command id at once; the
//! outcome (accepted with revisions, rejected with a reason, failed) is recorded in the
//! store and can be queried by anyone reading it.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::hooked::hooked;
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

    let id = queue
        .submit("account-1", Envelope::new(deposit("account-1", 40)))
        .unwrap();
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

    let id = queue.submit("account-1", command.clone()).unwrap();
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

    let id = queue
        .submit(
            "account-1",
            Envelope::new(TransferMoney {
                from: "account-1".into(),
                to: "account-9".into(),
                cents: 0,
            }),
        )
        .unwrap();
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

    let id = queue.submit("account-1", Envelope::new(7)).unwrap();
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
    let store = hooked();
    open_account(store.clone()).await;
    let repository = Repository::<Account>::new(store.clone());
    let command = Envelope::new(deposit("account-1", 3));
    store.layer().lose_next_answer.store(true, Ordering::SeqCst);

    let lost = repository.handle("account-1", command.clone()).await;
    let recorded = eventfold::outcome(store.as_ref(), command.command_id())
        .await
        .unwrap();

    assert!(lost.is_err());
    assert!(recorded.is_some_and(|o| o.is_accepted()));
}

// ---- outcomes recorded by direct handling ----

#[tokio::test]
async fn a_command_rejected_by_direct_handling_keeps_its_rejection() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    open_account(store.clone()).await;
    let repository = Repository::<Account>::new(store.clone());
    let command = Envelope::new(withdraw("account-1", 5));

    let first = repository
        .handle("account-1", command.clone())
        .await
        .unwrap_err();
    // Money arrives; the same command id sent again keeps its one outcome.
    repository
        .handle("account-1", Envelope::new(deposit("account-1", 50)))
        .await
        .unwrap();
    let again = repository
        .handle("account-1", command.clone())
        .await
        .unwrap_err();
    let recorded = eventfold::outcome(store.as_ref(), command.command_id())
        .await
        .unwrap();

    assert!(first.rejection().is_some(), "{first:?}");
    assert!(
        matches!(again, CommandError::Failed(Error::AlreadyRejected { .. })),
        "{again:?}"
    );
    assert_eq!(
        recorded,
        Some(CommandOutcome::Rejected {
            reason: "insufficient funds: balance 0, requested 5".into()
        })
    );
    let balance = Repository::<Account>::new(store)
        .load("account-1")
        .await
        .unwrap()
        .state()
        .balance;
    assert_eq!(balance, 50, "the re-sent withdrawal was not accepted");
}

#[tokio::test]
async fn a_command_deciding_nothing_after_a_failure_is_recorded_as_accepted() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let limits = Repository::<Limits>::new(store.clone());
    limits.handle("account-1", Envelope::new(7)).await.unwrap();
    // An earlier attempt of this command failed (say, the store was down).
    let command = Envelope::new(7);
    let failed = CommandOutcome::Failed {
        error: "connection reset".into(),
    };
    let failed = eventfold::DomainEvent::encode(&failed).unwrap();
    store
        .append(
            &eventfold::streams::command(command.command_id()),
            eventfold::ExpectedVersion::NoStream,
            vec![failed],
        )
        .await
        .unwrap();

    let accepted = limits.handle("account-1", command.clone()).await.unwrap();
    let recorded = eventfold::outcome(store.as_ref(), command.command_id())
        .await
        .unwrap();
    let again = limits.handle("account-1", command).await.unwrap();

    assert!(accepted.written.is_empty());
    assert!(
        matches!(&recorded, Some(CommandOutcome::Accepted { written, .. }) if written.is_empty()),
        "{recorded:?}"
    );
    assert!(again.duplicate);
    assert_eq!(again.position, accepted.position);
}

#[tokio::test]
async fn a_rejection_loses_to_a_concurrent_acceptance_of_the_same_command() {
    let store = hooked();
    open_account(store.clone()).await;
    let repository = Repository::<Account>::new(store.clone());
    let command = Envelope::new(withdraw("account-1", 5));
    // Between our rejection and its recording, money arrives and another handler of
    // the very same command accepts it.
    let other = Repository::<Account>::new(store.inner().clone());
    let same = command.clone();
    store.layer().before_next_append(async move {
        other
            .handle("account-1", Envelope::new(deposit("account-1", 50)))
            .await
            .unwrap();
        other.handle("account-1", same).await.unwrap();
    });

    let answer = repository.handle("account-1", command.clone()).await;
    let recorded = eventfold::outcome(store.as_ref(), command.command_id())
        .await
        .unwrap();

    let accepted = answer.unwrap();
    assert!(accepted.duplicate);
    assert_eq!(accepted.revision, Some(Revision(2)));
    assert!(recorded.is_some_and(|o| o.is_accepted()));
}

// ---- the queue's own failures ----

/// Panics when asked to add 13.
#[derive(Debug, Default)]
struct Fragile;

impl eventfold::Aggregate for Fragile {
    const NAME: &'static str = "fragile";
    type Command = u64;
    type Event = LimitEvent;
    type Rejection = String;

    fn decide(&self, n: &u64) -> Result<eventfold::Decision<LimitEvent>, String> {
        assert_ne!(*n, 13, "unlucky number");
        Ok(eventfold::Decision::event(LimitEvent::DailyLimitSet {
            cents: *n,
        }))
    }

    fn evolve(&mut self, _: &LimitEvent) {}
}

#[tokio::test]
async fn a_panic_while_handling_is_recorded_as_a_failure() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let queue = CommandQueue::new(Repository::<Fragile>::new(store.clone()));

    let id = queue.submit("fragile-1", Envelope::new(13)).unwrap();
    // The timeout only guards the test run: the outcome is recorded long before it.
    let outcome = queue
        .wait_for_outcome_timeout(id, std::time::Duration::from_secs(10))
        .await
        .unwrap();

    match outcome {
        Some(CommandOutcome::Failed { error }) => {
            assert!(error.contains("unlucky number"), "{error}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // The queue still works.
    let next = queue.submit("fragile-1", Envelope::new(1)).unwrap();
    assert!(queue.wait_for_outcome(next).await.unwrap().is_accepted());
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_records_nothing() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    open_account(store.clone()).await;
    let queue = CommandQueue::new(Repository::<Account>::new(store.clone())).with_concurrency(1);

    // No await in between: the first command still holds the only permit.
    let first = queue
        .submit("account-1", Envelope::new(deposit("account-1", 1)))
        .unwrap();
    let refused = Envelope::new(deposit("account-1", 2));
    let refused_id = refused.command_id();
    let second = queue.submit("account-1", refused);

    assert!(
        matches!(second, Err(Error::QueueFull { limit: 1 })),
        "{second:?}"
    );
    assert!(queue.wait_for_outcome(first).await.unwrap().is_accepted());
    assert_eq!(queue.outcome(refused_id).await.unwrap(), None);
}

#[test]
fn submitting_outside_a_runtime_is_an_error_not_a_panic() {
    let queue = CommandQueue::new(Repository::<Account>::new(Arc::new(InMemoryStore::new())));

    let submitted = queue.submit("account-1", Envelope::new(open("ada")));

    assert!(matches!(submitted, Err(Error::NoRuntime)), "{submitted:?}");
}

#[tokio::test]
async fn waiting_for_an_outcome_that_never_comes_can_time_out() {
    let queue = CommandQueue::new(Repository::<Account>::new(Arc::new(InMemoryStore::new())));

    let waited = queue
        .wait_for_outcome_timeout(uuid::Uuid::now_v7(), std::time::Duration::from_millis(5))
        .await
        .unwrap();

    assert_eq!(waited, None);
}
