//! `eventfold bench scavenge`: how fast a scavenge rewrites segments, and what it costs
//! the appends that go on meanwhile, both measured in one run on the same disk.
//!
//! The store is filled with batches alternating between streams to remove and streams
//! to keep (half of the events go). Appends by concurrent writers, one event each, go
//! on while the scavenge runs on its own thread, working and pausing by turns in short
//! windows; the appends of the two kinds of window are compared (moments apart, so the
//! disk's drift stays out of the ratio). Appends alone before and after are printed for
//! scale.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use eventfold_core::{EventStore, ExpectedVersion};
use eventfold_log::{LogOptions, LogStore, ScavengeOptions};
use serde::Serialize;

use super::bench::Figure;

/// Our targets (docs/performance.md).
const TARGET_REWRITE_BYTES_PER_SECOND: f64 = 100e6;
const TARGET_APPEND_RATIO: f64 = 0.8;
/// Events per batch while filling the store.
const FILL_BATCH_EVENTS: usize = 1_000;

/// Measure a scavenge's rewrite rate and the append rate while it runs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Data directory to measure (the store is written in DIR/bench-scavenge).
    #[arg(long, env = "EVENTFOLD_DATA", value_name = "DIR")]
    data: PathBuf,
    /// Megabytes of events written before the scavenge (half of them removed by it).
    #[arg(long, default_value_t = 512)]
    store_mb: u64,
    /// Segment size in MiB.
    #[arg(long, default_value_t = 128)]
    segment_mib: u64,
    /// Concurrent writers appending one event at a time.
    #[arg(long, default_value_t = 16)]
    writers: u64,
    /// Seconds of each baseline measurement of the append rate.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Length of the alternating windows while the scavenge runs: it works for one,
    /// pauses for the next, and the appends of both kinds are compared.
    #[arg(long, default_value_t = 250, value_name = "MS")]
    window_ms: u64,
    /// Pace of the scavenge's reading, in MB/s (0: as fast as the disk goes); by
    /// default the pace of `serve`'s online scavenge.
    #[arg(long, default_value_t = super::serve::SCAVENGE_MB_PER_SECOND_DEFAULT, value_name = "MB")]
    scavenge_mb_per_s: u64,
    /// Print the figures as JSON instead of lines of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    data_dir: String,
    segments_rewritten: u64,
    bytes_rewritten: u64,
    bytes_reclaimed: u64,
    events_removed: u64,
    scavenge_seconds: f64,
    rewrite_mb_per_second: f64,
    rewrite_target_met: bool,
    /// Appends alone, before and after the scavenge (their mean), for scale.
    appends_per_second_before_and_after: f64,
    /// Appends in the windows the scavenge pauses.
    appends_per_second_without: f64,
    /// Appends in the windows the scavenge works.
    appends_per_second_during: f64,
    append_ratio: f64,
    append_target_met: bool,
}

