//! The versioning stories, end to end over the embedded engine: registration kept in
//! the store, conversion on read, negotiation, and the compatibility check.

use std::sync::Arc;

use eventfold_core::{EventData, EventStore, ExpectedVersion, ReadStream, RecordedEvent};
use eventfold_log::LogStore;
use eventfold_schema::{
    EventVersion, Negotiated, Registered, Registry, SCHEMAS_STREAM, SchemaError, SchemaStore,
    Target, VersionDefinition,
};
use eventfold_subscription::Subscription;
use serde_json::{Value, json};

fn event(event_type: &str, version: u32, data: Value) -> EventData {
    EventData::json(event_type, &data)
        .unwrap()
        .with_version(version)
}

fn data(event: &RecordedEvent) -> Value {
    serde_json::from_slice(&event.data).unwrap()
}

fn summary(events: &[RecordedEvent]) -> Vec<(String, u32, Value)> {
    events
        .iter()
        .map(|e| (e.event_type.clone(), e.version, data(e)))
        .collect()
}

fn inventory_v2() -> VersionDefinition {
    VersionDefinition {
        schema: Some(json!({
            "type": "object",
            "required": ["itemId"],
            "properties": {"itemId": {"type": "string"}, "reason": {"type": "string"}}
        })),
        upcast: Some(r#"{itemId: .id, reason: "not recorded"}"#.into()),
        downcast: Some("{id: .itemId}".into()),
        ..VersionDefinition::default()
    }
}

async fn open(dir: &std::path::Path) -> Arc<LogStore> {
    Arc::new(LogStore::open(dir, eventfold_log::LogOptions::default()).unwrap())
}

#[tokio::test]
async fn inventory_old_and_new_consumers_read_both_versions_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path()).await;
        let schemas = SchemaStore::open(store.clone()).await.unwrap();
        store
            .append(
                "item-1",
                ExpectedVersion::NoStream,
                vec![event(
                    "InventoryItemDeactivated",
                    1,
                    json!({"id": "item-1"}),
                )],
            )
            .await
            .unwrap();
        let registered = schemas
            .register("InventoryItemDeactivated", 2, inventory_v2())
            .await
            .unwrap();
        assert_eq!(registered, Registered::Created);
        store
            .append(
                "item-2",
                ExpectedVersion::NoStream,
                vec![event(
                    "InventoryItemDeactivated",
                    2,
                    json!({"itemId": "item-2", "reason": "discontinued"}),
                )],
            )
            .await
            .unwrap();
    }

    // Reopen: the registry comes back from `$schemas`.
    let store = open(dir.path()).await;
    let schemas = SchemaStore::open(store.clone()).await.unwrap();
    let mut new_consumer = Vec::new();
    let mut old_consumer = Vec::new();
    for stream in ["item-1", "item-2"] {
        new_consumer.extend(
            schemas
                .read_stream_as(stream, ReadStream::forward(), &Target::Newest)
                .await
                .unwrap(),
        );
        old_consumer.extend(
            schemas
                .read_stream_as(
                    stream,
                    ReadStream::forward(),
                    &Target::version("InventoryItemDeactivated", 1),
                )
                .await
                .unwrap(),
        );
    }
    let t = "InventoryItemDeactivated".to_string();
    assert_eq!(
        summary(&new_consumer),
        vec![
            (
                t.clone(),
                2,
                json!({"itemId": "item-1", "reason": "not recorded"})
            ),
            (
                t.clone(),
                2,
                json!({"itemId": "item-2", "reason": "discontinued"})
            ),
        ]
    );
    assert_eq!(
        summary(&old_consumer),
        vec![
            (t.clone(), 1, json!({"id": "item-1"})),
            (t.clone(), 1, json!({"id": "item-2"})),
        ]
    );
    // The stored events are untouched.
    let stored = store
        .read_stream("item-1", ReadStream::forward())
        .await
        .unwrap();
    assert_eq!(summary(&stored), vec![(t, 1, json!({"id": "item-1"}))]);
}

