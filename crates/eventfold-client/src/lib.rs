//! [`HttpStore`]: the `EventStore` trait over the HTTP API of an eventfold server, so
//! code written against the trait (the framework, projections, the CLI) runs against a
//! remote store unchanged. It passes the same conformance suite as the embedded engine.
//!
//! ```no_run
//! use eventfold_client::HttpStore;
//! use eventfold_core::{EventData, EventStore, ExpectedVersion};
//! # async fn example() -> eventfold_core::Result<()> {
//! let store = HttpStore::new("http://127.0.0.1:2113")?;
//! let placed = EventData::json("OrderPlaced", &serde_json::json!({"total": 5}))?;
//! store.append("order-1", ExpectedVersion::NoStream, vec![placed]).await?;
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use async_trait::async_trait;
use bytes::Bytes;
use eventfold_core::{
    AllSlice, AppendResult, Direction, Error, EventStore, ExpectedVersion, Position, ReadAll,
    ReadStream, RecordedEvent, RemoteAdmin, RemoteDeleted, RemoteMetadata, Result, Revision,
    StoreMetric, StreamSummary, StreamWrite,
};
use eventfold_wire::{
    ErrorBody, EventsPage, Health, NewEvent, StreamHead, StreamsPage, SubscriptionMessage,
    TransactionResults, TransactionWrite,
};
use reqwest::{Client, Method, Response, Url};
use serde_json::Value;

/// Events asked for per request; the server answers at most 10,000.
const PAGE_EVENTS: u64 = 10_000;

mod tls;

