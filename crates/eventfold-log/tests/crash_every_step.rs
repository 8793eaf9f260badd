//! Scenario: the process dies at every single I/O step of a workload (appends,
//! multi-stream appends, segment sealing), then the power goes out, leaving unsynced
//! data lost, torn, or torn and damaged. Every time, the reopened store must hold every
//! acknowledged transaction, no partial transaction, and gap-free positions.

mod common;

use common::*;
use eventfold_core::{EventStore, ExpectedVersion, RecordedEvent, StreamWrite};
use eventfold_log::sim::{Faults, SimStorage};
use uuid::Uuid;

/// The workload: transactions, each a list of (stream, event ids).
fn workload() -> Vec<Vec<(String, Vec<Uuid>)>> {
    let mut next = 1u128;
    let mut ids = |n: usize| -> Vec<Uuid> {
        (0..n)
            .map(|_| {
                next += 1;
                Uuid::from_u128(next)
            })
            .collect()
    };
    let mut transactions = Vec::new();
    for t in 0..60 {
        if t % 5 == 4 {
            transactions.push(vec![
                (format!("a-{}", t % 3), ids(2)),
                (format!("b-{}", t % 2), ids(3)),
            ]);
        } else {
            transactions.push(vec![(format!("a-{}", t % 3), ids(1 + t % 4))]);
        }
    }
    transactions
}

async fn run(storage: &SimStorage) -> usize {
    let Ok(store) = open_sim(storage, small_segments()) else {
        return 0;
    };
    let mut acked = 0;
    for transaction in workload() {
        let writes = transaction
            .iter()
            .map(|(stream, ids)| {
                let events = ids
                    .iter()
                    .map(|id| event(id.as_u128() as u64).with_id(*id))
                    .collect();
                StreamWrite::new(stream.clone(), ExpectedVersion::Any, events)
            })
            .collect();
        match store.append_multi(writes).await {
            Ok(_) => acked += 1,
            Err(_) => break,
        }
    }
    acked
}

fn check(events: &[RecordedEvent], acked: usize, context: &str) {
    let transactions = workload();
    let expected: Vec<(String, Uuid)> = transactions
        .iter()
        .flat_map(|t| {
            t.iter()
                .flat_map(|(s, ids)| ids.iter().map(move |id| (s.clone(), *id)))
        })
        .collect();
    let boundaries: Vec<usize> = transactions
        .iter()
        .scan(0, |n, t| {
            *n += t.iter().map(|(_, ids)| ids.len()).sum::<usize>();
            Some(*n)
        })
        .collect();
    let found: Vec<(String, Uuid)> = events.iter().map(|e| (e.stream.clone(), e.id)).collect();
    assert_eq!(
        found[..],
        expected[..found.len()],
        "{context}: not a prefix of the workload"
    );
    assert!(
        found.is_empty() || boundaries.contains(&found.len()),
        "{context}: a partial transaction is visible ({} events)",
        found.len()
    );
    let must_have = if acked == 0 { 0 } else { boundaries[acked - 1] };
    assert!(
        found.len() >= must_have,
        "{context}: {} events survive but {} were acknowledged",
        found.len(),
        must_have
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            event.position.get(),
            i as u64,
            "{context}: positions have a gap"
        );
    }
}

#[tokio::test]
async fn a_crash_at_any_step_keeps_every_acknowledged_transaction() {
    let clean = SimStorage::new();
    let acked = run(&clean).await;
    assert_eq!(acked, workload().len());
    let total_ops = clean.ops();
    assert!(
        total_ops > 100,
        "workload too small to be interesting: {total_ops} ops"
    );

    for crash_at in 1..=total_ops + 1 {
        let storage = SimStorage::new();
        storage.set_faults(Faults {
            crash_at_op: Some(crash_at),
            ..Faults::default()
        });
        let acked = run(&storage).await;
        for unsynced in power_losses() {
            let context = format!("crash at op {crash_at}, {unsynced:?}");
            let disk = storage.power_loss(unsynced);
            let store = open_sim(&disk, small_segments())
                .unwrap_or_else(|e| panic!("{context}: reopening failed: {e}"));
            let events = all_events(&store).await;
            check(&events, acked, &context);
            // The recovered store takes new writes at the right place.
            let next = store
                .append("after-crash", ExpectedVersion::NoStream, vec![event(1)])
                .await
                .unwrap_or_else(|e| panic!("{context}: append after recovery failed: {e}"));
            assert_eq!(next.position.get(), events.len() as u64, "{context}");
            drop(store);
            let report = eventfold_log::verify_with(&disk, std::path::Path::new("/data")).unwrap();
            assert!(report.is_intact(), "{context}: {:?}", report.damage);
        }
    }
}
