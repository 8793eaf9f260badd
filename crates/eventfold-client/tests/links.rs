//! Links and compensations over HTTP: the server resolves a link on read unless the
//! client asks for links as written, and refuses a compensation pointing at nothing.

use std::sync::Arc;

use eventfold_client::HttpStore;
use eventfold_core::{
    CANCELLED_EVENT_TYPE, Error, EventData, EventStore, ExpectedVersion, InMemoryStore,
    LINK_EVENT_TYPE, LINKED_EVENT_KEY, ReadStream,
};
use eventfold_server::ServerConfig;
use serde_json::json;

#[tokio::test]
async fn the_server_resolves_links_unless_asked_not_to_and_checks_what_they_point_at() {
    let store = Arc::new(InMemoryStore::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(eventfold_server::serve(
        store,
        ServerConfig::default(),
        listener,
        std::future::pending(),
    ));
    let client = HttpStore::new(&format!("http://{address}")).unwrap();
    let placed = EventData::json("Placed", &json!({"total": 5})).unwrap();
    client
        .append("order-1", ExpectedVersion::NoStream, vec![placed])
        .await
        .unwrap();
    let link = EventData::json(LINK_EVENT_TYPE, &json!({"event": "0@order-1"})).unwrap();
    client
        .append("big-orders", ExpectedVersion::NoStream, vec![link])
        .await
        .unwrap();

    let resolved = client
        .read_stream("big-orders", ReadStream::forward())
        .await
        .unwrap();
    assert_eq!(resolved[0].event_type, "Placed");
    assert_eq!(resolved[0].stream, "big-orders");
    let metadata: serde_json::Value = serde_json::from_slice(&resolved[0].metadata).unwrap();
    assert_eq!(metadata[LINKED_EVENT_KEY], "0@order-1");
    let as_written = client
        .read_stream("big-orders", ReadStream::forward().links_as_written())
        .await
        .unwrap();
    assert_eq!(as_written[0].event_type, LINK_EVENT_TYPE);

    let nowhere = EventData::json(CANCELLED_EVENT_TYPE, &json!({"event": "4@order-1"})).unwrap();
    let err = client
        .append("order-1", ExpectedVersion::Any, vec![nowhere])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidEvent { reason } if reason.contains("4@order-1, which does not exist")),
        "{err}"
    );
    server.abort();
}
