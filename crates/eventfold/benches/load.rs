//! Loading an aggregate of 100,000 events from the embedded engine, with and without a
//! snapshot (our targets: < 100 ms, and < 1 ms with a snapshot).
//!
//! `cargo bench -p eventfold` (set EVENTFOLD_BENCH_DIR to put the store on a given disk).

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use eventfold::{
    Aggregate, Decision, DomainEvent, EventStore, EventType, ExpectedVersion, ReadStream,
    Repository,
};
use eventfold_log::{LogOptions, LogStore};
use serde::{Deserialize, Serialize};

const EVENTS: u64 = 100_000;
const STREAM: &str = "account-1";

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

fn fill(rt: &tokio::runtime::Runtime, store: &dyn EventStore) {
    rt.block_on(async {
        let mut batch = vec![
            AccountEvent::AccountOpened {
                owner: "ada".into(),
            }
            .encode()
            .unwrap(),
        ];
        for i in 1..EVENTS {
            // About 200 bytes of data per event, as in the other benchmarks.
            let event = AccountEvent::MoneyDeposited {
                cents: i % 1000,
                reference: format!("{i:0>170}"),
            };
            batch.push(event.encode().unwrap());
            if batch.len() == 1000 || i == EVENTS - 1 {
                store
                    .append(STREAM, ExpectedVersion::Any, std::mem::take(&mut batch))
                    .await
                    .unwrap();
            }
        }
    });
}

fn load(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = match std::env::var_os("EVENTFOLD_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let store: Arc<dyn EventStore> =
        Arc::new(LogStore::open(dir.path(), LogOptions::default()).unwrap());
    fill(&rt, store.as_ref());

    let plain = Repository::<Account>::new(store.clone());
    // The first load writes the snapshot (the stream is far past 1,000 events).
    let snapshotting = Repository::<Account>::new(store.clone()).with_snapshots(1000);
    rt.block_on(snapshotting.load(STREAM)).unwrap();
    let with_snapshot = Repository::<Account>::new(store.clone()).with_snapshots(1000);
    let loaded = rt.block_on(with_snapshot.load(STREAM)).unwrap();
    assert!(loaded.from_snapshot());
    assert_eq!(loaded.state().deposits, EVENTS - 1);

    let mut group = c.benchmark_group("aggregate_load");
    group.sample_size(20);
    group.bench_function("read 100k events, no decoding (baseline)", |b| {
        b.iter(|| {
            let events = rt
                .block_on(store.read_stream(STREAM, ReadStream::forward()))
                .unwrap();
            assert_eq!(events.len() as u64, EVENTS);
        })
    });
    group.bench_function("load aggregate from 100k events", |b| {
        b.iter(|| {
            let loaded = rt.block_on(plain.load(STREAM)).unwrap();
            assert_eq!(loaded.state().deposits, EVENTS - 1);
        })
    });
    group.bench_function("load aggregate from a snapshot", |b| {
        b.iter(|| {
            let loaded = rt.block_on(with_snapshot.load(STREAM)).unwrap();
            assert!(loaded.from_snapshot());
        })
    });
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
