//! `eventfold bench postgres`: the PostgreSQL backend beside Message DB on the same
//! database, and beside the embedded engine on the data directory's disk, in one run:
//! batched appends (1,000 events of 200 bytes per call), single appends (one writer,
//! and 64 concurrent writers), and full replays of `$all`. Figure by figure, the
//! embedded engine, then PostgreSQL, then Message DB, so all meet the machine in the
//! same state.
//!
//! Our store is written in a schema of its own, dropped at the end. Message DB is
//! installed for the run from its npm package (`npm pack @eventide/message-db`, then the
//! package's own `database/install.sh` through `psql`) into a database of its own,
//! dropped at the end; none of its code is kept in this repository. Without `npm` or
//! `psql` (or with `--without-message-db`) the run says so and goes on without it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use eventfold_core::{EventData, EventStore, ExpectedVersion, Position, ReadAll};
use eventfold_log::{LogOptions, LogStore};
use eventfold_postgres::{PostgresOptions, PostgresStore};
use serde::Serialize;

use super::bench::Figure;

const BATCH_EVENTS: usize = 1_000;
const CONCURRENT_WRITERS: usize = 64;
const BATCH_WRITERS: usize = 4;
const REPLAY_PAGE_EVENTS: u64 = 4_096;
/// Our targets (docs/performance.md), as ratios to Message DB in the same run.
const TARGET_SINGLE_WRITER: f64 = 1.0;
const TARGET_CONCURRENT_WRITERS: f64 = 5.0;
const TARGET_BATCH: f64 = 5.0;
/// Our target for a cold replay of `$all`, events per second.
const TARGET_REPLAY: f64 = 300_000.0;

/// Measure the PostgreSQL backend beside Message DB and the embedded engine.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The PostgreSQL database to measure (postgres://user@host/db); our store goes in
    /// a schema of its own and Message DB in a database of its own, both dropped after.
    #[arg(long, env = "EVENTFOLD_POSTGRES", value_name = "URL")]
    postgres: String,
    /// Data directory for the embedded engine's side of the run (DIR/bench-postgres).
    #[arg(long, env = "EVENTFOLD_DATA", value_name = "DIR")]
    data: PathBuf,
    /// Seconds each timed figure runs, per backend.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Leave Message DB out (its figures and the ratios to it).
    #[arg(long)]
    without_message_db: bool,
    /// The version of the `@eventide/message-db` npm package to measure.
    #[arg(long, default_value = "1.3.1", value_name = "VERSION")]
    message_db_version: String,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
enum Kind {
    /// 1,000 events per call, each call to a new stream.
    Batch,
    /// One event per call, each writer to its own stream.
    Single,
}

/// What a figure measures.
#[derive(Debug, Clone, Copy, Serialize)]
enum Measured {
    Appends {
        kind: Kind,
        writers: usize,
    },
    /// A full replay of `$all`; the first pass is the cold one.
    Replay {
        first_pass: bool,
    },
}

/// One figure of the run: events per second of each store.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    measured: Measured,
    embedded: f64,
    postgres: f64,
    message_db: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    seconds_per_figure: f64,
    /// Why Message DB is not in the run, when it is not.
    message_db_left_out: Option<String>,
    rows: Vec<Row>,
    replayed_embedded: u64,
    replayed_postgres: u64,
}

