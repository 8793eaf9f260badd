//! Layers: policy composed over any store, in the spirit of tower's `Service`/`Layer`.
//!
//! A backend implements the small [`EventStore`] trait and stores events as they are.
//! A [`StoreLayer`] adds one concern (stream metadata and retention, schema
//! validation, ...) by writing only the hooks it needs; [`Layered`] is the one generic
//! store that calls a layer's hooks around an inner store, and is itself an
//! `EventStore`, so layers stack:
//!
//! ```text
//! caller ─► Layered<SchemaLayer, Layered<MetadataLayer, LogStore>>
//!   append_multi: SchemaLayer::before_append ─► MetadataLayer::before_append ─► LogStore
//!   read_stream:  SchemaLayer::read_stream ─► MetadataLayer::read_stream ─► LogStore,
//!                 then each layer's after_read_stream on the way out
//! ```
//!
//! Everything a layer does not hook (stream revisions, listing, head, waiting,
//! metrics, [`EventStore::remote_admin`]) goes straight to the inner store.
//!
//! ```
//! use eventfold_core::{
//!     EventData, EventStore, ExpectedVersion, InMemoryStore, LayerExt, Result, StoreLayer,
//!     StreamWrite,
//! };
//!
//! /// Refuses events without data.
//! struct NoEmptyEvents;
//!
//! #[async_trait::async_trait]
//! impl StoreLayer for NoEmptyEvents {
//!     async fn before_append<S: EventStore + ?Sized>(
//!         &self,
//!         _inner: &S,
//!         writes: Vec<StreamWrite>,
//!     ) -> Result<Vec<StreamWrite>> {
//!         if writes.iter().flat_map(|w| &w.events).any(|e| &e.data[..] == b"{}") {
//!             return Err(eventfold_core::Error::InvalidEvent { reason: "empty".into() });
//!         }
//!         Ok(writes)
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = InMemoryStore::new().layer(NoEmptyEvents);
//! let empty = EventData::json("Noted", &serde_json::json!({})).unwrap();
//! assert!(store.append("note-1", ExpectedVersion::Any, vec![empty]).await.is_err());
//! assert!(!store.stream_exists("note-1").await.unwrap());
//! # });
//! ```

use async_trait::async_trait;

use crate::error::Result;
use crate::event::RecordedEvent;
use crate::remote::RemoteAdmin;
use crate::store::{
    AllSlice, AppendResult, EventStore, ReadAll, ReadStream, StoreMetric, StreamSummary,
    StreamWrite,
};
use crate::stream::{Position, Revision};

/// One concern added to a store: hooks [`Layered`] calls around the inner store. Every
/// hook passes through by default, so a layer writes only the ones it needs: most
/// need only a `before_` or `after_` hook; the calls themselves (`append_multi`,
/// `read_stream`, `read_all`, `stream_revision`) are hooks too, for a layer that
/// decides how the inner store is asked (retention, fault injection in tests).
#[async_trait]
pub trait StoreLayer: Send + Sync {
    /// An append: by default [`StoreLayer::before_append`], then the inner store's
    /// append of what it returned.
    async fn append_multi<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        writes: Vec<StreamWrite>,
    ) -> Result<Vec<AppendResult>> {
        let writes = self.before_append(inner, writes).await?;
        inner.append_multi(writes).await
    }

    /// Before an append reaches the inner store: checks the writes (an error refuses
    /// the whole append, and nothing of it is written) or changes them.
    async fn before_append<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        writes: Vec<StreamWrite>,
    ) -> Result<Vec<StreamWrite>> {
        let _ = inner;
        Ok(writes)
    }

    /// Reads one stream through the inner store. The default passes the read on; a
    /// layer that decides which events a read returns (retention, deletion) reads the
    /// inner store as it needs instead.
    async fn read_stream<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        stream: &str,
        options: ReadStream,
    ) -> Result<Vec<RecordedEvent>> {
        inner.read_stream(stream, options).await
    }

    /// After a read of one stream: the events on their way out to the caller.
    async fn after_read_stream(
        &self,
        stream: &str,
        events: Vec<RecordedEvent>,
    ) -> Result<Vec<RecordedEvent>> {
        let _ = stream;
        Ok(events)
    }

    /// Reads a page of `$all` through the inner store (the default passes it on).
    async fn read_all<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        options: ReadAll,
    ) -> Result<AllSlice> {
        inner.read_all(options).await
    }

    /// After a read of `$all`: the page on its way out to the caller.
    async fn after_read_all(&self, slice: AllSlice) -> Result<AllSlice> {
        Ok(slice)
    }

    /// The revision of a stream's last event (the default asks the inner store).
    async fn stream_revision<S: EventStore + ?Sized>(
        &self,
        inner: &S,
        stream: &str,
    ) -> Result<Option<Revision>> {
        inner.stream_revision(stream).await
    }
}

