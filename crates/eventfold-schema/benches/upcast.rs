//! Decoding an event stored at v1 through a chain of three upcasts (v1 → v2 → v3 →
//! v4) against plain decoding of an event stored at v4, both into the same Rust type.
//! Our target: the chain costs less than twice the plain decoding.
//!
//! `cargo bench -p eventfold-schema --bench upcast`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use eventfold_core::{Position, RecordedEvent, Revision};
use eventfold_schema::{EventVersion, Registry, TypedDecoder, VersionDefinition};
use serde::Deserialize;
use serde_json::{Value, json};

/// The newest shape (v4): about 200 bytes of JSON.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "fields are decoded, not read")]
struct OrderShipped {
    order_id: String,
    carrier: String,
    tracking_number: String,
    weight_grams: u64,
    address: Address,
    shipped_at: String,
    #[serde(default)]
    gift: bool,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "fields are decoded, not read")]
struct Address {
    street: String,
    city: String,
    country: String,
}

fn stored(version: u32, data: Value) -> RecordedEvent {
    RecordedEvent {
        stream: "order-1".into(),
        revision: Revision(0),
        position: Position(0),
        id: uuid::Uuid::now_v7(),
        event_type: "OrderShipped".into(),
        version,
        data: Bytes::from(data.to_string()),
        metadata: Bytes::from_static(b"{}"),
        recorded_at: chrono::Utc::now(),
    }
}

fn v1() -> Value {
    json!({"order": "order-8c1f2a", "carrier": "PostNL", "tracking": "3SABCD0123456789",
           "weight_kg": 1.25, "street": "Kerkstraat 12", "city": "Gent", "country": "BE",
           "shipped_at": "2026-11-23T10:00:00Z"})
}

fn v4() -> Value {
    json!({"orderId": "order-8c1f2a", "carrier": "PostNL", "trackingNumber": "3SABCD0123456789",
           "weightGrams": 1250, "address": {"street": "Kerkstraat 12", "city": "Gent", "country": "BE"},
           "shippedAt": "2026-11-23T10:00:00Z", "gift": false})
}

fn rename(object: &mut serde_json::Map<String, Value>, from: &str, to: &str) {
    if let Some(value) = object.remove(from) {
        object.insert(to.into(), value);
    }
}

/// Three Rust upcasters, each moving fields in place.
fn rust_chain() -> Registry {
    let mut registry = Registry::new();
    let step = |from: u32| {
        (
            EventVersion::new("OrderShipped", from),
            EventVersion::new("OrderShipped", from + 1),
        )
    };
    let (a, b) = step(1);
    registry.upcast_fn(a, b, |mut data| {
        let object = data.as_object_mut().ok_or("not an object")?;
        rename(object, "order", "orderId");
        rename(object, "tracking", "trackingNumber");
        Ok(vec![data])
    });
    let (a, b) = step(2);
    registry.upcast_fn(a, b, |mut data| {
        let object = data.as_object_mut().ok_or("not an object")?;
        let kg = object
            .remove("weight_kg")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        object.insert("weightGrams".into(), json!((kg * 1000.0).round() as u64));
        rename(object, "shipped_at", "shippedAt");
        Ok(vec![data])
    });
    let (a, b) = step(3);
    registry.upcast_fn(a, b, |mut data| {
        let object = data.as_object_mut().ok_or("not an object")?;
        let mut address = serde_json::Map::new();
        for key in ["street", "city", "country"] {
            if let Some(value) = object.remove(key) {
                address.insert(key.into(), value);
            }
        }
        object.insert("address".into(), Value::Object(address));
        Ok(vec![data])
    });
    for version in 2..=4 {
        registry
            .define("OrderShipped", version, VersionDefinition::default())
            .expect("Rust upcasters are registered");
    }
    registry
}

