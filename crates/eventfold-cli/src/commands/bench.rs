//! `eventfold bench`: measures the data directory's disk (raw fsync rate, synced write
//! bandwidth, and the raw group commit just before each figure it is the baseline of),
//! then the store on the same disk, and prints every figure beside the raw baseline of
//! the same run, as a ratio, with its target (docs/performance.md).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use eventfold_core::{
    AllFilter, EventData, EventStore, ExpectedVersion, Position, ReadAll, ReadStream,
};
use eventfold_log::{LogOptions, LogStore};
use eventfold_subscription::Subscription;
use serde::Serialize;

use super::bench_group_commit::raw_group_commit_rate;

/// Measure the disk, then the store; print each figure with its ratio to the disk.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// `http`: measure appends per second over loopback HTTP instead.
    #[command(subcommand)]
    pub target: Option<Target>,
    /// Data directory to measure (the store is written in DIR/bench-store).
    #[arg(long, env = "EVENTFOLD_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    /// Events in the store whose reopening is timed.
    #[arg(long, default_value_t = 10_000_000)]
    reopen_events: u64,
    /// Events in the stream whose loading is timed.
    #[arg(long, default_value_t = 100_000)]
    stream_events: u64,
    /// Seconds spent on each timed-by-duration measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Calls of 1,000 events made by each batch writer.
    #[arg(long, default_value_t = 500)]
    batch_calls: u64,
    /// Appends made by each of the 64 concurrent writers.
    #[arg(long, default_value_t = 2_000)]
    concurrent_appends: u64,
    /// Bytes the store's active segment is allocated ahead of its writes (0: none;
    /// default: the store's default), to measure the store with and without.
    #[arg(long, value_name = "BYTES")]
    preallocate_bytes: Option<u64>,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Keep the store the benchmark wrote (in DIR/bench-store).
    #[arg(long)]
    keep: bool,
}

/// What else to measure.
#[derive(Debug, clap::Subcommand)]
pub enum Target {
    /// Appends per second over HTTP with 64 connections (the server's target).
    Http(super::bench_http::Args),
    /// A scavenge's rewrite rate, and appends per second while it runs.
    Scavenge(super::bench_scavenge::Args),
    /// Loading an aggregate of 100,000 events, in full and from a snapshot.
    Load(super::bench_load::Args),
    /// Appends and reads of events with one personal field beside the same without.
    Personal(super::bench_personal::Args),
    /// Decoding through a chain of three upcasts beside plain decoding.
    Upcast(super::bench_upcast::Args),
    /// The PostgreSQL backend beside Message DB on the same database.
    Postgres(super::bench_postgres::Args),
    /// Every figure above in one run, printed in one table.
    All(super::bench_all::Args),
}

/// The store's options, as the arguments ask.
fn log_options(args: &Args) -> LogOptions {
    let defaults = LogOptions::default();
    LogOptions {
        preallocate_bytes: args.preallocate_bytes.unwrap_or(defaults.preallocate_bytes),
        ..defaults
    }
}

/// Bytes of each event's data, as in the targets of docs/performance.md.
pub(super) const EVENT_DATA_BYTES: usize = 200;
const BATCH_EVENTS: usize = 1_000;

/// One measured figure beside its baseline of the same run.
#[derive(Debug, Serialize)]
pub(super) struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    /// Value divided by its baseline (what the ratio means is in `ratio_of`).
    pub ratio: f64,
    pub ratio_of: &'static str,
    /// Empty for a figure printed for scale only.
    pub target: String,
    /// `None`: no target, or not measurable at the size asked for.
    pub met: Option<bool>,
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    data_dir: String,
    pub fsyncs_per_second: f64,
    pub synced_write_mb_per_second: f64,
    pub figures: Vec<Figure>,
}

