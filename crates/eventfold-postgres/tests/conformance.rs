//! The `EventStore` contract on PostgreSQL: every conformance case in a fresh schema,
//! and the model check with a reopen (a new `PostgresStore` on the same schema) as
//! recovery. Needs `EVENTFOLD_TEST_POSTGRES_URL`; without it every test says loudly
//! that it skipped.

mod common;

use eventfold_conformance::model::{Backend, run_model_test};
use eventfold_postgres::PostgresStore;

use common::{TestSchema, database_url};

eventfold_conformance::conformance_tests!(async || common::conformance_fixture().await);

/// A store on its own schema; a reopen connects a new store to the same schema.
struct PostgresBackend {
    store: Option<PostgresStore>,
    // Dropped after the store.
    schema: TestSchema,
}

impl Backend for PostgresBackend {
    type Store = PostgresStore;

    fn store(&self) -> &PostgresStore {
        self.store.as_ref().expect("an open store")
    }

    async fn reopen(&mut self) {
        drop(self.store.take());
        self.store = Some(self.schema.store().await);
    }
}

#[test]
fn postgres_agrees_with_the_model_across_reopens() {
    let Some(url) = database_url() else { return };
    run_model_test(async || {
        let schema = TestSchema::new(&url);
        PostgresBackend {
            store: Some(schema.store().await),
            schema,
        }
    });
}
