//! `eventfold archive` and `eventfold restore`: the log copied to object storage (S3 or
//! a directory) and rebuilt from it, identical (see `eventfold-archive`).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use eventfold_archive::{ArchiveError, ArchiveLocation, ArchiveReport};
use eventfold_log::LogStore;
use eventfold_server::{ArchiveFailure, Archiver};
use eventfold_wire::ArchiveAnswer;

use crate::StoreArgs;

/// Copy the log, up to its head now, to object storage; resumable, nothing uploaded
/// twice. With --server, the server archives its own log (an administrator's token).
#[derive(Debug, clap::Args)]
pub struct ArchiveArgs {
    #[command(flatten)]
    target: StoreArgs,
    /// Where the archive lives: s3://BUCKET/PREFIX (credentials, region and endpoint
    /// from the AWS_* environment variables, the server's own with --server) or
    /// file:///path/on/the/disk. With --server it may be left out: the archive the
    /// server was started with (serve --archive).
    #[arg(long, value_name = "URL", required_unless_present = "server")]
    to: Option<String>,
    /// After the pass, drop the local copy of the oldest sealed segments the archive
    /// holds whole until the segments on the disk take at most SIZE (e.g. 20GiB, 0 for
    /// all but the active one); reads fetch them back from the archive.
    #[arg(long, value_name = "SIZE", conflicts_with = "server")]
    keep_local: Option<bytesize::ByteSize>,
}

/// Rebuild a store from an archive into a new data directory (or a PostgreSQL schema),
/// and verify it.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The archive: s3://BUCKET/PREFIX or file:///path/on/the/disk.
    #[arg(long, value_name = "URL")]
    from: String,
    /// The new data directory (it must hold no store). With --postgres, the archive is
    /// restored and verified in DIR/restore-scratch first, then copied into PostgreSQL;
    /// the scratch copy is removed once PostgreSQL holds the same log.
    #[arg(long, env = "EVENTFOLD_DATA", value_name = "DIR")]
    data: std::path::PathBuf,
    /// Restore into this PostgreSQL database instead (e.g. postgres://user@host/db);
    /// its schema must hold no events.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// With --postgres: the PostgreSQL schema to restore into.
    #[arg(
        long,
        default_value = "eventfold",
        requires = "postgres",
        value_name = "NAME"
    )]
    postgres_schema: String,
}