#[tokio::test]
async fn a_split_into_new_types_and_within_a_type() {
    let mut registry = Registry::new();
    // AddressChanged v1 is split into two new event types.
    registry
        .define(
            "StreetChanged",
            1,
            VersionDefinition {
                previous: Some(EventVersion::new("AddressChanged", 1)),
                upcast: Some(r#"{street: .street}, {"$type": "CityChanged", city: .city}"#.into()),
                ..VersionDefinition::default()
            },
        )
        .unwrap();
    registry
        .define(
            "CityChanged",
            1,
            VersionDefinition::with_schema(json!({"required": ["city"]})),
        )
        .unwrap();
    let out = registry
        .convert_value(
            "AddressChanged",
            1,
            json!({"street": "Main St", "city": "Ghent"}),
            &Target::Newest,
        )
        .unwrap();
    let out: Vec<_> = out
        .into_iter()
        .map(|c| (c.event_type, c.version, c.data))
        .collect();
    assert_eq!(
        out,
        vec![
            ("StreetChanged".into(), 1, json!({"street": "Main St"})),
            ("CityChanged".into(), 1, json!({"city": "Ghent"})),
        ]
    );

    // One ItemsAdded v1 with a list becomes one v2 per item.
    registry
        .define(
            "ItemsAdded",
            2,
            VersionDefinition {
                upcast: Some(".items[] | {item: .}".into()),
                ..VersionDefinition::default()
            },
        )
        .unwrap();
    let stored = RecordedEvent {
        stream: "cart-1".into(),
        revision: eventfold_core::Revision(4),
        position: eventfold_core::Position(9),
        id: uuid::Uuid::now_v7(),
        event_type: "ItemsAdded".into(),
        version: 1,
        data: bytes::Bytes::from_static(br#"{"items":["a","b","c"]}"#),
        metadata: bytes::Bytes::from_static(b"{}"),
        recorded_at: chrono::Utc::now(),
    };
    let split = registry.convert(stored.clone(), &Target::Newest).unwrap();
    assert_eq!(split.len(), 3);
    assert_eq!(data(&split[2]), json!({"item": "c"}));
    assert!(
        split
            .iter()
            .all(|e| e.version == 2 && e.position == stored.position)
    );
    assert_eq!(split[0].id, stored.id);
    assert_ne!(
        split[1].id, split[2].id,
        "each part of a split has its own id"
    );
    let again = registry.convert(stored, &Target::Newest).unwrap();
    assert_eq!(split, again, "a split gives the same ids on every read");
}

#[tokio::test]
async fn a_deprecated_event_is_dropped_and_a_renamed_type_reads_both_ways() {
    let mut registry = Registry::new();
    registry
        .define(
            "Heartbeat",
            2,
            VersionDefinition {
                upcast: Some("empty".into()),
                ..VersionDefinition::default()
            },
        )
        .unwrap();
    let dropped = registry
        .convert_value("Heartbeat", 1, json!({"at": 1}), &Target::Newest)
        .unwrap();
    assert!(dropped.is_empty());

    registry
        .define(
            "ClientRegistered",
            1,
            VersionDefinition {
                previous: Some(EventVersion::new("CustomerRegistered", 2)),
                upcast: Some("{clientId: .customerId, name}".into()),
                downcast: Some("{customerId: .clientId, name}".into()),
                lossless: true,
                ..VersionDefinition::default()
            },
        )
        .unwrap();
    registry
        .define(
            "CustomerRegistered",
            2,
            VersionDefinition {
                upcast: Some("{customerId: .id, name}".into()),
                ..VersionDefinition::default()
            },
        )
        .unwrap();
    assert_eq!(
        registry.newest("CustomerRegistered"),
        Some(EventVersion::new("ClientRegistered", 1))
    );
    let newest = registry
        .convert_value(
            "CustomerRegistered",
            1,
            json!({"id": "c-1", "name": "Ada"}),
            &Target::Newest,
        )
        .unwrap();
    assert_eq!(newest[0].event_type, "ClientRegistered");
    assert_eq!(newest[0].data, json!({"clientId": "c-1", "name": "Ada"}));
    // A consumer written before the rename still reads the new events.
    let old = registry
        .convert_value(
            "ClientRegistered",
            1,
            json!({"clientId": "c-2", "name": "Bob"}),
            &Target::version("CustomerRegistered", 2),
        )
        .unwrap();
    assert_eq!(old[0].event_type, "CustomerRegistered");
    assert_eq!(old[0].data, json!({"customerId": "c-2", "name": "Bob"}));
    // There is no way back to v1: no downcast was declared for v2.
    let err = registry
        .convert_value(
            "ClientRegistered",
            1,
            json!({"clientId": "c-2", "name": "Bob"}),
            &Target::version("CustomerRegistered", 1),
        )
        .unwrap_err();
    assert!(matches!(err, SchemaError::NoConversionPath { .. }), "{err}");
}

#[tokio::test]
async fn a_skip_ahead_converter_is_taken_instead_of_the_chain() {
    let mut registry = Registry::new();
    registry
        .define(
            "Priced",
            2,
            VersionDefinition {
                upcast: Some("{cents: (.euros * 100), via: \"chain\"}".into()),
                ..VersionDefinition::default()
            },
        )
        .unwrap();
    let mut v3 = VersionDefinition {
        upcast: Some("{amount: {cents}, via}".into()),
        ..VersionDefinition::default()
    };
    let from_v2 = registry
        .convert_value("Priced", 1, json!({"euros": 2}), &Target::Newest)
        .unwrap();
    assert_eq!(from_v2[0].data, json!({"cents": 200, "via": "chain"}));
    registry.define("Priced", 3, v3.clone()).unwrap();
    let chain = registry
        .convert_value("Priced", 1, json!({"euros": 2}), &Target::Newest)
        .unwrap();
    assert_eq!(
        chain[0].data,
        json!({"amount": {"cents": 200}, "via": "chain"})
    );
    v3.skip_upcasts
        .insert(1, "{amount: {cents: (.euros * 100)}, via: \"skip\"}".into());
    registry.define("Priced", 3, v3).unwrap();
    let skip = registry
        .convert_value("Priced", 1, json!({"euros": 2}), &Target::Newest)
        .unwrap();
    assert_eq!(
        skip[0].data,
        json!({"amount": {"cents": 200}, "via": "skip"})
    );
    // Events at v2 still go through the one-step upcast.
    let from_v2 = registry
        .convert_value(
            "Priced",
            2,
            json!({"cents": 5, "via": "stored"}),
            &Target::Newest,
        )
        .unwrap();
    assert_eq!(
        from_v2[0].data,
        json!({"amount": {"cents": 5}, "via": "stored"})
    );
}

#[tokio::test]
async fn registration_refuses_what_would_break_stored_events_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let schemas = SchemaStore::open(store.clone()).await.unwrap();
    store
        .append(
            "item-1",
            ExpectedVersion::Any,
            vec![event(
                "InventoryItemDeactivated",
                1,
                json!({"id": "item-1"}),
            )],
        )
        .await
        .unwrap();
    // This stored event has no id, so the upcast cannot fill the required itemId.
    let written = store
        .append(
            "item-7",
            ExpectedVersion::Any,
            vec![event(
                "InventoryItemDeactivated",
                1,
                json!({"sku": "legacy"}),
            )],
        )
        .await
        .unwrap();
    let err = schemas
        .register("InventoryItemDeactivated", 2, inventory_v2())
        .await
        .unwrap_err();
    match &err {
        SchemaError::Incompatible { event, data, .. } => {
            assert!(event.starts_with("0@item-7"), "{event}");
            assert_eq!(data, &json!({"sku": "legacy"}));
        }
        other => panic!("expected an incompatibility, got {other}"),
    }
    assert!(err.to_string().contains("itemId"), "{err}");
    assert_eq!(written.first_revision.get(), 0);
    assert!(
        schemas
            .registry()
            .versions("InventoryItemDeactivated")
            .is_empty()
    );
    assert!(!store.stream_exists(SCHEMAS_STREAM).await.unwrap());

    // A downcast declared lossless that loses the reason is refused as well.
    store
        .append(
            "item-7",
            ExpectedVersion::Any,
            vec![event("Tagged", 1, json!({"tag": "a", "note": "kept?"}))],
        )
        .await
        .unwrap();
    let lossy = VersionDefinition {
        upcast: Some("{label: .tag, note}".into()),
        downcast: Some("{tag: .label}".into()),
        lossless: true,
        ..VersionDefinition::default()
    };
    let err = schemas.register("Tagged", 2, lossy).await.unwrap_err();
    assert!(err.to_string().contains("lossless"), "{err}");
}

#[tokio::test]
async fn malformed_programs_and_schemas_are_refused_with_the_reason() {
    let store = Arc::new(eventfold_core::InMemoryStore::new());
    let schemas = SchemaStore::open(store).await.unwrap();
    let cases = [
        (
            VersionDefinition {
                upcast: Some("{itemId: .id".into()),
                ..VersionDefinition::default()
            },
            "does not parse",
        ),
        (
            VersionDefinition {
                upcast: Some("now".into()),
                ..VersionDefinition::default()
            },
            "deterministic",
        ),
        (
            VersionDefinition {
                schema: Some(json!({"type": "objekt"})),
                upcast: Some(".".into()),
                ..VersionDefinition::default()
            },
            "JSON Schema is not valid",
        ),
        (
            VersionDefinition::default(),
            "needs an upcast from Thing v1",
        ),
    ];
    for (definition, expected) in cases {
        let err = schemas.register("Thing", 2, definition).await.unwrap_err();
        assert_eq!(err.code(), "invalid_schema");
        assert!(err.to_string().contains(expected), "{err}");
    }
}

#[tokio::test]
async fn appends_are_validated_and_registrations_are_idempotent() {
    let store = Arc::new(eventfold_core::InMemoryStore::new());
    let schemas = SchemaStore::open(store.clone()).await.unwrap();
    schemas
        .register("InventoryItemDeactivated", 2, inventory_v2())
        .await
        .unwrap();
    let again = schemas
        .register("InventoryItemDeactivated", 2, inventory_v2())
        .await
        .unwrap();
    assert_eq!(again, Registered::Unchanged);
    let good = event(
        "InventoryItemDeactivated",
        2,
        json!({"itemId": "a", "reason": "x"}),
    );
    schemas.validate(&good).unwrap();
    let bad = event("InventoryItemDeactivated", 2, json!({"itemId": 7}));
    let err = schemas.validate(&bad).unwrap_err();
    assert_eq!(err.code(), "schema_violation");
    assert!(err.to_string().contains("/itemId"), "{err}");
    // Versions without a schema accept anything.
    schemas
        .validate(&event("InventoryItemDeactivated", 1, json!(1)))
        .unwrap();
}

#[tokio::test]
async fn two_nodes_on_one_store_see_each_others_registrations() {
    let store = Arc::new(eventfold_core::InMemoryStore::new());
    let a = SchemaStore::open(store.clone()).await.unwrap();
    let b = SchemaStore::open(store.clone()).await.unwrap();
    a.register(
        "Moved",
        2,
        VersionDefinition {
            upcast: Some("{by: .distance}".into()),
            ..VersionDefinition::default()
        },
    )
    .await
    .unwrap();
    // b's view is stale; its registration is decided on the fresh one.
    b.register(
        "Moved",
        3,
        VersionDefinition {
            upcast: Some("{by: .by, unit: \"m\"}".into()),
            ..VersionDefinition::default()
        },
    )
    .await
    .unwrap();
    a.refresh().await.unwrap();
    for node in [&a, &b] {
        let registry = node.registry();
        let versions: Vec<u32> = registry.versions("Moved").iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, vec![2, 3]);
    }
    let history = store
        .read_stream(SCHEMAS_STREAM, ReadStream::forward())
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
}

