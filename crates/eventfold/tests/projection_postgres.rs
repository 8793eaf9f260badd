//! The PostgreSQL read model: the same runner, checkpoint, rebuild and outbox, in a
//! schema of its own. Needs `EVENTFOLD_TEST_POSTGRES_URL`; says loudly when it skips.

mod projection_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use eventfold::projection::{
    Context, HandlerError, PostgresReadModel, Projection, ProjectionRunner, ReadModelDb, Tables,
};
use eventfold::{DomainEvent, InMemoryStore, RecordedEvent};
use eventfold_testsupport::postgres::{TestSchema, database_url};
use postgres::Transaction;
use projection_support::*;

const GROUP: &str = "auction";

/// The unread count per seller (version 1) with an email per new question.
struct PgUnread;

impl Projection<PostgresReadModel> for PgUnread {
    fn name(&self) -> &str {
        "unread-count"
    }

    fn tables(&self) -> &[&str] {
        &["unread", "unread_questions"]
    }

    fn setup(&self, tx: &mut Transaction<'_>, tables: &Tables) -> Result<(), HandlerError> {
        tx.batch_execute(&format!(
            "CREATE TABLE {} (seller TEXT PRIMARY KEY, count BIGINT NOT NULL);
             CREATE TABLE {} (question TEXT PRIMARY KEY, seller TEXT NOT NULL);",
            tables.name("unread"),
            tables.name("unread_questions"),
        ))?;
        Ok(())
    }

    fn apply(
        &self,
        tx: &mut Transaction<'_>,
        event: &RecordedEvent,
        ctx: &mut Context<'_>,
    ) -> Result<(), HandlerError> {
        let unread = ctx.table("unread");
        let questions = ctx.table("unread_questions");
        match QuestionEvent::decode(event)? {
            Some(QuestionEvent::QuestionAsked {
                question, seller, ..
            }) => {
                tx.execute(
                    &format!("INSERT INTO {questions} (question, seller) VALUES ($1, $2)"),
                    &[&question, &seller],
                )?;
                tx.execute(
                    &format!(
                        "INSERT INTO {unread} (seller, count) VALUES ($1, 1)
                         ON CONFLICT (seller) DO UPDATE SET count = {unread}.count + 1"
                    ),
                    &[&seller],
                )?;
                ctx.effect(
                    format!("email:{seller}"),
                    serde_json::json!({ "question": question }),
                );
            }
            Some(QuestionEvent::QuestionRead { question, .. }) => {
                tx.execute(
                    &format!(
                        "WITH read AS (DELETE FROM {questions} WHERE question = $1 RETURNING seller)
                         UPDATE {unread} SET count = count - 1 WHERE seller IN (SELECT seller FROM read)"
                    ),
                    &[&question],
                )?;
            }
            _ => {}
        }
        Ok(())
    }
}

async fn read_unread(db: &ReadModelDb<PostgresReadModel>) -> BTreeMap<String, i64> {
    db.call(|m| {
        m.client()
            .query("SELECT seller, count FROM unread", &[])
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    })
    .await
    .unwrap()
}

async fn table_exists(db: &ReadModelDb<PostgresReadModel>, table: &'static str) -> bool {
    db.call(move |m| {
        let schema = m.schema().to_string();
        m.client()
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2",
                &[&schema, &table],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 1
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn postgres_read_model_checkpoints_rebuilds_and_records_effects_once() {
    let Some(url) = database_url() else { return };
    // Dropped at the end, even when the test fails.
    let schema = TestSchema::new(&url, "eventfold_projection");
    let store = Arc::new(InMemoryStore::new());
    let mut events = workload(0, 30);
    let head = append(store.as_ref(), &events).await;

    let runner = |db: &ReadModelDb<PostgresReadModel>| {
        ProjectionRunner::new(store.clone(), db.clone(), GROUP)
            .with_projection(PgUnread)
            .with_batch_events(8)
            .with_retry(quick_retry(100))
    };
    let db = PostgresReadModel::connect(&url, &schema.name)
        .await
        .unwrap();
    let running = runner(&db).start().await.unwrap();
    within("the first build", running.wait_until_live_at(head))
        .await
        .unwrap();
    assert_eq!(read_unread(&db).await, expected_unread(&events, 1));
    assert!(
        db.effects(None, 100).await.unwrap().is_empty(),
        "history is replayed"
    );

    // Live events, then a restart on a new connection: resumes after the checkpoint.
    let more = workload(30, 12);
    let head = append(store.as_ref(), &more).await;
    events.extend(more);
    within("live", running.wait_until_live_at(head))
        .await
        .unwrap();
    let emails = db.effects(None, 100).await.unwrap().len();
    assert_eq!(emails, 4, "one per question asked live");
    drop(running);
    drop(db);
    let more = workload(42, 9);
    let head = append(store.as_ref(), &more).await;
    events.extend(more);
    let db = PostgresReadModel::connect(&url, &schema.name)
        .await
        .unwrap();
    let running = runner(&db).start().await.unwrap();
    within("the restart", running.wait_until_live_at(head))
        .await
        .unwrap();
    assert_eq!(read_unread(&db).await, expected_unread(&events, 1));
    assert_eq!(db.live_checkpoint(GROUP).await.unwrap(), Some(head));
    assert_eq!(db.effects(None, 100).await.unwrap().len(), 7);

    // A rebuild swaps in generation 2 with the same content and records nothing new.
    running.rebuild().await.unwrap();
    let status = within("the rebuild", running.wait_until_live_at(head))
        .await
        .unwrap();
    assert_eq!(status.live.unwrap().generation, 2);
    assert_eq!(read_unread(&db).await, expected_unread(&events, 1));
    assert!(table_exists(&db, "unread_g2").await);
    assert!(!table_exists(&db, "unread_g1").await);
    assert_eq!(db.effects(None, 100).await.unwrap().len(), 7);
    drop(running);
    drop(db);
    drop(schema);
}