/// An event store reached over HTTP or HTTPS.
#[derive(Debug, Clone)]
pub struct HttpStore {
    client: Client,
    base: Url,
    token: Option<String>,
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// A request that got no answer: the cause named down to its root (reqwest's own
/// text stops at "error sending request"), and what to check when nothing listens.
fn transport(error: reqwest::Error) -> Error {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(inner) = cause {
        let said = inner.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = inner.source();
    }
    if error.is_connect() {
        let server = error
            .url()
            .map(|url| format!("{}://{}", url.scheme(), url.authority()))
            .unwrap_or_else(|| "the server".into());
        Error::Backend(format!(
            "cannot connect to the eventfold server at {server} ({text}); is `eventfold \
             serve` running there, and is the URL (scheme, host, port) right?"
        ))
    } else {
        Error::Backend(format!("the eventfold server did not answer: {text}"))
    }
}

/// The URL of a server as a user writes it: `http://HOST:PORT`, `https://...`, or
/// `HOST:PORT` alone (plain HTTP is meant). Anything else is an error saying what to
/// write.
pub fn parse_server_url(text: &str) -> Result<Url> {
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let hint = "write it as http://HOST:PORT (e.g. http://127.0.0.1:2113) or https://HOST:PORT";
    let url = Url::parse(&with_scheme)
        .map_err(|e| Error::Backend(format!("'{text}' is not a server URL ({e}); {hint}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Backend(format!(
            "'{text}': a server is reached over http:// or https://, not {}://; {hint}",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) || url.cannot_be_a_base() {
        return Err(Error::Backend(format!("'{text}' names no host; {hint}")));
    }
    Ok(url)
}

/// The store error a server's error answer stands for: the same kind the server had
/// (`stream` names the stream when the body does not). An answer that is no error
/// body (a proxy's, say) is a `Backend` error naming the status and the text.
fn error_from(status: reqwest::StatusCode, bytes: &[u8], stream: &str) -> Error {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => body.into_error(status, stream),
        Err(_) => Error::Backend(format!(
            "server answered {status}: {}",
            String::from_utf8_lossy(bytes)
        )),
    }
}

fn encode(body: &impl serde::Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(body).map_err(|e| Error::Backend(format!("cannot encode the request: {e}")))
}

impl HttpStore {
    /// A store served at `base_url` (e.g. `http://127.0.0.1:2113`, `https://…`, or
    /// `127.0.0.1:2113` for plain HTTP; see [`parse_server_url`]).
    pub fn new(base_url: &str) -> Result<Self> {
        let base = parse_server_url(base_url)?;
        install_crypto_provider();
        let mut store = HttpStore {
            client: Client::new(),
            base,
            token: None,
            roots: Vec::new(),
        };
        store.rebuild()?;
        Ok(store)
    }

    /// Sends `Authorization: Bearer <token>` with every request, for a server with
    /// users (see `docs/http-api.md`, authentication).
    pub fn with_token(mut self, token: &str) -> Result<Self> {
        self.token = Some(token.to_string());
        self.rebuild()?;
        Ok(self)
    }

    /// Trusts the certificate(s) in `pem` for `https://` servers, beside the
    /// platform's roots: as CA certificates, and pinned (a server presenting exactly
    /// one of them is trusted, so a self-signed certificate works as curl's
    /// `--cacert` takes it, even one marked as a CA).
    pub fn with_root_certificate(mut self, pem: &[u8]) -> Result<Self> {
        self.roots.extend(tls::certificates_from_pem(pem)?);
        self.rebuild()?;
        Ok(self)
    }

    fn rebuild(&mut self) -> Result<()> {
        install_crypto_provider();
        let mut builder = Client::builder();
        if let Some(token) = &self.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| {
                    Error::Backend("the token contains characters a header cannot carry".into())
                })?;
            value.set_sensitive(true);
            builder = builder.default_headers(reqwest::header::HeaderMap::from_iter([(
                reqwest::header::AUTHORIZATION,
                value,
            )]));
        }
        if !self.roots.is_empty() {
            builder = builder.tls_backend_preconfigured(tls::client_config(&self.roots)?);
        }
        self.client = builder
            .build()
            .map_err(|e| Error::Backend(format!("cannot build the HTTP client: {e}")))?;
        Ok(())
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Registers a version of an event type in the server's schema registry
    /// (`PUT /schemas/{type}/{version}` with a definition `{"schema"?, "upcast"?,
    /// "downcast"?, ...}`); returns the server's answer.
    pub async fn put_schema(
        &self,
        event_type: &str,
        version: u32,
        definition: &Value,
    ) -> Result<Value> {
        let url = self.url(&["schemas", event_type, &version.to_string()]);
        let body = encode(definition)?;
        let request = self
            .client
            .request(Method::PUT, url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.call(request, "").await
    }

    /// The server's schema registry: every type (`None`) or the versions of one.
    pub async fn schemas(&self, event_type: Option<&str>) -> Result<Value> {
        let url = match event_type {
            Some(event_type) => self.url(&["schemas", event_type]),
            None => self.url(&["schemas"]),
        };
        self.call(self.client.get(url), "").await
    }

    /// Registers a projection (`PUT /projections/{name}`): an initial state and a jq
    /// handler per event type, which the server compiles before it keeps them.
    pub async fn put_projection(&self, name: &str, definition: &Value) -> Result<Value> {
        let url = self.url(&["projections", name]);
        let request = self
            .client
            .request(Method::PUT, url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(encode(definition)?);
        self.call(request, "").await
    }

    /// The server's registered projections (`GET /projections`).
    pub async fn projections(&self) -> Result<Value> {
        self.call(self.client.get(self.url(&["projections"])), "")
            .await
    }

    /// The state of `stream` as of `revision` (its last event when `None`) through the
    /// registered projection `projection` (`GET /streams/{stream}/state`):
    /// `{"state", "revision"}`.
    pub async fn state_of(
        &self,
        stream: &str,
        projection: &str,
        revision: Option<u64>,
    ) -> Result<Value> {
        let mut url = self.url(&["streams", stream, "state"]);
        url.query_pairs_mut().append_pair("projection", projection);
        if let Some(revision) = revision {
            url.query_pairs_mut()
                .append_pair("revision", &revision.to_string());
        }
        self.call(self.client.get(url), stream).await
    }

    /// An online scavenge of the server's store (`POST /admin/scavenge`,
    /// administrators only): the events its streams' metadata hides leave its storage
    /// while it keeps serving. With `dry_run`, only what would go is counted.
    pub async fn scavenge(&self, dry_run: bool) -> Result<eventfold_core::ScavengeSummary> {
        let mut url = self.url(&["admin", "scavenge"]);
        if dry_run {
            url.query_pairs_mut().append_pair("dry_run", "true");
        }
        let answer: eventfold_wire::ScavengeAnswer = self.call(self.client.post(url), "").await?;
        Ok(answer.into())
    }

    /// One archive pass of the server's log to object storage (`POST /admin/archive`,
    /// administrators only): to `to` (`s3://BUCKET/PREFIX`, with the server's
    /// credentials), or without it to the archive the server was started with.
    pub async fn archive(&self, to: Option<&str>) -> Result<eventfold_wire::ArchiveAnswer> {
        let body = eventfold_wire::ArchiveRequest {
            to: to.map(str::to_string),
        };
        self.post_json(&["admin", "archive"], &body).await
    }

    /// A stream surgery on the server's store (`POST /admin/surgery`, administrators
    /// only): copy-replace, split or join, checked before any write, recorded in
    /// `$surgery` under the authenticated user; with `dry_run` only checked.
    pub async fn surgery(
        &self,
        request: &eventfold_wire::SurgeryRequest,
    ) -> Result<eventfold_wire::SurgeryOutcome> {
        self.post_json(&["admin", "surgery"], request).await
    }

    /// Posts `body` as JSON to the route of `segments` and decodes the answer.
    async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &impl serde::Serialize,
    ) -> Result<T> {
        let body = serde_json::to_vec(body)
            .map_err(|e| eventfold_core::Error::Backend(format!("encoding the request: {e}")))?;
        self.call(
            self.client
                .post(self.url(segments))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
            "",
        )
        .await
    }

    /// Forgets a subject of personal data (`DELETE /subjects/{subject}`,
    /// administrators only): the server destroys its key, so its values read as
    /// `{"$redacted": true}` from now on, and appends `$subject-forgotten` to
    /// `$subjects`. Answers the notification's global position.
    pub async fn forget_subject(&self, subject: &str) -> Result<eventfold_core::Position> {
        let url = self.url(&["subjects", subject]);
        let answer: eventfold_wire::SubjectForgotten =
            self.call(self.client.delete(url), "").await?;
        Ok(eventfold_core::Position(answer.position))
    }

    /// Sends a request and decodes a successful JSON answer; an error answer becomes
    /// the store error it stands for (`stream` names the stream it concerns).
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        stream: &str,
    ) -> Result<T> {
        let response: Response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                Error::Backend(format!("server sent an answer that does not decode: {e}"))
            });
        }
        Err(error_from(status, &bytes, stream))
    }
}

