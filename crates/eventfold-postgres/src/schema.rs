//! The tables, their migrations, and the SQL the store runs, with the schema name
//! filled in once at connect time.
//!
//! Layout (version 1):
//!
//! - `events`: one row per event, keyed by its global `position`; `(stream, revision)`
//!   and `id` are unique; `correlation` (the metadata's correlation id, when it has
//!   one) is indexed with the position, so `$correlation-<id>` is an index range
//!   scan. `category` and `event_type` are columns without an index: every index
//!   costs each append about as much as the row itself, so `$ce-`, `$et-` and
//!   filtered pages of `$all` scan the log in position order and filter in the server
//!   (an operator who reads such views of rare categories often can add an index on
//!   `(category, position)` or `(event_type, position)`: the queries use it as is).
//!   `data` and `metadata` are the raw JSON bytes as appended (`bytea`), so reads
//!   give back exactly what was written, without a `jsonb` round trip. The names are
//!   `COLLATE "C"`: compared byte by byte, like Rust compares strings (stream
//!   listings come out in the same order as on every backend), and cheaper to index
//!   than a language's collation.
//! - `head`: one row, `next_position`, the position the next event gets. Every append
//!   transaction locks it (`FOR UPDATE`) before it decides anything and updates it
//!   before commit: see the crate documentation for why positions are gap-free. Also
//!   `read_only` (version 3): the reason of the `$store-read-only` event that ends
//!   `$store`, `NULL` while the store is writable; kept in the locked row so that the
//!   one-statement append of every node sees a flip atomically.
//! - `schema_migrations`: the versions applied, each with when.

use tokio_postgres::Client;

use eventfold_core::{Error, Result};
use eventfold_core::{STORE_READ_ONLY_EVENT_TYPE, STREAM_MOVED_EVENT_TYPE, TOMBSTONE_EVENT_TYPE};

use crate::error::pg_error;

/// The migrations, in order; version `i + 1` is `MIGRATIONS[i]`. `{s}` stands for the
/// quoted schema name. Never edit one that was released: add the next.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "events and head",
        r#"
CREATE TABLE {s}.events (
    position    bigint      NOT NULL PRIMARY KEY,
    revision    bigint      NOT NULL,
    id          uuid        NOT NULL,
    recorded_at timestamptz NOT NULL,
    version     integer     NOT NULL,
    stream      text        COLLATE "C" NOT NULL,
    event_type  text        COLLATE "C" NOT NULL,
    category    text        COLLATE "C" NOT NULL,
    correlation text        COLLATE "C",
    data        bytea       NOT NULL,
    metadata    bytea       NOT NULL
);
CREATE UNIQUE INDEX events_stream_revision ON {s}.events (stream, revision);
CREATE UNIQUE INDEX events_id ON {s}.events (id);
CREATE INDEX events_correlation ON {s}.events (correlation, position)
    WHERE correlation IS NOT NULL;
CREATE TABLE {s}.head (
    one           boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (one),
    next_position bigint  NOT NULL CHECK (next_position >= 0)
);
INSERT INTO {s}.head (one, next_position) VALUES (true, 0);
"#,
    ),
    (
        "subject keys of personal data",
        r#"
CREATE TABLE {s}.subject_keys (
    digest       bytea       NOT NULL PRIMARY KEY,
    wrapped      bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    forgotten_at timestamptz,
    CHECK ((wrapped IS NULL) = (forgotten_at IS NOT NULL))
);
CREATE TABLE {s}.subject_keys_check (
    one         boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (one),
    check_value bytea   NOT NULL
);
"#,
    ),
    (
        "read-only stores (a flip)",
        r#"
ALTER TABLE {s}.head ADD COLUMN read_only text;
"#,
    ),
];

/// The newest schema version this build knows.
pub(crate) const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The columns every event read selects, in the order [`crate::store::event_from_row`]
/// decodes them.
pub(crate) const EVENT_COLUMNS: &str =
    "position, stream, revision, id, event_type, version, data, metadata, recorded_at";

