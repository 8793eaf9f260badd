//! A jq converter as a client could register it: compiling never panics, and running
//! it stays within small limits (libFuzzer's timeout catches a run that does not).
#![no_main]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use eventfold_schema::{JqLimits, JqProgram};

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let Ok(source) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(program) = JqProgram::compile(source) else {
        return;
    };
    let limits = JqLimits {
        steps_max: 20_000,
        run_millis_max: 500,
        output_bytes_max: 1 << 20,
    };
    let input = serde_json::json!({"id": "sku-1", "items": [1, 2, {"b": "x"}], "n": 3});
    let interrupt = Arc::new(AtomicBool::new(false));
    if let Ok(outputs) = program.run_with(input, &limits, &interrupt) {
        let bytes: usize = outputs.iter().map(|v| v.to_string().len()).sum();
        assert!(bytes as u64 <= limits.output_bytes_max, "{bytes} bytes emitted");
    }
});
