//! The `EventStore` contract, checked against the log engine: every conformance case
//! on a real data directory, and the model check on a simulated disk where each
//! reopen is a power loss.

use std::path::Path;
use std::sync::Arc;

use eventfold_conformance::model::{Backend, run_model_test};
use eventfold_core::LayerExt;
use eventfold_log::sim::{SimStorage, Unsynced};
use eventfold_log::{LogOptions, LogStore};
use eventfold_metadata::MetadataLayer;

eventfold_conformance::conformance_tests!(async || {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path(), LogOptions::default()).expect("open the store");
    (store.layer(MetadataLayer), dir)
});

/// The engine on a simulated disk with tiny segments, so that sequences cross
/// segment boundaries; a reopen loses power first (only fsynced data survives).
struct SimBackend {
    disk: SimStorage,
    store: Option<LogStore>,
}

fn options() -> LogOptions {
    LogOptions {
        segment_bytes_max: 8192,
        append_bytes_max: 4096,
        ..LogOptions::default()
    }
}

fn open(disk: &SimStorage) -> LogStore {
    LogStore::open_with(Arc::new(disk.clone()), Path::new("/data"), options()).expect("open")
}

impl Backend for SimBackend {
    type Store = LogStore;

    fn store(&self) -> &LogStore {
        self.store.as_ref().expect("open store")
    }

    async fn reopen(&mut self) {
        drop(self.store.take());
        self.disk = self.disk.power_loss(Unsynced::Lost);
        self.store = Some(open(&self.disk));
    }
}

#[test]
fn the_log_engine_agrees_with_the_model_across_power_losses() {
    run_model_test(async || {
        let disk = SimStorage::new();
        let store = Some(open(&disk));
        SimBackend { disk, store }
    });
}

/// The gap case with the gaps on disk: a scavenge removes what retention hides before
/// the reads (and must have removed something, or the case proves nothing new).
#[test]
fn reads_pass_over_gaps_a_scavenge_left() {
    eventfold_conformance::tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let dir = tempfile::tempdir().expect("temporary directory");
            let log = Arc::new(
                LogStore::open(
                    dir.path(),
                    LogOptions {
                        segment_bytes_max: 4096,
                        append_bytes_max: 2048,
                        batch_bytes_max: 4096,
                        ..LogOptions::default()
                    },
                )
                .expect("open"),
            );
            let store = log.clone().layer(MetadataLayer);
            eventfold_conformance::reads_pass_over_gaps_with(&store, async || {
                let cuts = eventfold_metadata::retention_cuts(log.as_ref(), chrono::Utc::now())
                    .await
                    .expect("cuts");
                let report = log
                    .scavenge(
                        move |s: &str| cuts.keep_from(s),
                        eventfold_log::ScavengeOptions::default(),
                    )
                    .await
                    .expect("scavenge");
                assert_eq!(report.events_removed(), 4 + 3, "{report:?}");
            })
            .await;
        });
}
