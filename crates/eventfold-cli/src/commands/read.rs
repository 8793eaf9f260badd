//! `eventfold read`: print events, one JSON document per line.

use std::io::Write;
use std::process::ExitCode;

use eventfold_core::{Position, ReadAll, ReadStream, RecordedEvent, Revision};

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
    /// Newest first (streams only).
    #[arg(long)]
    backward: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = super::open_target_for_reading(&args.target)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut print = |events: &[RecordedEvent]| -> std::io::Result<()> {
        for event in events {
            writeln!(out, "{}", eventfold_wire::event_json_line(event))?;
        }
        Ok(())
    };
    let limit = args.limit.unwrap_or(u64::MAX);
    if args.stream == "$all" {
        anyhow::ensure!(!args.backward, "--backward is not supported for $all");
        let mut from = Position(args.from.unwrap_or(0));
        let mut left = limit;
        while left > 0 {
            let page = store
                .read_all(ReadAll::from(from, left.min(super::PAGE_EVENTS)))
                .await?;
            print(&page.events)?;
            left -= page.events.len() as u64;
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
        if let Some(from) = args.from {
            options = options.from(Revision(from));
        }
        print(&store.read_stream(&args.stream, options).await?)?;
    }
    Ok(ExitCode::SUCCESS)
}
