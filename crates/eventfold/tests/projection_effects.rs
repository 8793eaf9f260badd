//! Side effects through the outbox: an email per question runs once across a crash of
//! the runner, a crash of the dispatcher between sending and marking done, a rebuild,
//! and the loss of the read-model database; history replayed by a new group sends
//! nothing.

mod projection_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use eventfold::projection::{
    Effect, EffectExecutor, EffectState, HandlerError, OutboxDispatcher, ProjectionRunner,
    ReadModelDb, SqliteReadModel, TrackState,
};
use eventfold::{EventStore, InMemoryStore};
use projection_support::*;
use tokio::sync::Notify;

const GROUP: &str = "auction";

/// The mail provider: honours idempotency keys (a key it has seen is not sent again),
/// and counts every call. It can stall after sending one key, as a process that dies
/// before it could mark the effect done.
#[derive(Default)]
struct MailProvider {
    sent: Mutex<BTreeMap<String, serde_json::Value>>,
    calls: Mutex<BTreeMap<String, usize>>,
    stall_after_sending: Mutex<Option<String>>,
    stalled: Notify,
    /// Calls for these questions fail (the provider is down for them).
    refused_questions: Mutex<Vec<String>>,
    /// Notified after each call (a permit is kept when nobody waits).
    called: Notify,
    total_calls: AtomicUsize,
}

struct Mailer(Arc<MailProvider>);

