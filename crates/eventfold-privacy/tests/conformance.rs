//! The store contract holds through the privacy layer: the embedded engine under the
//! metadata layer, with the privacy layer and a key store on disk in front, passes the
//! whole conformance suite (its events mark nothing personal, so this proves the layer
//! changes nothing else: appends, idempotent re-sends, reads, `$all`, subscriptions).

use std::sync::Arc;

use eventfold_core::LayerExt;
use eventfold_log::{LogOptions, LogStore};
use eventfold_metadata::MetadataLayer;
use eventfold_privacy::{FileKeyStore, MasterKey, PrivacyLayer};

eventfold_conformance::conformance_tests!(|| async {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (master, _) = MasterKey::generate().expect("master key");
    let keys = FileKeyStore::open(&dir.path().join("keys"), master).expect("key store");
    let store = LogStore::open(dir.path(), LogOptions::default()).expect("open the store");
    let store = store
        .layer(PrivacyLayer::new(Arc::new(keys)))
        .layer(MetadataLayer);
    (store, dir)
});
