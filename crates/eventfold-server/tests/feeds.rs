//! Scenario: a reader follows the Atom feeds of a stream and of `$all` from the head
//! back to the first page, as RFC 5005 describes, and gets every event once; full pages
//! are the same bytes for ever and revalidate to `304`; pages a shared cache must not
//! keep (personal data, converted entries, a server under authentication) say so.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine as _;
use eventfold_log::{LogOptions, LogStore};
use eventfold_server::{AuthConfig, ServerConfig, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const ATOM: &str = "http://www.w3.org/2005/Atom";
const HISTORY: &str = "http://purl.org/syndication/history/1.0";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

struct Server {
    app: Router,
    _dir: tempfile::TempDir,
}

async fn server(config: ServerConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), LogOptions::default()).unwrap();
    Server {
        app: router(Arc::new(store), config).await.unwrap(),
        _dir: dir,
    }
}

/// One answer: status, headers, body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

impl Server {
    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    /// Appends `count` events to `stream`, numbered from `first`.
    async fn append(&self, stream: &str, first: u64, count: u64, metadata: Option<Value>) {
        let events: Vec<Value> = (first..first + count)
            .map(|n| {
                let mut event = json!({"type": "Ticked", "data": {"n": n}});
                if let Some(metadata) = &metadata {
                    event["metadata"] = metadata.clone();
                }
                event
            })
            .collect();
        let answer = self
            .send(
                Request::post(format!("/streams/{stream}"))
                    .header("content-type", "application/json")
                    .body(Body::from(Value::Array(events).to_string()))
                    .unwrap(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }

    /// A feed document that answered `200` as Atom.
    async fn page(&self, uri: &str) -> (Answer, Page) {
        let answer = self.get(uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", answer.body);
        assert_eq!(
            answer.header(header::CONTENT_TYPE),
            Some("application/atom+xml; charset=utf-8"),
            "{uri}"
        );
        let page = Page::parse(&answer.body);
        (answer, page)
    }
}

/// The Atom child element `name` of `node`.
fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children()
        .find(|c| c.tag_name().name() == name && c.tag_name().namespace() == Some(ATOM))
}

/// What a reader takes from one feed document.
#[derive(Debug)]
struct Page {
    links: Vec<(String, String)>,
    archive: bool,
    /// Entries in document order: title, alternate link, decoded content.
    entries: Vec<(String, String, Value)>,
}

impl Page {
    fn parse(xml: &str) -> Page {
        let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
        let feed = doc.root_element();
        assert_eq!(feed.tag_name().namespace(), Some(ATOM));
        assert_eq!(feed.tag_name().name(), "feed");
        for required in ["id", "title", "updated", "author"] {
            assert!(
                child(feed, required).is_some(),
                "the feed has no {required}"
            );
        }
        let links = feed
            .children()
            .filter(|c| c.tag_name().name() == "link")
            .map(|l| {
                (
                    l.attribute("rel").unwrap().to_string(),
                    l.attribute("href").unwrap().to_string(),
                )
            })
            .collect();
        let archive = feed
            .children()
            .any(|c| c.tag_name().name() == "archive" && c.tag_name().namespace() == Some(HISTORY));
        let entries = feed
            .children()
            .filter(|c| c.tag_name().name() == "entry")
            .map(|entry| {
                for required in ["id", "title", "updated"] {
                    assert!(
                        child(entry, required).is_some(),
                        "an entry has no {required}"
                    );
                }
                let title = child(entry, "title").unwrap().text().unwrap().to_string();
                let alternate = entry
                    .children()
                    .find(|c| {
                        c.tag_name().name() == "link" && c.attribute("rel") == Some("alternate")
                    })
                    .and_then(|l| l.attribute("href"))
                    .unwrap()
                    .to_string();
                let content = child(entry, "content").unwrap();
                assert_eq!(content.attribute("type"), Some("application/json"));
                let json = base64::engine::general_purpose::STANDARD
                    .decode(content.text().unwrap())
                    .unwrap();
                (title, alternate, serde_json::from_slice(&json).unwrap())
            })
            .collect();
        Page {
            links,
            archive,
            entries,
        }
    }

    fn link(&self, rel: &str) -> Option<&str> {
        self.links
            .iter()
            .find(|(r, _)| r == rel)
            .map(|(_, href)| href.as_str())
    }
}

/// Follows `prev-archive` from the head to the first page: the entries of every page,
/// oldest page first, and the answer of each page that is full.
async fn walk(server: &Server, head: &str) -> (Vec<Value>, Vec<(String, Answer)>) {
    let (_, page) = server.page(head).await;
    assert!(!page.archive, "the head is not an archive document");
    assert_eq!(page.link("self"), Some(head));
    assert_eq!(page.link("current"), Some(head));
    let mut pages = vec![page];
    let mut full = Vec::new();
    while let Some(prev) = pages.last().unwrap().link("prev-archive").map(String::from) {
        let (answer, page) = server.page(&prev).await;
        assert!(page.archive, "{prev} is an archive document");
        assert_eq!(page.link("self"), Some(prev.as_str()));
        assert_eq!(page.link("current"), Some(head));
        pages.push(page);
        full.push((prev, answer));
    }
    full.reverse();
    let events = pages
        .iter()
        .rev()
        .flat_map(|page| {
            // Newest first within a page.
            let mut entries: Vec<Value> = page.entries.iter().map(|e| e.2.clone()).collect();
            entries.reverse();
            entries
        })
        .collect();
    (events, full)
}

#[tokio::test]
async fn a_stream_feed_leads_from_the_head_to_the_first_event_and_full_pages_never_change() {
    let server = server(ServerConfig::default()).await;
    server.append("order-1", 0, 45, None).await;

    let (answer, head) = server.page("/feed/streams/order-1").await;
    assert_eq!(answer.header(header::CACHE_CONTROL), Some("no-cache"));
    let titles: Vec<&str> = head.entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        titles,
        [
            "44@order-1",
            "43@order-1",
            "42@order-1",
            "41@order-1",
            "40@order-1"
        ],
        "the head holds the page in progress, newest first"
    );
    assert_eq!(
        head.link("prev-archive"),
        Some("/feed/streams/order-1/pages/1")
    );

    let (events, full) = walk(&server, "/feed/streams/order-1").await;
    let revisions: Vec<u64> = events
        .iter()
        .map(|e| e["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(
        revisions,
        (0..45).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert_eq!(
        events
            .iter()
            .map(|e| e["data"]["n"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (0..45).collect::<Vec<_>>(),
        "the content is the event itself"
    );
    assert_eq!(full.len(), 2);
    for (uri, answer) in &full {
        assert_eq!(
            answer.header(header::CACHE_CONTROL),
            Some(IMMUTABLE),
            "{uri}"
        );
        assert!(answer.header(header::ETAG).is_some(), "{uri}");
    }
    let (first, _) = server.page("/feed/streams/order-1/pages/0").await;
    let first_page = Page::parse(&first.body);
    assert_eq!(
        first_page.link("prev-archive"),
        None,
        "the first page starts the feed"
    );
    assert_eq!(
        first_page.link("next-archive"),
        Some("/feed/streams/order-1/pages/1")
    );

    // An entry's alternate link is the event's own URI, answering the same event.
    let (_, alternate, content) = &head.entries[0];
    assert_eq!(alternate, "/streams/order-1/44");
    let own: Value = serde_json::from_str(&server.get(alternate).await.body).unwrap();
    assert_eq!(&own, content);

    // More events: the full pages keep their bytes and tags, and revalidate to 304.
    let (uri, before) = &full[1];
    server.append("order-1", 45, 20, None).await;
    let after = server.get(uri).await;
    assert_eq!(after.body, before.body, "{uri} never changes");
    assert_eq!(after.header(header::ETAG), before.header(header::ETAG));
    let etag = before.header(header::ETAG).unwrap();
    let revalidated = server
        .send(
            Request::get(uri.as_str())
                .header(header::IF_NONE_MATCH, etag)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    assert_eq!(revalidated.body, "");
    assert_eq!(revalidated.header(header::ETAG), Some(etag));
    let stale = server
        .send(
            Request::get("/feed/streams/order-1")
                .header(header::IF_NONE_MATCH, etag)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::OK,
        "another page's tag does not match"
    );

    // The page that was the head is full now; the walk sees all 65 events.
    let (events, full) = walk(&server, "/feed/streams/order-1").await;
    assert_eq!(events.len(), 65);
    assert_eq!(full.len(), 3);
    let (_, page_2) = server.page("/feed/streams/order-1/pages/2").await;
    assert!(page_2.archive);
    assert_eq!(page_2.entries.len(), 20);

    // The page in progress answers at its number too; the ones after it do not exist.
    let (in_progress, page_3) = server.page("/feed/streams/order-1/pages/3").await;
    assert!(!page_3.archive);
    assert_eq!(page_3.entries.len(), 5);
    assert_eq!(in_progress.header(header::CACHE_CONTROL), Some("no-cache"));
    let beyond = server.get("/feed/streams/order-1/pages/4").await;
    assert_eq!(beyond.status, StatusCode::NOT_FOUND);
    let error: Value = serde_json::from_str(&beyond.body).unwrap();
    assert_eq!(error["error"], "page_not_found", "{error}");

    // Streams without a feed say why.
    for (uri, status, code) in [
        (
            "/feed/streams/nope",
            StatusCode::NOT_FOUND,
            "stream_not_found",
        ),
        (
            "/feed/streams/$ce-order",
            StatusCode::BAD_REQUEST,
            "invalid_stream_name",
        ),
        (
            "/feed/streams/order-1/pages/x",
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
    ] {
        let answer = server.get(uri).await;
        let error: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(
            (answer.status, error["error"].as_str()),
            (status, Some(code)),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn the_feed_of_all_holds_every_stream_by_position() {
    let server = server(ServerConfig::default()).await;
    let empty = server.page("/feed/all").await.1;
    assert!(empty.entries.is_empty() && empty.link("prev-archive").is_none());
    for round in 0..5 {
        server.append("order-1", round * 5, 5, None).await;
        server.append("stock-1", round * 4, 4, None).await;
    }
    let (events, full) = walk(&server, "/feed/all").await;
    let positions: Vec<u64> = events
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (0..45).collect::<Vec<_>>());
    let streams: BTreeSet<&str> = events
        .iter()
        .map(|e| e["stream"].as_str().unwrap())
        .collect();
    assert_eq!(streams, BTreeSet::from(["order-1", "stock-1"]));
    assert_eq!(
        full.iter().map(|(uri, _)| uri.as_str()).collect::<Vec<_>>(),
        ["/feed/all/pages/0", "/feed/all/pages/1"]
    );
    assert!(
        full.iter()
            .all(|(_, a)| a.header(header::CACHE_CONTROL) == Some(IMMUTABLE))
    );
}

#[tokio::test]
async fn pages_a_shared_cache_must_not_keep_say_so() {
    let config = ServerConfig {
        subject_keys: Some(Arc::new(eventfold_privacy::MemoryKeyStore::new())),
        ..ServerConfig::default()
    };
    let server = server(config).await;
    let personal = json!({"$personal": {"subject": "customer-1", "fields": ["/n"]}});
    server.append("customer-1", 0, 20, Some(personal)).await;
    server.append("order-1", 0, 20, None).await;

    let (answer, page) = server.page("/feed/streams/customer-1/pages/0").await;
    assert!(page.archive);
    assert_eq!(
        answer.header(header::CACHE_CONTROL),
        Some("private, no-cache")
    );
    assert_eq!(
        page.entries[0].2["data"]["n"], 19,
        "the reader sees plaintext"
    );
    let (answer, _) = server.page("/feed/all/pages/0").await;
    assert_eq!(
        answer.header(header::CACHE_CONTROL),
        Some("private, no-cache")
    );
    let (answer, _) = server.page("/feed/all/pages/1").await;
    assert_eq!(answer.header(header::CACHE_CONTROL), Some(IMMUTABLE));

    // Converted entries follow converters registered later: revalidated, with links
    // that keep the conversion.
    let (answer, page) = server
        .page("/feed/streams/order-1/pages/0?versions=newest")
        .await;
    assert_eq!(answer.header(header::CACHE_CONTROL), Some("no-cache"));
    assert_eq!(
        page.link("self"),
        Some("/feed/streams/order-1/pages/0?versions=newest")
    );

    // Under authentication a page is kept by the reader's cache alone.
    let auth = AuthConfig::from_toml(
        "[[users]]\nname = \"root\"\ntoken = \"admin-token-0123456789\"\nroles = [\"admin\"]\n",
    )
    .unwrap();
    let server = self::server(ServerConfig {
        auth: Some(auth),
        ..ServerConfig::default()
    })
    .await;
    let request = |uri: &str| {
        Request::get(uri)
            .header(header::AUTHORIZATION, "Bearer admin-token-0123456789")
            .body(Body::empty())
            .unwrap()
    };
    let events: Vec<Value> = (0..20)
        .map(|n| json!({"type": "Ticked", "data": {"n": n}}))
        .collect();
    let appended = server
        .send(
            Request::post("/streams/order-1")
                .header(header::AUTHORIZATION, "Bearer admin-token-0123456789")
                .body(Body::from(Value::Array(events).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(appended.status, StatusCode::CREATED, "{}", appended.body);
    let answer = server.send(request("/feed/streams/order-1/pages/0")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        answer.header(header::CACHE_CONTROL),
        Some("private, max-age=31536000, immutable")
    );
    let anonymous = server.get("/feed/streams/order-1/pages/0").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}
