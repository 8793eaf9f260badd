//! `PostgresStore`: connecting (with migrations), reads, and the `EventStore`
//! implementation.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use eventfold_core::resend::{Appended, ResendCheck};
use eventfold_core::{
    AllSlice, AppendResult, Direction, Error, EventStore, IndexStream, Position, ReadAll,
    ReadStream, RecordedEvent, Result, Revision, StreamSummary, StreamWrite,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

use crate::error::{corrupted, pg_error, pool_error};
use crate::options::PostgresOptions;
use crate::schema::{Sql, channel, migrate};
use crate::writer::{Request, Writer};

/// Events a filtered `read_all` looks at in one call when the filter skips most of
/// them, so that one call's work stays bounded; the page then ends early with `next`
/// where it stopped.
const READ_ALL_SCAN_EVENTS_MAX: u64 = 1_000_000;

/// The head as this node knows it, and whether it can follow it.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeadState {
    /// The position the next event gets: every position below is committed.
    pub next: u64,
    /// Why the listener cannot follow the log right now, if it cannot.
    pub fault: Option<Arc<str>>,
}

/// What the store, its writer and its listener share.
pub(crate) struct Shared {
    pub config: tokio_postgres::Config,
    pub options: PostgresOptions,
    pub sql: Sql,
    pub channel: String,
    pub head: watch::Sender<HeadState>,
}

impl Shared {
    /// Raises the published head to `next` (never lowers it).
    pub(crate) fn publish_head(&self, next: u64) {
        self.head.send_if_modified(|state| {
            if next > state.next {
                state.next = next;
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn set_fault(&self, fault: Option<String>) {
        self.head.send_if_modified(|state| {
            let fault: Option<Arc<str>> = fault.map(Arc::from);
            if state.fault != fault {
                state.fault = fault;
                true
            } else {
                false
            }
        });
    }

    /// The connection settings of one of the store's own connections (`role`:
    /// `writer`, `listener`), named `<application name>-<role> <schema>` in
    /// `pg_stat_activity` (the application name of the URL, `eventfold` by default).
    pub(crate) fn config_for(&self, role: &str) -> tokio_postgres::Config {
        let mut config = self.config.clone();
        let base = self.config.get_application_name().unwrap_or("eventfold");
        let mut name = format!("{base}-{role} {}", self.options.schema);
        // PostgreSQL keeps 63 bytes of a name.
        while name.len() > 63 {
            name.pop();
        }
        config.application_name(&name);
        // A node that vanishes mid-transaction (a lost machine or network, where no
        // one closes the socket) must not hold the head lock for long: the server
        // ends a session idle in a transaction after a minute, and keepalives find a
        // dead peer within about a minute as well. The writer itself is never idle
        // inside a transaction for more than a round trip.
        let session = match config.get_options() {
            Some(options) => format!("{options} -c idle_in_transaction_session_timeout=60000"),
            None => "-c idle_in_transaction_session_timeout=60000".to_string(),
        };
        config.options(&session);
        config.keepalives_idle(std::time::Duration::from_secs(30));
        config.keepalives_interval(std::time::Duration::from_secs(10));
        config.keepalives_retries(3);
        config
    }

    /// Opens a connection of its own (`role`: see [`Shared::config_for`]) and spawns
    /// the task driving it.
    pub(crate) async fn connect(
        &self,
        role: &str,
        context: &str,
    ) -> Result<(Client, JoinHandle<()>)> {
        let (client, connection) = self
            .config_for(role)
            .connect(NoTls)
            .await
            .map_err(|e| pg_error(context, e))?;
        let task = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "a PostgreSQL connection failed");
            }
        });
        Ok((client, task))
    }
}

