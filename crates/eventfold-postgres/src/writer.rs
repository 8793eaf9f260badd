//! Group commit on PostgreSQL.
//!
//! One writer task per store owns one connection. It takes every append waiting in
//! the queue and commits them in one transaction:
//!
//! 1. `BEGIN`, then `SELECT … FROM head FOR UPDATE`: the row lock that serializes
//!    every writer of the database, on this node and on every other. The statements
//!    after it run with fresh snapshots (read committed), so they see everything the
//!    previous lock holder committed.
//! 2. In the same round trip: the database clock, the last event of every stream the
//!    batch writes (its revision, and whether it is a tombstone), and the rows of
//!    every event id the batch gives.
//! 3. Each append is decided with the shared [`plan_append`] against those rows plus
//!    the appends accepted before it in the batch. A decision that needs a row not yet
//!    read (an event at some revision, for a re-send) fetches it and decides again.
//!    A refused append gets its own error; the others go on.
//! 4. One multi-row `INSERT` (arrays, binary) or, for large batches, a binary `COPY`;
//!    the new head; `pg_notify`; `COMMIT` — pipelined.
//!
//! A batch of one append to one stream (a lone writer) takes a fast path instead: one
//! statement that reads the stream's last event, checks the expectation, moves the
//! head, inserts and notifies, pipelined between `BEGIN` and `COMMIT` (one round trip).
//! Anything it cannot decide alone (a re-send, a reused id, a wrong expected version,
//! a race with another node) rolls back or writes nothing and goes the way above.
//!
//! Every append of the batch is answered after the commit returned. When the server
//! refuses the transaction itself (an SQL error: nothing was written), each append is
//! tried again alone, so that one bad append cannot fail its neighbours. When the
//! connection is lost, or the server ends the session, while the commit is in flight,
//! the outcome is unknown: the appends are answered with an I/O error that says so
//! (a re-send with the same ids is safe), and never tried again by the writer, since
//! an append without ids would get new ones and could be written twice.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use eventfold_core::plan::{
    AppendPlan, AppendView, CheckedWrites, EventLocation, PlannedWrite, StreamEnd, plan_append,
};
use eventfold_core::resend::Appended;
use eventfold_core::{
    AppendResult, CORRELATION_ID_KEY, Error, ExpectedVersion, Position, Result, Revision,
    STORE_STREAM, category_of,
};
use futures_util::{pin_mut, try_join};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};
use uuid::Uuid;

use crate::error::{commit_unknown, corrupted, is_refusal, pg_error};
use crate::store::Shared;

/// Batches of at least this many events are written with `COPY` rather than one
/// `INSERT` of arrays (which costs one round trip less and wins for small batches).
const COPY_EVENTS_MIN: usize = 512;

/// Rounds of "decide, fetch what was missing" for one append, beyond one per stream
/// it writes: a decision stops at the first row it lacks, and a re-send needs the
/// events its expected version points at in each stream (read as one range).
const PLAN_ROUNDS_EXTRA: usize = 4;

/// An append waiting for the writer.
pub(crate) struct Request {
    pub writes: CheckedWrites,
    /// Bytes of its events (stream names, types, data, metadata).
    pub bytes: u64,
    pub events: usize,
    pub reply: oneshot::Sender<Result<Appended>>,
}

/// Why a transaction did not commit.
enum Failure {
    /// The server refused a statement: the transaction rolled back, nothing written.
    Refused(Error),
    /// The connection failed; `Error` says whether a commit was in flight.
    Lost(Error),
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    requests: mpsc::Receiver<Request>,
    connection: Option<Connection>,
    /// A request taken from the queue that did not fit into the last batch.
    held: Option<Request>,
}

struct Connection {
    client: Client,
    task: JoinHandle<()>,
    statements: Statements,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Statements {
    begin: Statement,
    commit: Statement,
    rollback: Statement,
    lock_head: Statement,
    clock: Statement,
    stream_lasts: Statement,
    /// Not prepared: the rows of given ids are looked up with a plan made for the
    /// ids at hand. A prepared statement turns to a generic plan after a few runs,
    /// and one made while the table was small scans the whole table for ever after
    /// (an import or a store copy, whose events all carry ids, slowed down by the
    /// size of the table at every batch).
    ids: String,
    events_at: Statement,
    insert: Statement,
    append_one: Statement,
    set_head: Statement,
    notify: Statement,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, requests: mpsc::Receiver<Request>) -> Self {
        Writer {
            shared,
            requests,
            connection: None,
            held: None,
        }
    }

