//! Atom feeds (RFC 4287) of a stream and of `$all`, paged as archived feeds (RFC 5005):
//! `GET /feed/streams/{stream}`, `GET /feed/streams/{stream}/pages/{page}`,
//! `GET /feed/all` and `GET /feed/all/pages/{page}`.
//!
//! Page `k` holds the events whose revision (for `$all`: position) lies in
//! `k * PAGE_EVENTS .. (k + 1) * PAGE_EVENTS`, newest first. A page whose range the log
//! has written to its end is *full*, an archive document: the log never changes what
//! it holds, so a full page is the same bytes for ever and is served as immutable,
//! with an `ETag` (a digest of the bytes) that `If-None-Match` turns into `304`. The
//! page in progress is the head (the subscription document), served at the feed's own
//! URI and at its page number alike, revalidated on every use; its `prev-archive` link
//! leads to the newest full page, and each page's to the one before.
//!
//! Three things make a full page less than immutable, and each is answered with a
//! header that lets no shared cache keep it: converted entries (`versions=`: a
//! converter registered later changes them), personal data (`$personal` metadata:
//! forgetting the subject must not leave plaintext in a proxy), and a server under
//! `--auth` (a shared cache must not hand one reader's page to another). Events a
//! retention rule or a scavenge removes later also disappear from a page; a cache that
//! kept it keeps them.
//!
//! Entries carry the event in its JSON wire form as `application/json` content, which
//! RFC 4287 (section 4.1.3.3) asks to be Base64 encoded since it is neither text nor
//! XML; stock feed readers decode it.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use eventfold_core::{Position, ReadAll, ReadStream, RecordedEvent, Revision};
use eventfold_schema::Target;
use eventfold_wire::{ErrorCode, Recorded};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::request::{Shared, target};
use crate::auth::{Access, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// Events per feed page.
pub(crate) const PAGE_EVENTS: u64 = 20;

/// How long a full page may be kept: a year, the longest `max-age` caches are asked
/// to honour.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The query of every feed route.
#[derive(Debug, Deserialize)]
pub(super) struct FeedQuery {
    /// The versions the reader understands (`Type:N,...`, `newest`, `stored`).
    versions: Option<String>,
}

/// `GET /feed/streams/{stream}`: the head page of a stream's feed.
pub(super) async fn stream_head(
    State(state): Shared,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<FeedQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(stream) = path?;
    let feed = Feed::stream(&state, &who, stream).await?;
    let Query(query) = query?;
    let page = feed.written / PAGE_EVENTS;
    feed.serve(&state, page, true, &query, &headers).await
}

/// `GET /feed/streams/{stream}/pages/{page}`: one page of a stream's feed.
pub(super) async fn stream_page(
    State(state): Shared,
    who: Principal,
    path: Result<Path<(String, u64)>, PathRejection>,
    query: Result<Query<FeedQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((stream, page)) = path?;
    let feed = Feed::stream(&state, &who, stream).await?;
    let Query(query) = query?;
    feed.serve(&state, page, false, &query, &headers).await
}

/// `GET /feed/all`: the head page of the feed of `$all`.
pub(super) async fn all_head(
    State(state): Shared,
    who: Principal,
    query: Result<Query<FeedQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let feed = Feed::all(&state, &who).await?;
    let Query(query) = query?;
    let page = feed.written / PAGE_EVENTS;
    feed.serve(&state, page, true, &query, &headers).await
}

/// `GET /feed/all/pages/{page}`: one page of the feed of `$all`.
pub(super) async fn all_page(
    State(state): Shared,
    who: Principal,
    path: Result<Path<u64>, PathRejection>,
    query: Result<Query<FeedQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(page) = path?;
    let feed = Feed::all(&state, &who).await?;
    let Query(query) = query?;
    feed.serve(&state, page, false, &query, &headers).await
}

/// One feed: a stream's or `$all`'s, and how far the log has written it.
struct Feed {
    /// The stream; `None` for `$all`.
    stream: Option<String>,
    /// Revisions (positions) written: the next event takes this one.
    written: u64,
}

/// The characters of a stream name kept as they are in a URI path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl Feed {
    /// The feed of `stream`, once `who` may read it. Index streams page by position,
    /// not revision, and have no feed of their own (`/feed/all` holds their events).
    async fn stream(state: &AppState, who: &Principal, stream: String) -> Result<Feed, ApiError> {
        state.authorize(who, Access::Read(&stream)).await?;
        if eventfold_core::IndexStream::parse(&stream).is_some() {
            return Err(ApiError::new(
                ErrorCode::InvalidStreamName,
                format!(
                    "'{stream}' is an index stream, which has no feed of its own; \
                     /feed/all holds its events"
                ),
            ));
        }
        let last = state.store.stream_revision(&stream).await?;
        let Some(last) = last else {
            return Err(ApiError::new(
                ErrorCode::StreamNotFound,
                format!("stream '{stream}' has no events, so it has no feed"),
            ));
        };
        Ok(Feed {
            stream: Some(stream),
            written: last.get() + 1,
        })
    }

    /// The feed of `$all`, once `who` may read it.
    async fn all(state: &AppState, who: &Principal) -> Result<Feed, ApiError> {
        state.authorize(who, Access::All).await?;
        let head = state.store.head_position().await?;
        Ok(Feed {
            stream: None,
            written: head.map_or(0, |p| p.get() + 1),
        })
    }

    /// The feed's path (the head page).
    fn path(&self) -> String {
        match &self.stream {
            Some(stream) => format!("/feed/streams/{}", utf8_percent_encode(stream, SEGMENT)),
            None => "/feed/all".to_string(),
        }
    }

    /// The path of page `page`.
    fn page_path(&self, page: u64) -> String {
        format!("{}/pages/{page}", self.path())
    }

    /// Page `page`, answered at the head's URI when `as_head`.
    async fn serve(
        &self,
        state: &AppState,
        page: u64,
        as_head: bool,
        query: &FeedQuery,
        headers: &HeaderMap,
    ) -> Result<Response, ApiError> {
        let full_pages = self.written / PAGE_EVENTS;
        if page > full_pages {
            return Err(ApiError::new(
                ErrorCode::PageNotFound,
                format!(
                    "{} has {full_pages} full page(s) and the head (page {full_pages}); \
                     page {page} is not written yet",
                    self.path()
                ),
            ));
        }
        let target = target(query.versions.as_deref())?;
        let events = self.read_page(state, page).await?;
        state.metrics.reads.fetch_add(1, Ordering::Relaxed);
        let events = state.schemas.convert(events, &target).await?;
        let full = page < full_pages;
        let personal = events
            .iter()
            .any(|e| eventfold_privacy::sealed::may_be_personal(&e.metadata));
        let body = self.render(page, full, as_head, &events, query)?;
        let etag = format!(
            "\"{}\"",
            &hex::encode(Sha256::digest(body.as_bytes()))[..32]
        );
        let cache = if personal {
            "private, no-cache"
        } else if !full || !matches!(target, Target::Stored) {
            "no-cache"
        } else if state.config.auth.is_some() {
            "private, max-age=31536000, immutable"
        } else {
            IMMUTABLE
        };
        let mut response = if matches_etag(headers, &etag) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            (
                [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
                body,
            )
                .into_response()
        };
        let set = response.headers_mut();
        set.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        // Only hex digits and quotes: always a header value.
        if let Ok(value) = HeaderValue::from_str(&etag) {
            set.insert(header::ETAG, value);
        }
        Ok(response)
    }

    /// The events of page `page`, oldest first.
    async fn read_page(&self, state: &AppState, page: u64) -> Result<Vec<RecordedEvent>, ApiError> {
        let (first, end) = (page * PAGE_EVENTS, (page + 1) * PAGE_EVENTS);
        let events = match &self.stream {
            Some(stream) => {
                let read = ReadStream::forward()
                    .from(Revision(first))
                    .limit(PAGE_EVENTS);
                let mut events = state.store.read_stream(stream, read).await?;
                events.retain(|e| e.revision.get() < end);
                events
            }
            None => {
                let read = ReadAll::from(Position(first), PAGE_EVENTS);
                let mut events = state.store.read_all(read).await?.events;
                events.retain(|e| e.position.get() < end);
                events
            }
        };
        Ok(events)
    }

    /// The Atom document of page `page` holding `events` (oldest first).
    fn render(
        &self,
        page: u64,
        full: bool,
        as_head: bool,
        events: &[RecordedEvent],
        query: &FeedQuery,
    ) -> Result<String, ApiError> {
        // Links keep the reader's conversion.
        let suffix = match &query.versions {
            Some(versions) => format!("?versions={}", utf8_percent_encode(versions, SEGMENT)),
            None => String::new(),
        };
        let name = match &self.stream {
            Some(stream) => format!("stream {stream}"),
            None => "$all".to_string(),
        };
        let id = match &self.stream {
            Some(stream) => format!(
                "urn:eventfold:feed:stream:{}",
                utf8_percent_encode(stream, SEGMENT)
            ),
            None => "urn:eventfold:feed:all".to_string(),
        };
        // The newest entry's time: a page's own, so a full page never changes. An
        // empty feed (a store with no events, or a head page just begun) takes the
        // epoch, which says nothing was updated.
        let updated = events.iter().map(|e| e.recorded_at).max().map_or_else(
            || "1970-01-01T00:00:00+00:00".to_string(),
            |t| t.to_rfc3339(),
        );
        let mut xml = String::with_capacity(512 + events.len() * 1024);
        xml.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        xml.push_str(
            "<feed xmlns=\"http://www.w3.org/2005/Atom\" \
             xmlns:fh=\"http://purl.org/syndication/history/1.0\">\n",
        );
        let _ = writeln!(xml, "  <id>{}</id>", text(&id));
        let _ = writeln!(xml, "  <title>eventfold: {}</title>", text(&name));
        let _ = writeln!(xml, "  <updated>{updated}</updated>");
        xml.push_str("  <author><name>eventfold</name></author>\n");
        xml.push_str("  <generator>eventfold</generator>\n");
        if full {
            xml.push_str("  <fh:archive/>\n");
        }
        let head = format!("{}{suffix}", self.path());
        let this = if as_head {
            head.clone()
        } else {
            format!("{}{suffix}", self.page_path(page))
        };
        link(&mut xml, "self", &this, "application/atom+xml");
        link(&mut xml, "current", &head, "application/atom+xml");
        if page > 0 {
            let prev = format!("{}{suffix}", self.page_path(page - 1));
            link(&mut xml, "prev-archive", &prev, "application/atom+xml");
        }
        if full {
            // The next page is full or the head; either way it has this address.
            let next = format!("{}{suffix}", self.page_path(page + 1));
            link(&mut xml, "next-archive", &next, "application/atom+xml");
        }
        for event in events.iter().rev() {
            entry(&mut xml, event)?;
        }
        xml.push_str("</feed>\n");
        Ok(xml)
    }
}

