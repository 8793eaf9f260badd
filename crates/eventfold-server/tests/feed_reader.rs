//! A stock feed reader of another language reads our Atom feeds: Python's
//! `feedparser`, from the interpreter `EVENTFOLD_TEST_FEEDPARSER_PYTHON` names (`.ci/run`
//! installs it in a virtual environment). Without it the test says loudly that it
//! skipped.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use eventfold_core::InMemoryStore;
use eventfold_server::{ServerConfig, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Reads a feed document from stdin with feedparser and prints what a reader sees:
/// whether it parsed cleanly, the feed's links and each entry's id, title, link and
/// decoded content.
const READER: &str = r#"
import json, sys
import feedparser
document = sys.stdin.buffer.read()
feed = feedparser.parse(document)
print(json.dumps({
    "bozo": bool(feed.bozo),
    "bozo_exception": str(feed.get("bozo_exception", "")),
    "version": feed.version,
    "title": feed.feed.get("title"),
    "links": {link["rel"]: link["href"] for link in feed.feed.get("links", [])},
    "entries": [
        {
            "id": entry.get("id"),
            "title": entry.get("title"),
            "alternate": [link["href"] for link in entry.get("links", []) if link.get("rel") == "alternate"],
            "updated": entry.get("updated"),
            "content": json.loads(entry["content"][0]["value"]),
            "content_type": entry["content"][0]["type"],
        }
        for entry in feed.entries
    ],
}))
"#;

#[tokio::test]
async fn feedparser_reads_our_feeds() {
    let Ok(python) = std::env::var("EVENTFOLD_TEST_FEEDPARSER_PYTHON") else {
        eprintln!(
            "SKIPPED feedparser_reads_our_feeds: EVENTFOLD_TEST_FEEDPARSER_PYTHON is not set \
             (.ci/run sets it to a Python with feedparser installed)"
        );
        return;
    };
    let app = router(Arc::new(InMemoryStore::new()), ServerConfig::default())
        .await
        .unwrap();
    let events: Vec<Value> = (0..25)
        .map(|n| json!({"type": "Priced", "data": {"n": n, "note": "<b>&\"quoted\"</b>"}}))
        .collect();
    let response = app
        .clone()
        .oneshot(
            Request::post("/streams/price%20list-1")
                .body(Body::from(Value::Array(events).to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    for (uri, first, count, prev) in [
        (
            "/feed/streams/price%20list-1",
            24,
            5,
            Some("/feed/streams/price%20list-1/pages/0"),
        ),
        ("/feed/streams/price%20list-1/pages/0", 19, 20, None),
        ("/feed/all", 24, 5, Some("/feed/all/pages/0")),
    ] {
        let response = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        let xml = response.into_body().collect().await.unwrap().to_bytes();
        let mut child = Command::new(&python)
            .args(["-c", READER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{python} does not start: {e}"));
        child.stdin.take().unwrap().write_all(&xml).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "feedparser failed on {uri}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(seen["bozo"], false, "{uri}: {}", seen["bozo_exception"]);
        assert_eq!(seen["version"], "atom10", "{uri}");
        assert_eq!(seen["links"]["prev-archive"].as_str(), prev, "{uri}");
        let entries = seen["entries"].as_array().unwrap();
        assert_eq!(entries.len(), count, "{uri}");
        for (k, entry) in entries.iter().enumerate() {
            let revision = first - k as u64;
            assert_eq!(entry["content_type"], "application/json", "{uri}");
            assert_eq!(entry["content"]["revision"], revision, "{uri}");
            assert_eq!(entry["content"]["stream"], "price list-1", "{uri}");
            assert_eq!(entry["content"]["data"]["note"], "<b>&\"quoted\"</b>");
            assert_eq!(entry["title"], format!("{revision}@price list-1"), "{uri}");
            assert_eq!(
                entry["alternate"],
                json!([format!("/streams/price%20list-1/{revision}")]),
                "{uri}"
            );
            assert!(
                entry["id"].as_str().unwrap().starts_with("urn:uuid:"),
                "{uri}"
            );
        }
    }
}