/// A store with a layer in front: the layer's hooks around the inner store's calls.
/// `Layered<A, Layered<B, Backend>>` runs A's hooks, then B's, then the backend.
#[derive(Debug, Clone)]
pub struct Layered<L, S> {
    layer: L,
    inner: S,
}

impl<L, S> Layered<L, S> {
    /// `inner` with `layer` in front.
    pub fn new(layer: L, inner: S) -> Self {
        Layered { layer, inner }
    }

    /// The layer in front.
    pub fn layer(&self) -> &L {
        &self.layer
    }

    /// The store behind the layer.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Takes the layer away.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Stacks layers on any store: `backend.layer(MetadataLayer).layer(schema_layer)`
/// (the last one added is the outermost).
pub trait LayerExt: EventStore + Sized {
    /// This store with `layer` in front.
    fn layer<L: StoreLayer>(self, layer: L) -> Layered<L, Self> {
        Layered::new(layer, self)
    }
}

impl<S: EventStore> LayerExt for S {}

#[async_trait]
impl<L: StoreLayer, S: EventStore> EventStore for Layered<L, S> {
    async fn append_multi(&self, writes: Vec<StreamWrite>) -> Result<Vec<AppendResult>> {
        self.layer.append_multi(&self.inner, writes).await
    }

    async fn read_stream(&self, stream: &str, options: ReadStream) -> Result<Vec<RecordedEvent>> {
        let events = self.layer.read_stream(&self.inner, stream, options).await?;
        self.layer.after_read_stream(stream, events).await
    }

    async fn read_all(&self, options: ReadAll) -> Result<AllSlice> {
        let slice = self.layer.read_all(&self.inner, options).await?;
        self.layer.after_read_all(slice).await
    }

    async fn stream_revision(&self, stream: &str) -> Result<Option<Revision>> {
        self.layer.stream_revision(&self.inner, stream).await
    }

