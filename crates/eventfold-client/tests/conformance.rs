//! The `EventStore` contract, checked through HTTP: every conformance case runs against
//! an `HttpStore` talking to an eventfold server (on the log engine) over loopback.

use std::sync::Arc;

use eventfold_client::HttpStore;
use eventfold_core::LayerExt;
use eventfold_log::{LogOptions, LogStore};
use eventfold_metadata::MetadataLayer;
use eventfold_server::{ServerConfig, router};

/// Keeps the server and its data directory alive for one test.
struct Server {
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// The cases that write system events themselves are left out (`remote:`): only a
// store in this process takes those; the server's own tests cover them over HTTP.
eventfold_conformance::conformance_tests!(remote: async || {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path(), LogOptions::default()).expect("open the store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = router(Arc::new(store), ServerConfig::default())
        .await
        .expect("router");
    let task = tokio::spawn(async move {
        axum_serve(listener, app).await;
    });
    let client = HttpStore::new(&format!("http://{address}")).expect("client");
    // The metadata layer passes reads through to the server, which applies the
    // metadata itself, and its calls go to the server's admin routes.
    (client.layer(MetadataLayer), Server { task, _dir: dir })
});

async fn axum_serve(listener: tokio::net::TcpListener, app: axum::Router) {
    let _ = axum::serve(listener, app).await;
}
