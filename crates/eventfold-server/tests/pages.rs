//! Scenario: a stream of large events read through a server whose pages are capped in
//! bytes. Each page stops early and says where to continue; paging through, forward,
//! backward, over `$all` and over SSE, gets every event exactly once.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use eventfold_log::{LogOptions, LogStore};
use eventfold_server::{ServerConfig, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Bytes of each event's data.
const EVENT_BYTES: usize = 30_000;
/// The page cap: three events fit, a fourth does not.
const READ_BYTES_MAX: usize = 100_000;
const EVENTS: u64 = 10;

async fn get(app: &Router, uri: &str) -> Value {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{uri}");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn field(event: &Value, name: &str) -> u64 {
    event[name].as_u64().unwrap()
}

#[tokio::test]
async fn large_events_come_in_short_pages_that_continue_without_gap_or_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), LogOptions::default()).unwrap();
    let config = ServerConfig {
        read_bytes_max: READ_BYTES_MAX,
        ..ServerConfig::default()
    };
    let app = router(Arc::new(store), config).await.unwrap();
    // A small event elsewhere first, so positions and revisions differ.
    for (stream, n) in std::iter::once(("other-1", 0)).chain((0..EVENTS).map(|n| ("scan-1", n))) {
        let body = json!([{"type": "Scanned", "data": {"n": n, "blob": "x".repeat(EVENT_BYTES)}}]);
        let response = app
            .clone()
            .oneshot(
                Request::post(format!("/streams/{stream}"))
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    // The first page stops at the cap, short of the 100 events asked for.
    let page = get(&app, "/streams/scan-1?limit=100").await;
    assert_eq!(
        page["events"].as_array().unwrap().len(),
        3,
        "{}",
        page["next"]
    );
    assert_eq!(
        (page["next"].as_u64(), page["end_of_stream"].as_bool()),
        (Some(3), Some(false))
    );

    // Forward, then backward, through the whole stream.
    for direction in ["forward", "backward"] {
        let mut revisions = Vec::new();
        let mut pages = 0;
        let mut from = if direction == "forward" {
            0
        } else {
            EVENTS - 1
        };
        loop {
            let page = get(
                &app,
                &format!("/streams/scan-1?from={from}&direction={direction}"),
            )
            .await;
            let events = page["events"].as_array().unwrap();
            assert!(
                events.len() <= 3,
                "a page over the cap: {} events",
                events.len()
            );
            revisions.extend(events.iter().map(|e| field(e, "revision")));
            pages += 1;
            if page["end_of_stream"] == json!(true) {
                break;
            }
            from = page["next"]
                .as_u64()
                .expect("a cut page says where to continue");
        }
        if direction == "backward" {
            revisions.reverse();
        }
        assert_eq!(revisions, (0..EVENTS).collect::<Vec<_>>(), "{direction}");
        assert_eq!(pages, 4, "{direction}: 3 + 3 + 3 + 1");
    }

    // A full page (by count) does not claim the end of the stream.
    let page = get(&app, "/streams/scan-1?limit=1").await;
    assert_eq!(page["end_of_stream"], false);

    // `$all`, by position: `next` and `end_of_log` lead through every event once.
    let mut positions = Vec::new();
    let mut from = 0;
    loop {
        let page = get(&app, &format!("/all?from={from}&limit=100")).await;
        let events = page["events"].as_array().unwrap();
        assert!(!events.is_empty() && events.len() <= 4);
        positions.extend(events.iter().map(|e| field(e, "position")));
        if page["end_of_log"] == json!(true) {
            break;
        }
        from = page["next"].as_u64().unwrap();
    }
    assert_eq!(positions, (0..=EVENTS).collect::<Vec<_>>());

    // An index stream pages by position just as well.
    let mut positions = Vec::new();
    let mut from = 0;
    loop {
        let page = get(&app, &format!("/streams/$ce-scan?from={from}")).await;
        positions.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| field(e, "position")),
        );
        if page["end_of_stream"] == json!(true) {
            break;
        }
        from = page["next"].as_u64().unwrap();
    }
    assert_eq!(positions, (1..=EVENTS).collect::<Vec<_>>());

    // An SSE catch-up reads capped pages too, and delivers every event once, in order.
    let response = app
        .clone()
        .oneshot(
            Request::get("/subscribe/streams/scan-1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut text = String::new();
    let mut ids = Vec::new();
    while ids.len() < EVENTS as usize {
        let frame = tokio::time::timeout(Duration::from_secs(30), body.frame())
            .await
            .expect("an SSE message within 30 s")
            .expect("the stream stays open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = text.find("\n\n") {
            let message: String = text.drain(..end + 2).collect();
            if let Some(id) = message.lines().find_map(|l| l.strip_prefix("id:")) {
                ids.push(id.trim().parse::<u64>().unwrap());
            }
        }
    }
    assert_eq!(ids, (0..EVENTS).collect::<Vec<_>>());
}
