//! The store contract holds through a `SchemaStore`: with its registry in front, the
//! embedded engine passes the whole conformance suite.

use std::sync::Arc;

use eventfold_log::{LogOptions, LogStore};
use eventfold_schema::SchemaStore;

eventfold_conformance::conformance_tests!(|| async {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path(), LogOptions::default()).expect("open the store");
    let schemas = SchemaStore::open(Arc::new(store))
        .await
        .expect("open the registry");
    (schemas, dir)
});
