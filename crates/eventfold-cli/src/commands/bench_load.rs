//! `eventfold bench load`: loading an aggregate of 100,000 events from the embedded
//! engine through the framework's `Repository` (every event read, upcast, decoded into
//! its Rust type and folded), and loading it from a snapshot (the snapshot event, then
//! the empty tail), beside the raw read of the same stream (envelopes only) in the same
//! run. Our targets: under 100 ms, and under 1 ms from a snapshot.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventfold::{
    Aggregate, Decision, DomainEvent, EventStore, EventType, ExpectedVersion, ReadStream,
    Repository,
};
use eventfold_log::{LogOptions, LogStore};
use serde::{Deserialize, Serialize};

use super::bench::Figure;

const STREAM: &str = "account-1";
/// Our targets (docs/performance.md), for a stream of 100,000 events.
const TARGET_FULL: Duration = Duration::from_millis(100);
const TARGET_SNAPSHOT: Duration = Duration::from_millis(1);
const TARGET_EVENTS: u64 = 100_000;

/// Measure loading an aggregate, in full and from a snapshot.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Data directory to measure (the store is written in DIR/bench-load).
    #[arg(long, env = "EVENTFOLD_DATA", value_name = "DIR")]
    data: PathBuf,
    /// Events in the aggregate's stream.
    #[arg(long, default_value_t = TARGET_EVENTS)]
    events: u64,
    /// Loads of each kind; each figure is their median.
    #[arg(long, default_value_t = 11)]
    loads: usize,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    events: u64,
    read_ms: f64,
    load_ms: f64,
    snapshot_load_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum AccountEvent {
    AccountOpened { owner: String },
    MoneyDeposited { cents: u64, reference: String },
}

impl DomainEvent for AccountEvent {
    const TYPES: &'static [EventType] = &[
        EventType::new("AccountOpened", 1),
        EventType::new("MoneyDeposited", 1),
    ];
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    open: bool,
    balance: u64,
    deposits: u64,
}

impl Aggregate for Account {
    const NAME: &'static str = "account";
    type Command = ();
    type Event = AccountEvent;
    type Rejection = String;
    fn decide(&self, _: &()) -> Result<Decision<AccountEvent>, String> {
        Ok(Decision::none())
    }
    fn evolve(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::AccountOpened { .. } => self.open = true,
            AccountEvent::MoneyDeposited { cents, .. } => {
                self.balance += cents;
                self.deposits += 1;
            }
        }
    }
}

pub fn run(args: Args, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let report = measure(&args, runtime)?;
    super::bench::print_report(&report, &report.figures(), args.json)
}

impl Report {
    pub(super) fn figures(&self) -> Vec<Figure> {
        let at_target_size = self.events == TARGET_EVENTS;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        vec![
            Figure {
                name: format!("load an aggregate of {} events", self.events),
                value: self.load_ms,
                unit: "ms",
                ratio: self.load_ms / self.read_ms,
                ratio_of: "time ÷ time of the raw read of the same stream (envelopes only), same run",
                target: "< 100 ms for 100,000 events".into(),
                met: at_target_size.then_some(self.load_ms < ms(TARGET_FULL)),
            },
            Figure {
                name: format!(
                    "load the aggregate of {} events from a snapshot",
                    self.events
                ),
                value: self.snapshot_load_ms,
                unit: "ms",
                ratio: self.snapshot_load_ms / self.load_ms,
                ratio_of: "time ÷ time of the full load of the same aggregate, same run",
                target: "< 1 ms".into(),
                met: at_target_size.then_some(self.snapshot_load_ms < ms(TARGET_SNAPSHOT)),
            },
        ]
    }
}

/// Fills one stream, then times each kind of load `args.loads` times, by turns.
pub(super) fn measure(args: &Args, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Report> {
    let dir = args.data.join("bench-load");
    let _ = std::fs::remove_dir_all(&dir);
    let store: Arc<dyn EventStore> = Arc::new(LogStore::open(&dir, LogOptions::default())?);
    let measured = runtime.block_on(loads(&store, args));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

async fn loads(store: &Arc<dyn EventStore>, args: &Args) -> anyhow::Result<Report> {
    let events = args.events.max(2);
    let mut batch = vec![
        AccountEvent::AccountOpened {
            owner: "ada".into(),
        }
        .encode()?,
    ];
    for i in 1..events {
        // About 200 bytes of data per event, as in the other figures.
        let event = AccountEvent::MoneyDeposited {
            cents: i % 1000,
            reference: format!("{i:0>170}"),
        };
        batch.push(event.encode()?);
        if batch.len() == 1000 || i == events - 1 {
            store
                .append(STREAM, ExpectedVersion::Any, std::mem::take(&mut batch))
                .await?;
        }
    }
    let plain = Repository::<Account>::new(store.clone());
    // The first load writes the snapshot (the stream is far past 1,000 events).
    let snapshots = Repository::<Account>::new(store.clone()).with_snapshots(1000);
    snapshots.load(STREAM).await?;

    let loads = args.loads.max(1);
    let mut times: [Vec<Duration>; 3] = Default::default();
    for _ in 0..loads {
        let started = Instant::now();
        let read = store.read_stream(STREAM, ReadStream::forward()).await?;
        times[0].push(started.elapsed());
        anyhow::ensure!(read.len() as u64 == events, "read {} events", read.len());

        let started = Instant::now();
        let loaded = plain.load(STREAM).await?;
        times[1].push(started.elapsed());
        anyhow::ensure!(
            loaded.state().deposits == events - 1,
            "the full load folded {} deposits, not {}",
            loaded.state().deposits,
            events - 1
        );

        let started = Instant::now();
        let loaded = snapshots.load(STREAM).await?;
        times[2].push(started.elapsed());
        anyhow::ensure!(
            loaded.from_snapshot() && loaded.state().deposits == events - 1,
            "the load from the snapshot gave {} deposits (from a snapshot: {})",
            loaded.state().deposits,
            loaded.from_snapshot()
        );
    }
    let [read, load, snapshot] = times.map(|mut t| {
        t.sort();
        t[t.len() / 2].as_secs_f64() * 1e3
    });
    Ok(Report {
        events,
        read_ms: read,
        load_ms: load,
        snapshot_load_ms: snapshot,
    })
}
