//! A whole data directory of one segment: recovery, reads, verify and a repair plan.
//! The first byte chooses whether a valid segment header is put in front, so most
//! inputs reach the records instead of stopping at the header.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    if let Some((&choice, rest)) = bytes.split_first() {
        eventfold_log::fuzzing::segment(rest, choice & 1 == 0);
    }
});
