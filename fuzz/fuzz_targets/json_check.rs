//! The append check of event data and metadata against what readers do:
//! `EventData::validate` accepts a document as data exactly when a `serde_json::Value`
//! parse of it succeeds, and as metadata exactly when that parse is an object (the
//! check scans what it is sure of itself and hands the rest to serde_json).
#![no_main]

use bytes::Bytes;
use eventfold_core::EventData;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let event = EventData {
        id: None,
        event_type: "Fuzzed".into(),
        version: 1,
        data: Bytes::copy_from_slice(bytes),
        metadata: Bytes::from_static(b"{}"),
    };
    let checked = event.validate();
    let parsed = serde_json::from_slice::<serde_json::Value>(bytes);
    assert_eq!(
        checked.is_ok(),
        parsed.is_ok(),
        "data: check {checked:?}, parse {parsed:?}"
    );
    let as_metadata = EventData {
        data: Bytes::from_static(b"null"),
        metadata: Bytes::copy_from_slice(bytes),
        ..event
    };
    let checked = as_metadata.validate();
    assert_eq!(
        checked.is_ok(),
        matches!(parsed, Ok(serde_json::Value::Object(_))),
        "metadata: check {checked:?}, parse {parsed:?}"
    );
});
