//! `eventfold scavenge`: remove from the disk the events retention and deletion hide.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use eventfold_core::ScavengeSummary;
use eventfold_log::ScavengeOptions;

use crate::StoreArgs;

/// Rewrite the segments that hold events hidden by a hard or soft delete,
/// `truncate_before`, `max_count` or `max_age`, without them: on a data directory no
/// process has open, or online through a server (`--server`, an administrator's
/// token). `--dry-run` prints what would be reclaimed and changes nothing.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: StoreArgs,
    /// Print what a scavenge would reclaim, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let summary = match (&args.target.data, &args.target.server) {
        (_, Some(server)) => {
            eprintln!("… scavenging the store of {server} online (it keeps serving)");
            super::http_store(&args.target)?
                .scavenge(args.dry_run)
                .await
                .with_context(|| format!("cannot scavenge the store of {server}"))?
        }
        (Some(dir), None) => scavenge_directory(dir, args.dry_run).await?,
        (None, None) => anyhow::bail!("name the store with --data DIR or --server URL"),
    };
    print_summary(&summary);
    Ok(ExitCode::SUCCESS)
}

/// The scavenge of a data directory, opened here, with a progress bar of segments.
async fn scavenge_directory(
    dir: &std::path::Path,
    dry_run: bool,
) -> anyhow::Result<ScavengeSummary> {
    anyhow::ensure!(
        dir.join("segments").is_dir(),
        "{} holds no eventfold store",
        dir.display()
    );
    let store = Arc::new(super::open_store(dir)?);
    let cuts = eventfold_metadata::retention_cuts(store.as_ref(), chrono::Utc::now())
        .await
        .context("cannot read the streams' metadata")?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} segments {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let options = ScavengeOptions {
        dry_run,
        ..ScavengeOptions::default()
    };
    let report = {
        let store = store.clone();
        let bar = bar.clone();
        tokio::task::spawn_blocking(move || {
            store.scavenge_blocking(&|stream| cuts.keep_from(stream), &options, &mut |done| {
                bar.set_length(done.segments_total);
                bar.set_position(done.segments_done);
                bar.set_message(format!("{} reclaimed", megabytes(done.bytes_reclaimed)));
            })
        })
        .await
        .context("the scavenge thread failed")?
    };
    bar.finish_and_clear();
    let report =
        report.with_context(|| format!("cannot scavenge the store in {}", dir.display()))?;
    Ok(report.summary())
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn print_summary(summary: &ScavengeSummary) {
    if summary.dry_run {
        println!("dry run: nothing was changed; a scavenge would do this:");
    }
    println!(
        "segments rewritten: {} (of {} examined)",
        summary.files_rewritten, summary.files_examined
    );
    println!("events removed: {}", summary.events_removed);
    println!(
        "bytes reclaimed: {} ({} bytes of segments before, {} after)",
        summary.bytes_reclaimed(),
        summary.bytes_before,
        summary.bytes_after
    );
    let seconds = summary.elapsed.as_secs_f64();
    if !summary.dry_run && summary.files_rewritten > 0 && seconds > 0.0 {
        println!(
            "rate: {:.1} MB/s of segments rewritten ({seconds:.2} s)",
            summary.bytes_before as f64 / seconds / 1e6
        );
    }
}
