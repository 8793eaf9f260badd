//! The OpenAPI document describes what the server really sends and takes: a sample of
//! every wire type (`eventfold-wire`), serialized as the server and the client do, is
//! valid against its schema in `components/schemas`, and every error code is
//! documented (in the document's `Error` schema and in `docs/http-api.md`).

use std::collections::BTreeSet;

use bytes::Bytes;
use eventfold_core::{
    AppendResult, EventData, ExpectedVersion, Position, RecordedEvent, Revision, StreamSummary,
    StreamWrite,
};
use eventfold_server::OPENAPI;
use eventfold_subscription::Nack;
use eventfold_wire::{
    Deliveries, Delivery, ErrorBody, ErrorCode, EventsPage, Health, NackBody, NewEvent, Positions,
    Recorded, Replay, StreamHead, StreamsPage, TransactionResults, TransactionWrite,
};
use serde_json::Value;

fn document() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
}

/// A validator of `components/schemas/<name>`, its `$ref`s resolved in the document.
fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
    assert!(
        doc["components"]["schemas"].get(name).is_some(),
        "openapi.json has no schema {name}"
    );
    let root = serde_json::json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("schema {name}: {e}"))
}

/// `value` as the wire carries it (through its JSON text, as a client reads it).
fn wire(value: &impl serde::Serialize) -> Value {
    let text = serde_json::to_string(value).expect("a wire type serializes");
    serde_json::from_str(&text).expect("its text is JSON")
}

fn assert_valid(doc: &Value, name: &str, sample: &Value) {
    let validator = validator(doc, name);
    let errors: Vec<String> = validator
        .iter_errors(sample)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: {sample}: {errors:?}");
}

