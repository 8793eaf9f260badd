//! `eventfold export` and `eventfold import`: the whole log as NDJSON (one event in
//! the public JSON form per line), streamed page by page, resumable.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use eventfold_core::TOMBSTONE_EVENT_TYPE;
use eventfold_core::{
    EventData, EventStore, ExpectedVersion, Position, ReadAll, RecordedEvent, Revision, StreamWrite,
};
use eventfold_metadata::{DeleteMode, StreamAdmin};

use crate::StoreArgs;

/// Most events of one stream imported in one append.
const IMPORT_BATCH_EVENTS: usize = 1_000;

/// Write every event of the log, in position order, as NDJSON.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    target: StoreArgs,
    /// First position to export (to resume: the last exported position + 1).
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// Append the events of an NDJSON export to a store, each at its revision.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    target: StoreArgs,
    /// The export to read (standard input when left out).
    input: Option<PathBuf>,
}

pub async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_target_for_export(&args.target)?;
    let head = store.head_position().await?.map_or(0, |p| p.get() + 1);
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let bar = indicatif::ProgressBar::new(head.saturating_sub(args.from));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut from = Position(args.from);
    let mut exported = 0u64;
    loop {
        let page = store
            .read_all(ReadAll::from(from, super::PAGE_EVENTS))
            .await?;
        for event in &page.events {
            writeln!(out, "{}", eventfold_wire::event_json_line(event))?;
        }
        exported += page.events.len() as u64;
        bar.inc(page.events.len() as u64);
        from = page.next;
        if page.end_of_log {
            break;
        }
    }
    out.flush()?;
    bar.finish_and_clear();
    eprintln!(
        "exported {exported} events (next position to export: {})",
        from.get()
    );
    Ok(ExitCode::SUCCESS)
}

/// Replays the tombstone at `revision` of `stream` through a server: a hard delete
/// expecting the event before it. A stream already hard-deleted (an earlier run of the
/// same import) is left as it is.
async fn hard_delete(store: &dyn EventStore, stream: &str, revision: u64) -> anyhow::Result<()> {
    let expected = match revision.checked_sub(1) {
        None => ExpectedVersion::NoStream,
        Some(previous) => ExpectedVersion::Exact(Revision(previous)),
    };
    match store
        .delete_stream(stream, expected, DeleteMode::Hard)
        .await
    {
        Ok(_) | Err(eventfold_core::Error::StreamDeleted { .. }) => Ok(()),
        Err(error) => Err(error).with_context(|| {
            format!("hard-deleting '{stream}' as its tombstone at revision {revision} says")
        }),
    }
}

/// An exported event, to append again with its id, version, data and metadata.
fn exported_event_data(event: RecordedEvent) -> EventData {
    EventData {
        id: Some(event.id),
        event_type: event.event_type,
        version: event.version,
        data: event.data,
        metadata: event.metadata,
    }
}

/// Consecutive events of one stream, appended together.
struct Run {
    stream: String,
    first_revision: u64,
    events: Vec<EventData>,
    /// When each was first recorded (kept by an import into a data directory).
    recorded_at: Vec<chrono::DateTime<chrono::Utc>>,
}

