//! Personal data on PostgreSQL: values sealed before they reach `events` (no row holds
//! their plaintext), keys in `subject_keys`, a forget seen at once by a second node and
//! after reconnecting, other subjects unaffected, and a node with another master key
//! refused. Needs `EVENTFOLD_TEST_POSTGRES_URL`.

mod common;

use std::sync::Arc;

use eventfold_core::{
    Error, EventData, EventStore, ExpectedVersion, LayerExt, Layered, ReadStream,
};
use eventfold_postgres::{PostgresKeyStore, PostgresStore};
use eventfold_privacy::{MasterKey, PrivacyLayer};
use serde_json::{Value, json};

use common::{TestSchema, database_url, runtime};

type Node = Layered<PrivacyLayer, Arc<PostgresStore>>;

async fn node(schema: &TestSchema, master: &MasterKey) -> Node {
    let store = schema.store().await;
    let keys = PostgresKeyStore::open(&store, master.clone())
        .await
        .expect("key store");
    Arc::new(store).layer(PrivacyLayer::new(Arc::new(keys)))
}

fn sign_up(subject: &str, email: &str) -> EventData {
    EventData::json("SignedUp", &json!({"email": email, "plan": "pro"}))
        .expect("event")
        .with_metadata(&json!({"$personal": {"subject": subject, "fields": ["/email"]}}))
        .expect("metadata")
}

async fn email(store: &impl EventStore, stream: &str) -> Value {
    store
        .read_stream(stream, ReadStream::forward())
        .await
        .expect("read")[0]
        .data_as::<Value>()
        .expect("json")["email"]
        .clone()
}

/// Rows of the schema's tables whose bytes hold `needle`.
async fn rows_holding(schema: &TestSchema, needle: &str) -> i64 {
    let client = schema.client().await;
    let mut found = 0;
    for (table, column) in [
        ("events", "data"),
        ("events", "metadata"),
        ("subject_keys", "wrapped"),
    ] {
        let count: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM \"{}\".{table} \
                     WHERE position(convert_to($1, 'UTF8') in coalesce({column}, ''::bytea)) > 0",
                    schema.name
                ),
                &[&needle],
            )
            .await
            .expect("search")
            .get(0);
        found += count;
    }
    found
}

#[test]
fn personal_values_are_sealed_in_postgresql_and_a_forget_is_seen_by_every_node() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let (master, _) = MasterKey::generate().expect("master");
        let one = node(&schema, &master).await;
        let two = node(&schema, &master).await;
        one.append(
            "user-ann",
            ExpectedVersion::NoStream,
            vec![sign_up("ann", "ann@example.com")],
        )
        .await
        .expect("append ann");
        two.append(
            "user-bob",
            ExpectedVersion::NoStream,
            vec![sign_up("bob", "bob@example.com")],
        )
        .await
        .expect("append bob");
        assert_eq!(rows_holding(&schema, "ann@example.com").await, 0);
        assert_eq!(rows_holding(&schema, "bob@example.com").await, 0);
        assert_eq!(
            rows_holding(&schema, "\"plan\":\"pro\"").await,
            2,
            "the search sees rows"
        );
        assert_eq!(email(&two, "user-ann").await, "ann@example.com");

        Layered::layer(&one)
            .forget(&one, "ann")
            .await
            .expect("forget");
        let redacted = json!({"$redacted": true});
        assert_eq!(email(&one, "user-ann").await, redacted);
        assert_eq!(
            email(&two, "user-ann").await,
            redacted,
            "no node keeps the key"
        );
        assert_eq!(email(&two, "user-bob").await, "bob@example.com");
        let refused = two
            .append(
                "user-ann",
                ExpectedVersion::Any,
                vec![sign_up("ann", "ann@example.org")],
            )
            .await;
        assert!(
            matches!(refused, Err(Error::InvalidEvent { .. })),
            "{refused:?}"
        );
        let notes = one
            .read_stream("$subjects", ReadStream::forward())
            .await
            .expect("$subjects");
        assert_eq!(
            notes[0].data_as::<Value>().expect("json"),
            json!({"subject": "ann"})
        );
        drop((one, two));

        // After reconnecting: still redacted; Bob still readable.
        let again = node(&schema, &master).await;
        assert_eq!(email(&again, "user-ann").await, redacted);
        assert_eq!(email(&again, "user-bob").await, "bob@example.com");
        assert_eq!(rows_holding(&schema, "ann@example.com").await, 0);

        // A node given another master key is refused when its key store opens.
        let (other, _) = MasterKey::generate().expect("master");
        let store = schema.store().await;
        let wrong = PostgresKeyStore::open(&store, other)
            .await
            .expect_err("wrong key");
        assert!(
            matches!(&wrong, Error::InvalidSetting { setting, reason }
                if setting == "master_key" && reason.contains("another master key")),
            "{wrong:?}"
        );
    });
}
