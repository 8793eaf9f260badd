//! Core vocabulary of eventfold: events, streams, revisions, positions, expected
//! versions, errors, and the [`EventStore`] trait that every backend implements.
//!
//! Architecture invariant: this crate does no I/O. It knows neither files nor HTTP.
//!
//! ```
//! use eventfold_core::{EventData, EventStore, ExpectedVersion, InMemoryStore, ReadStream};
//!
//! # tokio_test();
//! # fn tokio_test() {
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let store = InMemoryStore::new();
//! let placed = EventData::json("OrderPlaced", &serde_json::json!({"total": 42})).unwrap();
//! let written = store.append("order-1", ExpectedVersion::NoStream, vec![placed]).await.unwrap();
//! assert_eq!(written.first_revision.get(), 0);
//! let events = store.read_stream("order-1", ReadStream::forward()).await.unwrap();
//! assert_eq!(events[0].event_type, "OrderPlaced");
//! # });
//! # }
//! ```

mod error;
mod event;
mod index_stream;
mod memory;
pub mod metadata;
pub mod page;
mod persistent;
pub mod plan;
mod store;
mod stream;
mod subscription;

pub use error::{Error, Result};
pub use event::{CAUSATION_ID_KEY, CORRELATION_ID_KEY, EventData, RecordedEvent};
pub use index_stream::{IndexStream, read_index_stream};
pub use memory::{InMemoryStore, wait_for_head};
pub use metadata::{
    DeleteMode, DeleteResult, MetadataRecord, StreamAcl, StreamMetadata, metadata_stream,
};
pub use persistent::{Delivery, GroupSettings, GroupStatus, Nack, Parked, PersistentGroup};
pub use store::{
    AllFilter, AllSlice, AppendResult, Direction, EventStore, MetricKind, ReadAll, ReadStream,
    StoreMetric, StreamSummary, StreamWrite, select_streams,
};
pub use stream::{
    ExpectedVersion, Position, Revision, STREAM_NAME_BYTES_MAX, SYSTEM_STREAM_PREFIXES,
    category_of, validate_stored_stream_name, validate_stream_name,
};
pub use subscription::Subscription;