fn event(revision: u64, data: &'static str) -> RecordedEvent {
    RecordedEvent {
        stream: "order-1".into(),
        revision: Revision(revision),
        position: Position(40 + revision),
        id: uuid::Uuid::now_v7(),
        event_type: "OrderPlaced".into(),
        version: 2,
        data: Bytes::from_static(data.as_bytes()),
        metadata: Bytes::from_static(br#"{"correlation_id":"c-1"}"#),
        recorded_at: chrono::DateTime::from_timestamp_micros(1_700_000_000_000_001)
            .expect("a valid time"),
    }
}

fn new_event() -> NewEvent {
    let event = EventData::json("OrderPlaced", &serde_json::json!({"total": 5}))
        .expect("JSON data")
        .with_id(uuid::Uuid::now_v7());
    NewEvent::from_event_data(event).expect("JSON data travels")
}

fn append_result() -> AppendResult {
    AppendResult {
        first_revision: Revision(0),
        last_revision: Revision(1),
        position: Position(41),
    }
}

/// Samples of every wire type, each with the schema it must match.
fn samples() -> Vec<(&'static str, Value)> {
    let events = vec![event(0, r#"{"total": 5}"#), event(1, "[1, 2.5, null]")];
    let write = StreamWrite::new(
        "order-1",
        ExpectedVersion::Exact(Revision(3)),
        vec![EventData::json("OrderPaid", &7).expect("JSON data")],
    );
    vec![
        ("Event", wire(&Recorded(&events[0]))),
        ("Event", wire(&Recorded(&events[1]))),
        ("NewEvent", wire(&new_event())),
        ("NewEvents", wire(&vec![new_event(), new_event()])),
        ("AppendResult", wire(&append_result())),
        (
            "TransactionWrite",
            wire(&TransactionWrite::from_stream_write(write.clone()).expect("a write")),
        ),
        (
            "Transaction",
            wire(&vec![
                TransactionWrite::from_stream_write(write).expect("a write"),
            ]),
        ),
        (
            "TransactionResults",
            wire(&TransactionResults {
                results: vec![append_result(), append_result()],
            }),
        ),
        (
            "EventsPage",
            wire(&EventsPage {
                events: events.clone(),
                next: Some(2),
                end_of_stream: Some(false),
                end_of_log: None,
            }),
        ),
        (
            "EventsPage",
            wire(&EventsPage {
                events: Vec::new(),
                next: Some(42),
                end_of_stream: None,
                end_of_log: Some(true),
            }),
        ),
        (
            "StreamsPage",
            wire(&StreamsPage {
                next: Some("order-1".into()),
                streams: vec![StreamSummary {
                    stream: "order-1".into(),
                    last_revision: Revision(1),
                }],
            }),
        ),
        (
            "StreamsPage",
            wire(&StreamsPage {
                next: None,
                streams: Vec::new(),
            }),
        ),
        (
            "StreamHead",
            wire(&StreamHead {
                last_revision: None,
                stream: "order-9".into(),
            }),
        ),
        ("Health", wire(&Health::ok(Some(Position(41))))),
        ("Health", wire(&Health::ok(None))),
        (
            "Deliveries",
            wire(&Deliveries {
                deliveries: vec![Delivery {
                    event: events[0].clone(),
                    attempt: 2,
                }],
            }),
        ),
        (
            "AckBody",
            wire(&Positions {
                positions: vec![40, 41],
            }),
        ),
        (
            "NackBody",
            wire(&NackBody {
                positions: vec![40],
                action: Some(Nack::Park),
                reason: Some("cannot handle it".into()),
            }),
        ),
        ("ReplayBody", wire(&Replay { positions: None })),
        (
            "ScavengeAnswer",
            wire(&eventfold_wire::ScavengeAnswer::from(
                eventfold_core::ScavengeSummary {
                    dry_run: false,
                    files_examined: 3,
                    files_rewritten: 1,
                    events_removed: 120,
                    bytes_before: 65_536,
                    bytes_after: 20_480,
                    elapsed: std::time::Duration::from_millis(12),
                },
            )),
        ),
        (
            "SurgeryRequest",
            wire(&eventfold_wire::SurgeryRequest {
                operation: eventfold_wire::SurgeryOperation::Split {
                    source: "account-1".into(),
                    into: vec![eventfold_wire::SplitTarget {
                        stream: "money-1".into(),
                        filter: ".type == \"Deposited\"".into(),
                    }],
                    link: false,
                },
                reason: "two aggregates grew in one stream".into(),
                dry_run: true,
            }),
        ),
        (
            "SurgeryRequest",
            wire(&eventfold_wire::SurgeryRequest {
                operation: eventfold_wire::SurgeryOperation::CopyReplace {
                    source: "cart-1".into(),
                    to: "cart-1-fixed".into(),
                    skip: vec![3],
                    transform: Some(".".into()),
                    in_place: true,
                },
                reason: "a wrong price".into(),
                dry_run: false,
            }),
        ),
        (
            "SurgeryRequest",
            wire(&eventfold_wire::SurgeryRequest {
                operation: eventfold_wire::SurgeryOperation::Flip {
                    to: Some("the new cluster".into()),
                    undo: true,
                },
                reason: "the new cluster is down".into(),
                dry_run: false,
            }),
        ),
        (
            "SurgeryOutcome",
            wire(&eventfold_wire::SurgeryOutcome {
                operation: "join".into(),
                dry_run: false,
                targets: [("both-1".to_string(), 6)].into(),
                moved: [("left-1".to_string(), "both-1".to_string())].into(),
                dropped: 0,
                read: 6,
                resumed: 0,
                audit_position: Some(12),
            }),
        ),
        (
            "SubjectForgotten",
            wire(&eventfold_wire::SubjectForgotten {
                subject: "customer-7f3a".into(),
                position: 42,
            }),
        ),
    ]
}

#[test]
fn every_wire_type_matches_its_schema() {
    let doc = document();
    for (name, sample) in samples() {
        assert_valid(&doc, name, &sample);
    }
}

#[test]
fn every_error_body_matches_the_error_schema() {
    let doc = document();
    for error in eventfold_wire::error::examples() {
        assert_valid(&doc, "Error", &wire(&ErrorBody::of(&error)));
    }
    for code in ErrorCode::ALL {
        assert_valid(&doc, "Error", &wire(&ErrorBody::new(*code, "a message")));
    }
}

#[test]
fn the_check_refuses_what_breaks_a_schema() {
    let doc = document();
    let mut event = wire(&Recorded(&event(0, "{}")));
    event
        .as_object_mut()
        .expect("an event is an object")
        .remove("recorded_at");
    assert!(!validator(&doc, "Event").is_valid(&event));
    let mut body = wire(&ErrorBody::new(ErrorCode::Closed, "closed"));
    body["error"] = Value::String("no_such_code".into());
    assert!(!validator(&doc, "Error").is_valid(&body));
}

#[test]
fn every_error_code_is_documented_and_nothing_else() {
    let doc = document();
    let documented: BTreeSet<&str> =
        doc["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
            .as_array()
            .expect("the Error schema lists the codes")
            .iter()
            .map(|code| code.as_str().expect("a code is a string"))
            .collect();
    let codes: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(documented, codes);
    let guide = include_str!("../../../docs/http-api.md");
    for code in ErrorCode::ALL {
        let row = format!("| `{code}` | {} |", code.status().as_u16());
        assert!(
            guide.contains(&row),
            "docs/http-api.md has no row `{row}` in its table of errors"
        );
    }
}
