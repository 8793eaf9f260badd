//! Rebuilds: a new generation is built from position 0 beside the live one while new
//! events arrive, then swapped in; it equals the read model built without a rebuild
//! at the same position. A new version of one projection rebuilds its whole group,
//! beside the old code still running.

mod projection_support;

use std::sync::Arc;

use eventfold::InMemoryStore;
use eventfold::Position;
use eventfold::projection::{Mode, ProjectionRunner, SqliteReadModel, TrackState};
use projection_support::*;

const GROUP: &str = "auction";

#[tokio::test]
async fn a_rebuild_yields_exactly_the_live_read_model_at_the_same_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemoryStore::new());
    let mut events = workload(0, 150);
    let before_rebuild = append(store.as_ref(), &events).await;

    let faults = Faults::none();
    let questions = Questions::without_emails(faults.clone());
    let seen = questions.seen.clone();
    let db = SqliteReadModel::open(dir.path().join("a.sqlite"))
        .await
        .unwrap();
    let running = ProjectionRunner::new(store.clone(), db.clone(), GROUP)
        .with_projection(questions)
        .with_projection(UnreadCount { version: 1 })
        .with_batch_events(10)
        .with_retry(quick_retry(10_000))
        .start()
        .await
        .unwrap();
    within("first build", running.wait_until_live_at(before_rebuild))
        .await
        .unwrap();

    // Hold the rebuild half-way, so that it provably runs beside the live generation.
    faults.hold_at(2, Position(60));
    assert_eq!(running.rebuild().await.unwrap(), 2);
    let mut watch = running.watch();
    wait_status(&mut watch, "the rebuild to reach the hold", |s| {
        s.building
            .as_ref()
            .is_some_and(|b| b.state == TrackState::Retrying)
    })
    .await;
    let more = workload(150, 60);
    let head = append(store.as_ref(), &more).await;
    events.extend(more);
    let status = wait_status(&mut watch, "the live generation to take new events", |s| {
        s.live.as_ref().is_some_and(|l| l.position == Some(head))
    })
    .await;
    assert_eq!(status.live.as_ref().unwrap().generation, 1);
    let building = status.building.unwrap();
    assert!(building.position < Some(Position(60)), "{building:?}");
    assert_eq!(building.replay_until, Some(before_rebuild));
    // Readers see the live generation, complete, while the new one is half built.
    let unread = db.call(|m| read_unread(m.connection())).await.unwrap();
    assert_eq!(unread, expected_unread(&events, 1));
    assert!(
        db.call(|m| table_exists(m.connection(), "unread_g2"))
            .await
            .unwrap()
    );

    faults.release();
    let status = within("the swap", running.wait_until_live_at(head))
        .await
        .unwrap();
    let live = status.live.unwrap();
    assert_eq!((live.generation, live.position), (2, Some(head)));
    assert!(status.building.is_none());

    // The same read model as one built without a rebuild, at the same position.
    let fresh = SqliteReadModel::open(dir.path().join("b.sqlite"))
        .await
        .unwrap();
    let fresh_running = ProjectionRunner::new(store.clone(), fresh.clone(), GROUP)
        .with_projection(Questions::without_emails(Faults::none()))
        .with_projection(UnreadCount { version: 1 })
        .start()
        .await
        .unwrap();
    within("the fresh build", fresh_running.wait_until_live_at(head))
        .await
        .unwrap();
    for view in ["questions", "unread", "unread_questions"] {
        let rebuilt = db.call(move |m| dump(m.connection(), view)).await.unwrap();
        let built = fresh
            .call(move |m| dump(m.connection(), view))
            .await
            .unwrap();
        assert_eq!(rebuilt, built, "{view}");
    }
    assert_eq!(
        db.call(|m| read_unread(m.connection())).await.unwrap(),
        expected_unread(&events, 1)
    );
    assert_eq!(db.live_checkpoint(GROUP).await.unwrap(), Some(head));
    // The old generation is gone.
    for table in ["questions_g1", "unread_g1", "unread_questions_g1"] {
        assert!(
            !db.call(move |m| table_exists(m.connection(), table))
                .await
                .unwrap()
        );
    }

    // Generation 2 replayed what generation 1 had seen when the rebuild started, and
    // saw the events that arrived after that live.
    let seen = seen.lock().unwrap().clone();
    let modes: Vec<(u64, Mode)> = seen
        .iter()
        .filter(|(generation, _, _)| *generation == 2)
        .map(|(_, position, mode)| (*position, *mode))
        .collect();
    assert_eq!(modes.len() as u64, head.get() + 1, "each event once");
    for (position, mode) in modes {
        let expected = if position <= before_rebuild.get() {
            Mode::Replay
        } else {
            Mode::Live
        };
        assert_eq!(mode, expected, "position {position}");
    }
}

