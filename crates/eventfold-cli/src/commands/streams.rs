//! `eventfold streams`, `metadata` and `delete`: list streams, show or set a
//! stream's metadata, delete a stream.

use std::process::ExitCode;

use anyhow::Context;
use eventfold_core::ExpectedVersion;
use eventfold_metadata::{DeleteMode, StreamAdmin, StreamMetadata};

use crate::StoreArgs;
use crate::output::{Format, FormatArg, print_object, print_rows};

/// `eventfold streams [--prefix P]`: one `{"stream", "last_revision"}` per line.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: StoreArgs,
    /// Only streams whose name starts with this (`$` shows system streams).
    #[arg(long, default_value = "")]
    prefix: String,
    /// At most this many streams.
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    format: FormatArg,
}

/// `eventfold metadata STREAM [--set JSON]`.
#[derive(Debug, clap::Args)]
pub struct MetadataArgs {
    #[command(flatten)]
    target: StoreArgs,
    /// The stream.
    #[arg(value_parser = crate::stream_name)]
    stream: String,
    /// Replace the metadata with this JSON: {"max_count"?, "max_age"? (seconds),
    /// "truncate_before"?, "acl"?, "custom"?}.
    #[arg(long, value_name = "JSON")]
    set: Option<String>,
    /// With --set: the expected revision of the metadata (any, no_stream or a number).
    #[arg(long, default_value = "any", requires = "set")]
    expected: String,
    #[command(flatten)]
    format: FormatArg,
}

/// `eventfold delete STREAM [--hard] [--expected E]`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    target: StoreArgs,
    /// The stream.
    #[arg(value_parser = crate::stream_name)]
    stream: String,
    /// Write a tombstone: the stream can never be written again.
    #[arg(long)]
    hard: bool,
    /// Expected version of the stream: any, stream_exists or a revision.
    #[arg(long, default_value = "any")]
    expected: String,
}

/// Streams listed per request.
const PAGE_STREAMS: usize = 1_000;

/// Prints the stream's metadata, or replaces it with `--set`.
pub async fn metadata(args: MetadataArgs) -> anyhow::Result<ExitCode> {
    let Some(json) = &args.set else {
        let store = super::open_target_for_reading(&args.target)?;
        let record = store.stream_metadata(&args.stream).await?;
        print_object(args.format.resolve(), &record)?;
        return Ok(ExitCode::SUCCESS);
    };
    let metadata: StreamMetadata = serde_json::from_str(json).context(
        "--set must be stream metadata {\"max_count\"?, \"max_age\"?, \"truncate_before\"?, \"acl\"?, \"custom\"?}",
    )?;
    let expected: ExpectedVersion = args.expected.parse()?;
    let store = super::open_target(&args.target)?;
    let written = store
        .set_stream_metadata(&args.stream, expected, metadata)
        .await?;
    println!("{}", serde_json::to_string(&written)?);
    Ok(ExitCode::SUCCESS)
}

/// Deletes a stream, softly or for good.
pub async fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let expected: ExpectedVersion = args.expected.parse()?;
    let mode = if args.hard {
        DeleteMode::Hard
    } else {
        DeleteMode::Soft
    };
    let store = super::open_target(&args.target)?;
    let deleted = store.delete_stream(&args.stream, expected, mode).await?;
    println!("{}", serde_json::to_string(&deleted)?);
    Ok(ExitCode::SUCCESS)
}

/// Lists streams in name order.
pub async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_target_for_reading(&args.target)?;
    let format = args.format.resolve();
    let mut left = args.limit.unwrap_or(usize::MAX);
    let mut after: Option<String> = None;
    // JSON lines go out page by page; a table waits for every row to align them.
    let mut table = Vec::new();
    while left > 0 {
        let page = store
            .list_streams(&args.prefix, after.as_deref(), left.min(PAGE_STREAMS))
            .await?;
        match format {
            Format::Json => print_rows(format, &page, &[])?,
            Format::Table => table.extend(page.iter().cloned()),
        }
        left -= page.len();
        match page.last() {
            Some(last) if page.len() == PAGE_STREAMS => after = Some(last.stream.clone()),
            _ => break,
        }
    }
    if format == Format::Table {
        print_rows(format, &table, &["stream", "last_revision"])?;
    }
    Ok(ExitCode::SUCCESS)
}