#[tokio::test]
async fn a_negotiated_subscription_converts_catch_up_and_live_events() {
    let store = Arc::new(eventfold_core::InMemoryStore::new());
    let schemas = Arc::new(SchemaStore::open(store.clone()).await.unwrap());
    schemas
        .register("InventoryItemDeactivated", 2, inventory_v2())
        .await
        .unwrap();
    store
        .append(
            "item-1",
            ExpectedVersion::Any,
            vec![event("InventoryItemDeactivated", 1, json!({"id": "old"}))],
        )
        .await
        .unwrap();
    let subscription = Subscription::to_stream(store.clone(), "item-1", None);
    let mut newest = Negotiated::new(subscription, schemas.clone(), Target::Newest);
    let caught_up = newest.next().await.unwrap();
    assert_eq!(
        data(&caught_up),
        json!({"itemId": "old", "reason": "not recorded"})
    );
    let live = tokio::spawn(async move { newest.next().await.unwrap() });
    store
        .append(
            "item-1",
            ExpectedVersion::Any,
            vec![event(
                "InventoryItemDeactivated",
                2,
                json!({"itemId": "new", "reason": "recall"}),
            )],
        )
        .await
        .unwrap();
    let live = live.await.unwrap();
    assert_eq!(
        (live.version, data(&live)),
        (2, json!({"itemId": "new", "reason": "recall"}))
    );
}

