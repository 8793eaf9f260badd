//! The conformance suite and the model check against `InMemoryStore`: a self-check of
//! the suite (the model against itself must agree; the cases exercise real semantics).

use eventfold_core::{InMemoryStore, LayerExt};
use eventfold_metadata::MetadataLayer;

eventfold_conformance::conformance_tests!(|| async {
    (InMemoryStore::new().layer(MetadataLayer), ())
});

#[test]
fn in_memory_store_agrees_with_the_model() {
    eventfold_conformance::model::run_model_test(async || InMemoryStore::new());
}
