//! The projection runner on SQLite: checkpoints commit with the read model, a restart
//! resumes after them, faults are rolled back, retried with back-off and visible, and
//! lag is reported.

mod projection_support;

use std::sync::Arc;
use std::time::Instant;

use eventfold::projection::{ProjectionError, ProjectionRunner, SqliteReadModel, TrackState};
use eventfold::{EventStore, InMemoryStore, Position};
use projection_support::*;

const GROUP: &str = "auction";

fn runner(
    store: &Arc<InMemoryStore>,
    db: &eventfold::projection::ReadModelDb<SqliteReadModel>,
    faults: &Arc<Faults>,
) -> ProjectionRunner<SqliteReadModel> {
    ProjectionRunner::new(store.clone(), db.clone(), GROUP)
        .with_projection(Questions::without_emails(faults.clone()))
        .with_projection(UnreadCount { version: 1 })
        .with_batch_events(7)
        .with_retry(quick_retry(50))
}

#[tokio::test]
async fn checkpoint_commits_with_the_read_model_and_a_restart_resumes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("read.sqlite");
    let store = Arc::new(InMemoryStore::new());
    let first = workload(0, 60);
    let head = append(store.as_ref(), &first).await;

    let db = SqliteReadModel::open(&path).await.unwrap();
    let running = runner(&store, &db, &Faults::none()).start().await.unwrap();
    let status = within("catch up", running.wait_until_live_at(head))
        .await
        .unwrap();
    let live = status.live.unwrap();
    assert_eq!(live.position, Some(head));
    assert_eq!(live.lag, 0);
    let unread = db.call(|m| read_unread(m.connection())).await.unwrap();
    assert_eq!(unread, expected_unread(&first, 1));
    assert_eq!(db.live_checkpoint(GROUP).await.unwrap(), Some(head));

    // Stop everything (the runner and the database), write more, reopen the file.
    drop(running);
    drop(db);
    let second = workload(60, 45);
    let head = append(store.as_ref(), &second).await;
    let db = SqliteReadModel::open(&path).await.unwrap();
    let running = runner(&store, &db, &Faults::none()).start().await.unwrap();
    let status = within("resume", running.wait_until_live_at(head))
        .await
        .unwrap();
    assert_eq!(status.live.as_ref().unwrap().generation, 1, "no rebuild");
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    // Applying any event twice would show in the counts.
    let unread = db.call(|m| read_unread(m.connection())).await.unwrap();
    assert_eq!(unread, expected_unread(&all, 1));
    let questions = db
        .call(|m| dump(m.connection(), "questions").len())
        .await
        .unwrap();
    assert_eq!(questions, all.len().div_ceil(3));
}

#[tokio::test]
async fn a_failed_batch_is_rolled_back_retried_with_back_off_and_visible() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemoryStore::new());
    // The batch holding position 17 fails until released.
    let faults = Faults::none();
    faults.hold_at(0, Position(17));
    let db = SqliteReadModel::open(dir.path().join("read.sqlite"))
        .await
        .unwrap();
    // Started on an empty log, the first generation is live at once.
    let running = runner(&store, &db, &faults)
        .with_retry(quick_retry(1_000))
        .start()
        .await
        .unwrap();
    let events = workload(0, 40);
    let head = append(store.as_ref(), &events).await;
    let mut watch = running.watch();
    // Five failures: the back-off has reached its 20 ms ceiling (2, 4, 8, 16, 20).
    let retrying = wait_status(&mut watch, "five retries", |s| {
        s.live
            .as_ref()
            .is_some_and(|t| t.state == TrackState::Retrying && t.retries >= 5)
    })
    .await;
    let track = retrying.live.unwrap();
    assert!(
        track
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("injected fault at position 17")),
        "{track:?}"
    );
    // The failed batch left nothing behind: the read model is the fold of what the
    // checkpoint covers, not one event more.
    let checkpoint = track.position.unwrap();
    assert!(checkpoint < Position(17), "{track:?}");
    assert_eq!(db.live_checkpoint(GROUP).await.unwrap(), Some(checkpoint));
    let unread = db.call(|m| read_unread(m.connection())).await.unwrap();
    assert_eq!(
        unread,
        expected_unread(&events[..=checkpoint.get() as usize], 1)
    );

    // Two more failures after the hold: each back-off (20 ms by now) is waited out.
    let released = Instant::now();
    faults.release_after(2);
    let status = within("recovery", running.wait_until_live_at(head))
        .await
        .unwrap();
    assert!(
        released.elapsed().as_millis() >= 40,
        "{:?}",
        released.elapsed()
    );
    let track = status.live.unwrap();
    assert_eq!(track.retries, 0);
    assert!(track.last_error.is_some(), "the last error stays visible");
    let unread = db.call(|m| read_unread(m.connection())).await.unwrap();
    assert_eq!(unread, expected_unread(&events, 1));
}

