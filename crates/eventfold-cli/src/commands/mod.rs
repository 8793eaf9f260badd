//! One module per subcommand.

pub mod append;
pub mod archive;
pub mod bench;
pub mod bench_all;
mod bench_group_commit;
pub mod bench_http;
pub mod bench_load;
pub mod bench_personal;
pub mod bench_postgres;
pub mod bench_scavenge;
pub mod bench_upcast;
pub mod demo;
pub mod export;
pub mod forget;
pub mod migrate;
pub mod projection;
pub mod read;
pub mod repair;
pub mod replay;
pub mod scavenge;
pub mod schema;
pub mod serve;
pub mod streams;
pub mod tail;
pub mod verify;
pub mod versions;

use std::sync::Arc;

use anyhow::Context;
use eventfold_core::{EventStore, LayerExt};
use eventfold_log::{LogOptions, LogStore};
use eventfold_metadata::MetadataLayer;
use eventfold_privacy::{FileKeyStore, KEYS_DIR, MasterKeySource, PrivacyLayer, Reveal};

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
    open_reading(target, Reveal::Plaintext)
}

/// Opens the store to read as [`open_target_for_reading`] does, but personal values
/// stay sealed as stored (a forgotten subject's read redacted): what an export writes,
/// so no plaintext personal value leaves the store.
pub fn open_target_for_export(target: &crate::StoreArgs) -> anyhow::Result<Arc<dyn EventStore>> {
    open_reading(target, Reveal::Sealed)
}

fn open_reading(target: &crate::StoreArgs, reveal: Reveal) -> anyhow::Result<Arc<dyn EventStore>> {
    match (&target.data, &target.server) {
        (_, Some(_)) => Ok(with_metadata(http_store(target)?)),
        (Some(dir), None) => {
            let store = open_store_read_only(dir)?;
            let privacy = privacy_layer(dir, target.master_key_file.as_deref(), false)?;
            Ok(with_metadata(store.layer(privacy.revealing(reveal))))
        }
        (None, None) => anyhow::bail!("name the store with --data DIR or --server URL"),
    }
}

/// The privacy layer of the data directory `dir`: its key store (`DIR/keys`) under the
/// master key from `master_key_file`, else `EVENTFOLD_MASTER_KEY`, else
/// `DIR/keys/master.key`. `writable`: the key store and the default master key are
/// created when the first personal value is sealed. Open the log first: its lock
/// keeps other processes away from the key store too.
pub fn privacy_layer(
    dir: &std::path::Path,
    master_key_file: Option<&std::path::Path>,
    writable: bool,
) -> anyhow::Result<PrivacyLayer> {
    let source = MasterKeySource::resolve(master_key_file, dir);
    let keys = FileKeyStore::open_with_source(&dir.join(KEYS_DIR), source, writable)
        .with_context(|| format!("cannot open the key store in {}", dir.display()))?;
    Ok(PrivacyLayer::new(Arc::new(keys)))
}

/// Opens the embedded store in `dir` for reading only.
pub fn open_store_read_only(dir: &std::path::Path) -> anyhow::Result<LogStore> {
    let store = LogStore::open_read_only(dir)
        .with_context(|| format!("cannot open the store in {}", dir.display()))?;
    if let Some(damage) = store.damage() {
        eprintln!("warning: {damage}");
    }
    fetch_history(&store, false)?;
    Ok(store)
}

/// Lets reads of `store` reach the segments kept only in an archive (each one's
/// marker names it; see `archive --keep-local`): a fetcher is set when the store holds
/// such segments, or always with `always` (a server that may drop segments later).
pub fn fetch_history(store: &LogStore, always: bool) -> anyhow::Result<()> {
    if always || store.segments().iter().any(|s| s.cold) {
        store.set_segment_fetcher(eventfold_archive::ArchiveFetcher::new()?);
    }
    Ok(())
}

/// Opens the store a command appends events to, as [`open_target`] does, behind the
/// schema registry kept in it: with `--data`, every event is checked against the schema
/// registered for its type and version (and marked for the personal values it
/// declares) before anything is written, as a server checks what it is sent; with
/// `--server`, the server does.
pub async fn open_target_for_appends(
    target: &crate::StoreArgs,
) -> anyhow::Result<Arc<dyn EventStore>> {
    let store = open_target(target)?;
    if target.server.is_some() {
        return Ok(store);
    }
    let schemas = eventfold_schema::SchemaStore::open(store.clone())
        .await
        .context("cannot load the store's schema registry")?;
    Ok(Arc::new(store.layer(schemas.layer())))
}

/// Opens the store the command names: a data directory or a server.
pub fn open_target(target: &crate::StoreArgs) -> anyhow::Result<Arc<dyn EventStore>> {
    match (&target.data, &target.server) {
        (_, Some(_)) => Ok(with_metadata(http_store(target)?)),
        (Some(dir), None) => {
            let store = open_store(dir)?;
            let privacy = privacy_layer(dir, target.master_key_file.as_deref(), true)?;
            Ok(with_metadata(store.layer(privacy)))
        }
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
    let store = LogStore::open(dir, LogOptions::default())
        .with_context(|| format!("cannot open the store in {}", dir.display()))?;
    fetch_history(&store, false)?;
    Ok(store)
}