/// One `<entry>`: the event's id, place, type and time, a link to its own URI, and
/// the event itself as Base64-encoded `application/json` content.
fn entry(xml: &mut String, event: &RecordedEvent) -> Result<(), ApiError> {
    let json = serde_json::to_vec(&Recorded(event)).map_err(|e| {
        ApiError::new(
            ErrorCode::BackendError,
            format!(
                "event {}@{} cannot be written as JSON: {e}",
                event.revision, event.stream
            ),
        )
    })?;
    let uri = format!(
        "/streams/{}/{}",
        utf8_percent_encode(&event.stream, SEGMENT),
        event.revision
    );
    xml.push_str("  <entry>\n");
    let _ = writeln!(xml, "    <id>urn:uuid:{}</id>", event.id);
    let _ = writeln!(
        xml,
        "    <title>{}@{}</title>",
        event.revision,
        text(&event.stream)
    );
    let _ = writeln!(
        xml,
        "    <updated>{}</updated>",
        event.recorded_at.to_rfc3339()
    );
    let _ = writeln!(xml, "    <summary>{}</summary>", text(&event.event_type));
    let _ = writeln!(xml, "    <category term=\"{}\"/>", text(&event.event_type));
    xml.push_str("  ");
    link(xml, "alternate", &uri, "application/json");
    let _ = writeln!(
        xml,
        "    <content type=\"application/json\">{}</content>",
        base64::engine::general_purpose::STANDARD.encode(json)
    );
    xml.push_str("  </entry>\n");
    Ok(())
}

