//! The fuzz corpus (`fuzz/corpus/<target>/`) runs through the fuzz targets' entry points
//! in the ordinary test suite too, so every input a fuzzer once found interesting stays
//! a regression test; and the deterministic seeds are all in it.

use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn name_of(bytes: &[u8]) -> String {
    format!("seed-{:08x}", crc32c::crc32c(bytes))
}

#[test]
fn the_seeds_are_in_the_corpus() {
    let write = std::env::var("EVENTFOLD_WRITE_FUZZ_SEEDS").is_ok();
    for (target, bytes) in eventfold_log::fuzzing::seeds() {
        let path = corpus_dir(target).join(name_of(&bytes));
        if write {
            std::fs::create_dir_all(corpus_dir(target)).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(&path).ok(),
            Some(bytes),
            "{} is missing or stale: run this test with EVENTFOLD_WRITE_FUZZ_SEEDS=1",
            path.display()
        );
    }
}

fn run_corpus(target: &str, entry: impl Fn(&[u8])) -> usize {
    let mut count = 0;
    for file in std::fs::read_dir(corpus_dir(target)).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        entry(&bytes);
        count += 1;
    }
    count
}

#[test]
fn every_corpus_input_passes_the_targets_checks() {
    assert!(run_corpus("record", eventfold_log::fuzzing::record) >= 2);
    assert!(run_corpus("index_file", eventfold_log::fuzzing::index_file) >= 1);
    let segments = run_corpus("segment", |bytes| {
        if let Some((&choice, rest)) = bytes.split_first() {
            eventfold_log::fuzzing::segment(rest, choice & 1 == 0);
        }
    });
    assert!(segments >= 3);
}
