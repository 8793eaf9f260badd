//! PostgreSQL backend beside the embedded engine and beside Message DB on the same
//! database, in one run: batched appends (1,000 events of 200 bytes per call), single
//! appends (one writer, and 64 concurrent writers), and a full replay of `$all`.
//!
//! ```sh
//! EVENTFOLD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench -p eventfold-postgres --bench postgres
//! ```
//!
//! `EVENTFOLD_BENCH_POSTGRES_URL` takes precedence over `EVENTFOLD_TEST_POSTGRES_URL`.
//! The PostgreSQL figures use a schema of their own, dropped at the end; the embedded
//! engine a temporary directory (set `EVENTFOLD_BENCH_DIR` to put it on another disk).
//! `EVENTFOLD_BENCH_SECONDS` (default 4) is how long each timed figure runs.
//!
//! Message DB is installed for the run from its npm package (`npm pack
//! @eventide/message-db`, then its own `database/install.sh` with `psql`) into a
//! database of its own, `eventfold_bench_message_db`, dropped at the end; nothing of it
//! is kept in this repository. `EVENTFOLD_BENCH_MESSAGE_DB=0` leaves it out; without
//! `npm` or `psql` the run says so and goes on without it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventfold_core::{EventData, EventStore, ExpectedVersion, Position, ReadAll};
use eventfold_log::{LogOptions, LogStore};
use eventfold_postgres::{PostgresOptions, PostgresStore};

const EVENT_DATA_BYTES: usize = 200;
const BATCH_EVENTS: usize = 1_000;
const CONCURRENT_WRITERS: usize = 64;
const BATCH_WRITERS: usize = 4;
const REPLAY_PAGE_EVENTS: u64 = 4_096;

/// An event whose JSON data is exactly 200 bytes.
fn event(n: u64) -> EventData {
    let prefix = format!("{{\"n\":{n},\"pad\":\"");
    let pad = EVENT_DATA_BYTES - prefix.len() - 2;
    let data = format!("{prefix}{}\"}}", "x".repeat(pad));
    debug_assert_eq!(data.len(), EVENT_DATA_BYTES);
    EventData::from_json_bytes("Measured", data).expect("valid JSON")
}

/// Runs one task per context for `seconds`, each call made by `call(context, writer,
/// i)` and returning how many events it wrote; returns events per second.
async fn run_writers<C, F, Fut>(contexts: Vec<C>, seconds: Duration, call: F) -> f64
where
    C: Clone + Send + 'static,
    F: Fn(C, usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = contexts
        .into_iter()
        .enumerate()
        .map(|(w, context)| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut events = 0;
                let mut i = 0;
                while start.elapsed() < seconds {
                    events += call(context.clone(), w, i).await;
                    i += 1;
                }
                events
            })
        })
        .collect();
    let mut events = 0;
    for task in tasks {
        events += task.await.expect("writer task");
    }
    events as f64 / start.elapsed().as_secs_f64()
}

/// `writers` tasks appending to `store` for `seconds`; events per second.
async fn timed<S, F, Fut>(store: &Arc<S>, writers: usize, seconds: Duration, append: F) -> f64
where
    S: EventStore + 'static,
    F: Fn(Arc<S>, usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    run_writers(vec![store.clone(); writers], seconds, append).await
}

/// What a figure's writers send.
#[derive(Clone, Copy)]
enum Kind {
    /// 1,000 events per call, each call to a new stream.
    Batch,
    /// One event per call, each writer to its own stream.
    Single,
}

/// `writers` tasks appending `kind` to `store` for `seconds`; events per second.
async fn appends<S: EventStore + 'static>(
    store: &Arc<S>,
    kind: Kind,
    writers: usize,
    seconds: Duration,
) -> f64 {
    match kind {
        Kind::Batch => batch(store, writers, seconds).await,
        Kind::Single => single(store, writers, seconds).await,
    }
}

