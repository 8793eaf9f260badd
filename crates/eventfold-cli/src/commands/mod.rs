//! One module per subcommand.

pub mod append;
pub mod bench;
pub mod bench_http;
pub mod demo;
pub mod export;
pub mod read;
pub mod repair;
pub mod replay;
pub mod schema;
pub mod serve;
pub mod streams;
pub mod tail;
pub mod verify;

use std::sync::Arc;

use anyhow::Context;
use eventfold_core::{EventStore, LayerExt};
use eventfold_log::{LogOptions, LogStore};
use eventfold_metadata::MetadataLayer;

/// Events read per page by the commands that walk the log (read, export, replay, and
/// bench's replay). A page is held whole in memory before it is written out, so it
/// stays a few megabytes for events of a few hundred bytes; and it is below the
/// server's 10,000 events per request, so over `--server` one page is one request.
pub const PAGE_EVENTS: u64 = 5_000;

/// Opens the store a command that only reads names: a data directory opened read-only
/// (nothing in it changes, a damaged store still reads up to the damage, and a
/// directory that holds no store is an error rather than a new empty store), or a
/// server.
pub fn open_target_for_reading(target: &crate::StoreArgs) -> anyhow::Result<Arc<dyn EventStore>> {
    match (&target.data, &target.server) {
        (_, Some(_)) => Ok(with_metadata(http_store(target)?)),
        (Some(dir), None) => Ok(with_metadata(open_store_read_only(dir)?)),
        (None, None) => anyhow::bail!("name the store with --data DIR or --server URL"),
    }
}

/// Opens the embedded store in `dir` for reading only.
pub fn open_store_read_only(dir: &std::path::Path) -> anyhow::Result<LogStore> {
    let store = LogStore::open_read_only(dir)
        .with_context(|| format!("cannot open the store in {}", dir.display()))?;
    if let Some(damage) = store.damage() {
        eprintln!("warning: {damage}");
    }
    Ok(store)
}

/// Opens the store the command names: a data directory or a server.
pub fn open_target(target: &crate::StoreArgs) -> anyhow::Result<Arc<dyn EventStore>> {
    match (&target.data, &target.server) {
        (_, Some(_)) => Ok(with_metadata(http_store(target)?)),
        (Some(dir), None) => Ok(with_metadata(open_store(dir)?)),
        (None, None) => anyhow::bail!("name the store with --data DIR or --server URL"),
    }
}

/// `store` as the commands use it: under the metadata layer, so reads apply each
/// stream's retention and deletion (over a server, the server does).
fn with_metadata(store: impl EventStore + 'static) -> Arc<dyn EventStore> {
    Arc::new(store.layer(MetadataLayer))
}

/// The client of the server `--server` names, with its `--token` and `--ca-cert`.
pub fn http_store(target: &crate::StoreArgs) -> anyhow::Result<eventfold_client::HttpStore> {
    let url = target
        .server
        .as_deref()
        .context("name the server with --server URL")?;
    let mut store = eventfold_client::HttpStore::new(url)
        .with_context(|| format!("cannot use the server {url}"))?;
    if let Some(token) = &target.token {
        store = store.with_token(token)?;
    }
    if let Some(file) = &target.ca_cert {
        let pem = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        store = store
            .with_root_certificate(&pem)
            .with_context(|| format!("--ca-cert {}", file.display()))?;
    }
    Ok(store)
}

/// Opens the embedded store in `dir`, with the directory named in any error.
pub fn open_store(dir: &std::path::Path) -> anyhow::Result<LogStore> {
    LogStore::open(dir, LogOptions::default())
        .with_context(|| format!("cannot open the store in {}", dir.display()))
}
