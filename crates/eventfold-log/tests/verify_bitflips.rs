//! Scenario: a bit flipped anywhere in a segment (header, any record's frame, header
//! fields or payload) or in an index file is found by `verify`, which names the file.

mod common;

use std::path::Path;

use common::*;
use eventfold_core::{EventStore, ExpectedVersion};
use eventfold_log::io::Storage;
use eventfold_log::sim::SimStorage;

#[tokio::test]
async fn verify_finds_every_flipped_bit() {
    let storage = SimStorage::new();
    {
        let store = open_sim(&storage, small_segments()).unwrap();
        for n in 0..60u64 {
            store
                .append(
                    &format!("s-{}", n % 4),
                    ExpectedVersion::Any,
                    vec![event(n), event(n * 7)],
                )
                .await
                .unwrap();
        }
    }
    let root = Path::new("/data");
    let report = eventfold_log::verify_with(&storage, root).unwrap();
    assert!(report.is_intact(), "{:?}", report.damage);
    assert_eq!(report.events, 120);

    let dir = root.join("segments");
    let mut names = storage.list(&dir).unwrap();
    names.sort();
    let mut checked = 0;
    for name in &names {
        let path = dir.join(name);
        let original = storage.read_file(&path).unwrap();
        // Every bit of the first 300 bytes (header and first records), then a sample
        // of bits throughout the rest of the file.
        let bits: Vec<usize> = (0..original.len().min(300) * 8)
            .chain((300 * 8..original.len() * 8).step_by(37))
            .collect();
        for bit in bits {
            let mut damaged = original.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            storage.write_file(&path, damaged);
            let report = eventfold_log::verify_with(&storage, root).unwrap();
            assert!(
                report
                    .damage
                    .iter()
                    .any(|d| d.file.ends_with(name.as_str())),
                "bit {bit} of {name} flipped, verify said {:?}",
                report.damage
            );
            checked += 1;
        }
        storage.write_file(&path, original);
    }
    assert!(checked > 10_000, "checked only {checked} bits");
    assert!(
        eventfold_log::verify_with(&storage, root)
            .unwrap()
            .is_intact()
    );
}
