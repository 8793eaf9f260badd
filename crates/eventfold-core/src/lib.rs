//! Core vocabulary of eventfold: events, streams, revisions, positions, expected
//! versions, errors, the [`EventStore`] trait that every backend implements, the
//! shared append decision ([`plan`]) and [`layer`]s that add policy over any store.
//! Stream metadata (`eventfold-metadata`), subscriptions and consumer groups
//! (`eventfold-subscription`) and schemas (`eventfold-schema`) live in their own crates.
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
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod event;
mod index_stream;
mod json_check;
pub mod layer;
mod memory;
pub mod plan;
mod reference;
mod remote;
pub mod resend;
mod scavenge;
mod store;
mod stream;

pub use error::{Error, Result};
pub use event::{
    CAUSATION_ID_KEY, CORRELATION_ID_KEY, EventData, PERSONAL_KEY, REDACTED_KEY, RecordedEvent,
};
pub use index_stream::{IndexStream, read_index_stream};
pub use json_check::plain_bytes as json_plain_bytes;
pub use layer::{LayerExt, Layered, StoreLayer};
pub use memory::{InMemoryStore, wait_for_head};
pub use reference::{
    CANCELLED_EVENT_TYPE, CLIENT_SYSTEM_EVENT_TYPES, CORRECTED_EVENT_TYPE, EventRef,
    INVALIDATED_EVENT_TYPE, INVALIDATIONS_STREAM, LINK_EVENT_TYPE, LINKED_EVENT_KEY, merge_patch,
    referenced_event,
};
pub use remote::{RemoteAdmin, RemoteDeleted, RemoteMetadata};
pub use scavenge::{KeepFrom, ScavengeSummary, Scavenger};
pub use store::{
    AllFilter, AllSlice, AppendResult, Direction, EventStore, MetricKind, ReadAll, ReadStream,
    StoreMetric, StreamSummary, StreamWrite, append_system, select_streams,
};
pub use stream::{
    ExpectedVersion, MIGRATED_FROM_KEY, Position, Revision, STORE_CAUGHT_UP_EVENT_TYPE,
    STORE_READ_ONLY_EVENT_TYPE, STORE_STREAM, STORE_WRITABLE_EVENT_TYPE, STREAM_MOVED_EVENT_TYPE,
    STREAM_NAME_BYTES_MAX, SUBJECT_FORGOTTEN_EVENT_TYPE, SUBJECTS_STREAM, SYSTEM_STREAM_PREFIXES,
    TOMBSTONE_EVENT_TYPE, category_of, validate_stored_stream_name, validate_stream_name,
};