/// Makes ring the process's TLS crypto provider unless it has one. eventfold builds
/// reqwest without a provider of its own (no aws-lc build), so a program that also
/// builds its own `reqwest::Client` calls this first (`HttpStore` does it itself).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[async_trait]
impl EventStore for HttpStore {
    async fn append_multi(&self, mut writes: Vec<StreamWrite>) -> Result<Vec<AppendResult>> {
        // The server checks names too, but an empty one cannot even be put in a URL.
        for write in &writes {
            if write.is_system() {
                // The wire carries client writes only: the server writes eventfold's
                // own events itself, behind its metadata, delete, group and schema
                // endpoints (which this store's `RemoteAdmin` calls).
                return Err(Error::InvalidEvent {
                    reason: format!(
                        "a system write (to '{}') cannot be sent to a server: only the \
                         server writes eventfold's own events",
                        write.stream
                    ),
                });
            }
            eventfold_core::validate_stream_name(&write.stream)?;
        }
        if writes.len() == 1 {
            let write = writes.remove(0);
            let request = self
                .client
                .request(Method::POST, self.url(&["streams", &write.stream]))
                .header("Expected-Version", write.expected.to_string())
                .header("Content-Type", "application/json")
                .body(encode(
                    &write
                        .events
                        .into_iter()
                        .map(NewEvent::from_event_data)
                        .collect::<Result<Vec<_>>>()?,
                )?);
            let result: AppendResult = self.call(request, &write.stream).await?;
            return Ok(vec![result]);
        }
        let first = writes.first().map(|w| w.stream.clone()).unwrap_or_default();
        let body = writes
            .into_iter()
            .map(TransactionWrite::from_stream_write)
            .collect::<Result<Vec<_>>>()?;
        let request = self
            .client
            .request(Method::POST, self.url(&["transactions"]))
            .header("Content-Type", "application/json")
            .body(encode(&body)?);
        let answer: TransactionResults = self.call(request, &first).await?;
        Ok(answer.results)
    }