#[async_trait]
impl EffectExecutor for Mailer {
    async fn execute(&self, effect: &Effect) -> Result<(), HandlerError> {
        let provider = &self.0;
        let question = effect.payload["question"].as_str().unwrap_or_default();
        if provider
            .refused_questions
            .lock()
            .unwrap()
            .iter()
            .any(|refused| refused == question)
        {
            return Err(format!("the provider refused the email for {question}").into());
        }
        provider.total_calls.fetch_add(1, Ordering::SeqCst);
        *provider
            .calls
            .lock()
            .unwrap()
            .entry(effect.key.clone())
            .or_default() += 1;
        provider
            .sent
            .lock()
            .unwrap()
            .entry(effect.key.clone())
            .or_insert_with(|| effect.payload.clone());
        provider.called.notify_one();
        let stall = provider.stall_after_sending.lock().unwrap().clone();
        if stall.as_deref() == Some(effect.key.as_str()) {
            provider.stalled.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

fn runner(
    store: &Arc<InMemoryStore>,
    db: &ReadModelDb<SqliteReadModel>,
    faults: &Arc<Faults>,
) -> ProjectionRunner<SqliteReadModel> {
    ProjectionRunner::new(store.clone(), db.clone(), GROUP)
        .with_projection(Questions::new(faults.clone()))
        .with_projection(UnreadCount { version: 1 })
        .with_retry(quick_retry(10_000))
}

async fn outbox(db: &ReadModelDb<SqliteReadModel>) -> Vec<Effect> {
    db.effects(None, 1_000).await.unwrap()
}

#[tokio::test]
async fn an_effect_runs_once_across_a_crash_and_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("read.sqlite");
    let store = Arc::new(InMemoryStore::new());

    // History from before the group existed: replayed, never mailed.
    let history = vec![
        ("auction-1".to_string(), asked("q1", "seller-1")),
        ("auction-1".to_string(), asked("q2", "seller-2")),
    ];
    let head = append(store.as_ref(), &history).await;
    let faults = Faults::none();
    let db = SqliteReadModel::open(&path).await.unwrap();
    let running = runner(&store, &db, &faults).start().await.unwrap();
    within("history", running.wait_until_live_at(head))
        .await
        .unwrap();
    assert!(outbox(&db).await.is_empty(), "history sends nothing");

    // Two live questions: one email each, recorded with the read model.
    let head = append(
        store.as_ref(),
        &[
            ("auction-2".to_string(), asked("q3", "seller-1")),
            ("auction-2".to_string(), asked("q4", "seller-2")),
        ],
    )
    .await;
    within("live", running.wait_until_live_at(head))
        .await
        .unwrap();
    assert_eq!(outbox(&db).await.len(), 2);

    // The runner crashes while handling the next question: its transaction never
    // commits, so neither the question nor its email is recorded.
    // (The group's effect ledger started before its first effect: its first event
    // follows q4 in the log.)
    let q5 = store.head_position().await.unwrap().unwrap().next();
    faults.hold_at(0, q5);
    let head = append(
        store.as_ref(),
        &[("auction-3".to_string(), asked("q5", "seller-3"))],
    )
    .await;
    let mut watch = running.watch();
    wait_status(&mut watch, "the failing batch", |s| {
        s.live
            .as_ref()
            .is_some_and(|l| l.state == TrackState::Retrying)
    })
    .await;
    drop(running);
    drop(watch);
    drop(db);
    let db = SqliteReadModel::open(&path).await.unwrap();
    assert_eq!(outbox(&db).await.len(), 2);
    assert_eq!(
        db.call(|m| dump(m.connection(), "questions").len())
            .await
            .unwrap(),
        4
    );
    // Restarted (the fault is gone), it handles the question once.
    faults.release();
    let running = runner(&store, &db, &faults).start().await.unwrap();
    within("restart", running.wait_until_live_at(head))
        .await
        .unwrap();
    let effects = outbox(&db).await;
    assert_eq!(effects.len(), 3);
    assert!(effects.iter().all(|e| e.state == EffectState::Pending));

    // The dispatcher sends q4's email and dies before marking it done.
    let provider = Arc::new(MailProvider::default());
    let q4_key = effects[1].key.clone();
    assert_eq!(effects[1].payload["question"], "q4");
    *provider.stall_after_sending.lock().unwrap() = Some(q4_key.clone());
    let dispatcher = OutboxDispatcher::new(
        store.clone(),
        db.clone(),
        Arc::new(Mailer(provider.clone())),
    );
    let dispatching = tokio::spawn(async move { dispatcher.dispatch_pending().await });
    within("the stall", provider.stalled.notified()).await;
    dispatching.abort();
    let states: Vec<EffectState> = outbox(&db).await.iter().map(|e| e.state).collect();
    assert_eq!(
        states,
        [
            EffectState::Done,
            EffectState::Pending,
            EffectState::Pending
        ]
    );

    // A new dispatcher executes q4's effect again, with the same key: the provider
    // sends it once.
    *provider.stall_after_sending.lock().unwrap() = None;
    let dispatcher = OutboxDispatcher::new(
        store.clone(),
        db.clone(),
        Arc::new(Mailer(provider.clone())),
    );
    let report = dispatcher.dispatch_pending().await.unwrap();
    assert_eq!((report.done, report.failed), (2, 0));
    assert_eq!(provider.calls.lock().unwrap()[&q4_key], 2);

    // A rebuild replays everything: nothing is recorded or sent again.
    running.rebuild().await.unwrap();
    within("the rebuild", running.wait_until_live_at(head))
        .await
        .unwrap();
    assert_eq!(running.status().live.unwrap().generation, 2);
    assert_eq!(outbox(&db).await.len(), 3);
    assert_eq!(dispatcher.dispatch_pending().await.unwrap().done, 0);

    // Live again after the rebuild: the next question is mailed once.
    let head = append(
        store.as_ref(),
        &[("auction-4".to_string(), asked("q6", "seller-4"))],
    )
    .await;
    within("after the rebuild", running.wait_until_live_at(head))
        .await
        .unwrap();
    assert_eq!(dispatcher.dispatch_pending().await.unwrap().done, 1);

    let sent = provider.sent.lock().unwrap().clone();
    let questions: Vec<&str> = sent
        .values()
        .map(|payload| payload["question"].as_str().unwrap())
        .collect();
    let mut questions = questions.clone();
    questions.sort();
    assert_eq!(questions, ["q3", "q4", "q5", "q6"], "each email sent once");
    assert_eq!(provider.total_calls.load(Ordering::SeqCst), 5, "q4 twice");
    assert!(
        outbox(&db)
            .await
            .iter()
            .all(|e| e.state == EffectState::Done)
    );
}

/// A second group's projection in the same database that asks for an effect of the
/// same name as `Questions` does (`email:<seller>`), for another purpose.
struct SellerDigest;

impl eventfold::projection::Projection<SqliteReadModel> for SellerDigest {
    fn name(&self) -> &str {
        "seller-digest"
    }

    fn tables(&self) -> &[&str] {
        &[]
    }

    fn apply(
        &self,
        _: &mut rusqlite::Transaction<'_>,
        event: &eventfold::RecordedEvent,
        ctx: &mut eventfold::projection::Context<'_>,
    ) -> Result<(), HandlerError> {
        if let Some(QuestionEvent::QuestionAsked { seller, .. }) =
            eventfold::DomainEvent::decode(event)?
        {
            ctx.effect(
                format!("email:{seller}"),
                serde_json::json!({"digest": true}),
            );
        }
        Ok(())
    }
}

#[tokio::test]
async fn two_groups_in_one_database_keep_their_effects_of_the_same_name_apart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemoryStore::new());
    let db = SqliteReadModel::open(dir.path().join("read.sqlite"))
        .await
        .unwrap();
    let auction = runner(&store, &db, &Faults::none()).start().await.unwrap();
    let digest = ProjectionRunner::new(store.clone(), db.clone(), "digest")
        .with_projection(SellerDigest)
        .start()
        .await
        .unwrap();
    let head = append(
        store.as_ref(),
        &[("auction-1".to_string(), asked("q1", "seller-1"))],
    )
    .await;
    for running in [&auction, &digest] {
        within("live", running.wait_until_live_at(head))
            .await
            .unwrap();
    }
    let effects = outbox(&db).await;
    let mut seen: Vec<(&str, &serde_json::Value)> = effects
        .iter()
        .map(|e| (e.group.as_str(), &e.payload))
        .collect();
    seen.sort_by_key(|(group, _)| *group);
    assert_eq!(
        seen,
        [
            (
                "auction",
                &serde_json::json!({"to": "seller-1", "question": "q1"})
            ),
            ("digest", &serde_json::json!({"digest": true})),
        ],
        "{effects:?}"
    );
    assert_ne!(effects[0].key, effects[1].key);
}

