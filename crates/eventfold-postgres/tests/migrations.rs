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
        assert_eq!(versions, vec![1, 2], "each migration is applied once");
        for store in &stores {
            assert_eq!(store.head_position().await.expect("head"), None);
        }
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
