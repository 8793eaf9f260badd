//! `eventfold repair`: the explicit, audited way to give up damaged data.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use eventfold_core::{EventData, EventStore, ExpectedVersion, StreamWrite};
use eventfold_log::{GivenUp, LogOptions, LogStore, RepairOptions, RepairReport};

use crate::DataDir;

/// The system stream that records every repair.
pub const REPAIRS_STREAM: &str = "$repairs";

/// Rewrite damaged segments, giving up exactly the damaged transactions (the store
/// must be closed). Prints what is given up; `--dry-run` changes nothing.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataDir,
    /// Print what a repair would give up, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Why: kept with who and when in the log (and in the `$repairs` stream).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = &args.data.data;
    anyhow::ensure!(
        dir.join("segments").is_dir(),
        "{} holds no eventfold store",
        dir.display()
    );
    let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let reason = args.reason.clone().unwrap_or_default();
    let options = RepairOptions {
        dry_run: args.dry_run,
        reason: format!(
            "by {who}: {}",
            if reason.is_empty() {
                "no reason given"
            } else {
                &reason
            }
        ),
    };
    let report = eventfold_log::repair(dir, &options)
        .with_context(|| format!("cannot repair the store in {}", dir.display()))?;
    if report.is_empty() {
        println!(
            "nothing to repair: no damage found (a torn tail of unacknowledged writes is cut when the store opens)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_report(&report)?;
    if args.dry_run {
        println!("dry run: nothing was changed; run again without --dry-run to repair");
        return Ok(ExitCode::SUCCESS);
    }
    // Keep the intact events that were given up, as NDJSON beside the damaged copies.
    for segment in &report.segments {
        let intact: Vec<_> = segment
            .given_up
            .iter()
            .filter_map(|g| match g {
                GivenUp::Intact(event) => Some(eventfold_wire::event_json_line(event)),
                _ => None,
            })
            .collect();
        if let (false, Some(copy)) = (intact.is_empty(), &segment.quarantined) {
            let path = dir.join(format!("{copy}.given-up.ndjson"));
            std::fs::write(&path, intact.join("\n") + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "the {} intact event(s) given up from {} are in {} (import them to write them again)",
                intact.len(),
                segment.file,
                path.display()
            );
        }
    }
    record(dir, &who, &reason, &report).await?;
    println!(
        "repaired; `eventfold verify --data {}` checks the result",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &RepairReport) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let verb = if report.dry_run {
        "would give up"
    } else {
        "gave up"
    };
    for segment in &report.segments {
        writeln!(out, "{}:", segment.file)?;
        for fix in &segment.corrected {
            writeln!(
                out,
                "  {} a flipped bit (bit {} of byte {}) in the record at position {}: nothing lost",
                if report.dry_run {
                    "would undo"
                } else {
                    "undid"
                },
                fix.bit,
                fix.offset,
                fix.position
            )?;
        }
        for damage in &segment.damage {
            writeln!(
                out,
                "  damaged bytes {}..{}: {}",
                damage.offset, damage.end, damage.reason
            )?;
        }
        for gap in &segment.gaps {
            writeln!(
                out,
                "  {verb} positions {}..{} (never handed out again)",
                gap.start, gap.end
            )?;
        }
        for given_up in &segment.given_up {
            match given_up {
                GivenUp::Intact(event) => writeln!(
                    out,
                    "  {verb} intact event at position {}: {}@{} id {} type {} (its transaction lost a record)",
                    event.position, event.revision, event.stream, event.id, event.event_type
                )?,
                GivenUp::Unreadable {
                    position,
                    stream,
                    id,
                } => {
                    let what = match stream {
                        Some((stream, revision)) => format!("{revision}@{stream}"),
                        None => "stream unknown".into(),
                    };
                    let id = id.map_or_else(|| "unknown".to_string(), |id| id.to_string());
                    writeln!(
                        out,
                        "  {verb} unreadable event at position {position}: {what}, id {id}"
                    )?
                }
                GivenUp::Unknown { positions } => writeln!(
                    out,
                    "  {verb} positions {}..{}: unreadable, at most {} event(s)",
                    positions.start,
                    positions.end,
                    positions.end - positions.start
                )?,
            }
        }
        if let Some(copy) = &segment.quarantined {
            writeln!(out, "  the damaged file was copied to {copy}")?;
        }
    }
    Ok(())
}

/// Appends the audit record of the repair to `$repairs`.
async fn record(
    dir: &std::path::Path,
    who: &str,
    reason: &str,
    report: &RepairReport,
) -> anyhow::Result<()> {
    let store = LogStore::open(dir, LogOptions::default())
        .with_context(|| format!("the repaired store in {} does not open", dir.display()))?;
    let segments: Vec<serde_json::Value> = report
        .segments
        .iter()
        .map(|s| {
            serde_json::json!({
                "file": s.file,
                "gaps": s.gaps.iter().map(|g| [g.start, g.end]).collect::<Vec<_>>(),
                "given_up": s.given_up.len(),
                "quarantined": s.quarantined,
            })
        })
        .collect();
    let event = EventData::json(
        "$repaired",
        &serde_json::json!({
            "who": who,
            "reason": reason,
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "segments": segments,
        }),
    )?;
    // The store's own record: a system write (clients cannot write `$` events).
    store
        .append_multi(vec![StreamWrite::system(
            REPAIRS_STREAM,
            ExpectedVersion::Any,
            vec![event],
        )])
        .await
        .context("cannot record the repair in $repairs")?;
    Ok(())
}