    /// Commits batches until every sender is gone and the queue is empty.
    pub(crate) async fn run(mut self) {
        let batch_bytes_max = self.shared.options.batch_bytes_max;
        let batch_events_max = self.shared.options.batch_events_max;
        loop {
            let first = match self.held.take() {
                Some(request) => request,
                None => match self.requests.recv().await {
                    Some(request) => request,
                    None => break,
                },
            };
            let mut bytes = first.bytes;
            let mut events = first.events;
            let mut batch = vec![first];
            while bytes < batch_bytes_max && events < batch_events_max {
                let Ok(request) = self.requests.try_recv() else {
                    break;
                };
                if bytes + request.bytes > batch_bytes_max
                    || events + request.events > batch_events_max
                {
                    self.held = Some(request);
                    break;
                }
                bytes += request.bytes;
                events += request.events;
                batch.push(request);
            }
            self.commit(batch).await;
            // Let the callers just answered run first: those that append again join
            // the next batch instead of trickling into one of their own.
            tokio::task::yield_now().await;
        }
    }

    async fn commit(&mut self, mut batch: Vec<Request>) {
        if let [request] = batch.as_slice()
            && let Some(outcome) = self.append_alone(&request.writes).await
        {
            if let Some(request) = batch.pop() {
                let _ = request.reply.send(outcome);
            }
            return;
        }
        let (writes, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|r| (r.writes, r.reply)).unzip();
        match self.transaction(&writes).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(Failure::Refused(error)) if writes.len() > 1 => {
                tracing::warn!(%error, appends = writes.len(), "PostgreSQL refused a group commit; committing its appends one by one");
                for (reply, write) in replies.into_iter().zip(writes) {
                    let outcome = match self.transaction(std::slice::from_ref(&write)).await {
                        Ok(mut outcomes) => outcomes.pop().unwrap_or(Err(Error::Closed)),
                        Err(Failure::Refused(e) | Failure::Lost(e)) => Err(e),
                    };
                    let _ = reply.send(outcome);
                }
            }
            Err(Failure::Refused(error) | Failure::Lost(error)) => {
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// The fast path of a lone append to one stream (what a single writer sends): one
    /// statement between `BEGIN` and `COMMIT`, all three pipelined, so one round trip
    /// where a batch takes two. It writes only when the stream's last event, read in
    /// the statement, lets the append through as it is; a re-send, a reused id, a
    /// wrong expected version or a race with another node's commit come back as
    /// "decide on the slow path" (`None`), which holds every rule of [`plan_append`].
    async fn append_alone(&mut self, writes: &CheckedWrites) -> Option<Result<Appended>> {
        let [write] = &writes[..] else { return None };
        if write.is_check()
            || write.recorded_at().is_some()
            || write.events.len() >= COPY_EVENTS_MIN
            || write
                .events
                .iter()
                .any(|e| StreamEnd::closes(&e.event_type))
        {
            return None;
        }
        let (kind, exact): (i32, i64) = match write.expected {
            ExpectedVersion::Any => (0, 0),
            ExpectedVersion::NoStream => (1, 0),
            ExpectedVersion::StreamExists => (2, 0),
            ExpectedVersion::Exact(revision) => (3, i64::try_from(revision.get()).ok()?),
        };
        let count = write.events.len() as i64;
        let events = &write.events;
        let ids: Vec<Uuid> = events
            .iter()
            .map(|e| e.id.unwrap_or_else(Uuid::now_v7))
            .collect();
        // Stored bit for bit, as on the slow path.
        let versions: Vec<i32> = events.iter().map(|e| e.version as i32).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let correlations: Vec<Option<String>> =
            events.iter().map(|e| correlation_of(&e.metadata)).collect();
        let data: Vec<&[u8]> = events.iter().map(|e| &e.data[..]).collect();
        let metadata: Vec<&[u8]> = events.iter().map(|e| &e.metadata[..]).collect();
        let category = category_of(&write.stream);
        let shared = self.shared.clone();
        let connection = match self.connection().await {
            Ok(connection) => connection,
            Err(error) => return Some(Err(error)),
        };
        let client = &connection.client;
        let st = &connection.statements;
        let params: [&(dyn ToSql + Sync); 12] = [
            &write.stream,
            &kind,
            &exact,
            &count,
            &category,
            &ids,
            &versions,
            &types,
            &correlations,
            &data,
            &metadata,
            &shared.channel,
        ];
        // Pipelined, so one round trip. A refused statement aborts the transaction and
        // the COMMIT then rolls back.
        let (begin, rows, commit) = futures_util::join!(
            client.execute(&st.begin, &[]),
            client.query(&st.append_one, &params),
            client.execute(&st.commit, &[]),
        );
        let lost = [
            begin.as_ref().err(),
            rows.as_ref().err(),
            commit.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        .find(|error| !is_refusal(error));
        if let Some(error) = lost {
            // Lost while the commit may have been on its way.
            let error = commit_unknown(error);
            self.connection = None;
            return Some(Err(error));
        }
        let row = match (rows, commit) {
            (Ok(rows), Ok(_)) => rows.into_iter().next()?,
            (Err(error), _) | (_, Err(error)) => {
                // Nothing was written: the transaction rolled back.
                tracing::debug!(%error, stream = %write.stream, "a lone append takes the slow path");
                return None;
            }
        };
        Some(alone_written(&shared, &row, count))
    }

    /// The writer's connection, opened (and its statements prepared) if needed.
    async fn connection(&mut self) -> Result<&Connection> {
        if self
            .connection
            .as_ref()
            .is_some_and(|c| c.client.is_closed())
        {
            self.connection = None;
        }
        if self.connection.is_none() {
            let (client, task) = self
                .shared
                .connect("writer", "opening the writer connection")
                .await?;
            // The writer's statements are prepared once and run thousands of times a
            // second: by default PostgreSQL plans each of the first executions anew
            // and keeps doing so when the generic plan looks dearer, which cost a
            // lone append about 0.2 ms of its 0.6 ms. Their generic plans are index
            // probes and are what the custom ones come to.
            client
                .batch_execute("SET plan_cache_mode = force_generic_plan")
                .await
                .map_err(|e| pg_error("setting up the writer connection", e))?;
            let statements = prepare(&client, &self.shared)
                .await
                .map_err(|e| pg_error("preparing the writer's statements", e))?;
            self.connection = Some(Connection {
                client,
                task,
                statements,
            });
        }
        self.connection.as_ref().ok_or(Error::Closed)
    }

    /// Decides and commits the appends of one batch; each gets its own outcome.
    async fn transaction(
        &mut self,
        batch: &[CheckedWrites],
    ) -> std::result::Result<Vec<Result<Appended>>, Failure> {
        let shared = self.shared.clone();
        let connection = self.connection().await.map_err(Failure::Lost)?;
        let outcome = decide_and_commit(&shared, connection, batch).await;
        if let Err(failure) = &outcome {
            let still_open = match failure {
                Failure::Refused(_) => rollback(connection).await,
                Failure::Lost(_) => false,
            };
            if !still_open {
                self.connection = None;
            }
        }
        outcome
    }
}

/// What the fast path's statement answered when it wrote: the first position, the
/// stream's last revision before (`NULL` for a new stream), the rows written.
fn alone_written(shared: &Shared, row: &tokio_postgres::Row, count: i64) -> Result<Appended> {
    let context = "reading what a lone append wrote";
    let first: i64 = row.try_get(0).map_err(|e| pg_error(context, e))?;
    let last: Option<i64> = row.try_get(1).map_err(|e| pg_error(context, e))?;
    let written: i64 = row.try_get(2).map_err(|e| pg_error(context, e))?;
    if written != count {
        return Err(corrupted(
            "events",
            format!("a lone append of {count} events wrote {written} rows"),
        ));
    }
    let first = stored_u64(first, "position")?;
    let first_revision = match last {
        None => Revision(0),
        Some(last) => Revision(stored_u64(last, "revision")?).next(),
    };
    let count = count as u64;
    shared.publish_head(first + count);
    Ok(Appended::Written(vec![AppendResult {
        first_revision,
        last_revision: Revision(first_revision.get() + count - 1),
        position: Position(first + count - 1),
    }]))
}

/// Ends a failed transaction; false when the connection is no longer usable.
async fn rollback(connection: &Connection) -> bool {
    match connection
        .client
        .execute(&connection.statements.rollback, &[])
        .await
    {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(%error, "rollback failed; the writer reconnects");
            false
        }
    }
}

/// Maps an error of a statement before the commit: a server refusal rolls back, a
/// lost connection (or a session the server ended) wrote nothing either (no commit
/// was sent).
fn before_commit(context: &str, error: tokio_postgres::Error) -> Failure {
    if is_refusal(&error) {
        Failure::Refused(pg_error(context, error))
    } else {
        Failure::Lost(pg_error(context, error))
    }
}

async fn prepare(
    client: &Client,
    shared: &Shared,
) -> std::result::Result<Statements, tokio_postgres::Error> {
    let sql = &shared.sql;
    Ok(Statements {
        begin: client.prepare("BEGIN").await?,
        commit: client.prepare("COMMIT").await?,
        rollback: client.prepare("ROLLBACK").await?,
        lock_head: client.prepare(&sql.lock_head).await?,
        clock: client.prepare("SELECT statement_timestamp()").await?,
        stream_lasts: client.prepare(&sql.stream_lasts).await?,
        ids: sql.ids.clone(),
        events_at: client.prepare(&sql.events_at).await?,
        insert: client.prepare(&sql.insert).await?,
        append_one: client.prepare(&sql.append_one).await?,
        set_head: client.prepare(&sql.set_head).await?,
        notify: client.prepare("SELECT pg_notify($1, $2)").await?,
    })
}

async fn decide_and_commit(
    shared: &Shared,
    connection: &Connection,
    batch: &[CheckedWrites],
) -> std::result::Result<Vec<Result<Appended>>, Failure> {
    let client = &connection.client;
    let st = &connection.statements;

    let mut streams: Vec<&str> = Vec::new();
    let mut seen_streams = HashSet::new();
    let mut ids: Vec<Uuid> = Vec::new();
    for write in batch.iter().flatten() {
        if seen_streams.insert(write.stream.as_str()) {
            streams.push(&write.stream);
        }
        ids.extend(write.events.iter().filter_map(|e| e.id));
    }
    ids.sort_unstable();
    ids.dedup();

    // One round trip: the lock first; the reads after it see every earlier commit.
    let context = "locking the head and reading the streams of a batch";
    let stream_params: [&(dyn ToSql + Sync); 1] = [&streams];
    let (_, head, clock, lasts, found) = try_join!(
        client.execute(&st.begin, &[]),
        client.query_one(&st.lock_head, &[]),
        client.query_one(&st.clock, &[]),
        client.query(&st.stream_lasts, &stream_params),
        async {
            if ids.is_empty() {
                Ok(Vec::new())
            } else {
                client.query(st.ids.as_str(), &[&ids]).await
            }
        },
    )
    .map_err(|e| before_commit(context, e))?;
    let read_only: Option<String> = head.try_get(1).map_err(|e| before_commit(context, e))?;
    let head: i64 = head.try_get(0).map_err(|e| before_commit(context, e))?;
    let first_position = u64::try_from(head)
        .map_err(|_| Failure::Refused(corrupted("head", format!("next_position is {head}"))))?;
    let recorded_at: DateTime<Utc> = clock.try_get(0).map_err(|e| before_commit(context, e))?;

    let mut committed = Committed {
        read_only,
        ..Committed::default()
    };
    committed
        .add_lasts(&lasts)
        .and_then(|()| committed.add_ids(&ids, &found))
        .map_err(Failure::Refused)?;

    let mut accepted = Accepted::default();
    let mut rows = Rows::default();
    let mut next = first_position;
    let mut outcomes = Vec::with_capacity(batch.len());
    for writes in batch {
        // A re-send is checked event by event from where it points: read that many
        // revisions at once when one is missing.
        let span = writes
            .iter()
            .map(|w| w.events.len() as u64)
            .sum::<u64>()
            .max(1);
        let rounds_max = 2 * writes.len() + PLAN_ROUNDS_EXTRA;
        let mut rounds = 0;
        let decision = loop {
            let view = View {
                committed: &committed,
                accepted: &accepted,
                missing: RefCell::default(),
            };
            let decision = plan_append(&view, writes.clone());
            let missing = view.missing.into_inner();
            if missing.is_empty() {
                break decision;
            }
            rounds += 1;
            if rounds >= rounds_max {
                break Err(Error::Backend(format!(
                    "deciding an append still lacked rows after {rounds} reads"
                )));
            }
            committed.fetch(client, st, missing, span).await?;
        };
        outcomes.push(match decision {
            Ok(AppendPlan::Write(planned)) => {
                accept(planned, &mut accepted, &mut rows, &mut next).map_err(Failure::Refused)
            }
            Ok(AppendPlan::AlreadyWritten(results)) => Ok(Ok(Appended::Resent(results))),
            Err(error) => Ok(Err(error)),
        }?);
    }

    if rows.is_empty() {
        // Nothing to write (every append refused or already written): release the lock.
        client
            .execute(&st.rollback, &[])
            .await
            .map_err(|e| Failure::Lost(pg_error("ending a batch that wrote nothing", e)))?;
        return Ok(outcomes);
    }

    let context = "writing a batch of events";
    // Rows with times of their own (an import) go by COPY, which writes one per row.
    let by_copy = rows.len() >= COPY_EVENTS_MIN || rows.0.iter().any(|r| r.recorded_at.is_some());
    if by_copy {
        rows.copy(client, &shared.sql.copy, recorded_at)
            .await
            .map_err(|e| before_commit(context, e))?;
    }
    let next_sql = i64::try_from(next).map_err(|_| {
        Failure::Refused(Error::Backend("the log is full (position overflow)".into()))
    })?;
    let payload = next.to_string();
    let read_only = accepted.read_only(&committed);
    let head_params: [&(dyn ToSql + Sync); 2] = [&next_sql, &read_only];
    let notify_params: [&(dyn ToSql + Sync); 2] = [&shared.channel, &payload];
    // Pipelined: the rows (unless copied), the head, the notification, the commit. A
    // refused statement aborts the transaction, and the COMMIT then rolls back.
    let (insert, set_head, notify, commit) = futures_util::join!(
        async {
            if by_copy {
                Ok(0)
            } else {
                rows.insert(client, &st.insert, recorded_at).await
            }
        },
        client.execute(&st.set_head, &head_params),
        client.execute(&st.notify, &notify_params),
        client.execute(&st.commit, &[]),
    );
    // A refusal (the session goes on) rolled the transaction back. Anything else (the
    // connection lost, or the session ended by the server: a restart, a fail-over,
    // `pg_terminate_backend`) came while the COMMIT was on its way, which may or may
    // not have committed.
    for (what, result) in [
        (context, insert),
        (context, set_head),
        (context, notify),
        ("committing a batch of events", commit),
    ] {
        if let Err(error) = result {
            return Err(if is_refusal(&error) {
                Failure::Refused(pg_error(what, error))
            } else {
                Failure::Lost(commit_unknown(&error))
            });
        }
    }
    shared.publish_head(next);
    Ok(outcomes)
}

/// Puts a decided append into the batch: positions, rows, and the view of later
/// appends in the same batch.
fn accept(
    planned: Vec<PlannedWrite>,
    accepted: &mut Accepted,
    rows: &mut Rows,
    next: &mut u64,
) -> Result<Result<Appended>> {
    let mut results = Vec::with_capacity(planned.len());
    for write in planned {
        let count = write.events.len() as u64;
        let stream: Arc<str> = Arc::from(write.stream.as_str());
        let category: Arc<str> = Arc::from(category_of(&write.stream));
        match write.events.last() {
            Some(e) if StreamEnd::closes(&e.event.event_type) => {
                let end = StreamEnd::of(&e.event.event_type, &e.event.data);
                accepted.ends.insert(write.stream.clone(), end);
            }
            _ => {
                accepted.ends.remove(&write.stream);
            }
        }
        let added = accepted.streams.entry(write.stream).or_default();
        for (i, event) in write.events.into_iter().enumerate() {
            let position = *next;
            *next += 1;
            let revision = write.first_revision.get() + i as u64;
            added.push((event.id, Position(position)));
            accepted.ids.insert(
                event.id,
                EventLocation {
                    stream: stream.to_string(),
                    revision: Revision(revision),
                    position: Position(position),
                },
            );
            rows.push(Row {
                recorded_at: event.recorded_at,
                position: to_i64(position, "position")?,
                revision: to_i64(revision, "revision")?,
                id: event.id,
                // Stored bit for bit: a u32 schema version above i32::MAX reads back
                // as itself through the same cast.
                version: event.event.version as i32,
                stream: stream.clone(),
                category: category.clone(),
                correlation: correlation_of(&event.event.metadata),
                event_type: event.event.event_type,
                data: event.event.data,
                metadata: event.event.metadata,
            });
        }
        results.push(AppendResult {
            first_revision: write.first_revision,
            last_revision: Revision(write.first_revision.get() + count - 1),
            position: Position(*next - 1),
        });
    }
    Ok(Ok(Appended::Written(results)))
}

fn to_i64(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        Error::Backend(format!(
            "{what} {value} does not fit in a PostgreSQL bigint"
        ))
    })
}