#[tokio::test]
async fn a_failing_effect_is_retried_then_parked_visibly() {
    struct Down;
    #[async_trait]
    impl EffectExecutor for Down {
        async fn execute(&self, _: &Effect) -> Result<(), HandlerError> {
            Err("mail server unreachable".into())
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemoryStore::new());
    let db = SqliteReadModel::open(dir.path().join("read.sqlite"))
        .await
        .unwrap();
    let running = runner(&store, &db, &Faults::none()).start().await.unwrap();
    let head = append(
        store.as_ref(),
        &[("auction-1".to_string(), asked("q1", "seller-1"))],
    )
    .await;
    within("live", running.wait_until_live_at(head))
        .await
        .unwrap();

    let dispatcher =
        OutboxDispatcher::new(store.clone(), db.clone(), Arc::new(Down)).with_attempts(2);
    assert_eq!(dispatcher.dispatch_pending().await.unwrap().failed, 1);
    let effect = &outbox(&db).await[0];
    assert_eq!((effect.state, effect.attempts), (EffectState::Pending, 1));
    assert_eq!(
        effect.last_error.as_deref(),
        Some("mail server unreachable")
    );
    assert_eq!(dispatcher.dispatch_pending().await.unwrap().failed, 1);
    let effect = &outbox(&db).await[0];
    assert_eq!((effect.state, effect.attempts), (EffectState::Failed, 2));
    // Parked: not handed over again.
    assert_eq!(
        dispatcher.dispatch_pending().await.unwrap(),
        Default::default()
    );
}

#[tokio::test]
async fn a_running_dispatcher_executes_effects_as_they_are_recorded() {
    use eventfold::projection::{Context, MemoryReadModel, MemoryTx, Projection};
    use eventfold::{EventData, EventStore, ExpectedVersion, RecordedEvent};

    /// A webhook per event, in memory.
    struct Webhooks;
    impl Projection<MemoryReadModel> for Webhooks {
        fn name(&self) -> &str {
            "webhooks"
        }
        fn tables(&self) -> &[&str] {
            &[]
        }
        fn apply(
            &self,
            _: &mut MemoryTx<'_>,
            event: &RecordedEvent,
            ctx: &mut Context<'_>,
        ) -> Result<(), HandlerError> {
            ctx.effect("webhook", serde_json::json!({ "question": event.stream }));
            Ok(())
        }
    }

    let store = Arc::new(InMemoryStore::new());
    let db = MemoryReadModel::open().await.unwrap();
    let running = ProjectionRunner::new(store.clone(), db.clone(), "hooks")
        .with_projection(Webhooks)
        .start()
        .await
        .unwrap();
    let provider = Arc::new(MailProvider::default());
    // A long poll: only the runner's notification can make this prompt.
    let dispatcher = OutboxDispatcher::new(
        store.clone(),
        db.clone(),
        Arc::new(Mailer(provider.clone())),
    );
    let dispatching = tokio::spawn(dispatcher.run(std::time::Duration::from_secs(3_600)));
    for n in 0..3 {
        store
            .append(
                &format!("question-{n}"),
                ExpectedVersion::Any,
                vec![EventData::json("QuestionAsked", &n).unwrap()],
            )
            .await
            .unwrap();
    }
    within("three webhooks", async {
        while provider.sent.lock().unwrap().len() < 3 {
            provider.called.notified().await;
        }
    })
    .await;
    dispatching.abort();
    // The ledger's own events (one per email sent) reach no projection: a projection
    // with an effect per event would otherwise feed itself for ever.
    let head = store.head_position().await.unwrap().unwrap();
    running.wait_until_live_at(head).await.unwrap();
    assert_eq!(db.effects(None, 100).await.unwrap().len(), 3);
    let dispatcher = OutboxDispatcher::new(
        store.clone(),
        db.clone(),
        Arc::new(Mailer(provider.clone())),
    );
    assert_eq!(
        dispatcher.dispatch_pending().await.unwrap(),
        Default::default()
    );
    assert_eq!(provider.sent.lock().unwrap().len(), 3);
}

/// Sends (only) the question's email, one call per key (the provider counts them).
fn sent_questions(provider: &MailProvider) -> BTreeMap<String, usize> {
    let sent = provider.sent.lock().unwrap();
    let calls = provider.calls.lock().unwrap();
    sent.iter()
        .map(|(key, payload)| {
            (
                payload["question"].as_str().unwrap().to_string(),
                calls[key],
            )
        })
        .collect()
}

#[tokio::test]
async fn an_effect_recorded_but_not_sent_is_sent_after_the_read_model_database_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemoryStore::new());
    let faults = Faults::none();
    let history = [("auction-1".to_string(), asked("q1", "seller-1"))];
    append(store.as_ref(), &history).await;
    let db = SqliteReadModel::open(dir.path().join("first.sqlite"))
        .await
        .unwrap();
    let running = runner(&store, &db, &faults).start().await.unwrap();
    let head = append(
        store.as_ref(),
        &[("auction-2".to_string(), asked("q2", "seller-2"))],
    )
    .await;
    within("live", running.wait_until_live_at(head))
        .await
        .unwrap();
    assert_eq!(outbox(&db).await.len(), 1, "q2's email is recorded");

    // The read-model database is lost before the email went out.
    running.stop().await;
    drop(db);
    std::fs::remove_file(dir.path().join("first.sqlite")).unwrap();

    // A new database: its first generation replays only what the effect ledger shows
    // finished (nothing), so q2's email is recorded again, and sent; q1's is history.
    let db = SqliteReadModel::open(dir.path().join("second.sqlite"))
        .await
        .unwrap();
    let running = runner(&store, &db, &faults).start().await.unwrap();
    within("rebuilt", running.wait_until_live_at(head))
        .await
        .unwrap();
    let provider = Arc::new(MailProvider::default());
    let dispatcher = OutboxDispatcher::new(
        store.clone(),
        db.clone(),
        Arc::new(Mailer(provider.clone())),
    );
    let report = dispatcher.dispatch_pending().await.unwrap();
    assert_eq!((report.done, report.skipped), (1, 0));
    assert_eq!(
        sent_questions(&provider),
        BTreeMap::from([("q2".into(), 1)])
    );
}