pub fn run(args: Args, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let result = measure(&args, runtime)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "scavenge: {} segments, {:.0} MB rewritten in {:.2} s: {:.0} MB/s (target ≥ 100 MB/s: {})",
            result.segments_rewritten,
            result.bytes_rewritten as f64 / 1e6,
            result.scavenge_seconds,
            result.rewrite_mb_per_second,
            if result.rewrite_target_met {
                "met"
            } else {
                "missed"
            }
        );
        println!(
            "  {} events removed, {:.0} MB reclaimed",
            result.events_removed,
            result.bytes_reclaimed as f64 / 1e6
        );
        println!(
            "appends ({} writers, 1 event each; {:.0}/s before and after): {:.0}/s in the pauses, {:.0}/s while it works: {:.2} × (target ≥ 0.8 ×: {})",
            args.writers,
            result.appends_per_second_before_and_after,
            result.appends_per_second_without,
            result.appends_per_second_during,
            result.append_ratio,
            if result.append_target_met {
                "met"
            } else {
                "missed"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

impl Report {
    /// The figures of `eventfold bench all`: the rewrite rate beside its target, and
    /// the appends while the scavenge works beside those while it pauses.
    pub(super) fn figures(&self) -> Vec<Figure> {
        vec![
            Figure {
                name: format!(
                    "scavenge: rewrite of {:.0} MB of segments",
                    self.bytes_rewritten as f64 / 1e6
                ),
                value: self.rewrite_mb_per_second,
                unit: "MB/s",
                ratio: self.rewrite_mb_per_second * 1e6 / TARGET_REWRITE_BYTES_PER_SECOND,
                ratio_of: "MB/s rewritten (pauses left out) ÷ the target's 100 MB/s",
                target: "≥ 100 MB/s".into(),
                met: Some(self.rewrite_target_met),
            },
            Figure {
                name: "scavenge: appends while it works".into(),
                value: self.appends_per_second_during,
                unit: "events/s",
                ratio: self.append_ratio,
                ratio_of: "events/s while the scavenge works ÷ events/s in the windows it pauses, alternating",
                target: format!("≥ {TARGET_APPEND_RATIO} × without"),
                met: Some(self.append_target_met),
            },
        ]
    }
}

/// Fills a store, then scavenges it while appends go on.
pub(super) fn measure(args: &Args, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Report> {
    let dir = args.data.join("bench-scavenge");
    let _ = std::fs::remove_dir_all(&dir);
    let options = LogOptions {
        segment_bytes_max: args.segment_mib * 1024 * 1024,
        ..LogOptions::default()
    };
    let store = Arc::new(
        LogStore::open(&dir, options)
            .with_context(|| format!("cannot open a store in {}", dir.display()))?,
    );
    let event = super::bench::bench_event();
    let per_event = 300u64; // a 200-byte event's record, roughly
    let batches = (args.store_mb * 1_000_000 / per_event).div_ceil(FILL_BATCH_EVENTS as u64);
    eprintln!(
        "filling {} with {} events…",
        dir.display(),
        batches * FILL_BATCH_EVENTS as u64
    );
    runtime.block_on(async {
        for b in 0..batches {
            let stream = if b % 2 == 0 {
                format!("doomed-{}", b % 64)
            } else {
                format!("kept-{}", b % 64)
            };
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![event.clone(); FILL_BATCH_EVENTS],
                )
                .await?;
        }
        anyhow::Ok(())
    })?;

    let duration = Duration::from_secs_f64(args.seconds);
    let before = runtime.block_on(appends(&store, args.writers, duration))?;
    eprintln!("appends without a scavenge: {before:.0}/s");

    let done = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let pace = args.scavenge_mb_per_s;
    let scavenge = {
        let store = store.clone();
        let done = done.clone();
        let paused = paused.clone();
        std::thread::spawn(move || {
            let keep_from = |stream: &str| {
                if stream.starts_with("doomed-") {
                    u64::MAX
                } else {
                    0
                }
            };
            let options = ScavengeOptions {
                rewrite_bytes_per_second_max: Some(pace * 1_000_000),
                paused: Some(paused),
                ..ScavengeOptions::default()
            };
            let report = store.scavenge_blocking(&keep_from, &options, &mut |p| {
                eprintln!(
                    "  segment {}/{} done, {:.0} MB reclaimed",
                    p.segments_done,
                    p.segments_total,
                    p.bytes_reclaimed as f64 / 1e6
                );
            });
            done.store(true, Ordering::Relaxed);
            report
        })
    };
    let window = Duration::from_millis(args.window_ms.max(10));
    let paired = runtime.block_on(alternating(&store, args.writers, &done, &paused, window))?;
    let report = scavenge
        .join()
        .map_err(|_| anyhow::anyhow!("the scavenge thread panicked"))??;
    eprintln!(
        "appends while the scavenge works: {:.0}/s, while it pauses: {:.0}/s",
        paired.working, paired.pausing
    );
    let after = runtime.block_on(appends(&store, args.writers, duration))?;
    eprintln!("appends after the scavenge: {after:.0}/s");
    let without = (before + after) / 2.0;
    // The scavenge's time, its pauses left out.
    let working_seconds = (report.elapsed.as_secs_f64() - paired.paused_seconds).max(1e-9);
    let rewrite = report.bytes_before() as f64 / working_seconds;
    let result = Report {
        data_dir: args.data.display().to_string(),
        segments_rewritten: report.segments_rewritten(),
        bytes_rewritten: report.bytes_before(),
        bytes_reclaimed: report.bytes_reclaimed(),
        events_removed: report.events_removed(),
        scavenge_seconds: working_seconds,
        rewrite_mb_per_second: rewrite / 1e6,
        rewrite_target_met: rewrite >= TARGET_REWRITE_BYTES_PER_SECOND,
        appends_per_second_before_and_after: without,
        appends_per_second_without: paired.pausing,
        appends_per_second_during: paired.working,
        append_ratio: paired.working / paired.pausing,
        append_target_met: paired.working >= TARGET_APPEND_RATIO * paired.pausing,
    };
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(result)
}

/// The appends of [`alternating`], by kind of window.
struct Paired {
    /// Events per second in the windows the scavenge worked.
    working: f64,
    /// Events per second in the windows it paused.
    pausing: f64,
    paused_seconds: f64,
}

/// Appends one event at a time from `writers` tasks until `done`, while the scavenge
/// works and pauses by turns (`paused` flips every `window`). Comparing windows moments
/// apart keeps the disk's drift (it moves by a factor of two within minutes on shared
/// virtual disks) out of the ratio. An append is counted in the window it ends in.
async fn alternating(
    store: &Arc<LogStore>,
    writers: u64,
    done: &Arc<AtomicBool>,
    paused: &Arc<AtomicBool>,
    window: Duration,
) -> anyhow::Result<Paired> {
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, done, paused, counts) =
            (store.clone(), done.clone(), paused.clone(), counts.clone());
        let event = super::bench::bench_event();
        tasks.push(tokio::spawn(async move {
            let stream = format!("live-{w}");
            while !done.load(Ordering::Relaxed) {
                store
                    .append(&stream, ExpectedVersion::Any, vec![event.clone()])
                    .await?;
                counts[usize::from(paused.load(Ordering::Relaxed))].fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let mut seconds = [0.0f64; 2];
    let mut phase = 0usize;
    while !done.load(Ordering::Relaxed) {
        let started = Instant::now();
        tokio::time::sleep(window).await;
        seconds[phase] += started.elapsed().as_secs_f64();
        phase = 1 - phase;
        paused.store(phase == 1, Ordering::Relaxed);
    }
    paused.store(false, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    let rate = |i: usize| counts[i].load(Ordering::Relaxed) as f64 / seconds[i].max(1e-9);
    Ok(Paired {
        working: rate(0),
        pausing: rate(1),
        paused_seconds: seconds[1],
    })
}

/// Appends one event at a time from `writers` tasks for `duration`; events per second.
async fn appends(store: &Arc<LogStore>, writers: u64, duration: Duration) -> anyhow::Result<f64> {
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, count) = (store.clone(), count.clone());
        let event = super::bench::bench_event();
        tasks.push(tokio::spawn(async move {
            let stream = format!("live-{w}");
            while started.elapsed() < duration {
                store
                    .append(&stream, ExpectedVersion::Any, vec![event.clone()])
                    .await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