/// The correlation id in an event's metadata, as the index stream `$correlation-<id>`
/// names it (`IndexStream::contains` reads it the same way). A value with a NUL byte
/// cannot be stored as text, nor named in a stream name, so it is not indexed.
fn correlation_of(metadata: &[u8]) -> Option<String> {
    let key = CORRELATION_ID_KEY.as_bytes();
    // Most metadata has no correlation id: skip the parse unless the key may be there
    // (spelled out, or hidden behind a JSON escape).
    if !metadata.windows(key.len()).any(|w| w == key) && !metadata.contains(&b'\\') {
        return None;
    }
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(metadata).ok()?;
    let id = map.get(CORRELATION_ID_KEY)?.as_str()?;
    (!id.contains('\0')).then(|| id.to_string())
}

/// Committed rows read in this transaction (`None`: read, and absent).
#[derive(Default)]
struct Committed {
    /// Each stream's last revision.
    lasts: HashMap<String, Option<Revision>>,
    /// The streams of `lasts` whose last event closes them ([`StreamEnd`]).
    ends: HashMap<String, StreamEnd>,
    /// Events by (stream, revision).
    at: HashMap<(String, u64), Option<(Uuid, Position)>>,
    ids: HashMap<Uuid, Option<EventLocation>>,
    /// The head row's `read_only`: why the store is read-only, if it is.
    read_only: Option<String>,
}

