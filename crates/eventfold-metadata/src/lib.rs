//! Stream metadata and deletion, written once over the `EventStore` trait so every
//! backend behaves alike: a [`MetadataLayer`] for reads, the [`StreamAdmin`] extension
//! trait for changes.
//!
//! - A stream's metadata is the last `$metadata` event of its metadata stream
//!   `$$<stream>`: retention (`max_count`, `max_age`, `truncate_before`), an ACL the
//!   server checks, and free-form `custom` values. Setting it appends a new event, so
//!   its history is kept and a writer can expect a metadata revision.
//! - A read through the [`MetadataLayer`] applies it: events before the first visible
//!   revision are hidden, and a stream with no visible event reads as not found.
//!   Hidden events stay on disk (and in `$all`) until a scavenge reclaims them
//!   ([`retention_cuts`] says, per stream, what it may remove). A read of the bare
//!   backend returns the stream as stored.
//! - A soft delete sets `truncate_before` past the last event: the stream reads as
//!   not found, and an append recreates it, continuing the revisions.
//! - A hard delete appends, in one atomic append, a tombstone (an event of type
//!   [`TOMBSTONE_EVENT_TYPE`](eventfold_core::TOMBSTONE_EVENT_TYPE)) to the stream
//!   with the caller's expected version, and metadata marked `tombstoned`. The shared
//!   append decision (core's `plan.rs`) refuses every later append to a stream whose
//!   last event is a tombstone; reads see the mark and answer `StreamDeleted`.
//!
//! - Defaults per category: the metadata of a category stream `$ce-<category>` (only
//!   `max_count` and `max_age`) is the retention of every stream of that category with
//!   no metadata of its own (a stream's own metadata replaces the defaults whole). The
//!   framework gives its command streams a window this way.
//!
//! Metadata events and tombstones are appended as system writes
//! (`StreamWrite::system`): their types start with `$`, which a client write cannot
//! carry, so no client can forge either. A tombstone is recognised by its type alone;
//! its id is an ordinary new one, so no id a client chose can ever collide with it.
//! A store that forwards to a server cannot carry system writes: there the
//! [`StreamAdmin`] calls go to the server's admin routes (`EventStore::remote_admin`).
//!
//! A stream without metadata costs a read two lookups of a revision: `$$<stream>`'s and
//! `$$$ce-<category>`'s.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod admin;
mod layer;
mod links;
mod retention;
mod types;

pub use admin::StreamAdmin;
pub use layer::MetadataLayer;
pub use retention::{RetentionCuts, retention_cuts, scavenge};
pub use types::{
    DeleteMode, DeleteResult, METADATA_EVENT_TYPE, METADATA_STREAM_PREFIX, MetadataRecord,
    StreamAcl, StreamMetadata, defaults_category, metadata_stream, validate_metadata_target,
};