/// Creates the schema and applies the migrations it lacks, under a transaction-scoped
/// advisory lock keyed by the schema name, so that nodes starting together migrate
/// one after the other (the second finds everything done).
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<()> {
    let quoted = quote(schema);
    let context = format!("migrating schema {schema}");
    let tx = client
        .transaction()
        .await
        .map_err(|e| pg_error(&context, e))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('eventfold-migrations'), hashtext($1))",
        &[&schema],
    )
    .await
    .map_err(|e| pg_error(&context, e))?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {quoted};
         CREATE TABLE IF NOT EXISTS {quoted}.schema_migrations (
             version     integer     NOT NULL PRIMARY KEY,
             description text        NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(|e| pg_error(&context, e))?;
    let applied: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {quoted}.schema_migrations"),
            &[],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| pg_error(&context, e))?;
    if applied > SCHEMA_VERSION {
        return Err(Error::Backend(format!(
            "schema {schema} is at version {applied}, written by a newer eventfold; this build knows versions up to {SCHEMA_VERSION}"
        )));
    }
    for (i, (description, sql)) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let version = i as i32 + 1;
        let step = format!("{context}: version {version} ({description})");
        tx.batch_execute(&sql.replace("{s}", &quoted))
            .await
            .map_err(|e| pg_error(&step, e))?;
        tx.execute(
            &format!(
                "INSERT INTO {quoted}.schema_migrations (version, description) VALUES ($1, $2)"
            ),
            &[&version, description],
        )
        .await
        .map_err(|e| pg_error(&step, e))?;
        tracing::info!(schema, version, description, "applied migration");
    }
    tx.commit().await.map_err(|e| pg_error(&context, e))
}

/// A schema name as an SQL identifier. Names are validated to `[a-z_][a-z0-9_]*`, so
/// the quotes only guard against keywords.
pub(crate) fn quote(schema: &str) -> String {
    format!("\"{schema}\"")
}

/// The notification channel of a schema: commits send the new head on it.
pub(crate) fn channel(schema: &str) -> String {
    format!("{schema}_head")
}

/// The skip scan behind [`Sql::list_streams`], with an extra condition on `e.stream`.
fn list_streams(s: &str, bound: &str) -> String {
    format!(
        "WITH RECURSIVE names(stream) AS (
             (SELECT e.stream FROM {s}.events e
              WHERE e.stream >= $1 AND e.stream > $2{bound} ORDER BY e.stream LIMIT 1)
           UNION ALL
             (SELECT (SELECT e.stream FROM {s}.events e
                      WHERE e.stream > n.stream{bound} ORDER BY e.stream LIMIT 1)
              FROM names n WHERE starts_with(n.stream, $3))
         )
         SELECT n.stream, (SELECT max(e.revision) FROM {s}.events e WHERE e.stream = n.stream)
         FROM names n WHERE starts_with(n.stream, $3) LIMIT $4"
    )
}

/// The SQL of the store's statements, with the schema filled in.
#[derive(Debug)]
pub(crate) struct Sql {
    pub lock_head: String,
    pub read_head: String,
    pub set_head: String,
    pub stream_lasts: String,
    pub ids: String,
    pub events_at: String,
    pub insert: String,
    /// One append to one stream as a single statement (see the writer's fast path).
    pub append_one: String,
    pub copy: String,
    pub stream_forward: String,
    pub stream_backward: String,
    pub stream_exists: String,
    pub stream_revision: String,
    /// Streams by name from `$1` (inclusive) and after `$2`, while they start with
    /// `$3`, at most `$4`, each with its last revision: a skip scan of the
    /// `(stream, revision)` index, one probe per stream. The second form stops below
    /// `$5`.
    pub list_streams: String,
    pub list_streams_below: String,
    /// Index streams by column: (forward, backward, exists), for `category`,
    /// `event_type` and `correlation`.
    pub index_category: [String; 3],
    pub index_event_type: [String; 3],
    pub index_correlation: [String; 3],
    s: String,
}