impl Committed {
    fn add_lasts(&mut self, rows: &[tokio_postgres::Row]) -> Result<()> {
        for row in rows {
            let decode = |e| pg_error("reading the last events of streams", e);
            let stream: String = row.try_get(0).map_err(decode)?;
            let revision: Option<i64> = row.try_get(1).map_err(decode)?;
            let last = match revision {
                None => None,
                Some(revision) => {
                    let id: Uuid = row.try_get(2).map_err(decode)?;
                    let position: i64 = row.try_get(3).map_err(decode)?;
                    let closing: Option<String> = row.try_get(4).map_err(decode)?;
                    if let Some(event_type) = closing {
                        let data: Option<Vec<u8>> = row.try_get(5).map_err(decode)?;
                        let end = StreamEnd::of(&event_type, data.as_deref().unwrap_or_default());
                        self.ends.insert(stream.clone(), end);
                    }
                    let revision = stored_u64(revision, "revision")?;
                    self.at.insert(
                        (stream.clone(), revision),
                        Some((id, Position(stored_u64(position, "position")?))),
                    );
                    Some(Revision(revision))
                }
            };
            self.lasts.insert(stream, last);
        }
        Ok(())
    }

    fn add_ids(&mut self, asked: &[Uuid], rows: &[tokio_postgres::Row]) -> Result<()> {
        for id in asked {
            self.ids.insert(*id, None);
        }
        for row in rows {
            let decode = |e| pg_error("reading events by id", e);
            let id: Uuid = row.try_get(0).map_err(decode)?;
            let stream: String = row.try_get(1).map_err(decode)?;
            let revision: i64 = row.try_get(2).map_err(decode)?;
            let position: i64 = row.try_get(3).map_err(decode)?;
            self.ids.insert(
                id,
                Some(EventLocation {
                    stream,
                    revision: Revision(stored_u64(revision, "revision")?),
                    position: Position(stored_u64(position, "position")?),
                }),
            );
        }
        Ok(())
    }