#[tokio::test]
async fn after_its_retries_a_track_stops_as_faulted_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemoryStore::new());
    let head = append(store.as_ref(), &workload(0, 30)).await;
    let faults = Faults::none();
    faults.fail_at(Position(9), u32::MAX);
    let db = SqliteReadModel::open(dir.path().join("read.sqlite"))
        .await
        .unwrap();
    // Over existing history, the first generation is built before readers see it.
    let running = runner(&store, &db, &faults)
        .with_retry(quick_retry(3))
        .start()
        .await
        .unwrap();
    let error = within("the fault", running.wait_until_live_at(head))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProjectionError::Faulted { last_error, .. } if last_error.contains("position 9")),
        "{error}"
    );
    let status = running.status();
    let track = status.faulted().unwrap();
    assert_eq!(status.building.as_ref(), Some(track));
    assert_eq!(track.state, TrackState::Faulted);
    assert_eq!(track.retries, 4, "the first attempt and three retries");
    assert_eq!(track.position, Some(Position(6)), "batches of 7");
    assert_eq!(track.lag, head.get() - 6);
}

#[tokio::test]
async fn stop_ends_every_track_after_its_batch_and_nothing_is_applied_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemoryStore::new());
    let first = workload(0, 30);
    let head = append(store.as_ref(), &first).await;
    let db = SqliteReadModel::open(dir.path().join("read.sqlite"))
        .await
        .unwrap();
    let running = runner(&store, &db, &Faults::none()).start().await.unwrap();
    within("catch up", running.wait_until_live_at(head))
        .await
        .unwrap();

    // An idle live track waits for new events: stop ends it without one.
    let status = within("stop", running.stop()).await;
    let live = status.live.unwrap();
    assert_eq!(live.state, TrackState::Stopped);
    assert_eq!(live.position, Some(head));

    // Nothing runs any more: new events stay unapplied until a runner starts again.
    let later = append(store.as_ref(), &workload(30, 5)).await;
    assert_eq!(db.live_checkpoint(GROUP).await.unwrap(), Some(head));
    let running = runner(&store, &db, &Faults::none()).start().await.unwrap();
    within("resume", running.wait_until_live_at(later))
        .await
        .unwrap();
    let unread = db.call(|m| read_unread(m.connection())).await.unwrap();
    let mut all = first;
    all.extend(workload(30, 5));
    assert_eq!(unread, expected_unread(&all, 1));
}

#[tokio::test]
async fn lag_is_the_distance_to_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemoryStore::new());
    let faults = Faults::none();
    // Hold the track at the batch holding position 50.
    faults.hold_at(0, Position(50));
    let db = SqliteReadModel::open(dir.path().join("read.sqlite"))
        .await
        .unwrap();
    let running = runner(&store, &db, &faults)
        .with_retry(quick_retry(1_000))
        .start()
        .await
        .unwrap();
    let head = append(store.as_ref(), &workload(0, 100)).await;
    let mut watch = running.watch();
    let held = wait_status(&mut watch, "the hold", |s| {
        s.live
            .as_ref()
            .is_some_and(|t| t.state == TrackState::Retrying)
    })
    .await;
    let track = held.live.unwrap();
    let position = track.position.map_or(0, |p| p.get() + 1);
    assert!(position <= 50, "{track:?}");
    assert_eq!(track.head, Some(head));
    assert_eq!(head, Position(99));
    assert_eq!(track.lag, 100 - position);

    faults.release();
    let status = within("release", running.wait_until_live_at(head))
        .await
        .unwrap();
    assert_eq!(status.lag(), Some(0));
    assert_eq!(status.live.unwrap().state, TrackState::Live);
    assert_eq!(store.head_position().await.unwrap(), Some(head));
}

