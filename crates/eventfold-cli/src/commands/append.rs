//! `eventfold append`: append one event.

use std::process::ExitCode;

use anyhow::Context;
use eventfold_core::{EventData, ExpectedVersion};
use uuid::Uuid;

use crate::StoreArgs;

/// Append one event to a stream and print the result as JSON.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: StoreArgs,
    /// The stream to append to.
    #[arg(value_parser = crate::stream_name)]
    stream: String,
    /// The event type, e.g. OrderPlaced.
    #[arg(long = "type", value_name = "TYPE")]
    event_type: String,
    /// The event data, a JSON document.
    #[arg(long, value_name = "JSON")]
    json: String,
    /// What the stream must look like: any, no_stream, stream_exists or a revision.
    #[arg(long, default_value = "any", value_name = "E")]
    expected: String,
    /// The event id (a UUID); re-sending the same id is idempotent.
    #[arg(long)]
    id: Option<Uuid>,
    /// The schema version of the data.
    #[arg(long, default_value_t = 1)]
    version: u32,
    /// Metadata, a JSON object.
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let expected: ExpectedVersion = args.expected.parse()?;
    eventfold_core::validate_stream_name(&args.stream)?;
    let mut event = EventData::from_json_bytes(args.event_type, args.json.into_bytes())
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
    let store = super::open_target(&args.target)?;
    let result = store.append(&args.stream, expected, vec![event]).await?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(ExitCode::SUCCESS)
}