    fn add_events_at(
        &mut self,
        asked: &[(String, u64)],
        span: u64,
        rows: &[tokio_postgres::Row],
    ) -> Result<()> {
        for (stream, first) in asked {
            for revision in *first..first.saturating_add(span) {
                self.at.insert((stream.clone(), revision), None);
            }
        }
        for row in rows {
            let decode = |e| pg_error("reading events at revisions", e);
            let stream: String = row.try_get(0).map_err(decode)?;
            let revision: i64 = row.try_get(1).map_err(decode)?;
            let id: Uuid = row.try_get(2).map_err(decode)?;
            let position: i64 = row.try_get(3).map_err(decode)?;
            self.at.insert(
                (stream, stored_u64(revision, "revision")?),
                Some((id, Position(stored_u64(position, "position")?))),
            );
        }
        Ok(())
    }

    /// Reads what a decision found missing, in one round trip: each missing event
    /// with the `span - 1` revisions after it.
    async fn fetch(
        &mut self,
        client: &Client,
        st: &Statements,
        mut missing: Missing,
        span: u64,
    ) -> std::result::Result<(), Failure> {
        missing.streams.sort_unstable();
        missing.streams.dedup();
        missing.ids.sort_unstable();
        missing.ids.dedup();
        missing.at.sort_unstable();
        missing.at.dedup();
        let at_streams: Vec<&str> = missing.at.iter().map(|(s, _)| s.as_str()).collect();
        // A revision beyond bigint cannot exist: such a bound matches nothing.
        let at_firsts: Vec<i64> = missing
            .at
            .iter()
            .map(|(_, first)| i64::try_from(*first).unwrap_or(i64::MAX))
            .collect();
        let at_stops: Vec<i64> = missing
            .at
            .iter()
            .map(|(_, first)| i64::try_from(first.saturating_add(span)).unwrap_or(i64::MAX))
            .collect();
        let context = "reading rows to decide an append";
        let (lasts, found, at) = try_join!(
            async {
                if missing.streams.is_empty() {
                    Ok(Vec::new())
                } else {
                    client.query(&st.stream_lasts, &[&missing.streams]).await
                }
            },
            async {
                if missing.ids.is_empty() {
                    Ok(Vec::new())
                } else {
                    client.query(st.ids.as_str(), &[&missing.ids]).await
                }
            },
            async {
                if missing.at.is_empty() {
                    Ok(Vec::new())
                } else {
                    client
                        .query(&st.events_at, &[&at_streams, &at_firsts, &at_stops])
                        .await
                }
            },
        )
        .map_err(|e| before_commit(context, e))?;
        self.add_lasts(&lasts)
            .and_then(|()| self.add_ids(&missing.ids, &found))
            .and_then(|()| self.add_events_at(&missing.at, span, &at))
            .map_err(Failure::Refused)
    }
}