/// The event store on PostgreSQL: any number of stores (in one process or in many, on
/// many machines) on one database schema see one log.
///
/// ```no_run
/// use eventfold_core::{EventData, EventStore, ExpectedVersion, ReadStream};
/// use eventfold_postgres::{PostgresOptions, PostgresStore};
///
/// # async fn example() -> eventfold_core::Result<()> {
/// let store =
///     PostgresStore::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())
///         .await?;
/// let placed = EventData::json("OrderPlaced", &serde_json::json!({"total": 5}))?;
/// store.append("order-1", ExpectedVersion::NoStream, vec![placed]).await?;
/// let events = store.read_stream("order-1", ReadStream::forward()).await?;
/// assert_eq!(events[0].event_type, "OrderPlaced");
/// # Ok(())
/// # }
/// ```
pub struct PostgresStore {
    shared: Arc<Shared>,
    pool: Pool,
    requests: mpsc::Sender<Request>,
    listener: JoinHandle<()>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.shared.options.schema)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // The writer stops by itself once the queue it was given is empty.
        self.listener.abort();
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL or a `key=value`
    /// connection string; no TLS), creates or migrates the schema, and starts the
    /// writer and the listener. Must be called inside a tokio runtime.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<PostgresStore> {
        options.validate()?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::Backend(format!("invalid PostgreSQL connection URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout());
        }
        if config.get_application_name().is_none() {
            config.application_name("eventfold");
        }
        // Every statement of the store is short; JIT compilation (which the planner
        // picks from cost estimates, e.g. for a page of `$all`) costs far more than
        // it saves.
        let session = match config.get_options() {
            Some(options) => format!("{options} -c jit=off"),
            None => "-c jit=off".to_string(),
        };
        config.options(&session);
        let shared = Arc::new(Shared {
            sql: Sql::new(&options.schema),
            channel: channel(&options.schema),
            head: watch::Sender::new(HeadState::default()),
            config: config.clone(),
            options,
        });

        let (mut client, task) = shared.connect("writer", "connecting").await?;
        migrate(&mut client, &shared.options.schema).await?;
        let head: i64 = client
            .query_one(&shared.sql.read_head, &[])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| pg_error("reading the head", e))?;
        shared.publish_head(
            u64::try_from(head)
                .map_err(|_| corrupted("head", format!("next_position is {head}")))?,
        );
        drop(client);
        task.abort();

        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(shared.options.pool_connections_max)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(shared.options.connect_timeout()))
            .create_timeout(Some(shared.options.connect_timeout()))
            .build()
            .map_err(|e| Error::Backend(format!("building the PostgreSQL pool: {e}")))?;

        let (requests, queue) = mpsc::channel(shared.options.queue_appends_max);
        tokio::spawn(Writer::new(shared.clone(), queue).run());
        let listener = tokio::spawn(crate::listener::run(shared.clone()));
        Ok(PostgresStore {
            shared,
            pool,
            requests,
            listener,
        })
    }

    /// The quoted schema name, for statements built outside [`crate::schema::Sql`].
    pub(crate) fn quoted_schema(&self) -> String {
        crate::schema::quote(&self.shared.options.schema)
    }

    /// The schema this store lives in.
    pub fn schema(&self) -> &str {
        &self.shared.options.schema
    }

    /// The connection pool (shared with what lives beside the events, such as the
    /// subject keys).
    /// Writes `events` exactly as another store recorded them (positions, revisions,
    /// ids, types, versions, data, metadata and `recorded_at`) and moves the head to
    /// `next_position` (past the last, and past trailing gaps): how a restore from an
    /// archive fills a new schema, page by page, in position order. Refused when the
    /// schema already holds anything at or after the first position given. No append
    /// may run meanwhile (restore before any server uses the schema).
    pub async fn write_recorded(
        &self,
        events: &[eventfold_core::RecordedEvent],
        next_position: u64,
    ) -> Result<()> {
        let client = self.client("writing restored events").await?;
        crate::writer::write_recorded(&self.shared, &client, events, next_position).await
    }

    pub(crate) fn pool(&self) -> Pool {
        self.pool.clone()
    }

    pub(crate) async fn client(&self, context: &str) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| pool_error(context, e))
    }

    /// Checks sizes before an append reaches the writer, so an oversized append is
    /// refused without delaying anyone else's.
    fn request(
        &self,
        writes: Vec<StreamWrite>,
    ) -> Result<(Request, oneshot::Receiver<Result<Appended>>)> {
        // Checked here, on the caller's task: the writer task only decides.
        let writes = eventfold_core::plan::check_writes(writes)?;
        let options = &self.shared.options;
        let mut total = 0u64;
        let mut events = 0usize;
        for write in &writes {
            for event in &write.events {
                let len = (write.stream.len()
                    + event.event_type.len()
                    + event.data.len()
                    + event.metadata.len()) as u64;
                if len > options.event_bytes_max {
                    return Err(Error::TooLarge {
                        what: "event",
                        actual: len,
                        limit: options.event_bytes_max,
                    });
                }
                total += len;
                events += 1;
            }
        }
        if total > options.append_bytes_max {
            return Err(Error::TooLarge {
                what: "append",
                actual: total,
                limit: options.append_bytes_max,
            });
        }
        let (reply, answer) = oneshot::channel();
        Ok((
            Request {
                writes,
                bytes: total,
                events,
                reply,
            },
            answer,
        ))
    }

    /// Rows of a query that selects [`crate::schema::EVENT_COLUMNS`], as events.
    async fn query_events(
        &self,
        context: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<RecordedEvent>> {
        let client = self.client(context).await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| pg_error(context, e))?;
        let rows = client
            .query(&statement, params)
            .await
            .map_err(|e| pg_error(context, e))?;
        rows.iter().map(event_from_row).collect()
    }

    async fn query_scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(
        &self,
        context: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<T> {
        let client = self.client(context).await?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| pg_error(context, e))?;
        client
            .query_one(&statement, params)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| pg_error(context, e))
    }

    /// An index stream (`$ce-`, `$et-`, `$correlation-`) from its index: paged by
    /// position, the events as written; not found when the view has no event.
    async fn read_index(
        &self,
        name: &str,
        index: &IndexStream,
        options: ReadStream,
    ) -> Result<Vec<RecordedEvent>> {
        let (key, [forward, backward, exists]) = match index {
            IndexStream::Category(category) => (category, &self.shared.sql.index_category),
            IndexStream::EventType(event_type) => (event_type, &self.shared.sql.index_event_type),
            IndexStream::Correlation(id) => (id, &self.shared.sql.index_correlation),
        };
        let context = format!("reading {name}");
        let limit = clamp(options.limit);
        let events = match options.direction {
            Direction::Forward => {
                let from = clamp(options.from.map_or(0, Revision::get));
                self.query_events(&context, forward, &[key, &from, &limit])
                    .await?
            }
            Direction::Backward => {
                let from = clamp(options.from.map_or(u64::MAX, Revision::get));
                self.query_events(&context, backward, &[key, &from, &limit])
                    .await?
            }
        };
        if events.is_empty() && !self.query_scalar::<bool>(&context, exists, &[key]).await? {
            return Err(Error::StreamNotFound {
                stream: name.to_string(),
            });
        }
        Ok(events)
    }
}