    /// What `GET /streams/{stream}` shows: the server applies the stream's metadata
    /// (it offers no read past it), so a metadata layer over this store passes reads
    /// through (see [`EventStore::remote_admin`]).
    async fn read_stream(&self, stream: &str, options: ReadStream) -> Result<Vec<RecordedEvent>> {
        let direction = match options.direction {
            Direction::Forward => "forward",
            Direction::Backward => "backward",
        };
        let mut events = Vec::new();
        let mut from = options.from;
        loop {
            let want = (options.limit - events.len() as u64).min(PAGE_EVENTS);
            let mut url = self.url(&["streams", stream]);
            url.query_pairs_mut()
                .append_pair("limit", &want.to_string())
                .append_pair("direction", direction);
            if let Some(from) = from {
                url.query_pairs_mut()
                    .append_pair("from", &from.get().to_string());
            }
            if !options.resolve_links {
                url.query_pairs_mut().append_pair("resolve_links", "false");
            }
            let page: EventsPage = self.call(self.client.get(url), stream).await?;
            let next = page.next;
            let got = page.events.len() as u64;
            // A page cut short by the server's byte cap is not the end.
            let ended = page.end_of_stream.unwrap_or(got < want);
            events.extend(page.events);
            if ended || got == 0 || events.len() as u64 >= options.limit {
                return Ok(events);
            }
            match next {
                Some(next) => from = Some(Revision(next)),
                None => return Ok(events),
            }
        }
    }

    async fn read_all(&self, options: ReadAll) -> Result<AllSlice> {
        let mut events = Vec::new();
        let mut next = options.from;
        loop {
            let want = (options.limit - events.len() as u64).min(PAGE_EVENTS);
            let mut url = self.url(&["all"]);
            {
                let mut query = url.query_pairs_mut();
                query
                    .append_pair("from", &next.get().to_string())
                    .append_pair("limit", &want.to_string());
                let filter = &options.filter;
                if let Some(prefix) = &filter.stream_prefix {
                    query.append_pair("stream_prefix", prefix);
                }
                if let Some(category) = &filter.category {
                    query.append_pair("category", category);
                }
                if !filter.event_types.is_empty() {
                    query.append_pair("type", &filter.event_types.join(","));
                }
            }
            let page: EventsPage = self.call(self.client.get(url), "$all").await?;
            let end_of_log = page.end_of_log.unwrap_or(true);
            next = Position(page.next.unwrap_or(next.get()));
            events.extend(page.events);
            if end_of_log || events.len() as u64 >= options.limit || want == 0 {
                return Ok(AllSlice {
                    events,
                    next,
                    end_of_log,
                });
            }
        }
    }

    async fn stream_revision(&self, stream: &str) -> Result<Option<Revision>> {
        let head: StreamHead = self
            .call(
                self.client.get(self.url(&["streams", stream, "head"])),
                stream,
            )
            .await?;
        Ok(head.last_revision)
    }

