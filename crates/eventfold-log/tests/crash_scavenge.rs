//! Scenario: the process dies at every single I/O step of a scavenge (sealing the
//! active segment, writing each new segment and index, the swap), then the power goes
//! out, leaving unsynced data lost, torn, or torn and damaged. Every time the store
//! reopens with every event it held that retention keeps, unchanged; what it still
//! holds of the removed events stays hidden from readers of the metadata layer; a
//! second scavenge completes the work; and `verify` finds nothing wrong.

mod common;

use common::*;
use eventfold_core::{ReadStream, RecordedEvent, Result, StoreLayer};
use eventfold_log::sim::{Faults, SimStorage, Unsynced};
use eventfold_log::{LogStore, ScavengeOptions, ScavengeReport};
use eventfold_metadata::MetadataLayer;

/// A store holding the retention scenario, closed cleanly (everything durable), and
/// the events it holds.
async fn prepared() -> (SimStorage, Vec<RecordedEvent>) {
    let disk = SimStorage::new();
    let store = open_sim(&disk, small_segments()).expect("open");
    write_retention_scenario(&store).await;
    let events = all_events(&store).await;
    drop(store);
    (disk.power_loss(Unsynced::Lost), events)
}

async fn scavenge(store: &LogStore) -> Result<ScavengeReport> {
    store
        .scavenge(|s: &str| scenario_cut(s), ScavengeOptions::default())
        .await
}

/// What a reader through the metadata layer sees of each stream of the scenario.
async fn visible(store: &LogStore) -> Vec<Result<Vec<(u64, u64)>>> {
    let mut seen = Vec::new();
    for (stream, _) in RETENTION_CUTS {
        let read = MetadataLayer
            .read_stream(store, stream, ReadStream::forward())
            .await
            .map(|events| {
                events
                    .iter()
                    .map(|e| (e.position.get(), e.revision.get()))
                    .collect()
            });
        seen.push(read);
    }
    seen
}

#[tokio::test]
async fn a_crash_at_any_step_of_a_scavenge_loses_no_survivor_and_shows_nothing_removed() {
    let (base, before) = prepared().await;
    let survivors: Vec<_> = before
        .iter()
        .filter(|e| survives(e))
        .map(identity)
        .collect();
    let all_before: Vec<_> = before.iter().map(identity).collect();
    let expected_visible = {
        let store = open_sim(&base.power_loss(Unsynced::Lost), small_segments()).expect("open");
        format!("{:?}", visible(&store).await)
    };

    let clean = base.power_loss(Unsynced::Lost);
    let ops_before = clean.ops();
    {
        let store = open_sim(&clean, small_segments()).expect("open");
        let report = scavenge(&store).await.expect("scavenge");
        assert!(report.segments_rewritten() > 1, "{report:?}");
    }
    let total_ops = clean.ops() - ops_before;
    assert!(
        total_ops > 30,
        "a scavenge this small is not interesting: {total_ops} ops"
    );

    eprintln!("{total_ops} steps");
    for crash_at in 1..=total_ops + 1 {
        let disk = base.power_loss(Unsynced::Lost);
        disk.set_faults(Faults {
            crash_at_op: Some(disk.ops() + crash_at),
            ..Faults::default()
        });
        if let Ok(store) = open_sim(&disk, small_segments()) {
            let _ = scavenge(&store).await;
        }
        for unsynced in power_losses() {
            let context = format!("crash at step {crash_at} of {total_ops}, {unsynced:?}");
            let after = disk.power_loss(unsynced);
            let store = open_sim(&after, small_segments())
                .unwrap_or_else(|e| panic!("{context}: reopening failed: {e}"));
            let found: Vec<_> = all_events(&store).await.iter().map(identity).collect();
            for survivor in &survivors {
                assert!(found.contains(survivor), "{context}: lost {survivor:?}");
            }
            for event in &found {
                assert!(
                    all_before.contains(event),
                    "{context}: changed or new {event:?}"
                );
            }
            assert_eq!(
                format!("{:?}", visible(&store).await),
                expected_visible,
                "{context}: what readers of the metadata layer see"
            );
            scavenge(&store)
                .await
                .unwrap_or_else(|e| panic!("{context}: the second scavenge failed: {e}"));
            let found: Vec<_> = all_events(&store).await.iter().map(identity).collect();
            assert_eq!(found, survivors, "{context}: after the second scavenge");
            drop(store);
            let report = eventfold_log::verify_with(&after, std::path::Path::new("/data"))
                .unwrap_or_else(|e| panic!("{context}: verify failed: {e}"));
            assert!(report.is_intact(), "{context}: {:?}", report.damage);
        }
    }
}
