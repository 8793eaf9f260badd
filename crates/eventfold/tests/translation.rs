//! Translations: internal events published as a contract of their own, resumed after a
//! restart, never twice (also with two translations racing), a consumed contract
//! translated back into internal events, and a stream that holds something else refused.

use std::sync::Arc;

use eventfold::translation::{SOURCE_POSITION_KEY, Translation, Translator};
use eventfold::{
    DomainEvent, EventStore, EventType, ExpectedVersion, InMemoryStore, ReadStream, RecordedEvent,
};
use serde::{Deserialize, Serialize};

/// What the ordering service keeps for itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum Internal {
    OrderPlaced {
        order: String,
        total_cents: u64,
        fraud_score: u32,
    },
    NoteAdded {
        order: String,
        note: String,
    },
}

impl DomainEvent for Internal {
    const TYPES: &'static [EventType] = &[
        EventType::new("OrderPlaced", 3),
        EventType::new("NoteAdded", 1),
    ];
}

/// What it promises other services: version 1 of its contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum Published {
    OrderAccepted { order: String, total: String },
}

impl DomainEvent for Published {
    const TYPES: &'static [EventType] = &[EventType::new("OrderAccepted", 1)];
}

/// Internal to published: the fraud score and the notes stay inside.
struct Publish;

impl Translator for Publish {
    type From = Internal;
    type To = Published;

    fn translate(&self, event: &Internal, _: &RecordedEvent) -> Vec<Published> {
        match event {
            Internal::OrderPlaced {
                order, total_cents, ..
            } => vec![Published::OrderAccepted {
                order: order.clone(),
                total: format!("{}.{:02}", total_cents / 100, total_cents % 100),
            }],
            Internal::NoteAdded { .. } => Vec::new(),
        }
    }
}

/// What the shipping service keeps for itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum Shipping {
    ShipmentExpected { order: String },
}

impl DomainEvent for Shipping {
    const TYPES: &'static [EventType] = &[EventType::new("ShipmentExpected", 1)];
}

/// The consumed contract back into the shipping service's own events.
struct Consume;

impl Translator for Consume {
    type From = Published;
    type To = Shipping;

    fn translate(&self, event: &Published, _: &RecordedEvent) -> Vec<Shipping> {
        let Published::OrderAccepted { order, .. } = event;
        vec![Shipping::ShipmentExpected {
            order: order.clone(),
        }]
    }
}

fn placed(order: &str, total_cents: u64) -> Internal {
    Internal::OrderPlaced {
        order: order.into(),
        total_cents,
        fraud_score: 7,
    }
}

async fn record(store: &InMemoryStore, events: &[Internal]) {
    for event in events {
        let stream = match event {
            Internal::OrderPlaced { order, .. } | Internal::NoteAdded { order, .. } => {
                format!("order-{order}")
            }
        };
        store
            .append(&stream, ExpectedVersion::Any, vec![event.encode().unwrap()])
            .await
            .unwrap();
    }
}

async fn read(store: &dyn EventStore, stream: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, ReadStream::forward())
        .await
        .unwrap_or_default()
}

fn accepted(order: &str, total: &str) -> Published {
    Published::OrderAccepted {
        order: order.into(),
        total: total.into(),
    }
}