pub fn run(args: Args, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let report = runtime.block_on(measure(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("200-byte events; events per second");
    println!(
        "| figure | embedded (LogStore) | PostgreSQL | PostgreSQL / embedded | Message DB | PostgreSQL / Message DB |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for row in &report.rows {
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
        "(the replays read {} events from the embedded engine, {} from PostgreSQL)\n",
        report.replayed_embedded, report.replayed_postgres
    );
    if let Some(why) = &report.message_db_left_out {
        println!("Message DB left out: {why}\n");
    }
    super::bench::print_figures(&report.figures());
    Ok(ExitCode::SUCCESS)
}

impl Report {
    /// Why Message DB is not in the run, when it is not.
    pub(super) fn message_db_left_out(&self) -> Option<&str> {
        self.message_db_left_out.as_deref()
    }

    /// Each figure with a target, beside Message DB of the same run (or, without it,
    /// beside the embedded engine, with no verdict).
    pub(super) fn figures(&self) -> Vec<Figure> {
        let mut figures = Vec::new();
        for row in &self.rows {
            let name = format!("PostgreSQL: {}", row.name);
            let target = match row.measured {
                Measured::Replay { first_pass } => {
                    figures.push(Figure {
                        name,
                        value: row.postgres,
                        unit: "events/s",
                        ratio: row.postgres / TARGET_REPLAY,
                        ratio_of: "events/s ÷ the target's 300,000/s",
                        target: if first_pass {
                            "≥ 300,000 events/s".into()
                        } else {
                            String::new()
                        },
                        met: first_pass.then_some(row.postgres >= TARGET_REPLAY),
                    });
                    continue;
                }
                Measured::Appends {
                    kind: Kind::Single,
                    writers: 1,
                } => Some(TARGET_SINGLE_WRITER),
                Measured::Appends {
                    kind: Kind::Single, ..
                } => Some(TARGET_CONCURRENT_WRITERS),
                Measured::Appends {
                    kind: Kind::Batch,
                    writers: 1,
                } => Some(TARGET_BATCH),
                Measured::Appends {
                    kind: Kind::Batch, ..
                } => None,
            };
            figures.push(match row.message_db {
                Some(message_db) => Figure {
                    name,
                    value: row.postgres,
                    unit: "events/s",
                    ratio: row.postgres / message_db,
                    ratio_of: "events/s ÷ events/s of Message DB's write_message on the same database, just after",
                    target: target.map_or_else(String::new, |t| format!("≥ {t} × Message DB")),
                    met: target.map(|t| row.postgres >= t * message_db),
                },
                None => Figure {
                    name,
                    value: row.postgres,
                    unit: "events/s",
                    ratio: row.postgres / row.embedded,
                    ratio_of: "events/s ÷ the embedded engine's (no Message DB in this run)",
                    target: target.map_or_else(String::new, |t| format!("≥ {t} × Message DB")),
                    met: None,
                },
            });
        }
        figures
    }
}

/// Runs every figure against the three stores, then drops what the run made.
pub(super) async fn measure(args: &Args) -> anyhow::Result<Report> {
    let seconds = Duration::from_secs_f64(args.seconds);
    // The database first: a wrong URL is the likeliest mistake, and nothing is made yet.
    let schema = format!("eventfold_bench_{}", std::process::id());
    let options = PostgresOptions {
        schema: schema.clone(),
        ..PostgresOptions::default()
    };
    let pg = Arc::new(
        PostgresStore::connect(&args.postgres, options)
            .await
            .context("connecting to PostgreSQL")?,
    );
    let dir = args.data.join("bench-postgres");
    let _ = std::fs::remove_dir_all(&dir);
    let log = match LogStore::open(&dir, LogOptions::default()) {
        Ok(log) => Arc::new(log),
        Err(e) => {
            drop(pg);
            drop_schema(&args.postgres, &schema).await;
            return Err(
                anyhow::Error::new(e).context(format!("cannot open a store in {}", dir.display()))
            );
        }
    };
    // Where Message DB's package is unpacked for its installer.
    let scratch = args.data.join("bench-postgres-message-db");
    let (message_db, left_out) = if args.without_message_db {
        (None, Some("--without-message-db".to_string()))
    } else {
        match message_db::install(&args.postgres, &args.message_db_version, &scratch).await {
            Ok(config) => (Some(config), None),
            Err(why) => {
                eprintln!("… Message DB left out: {why}");
                (None, Some(why))
            }
        }
    };
    eprintln!(
        "… embedded engine in {}, PostgreSQL in schema {schema}{}; {seconds:?} per figure and store",
        dir.display(),
        if message_db.is_some() {
            format!(", Message DB in database {}", message_db::DATABASE)
        } else {
            String::new()
        }
    );
    let measured = figures(&log, &pg, message_db.as_ref(), seconds).await;
    // What the run made goes, whether it went well or not.
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&scratch);
    drop(pg);
    drop_schema(&args.postgres, &schema).await;
    if message_db.is_some() {
        match args.postgres.parse() {
            Ok(config) => {
                if let Err(e) = message_db::drop_database(&config).await {
                    eprintln!("could not drop {}: {e}", message_db::DATABASE);
                }
            }
            Err(e) => eprintln!("could not drop {}: {e}", message_db::DATABASE),
        }
    }
    let (rows, replayed_embedded, replayed_postgres) = measured?;
    Ok(Report {
        seconds_per_figure: args.seconds,
        message_db_left_out: left_out,
        rows,
        replayed_embedded,
        replayed_postgres,
    })
}

/// The figures, each store by turns; the rows and how many events each replay read.
async fn figures(
    log: &Arc<LogStore>,
    pg: &Arc<PostgresStore>,
    message_db: Option<&tokio_postgres::Config>,
    seconds: Duration,
) -> anyhow::Result<(Vec<Row>, u64, u64)> {
    let mut rows = Vec::new();
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
        eprintln!("… {name}");
        let embedded = appends(log, kind, writers, seconds).await?;
        let postgres = appends(pg, kind, writers, seconds).await?;
        let message_db = match message_db {
            Some(config) => Some(message_db::appends(config, kind, writers, seconds).await?),
            None => None,
        };
        rows.push(Row {
            name,
            measured: Measured::Appends { kind, writers },
            embedded,
            postgres,
            message_db,
        });
    }
    let mut counts = (0, 0);
    for pass in ["first", "second"] {
        let name = format!("full replay of $all, {pass} pass after the writes");
        eprintln!("… {name}");
        let (embedded, e_count) = replay(log).await?;
        let (postgres, p_count) = replay(pg).await?;
        counts = (e_count, p_count);
        rows.push(Row {
            name,
            measured: Measured::Replay {
                first_pass: pass == "first",
            },
            embedded,
            postgres,
            message_db: None,
        });
    }
    Ok((rows, counts.0, counts.1))
}