pub async fn archive(args: ArchiveArgs) -> anyhow::Result<ExitCode> {
    if let Some(server) = &args.target.server {
        let answer = super::http_store(&args.target)?
            .archive(args.to.as_deref())
            .await
            .with_context(|| format!("cannot archive the store of {server}"))?;
        print_answer(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(dir), Some(to)) = (&args.target.data, &args.to) else {
        anyhow::bail!("name the store with --data DIR and the archive with --to URL");
    };
    let location = ArchiveLocation::parse(to)?;
    let Some(keep_local) = args.keep_local else {
        let store = super::open_store_read_only(dir)?;
        let started = std::time::Instant::now();
        let report = archive_with_bar(&store, &location).await?;
        print_answer(&answer_of(&report, &location, started));
        store.close();
        return Ok(ExitCode::SUCCESS);
    };
    // Dropping segments changes the data directory: the store is opened for writing.
    let store = Arc::new(super::open_store(dir)?);
    let started = std::time::Instant::now();
    let report = archive_with_bar(&store, &location).await?;
    print_answer(&answer_of(&report, &location, started));
    let kept = eventfold_archive::keep_local(&store, &location, keep_local.as_u64())
        .await
        .with_context(|| format!("dropping archived segments from {}", dir.display()))?;
    println!(
        "dropped the local copy of {} segments ({} bytes); {} bytes of segments stay on the \
         disk, {} segments are kept only in the archive",
        kept.segments_dropped, kept.bytes_freed, kept.local_bytes, kept.cold_segments
    );
    if let Some(store) = Arc::into_inner(store) {
        store.close();
    }
    Ok(ExitCode::SUCCESS)
}

/// A pass's report in the form `POST /admin/archive` answers, which both `archive`
/// paths print.
fn answer_of(
    report: &ArchiveReport,
    location: &ArchiveLocation,
    started: std::time::Instant,
) -> ArchiveAnswer {
    ArchiveAnswer {
        url: location.url().to_string(),
        end_position: report.end_position,
        segments: report.segments,
        pieces_uploaded: report.pieces_uploaded,
        pieces_adopted: report.pieces_adopted,
        bytes_uploaded: report.bytes_uploaded,
        segments_rewritten: report.segments_rewritten,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// One archive pass with a progress bar on stderr.
async fn archive_with_bar(
    store: &LogStore,
    location: &ArchiveLocation,
) -> anyhow::Result<ArchiveReport> {
    let bar = bytes_bar();
    let report = eventfold_archive::archive(store, location, &mut |p| {
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_done);
    })
    .await
    .with_context(|| format!("archiving to {}", location.url()))?;
    bar.finish_and_clear();
    Ok(report)
}

fn print_answer(answer: &ArchiveAnswer) {
    println!(
        "archived positions 0..{} to {}: {} segments; this pass uploaded {} pieces ({} \
         bytes), took {} left by an interrupted pass, re-archived {} rewritten segments",
        answer.end_position,
        answer.url,
        answer.segments,
        answer.pieces_uploaded,
        answer.bytes_uploaded,
        answer.pieces_adopted,
        answer.segments_rewritten
    );
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let location = ArchiveLocation::parse(&args.from)?;
    let dir = match &args.postgres {
        Some(_) => args.data.join(RESTORE_SCRATCH),
        None => args.data.clone(),
    };
    let bar = bytes_bar();
    let report = eventfold_archive::restore(&location, &dir, &mut |p| {
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_done);
    })
    .await
    .with_context(|| format!("restoring {} into {}", location.url(), dir.display()))?;
    bar.finish_and_clear();
    if let Some(url) = &args.postgres {
        let copied = into_postgres(&dir, url, &args.postgres_schema).await?;
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the scratch copy {}", dir.display()))?;
        println!(
            "restored and verified in PostgreSQL schema {}: {copied} events, positions 0..{}",
            args.postgres_schema, report.end_position
        );
        eprintln!(
            "note: the keys of personal data are not in the archive; restore the \
             subject_keys table from its own backup before serving this store"
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "restored and verified: {} events, positions 0..{}, {} segments ({} bytes) in {}",
        report.events,
        report.end_position,
        report.segments,
        report.bytes,
        args.data.display()
    );
    eprintln!(
        "note: the keys of personal data are not in the archive; copy the key store's \
         backup to {} before serving this store",
        args.data.join(eventfold_privacy::KEYS_DIR).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Where `restore --postgres` lays the archive down first, under `--data`.
const RESTORE_SCRATCH: &str = "restore-scratch";

/// Copies the restored log in `dir` into an empty PostgreSQL schema, every event as it
/// was recorded, then reads both back and compares them event by event. Returns the
/// events copied.
async fn into_postgres(dir: &std::path::Path, url: &str, schema: &str) -> anyhow::Result<u64> {
    use eventfold_core::{EventStore, Position, ReadAll};
    let log = LogStore::open_read_only(dir)
        .with_context(|| format!("cannot open the restored store in {}", dir.display()))?;
    let options = eventfold_postgres::PostgresOptions {
        schema: schema.to_string(),
        ..Default::default()
    };
    let postgres = eventfold_postgres::PostgresStore::connect(url, options)
        .await
        .context("cannot open the PostgreSQL store")?;
    anyhow::ensure!(
        postgres.head_position().await?.is_none(),
        "PostgreSQL schema {schema} holds events already: restore into an empty schema"
    );
    let end = log.event_count();
    let bar = indicatif::ProgressBar::new(end);
    let mut from = Position(0);
    let mut copied = 0u64;
    loop {
        let page = log.read_all_blocking(&ReadAll::from(from, super::PAGE_EVENTS))?;
        let next = if page.end_of_log {
            end
        } else {
            page.next.get()
        };
        postgres
            .write_recorded(&page.events, next)
            .await
            .context("writing into PostgreSQL")?;
        copied += page.events.len() as u64;
        bar.set_position(next);
        from = page.next;
        if page.end_of_log {
            break;
        }
    }
    bar.finish_and_clear();
    // Verified before it is declared done: both logs read back, event by event.
    let (mut a, mut b) = (Position(0), Position(0));
    let (mut left, mut right) = (Vec::new(), Vec::new());
    let mut compared = 0u64;
    loop {
        if left.is_empty() {
            let page = log.read_all_blocking(&ReadAll::from(a, super::PAGE_EVENTS))?;
            a = page.next;
            left = page.events;
            left.reverse();
        }
        if right.is_empty() {
            let page = postgres
                .read_all(ReadAll::from(b, super::PAGE_EVENTS))
                .await?;
            b = page.next;
            right = page.events;
            right.reverse();
        }
        match (left.pop(), right.pop()) {
            (None, None) => break,
            (Some(x), Some(y)) if x == y => compared += 1,
            (x, y) => anyhow::bail!(
                "PostgreSQL does not hold the archived log: at event {compared} the archive \
                 has {:?}, PostgreSQL {:?}",
                x.map(|e| (e.position, e.stream, e.revision)),
                y.map(|e| (e.position, e.stream, e.revision))
            ),
        }
    }
    anyhow::ensure!(
        compared == copied,
        "{copied} events written but {compared} read back"
    );
    let head = postgres.head_position().await?.map_or(0, |p| p.get() + 1);
    anyhow::ensure!(
        head == end,
        "PostgreSQL's head is {head}, the archive ends at {end}"
    );
    log.close();
    Ok(copied)
}

fn bytes_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// The archiver of `eventfold serve` over its embedded store: `POST /admin/archive`
/// and, with `--archive`, passes of its own whenever the log has grown. Passes run one
/// at a time.
#[derive(Debug)]
pub struct LogArchiver {
    store: Arc<LogStore>,
    own: Option<ArchiveLocation>,
    /// `--archive-keep-local`: bytes of segments the local disk keeps.
    keep_local: Option<u64>,
    passes: tokio::sync::Mutex<()>,
}

impl LogArchiver {
    /// The archiver of `store`, archiving on its own to `own` (`serve --archive`) and
    /// keeping at most `keep_local` bytes of segments on the disk
    /// (`--archive-keep-local`).
    pub fn new(
        store: Arc<LogStore>,
        own: Option<ArchiveLocation>,
        keep_local: Option<u64>,
    ) -> Arc<Self> {
        Arc::new(LogArchiver {
            store,
            own,
            keep_local,
            passes: tokio::sync::Mutex::new(()),
        })
    }

    async fn pass(&self, location: &ArchiveLocation) -> eventfold_archive::Result<ArchiveReport> {
        let _one_at_a_time = self.passes.lock().await;
        eventfold_archive::archive(&self.store, location, &mut |_| {}).await
    }

    /// Drops the local copy of archived segments beyond `bound` bytes on the disk.
    async fn keep_local(&self, location: &ArchiveLocation, bound: u64) {
        let _one_at_a_time = self.passes.lock().await;
        match eventfold_archive::keep_local(&self.store, location, bound).await {
            Ok(report) if report.segments_dropped > 0 => tracing::info!(
                url = location.url(),
                segments = report.segments_dropped,
                bytes = report.bytes_freed,
                local_bytes = report.local_bytes,
                cold_segments = report.cold_segments,
                "dropped the local copy of archived segments"
            ),
            Ok(_) => {}
            Err(error) => {
                tracing::error!(url = location.url(), %error, "dropping archived segments failed; trying again at the next turn");
            }
        }
    }

    /// `serve --archive URL`: a pass whenever the segments changed (the log grew, or a
    /// scavenge rewrote one), at most one per `interval`, for as long as the server
    /// runs. A failed pass is logged and tried again at the next turn (what it had
    /// uploaded is taken up then).
    pub async fn keep_archiving(self: Arc<Self>, interval: std::time::Duration) {
        let Some(location) = self.own.clone() else {
            return;
        };
        let mut archived = None;
        loop {
            let now = shape(&self.store);
            if archived.as_ref() != Some(&now) {
                match self.pass(&location).await {
                    Ok(report) => {
                        tracing::info!(
                            url = location.url(),
                            end_position = report.end_position,
                            pieces = report.pieces_uploaded,
                            bytes = report.bytes_uploaded,
                            rewritten = report.segments_rewritten,
                            "archived"
                        );
                        archived = Some(now);
                    }
                    Err(error) => {
                        tracing::error!(url = location.url(), %error, "archiving failed; trying again at the next turn");
                    }
                }
            }
            // Once a pass has made the archive: segments it holds whole may go.
            if let (Some(bound), true) = (self.keep_local, archived.is_some()) {
                self.keep_local(&location, bound).await;
            }
            tokio::time::sleep(interval).await;
        }
    }
}

/// What a pass archives, in short: each segment's number, committed length and
/// sealing. It changes when the log grows and when a scavenge or a repair rewrites a
/// segment.
fn shape(store: &LogStore) -> Vec<(u64, u64, bool)> {
    store
        .segments()
        .iter()
        .map(|s| (s.number, s.len, s.sealed))
        .collect()
}

#[async_trait::async_trait]
impl Archiver for LogArchiver {
    fn default_url(&self) -> Option<String> {
        self.own.as_ref().map(|own| own.url().to_string())
    }

    async fn archive(&self, url: &str) -> Result<ArchiveAnswer, ArchiveFailure> {
        let location = match &self.own {
            Some(own) if own.url() == url => own.clone(),
            _ if !(url.starts_with("s3://") || url.starts_with("s3a://")) => {
                return Err(ArchiveFailure::InvalidUrl(format!(
                    "{url}: a request may name only s3:// archives besides the server's own \
                     (--archive); a local path would let a client write wherever the server may"
                )));
            }
            _ => ArchiveLocation::parse(url)
                .map_err(|e| ArchiveFailure::InvalidUrl(e.to_string()))?,
        };
        let started = std::time::Instant::now();
        let report = self.pass(&location).await.map_err(|e| match e {
            ArchiveError::Url { .. } => ArchiveFailure::InvalidUrl(e.to_string()),
            other => ArchiveFailure::Failed(other.to_string()),
        })?;
        Ok(answer_of(&report, &location, started))
    }
}