/// Appends of 1,000 events, each to a new stream, from `writers` tasks.
async fn batch<S: EventStore + 'static>(store: &Arc<S>, writers: usize, seconds: Duration) -> f64 {
    timed(store, writers, seconds, |store, w, i| async move {
        let events = (0..BATCH_EVENTS as u64).map(event).collect();
        store
            .append(&format!("batch-{w}-{i}"), ExpectedVersion::Any, events)
            .await
            .expect("batch append");
        BATCH_EVENTS as u64
    })
    .await
}

/// Appends of one event, each writer to its own stream.
async fn single<S: EventStore + 'static>(store: &Arc<S>, writers: usize, seconds: Duration) -> f64 {
    timed(store, writers, seconds, |store, w, i| async move {
        store
            .append(&format!("single-{w}"), ExpectedVersion::Any, vec![event(i)])
            .await
            .expect("single append");
        1
    })
    .await
}

/// Message DB's `write_message`, called the way its clients call it: one connection
/// per writer, one function call per message, each its own transaction; a batch is
/// 1,000 calls in one statement (one transaction).
mod message_db {
    use std::path::Path;
    use std::process::Command;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio_postgres::config::Host;
    use tokio_postgres::{Client, Config, NoTls, Statement};
    use uuid::Uuid;

    use super::{BATCH_EVENTS, Kind, event};

    /// The database it is installed into, dropped at the end of the run.
    pub const DATABASE: &str = "eventfold_bench_message_db";
    /// The package version measured; `EVENTFOLD_BENCH_MESSAGE_DB_VERSION` overrides.
    const VERSION: &str = "1.3.1";

    /// Installs Message DB into [`DATABASE`] (dropping an earlier one) and returns how
    /// to connect to it; `Err` says why it is left out.
    pub async fn install(url: &str, scratch: &Path) -> Result<Config, String> {
        if std::env::var("EVENTFOLD_BENCH_MESSAGE_DB").is_ok_and(|v| v == "0") {
            return Err("EVENTFOLD_BENCH_MESSAGE_DB=0".into());
        }
        let config: Config = url.parse().map_err(|e| format!("the database URL: {e}"))?;
        drop_database(&config).await?;
        let version = std::env::var("EVENTFOLD_BENCH_MESSAGE_DB_VERSION")
            .unwrap_or_else(|_| VERSION.to_string());
        run(
            Command::new("npm")
                .args([
                    "pack",
                    "--silent",
                    &format!("@eventide/message-db@{version}"),
                ])
                .current_dir(scratch),
            "npm pack @eventide/message-db",
        )?;
        let tarball = format!("eventide-message-db-{version}.tgz");
        run(
            Command::new("tar")
                .args(["xzf", &tarball])
                .current_dir(scratch),
            "unpacking the Message DB package",
        )?;
        let mut install = Command::new("bash");
        install
            .arg(scratch.join("package/database/install.sh"))
            .current_dir(scratch)
            .env("DATABASE_NAME", DATABASE);
        if let Some(Host::Tcp(host)) = config.get_hosts().first() {
            install.env("PGHOST", host);
        }
        if let Some(port) = config.get_ports().first() {
            install.env("PGPORT", port.to_string());
        }
        if let Some(user) = config.get_user() {
            install.env("PGUSER", user);
        }
        if let Some(password) = config.get_password() {
            install.env("PGPASSWORD", String::from_utf8_lossy(password).into_owned());
        }
        run(&mut install, "Message DB's install.sh")?;
        let mut config = config;
        config
            .dbname(DATABASE)
            .options("-c search_path=message_store,public");
        Ok(config)
    }

