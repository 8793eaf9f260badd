//! The inventory story: `InventoryItemDeactivated` v1 `{id}` and v2 `{itemId, reason}`
//! side by side in one log; after a reopen, an old consumer (v1) and a new one (v2)
//! both read every deactivation, through the Rust API and over HTTP (`Accept`, and
//! `versions=`), while the stored events stay as they were written.

use std::sync::Arc;

use eventfold::EventStore;
use eventfold_examples::inventory::consumers::{
    read_in_rust, read_over_http, read_over_http_negotiated,
};
use eventfold_examples::inventory::contract::{DeactivatedV1, DeactivatedV2};
use eventfold_examples::inventory::story::{
    self, Ending, Server, record_history, stored_deactivations,
};
use eventfold_log::{LogOptions, LogStore};
use eventfold_schema::SchemaStore;
use serde_json::json;

fn old(id: &str) -> DeactivatedV1 {
    DeactivatedV1 { id: id.into() }
}

fn new(item_id: &str, reason: &str) -> DeactivatedV2 {
    DeactivatedV2 {
        item_id: item_id.into(),
        reason: reason.into(),
    }
}

fn open(dir: &std::path::Path) -> Arc<dyn EventStore> {
    Arc::new(LogStore::open(dir, LogOptions::default()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_and_new_consumers_read_both_versions_in_rust_and_over_http_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let schemas: SchemaStore<dyn EventStore> = SchemaStore::open(store.clone()).await.unwrap();
        record_history(&store, &schemas, &mut std::io::sink())
            .await
            .unwrap();
    } // closed: the registry must come back from the store itself

    let store = open(dir.path());
    let schemas: SchemaStore<dyn EventStore> = SchemaStore::open(store.clone()).await.unwrap();
    let old_view = [old("item-1"), old("item-2"), old("item-3")];
    let new_view = [
        new("item-1", "not recorded"),
        new("item-2", "recalled by the supplier"),
        new("item-3", "not recorded"),
    ];

    // Through the Rust API.
    assert_eq!(
        read_in_rust::<DeactivatedV1>(&schemas).await.unwrap(),
        old_view
    );
    assert_eq!(
        read_in_rust::<DeactivatedV2>(&schemas).await.unwrap(),
        new_view
    );

    // Over HTTP, from a server on an ephemeral port.
    let server = Server::start(store.clone()).await.unwrap();
    let base = server.base_url().to_string();
    assert_eq!(
        read_over_http::<DeactivatedV1>(&base).await.unwrap(),
        old_view
    );
    assert_eq!(
        read_over_http::<DeactivatedV2>(&base).await.unwrap(),
        new_view
    );
    assert_eq!(
        read_over_http_negotiated::<DeactivatedV1>(&base)
            .await
            .unwrap(),
        old_view
    );
    assert_eq!(
        read_over_http_negotiated::<DeactivatedV2>(&base)
            .await
            .unwrap(),
        new_view
    );
    // One event, each way, as the wire shows it.
    eventfold_client::install_crypto_provider();
    let client = reqwest::Client::new();
    let get = |path: &str, version: u32| {
        client
            .get(format!("{base}{path}"))
            .header(
                "Accept",
                format!("application/vnd.eventfold.v{version}+json"),
            )
            .send()
    };
    let v2_as_v1: serde_json::Value = serde_json::from_slice(
        &get("/streams/item-2/1", 1)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&v2_as_v1["version"], &v2_as_v1["data"]),
        (&json!(1), &json!({"id": "item-2"}))
    );
    let v1_as_v2: serde_json::Value = serde_json::from_slice(
        &get("/streams/item-1/1", 2)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&v1_as_v2["version"], &v1_as_v2["data"]),
        (
            &json!(2),
            &json!({"itemId": "item-1", "reason": "not recorded"})
        )
    );
    // A version nobody registered has no conversion path.
    let v3 = get("/streams/item-1/1", 3).await.unwrap();
    assert_eq!(v3.status(), 406);
    server.stop().await.unwrap();

    // The log still holds what each release wrote.
    let stored = stored_deactivations(store.as_ref()).await.unwrap();
    let stored: Vec<(String, u32, serde_json::Value)> = stored
        .iter()
        .map(|e| {
            (
                e.stream.clone(),
                e.version,
                serde_json::from_slice(&e.data).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        stored,
        [
            ("item-1".into(), 1, json!({"id": "item-1"})),
            (
                "item-2".into(),
                2,
                json!({"itemId": "item-2", "reason": "recalled by the supplier"})
            ),
            ("item-3".into(), 1, json!({"id": "item-3"})),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_tells_the_story_end_to_end() {
    let root = tempfile::tempdir().unwrap();
    let mut narration = Vec::new();
    let ending = story::run(root.path(), &mut narration).await.unwrap();
    let old_view = vec![old("item-1"), old("item-2"), old("item-3")];
    let new_view = vec![
        new("item-1", "not recorded"),
        new("item-2", "recalled by the supplier"),
        new("item-3", "not recorded"),
    ];
    assert_eq!(
        ending,
        Ending {
            old_in_rust: old_view.clone(),
            new_in_rust: new_view.clone(),
            old_over_http: old_view,
            new_over_http: new_view,
            stored: vec![
                ("item-1".into(), 1),
                ("item-2".into(), 2),
                ("item-3".into(), 1)
            ],
        }
    );
    let narration = String::from_utf8(narration).unwrap();
    assert!(
        narration.contains("a v2 event without itemId is refused"),
        "{narration}"
    );
}
