//! What the handlers share, built before any router: the store, the schema registry
//! loaded from it (kept fresh by a background task), metrics, the consumer groups this
//! node serves, and the shutdown signal of SSE subscriptions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use eventfold_core::EventStore;
use eventfold_schema::{CheckOptions, Registry, SchemaError, SchemaStore};
use eventfold_subscription::PersistentGroup;

use crate::{ServerConfig, metrics};

/// How often a server picks up schema registrations made through other nodes.
const SCHEMA_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// A consumer group as the server shares it between requests.
pub(crate) type Group = Arc<PersistentGroup<Arc<dyn EventStore>>>;

/// What the handlers share.
pub(crate) struct AppState {
    pub store: Arc<dyn EventStore>,
    /// The schema registry kept in `store`.
    pub schemas: Arc<SchemaStore<dyn EventStore>>,
    pub config: ServerConfig,
    pub metrics: metrics::Metrics,
    /// Consumer groups served by this node, opened on first use.
    pub groups: Mutex<HashMap<String, Group>>,
    /// Set when the server shuts down: open SSE subscriptions end.
    pub closing: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// Loads the schema registry from `store` and starts keeping it fresh (the task
    /// ends when the state is dropped). Needs a Tokio runtime.
    pub(crate) async fn open(
        store: Arc<dyn EventStore>,
        config: ServerConfig,
    ) -> Result<Arc<AppState>, SchemaError> {
        let store = crate::with_metadata(store);
        let base = Registry::new().with_jq_limits(config.jq_limits);
        let schemas =
            Arc::new(SchemaStore::open_with(store.clone(), base, CheckOptions::default()).await?);
        spawn_schema_refresh(Arc::downgrade(&schemas));
        Ok(Arc::new(AppState {
            store,
            schemas,
            config,
            metrics: Default::default(),
            groups: Default::default(),
            closing: tokio::sync::watch::channel(false).0,
        }))
    }
}

/// Keeps the registry in step with `$schemas` while the server lives, so that a
/// registration made through another node on the same store is seen here.
fn spawn_schema_refresh(schemas: Weak<SchemaStore<dyn EventStore>>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(SCHEMA_REFRESH_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(schemas) = schemas.upgrade() else {
                return;
            };
            if let Err(error) = schemas.refresh().await {
                tracing::warn!(%error, "cannot refresh the schema registry");
            }
        }
    });
}
