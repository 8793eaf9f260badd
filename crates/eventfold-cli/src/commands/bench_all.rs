//! `eventfold bench all`: every figure of our performance targets in one run, each
//! beside its baseline of the same run, printed in one table: the store's figures
//! against the raw fsync rate and the raw group commit (`eventfold bench`), HTTP
//! against the same writers in process (`bench http`), an aggregate's load against the
//! raw read of its stream (`bench load`), a scavenge against the appends
//! in its pauses (`bench scavenge`), personal fields against the same events without
//! (`bench personal`), upcasting against plain decoding (`bench upcast`) and, given a
//! database, PostgreSQL against Message DB (`bench postgres`). Each part runs as its
//! own subcommand does, with that subcommand's default sizes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::bench::Figure;

/// Every figure of the targets, each beside its baseline, in one run.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Data directory to measure (each part writes in a directory of its own in it
    /// and removes it afterwards).
    #[arg(long, env = "EVENTFOLD_DATA", value_name = "DIR")]
    data: PathBuf,
    /// A PostgreSQL database for the PostgreSQL figures (without it they are left out,
    /// and the run says so).
    #[arg(long, env = "EVENTFOLD_POSTGRES", value_name = "URL")]
    postgres: Option<String>,
    /// Leave Message DB out of the PostgreSQL figures.
    #[arg(long)]
    without_message_db: bool,
    /// Tiny sizes and fractions of a second: checks that every part runs, its figures
    /// mean nothing.
    #[arg(long)]
    quick: bool,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    data_dir: String,
    fsyncs_per_second: f64,
    synced_write_mb_per_second: f64,
    figures: Vec<Figure>,
    /// Parts not measured in this run, and why.
    left_out: Vec<String>,
}

/// The arguments of one part, as its subcommand would read them from `argv`, so that
/// the parts keep the defaults their subcommands document.
fn part_args<A: clap::Args + clap::FromArgMatches>(argv: &[String]) -> anyhow::Result<A> {
    let command = A::augment_args(clap::Command::new("eventfold bench").no_binary_name(true));
    let matches = command.try_get_matches_from(argv)?;
    Ok(A::from_arg_matches(&matches)?)
}

pub fn run(args: Args, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create {}", args.data.display()))?;
    let data = args.data.display().to_string();
    let quick = |sizes: &[&str]| -> Vec<String> {
        let mut argv = vec!["--data".to_string(), data.clone()];
        if args.quick {
            argv.extend(sizes.iter().map(|s| s.to_string()));
        }
        argv
    };
    let part = |name: &str| eprintln!("\n== {name}");

    part("the store (eventfold bench)");
    let store_args: super::bench::Args = part_args(&quick(&[
        "--seconds",
        "0.2",
        "--reopen-events",
        "20000",
        "--stream-events",
        "2000",
        "--batch-calls",
        "5",
        "--concurrent-appends",
        "10",
    ]))?;
    let store = super::bench::measure(&store_args, runtime).context("the store's figures")?;
    let mut figures = store.figures;

    part("loading an aggregate (eventfold bench load)");
    let load_args = part_args(&quick(&["--events", "3000", "--loads", "3"]))?;
    let load = super::bench_load::measure(&load_args, runtime).context("the load figures")?;
    figures.extend(load.figures());

    part("HTTP (eventfold bench http)");
    let http_args = part_args(&quick(&["--seconds", "0.3", "--connections", "4"]))?;
    let http = runtime
        .block_on(super::bench_http::measure(&http_args))
        .context("the HTTP figures")?;
    figures.extend(http.figures());
    // `bench http` keeps its store for a look at what was appended; this run does not.
    let _ = std::fs::remove_dir_all(args.data.join("bench-http"));

    part("scavenge (eventfold bench scavenge)");
    let scavenge_args = part_args(&quick(&[
        "--store-mb",
        "48",
        "--segment-mib",
        "20",
        "--seconds",
        "0.2",
        "--window-ms",
        "20",
        "--scavenge-mb-per-s",
        "0",
    ]))?;
    let scavenge =
        super::bench_scavenge::measure(&scavenge_args, runtime).context("the scavenge figures")?;
    figures.extend(scavenge.figures());

    part("personal data (eventfold bench personal)");
    let personal_args = part_args(&quick(&[
        "--events",
        "1000",
        "--rounds",
        "2",
        "--subjects",
        "10",
        "--single-events",
        "20",
    ]))?;
    let personal = super::bench_personal::measure(&personal_args, runtime)
        .context("the personal-data figures")?;
    figures.extend(personal.figures());

    part("upcasting (eventfold bench upcast)");
    let upcast_args = part_args(&if args.quick {
        vec!["--seconds".to_string(), "0.2".to_string()]
    } else {
        Vec::new()
    })?;
    let upcast = super::bench_upcast::measure(&upcast_args).context("the upcast figures")?;
    figures.extend(upcast.figures());

    let mut left_out = Vec::new();
    match &args.postgres {
        Some(url) => {
            part("PostgreSQL (eventfold bench postgres)");
            let mut argv = quick(&["--seconds", "0.2"]);
            argv.extend(["--postgres".to_string(), url.clone()]);
            if args.without_message_db {
                argv.push("--without-message-db".to_string());
            }
            let postgres_args = part_args(&argv)?;
            let postgres = runtime
                .block_on(super::bench_postgres::measure(&postgres_args))
                .context("the PostgreSQL figures")?;
            if let Some(why) = postgres.message_db_left_out() {
                left_out.push(format!("Message DB: {why}"));
            }
            figures.extend(postgres.figures());
        }
        None => left_out.push("PostgreSQL: no database given (--postgres URL)".to_string()),
    }

    let report = Report {
        data_dir: data,
        fsyncs_per_second: store.fsyncs_per_second,
        synced_write_mb_per_second: store.synced_write_mb_per_second,
        figures,
        left_out,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("\neventfold bench all on {}", report.data_dir);
    println!(
        "disk baseline (same run): {:.0} fsyncs/s, {:.0} MB/s synced writes; appends are \
         acknowledged after their fdatasync; events carry 200 bytes of data\n",
        report.fsyncs_per_second, report.synced_write_mb_per_second
    );
    super::bench::print_figures(&report.figures);
    let met = report
        .figures
        .iter()
        .filter(|f| f.met == Some(true))
        .count();
    let missed = report
        .figures
        .iter()
        .filter(|f| f.met == Some(false))
        .count();
    println!("\n{met} targets met, {missed} missed");
    for why in &report.left_out {
        println!("left out: {why}");
    }
    Ok(ExitCode::SUCCESS)
}