fn stored_u64(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| corrupted("events table", format!("negative {what} {value}")))
}

/// What the batch accepted so far: events not yet written, seen by later decisions.
#[derive(Default)]
struct Accepted {
    /// New events per stream, following the stream's committed events.
    streams: HashMap<String, Vec<(Uuid, Position)>>,
    /// The streams of `streams` whose newest event closes them ([`StreamEnd`]).
    ends: HashMap<String, StreamEnd>,
    ids: HashMap<Uuid, EventLocation>,
}

impl Accepted {
    /// Whether the store is read-only after this batch: as the head row says, unless
    /// the batch wrote `$store` (a flip, or its undo).
    fn read_only(&self, committed: &Committed) -> Option<String> {
        if !self.streams.contains_key(STORE_STREAM) {
            return committed.read_only.clone();
        }
        self.ends
            .get(STORE_STREAM)
            .cloned()
            .and_then(StreamEnd::into_read_only)
    }
}

/// Rows a decision asked for and the transaction has not read yet.
#[derive(Default)]
struct Missing {
    streams: Vec<String>,
    ids: Vec<Uuid>,
    at: Vec<(String, u64)>,
}

impl Missing {
    fn is_empty(&self) -> bool {
        self.streams.is_empty() && self.ids.is_empty() && self.at.is_empty()
    }
}

