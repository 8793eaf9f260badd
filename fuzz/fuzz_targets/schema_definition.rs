//! A schema version definition as the body of `PUT /schemas/{type}/{version}`:
//! parsing and defining never panic, and a defined version validates and converts
//! within the registry's limits.
#![no_main]

use eventfold_schema::{JqLimits, Registry, Target, VersionDefinition};

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let Ok(definition) = serde_json::from_slice::<VersionDefinition>(bytes) else {
        return;
    };
    let mut registry = Registry::new().with_jq_limits(JqLimits {
        steps_max: 20_000,
        run_millis_max: 500,
        output_bytes_max: 1 << 20,
    });
    if registry.define("Fuzzed", 2, definition).is_err() {
        return;
    }
    let _ = registry.validate("Fuzzed", 2, br#"{"id":"sku-1"}"#);
    let _ = registry.convert_value("Fuzzed", 1, serde_json::json!({"id": "sku-1"}), &Target::Newest);
});
