//! `eventfold verify`: check a store end to end.

use std::process::ExitCode;

use crate::DataDir;

/// Check every checksum, length, position and revision; exit 0 when intact.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataDir,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = &args.data.data;
    anyhow::ensure!(
        dir.is_dir(),
        "data directory {} does not exist",
        dir.display()
    );
    let report = eventfold_log::verify(dir)?;
    if report.is_intact() {
        println!(
            "intact: {} events in {} streams, {} segments",
            report.events, report.streams, report.segments
        );
        if report.cold > 0 {
            println!(
                "{} of the segments are kept only in the archive: their markers and index \
                 files were checked here, their records are checked whenever they are fetched",
                report.cold
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    for damage in &report.damage {
        eprintln!("damaged: {damage}");
    }
    eprintln!(
        "error: {} problem(s) found in {} ({} intact events read)",
        report.damage.len(),
        dir.display(),
        report.events
    );
    Ok(ExitCode::FAILURE)
}