/// A `<link>` element on a line of its own.
fn link(xml: &mut String, rel: &str, href: &str, media_type: &str) {
    let _ = writeln!(
        xml,
        "  <link rel=\"{rel}\" href=\"{}\" type=\"{media_type}\"/>",
        text(href)
    );
}

/// `value` as XML character data or an attribute value: markup characters escaped, and
/// the characters XML 1.0 cannot hold at all (most control characters) replaced by
/// U+FFFD, since no escape can carry them.
fn text(value: &str) -> String {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r') || !(c < ' ' || c == '\u{fffe}' || c == '\u{ffff}')
    };
    let cleaned: String = value
        .chars()
        .map(|c| if allowed(c) { c } else { '\u{fffd}' })
        .collect();
    quick_xml::escape::escape(cleaned.as_str()).into_owned()
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_markup_and_replaces_what_xml_cannot_hold() {
        assert_eq!(text("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(text("x\u{1}y\tz"), "x\u{fffd}y\tz");
        assert_eq!(text("prix-é"), "prix-é");
    }

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_the_wildcard() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert!(matches_etag(&with("\"a\", \"b\""), "\"b\""));
        assert!(matches_etag(&with("W/\"b\""), "\"b\""));
        assert!(matches_etag(&with("*"), "\"b\""));
        assert!(!matches_etag(&with("\"a\""), "\"b\""));
        assert!(!matches_etag(&HeaderMap::new(), "\"b\""));
    }
}