#[tokio::test]
async fn effects_sent_before_the_read_model_database_was_lost_are_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemoryStore::new());
    let faults = Faults::none();
    let db = SqliteReadModel::open(dir.path().join("first.sqlite"))
        .await
        .unwrap();
    let running = runner(&store, &db, &faults).start().await.unwrap();
    let head = append(
        store.as_ref(),
        &[
            ("auction-1".to_string(), asked("q1", "seller-1")),
            ("auction-1".to_string(), asked("q2", "seller-2")),
            ("auction-2".to_string(), asked("q3", "seller-1")),
        ],
    )
    .await;
    within("live", running.wait_until_live_at(head))
        .await
        .unwrap();

    // q1's email fails (it stays pending); q2's and q3's go out, after the oldest
    // pending one, so the ledger's mark stays before q1 and lists q2 and q3.
    let provider = Arc::new(MailProvider::default());
    provider.refused_questions.lock().unwrap().push("q1".into());
    let dispatcher = OutboxDispatcher::new(
        store.clone(),
        db.clone(),
        Arc::new(Mailer(provider.clone())),
    );
    let report = dispatcher.dispatch_pending().await.unwrap();
    assert_eq!((report.done, report.failed), (2, 1));
    running.stop().await;
    drop(dispatcher);
    drop(db);
    std::fs::remove_file(dir.path().join("first.sqlite")).unwrap();

    // One more question while the database is gone.
    let head = append(
        store.as_ref(),
        &[("auction-3".to_string(), asked("q4", "seller-3"))],
    )
    .await;
    let db = SqliteReadModel::open(dir.path().join("second.sqlite"))
        .await
        .unwrap();
    let running = runner(&store, &db, &faults).start().await.unwrap();
    within("rebuilt", running.wait_until_live_at(head))
        .await
        .unwrap();
    assert_eq!(
        outbox(&db).await.len(),
        4,
        "every live question's email is recorded"
    );
    provider.refused_questions.lock().unwrap().clear();
    let dispatcher = OutboxDispatcher::new(
        store.clone(),
        db.clone(),
        Arc::new(Mailer(provider.clone())),
    );
    let report = dispatcher.dispatch_pending().await.unwrap();
    assert_eq!((report.done, report.skipped, report.failed), (2, 2, 0));
    assert_eq!(
        sent_questions(&provider),
        BTreeMap::from([
            ("q1".into(), 1),
            ("q2".into(), 1),
            ("q3".into(), 1),
            ("q4".into(), 1)
        ])
    );
    let states: Vec<EffectState> = outbox(&db).await.iter().map(|e| e.state).collect();
    assert_eq!(states, [EffectState::Done; 4]);
}