/// An event whose JSON data is exactly 200 bytes.
fn event(n: u64) -> EventData {
    let prefix = format!("{{\"n\":{n},\"pad\":\"");
    let pad = super::bench::EVENT_DATA_BYTES - prefix.len() - 2;
    let data = format!("{prefix}{}\"}}", "x".repeat(pad));
    EventData {
        id: None,
        event_type: "Measured".into(),
        version: 1,
        data: bytes::Bytes::from(data),
        metadata: bytes::Bytes::from_static(b"{}"),
    }
}

/// Runs one task per context for `seconds`, each call made by `call(context, writer,
/// i)` and returning how many events it wrote; returns events per second.
async fn run_writers<C, F, Fut>(contexts: Vec<C>, seconds: Duration, call: F) -> anyhow::Result<f64>
where
    C: Clone + Send + 'static,
    F: Fn(C, usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<u64>> + Send,
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
                    events += call(context.clone(), w, i).await?;
                    i += 1;
                }
                anyhow::Ok(events)
            })
        })
        .collect();
    let mut events = 0;
    for task in tasks {
        events += task.await??;
    }
    Ok(events as f64 / start.elapsed().as_secs_f64())
}

/// `writers` tasks appending `kind` to `store` for `seconds`; events per second.
async fn appends<S: EventStore + 'static>(
    store: &Arc<S>,
    kind: Kind,
    writers: usize,
    seconds: Duration,
) -> anyhow::Result<f64> {
    let stores = vec![store.clone(); writers];
    match kind {
        Kind::Batch => {
            run_writers(stores, seconds, |store, w, i| async move {
                let events = (0..BATCH_EVENTS as u64).map(event).collect();
                store
                    .append(&format!("batch-{w}-{i}"), ExpectedVersion::Any, events)
                    .await?;
                Ok(BATCH_EVENTS as u64)
            })
            .await
        }
        Kind::Single => {
            run_writers(stores, seconds, |store, w, i| async move {
                store
                    .append(&format!("single-{w}"), ExpectedVersion::Any, vec![event(i)])
                    .await?;
                Ok(1)
            })
            .await
        }
    }
}