/// The committed rows read so far, seen through the batch's accepted appends.
struct View<'a> {
    committed: &'a Committed,
    accepted: &'a Accepted,
    missing: RefCell<Missing>,
}

/// The error a view answers with when it lacks a row; the decision is thrown away and
/// made again once the row is read, so it never reaches a caller.
fn lacking() -> Error {
    Error::Backend("the append decision needs rows not read yet".into())
}

impl View<'_> {
    fn committed_last(&self, stream: &str) -> Result<Option<Revision>> {
        match self.committed.lasts.get(stream) {
            Some(last) => Ok(*last),
            None => {
                self.missing.borrow_mut().streams.push(stream.to_string());
                Err(lacking())
            }
        }
    }
}

impl AppendView for View<'_> {
    fn last_revision(&self, stream: &str) -> Result<Option<Revision>> {
        let committed = self.committed_last(stream)?;
        let added = self.accepted.streams.get(stream).map_or(0, Vec::len) as u64;
        Ok(match (committed, added) {
            (last, 0) => last,
            (None, added) => Some(Revision(added - 1)),
            (Some(last), added) => Some(Revision(last.get() + added)),
        })
    }

    fn find_id(&self, id: &Uuid) -> Result<Option<EventLocation>> {
        if let Some(location) = self.accepted.ids.get(id) {
            return Ok(Some(location.clone()));
        }
        match self.committed.ids.get(id) {
            Some(found) => Ok(found.clone()),
            None => {
                self.missing.borrow_mut().ids.push(*id);
                Err(lacking())
            }
        }
    }

    fn event_at(&self, stream: &str, revision: Revision) -> Result<Option<(Uuid, Position)>> {
        let committed_len = self.committed_last(stream)?.map_or(0, |r| r.get() + 1);
        if revision.get() >= committed_len {
            let i = usize::try_from(revision.get() - committed_len).unwrap_or(usize::MAX);
            return Ok(self
                .accepted
                .streams
                .get(stream)
                .and_then(|added| added.get(i))
                .copied());
        }
        match self.committed.at.get(&(stream.to_string(), revision.get())) {
            Some(found) => Ok(*found),
            None => {
                self.missing
                    .borrow_mut()
                    .at
                    .push((stream.to_string(), revision.get()));
                Err(lacking())
            }
        }
    }

    fn read_only(&self) -> Result<Option<String>> {
        // From the locked head row (no read of `$store` needed), as the batch left it.
        Ok(self.accepted.read_only(self.committed))
    }

    fn stream_end(&self, stream: &str, last: Revision) -> Result<StreamEnd> {
        // `last` is the stream's last revision: its newest accepted event when the
        // batch added some, else its committed last event.
        let committed_len = self.committed_last(stream)?.map_or(0, |r| r.get() + 1);
        let ends = if last.get() >= committed_len {
            &self.accepted.ends
        } else {
            &self.committed.ends
        };
        Ok(ends.get(stream).cloned().unwrap_or_default())
    }
}

/// One event row to write.
struct Row {
    /// Set when the row was recorded elsewhere first (a restore); else the commit's time.
    recorded_at: Option<DateTime<Utc>>,
    position: i64,
    revision: i64,
    id: Uuid,
    version: i32,
    stream: Arc<str>,
    event_type: String,
    category: Arc<str>,
    correlation: Option<String>,
    data: Bytes,
    metadata: Bytes,
}

/// The rows of a batch, in position order.
#[derive(Default)]
struct Rows(Vec<Row>);

