//! Schema validation as a layer: appends checked against the registered schemas.

use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use eventfold_core::{Error, EventStore, Result, StoreLayer, StreamWrite};

use crate::store::State;

/// Validates every event of an append against the schema registered for its type and
/// version (an event of a type or version without a schema passes): a violation is
/// refused as an invalid event naming the JSON path, and nothing of the append is
/// written. Reads pass through: events come back as stored; convert them with
/// [`SchemaStore::read_stream_as`](crate::SchemaStore::read_stream_as) or
/// [`Negotiated`](crate::Negotiated).
///
/// Made by [`SchemaStore::layer`](crate::SchemaStore::layer), it follows that
/// registry as it changes.
///
/// ```
/// use std::sync::Arc;
/// use eventfold_core::{EventData, EventStore, ExpectedVersion, InMemoryStore, LayerExt};
/// use eventfold_schema::{SchemaStore, VersionDefinition};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = Arc::new(InMemoryStore::new());
/// let schemas = SchemaStore::open(store.clone()).await.unwrap();
/// let validated = store.layer(schemas.layer());
/// let schema = serde_json::json!({"type": "object", "required": ["orderId"]});
/// schemas.register("OrderShipped", 1, VersionDefinition::with_schema(schema)).await.unwrap();
/// let bad = EventData::json("OrderShipped", &serde_json::json!({"order": 1})).unwrap();
/// let err = validated.append("order-1", ExpectedVersion::Any, vec![bad]).await.unwrap_err();
/// assert!(err.to_string().contains("orderId"), "{err}");
/// assert!(!validated.stream_exists("order-1").await.unwrap());
/// # });
/// ```
#[derive(Clone)]
pub struct SchemaLayer {
    state: Arc<RwLock<State>>,
}

impl SchemaLayer {
    pub(crate) fn new(state: Arc<RwLock<State>>) -> Self {
        SchemaLayer { state }
    }
}

impl std::fmt::Debug for SchemaLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaLayer").finish_non_exhaustive()
    }
}

#[async_trait]
impl StoreLayer for SchemaLayer {
    async fn before_append<S: EventStore + ?Sized>(
        &self,
        _inner: &S,
        writes: Vec<StreamWrite>,
    ) -> Result<Vec<StreamWrite>> {
        let registry = self
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .registry
            .clone();
        let mut writes = writes;
        for event in writes.iter_mut().flat_map(|w| &mut w.events) {
            registry
                .validate(&event.event_type, event.version, &event.data)
                .and_then(|()| registry.mark_personal(event))
                .map_err(|e| Error::InvalidEvent {
                    reason: e.to_string(),
                })?;
        }
        Ok(writes)
    }
}
