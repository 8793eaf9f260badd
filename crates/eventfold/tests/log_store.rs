//! The framework on the embedded engine: commands, snapshots and the command log
//! survive a close and reopen of the data directory.

mod common;

use std::sync::Arc;

use common::*;
use eventfold::{Envelope, EventStore, Repository, Revision};
use eventfold_log::{LogOptions, LogStore};

#[tokio::test]
async fn commands_snapshots_and_command_ids_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let resent = Envelope::new(withdraw("account-1", 5));
    {
        let store: Arc<dyn EventStore> =
            Arc::new(LogStore::open(dir.path(), LogOptions::default()).unwrap());
        let repository = Repository::<Account>::new(store).with_snapshots(10);
        repository
            .handle("account-1", Envelope::new(open("ada")))
            .await
            .unwrap();
        for _ in 0..24 {
            repository
                .handle("account-1", Envelope::new(deposit("account-1", 2)))
                .await
                .unwrap();
        }
        let accepted = repository
            .handle("account-1", resent.clone())
            .await
            .unwrap();
        assert_eq!(accepted.revision, Some(Revision(25)));
    } // the store is closed here

    let store: Arc<dyn EventStore> =
        Arc::new(LogStore::open(dir.path(), LogOptions::default()).unwrap());
    let repository = Repository::<Account>::new(store).with_snapshots(10);

    let loaded = repository.load("account-1").await.unwrap();
    let again = repository.handle("account-1", resent).await.unwrap();
    let next = repository
        .handle("account-1", Envelope::new(withdraw("account-1", 1)))
        .await
        .unwrap();

    assert!(loaded.from_snapshot());
    assert!(loaded.events_since_snapshot() < 10);
    assert_eq!(loaded.state().balance, 43);
    assert!(again.duplicate);
    assert_eq!(again.revision, Some(Revision(25)));
    assert_eq!(next.revision, Some(Revision(26)));
    assert_eq!(
        repository.load("account-1").await.unwrap().state().balance,
        42
    );
}
