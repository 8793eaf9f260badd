//! One event record, as a damaged or hostile segment could hold it.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| eventfold_log::fuzzing::record(bytes));