    async fn list_streams(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamSummary>> {
        let mut streams = Vec::new();
        let mut after = after.map(str::to_string);
        while streams.len() < limit {
            let want = (limit - streams.len()).min(PAGE_EVENTS as usize);
            let mut url = self.url(&["streams"]);
            {
                let mut query = url.query_pairs_mut();
                query
                    .append_pair("prefix", prefix)
                    .append_pair("limit", &want.to_string());
                if let Some(after) = &after {
                    query.append_pair("after", after);
                }
            }
            let page: StreamsPage = self.call(self.client.get(url), "").await?;
            let got = page.streams.len();
            streams.extend(page.streams);
            match page.next {
                Some(next) if got == want => after = Some(next),
                _ => break,
            }
        }
        Ok(streams)
    }

    /// The server keeps no figures of its storage for clients: `/metrics` has them.
    fn storage_metrics(&self) -> Vec<StoreMetric> {
        Vec::new()
    }

    /// Metadata and deletion go to the server's admin routes: the server's own layers
    /// write the system events, which no wire format carries.
    fn remote_admin(&self) -> Option<&dyn RemoteAdmin> {
        Some(self)
    }

    async fn head_position(&self) -> Result<Option<Position>> {
        let health: Health = self
            .call(self.client.get(self.url(&["health"])), "")
            .await?;
        Ok(health.head_position)
    }

    async fn wait_for(&self, position: Position) -> Result<()> {
        // A live subscription from `position` answers with its first message as soon as
        // that position is committed.
        let mut url = self.url(&["subscribe", "all"]);
        url.query_pairs_mut()
            .append_pair("from", &position.get().to_string());
        let mut response = self.client.get(url).send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.map_err(transport)?;
            return Err(error_from(status, &bytes, "$all"));
        }
        let mut text = String::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.lines().any(SubscriptionMessage::is_id_line) {
                return Ok(());
            }
        }
        Err(Error::Backend("the server closed the subscription".into()))
    }
}

/// `GET /streams/{stream}/metadata`: the metadata document is kept as sent.
#[derive(serde::Deserialize)]
struct MetadataAnswer {
    revision: Option<u64>,
    metadata: Box<serde_json::value::RawValue>,
}

/// `DELETE /streams/{stream}`.
#[derive(serde::Deserialize)]
struct DeleteAnswer {
    last_revision: u64,
    position: u64,
}

#[async_trait]
impl RemoteAdmin for HttpStore {
    /// `GET /streams/{stream}/metadata`.
    async fn metadata(&self, stream: &str) -> Result<RemoteMetadata> {
        let record: MetadataAnswer = self
            .call(
                self.client.get(self.url(&["streams", stream, "metadata"])),
                stream,
            )
            .await?;
        Ok(RemoteMetadata {
            revision: record.revision.map(Revision),
            document: Bytes::from(record.metadata.get().as_bytes().to_vec()),
        })
    }

    /// `PUT /streams/{stream}/metadata`.
    async fn set_metadata(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        body: Bytes,
    ) -> Result<AppendResult> {
        let request = self
            .client
            .request(Method::PUT, self.url(&["streams", stream, "metadata"]))
            .header("Expected-Version", expected.to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.call(request, stream).await
    }

    /// `DELETE /streams/{stream}` (`?hard=true`).
    async fn delete(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        hard: bool,
    ) -> Result<RemoteDeleted> {
        let mut url = self.url(&["streams", stream]);
        if hard {
            url.query_pairs_mut().append_pair("hard", "true");
        }
        let request = self
            .client
            .request(Method::DELETE, url)
            .header("Expected-Version", expected.to_string());
        let deleted: DeleteAnswer = self.call(request, stream).await?;
        Ok(RemoteDeleted {
            last_revision: Revision(deleted.last_revision),
            position: Position(deleted.position),
        })
    }
}
