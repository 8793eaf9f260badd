//! The story `cargo run -p eventfold-examples --example inventory` tells, step by step.
//! `examples/tests/inventory.rs` checks each claim of it.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, ensure};
use eventfold::{EventData, EventStore, ExpectedVersion, Position, RecordedEvent};
use eventfold_core::{AllFilter, ReadAll};
use eventfold_log::{LogOptions, LogStore};
use eventfold_schema::SchemaStore;
use eventfold_server::{ServeError, ServerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::consumers::{Deactivation, read_in_rust, read_over_http, read_over_http_negotiated};
use super::contract::{DEACTIVATED, DeactivatedV1, DeactivatedV2, register_versions};
use super::producers::{create_item, new_release_deactivates, old_release_deactivates};

/// What each consumer read, and how the deactivations are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub old_in_rust: Vec<DeactivatedV1>,
    pub new_in_rust: Vec<DeactivatedV2>,
    pub old_over_http: Vec<DeactivatedV1>,
    pub new_over_http: Vec<DeactivatedV2>,
    /// `(stream, version)` of each stored deactivation, in log order.
    pub stored: Vec<(String, u32)>,
}

/// Writes the history of the story into `store`: item-1 deactivated by the first
/// release (v1), then v2 registered, item-2 deactivated by the new release (v2) and
/// item-3 by the first release, still running somewhere (v1).
pub async fn record_history(
    store: &Arc<dyn EventStore>,
    schemas: &SchemaStore<dyn EventStore>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "== The first release records {DEACTIVATED} v1 {{id}} =="
    )?;
    create_item(store.as_ref(), "item-1", "Blue widget").await?;
    old_release_deactivates(store.as_ref(), "item-1").await?;
    create_item(store.as_ref(), "item-2", "Red gadget").await?;
    writeln!(out, "item-1 and item-2 created; item-1 deactivated")?;

    writeln!(out, "\n== Version 2: {{itemId, reason}} ==")?;
    let registered = register_versions(schemas).await?;
    writeln!(
        out,
        "registered v1 ({:?}: its schema) and v2 ({:?}: schema, jq upcast and downcast); \
         the registry tried the converters on the stored v1 events first",
        registered[0], registered[1]
    )?;
    new_release_deactivates(schemas, "item-2", "recalled by the supplier").await?;
    writeln!(out, "the new release deactivates item-2")?;
    create_item(store.as_ref(), "item-3", "Green gizmo").await?;
    old_release_deactivates(store.as_ref(), "item-3").await?;
    writeln!(
        out,
        "the first release, still running on another node, creates and deactivates item-3"
    )?;
    let no_item =
        EventData::json(DEACTIVATED, &serde_json::json!({"reason": "typo"}))?.with_version(2);
    let refused = schemas
        .validating()
        .append("item-3", ExpectedVersion::Any, vec![no_item])
        .await;
    ensure!(refused.is_err(), "a v2 event without itemId was accepted");
    writeln!(
        out,
        "a v2 event without itemId is refused: {}",
        refused.err().map(|e| e.to_string()).unwrap_or_default()
    )?;
    writeln!(out, "the log, as stored (never rewritten):")?;
    for event in stored_deactivations(store.as_ref()).await? {
        writeln!(
            out,
            "  {} v{} {}",
            event.stream,
            event.version,
            String::from_utf8_lossy(&event.data)
        )?;
    }
    Ok(())
}

/// Every stored deactivation, as stored.
pub async fn stored_deactivations(store: &dyn EventStore) -> anyhow::Result<Vec<RecordedEvent>> {
    let filter = AllFilter {
        event_types: vec![DEACTIVATED.into()],
        ..AllFilter::default()
    };
    let mut events = Vec::new();
    let mut from = Position::START;
    loop {
        let page = store
            .read_all(ReadAll::from(from, 1_000).filtered(filter.clone()))
            .await?;
        events.extend(page.events);
        if page.end_of_log {
            return Ok(events);
        }
        from = page.next;
    }
}

/// An eventfold server over a store, in this process, on an ephemeral port of
/// 127.0.0.1 (what `eventfold serve` runs).
pub struct Server {
    base_url: String,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Server {
    /// Starts serving `store`; the server loads the schema registry kept in it.
    pub async fn start(store: Arc<dyn EventStore>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(eventfold_server::serve(
            store,
            ServerConfig::default(),
            listener,
            async {
                let _ = stop.await;
            },
        ));
        Ok(Server {
            base_url,
            shutdown,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Stops taking requests and waits for the server to finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.task.await.context("the server task panicked")??;
        Ok(())
    }
}

fn reports<D: Deactivation>(deactivations: &[D]) -> String {
    deactivations
        .iter()
        .map(Deactivation::report)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs the whole story with its store in `root/events`, and narrates it to `out`.
pub async fn run(root: &Path, out: &mut dyn Write) -> anyhow::Result<Ending> {
    let store: Arc<dyn EventStore> =
        Arc::new(LogStore::open(root.join("events"), LogOptions::default())?);
    let schemas: SchemaStore<dyn EventStore> = SchemaStore::open(store.clone()).await?;
    record_history(&store, &schemas, out).await?;

    writeln!(
        out,
        "\n== Both consumers read the whole history, in Rust =="
    )?;
    let old_in_rust = read_in_rust::<DeactivatedV1>(&schemas).await?;
    writeln!(out, "old consumer (declares v1): {}", reports(&old_in_rust))?;
    let new_in_rust = read_in_rust::<DeactivatedV2>(&schemas).await?;
    writeln!(out, "new consumer (declares v2): {}", reports(&new_in_rust))?;

    let server = Server::start(store.clone()).await?;
    writeln!(out, "\n== ... and over HTTP ({}) ==", server.base_url())?;
    writeln!(
        out,
        "each lists GET /all?type={DEACTIVATED}, then fetches each event with \
         Accept: application/vnd.eventfold.v<N>+json"
    )?;
    let old_over_http = read_over_http::<DeactivatedV1>(server.base_url()).await?;
    writeln!(out, "old consumer (Accept v1): {}", reports(&old_over_http))?;
    let new_over_http = read_over_http::<DeactivatedV2>(server.base_url()).await?;
    writeln!(out, "new consumer (Accept v2): {}", reports(&new_over_http))?;
    ensure!(
        read_over_http_negotiated::<DeactivatedV1>(server.base_url()).await? == old_over_http
            && read_over_http_negotiated::<DeactivatedV2>(server.base_url()).await?
                == new_over_http,
        "declaring the version once with versions= reads something else"
    );
    writeln!(
        out,
        "declaring the version once for the whole read (versions={DEACTIVATED}:<N>) gives the same"
    )?;
    server.stop().await?;

    let stored = stored_deactivations(store.as_ref())
        .await?
        .into_iter()
        .map(|e| (e.stream, e.version))
        .collect();
    Ok(Ending {
        old_in_rust,
        new_in_rust,
        old_over_http,
        new_over_http,
        stored,
    })
}
