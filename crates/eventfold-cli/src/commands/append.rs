//! `eventfold append`: append one event, or many from NDJSON (`--ndjson`).

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use eventfold_core::{AppendResult, EventData, EventStore, ExpectedVersion, Revision};
use uuid::Uuid;

use crate::StoreArgs;

/// Append one event to a stream (or, with --ndjson, every event read from standard
/// input) and print the result as JSON.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: StoreArgs,
    /// The stream to append to.
    #[arg(value_parser = crate::stream_name)]
    stream: String,
    /// The event type, e.g. OrderPlaced.
    #[arg(
        long = "type",
        value_name = "TYPE",
        required_unless_present = "ndjson",
        conflicts_with = "ndjson"
    )]
    event_type: Option<String>,
    /// The event data, a JSON document.
    #[arg(
        long,
        value_name = "JSON",
        required_unless_present = "ndjson",
        conflicts_with = "ndjson"
    )]
    json: Option<String>,
    /// What the stream must look like: any, no_stream, stream_exists or a revision.
    /// With --ndjson it is checked by the first batch; each later batch expects the
    /// revision the one before ended at, so nobody else's events interleave unnoticed.
    #[arg(long, default_value = "any", value_name = "E")]
    expected: String,
    /// The event id (a UUID); re-sending the same id is idempotent.
    #[arg(long, conflicts_with = "ndjson")]
    id: Option<Uuid>,
    /// The schema version of the data.
    #[arg(long, default_value_t = 1, conflicts_with = "ndjson")]
    version: u32,
    /// Metadata, a JSON object.
    #[arg(long, value_name = "JSON", conflicts_with = "ndjson")]
    metadata: Option<String>,
    /// Read the events from standard input, one JSON object per line, in the form the
    /// HTTP API takes: {"type", "data", "id"?, "version"?, "metadata"?}. They are
    /// appended in batches (one append, one fsync, per batch), with a progress bar.
    #[arg(long)]
    ndjson: bool,
    /// With --ndjson: events per append.
    #[arg(long, default_value_t = 1_000, value_name = "N", requires = "ndjson",
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let expected: ExpectedVersion = args.expected.parse()?;
    eventfold_core::validate_stream_name(&args.stream)?;
    if args.ndjson {
        let store = super::open_target_for_appends(&args.target).await?;
        let stdin = std::io::stdin();
        return append_ndjson(&*store, &args.stream, expected, args.batch, stdin.lock()).await;
    }
    let (Some(event_type), Some(json)) = (args.event_type, args.json) else {
        anyhow::bail!("give the event with --type TYPE --json DATA, or many with --ndjson");
    };
    let mut event = EventData::from_json_bytes(event_type, json.into_bytes())
        .context("--json is not a valid event")?
        .with_version(args.version);
    if let Some(id) = args.id {
        event = event.with_id(id);
    }
    if let Some(metadata) = args.metadata {
        let value: serde_json::Value =
            serde_json::from_str(&metadata).context("--metadata is not valid JSON")?;
        event = event.with_metadata(&value)?;
    }
    let store = super::open_target_for_appends(&args.target).await?;
    let result = store.append(&args.stream, expected, vec![event]).await?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(ExitCode::SUCCESS)
}

/// Appends the events of `input` (NDJSON) to `stream` in batches of `batch`; prints
/// one line with the first and last revision and the last position.
async fn append_ndjson(
    store: &dyn EventStore,
    stream: &str,
    mut expected: ExpectedVersion,
    batch: u64,
    input: impl BufRead,
) -> anyhow::Result<ExitCode> {
    let bar = indicatif::ProgressBar::new_spinner().with_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} events appended ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let mut pending = Vec::new();
    let mut first: Option<Revision> = None;
    let mut last: Option<AppendResult> = None;
    let mut flush =
        async |events: Vec<EventData>, expected: &mut ExpectedVersion| -> anyhow::Result<()> {
            let count = events.len() as u64;
            let result = store
                .append(stream, *expected, events)
                .await
                .with_context(|| format!("appending {count} events to '{stream}'"))?;
            first.get_or_insert(result.first_revision);
            *expected = ExpectedVersion::Exact(result.last_revision);
            last = Some(result);
            bar.inc(count);
            Ok(())
        };
    for (number, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", number + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str::<eventfold_wire::NewEvent>(&line)
            .with_context(|| {
                format!(
                    "line {} is not an event {{\"type\", \"data\", \"id\"?, \"version\"?, \
                     \"metadata\"?}}",
                    number + 1
                )
            })?
            .into_event_data();
        pending.push(event);
        if pending.len() as u64 >= batch {
            flush(std::mem::take(&mut pending), &mut expected).await?;
        }
    }
    if !pending.is_empty() {
        flush(pending, &mut expected).await?;
    }
    bar.finish_and_clear();
    let Some(last) = last else {
        anyhow::bail!("standard input held no event (one JSON object per line)");
    };
    let summary = AppendResult {
        first_revision: first.unwrap_or(last.first_revision),
        ..last
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(ExitCode::SUCCESS)
}