pub fn run(args: Args, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    match args.target {
        Some(Target::Http(http)) => return runtime.block_on(super::bench_http::run(http)),
        Some(Target::Scavenge(scavenge)) => return super::bench_scavenge::run(scavenge, runtime),
        Some(Target::Personal(personal)) => return super::bench_personal::run(personal, runtime),
        Some(Target::Load(load)) => return super::bench_load::run(load, runtime),
        Some(Target::Upcast(upcast)) => return super::bench_upcast::run(upcast),
        Some(Target::Postgres(postgres)) => return super::bench_postgres::run(postgres, runtime),
        Some(Target::All(all)) => return super::bench_all::run(all, runtime),
        None => {}
    }
    let report = measure(&args, runtime)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// The store's figures on the disk of `args.data`, each beside its baseline.
pub(super) fn measure(args: &Args, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Report> {
    let root = args
        .data
        .clone()
        .context("name the data directory to measure with --data DIR")?;
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let duration = Duration::from_secs_f64(args.seconds);
    let fsync_rate = raw_fsync_rate(&root, duration)?;
    let bandwidth = raw_write_bandwidth(&root, duration)?;
    let mb = 1024.0 * 1024.0;
    progress(
        args,
        &format!(
            "disk baseline: {fsync_rate:.0} fsyncs/s, {:.0} MB/s synced writes",
            bandwidth / mb
        ),
    );

    let store_dir = root.join("bench-store");
    let _ = std::fs::remove_dir_all(&store_dir);
    let mut figures = Vec::new();
    let store = Arc::new(LogStore::open(&store_dir, log_options(args))?);
    let event = bench_event();
    let record_bytes = EVENT_DATA_BYTES as f64;
    // What the log writes for one such event (its record, framing included): the
    // raw group commit below writes records of that size.
    let before = store.stats();
    runtime.block_on(store.append("record-size", ExpectedVersion::Any, vec![event.clone()]))?;
    let after = store.stats();
    let stored_record_bytes = usize::try_from((after.bytes - before.bytes).max(1))?;

    // One writer, one event per append, against the raw fsync rate measured in
    // interleaved slices of the same length: the disk's speed drifts within a run, and
    // both sides must meet the disk in the same moments.
    let slices = 5;
    let slice = duration.div_f64(f64::from(slices));
    let before = store.stats();
    let (mut appends, mut elapsed, mut raw_rates) = (0u64, Duration::ZERO, Vec::new());
    for _ in 0..slices {
        raw_rates.push(raw_fsync_rate(&root, slice)?);
        let (n, t) = runtime.block_on(single_writer(&store, slice, &event))?;
        appends += n;
        elapsed += t;
    }
    let interleaved_fsync_rate = raw_rates.iter().sum::<f64>() / raw_rates.len() as f64;
    let stats = store.stats();
    progress(
        args,
        &format!(
            "single writer: {:.0} µs per fsync, {:.0} µs per append; raw fsync rate in the interleaved slices {interleaved_fsync_rate:.0}/s",
            (stats.sync_nanos - before.sync_nanos) as f64
                / (stats.commits - before.commits) as f64
                / 1000.0,
            elapsed.as_secs_f64() * 1e6 / appends as f64
        ),
    );
    let rate = appends as f64 / elapsed.as_secs_f64();
    figures.push(Figure {
        name: "1 writer, 1 event per append".into(),
        value: rate,
        unit: "appends/s",
        ratio: rate / interleaved_fsync_rate,
        ratio_of: "appends/s ÷ raw fsyncs/s measured in interleaved slices",
        target: "≥ 0.9 × raw fsync rate".into(),
        met: Some(rate >= 0.9 * interleaved_fsync_rate),
    });
    progress(args, &format!("single writer: {rate:.0} appends/s"));

    let group_commit = raw_group_commit_rate(&root, 64, 1, stored_record_bytes, duration)?;
    progress(
        args,
        &format!(
            "raw group commit fed by 64 threads: {group_commit:.0} records/s of {stored_record_bytes} bytes"
        ),
    );
    let before = store.stats();
    let started = Instant::now();
    let events = runtime.block_on(concurrent_singles(
        &store,
        64,
        args.concurrent_appends,
        &event,
    ))?;
    let rate = events as f64 / started.elapsed().as_secs_f64();
    let stats = store.stats();
    let commits = stats.commits - before.commits;
    progress(
        args,
        &format!(
            "64 writers: {commits} commits, {:.1} events per commit, {:.0} µs per fsync",
            (stats.events - before.events) as f64 / commits as f64,
            (stats.sync_nanos - before.sync_nanos) as f64 / commits as f64 / 1000.0
        ),
    );
    figures.push(Figure {
        name: "64 concurrent writers, 1 event per append".into(),
        value: rate,
        unit: "events/s",
        ratio: rate / group_commit,
        ratio_of: "events/s ÷ records/s of the raw group commit fed by 64 threads, measured just before",
        target: "≥ 1.0 × raw group commit".into(),
        met: Some(rate >= group_commit),
    });
    progress(args, &format!("64 concurrent writers: {rate:.0} events/s"));

    for writers in [1u64, 4] {
        let group_commit = raw_group_commit_rate(
            &root,
            usize::try_from(writers)?,
            BATCH_EVENTS,
            stored_record_bytes,
            duration,
        )?;
        progress(
            args,
            &format!(
                "raw group commit fed 1,000 records at a time by {writers} thread(s): {group_commit:.0} records/s"
            ),
        );
        let started = Instant::now();
        let events = runtime.block_on(batch_append(&store, writers, args.batch_calls, &event))?;
        let rate = events as f64 / started.elapsed().as_secs_f64();
        figures.push(Figure {
            name: format!("batch append, 1,000 events per call, {writers} writer(s)"),
            value: rate,
            unit: "events/s",
            ratio: rate / group_commit,
            ratio_of: "events/s ÷ records/s of the raw group commit fed 1,000 at a time by as many threads, measured just before",
            target: "≥ 0.9 × raw group commit".into(),
            met: Some(rate >= 0.9 * group_commit),
        });
        progress(
            args,
            &format!("batch append ({writers} writer(s)): {rate:.0} events/s"),
        );
    }

    // A stream of `stream_events`, written in batches between other streams' events.
    for chunk in 0..args.stream_events.div_ceil(BATCH_EVENTS as u64) {
        let n = (args.stream_events - chunk * BATCH_EVENTS as u64).min(BATCH_EVENTS as u64);
        let events = vec![event.clone(); n as usize];
        runtime.block_on(store.append("big-stream", ExpectedVersion::Any, events))?;
        runtime.block_on(store.append("other", ExpectedVersion::Any, vec![event.clone(); 10]))?;
    }
    let mut loads = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let events = store.read_stream_blocking("big-stream", ReadStream::forward())?;
        loads.push(started.elapsed());
        anyhow::ensure!(
            events.len() as u64 == args.stream_events,
            "stream load returned {} events",
            events.len()
        );
    }
    loads.sort();
    let load = loads[loads.len() / 2];
    let raw_time = args.stream_events as f64 * record_bytes / bandwidth;
    figures.push(Figure {
        name: format!("load one {}-event stream (median of 5)", args.stream_events),
        value: load.as_secs_f64() * 1000.0,
        unit: "ms",
        ratio: load.as_secs_f64() / raw_time,
        ratio_of: "time ÷ time to write its bytes at synced bandwidth",
        target: "< 100 ms for 100,000 events".into(),
        met: (args.stream_events == 100_000).then(|| load < Duration::from_millis(100)),
    });
    progress(
        args,
        &format!("stream load: {:.1} ms", load.as_secs_f64() * 1000.0),
    );

    let started = Instant::now();
    let (replayed, payload) = replay_all(&store)?;
    let elapsed = started.elapsed().as_secs_f64();
    let rate = replayed as f64 / elapsed;
    figures.push(Figure {
        name: format!("full replay of $all ({replayed} events, envelopes decoded)"),
        value: rate,
        unit: "events/s",
        ratio: payload as f64 / elapsed / bandwidth,
        ratio_of: "payload bytes/s ÷ synced write bandwidth",
        target: "≥ 2,000,000 events/s".into(),
        met: Some(rate >= 2_000_000.0),
    });
    progress(args, &format!("replay: {rate:.0} events/s"));

    let catch_up = runtime.block_on(catch_up_then_live(&store, LIVE_EVENTS))?;
    figures.push(Figure {
        name: format!(
            "subscription: catch up on {} events, then {} live ones",
            catch_up.backlog, LIVE_EVENTS
        ),
        value: catch_up.backlog as f64 / catch_up.catch_up_seconds,
        unit: "events/s",
        ratio: catch_up.rss_growth_bytes as f64 / mb,
        ratio_of: "MB the process grew while reading (flat: near 0)",
        target: "no event lost, memory flat".into(),
        met: Some(catch_up.rss_growth_bytes < 64 * 1024 * 1024),
    });
    progress(
        args,
        &format!(
            "catch-up: {:.0} events/s, memory grew {:.1} MB",
            catch_up.backlog as f64 / catch_up.catch_up_seconds,
            catch_up.rss_growth_bytes as f64 / mb
        ),
    );

    // A server's memory over the store as it is now: the first of two sizes, so that
    // what each event costs is told apart from what any store costs (the runtime, the
    // window of recent ids, which stops growing after a few segments).
    let have = store.event_count();
    drop(Arc::into_inner(store).context("store still shared")?);
    progress(
        args,
        "starting a server over the store to measure its memory…",
    );
    let smaller = server_resident_bytes(&store_dir)?;
    let store = Arc::new(LogStore::open(&store_dir, log_options(args))?);

    // Fill up to `reopen_events`, spread over 10,000 streams, then time `open`.
    if args.reopen_events > have {
        progress(
            args,
            &format!("filling the store to {} events…", args.reopen_events),
        );
        runtime.block_on(fill(&store, args.reopen_events - have, &event))?;
    }
    let total = store.event_count();
    drop(Arc::into_inner(store).context("store still shared")?);
    let store_bytes = dir_bytes(&store_dir)?;
    let started = Instant::now();
    let store = LogStore::open(&store_dir, log_options(args))?;
    let reopen = started.elapsed();
    anyhow::ensure!(
        store.event_count() == total,
        "reopened store has {} events, not {total}",
        store.event_count()
    );
    drop(store);
    figures.push(Figure {
        name: format!(
            "reopen a store of {total} events ({:.1} GB)",
            store_bytes as f64 / 1e9
        ),
        value: reopen.as_secs_f64(),
        unit: "s",
        ratio: reopen.as_secs_f64() / (store_bytes as f64 / bandwidth),
        ratio_of: "time ÷ time to write the store once at synced bandwidth",
        target: "< 2 s for 10,000,000 events".into(),
        met: (total >= 10_000_000).then(|| reopen < Duration::from_secs(2)),
    });
    let full = server_resident_bytes(&store_dir)?;
    // The cost of each event between the two sizes, and a store of 100 million events
    // at that cost (an upper bound while the smaller store's id window is not full).
    // (Nothing to tell apart when the store was not filled further.)
    let added = total.saturating_sub(have);
    let per_event = if added == 0 {
        0.0
    } else {
        full.saturating_sub(smaller) as f64 / added as f64
    };
    let projected = full as f64 + per_event * (100e6 - total as f64).max(0.0);
    figures.push(Figure {
        name: format!("resident memory of a server over {total} events"),
        value: full as f64 / mb,
        unit: "MB",
        ratio: per_event,
        ratio_of: "bytes per event, from the server's memory at two sizes of the store",
        target: "< 1.5 GB for 100M events".into(),
        met: (total >= have + 1_000_000).then_some(projected < 1.5e9),
    });
    progress(
        args,
        &format!(
            "server memory: {:.0} MB over {have} events, {:.0} MB over {total} ({per_event:.1} bytes \
             per event between the two; {:.2} GB for 100M events at that rate)",
            smaller as f64 / mb,
            full as f64 / mb,
            projected / 1e9
        ),
    );
    if !args.keep {
        std::fs::remove_dir_all(&store_dir)
            .with_context(|| format!("removing {}", store_dir.display()))?;
    }

    Ok(Report {
        data_dir: root.display().to_string(),
        fsyncs_per_second: fsync_rate,
        synced_write_mb_per_second: bandwidth / mb,
        figures,
    })
}

/// Events appended while the catch-up subscription reads, in appends of 100.
const LIVE_EVENTS: u64 = 100_000;

struct CatchUp {
    backlog: u64,
    catch_up_seconds: f64,
    rss_growth_bytes: u64,
}

/// Reads `$all` from the start with a subscription while a writer appends
/// `live_events` more; every position must come exactly once, in order. Samples the
/// process's resident memory as it goes.
async fn catch_up_then_live(store: &Arc<LogStore>, live_events: u64) -> anyhow::Result<CatchUp> {
    let backlog = store.event_count();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let events = vec![bench_event(); 100];
            for _ in 0..live_events / 100 {
                store
                    .append("live", ExpectedVersion::Any, events.clone())
                    .await?;
            }
            anyhow::Ok(())
        })
    };
    let mut subscription = Subscription::to_all(store.clone(), None, AllFilter::default());
    let rss_start = resident_bytes()?;
    let mut rss_max = rss_start;
    let started = Instant::now();
    let mut catch_up_seconds = None;
    let total = backlog + live_events;
    for expected in 0..total {
        let event = subscription.next().await?;
        anyhow::ensure!(
            event.position.get() == expected,
            "the subscription delivered position {} where {expected} was due",
            event.position.get()
        );
        if expected % 65_536 == 0 {
            rss_max = rss_max.max(resident_bytes()?);
        }
        if expected + 1 == backlog {
            catch_up_seconds = Some(started.elapsed().as_secs_f64());
        }
    }
    writer.await??;
    rss_max = rss_max.max(resident_bytes()?);
    Ok(CatchUp {
        backlog,
        catch_up_seconds: catch_up_seconds.unwrap_or_else(|| started.elapsed().as_secs_f64()),
        rss_growth_bytes: rss_max.saturating_sub(rss_start),
    })
}

