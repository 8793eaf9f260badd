//! `eventfold tail`: print a stream's (or `$all`'s) events, then follow it live.

use std::io::Write;
use std::process::ExitCode;

use eventfold_core::{AllFilter, Position, Revision};
use eventfold_subscription::Subscription;

use crate::StoreArgs;

/// Print events as they are appended (after the existing ones), one JSON per line.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: StoreArgs,
    /// The stream to follow; `$all` (the default) follows the global log.
    #[arg(default_value = "$all", value_parser = crate::stream_name)]
    stream: String,
    /// Start at this revision (or position, for `$all`); default: only new events.
    #[arg(long)]
    from: Option<u64>,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    versions: super::versions::VersionsArg,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = super::open_target_for_reading(&args.target)?;
    let converter = super::versions::Converter::open(&store, &args.versions).await?;
    let stdout = std::io::stdout();
    let mut subscription = if args.stream == "$all" {
        let after = match args.from {
            Some(from) => from.checked_sub(1).map(Position),
            None => store.head_position().await?,
        };
        Subscription::to_all(store.clone(), after, AllFilter::default())
    } else {
        eventfold_core::validate_stream_name(&args.stream)?;
        let after = match args.from {
            Some(from) => from.checked_sub(1).map(Revision),
            None => store.stream_revision(&args.stream).await?,
        };
        Subscription::to_stream(store.clone(), args.stream.clone(), after)
    };
    let mut printed = 0;
    while args.count.is_none_or(|count| printed < count) {
        let event = subscription.next().await?;
        // A converter may drop the event or split it: each part counts.
        for event in converter.convert(vec![event]).await? {
            if args.count.is_some_and(|count| printed >= count) {
                break;
            }
            let mut out = stdout.lock();
            writeln!(out, "{}", eventfold_wire::event_json_line(&event))?;
            // Each event is shown as it arrives, also when piped.
            out.flush()?;
            printed += 1;
        }
    }
    Ok(ExitCode::SUCCESS)
}