pub async fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_target_for_appends(&args.target).await?;
    let input: Box<dyn BufRead> = match &args.input {
        Some(path) => Box::new(BufReader::new(
            File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        )),
        None => Box::new(BufReader::new(std::io::stdin().lock())),
    };
    let bar = indicatif::ProgressBar::new_spinner();
    let mut run: Option<Run> = None;
    let mut imported = Imported::default();
    let (mut skipped_system, mut deleted) = (0u64, 0u64);
    let over_http = args.target.server.is_some();
    for (number, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", number + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str::<eventfold_wire::Event<'_>>(&line)
            .with_context(|| format!("line {} is not an exported event", number + 1))?
            .into_recorded();
        if over_http && event.stream.starts_with('$') {
            // A server refuses client writes to system streams.
            skipped_system += 1;
            continue;
        }
        if over_http && event.event_type == TOMBSTONE_EVENT_TYPE {
            // A tombstone is no event a client may write: the server writes it when
            // asked for a hard delete.
            if let Some(done) = run.take() {
                imported.add(write(&*store, done).await?);
            }
            hard_delete(&*store, &event.stream, event.revision.get()).await?;
            deleted += 1;
            continue;
        }
        let continues = run.as_ref().is_some_and(|r| {
            r.stream == event.stream
                && r.first_revision + r.events.len() as u64 == event.revision.get()
                && r.events.len() < IMPORT_BATCH_EVENTS
        });
        if !continues && let Some(done) = run.take() {
            imported.add(write(&*store, done).await?);
            bar.set_message(format!("{} events imported", imported.total()));
            bar.tick();
        }
        let run = run.get_or_insert_with(|| Run {
            stream: event.stream.clone(),
            first_revision: event.revision.get(),
            events: Vec::new(),
            recorded_at: Vec::new(),
        });
        run.recorded_at.push(event.recorded_at);
        run.events.push(exported_event_data(event));
    }
    if let Some(done) = run.take() {
        imported.add(write(&*store, done).await?);
    }
    bar.finish_and_clear();
    eprintln!(
        "imported {} events: {} new, {} already there (the same ids at the same revisions)",
        imported.total(),
        imported.new,
        imported.existing
    );
    if deleted > 0 {
        eprintln!("hard-deleted {deleted} streams, as their tombstones say");
    }
    if skipped_system > 0 {
        eprintln!(
            "skipped {skipped_system} events of system streams ($...): a server does not take \
             them from clients; import into a data directory to keep them"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// How many imported events were new to the store, and how many it held already.
#[derive(Debug, Default, Clone, Copy)]
struct Imported {
    new: u64,
    existing: u64,
}

impl Imported {
    fn add(&mut self, other: Imported) {
        self.new += other.new;
        self.existing += other.existing;
    }

    fn total(&self) -> u64 {
        self.new + self.existing
    }
}

/// Appends one run at its revisions: an event already imported (same id, same
/// revision) is answered as written, so an interrupted import can simply be re-run.
/// A run is appended whole or not at all, and a re-run cuts the same runs, so a run
/// is either all new or all there already (which the stream's end tells).
///
/// A run of a system stream, or with events of eventfold's own types (`$...`), is a
/// system write: importing into a data directory restores the store's own events as
/// they were exported. (Through a server those never get here: see `import`.)
async fn write(store: &dyn EventStore, run: Run) -> anyhow::Result<Imported> {
    let count = run.events.len() as u64;
    let last_revision = run.first_revision + count.saturating_sub(1);
    let there = store
        .stream_revision(&run.stream)
        .await?
        .is_some_and(|last| last.get() >= last_revision);
    let expected = match run.first_revision.checked_sub(1) {
        None => ExpectedVersion::NoStream,
        Some(previous) => ExpectedVersion::Exact(Revision(previous)),
    };
    let system =
        run.stream.starts_with('$') || run.events.iter().any(|e| e.event_type.starts_with('$'));
    let stream_write = if system {
        StreamWrite::system(run.stream.clone(), expected, run.events)
    } else {
        StreamWrite::new(run.stream.clone(), expected, run.events)
    };
    // Into a data directory every event keeps when it was first recorded; a server
    // records the time of its own append.
    let stream_write = stream_write.with_recorded_at(run.recorded_at);
    store
        .append_multi(vec![stream_write])
        .await
        .with_context(|| {
            format!(
                "importing {count} events of '{}' at revision {}",
                run.stream, run.first_revision
            )
        })?;
    Ok(if there {
        Imported {
            new: 0,
            existing: count,
        }
    } else {
        Imported {
            new: count,
            existing: 0,
        }
    })
}