    async fn list_streams(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamSummary>> {
        self.inner.list_streams(prefix, after, limit).await
    }

    fn storage_metrics(&self) -> Vec<StoreMetric> {
        self.inner.storage_metrics()
    }

    async fn head_position(&self) -> Result<Option<Position>> {
        self.inner.head_position().await
    }

    async fn wait_for(&self, position: Position) -> Result<()> {
        self.inner.wait_for(position).await
    }

    fn remote_admin(&self) -> Option<&dyn RemoteAdmin> {
        self.inner.remote_admin()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{Error, EventData, ExpectedVersion, InMemoryStore};

    /// Records which hooks ran, in order, under its name; refuses appends of events
    /// of type `Refused`; renames events of type `Old` on the way out.
    struct Tracing {
        name: &'static str,
        calls: std::sync::Arc<Mutex<Vec<String>>>,
    }

    impl Tracing {
        fn note(&self, hook: &str) {
            self.calls
                .lock()
                .expect("the call log is never poisoned")
                .push(format!("{}:{hook}", self.name));
        }
    }

    #[async_trait]
    impl StoreLayer for Tracing {
        async fn before_append<S: EventStore + ?Sized>(
            &self,
            _inner: &S,
            writes: Vec<StreamWrite>,
        ) -> Result<Vec<StreamWrite>> {
            self.note("before_append");
            if writes
                .iter()
                .flat_map(|w| &w.events)
                .any(|e| e.event_type == "Refused")
            {
                return Err(Error::InvalidEvent {
                    reason: format!("{} refuses it", self.name),
                });
            }
            Ok(writes)
        }

        async fn read_stream<S: EventStore + ?Sized>(
            &self,
            inner: &S,
            stream: &str,
            options: ReadStream,
        ) -> Result<Vec<RecordedEvent>> {
            self.note("read_stream");
            inner.read_stream(stream, options).await
        }

        async fn after_read_stream(
            &self,
            _stream: &str,
            mut events: Vec<RecordedEvent>,
        ) -> Result<Vec<RecordedEvent>> {
            self.note("after_read_stream");
            for event in &mut events {
                if event.event_type == "Old" {
                    event.event_type = format!("New-{}", self.name);
                }
            }
            Ok(events)
        }

        async fn after_read_all(&self, slice: AllSlice) -> Result<AllSlice> {
            self.note("after_read_all");
            Ok(slice)
        }
    }

    /// A layer that hooks nothing.
    struct Nothing;
    impl StoreLayer for Nothing {}

    fn event(event_type: &str) -> EventData {
        EventData::json(event_type, &serde_json::json!({})).expect("event")
    }

    /// The names of the hooks that ran, in order.
    type CallLog = std::sync::Arc<Mutex<Vec<String>>>;

    fn stack() -> (Layered<Tracing, Layered<Tracing, InMemoryStore>>, CallLog) {
        let calls = std::sync::Arc::new(Mutex::new(Vec::new()));
        let inner = Tracing {
            name: "inner",
            calls: calls.clone(),
        };
        let outer = Tracing {
            name: "outer",
            calls: calls.clone(),
        };
        (InMemoryStore::new().layer(inner).layer(outer), calls)
    }

    fn taken(calls: &Mutex<Vec<String>>) -> Vec<String> {
        std::mem::take(&mut *calls.lock().expect("the call log is never poisoned"))
    }

    #[tokio::test]
    async fn hooks_run_outer_first_on_the_way_in_and_inner_first_on_the_way_out() {
        let (store, calls) = stack();
        store
            .append("s-1", ExpectedVersion::NoStream, vec![event("Old")])
            .await
            .expect("append");
        assert_eq!(
            taken(&calls),
            ["outer:before_append", "inner:before_append"]
        );
        let events = store
            .read_stream("s-1", ReadStream::forward())
            .await
            .expect("read");
        assert_eq!(
            taken(&calls),
            [
                "outer:read_stream",
                "inner:read_stream",
                "inner:after_read_stream",
                "outer:after_read_stream"
            ]
        );
        // The inner layer saw `Old` first and renamed it; the outer one saw no `Old`.
        assert_eq!(events[0].event_type, "New-inner");
        store
            .read_all(ReadAll::from(Position(0), 10))
            .await
            .expect("read all");
        assert_eq!(
            taken(&calls),
            ["inner:after_read_all", "outer:after_read_all"]
        );
        // What no layer hooks goes straight through.
        assert_eq!(
            store.stream_revision("s-1").await.expect("revision"),
            Some(Revision(0))
        );
        assert_eq!(
            store.head_position().await.expect("head"),
            Some(Position(0))
        );
        assert_eq!(
            store.list_streams("", None, 10).await.expect("list").len(),
            1
        );
        store.wait_for(Position(0)).await.expect("wait");
        assert!(store.remote_admin().is_none());
        assert!(taken(&calls).is_empty());
    }

    #[tokio::test]
    async fn a_refused_append_writes_nothing_and_skips_the_inner_layers() {
        let (store, calls) = stack();
        let refused = store
            .append_multi(vec![
                StreamWrite::new("s-1", ExpectedVersion::Any, vec![event("Fine")]),
                StreamWrite::new("s-2", ExpectedVersion::Any, vec![event("Refused")]),
            ])
            .await;
        assert!(
            matches!(&refused, Err(Error::InvalidEvent { reason }) if reason == "outer refuses it"),
            "{refused:?}"
        );
        assert_eq!(taken(&calls), ["outer:before_append"]);
        assert_eq!(store.head_position().await.expect("head"), None);
    }

    #[tokio::test]
    async fn a_layer_without_hooks_changes_nothing() {
        let bare = InMemoryStore::new();
        let layered = InMemoryStore::new().layer(Nothing);
        for store in [&bare as &dyn EventStore, &layered] {
            store
                .append(
                    "s-1",
                    ExpectedVersion::NoStream,
                    vec![event("A"), event("B")],
                )
                .await
                .expect("append");
        }
        let bare_events = bare
            .read_stream("s-1", ReadStream::backward())
            .await
            .expect("read");
        let layered_events = layered
            .read_stream("s-1", ReadStream::backward())
            .await
            .expect("read");
        let types = |events: &[RecordedEvent]| {
            events
                .iter()
                .map(|e| (e.event_type.clone(), e.revision, e.position))
                .collect::<Vec<_>>()
        };
        assert_eq!(types(&bare_events), types(&layered_events));
        assert!(matches!(
            layered.read_stream("none", ReadStream::forward()).await,
            Err(Error::StreamNotFound { .. })
        ));
        assert_eq!(
            layered
                .inner()
                .stream_revision("s-1")
                .await
                .expect("revision"),
            Some(Revision(1))
        );
    }
}