#[tokio::test]
async fn rust_converters_take_part_in_the_same_graph() {
    let mut base = Registry::new();
    base.upcast_fn(
        EventVersion::new("Measured", 1),
        EventVersion::new("Measured", 2),
        |mut data| {
            let celsius = data["temp"].as_f64().ok_or("temp is not a number")?;
            // A change of unit is a new field, never a reinterpretation of the old one.
            data["fahrenheit"] = json!(celsius * 9.0 / 5.0 + 32.0);
            Ok(vec![data])
        },
    );
    let store = Arc::new(eventfold_core::InMemoryStore::new());
    store
        .append(
            "probe-1",
            ExpectedVersion::Any,
            vec![event("Measured", 1, json!({"temp": 100.0}))],
        )
        .await
        .unwrap();
    let schemas = SchemaStore::open_with(store.clone(), base, Default::default())
        .await
        .unwrap();
    // The version registers without a jq upcast, since a Rust one exists, and is
    // checked by running it on the stored event.
    schemas
        .register(
            "Measured",
            2,
            VersionDefinition::with_schema(json!({"required": ["fahrenheit"]})),
        )
        .await
        .unwrap();
    let events = schemas
        .read_stream_as("probe-1", ReadStream::forward(), &Target::Newest)
        .await
        .unwrap();
    assert_eq!(
        data(&events[0]),
        json!({"temp": 100.0, "fahrenheit": 212.0})
    );
    let failing = schemas
        .registry()
        .convert_value("Measured", 1, json!({"temp": "hot"}), &Target::Newest)
        .unwrap_err();
    assert!(
        failing.to_string().contains("temp is not a number"),
        "{failing}"
    );
}