#[tokio::test]
async fn a_new_version_rebuilds_its_group_beside_the_old_code_and_swaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("read.sqlite");
    let store = Arc::new(InMemoryStore::new());
    let mut events = workload(0, 90);
    let head = append(store.as_ref(), &events).await;

    // Version 1 of the code runs.
    let old_db = SqliteReadModel::open(&path).await.unwrap();
    let old = ProjectionRunner::new(store.clone(), old_db.clone(), GROUP)
        .with_projection(Questions::new(Faults::none()))
        .with_projection(UnreadCount { version: 1 })
        .with_batch_events(10)
        .start()
        .await
        .unwrap();
    within("version 1", old.wait_until_live_at(head))
        .await
        .unwrap();
    assert_eq!(
        old_db.call(|m| read_unread(m.connection())).await.unwrap(),
        expected_unread(&events, 1)
    );

    // Version 2 of the unread count is deployed beside it, on its own connection.
    let new_db = SqliteReadModel::open(&path).await.unwrap();
    let new = ProjectionRunner::new(store.clone(), new_db.clone(), GROUP)
        .with_projection(Questions::new(Faults::none()))
        .with_projection(UnreadCount { version: 2 })
        .with_batch_events(10)
        .start()
        .await
        .unwrap();
    let status = new.status();
    assert!(status.live.is_none(), "version 1 owns the live generation");
    assert_eq!(status.building.as_ref().unwrap().generation, 2);
    assert_eq!(status.fingerprint, "questions@1,unread-count@2");

    let more = workload(90, 30);
    let head = append(store.as_ref(), &more).await;
    events.extend(more);
    let status = within("version 2", new.wait_until_live_at(head))
        .await
        .unwrap();
    assert_eq!(status.live.unwrap().generation, 2);
    // Version 1 finds out with its next batch (or its idle check within a second).
    let last = workload(120, 1);
    let head = append(store.as_ref(), &last).await;
    events.extend(last);
    within("version 2 again", new.wait_until_live_at(head))
        .await
        .unwrap();
    let mut old_watch = old.watch();
    wait_status(&mut old_watch, "version 1 to stop", |s| {
        s.live
            .as_ref()
            .is_some_and(|l| l.state == TrackState::Stopped)
    })
    .await;

    assert_eq!(
        new_db.call(|m| read_unread(m.connection())).await.unwrap(),
        expected_unread(&events, 2)
    );
    assert_ne!(expected_unread(&events, 1), expected_unread(&events, 2));
    // The group was replayed together: the unchanged projection has a new generation too.
    let tables = new_db
        .call(|m| {
            ["questions_g1", "unread_g1", "questions_g2", "unread_g2"]
                .map(|t| table_exists(m.connection(), t))
        })
        .await
        .unwrap();
    assert_eq!(tables, [false, false, true, true]);
    assert_eq!(
        new_db
            .call(|m| dump(m.connection(), "questions").len())
            .await
            .unwrap(),
        events.len().div_ceil(3)
    );
}