#[tokio::test]
async fn internal_events_are_published_translated_once_each_and_say_where_they_came_from() {
    let store = Arc::new(InMemoryStore::new());
    record(
        &store,
        &[
            placed("1", 1250),
            Internal::NoteAdded {
                order: "1".into(),
                note: "call first".into(),
            },
            placed("2", 99),
        ],
    )
    .await;
    let translation = Translation::new(store.clone(), "contract-orders.v1", Publish);
    assert_eq!(translation.catch_up().await.unwrap(), 2);
    assert_eq!(translation.catch_up().await.unwrap(), 0, "nothing new");

    let published = read(store.as_ref(), "contract-orders.v1").await;
    let events: Vec<Published> = published
        .iter()
        .map(|e| Published::decode(e).unwrap().unwrap())
        .collect();
    assert_eq!(events, [accepted("1", "12.50"), accepted("2", "0.99")]);
    let sources = read(store.as_ref(), "order-1").await;
    let first = &published[0];
    assert_eq!(first.causation_id(), Some(sources[0].id));
    assert_eq!(first.correlation_id(), Some(sources[0].id));
    let metadata: serde_json::Value = serde_json::from_slice(&first.metadata).unwrap();
    assert_eq!(metadata[SOURCE_POSITION_KEY], sources[0].position.get());
    assert!(
        !String::from_utf8_lossy(&first.data).contains("fraud"),
        "internal fields stay inside"
    );

    // A restarted translation resumes after the last source it translated.
    record(&store, &[placed("3", 100)]).await;
    let restarted = Translation::new(store.clone(), "contract-orders.v1", Publish);
    assert_eq!(restarted.catch_up().await.unwrap(), 1);
    assert_eq!(read(store.as_ref(), "contract-orders.v1").await.len(), 3);
}

#[tokio::test]
async fn two_translations_racing_write_each_event_once() {
    let store = Arc::new(InMemoryStore::new());
    let orders: Vec<Internal> = (0..200).map(|n| placed(&n.to_string(), n)).collect();
    record(&store, &orders).await;
    let one = Arc::new(Translation::new(
        store.clone(),
        "contract-orders.v1",
        Publish,
    ));
    let two = Arc::new(Translation::new(
        store.clone(),
        "contract-orders.v1",
        Publish,
    ));
    let (a, b) = tokio::join!(
        tokio::spawn({
            let one = one.clone();
            async move { one.catch_up().await }
        }),
        tokio::spawn({
            let two = two.clone();
            async move { two.catch_up().await }
        })
    );
    let appended = a.unwrap().unwrap() + b.unwrap().unwrap();
    assert_eq!(appended, 200);
    let published = read(store.as_ref(), "contract-orders.v1").await;
    let orders: Vec<String> = published
        .iter()
        .map(|e| match Published::decode(e).unwrap().unwrap() {
            Published::OrderAccepted { order, .. } => order,
        })
        .collect();
    let expected: Vec<String> = (0..200).map(|n| n.to_string()).collect();
    assert_eq!(orders, expected);
}

#[tokio::test]
async fn a_consumed_contract_is_translated_back_into_internal_events() {
    let orders = Arc::new(InMemoryStore::new());
    record(&orders, &[placed("1", 500), placed("2", 700)]).await;
    Translation::new(orders.clone(), "contract-orders.v1", Publish)
        .catch_up()
        .await
        .unwrap();

    // The shipping service reads the ordering service's store (over HTTP in real life)
    // and keeps its own events in its own store.
    let shipping = Arc::new(InMemoryStore::new());
    let inbound = Translation::between(orders.clone(), shipping.clone(), "inbound-orders", Consume);
    assert_eq!(inbound.catch_up().await.unwrap(), 2);
    let received: Vec<Shipping> = read(shipping.as_ref(), "inbound-orders")
        .await
        .iter()
        .map(|e| Shipping::decode(e).unwrap().unwrap())
        .collect();
    assert_eq!(
        received,
        [
            Shipping::ShipmentExpected { order: "1".into() },
            Shipping::ShipmentExpected { order: "2".into() }
        ]
    );
}

#[tokio::test]
async fn a_stream_holding_other_events_is_refused_naming_it() {
    let store = Arc::new(InMemoryStore::new());
    record(&store, &[placed("1", 500)]).await;
    store
        .append(
            "contract-orders.v1",
            ExpectedVersion::Any,
            vec![accepted("x", "1.00").encode().unwrap()],
        )
        .await
        .unwrap();
    let error = Translation::new(store.clone(), "contract-orders.v1", Publish)
        .catch_up()
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("contract-orders.v1") && message.contains("not written by a translation"),
        "{message}"
    );
}
