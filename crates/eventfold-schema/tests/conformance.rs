//! The store contract holds through the schema layer: with its registry in front, the
//! embedded engine under the metadata layer passes the whole conformance suite.

use std::sync::Arc;

use eventfold_core::LayerExt;
use eventfold_log::{LogOptions, LogStore};
use eventfold_metadata::MetadataLayer;
use eventfold_schema::SchemaStore;

eventfold_conformance::conformance_tests!(|| async {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path(), LogOptions::default()).expect("open the store");
    let store = Arc::new(store.layer(MetadataLayer));
    let schemas = SchemaStore::open(store.clone())
        .await
        .expect("open the registry");
    (store.layer(schemas.layer()), dir)
});