#[tokio::test]
async fn the_effect_ledger_moves_its_mark_and_a_lost_database_replays_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemoryStore::new());
    let faults = Faults::none();
    let db = SqliteReadModel::open(dir.path().join("first.sqlite"))
        .await
        .unwrap();
    let running = runner(&store, &db, &faults).start().await.unwrap();
    let questions: Vec<_> = (0..40)
        .map(|i| {
            (
                format!("auction-{}", i % 5),
                asked(&format!("q{i}"), "seller-1"),
            )
        })
        .collect();
    let head = append(store.as_ref(), &questions).await;
    within("live", running.wait_until_live_at(head))
        .await
        .unwrap();
    let provider = Arc::new(MailProvider::default());
    let dispatcher = OutboxDispatcher::new(
        store.clone(),
        db.clone(),
        Arc::new(Mailer(provider.clone())),
    );
    let report = dispatcher.dispatch_pending().await.unwrap();
    assert_eq!(report.done, 40);
    running.stop().await;
    drop(db);

    // Everything finished: a new database replays all of it and records nothing.
    let db = SqliteReadModel::open(dir.path().join("second.sqlite"))
        .await
        .unwrap();
    let running = runner(&store, &db, &faults).start().await.unwrap();
    within("rebuilt", running.wait_until_live_at(head))
        .await
        .unwrap();
    assert!(outbox(&db).await.is_empty());
    let ledger = store
        .read_stream(
            &eventfold::streams::effects(GROUP),
            eventfold::ReadStream::backward().limit(1),
        )
        .await
        .unwrap();
    assert_eq!(ledger[0].event_type, "EffectsFinishedThrough");
    // The mark is the first database's checkpoint when the last email went out: at
    // least the last question (the ledger's own events follow it in the log).
    let through = ledger[0].data_as::<serde_json::Value>().unwrap()["through"]
        .as_u64()
        .unwrap();
    assert!(through >= head.get(), "{through} < {}", head.get());
    assert_eq!(provider.total_calls.load(Ordering::SeqCst), 40);
}