impl Sql {
    pub(crate) fn new(schema: &str) -> Self {
        let s = quote(schema);
        let index = |column: &str| {
            [
                format!(
                    "SELECT {EVENT_COLUMNS} FROM {s}.events WHERE {column} = $1 AND position >= $2 ORDER BY position LIMIT $3"
                ),
                format!(
                    "SELECT {EVENT_COLUMNS} FROM {s}.events WHERE {column} = $1 AND position <= $2 ORDER BY position DESC LIMIT $3"
                ),
                format!("SELECT EXISTS (SELECT 1 FROM {s}.events WHERE {column} = $1)"),
            ]
        };
        Sql {
            lock_head: format!("SELECT next_position, read_only FROM {s}.head FOR UPDATE"),
            read_head: format!("SELECT next_position FROM {s}.head"),
            set_head: format!("UPDATE {s}.head SET next_position = $1, read_only = $2"),
            // The last event of each stream: its revision (the stream's length), its
            // id and position, and, when it may close the stream (a hard delete's
            // tombstone, a surgery's move marker: types that are constants of ours,
            // no user input), its type and data.
            stream_lasts: format!(
                "SELECT n.stream, e.revision, e.id, e.position,
                        CASE WHEN e.event_type IN ('{TOMBSTONE_EVENT_TYPE}', '{STREAM_MOVED_EVENT_TYPE}',
                                                   '{STORE_READ_ONLY_EVENT_TYPE}')
                             THEN e.event_type END,
                        CASE WHEN e.event_type IN ('{STREAM_MOVED_EVENT_TYPE}', '{STORE_READ_ONLY_EVENT_TYPE}')
                             THEN e.data END
                 FROM unnest($1::text[]) AS n(stream)
                 LEFT JOIN LATERAL (
                     SELECT revision, id, position, event_type, data FROM {s}.events
                     WHERE stream = n.stream ORDER BY revision DESC LIMIT 1
                 ) e ON true"
            ),
            ids: format!(
                "SELECT id, stream, revision, position FROM {s}.events WHERE id = ANY($1::uuid[])"
            ),
            // Events of ranges of revisions `[first, end)` of streams.
            events_at: format!(
                "SELECT w.stream, e.revision, e.id, e.position
                 FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS w(stream, first, stop)
                 JOIN {s}.events e
                   ON e.stream = w.stream AND e.revision >= w.first AND e.revision < w.stop"
            ),
            insert: format!(
                "INSERT INTO {s}.events
                     (position, revision, id, recorded_at, version, stream, event_type,
                      category, correlation, data, metadata)
                 SELECT p, r, i, $4, v, n, t, c, k, d, m
                 FROM unnest($1::bigint[], $2::bigint[], $3::uuid[], $5::int4[], $6::text[],
                             $7::text[], $8::text[], $9::text[], $10::bytea[], $11::bytea[])
                     AS x(p, r, i, v, n, t, c, k, d, m)"
            ),
            // One append to one stream, whole: the stream's last event, the guard
            // (not deleted or moved: the slow path tells which, and lets a system
            // write to a moved stream pass; the expectation `$2`/`$3` holds), the head moved on (the
            // row lock every writer takes; its new value is read after the lock, so
            // positions stay gap-free in commit order, and so is `read_only`: a flip
            // committed while this statement waited for the lock stops it), the rows,
            // the notification.
            // `$2` is 0 any, 1 no stream, 2 stream exists, 3 exact. The last event is
            // read in the statement's snapshot, which may predate the lock: anything
            // committed since takes the revision this statement would write, so the
            // `(stream, revision)` index refuses it and the writer decides again on
            // the slow path. No row back: the guard failed, nothing was written.
            append_one: format!(
                "WITH last AS (
                     SELECT revision,
                            event_type IN ('{TOMBSTONE_EVENT_TYPE}', '{STREAM_MOVED_EVENT_TYPE}') AS tombstone
                     FROM {s}.events WHERE stream = $1::text ORDER BY revision DESC LIMIT 1
                 ), found AS (
                     SELECT (SELECT revision FROM last) AS revision,
                            coalesce((SELECT tombstone FROM last), false) AS tombstone
                 ), allowed AS (
                     SELECT revision FROM found
                     WHERE NOT tombstone AND CASE $2::int4
                         WHEN 0 THEN true
                         WHEN 1 THEN revision IS NULL
                         WHEN 2 THEN revision IS NOT NULL
                         ELSE revision = $3::int8 END
                 ), moved AS (
                     UPDATE {s}.head SET next_position = next_position + $4::int8
                     FROM allowed WHERE {s}.head.read_only IS NULL
                     RETURNING next_position - $4::int8 AS first, allowed.revision AS last,
                               clock_timestamp() AS at
                 ), written AS (
                     INSERT INTO {s}.events
                         (position, revision, id, recorded_at, version, stream, event_type,
                          category, correlation, data, metadata)
                     SELECT moved.first + x.o - 1, coalesce(moved.last, -1) + x.o, x.i, moved.at,
                            x.v, $1::text, x.t, $5::text, x.k, x.d, x.m
                     FROM moved, unnest($6::uuid[], $7::int4[], $8::text[], $9::text[],
                                        $10::bytea[], $11::bytea[])
                         WITH ORDINALITY AS x(i, v, t, k, d, m, o)
                     RETURNING 1
                 )
                 SELECT moved.first, moved.last, (SELECT count(*) FROM written),
                        pg_notify($12::text, (moved.first + $4::int8)::text)
                 FROM moved"
            ),
            copy: format!(
                "COPY {s}.events
                     (position, revision, id, recorded_at, version, stream, event_type,
                      category, correlation, data, metadata)
                 FROM STDIN (FORMAT binary)"
            ),
            stream_forward: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events WHERE stream = $1 AND revision >= $2 ORDER BY revision LIMIT $3"
            ),
            stream_backward: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events WHERE stream = $1 AND revision <= $2 ORDER BY revision DESC LIMIT $3"
            ),
            stream_exists: format!("SELECT EXISTS (SELECT 1 FROM {s}.events WHERE stream = $1)"),
            stream_revision: format!("SELECT max(revision) FROM {s}.events WHERE stream = $1"),
            list_streams: list_streams(&s, ""),
            list_streams_below: list_streams(&s, " AND e.stream < $5"),
            index_category: index("category"),
            index_event_type: index("event_type"),
            index_correlation: index("correlation"),
            s,
        }
    }

    /// A page of `$all` from `$1`, at most `$2` events, below the head and below `$3`
    /// (the end of the scan window), with the filter's conditions (`prefix`,
    /// `category`, `types`: the parameters after `$3`, in this order, when present).
    /// The head, read in the same snapshot, comes last on every row; a page without
    /// events is one row of NULL event columns and the head.
    pub(crate) fn read_all(&self, prefix: bool, category: bool, types: bool) -> String {
        let s = &self.s;
        let mut conditions = String::new();
        let mut n = 3;
        if prefix {
            n += 1;
            conditions.push_str(&format!(" AND starts_with(stream, ${n})"));
        }
        if category {
            n += 1;
            conditions.push_str(&format!(" AND category = ${n}"));
        }
        if types {
            n += 1;
            conditions.push_str(&format!(" AND event_type = ANY(${n}::text[])"));
        }
        format!(
            "SELECT e.*, h.next_position
             FROM (SELECT next_position FROM {s}.head LIMIT 1) h
             LEFT JOIN LATERAL (
                 SELECT {EVENT_COLUMNS} FROM {s}.events
                 WHERE position >= $1 AND position < LEAST(h.next_position, $3){conditions}
                 ORDER BY position LIMIT $2
             ) e ON true"
        )
    }
}
