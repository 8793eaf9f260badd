//! Property: for converters declared lossless, downcast(upcast(e)) == e, for jq and
//! Rust converters alike, over arbitrary event data.

use eventfold_schema::{EventVersion, Registry, Target, VersionDefinition};
use proptest::prelude::*;
use serde_json::{Value, json};

fn registry() -> Registry {
    let mut registry = Registry::new();
    // jq: v1 {id, qty, note?} <-> v2 {itemId, quantity: {value}, note?}
    registry
        .define(
            "StockCounted",
            2,
            VersionDefinition {
                upcast: Some(
                    "{itemId: .id, quantity: {value: .qty}} + (if has(\"note\") then {note} else {} end)"
                        .into(),
                ),
                downcast: Some(
                    "{id: .itemId, qty: .quantity.value} + (if has(\"note\") then {note} else {} end)"
                        .into(),
                ),
                lossless: true,
                ..VersionDefinition::default()
            },
        )
        .unwrap();
    // Rust: v2 <-> v3, the quantity flattened back out and renamed.
    registry.upcast_fn(
        EventVersion::new("StockCounted", 2),
        EventVersion::new("StockCounted", 3),
        |mut data| {
            let quantity = data["quantity"]["value"].take();
            let object = data.as_object_mut().ok_or("v2 data is an object")?;
            object.remove("quantity");
            object.insert("count".into(), quantity);
            Ok(vec![data])
        },
    );
    registry.downcast_fn(
        EventVersion::new("StockCounted", 3),
        EventVersion::new("StockCounted", 2),
        |mut data| {
            let object = data.as_object_mut().ok_or("v3 data is an object")?;
            let count = object.remove("count").unwrap_or(Value::Null);
            object.insert("quantity".into(), json!({"value": count}));
            Ok(vec![data])
        },
    );
    registry
        .define(
            "StockCounted",
            3,
            VersionDefinition {
                lossless: true,
                ..Default::default()
            },
        )
        .unwrap();
    registry
}

fn v1_event() -> impl Strategy<Value = Value> {
    (
        "[a-zA-Z0-9 é\\-\"\\\\]{0,16}",
        any::<i64>(),
        proptest::option::of("[ -~]{0,24}"),
    )
        .prop_map(|(id, qty, note)| {
            let mut v = json!({"id": id, "qty": qty});
            if let Some(note) = note {
                v["note"] = json!(note);
            }
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn upcast_then_downcast_gives_the_original_back(original in v1_event()) {
        let registry = registry();
        let newest = registry
            .convert_value("StockCounted", 1, original.clone(), &Target::Newest)
            .unwrap();
        prop_assert_eq!(newest.len(), 1);
        prop_assert_eq!(newest[0].version, 3);
        let back = registry
            .convert_value("StockCounted", 3, newest[0].data.clone(), &Target::version("StockCounted", 1))
            .unwrap();
        prop_assert_eq!(back.len(), 1);
        prop_assert_eq!(&back[0].data, &original);
    }
}