/// Reads all of `$all` in pages; returns events per second and the count.
async fn replay<S: EventStore + 'static>(store: &Arc<S>) -> anyhow::Result<(f64, u64)> {
    let start = Instant::now();
    let mut next = Position::START;
    let mut replayed = 0u64;
    loop {
        let page = store
            .read_all(ReadAll::from(next, REPLAY_PAGE_EVENTS))
            .await?;
        replayed += page.events.len() as u64;
        next = page.next;
        if page.end_of_log {
            break;
        }
    }
    Ok((replayed as f64 / start.elapsed().as_secs_f64(), replayed))
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

/// Message DB's `write_message`, called the way its clients call it: one connection
/// per writer, one function call per message, each its own transaction, no expected
/// version (as our appends here expect any); a batch is 1,000 calls in one statement
/// (one transaction).
mod message_db {
    use std::path::Path;
    use std::process::Command;
    use std::sync::Arc;
    use std::time::Duration;

    use anyhow::Context;
    use tokio_postgres::config::Host;
    use tokio_postgres::{Client, Config, NoTls, Statement};
    use uuid::Uuid;

    use super::{BATCH_EVENTS, Kind, event};

    /// The database it is installed into, dropped at the end of the run.
    pub const DATABASE: &str = "eventfold_bench_message_db";

    /// Installs Message DB `version` into [`DATABASE`] (dropping an earlier one),
    /// unpacking its package in the directory `scratch` (made here), and returns how to
    /// connect to it; `Err` says why it is left out.
    pub async fn install(url: &str, version: &str, scratch: &Path) -> Result<Config, String> {
        let config: Config = url.parse().map_err(|e| format!("the database URL: {e}"))?;
        let _ = std::fs::remove_dir_all(scratch);
        std::fs::create_dir_all(scratch)
            .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
        drop_database(&config).await?;
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
        let client = connect(config).await.map_err(|e| format!("{e:#}"))?;
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
            .await
            .map_err(|e| format!("dropping {DATABASE}: {e}"))
    }

    async fn connect(config: &Config) -> anyhow::Result<Client> {
        let (client, connection) = config.connect(NoTls).await.context("connecting")?;
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
    ) -> anyhow::Result<f64>
    where
        F: Fn(Arc<Client>, Statement, usize, u64) -> Fut + Send + Sync + Clone + 'static,
        Fut: std::future::Future<Output = anyhow::Result<u64>> + Send,
    {
        let mut clients = Vec::with_capacity(writers);
        for _ in 0..writers {
            let client = connect(config).await.context("connecting to Message DB")?;
            let statement = client
                .prepare(sql)
                .await
                .context("preparing for Message DB")?;
            clients.push((Arc::new(client), statement));
        }
        super::run_writers(clients, seconds, move |(client, statement), w, i| {
            write(client, statement, w, i)
        })
        .await
    }

    fn data_of(n: u64) -> String {
        String::from_utf8_lossy(&event(n).data).into_owned()
    }

    /// `writers` connections writing `kind` for `seconds`; messages per second.
    pub async fn appends(
        config: &Config,
        kind: Kind,
        writers: usize,
        seconds: Duration,
    ) -> anyhow::Result<f64> {
        match kind {
            Kind::Batch => {
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
                            .context("Message DB batch")?;
                        Ok(BATCH_EVENTS as u64)
                    },
                )
                .await
            }
            Kind::Single => {
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
                            .context("Message DB write_message")?;
                        Ok(1)
                    },
                )
                .await
            }
        }
    }
}