    fn run(command: &mut Command, what: &str) -> Result<(), String> {
        let output = command.output().map_err(|e| format!("{what}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// Drops [`DATABASE`], connected to the database of `config`.
    pub async fn drop_database(config: &Config) -> Result<(), String> {
        let client = connect(config).await?;
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
            .await
            .map_err(|e| format!("dropping {DATABASE}: {e}"))
    }

    pub async fn connect(config: &Config) -> Result<Client, String> {
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// `writers` connections writing for `seconds`, each with `sql` prepared once (as
    /// a client library does), each call by `write(client, statement, writer, i)`
    /// returning how many messages it wrote; messages per second.
    async fn timed<F, Fut>(
        config: &Config,
        writers: usize,
        seconds: Duration,
        sql: &str,
        write: F,
    ) -> f64
    where
        F: Fn(Arc<Client>, Statement, usize, u64) -> Fut + Send + Sync + Clone + 'static,
        Fut: std::future::Future<Output = u64> + Send,
    {
        let mut clients = Vec::with_capacity(writers);
        for _ in 0..writers {
            let client = connect(config).await.expect("connect to Message DB");
            let statement = client.prepare(sql).await.expect("prepare for Message DB");
            clients.push((Arc::new(client), statement));
        }
        super::run_writers(clients, seconds, move |(client, statement), w, i| {
            write(client, statement, w, i)
        })
        .await
    }

    fn data_of(n: u64) -> String {
        String::from_utf8(event(n).data.to_vec()).expect("JSON text")
    }

    /// `writers` connections writing `kind` for `seconds`; messages per second.
    pub async fn appends(config: &Config, kind: Kind, writers: usize, seconds: Duration) -> f64 {
        match kind {
            Kind::Batch => batch(config, writers, seconds).await,
            Kind::Single => single(config, writers, seconds).await,
        }
    }

    /// 1,000 messages per call to a new stream, in one transaction.
    async fn batch(config: &Config, writers: usize, seconds: Duration) -> f64 {
        let sql = "SELECT message_store.write_message(x.id, $2, 'Measured', x.data::jsonb)
                   FROM unnest($1::text[], $3::text[]) AS x(id, data)";
        timed(
            config,
            writers,
            seconds,
            sql,
            |client, statement, w, i| async move {
                let ids: Vec<String> = (0..BATCH_EVENTS)
                    .map(|_| Uuid::new_v4().to_string())
                    .collect();
                let data: Vec<String> = (0..BATCH_EVENTS as u64).map(data_of).collect();
                client
                    .execute(&statement, &[&ids, &format!("batch-{w}-{i}"), &data])
                    .await
                    .expect("Message DB batch");
                BATCH_EVENTS as u64
            },
        )
        .await
    }

    /// One message per call, each writer to its own stream.
    async fn single(config: &Config, writers: usize, seconds: Duration) -> f64 {
        let sql = "SELECT message_store.write_message($1, $2, 'Measured', $3::text::jsonb)";
        timed(
            config,
            writers,
            seconds,
            sql,
            |client, statement, w, i| async move {
                client
                    .execute(
                        &statement,
                        &[
                            &Uuid::new_v4().to_string(),
                            &format!("single-{w}"),
                            &data_of(i),
                        ],
                    )
                    .await
                    .expect("Message DB write_message");
                1
            },
        )
        .await
    }
}

/// Reads all of `$all` in pages; returns events per second and the count.
async fn replay<S: EventStore + 'static>(store: &Arc<S>) -> (f64, u64) {
    let start = Instant::now();
    let mut next = Position::START;
    let mut replayed = 0u64;
    loop {
        let page = store
            .read_all(ReadAll::from(next, REPLAY_PAGE_EVENTS))
            .await
            .expect("read $all");
        replayed += page.events.len() as u64;
        next = page.next;
        if page.end_of_log {
            break;
        }
    }
    (replayed as f64 / start.elapsed().as_secs_f64(), replayed)
}

fn main() {
    let Some(url) = std::env::var("EVENTFOLD_BENCH_POSTGRES_URL")
        .ok()
        .or_else(|| std::env::var("EVENTFOLD_TEST_POSTGRES_URL").ok())
        .filter(|url| !url.is_empty())
    else {
        eprintln!(
            "SKIPPED: the PostgreSQL benchmark needs EVENTFOLD_BENCH_POSTGRES_URL or EVENTFOLD_TEST_POSTGRES_URL"
        );
        return;
    };
    let seconds = Duration::from_secs_f64(
        std::env::var("EVENTFOLD_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(4.0),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = match std::env::var_os("EVENTFOLD_BENCH_DIR") {
            Some(base) => tempfile::tempdir_in(base),
            None => tempfile::tempdir(),
        }
        .expect("temporary directory");
        let log = Arc::new(LogStore::open(dir.path(), LogOptions::default()).expect("open log"));
        let schema = format!("eventfold_bench_{}", std::process::id());
        let options = PostgresOptions {
            schema: schema.clone(),
            ..PostgresOptions::default()
        };
        let pg = Arc::new(
            PostgresStore::connect(&url, options)
                .await
                .expect("connect to PostgreSQL"),
        );
        let scratch = tempfile::tempdir().expect("scratch directory");
        let message_db = match message_db::install(&url, scratch.path()).await {
            Ok(config) => Some(config),
            Err(why) => {
                eprintln!("SKIPPED Message DB: {why}");
                None
            }
        };
        eprintln!(
            "embedded engine in {}, PostgreSQL in schema {schema}{}; {seconds:?} per figure and backend",
            dir.path().display(),
            if message_db.is_some() {
                format!(", Message DB in database {}", message_db::DATABASE)
            } else {
                String::new()
            }
        );
        // Figure by figure, the embedded engine, then PostgreSQL, then Message DB, so
        // all meet the machine in the same state.
        let mut rows: Vec<Row> = Vec::new();
        for (kind, writers) in [
            (Kind::Batch, 1),
            (Kind::Batch, BATCH_WRITERS),
            (Kind::Single, 1),
            (Kind::Single, CONCURRENT_WRITERS),
        ] {
            let name = match kind {
                Kind::Batch => format!("batch append, 1,000 events per call, {writers} writer(s)"),
                Kind::Single => format!("single appends, {writers} concurrent writer(s)"),
            };
            eprintln!("{name}");
            let embedded = appends(&log, kind, writers, seconds).await;
            let postgres = appends(&pg, kind, writers, seconds).await;
            let message_db = match &message_db {
                Some(config) => Some(message_db::appends(config, kind, writers, seconds).await),
                None => None,
            };
            rows.push(Row { name, embedded, postgres, message_db });
        }
        let mut counts = (0, 0);
        for pass in ["first", "second"] {
            let name = format!("full replay of $all, {pass} pass");
            eprintln!("{name}");
            let (embedded, e_count) = replay(&log).await;
            let (postgres, p_count) = replay(&pg).await;
            counts = (e_count, p_count);
            rows.push(Row { name, embedded, postgres, message_db: None });
        }
        drop(log);
        drop(pg);
        drop_schema(&url, &schema).await;
        if message_db.is_some() {
            match url.parse() {
                Ok(config) => {
                    if let Err(e) = message_db::drop_database(&config).await {
                        eprintln!("could not drop {}: {e}", message_db::DATABASE);
                    }
                }
                Err(e) => eprintln!("could not drop {}: {e}", message_db::DATABASE),
            }
        }

        println!();
        println!("200-byte events; events per second");
        println!(
            "| figure | embedded (LogStore) | PostgreSQL | PostgreSQL / embedded | Message DB | PostgreSQL / Message DB |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for row in rows {
            let (m, ratio) = match row.message_db {
                Some(m) => (format!("{m:.0}"), format!("{:.2}", row.postgres / m)),
                None => ("—".to_string(), "—".to_string()),
            };
            println!(
                "| {} | {:.0} | {:.0} | {:.2} | {m} | {ratio} |",
                row.name,
                row.embedded,
                row.postgres,
                row.postgres / row.embedded
            );
        }
        println!(
            "(the replays read {} events from the embedded engine, {} from PostgreSQL)",
            counts.0, counts.1
        );
    });
}

/// One figure of the run: events per second of each store.
struct Row {
    name: String,
    embedded: f64,
    postgres: f64,
    message_db: Option<f64>,
}

async fn drop_schema(url: &str, schema: &str) {
    match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            if let Err(e) = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await
            {
                eprintln!("could not drop schema {schema}: {e}");
            }
        }
        Err(e) => eprintln!("could not drop schema {schema}: {e}"),
    }
}
