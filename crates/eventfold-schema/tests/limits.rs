//! Registrations that must be refused, and jq converters that must be stopped: at
//! registration (naming the stored event), at read, and by an interrupt, without
//! holding up other registrations.

use std::sync::Arc;

use eventfold_core::{EventData, EventStore, ExpectedVersion, InMemoryStore, ReadStream};
use eventfold_schema::{
    CheckOptions, JqLimit, JqLimits, Registered, Registry, SchemaError, SchemaStore, Target,
    VersionDefinition,
};
use serde_json::json;

fn upcast(program: &str) -> VersionDefinition {
    VersionDefinition {
        upcast: Some(program.into()),
        ..VersionDefinition::default()
    }
}

async fn store_with(events: &[(&str, serde_json::Value)]) -> Arc<InMemoryStore> {
    let store = Arc::new(InMemoryStore::new());
    for (event_type, data) in events {
        let event = EventData::json(*event_type, data).unwrap();
        store
            .append("thing-1", ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
    }
    store
}

async fn schemas_with(store: Arc<InMemoryStore>, limits: JqLimits) -> SchemaStore<InMemoryStore> {
    let base = Registry::new().with_jq_limits(limits);
    SchemaStore::open_with(store, base, CheckOptions::default())
        .await
        .unwrap()
}

fn steps(steps_max: u64) -> JqLimits {
    JqLimits {
        steps_max,
        ..JqLimits::default()
    }
}

#[tokio::test]
async fn a_converter_exceeding_a_limit_is_refused_naming_the_stored_event() {
    let store = store_with(&[("Thing", json!({"n": 1})), ("Thing", json!({"n": 100}))]).await;
    let schemas = schemas_with(store, steps(20_000)).await;
    // Fine on the first event, too long on the second.
    let err = schemas
        .register("Thing", 2, upcast("{n, all: [range(.n * 1000)] | length}"))
        .await
        .unwrap_err();
    match &err {
        SchemaError::ConverterLimit {
            event_type,
            from: 1,
            to: 2,
            limit: JqLimit::Steps(20_000),
            event: Some(event),
        } if event_type == "Thing" => assert!(event.starts_with("1@thing-1 ("), "{err}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(err.code(), "converter_limit");
    assert!(schemas.registry().versions("Thing").is_empty());
}

#[tokio::test]
async fn a_read_whose_converter_exceeds_a_limit_names_the_event() {
    let store = store_with(&[]).await;
    let schemas = schemas_with(store.clone(), steps(5_000)).await;
    schemas
        .register("Thing", 2, upcast("{n: ([range(.n)] | length)}"))
        .await
        .unwrap();
    store
        .append(
            "thing-2",
            ExpectedVersion::Any,
            vec![EventData::json("Thing", &json!({"n": 1_000_000})).unwrap()],
        )
        .await
        .unwrap();
    let err = schemas
        .read_stream_as("thing-2", ReadStream::forward(), &Target::Newest)
        .await
        .unwrap_err();
    match &err {
        SchemaError::ConverterLimit {
            limit: JqLimit::Steps(5_000),
            event: Some(event),
            ..
        } => assert!(event.starts_with("0@thing-2 ("), "{err}"),
        other => panic!("{other:?}"),
    }
    // As stored, the event reads.
    let stored = schemas
        .read_stream_as("thing-2", ReadStream::forward(), &Target::Stored)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
}

#[tokio::test]
async fn a_check_that_runs_on_does_not_hold_up_other_registrations_and_an_interrupt_ends_it() {
    let store = store_with(&[("Slow", json!({}))]).await;
    // Neither steps nor time would end this check within the test.
    let unbounded = JqLimits {
        steps_max: u64::MAX,
        run_millis_max: 600_000,
        ..JqLimits::default()
    };
    let schemas = Arc::new(schemas_with(store, unbounded).await);
    let slow = tokio::spawn({
        let schemas = schemas.clone();
        async move { schemas.register("Slow", 2, upcast("def f: f; f")).await }
    });
    // On this single-threaded runtime, one yield runs the first registration up to its
    // check, which waits on a jq thread from then on.
    tokio::task::yield_now().await;
    // Another registration goes through while the first one's converter runs (before,
    // the first one held a lock for as long as its check ran).
    let other = schemas.register("Quick", 1, VersionDefinition::default());
    let other = tokio::time::timeout(std::time::Duration::from_secs(60), other)
        .await
        .expect("a registration waited for another one's converter");
    assert_eq!(other.unwrap(), Registered::Created);
    assert!(!slow.is_finished());

    schemas.interrupt_conversions();
    let err = slow.await.unwrap().unwrap_err();
    assert!(matches!(err, SchemaError::Interrupted), "{err:?}");
    assert_eq!(err.code(), "shutting_down");
}

#[tokio::test]
async fn a_version_must_follow_the_newest_registered() {
    let schemas = schemas_with(store_with(&[]).await, JqLimits::default()).await;
    for version in [3, 4_294_967_295] {
        let err = schemas
            .register("Stepped", version, upcast("."))
            .await
            .unwrap_err();
        assert!(
            matches!(err, SchemaError::InvalidDefinition { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("gap"), "{err}");
    }
    // Version 1 need not be registered: events are version 1 unless they say otherwise.
    schemas.register("Stepped", 2, upcast(".")).await.unwrap();
    let err = schemas
        .register("Stepped", 4, upcast("."))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the next one is 3"), "{err}");
    schemas.register("Stepped", 3, upcast(".")).await.unwrap();
    // Registering an existing version again replaces it.
    let replaced = schemas.register("Stepped", 2, upcast("{}")).await.unwrap();
    assert_eq!(replaced, Registered::Replaced);
}

#[tokio::test]
async fn a_type_name_has_the_limit_and_the_error_of_an_event_type() {
    let schemas = schemas_with(store_with(&[]).await, JqLimits::default()).await;
    let long = "T".repeat(10 * 1024);
    let err = schemas
        .register(&long, 1, VersionDefinition::default())
        .await
        .unwrap_err();
    let append = EventData::json(long.as_str(), &json!({}))
        .and_then(|event| event.validate())
        .unwrap_err();
    assert_eq!(err.to_string(), append.to_string());
    assert_eq!(err.code(), "invalid_event");
    assert!(err.to_string().contains("longer than 256 bytes"), "{err}");
    let longest = "T".repeat(256);
    schemas
        .register(&longest, 1, VersionDefinition::default())
        .await
        .unwrap();
}

#[test]
fn only_an_object_is_a_definition() {
    for text in ["[]", "[null, \"{}\"]", "null", "\"x\"", "3"] {
        let err = serde_json::from_str::<VersionDefinition>(text).unwrap_err();
        assert!(err.to_string().contains("expected a map"), "{text}: {err}");
    }
    let err = serde_json::from_str::<VersionDefinition>(r#"{"upcats": "."}"#).unwrap_err();
    assert!(err.to_string().contains("upcats"), "{err}");
    let empty: VersionDefinition = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, VersionDefinition::default());
}