/// The same chain as jq programs, as the server and CLI run it.
fn jq_chain() -> Registry {
    let mut registry = Registry::new();
    let programs = [
        "(. + {orderId: .order, trackingNumber: .tracking}) | del(.order, .tracking)",
        "(. + {weightGrams: ((.weight_kg * 1000) | round), shippedAt: .shipped_at}) | del(.weight_kg, .shipped_at)",
        "(. + {address: {street, city, country}}) | del(.street, .city, .country)",
    ];
    for (i, program) in programs.into_iter().enumerate() {
        registry
            .define(
                "OrderShipped",
                i as u32 + 2,
                VersionDefinition {
                    upcast: Some(program.into()),
                    ..VersionDefinition::default()
                },
            )
            .expect("jq upcasters compile");
    }
    registry
}

#[derive(Deserialize)]
struct V1 {
    order: String,
    carrier: String,
    tracking: String,
    weight_kg: f64,
    street: String,
    city: String,
    country: String,
    shipped_at: String,
}

#[derive(Deserialize)]
struct V2 {
    #[serde(rename = "orderId")]
    order_id: String,
    carrier: String,
    #[serde(rename = "trackingNumber")]
    tracking_number: String,
    weight_kg: f64,
    street: String,
    city: String,
    country: String,
    shipped_at: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V3 {
    order_id: String,
    carrier: String,
    tracking_number: String,
    weight_grams: u64,
    street: String,
    city: String,
    country: String,
    shipped_at: String,
}

/// The same chain as Rust types, one per version.
fn typed_chain() -> TypedDecoder<OrderShipped, V1> {
    TypedDecoder::<OrderShipped>::newest("OrderShipped", 4)
        .before(|v3: V3| OrderShipped {
            order_id: v3.order_id,
            carrier: v3.carrier,
            tracking_number: v3.tracking_number,
            weight_grams: v3.weight_grams,
            address: Address {
                street: v3.street,
                city: v3.city,
                country: v3.country,
            },
            shipped_at: v3.shipped_at,
            gift: false,
        })
        .before(|v2: V2| V3 {
            order_id: v2.order_id,
            carrier: v2.carrier,
            tracking_number: v2.tracking_number,
            weight_grams: (v2.weight_kg * 1000.0).round() as u64,
            street: v2.street,
            city: v2.city,
            country: v2.country,
            shipped_at: v2.shipped_at,
        })
        .before(|v1: V1| V2 {
            order_id: v1.order,
            carrier: v1.carrier,
            tracking_number: v1.tracking,
            weight_kg: v1.weight_kg,
            street: v1.street,
            city: v1.city,
            country: v1.country,
            shipped_at: v1.shipped_at,
        })
}

fn decoding(c: &mut Criterion) {
    let plain = stored(4, v4());
    let old = stored(1, v1());
    let rust = rust_chain();
    let jq = jq_chain();
    let typed = typed_chain();
    // Both chains give the v4 shape.
    let via_rust: Vec<OrderShipped> = rust.decode(&old).expect("rust chain decodes");
    let via_jq: Vec<OrderShipped> = jq.decode(&old).expect("jq chain decodes");
    assert_eq!(format!("{via_rust:?}"), format!("{via_jq:?}"));
    let via_typed = typed.decode(&old).expect("typed chain decodes");
    assert_eq!(format!("{via_rust:?}"), format!("{via_typed:?}"));

    let mut group = c.benchmark_group("decode");
    group.bench_function("plain v4", |b| {
        b.iter(|| serde_json::from_slice::<OrderShipped>(black_box(&plain.data)).unwrap())
    });
    group.bench_function("plain v4 into a JSON tree", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&plain.data)).unwrap())
    });
    group.bench_function("registry, stored at newest", |b| {
        b.iter(|| rust.decode::<OrderShipped>(black_box(&plain)).unwrap())
    });
    group.bench_function("typed chain v1 to v4", |b| {
        b.iter(|| typed.decode(black_box(&old)).unwrap())
    });
    group.bench_function("rust chain v1 to v4", |b| {
        b.iter(|| rust.decode::<OrderShipped>(black_box(&old)).unwrap())
    });
    group.bench_function("jq chain v1 to v4", |b| {
        b.iter(|| jq.decode::<OrderShipped>(black_box(&old)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, decoding);
criterion_main!(benches);
