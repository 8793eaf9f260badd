//! `eventfold migrate`: stream surgery (copy-replace, split, join) on a data directory,
//! with a dry run, a progress bar and an audit record in `$surgery`; `migrate log`
//! lists the records.

use std::process::ExitCode;

use anyhow::Context;
use eventfold_surgery::{Audit, Operation, Outcome, SplitTarget};

use crate::StoreArgs;

/// `eventfold migrate <operation> --data DIR --reason TEXT [--dry-run]`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    operation: MigrateCommand,
}

#[derive(Debug, clap::Subcommand)]
enum MigrateCommand {
    /// Copy a stream into a new one (some revisions skipped, or each event through a
    /// jq transform), then close the old stream with a pointer to the new one.
    CopyReplace {
        /// The stream to replace.
        source: String,
        /// The new stream (left out with --in-place).
        #[arg(long, value_name = "TARGET", required_unless_present = "in_place")]
        to: Option<String>,
        /// Revisions of SOURCE to leave out (comma-separated).
        #[arg(long, value_name = "REV,...", value_delimiter = ',')]
        skip: Vec<u64>,
        /// A jq program from each event ({stream, revision, type, version, data,
        /// metadata}) to the events it becomes ({type, data, metadata?, version?};
        /// `empty` drops it).
        #[arg(long, value_name = "JQ")]
        transform: Option<String>,
        /// Rewrite the stream under its own name: the copies are appended to it and
        /// its truncate_before hides the originals, in one atomic append.
        #[arg(long)]
        in_place: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Split a stream into new streams: each event goes to the one whose jq filter it
    /// matches (a filter that matches no event, or two filters matching one event,
    /// stop the split before any write).
    Split {
        /// The stream to split.
        source: String,
        /// A new stream and its filter, NAME=<jq filter> (repeat: two or more).
        #[arg(long, value_name = "NAME=JQ", required = true, num_args = 1.., value_parser = named_filter)]
        into: Vec<(String, String)>,
        #[command(flatten)]
        common: Common,
    },
    /// Join streams into a new stream, in the order of $all.
    Join {
        /// The streams to join (two or more).
        #[arg(required = true, num_args = 2..)]
        sources: Vec<String>,
        /// The new stream.
        #[arg(long, value_name = "TARGET")]
        into: String,
        #[command(flatten)]
        common: Common,
    },
    /// List the audit records of every surgery ($surgery), oldest first, one JSON
    /// object per line.
    Log {
        #[command(flatten)]
        target: StoreArgs,
    },
}

#[derive(Debug, clap::Args)]
struct Common {
    #[command(flatten)]
    target: StoreArgs,
    /// Why: kept in the audit record (required).
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Who, for the audit record (default: the USER of the environment; through
    /// --server, the server records its authenticated user instead).
    #[arg(long, value_name = "NAME")]
    who: Option<String>,
    /// Check everything and print what would change; write nothing.
    #[arg(long)]
    dry_run: bool,
}

fn named_filter(text: &str) -> Result<(String, String), String> {
    let (name, filter) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=<jq filter>"))?;
    Ok((name.to_string(), filter.to_string()))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (operation, common) = match args.operation {
        MigrateCommand::Log { target } => return log(&target).await,
        MigrateCommand::CopyReplace {
            source,
            to,
            skip,
            transform,
            in_place,
            common,
        } => (
            Operation::CopyReplace {
                to: to.unwrap_or_else(|| source.clone()),
                source,
                skip,
                transform,
                in_place,
            },
            common,
        ),
        MigrateCommand::Split {
            source,
            into,
            common,
        } => {
            let into = into
                .into_iter()
                .map(|(stream, filter)| SplitTarget { stream, filter })
                .collect();
            (Operation::Split { source, into }, common)
        }
        MigrateCommand::Join {
            sources,
            into,
            common,
        } => (Operation::Join { sources, into }, common),
    };
    if common.target.server.is_some() {
        // The server performs it, and records its authenticated user as who did it.
        let request = eventfold_wire::SurgeryRequest {
            operation,
            reason: common.reason,
            dry_run: common.dry_run,
        };
        let outcome = super::http_store(&common.target)?
            .surgery(&request)
            .await
            .with_context(|| format!("migrate {}", request.operation.name()))?;
        print_outcome(&outcome);
        return Ok(ExitCode::SUCCESS);
    }
    let store = super::open_target(&common.target)?;
    let audit = Audit {
        reason: common.reason,
        who: common
            .who
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "eventfold-cli".into()),
    };
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events copied ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if common.dry_run {
        bar.finish_and_clear();
    }
    let outcome = eventfold_surgery::perform(
        store.as_ref(),
        &operation,
        &audit,
        common.dry_run,
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )
    .await
    .with_context(|| format!("migrate {}", operation.name()))?;
    bar.finish_and_clear();
    print_outcome(&outcome);
    Ok(ExitCode::SUCCESS)
}

fn print_outcome(outcome: &Outcome) {
    let verb = if outcome.dry_run {
        "would copy"
    } else {
        "copied"
    };
    for (stream, events) in &outcome.targets {
        eprintln!("{verb} {events} events to '{stream}'");
    }
    for (source, to) in &outcome.moved {
        let verb = if outcome.dry_run {
            "would be closed"
        } else {
            "closed"
        };
        eprintln!("'{source}' {verb}: it points at '{to}'");
    }
    if outcome.dropped > 0 {
        eprintln!("{} events left out", outcome.dropped);
    }
    if outcome.dry_run {
        eprintln!("dry run: nothing was written");
    }
    if let Ok(json) = serde_json::to_string(outcome) {
        println!("{json}");
    }
}

async fn log(target: &StoreArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_target_for_reading(target)?;
    for record in eventfold_surgery::log(store.as_ref()).await? {
        let mut value: serde_json::Value = serde_json::from_slice(&record.data)?;
        value["position"] = record.position.get().into();
        println!("{value}");
    }
    Ok(ExitCode::SUCCESS)
}