/// The process's resident memory, from `/proc/self/status` (Linux).
fn resident_bytes() -> anyhow::Result<u64> {
    resident_bytes_of("self")
}

/// A process's resident memory (`pid` or `self`), from `/proc/PID/status` (Linux).
fn resident_bytes_of(pid: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{path} has no VmRSS line"))?;
    Ok(kib * 1024)
}

/// Starts `eventfold serve` (this executable) over `dir` on a free loopback port, waits
/// until it says it listens (by then the store is open and its index loaded), reads
/// its resident memory, and stops it with SIGTERM.
fn server_resident_bytes(dir: &Path) -> anyhow::Result<u64> {
    use std::io::{BufRead, Read};
    use std::process::{Command, Stdio};

    let exe = std::env::current_exe().context("finding the eventfold executable")?;
    let mut child = Command::new(exe)
        .args(["serve", "--insecure", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir)
        .env_remove("EVENTFOLD_AUTH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting eventfold serve")?;
    let mut line = String::new();
    let stdout = child.stdout.take().context("the server's stdout")?;
    let mut stdout = std::io::BufReader::new(stdout);
    stdout.read_line(&mut line)?;
    let resident = if line.starts_with("eventfold listening on") {
        resident_bytes_of(&child.id().to_string())
    } else {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        Err(anyhow::anyhow!(
            "eventfold serve over {} did not start: {}{}",
            dir.display(),
            line.trim(),
            stderr.trim()
        ))
    };
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    // Drain what it prints while stopping, so it never blocks on a full pipe.
    let _ = std::io::copy(&mut stdout, &mut std::io::sink());
    let status = child
        .wait()
        .context("waiting for eventfold serve to stop")?;
    let resident = resident?;
    anyhow::ensure!(
        status.success(),
        "eventfold serve over {} stopped with {status}",
        dir.display()
    );
    Ok(resident)
}

fn progress(args: &Args, message: &str) {
    if !args.json {
        eprintln!("… {message}");
    }
}

pub(crate) fn bench_event() -> EventData {
    let filler = "x".repeat(EVENT_DATA_BYTES - r#"{"payload":""}"#.len());
    let data = format!(r#"{{"payload":"{filler}"}}"#);
    debug_assert_eq!(data.len(), EVENT_DATA_BYTES);
    EventData {
        id: None,
        event_type: "BenchmarkRecorded".into(),
        version: 1,
        data: Bytes::from(data),
        metadata: Bytes::from_static(b"{}"),
    }
}

/// Appends of 256 bytes at the end of a growing file, each followed by `fdatasync`:
/// what one single-event commit costs at the very least.
fn raw_fsync_rate(dir: &Path, duration: Duration) -> anyhow::Result<f64> {
    let (file, path) = scratch_file(dir, "bench-raw-fsync")?;
    let block = [0xa5u8; 256];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < duration {
        file.write_all_at(&block, count * block.len() as u64)?;
        file.sync_data()?;
        count += 1;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    std::fs::remove_file(path)?;
    Ok(rate)
}

/// 1 MiB appends at the end of a growing file, each followed by `fdatasync`.
fn raw_write_bandwidth(dir: &Path, duration: Duration) -> anyhow::Result<f64> {
    let (file, path) = scratch_file(dir, "bench-raw-bandwidth")?;
    let block = vec![0x5au8; 1024 * 1024];
    let started = Instant::now();
    let mut written = 0u64;
    while started.elapsed() < duration {
        file.write_all_at(&block, written)?;
        file.sync_data()?;
        written += block.len() as u64;
    }
    let rate = written as f64 / started.elapsed().as_secs_f64();
    std::fs::remove_file(path)?;
    Ok(rate)
}

/// A new empty file `name` in `dir` (any earlier one truncated), and its path.
pub(super) fn scratch_file(dir: &Path, name: &str) -> anyhow::Result<(File, PathBuf)> {
    let path = dir.join(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok((file, path))
}

async fn batch_append(
    store: &Arc<LogStore>,
    writers: u64,
    calls: u64,
    event: &EventData,
) -> anyhow::Result<u64> {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let batch = vec![event.clone(); BATCH_EVENTS];
        tasks.push(tokio::spawn(async move {
            for _ in 0..calls {
                store
                    .append(&format!("batch-{w}"), ExpectedVersion::Any, batch.clone())
                    .await?;
            }
            anyhow::Ok(calls * BATCH_EVENTS as u64)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total)
}

async fn concurrent_singles(
    store: &Arc<LogStore>,
    writers: u64,
    appends: u64,
    event: &EventData,
) -> anyhow::Result<u64> {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let event = event.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("writer-{w}");
            for _ in 0..appends {
                store
                    .append(&stream, ExpectedVersion::Any, vec![event.clone()])
                    .await?;
            }
            anyhow::Ok(appends)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total)
}

async fn single_writer(
    store: &LogStore,
    duration: Duration,
    event: &EventData,
) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let mut appends = 0;
    while started.elapsed() < duration {
        store
            .append("single", ExpectedVersion::Any, vec![event.clone()])
            .await?;
        appends += 1;
    }
    Ok((appends, started.elapsed()))
}

fn replay_all(store: &LogStore) -> anyhow::Result<(u64, u64)> {
    let mut from = Position(0);
    let (mut events, mut payload) = (0u64, 0u64);
    loop {
        let page = store.read_all_blocking(&ReadAll::from(from, super::PAGE_EVENTS))?;
        events += page.events.len() as u64;
        payload += page.events.iter().map(|e| e.data.len() as u64).sum::<u64>();
        from = page.next;
        if page.end_of_log {
            return Ok((events, payload));
        }
    }
}

async fn fill(store: &Arc<LogStore>, events: u64, event: &EventData) -> anyhow::Result<()> {
    let calls = events.div_ceil(BATCH_EVENTS as u64);
    let writers = 4u64;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let batch = vec![event.clone(); BATCH_EVENTS];
        tasks.push(tokio::spawn(async move {
            let mut call = w;
            while call < calls {
                let stream = format!("fill-{}", call % 10_000);
                store
                    .append(&stream, ExpectedVersion::Any, batch.clone())
                    .await?;
                call += writers;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn print_table(report: &Report) {
    println!("eventfold bench on {}", report.data_dir);
    println!(
        "disk baseline (same run): {:.0} fsyncs/s (256 B append + fdatasync), {:.0} MB/s synced writes (1 MiB + fdatasync)",
        report.fsyncs_per_second, report.synced_write_mb_per_second
    );
    println!(
        "every append below is acknowledged only after its fdatasync; events carry 200 bytes of data\n"
    );
    print_figures(&report.figures);
}

/// `report` as JSON with `json`, else its figures as a table.
pub(super) fn print_report(
    report: &impl Serialize,
    figures: &[Figure],
    json: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print_figures(figures);
    }
    Ok(ExitCode::SUCCESS)
}

/// The figures as a table, then what each ratio divides by what.
pub(super) fn print_figures(figures: &[Figure]) {
    println!(
        "{:<62} {:>16} {:>8}  {:<28} result",
        "figure", "value", "ratio", "target"
    );
    for f in figures {
        let value = format!("{} {}", group(f.value, f.unit), f.unit);
        let verdict = match f.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None if f.target.is_empty() => "(for scale)",
            None => "(n/a in this run)",
        };
        println!(
            "{:<62} {:>16} {:>8.2}  {:<28} {verdict}",
            f.name, value, f.ratio, f.target
        );
    }
    println!("\nratios:");
    // One line per run of figures whose ratios divide alike.
    let mut rest = figures;
    while let Some(first) = rest.first() {
        let alike = rest
            .iter()
            .take_while(|f| f.ratio_of == first.ratio_of)
            .count();
        let and = match alike {
            1 => String::new(),
            2 => " (and the one after it)".to_string(),
            n => format!(" (and the {} after it)", n - 1),
        };
        println!("  {}{and}: {}", first.name, first.ratio_of);
        rest = &rest[alike..];
    }
}

fn group(value: f64, unit: &str) -> String {
    if unit == "ms" || unit == "s" {
        return format!("{value:.2}");
    }
    let digits = format!("{value:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