#[tokio::test]
async fn two_runners_of_one_group_never_apply_an_event_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("read.sqlite");
    let store = Arc::new(InMemoryStore::new());
    let first_db = SqliteReadModel::open(&path).await.unwrap();
    let first = runner(&store, &first_db, &Faults::none())
        .start()
        .await
        .unwrap();
    // A second process with the same code, on its own connection: both follow the
    // same generation, and each batch checks the checkpoint it started from.
    let second_db = SqliteReadModel::open(&path).await.unwrap();
    let second = runner(&store, &second_db, &Faults::none())
        .start()
        .await
        .unwrap();
    let events = workload(0, 150);
    let head = append(store.as_ref(), &events).await;
    within("the first runner", first.wait_until_live_at(head))
        .await
        .unwrap();
    within("the second runner", second.wait_until_live_at(head))
        .await
        .unwrap();
    let unread = first_db
        .call(|m| read_unread(m.connection()))
        .await
        .unwrap();
    assert_eq!(unread, expected_unread(&events, 1));
    assert_eq!(first.status().live.unwrap().generation, 1);
    assert_eq!(second.status().live.unwrap().generation, 1);
}

#[tokio::test]
async fn projections_see_upcast_events_and_only_those_the_filter_lets_through() {
    use eventfold::projection::{Context, HandlerError, MemoryReadModel, MemoryTx, Projection};
    use eventfold::{EventData, ExpectedVersion, RecordedEvent};

    /// Records the version and stream of each event it sees.
    struct Versions;
    impl Projection<MemoryReadModel> for Versions {
        fn name(&self) -> &str {
            "versions"
        }
        fn tables(&self) -> &[&str] {
            &["versions"]
        }
        fn apply(
            &self,
            tx: &mut MemoryTx<'_>,
            event: &RecordedEvent,
            ctx: &mut Context<'_>,
        ) -> Result<(), HandlerError> {
            tx.table(&ctx.table("versions")).insert(
                event.position.to_string(),
                serde_json::json!([event.stream, event.version]),
            );
            Ok(())
        }
    }
    let to_v2 = |mut event: RecordedEvent| -> eventfold_core::Result<Vec<RecordedEvent>> {
        event.version = event.version.max(2);
        Ok(vec![event])
    };

    let store = Arc::new(InMemoryStore::new());
    let db = MemoryReadModel::open().await.unwrap();
    let running = ProjectionRunner::new(store.clone(), db.clone(), "versions")
        .with_projection(Versions)
        .with_upcaster(Arc::new(to_v2))
        .with_filter(eventfold_core::AllFilter {
            category: Some("order".into()),
            ..Default::default()
        })
        .start()
        .await
        .unwrap();
    let thing = || vec![EventData::json("Happened", &1).unwrap()];
    store
        .append("order-1", ExpectedVersion::Any, thing())
        .await
        .unwrap();
    store
        .append("invoice-1", ExpectedVersion::Any, thing())
        .await
        .unwrap();
    let head = store
        .append("invoice-2", ExpectedVersion::Any, thing())
        .await
        .unwrap()
        .position;
    let status = within("the filtered events", running.wait_until_live_at(head))
        .await
        .unwrap();
    // The checkpoint moved past the events the filter skipped: no lag.
    assert_eq!(status.lag(), Some(0));
    let seen = db
        .call(|m| m.live_table("versions", "versions").unwrap())
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen["0"], serde_json::json!(["order-1", 2]));
}
