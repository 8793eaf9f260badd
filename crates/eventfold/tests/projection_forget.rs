//! Personal data through the framework: an aggregate's event marks its personal value
//! (`DomainEvent::personal`), the store's privacy layer seals it, and after `forget`
//! the projection runner calls `Projection::forget` so the read model drops its copy;
//! a rebuild after the forget decodes the redacted value and does not bring it back.

mod projection_support;

use std::sync::Arc;

use eventfold::projection::{
    Context, HandlerError, MemoryReadModel, MemoryTx, Projection, ProjectionRunner,
};
use eventfold::{
    Aggregate, Decision, DomainEvent, Envelope, EventStore, EventType, InMemoryStore, Personal,
    PersonalData, ReadStream, RecordedEvent, Repository,
};
use eventfold_core::{LayerExt, Layered};
use eventfold_privacy::{MemoryKeyStore, PrivacyLayer};
use projection_support::within;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum CustomerEvent {
    SignedUp {
        customer: String,
        email: Personal<String>,
        plan: String,
    },
}

impl DomainEvent for CustomerEvent {
    const TYPES: &'static [EventType] = &[EventType::new("SignedUp", 1)];

    fn personal(&self) -> Option<PersonalData> {
        match self {
            CustomerEvent::SignedUp { customer, .. } => {
                Some(PersonalData::new(customer.clone()).field("/email"))
            }
        }
    }
}

#[derive(Default)]
struct Customer;

impl Aggregate for Customer {
    const NAME: &'static str = "customer";
    type Command = (String, String);
    type Event = CustomerEvent;
    type Rejection = String;

    fn decide(
        &self,
        (customer, email): &(String, String),
    ) -> Result<Decision<CustomerEvent>, String> {
        Ok(Decision::event(CustomerEvent::SignedUp {
            customer: customer.clone(),
            email: Personal::Known(email.clone()),
            plan: "pro".into(),
        }))
    }

    fn evolve(&mut self, _: &CustomerEvent) {}
}

/// The email of each customer, kept so a support agent can write to them.
struct Contacts;

impl Projection<MemoryReadModel> for Contacts {
    fn name(&self) -> &str {
        "contacts"
    }

    fn tables(&self) -> &[&str] {
        &["contacts"]
    }

    fn apply(
        &self,
        tx: &mut MemoryTx<'_>,
        event: &RecordedEvent,
        ctx: &mut Context<'_>,
    ) -> Result<(), HandlerError> {
        if let Some(CustomerEvent::SignedUp {
            customer, email, ..
        }) = CustomerEvent::decode(event)?
        {
            // A forgotten customer's email is decoded as redacted: no copy is kept.
            let email = email
                .into_known()
                .map_or(serde_json::Value::Null, Into::into);
            tx.table(&ctx.table("contacts")).insert(customer, email);
        }
        Ok(())
    }

    fn forget(
        &self,
        tx: &mut MemoryTx<'_>,
        subject: &str,
        ctx: &mut Context<'_>,
    ) -> Result<(), HandlerError> {
        if let Some(email) = tx.table(&ctx.table("contacts")).get_mut(subject) {
            *email = serde_json::Value::Null;
        }
        Ok(())
    }
}

type Store = Layered<PrivacyLayer, InMemoryStore>;

async fn contacts(db: &eventfold::projection::ReadModelDb<MemoryReadModel>) -> serde_json::Value {
    let table = db
        .call(|m| m.live_table("support", "contacts").unwrap())
        .await
        .unwrap();
    serde_json::to_value(table).unwrap()
}

#[tokio::test]
async fn a_forgotten_customers_email_leaves_the_read_model_and_a_rebuild_keeps_it_out() {
    let privacy = PrivacyLayer::new(Arc::new(MemoryKeyStore::new()));
    let store: Arc<Store> = Arc::new(InMemoryStore::new().layer(privacy.clone()));
    let repository = Repository::<Customer>::new(store.clone());
    for (customer, email) in [("ann", "ann@example.com"), ("bob", "bob@example.com")] {
        repository
            .handle(
                &format!("customer-{customer}"),
                Envelope::new((customer.to_string(), email.to_string())),
            )
            .await
            .unwrap();
    }

    // Stored sealed, with the command's metadata beside the marking.
    let stored = store
        .inner()
        .read_stream("customer-ann", ReadStream::forward())
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&stored[0].data).contains("ann@example.com"));
    let metadata: serde_json::Value = serde_json::from_slice(&stored[0].metadata).unwrap();
    assert_eq!(metadata["$personal"]["subject"], "ann");
    assert!(metadata["correlation_id"].is_string(), "{metadata}");

    let db = MemoryReadModel::open().await.unwrap();
    let running = ProjectionRunner::new(store.clone(), db.clone(), "support")
        .with_projection(Contacts)
        .start()
        .await
        .unwrap();
    let head = store.head_position().await.unwrap().unwrap();
    within("catch up", running.wait_until_live_at(head))
        .await
        .unwrap();
    assert_eq!(
        contacts(&db).await,
        serde_json::json!({"ann": "ann@example.com", "bob": "bob@example.com"})
    );

    let forgotten = privacy.forget(store.as_ref(), "ann").await.unwrap();
    within("the forget", running.wait_until_live_at(forgotten.position))
        .await
        .unwrap();
    let after = serde_json::json!({"ann": null, "bob": "bob@example.com"});
    assert_eq!(contacts(&db).await, after);

    // A rebuild from position 0 reads ann's email redacted: it stays out.
    running.rebuild().await.unwrap();
    let status = within(
        "the rebuild",
        running.wait_until_live_at(forgotten.position),
    )
    .await
    .unwrap();
    assert_eq!(status.live.unwrap().generation, 2);
    assert_eq!(contacts(&db).await, after);

    // The aggregate still loads ann's stream (the redacted value decodes).
    let loaded = repository.load("customer-ann").await.unwrap();
    assert_eq!(loaded.revision().map(|r| r.0), Some(0));
}