impl Rows {
    fn push(&mut self, row: Row) {
        debug_assert!(
            self.0
                .last()
                .is_none_or(|last| last.position + 1 == row.position),
            "positions of a batch are consecutive"
        );
        self.0.push(row);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One `INSERT … SELECT FROM unnest(arrays)`: one statement, binary parameters.
    async fn insert(
        &self,
        client: &Client,
        statement: &Statement,
        recorded_at: DateTime<Utc>,
    ) -> std::result::Result<u64, tokio_postgres::Error> {
        let rows = &self.0;
        let positions: Vec<i64> = rows.iter().map(|r| r.position).collect();
        let revisions: Vec<i64> = rows.iter().map(|r| r.revision).collect();
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let versions: Vec<i32> = rows.iter().map(|r| r.version).collect();
        let streams: Vec<&str> = rows.iter().map(|r| &*r.stream).collect();
        let types: Vec<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
        let categories: Vec<&str> = rows.iter().map(|r| &*r.category).collect();
        let correlations: Vec<Option<&str>> =
            rows.iter().map(|r| r.correlation.as_deref()).collect();
        let data: Vec<&[u8]> = rows.iter().map(|r| &r.data[..]).collect();
        let metadata: Vec<&[u8]> = rows.iter().map(|r| &r.metadata[..]).collect();
        client
            .execute(
                statement,
                &[
                    &positions,
                    &revisions,
                    &ids,
                    &recorded_at,
                    &versions,
                    &streams,
                    &types,
                    &categories,
                    &correlations,
                    &data,
                    &metadata,
                ],
            )
            .await
    }

    /// A binary `COPY`: cheaper per row than the arrays of an `INSERT` for large
    /// batches, at the cost of one more round trip.
    async fn copy(
        &self,
        client: &Client,
        sql: &str,
        recorded_at: DateTime<Utc>,
    ) -> std::result::Result<u64, tokio_postgres::Error> {
        let sink = client.copy_in(sql).await?;
        let writer = BinaryCopyInWriter::new(
            sink,
            &[
                Type::INT8,
                Type::INT8,
                Type::UUID,
                Type::TIMESTAMPTZ,
                Type::INT4,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::BYTEA,
                Type::BYTEA,
            ],
        );
        pin_mut!(writer);
        for row in &self.0 {
            let stream: &str = &row.stream;
            let category: &str = &row.category;
            let data: &[u8] = &row.data;
            let metadata: &[u8] = &row.metadata;
            let at = row.recorded_at.unwrap_or(recorded_at);
            let values: [&(dyn ToSql + Sync); 11] = [
                &row.position,
                &row.revision,
                &row.id,
                &at,
                &row.version,
                &stream,
                &row.event_type,
                &category,
                &row.correlation,
                &data,
                &metadata,
            ];
            writer.as_mut().write(&values).await?;
        }
        writer.finish().await
    }
}

/// Writes `events` exactly as another store recorded them (positions, revisions, ids,
/// types, versions, data, metadata and `recorded_at`), then moves the head to
/// `next_position`, in one transaction under the head's lock: a restore from an archive.
/// Refused when the store holds anything at or after the first position written
/// (restore into an empty schema, page after page).
pub(crate) async fn write_recorded(
    shared: &Shared,
    client: &Client,
    events: &[eventfold_core::RecordedEvent],
    next_position: u64,
) -> Result<()> {
    let context = "writing restored events";
    let mut rows = Vec::with_capacity(events.len());
    let mut previous = None;
    for event in events {
        if previous.is_some_and(|p| p >= event.position.get())
            || event.position.get() >= next_position
        {
            return Err(Error::Backend(format!(
                "restored events out of order at position {}",
                event.position
            )));
        }
        previous = Some(event.position.get());
        rows.push(Row {
            recorded_at: Some(event.recorded_at),
            position: to_i64(event.position.get(), "position")?,
            revision: to_i64(event.revision.get(), "revision")?,
            id: event.id,
            version: event.version as i32,
            stream: Arc::from(event.stream.as_str()),
            event_type: event.event_type.clone(),
            category: Arc::from(category_of(&event.stream)),
            correlation: correlation_of(&event.metadata),
            data: event.data.clone(),
            metadata: event.metadata.clone(),
        });
    }
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| pg_error(context, e))?;
    let outcome = async {
        let row = client
            .query_one(&shared.sql.lock_head, &[])
            .await
            .map_err(|e| pg_error(context, e))?;
        let head: i64 = row.try_get(0).map_err(|e| pg_error(context, e))?;
        let mut read_only: Option<String> = row.try_get(1).map_err(|e| pg_error(context, e))?;
        // The restored `$store` decides, as its last event does on every backend.
        if let Some(last) = events.iter().rev().find(|e| e.stream == STORE_STREAM) {
            read_only = StreamEnd::of(&last.event_type, &last.data).into_read_only();
        }
        let first = events.first().map_or(next_position, |e| e.position.get());
        if u64::try_from(head).unwrap_or(u64::MAX) > first {
            return Err(Error::Backend(format!(
                "the PostgreSQL store already holds positions up to {head}; a restore writes \
                 from position {first} and needs an empty schema"
            )));
        }
        Rows(rows)
            .copy(client, &shared.sql.copy, Utc::now())
            .await
            .map_err(|e| pg_error(context, e))?;
        client
            .execute(
                &shared.sql.set_head,
                &[&to_i64(next_position, "position")?, &read_only],
            )
            .await
            .map_err(|e| pg_error(context, e))?;
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| pg_error(context, e))?;
            shared.publish_head(next_position);
            Ok(())
        }
        Err(error) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_are_read_like_the_index_stream_reads_them() {
        assert_eq!(
            correlation_of(br#"{"correlation_id":"c-1"}"#),
            Some("c-1".into())
        );
        assert_eq!(
            correlation_of(br#"{"correlation\u005fid":"c-2"}"#),
            Some("c-2".into())
        );
        assert_eq!(correlation_of(br#"{"correlation_id":7}"#), None);
        assert_eq!(correlation_of(br#"{"other":"x"}"#), None);
        assert_eq!(correlation_of(br#"{"correlation_id":"a\u0000b"}"#), None);
    }
}
