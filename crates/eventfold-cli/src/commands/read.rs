//! `eventfold read`: print events, one JSON document per line.

use std::io::Write;
use std::process::ExitCode;

use eventfold_core::{EventStore, Position, ReadAll, ReadStream, RecordedEvent, Revision};

use crate::StoreArgs;

/// Read a stream, or `$all` (the global log), one event JSON per line.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: StoreArgs,
    /// The stream to read; `$all` reads the global log.
    #[arg(value_parser = crate::stream_name)]
    stream: String,
    /// First revision (or position, for `$all`) to read.
    #[arg(long)]
    from: Option<u64>,
    /// At most this many events.
    #[arg(long)]
    limit: Option<u64>,
    /// Newest first: from the end (or from --from) back to the start. For `$all`,
    /// `--limit 10 --backward` shows the latest ten events of the store.
    #[arg(long)]
    backward: bool,
    /// Print links (`$link` events) as written instead of the events they point at.
    #[arg(long)]
    links_as_written: bool,
    #[command(flatten)]
    versions: super::versions::VersionsArg,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = super::open_target_for_reading(&args.target)?;
    let converter = super::versions::Converter::open(&store, &args.versions).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut print = |events: &[RecordedEvent]| -> std::io::Result<()> {
        for event in events {
            writeln!(out, "{}", eventfold_wire::event_json_line(event))?;
        }
        Ok(())
    };
    let limit = args.limit.unwrap_or(u64::MAX);
    if args.stream == "$all" && args.backward {
        let mut left = limit;
        // Positions below `end` are still to read, newest first.
        let mut end = match store.head_position().await? {
            None => 0,
            Some(head) => args.from.unwrap_or(head.0).min(head.0) + 1,
        };
        while left > 0 && end > 0 {
            let start = end.saturating_sub(left.min(super::PAGE_EVENTS));
            let mut events = read_all_between(&*store, start, end).await?;
            events.reverse();
            events.truncate(usize::try_from(left).unwrap_or(usize::MAX));
            let read = events.len() as u64;
            print(&converter.convert(events).await?)?;
            left -= read;
            end = start;
        }
    } else if args.stream == "$all" {
        let mut from = Position(args.from.unwrap_or(0));
        let mut left = limit;
        while left > 0 {
            let page = store
                .read_all(ReadAll::from(from, left.min(super::PAGE_EVENTS)))
                .await?;
            left -= page.events.len() as u64;
            print(&converter.convert(page.events).await?)?;
            from = page.next;
            if page.end_of_log {
                break;
            }
        }
    } else {
        let mut options = if args.backward {
            ReadStream::backward()
        } else {
            ReadStream::forward()
        };
        options = options.limit(limit);
        if args.links_as_written {
            options = options.links_as_written();
        }
        if let Some(from) = args.from {
            options = options.from(Revision(from));
        }
        let events = store.read_stream(&args.stream, options).await?;
        print(&converter.convert(events).await?)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The events of `$all` at positions `start..end`, in position order (several pages
/// when the store answers in smaller ones; fewer than `end - start` events where
/// positions hold none, or only hidden ones).
async fn read_all_between(
    store: &dyn EventStore,
    start: u64,
    end: u64,
) -> anyhow::Result<Vec<RecordedEvent>> {
    let mut events = Vec::new();
    let mut from = start;
    while from < end {
        let page = store
            .read_all(ReadAll::from(Position(from), end - from))
            .await?;
        events.extend(page.events.into_iter().filter(|e| e.position.0 < end));
        if page.end_of_log || page.next.0 <= from {
            break;
        }
        from = page.next.0;
    }
    Ok(events)
}
