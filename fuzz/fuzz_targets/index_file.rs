//! A segment index file (`N.idx`), as a damaged disk could hold it.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| eventfold_log::fuzzing::index_file(bytes));
