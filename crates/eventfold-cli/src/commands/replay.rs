//! `eventfold replay`: feed history, as NDJSON, to a program that rebuilds something
//! from it (a read model in another language, a search index), with a progress bar
//! and a checkpoint file so an interrupted replay resumes where the last successful
//! one ended.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use anyhow::Context;
use eventfold_core::{AllFilter, EventStore, Position, ReadAll, RecordedEvent};
use tokio::io::AsyncWriteExt;

use crate::StoreArgs;

/// Replay the log (or part of it) up to its current head, into a program or stdout.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: StoreArgs,
    /// First position to replay (default: 0, or after the checkpoint).
    #[arg(long)]
    from: Option<u64>,
    /// Only streams whose name starts with this.
    #[arg(long)]
    stream_prefix: Option<String>,
    /// Only streams of this category.
    #[arg(long)]
    category: Option<String>,
    /// Only events of these types (repeat the flag or separate with commas).
    #[arg(long = "type", value_delimiter = ',')]
    event_types: Vec<String>,
    /// Run this shell command and write the events to its standard input; without
    /// it the events go to standard output.
    #[arg(long, value_name = "COMMAND")]
    exec: Option<String>,
    /// Where to keep the position to resume from: read at start, written only when
    /// the replay (and the command) succeeded.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    #[command(flatten)]
    versions: super::versions::VersionsArg,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = super::open_target_for_reading(&args.target)?;
    let converter = super::versions::Converter::open(&store, &args.versions).await?;
    let from = match (args.from, &args.checkpoint) {
        (Some(from), _) => from,
        (None, Some(file)) => read_checkpoint(file)?,
        (None, None) => 0,
    };
    // A replay is finite: it ends at the head it saw when it started (`tail`
    // follows live).
    let end = store.head_position().await?.map_or(0, |p| p.get() + 1);
    let filter = AllFilter {
        stream_prefix: args.stream_prefix.clone(),
        category: args.category.clone(),
        event_types: args.event_types.clone(),
    };
    let mut child = match &args.exec {
        Some(command) => Some(
            tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .stdin(Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot run `{command}`"))?,
        ),
        None => None,
    };
    let mut sink: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &mut child {
        Some(child) => Box::new(child.stdin.take().context("the command has no stdin")?),
        None => Box::new(tokio::io::stdout()),
    };
    let bar = indicatif::ProgressBar::new(end.saturating_sub(from));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "replay {bar:40} {pos}/{len} positions {per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (replayed, next) = copy(
        &*store,
        &converter,
        Position(from),
        end,
        filter,
        &mut sink,
        &bar,
    )
    .await?;
    sink.shutdown().await.ok();
    drop(sink);
    bar.finish_and_clear();
    if let Some(mut child) = child {
        let status = child.wait().await?;
        anyhow::ensure!(
            status.success(),
            "the command failed ({status}) after {replayed} events; the checkpoint was not moved"
        );
    }
    if let Some(file) = &args.checkpoint {
        write_checkpoint(file, next)?;
    }
    eprintln!("replayed {replayed} events, positions {from}..{next}");
    Ok(ExitCode::SUCCESS)
}

/// Writes the matching events of `from..end` to `sink`; returns how many, and the
/// position to resume from.
async fn copy(
    store: &dyn EventStore,
    converter: &super::versions::Converter,
    mut from: Position,
    end: u64,
    filter: AllFilter,
    sink: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<(u64, u64)> {
    let mut replayed = 0;
    let mut lines = Vec::new();
    while from.get() < end {
        let want = super::PAGE_EVENTS.min(end - from.get());
        let page = store
            .read_all(ReadAll::from(from, want).filtered(filter.clone()))
            .await?;
        lines.clear();
        let events: Vec<RecordedEvent> = page
            .events
            .into_iter()
            .filter(|e| e.position.get() < end)
            .collect();
        for event in &converter.convert(events).await? {
            lines.extend_from_slice(eventfold_wire::event_json_line(event).as_bytes());
            lines.push(b'\n');
            replayed += 1;
        }
        sink.write_all(&lines)
            .await
            .context("the command stopped reading its input")?;
        let next = page.next.get().min(end);
        bar.inc(next - from.get());
        from = Position(next);
        if page.end_of_log {
            break;
        }
    }
    sink.flush().await?;
    Ok((replayed, from.get()))
}

fn read_checkpoint(file: &Path) -> anyhow::Result<u64> {
    match std::fs::read_to_string(file) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("checkpoint {} does not hold a position", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

/// Replaces the checkpoint atomically: a crash leaves the old one or the new one.
fn write_checkpoint(file: &Path, position: u64) -> anyhow::Result<()> {
    let temporary = file.with_extension("tmp");
    std::fs::write(&temporary, format!("{position}\n"))
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, file)
        .with_context(|| format!("cannot replace {}", file.display()))?;
    Ok(())
}
