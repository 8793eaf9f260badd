//! A correction of a personal value is as personal as the value it replaces: the
//! repository marks it so, the privacy layer seals it, and loads fold the corrected
//! value opened.

use std::sync::Arc;

use eventfold::{
    Aggregate, Decision, DomainEvent, Envelope, EventStore, EventType, InMemoryStore, Personal,
    PersonalData, ReadStream, Repository, Revision,
};
use eventfold_core::{LayerExt, Layered};
use eventfold_metadata::MetadataLayer;
use eventfold_privacy::{MemoryKeyStore, PrivacyLayer};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum ContactEvent {
    EmailSet {
        customer: String,
        email: Personal<String>,
    },
}

impl DomainEvent for ContactEvent {
    const TYPES: &'static [EventType] = &[EventType::new("EmailSet", 1)];

    fn personal(&self) -> Option<PersonalData> {
        let ContactEvent::EmailSet { customer, .. } = self;
        Some(PersonalData::new(customer.clone()).field("/email"))
    }
}

#[derive(Debug, Default)]
struct Contact {
    email: Option<String>,
}

impl Aggregate for Contact {
    const NAME: &'static str = "contact";
    type Command = String;
    type Event = ContactEvent;
    type Rejection = String;

    fn decide(&self, email: &String) -> Result<Decision<ContactEvent>, String> {
        Ok(Decision::event(ContactEvent::EmailSet {
            customer: "ann".into(),
            email: Personal::Known(email.clone()),
        }))
    }

    fn evolve(&mut self, ContactEvent::EmailSet { email, .. }: &ContactEvent) {
        self.email = email.clone().into_known();
    }
}

#[tokio::test]
async fn a_corrected_personal_value_is_sealed_and_folds_opened() {
    let privacy = PrivacyLayer::new(Arc::new(MemoryKeyStore::new()));
    let store: Arc<Layered<MetadataLayer, Layered<PrivacyLayer, InMemoryStore>>> =
        Arc::new(InMemoryStore::new().layer(privacy).layer(MetadataLayer));
    let repository = Repository::<Contact>::new(store.clone());
    repository
        .handle("contact-ann", Envelope::new("ann@exampel.com".to_string()))
        .await
        .unwrap();
    repository
        .correct(
            "contact-ann",
            Revision(0),
            json!({"email": "ann@example.com"}),
            "a typo in the domain",
        )
        .await
        .unwrap();

    let loaded = repository.load("contact-ann").await.unwrap();
    assert_eq!(loaded.state().email.as_deref(), Some("ann@example.com"));
    let raw = store
        .inner()
        .inner()
        .read_stream("contact-ann", ReadStream::forward())
        .await
        .unwrap();
    assert_eq!(raw[1].event_type, "$corrected");
    let stored = String::from_utf8_lossy(&raw[1].data);
    assert!(
        !stored.contains("ann@example.com") && stored.contains("$encrypted"),
        "the corrected email is sealed: {stored}"
    );
}