#[tokio::test]
async fn the_schema_store_validates_embedded_appends_and_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = SchemaStore::open(open(dir.path()).await).await.unwrap();
    let store = schemas.validating();
    // Registered after the layer was made: the layer follows the registry.
    schemas
        .register("InventoryItemDeactivated", 2, inventory_v2())
        .await
        .unwrap();
    let good = event("InventoryItemDeactivated", 2, json!({"itemId": "a"}));
    let bad = event("InventoryItemDeactivated", 2, json!({"itemId": 3}));
    let err = store
        .append("item-1", ExpectedVersion::NoStream, vec![good.clone(), bad])
        .await
        .unwrap_err();
    assert!(
        matches!(err, eventfold_core::Error::InvalidEvent { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("/itemId"), "{err}");
    assert!(
        !store.stream_exists("item-1").await.unwrap(),
        "nothing of a refused append is written"
    );
    let written = store
        .append("item-1", ExpectedVersion::NoStream, vec![good])
        .await
        .unwrap();
    assert_eq!(
        store.stream_revision("item-1").await.unwrap(),
        Some(written.last_revision)
    );
}

#[test]
fn a_chain_of_jq_converters_splits_drops_and_fails_at_the_converter_in_the_middle() {
    // Three jq converters in a row run in one hand-off to a jq thread; what the one in
    // the middle does must come out as if each ran on its own.
    let mut registry = Registry::new();
    let programs = [
        ". + {b: 1}",
        r#"if .fail then error("refused in the middle") elif .split then (., .) elif .drop then empty else . end"#,
        ". + {c: (.b + 1)}",
    ];
    for (i, program) in programs.into_iter().enumerate() {
        registry
            .define(
                "Order",
                i as u32 + 2,
                VersionDefinition {
                    upcast: Some(program.into()),
                    ..VersionDefinition::default()
                },
            )
            .unwrap();
    }
    let convert = |data: Value| registry.convert_value("Order", 1, data, &Target::Newest);
    let converted = |data: Value| -> Vec<(u32, Value)> {
        convert(data)
            .unwrap()
            .into_iter()
            .map(|c| (c.version, c.data))
            .collect()
    };

    assert_eq!(
        converted(json!({"a": 1})),
        vec![(4, json!({"a": 1, "b": 1, "c": 2}))]
    );
    let half = json!({"split": true, "b": 1, "c": 2});
    assert_eq!(
        converted(json!({"split": true})),
        vec![(4, half.clone()), (4, half)]
    );
    assert_eq!(converted(json!({"drop": true})), vec![]);
    match convert(json!({"fail": true})) {
        Err(SchemaError::ConversionFailed {
            from, to, reason, ..
        }) => {
            assert_eq!((from, to), (2, 3));
            assert!(reason.contains("refused in the middle"), "{reason}");
        }
        other => panic!("expected the middle converter to fail: {other:?}"),
    }
}
