//! Personal values declared once per event type in the schema registry (`personal` of
//! a version): an event appended without `$personal` metadata is marked from the
//! declaration and sealed; an upcast to the next version sees the opened value; after
//! the subject is forgotten, the upcast sees (and hands on) the redaction marker.

use std::sync::Arc;

use eventfold_core::{EventData, EventStore, ExpectedVersion, LayerExt, ReadStream};
use eventfold_log::{LogOptions, LogStore};
use eventfold_metadata::MetadataLayer;
use eventfold_privacy::{FileKeyStore, MasterKey, PrivacyLayer};
use eventfold_schema::{SchemaStore, Target, VersionDefinition};
use serde_json::{Value, json};

#[tokio::test]
async fn a_schema_declared_personal_field_is_sealed_and_opened_through_an_upcast() {
    let dir = tempfile::tempdir().expect("dir");
    let (master, _) = MasterKey::generate().expect("master");
    let keys = FileKeyStore::open(&dir.path().join("keys"), master).expect("keys");
    let privacy = PrivacyLayer::new(Arc::new(keys));
    let log = Arc::new(LogStore::open(dir.path(), LogOptions::default()).expect("log"));
    let store = Arc::new(log.clone().layer(privacy.clone()).layer(MetadataLayer));
    let schemas = SchemaStore::open(store.clone()).await.expect("registry");
    let definition =
        |value: Value| -> VersionDefinition { serde_json::from_value(value).expect("definition") };
    schemas
        .register(
            "CustomerRegistered",
            1,
            definition(json!({"personal": {"subject": "/customer", "fields": ["/email"]}})),
        )
        .await
        .expect("v1");
    schemas
        .register(
            "CustomerRegistered",
            2,
            definition(json!({
                "upcast": "{customer, contact: {email: .email}}",
                "personal": {"subject": "/customer", "fields": ["/contact/email"]}
            })),
        )
        .await
        .expect("v2");

    // Given a v1 event appended without any marking of its own.
    let registered = EventData::json(
        "CustomerRegistered",
        &json!({"customer": "customer-7f3a", "email": "ann@example.com"}),
    )
    .expect("event");
    schemas
        .validating()
        .append("customer-7f3a", ExpectedVersion::NoStream, vec![registered])
        .await
        .expect("append");

    // Then it is stored sealed, marked with the subject read from its data.
    let stored = &log
        .read_stream("customer-7f3a", ReadStream::forward())
        .await
        .expect("raw read")[0];
    let stored_data: Value = stored.data_as().expect("json");
    assert!(
        stored_data["email"]["$encrypted"].is_string(),
        "{stored_data}"
    );
    let metadata: Value = serde_json::from_slice(&stored.metadata).expect("metadata");
    assert_eq!(
        metadata["$personal"],
        json!({"subject": "customer-7f3a", "fields": ["/email"]})
    );
    assert!(!String::from_utf8_lossy(&stored.data).contains("ann@example.com"));

    // An upcast to v2 sees the opened value.
    let upcast = |events: Vec<eventfold_core::RecordedEvent>| -> Value {
        assert_eq!(events[0].version, 2);
        events[0].data_as().expect("json")
    };
    let read = schemas
        .read_stream_as("customer-7f3a", ReadStream::forward(), &Target::Newest)
        .await
        .expect("read as v2");
    assert_eq!(
        upcast(read),
        json!({"customer": "customer-7f3a", "contact": {"email": "ann@example.com"}})
    );

    // After a forget, the upcast hands on the redaction marker.
    privacy
        .forget(store.as_ref(), "customer-7f3a")
        .await
        .expect("forget");
    let read = schemas
        .read_stream_as("customer-7f3a", ReadStream::forward(), &Target::Newest)
        .await
        .expect("read as v2");
    assert_eq!(
        upcast(read),
        json!({"customer": "customer-7f3a", "contact": {"email": {"$redacted": true}}})
    );

    // An event whose data lacks the declared subject is refused, naming the pointer.
    let refused = schemas
        .validating()
        .append(
            "customer-x",
            ExpectedVersion::Any,
            vec![
                EventData::json("CustomerRegistered", &json!({"email": "x@example.com"}))
                    .expect("event"),
            ],
        )
        .await;
    assert!(
        matches!(&refused, Err(eventfold_core::Error::InvalidEvent { reason }) if reason.contains("/customer")),
        "{refused:?}"
    );
}
