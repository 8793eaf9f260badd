//! Migrations on start: nodes starting together on a fresh schema migrate it once,
//! and a schema migrated by a newer build is refused. Needs
//! `EVENTFOLD_TEST_POSTGRES_URL`.

mod common;

use eventfold_core::{Error, EventStore};
use eventfold_postgres::PostgresStore;

use common::{TestSchema, database_url, runtime, within};

#[test]
fn nodes_starting_together_migrate_the_schema_once() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                let options = schema.options();
                tokio::spawn(async move { PostgresStore::connect(&url, options).await })
            })
            .collect();
        let mut stores = Vec::new();
        for start in starts {
            stores.push(
                within("a node to start", start)
                    .await
                    .expect("start task")
                    .expect("every node starts"),
            );
        }
        let client = schema.client().await;
        let versions: Vec<i32> = client
            .query(
                &format!(
                    "SELECT version FROM \"{}\".schema_migrations ORDER BY version",
                    schema.name
                ),
                &[],
            )
            .await
            .expect("read the migrations")
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(versions, vec![1, 2, 3], "each migration is applied once");
        for store in &stores {
            assert_eq!(store.head_position().await.expect("head"), None);
        }
    });
}

/// A store written at schema version 2 (before read-only stores) is migrated on the
/// next start: its events stay, and it takes appends, and flips, again.
#[test]
fn a_version_2_schema_is_migrated_to_read_only_stores() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        use eventfold_core::{EventData, ExpectedVersion};
        let schema = TestSchema::new(&url);
        let store = schema.store().await;
        let placed = EventData::json("Placed", &serde_json::json!({})).expect("event");
        store
            .append("order-1", ExpectedVersion::NoStream, vec![placed.clone()])
            .await
            .expect("append");
        drop(store);
        let client = schema.client().await;
        client
            .batch_execute(&format!(
                "ALTER TABLE \"{s}\".head DROP COLUMN read_only;
                 DELETE FROM \"{s}\".schema_migrations WHERE version = 3;",
                s = schema.name
            ))
            .await
            .expect("take the schema back to version 2");
        let store = schema.store().await;
        store
            .append(
                "order-1",
                ExpectedVersion::Exact(eventfold_core::Revision(0)),
                vec![placed],
            )
            .await
            .expect("an append after the migration");
        let read_only: Option<String> = client
            .query_one(
                &format!("SELECT read_only FROM \"{}\".head", schema.name),
                &[],
            )
            .await
            .expect("the new column")
            .get(0);
        assert_eq!(read_only, None, "a migrated store is writable");
    });
}

#[test]
fn a_schema_written_by_a_newer_build_is_refused() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        drop(schema.store().await);
        let client = schema.client().await;
        client
            .execute(
                &format!(
                    "INSERT INTO \"{}\".schema_migrations (version, description) VALUES (99, 'from the future')",
                    schema.name
                ),
                &[],
            )
            .await
            .expect("pretend a newer build migrated");
        match PostgresStore::connect(&url, schema.options()).await {
            Err(Error::Backend(message)) => {
                assert!(message.contains("newer eventfold"), "{message}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    });
}