/// A `u64` bound as a `bigint` parameter: values past `i64::MAX` are beyond every row.
fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn stored_u64(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| corrupted("events table", format!("negative {what} {value}")))
}

/// Decodes a row whose first columns are [`crate::schema::EVENT_COLUMNS`].
pub(crate) fn event_from_row(row: &tokio_postgres::Row) -> Result<RecordedEvent> {
    let decode = |e| pg_error("decoding an event row", e);
    let position: i64 = row.try_get(0).map_err(decode)?;
    let stream: String = row.try_get(1).map_err(decode)?;
    let revision: i64 = row.try_get(2).map_err(decode)?;
    let id: Uuid = row.try_get(3).map_err(decode)?;
    let event_type: String = row.try_get(4).map_err(decode)?;
    let version: i32 = row.try_get(5).map_err(decode)?;
    let data: &[u8] = row.try_get(6).map_err(decode)?;
    let metadata: &[u8] = row.try_get(7).map_err(decode)?;
    let recorded_at: DateTime<Utc> = row.try_get(8).map_err(decode)?;
    Ok(RecordedEvent {
        stream,
        revision: Revision(stored_u64(revision, "revision")?),
        position: Position(stored_u64(position, "position")?),
        id,
        event_type,
        // The writer stores the u32 bit for bit in an int4.
        version: version as u32,
        data: Bytes::copy_from_slice(data),
        metadata: Bytes::copy_from_slice(metadata),
        recorded_at,
    })
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn append_multi(&self, writes: Vec<StreamWrite>) -> Result<Vec<AppendResult>> {
        let check = ResendCheck::of(&writes);
        let (request, answer) = self.request(writes)?;
        self.requests
            .send(request)
            .await
            .map_err(|_| Error::Closed)?;
        let appended = answer.await.map_err(|_| Error::Closed)??;
        ResendCheck::confirm(check, appended, self).await
    }

    async fn read_stream(&self, stream: &str, options: ReadStream) -> Result<Vec<RecordedEvent>> {
        if let Some(index) = IndexStream::parse(stream) {
            return self.read_index(stream, &index, options).await;
        }
        let sql = &self.shared.sql;
        let context = format!("reading stream '{stream}'");
        let limit = clamp(options.limit);
        // Revisions are dense (0..len), so "from, then at most `limit`" is exactly
        // `ReadStream::revisions`, without reading the length first.
        let events = match options.direction {
            Direction::Forward => {
                let from = clamp(options.from.map_or(0, Revision::get));
                self.query_events(&context, &sql.stream_forward, &[&stream, &from, &limit])
                    .await?
            }
            Direction::Backward => {
                let from = clamp(options.from.map_or(u64::MAX, Revision::get));
                self.query_events(&context, &sql.stream_backward, &[&stream, &from, &limit])
                    .await?
            }
        };
        if events.is_empty()
            && !self
                .query_scalar::<bool>(&context, &sql.stream_exists, &[&stream])
                .await?
        {
            return Err(Error::StreamNotFound {
                stream: stream.to_string(),
            });
        }
        Ok(events)
    }

    async fn read_all(&self, options: ReadAll) -> Result<AllSlice> {
        let filter = &options.filter;
        let context = "reading $all";
        let from = clamp(options.from.get());
        let limit = clamp(options.limit);
        let window_end = if filter.is_empty() {
            i64::MAX
        } else {
            from.saturating_add(clamp(READ_ALL_SCAN_EVENTS_MAX))
        };
        let sql = self.shared.sql.read_all(
            filter.stream_prefix.is_some(),
            filter.category.is_some(),
            !filter.event_types.is_empty(),
        );
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&from, &limit, &window_end];
        if let Some(prefix) = &filter.stream_prefix {
            params.push(prefix);
        }
        if let Some(category) = &filter.category {
            params.push(category);
        }
        if !filter.event_types.is_empty() {
            params.push(&filter.event_types);
        }
        let rows = {
            let client = self.client(context).await?;
            let statement = client
                .prepare_cached(&sql)
                .await
                .map_err(|e| pg_error(context, e))?;
            client
                .query(&statement, &params)
                .await
                .map_err(|e| pg_error(context, e))?
        };
        // One row at least: the head, read in the same snapshot as the events (a
        // head read later could count events this page did not see).
        let head = match rows.first() {
            Some(row) => row.try_get::<_, i64>(9).map_err(|e| pg_error(context, e))?,
            None => {
                return Err(Error::Backend(format!(
                    "{context}: the head row is missing"
                )));
            }
        };
        let head = stored_u64(head, "head")?;
        self.shared.publish_head(head);
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let position: Option<i64> = row.try_get(0).map_err(|e| pg_error(context, e))?;
            if position.is_some() {
                events.push(event_from_row(row)?);
            }
        }
        // Like every backend: a full page resumes after its last event; otherwise the
        // page looked at everything up to the head (or to the end of the scan window).
        let next = match events.last() {
            _ if options.limit == 0 => options.from.get(),
            Some(last) if events.len() as u64 >= options.limit => last.position.get() + 1,
            _ => {
                let window_end = u64::try_from(window_end).unwrap_or(u64::MAX);
                options.from.get().max(head.min(window_end))
            }
        };
        Ok(AllSlice {
            events,
            next: Position(next),
            end_of_log: next >= head,
        })
    }

    async fn stream_revision(&self, stream: &str) -> Result<Option<Revision>> {
        let last: Option<i64> = self
            .query_scalar(
                &format!("reading the revision of stream '{stream}'"),
                &self.shared.sql.stream_revision,
                &[&stream],
            )
            .await?;
        last.map(|r| stored_u64(r, "revision").map(Revision))
            .transpose()
    }

    async fn list_streams(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamSummary>> {
        // Names sort byte by byte (`COLLATE "C"`), so system streams (`$…`) are one
        // block, from "$" up to "%": a listing without the `$` prefix skips it.
        let after = after.unwrap_or("");
        let ranges: &[(&str, Option<&str>)] = if prefix.is_empty() {
            &[("", Some("$")), ("%", None)]
        } else {
            &[(prefix, None)]
        };
        let context = "listing streams";
        let mut streams = Vec::new();
        for (from, below) in ranges {
            let room = limit.saturating_sub(streams.len());
            if room == 0 {
                break;
            }
            let room = i64::try_from(room).unwrap_or(i64::MAX);
            let client = self.client(context).await?;
            let rows = match below {
                None => {
                    let statement = client
                        .prepare_cached(&self.shared.sql.list_streams)
                        .await
                        .map_err(|e| pg_error(context, e))?;
                    client
                        .query(&statement, &[from, &after, &prefix, &room])
                        .await
                }
                Some(below) => {
                    let statement = client
                        .prepare_cached(&self.shared.sql.list_streams_below)
                        .await
                        .map_err(|e| pg_error(context, e))?;
                    client
                        .query(&statement, &[from, &after, &prefix, &room, below])
                        .await
                }
            }
            .map_err(|e| pg_error(context, e))?;
            for row in rows {
                let stream: String = row.try_get(0).map_err(|e| pg_error(context, e))?;
                let last: i64 = row.try_get(1).map_err(|e| pg_error(context, e))?;
                streams.push(StreamSummary {
                    stream,
                    last_revision: Revision(stored_u64(last, "revision")?),
                });
            }
        }
        Ok(streams)
    }

    fn storage_metrics(&self) -> Vec<eventfold_core::StoreMetric> {
        Vec::new()
    }

    async fn head_position(&self) -> Result<Option<Position>> {
        let next: i64 = self
            .query_scalar("reading the head", &self.shared.sql.read_head, &[])
            .await?;
        let next = stored_u64(next, "head")?;
        self.shared.publish_head(next);
        Ok(next.checked_sub(1).map(Position))
    }

    async fn wait_for(&self, position: Position) -> Result<()> {
        let mut head = self.shared.head.subscribe();
        loop {
            {
                let state = head.borrow_and_update();
                if state.next > position.get() {
                    return Ok(());
                }
                if let Some(fault) = &state.fault {
                    return Err(Error::io(
                        "following the log on PostgreSQL",
                        std::io::Error::new(std::io::ErrorKind::NotConnected, fault.to_string()),
                    ));
                }
            }
            head.changed().await.map_err(|_| Error::Closed)?;
        }
    }
}
