//! Rules of `eventfold-core` found missing by the conformance work and fixed there;
//! kept as regression tests.

use bytes::Bytes;
use eventfold_core::{EventData, EventStore, ExpectedVersion, InMemoryStore, Revision};
use eventfold_wire::ErrorCode;
use uuid::Uuid;

fn runtime() -> eventfold_conformance::tokio::runtime::Runtime {
    eventfold_conformance::tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// `Exact(u64::MAX)` parses (HTTP `Expected-Version`, CLI `--expected`); it is a
/// revision that is too high like any other, not an overflow.
#[test]
fn exact_expected_version_u64_max_is_a_wrong_expected_version() {
    runtime().block_on(async {
        let store = InMemoryStore::new();
        let event = EventData::json("OrderPlaced", &1).expect("valid event");
        store
            .append("order-1", ExpectedVersion::NoStream, vec![event.clone()])
            .await
            .expect("first append");
        let result = store
            .append(
                "order-1",
                ExpectedVersion::Exact(Revision(u64::MAX)),
                vec![event],
            )
            .await;
        assert_eq!(
            result.err().map(|e| ErrorCode::of(&e).as_str()),
            Some("wrong_expected_version")
        );
    });
}

/// Metadata is accepted exactly when it parses as a JSON object.
#[test]
fn metadata_must_parse_as_a_json_object() {
    runtime().block_on(async {
        let store = InMemoryStore::new();
        let with_metadata = |metadata: &'static [u8]| EventData {
            metadata: Bytes::from_static(metadata),
            ..EventData::json("OrderPlaced", &1).expect("valid event")
        };
        for bad in [&b"{not json"[..], b"[1]", b"\"x\"", b""] {
            let result = store
                .append("order-1", ExpectedVersion::Any, vec![with_metadata(bad)])
                .await;
            assert_eq!(
                result.err().map(|e| ErrorCode::of(&e).as_str()),
                Some("invalid_event"),
                "{bad:?}"
            );
        }
        store
            .append("order-2", ExpectedVersion::Any, vec![with_metadata(b" {}")])
            .await
            .expect("a JSON object after a space is an object");
    });
}

/// With an exact expected version that holds, an id already in the stream is a reused
/// id, not a re-send: refused, not answered with the old result.
#[test]
fn a_reused_id_with_a_current_exact_expected_version_is_a_conflict() {
    runtime().block_on(async {
        let store = InMemoryStore::new();
        let id = Uuid::now_v7();
        let event = || EventData::json("OrderPlaced", &1).expect("valid event");
        store
            .append(
                "order-1",
                ExpectedVersion::NoStream,
                vec![event().with_id(id)],
            )
            .await
            .expect("first append");
        store
            .append(
                "order-1",
                ExpectedVersion::Exact(Revision(0)),
                vec![event()],
            )
            .await
            .expect("second append");
        let reused = store
            .append(
                "order-1",
                ExpectedVersion::Exact(Revision(1)),
                vec![event().with_id(id)],
            )
            .await;
        assert_eq!(
            reused.err().map(|e| ErrorCode::of(&e).as_str()),
            Some("idempotency_conflict")
        );
        assert_eq!(
            store.stream_revision("order-1").await.unwrap(),
            Some(Revision(1))
        );
    });
}
